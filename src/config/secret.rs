//! Secrets (`api_key`, `api_secret`, `session_key`) and where they come from.
//!
//! A [`Secret`] has no `Display`, no `Serialize` and no `Clone`, and its `Debug` prints a redaction
//! marker, so a secret can only reach a log line, a label or a response through an explicit,
//! greppable call to [`Secret::expose`]. The config resolves every [`SecretSource`] once, at load,
//! so a missing variable or file is a configuration error and never a runtime surprise.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::config::regular_file::{self, ReadError};

/// What `Debug` prints instead of a secret.
pub const REDACTED: &str = "<secret>";

/// The most a secret file may hold: a Last.fm key or secret is 32 hex digits, so 4 KiB is ample
/// for any service's, and a file pointed at by mistake (a log, a disk image) is refused at once
/// instead of read whole into memory.
pub const SECRET_FILE_CAP: u64 = 4096;

/// How long a Last.fm API key and shared secret are, in hex digits (docs/LASTFM-API.md §4).
const LASTFM_SECRET_LEN: usize = 32;

/// A secret value; printable only through [`Secret::expose`].
pub struct Secret(Box<str>);

impl Secret {
    /// Wraps a value, trimming the trailing whitespace that `echo KEY > file` leaves behind.
    pub fn new(value: &str) -> Self {
        Self(value.trim_end().into())
    }

    /// The secret itself; every caller is a place the secret leaves the type.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Why this value cannot be a key at all (a byte order mark, whitespace inside), or, when
    /// `lastfm_hex` (a Last.fm API key or shared secret), why it cannot be one of Last.fm's
    /// (not 32 hex digits). Never the value itself.
    pub fn shape_problem(&self, lastfm_hex: bool) -> Option<String> {
        let value = self.expose();
        if value.starts_with('\u{feff}') {
            return Some(
                "starts with a byte order mark (U+FEFF), which would be sent as part of it; \
                 save the file as UTF-8 without a BOM"
                    .to_owned(),
            );
        }
        if value.chars().any(char::is_whitespace) {
            return Some(
                "contains whitespace, which no key holds; keep only the key, on one line"
                    .to_owned(),
            );
        }
        let length = value.chars().count();
        if lastfm_hex && length != LASTFM_SECRET_LEN {
            return Some(format!(
                "is {length} characters long; a Last.fm key or secret is {LASTFM_SECRET_LEN} \
                 hex digits (copy it again from https://www.last.fm/api/accounts)"
            ));
        }
        if lastfm_hex && !value.chars().all(|c| c.is_ascii_hexdigit()) {
            return Some(format!(
                "holds characters that are not hex digits; a Last.fm key or secret is \
                 {LASTFM_SECRET_LEN} hex digits (copy it again from https://www.last.fm/api/accounts)"
            ));
        }
        None
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

/// Where a secret is read from, as written in the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// Written in the config file itself (discouraged, accepted for tests and quick starts).
    Inline,
    /// `{ env = "NAME" }`
    Env(String),
    /// `{ file = "/path" }`
    File(PathBuf),
    /// `{ credential = "name" }`: `$CREDENTIALS_DIRECTORY/name`, as systemd's `LoadCredential=` sets up.
    Credential(String),
}

/// The process environment a secret is resolved against, injected so tests never touch
/// the real environment.
pub trait Environment: fmt::Debug {
    /// The value of a variable, `None` when unset.
    fn var(&self, name: &str) -> Option<String>;
}

/// The real process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Environment for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl SecretSource {
    /// Reads the secret; the error says what is missing and what to do.
    pub fn resolve(&self, inline: Option<&str>, env: &dyn Environment) -> Result<Secret, String> {
        let value = match self {
            Self::Inline => inline.unwrap_or_default().to_owned(),
            Self::Env(name) => env.var(name).ok_or_else(|| {
                format!(
                    "environment variable {name} is not set; export it or use {{ file = \"…\" }}"
                )
            })?,
            Self::File(path) => read_secret_file(path)?,
            Self::Credential(name) => {
                if !is_credential_name(name) {
                    return Err(format!(
                        "credential {name:?} is not a plain file name: a credential is a file \
                         directly in $CREDENTIALS_DIRECTORY (no '/', not \".\" or \"..\", \
                         printable ASCII without ':'); name it as in LoadCredential=NAME:/path, \
                         or use {{ file = \"/path\" }} for a file elsewhere"
                    ));
                }
                let dir = env.var("CREDENTIALS_DIRECTORY").ok_or_else(|| {
                    format!(
                        "credential {name:?} needs $CREDENTIALS_DIRECTORY, which is not set; \
                         run under systemd with LoadCredential={name}:/path or use {{ file = \"…\" }}"
                    )
                })?;
                read_secret_file(&Path::new(&dir).join(name))?
            }
        };
        let secret = Secret::new(&value);
        if secret.expose().is_empty() {
            return Err(format!("{} is empty", self.describe()));
        }
        Ok(secret)
    }

    /// A human description of the source, safe to print (never the value).
    pub fn describe(&self) -> String {
        match self {
            Self::Inline => "the inline value".to_owned(),
            Self::Env(name) => format!("environment variable {name}"),
            Self::File(path) => format!("file {}", path.display()),
            Self::Credential(name) => format!("credential {name}"),
        }
    }
}

/// systemd's rule for a credential name (`credential_name_valid`,
/// https://github.com/systemd/systemd/blob/main/src/shared/creds-util.c): a valid file name (not empty, not `.` or `..`, no `/`,
/// at most 255 bytes) that is also a valid descriptor name (printable ASCII, no `:`). Anything
/// else could name a file outside `$CREDENTIALS_DIRECTORY`.
fn is_credential_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'/' && b != b':')
}

/// A secret file's text: a regular file of at most [`SECRET_FILE_CAP`] bytes, so a FIFO or a
/// device named by mistake is refused at once instead of hanging the load.
fn read_secret_file(path: &Path) -> Result<String, String> {
    let path_text = path.display();
    regular_file::read(path, SECRET_FILE_CAP).map_err(|err| match err {
        ReadError::Io(err) => format!("cannot read secret file {path_text}: {err}"),
        ReadError::NotRegular(kind) => format!(
            "secret file {path_text} is {kind}, not a regular file; point the key at a regular \
             file that holds only the secret"
        ),
        ReadError::TooLarge(cap) => format!(
            "secret file {path_text} is larger than {cap} bytes, which no secret is; point the \
             key at a file that holds only the secret"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[derive(Debug)]
    struct FakeEnv(HashMap<&'static str, String>);
    impl Environment for FakeEnv {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).cloned()
        }
    }

    #[test]
    fn debug_of_a_secret_is_the_redaction_marker() {
        let secret = Secret::new("canary-0123456789");
        assert_eq!(format!("{secret:?}"), "<secret>");
        assert_eq!(secret.expose(), "canary-0123456789");
    }

    #[test]
    fn secret_files_lose_their_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("api_key"), "abc123\n").unwrap();
        let env = FakeEnv(HashMap::from([(
            "CREDENTIALS_DIRECTORY",
            dir.path().display().to_string(),
        )]));
        let secret = SecretSource::Credential("api_key".into())
            .resolve(None, &env)
            .unwrap();
        assert_eq!(secret.expose(), "abc123");
    }

    #[test]
    fn missing_env_var_is_named() {
        let err = SecretSource::Env("LASTFM_API_KEY".into())
            .resolve(None, &FakeEnv(HashMap::new()))
            .unwrap_err();
        assert!(err.contains("LASTFM_API_KEY is not set"), "{err}");
    }

    #[test]
    fn credential_without_directory_says_what_to_do() {
        let err = SecretSource::Credential("api_key".into())
            .resolve(None, &FakeEnv(HashMap::new()))
            .unwrap_err();
        assert!(err.contains("CREDENTIALS_DIRECTORY"), "{err}");
        assert!(err.contains("LoadCredential"), "{err}");
    }

    #[test]
    fn a_credential_name_is_a_plain_file_name() {
        let dir = tempfile::tempdir().unwrap();
        let credentials = dir.path().join("credentials");
        std::fs::create_dir(&credentials).unwrap();
        std::fs::write(dir.path().join("outside"), "not-a-credential\n").unwrap();
        let env = FakeEnv(HashMap::from([(
            "CREDENTIALS_DIRECTORY",
            credentials.display().to_string(),
        )]));
        let absolute = dir.path().join("outside").display().to_string();
        for name in ["../outside", absolute.as_str(), "..", ".", "", "a/b", "a:b"] {
            let err = SecretSource::Credential(name.into())
                .resolve(None, &env)
                .map(|secret| secret.expose().to_owned())
                .unwrap_err();
            assert!(err.contains("is not a plain file name"), "{name:?}: {err}");
        }
        std::fs::write(credentials.join("api_key.lastfm"), "abc\n").unwrap();
        let secret = SecretSource::Credential("api_key.lastfm".into())
            .resolve(None, &env)
            .unwrap();
        assert_eq!(secret.expose(), "abc");
    }

    /// The resolve runs on a thread and is waited for at most 10 s: a regression hangs on the
    /// FIFO's open, and the test must still end.
    fn resolve_within_limit(source: SecretSource) -> Result<Secret, String> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(source.resolve(None, &FakeEnv(HashMap::new())));
        });
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .expect("resolving a secret file returns within 10 s")
    }

    #[test]
    fn a_fifo_or_an_oversized_secret_file_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("api_key");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .unwrap();
        let err = resolve_within_limit(SecretSource::File(fifo.clone())).unwrap_err();
        assert!(
            err.contains(&format!(
                "secret file {} is a named pipe (FIFO)",
                fifo.display()
            )),
            "{err}"
        );

        let big = dir.path().join("big");
        let cap = usize::try_from(SECRET_FILE_CAP).unwrap();
        std::fs::write(&big, "a".repeat(cap + 1)).unwrap();
        let err = resolve_within_limit(SecretSource::File(big.clone())).unwrap_err();
        assert!(err.contains("is larger than 4096 bytes"), "{err}");
        std::fs::write(&big, "a".repeat(cap)).unwrap();
        assert!(resolve_within_limit(SecretSource::File(big)).is_ok());
    }

    #[test]
    fn a_value_that_cannot_be_a_key_is_named_without_the_value() {
        let good = Secret::new("0123456789abcdef0123456789ABCDEF");
        assert_eq!(good.shape_problem(true), None);
        let bom = Secret::new("\u{feff}0123456789abcdef0123456789abcdef");
        assert!(
            bom.shape_problem(false)
                .unwrap()
                .contains("byte order mark")
        );
        let inner = Secret::new("0123456789abcdef 0123456789abcdef");
        assert!(inner.shape_problem(false).unwrap().contains("whitespace"));
        let short = Secret::new("0123456789abcdef0123456789abcde");
        let why = short.shape_problem(true).unwrap();
        assert!(why.contains("is 31 characters long"), "{why}");
        assert!(!why.contains("0123"), "{why}");
        assert_eq!(
            short.shape_problem(false),
            None,
            "other services' keys vary"
        );
        let not_hex = Secret::new("0123456789abcdef0123456789abcdeg");
        assert!(
            not_hex
                .shape_problem(true)
                .unwrap()
                .contains("not hex digits")
        );
    }

    #[test]
    fn empty_secret_is_refused() {
        let env = FakeEnv(HashMap::from([("K", "  \n".to_owned())]));
        let err = SecretSource::Env("K".into())
            .resolve(None, &env)
            .unwrap_err();
        assert!(err.contains("is empty"), "{err}");
    }
}

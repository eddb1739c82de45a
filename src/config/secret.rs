//! Secrets (`api_key`, `api_secret`, `session_key`) and where they come from.
//!
//! A [`Secret`] has no `Display`, no `Serialize` and no `Clone`, and its `Debug` prints a redaction
//! marker, so a secret can only reach a log line, a label or a response through an explicit,
//! greppable call to [`Secret::expose`]. The config resolves every [`SecretSource`] once, at load,
//! so a missing variable or file is a configuration error and never a runtime surprise.

use std::fmt;
use std::path::{Path, PathBuf};

/// What `Debug` prints instead of a secret.
pub const REDACTED: &str = "<secret>";

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

fn read_secret_file(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map_err(|err| format!("cannot read secret file {}: {err}", path.display()))
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
    fn empty_secret_is_refused() {
        let env = FakeEnv(HashMap::from([("K", "  \n".to_owned())]));
        let err = SecretSource::Env("K".into())
            .resolve(None, &env)
            .unwrap_err();
        assert!(err.contains("is empty"), "{err}");
    }
}

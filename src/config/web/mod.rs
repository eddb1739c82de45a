//! `--web.config.file`: TLS, client certificates, basic auth and response headers for every
//! endpoint, in the `web-config.yml` format of Prometheus' exporter-toolkit (README.md, TLS and
//! basic auth).
//!
//! This module owns the whole file: strict parsing, validation, and turning it into what the
//! server needs, a [`TlsAcceptor`](tokio_rustls::TlsAcceptor) and a [`BasicAuth`] checker. Everything is checked at start,
//! before any port is bound: the certificate, key and client CA are read, parsed and matched, the
//! bcrypt hashes parsed. Every problem names the file and the key (and the line when the YAML
//! parser knows it), and the process exits 64, as for a bad `config.toml`: a problem is the same
//! [`Problem`] as the main config's, and [`WebConfigError`] is its [`ConfigError`].
//!
//! The module map:
//! - `file`: the YAML mirror, `WebConfigFile`, with `deny_unknown_fields` (exporter-toolkit is
//!   strict too, so a typo fails the start); it never leaves this module;
//! - `tls`: `tls_server_config`, validated into [`TlsSettings`] with the rustls configuration;
//! - `auth`: `basic_auth_users`, the [`PasswordHash`]es and the [`BasicAuth`] checker;
//! - `headers`: `http_server_config.headers`;
//! - this file: [`WebConfig`], the validated whole, and what the server and CLI ask of it.
//!
//! Why it has this shape:
//! - Two phases, as in [`crate::config`]: the mirror, then [`WebConfig`], the validated form.
//! - Keys exporter-toolkit knows but this build does not implement (inline `cert`/`key`,
//!   `client_allowed_sans`, `cipher_suites`, `curve_preferences`, `rate_limit`) are refused by
//!   name instead of ignored: a security setting silently dropped is worse than a refused start.
//!   Client-auth policies that ask for a certificate without verifying it are refused for the same
//!   reason. `http2` is accepted and has no effect: the server speaks HTTP/1.1 only.
//! - YAML: `serde_norway`, the maintained fork of dtolnay's archived `serde_yaml` (same API and
//!   libyaml-derived parser, MIT OR Apache-2.0 like this crate). `serde_yaml_ng` is MIT-only and
//!   less active, `serde_yml` carries a RustSec advisory, and `serde-saphyr` needs Rust 1.89,
//!   above this crate's MSRV.
//! - TLS: rustls through `tokio-rustls`, on the ring provider that reqwest also uses, so
//!   there is one crypto backend. rustls has no TLS 1.0/1.1, so `min_version` is 1.2 or 1.3
//!   (default 1.2, as in exporter-toolkit); ALPN offers `http/1.1`.
//! - Basic auth: bcrypt is slow on purpose (about 70 ms at cost 10), so it runs on the blocking
//!   pool and a successful check is cached per user as SHA-256(bcrypt hash, password), compared in
//!   constant time (exporter-toolkit caches too); a Prometheus scraping every few seconds pays
//!   bcrypt once. Unknown users are checked against a dummy hash of the highest configured cost;
//!   users of different costs are warned about at start-up, since a cheap one answers a wrong
//!   password faster. At most two bcrypt checks run at once, so wrong passwords queue there and
//!   never hold the server's requests-in-flight cap.
//! - The file is read once, at start (exporter-toolkit re-reads it per request): a change takes
//!   effect on restart.

mod auth;
mod file;
mod headers;
mod tls;

use std::collections::BTreeMap;
use std::path::Path;

use axum::http::{HeaderName, HeaderValue};

use crate::config::problem::ConfigError;
/// One problem in the web config: the main config's [`Problem`](crate::config::Problem).
pub use crate::config::problem::Problem;
pub use auth::{
    BasicAuth, PasswordHash, VERIFY_QUEUE_WAIT, VERIFYING_AT_ONCE, Verdict, cost_warning,
};
pub use tls::{ClientAuth, TlsSettings, TlsVersion};

/// Why a web config was refused: every problem found. The main config's error type, so both
/// files report problems alike.
pub type WebConfigError = ConfigError;

/// The challenge sent with 401.
pub const WWW_AUTHENTICATE: &str = "Basic realm=\"lastfm-monitor\", charset=\"UTF-8\"";

/// The validated web configuration; the default is plain HTTP without authentication.
#[derive(Debug, Clone, Default)]
pub struct WebConfig {
    /// TLS settings, when `tls_server_config` is given.
    pub tls: Option<TlsSettings>,
    /// `basic_auth_users`: user name → bcrypt hash. Empty: no authentication.
    pub users: BTreeMap<String, PasswordHash>,
    /// `http_server_config.headers`: added to every response.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl WebConfig {
    /// Reads and validates a web config file; relative paths in it are resolved against the
    /// file's directory, as exporter-toolkit does.
    pub fn load(path: &Path) -> Result<Self, WebConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|err| {
            ConfigError::one(
                &origin,
                Problem::of_key("", format!("cannot read the web configuration file: {err}")),
            )
        })?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        Self::parse(&text, &origin, base)
    }

    /// Parses and validates web config text; `origin` names it in errors, `base` resolves
    /// relative file names.
    pub fn parse(text: &str, origin: &str, base: &Path) -> Result<Self, WebConfigError> {
        let Some(file) = file::from_yaml(text, origin)? else {
            return Ok(Self::default());
        };
        let mut problems = Vec::new();
        let tls = file
            .tls_server_config
            .and_then(|tls| tls::validate_tls(tls, base, &mut problems));
        let users = auth::validate_users(
            file.basic_auth_users.map(|u| u.0).unwrap_or_default(),
            &mut problems,
        );
        let mut headers = Vec::new();
        if let Some(http) = file.http_server_config {
            // `http2` is accepted for compatibility and has no effect: HTTP/1.1 only.
            let _ = http.http2;
            for (name, value) in http.headers.unwrap_or_default() {
                if value.trim().is_empty() {
                    continue; // "Unset if blank", as upstream documents.
                }
                match headers::validate_header(&name, &value) {
                    Ok(pair) => headers.push(pair),
                    Err(message) => problems.push(Problem::of_key(
                        &format!("http_server_config.headers.{name}"),
                        message,
                    )),
                }
            }
        }
        if file.rate_limit.is_some() {
            problems.push(Problem::of_key(
                "rate_limit",
                "not supported by lastfm-monitor (the server caps requests in flight instead); remove it".to_owned(),
            ));
        }
        if problems.is_empty() {
            Ok(Self {
                tls,
                users,
                headers,
            })
        } else {
            Err(ConfigError {
                origin: origin.to_owned(),
                problems,
            })
        }
    }

    /// Whether basic auth is required.
    pub fn has_basic_auth(&self) -> bool {
        !self.users.is_empty()
    }

    /// Whether clients must present a verified certificate (mutual TLS).
    pub fn requires_client_cert(&self) -> bool {
        self.tls
            .as_ref()
            .is_some_and(|t| t.client_auth == ClientAuth::RequireAndVerifyClientCert)
    }

    /// `https` or `http`, for printed URLs.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// One line for `--config.check` and the start-up log.
    pub fn describe(&self) -> String {
        let tls = match &self.tls {
            None => "plain HTTP".to_owned(),
            Some(tls) => format!(
                "TLS ({} to {}, client certificates: {})",
                tls.min_version.as_str(),
                tls.max_version.as_str(),
                tls.client_auth.as_str()
            ),
        };
        let auth = if self.users.is_empty() {
            "no basic auth".to_owned()
        } else {
            format!("basic auth for {} user(s)", self.users.len())
        };
        format!("{tls}, {auth}")
    }

    /// Why listening on `address` is risky with this config, if it is.
    pub fn exposure_warning(&self, address: std::net::SocketAddr) -> Option<&'static str> {
        if address.ip().is_loopback() {
            return None;
        }
        let authenticates = self.has_basic_auth() || self.requires_client_cert();
        match (self.tls.is_some(), authenticates) {
            (true, true) => None,
            (false, false) => Some(
                "listening beyond loopback without TLS or authentication: anyone who can reach the \
                 port reads the endpoints and can trigger probes; set --web.config.file or firewall it",
            ),
            (false, true) => Some(
                "listening beyond loopback without TLS: basic-auth passwords cross the network in \
                 clear text; add tls_server_config to the web config",
            ),
            (true, false) => Some(
                "listening beyond loopback without authentication: anyone who can reach the port \
                 reads the endpoints and can trigger probes; add basic_auth_users or client certificates",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::secret::REDACTED;
    use base64::Engine as _;

    fn parse(text: &str) -> Result<WebConfig, WebConfigError> {
        WebConfig::parse(text, "web.yml", Path::new("/nonexistent"))
    }

    fn problems(text: &str) -> String {
        parse(text).expect_err("must be refused").to_string()
    }

    /// A self-signed certificate and its key, written to a temporary directory.
    struct Pki {
        dir: tempfile::TempDir,
    }

    impl Pki {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
                .unwrap()
                .self_signed(&key)
                .unwrap();
            std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
            std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
            let other = rcgen::KeyPair::generate().unwrap();
            std::fs::write(dir.path().join("other-key.pem"), other.serialize_pem()).unwrap();
            let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            let ca_key = rcgen::KeyPair::generate().unwrap();
            std::fs::write(
                dir.path().join("ca.pem"),
                ca.self_signed(&ca_key).unwrap().pem(),
            )
            .unwrap();
            std::fs::write(dir.path().join("garbage.pem"), "not pem at all\n").unwrap();
            Self { dir }
        }

        fn parse(&self, text: &str) -> Result<WebConfig, WebConfigError> {
            WebConfig::parse(text, "web.yml", self.dir.path())
        }
    }

    fn hash(password: &str) -> String {
        bcrypt::hash(password, 4).unwrap()
    }

    #[test]
    fn empty_file_means_plain_http_without_auth() {
        for text in ["", "# only a comment\n", "---\n"] {
            let config = parse(text).unwrap();
            assert!(config.tls.is_none() && config.users.is_empty(), "{text:?}");
        }
    }

    #[test]
    fn basic_auth_users_parse_and_hashes_stay_out_of_debug() {
        let h = hash("pw");
        let config = parse(&format!(
            "basic_auth_users:\n  alice: '{h}'\n  bob: '{h}'\n"
        ))
        .unwrap();
        assert_eq!(config.users.keys().collect::<Vec<_>>(), ["alice", "bob"]);
        let debug = format!("{config:?}");
        assert!(!debug.contains(&h), "{debug}");
        assert!(debug.contains(REDACTED));
    }

    #[test]
    fn unknown_keys_are_refused_with_their_line() {
        let message = problems("basic_auth_users: {}\ntls_server_confg:\n  cert_file: x\n");
        assert!(message.starts_with("web.yml:2:1: "), "{message}");
        assert!(message.contains("tls_server_confg"), "{message}");
        let nested =
            problems("tls_server_config:\n  cert_file: a\n  key_file: b\n  min_verison: TLS12\n");
        assert!(nested.contains("web.yml:4:3"), "{nested}");
        assert!(nested.contains("min_verison"), "{nested}");
    }

    #[test]
    fn exporter_toolkit_keys_this_build_lacks_are_refused_by_name() {
        let message = problems(
            "tls_server_config:\n  cert: inline\n  key: s3cr3t-inline-key\n  cert_file: a\n  key_file: b\n  \
             cipher_suites: [TLS_AES_128_GCM_SHA256]\n  client_allowed_sans: [x]\nrate_limit:\n  interval: 1s\n",
        );
        for key in [
            "tls_server_config.cert`",
            "tls_server_config.key`",
            "tls_server_config.cipher_suites`",
            "tls_server_config.client_allowed_sans`",
            "rate_limit`",
        ] {
            assert!(message.contains(key), "{key} in {message}");
        }
        assert!(
            !message.contains("s3cr3t"),
            "an inline key is never echoed: {message}"
        );
    }

    #[test]
    fn bad_hashes_duplicate_users_and_colons_are_refused() {
        let message = problems("basic_auth_users:\n  alice: plaintext-password\n");
        assert!(
            message.contains("key `basic_auth_users.alice`: not a bcrypt hash"),
            "{message}"
        );
        assert!(!message.contains("plaintext-password"), "{message}");
        let h = hash("pw");
        let message = problems(&format!(
            "basic_auth_users:\n  alice: '{h}'\n  alice: '{h}'\n"
        ));
        assert!(message.contains("listed twice"), "{message}");
        let message = problems(&format!("basic_auth_users:\n  'a:b': '{h}'\n"));
        assert!(message.contains("contains ':'"), "{message}");
    }

    #[test]
    fn tls_versions_are_validated() {
        let pki = Pki::new();
        let base = "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n";
        let config = pki.parse(base).unwrap();
        let tls = config.tls.as_ref().unwrap();
        assert_eq!(
            (tls.min_version, tls.max_version),
            (TlsVersion::Tls12, TlsVersion::Tls13)
        );
        let tls13 = pki.parse(&format!("{base}  min_version: TLS13\n")).unwrap();
        assert_eq!(tls13.tls.unwrap().min_version, TlsVersion::Tls13);
        let err = pki
            .parse(&format!("{base}  min_version: TLS11\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("key `tls_server_config.min_version`: TLS 1.0 and 1.1"),
            "{err}"
        );
        let err = pki
            .parse(&format!("{base}  min_version: SSL3\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown TLS version"), "{err}");
        let err = pki
            .parse(&format!(
                "{base}  min_version: TLS13\n  max_version: TLS12\n"
            ))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("key `tls_server_config.max_version`: TLS12 is below"),
            "{err}"
        );
    }

    #[test]
    fn tls_files_are_read_and_matched_at_load() {
        let pki = Pki::new();
        let err = pki
            .parse("tls_server_config:\n  key_file: key.pem\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("key `tls_server_config.cert_file`: missing"),
            "{err}"
        );
        let err = pki
            .parse("tls_server_config:\n  cert_file: missing.pem\n  key_file: key.pem\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("key `tls_server_config.cert_file`: cannot read"),
            "{err}"
        );
        assert!(err.contains("missing.pem"), "{err}");
        let err = pki
            .parse("tls_server_config:\n  cert_file: garbage.pem\n  key_file: garbage.pem\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("holds no PEM certificate"), "{err}");
        assert!(err.contains("holds no PEM private key"), "{err}");
        let err = pki
            .parse("tls_server_config:\n  cert_file: cert.pem\n  key_file: other-key.pem\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("does the key match the certificate?"), "{err}");
    }

    #[test]
    fn client_certificate_policies_need_a_ca_and_a_ca_needs_a_policy() {
        let pki = Pki::new();
        let base = "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n";
        let mtls = pki
            .parse(&format!(
                "{base}  client_ca_file: ca.pem\n  client_auth_type: RequireAndVerifyClientCert\n"
            ))
            .unwrap();
        assert!(mtls.requires_client_cert());
        let optional = pki
            .parse(&format!(
                "{base}  client_ca_file: ca.pem\n  client_auth_type: VerifyClientCertIfGiven\n"
            ))
            .unwrap();
        assert!(!optional.requires_client_cert());
        let err = pki
            .parse(&format!("{base}  client_ca_file: ca.pem\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("without a client_auth_type"), "{err}");
        let err = pki
            .parse(&format!(
                "{base}  client_auth_type: RequireAndVerifyClientCert\n"
            ))
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs client_ca_file"), "{err}");
        let err = pki
            .parse(&format!(
                "{base}  client_ca_file: ca.pem\n  client_auth_type: RequireAnyClientCert\n"
            ))
            .unwrap_err()
            .to_string();
        assert!(err.contains("without verifying them"), "{err}");
    }

    #[test]
    fn headers_are_limited_to_exporter_toolkit_s_set() {
        let config = parse(
            "http_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\n    \
             Content-Security-Policy: \"default-src 'self'\"\n",
        )
        .unwrap();
        assert_eq!(config.headers.len(), 2);
        let blank = parse("http_server_config:\n  headers:\n    X-XSS-Protection: ''\n").unwrap();
        assert!(blank.headers.is_empty(), "a blank header is unset");
        let err = problems("http_server_config:\n  headers:\n    X-Frame-Options: allow\n");
        assert!(err.contains("must be deny or sameorigin"), "{err}");
        let err = problems("http_server_config:\n  headers:\n    Server: hidden\n");
        assert!(
            err.contains("key `http_server_config.headers.Server`"),
            "{err}"
        );
    }

    #[test]
    fn exposure_warnings_name_what_is_missing() {
        let loopback: std::net::SocketAddr = "127.0.0.1:10987".parse().unwrap();
        let any: std::net::SocketAddr = "0.0.0.0:10987".parse().unwrap();
        let plain = WebConfig::default();
        assert_eq!(plain.exposure_warning(loopback), None);
        assert!(
            plain
                .exposure_warning(any)
                .unwrap()
                .contains("without TLS or authentication")
        );
        let auth_only = parse(&format!("basic_auth_users:\n  a: '{}'\n", hash("pw"))).unwrap();
        assert!(
            auth_only
                .exposure_warning(any)
                .unwrap()
                .contains("clear text")
        );
        let pki = Pki::new();
        let tls_only = pki
            .parse("tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n")
            .unwrap();
        assert!(
            tls_only
                .exposure_warning(any)
                .unwrap()
                .contains("without authentication")
        );
    }

    fn basic(user: &str, password: &str) -> HeaderValue {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        HeaderValue::from_str(&format!("Basic {encoded}")).unwrap()
    }

    #[test]
    fn users_of_different_bcrypt_costs_are_warned_about() {
        let user = |cost| PasswordHash::parse(&bcrypt::hash("pw", cost).unwrap()).unwrap();
        let same = BTreeMap::from([("a".to_owned(), user(4)), ("b".to_owned(), user(4))]);
        assert_eq!(cost_warning(&same), None);
        let mixed = BTreeMap::from([("a".to_owned(), user(4)), ("b".to_owned(), user(5))]);
        let warning = cost_warning(&mixed).expect("a warning");
        assert!(warning.contains("(4 to 5)"), "{warning}");
        assert!(warning.contains("which users exist"), "{warning}");
        assert!(warning.contains("htpasswd -nBC 5"), "{warning}");
    }

    #[tokio::test]
    async fn basic_auth_checks_and_caches_successes_only() {
        let users = BTreeMap::from([(
            "alice".to_owned(),
            PasswordHash::parse(&hash("right")).unwrap(),
        )]);
        let auth = BasicAuth::from_users(&users).unwrap();
        assert!(!auth.is_authorized(None).await);
        assert!(
            !auth
                .is_authorized(Some(&HeaderValue::from_static("Bearer x")))
                .await
        );
        assert!(
            !auth
                .is_authorized(Some(&HeaderValue::from_static("Basic !!!")))
                .await
        );
        assert!(!auth.is_authorized(Some(&basic("alice", "wrong"))).await);
        assert!(!auth.is_authorized(Some(&basic("mallory", "right"))).await);
        assert_eq!(auth.slow_checks(), 2, "unknown users pay bcrypt too");
        assert!(auth.is_authorized(Some(&basic("alice", "right"))).await);
        assert_eq!(auth.slow_checks(), 3);
        for _ in 0..5 {
            assert!(auth.is_authorized(Some(&basic("alice", "right"))).await);
        }
        assert_eq!(auth.slow_checks(), 3, "later checks hit the cache");
        assert!(!auth.is_authorized(Some(&basic("alice", "wrong"))).await);
        assert_eq!(
            auth.slow_checks(),
            4,
            "a wrong password never hits the cache"
        );
        let lower = HeaderValue::from_str(
            &basic("alice", "right")
                .to_str()
                .unwrap()
                .replace("Basic", "basic"),
        )
        .unwrap();
        assert!(
            auth.is_authorized(Some(&lower)).await,
            "the scheme is case-insensitive"
        );
    }

    /// The example in `docs/` is valid as shipped, once its certificate paths exist.
    #[tokio::test]
    async fn the_documented_example_is_valid() {
        let text = include_str!("../../../docs/web-config.yml");
        let pki = Pki::new();
        let text = text
            .replace("/etc/lastfm-monitor/tls/server.crt", "cert.pem")
            .replace("/etc/lastfm-monitor/tls/server.key", "key.pem");
        let config = pki.parse(&text).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(config.tls.as_ref().unwrap().min_version, TlsVersion::Tls12);
        assert_eq!(config.headers.len(), 3);
        let auth = BasicAuth::from_users(&config.users).unwrap();
        assert!(
            auth.is_authorized(Some(&basic("prometheus", "change-me")))
                .await
        );
        // Uncommented, the mutual-TLS lines are valid too.
        let mtls = text
            .replace("# client_auth_type:", "client_auth_type:")
            .replace(
                "# client_ca_file: /etc/lastfm-monitor/tls/clients-ca.crt",
                "client_ca_file: ca.pem",
            );
        assert!(pki.parse(&mtls).unwrap().requires_client_cert());
    }

    #[test]
    fn no_users_means_no_checker() {
        assert!(BasicAuth::from_users(&BTreeMap::new()).is_none());
    }
}

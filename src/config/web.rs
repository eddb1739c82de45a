//! `--web.config.file`: TLS, client certificates, basic auth and response headers for every
//! endpoint, in the `web-config.yml` format of Prometheus' exporter-toolkit.
//!
//! This module owns the whole file: strict parsing, validation, and turning it into what the
//! server needs, a [`TlsAcceptor`] and a [`BasicAuth`] checker. Everything is checked at start,
//! before any port is bound: the certificate, key and client CA are read, parsed and matched, the
//! bcrypt hashes parsed. Every problem names the file and the key (and the line when the YAML
//! parser knows it), and the process exits 64, as for a bad `config.toml`.
//!
//! Why it has this shape:
//! - Two phases, as in [`crate::config`]: `WebConfigFile` mirrors the YAML with
//!   `deny_unknown_fields` (exporter-toolkit is strict too, so a typo fails the start) and never
//!   leaves this module; [`WebConfig`] is the validated form.
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
//!   bcrypt once. Unknown users are checked against a dummy hash of the same cost, so the answer
//!   time does not reveal which users exist.
//! - The file is read once, at start (exporter-toolkit re-reads it per request): a change takes
//!   effect on restart.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::http::{HeaderName, HeaderValue};
use base64::Engine as _;
use serde::Deserialize;
use serde::de::{IgnoredAny, MapAccess, Visitor};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::{CryptoProvider, ring};
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::server::danger::ClientCertVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};

use crate::config::secret::REDACTED;

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

/// A bcrypt hash from `basic_auth_users`; its `Debug` is redacted (exporter-toolkit treats it
/// as a secret: it can be attacked offline).
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash {
    hash: Arc<str>,
    /// The work factor, 4–31; the dummy hash for unknown users gets the same.
    cost: u32,
}

impl PasswordHash {
    /// Parses a bcrypt hash (`$2a$`, `$2b$`, `$2x$` or `$2y$`, as `htpasswd -B` writes).
    pub fn parse(hash: &str) -> Result<Self, String> {
        let hash = hash.trim();
        match hash.parse::<bcrypt::HashParts>() {
            Ok(parts) if (4..=31).contains(&parts.get_cost()) => Ok(Self {
                hash: hash.into(),
                cost: parts.get_cost(),
            }),
            Ok(_) => Err("the bcrypt cost must be between 4 and 31".to_owned()),
            Err(_) => Err(
                "not a bcrypt hash; make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`"
                    .to_owned(),
            ),
        }
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// The validated `tls_server_config`, with the rustls configuration built from it.
#[derive(Clone)]
pub struct TlsSettings {
    /// `cert_file`, resolved against the web config's directory.
    pub cert_file: PathBuf,
    /// `key_file`, resolved likewise.
    pub key_file: PathBuf,
    /// `client_auth_type`.
    pub client_auth: ClientAuth,
    /// `client_ca_file`, resolved likewise.
    pub client_ca_file: Option<PathBuf>,
    /// `min_version`.
    pub min_version: TlsVersion,
    /// `max_version`.
    pub max_version: TlsVersion,
    /// Built once at load, shared by every handshake.
    server_config: Arc<ServerConfig>,
}

impl fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSettings")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .field("client_auth", &self.client_auth)
            .field("client_ca_file", &self.client_ca_file)
            .field("min_version", &self.min_version)
            .field("max_version", &self.max_version)
            .finish_non_exhaustive()
    }
}

impl TlsSettings {
    /// The acceptor the accept loop hands each connection to.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(Arc::clone(&self.server_config))
    }
}

/// `client_auth_type`: the policies that mean something. exporter-toolkit's
/// `RequestClientCert` and `RequireAnyClientCert` accept unverified certificates and are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client certificate is asked for (the default).
    NoClientCert,
    /// A certificate is optional, but verified against `client_ca_file` when sent.
    VerifyClientCertIfGiven,
    /// Mutual TLS: a certificate signed by `client_ca_file` is required.
    RequireAndVerifyClientCert,
}

impl ClientAuth {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoClientCert => "NoClientCert",
            Self::VerifyClientCertIfGiven => "VerifyClientCertIfGiven",
            Self::RequireAndVerifyClientCert => "RequireAndVerifyClientCert",
        }
    }
}

/// A TLS protocol version rustls speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    /// TLS 1.2
    Tls12,
    /// TLS 1.3
    Tls13,
}

impl TlsVersion {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tls12 => "TLS12",
            Self::Tls13 => "TLS13",
        }
    }

    fn rustls(self) -> &'static rustls::SupportedProtocolVersion {
        match self {
            Self::Tls12 => &rustls::version::TLS12,
            Self::Tls13 => &rustls::version::TLS13,
        }
    }
}

/// One problem in the web config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line and column, when the YAML parser knows them.
    pub location: Option<(usize, usize)>,
    /// The offending key, dotted (`tls_server_config.min_version`); empty for the whole file.
    pub key: String,
    /// What is wrong and what to do.
    pub message: String,
}

/// Why a web config was refused: every problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebConfigError {
    /// The file.
    pub origin: String,
    /// At least one problem.
    pub problems: Vec<Problem>,
}

impl fmt::Display for WebConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}", self.origin)?;
            if let Some((line, column)) = problem.location {
                write!(f, ":{line}:{column}")?;
            }
            write!(f, ": ")?;
            if !problem.key.is_empty() {
                write!(f, "key `{}`: ", problem.key)?;
            }
            write!(f, "{}", problem.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for WebConfigError {}

/// The raw mirror of the YAML; never leaves this module.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebConfigFile {
    #[serde(default)]
    tls_server_config: Option<TlsServerConfigFile>,
    #[serde(default)]
    http_server_config: Option<HttpServerConfigFile>,
    #[serde(default)]
    basic_auth_users: Option<Users>,
    #[serde(default)]
    rate_limit: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsServerConfigFile {
    #[serde(default)]
    cert_file: Option<String>,
    #[serde(default)]
    key_file: Option<String>,
    #[serde(default)]
    client_auth_type: Option<String>,
    #[serde(default)]
    client_ca_file: Option<String>,
    #[serde(default)]
    min_version: Option<String>,
    #[serde(default)]
    max_version: Option<String>,
    #[serde(default)]
    prefer_server_cipher_suites: Option<bool>,
    // exporter-toolkit keys this build refuses by name; their values are never kept (an inline
    // `key` is a secret).
    #[serde(default)]
    cert: Option<IgnoredAny>,
    #[serde(default)]
    key: Option<IgnoredAny>,
    #[serde(default)]
    client_ca: Option<IgnoredAny>,
    #[serde(default)]
    client_allowed_sans: Option<IgnoredAny>,
    #[serde(default)]
    cipher_suites: Option<IgnoredAny>,
    #[serde(default)]
    curve_preferences: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpServerConfigFile {
    #[serde(default)]
    http2: Option<bool>,
    #[serde(default)]
    headers: Option<BTreeMap<String, String>>,
}

/// `basic_auth_users`, in file order, refusing a user listed twice (a plain map would keep
/// the last silently).
#[derive(Debug)]
struct Users(Vec<(String, String)>);

impl<'de> Deserialize<'de> for Users {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct UsersVisitor;
        impl<'de> Visitor<'de> for UsersVisitor {
            type Value = Users;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of user names to bcrypt hashes")
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Users, E> {
                Ok(Users(Vec::new()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Users, A::Error> {
                let mut users: Vec<(String, String)> = Vec::new();
                while let Some((user, hash)) = map.next_entry::<String, String>()? {
                    if users.iter().any(|(u, _)| *u == user) {
                        return Err(serde::de::Error::custom(format!(
                            "user {user:?} is listed twice in basic_auth_users"
                        )));
                    }
                    users.push((user, hash));
                }
                Ok(Users(users))
            }
        }
        deserializer.deserialize_map(UsersVisitor)
    }
}

/// The headers `http_server_config.headers` may set, as in exporter-toolkit.
const ALLOWED_HEADERS: [&str; 5] = [
    "Content-Security-Policy",
    "X-Frame-Options",
    "X-Content-Type-Options",
    "X-XSS-Protection",
    "Strict-Transport-Security",
];

impl WebConfig {
    /// Reads and validates a web config file; relative paths in it are resolved against the
    /// file's directory, as exporter-toolkit does.
    pub fn load(path: &Path) -> Result<Self, WebConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|err| WebConfigError {
            origin: origin.clone(),
            problems: vec![Problem {
                location: None,
                key: String::new(),
                message: format!("cannot read the web configuration file: {err}"),
            }],
        })?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        Self::parse(&text, &origin, base)
    }

    /// Parses and validates web config text; `origin` names it in errors, `base` resolves
    /// relative file names.
    pub fn parse(text: &str, origin: &str, base: &Path) -> Result<Self, WebConfigError> {
        let fail = |problems: Vec<Problem>| WebConfigError {
            origin: origin.to_owned(),
            problems,
        };
        // An empty file (or only comments) is valid and means "no TLS, no auth", as upstream.
        let file: Option<WebConfigFile> = serde_norway::from_str(text).map_err(|err| {
            let location = err.location().map(|l| (l.line(), l.column()));
            let mut message = err.to_string();
            if let Some((line, column)) = location {
                // The location leads the line already.
                let suffix = format!(" at line {line} column {column}");
                if let Some(stripped) = message.strip_suffix(&suffix) {
                    message = stripped.to_owned();
                }
            }
            fail(vec![Problem {
                location,
                key: String::new(),
                message,
            }])
        })?;
        let Some(file) = file else {
            return Ok(Self::default());
        };
        let mut problems = Vec::new();
        let tls = file
            .tls_server_config
            .and_then(|tls| validate_tls(tls, base, &mut problems));
        let mut users = BTreeMap::new();
        for (user, hash) in file.basic_auth_users.map(|u| u.0).unwrap_or_default() {
            let key = format!("basic_auth_users.{user}");
            if user.is_empty() || user.contains(':') {
                problems.push(problem(
                    "basic_auth_users",
                    format!(
                        "user name {user:?} is empty or contains ':', which basic auth cannot carry"
                    ),
                ));
                continue;
            }
            match PasswordHash::parse(&hash) {
                Ok(hash) => {
                    users.insert(user, hash);
                }
                Err(message) => problems.push(problem(&key, message)),
            }
        }
        let mut headers = Vec::new();
        if let Some(http) = file.http_server_config {
            // `http2` is accepted for compatibility and has no effect: HTTP/1.1 only.
            let _ = http.http2;
            for (name, value) in http.headers.unwrap_or_default() {
                if value.trim().is_empty() {
                    continue; // "Unset if blank", as upstream documents.
                }
                match validate_header(&name, &value) {
                    Ok(pair) => headers.push(pair),
                    Err(message) => problems.push(problem(
                        &format!("http_server_config.headers.{name}"),
                        message,
                    )),
                }
            }
        }
        if file.rate_limit.is_some() {
            problems.push(problem(
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
            Err(fail(problems))
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

fn problem(key: &str, message: String) -> Problem {
    Problem {
        location: None,
        key: key.to_owned(),
        message,
    }
}

fn validate_header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), String> {
    let Some(canonical) = ALLOWED_HEADERS
        .iter()
        .find(|allowed| allowed.eq_ignore_ascii_case(name))
    else {
        return Err(format!(
            "not a header the web config may set; use one of {}",
            ALLOWED_HEADERS.join(", ")
        ));
    };
    let lower = value.trim().to_ascii_lowercase();
    match *canonical {
        "X-Frame-Options" if lower != "deny" && lower != "sameorigin" => {
            return Err("must be deny or sameorigin".to_owned());
        }
        "X-Content-Type-Options" if lower != "nosniff" => {
            return Err("must be nosniff".to_owned());
        }
        _ => {}
    }
    let value = HeaderValue::from_str(value.trim())
        .map_err(|_| "not a valid header value (visible ASCII only)".to_owned())?;
    Ok((HeaderName::from_static(canonical_lower(canonical)), value))
}

/// `HeaderName::from_static` wants lowercase.
fn canonical_lower(name: &str) -> &'static str {
    match name {
        "Content-Security-Policy" => "content-security-policy",
        "X-Frame-Options" => "x-frame-options",
        "X-Content-Type-Options" => "x-content-type-options",
        "X-XSS-Protection" => "x-xss-protection",
        _ => "strict-transport-security",
    }
}

fn parse_version(
    key: &str,
    value: Option<&str>,
    default: TlsVersion,
) -> Result<TlsVersion, Problem> {
    match value.map(str::trim) {
        None | Some("") => Ok(default),
        Some("TLS12") => Ok(TlsVersion::Tls12),
        Some("TLS13") => Ok(TlsVersion::Tls13),
        Some("TLS10" | "TLS11") => Err(problem(
            key,
            "TLS 1.0 and 1.1 are not offered (rustls speaks TLS 1.2 and 1.3 only); use TLS12 or TLS13"
                .to_owned(),
        )),
        Some(other) => Err(problem(
            key,
            format!("unknown TLS version {other:?}; use TLS12 or TLS13"),
        )),
    }
}

fn parse_client_auth(value: Option<&str>) -> Result<ClientAuth, Problem> {
    const KEY: &str = "tls_server_config.client_auth_type";
    match value.map(str::trim) {
        None | Some("" | "NoClientCert") => Ok(ClientAuth::NoClientCert),
        Some("VerifyClientCertIfGiven") => Ok(ClientAuth::VerifyClientCertIfGiven),
        Some("RequireAndVerifyClientCert") => Ok(ClientAuth::RequireAndVerifyClientCert),
        Some(unverified @ ("RequestClientCert" | "RequireAnyClientCert" | "RequireClientCert")) => {
            Err(problem(
                KEY,
                format!(
                    "{unverified} accepts client certificates without verifying them, which \
                     authenticates nobody; use RequireAndVerifyClientCert with client_ca_file"
                ),
            ))
        }
        Some(other) => Err(problem(
            KEY,
            format!(
                "unknown client_auth_type {other:?}; use NoClientCert, VerifyClientCertIfGiven or \
                 RequireAndVerifyClientCert"
            ),
        )),
    }
}

/// Validates `tls_server_config` and builds the rustls configuration; `None` after recording
/// problems.
fn validate_tls(
    tls: TlsServerConfigFile,
    base: &Path,
    problems: &mut Vec<Problem>,
) -> Option<TlsSettings> {
    let before = problems.len();
    let refused: [(&str, bool, &str); 6] = [
        (
            "cert",
            tls.cert.is_some(),
            "inline certificates are not supported; use cert_file",
        ),
        (
            "key",
            tls.key.is_some(),
            "inline keys are not supported; use key_file",
        ),
        (
            "client_ca",
            tls.client_ca.is_some(),
            "an inline client CA is not supported; use client_ca_file",
        ),
        (
            "client_allowed_sans",
            tls.client_allowed_sans.is_some(),
            "not supported by lastfm-monitor: any certificate client_ca_file signed is accepted; \
             use a dedicated client CA",
        ),
        (
            "cipher_suites",
            tls.cipher_suites.is_some(),
            "not supported: rustls' defaults apply (AEAD suites with forward secrecy only)",
        ),
        (
            "curve_preferences",
            tls.curve_preferences.is_some(),
            "not supported: rustls' defaults apply (X25519, P-256, P-384)",
        ),
    ];
    for (key, present, message) in refused {
        if present {
            problems.push(problem(
                &format!("tls_server_config.{key}"),
                message.to_owned(),
            ));
        }
    }
    let min = parse_version(
        "tls_server_config.min_version",
        tls.min_version.as_deref(),
        TlsVersion::Tls12,
    )
    .map_err(|p| problems.push(p))
    .ok();
    let max = parse_version(
        "tls_server_config.max_version",
        tls.max_version.as_deref(),
        TlsVersion::Tls13,
    )
    .map_err(|p| problems.push(p))
    .ok();
    if let (Some(min), Some(max)) = (min, max)
        && max < min
    {
        problems.push(problem(
            "tls_server_config.max_version",
            format!("{} is below min_version {}", max.as_str(), min.as_str()),
        ));
    }
    let client_auth = parse_client_auth(tls.client_auth_type.as_deref())
        .map_err(|p| problems.push(p))
        .ok();
    let client_ca_file = non_empty(tls.client_ca_file.as_deref()).map(|f| base.join(f));
    match (client_auth, &client_ca_file) {
        (Some(ClientAuth::NoClientCert), Some(_)) => problems.push(problem(
            "tls_server_config.client_ca_file",
            "a client CA is given without a client_auth_type; set client_auth_type: \
             RequireAndVerifyClientCert (mutual TLS) or VerifyClientCertIfGiven"
                .to_owned(),
        )),
        (
            Some(
                policy @ (ClientAuth::VerifyClientCertIfGiven
                | ClientAuth::RequireAndVerifyClientCert),
            ),
            None,
        ) => {
            problems.push(problem(
                "tls_server_config.client_ca_file",
                format!(
                    "{} needs client_ca_file to verify certificates against",
                    policy.as_str()
                ),
            ));
        }
        _ => {}
    }
    let cert_file = non_empty(tls.cert_file.as_deref()).map(|f| base.join(f));
    let key_file = non_empty(tls.key_file.as_deref()).map(|f| base.join(f));
    if cert_file.is_none() {
        problems.push(problem(
            "tls_server_config.cert_file",
            "missing: TLS needs the server certificate (PEM)".to_owned(),
        ));
    }
    if key_file.is_none() {
        problems.push(problem(
            "tls_server_config.key_file",
            "missing: TLS needs the server's private key (PEM)".to_owned(),
        ));
    }
    let certs = cert_file
        .as_deref()
        .and_then(|path| read_certs("tls_server_config.cert_file", path, problems));
    let key = key_file
        .as_deref()
        .and_then(|path| read_key(path, problems));
    let roots = client_ca_file
        .as_deref()
        .and_then(|path| read_roots(path, problems));
    if problems.len() > before {
        return None;
    }
    let (
        Some(min),
        Some(max),
        Some(client_auth),
        Some(certs),
        Some(key),
        Some(cert_file),
        Some(key_file),
    ) = (min, max, client_auth, certs, key, cert_file, key_file)
    else {
        return None;
    };
    let provider = Arc::new(ring::default_provider());
    let built = client_verifier(&provider, client_auth, roots).and_then(|verifier| {
        server_config(
            &provider,
            (min, max),
            verifier,
            certs,
            key,
            tls.prefer_server_cipher_suites.unwrap_or(true),
        )
    });
    match built {
        Ok(server_config) => Some(TlsSettings {
            cert_file,
            key_file,
            client_auth,
            client_ca_file,
            min_version: min,
            max_version: max,
            server_config,
        }),
        Err(p) => {
            problems.push(p);
            None
        }
    }
}

fn non_empty(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|v| !v.is_empty())
}

/// The client-certificate verifier for `policy`, `None` when no certificate is asked for.
fn client_verifier(
    provider: &Arc<CryptoProvider>,
    policy: ClientAuth,
    roots: Option<RootCertStore>,
) -> Result<Option<Arc<dyn ClientCertVerifier>>, Problem> {
    let Some(roots) = roots.filter(|_| policy != ClientAuth::NoClientCert) else {
        return Ok(None);
    };
    let builder =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider));
    let builder = if policy == ClientAuth::VerifyClientCertIfGiven {
        builder.allow_unauthenticated()
    } else {
        builder
    };
    builder.build().map(Some).map_err(|err| {
        problem(
            "tls_server_config.client_ca_file",
            format!("cannot verify client certificates with it: {err}"),
        )
    })
}

fn server_config(
    provider: &Arc<CryptoProvider>,
    (min, max): (TlsVersion, TlsVersion),
    verifier: Option<Arc<dyn ClientCertVerifier>>,
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    prefer_server_order: bool,
) -> Result<Arc<ServerConfig>, Problem> {
    let versions: Vec<&'static rustls::SupportedProtocolVersion> =
        [TlsVersion::Tls12, TlsVersion::Tls13]
            .into_iter()
            .filter(|v| (min..=max).contains(v))
            .map(TlsVersion::rustls)
            .collect();
    let builder = ServerConfig::builder_with_provider(Arc::clone(provider))
        .with_protocol_versions(&versions)
        .map_err(|err| problem("tls_server_config.min_version", format!("{err}")))?;
    let builder = match verifier {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|err| {
        problem(
            "tls_server_config.key_file",
            format!("cannot be used with cert_file (does the key match the certificate?): {err}"),
        )
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.ignore_client_order = prefer_server_order;
    Ok(Arc::new(config))
}

fn read_file(key: &str, path: &Path, problems: &mut Vec<Problem>) -> Option<Vec<u8>> {
    match std::fs::read(path) {
        Ok(bytes) => Some(bytes),
        Err(err) => {
            problems.push(problem(
                key,
                format!("cannot read {}: {err}", path.display()),
            ));
            None
        }
    }
}

fn read_certs(
    key: &str,
    path: &Path,
    problems: &mut Vec<Problem>,
) -> Option<Vec<CertificateDer<'static>>> {
    let pem = read_file(key, path, problems)?;
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem).collect();
    match certs {
        Ok(certs) if !certs.is_empty() => Some(certs),
        Ok(_) => {
            problems.push(problem(
                key,
                format!("{} holds no PEM certificate", path.display()),
            ));
            None
        }
        Err(err) => {
            problems.push(problem(
                key,
                format!("{} is not valid PEM: {err}", path.display()),
            ));
            None
        }
    }
}

fn read_key(path: &Path, problems: &mut Vec<Problem>) -> Option<PrivateKeyDer<'static>> {
    const KEY: &str = "tls_server_config.key_file";
    let pem = read_file(KEY, path, problems)?;
    match PrivateKeyDer::from_pem_slice(&pem) {
        Ok(key) => Some(key),
        Err(_) => {
            // The error could quote key material: describe, never echo.
            problems.push(problem(
                KEY,
                format!(
                    "{} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
                    path.display()
                ),
            ));
            None
        }
    }
}

fn read_roots(path: &Path, problems: &mut Vec<Problem>) -> Option<RootCertStore> {
    const KEY: &str = "tls_server_config.client_ca_file";
    let certs = read_certs(KEY, path, problems)?;
    let mut roots = RootCertStore::empty();
    for cert in certs {
        if let Err(err) = roots.add(cert) {
            problems.push(problem(
                KEY,
                format!(
                    "{} holds a certificate that cannot be a CA: {err}",
                    path.display()
                ),
            ));
            return None;
        }
    }
    Some(roots)
}

/// Checks `Authorization: Basic` against the configured users, caching successes.
pub struct BasicAuth {
    /// User name → bcrypt hash, from the web config.
    users: BTreeMap<String, PasswordHash>,
    /// Checked for unknown users, so a miss costs what a hit costs.
    dummy: PasswordHash,
    /// Per user, SHA-256(hash, password) of the last password that verified: a scrape every
    /// second must not pay bcrypt every time. Bounded by the number of configured users.
    verified: Mutex<HashMap<String, [u8; 32]>>,
    /// How many bcrypt verifications ran (the cache's tests read it).
    slow_checks: AtomicU64,
}

impl fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicAuth")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl BasicAuth {
    /// A checker for `users`; `None` when there are none (no authentication).
    pub fn from_users(users: &BTreeMap<String, PasswordHash>) -> Option<Self> {
        let cost = users.values().map(|h| h.cost).max()?;
        // A fixed salt is fine: the dummy hash protects timing, not a password.
        let dummy = bcrypt::hash_with_salt(b"lastfm-monitor: no such user", cost, [7; 16])
            .expect("the cost comes from a parsed hash, checked to be within 4..=31");
        let dummy = PasswordHash {
            hash: dummy.to_string().into(),
            cost,
        };
        Some(Self {
            users: users.clone(),
            dummy,
            verified: Mutex::new(HashMap::new()),
            slow_checks: AtomicU64::new(0),
        })
    }

    /// Whether the `Authorization` header carries valid credentials.
    pub async fn is_authorized(&self, authorization: Option<&HeaderValue>) -> bool {
        let Some((user, password)) = authorization.and_then(parse_basic) else {
            return false;
        };
        let known = self.users.get(&user);
        let hash = known.unwrap_or(&self.dummy).clone();
        let digest = cache_digest(&hash, &password);
        if known.is_some() && self.is_cached(&user, &digest) {
            return true;
        }
        self.slow_checks.fetch_add(1, Ordering::Relaxed);
        let verified = tokio::task::spawn_blocking(move || {
            bcrypt::verify(password.as_bytes(), &hash.hash).unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        let ok = verified && known.is_some();
        if ok {
            self.lock().insert(user, digest);
        }
        ok
    }

    /// How many bcrypt verifications have run.
    pub fn slow_checks(&self) -> u64 {
        self.slow_checks.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, [u8; 32]>> {
        // Only a cache: a panic elsewhere cannot make it wrong, at worst cold.
        self.verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn is_cached(&self, user: &str, digest: &[u8; 32]) -> bool {
        self.lock()
            .get(user)
            .is_some_and(|cached| bool::from(cached.ct_eq(digest)))
    }
}

fn cache_digest(hash: &PasswordHash, password: &str) -> [u8; 32] {
    // The bcrypt hash carries a random salt, so the cached digest is salted too.
    Sha256::new()
        .chain_update(hash.hash.as_bytes())
        .chain_update([0])
        .chain_update(password.as_bytes())
        .finalize()
        .into()
}

/// `Basic base64(user:password)` → (user, password).
fn parse_basic(value: &HeaderValue) -> Option<(String, String)> {
    let text = value.to_str().ok()?.trim();
    let (scheme, encoded) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let text = include_str!("../../docs/web-config.yml");
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

//! `tls_server_config`: the validated TLS settings ([`TlsSettings`], [`ClientAuth`],
//! [`TlsVersion`]) and the rustls server configuration built from them at load, with the
//! certificate, key and client CA read, parsed and matched before any port is bound
//! (README.md, TLS and basic auth).
//!
//! rustls through `tokio-rustls`, on the ring provider that reqwest also uses, so there is one
//! crypto backend. rustls has no TLS 1.0/1.1, so `min_version` is 1.2 or 1.3 (default 1.2, as
//! in exporter-toolkit); ALPN offers `http/1.1`. Policies that ask for a client certificate
//! without verifying it are refused: they authenticate nobody.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::{CryptoProvider, ring};
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::server::danger::ClientCertVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};

use crate::config::problem::Problem;

use super::file::TlsServerConfigFile;

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

fn parse_version(
    key: &str,
    value: Option<&str>,
    default: TlsVersion,
) -> Result<TlsVersion, Problem> {
    match value.map(str::trim) {
        None | Some("") => Ok(default),
        Some("TLS12") => Ok(TlsVersion::Tls12),
        Some("TLS13") => Ok(TlsVersion::Tls13),
        Some("TLS10" | "TLS11") => Err(Problem::of_key(
            key,
            "TLS 1.0 and 1.1 are not offered (rustls speaks TLS 1.2 and 1.3 only); use TLS12 or TLS13"
                .to_owned(),
        )),
        Some(other) => Err(Problem::of_key(
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
            Err(Problem::of_key(
                KEY,
                format!(
                    "{unverified} accepts client certificates without verifying them, which \
                     authenticates nobody; use RequireAndVerifyClientCert with client_ca_file"
                ),
            ))
        }
        Some(other) => Err(Problem::of_key(
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
pub(super) fn validate_tls(
    tls: TlsServerConfigFile,
    base: &Path,
    problems: &mut Vec<Problem>,
) -> Option<TlsSettings> {
    let before = problems.len();
    refuse_unsupported(&tls, problems);
    let (min, max) = versions(&tls, problems);
    let (client_auth, client_ca_file) = client_auth(&tls, base, problems);
    let cert_file = non_empty(tls.cert_file.as_deref()).map(|f| base.join(f));
    let key_file = non_empty(tls.key_file.as_deref()).map(|f| base.join(f));
    if cert_file.is_none() {
        problems.push(Problem::of_key(
            "tls_server_config.cert_file",
            "missing: TLS needs the server certificate (PEM)".to_owned(),
        ));
    }
    if key_file.is_none() {
        problems.push(Problem::of_key(
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

/// The exporter-toolkit keys this build refuses by name: a security setting silently dropped
/// is worse than a refused start.
fn refuse_unsupported(tls: &TlsServerConfigFile, problems: &mut Vec<Problem>) {
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
            problems.push(Problem::of_key(
                &format!("tls_server_config.{key}"),
                message.to_owned(),
            ));
        }
    }
}

/// `min_version` and `max_version`, in order; `None` for one that is wrong.
fn versions(
    tls: &TlsServerConfigFile,
    problems: &mut Vec<Problem>,
) -> (Option<TlsVersion>, Option<TlsVersion>) {
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
        problems.push(Problem::of_key(
            "tls_server_config.max_version",
            format!("{} is below min_version {}", max.as_str(), min.as_str()),
        ));
    }
    (min, max)
}

/// `client_auth_type` and `client_ca_file`, which need each other; `None` for a wrong policy.
fn client_auth(
    tls: &TlsServerConfigFile,
    base: &Path,
    problems: &mut Vec<Problem>,
) -> (Option<ClientAuth>, Option<PathBuf>) {
    let client_auth = parse_client_auth(tls.client_auth_type.as_deref())
        .map_err(|p| problems.push(p))
        .ok();
    let client_ca_file = non_empty(tls.client_ca_file.as_deref()).map(|f| base.join(f));
    match (client_auth, &client_ca_file) {
        (Some(ClientAuth::NoClientCert), Some(_)) => problems.push(Problem::of_key(
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
            problems.push(Problem::of_key(
                "tls_server_config.client_ca_file",
                format!(
                    "{} needs client_ca_file to verify certificates against",
                    policy.as_str()
                ),
            ));
        }
        (Some(ClientAuth::NoClientCert), None)
        | (
            Some(ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert),
            Some(_),
        )
        | (None, _) => {}
    }
    (client_auth, client_ca_file)
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
        Problem::of_key(
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
        .map_err(|err| Problem::of_key("tls_server_config.min_version", format!("{err}")))?;
    let builder = match verifier {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|err| {
        Problem::of_key(
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
            problems.push(Problem::of_key(
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
            problems.push(Problem::of_key(
                key,
                format!("{} holds no PEM certificate", path.display()),
            ));
            None
        }
        Err(err) => {
            problems.push(Problem::of_key(
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
            problems.push(Problem::of_key(
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
            problems.push(Problem::of_key(
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

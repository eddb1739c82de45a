//! The probes' TLS client configuration: reqwest's own, plus two observers of the handshake.
//!
//! reqwest 0.13 builds its rustls config around `rustls-platform-verifier` (on Linux: the system's
//! CA bundle through rustls-native-certs, checked by WebPKI). [`client_config`] builds the same
//! config itself, because only then can it see into the handshake, and hands it to reqwest as a
//! preconfigured backend:
//!
//! - [`RecordingVerifier`] wraps that same platform verifier and returns its verdicts unchanged;
//!   on the way it records the earliest `notAfter` of the presented chain (also, and above all,
//!   when the verdict is "expired") and the negotiated version (rustls checks the server's
//!   handshake signature through the method of that version).
//! - [`HandshakeStore`] is the session store; rustls consults it while it builds the ClientHello,
//!   which is the moment the TCP connection is up and the TLS phase begins. It keeps no tickets:
//!   a resumed session presents no certificate, so an expired or replaced certificate would go
//!   unseen for the lifetime of a ticket; every fresh connection makes a full handshake.
//!
//! [`reason_of`] turns a handshake error into its [`Reason`].

use std::sync::Arc;

use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::client::{
    ClientSessionMemoryCache, ClientSessionStore, Resumption, Tls12ClientSessionValue,
    Tls12Resumption, Tls13ClientSessionValue,
};
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, Error, NamedGroup,
    SignatureScheme,
};
use x509_cert::der::{Reader as _, SliceReader};
use x509_cert::time::Validity;

use super::{Reason, progress};

/// How many servers' key-exchange groups the store remembers (the targets of one daemon).
const KX_HINTS: usize = 32;

/// The rustls config of the probes: reqwest's defaults (TLS 1.2 and 1.3 on the process's crypto
/// provider, SNI, the platform trust store plus `extra_roots`), ALPN `http/1.1`, and the two
/// observers. `extra_roots` is empty in the daemon; tests add the CA they generate.
pub(crate) fn client_config(
    extra_roots: &[CertificateDer<'static>],
) -> Result<ClientConfig, Error> {
    let provider = CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(tokio_rustls::rustls::crypto::ring::default_provider()));
    let platform = if extra_roots.is_empty() {
        rustls_platform_verifier::Verifier::new(provider.clone())?
    } else {
        rustls_platform_verifier::Verifier::new_with_extra_roots(
            extra_roots.iter().cloned(),
            provider.clone(),
        )?
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(RecordingVerifier { inner: platform }))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = Resumption::store(Arc::new(HandshakeStore {
        kx_hints: ClientSessionMemoryCache::new(KX_HINTS),
    }))
    .tls12_resumption(Tls12Resumption::Disabled);
    Ok(config)
}

/// The reason of a handshake that failed with `err`.
#[expect(
    clippy::wildcard_enum_match_arm,
    reason = "rustls' Error and CertificateError are non_exhaustive: a new variant is a handshake \
              or trust failure of a kind we do not tell apart"
)]
pub(crate) fn reason_of(err: &Error) -> Reason {
    match err {
        Error::InvalidCertificate(cert) => match cert {
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                Reason::CertificateExpired
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                Reason::CertificateNotYetValid
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                Reason::HostnameMismatch
            }
            // UnknownIssuer, BadSignature, BadEncoding, Revoked, an unsupported algorithm…: the
            // chain does not lead to a root we trust.
            _ => Reason::CertificateUntrusted,
        },
        // Alerts, protocol violations, no common version or cipher suite.
        _ => Reason::HandshakeFailed,
    }
}

/// The platform verifier, unchanged in its verdicts, recording what the server presented.
#[derive(Debug)]
struct RecordingVerifier {
    inner: rustls_platform_verifier::Verifier,
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        // Before the verdict: an expired chain is when an operator wants the date most.
        progress::certificate_seen(earliest_not_after(
            std::iter::once(end_entity).chain(intermediates),
        ));
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        progress::version_negotiated("TLSv1.2");
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        progress::version_negotiated("TLSv1.3");
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.inner.requires_raw_public_keys()
    }

    fn root_hint_subjects(&self) -> Option<&[DistinguishedName]> {
        self.inner.root_hint_subjects()
    }
}

/// The earliest `notAfter` of `chain`, Unix seconds; `None` when no certificate parses.
fn earliest_not_after<'a>(chain: impl Iterator<Item = &'a CertificateDer<'a>>) -> Option<i64> {
    chain.filter_map(|cert| not_after(cert)).min()
}

/// A certificate's `notAfter`, read without decoding (or allocating for) the rest of it:
/// `Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL, serialNumber,
/// signature, issuer, validity, … }, … }` (RFC 5280 §4.1).
fn not_after(der: &[u8]) -> Option<i64> {
    /// The tag of `[0] EXPLICIT` (context-specific, constructed, number 0): the version field.
    const VERSION_TAG: u8 = 0xa0;
    let mut reader = SliceReader::new(der).ok()?;
    let validity = reader
        .sequence(|cert| {
            let validity = cert.sequence(|tbs| {
                if tbs.peek_byte() == Some(VERSION_TAG) {
                    tbs.tlv_bytes()?;
                }
                tbs.tlv_bytes()?; // serialNumber
                tbs.tlv_bytes()?; // signature
                tbs.tlv_bytes()?; // issuer
                let validity: Validity = tbs.decode()?;
                let rest = tbs.remaining_len();
                tbs.drain(rest)?;
                Ok::<_, x509_cert::der::Error>(validity)
            })?;
            let rest = cert.remaining_len();
            cert.drain(rest)?;
            Ok::<_, x509_cert::der::Error>(validity)
        })
        .ok()?;
    i64::try_from(validity.not_after.to_unix_duration().as_secs()).ok()
}

/// The session store: marks the start of the TLS phase when rustls consults it for the
/// ClientHello, remembers each server's key-exchange group (it saves a HelloRetryRequest round
/// trip), and keeps no session to resume (the module docs say why).
#[derive(Debug)]
struct HandshakeStore {
    kx_hints: ClientSessionMemoryCache,
}

impl ClientSessionStore for HandshakeStore {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: NamedGroup) {
        self.kx_hints.set_kx_hint(server_name, group);
    }

    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<NamedGroup> {
        progress::handshaking();
        self.kx_hints.kx_hint(server_name)
    }

    fn set_tls12_session(&self, _: ServerName<'static>, _: Tls12ClientSessionValue) {}

    fn tls12_session(&self, _: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        progress::handshaking();
        None
    }

    fn remove_tls12_session(&self, _: &ServerName<'static>) {}

    fn insert_tls13_ticket(&self, _: ServerName<'static>, _: Tls13ClientSessionValue) {}

    fn take_tls13_ticket(&self, _: &ServerName<'static>) -> Option<Tls13ClientSessionValue> {
        progress::handshaking();
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_errors_map_to_tls_reasons() {
        let cases = [
            (CertificateError::Expired, Reason::CertificateExpired),
            (
                CertificateError::NotValidYet,
                Reason::CertificateNotYetValid,
            ),
            (
                CertificateError::UnknownIssuer,
                Reason::CertificateUntrusted,
            ),
            (CertificateError::BadSignature, Reason::CertificateUntrusted),
            (CertificateError::NotValidForName, Reason::HostnameMismatch),
        ];
        for (cert, reason) in cases {
            assert_eq!(reason_of(&Error::InvalidCertificate(cert)), reason);
        }
        assert_eq!(
            reason_of(&Error::AlertReceived(
                tokio_rustls::rustls::AlertDescription::HandshakeFailure
            )),
            Reason::HandshakeFailed
        );
    }

    #[test]
    fn garbage_has_no_not_after() {
        assert_eq!(not_after(b"not a certificate"), None);
        assert_eq!(earliest_not_after(std::iter::empty()), None);
    }
}

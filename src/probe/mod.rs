//! One probe run as recorded facts, and the seam through which runs are made.
//!
//! A run never fails with `Err`: whatever happens on the wire (a timeout, a refused connection, a
//! body over the cap) is a [`ProbeOutcome`], data for the pure classifier. The [`Prober`] trait is
//! the seam between scheduling and I/O: the daemon uses [`http::HttpProber`], tests can use a fake.
//!
//! Inside [`http::HttpProber`]: `http` sends the request and converts every error (the one place);
//! `progress` is the per-run record of which phase is in progress and when each began; `dns` is
//! the system resolver that keeps its `EAI_*` code; `tls` is the rustls config with the recording
//! verifier and the session store that marks the handshake's start.

mod dns;
pub mod http;
mod progress;
pub mod sign;
mod tls;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::config::closed_set::closed_set;

closed_set! {
    /// Where a run that got no complete response broke: the step of the exchange that failed.
    ///
    /// A closed set, exported as the `phase` label of `lastfm_probe_failures_total`: it is what
    /// tells a broken resolver or an egress proxy's certificate (our side of the wire) from a
    /// Last.fm edge that accepts and then drops (theirs).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub enum Phase {
        /// Resolving the target's host name.
        Dns => "dns",
        /// Opening the TCP connection.
        Connect => "connect",
        /// The TLS handshake, certificate verification included.
        Tls => "tls",
        /// The request written, waiting for the response headers.
        Request => "request",
        /// Reading the response body.
        Body => "body",
    }
}

impl Phase {
    /// Trace and status page text.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Dns => "DNS",
            Self::Connect => "connect",
            Self::Tls => "TLS",
            Self::Request => "request",
            Self::Body => "body",
        }
    }

    /// The reasons this phase can fail with, the `reason` label values under it.
    pub fn reasons(self) -> &'static [Reason] {
        match self {
            Self::Dns => &[
                Reason::Nxdomain,
                Reason::NoAddress,
                Reason::ResolverFailure,
                Reason::Timeout,
                Reason::LocalResources,
            ],
            Self::Connect => &[
                Reason::Refused,
                Reason::Unreachable,
                Reason::Reset,
                Reason::Timeout,
                Reason::LocalResources,
            ],
            Self::Tls => &[
                Reason::CertificateExpired,
                Reason::CertificateNotYetValid,
                Reason::CertificateUntrusted,
                Reason::HostnameMismatch,
                Reason::HandshakeFailed,
                Reason::Timeout,
            ],
            Self::Request => &[Reason::Reset, Reason::Timeout, Reason::ProtocolError],
            Self::Body => &[
                Reason::Interrupted,
                Reason::Timeout,
                Reason::TooLarge,
                Reason::ProtocolError,
            ],
        }
    }
}

closed_set! {
    /// Why a phase failed. Which reasons go with which phase is [`Phase::reasons`].
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub enum Reason {
        /// DNS: the name does not exist (NXDOMAIN).
        Nxdomain => "nxdomain",
        /// DNS: the name exists but has no address record.
        NoAddress => "no_address",
        /// DNS: the resolver failed or could not be reached (SERVFAIL, refused, gave up).
        ResolverFailure => "resolver_failure",
        /// The run's deadline passed during this phase.
        Timeout => "timeout",
        /// Connect: the host answered with a reset (nothing listens on the port).
        Refused => "refused",
        /// Connect: no route to the host or its network.
        Unreachable => "unreachable",
        /// The peer reset or closed the connection.
        Reset => "reset",
        /// TLS: the certificate's `notAfter` has passed.
        CertificateExpired => "certificate_expired",
        /// TLS: the certificate's `notBefore` is still to come (or our clock is wrong).
        CertificateNotYetValid => "certificate_not_yet_valid",
        /// TLS: the chain does not lead to a trusted root (unknown CA, self-signed, bad
        /// signature).
        CertificateUntrusted => "certificate_untrusted",
        /// TLS: the certificate is valid but not for this host name.
        HostnameMismatch => "hostname_mismatch",
        /// TLS: the handshake failed otherwise (protocol alert, no common cipher, reset
        /// mid-handshake).
        HandshakeFailed => "handshake_failed",
        /// Body: the body broke off before its end (reset, or a FIN before the declared
        /// `Content-Length`).
        Interrupted => "interrupted",
        /// Body: the body grew past `max_body_bytes`; reading stopped there.
        TooLarge => "too_large",
        /// DNS or connect: this host ran out of descriptors (EMFILE, ENFILE), memory (ENOMEM,
        /// ENOBUFS) or ephemeral ports (EADDRNOTAVAIL). Our fault whatever the references say.
        LocalResources => "local_resources",
        /// Request or body: the peer answered, but not in HTTP/1.1 (a header over the size
        /// limit, a conflicting `Content-Length`, a NUL in a header, an HTTP/0.9 answer, a
        /// broken chunked encoding). Theirs, never ours: the path to them worked.
        ProtocolError => "protocol_error",
    }
}

/// Why no complete response was received: the phase that broke and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TransportFailure {
    /// Where the exchange broke.
    pub phase: Phase,
    /// Why.
    pub reason: Reason,
}

impl TransportFailure {
    /// A failure of `phase` for `reason`.
    pub const fn new(phase: Phase, reason: Reason) -> Self {
        Self { phase, reason }
    }

    /// The deadline passed in `phase`.
    pub const fn timeout(phase: Phase) -> Self {
        Self::new(phase, Reason::Timeout)
    }

    /// Every (phase, reason) pair, in label order: the series that exist from start-up.
    pub fn all() -> impl Iterator<Item = Self> {
        Phase::ALL.into_iter().flat_map(|phase| {
            phase
                .reasons()
                .iter()
                .map(move |&reason| Self::new(phase, reason))
        })
    }

    /// Whether the run's deadline passed (the `timeout` outcome).
    pub fn is_timeout(self) -> bool {
        self.reason == Reason::Timeout
    }

    /// Whether the failure came before a byte of the request reached the server: our resolver,
    /// our route, a TLS handshake that never completed (a timeout in these phases included).
    /// Only such failures can be a broken local network's; anything after the request was
    /// written, a timeout included, means the path to the server worked (README.md,
    /// Classification: blame).
    pub fn before_request(self) -> bool {
        matches!(self.phase, Phase::Dns | Phase::Connect | Phase::Tls)
    }

    /// Whether the failure came before a connection was there: resolving or connecting, the
    /// phases that need this host's descriptors, memory and ports.
    pub fn before_connection(self) -> bool {
        matches!(self.phase, Phase::Dns | Phase::Connect)
    }

    /// Whether this host ran out of descriptors, memory or ports: blamed `local` at once.
    pub fn is_local_resources(self) -> bool {
        self.reason == Reason::LocalResources
    }

    /// Trace and status page text, in words: `host` is the target's host name.
    pub fn describe(self, host: &str) -> String {
        let what = match (self.phase, self.reason) {
            (Phase::Dns, Reason::Nxdomain) => format!("{host} does not exist (NXDOMAIN)"),
            (Phase::Dns, Reason::NoAddress) => format!("{host} has no address record"),
            (Phase::Dns, Reason::ResolverFailure) => {
                format!("the resolver failed to answer for {host}")
            }
            (Phase::Dns, Reason::Timeout) => {
                format!("the deadline passed while resolving {host}")
            }
            (Phase::Dns, Reason::LocalResources) => {
                format!("this host ran out of descriptors, memory or ports while resolving {host}")
            }
            (Phase::Connect, Reason::Refused) => format!("{host} refused the connection"),
            (Phase::Connect, Reason::Unreachable) => format!("no route to {host}"),
            (Phase::Connect, Reason::Reset) => format!("{host} reset the connection"),
            (Phase::Connect, Reason::Timeout) => {
                format!("the deadline passed while connecting to {host}")
            }
            (Phase::Connect, Reason::LocalResources) => format!(
                "this host ran out of descriptors, memory or ephemeral ports to connect to {host}"
            ),
            (Phase::Tls, Reason::CertificateExpired) => {
                format!("the certificate of {host} has expired")
            }
            (Phase::Tls, Reason::CertificateNotYetValid) => {
                format!("the certificate of {host} is not valid yet (or our clock is wrong)")
            }
            (Phase::Tls, Reason::CertificateUntrusted) => {
                format!("the certificate of {host} is not from a trusted CA")
            }
            (Phase::Tls, Reason::HostnameMismatch) => {
                format!("the certificate presented is not for {host}")
            }
            (Phase::Tls, Reason::HandshakeFailed) => {
                format!("the TLS handshake with {host} failed")
            }
            (Phase::Tls, Reason::Timeout) => {
                format!("the deadline passed during the TLS handshake with {host}")
            }
            (Phase::Request, Reason::Timeout) => {
                "the deadline passed waiting for the response headers".to_owned()
            }
            (Phase::Request, Reason::ProtocolError) => {
                format!("{host} answered with response headers that are not valid HTTP/1.1")
            }
            (Phase::Request, _) => {
                "the connection was reset or closed before the response headers".to_owned()
            }
            (Phase::Body, Reason::Timeout) => {
                "the deadline passed while reading the body".to_owned()
            }
            (Phase::Body, Reason::TooLarge) => {
                "the body exceeded max_body_bytes; reading stopped there".to_owned()
            }
            (Phase::Body, Reason::ProtocolError) => {
                "the body's framing is not valid HTTP/1.1 (a broken chunked encoding)".to_owned()
            }
            (Phase::Body, _) => "the response body broke off before its end".to_owned(),
            (phase, reason) => format!("{} failed ({})", phase.describe(), reason.as_label()),
        };
        format!("{}: {what}", self.phase.describe())
    }
}

/// Where a run's time went, per step of the exchange, like blackbox_exporter's
/// `probe_http_duration_seconds`. A step a kept connection skipped (DNS, connect, TLS) or one the
/// run never reached is zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PhaseTimings {
    /// Resolving the host name.
    pub dns: Duration,
    /// Opening the TCP connection.
    pub connect: Duration,
    /// The TLS handshake.
    pub tls: Duration,
    /// From the request being sent on a ready connection to the response headers.
    pub first_byte: Duration,
    /// Reading the body.
    pub body: Duration,
}

/// The `phase` label values of `lastfm_probe_phase_duration_seconds`, in order.
pub const TIMED_PHASES: [&str; 5] = ["dns", "connect", "tls", "first_byte", "body"];

impl PhaseTimings {
    /// The durations in the order of [`TIMED_PHASES`].
    pub fn as_array(&self) -> [Duration; 5] {
        [self.dns, self.connect, self.tls, self.first_byte, self.body]
    }
}

/// What the last TLS handshake of a run showed, when the run made one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFacts {
    /// The negotiated protocol version, e.g. `TLSv1.3`; [`TlsFacts::UNKNOWN_VERSION`] when the
    /// handshake failed on the certificate, before the version showed.
    pub version: &'static str,
    /// The earliest `notAfter` of the chain the server presented, Unix seconds; `None` when no
    /// certificate could be parsed.
    pub not_after_unix: Option<i64>,
}

impl TlsFacts {
    /// The version of a handshake that failed before the server's signature was checked.
    pub const UNKNOWN_VERSION: &'static str = "unknown";
}

/// A complete HTTP response, as received.
#[derive(Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code, any value 100–999 (never trust it to be a known one).
    pub status: u16,
    /// `Content-Type`, when sent.
    pub content_type: Option<String>,
    /// `Retry-After`, raw, when sent.
    pub retry_after: Option<String>,
    /// Response headers for debug traces (names lowercased), capped in count.
    pub headers: Vec<(String, String)>,
    /// The body, at most `max_body_bytes`.
    pub body: Vec<u8>,
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("content_type", &self.content_type)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// Everything observed during one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeOutcome {
    /// From sending the request to the end of the body (or the failure).
    pub elapsed: Duration,
    /// The response, or why there was none.
    pub result: Result<Response, TransportFailure>,
    /// The status of the response headers whenever they arrived, also when the body then broke
    /// off, stalled or grew too large: the contract records the status whenever there was one.
    pub http_status: Option<u16>,
    /// Where the time went.
    pub timings: PhaseTimings,
    /// The TLS handshake, when this run made one (not for plain http, nor on a kept connection).
    pub tls: Option<TlsFacts>,
}

/// What a debug trace shows of the request (secrets already redacted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestTrace {
    /// `POST` or `GET`.
    pub http_method: &'static str,
    /// The URL, with any secret query parameter redacted.
    pub url: String,
    /// Parameters as sent, secrets replaced by the redaction marker.
    pub params: Vec<(String, String)>,
}

/// A recorded run: facts plus the redacted request that produced them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The request, redacted.
    pub request: RequestTrace,
    /// What came back.
    pub outcome: ProbeOutcome,
}

/// The name of an OS error that means this host ran out of resources: descriptors (EMFILE,
/// ENFILE), memory (ENOMEM, ENOBUFS) or ephemeral ports (EADDRNOTAVAIL); `None` for any other.
/// Read from the typed error code, never from an error's text.
pub fn local_resources_errno(code: i32) -> Option<&'static str> {
    use rustix::io::Errno;
    let errno = Errno::from_raw_os_error(code);
    [
        (Errno::MFILE, "EMFILE"),
        (Errno::NFILE, "ENFILE"),
        (Errno::NOMEM, "ENOMEM"),
        (Errno::NOBUFS, "ENOBUFS"),
        (Errno::ADDRNOTAVAIL, "EADDRNOTAVAIL"),
    ]
    .into_iter()
    .find_map(|(known, name)| (known == errno).then_some(name))
}

/// Boxed future returned by [`Prober::probe`], so the trait stays object-safe.
pub type ProbeFuture<'a> = Pin<Box<dyn Future<Output = Recorded> + Send + 'a>>;

/// What a reference check saw: any HTTP status, or where the exchange broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reach {
    /// From sending the request to the response headers (or the failure).
    pub elapsed: Duration,
    /// The status of whatever answered, or why nothing did.
    pub result: Result<u16, TransportFailure>,
}

/// Boxed future returned by [`Prober::reach`].
pub type ReachFuture<'a> = Pin<Box<dyn Future<Output = Reach> + Send + 'a>>;

/// Makes one attempt of a probe. Implementations must return within `deadline` (plus a little)
/// and never retry.
pub trait Prober: Send + Sync + fmt::Debug {
    /// One attempt of `probe` against `target`.
    fn probe<'a>(
        &'a self,
        target: &'a crate::config::Target,
        probe: &'a crate::config::Probe,
    ) -> ProbeFuture<'a>;

    /// One plain `GET` of a reference (not Last.fm), under `timeout`: any HTTP answer counts.
    /// Probers that do not speak HTTP (the tests' fakes) see every reference answer 200.
    fn reach<'a>(&'a self, url: &'a url::Url, timeout: Duration) -> ReachFuture<'a> {
        let _ = (url, timeout);
        Box::pin(std::future::ready(Reach {
            elapsed: Duration::ZERO,
            result: Ok(200),
        }))
    }
}

//! One probe attempt over HTTP: build the request, send it once, read a capped body, record facts.
//!
//! Everything a hostile or broken upstream can do ends as a [`ProbeOutcome`], never an `Err` and
//! never a hang: the attempt runs under the probe's deadline (tokio timeout *and* reqwest's own
//! timeouts), redirects are not followed (a `Location` could carry the key elsewhere), no
//! `Accept-Encoding` is sent (no decompression bombs), and the body is read chunk by chunk up to
//! `max_body_bytes`. reqwest errors print their URL, which holds the key for GET probes, so this
//! module is the single place they are converted (`failure_of`), and only after `without_url`.
//!
//! A failure is a phase and a reason. The phase is what the run's progress record (`progress.rs`)
//! says was in progress when the error or the deadline came; the reason is read from the error's
//! source chain: the resolver's `DnsFailure`, a `rustls::Error` (see `tls.rs`), an OS error
//! of the TCP connect (its errno tells a host out of descriptors, memory or ports), hyper's
//! parse error for a response head that is not HTTP/1.1. The clients are reqwest's, with three
//! parts of our own plugged in: the system resolver that keeps its `EAI_*` code (`dns.rs`), a
//! connector layer that marks when a connection is asked for and ready, and the TLS config with
//! its observers (`tls.rs`).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use reqwest::redirect::Policy;
use tokio::time::Instant;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::CertificateDer;

use super::dns::{DnsFailure, SystemResolver};
use super::progress::{self, MarkConnect};
use super::{
    Phase, ProbeFuture, ProbeOutcome, Prober, Reach, ReachFuture, Reason, Recorded, RequestTrace,
    Response, TransportFailure, sign, tls,
};
use crate::config::secret::REDACTED;
use crate::config::{Format, HttpMethod};
use crate::config::{Probe, Target};

/// The User-Agent Last.fm asks for: who we are and where to read about us.
pub const USER_AGENT: &str = concat!(
    "lastfm-monitor/",
    env!("CARGO_PKG_VERSION"),
    " (+https://github.com/lastfm-monitor/lastfm-monitor)"
);

/// Connect timeout cap; the probe's own deadline is shorter when it is.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a target with `reuse_connections` keeps an idle connection. Shorter than the common
/// server keep-alive timeouts (nginx 75 s, most CDNs 60 s or more), so a connection is dropped by
/// us before the server closes it under a request; probes further apart get a fresh connection
/// every run anyway.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How many response headers a debug trace keeps.
const MAX_TRACE_HEADERS: usize = 32;
/// How long a header value a debug trace keeps.
const MAX_TRACE_HEADER_VALUE: usize = 256;
/// Body buffer to start with when the response has no `Content-Length`.
const INITIAL_BODY_CAPACITY: usize = 8 * 1024;
/// Largest body buffer reserved up front, whatever `Content-Length` claims.
const MAX_INITIAL_BODY_CAPACITY: usize = 256 * 1024;
/// Parameters whose values never appear in a trace.
const SECRET_PARAMS: [&str; 3] = ["api_key", "sk", "api_sig"];

/// Probes over real HTTP. By default every run opens a fresh connection, so connect and TLS
/// failures show on every run; a target with `reuse_connections` keeps them open between runs,
/// which costs less CPU per run and sees what a keep-alive client sees.
#[derive(Debug, Clone)]
pub struct HttpProber {
    /// For `https` targets: refuses any plain-http hop.
    https: reqwest::Client,
    /// For loopback `http` targets (the simulator, tests); config refuses other plain-http hosts.
    loopback: OnceLock<reqwest::Client>,
    /// The same two with a connection pool, for targets with `reuse_connections`.
    reused_https: OnceLock<reqwest::Client>,
    reused_loopback: OnceLock<reqwest::Client>,
    /// The TLS config every client gets a copy of: the copies share one verifier and its trust
    /// store, so the lazily built clients cost no second parse of the system's CA bundle.
    tls: rustls::ClientConfig,
}

/// Why the HTTP clients could not be built.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The TLS configuration (the trust store, the crypto provider's versions).
    #[error("cannot build the TLS configuration")]
    Tls(#[source] rustls::Error),
    /// reqwest refused the client configuration.
    #[error("cannot build the HTTP client")]
    Client(#[source] reqwest::Error),
}

/// Whether a client keeps its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Connections {
    Fresh,
    Reused,
}

impl HttpProber {
    /// Builds the client of `https` targets; fails only if the TLS backend cannot initialise.
    /// The others are built on first use (most configurations need none of them); they share
    /// the first one's certificate verifier and trust store, so each costs only its own pool
    /// and connector.
    pub fn try_new() -> Result<Self, InitError> {
        Self::try_with_extra_roots(&[])
    }

    /// As [`HttpProber::try_new`], trusting `roots` besides the system's CAs (tests trust the CA
    /// they generate this way).
    pub fn try_with_extra_roots(roots: &[CertificateDer<'static>]) -> Result<Self, InitError> {
        // reqwest is built without a crypto provider of its own and takes the process default:
        // ring, the one the endpoints' TLS uses (Cargo.toml says why). A second call finds it
        // installed and changes nothing.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let tls = tls::client_config(roots).map_err(InitError::Tls)?;
        Ok(Self {
            https: client(true, Connections::Fresh, &tls).map_err(InitError::Client)?,
            loopback: OnceLock::new(),
            reused_https: OnceLock::new(),
            reused_loopback: OnceLock::new(),
            tls,
        })
    }

    fn client_for(&self, target: &Target) -> &reqwest::Client {
        let connections = if target.reuse_connections {
            Connections::Reused
        } else {
            Connections::Fresh
        };
        self.client_of(target.base_url.scheme() == "https", connections)
    }

    fn client_of(&self, https: bool, connections: Connections) -> &reqwest::Client {
        let lazy = match (https, connections) {
            (true, Connections::Fresh) => return &self.https,
            (false, Connections::Fresh) => &self.loopback,
            (true, Connections::Reused) => &self.reused_https,
            (false, Connections::Reused) => &self.reused_loopback,
        };
        lazy.get_or_init(|| {
            client(https, connections, &self.tls).unwrap_or_else(|err| {
                // The same backend built the first client, so this is not expected. The
                // fallback probes https targets with a fresh connection per run and fails
                // loopback ones as connection errors: the runs stay data, and this says why.
                tracing::warn!(
                    error = %err,
                    "cannot build an HTTP client; falling back to the one of https targets"
                );
                self.https.clone()
            })
        })
    }

    async fn attempt(&self, target: &Target, probe: &Probe) -> Recorded {
        let params = request_params(target, probe);
        let trace = RequestTrace {
            http_method: probe.http_method.as_str(),
            url: redacted_url(target, probe, &params),
            params: params
                .iter()
                .map(|(name, value)| {
                    let shown = if SECRET_PARAMS.contains(&name.as_str()) {
                        REDACTED.to_owned()
                    } else {
                        value.clone()
                    };
                    (name.clone(), shown)
                })
                .collect(),
        };
        let client = self.client_for(target);
        let request = match probe.http_method {
            HttpMethod::Post => client.post(target.base_url.clone()).form(&params),
            HttpMethod::Get => client.get(target.base_url.clone()).query(&params),
        }
        .timeout(probe.timeout);
        let started = Instant::now();
        let deadline = tokio::time::timeout(probe.timeout, exchange(request, probe.max_body_bytes));
        // The record is read after the deadline dropped the exchange, inside the same scope.
        let outcome = progress::scope(deadline, |result, report| ProbeOutcome {
            elapsed: started.elapsed(),
            result: result.unwrap_or_else(|_| Err(TransportFailure::timeout(report.phase))),
            http_status: report.status,
            timings: report.timings,
            tls: report.tls.clone(),
        })
        .await;
        Recorded {
            request: trace,
            outcome,
        }
    }
}

impl Prober for HttpProber {
    fn probe<'a>(&'a self, target: &'a Target, probe: &'a Probe) -> ProbeFuture<'a> {
        Box::pin(self.attempt(target, probe))
    }

    fn reach<'a>(&'a self, url: &'a url::Url, timeout: Duration) -> ReachFuture<'a> {
        Box::pin(self.reach_once(url, timeout))
    }
}

impl HttpProber {
    /// A reference check: one `GET` on a fresh connection, the status kept, the body never
    /// read. Plain http is fine here: nothing secret is sent. The same resolver, connector and
    /// verifier as the probes', so a reference's failure has its phase and reason too.
    async fn reach_once(&self, url: &url::Url, timeout: Duration) -> Reach {
        let client = self.client_of(url.scheme() == "https", Connections::Fresh);
        let request = client.get(url.clone()).timeout(timeout);
        let started = Instant::now();
        let deadline = tokio::time::timeout(timeout, async {
            let response = request.send().await.map_err(failure_of)?;
            let status = response.status().as_u16();
            progress::headers_received(status);
            Ok(status)
        });
        progress::scope(deadline, |result, report| Reach {
            elapsed: started.elapsed(),
            result: result.unwrap_or_else(|_| Err(TransportFailure::timeout(report.phase))),
        })
        .await
    }
}

fn client(
    https_only: bool,
    connections: Connections,
    tls: &rustls::ClientConfig,
) -> Result<reqwest::Client, reqwest::Error> {
    let builder = reqwest::Client::builder()
        .tls_backend_preconfigured(tls.clone())
        .dns_resolver(Arc::new(SystemResolver))
        .connector_layer(MarkConnect)
        .user_agent(USER_AGENT)
        .redirect(Policy::none())
        .https_only(https_only)
        .connect_timeout(CONNECT_TIMEOUT)
        // A connection lives for one request or at most POOL_IDLE_TIMEOUT idle, shorter than any
        // keepalive probe: setting TCP keepalive would only cost four `setsockopt` calls per new
        // connection.
        .tcp_keepalive(None)
        .tcp_keepalive_interval(None)
        .tcp_keepalive_retries(None);
    match connections {
        Connections::Fresh => builder.pool_max_idle_per_host(0),
        Connections::Reused => builder.pool_idle_timeout(POOL_IDLE_TIMEOUT),
    }
    .build()
}

/// Every parameter sent, in order: the probe's own, then `method`, `api_key`, `format`, `sk`,
/// `api_sig`.
pub fn request_params(target: &Target, probe: &Probe) -> Vec<(String, String)> {
    let mut params: Vec<(String, String)> = probe.params.clone();
    params.push(("method".to_owned(), probe.method.clone()));
    params.push(("api_key".to_owned(), target.api_key.expose().to_owned()));
    if probe.signed {
        if let Some(sk) = &target.session_key {
            params.push(("sk".to_owned(), sk.expose().to_owned()));
        }
        if let Some(secret) = &target.api_secret {
            let sig = sign::api_sig(
                params.iter().map(|(n, v)| (n.as_str(), v.as_str())),
                secret.expose(),
            );
            params.push(("api_sig".to_owned(), sig));
        }
    }
    if probe.format == Format::Json {
        params.push(("format".to_owned(), "json".to_owned()));
    }
    params
}

fn redacted_url(target: &Target, probe: &Probe, params: &[(String, String)]) -> String {
    let mut url = target.base_url.clone();
    if probe.http_method == HttpMethod::Get {
        let mut query = url.query_pairs_mut();
        for (name, value) in params {
            if SECRET_PARAMS.contains(&name.as_str()) {
                query.append_pair(name, REDACTED);
            } else {
                query.append_pair(name, value);
            }
        }
    }
    url.to_string()
}

async fn exchange(
    request: reqwest::RequestBuilder,
    max_body_bytes: u64,
) -> Result<Response, TransportFailure> {
    let mut response = request.send().await.map_err(failure_of)?;
    let status = response.status().as_u16();
    // Recorded at once, so a body that then breaks off, stalls past the deadline or grows too
    // large still leaves the status in the run's facts.
    progress::headers_received(status);
    let header = |name: reqwest::header::HeaderName| {
        response
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    let content_type = header(reqwest::header::CONTENT_TYPE);
    let retry_after = header(reqwest::header::RETRY_AFTER);
    let headers = response
        .headers()
        .iter()
        .take(MAX_TRACE_HEADERS)
        .map(|(name, value)| {
            let text = String::from_utf8_lossy(value.as_bytes());
            // Bytes bound chars: a short value is kept whole without walking its chars.
            let text: String = if text.len() <= MAX_TRACE_HEADER_VALUE {
                text.into_owned()
            } else {
                text.chars().take(MAX_TRACE_HEADER_VALUE).collect()
            };
            (name.as_str().to_owned(), text)
        })
        .collect();
    // A body declared longer than the cap is refused before a byte of it is buffered: reading
    // `max_body_bytes` of it first only costs memory and time (the fault matrix in
    // tests/faults.rs bounds the RSS). A declared length is never trusted the other way: the loop below counts the bytes
    // that actually arrive, so `Content-Length: 10` in front of 1 GiB changes nothing.
    if response
        .content_length()
        .is_some_and(|declared| declared > max_body_bytes)
    {
        return Err(TransportFailure::new(Phase::Body, Reason::TooLarge));
    }
    let cap = usize::try_from(max_body_bytes).unwrap_or(usize::MAX);
    // Sized from Content-Length when it is sent (a hint only: the cap below is what holds), so a
    // typical 2 KB answer does not take a 64 KiB block from the heap on every run.
    let hint = response
        .content_length()
        .and_then(|len| usize::try_from(len).ok())
        .unwrap_or(INITIAL_BODY_CAPACITY);
    let mut body = Vec::with_capacity(hint.min(cap).min(MAX_INITIAL_BODY_CAPACITY));
    while let Some(chunk) = response.chunk().await.map_err(failure_of)? {
        if body.len() + chunk.len() > cap {
            return Err(TransportFailure::new(Phase::Body, Reason::TooLarge));
        }
        body.extend_from_slice(&chunk);
    }
    progress::body_read();
    Ok(Response {
        status,
        content_type,
        retry_after,
        headers,
        body,
    })
}

/// The one conversion of a reqwest error: its URL (which may hold the key) is dropped first, and
/// the failure is read from the run's progress and the error's source chain, never from its text.
fn failure_of(err: reqwest::Error) -> TransportFailure {
    use std::error::Error as _;
    let err = err.without_url();
    let causes = Causes::of(&err);
    let failure = failure_in(progress::phase(), err.is_timeout(), &causes);
    let mut chain = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        source = cause.source();
    }
    tracing::debug!(
        error = %chain,
        phase = failure.phase.as_label(),
        reason = failure.reason.as_label(),
        "request failed"
    );
    if failure.is_local_resources() {
        // The run's own log line says `connection_error`; this one says which resource ran out,
        // so on-call looks at this host (descriptors, memory, ports) and not at Last.fm.
        let errno = causes
            .dns
            .and_then(|dns| dns.errno)
            .or_else(|| causes.os_error.and_then(super::local_resources_errno))
            .unwrap_or("unknown");
        warn_local_resources(errno, failure.phase);
    }
    failure
}

/// The least time between two warnings that this host ran out of resources.
const RESOURCE_WARNING_GAP: Duration = Duration::from_secs(10);

/// Warns that a request could not be made for want of descriptors, memory or ports, at most
/// once per [`RESOURCE_WARNING_GAP`]: when it strikes, it strikes every run at once, and a
/// warning per run would bury the one line on-call needs under hundreds of copies. Each warning
/// says how many were held back since the one before.
fn warn_local_resources(errno: &'static str, phase: Phase) {
    static LAST: std::sync::Mutex<(Option<Instant>, u64)> = std::sync::Mutex::new((None, 0));
    let now = Instant::now();
    let held_back = {
        let mut last = LAST
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last
            .0
            .is_some_and(|at| now.saturating_duration_since(at) < RESOURCE_WARNING_GAP)
        {
            last.1 += 1;
            return;
        }
        std::mem::replace(&mut *last, (Some(now), 0)).1
    };
    tracing::warn!(
        errno,
        phase = phase.as_label(),
        held_back,
        "this host ran out of descriptors, memory or ports: a request could not be made"
    );
}

/// What an error with `causes` means when it ended a run that was in `phase`; `timed_out` is
/// reqwest's own verdict.
fn failure_in(phase: Phase, timed_out: bool, causes: &Causes<'_>) -> TransportFailure {
    if timed_out || causes.io_kind == Some(std::io::ErrorKind::TimedOut) {
        return TransportFailure::timeout(phase);
    }
    // The resolver's own error names its reason wherever it shows.
    if let Some(dns) = causes.dns {
        return TransportFailure::new(Phase::Dns, dns.reason);
    }
    let reason = match phase {
        // An error from inside the lookup that is not the resolver's (an unusable name).
        Phase::Dns => Reason::ResolverFailure,
        Phase::Connect | Phase::Tls if causes.tls.is_some() => {
            return TransportFailure::new(
                Phase::Tls,
                causes.tls.map_or(Reason::HandshakeFailed, tls::reason_of),
            );
        }
        Phase::Connect => connect_reason(causes),
        // A reset, an EOF or a protocol error in the middle of the handshake.
        Phase::Tls => Reason::HandshakeFailed,
        // hyper could not parse what came back (a header over its size limit, a conflicting
        // Content-Length, a NUL in a header, no status line): the peer answered, wrongly.
        Phase::Request if causes.parse => Reason::ProtocolError,
        // Reset or closed after the request was written, before the headers (hyper's
        // IncompleteMessage).
        Phase::Request => Reason::Reset,
        Phase::Body if causes.malformed_body() => Reason::ProtocolError,
        Phase::Body => Reason::Interrupted,
    };
    TransportFailure::new(phase, reason)
}

/// The reason of a failed TCP connect, from the OS error.
fn connect_reason(causes: &Causes<'_>) -> Reason {
    use std::io::ErrorKind;
    // socket() or connect() itself failed for want of a descriptor, memory or a local port.
    if causes
        .os_error
        .and_then(super::local_resources_errno)
        .is_some()
    {
        return Reason::LocalResources;
    }
    match causes.io_kind {
        Some(ErrorKind::ConnectionRefused) => Reason::Refused,
        Some(
            ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::BrokenPipe
            | ErrorKind::UnexpectedEof,
        ) => Reason::Reset,
        // EHOSTUNREACH, ENETUNREACH, EACCES/EPERM from a firewall rule, and whatever else keeps
        // a SYN from getting an answer.
        _ => Reason::Unreachable,
    }
}

/// What a reqwest error's source chain holds. `io::Error::source()` skips an error it wraps, so
/// each `io::Error` is also looked into through `get_ref`.
#[derive(Debug, Default)]
struct Causes<'a> {
    dns: Option<&'a DnsFailure>,
    tls: Option<&'a rustls::Error>,
    /// The kind of the innermost `io::Error` with an OS error code, else of the first one.
    io_kind: Option<std::io::ErrorKind>,
    /// The innermost OS error code (errno), when an `io::Error` carried one.
    os_error: Option<i32>,
    /// hyper could not parse the response head.
    parse: bool,
}

impl<'a> Causes<'a> {
    fn of(err: &'a reqwest::Error) -> Self {
        let mut causes = Self::default();
        let mut source = std::error::Error::source(err);
        while let Some(cause) = source {
            causes.visit(cause);
            source = cause.source();
        }
        causes
    }

    /// Notes `cause` and, when it is an `io::Error`, whatever it wraps, however deep: hyper-rustls
    /// wraps tokio-rustls's `io::Error` (around the `rustls::Error`) in another one.
    fn visit(&mut self, cause: &'a (dyn std::error::Error + 'static)) {
        self.note(cause);
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if io.raw_os_error().is_some() || self.io_kind.is_none() {
                self.io_kind = Some(io.kind());
            }
            if let Some(code) = io.raw_os_error() {
                self.os_error = Some(code);
            }
            if let Some(inner) = io.get_ref() {
                self.visit(inner);
            }
        }
    }

    fn note(&mut self, cause: &'a (dyn std::error::Error + 'static)) {
        if let Some(dns) = cause.downcast_ref::<DnsFailure>() {
            self.dns.get_or_insert(dns);
        }
        if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
            self.tls.get_or_insert(tls);
        }
        if cause
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_parse)
        {
            self.parse = true;
        }
    }

    /// Whether a body broke on its framing rather than on the connection: hyper's body decoder
    /// reports a bad chunk size, chunk delimiter or trailer as `InvalidData`/`InvalidInput`
    /// without an OS error, while a reset carries one and a FIN before the end is
    /// `UnexpectedEof`.
    fn malformed_body(&self) -> bool {
        use std::io::ErrorKind;
        self.os_error.is_none()
            && matches!(
                self.io_kind,
                Some(ErrorKind::InvalidData | ErrorKind::InvalidInput)
            )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;
    use crate::config::Config;
    use crate::config::secret::ProcessEnv;

    fn target(base_url: &str) -> Arc<Target> {
        let text = format!(
            r#"
[[targets]]
name = "t"
base_url = "{base_url}"
api_key = "0123456789abcdef0123456789abcdef"

[[targets.probes]]
method = "artist.getInfo"
timeout = "2s"
"#
        );
        let config = Config::parse(&text, "t.toml", &ProcessEnv, chrono::Utc::now())
            .unwrap_or_else(|err| panic!("the config is valid: {err}"));
        Arc::clone(&config.targets[0])
    }

    /// Answers one request with a small JSON body.
    async fn one_answer() -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = vec![0_u8; 8192];
            let mut seen = Vec::new();
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut buf).await.unwrap();
                seen.extend_from_slice(&buf[..n]);
            }
            let body = b"{}";
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).await.unwrap();
            stream.write_all(body).await.unwrap();
        });
        addr
    }

    /// The resolver and the connector layer run inside reqwest's connect, which hyper-util
    /// drives inside the request future: they see the run's task-local record.
    #[tokio::test]
    async fn the_progress_record_is_seen_from_inside_reqwests_connect() {
        let addr = one_answer().await;
        let target = target(&format!("http://localhost:{}/2.0/", addr.port()));
        let prober = HttpProber::try_new().unwrap();
        let outcome = prober.probe(&target, &target.probes[0]).await.outcome;
        assert_eq!(
            outcome.result.as_ref().map(|r| r.status),
            Ok(200),
            "{outcome:?}"
        );
        let timings = outcome.timings;
        assert!(timings.dns > Duration::ZERO, "{timings:?}");
        assert!(timings.connect > Duration::ZERO, "{timings:?}");
        assert_eq!(timings.tls, Duration::ZERO, "plain http: {timings:?}");
        assert!(timings.first_byte > Duration::ZERO, "{timings:?}");
        assert!(outcome.elapsed >= timings.dns + timings.connect + timings.first_byte);
        assert_eq!(outcome.tls, None);
    }
}

//! Every (phase, reason) a run can fail with, each caused for real against the real
//! [`HttpProber`]: its resolver, its sockets, its rustls stack. No mocks.
//!
//! Most causes live on 127.0.0.1: a closed port, a listener whose accept queue is full (its
//! kernel drops SYNs: a connect that never completes), TLS servers with certificates rcgen makes
//! here, and the raw fakes of `support::raw` for what breaks after the request. The rest needs
//! a network namespace (root and iproute2): routes that do not exist, and a DNS responder that
//! answers NXDOMAIN, an empty NOERROR, SERVFAIL, or nothing. Namespaces are `lfm-t-<pid>-<n>`,
//! deleted by a guard; no packet leaves them. Without root these tests print a skip line and
//! pass, unless `LASTFM_MONITOR_REQUIRE_NETNS=1` (CI) makes that a failure. Every wait is bounded.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsFd as _;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use lastfm_monitor::config::{Config, Target};
use lastfm_monitor::probe::http::HttpProber;
use lastfm_monitor::probe::{Phase, ProbeOutcome, Prober, Reason, TlsFacts, TransportFailure};
use rcgen::{CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::support::TestEnv;
use crate::support::raw::{self, RawServer, Reply};

/// The deadline of the runs that are meant to time out.
const SHORT: &str = "800ms";
const SHORT_MS: u64 = 800;
/// Bound on any one run (far above every deadline here).
const RUN_LIMIT: Duration = Duration::from_secs(10);

fn target(base_url: &str, timeout: &str, max_body_bytes: u64) -> Arc<Target> {
    let text = format!(
        r#"
[[targets]]
name = "failing"
base_url = "{base_url}"
api_key = "0123456789abcdef0123456789abcdef"

[[targets.probes]]
method = "artist.getInfo"
params = {{ artist = "Cher" }}
timeout = "{timeout}"
max_body_bytes = {max_body_bytes}
"#
    );
    let config = Config::parse(
        &text,
        "failures.toml",
        &TestEnv::default(),
        chrono::Utc::now(),
    )
    .unwrap_or_else(|err| panic!("the config is valid: {err}"));
    Arc::clone(&config.targets[0])
}

async fn run_with(prober: &HttpProber, base_url: &str, timeout: &str) -> ProbeOutcome {
    let target = target(base_url, timeout, 2 * 1024 * 1024);
    tokio::time::timeout(RUN_LIMIT, prober.probe(&target, &target.probes[0]))
        .await
        .expect("a run ends within its deadline")
        .outcome
}

async fn run(base_url: &str, timeout: &str) -> ProbeOutcome {
    run_with(
        &HttpProber::try_new().expect("the HTTP client"),
        base_url,
        timeout,
    )
    .await
}

#[track_caller]
fn assert_failure(outcome: &ProbeOutcome, phase: Phase, reason: Reason) {
    let expected = TransportFailure::new(phase, reason);
    assert!(
        phase.reasons().contains(&reason),
        "{phase:?}/{reason:?} is not a listed pair"
    );
    match &outcome.result {
        Err(failure) => assert_eq!(*failure, expected, "{outcome:?}"),
        Ok(response) => panic!("expected {expected:?}, got a response: {response:?}"),
    }
}

#[track_caller]
fn assert_at_least(what: &str, value: Duration, min_ms: u64) {
    assert!(
        value >= Duration::from_millis(min_ms),
        "{what} {value:?} < {min_ms} ms"
    );
}

// --- connect ------------------------------------------------------------------------------

#[tokio::test]
async fn a_closed_port_is_connect_refused() {
    let addr = raw::refused_addr().await;
    let outcome = run(&format!("http://{addr}/2.0/"), "2s").await;
    assert_failure(&outcome, Phase::Connect, Reason::Refused);
    let t = outcome.timings;
    assert_eq!((t.dns, t.tls, t.first_byte, t.body), Default::default());
    assert!(t.connect > Duration::ZERO, "{t:?}");
    assert_eq!(outcome.tls, None);
}

/// A listener with a backlog of 0 and one connection queued: Linux drops further SYNs, so the
/// connect waits for SYN-ACKs that never come, as behind a silent firewall.
#[tokio::test]
async fn a_dropped_syn_is_connect_timeout() {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let _queued =
        tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
            .await
            .expect("the first connection is queued at once")
            .unwrap();
    let outcome = run(&format!("http://{addr}/2.0/"), SHORT).await;
    assert_failure(&outcome, Phase::Connect, Reason::Timeout);
    assert_at_least("connect", outcome.timings.connect, SHORT_MS - 100);
    assert_eq!(outcome.timings.first_byte, Duration::ZERO);
    drop(listener);
}

/// No route (only `lo` in the namespace: ENETUNREACH), an `unreachable` route (EHOSTUNREACH) and
/// a `prohibit` route (EACCES, as a firewall's reject does) are all `unreachable`.
#[test]
fn a_missing_or_refusing_route_is_connect_unreachable() {
    let Some(ns) = Netns::create() else { return };
    ns.ip(&["route", "add", "unreachable", "10.254.0.0/16"]);
    ns.ip(&["route", "add", "prohibit", "10.253.0.0/16"]);
    let outcomes = ns.enter(|| {
        current_thread().block_on(async {
            let mut outcomes = Vec::new();
            for addr in ["10.255.0.1", "10.254.0.1", "10.253.0.1"] {
                outcomes.push((addr, run(&format!("https://{addr}/2.0/"), "2s").await));
            }
            outcomes
        })
    });
    for (addr, outcome) in &outcomes {
        assert_failure(outcome, Phase::Connect, Reason::Unreachable);
        assert_eq!(outcome.timings.tls, Duration::ZERO, "{addr}");
    }
}

// --- TLS ----------------------------------------------------------------------------------

/// A test PKI: a root the prober trusts and leaf certificates for 127.0.0.1.
struct Pki {
    root: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate chain and its key, as a server presents them.
struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("test setup");
    params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params
}

fn leaf_params(
    name: &str,
    not_before: (i32, u8, u8),
    not_after: (i32, u8, u8),
) -> CertificateParams {
    let mut params = CertificateParams::new(vec![name.to_owned()]).expect("test setup");
    params.not_before = rcgen::date_time_ymd(not_before.0, not_before.1, not_before.2);
    params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
    params
}

fn key_der(key: &KeyPair) -> PrivateKeyDer<'static> {
    PrivatePkcs8KeyDer::from(key.serialize_der()).into()
}

impl Pki {
    fn new() -> Self {
        let root = CertifiedIssuer::self_signed(
            ca_params("lastfm-monitor test root"),
            KeyPair::generate().expect("test setup"),
        )
        .expect("test setup");
        Self { root }
    }

    /// A prober that trusts this root besides the system's.
    fn prober(&self) -> HttpProber {
        HttpProber::try_with_extra_roots(&[self.root.der().clone()]).expect("the HTTP client")
    }

    /// A leaf for `name` signed by the root.
    fn leaf(&self, name: &str, not_before: (i32, u8, u8), not_after: (i32, u8, u8)) -> Identity {
        let key = KeyPair::generate().expect("test setup");
        let cert = leaf_params(name, not_before, not_after)
            .signed_by(&key, &self.root)
            .expect("test setup");
        Identity {
            chain: vec![cert.der().clone()],
            key: key_der(&key),
        }
    }
}

/// A TLS server on 127.0.0.1 presenting `identity` with `versions`, answering each request with
/// a small JSON body. Its tasks end with the test's runtime.
async fn tls_upstream(
    identity: Identity,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> SocketAddr {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("test setup")
        .with_no_client_auth()
        .with_single_cert(identity.chain, identity.key)
        .expect("test setup");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("test setup");
    let addr = listener.local_addr().expect("test setup");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let serve = async {
                    let mut tls = acceptor.accept(stream).await.ok()?;
                    let mut buf = vec![0_u8; 16 * 1024];
                    let mut seen = Vec::new();
                    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        let n = tls.read(&mut buf).await.ok()?;
                        if n == 0 {
                            return None;
                        }
                        seen.extend_from_slice(&buf[..n]);
                    }
                    tls.write_all(&raw::json(200, r#"{"artist":{"name":"Cher"}}"#))
                        .await
                        .ok()?;
                    tls.shutdown().await.ok()
                };
                let _ = tokio::time::timeout(Duration::from_secs(5), serve).await;
            });
        }
    });
    addr
}

fn url(addr: SocketAddr) -> String {
    format!("https://{addr}/2.0/")
}

const BOTH: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

#[tokio::test]
async fn an_expired_certificate_is_tls_certificate_expired_with_its_date() {
    let pki = Pki::new();
    let addr = tls_upstream(pki.leaf("127.0.0.1", (2019, 1, 1), (2020, 1, 1)), BOTH).await;
    let outcome = run_with(&pki.prober(), &url(addr), "2s").await;
    assert_failure(&outcome, Phase::Tls, Reason::CertificateExpired);
    // The date is recorded although the chain was refused: that is when it matters.
    assert_eq!(
        outcome.tls,
        Some(TlsFacts {
            version: TlsFacts::UNKNOWN_VERSION,
            not_after_unix: Some(1_577_836_800),
        })
    );
    let t = outcome.timings;
    assert!(
        t.connect > Duration::ZERO && t.tls > Duration::ZERO,
        "{t:?}"
    );
    assert_eq!(t.first_byte, Duration::ZERO);
}

#[tokio::test]
async fn a_certificate_from_the_future_is_tls_not_yet_valid() {
    let pki = Pki::new();
    let addr = tls_upstream(pki.leaf("127.0.0.1", (2090, 1, 1), (2091, 1, 1)), BOTH).await;
    let outcome = run_with(&pki.prober(), &url(addr), "2s").await;
    assert_failure(&outcome, Phase::Tls, Reason::CertificateNotYetValid);
}

#[tokio::test]
async fn a_certificate_from_an_unknown_ca_is_tls_untrusted() {
    let trusted = Pki::new();
    let stranger = Pki::new();
    let addr = tls_upstream(stranger.leaf("127.0.0.1", (2020, 1, 1), (2090, 1, 1)), BOTH).await;
    let outcome = run_with(&trusted.prober(), &url(addr), "2s").await;
    assert_failure(&outcome, Phase::Tls, Reason::CertificateUntrusted);
}

#[tokio::test]
async fn a_certificate_for_another_name_is_tls_hostname_mismatch() {
    let pki = Pki::new();
    let addr = tls_upstream(pki.leaf("lastfm.example", (2020, 1, 1), (2090, 1, 1)), BOTH).await;
    let outcome = run_with(&pki.prober(), &url(addr), "2s").await;
    assert_failure(&outcome, Phase::Tls, Reason::HostnameMismatch);
}

/// A raw listener on 127.0.0.1 that reads the ClientHello, writes `answer` and closes; with
/// `answer` `None` it holds the connection and says nothing.
async fn hello_answerer(answer: Option<&'static [u8]>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("test setup");
    let addr = listener.local_addr().expect("test setup");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0_u8; 4096];
                let session = async {
                    let _ = stream.read(&mut buf).await;
                    match answer {
                        Some(bytes) => {
                            let _ = stream.write_all(bytes).await;
                            let _ = stream.shutdown().await;
                        }
                        None => while stream.read(&mut buf).await.is_ok_and(|n| n > 0) {},
                    }
                };
                let _ = tokio::time::timeout(Duration::from_secs(5), session).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn an_alert_or_garbage_for_a_client_hello_is_tls_handshake_failed() {
    // A fatal `handshake_failure` alert record, as a server with no common cipher sends.
    const ALERT: &[u8] = &[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28];
    // A plain-HTTP server on the TLS port.
    const PLAIN: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
    for answer in [ALERT, PLAIN] {
        let addr = hello_answerer(Some(answer)).await;
        let outcome = run(&url(addr), "2s").await;
        assert_failure(&outcome, Phase::Tls, Reason::HandshakeFailed);
        assert_eq!(outcome.tls, None, "no certificate was presented");
        assert!(
            outcome.timings.tls > Duration::ZERO,
            "{:?}",
            outcome.timings
        );
    }
}

#[tokio::test]
async fn a_server_silent_after_the_client_hello_is_tls_timeout() {
    let addr = hello_answerer(None).await;
    let outcome = run(&url(addr), SHORT).await;
    assert_failure(&outcome, Phase::Tls, Reason::Timeout);
    assert_at_least("tls", outcome.timings.tls, SHORT_MS - 100);
}

/// `lastfm_tls` facts: the earliest notAfter of the chain (here the intermediate's, before the
/// leaf's) and the version the handshake settled on.
#[tokio::test]
async fn a_handshake_records_the_chains_earliest_not_after_and_the_version() {
    let pki = Pki::new();
    let mut intermediate_params = ca_params("lastfm-monitor test intermediate");
    intermediate_params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    intermediate_params.not_after = rcgen::date_time_ymd(2030, 6, 1);
    let intermediate =
        CertifiedIssuer::signed_by(intermediate_params, KeyPair::generate().unwrap(), &pki.root)
            .unwrap();
    let prober = pki.prober();
    for (versions, version) in [
        (BOTH, "TLSv1.3"),
        (&[&rustls::version::TLS12][..], "TLSv1.2"),
    ] {
        let key = KeyPair::generate().unwrap();
        let leaf = leaf_params("127.0.0.1", (2020, 1, 1), (2031, 1, 1))
            .signed_by(&key, &intermediate)
            .unwrap();
        let identity = Identity {
            chain: vec![leaf.der().clone(), intermediate.der().clone()],
            key: key_der(&key),
        };
        let addr = tls_upstream(identity, versions).await;
        let outcome = run_with(&prober, &url(addr), "2s").await;
        assert_eq!(
            outcome.result.as_ref().map(|r| r.status),
            Ok(200),
            "{outcome:?}"
        );
        assert_eq!(
            outcome.tls,
            Some(TlsFacts {
                version,
                not_after_unix: Some(1_906_502_400),
            })
        );
        let t = outcome.timings;
        assert!(
            t.connect > Duration::ZERO && t.tls > Duration::ZERO && t.first_byte > Duration::ZERO,
            "{t:?}"
        );
    }
}

// --- request and body ---------------------------------------------------------------------

#[tokio::test]
async fn a_reset_or_close_before_the_headers_is_request_reset() {
    for reply in [Reply::ResetAfter(Arc::from(&b""[..])), Reply::Close] {
        let upstream = RawServer::always(reply.clone()).await;
        let outcome = run(&upstream.base_url(), "2s").await;
        assert_failure(&outcome, Phase::Request, Reason::Reset);
        assert_eq!(
            upstream.requests().len(),
            1,
            "{reply:?}: the request was read"
        );
        assert_eq!(outcome.timings.body, Duration::ZERO);
    }
}

#[tokio::test]
async fn headers_that_never_come_are_request_timeout() {
    let upstream = RawServer::always(Reply::Stall).await;
    let outcome = run(&upstream.base_url(), SHORT).await;
    assert_failure(&outcome, Phase::Request, Reason::Timeout);
    assert_at_least("first_byte", outcome.timings.first_byte, SHORT_MS - 100);
    assert_eq!(outcome.timings.body, Duration::ZERO);
}

#[tokio::test]
async fn a_body_that_breaks_off_is_body_interrupted() {
    let head = raw::head(
        "HTTP/1.1 200 OK",
        &[
            ("Content-Type", "application/json"),
            ("Content-Length", "100"),
        ],
    );
    let mut short = head.clone();
    short.extend_from_slice(br#"{"artist":"#);
    let chunked = raw::head(
        "HTTP/1.1 200 OK",
        &[
            ("Content-Type", "application/json"),
            ("Transfer-Encoding", "chunked"),
        ],
    );
    for reply in [
        // A lying Content-Length, then FIN.
        Reply::bytes(short.clone()),
        // A reset mid-body.
        Reply::ResetAfter(short.into()),
        // A chunked body cut off after its first chunk.
        Reply::bytes([chunked, b"2\r\n{}\r\n".to_vec()].concat()),
    ] {
        let upstream = RawServer::always(reply.clone()).await;
        let outcome = run(&upstream.base_url(), "2s").await;
        assert_failure(&outcome, Phase::Body, Reason::Interrupted);
        assert!(outcome.timings.first_byte > Duration::ZERO, "{reply:?}");
        assert_eq!(
            outcome.http_status,
            Some(200),
            "the status is kept: {reply:?}"
        );
    }
}

/// A chunked encoding that is not one (a size that is not hex, a chunk without its CRLF, a size
/// that overflows): the peer answered, in something that is not HTTP/1.1.
#[tokio::test]
async fn a_broken_chunked_encoding_is_body_protocol_error() {
    let chunked = raw::head(
        "HTTP/1.1 200 OK",
        &[
            ("Content-Type", "application/json"),
            ("Transfer-Encoding", "chunked"),
        ],
    );
    for chunks in [
        &b"zz\r\n{}\r\n0\r\n\r\n"[..],
        &b"2\r\n{}xx0\r\n\r\n"[..],
        &b"fffffffffffffffffff\r\n{}\r\n0\r\n\r\n"[..],
    ] {
        let upstream = RawServer::always(Reply::bytes([&chunked[..], chunks].concat())).await;
        let outcome = run(&upstream.base_url(), "2s").await;
        assert_failure(&outcome, Phase::Body, Reason::ProtocolError);
        assert_eq!(outcome.http_status, Some(200));
    }
}

/// Answers hyper cannot parse as an HTTP/1.1 response head: the peer answered, wrongly. None is
/// a reset: the connection was fine.
#[tokio::test]
async fn a_response_head_that_is_not_http_is_request_protocol_error() {
    let body = br#"{"artist":{"name":"Cher"}}"#;
    let with_body = |head: Vec<u8>| [head, body.to_vec()].concat();
    let length = body.len().to_string();
    let huge_header = "a".repeat(4 << 20);
    let huge_reason = format!("HTTP/1.1 200 {}", "O".repeat(1 << 20));
    let cases: [(&str, Vec<u8>); 5] = [
        (
            "a 4 MiB header",
            with_body(raw::head(
                "HTTP/1.1 200 OK",
                &[("X-Big", &huge_header), ("Content-Length", &length)],
            )),
        ),
        (
            "two different Content-Lengths",
            with_body(raw::head(
                "HTTP/1.1 200 OK",
                &[("Content-Length", &length), ("Content-Length", "3")],
            )),
        ),
        (
            "a NUL in a header",
            with_body(raw::head(
                "HTTP/1.1 200 OK",
                &[("X-Bad", "a\0b"), ("Content-Length", &length)],
            )),
        ),
        ("an HTTP/0.9 answer (a body, no head)", body.to_vec()),
        (
            "a 1 MiB status line",
            with_body(raw::head(&huge_reason, &[("Content-Length", &length)])),
        ),
    ];
    for (what, bytes) in cases {
        let upstream = RawServer::always(Reply::bytes(bytes)).await;
        let outcome = run(&upstream.base_url(), "2s").await;
        match &outcome.result {
            Err(failure) => assert_eq!(
                *failure,
                TransportFailure::new(Phase::Request, Reason::ProtocolError),
                "{what}"
            ),
            Ok(response) => panic!("{what}: got a response: {response:?}"),
        }
        assert_eq!(outcome.http_status, None, "{what}: no head was read");
    }
}

#[tokio::test]
async fn a_body_that_stalls_is_body_timeout() {
    let upstream = RawServer::always(Reply::Trickle {
        head: raw::head(
            "HTTP/1.1 200 OK",
            &[
                ("Content-Type", "application/json"),
                ("Content-Length", "64"),
            ],
        ),
        body: vec![b' '; 64],
        every: Duration::from_secs(3),
    })
    .await;
    let outcome = run(&upstream.base_url(), SHORT).await;
    assert_failure(&outcome, Phase::Body, Reason::Timeout);
    assert_eq!(outcome.http_status, Some(200), "the status is kept");
    assert_at_least("body", outcome.timings.body, SHORT_MS / 2);
}

#[tokio::test]
async fn a_body_over_the_cap_is_body_too_large() {
    let declared = RawServer::always(Reply::bytes(raw::json(200, &" ".repeat(4096)))).await;
    let undeclared = RawServer::always(Reply::Stream {
        head: raw::head("HTTP/1.1 200 OK", &[("Content-Type", "application/json")]),
        chunk: Arc::from(&[b' '; 1024][..]),
        total: 1024 * 1024,
    })
    .await;
    let prober = HttpProber::try_new().unwrap();
    for upstream in [declared, undeclared] {
        let target = target(&upstream.base_url(), "2s", 1024);
        let outcome = tokio::time::timeout(RUN_LIMIT, prober.probe(&target, &target.probes[0]))
            .await
            .unwrap()
            .outcome;
        assert_failure(&outcome, Phase::Body, Reason::TooLarge);
        assert_eq!(outcome.http_status, Some(200), "the status is kept");
    }
}

// --- DNS (a namespace, its own resolv.conf, the daemon binary) ------------------------------

/// The DNS reasons, each caused by what a responder on 127.0.0.1:53 of a namespace answers for a
/// name (`/etc/netns/NS/resolv.conf` points the namespace's glibc there, and nowhere else). The resolver's
/// configuration is per mount namespace, which a thread of this process cannot enter, so the
/// daemon binary runs under `ip netns exec`, and `/probe?debug=true` shows each run's failure.
#[test]
fn dns_failures_are_nxdomain_no_address_resolver_failure_and_timeout() {
    let Some(ns) = Netns::create() else { return };
    ns.etc(
        "resolv.conf",
        "nameserver 127.0.0.1\noptions timeout:3 attempts:1\n",
    );
    // Pinned too: an nss-resolve or mdns line of the host would send the lookups elsewhere.
    ns.etc("nsswitch.conf", "hosts: files dns\n");
    let _dns = ns.enter(Responder::start);
    let cases = [
        ("nx", Reason::Nxdomain),
        ("nodata", Reason::NoAddress),
        ("servfail", Reason::ResolverFailure),
        ("silent", Reason::Timeout),
    ];
    let mut config = String::from("[web]\nlisten_address = \"127.0.0.1:10987\"\n");
    for (name, _) in cases {
        config.push_str(&format!(
            r#"
[[targets]]
name = "{name}"
base_url = "https://{name}.lfm.test/2.0/"
api_key = "0123456789abcdef0123456789abcdef"

[[targets.probes]]
name = "p"
method = "artist.getInfo"
interval = "1h"
timeout = "1s"
"#
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config).unwrap();
    let mut daemon = ns.daemon(&path);
    let listen: SocketAddr = "127.0.0.1:10987".parse().unwrap();
    if !ns.enter(move || wait_ready(listen)) {
        panic!(
            "the daemon in the namespace is not ready within 10 s:\n{}",
            daemon.log()
        );
    }
    for (name, reason) in cases {
        let page =
            ns.enter(move || http_get(listen, &format!("/probe?target={name}&probe=p&debug=true")));
        let host = format!("{name}.lfm.test");
        let expected = TransportFailure::new(Phase::Dns, reason).describe(&host);
        if !page.contains(&expected) {
            panic!(
                "{name}: expected {expected:?} in\n{page}\n--- daemon log:\n{}",
                daemon.log()
            );
        }
    }
}

/// A DNS responder on 127.0.0.1:53 of the namespace it is started in; answers by the first label
/// of the name asked: `nx` NXDOMAIN, `nodata` NOERROR without records, `servfail` SERVFAIL,
/// anything else nothing at all. Stops when dropped.
struct Responder {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Responder {
    fn start() -> Self {
        let socket = UdpSocket::bind("127.0.0.1:53").expect("bind 127.0.0.1:53 in the namespace");
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("test setup");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        // Spawned from a thread inside the namespace; the socket is bound already anyway.
        let thread = std::thread::spawn(move || {
            let mut buf = [0_u8; 512];
            while !stopped.load(Ordering::Relaxed) {
                let Ok((n, peer)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                if let Some(answer) = dns_answer(&buf[..n]) {
                    let _ = socket.send_to(&answer, peer);
                }
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The answer to a query: the header with QR and RA set and the rcode the name calls for, the
/// question echoed, no records.
fn dns_answer(query: &[u8]) -> Option<Vec<u8>> {
    let question = query.get(12..)?;
    let first_len = usize::from(*question.first()?);
    let first = std::str::from_utf8(question.get(1..1 + first_len)?).ok()?;
    let rcode = match first {
        "nx" => 3,
        "nodata" => 0,
        "servfail" => 2,
        _ => return None,
    };
    let mut end = 0;
    while *question.get(end)? != 0 {
        end += usize::from(question[end]) + 1;
    }
    let question = question.get(..end + 5)?; // name, its root label, QTYPE, QCLASS
    let mut answer = Vec::with_capacity(12 + question.len());
    answer.extend_from_slice(&query[..2]); // ID
    answer.push(0x80 | (query[2] & 0x01)); // QR, RD as asked
    answer.push(0x80 | rcode); // RA, RCODE
    answer.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // one question, no records
    answer.extend_from_slice(question);
    Some(answer)
}

/// Polls `/-/ready` inside the namespace until it answers 200 (at most 10 s).
fn wait_ready(listen: SocketAddr) -> bool {
    (0..100).any(|_| {
        let answer = http_get(listen, "/-/ready");
        let ready = answer
            .lines()
            .next()
            .is_some_and(|status| status.contains(" 200 "));
        if !ready {
            std::thread::sleep(Duration::from_millis(100));
        }
        ready
    })
}

/// One HTTP/1.0 GET, the whole answer as text (bounded by a 10 s read timeout).
fn http_get(addr: SocketAddr, path: &str) -> String {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return String::new();
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("test setup");
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return String::new();
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

// --- network namespaces -------------------------------------------------------------------

/// A network namespace of this test process, with `lo` up; deleted (with its resolv.conf)
/// when dropped.
struct Netns {
    name: String,
}

impl Netns {
    /// A new namespace, or `None` (after a skip line) when this is not root with iproute2,
    /// unless `LASTFM_MONITOR_REQUIRE_NETNS=1`, which makes that a failure.
    fn create() -> Option<Self> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let root = rustix::process::geteuid().is_root();
        let iproute2 = Command::new("ip")
            .arg("-V")
            .output()
            .is_ok_and(|out| out.status.success());
        if !(root && iproute2) {
            let why = "needs root and iproute2 (network namespaces)";
            if std::env::var_os("LASTFM_MONITOR_REQUIRE_NETNS").is_some_and(|v| v == "1") {
                panic!("{why}, and LASTFM_MONITOR_REQUIRE_NETNS=1");
            }
            eprintln!("skipped: {why}; LASTFM_MONITOR_REQUIRE_NETNS=1 makes this a failure");
            return None;
        }
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let ns = Self {
            name: format!("lfm-t-{}-{n}", std::process::id()),
        };
        ns.ip_global(&["netns", "add", &ns.name]);
        ns.ip(&["link", "set", "lo", "up"]);
        Some(ns)
    }

    fn ip_global(&self, args: &[&str]) {
        let out = Command::new("ip").args(args).output().expect("ip runs");
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `ip ARGS` inside the namespace.
    fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        self.ip_global(&all);
    }

    /// `/etc/netns/NAME/FILE`, which `ip netns exec` mounts over `/etc/FILE`.
    fn etc(&self, file: &str, text: &str) {
        let dir = format!("/etc/netns/{}", self.name);
        std::fs::create_dir_all(&dir).expect("test setup");
        std::fs::write(format!("{dir}/{file}"), text).expect("test setup");
    }

    /// Runs `f` on a thread inside the namespace: the sockets it opens are the namespace's.
    fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let handle = std::fs::File::open(&path).expect("the namespace's handle");
            rustix::thread::move_into_link_name_space(
                handle.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .expect("setns into the namespace");
            f()
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }

    /// The daemon binary under `ip netns exec`, killed when the guard drops.
    fn daemon(&self, config: &std::path::Path) -> NsDaemon {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.name])
            .arg(env!("CARGO_BIN_EXE_lastfm-monitor"))
            .arg("--config.file")
            .arg(config);
        let (child, stderr) = crate::support::spawn_with_stderr(&mut command);
        NsDaemon {
            child,
            stderr: Some(stderr),
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .output();
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", self.name));
    }
}

/// A daemon in a namespace; killed and reaped when dropped.
struct NsDaemon {
    child: std::process::Child,
    stderr: Option<std::process::ChildStderr>,
}

impl NsDaemon {
    /// Stops the daemon and returns what it logged (for a failure message).
    fn log(&mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut text = String::new();
        if let Some(mut stderr) = self.stderr.take() {
            let _ = stderr.read_to_string(&mut text);
        }
        text
    }
}

impl Drop for NsDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

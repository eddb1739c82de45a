//! The exposition endpoint under hostile clients (README.md, Endpoints): stalled
//! connections are closed by the header-read timeout while scrapes still answer fast, requests
//! beyond the concurrency cap get 503, a request that never finishes is cut at the request
//! timeout, other methods get 405 and unknown paths a 404 that does not echo them.
//!
//! Socket tests run on real time against the in-process daemon; the request-timeout test drives
//! the router without a socket on paused time.

use std::sync::Arc;
use std::time::Duration;

use lastfm_monitor::config::{Probe, Target};
use lastfm_monitor::probe::{ProbeFuture, Prober};
use lastfm_monitor::schedule::SystemClock;
use lastfm_monitor::server::{HEADER_READ_TIMEOUT, MAX_IN_FLIGHT, REQUEST_TIMEOUT};
use lastfm_monitor::sim::Scenario;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::support::raw::{RawServer, Reply};
use crate::support::{CANARY_KEY, Daemon, Offline};

const ARTIST: &str = crate::support::ARTIST_EVERY_SECOND;

/// The bar for Slowloris-style clients: every stalled connection closed within this.
const CLOSE_LIMIT: Duration = Duration::from_secs(15);
/// The bar for a normal scrape while the stalled connections are open.
const SCRAPE_LIMIT: Duration = Duration::from_secs(1);
const STALLED: usize = 200;

/// What a stalled client sent before going quiet.
fn half_request(i: usize) -> &'static [u8] {
    match i % 5 {
        0 => b"",
        1 => b"GET /metr",
        2 => b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/pl",
        3 => b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n",
        // A complete request head promising a body that never comes.
        _ => b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{\"a\":",
    }
}

/// Reads until the server closes (EOF or reset) or `limit`; the time it took, if it closed.
async fn wait_closed(mut stream: TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut sink = [0_u8; 4096];
    let closed = async {
        loop {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(limit, closed)
        .await
        .ok()
        .map(|()| started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_connections_are_closed_while_scrapes_answer() {
    let daemon = Daemon::start(Scenario::healthy(), "", "", ARTIST).await;
    let opened = Instant::now();
    let mut stalled = Vec::with_capacity(STALLED);
    for i in 0..STALLED {
        let mut stream = TcpStream::connect(daemon.addr)
            .await
            .expect("the daemon accepts");
        stream
            .write_all(half_request(i))
            .await
            .expect("the daemon reads");
        stalled.push(stream);
    }
    // An idle keep-alive connection after a complete request is a stall too.
    let mut idle = TcpStream::connect(daemon.addr).await.expect("connect");
    idle.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .expect("write");
    let mut first = [0_u8; 64];
    let n = idle.read(&mut first).await.expect("the answer");
    assert!(first[..n].starts_with(b"HTTP/1.1 200"));
    stalled.push(idle);

    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let started = Instant::now();
        let text = tokio::time::timeout(SCRAPE_LIMIT * 5, daemon.metrics())
            .await
            .expect("a scrape answers while connections stall");
        slowest = slowest.max(started.elapsed());
        assert!(text.contains("lastfm_probe_runs_total"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        slowest < SCRAPE_LIMIT,
        "the slowest of 20 scrapes took {slowest:?} with {STALLED} stalled connections"
    );

    let limit = CLOSE_LIMIT.saturating_sub(opened.elapsed());
    let mut waits = tokio::task::JoinSet::new();
    for stream in stalled {
        waits.spawn(wait_closed(stream, limit));
    }
    let mut still_open = 0;
    while let Some(joined) = waits.join_next().await {
        if joined.expect("no wait panics").is_none() {
            still_open += 1;
        }
    }
    let all_closed_after = opened.elapsed();
    println!(
        "slowloris: {} stalled connections closed {:.1} s after opening (header-read timeout {:?}); slowest of 20 scrapes meanwhile {:.0} ms",
        STALLED + 1,
        all_closed_after.as_secs_f64(),
        HEADER_READ_TIMEOUT,
        slowest.as_secs_f64() * 1000.0
    );
    assert_eq!(
        still_open,
        0,
        "{still_open} of {} stalled connections still open after {CLOSE_LIMIT:?}",
        STALLED + 1
    );
    assert!(
        all_closed_after >= HEADER_READ_TIMEOUT - Duration::from_secs(1),
        "closed suspiciously early ({all_closed_after:?}): were they closed for another reason?"
    );
    daemon.stop().await;
}

/// `/metrics` renders from memory; a stalled upstream does not slow it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrapes_do_not_wait_on_a_stalled_upstream() {
    let upstream = RawServer::always(Reply::Stall).await;
    let text = format!(
        r#"
[defaults]
startup_jitter = "0s"

[[targets]]
name = "stalled"
base_url = "{}"
api_key = "{CANARY_KEY}"

[[targets.probes]]
method = "artist.getInfo"
interval = "1s"
timeout = "900ms"
"#,
        upstream.base_url()
    );
    let daemon = Daemon::start_config(&text, None).await;
    let mut took = Vec::with_capacity(100);
    for _ in 0..100 {
        let started = Instant::now();
        let text = daemon.metrics().await;
        took.push(started.elapsed());
        assert!(text.contains("lastfm_probe_runs_total"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    took.sort();
    let p99 = took[98];
    println!(
        "scrapes with a stalled upstream: median {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        took[49].as_secs_f64() * 1000.0,
        p99.as_secs_f64() * 1000.0,
        took[99].as_secs_f64() * 1000.0
    );
    assert!(p99 < Duration::from_millis(50), "p99 {p99:?}");
    let text = daemon.metrics().await;
    assert!(
        crate::support::metric(&text, "lastfm_probe_runs_total", &[("outcome", "timeout")])
            .is_some_and(|n| n >= 1.0),
        "the probe timed out meanwhile"
    );
    crate::support::assert_metric(
        &text,
        "lastfm_probe_last_success_timestamp_seconds",
        &[("target", "stalled")],
        0.0,
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_cap_get_503() {
    // The upstream never answers, so each on-demand probe holds its request for the timeout.
    let upstream = RawServer::always(Reply::Stall).await;
    let text = format!(
        r#"
[defaults]
startup_jitter = "0s"

[[targets]]
name = "stalled"
base_url = "{}"
api_key = "{CANARY_KEY}"
max_requests_per_second = 1000.0
burst = 100

[[targets.probes]]
method = "artist.getInfo"
interval = "1h"
timeout = "3s"
"#,
        upstream.base_url()
    );
    let daemon = Daemon::start_config(&text, None).await;
    let client = crate::support::http_client()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(0)
        .build()
        .expect("a client");
    let mut requests = tokio::task::JoinSet::new();
    let extra = 5;
    for _ in 0..MAX_IN_FLIGHT + extra {
        let client = client.clone();
        let url = format!(
            "http://{}/probe?target=stalled&probe=artist.getInfo",
            daemon.addr
        );
        requests.spawn(async move {
            let response = client.get(url).send().await.expect("an answer");
            response.status().as_u16()
        });
    }
    let mut statuses = Vec::new();
    while let Some(joined) = requests.join_next().await {
        statuses.push(joined.expect("no request panics"));
    }
    let refused = statuses.iter().filter(|s| **s == 503).count();
    let served = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(
        (served, refused),
        (MAX_IN_FLIGHT, extra),
        "statuses: {statuses:?}"
    );
    // The permits came back: a scrape answers.
    assert!(daemon.metrics().await.contains("lastfm_probe_runs_total"));
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_endpoints_answer_405_to_other_methods() {
    let daemon = Daemon::start(Scenario::healthy(), "", "", ARTIST).await;
    let client = crate::support::http_client()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("a client");
    let read = [
        "/",
        "/metrics",
        "/-/healthy",
        "/-/ready",
        "/probe?target=sim&probe=artist.getInfo",
        "/runs/1",
    ];
    let mut failures = Vec::new();
    for path in read {
        for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"] {
            let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
            let response = client
                .request(method.clone(), format!("http://{}{path}", daemon.addr))
                .send()
                .await
                .expect("an answer");
            if response.status() != 405 {
                failures.push(format!("{method} {path}: {}", response.status()));
            }
        }
        for path in ["/", "/metrics", "/-/healthy", "/-/ready"] {
            let response = client
                .head(format!("http://{}{path}", daemon.addr))
                .send()
                .await
                .expect("an answer");
            if response.status() != 200 {
                failures.push(format!("HEAD {path}: {}", response.status()));
            }
        }
    }
    for method in ["GET", "PUT", "DELETE"] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
        let response = client
            .request(method.clone(), format!("http://{}/-/reload", daemon.addr))
            .send()
            .await
            .expect("an answer");
        if response.status() != 405 {
            failures.push(format!("{method} /-/reload: {}", response.status()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_are_404_without_echo() {
    let daemon = Daemon::start(Scenario::healthy(), "", "", ARTIST).await;
    let token = "zq7unechoedtoken";
    let paths = [
        format!("/{token}"),
        format!("/metrics/{token}"),
        format!("/-/{token}"),
        format!("/%3Cscript%3E{token}%3C/script%3E"),
        format!("/{token}?q={token}"),
        format!("/runs/{token}"),
    ];
    for path in &paths {
        let (status, body) = daemon.get(path).await;
        assert_eq!(status, 404, "{path}");
        assert!(
            !body.contains(token),
            "{path}: the answer echoes the path: {body}"
        );
    }
    // A raw request with a hostile path, too.
    let mut stream = TcpStream::connect(daemon.addr).await.expect("connect");
    stream
        .write_all(
            format!("GET /<img src=x onerror=alert(1)>{token} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 400") || answer.starts_with("HTTP/1.1 404"),
        "{answer}"
    );
    assert!(!answer.contains(token), "{answer}");
    daemon.stop().await;
}

/// A prober whose attempts never end (the daemon's own prober always ends by its deadline; this
/// stands for any handler bug that would hang a request).
#[derive(Debug)]
struct Hanging;

impl Prober for Hanging {
    fn probe<'a>(&'a self, _target: &'a Target, _probe: &'a Probe) -> ProbeFuture<'a> {
        Box::pin(std::future::pending())
    }
}

#[tokio::test(start_paused = true)]
async fn a_request_that_never_finishes_is_cut_at_the_request_timeout() {
    let text = format!(
        r#"
[[targets]]
name = "hang"
base_url = "http://127.0.0.1:9/2.0/"
api_key = "{CANARY_KEY}"

[[targets.probes]]
method = "artist.getInfo"
"#
    );
    let offline = Offline::new(&text, Arc::new(Hanging), Arc::new(SystemClock), "1", "r");
    let started = Instant::now();
    let (status, body) = offline
        .request("GET", "/probe?target=hang&probe=artist.getInfo")
        .await;
    let took = started.elapsed();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body, "request timed out\n");
    assert!(
        took >= REQUEST_TIMEOUT && took < REQUEST_TIMEOUT + Duration::from_secs(1),
        "cut after {took:?}"
    );
}

//! `reuse_connections`: a fresh connection per run by default, one kept connection when asked,
//! and a kept connection the server closed is replaced, never reported as a failure.
//!
//! The real [`HttpProber`] against a raw fake on 127.0.0.1 that keeps connections open (and
//! counts them), like nginx or Last.fm's edge does; every wait is bounded.

use std::sync::Arc;
use std::time::Duration;

use lastfm_monitor::config::{Config, Target};
use lastfm_monitor::probe::http::HttpProber;
use lastfm_monitor::probe::{ProbeOutcome, Prober};

use crate::support::TestEnv;
use crate::support::raw::{self, RawServer, Reply};

const SUCCESS_JSON: &str = r#"{"artist":{"name":"Cher"}}"#;

/// A fake that keeps each connection for `idle` after an answer.
async fn keep_alive_upstream(idle: Duration) -> RawServer {
    RawServer::always(Reply::KeepAlive {
        bytes: raw::kept_json(200, SUCCESS_JSON).into(),
        idle,
    })
    .await
}

fn target(upstream: &RawServer, reuse: bool) -> Arc<Target> {
    let text = format!(
        r#"
[[targets]]
name = "kept"
base_url = "{}"
api_key = "0123456789abcdef0123456789abcdef"
reuse_connections = {reuse}

[[targets.probes]]
method = "artist.getInfo"
params = {{ artist = "Cher" }}
"#,
        upstream.base_url()
    );
    let config = Config::parse(&text, "kept.toml", &TestEnv::default(), chrono::Utc::now())
        .unwrap_or_else(|err| panic!("the config is valid: {err}"));
    Arc::clone(&config.targets[0])
}

/// Runs the target's probe `runs` times, `gap` apart; the status of each run.
async fn run(prober: &HttpProber, target: &Target, runs: usize, gap: Duration) -> Vec<u16> {
    let mut statuses = Vec::new();
    for i in 0..runs {
        if i > 0 {
            tokio::time::sleep(gap).await;
        }
        let recorded = tokio::time::timeout(
            Duration::from_secs(10),
            prober.probe(target, &target.probes[0]),
        )
        .await
        .expect("a run ends within its deadline");
        statuses.push(match recorded.outcome {
            ProbeOutcome {
                result: Ok(response),
                ..
            } => response.status,
            ProbeOutcome {
                result: Err(failure),
                ..
            } => panic!("run {i} failed: {}", failure.describe("127.0.0.1")),
        });
    }
    statuses
}

#[tokio::test]
async fn every_run_opens_a_fresh_connection_by_default() {
    let upstream = keep_alive_upstream(Duration::from_secs(30)).await;
    let prober = HttpProber::try_new().expect("the HTTP client");
    let target = target(&upstream, false);

    let statuses = run(&prober, &target, 3, Duration::from_millis(20)).await;

    assert_eq!(statuses, [200, 200, 200]);
    assert_eq!(upstream.requests().len(), 3);
    assert_eq!(
        upstream.connections(),
        3,
        "a connection per run, though the server would keep them"
    );
}

#[tokio::test]
async fn reuse_connections_sends_every_run_over_one_connection() {
    let upstream = keep_alive_upstream(Duration::from_secs(30)).await;
    let prober = HttpProber::try_new().expect("the HTTP client");
    let target = target(&upstream, true);

    let statuses = run(&prober, &target, 3, Duration::from_millis(20)).await;

    assert_eq!(statuses, [200, 200, 200]);
    assert_eq!(upstream.requests().len(), 3);
    assert_eq!(upstream.connections(), 1);
}

#[tokio::test]
async fn a_kept_connection_the_server_closed_is_replaced_not_a_failure() {
    // The server closes an idle connection after 100 ms; the runs come 400 ms apart.
    let upstream = keep_alive_upstream(Duration::from_millis(100)).await;
    let prober = HttpProber::try_new().expect("the HTTP client");
    let target = target(&upstream, true);

    let statuses = run(&prober, &target, 3, Duration::from_millis(400)).await;

    assert_eq!(
        statuses,
        [200, 200, 200],
        "no run sees the closed connection"
    );
    assert_eq!(
        upstream.requests().len(),
        3,
        "one request per run, none resent"
    );
    assert_eq!(upstream.connections(), 3);
}

/// On a kept connection a run skips DNS, connect and TLS: those timings are zero, and the time
/// goes to the request and the body.
#[tokio::test]
async fn a_run_on_a_kept_connection_times_no_dns_connect_or_tls() {
    let upstream = keep_alive_upstream(Duration::from_secs(30)).await;
    let prober = HttpProber::try_new().expect("the HTTP client");
    let text = format!(
        r#"
[[targets]]
name = "kept"
base_url = "http://localhost:{}/2.0/"
api_key = "0123456789abcdef0123456789abcdef"
reuse_connections = true

[[targets.probes]]
method = "artist.getInfo"
"#,
        upstream.addr.port()
    );
    let config = Config::parse(&text, "kept.toml", &TestEnv::default(), chrono::Utc::now())
        .unwrap_or_else(|err| panic!("the config is valid: {err}"));
    let target = &config.targets[0];
    let mut timings = Vec::new();
    for _ in 0..2 {
        let outcome = tokio::time::timeout(
            Duration::from_secs(10),
            prober.probe(target, &target.probes[0]),
        )
        .await
        .expect("a run ends within its deadline")
        .outcome;
        assert!(outcome.result.is_ok(), "{outcome:?}");
        timings.push(outcome.timings);
        // hyper hands a connection back to its pool from a task of its own once the body is
        // read; on a busy machine the next run could otherwise start before it is back.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(upstream.connections(), 1);
    let (first, kept) = (timings[0], timings[1]);
    assert!(
        first.dns > Duration::ZERO && first.connect > Duration::ZERO,
        "{first:?}"
    );
    assert_eq!(
        (kept.dns, kept.connect, kept.tls),
        (Duration::ZERO, Duration::ZERO, Duration::ZERO),
        "{kept:?}"
    );
    assert!(kept.first_byte > Duration::ZERO, "{kept:?}");
}

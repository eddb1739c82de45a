//! Running out of descriptors is this host's fault, not Last.fm's: the real binary, started
//! under `ulimit -n 64` with 200 probes due at once against an upstream that answers slowly,
//! runs out of descriptors for real (EMFILE at `socket()`). The runs that could not connect are
//! `connection_error` blamed `local`, a warning names the errno, the target raises
//! `local_resources_exhausted` and clears it when a run gets past `connect`, and availability
//! never moves (`down_after = 1`, so a single failure blamed on Last.fm would move it).

#![allow(
    clippy::unwrap_used,
    reason = "process and pipe plumbing: a failed unwrap is a failed test"
)]

use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use crate::support::child::{ChildDaemon, many_probes};
use crate::support::raw::{self, RawServer, Reply};

/// More runs in flight at once than the descriptors left under the limit.
const PROBES: usize = 200;
/// The descriptor limit, soft and hard, so the daemon cannot raise it.
const LIMIT: u32 = 64;
/// Bound on the wait for every event.
const WAIT: Duration = Duration::from_secs(20);

const SUCCESS_JSON: &str = r#"{"artist":{"name":"Cher","listeners":"1234"}}"#;

fn config(upstream: std::net::SocketAddr) -> String {
    many_probes(
        "interval = \"10s\"\ntimeout = \"5s\"\nstartup_jitter = \"0s\"",
        &format!("http://{upstream}/2.0/"),
        "max_requests_per_second = 1000.0\nburst = 100\ndown_after = 1",
        PROBES,
    )
}

/// The daemon under `ulimit -n LIMIT`, with its JSON log lines at debug level.
fn start_limited(config: &str) -> ChildDaemon {
    ChildDaemon::start(&format!("-n {LIMIT}"), config, &["--log.level", "debug"])
}

fn message(event: &Value) -> &str {
    event["fields"]["message"].as_str().unwrap_or("")
}

fn condition_event(event: &Value, text: &str) -> bool {
    message(event) == text
        && event["fields"]["condition"] == "local_resources_exhausted"
        && event["fields"]["target"] == "t"
}

#[test]
fn running_out_of_descriptors_is_blamed_on_this_host_and_never_moves_availability() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // Each answer takes about half a second, so the first runs still hold their sockets when
    // the last ones ask for theirs.
    let upstream = runtime.block_on(RawServer::always(Reply::Trickle {
        head: raw::head(
            "HTTP/1.1 200 OK",
            &[
                ("Content-Type", "application/json"),
                ("Content-Length", &SUCCESS_JSON.len().to_string()),
            ],
        ),
        body: SUCCESS_JSON.as_bytes().to_vec(),
        every: Duration::from_millis(10),
    }));
    let mut daemon = start_limited(&config(upstream.addr));
    let deadline = Instant::now() + WAIT;

    let warning = daemon.event_where("naming the errno", deadline, |e| {
        message(e).contains("ran out of descriptors")
    });
    assert_eq!(warning["level"], "WARN", "{warning}");
    assert_eq!(warning["fields"]["errno"], "EMFILE", "{warning}");
    assert_eq!(warning["fields"]["phase"], "connect", "{warning}");

    let run = daemon.event_where("of a run blamed local", deadline, |e| {
        message(e) == "probe run" && e["fields"]["blame"] == "local"
    });
    assert_eq!(run["fields"]["outcome"], "connection_error", "{run}");
    let raised = daemon.event_where("raising the condition", deadline, |e| {
        condition_event(e, "condition raised")
    });
    assert_eq!(raised["level"], "WARN", "{raised}");
    // A run that had its socket gets its answer and so gets past `connect`: the shortage is
    // over for the target.
    daemon.event_where("clearing the condition", deadline, |e| {
        condition_event(e, "condition cleared")
    });
    let successes = daemon
        .seen
        .iter()
        .filter(|e| message(e) == "probe run" && e["fields"]["outcome"] == "success")
        .count();
    assert!(successes > 0, "some runs had descriptors and succeeded");
    let unavailable: Vec<&Value> = daemon
        .seen
        .iter()
        .filter(|e| message(e).contains("target unavailable"))
        .collect();
    assert!(
        unavailable.is_empty(),
        "our own shortage moved availability: {unavailable:?}"
    );
    let upstream_blamed = daemon
        .seen
        .iter()
        .filter(|e| message(e) == "probe run" && e["fields"]["blame"] == "upstream")
        .count();
    assert_eq!(upstream_blamed, 0, "no run is blamed on Last.fm");
    drop(daemon);
    drop(upstream);
}

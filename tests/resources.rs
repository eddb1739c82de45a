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

use std::io::BufRead as _;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use crate::support::raw::{self, RawServer, Reply};
use crate::support::{CANARY_KEY, spawn_with_stderr};

/// More runs in flight at once than the descriptors left under the limit.
const PROBES: usize = 200;
/// The descriptor limit, soft and hard, so the daemon cannot raise it.
const LIMIT: u32 = 64;
/// Bound on the wait for every event.
const WAIT: Duration = Duration::from_secs(20);

const SUCCESS_JSON: &str = r#"{"artist":{"name":"Cher","listeners":"1234"}}"#;

fn config(upstream: std::net::SocketAddr) -> String {
    let mut text = format!(
        "[defaults]\ninterval = \"10s\"\ntimeout = \"5s\"\nstartup_jitter = \"0s\"\n\n\
         [[targets]]\nname = \"t\"\nbase_url = \"http://{upstream}/2.0/\"\n\
         api_key = \"{CANARY_KEY}\"\nmax_requests_per_second = 1000.0\nburst = 100\n\
         down_after = 1\n"
    );
    for i in 0..PROBES {
        text.push_str(&format!(
            "\n[[targets.probes]]\nname = \"p{i}\"\nmethod = \"artist.getInfo\"\n"
        ));
    }
    text
}

/// The daemon under `ulimit -n LIMIT`, with its JSON log lines at debug level.
struct Limited {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<Value>,
    _dir: tempfile::TempDir,
}

impl Limited {
    fn start(config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, config).unwrap();
        let (child, stderr) = spawn_with_stderr(
            Command::new("sh")
                .arg("-c")
                .arg(format!("ulimit -n {LIMIT} && exec \"$0\" \"$@\""))
                .arg(env!("CARGO_BIN_EXE_lastfm-monitor"))
                .args([
                    "--web.listen-address",
                    "127.0.0.1:0",
                    "--log.format",
                    "json",
                    "--log.level",
                    "debug",
                ])
                .arg("--config.file")
                .arg(&path),
        );
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
            _dir: dir,
        }
    }

    /// The first log event for which `wanted` holds, waiting at most until `deadline`.
    fn event(&mut self, what: &str, deadline: Instant, wanted: impl Fn(&Value) -> bool) -> Value {
        let mut checked = 0;
        loop {
            if let Some(event) = self.seen[checked..].iter().find(|e| wanted(e)) {
                return event.clone();
            }
            checked = self.seen.len();
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Ok(event) = serde_json::from_str::<Value>(&line) {
                        self.seen.push(event);
                    }
                }
                Err(_) => panic!(
                    "no log event {what} within {WAIT:?}; {} events seen, the last ones:\n{}",
                    self.seen.len(),
                    self.seen
                        .iter()
                        .rev()
                        .take(20)
                        .map(Value::to_string)
                        .collect::<Vec<_>>()
                        .join("\n")
                ),
            }
        }
    }
}

impl Drop for Limited {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
    let mut daemon = Limited::start(&config(upstream.addr));
    let deadline = Instant::now() + WAIT;

    let warning = daemon.event("naming the errno", deadline, |e| {
        message(e).contains("ran out of descriptors")
    });
    assert_eq!(warning["level"], "WARN", "{warning}");
    assert_eq!(warning["fields"]["errno"], "EMFILE", "{warning}");
    assert_eq!(warning["fields"]["phase"], "connect", "{warning}");

    let run = daemon.event("of a run blamed local", deadline, |e| {
        message(e) == "probe run" && e["fields"]["blame"] == "local"
    });
    assert_eq!(run["fields"]["outcome"], "connection_error", "{run}");
    let raised = daemon.event("raising the condition", deadline, |e| {
        condition_event(e, "condition raised")
    });
    assert_eq!(raised["level"], "WARN", "{raised}");
    // A run that had its socket gets its answer and so gets past `connect`: the shortage is
    // over for the target.
    daemon.event("clearing the condition", deadline, |e| {
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

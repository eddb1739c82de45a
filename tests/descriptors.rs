//! The file descriptor limit at start-up (src/daemon/descriptors.rs): the real binary, started under a
//! lowered `ulimit -n`, raises its soft limit as far as the configuration needs, grows its
//! descriptor table ahead of the first burst, and says plainly when the hard limit is short.

#![allow(
    clippy::unwrap_used,
    reason = "process and pipe plumbing: a failed unwrap is a failed test"
)]

use std::io::BufRead as _;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::time::Duration;

use tokio::time::Instant;

use lastfm_monitor::daemon::descriptors::needed_for;

use crate::support::{CANARY_KEY, spawn_with_stderr};

const PROBES: usize = 600;

/// One target with `PROBES` probes that do not run during the test (an hour's interval and
/// jitter), against a port nothing listens on.
fn config() -> String {
    let mut text = format!(
        "[defaults]\ninterval = \"1h\"\nstartup_jitter = \"1h\"\n\n[[targets]]\nname = \"t\"\n\
         base_url = \"http://127.0.0.1:9/2.0/\"\napi_key = \"{CANARY_KEY}\"\n"
    );
    for i in 0..PROBES {
        text.push_str(&format!(
            "\n[[targets.probes]]\nname = \"p{i}\"\nmethod = \"artist.getInfo\"\n"
        ));
    }
    text
}

/// The daemon, started by `sh` after `ulimit_args`, with its JSON log lines.
struct Limited {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Limited {
    fn start(ulimit_args: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, config()).unwrap();
        let (child, stderr) = spawn_with_stderr(
            Command::new("sh")
                .arg("-c")
                .arg(format!("ulimit {ulimit_args} && exec \"$0\" \"$@\""))
                .arg(env!("CARGO_BIN_EXE_lastfm-monitor"))
                .args([
                    "--web.listen-address",
                    "127.0.0.1:0",
                    "--log.format",
                    "json",
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

    /// The first log event whose message contains `text`, waiting at most 15 s.
    fn event(&mut self, text: &str) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(event) = self
                .seen
                .iter()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|e| {
                    e["fields"]["message"]
                        .as_str()
                        .is_some_and(|m| m.contains(text))
                })
            {
                return event;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!(
                    "no log event containing {text:?} within 15 s:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// A line of /proc/PID/`file` that starts with `prefix`.
    fn proc_line(&self, file: &str, prefix: &str) -> String {
        let text = std::fs::read_to_string(format!("/proc/{}/{file}", self.child.id())).unwrap();
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in /proc/PID/{file}:\n{text}"))
            .to_owned()
    }
}

impl Drop for Limited {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn numbers(line: &str) -> Vec<u64> {
    line.split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect()
}

#[test]
fn a_low_soft_limit_is_raised_to_what_the_configuration_needs_and_the_table_grown() {
    let needed = needed_for(PROBES);
    let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum;
    assert!(
        hard.is_none_or(|hard| hard >= needed),
        "this test needs a hard RLIMIT_NOFILE of at least {needed}, not {hard:?}"
    );
    let mut daemon = Limited::start("-S -n 128");
    let raised = daemon.event("raised the soft RLIMIT_NOFILE");
    assert_eq!(raised["fields"]["from"], 128, "{raised}");
    assert_eq!(raised["fields"]["to"], needed, "{raised}");
    daemon.event("lastfm-monitor is running");
    // "Max open files  <soft>  <hard>  files"
    let limits = numbers(&daemon.proc_line("limits", "Max open files"));
    assert_eq!(
        limits.first().copied(),
        Some(needed),
        "soft limit: {limits:?}"
    );
    let table = numbers(&daemon.proc_line("status", "FDSize:"));
    assert!(
        table.first().is_some_and(|&slots| slots >= needed),
        "the descriptor table has {table:?} slots, fewer than the {needed} the configuration needs"
    );
}

#[test]
fn a_short_hard_limit_is_reported_and_the_daemon_runs_on() {
    let needed = needed_for(PROBES);
    let mut daemon = Limited::start("-n 128");
    let warning = daemon.event("more file descriptors at once than RLIMIT_NOFILE allows");
    assert_eq!(warning["level"], "WARN", "{warning}");
    assert_eq!(warning["fields"]["needed"], needed, "{warning}");
    assert_eq!(warning["fields"]["limit"], 128, "{warning}");
    assert!(
        warning["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("LimitNOFILE")),
        "the warning says what to change: {warning}"
    );
    daemon.event("lastfm-monitor is running");
    let limits = numbers(&daemon.proc_line("limits", "Max open files"));
    assert_eq!(limits, [128, 128], "limits left as they were");
}

#[test]
fn a_hard_limit_between_is_used_in_full_and_the_rest_reported() {
    let needed = needed_for(PROBES);
    let mut daemon = Limited::start("-S -n 128 && ulimit -H -n 400");
    let raised = daemon.event("raised the soft RLIMIT_NOFILE");
    assert_eq!(raised["fields"]["to"], 400, "{raised}");
    let warning = daemon.event("more file descriptors at once than RLIMIT_NOFILE allows");
    assert_eq!(warning["fields"]["needed"], needed, "{warning}");
    assert_eq!(warning["fields"]["limit"], 400, "{warning}");
    daemon.event("lastfm-monitor is running");
    let limits = numbers(&daemon.proc_line("limits", "Max open files"));
    assert_eq!(limits, [400, 400]);
}

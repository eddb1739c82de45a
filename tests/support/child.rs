//! The real binary as a child process: a configuration written to a temporary file, an optional
//! `ulimit` before `exec` (so the limits are the daemon's from its first instruction), its JSON
//! log events read as they come, killed on drop. Tests that need the process itself (its
//! descriptor limit, its RSS, an errno the kernel gives it) use this rather than an in-process
//! daemon.

use std::io::BufRead as _;
use std::net::SocketAddr;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::{CANARY_KEY, spawn_with_stderr};

/// How long [`ChildDaemon::event`] waits.
const WAIT: Duration = Duration::from_secs(15);

/// One target `t` at `base_url` with `probes` probes of `artist.getInfo` named `p0`, `p1`, …;
/// `defaults` goes into `[defaults]`, `target_extra` into the target.
pub fn many_probes(defaults: &str, base_url: &str, target_extra: &str, probes: usize) -> String {
    let mut text = format!(
        "[defaults]\n{defaults}\n\n[[targets]]\nname = \"t\"\nbase_url = \"{base_url}\"\n\
         api_key = \"{CANARY_KEY}\"\n{target_extra}\n"
    );
    for i in 0..probes {
        text.push_str(&format!(
            "\n[[targets.probes]]\nname = \"p{i}\"\nmethod = \"artist.getInfo\"\n"
        ));
    }
    text
}

/// The daemon as a child process, with its JSON log events.
#[derive(Debug)]
pub struct ChildDaemon {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Every log event read so far, in order.
    pub seen: Vec<Value>,
    _dir: tempfile::TempDir,
}

impl ChildDaemon {
    /// Starts the binary on `config` after `ulimit {ulimit}` (nothing when empty), listening on
    /// a free loopback port, logging JSON, with `extra` arguments.
    pub fn start(ulimit: &str, config: &str, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("config.toml");
        std::fs::write(&path, config).expect("the config is written");
        let prefix = if ulimit.is_empty() {
            String::new()
        } else {
            format!("ulimit {ulimit} && ")
        };
        let (child, stderr) = spawn_with_stderr(
            Command::new("sh")
                .arg("-c")
                .arg(format!("{prefix}exec \"$0\" \"$@\""))
                .arg(env!("CARGO_BIN_EXE_lastfm-monitor"))
                .args([
                    "--web.listen-address",
                    "127.0.0.1:0",
                    "--log.format",
                    "json",
                ])
                .args(extra)
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
    pub fn event_where(
        &mut self,
        what: &str,
        deadline: Instant,
        wanted: impl Fn(&Value) -> bool,
    ) -> Value {
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
                    "no log event {what} in time; {} events seen, the last ones:\n{}",
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

    /// The first log event whose message contains `text`, waiting at most 15 s.
    pub fn event(&mut self, text: &str) -> Value {
        self.event_where(
            &format!("containing {text:?}"),
            Instant::now() + WAIT,
            |e| {
                e["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(text))
            },
        )
    }

    /// The address the daemon says it listens on, once it is running.
    pub fn address(&mut self) -> SocketAddr {
        let running = self.event("lastfm-monitor is running");
        running["fields"]["address"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {running}"))
    }

    /// A line of /proc/PID/`file` that starts with `prefix`.
    pub fn proc_line(&self, file: &str, prefix: &str) -> String {
        let text = std::fs::read_to_string(format!("/proc/{}/{file}", self.child.id()))
            .expect("the daemon's /proc entry");
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in /proc/PID/{file}:\n{text}"))
            .to_owned()
    }

    /// The daemon's resident set, in bytes.
    pub fn rss_bytes(&self) -> u64 {
        let line = self.proc_line("status", "VmRSS:");
        let kib: u64 = line
            .trim_start_matches("VmRSS:")
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .expect("VmRSS in kB");
        kib * 1024
    }
}

impl Drop for ChildDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

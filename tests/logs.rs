//! The binary's logs: `--log.format json` and `logfmt`, one line per event, probe runs at debug
//! and state changes at info/warn with the metric label names as fields, and never a canary
//! secret, even at trace level with a hostile upstream echoing the key back.

#![allow(
    clippy::unwrap_used,
    reason = "process and pipe plumbing: a failed unwrap is a failed test"
)]

use std::io::BufRead as _;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lastfm_monitor::sim::Scenario;

use crate::support::{CANARY_KEY, CANARY_SECRET, CANARY_SK};

/// Two targets on one simulator: `sim` answers normally (one plain, one signed probe with the
/// session key); `hostile` gets error 10 with a message that quotes the API key.
fn config(sim: std::net::SocketAddr) -> String {
    format!(
        r#"
[defaults]
startup_jitter = "0s"
interval = "1s"
timeout = "800ms"

[[targets]]
name = "sim"
base_url = "http://{sim}/2.0/"
api_key = "{CANARY_KEY}"
api_secret = "{CANARY_SECRET}"
session_key = "{CANARY_SK}"
max_requests_per_second = 50.0
burst = 50

[[targets.probes]]
method = "artist.getInfo"
params = {{ artist = "Cher" }}

[[targets.probes]]
name = "user.getInfo.signed"
method = "user.getInfo"
signed = true

[[targets]]
name = "hostile"
base_url = "http://{sim}/2.0/"
api_key = "{CANARY_KEY}"
max_requests_per_second = 50.0
burst = 50

[[targets.probes]]
method = "track.getInfo"
params = {{ artist = "Cher", track = "Believe" }}
"#
    )
}

fn scenario() -> Scenario {
    Scenario::from_toml_str(&format!(
        r#"
name = "echo"
[[phases]]
name = "echo"
[[phases.rules]]
method = "track.getInfo"
respond = "raw"
body = '{{"error":10,"message":"Invalid API key - {CANARY_KEY} is not valid"}}'
"#
    ))
    .unwrap()
}

/// The daemon binary with its stderr collected line by line.
struct Running {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    fn start(config: &std::path::Path, format: &str) -> Self {
        let (child, stderr) = crate::support::spawn_with_stderr(
            Command::new(env!("CARGO_BIN_EXE_lastfm-monitor"))
                .args([
                    "--web.listen-address",
                    "127.0.0.1:0",
                    "--log.level",
                    "trace",
                ])
                .args(["--log.format", format])
                .arg("--config.file")
                .arg(config),
        );
        let lines = Arc::new(Mutex::new(Vec::new()));
        let reader = {
            let lines = Arc::clone(&lines);
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    lines.lock().unwrap().push(line);
                }
            })
        };
        Self {
            child,
            lines,
            reader: Some(reader),
        }
    }

    fn snapshot(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits until some line satisfies `found`, at most 15 s; returns what it extracted.
    async fn wait_for<T>(&self, what: &str, found: impl Fn(&str) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(value) = self.snapshot().iter().find_map(|l| found(l)) {
                return value;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no log line for {what} within 15 s:\n{}",
                self.snapshot().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the daemon (the process this test started) and returns every line it logged.
    fn stop(mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        self.snapshot()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn assert_no_canary(text: &str, what: &str) {
    for canary in [CANARY_KEY, CANARY_SECRET, CANARY_SK] {
        let encoded: String = url::form_urlencoded::byte_serialize(canary.as_bytes()).collect();
        for (i, line) in text.lines().enumerate() {
            assert!(
                !line.contains(canary) && !line.contains(&encoded),
                "{what} leaks a canary on line {i}:\n{line}"
            );
        }
    }
}

/// Reads the field `name` of a JSON log line's event.
fn field<'a>(event: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    event.get("fields").and_then(|f| f.get(name))
}

async fn get(url: &str) -> (u16, String) {
    let client = crate::support::http_client()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let response = client.get(url).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_event_per_line_with_label_names_and_no_secrets() {
    let (_sim, sim_addr) = lastfm_monitor::sim::spawn_local(scenario()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config(sim_addr)).unwrap();
    let daemon = Running::start(&path, "json");

    let address = wait_for_the_json_events(&daemon).await;
    assert_the_endpoints_show_no_secret(&address).await;
    let lines = daemon.stop();
    assert_json_lines_with_label_names_and_no_secrets(&lines);
}

/// Waits, as JSON events, for the start-up line, a run of each probe and the condition raised
/// on `hostile`; returns the address from the start-up line.
async fn wait_for_the_json_events(daemon: &Running) -> String {
    let address = daemon
        .wait_for("the start-up line", |line| {
            let event: serde_json::Value = serde_json::from_str(line).ok()?;
            (field(&event, "message")?.as_str()? == "lastfm-monitor is running")
                .then(|| field(&event, "address")?.as_str().map(str::to_owned))?
        })
        .await;
    for (target, probe) in [
        ("sim", "artist.getInfo"),
        ("sim", "user.getInfo.signed"),
        ("hostile", "track.getInfo"),
    ] {
        daemon
            .wait_for(&format!("a run of {target}/{probe}"), |line| {
                let event: serde_json::Value = serde_json::from_str(line).ok()?;
                (field(&event, "message")?.as_str()? == "probe run"
                    && field(&event, "target")?.as_str()? == target
                    && field(&event, "probe")?.as_str()? == probe)
                    .then_some(())
            })
            .await;
    }
    daemon
        .wait_for("the condition raised on hostile", |line| {
            let event: serde_json::Value = serde_json::from_str(line).ok()?;
            (field(&event, "message")?.as_str()? == "condition raised"
                && event.get("level")?.as_str()? == "WARN"
                && field(&event, "target")?.as_str()? == "hostile"
                && field(&event, "condition")?.as_str()? == "api_key_invalid")
                .then_some(())
        })
        .await;
    address
}

/// The surfaces that quote upstream text (page, traces, on-demand runs) answer, show the signed
/// trace and the echoing message scrubbed, and hold no canary.
async fn assert_the_endpoints_show_no_secret(address: &str) {
    let base = format!("http://{address}");
    let mut shown = String::new();
    for path in [
        "/",
        "/metrics",
        "/probe?target=sim&probe=user.getInfo.signed&debug=true",
        "/probe?target=sim&probe=artist.getInfo",
    ] {
        let (code, body) = get(&format!("{base}{path}")).await;
        assert_eq!(code, 200, "{path}: {body}");
        shown.push_str(&body);
    }
    let page = get(&format!("{base}/")).await.1;
    for id in page
        .split("href=\"/runs/")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
    {
        shown.push_str(&get(&format!("{base}/runs/{id}")).await.1);
    }
    assert!(
        shown.contains("api_sig = <secret>"),
        "a signed trace: {shown}"
    );
    assert!(
        shown.contains("is not valid"),
        "the echoing message is shown, scrubbed"
    );
    assert_no_canary(&shown, "the endpoints");
}

/// Plenty of lines, each one JSON event; every `probe run` event at DEBUG with the label
/// names as fields (three or more of them); no canary anywhere.
fn assert_json_lines_with_label_names_and_no_secrets(lines: &[String]) {
    assert!(lines.len() > 20, "trace level logs plenty: {}", lines.len());
    let mut probe_runs = 0;
    for line in lines {
        let event: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|err| panic!("not one JSON event per line ({err}): {line}"));
        if field(&event, "message").and_then(|m| m.as_str()) == Some("probe run") {
            probe_runs += 1;
            assert_eq!(event["level"], "DEBUG", "{line}");
            for name in [
                "target",
                "probe",
                "outcome",
                "code",
                "status",
                "duration_seconds",
            ] {
                assert!(field(&event, name).is_some(), "{name} in {line}");
            }
        }
    }
    assert!(probe_runs >= 3, "{probe_runs} probe runs logged");
    assert_no_canary(&lines.join("\n"), "the JSON logs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logfmt_is_the_default_with_the_same_field_names() {
    let (_sim, sim_addr) = lastfm_monitor::sim::spawn_local(scenario()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config(sim_addr)).unwrap();
    let daemon = Running::start(&path, "logfmt");
    daemon
        .wait_for("a probe run", |line| {
            (line.contains("probe run")
                && line.contains("target=sim")
                && line.contains("probe=artist.getInfo")
                && line.contains("outcome=success")
                && line.contains("level=debug"))
            .then_some(())
        })
        .await;
    daemon
        .wait_for("the condition raised", |line| {
            (line.contains("level=warn")
                && line.contains("target=hostile")
                && line.contains("condition=api_key_invalid"))
            .then_some(())
        })
        .await;
    let lines = daemon.stop();
    for line in &lines {
        assert!(
            line.contains("level="),
            "one event per line, logfmt: {line}"
        );
    }
    assert_no_canary(&lines.join("\n"), "the logfmt logs");
}

//! Secrets never leak (README.md, Configuration reference): the real binary runs with canary
//! credentials and `RUST_LOG=trace` through a simulator scenario that cycles through more than 20
//! fault cases, including upstream pages that echo the credentials back. Every byte it writes
//! (stderr, stdout) and every response of every endpoint is then searched for each canary, raw
//! and encoded.
//!
//! The key comes from the environment (`{ env = … }`), the secret and the session key from files
//! (`{ file = … }`), so the canaries are in neither the config text nor the command line. The
//! child is killed on drop, so it cannot outlive a failing test.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lastfm_monitor::classify::Outcome;
use lastfm_monitor::sim::{Scenario, Simulator};

/// The canary API key (a well-formed 32-hex-digit key, as Last.fm issues them).
const KEY: &str = "ca11ab1eca11ab1eca11ab1eca11ab1e";
/// The canary shared secret: `+`, `/` and `=` change under URL encoding.
const SECRET: &str = "5ecr3t+canary/5ecr3t=";
/// The canary session key: a space, `&` and `;` change under URL and HTML encoding.
const SK: &str = "sk canary&5e55;0n";
/// Where the child reads its key.
const KEY_VAR: &str = "LASTFM_MONITOR_CANARY_KEY";

/// How long the daemon runs through the fault cases.
const RUN_FOR: Duration = Duration::from_secs(20);
/// The scenario's phase length: the cycle of 34 phases (two of them longer) lasts 18.4 s.
const PHASE: &str = "500ms";
/// Phases that only some probes can turn into their outcome last longer than a probe interval,
/// so every probe meets them at least once.
const LONG_PHASE: &str = "1200ms";

/// Kills the child when dropped, so no daemon outlives its test, even on panic.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A pipe read to its end on a thread, so the child never blocks on a full pipe.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn drain(&self, mut pipe: impl std::io::Read + Send + 'static) {
        let buffer = Arc::clone(&self.0);
        std::thread::spawn(move || {
            let mut chunk = [0_u8; 8192];
            loop {
                match pipe.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buffer
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .extend_from_slice(&chunk[..n]),
                }
            }
        });
    }

    fn text(&self) -> String {
        let bytes = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// Every form a secret could take in output: raw, form- and percent-encoded (either hex case),
/// HTML- and JSON-escaped.
fn forms(secret: &str) -> Vec<String> {
    let form: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    let percent = form.replace('+', "%20");
    let lower = |s: &str| {
        let mut out = String::new();
        let mut hex_left = 0;
        for c in s.chars() {
            if c == '%' {
                hex_left = 2;
                out.push(c);
            } else if hex_left > 0 {
                hex_left -= 1;
                out.push(c.to_ascii_lowercase());
            } else {
                out.push(c);
            }
        }
        out
    };
    let json = serde_json::to_string(secret).expect("a string serialises");
    let mut all = vec![
        secret.to_owned(),
        lower(&form),
        lower(&percent),
        form,
        percent,
        lastfm_monitor::server::status_page::escape(secret),
        json.trim_matches('"').to_owned(),
    ];
    all.sort();
    all.dedup();
    all
}

/// 34 phases: every `respond` kind, error codes 2-29 with various statuses, responses that echo
/// the credentials (raw and encoded), and the politeness triggers (10, 26, 29) near the end,
/// each followed by a healthy phase so slow mode and backoff end within the cycle.
fn scenario_text() -> String {
    let form = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let echo_error = format!(
        r#"{{"error": 6, "message": "Invalid parameters: api_key={KEY} sk={SK} secret={SECRET}"}}"#
    );
    let echo_html = format!(
        "<html><body>502 for /2.0/?api_key={KEY}&sk={}&secret={}</body></html>",
        form(SK),
        form(SECRET)
    );
    let echo_success = format!(r#"{{"user": {{"name": "{KEY}", "realname": "{SK}"}}}}"#);
    let short = |rule: &str| (rule.to_owned(), PHASE);
    let cases = [
        short(""),
        short(r#"{ respond = "error", code = 2, status = 200 }"#),
        short(r#"{ respond = "error", code = 3 }"#),
        short(r#"{ respond = "error", code = 4 }"#),
        short(r#"{ respond = "error", code = 6, status = 200 }"#),
        short(r#"{ respond = "error", code = 8, status = 503 }"#),
        short(r#"{ respond = "error", code = 9 }"#),
        short(r#"{ respond = "error", code = 11 }"#),
        short(r#"{ respond = "error", code = 13 }"#),
        short(r#"{ respond = "error", code = 16, status = 500 }"#),
        short(r#"{ respond = "error", code = 17 }"#),
        short(r#"{ respond = "error", code = 19 }"#),
        short(r#"{ respond = "html" }"#),
        short(r#"{ respond = "html", status = 400 }"#),
        short(r#"{ respond = "empty" }"#),
        short(r#"{ respond = "truncated" }"#),
        short(r#"{ respond = "reset" }"#),
        short(r#"{ respond = "stall" }"#),
        short(r#"{ respond = "trickle" }"#),
        (
            r#"{ respond = "oversized", bytes = 100000 }"#.to_owned(),
            LONG_PHASE,
        ),
        short(
            r#"{ respond = "raw", body = "<!DOCTYPE html><p>maintenance</p>", content_type = "text/html" }"#,
        ),
        short(r#"{ respond = "success", status = 500 }"#),
        short(r#"{ respond = "raw", body = "teapot", content_type = "text/plain", status = 418 }"#),
        short(r#"{ respond = "raw", body = "moved", content_type = "text/plain", status = 302 }"#),
        short(&format!(
            "{{ respond = \"raw\", body = '{echo_error}', status = 400 }}"
        )),
        short(&format!(
            "{{ respond = \"raw\", body = '{echo_html}', content_type = \"text/html\", status = 502 }}"
        )),
        (
            format!("{{ respond = \"raw\", body = '{echo_success}' }}"),
            LONG_PHASE,
        ),
        short(r#"{ respond = "error", code = 10 }"#),
        short(""),
        short(r#"{ respond = "error", code = 26 }"#),
        short(""),
        short(r#"{ respond = "error", code = 29 }"#),
        short(""),
        short(r#"{ respond = "error", code = 29, status = 200, retry_after = 1 }"#),
    ];
    let mut text = format!(
        "name = \"canary\"\nrepeat = true\n\n[[keys]]\napi_key = \"{KEY}\"\nsecret = \"{SECRET}\"\nsession_keys = [\"{SK}\"]\n"
    );
    for (i, (rule, duration)) in cases.iter().enumerate() {
        text.push_str(&format!(
            "\n[[phases]]\nname = \"case-{i}\"\nduration = \"{duration}\"\nrules = [{rule}]\n"
        ));
    }
    text
}

/// The daemon's config: target `sim` with JSON, XML, GET, signed, signed-GET, negative-control
/// and content-checked probes; target `refused` on a closed port; target `tls` speaking TLS to
/// the plain-HTTP simulator. Every target uses the canaries.
fn config_text(sim: SocketAddr, closed: SocketAddr, dir: &Path) -> String {
    let secret_file = dir.join("api_secret");
    let sk_file = dir.join("session_key");
    std::fs::write(&secret_file, format!("{SECRET}\n")).expect("write the secret file");
    std::fs::write(&sk_file, SK).expect("write the session key file");
    let credentials = format!(
        "api_key = {{ env = \"{KEY_VAR}\" }}\napi_secret = {{ file = {:?} }}\nsession_key = {{ file = {:?} }}\n\
         max_requests_per_second = 50.0\nburst = 50\nsuspended_interval = \"1s\"\n\
         backoff_initial = \"1s\"\nbackoff_max = \"2s\"",
        secret_file.display().to_string(),
        sk_file.display().to_string(),
    );
    format!(
        r#"
[defaults]
interval = "1s"
timeout = "500ms"
startup_jitter = "1s"
max_body_bytes = 4096

[[targets]]
name = "sim"
base_url = "http://{sim}/2.0/"
{credentials}

[[targets.probes]]
name = "user"
method = "user.getInfo"
params = {{ user = "canaryuser" }}
checks = [{{ pointer = "/user/name", equals = "canaryuser" }}]

[[targets.probes]]
name = "artist.get"
method = "artist.getInfo"
params = {{ artist = "Cher" }}
http_method = "GET"
checks = [{{ pointer = "/artist/name", equals = "Cher" }}]

[[targets.probes]]
name = "search.xml"
method = "track.search"
params = {{ track = "Believe" }}
format = "xml"

[[targets.probes]]
name = "session"
method = "user.getInfo"
signed = true
checks = [{{ pointer = "/user/name", equals = "simuser" }}]

[[targets.probes]]
name = "session.get"
method = "user.getInfo"
signed = true
http_method = "GET"

[[targets.probes]]
name = "ghost"
method = "user.getInfo"
params = {{ user = "nosuchuser-canary-0000" }}
expect = {{ error = 6 }}
http_method = "GET"

[[targets]]
name = "refused"
base_url = "http://{closed}/2.0/"
{credentials}

[[targets.probes]]
name = "session.get"
method = "user.getInfo"
signed = true
http_method = "GET"

[[targets]]
name = "tls"
base_url = "https://{sim}/2.0/"
{credentials}

[[targets.probes]]
name = "session.get"
method = "user.getInfo"
signed = true
http_method = "GET"
"#
    )
}

/// The `127.0.0.1:PORT` the daemon logged as its address, once it has.
fn listening_address(stderr: &str) -> Option<SocketAddr> {
    let line = stderr
        .lines()
        .find(|l| l.contains("lastfm-monitor is running"))?;
    let start = line.find("127.0.0.1:")?;
    let rest = &line[start..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ':'))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Everything the daemon said, by where it said it.
struct Transcript(Vec<(String, String)>);

impl Transcript {
    fn add(&mut self, source: impl Into<String>, text: impl Into<String>) {
        self.0.push((source.into(), text.into()));
    }

    /// Fails with every source that holds any form of any canary.
    fn assert_clean(&self, canaries: &[(&str, Vec<String>)]) {
        let mut leaks = Vec::new();
        for (source, text) in &self.0 {
            for (name, forms) in canaries {
                for form in forms {
                    if let Some(at) = text.find(form.as_str()) {
                        let mut from = at.saturating_sub(200);
                        while !text.is_char_boundary(from) {
                            from -= 1;
                        }
                        let mut to = (at + form.len() + 100).min(text.len());
                        while !text.is_char_boundary(to) {
                            to += 1;
                        }
                        leaks.push(format!(
                            "{name} as {form:?} in {source}:\n…{}…",
                            &text[from..to]
                        ));
                    }
                }
            }
        }
        assert!(
            leaks.is_empty(),
            "{} leak(s):\n\n{}",
            leaks.len(),
            leaks.join("\n\n")
        );
    }
}

/// GET (or POST) `path` on the daemon: status and body.
async fn fetch(
    client: &reqwest::Client,
    addr: SocketAddr,
    method: &str,
    path: &str,
) -> (u16, String) {
    let url = format!("http://{addr}{path}");
    let request = if method == "POST" {
        client.post(url)
    } else {
        client.get(url)
    };
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            (status, response.text().await.unwrap_or_default())
        }
        Err(err) => (0, format!("request failed: {err}")),
    }
}

/// `/runs/{id}` links on the status page.
fn run_links(page: &str) -> Vec<String> {
    page.match_indices("href=\"/runs/")
        .filter_map(|(at, _)| {
            let rest = &page[at + "href=\"".len()..];
            rest.find('"').map(|end| rest[..end].to_owned())
        })
        .collect()
}

/// Runs the daemon with `--log.format format` through the fault cycle and returns everything it
/// said, plus the simulator (for the `api_sig` values it saw).
async fn run_through_faults(format: &str) -> (Transcript, Simulator) {
    let scenario = Scenario::from_toml_str(&scenario_text()).expect("the canary scenario is valid");
    let (sim, sim_addr) = lastfm_monitor::sim::spawn_local(scenario)
        .await
        .expect("the simulator binds 127.0.0.1:0");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, config_text(sim_addr, closed, dir.path())).expect("write the config");
    let mut transcript = Transcript(Vec::new());

    check_config(&config, format, &mut transcript);
    let (mut child, stdout, stderr) = spawn_daemon(&config, format);
    let started = tokio::time::Instant::now();
    let addr = wait_for_address(&mut child, &stderr, started).await;
    let metrics = scrape_through_the_cycle(addr, started, &mut transcript).await;
    stop_cleanly(child, &stdout, &stderr, &mut transcript).await;
    assert_the_faults_happened(&sim, &metrics, &stderr.text());
    (transcript, sim)
}

/// `--config.check` on the same config, same environment: it accepts the config, and what it
/// says goes into the transcript.
fn check_config(config: &Path, format: &str, transcript: &mut Transcript) {
    let check = Command::new(env!("CARGO_BIN_EXE_lastfm-monitor"))
        .arg("--config.file")
        .arg(config)
        .arg("--config.check")
        .args(["--log.format", format])
        .env("RUST_LOG", "trace")
        .env(KEY_VAR, KEY)
        .output()
        .expect("run --config.check");
    let check_out = String::from_utf8_lossy(&check.stdout).into_owned();
    assert!(
        check.status.success(),
        "--config.check refused the config:\n{check_out}"
    );
    assert!(check_out.contains("configuration OK"), "{check_out}");
    transcript.add("--config.check stdout", check_out);
    transcript.add(
        "--config.check stderr",
        String::from_utf8_lossy(&check.stderr),
    );
}

/// Starts the daemon on `127.0.0.1:0` with `RUST_LOG=trace`; its stdout and stderr are drained.
fn spawn_daemon(config: &Path, format: &str) -> (ChildGuard, Captured, Captured) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lastfm-monitor"))
        .arg("--config.file")
        .arg(config)
        .args(["--web.listen-address", "127.0.0.1:0"])
        .args(["--log.format", format])
        .env("RUST_LOG", "trace")
        .env(KEY_VAR, KEY)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the daemon");
    let (stdout, stderr) = (Captured::default(), Captured::default());
    stdout.drain(child.stdout.take().expect("piped stdout"));
    stderr.drain(child.stderr.take().expect("piped stderr"));
    (ChildGuard(child), stdout, stderr)
}

/// The address the daemon logs, within 15 s of `started`; fails if it exits first.
async fn wait_for_address(
    child: &mut ChildGuard,
    stderr: &Captured,
    started: tokio::time::Instant,
) -> SocketAddr {
    loop {
        if let Some(addr) = listening_address(&stderr.text()) {
            return addr;
        }
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!("the daemon exited with {status}:\n{}", stderr.text());
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the daemon did not log its address within 15 s:\n{}",
            stderr.text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Until `RUN_FOR` after `started`, every 1.2 s: `/metrics`, `/`, one probe's `/probe` (with and
/// without the debug trace) and the runs the status page links to; then a reload. Returns the
/// final `/metrics`.
async fn scrape_through_the_cycle(
    addr: SocketAddr,
    started: tokio::time::Instant,
    transcript: &mut Transcript,
) -> String {
    let client = crate::support::http_client()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("test client");
    let probes = [
        ("sim", "user"),
        ("sim", "artist.get"),
        ("sim", "search.xml"),
        ("sim", "session"),
        ("sim", "session.get"),
        ("sim", "ghost"),
        ("refused", "session.get"),
        ("tls", "session.get"),
    ];
    let mut fetched = std::collections::BTreeSet::new();
    let mut round = 0;
    while started.elapsed() < RUN_FOR {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        for path in [
            "/metrics",
            "/",
            "/api/v1/status",
            "/api/v1/incidents.atom",
            "/badge/sim.svg",
        ] {
            let (_, body) = fetch(&client, addr, "GET", path).await;
            transcript.add(format!("GET {path} (round {round})"), body);
        }
        let (target, probe) = probes[round % probes.len()];
        for debug in ["&debug=true", ""] {
            let path = format!("/probe?target={target}&probe={probe}{debug}");
            let (_, body) = fetch(&client, addr, "GET", &path).await;
            transcript.add(format!("GET {path}"), body);
        }
        let (_, page) = fetch(&client, addr, "GET", "/").await;
        for link in run_links(&page) {
            if fetched.len() < 400 && fetched.insert(link.clone()) {
                let (_, body) = fetch(&client, addr, "GET", &link).await;
                transcript.add(format!("GET {link}"), body);
            }
        }
        round += 1;
    }
    let (status, body) = fetch(&client, addr, "POST", "/-/reload").await;
    assert_eq!(status, 200, "reload: {body}");
    transcript.add("POST /-/reload", body);
    let (_, metrics) = fetch(&client, addr, "GET", "/metrics").await;
    transcript.add("GET /metrics (final)", metrics.clone());
    metrics
}

/// A clean stop, so shutdown logging is searched too: SIGTERM, then the daemon exits
/// successfully within 10 s. Its stderr and stdout go into the transcript.
async fn stop_cleanly(
    mut child: ChildGuard,
    stdout: &Captured,
    stderr: &Captured,
    transcript: &mut Transcript,
) {
    // The shell's `kill` builtin, because `/bin/kill` is not on every machine; the guard kills
    // if this fails.
    let _ = Command::new("/bin/sh")
        .args(["-c", &format!("kill -TERM {}", child.0.id())])
        .status();
    let stopping = tokio::time::Instant::now();
    let mut exit = None;
    while stopping.elapsed() < Duration::from_secs(10) {
        if let Ok(Some(status)) = child.0.try_wait() {
            exit = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(child);
    // The pipes close with the process; give the reader threads a moment to finish.
    tokio::time::sleep(Duration::from_millis(200)).await;
    transcript.add("daemon stderr", stderr.text());
    transcript.add("daemon stdout", stdout.text());
    assert!(
        exit.is_some_and(|status| status.success()),
        "SIGTERM stops the daemon cleanly within 10 s: {exit:?}\n{}",
        stderr
            .text()
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The faults did happen: the canaries reached the simulator, signed requests verified, the run
/// covered every outcome, and `RUST_LOG=trace` logged plenty.
fn assert_the_faults_happened(sim: &Simulator, metrics: &str, stderr_text: &str) {
    let seen = sim.requests();
    assert!(
        seen.len() >= 50,
        "only {} requests reached the simulator",
        seen.len()
    );
    assert!(
        seen.iter()
            .any(|r| r.params.get("api_key").map(String::as_str) == Some(KEY))
    );
    let missing: Vec<&str> = Outcome::ALL
        .map(Outcome::as_label)
        .into_iter()
        .filter(|outcome| {
            !metrics.lines().any(|line| {
                line.starts_with("lastfm_probe_runs_total{")
                    && line.contains(&format!("outcome=\"{outcome}\""))
                    && !line.ends_with(" 0")
            })
        })
        .collect();
    assert!(
        missing.is_empty(),
        "outcomes never seen during the fault cycle: {missing:?}\n{metrics}"
    );
    assert!(
        stderr_text.lines().count() > 100,
        "RUST_LOG=trace logs plenty:\n{stderr_text}"
    );
}

/// The canaries and every `api_sig` the simulator received (replayable, so secret too).
fn canaries(sim: &Simulator) -> Vec<(&'static str, Vec<String>)> {
    let mut sigs: Vec<String> = sim
        .requests()
        .iter()
        .filter_map(|r| r.params.get("api_sig").cloned())
        .collect();
    sigs.sort();
    sigs.dedup();
    assert!(!sigs.is_empty(), "signed probes ran");
    vec![
        ("the API key", forms(KEY)),
        ("the shared secret", forms(SECRET)),
        ("the session key", forms(SK)),
        ("an api_sig", sigs),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_canary_leaks_through_json_logs_or_any_endpoint_under_faults() {
    let (transcript, sim) = run_through_faults("json").await;
    transcript.assert_clean(&canaries(&sim));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_canary_leaks_through_logfmt_logs_or_any_endpoint_under_faults() {
    let (transcript, sim) = run_through_faults("logfmt").await;
    transcript.assert_clean(&canaries(&sim));
}

#[test]
fn canary_forms_cover_the_encodings() {
    let sk = forms(SK);
    for form in [
        "sk canary&5e55;0n",
        "sk+canary%265e55%3B0n",
        "sk%20canary%265e55%3B0n",
        "sk%20canary%265e55%3b0n",
        "sk canary&amp;5e55;0n",
    ] {
        assert!(sk.iter().any(|f| f == form), "{form} missing from {sk:?}");
    }
    assert!(
        forms(SECRET)
            .iter()
            .any(|f| f == "5ecr3t%2Bcanary%2F5ecr3t%3D")
    );
}

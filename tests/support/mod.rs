//! Test infrastructure: an in-process daemon wired to a simulator, scraping and metric assertions.

#![allow(dead_code, unreachable_pub)]

pub mod child;
pub mod raw;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt as _;
use lastfm_monitor::config::secret::{Environment, REDACTED};
use lastfm_monitor::config::web::WebConfig;
use lastfm_monitor::config::{Config, Probe, Target};
use lastfm_monitor::daemon::assembly::{Assembly, Parts, assemble};
use lastfm_monitor::daemon::systemd::Notifier;
use lastfm_monitor::daemon::{self, ConfigSource, Options};
use lastfm_monitor::probe::{
    ProbeFuture, ProbeOutcome, Prober, Recorded, RequestTrace, Response, TransportFailure,
};
use lastfm_monitor::run::Origin;
use lastfm_monitor::schedule::{SystemClock, WallClock};
use lastfm_monitor::server::{self, ReloadReply, Shared};
use lastfm_monitor::sim::{Scenario, Simulator};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tower::ServiceExt as _;

/// The `outcome` label values as the contract states them (README.md, Classification), in
/// their order: the one list the tests check the exporter against.
pub const OUTCOME_LABELS: [&str; 8] = [
    "success",
    "api_error",
    "http_error",
    "malformed",
    "check_failed",
    "timeout",
    "connection_error",
    "body_too_large",
];

/// The key every test target uses: a canary that must never appear in any output.
pub const CANARY_KEY: &str = "c0ffee00c0ffee00c0ffee00c0ffee00";
/// A canary shared secret.
pub const CANARY_SECRET: &str = "5ec7e75ec7e75ec7e75ec7e75ec7e75e";
/// A canary session key.
pub const CANARY_SK: &str = "sk-canary-5e55101";

/// One `artist.getInfo` probe every second with an 800 ms deadline: the tests' usual probe.
pub const ARTIST_EVERY_SECOND: &str = r#"
[[targets.probes]]
method = "artist.getInfo"
params = { artist = "Cher" }
interval = "1s"
timeout = "800ms"
"#;

/// An environment with nothing but what a test puts in it.
#[derive(Debug, Default, Clone)]
pub struct TestEnv(pub Vec<(String, String)>);

impl Environment for TestEnv {
    fn var(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

/// Options a test may add to a daemon.
#[derive(Debug, Default)]
pub struct Extra {
    /// Where the state file is kept.
    pub state_directory: Option<std::path::PathBuf>,
    /// The status listener (`--web.status-listen-address`).
    pub status_listener: Option<Arc<std::net::TcpListener>>,
}

/// A running daemon and the simulator it probes.
#[derive(Debug)]
pub struct Daemon {
    /// Where the daemon's endpoints listen.
    pub addr: SocketAddr,
    /// The simulator (swap its scenario with `set_scenario`).
    pub sim: Simulator,
    /// The simulator's address.
    pub sim_addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    access: Access,
}

/// Spawns `command` (a daemon binary) with stdin and stdout on /dev/null, without the test's
/// `RUST_LOG` and `NOTIFY_SOCKET`, and stderr piped; returns the child and its stderr.
pub fn spawn_with_stderr(
    command: &mut std::process::Command,
) -> (std::process::Child, std::process::ChildStderr) {
    let mut child = command
        .env_remove("RUST_LOG")
        .env_remove("NOTIFY_SOCKET")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the daemon starts");
    let stderr = child.stderr.take().expect("stderr is piped");
    (child, stderr)
}

/// A reqwest client builder on the daemon's own crypto provider. reqwest is built without a
/// provider of its own (Cargo.toml), so a test that builds a client before any daemon has
/// started installs ring first, as `HttpProber::try_new` does; a second call changes nothing.
pub fn http_client() -> reqwest::ClientBuilder {
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

/// How a test reaches the daemon: the client (roots, identity, TLS versions), the scheme and the
/// basic-auth credentials to send.
#[derive(Debug, Clone)]
pub struct Access {
    /// The HTTP client.
    pub client: reqwest::Client,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// Sent as `Authorization: Basic`, when set.
    pub credentials: Option<(String, String)>,
}

impl Access {
    /// Plain HTTP, no credentials.
    pub fn plain() -> Self {
        Self {
            client: http_client()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("test client"),
            scheme: "http",
            credentials: None,
        }
    }
}

/// The `[[targets]]` header of a test target pointing at `sim`, without probes.
pub fn target_toml(sim: SocketAddr, extra: &str) -> String {
    format!(
        r#"
[[targets]]
name = "sim"
base_url = "http://{sim}/2.0/"
api_key = "{CANARY_KEY}"
api_secret = "{CANARY_SECRET}"
session_key = "{CANARY_SK}"
max_requests_per_second = 50.0
burst = 50
{extra}
"#
    )
}

impl Daemon {
    /// Starts a simulator with `scenario` and a daemon whose config is
    /// `[defaults] startup_jitter = "0s"` + `defaults` + one target `sim` (with `target_extra`)
    /// + `probes` (TOML `[[targets.probes]]` tables).
    pub async fn start(
        scenario: Scenario,
        defaults: &str,
        target_extra: &str,
        probes: &str,
    ) -> Self {
        let (sim, sim_addr) = lastfm_monitor::sim::spawn_local(scenario)
            .await
            .expect("the simulator binds 127.0.0.1:0");
        let text = format!(
            "[defaults]\nstartup_jitter = \"0s\"\n{defaults}\n{}\n{probes}",
            target_toml(sim_addr, target_extra)
        );
        Self::start_with(sim, sim_addr, &text).await
    }

    /// Starts a daemon on `text` (a complete config) next to an existing simulator.
    pub async fn start_with(sim: Simulator, sim_addr: SocketAddr, text: &str) -> Self {
        Self::start_web(sim, sim_addr, text, WebConfig::default(), Access::plain()).await
    }

    /// Starts a daemon on `text` whose targets point elsewhere (raw fakes), optionally with an
    /// injected prober; the `sim` field then holds an idle simulator nothing talks to.
    pub async fn start_config(text: &str, prober: Option<Arc<dyn Prober>>) -> Self {
        let (sim, sim_addr) = lastfm_monitor::sim::spawn_local(Scenario::healthy())
            .await
            .expect("the simulator binds 127.0.0.1:0");
        Self::launch(
            sim,
            sim_addr,
            text,
            WebConfig::default(),
            Access::plain(),
            prober,
            Extra::default(),
        )
        .await
    }

    /// [`Daemon::start_with`] behind a web config, reached through `access`.
    pub async fn start_web(
        sim: Simulator,
        sim_addr: SocketAddr,
        text: &str,
        web: WebConfig,
        access: Access,
    ) -> Self {
        Self::launch(sim, sim_addr, text, web, access, None, Extra::default()).await
    }

    /// [`Daemon::start_with`] with `extra` options (a state directory, a status listener).
    pub async fn start_extra(
        sim: Simulator,
        sim_addr: SocketAddr,
        text: &str,
        extra: Extra,
    ) -> Self {
        let (web, access) = (WebConfig::default(), Access::plain());
        Self::launch(sim, sim_addr, text, web, access, None, extra).await
    }

    async fn launch(
        sim: Simulator,
        sim_addr: SocketAddr,
        text: &str,
        web: WebConfig,
        access: Access,
        prober: Option<Arc<dyn Prober>>,
        extra: Extra,
    ) -> Self {
        let env = Arc::new(TestEnv::default());
        let config = Config::parse(text, "test.toml", env.as_ref(), chrono::Utc::now())
            .unwrap_or_else(|err| panic!("test config is invalid:\n{err}\n---\n{text}"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("bound address");
        let options = Options {
            source: ConfigSource::Fixed(text.to_owned()),
            env,
            notifier: Notifier::from_vars(None, None, None),
            reload_on_sighup: false,
            prober,
            clock: Arc::new(SystemClock),
            web,
            state_directory: extra.state_directory,
            status_listener: extra.status_listener,
        };
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(daemon::run_on(config, listener, options, async move {
            let _ = rx.await;
        }));
        let daemon = Self {
            addr,
            sim,
            sim_addr,
            shutdown: Some(tx),
            task: Some(task),
            access,
        };
        daemon.wait_for(Duration::from_secs(5), |_| true).await;
        daemon
    }

    /// The URL of `path` on the daemon.
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.access.scheme, self.addr)
    }

    /// GET `path`: status and body.
    pub async fn get(&self, path: &str) -> (u16, String) {
        self.send(self.access.client.get(self.url(path))).await
    }

    /// POST `path`: status and body.
    pub async fn post(&self, path: &str) -> (u16, String) {
        self.send(self.access.client.post(self.url(path))).await
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> (u16, String) {
        let request = match &self.access.credentials {
            Some((user, password)) => request.basic_auth(user, Some(password)),
            None => request,
        };
        let response = request.send().await.expect("the daemon answers");
        let status = response.status().as_u16();
        (status, response.text().await.expect("a text body"))
    }

    /// The exposition.
    pub async fn metrics(&self) -> String {
        let (status, body) = self.get("/metrics").await;
        assert_eq!(status, 200, "/metrics answers 200");
        body
    }

    /// Scrapes until `done(metrics)` holds, at most `limit`; returns the last scrape.
    pub async fn wait_for(&self, limit: Duration, done: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let text = self.metrics().await;
            if done(&text) {
                return text;
            }
            if tokio::time::Instant::now() >= deadline {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the metric reaches at least `min`, at most `limit`; returns the last scrape.
    pub async fn wait_metric(
        &self,
        limit: Duration,
        name: &str,
        labels: &[(&str, &str)],
        min: f64,
    ) -> String {
        self.wait_for(limit, |text| {
            metric(text, name, labels).is_some_and(|v| v >= min)
        })
        .await
    }

    /// Stops the daemon and waits for a clean exit.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let result = tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("the daemon stops within 10 s")
                .expect("the daemon task does not panic");
            result.expect("the daemon exits cleanly");
        }
    }
}

/// The value of the series `name{labels…}` (label order free), if present.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, rest) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if series_name != name {
                return None;
            }
            let all = labels
                .iter()
                .all(|(k, v)| rest.split(',').any(|pair| pair == format!("{k}=\"{v}\"")));
            if all { value.parse::<f64>().ok() } else { None }
        })
        .next()
}

/// Asserts the value of a series, printing the related series on failure.
#[track_caller]
pub fn assert_metric(text: &str, name: &str, labels: &[(&str, &str)], expected: f64) {
    let got = metric(text, name, labels);
    if got != Some(expected) {
        let related: Vec<&str> = text.lines().filter(|l| l.starts_with(name)).collect();
        panic!(
            "{name}{labels:?}: expected {expected}, got {got:?}\nrelated series:\n{}",
            related.join("\n")
        );
    }
}

/// Asserts a series is at least `min`.
#[track_caller]
pub fn assert_metric_at_least(text: &str, name: &str, labels: &[(&str, &str)], min: f64) {
    let got = metric(text, name, labels);
    if !got.is_some_and(|v| v >= min) {
        let related: Vec<&str> = text.lines().filter(|l| l.starts_with(name)).collect();
        panic!(
            "{name}{labels:?}: expected at least {min}, got {got:?}\nrelated series:\n{}",
            related.join("\n")
        );
    }
}

/// A prober that answers every run with a set response, without sockets. Its request trace
/// redacts the key as the real prober does; the response is whatever the test sets, hostile
/// echoes of secrets included.
#[derive(Debug)]
pub struct FakeProber {
    answer: Mutex<Result<Response, TransportFailure>>,
    calls: AtomicUsize,
    /// How long each answer takes.
    delay: Mutex<Duration>,
}

impl FakeProber {
    /// Answers `status` with a JSON `body`.
    pub fn json(status: u16, body: &str) -> Self {
        Self {
            answer: Mutex::new(Ok(json_response(status, body))),
            calls: AtomicUsize::new(0),
            delay: Mutex::new(Duration::ZERO),
        }
    }

    /// From now on, each answer takes `delay`.
    pub fn set_delay(&self, delay: Duration) {
        *self.delay.lock().expect("no test panicked holding it") = delay;
    }

    /// From now on, answers `status` with a JSON `body`.
    pub fn set_json(&self, status: u16, body: &str) {
        *self.answer.lock().expect("no test panicked holding it") = Ok(json_response(status, body));
    }

    /// How many runs it answered.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::Relaxed)
    }
}

fn json_response(status: u16, body: &str) -> Response {
    Response {
        status,
        content_type: Some("application/json".to_owned()),
        retry_after: None,
        headers: vec![("content-type".to_owned(), "application/json".to_owned())],
        body: body.as_bytes().to_vec(),
    }
}

impl Prober for FakeProber {
    fn probe<'a>(&'a self, target: &'a Target, probe: &'a Probe) -> ProbeFuture<'a> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let result = self
            .answer
            .lock()
            .expect("no test panicked holding it")
            .clone();
        let delay = *self.delay.lock().expect("no test panicked holding it");
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            Recorded {
                request: RequestTrace {
                    http_method: "POST",
                    url: target.base_url.to_string(),
                    params: vec![
                        ("method".to_owned(), probe.method.clone()),
                        ("api_key".to_owned(), REDACTED.to_owned()),
                    ],
                },
                outcome: ProbeOutcome {
                    elapsed: Duration::from_millis(7),
                    timings: Default::default(),
                    tls: None,
                    http_status: result.as_ref().ok().map(|r| r.status),
                    result,
                },
            }
        })
    }
}

/// The server's shared state over a fake prober, for socket-free router tests.
#[derive(Debug)]
pub struct RouterFixture {
    /// What the handlers share.
    pub shared: Arc<Shared>,
    /// The prober behind `/probe`.
    pub prober: Arc<FakeProber>,
    /// Reload requests the router sent (the app's end of the channel).
    pub reloads: Mutex<Option<mpsc::Receiver<ReloadReply>>>,
}

/// A router test's answer.
#[derive(Debug)]
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body as text.
    pub body: String,
}

impl RouterFixture {
    /// One target `sim` (base URL on loopback, never contacted) with `target_extra` and `probes`,
    /// behind `web`, answered by `prober`.
    pub fn new(target_extra: &str, probes: &str, prober: FakeProber, web: &WebConfig) -> Self {
        let text = format!(
            "[defaults]\nstartup_jitter = \"0s\"\n{}\n{probes}",
            target_toml(
                "127.0.0.1:9".parse().expect("a socket address"),
                target_extra,
            )
        );
        Self::with_config(&text, prober, web)
    }

    /// Like [`RouterFixture::new`], on a complete config `text`.
    pub fn with_config(text: &str, prober: FakeProber, web: &WebConfig) -> Self {
        let prober = Arc::new(prober);
        let wired = wire(
            text,
            Arc::clone(&prober) as Arc<dyn Prober>,
            Arc::new(SystemClock),
            ("test", "test"),
            web,
        );
        Self {
            shared: wired.shared,
            prober,
            reloads: Mutex::new(Some(wired.reloads)),
        }
    }

    /// Sends `request` through a fresh router, no sockets involved.
    pub async fn send(&self, request: Request<Body>) -> Answer {
        let (status, headers, bytes) =
            oneshot(server::router(Arc::clone(&self.shared)), request).await;
        Answer {
            status,
            headers,
            body: String::from_utf8(bytes.to_vec()).expect("a UTF-8 body"),
        }
    }

    /// GET `uri`.
    pub async fn get(&self, uri: &str) -> Answer {
        self.send(Request::get(uri).body(Body::empty()).expect("a valid URI"))
            .await
    }
}

/// The daemon's parts for `text` (a complete config) through the daemon's own assembly, with
/// no probe or reference task: runs happen only on request.
fn wire(
    text: &str,
    prober: Arc<dyn Prober>,
    clock: Arc<dyn WallClock>,
    (version, revision): (&str, &str),
    web: &WebConfig,
) -> Assembly {
    let config = Config::parse(text, "test.toml", &TestEnv::default(), clock.now())
        .unwrap_or_else(|err| panic!("test config is invalid:\n{err}\n---\n{text}"));
    let parts = Parts {
        prober,
        clock,
        version,
        revision,
        web,
        start_tasks: false,
    };
    assemble(&config, parts, Origin::Fresh).expect("the metrics register")
}

/// `request` through `router`, no sockets involved: status, headers and body bytes.
async fn oneshot(
    router: axum::Router,
    request: Request<Body>,
) -> (StatusCode, HeaderMap, axum::body::Bytes) {
    let response = router
        .oneshot(request)
        .await
        .expect("the router is infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("an in-memory body")
        .to_bytes();
    (status, headers, bytes)
}

/// Series in an exposition: every line that is not a comment or blank.
pub fn series_count(text: &str) -> usize {
    text.lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .count()
}

/// A `kB` field of `/proc/self/status` (`VmRSS`, `VmHWM`), in bytes.
pub fn proc_status_bytes(field: &str) -> u64 {
    let status =
        std::fs::read_to_string("/proc/self/status").expect("/proc/self/status is readable");
    status
        .lines()
        .find_map(|line| {
            let rest = line.strip_prefix(field)?.strip_prefix(':')?;
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|kib| kib * 1024)
        .unwrap_or_else(|| panic!("/proc/self/status has no {field}"))
}

/// Open file descriptors of this process.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd is readable")
        .count()
}

/// Mebibytes, for messages.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Runs `promtool check metrics` on `text`: `Ok(())` when clean, `Err(output)` on any finding,
/// or `None` when promtool is not installed and not required (`LASTFM_MONITOR_REQUIRE_PROMTOOL=1`
/// makes its absence a failure).
pub fn promtool_check_metrics(text: &str) -> Option<Result<(), String>> {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let required = std::env::var("LASTFM_MONITOR_REQUIRE_PROMTOOL").is_ok_and(|v| v == "1");
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound && !required => {
            eprintln!(
                "promtool not found: skipping `promtool check metrics` (install Debian's `prometheus` package; set LASTFM_MONITOR_REQUIRE_PROMTOOL=1 to make this a failure)"
            );
            return None;
        }
        Err(err) => panic!("cannot run promtool: {err}"),
    };
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(text.as_bytes())
        .expect("promtool reads the exposition");
    let output = child.wait_with_output().expect("promtool finishes");
    let findings = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() && findings.trim().is_empty() {
        Some(Ok(()))
    } else {
        Some(Err(format!("promtool: {}\n{findings}", output.status)))
    }
}

/// What a finished child process left.
#[derive(Debug)]
pub struct Finished {
    /// `None` when it was killed for running past its limit.
    pub status: Option<std::process::ExitStatus>,
    /// Everything it wrote to stdout.
    pub stdout: String,
    /// Everything it wrote to stderr.
    pub stderr: String,
}

/// Runs `command` to completion, killing it after `limit`; output goes through temp files so a
/// chatty child can never block on a full pipe.
pub fn run_with_limit(command: &mut std::process::Command, limit: Duration) -> Finished {
    let stdout = tempfile::NamedTempFile::new().expect("a temp file");
    let stderr = tempfile::NamedTempFile::new().expect("a temp file");
    let mut child = command
        .stdin(std::process::Stdio::null())
        .stdout(stdout.reopen().expect("reopen"))
        .stderr(stderr.reopen().expect("reopen"))
        .spawn()
        .expect("the command starts");
    let started = std::time::SystemTime::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break Some(status);
        }
        if started.elapsed().unwrap_or_default() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Finished {
        status,
        stdout: std::fs::read_to_string(stdout.path()).unwrap_or_default(),
        stderr: std::fs::read_to_string(stderr.path()).unwrap_or_default(),
    }
}

/// The daemon's parts wired without a socket or a probe task: a router to call with
/// `tower::ServiceExt::oneshot`, and the runner and targets to drive runs by hand. Safe under
/// paused time (paused time must never be mixed with real sockets).
#[derive(Debug)]
pub struct Offline {
    /// What the handlers share.
    pub shared: Arc<lastfm_monitor::server::Shared>,
    /// Every endpoint.
    pub router: axum::Router,
    /// Keeps the reload channel open.
    _reload: tokio::sync::mpsc::Receiver<lastfm_monitor::server::ReloadReply>,
}

impl Offline {
    /// Wires `text` (a complete config) with `prober`, metrics labelled with `version` and
    /// `revision`, and `clock`.
    pub fn new(
        text: &str,
        prober: Arc<dyn Prober>,
        clock: Arc<dyn lastfm_monitor::schedule::WallClock>,
        version: &str,
        revision: &str,
    ) -> Self {
        let wired = wire(
            text,
            prober,
            clock,
            (version, revision),
            &WebConfig::default(),
        );
        let shared = wired.shared;
        shared
            .ready
            .store(true, std::sync::atomic::Ordering::Release);
        let router = lastfm_monitor::server::router(Arc::clone(&shared));
        Self {
            shared,
            router,
            _reload: wired.reloads,
        }
    }

    /// One request through the router: status and body.
    pub async fn request(&self, method: &str, path: &str) -> (u16, String) {
        let request = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .body(axum::body::Body::empty())
            .expect("a valid request");
        let (status, _, bytes) = oneshot(self.router.clone(), request).await;
        (
            status.as_u16(),
            String::from_utf8_lossy(&bytes).into_owned(),
        )
    }
}

/// The sum of every series `name{labels…}` matches (other labels free), 0 when none does.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, rest) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let all = series_name == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.split(',').any(|pair| pair == format!("{k}=\"{v}\"")));
            if all { value.parse::<f64>().ok() } else { None }
        })
        .sum()
}

//! The real binary as systemd runs it (docs/SERVICE.md): sd_notify readiness and watchdog over a
//! fake `NOTIFY_SOCKET`, reload on SIGHUP and `POST /-/reload`, shutdown on SIGTERM/SIGINT, secrets
//! from `$CREDENTIALS_DIRECTORY`, and the exit codes of `--config.check` and start-up.
//!
//! Each test spawns `lastfm-monitor` with a cleared environment (so neither the CI's own
//! `NOTIFY_SOCKET` nor a proxy variable leaks in), a config file in a temporary directory and the
//! simulator on 127.0.0.1. The fake systemd is a unix datagram socket in that directory. A
//! [`Service`] kills its child on drop, so a failed assertion leaves no process behind, and every
//! wait has a deadline.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lastfm_monitor::sim::{Scenario, Simulator};
use tokio::time::Instant;

use crate::support::{CANARY_KEY, CANARY_SECRET, CANARY_SK, metric, target_toml};

const BIN: &str = env!("CARGO_BIN_EXE_lastfm-monitor");

/// Half of it is the ping period: one ping a second.
const WATCHDOG_USEC: &str = "2000000";

const RUNS: &str = "lastfm_probe_runs_total";
const RELOAD_OK: &str = "lastfm_monitor_config_last_reload_successful";
const RELOAD_AT: &str = "lastfm_monitor_config_last_reload_success_timestamp_seconds";

const ARTIST: &str = crate::support::ARTIST_EVERY_SECOND;

const CHART: &str = r#"
[[targets.probes]]
method = "chart.getTopArtists"
params = { limit = 1 }
interval = "1s"
timeout = "800ms"
"#;

const TAG: &str = r#"
[[targets.probes]]
method = "tag.getInfo"
params = { tag = "rock" }
interval = "1s"
timeout = "800ms"
"#;

/// A complete config: no start-up jitter, the test target `sim` (inline canary secrets), `probes`.
fn config(sim: SocketAddr, probes: &str) -> String {
    format!(
        "[defaults]\nstartup_jitter = \"0s\"\n{}\n{probes}",
        target_toml(sim, "")
    )
}

/// The 1-based line of the first occurrence of `needle` in `text`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|line| line.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} is not in the config:\n{text}"))
        + 1
}

/// A temporary directory with the config file (and whatever else a test puts there).
#[derive(Debug)]
struct Files {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Files {
    fn new(config_text: &str) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory can be created");
        let config = dir.path().join("config.toml");
        let files = Self { dir, config };
        files.write_config(config_text);
        files
    }

    /// Replaces the config file (the daemon reads it again on reload).
    fn write_config(&self, text: &str) {
        std::fs::write(&self.config, text).expect("the config file can be written");
    }

    /// A credentials directory as systemd's `LoadCredential=` sets it up, each file written the
    /// way `echo VALUE > file` leaves it: with a trailing newline.
    fn credentials(&self, entries: &[(&str, &str)]) -> PathBuf {
        let dir = self.dir.path().join("credentials");
        std::fs::create_dir_all(&dir).expect("the credentials directory can be created");
        for (name, value) in entries {
            std::fs::write(dir.join(name), format!("{value}\n"))
                .expect("a credential file can be written");
        }
        dir
    }
}

/// systemd's side of sd_notify: a datagram socket bound in a temporary directory.
#[derive(Debug)]
struct FakeSystemd {
    socket: tokio::net::UnixDatagram,
    path: PathBuf,
    /// Every message received so far, in order, for assertions on the sequence.
    seen: Vec<String>,
    _dir: tempfile::TempDir,
}

impl FakeSystemd {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory can be created");
        let path = dir.path().join("notify.sock");
        let socket =
            std::os::unix::net::UnixDatagram::bind(&path).expect("a fresh directory is bindable");
        socket
            .set_nonblocking(true)
            .expect("a bound socket can be made non-blocking");
        let socket = tokio::net::UnixDatagram::from_std(socket)
            .expect("the socket registers with the runtime");
        Self {
            socket,
            path,
            seen: Vec::new(),
            _dir: dir,
        }
    }

    /// The next message, or `None` once `deadline` has passed.
    async fn next_before(&mut self, deadline: Instant) -> Option<String> {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, self.socket.recv(&mut buf))
            .await
            .ok()?
            .expect("receiving from the notify socket works");
        let message = String::from_utf8(buf[..n].to_vec()).expect("notifications are UTF-8");
        self.seen.push(message.clone());
        Some(message)
    }

    /// Waits up to `limit` for a message whose first line is `state` (e.g. `READY=1`).
    async fn expect(&mut self, state: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        while let Some(message) = self.next_before(deadline).await {
            if message.lines().next() == Some(state) {
                return message;
            }
        }
        panic!(
            "no {state} within {limit:?}; received so far: {:?}",
            self.seen
        );
    }

    /// Receives for `period` and counts the messages whose first line is `state`.
    async fn count_during(&mut self, state: &str, period: Duration) -> usize {
        let deadline = Instant::now() + period;
        let mut count = 0;
        while let Some(message) = self.next_before(deadline).await {
            if message.lines().next() == Some(state) {
                count += 1;
            }
        }
        count
    }

    /// The states (first lines) received so far, watchdog pings left out.
    fn states(&self) -> Vec<&str> {
        self.seen
            .iter()
            .filter_map(|m| m.lines().next())
            .filter(|state| *state != "WATCHDOG=1")
            .collect()
    }
}

/// A port on 127.0.0.1 that was free a moment ago (the daemon's address must be known up front).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("the kernel hands out a free port")
        .port()
}

/// Collects a child's pipe on a thread, so a chatty child (`RUST_LOG=trace`) never blocks on it.
fn drain(mut pipe: impl std::io::Read + Send + 'static) -> Arc<Mutex<Vec<u8>>> {
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&buffer);
    std::thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut chunk) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend_from_slice(&chunk[..n]);
        }
    });
    buffer
}

/// Text collected by [`drain`].
fn text(buffer: &Mutex<Vec<u8>>) -> String {
    let bytes = buffer
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A spawned `lastfm-monitor`; killed on drop.
#[derive(Debug)]
struct Service {
    child: Child,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    client: reqwest::Client,
    /// Where the endpoints listen (`--web.listen-address`).
    addr: SocketAddr,
}

impl Drop for Service {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Service {
    /// Spawns the binary with `args` and only the environment in `env`.
    fn spawn(args: &[&str], env: &[(&str, &str)], addr: SocketAddr) -> Self {
        let mut child = Command::new(BIN)
            .args(args)
            .env_clear()
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the lastfm-monitor binary starts");
        let stdout = drain(child.stdout.take().expect("stdout is piped"));
        let stderr = drain(child.stderr.take().expect("stderr is piped"));
        let client = crate::support::http_client()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("the test client builds");
        Self {
            child,
            stdout,
            stderr,
            client,
            addr,
        }
    }

    /// Starts the daemon on `files.config` and waits until it is ready: `READY=1` on `systemd`
    /// when given (asserted within 5 s of the spawn), else `GET /-/ready` answering 200. A port
    /// taken between [`free_port`] and the bind is retried with another one.
    async fn start(
        files: &Files,
        mut systemd: Option<&mut FakeSystemd>,
        extra_env: &[(&str, &str)],
    ) -> Self {
        let config = files.config.to_str().expect("tempdir paths are UTF-8");
        let notify_socket = systemd
            .as_ref()
            .map(|s| s.path.to_str().expect("tempdir paths are UTF-8").to_owned());
        for _attempt in 0..3 {
            let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let listen = addr.to_string();
            let mut env: Vec<(&str, &str)> = extra_env.to_vec();
            if let Some(path) = &notify_socket {
                env.push(("NOTIFY_SOCKET", path));
            }
            let spawned = Instant::now();
            let mut service = Self::spawn(
                &["--config.file", config, "--web.listen-address", &listen],
                &env,
                addr,
            );
            let ready = match systemd.as_deref_mut() {
                Some(systemd) => service.wait_notified_ready(systemd, spawned).await,
                None => service.wait_http_ready().await,
            };
            match ready {
                Ok(()) => return service,
                Err(status) if text(&service.stderr).contains("cannot listen on") => {
                    eprintln!("port {addr} was taken ({status}); retrying on another");
                }
                Err(status) => panic!(
                    "the daemon exited before it was ready: {status}\nstderr:\n{}",
                    text(&service.stderr)
                ),
            }
        }
        panic!("no free port after three attempts");
    }

    /// `READY=1` within 5 s of `spawned`, or the exit status if the daemon died first.
    async fn wait_notified_ready(
        &mut self,
        systemd: &mut FakeSystemd,
        spawned: Instant,
    ) -> Result<(), ExitStatus> {
        let deadline = spawned + Duration::from_secs(5);
        loop {
            let slice = (Instant::now() + Duration::from_millis(100)).min(deadline);
            if let Some(message) = systemd.next_before(slice).await {
                if message.lines().next() == Some("READY=1") {
                    return Ok(());
                }
            }
            if let Some(status) = self.try_wait() {
                return Err(status);
            }
            assert!(
                Instant::now() < deadline,
                "no READY=1 within 5 s; received: {:?}\nstderr:\n{}",
                systemd.seen,
                text(&self.stderr)
            );
        }
    }

    /// `GET /-/ready` answering 200 within 10 s, or the exit status if the daemon died first.
    async fn wait_http_ready(&mut self) -> Result<(), ExitStatus> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let url = format!("http://{}/-/ready", self.addr);
            if let Ok(response) = self.client.get(url).send().await {
                if response.status().as_u16() == 200 {
                    return Ok(());
                }
            }
            if let Some(status) = self.try_wait() {
                return Err(status);
            }
            assert!(
                Instant::now() < deadline,
                "/-/ready did not answer 200 within 10 s\nstderr:\n{}",
                text(&self.stderr)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("the child can be polled")
    }

    /// Waits for the exit, at most `limit`; returns the status and how long it took.
    async fn wait_exit(&mut self, limit: Duration) -> (ExitStatus, Duration) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.try_wait() {
                return (status, started.elapsed());
            }
            assert!(
                started.elapsed() < limit,
                "the daemon did not exit within {limit:?}\nstderr:\n{}",
                text(&self.stderr)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends `SIG<name>` with the shell's `kill` builtin: no signal crate needed, and unlike
    /// `/bin/kill` (Debian's procps) `/bin/sh` is on every machine.
    fn signal(&self, name: &str) {
        let status = Command::new("/bin/sh")
            .args(["-c", &format!("kill -{name} {}", self.child.id())])
            .status()
            .expect("/bin/sh runs");
        assert!(status.success(), "kill -{name} failed: {status}");
    }

    fn stderr(&self) -> String {
        text(&self.stderr)
    }

    /// The stderr once `done` holds on it, waiting at most 5 s: log lines come through a pipe,
    /// so one written before READY=1 may still be on its way after it.
    async fn stderr_when(&self, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut stderr = self.stderr();
        while Instant::now() < deadline && !done(&stderr) {
            tokio::time::sleep(Duration::from_millis(50)).await;
            stderr = self.stderr();
        }
        stderr
    }

    async fn request(&self, method: reqwest::Method, path: &str) -> (u16, String) {
        let response = self
            .client
            .request(method, format!("http://{}{path}", self.addr))
            .send()
            .await
            .unwrap_or_else(|err| panic!("{path} answers: {err}"));
        let status = response.status().as_u16();
        (status, response.text().await.expect("a text body"))
    }

    async fn get(&self, path: &str) -> (u16, String) {
        self.request(reqwest::Method::GET, path).await
    }

    async fn post(&self, path: &str) -> (u16, String) {
        self.request(reqwest::Method::POST, path).await
    }

    async fn metrics(&self) -> String {
        let (status, body) = self.get("/metrics").await;
        assert_eq!(status, 200, "/metrics answers 200");
        body
    }

    /// Scrapes until `done` holds, at most `limit`; panics with the last scrape otherwise.
    async fn wait_for(&self, limit: Duration, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let text = self.metrics().await;
            if done(&text) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "not within {limit:?}: {what}\nlast scrape:\n{text}\nstderr:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Successful runs of `probe` on the test target, 0 when the series is absent.
fn successes(text: &str, probe: &str) -> f64 {
    metric(
        text,
        RUNS,
        &[("target", "sim"), ("probe", probe), ("outcome", "success")],
    )
    .unwrap_or(0.0)
}

/// Whether any series carries `probe="<probe>"`.
fn has_probe_series(text: &str, probe: &str) -> bool {
    let label = format!("probe=\"{probe}\"");
    text.lines()
        .any(|line| !line.starts_with('#') && line.contains(&label))
}

fn gauge(text: &str, name: &str) -> f64 {
    metric(text, name, &[]).unwrap_or_else(|| panic!("{name} is exported"))
}

/// Runs the binary to completion (at most 10 s); returns the exit code, stdout and stderr.
async fn run_to_end(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut service = Service::spawn(args, env, SocketAddr::from(([127, 0, 0, 1], 0)));
    let (status, _) = service.wait_exit(Duration::from_secs(10)).await;
    // The pipes close with the process; give the drain threads a moment to finish.
    tokio::time::sleep(Duration::from_millis(50)).await;
    (status.code(), text(&service.stdout), service.stderr())
}

async fn simulator(scenario: Scenario) -> (Simulator, SocketAddr) {
    lastfm_monitor::sim::spawn_local(scenario)
        .await
        .expect("the simulator binds 127.0.0.1:0")
}

// ---- sd_notify and signals ----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_ready_then_watchdog_pings_then_stopping_on_sigterm_and_exit_0() {
    let (_sim, sim_addr) = simulator(Scenario::healthy()).await;
    let files = Files::new(&config(sim_addr, ARTIST));
    let mut systemd = FakeSystemd::new();

    let mut service = Service::start(
        &files,
        Some(&mut systemd),
        &[("WATCHDOG_USEC", WATCHDOG_USEC)],
    )
    .await;

    assert_eq!(
        systemd.seen.first().map(String::as_str),
        Some("READY=1\nSTATUS=running"),
        "READY=1 is the first message"
    );
    // READY=1 comes after the bind: the endpoints answer at once.
    assert_eq!(service.get("/-/ready").await, (200, "ready\n".to_owned()));

    let pings = systemd
        .count_during("WATCHDOG=1", Duration::from_secs(4))
        .await;
    assert!(
        pings >= 2,
        "at least two WATCHDOG=1 in 4 s at WATCHDOG_USEC={WATCHDOG_USEC}, got {pings}: {:?}",
        systemd.seen
    );

    service.signal("TERM");
    let stopping = systemd.expect("STOPPING=1", Duration::from_secs(10)).await;
    assert_eq!(stopping, "STOPPING=1\nSTATUS=stopping");
    let (status, took) = service.wait_exit(Duration::from_secs(10)).await;
    eprintln!("SIGTERM: exit after {took:?}");
    assert_eq!(
        status.code(),
        Some(0),
        "exit 0 after SIGTERM (took {took:?})"
    );
    // Nothing after STOPPING=1: no ping, no second READY (whatever was sent is queued by now).
    systemd
        .count_during("WATCHDOG=1", Duration::from_millis(200))
        .await;
    assert_eq!(
        systemd.seen.last().map(String::as_str),
        Some("STOPPING=1\nSTATUS=stopping"),
        "{:?}",
        systemd.seen
    );
    assert_eq!(systemd.states(), ["READY=1", "STOPPING=1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_notify_socket_sigint_still_stops_cleanly() {
    let (_sim, sim_addr) = simulator(Scenario::healthy()).await;
    let files = Files::new(&config(sim_addr, ARTIST));
    // WATCHDOG_USEC without NOTIFY_SOCKET: nothing to notify, nothing to warn about.
    let mut service = Service::start(&files, None, &[("WATCHDOG_USEC", WATCHDOG_USEC)]).await;
    service
        .wait_for(Duration::from_secs(5), "a successful run", |text| {
            successes(text, "artist.getInfo") >= 1.0
        })
        .await;

    service.signal("INT");
    let (status, took) = service.wait_exit(Duration::from_secs(10)).await;
    eprintln!("SIGINT: exit after {took:?}");
    assert_eq!(
        status.code(),
        Some(0),
        "exit 0 after SIGINT (took {took:?})"
    );
    let stderr = service.stderr();
    assert!(stderr.contains("SIGINT received"), "{stderr}");
    assert!(!stderr.contains("systemd"), "no notify noise:\n{stderr}");
    assert!(!stderr.contains("watchdog"), "no watchdog noise:\n{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_stalled_probe_exits_0_within_10_s() {
    let stall = Scenario::from_toml_str(
        "[[phases]]\nname = \"stall\"\nrules = [{ respond = \"stall\" }]\n",
    )
    .expect("the stall scenario is valid");
    let (sim, sim_addr) = simulator(stall).await;
    let probe = r#"
[[targets.probes]]
method = "artist.getInfo"
params = { artist = "Cher" }
interval = "5m"
timeout = "2m"
"#;
    let files = Files::new(&config(sim_addr, probe));
    let mut systemd = FakeSystemd::new();
    let mut service = Service::start(
        &files,
        Some(&mut systemd),
        &[("WATCHDOG_USEC", WATCHDOG_USEC)],
    )
    .await;

    let deadline = Instant::now() + Duration::from_secs(5);
    while sim.request_count() == 0 {
        assert!(Instant::now() < deadline, "the probe reached the simulator");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A run waiting on a stalled upstream, but not past its deadline, is not "stuck": the
    // watchdog keeps being fed.
    let pings = systemd
        .count_during("WATCHDOG=1", Duration::from_millis(2500))
        .await;
    assert!(pings >= 2, "pings while a probe stalls: {:?}", systemd.seen);

    service.signal("TERM");
    let (status, took) = service.wait_exit(Duration::from_secs(10)).await;
    eprintln!("SIGTERM with a probe stalled: exit after {took:?}");
    assert_eq!(status.code(), Some(0), "exit 0 (took {took:?})");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    systemd.expect("STOPPING=1", Duration::from_secs(1)).await;
}

// ---- reload ------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_a_changed_config_and_keeps_the_counters_of_unchanged_probes() {
    let (_sim, sim_addr) = simulator(Scenario::healthy()).await;
    let files = Files::new(&config(sim_addr, &format!("{ARTIST}{CHART}")));
    let mut systemd = FakeSystemd::new();
    let service = Service::start(
        &files,
        Some(&mut systemd),
        &[("WATCHDOG_USEC", WATCHDOG_USEC)],
    )
    .await;

    let before = service
        .wait_for(
            Duration::from_secs(10),
            "3 artist runs and 1 chart run",
            |text| {
                successes(text, "artist.getInfo") >= 3.0
                    && successes(text, "chart.getTopArtists") >= 1.0
            },
        )
        .await;
    assert_eq!(gauge(&before, RELOAD_OK), 1.0);
    let loaded_at = gauge(&before, RELOAD_AT);
    assert!(loaded_at > 1.7e9, "a Unix time: {loaded_at}");
    let artist_before = successes(&before, "artist.getInfo");

    // Keep artist.getInfo as it is, drop chart.getTopArtists, add tag.getInfo.
    files.write_config(&config(sim_addr, &format!("{ARTIST}{TAG}")));
    service.signal("HUP");
    let reloading = systemd.expect("RELOADING=1", Duration::from_secs(5)).await;
    assert!(
        reloading.contains("\nMONOTONIC_USEC="),
        "RELOADING=1 carries MONOTONIC_USEC: {reloading:?}"
    );
    systemd.expect("READY=1", Duration::from_secs(5)).await;
    assert_eq!(systemd.states(), ["READY=1", "RELOADING=1", "READY=1"]);

    // READY=1 comes after the swap: the scrape right after it sees the new configuration.
    let after = service.metrics().await;
    assert_eq!(gauge(&after, RELOAD_OK), 1.0);
    assert!(
        gauge(&after, RELOAD_AT) > loaded_at,
        "the success timestamp moves on: {loaded_at} -> {}",
        gauge(&after, RELOAD_AT)
    );
    assert!(
        successes(&after, "artist.getInfo") >= artist_before,
        "artist.getInfo's counter carried on ({artist_before} before the reload):\n{after}"
    );
    assert!(
        !has_probe_series(&after, "chart.getTopArtists"),
        "every series of the removed probe is dropped:\n{after}"
    );
    assert!(
        has_probe_series(&after, "tag.getInfo"),
        "the new probe's series exist at once:\n{after}"
    );
    let stderr = service
        .stderr_when(|s| s.contains("configuration reloaded"))
        .await;
    assert!(stderr.contains("configuration reloaded"), "{stderr}");

    // Both probes of the new configuration run.
    service
        .wait_for(
            Duration::from_secs(5),
            "tag.getInfo runs and artist.getInfo keeps counting",
            |text| {
                successes(text, "tag.getInfo") >= 1.0
                    && successes(text, "artist.getInfo") > artist_before
            },
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_config_is_refused_on_sighup_and_post_and_the_old_one_keeps_running() {
    let (_sim, sim_addr) = simulator(Scenario::healthy()).await;
    let good = config(sim_addr, ARTIST);
    let files = Files::new(&good);
    let mut systemd = FakeSystemd::new();
    let service = Service::start(
        &files,
        Some(&mut systemd),
        &[("WATCHDOG_USEC", WATCHDOG_USEC)],
    )
    .await;
    let before = service
        .wait_for(Duration::from_secs(5), "an artist run", |text| {
            successes(text, "artist.getInfo") >= 1.0
        })
        .await;
    let loaded_at = gauge(&before, RELOAD_AT);

    let runs =
        refuse_two_problems_on_sighup(&service, &mut systemd, &files, sim_addr, loaded_at).await;
    refuse_an_unknown_key_on_post(&service, &files, &good).await;
    reload_the_fixed_file(&service, &files, &good, loaded_at, runs).await;
    // The POSTs' READY=1 went out before their answers; collect what is still queued.
    systemd
        .count_during("WATCHDOG=1", Duration::from_millis(300))
        .await;
    assert_eq!(
        systemd.states(),
        [
            "READY=1",
            "RELOADING=1",
            "READY=1",
            "RELOADING=1",
            "READY=1",
            "RELOADING=1",
            "READY=1"
        ],
        "every reload, good or bad, is RELOADING=1 then READY=1"
    );
}

/// Step 1, SIGHUP with two problems the validator finds together: the reload is refused (the
/// gauge 0, the success timestamp kept at `loaded_at`, nothing of it applied), each problem is
/// logged with its line, and the old probe keeps running. Returns its successes at the refusal.
async fn refuse_two_problems_on_sighup(
    service: &Service,
    systemd: &mut FakeSystemd,
    files: &Files,
    sim_addr: SocketAddr,
    loaded_at: f64,
) -> f64 {
    let two_problems = config(
        sim_addr,
        &format!(
            "{}{}",
            ARTIST.replace("timeout = \"800ms\"", "timeout = \"2s\""),
            TAG.replace("timeout = \"800ms\"", "timeout = \"3s\"")
        ),
    );
    files.write_config(&two_problems);
    service.signal("HUP");
    systemd.expect("RELOADING=1", Duration::from_secs(5)).await;
    // The old configuration keeps running, so the reload still ends with READY=1.
    systemd.expect("READY=1", Duration::from_secs(5)).await;
    let refused = service.metrics().await;
    assert_eq!(gauge(&refused, RELOAD_OK), 0.0);
    assert_eq!(
        gauge(&refused, RELOAD_AT),
        loaded_at,
        "the success timestamp stays"
    );
    assert!(
        !has_probe_series(&refused, "tag.getInfo"),
        "nothing of the refused config is applied"
    );
    assert_each_problem_is_logged_with_its_line(service, files, &two_problems).await;
    let runs = successes(&refused, "artist.getInfo");
    service
        .wait_for(
            Duration::from_secs(5),
            "the old probe keeps running",
            |text| successes(text, "artist.getInfo") > runs,
        )
        .await;
    runs
}

/// The refused reload of `two_problems` logs each of its two timeouts as a problem at
/// `path:line:`.
async fn assert_each_problem_is_logged_with_its_line(
    service: &Service,
    files: &Files,
    two_problems: &str,
) {
    let path = files.config.display().to_string();
    // READY=1 comes over the notify socket, the log lines through a pipe the test drains on
    // another thread: give those a moment to arrive.
    let located: Vec<(usize, String)> = ["timeout = \"2s\"", "timeout = \"3s\""]
        .iter()
        .map(|needle| {
            let line = line_of(two_problems, needle);
            (line, format!("{path}:{line}:"))
        })
        .collect();
    let logged = |stderr: &str, located: &str| {
        stderr.lines().any(|l| {
            l.contains(located)
                && l.contains("not shorter than the shortest gap")
                && l.contains("configuration reload refused")
        })
    };
    let stderr = service
        .stderr_when(|s| located.iter().all(|(_, l)| logged(s, l)))
        .await;
    for (line, located) in &located {
        assert!(
            logged(&stderr, located),
            "the problem at line {line} is logged with its line:\n{stderr}"
        );
    }
}

/// Step 2, POST /-/reload with an unknown key: 400 naming the key and its line, and the gauge
/// stays 0.
async fn refuse_an_unknown_key_on_post(service: &Service, files: &Files, good: &str) {
    let path = files.config.display().to_string();
    let unknown_key = good.replace("interval = \"1s\"", "intervall = \"1s\"");
    files.write_config(&unknown_key);
    let (status, body) = service.post("/-/reload").await;
    assert_eq!(status, 400, "{body}");
    let line = line_of(&unknown_key, "intervall");
    assert!(
        body.contains(&format!("{path}:{line}:")) && body.contains("unknown field `intervall`"),
        "the answer names the key and its line {line}:\n{body}"
    );
    assert!(body.contains("the previous one keeps running"), "{body}");
    assert_eq!(gauge(&service.metrics().await, RELOAD_OK), 0.0);
}

/// Step 3, the fixed file reloads: the gauge is back to 1, the timestamp moves on past
/// `loaded_at`, and the unchanged probe's counter goes on from `runs`.
async fn reload_the_fixed_file(
    service: &Service,
    files: &Files,
    good: &str,
    loaded_at: f64,
    runs: f64,
) {
    files.write_config(good);
    let (status, body) = service.post("/-/reload").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("1 probe(s)"), "{body}");
    let fixed = service.metrics().await;
    assert_eq!(gauge(&fixed, RELOAD_OK), 1.0);
    assert!(gauge(&fixed, RELOAD_AT) > loaded_at);
    assert!(
        successes(&fixed, "artist.getInfo") > runs,
        "an unchanged probe's counter survives reloads:\n{fixed}"
    );
}

// ---- secrets -----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_reach_the_upstream_trimmed_and_never_the_logs() {
    // The simulator knows exactly these secrets: a wrong key is error 10, a wrong signature 13,
    // a wrong session key 9. A success therefore proves each arrived intact.
    let scenario = Scenario::from_toml_str(&format!(
        "[[keys]]\napi_key = \"{CANARY_KEY}\"\nsecret = \"{CANARY_SECRET}\"\n\
         session_keys = [\"{CANARY_SK}\"]\n\n[[phases]]\nname = \"healthy\"\n"
    ))
    .expect("the scenario is valid");
    let (sim, sim_addr) = simulator(scenario).await;
    let files = Files::new(&credentials_config(sim_addr));
    let credentials = files.credentials(&[
        ("api_key", CANARY_KEY),
        ("api_secret", CANARY_SECRET),
        ("session_key", CANARY_SK),
    ]);
    let credentials = credentials.to_str().expect("tempdir paths are UTF-8");
    let mut service = Service::start(
        &files,
        None,
        &[
            ("CREDENTIALS_DIRECTORY", credentials),
            ("RUST_LOG", "trace"),
        ],
    )
    .await;
    service
        .wait_for(Duration::from_secs(10), "both probes succeed", |text| {
            successes(text, "artist.getInfo") >= 1.0
                && successes(text, "user.getInfo.signed") >= 1.0
        })
        .await;
    // What an operator reads besides the logs.
    let pages = [
        service.metrics().await,
        service.get("/").await.1,
        service
            .get("/probe?target=sim&probe=user.getInfo.signed&debug=true")
            .await
            .1,
    ];
    assert_the_credentials_arrived_trimmed(&sim);

    service.signal("TERM");
    let (status, _) = service.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_no_secret_in_the_logs_or(&service.stderr(), &pages);
}

/// Target `sim` with the artist probe and a signed one, every secret a systemd credential.
fn credentials_config(sim_addr: SocketAddr) -> String {
    format!(
        r#"[defaults]
startup_jitter = "0s"

[[targets]]
name = "sim"
base_url = "http://{sim_addr}/2.0/"
api_key = {{ credential = "api_key" }}
api_secret = {{ credential = "api_secret" }}
session_key = {{ credential = "session_key" }}
max_requests_per_second = 50.0
burst = 50
{ARTIST}
[[targets.probes]]
name = "user.getInfo.signed"
method = "user.getInfo"
signed = true
interval = "1s"
timeout = "800ms"
"#
    )
}

/// The signed request carried the key, the session key and a signature; every request carried
/// the key trimmed, and none the shared secret.
fn assert_the_credentials_arrived_trimmed(sim: &Simulator) {
    let requests = sim.requests();
    let signed = requests
        .iter()
        .find(|r| r.method.as_deref() == Some("user.getInfo"))
        .expect("the signed probe reached the simulator");
    assert_eq!(
        signed.params.get("api_key").map(String::as_str),
        Some(CANARY_KEY)
    );
    assert_eq!(signed.params.get("sk").map(String::as_str), Some(CANARY_SK));
    assert!(signed.params.contains_key("api_sig"));
    for request in &requests {
        assert_eq!(
            request.params.get("api_key").map(String::as_str),
            Some(CANARY_KEY),
            "the trailing newline of the credential file is trimmed"
        );
        assert!(
            request.params.values().all(|v| !v.contains(CANARY_SECRET)),
            "the shared secret is never sent: {request:?}"
        );
    }
}

/// Trace logging was on, and no secret is in the logs (`stderr`) or any of `pages`.
fn assert_no_secret_in_the_logs_or(stderr: &str, pages: &[String]) {
    assert!(
        stderr.contains("level=trace"),
        "trace logging was on:\n{stderr}"
    );
    for (name, secret) in [
        ("api_key", CANARY_KEY),
        ("api_secret", CANARY_SECRET),
        ("session_key", CANARY_SK),
    ] {
        assert!(
            !stderr.contains(secret),
            "the {name} leaked into the logs:\n{stderr}"
        );
        for page in pages {
            assert!(!page.contains(secret), "the {name} leaked:\n{page}");
        }
    }
}

// ---- exit codes --------------------------------------------------------------------------------

#[tokio::test]
async fn config_check_prints_each_probes_next_three_fires_and_exits_0() {
    let sim = SocketAddr::from(([127, 0, 0, 1], 9));
    let probes = r#"
[[targets.probes]]
method = "artist.getInfo"
params = { artist = "Cher" }
interval = "1m"

[[targets.probes]]
method = "chart.getTopArtists"
cron = "*/5 * * * *"
"#;
    let files = Files::new(&config(sim, probes).replace(
        &format!("api_key = \"{CANARY_KEY}\""),
        "api_key = { credential = \"api_key\" }",
    ));
    let credentials = files.credentials(&[("api_key", CANARY_KEY)]);
    let config = files.config.to_str().expect("tempdir paths are UTF-8");
    let (code, stdout, stderr) = run_to_end(
        &["--config.file", config, "--config.check"],
        &[(
            "CREDENTIALS_DIRECTORY",
            credentials.to_str().expect("tempdir paths are UTF-8"),
        )],
    )
    .await;
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(!stdout.contains(CANARY_KEY), "{stdout}");

    let fires = |probe: &str| -> Vec<chrono::DateTime<chrono::Utc>> {
        let mut lines = stdout.lines();
        lines
            .find(|l| l.trim_start().starts_with(&format!("probe {probe} ")))
            .unwrap_or_else(|| panic!("probe {probe} is listed:\n{stdout}"));
        let next = lines
            .next()
            .and_then(|l| l.trim_start().strip_prefix("next: "))
            .unwrap_or_else(|| panic!("probe {probe} has a `next:` line:\n{stdout}"));
        next.split(", ")
            .map(|t| {
                chrono::DateTime::parse_from_rfc3339(t)
                    .unwrap_or_else(|e| panic!("{t:?} is a time: {e}"))
                    .with_timezone(&chrono::Utc)
            })
            .collect()
    };
    let every_minute = fires("artist.getInfo");
    assert_eq!(every_minute.len(), 3, "{stdout}");
    for pair in every_minute.windows(2) {
        assert_eq!((pair[1] - pair[0]).num_seconds(), 60, "{stdout}");
    }
    let cron = fires("chart.getTopArtists");
    assert_eq!(cron.len(), 3, "{stdout}");
    for pair in cron.windows(2) {
        assert_eq!((pair[1] - pair[0]).num_seconds(), 300, "{stdout}");
    }
    use chrono::Timelike as _;
    assert!(
        cron.iter().all(|t| t.minute() % 5 == 0 && t.second() == 0),
        "{stdout}"
    );
}

#[tokio::test]
async fn config_check_with_an_unknown_key_exits_64_naming_key_and_line() {
    let text = config(SocketAddr::from(([127, 0, 0, 1], 9)), ARTIST)
        .replace("interval = \"1s\"", "intervall = \"1s\"");
    let files = Files::new(&text);
    let config = files.config.to_str().expect("tempdir paths are UTF-8");
    let (code, stdout, stderr) =
        run_to_end(&["--config.file", config, "--config.check"], &[]).await;
    assert_eq!(code, Some(64), "stderr:\n{stderr}");
    let line = line_of(&text, "intervall");
    assert!(
        stderr.contains(&format!("{config}:{line}:")) && stderr.contains("`intervall`"),
        "names the key and line {line}:\n{stderr}"
    );
    assert!(stdout.is_empty(), "{stdout}");
}

/// A config whose api_key is `{ credential = "api_key" }`.
fn credential_config() -> String {
    config(SocketAddr::from(([127, 0, 0, 1], 9)), ARTIST).replace(
        &format!("api_key = \"{CANARY_KEY}\""),
        "api_key = { credential = \"api_key\" }",
    )
}

#[tokio::test]
async fn a_missing_credential_exits_64_naming_it() {
    let files = Files::new(&credential_config());
    let config = files.config.to_str().expect("tempdir paths are UTF-8");
    // Outside systemd: no $CREDENTIALS_DIRECTORY at all.
    let (code, _, stderr) = run_to_end(&["--config.file", config, "--config.check"], &[]).await;
    assert_eq!(code, Some(64), "{stderr}");
    assert!(
        stderr.contains("credential \"api_key\"") && stderr.contains("CREDENTIALS_DIRECTORY"),
        "{stderr}"
    );
    // Under systemd without the LoadCredential= line: the directory lacks the file.
    let empty = files.credentials(&[]);
    let empty = empty.to_str().expect("tempdir paths are UTF-8");
    let (code, _, stderr) = run_to_end(
        &["--config.file", config, "--config.check"],
        &[("CREDENTIALS_DIRECTORY", empty)],
    )
    .await;
    assert_eq!(code, Some(64), "{stderr}");
    assert!(
        stderr.contains("key `api_key`") && stderr.contains(&format!("{empty}/api_key")),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_bad_config_exits_64_before_binding_even_a_taken_port() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let listen = taken.local_addr().expect("bound address").to_string();
    let unknown_key = config(SocketAddr::from(([127, 0, 0, 1], 9)), ARTIST)
        .replace("interval = \"1s\"", "intervall = \"1s\"");
    for (what, text) in [
        ("an unknown key", unknown_key),
        ("a missing credential", credential_config()),
    ] {
        let files = Files::new(&text);
        let config = files.config.to_str().expect("tempdir paths are UTF-8");
        let (code, _, stderr) = run_to_end(
            &["--config.file", config, "--web.listen-address", &listen],
            &[],
        )
        .await;
        assert_eq!(
            code,
            Some(64),
            "{what}: 64, not 1 for the taken port:\n{stderr}"
        );
        assert!(!stderr.contains("cannot listen"), "{what}:\n{stderr}");
    }
    drop(taken);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_port_with_a_valid_config_exits_1_without_ready() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = taken.local_addr().expect("bound address");
    let files = Files::new(&config(SocketAddr::from(([127, 0, 0, 1], 9)), ARTIST));
    let mut systemd = FakeSystemd::new();
    let mut service = Service::spawn(
        &[
            "--config.file",
            files.config.to_str().expect("tempdir paths are UTF-8"),
            "--web.listen-address",
            &addr.to_string(),
        ],
        &[(
            "NOTIFY_SOCKET",
            systemd.path.to_str().expect("tempdir paths are UTF-8"),
        )],
        addr,
    );
    let (status, _) = service.wait_exit(Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let stderr = service.stderr();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
    assert_eq!(
        systemd
            .next_before(Instant::now() + Duration::from_millis(200))
            .await,
        None,
        "no READY=1 without a listener"
    );
    drop(taken);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_on_a_taken_port_names_the_flag_that_moves_it() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = taken.local_addr().expect("bound address").to_string();
    let (code, _, stderr) = run_to_end(&["demo", "--web.listen-address", &addr], &[]).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
    assert!(
        stderr.contains("choose another address with --web.listen-address"),
        "the message names the flag:\n{stderr}"
    );
    drop(taken);
}

// ---- state across restarts ----------------------------------------------------------------------

/// Restarts keep the request budget (README.md, Operations; docs/SERVICE.md, Restarts are not
/// bursts) with the real binary as systemd runs it: `$STATE_DIRECTORY` (what `StateDirectory=`
/// sets) keeps the backoff of an error 29 across a restart, so the restarted daemon sends nothing
/// until it ends; the state file holds no secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_the_backoff_in_the_state_directory() {
    let limited = Scenario::from_toml_str(
        "[[phases]]\nname = \"limited\"\nrules = [{ respond = \"error\", code = 29 }]\n",
    )
    .expect("the scenario is valid");
    let (sim, sim_addr) = simulator(limited).await;
    let files = Files::new(&config(sim_addr, ARTIST));
    let state = files.dir.path().join("state");
    std::fs::create_dir(&state).expect("the state directory can be created");
    let state_env = state.to_str().expect("tempdir paths are UTF-8");

    let mut service = Service::start(&files, None, &[("STATE_DIRECTORY", state_env)]).await;
    service
        .wait_for(Duration::from_secs(5), "a rate-limited run", |text| {
            metric(text, RUNS, &[("outcome", "api_error")]).unwrap_or(0.0) >= 1.0
        })
        .await;
    service.signal("TERM");
    let (status, _) = service.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0));
    let sent = sim.requests().len();
    let saved = std::fs::read_to_string(state.join("state.json")).expect("state.json was written");
    for secret in [CANARY_KEY, CANARY_SECRET, CANARY_SK] {
        assert!(
            !saved.contains(secret),
            "a secret in the state file:\n{saved}"
        );
    }
    let parsed: serde_json::Value = serde_json::from_str(&saved).expect("state.json is JSON");
    assert!(
        parsed["targets"]["sim"]["gate"]["backoff_until_ms"].as_i64() > Some(0),
        "{saved}"
    );

    // Restarted at once: the backoff (30 to 60 s after the first 29) is still on.
    let mut service = Service::start(&files, None, &[("STATE_DIRECTORY", state_env)]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let text = service.metrics().await;
    assert_eq!(sim.requests().len(), sent, "the restart ended the backoff");
    assert!(
        metric(text.as_str(), "lastfm_target_backoff_seconds", &[]).unwrap_or(0.0) > 20.0,
        "{text}"
    );
    service.signal("TERM");
    service.wait_exit(Duration::from_secs(10)).await;
    let stderr = service.stderr();
    assert!(
        stderr.contains("still backing off after a rate limit before the restart"),
        "{stderr}"
    );

    // The same without the state directory: the restart forgets the backoff and probes at once.
    let service = Service::start(&files, None, &[]).await;
    service
        .wait_for(Duration::from_secs(5), "a run", |text| {
            metric(text, RUNS, &[("outcome", "api_error")]).unwrap_or(0.0) >= 1.0
        })
        .await;
    assert!(sim.requests().len() > sent);
}

/// A canary's cadence and its own backoff (after "too many scrobbles" on the canary account)
/// are in the state file: restarted at once, the daemon neither writes again before the
/// canary's interval nor ends the canaries' backoff, while its probes go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_a_canarys_cadence_and_backoff() {
    let busy = Scenario::from_toml_str(&format!(
        "session_users = {{ \"{CANARY_SK}\" = \"canary\" }}\n\
         [[phases]]\nname = \"busy\"\n[phases.writes]\nrate_limited = \"user\"\n"
    ))
    .expect("the scenario is valid");
    let (sim, sim_addr) = simulator(busy).await;
    let canary = "\n[[targets.canaries]]\nname = \"np\"\nuser = \"canary\"\ninterval = \"5m\"\n";
    let files = Files::new(&(config(sim_addr, ARTIST) + canary));
    let state = files.dir.path().join("state");
    std::fs::create_dir(&state).expect("the state directory can be created");
    let state_env = state.to_str().expect("tempdir paths are UTF-8");
    let writes = || {
        sim.requests()
            .iter()
            .filter(|r| r.method.as_deref() == Some("track.updateNowPlaying"))
            .count()
    };

    let mut service = Service::start(&files, None, &[("STATE_DIRECTORY", state_env)]).await;
    service
        .wait_for(Duration::from_secs(5), "a rejected canary run", |text| {
            metric(text, "lastfm_canary_runs_total", &[("result", "rejected")]).unwrap_or(0.0)
                >= 1.0
        })
        .await;
    service.signal("TERM");
    let (status, _) = service.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0));
    assert_eq!(writes(), 1);
    let saved = std::fs::read_to_string(state.join("state.json")).expect("state.json was written");
    let parsed: serde_json::Value = serde_json::from_str(&saved).expect("state.json is JSON");
    let target = &parsed["targets"]["sim"];
    assert!(
        target["canary_gate"]["backoff_until_ms"].as_i64() > Some(0),
        "{saved}"
    );
    assert!(
        target["last_sent_ms"]["np.write"].as_i64() > Some(0),
        "{saved}"
    );
    assert_eq!(
        target["gate"]["backoff_until_ms"],
        serde_json::Value::Null,
        "{saved}"
    );

    let mut service = Service::start(&files, None, &[("STATE_DIRECTORY", state_env)]).await;
    let text = service
        .wait_for(Duration::from_secs(5), "probes going on", |text| {
            metric(text, RUNS, &[("outcome", "success")]).unwrap_or(0.0) >= 2.0
        })
        .await;
    assert_eq!(writes(), 1, "the restart wrote again:\n{text}");
    service.signal("TERM");
    service.wait_exit(Duration::from_secs(10)).await;
}

#[tokio::test]
async fn a_state_directory_that_does_not_exist_exits_64() {
    let (code, _, stderr) = run_to_end(
        &[
            "--config.file",
            "config.toml",
            "--state.directory",
            "/nonexistent/lastfm",
        ],
        &[("LASTFM_API_KEY", "0123456789abcdef0123456789abcdef")],
    )
    .await;
    assert_eq!(code, Some(64), "{stderr}");
    assert!(
        stderr.contains("--state.directory /nonexistent/lastfm: not a directory"),
        "{stderr}"
    );
}

/// A state directory whose disk is full (the daemon's temporary file leads to /dev/full, where
/// every write fails with ENOSPC): the failed write leaves no temporary file behind, the old
/// `state.json` stays, and the warning says a restart would read that older file, not that it
/// would start with fresh budgets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_leaves_no_temporary_state_file_and_the_warning_says_what_a_restart_reads() {
    let (_sim, sim_addr) = simulator(Scenario::healthy()).await;
    let files = Files::new(&config(sim_addr, ARTIST));
    let state = files.dir.path().join("state");
    std::fs::create_dir(&state).expect("the state directory can be created");
    let state_env = state.to_str().expect("tempdir paths are UTF-8");
    let mut service = Service::start(&files, None, &[("STATE_DIRECTORY", state_env)]).await;
    let saved = state.join("state.json");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !saved.exists() {
        assert!(Instant::now() < deadline, "no state.json within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let temporary = state.join(format!("state.json.{}.tmp", service.child.id()));
    std::os::unix::fs::symlink("/dev/full", &temporary).expect("the symlink can be made");

    let stderr = service
        .stderr_when(|text| text.contains("cannot write the state file"))
        .await;
    service.signal("TERM");
    let (status, _) = service.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("a restart would read the budgets it saved at written_at"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("would start with fresh request budgets"),
        "{stderr}"
    );
    let left: Vec<String> = std::fs::read_dir(&state)
        .expect("the state directory is readable")
        .map(|entry| {
            entry
                .expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(left, vec!["state.json".to_owned()], "{stderr}");
}

/// A process stopped past its probes' next fires (SIGSTOP, a frozen VM) and continued: the fires
/// it missed, the first late one included, are overruns; the bucket was full, so none of them is
/// `rate_limited`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fires_missed_while_the_process_was_stopped_are_overruns_not_rate_limits() {
    let (_sim, sim_addr) = simulator(Scenario::healthy()).await;
    let files = Files::new(&config(sim_addr, ARTIST));
    let mut service = Service::start(&files, None, &[]).await;
    let skipped = "lastfm_probe_skipped_total";
    let overrun = [("probe", "artist.getInfo"), ("reason", "overrun")];
    let limited = [("probe", "artist.getInfo"), ("reason", "rate_limited")];
    service
        .wait_for(Duration::from_secs(5), "a first run", |text| {
            successes(text, "artist.getInfo") >= 1.0
        })
        .await;
    service.signal("STOP");
    // Two and a half intervals: the fire due next is past its useful end on waking.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    service.signal("CONT");
    let text = service
        .wait_for(Duration::from_secs(5), "the missed fires counted", |text| {
            metric(text, skipped, &overrun).unwrap_or(0.0) >= 2.0
                && successes(text, "artist.getInfo") >= 3.0
        })
        .await;
    assert_eq!(metric(&text, skipped, &limited), Some(0.0), "{text}");
    service.signal("TERM");
    service.wait_exit(Duration::from_secs(10)).await;
}

/// A probe that answers after 2 s: `artist.getInfo` stays through the reload, `tag.getInfo` is
/// removed by it.
fn slow_pair(sim: SocketAddr, with_tag: bool) -> String {
    let artist = "\n[[targets.probes]]\nmethod = \"artist.getInfo\"\nparams = { artist = \"Cher\" }\ninterval = \"30s\"\ntimeout = \"5s\"\n";
    let tag = "\n[[targets.probes]]\nmethod = \"tag.getInfo\"\nparams = { tag = \"disco\" }\ninterval = \"30s\"\ntimeout = \"5s\"\n";
    config(sim, &format!("{artist}{}", if with_tag { tag } else { "" }))
}

/// Reloads 1 s into requests that take 2 s: the run of the probe that stays is recorded under
/// the new configuration; the run of the removed probe is counted and logged as abandoned, and
/// brings none of its series back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_going_at_a_reload_finish_and_are_recorded_or_counted_as_abandoned() {
    let slow = Scenario::from_toml_str(
        "[[phases]]\nname = \"slow\"\nrules = [{ respond = \"success\", delay = \"2s\" }]\n",
    )
    .expect("the scenario is valid");
    let (sim, sim_addr) = simulator(slow).await;
    let files = Files::new(&slow_pair(sim_addr, true));
    let mut service = Service::start(&files, None, &[]).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while sim.request_count() < 2 {
        assert!(Instant::now() < deadline, "both probes sent within 5 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    files.write_config(&slow_pair(sim_addr, false));
    service.signal("HUP");
    // A second reload before the answers, of the same file: the run follows its probe across
    // both.
    tokio::time::sleep(Duration::from_millis(300)).await;
    service.signal("HUP");

    let text = service
        .wait_for(
            Duration::from_secs(6),
            "the runs going at the reload",
            |text| {
                successes(text, "artist.getInfo") >= 1.0
                    && metric(text, "lastfm_monitor_runs_abandoned_total", &[]) == Some(1.0)
            },
        )
        .await;
    assert_eq!(sim.request_count(), 2, "no probe sent again: {text}");
    assert!(
        !has_probe_series(&text, "tag.getInfo"),
        "the abandoned run brings no series back:\n{text}"
    );
    let stderr = service.stderr_when(|s| s.contains("run abandoned")).await;
    let abandoned = stderr
        .lines()
        .find(|line| line.contains("run abandoned"))
        .unwrap_or_else(|| panic!("no abandoned run logged:\n{stderr}"));
    assert!(abandoned.contains("probe=tag.getInfo"), "{abandoned}");
    service.signal("TERM");
    service.wait_exit(Duration::from_secs(10)).await;
}

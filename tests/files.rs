//! Files the daemon is pointed at that are not what they should be (README.md, Configuration
//! reference, Secrets; Operations): a FIFO, a huge file or a path out of
//! `$CREDENTIALS_DIRECTORY` named as a secret, and a FIFO where the state file belongs. The real
//! binary (its single-threaded runtime is what a blocking read would stall) must refuse at once,
//! keep serving through a refused reload, and stop on SIGTERM.
//!
//! Every child runs under a deadline and is killed on drop; nothing leaves 127.0.0.1.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::time::Instant;

use crate::support::{Finished, metric, run_with_limit};

const BIN: &str = env!("CARGO_BIN_EXE_lastfm-monitor");
/// A refusal takes milliseconds; this only bounds a hang.
const LIMIT: Duration = Duration::from_secs(20);
const KEY: &str = "0123456789abcdef0123456789abcdef";

/// A config whose one target is a closed port on 127.0.0.1, with `api_key` as given (a TOML value).
fn config_text(api_key: &str) -> String {
    format!(
        "[defaults]\nstartup_jitter = \"0s\"\n\n[[targets]]\nname = \"local\"\n\
         base_url = \"http://127.0.0.1:9/2.0/\"\napi_key = {api_key}\n\n\
         [[targets.probes]]\nmethod = \"artist.getInfo\"\ninterval = \"1s\"\ntimeout = \"500ms\"\n\
         params = {{ artist = \"Cher\" }}\n"
    )
}

fn fifo(path: &Path) -> &Path {
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        path,
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .expect("a FIFO can be made in a temporary directory");
    path
}

/// `--config.check` on `config` with only `env`.
fn check(config: &Path, env: &[(&str, &str)]) -> Finished {
    run_with_limit(
        Command::new(BIN)
            .args(["--config.file", config.to_str().expect("UTF-8 path")])
            .arg("--config.check")
            .env_clear()
            .envs(env.iter().copied()),
        LIMIT,
    )
}

fn assert_refused(run: &Finished, needles: &[&str]) {
    assert_eq!(
        run.status.and_then(|s| s.code()),
        Some(64),
        "exit 64 within {LIMIT:?} (None: it hung): {run:?}"
    );
    for needle in needles {
        assert!(
            run.stderr.contains(needle),
            "{needle:?} in:\n{}",
            run.stderr
        );
    }
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
}

#[test]
fn a_fifo_or_a_huge_file_as_api_key_is_refused_by_the_check_at_once() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let key = fifo(&dir.path().join("api_key")).display().to_string();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, config_text(&format!("{{ file = \"{key}\" }}"))).expect("write");
    let located = format!("{}:7:11: target \"local\": key `api_key`", config.display());
    assert_refused(
        &check(&config, &[]),
        &[
            &located,
            &format!("secret file {key} is a named pipe (FIFO)"),
        ],
    );

    let big = dir.path().join("big_key");
    std::fs::write(&big, "0".repeat(1 << 20)).expect("write");
    let text = config_text(&format!("{{ file = \"{}\" }}", big.display()));
    std::fs::write(&config, text).expect("write");
    assert_refused(
        &check(&config, &[]),
        &[&located, "is larger than 4096 bytes"],
    );

    // The configuration file itself.
    let config_fifo = fifo(&dir.path().join("fifo.toml")).to_owned();
    assert_refused(
        &check(&config_fifo, &[]),
        &["cannot read the configuration file: it is a named pipe (FIFO)"],
    );
}

#[test]
fn a_credential_that_is_a_path_is_refused_even_where_the_file_exists() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let credentials = dir.path().join("credentials");
    std::fs::create_dir(&credentials).expect("mkdir");
    std::fs::write(dir.path().join("outside"), format!("{KEY}\n")).expect("write");
    let outside = dir.path().join("outside").display().to_string();
    let config = dir.path().join("config.toml");
    let directory = credentials.to_str().expect("UTF-8 path");
    for name in ["../outside", outside.as_str()] {
        std::fs::write(
            &config,
            config_text(&format!("{{ credential = \"{name}\" }}")),
        )
        .expect("write");
        assert_refused(
            &check(&config, &[("CREDENTIALS_DIRECTORY", directory)]),
            &[
                "key `api_key`",
                &format!("credential {name:?} is not a plain file name"),
            ],
        );
    }
}

/// A spawned daemon, killed on drop.
#[derive(Debug)]
struct Running {
    child: Child,
    stderr: tempfile::NamedTempFile,
    addr: SocketAddr,
    client: reqwest::Client,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    fn spawn(config: &Path, extra: &[&str]) -> Self {
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        let stderr = tempfile::NamedTempFile::new().expect("a temp file");
        let child = Command::new(BIN)
            .args(["--config.file", config.to_str().expect("UTF-8 path")])
            .args(["--web.listen-address", &addr.to_string()])
            .args(extra)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr.reopen().expect("reopen"))
            .spawn()
            .expect("the binary starts");
        let client = crate::support::http_client()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("a client");
        Self {
            child,
            stderr,
            addr,
            client,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.stderr.path()).unwrap_or_default()
    }

    async fn request(&self, method: reqwest::Method, path: &str) -> (u16, String) {
        let response = self
            .client
            .request(method, format!("http://{}{path}", self.addr))
            .send()
            .await
            .unwrap_or_else(|err| panic!("{path} answers within 5 s: {err}\n{}", self.stderr()));
        let status = response.status().as_u16();
        (status, response.text().await.expect("a body"))
    }

    /// `/-/ready` answers 200 within 10 s.
    async fn ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let url = format!("http://{}/-/ready", self.addr);
            if let Ok(response) = self.client.get(url).send().await
                && response.status().as_u16() == 200
            {
                return;
            }
            let exited = self.child.try_wait().expect("poll the child");
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "not ready within 10 s ({exited:?}):\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, then the exit code within 10 s.
    async fn terminate(&mut self) -> Option<i32> {
        let status = Command::new("/bin/sh")
            .args(["-c", &format!("kill -TERM {}", self.child.id())])
            .status()
            .expect("/bin/sh runs");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the child") {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "SIGTERM did not stop the daemon within 10 s:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_naming_a_fifo_is_refused_and_the_daemon_keeps_serving() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config: PathBuf = dir.path().join("config.toml");
    std::fs::write(&config, config_text(&format!("\"{KEY}\""))).expect("write");
    let mut daemon = Running::spawn(&config, &[]);
    daemon.ready().await;

    let key = fifo(&dir.path().join("api_key")).display().to_string();
    std::fs::write(&config, config_text(&format!("{{ file = \"{key}\" }}"))).expect("write");
    let (status, body) = daemon.request(reqwest::Method::POST, "/-/reload").await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("key `api_key`") && body.contains(&key) && body.contains("named pipe"),
        "the refusal names the key and the path:\n{body}"
    );
    assert_eq!(
        daemon.request(reqwest::Method::GET, "/-/healthy").await.0,
        200
    );
    let (_, metrics) = daemon.request(reqwest::Method::GET, "/metrics").await;
    assert_eq!(
        metric(
            &metrics,
            "lastfm_monitor_config_last_reload_successful",
            &[]
        ),
        Some(0.0)
    );
    assert_eq!(daemon.terminate().await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_in_place_of_the_state_file_is_set_aside_and_sigterm_stops_the_daemon() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, config_text(&format!("\"{KEY}\""))).expect("write");
    let state = dir.path().join("state");
    std::fs::create_dir(&state).expect("mkdir");
    fifo(&state.join("state.json"));
    let mut daemon = Running::spawn(
        &config,
        &["--state.directory", state.to_str().expect("UTF-8 path")],
    );
    daemon.ready().await;
    let stderr = daemon.stderr();
    assert!(
        stderr.contains("state file ignored") && stderr.contains("named pipe"),
        "{stderr}"
    );
    assert_eq!(daemon.terminate().await, Some(0));
}

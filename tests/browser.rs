//! The status page in a real headless browser (Debian's `chromium`): it renders without
//! JavaScript or external assets and the probe table is there; the screenshot and the DOM are
//! kept under `target/test-artifacts/` for a human to look at.
//!
//! Without `chromium` on `PATH` the test is skipped with a message, unless
//! `LASTFM_MONITOR_REQUIRE_BROWSER=1` (CI) makes that a failure.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use lastfm_monitor::sim::Scenario;

use crate::support::{CANARY_KEY, Daemon};

const PROBES: &str = r#"
[[targets.probes]]
method = "artist.getInfo"
params = { artist = "Cher" }
interval = "1s"
timeout = "800ms"

[[targets.probes]]
name = "user.getInfo.missing"
method = "user.getInfo"
params = { user = "no-such-user-4711x" }
expect = { error = 6 }
interval = "1s"
timeout = "800ms"
"#;

/// How long one browser run may take before it is killed.
const BROWSER_DEADLINE: Duration = Duration::from_secs(90);

fn find_chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// `target/test-artifacts/`, created on demand.
fn artifacts_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR is target/tmp")
        .join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("create target/test-artifacts");
    dir
}

/// Runs the browser on `url` with `extra` arguments; returns its stdout.
fn chromium(binary: &Path, profile: &Path, extra: &[String], url: &str) -> String {
    let mut child = Command::new(binary)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--window-size=1280,2000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium starts");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    let started = tokio::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            break status;
        }
        if started.elapsed() > BROWSER_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium did not finish within {BROWSER_DEADLINE:?}; stderr:\n{}",
                err.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    assert!(status.success(), "chromium failed ({status}):\n{stderr}");
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_renders_in_a_headless_browser() {
    let Some(binary) = find_chromium() else {
        let required = std::env::var("LASTFM_MONITOR_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "LASTFM_MONITOR_REQUIRE_BROWSER=1 but no chromium on PATH (apt-get install -y chromium)"
        );
        // Straight to stderr, past the harness's capture, so a plain `cargo test` shows it.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED status_page_renders_in_a_headless_browser: no chromium on PATH \
             (apt-get install -y chromium; LASTFM_MONITOR_REQUIRE_BROWSER=1 makes this a failure)"
        );
        return;
    };
    let daemon = Daemon::start(Scenario::healthy(), "", "", PROBES).await;
    for probe in ["artist.getInfo", "user.getInfo.missing"] {
        daemon
            .wait_metric(
                Duration::from_secs(10),
                "lastfm_probe_runs_total",
                &[("probe", probe)],
                1.0,
            )
            .await;
    }
    // One run on demand too, so the recent-runs table shows both kinds.
    let (code, _) = daemon.get("/probe?target=sim&probe=artist.getInfo").await;
    assert_eq!(code, 200);

    let url = daemon.url("/");
    let artifacts = artifacts_dir();
    let screenshot = artifacts.join("status-page.png");
    let _ = std::fs::remove_file(&screenshot);
    let profile = tempfile::tempdir().expect("a browser profile directory");
    let (dom, shot) = tokio::task::spawn_blocking({
        let binary = binary.clone();
        let profile = profile.path().to_owned();
        let screenshot = screenshot.clone();
        move || {
            let dom = chromium(&binary, &profile, &["--dump-dom".to_owned()], &url);
            let shot = chromium(
                &binary,
                &profile,
                &[format!("--screenshot={}", screenshot.display())],
                &url,
            );
            (dom, shot)
        }
    })
    .await
    .expect("the browser runs do not panic");
    let _ = shot;
    std::fs::write(artifacts.join("status-page.html"), &dom).expect("keep the DOM");

    for part in [
        "id=\"targets\"",
        "id=\"probes\"",
        "id=\"recent\"",
        "artist.getInfo",
        "user.getInfo.missing",
        "next run",
        "api_error (expected)",
        "(on demand)",
        "href=\"/metrics\"",
    ] {
        assert!(dom.contains(part), "{part:?} in the rendered DOM:\n{dom}");
    }
    assert!(!dom.contains("<script"), "the page needs no JavaScript");
    assert!(!dom.contains(CANARY_KEY), "no secret on the page");
    let png = std::fs::read(&screenshot).expect("chromium wrote the screenshot");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "a real PNG, {} bytes",
        png.len()
    );
    eprintln!("status page screenshot: {}", screenshot.display());
    daemon.stop().await;
}

//! The file descriptor limit at start-up (src/daemon/descriptors.rs): the real binary, started under a
//! lowered `ulimit -n`, raises its soft limit as far as the configuration needs, grows its
//! descriptor table ahead of the first burst, and says plainly when the hard limit is short. The
//! web server's connections take at most a quarter of the limit: a flood of idle connections is
//! closed at the cap while the probes keep their descriptors, and a configured
//! `max_connections` beyond the quarter is refused with exit 64.

#![allow(
    clippy::unwrap_used,
    reason = "process and pipe plumbing: a failed unwrap is a failed test"
)]

use std::process::Command;
use std::time::Duration;

use tokio::time::Instant;

use lastfm_monitor::daemon::descriptors::{default_cap, needed_for, wanted_for};

use crate::support::child::{ChildDaemon, many_probes};
use crate::support::{ARTIST_EVERY_SECOND, metric_sum, target_toml};

const PROBES: usize = 600;

/// One target with `PROBES` probes that do not run during the test (an hour's interval and
/// jitter), against a port nothing listens on.
fn config() -> String {
    many_probes(
        "interval = \"1h\"\nstartup_jitter = \"1h\"",
        "http://127.0.0.1:9/2.0/",
        "",
        PROBES,
    )
}

/// The daemon, started by `sh` after `ulimit_args`, with its JSON log lines.
struct Limited;

impl Limited {
    fn start(ulimit_args: &str) -> ChildDaemon {
        Self::start_with(ulimit_args, &config())
    }

    fn start_with(ulimit_args: &str, config: &str) -> ChildDaemon {
        ChildDaemon::start(ulimit_args, config, &[])
    }
}

fn numbers(line: &str) -> Vec<u64> {
    line.split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect()
}

#[test]
fn a_low_soft_limit_is_raised_to_what_the_configuration_needs_and_the_table_grown() {
    let wanted = wanted_for(PROBES, 256);
    let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum;
    assert!(
        hard.is_none_or(|hard| hard >= wanted),
        "this test needs a hard RLIMIT_NOFILE of at least {wanted}, not {hard:?}"
    );
    let mut daemon = Limited::start("-S -n 128");
    let raised = daemon.event("raised the soft RLIMIT_NOFILE");
    assert_eq!(raised["fields"]["from"], 128, "{raised}");
    assert_eq!(raised["fields"]["to"], wanted, "{raised}");
    daemon.event("lastfm-monitor is running");
    // "Max open files  <soft>  <hard>  files"
    let limits = numbers(&daemon.proc_line("limits", "Max open files"));
    assert_eq!(
        limits.first().copied(),
        Some(wanted),
        "soft limit: {limits:?}"
    );
    let needed = needed_for(PROBES, 256);
    let table = numbers(&daemon.proc_line("status", "FDSize:"));
    assert!(
        table.first().is_some_and(|&slots| slots >= needed),
        "the descriptor table has {table:?} slots, fewer than the {needed} the configuration needs"
    );
}

#[test]
fn a_short_hard_limit_is_reported_and_the_daemon_runs_on() {
    // The web server's share shrinks to a quarter of the limit; the probes still do not fit.
    let needed = needed_for(PROBES, default_cap(Some(128)));
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
    let needed = needed_for(PROBES, default_cap(Some(400)));
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

/// The descriptor limit of the flood test: its quarter, 64, is the connection cap.
const FLOOD_LIMIT: u64 = 256;
/// Idle connections opened at once: four times the daemon's whole descriptor limit.
const IDLE: usize = 1000;

/// `GET /metrics` over a fresh connection: the body, or `None` when the daemon closed it.
fn scrape(addr: std::net::SocketAddr) -> Option<String> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    text.starts_with("HTTP/1.1 200").then_some(text)
}

/// Whether the daemon closed `stream` (EOF or reset), without waiting.
fn closed(mut stream: &std::net::TcpStream) -> bool {
    use std::io::Read as _;
    let mut byte = [0_u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(err) => err.kind() != std::io::ErrorKind::WouldBlock,
    }
}

/// A flood of idle connections under a small descriptor limit (the hostile-testing scenario at a
/// quarter of the scale): the connections beyond the cap are closed at once, the held ones 10 s
/// after accept, the probes keep succeeding (no failure, none blamed on Last.fm, no `target
/// unavailable`), and `/metrics` answers once the held ones are gone.
#[test]
fn idle_connections_beyond_the_cap_are_closed_at_once_and_the_probes_keep_their_descriptors() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (_sim, sim_addr) = runtime
        .block_on(lastfm_monitor::sim::spawn_local(
            lastfm_monitor::sim::Scenario::healthy(),
        ))
        .unwrap();
    let (mut daemon, addr) = four_probes_under_the_flood_limit(sim_addr);
    let cap = usize::try_from(default_cap(Some(FLOOD_LIMIT))).unwrap();
    assert_eq!(cap, 64);

    let flood_started = Instant::now();
    let idle: Vec<std::net::TcpStream> = (0..IDLE)
        .filter_map(|_| std::net::TcpStream::connect(addr).ok())
        .collect();
    for stream in &idle {
        stream.set_nonblocking(true).unwrap();
    }
    std::thread::sleep(Duration::from_secs(1));
    let open = idle.iter().filter(|s| !closed(s)).count();
    println!(
        "idle flood: {} of {IDLE} connections made, {open} still open 1 s later (cap {cap}, \
         RLIMIT_NOFILE {FLOOD_LIMIT})",
        idle.len()
    );
    assert!(
        open <= cap,
        "{open} idle connections held, more than the cap of {cap}: those beyond it must be closed at once"
    );
    assert_the_probes_kept_their_descriptors(&mut daemon, addr, idle, flood_started);
}

/// The daemon under `ulimit -n FLOOD_LIMIT`, four probes a second against `sim`; its address.
fn four_probes_under_the_flood_limit(
    sim_addr: std::net::SocketAddr,
) -> (ChildDaemon, std::net::SocketAddr) {
    let mut probes = String::new();
    for i in 0..4 {
        probes.push_str(
            &ARTIST_EVERY_SECOND.replace("method = ", &format!("name = \"p{i}\"\nmethod = ")),
        );
    }
    let text = format!(
        "[defaults]\nstartup_jitter = \"0s\"\n{}\n{probes}",
        target_toml(sim_addr, "")
    );
    let mut daemon = Limited::start_with(&format!("-n {FLOOD_LIMIT}"), &text);
    let addr = daemon.address();
    (daemon, addr)
}

/// Scrapes until `/metrics` answers (the held idle connections go 10 s after accept), then
/// checks that every probe run succeeded meanwhile and nothing was logged as unavailable.
fn assert_the_probes_kept_their_descriptors(
    daemon: &mut ChildDaemon,
    addr: std::net::SocketAddr,
    idle: Vec<std::net::TcpStream>,
    flood_started: Instant,
) {
    // The held ones go 10 s after accept; then a scrape gets in.
    let metrics = loop {
        if let Some(text) = scrape(addr) {
            break text;
        }
        assert!(
            flood_started.elapsed() < Duration::from_secs(20),
            "/metrics did not answer within 20 s of the flood"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let answered_after = flood_started.elapsed();
    let still_open = idle.iter().filter(|s| !closed(s)).count();
    drop(idle);
    let runs = metric_sum(&metrics, "lastfm_probe_runs_total", &[]);
    let successes = metric_sum(
        &metrics,
        "lastfm_probe_runs_total",
        &[("outcome", "success")],
    );
    println!(
        "/metrics answered {:.1} s after the flood began ({still_open} idle connections still open); \
         {successes} of {runs} runs succeeded",
        answered_after.as_secs_f64()
    );
    assert!(successes >= 8.0, "the probes ran meanwhile: {successes}");
    assert_eq!(
        runs, successes,
        "every run succeeded during the flood:\n{metrics}"
    );
    assert_eq!(
        metric_sum(&metrics, "lastfm_probe_failures_total", &[]),
        0.0,
        "{metrics}"
    );
    daemon.event("connection cap reached");
    for event in &daemon.seen {
        let line = event.to_string();
        assert!(
            !line.contains("target unavailable") && !line.contains("accept failed"),
            "{line}"
        );
    }
}

/// A configured `max_connections` above a quarter of the descriptor limit is refused before
/// the daemon binds, naming the file, line and key.
#[test]
fn max_connections_above_a_quarter_of_the_limit_is_exit_64_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    let text = format!(
        "[web]\nmax_connections = 65\n{}{ARTIST_EVERY_SECOND}",
        target_toml("127.0.0.1:9".parse().unwrap(), "")
    );
    std::fs::write(&path, text).unwrap();
    for extra in ["--config.check", "--web.listen-address=127.0.0.1:0"] {
        let finished = crate::support::run_with_limit(
            Command::new("sh")
                .arg("-c")
                .arg(format!("ulimit -n {FLOOD_LIMIT} && exec \"$0\" \"$@\""))
                .arg(env!("CARGO_BIN_EXE_lastfm-monitor"))
                .arg("--config.file")
                .arg(&path)
                .arg(extra),
            Duration::from_secs(20),
        );
        let stderr = &finished.stderr;
        assert_eq!(
            finished.status.and_then(|s| s.code()),
            Some(64),
            "{extra}: {stderr}"
        );
        let want = format!(
            "{}:2:19: [web]: key `max_connections`: 65 is more than a quarter of the file \
             descriptor limit ({FLOOD_LIMIT}, so at most 64)",
            path.display()
        );
        assert!(
            stderr.contains(&want),
            "{extra}: wanted {want:?} in:\n{stderr}"
        );
        assert!(!stderr.contains("lastfm-monitor is running"), "{stderr}");
    }
}

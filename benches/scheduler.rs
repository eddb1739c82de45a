//! Scheduler accuracy under a burst (docs/PERFORMANCE.md): many probes due at the same second.
//!
//! The real daemon (`daemon::run_on`, on the runtime `cli::runtime` builds, with the real HTTP
//! prober) runs a programmatic configuration whose probes all share one cron slot every 10 s,
//! without start-up jitter, against an upstream on 127.0.0.1. A wrapper around the prober notes
//! when each request is handed to the HTTP client ("fired"); the bench then prints, per round,
//! how late the fires were after their slot (p50, p99, max) and checks the politeness budget:
//! in every window of 10 ms, 100 ms and 1 s, no target sent more than `burst + rate × window`
//! requests (plus what the timer's 1 ms resolution can bunch: `1 + rate × 1 ms`).
//!
//! Three shapes, 1,000 probes each:
//! - `spread`: 10 targets × 100 probes, burst 100: the budget lets every probe go at its slot, so
//!   lateness is the scheduler's own.
//! - `spread-again`: the same as `spread`, by a second daemon (new runtime, prober, state and
//!   series) in the now warm process. Its first round tells what a round 1 pays once per process
//!   and machine (first touch of the heap, the kernel's socket caches) from what it pays once per
//!   daemon (each probe's first run).
//! - `one-target`: 1 target × 1,000 probes at 1,000/s, burst 100: the budget must hold the
//!   probes back; lateness is measured against the earliest moment the budget allows each one.
//!
//! Run: `cargo bench --bench scheduler` (about 100 s). `SCHED_UPSTREAM=http://127.0.0.1:PORT/2.0/`
//! uses an external upstream (e.g. the nginx of bench/compare.sh) instead of the built-in one,
//! `SCHED_ROUNDS=N` changes the number of rounds (default 3). Nothing here asserts timings: it
//! measures and prints; the numbers are in docs/PERFORMANCE.md.
//!
//! `SCHED_PREFAULT_MIB=N` touches N MiB of heap in small blocks before the first daemon starts
//! and frees it, so a round 1 finds its memory already faulted in; run it with
//! `GLIBC_TUNABLES=glibc.malloc.trim_threshold=2000000000`, or glibc hands the freed heap back to
//! the kernel at once. It tells what first-touch faults cost a first burst from the rest.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};
use lastfm_monitor::config::secret::Environment;
use lastfm_monitor::config::{Config, Probe, Target};
use lastfm_monitor::daemon::systemd::Notifier;
use lastfm_monitor::daemon::{self, ConfigSource, Options};
use lastfm_monitor::probe::http::HttpProber;
use lastfm_monitor::probe::{ProbeFuture, Prober};
use lastfm_monitor::schedule::SystemClock;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The slot every probe shares: seconds 0, 10, 20… of each minute.
const CRON: &str = "*/10 * * * * *";
const SLOT_SECONDS: u32 = 10;
const BODY: &str = include_str!("../bench/artist.getInfo.json");

#[derive(Debug)]
struct Env;

impl Environment for Env {
    fn var(&self, name: &str) -> Option<String> {
        (name == "LASTFM_API_KEY").then(|| "0123456789abcdef0123456789abcdef".to_owned())
    }
}

/// One fired request: its target and when it was handed to the HTTP client.
#[derive(Debug, Clone)]
struct FireRecord {
    target: String,
    at: DateTime<Utc>,
}

/// Notes every request, then lets the real prober make it.
#[derive(Debug)]
struct Recording {
    inner: HttpProber,
    fires: Mutex<Vec<FireRecord>>,
}

impl Prober for Recording {
    fn probe<'a>(&'a self, target: &'a Target, probe: &'a Probe) -> ProbeFuture<'a> {
        let record = FireRecord {
            target: target.name.clone(),
            at: Utc::now(),
        };
        self.fires
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(record);
        self.inner.probe(target, probe)
    }
}

struct Shape {
    name: &'static str,
    targets: usize,
    probes_per_target: usize,
    rate: f64,
    burst: u32,
}

fn config_text(shape: &Shape, upstream: &str) -> String {
    let mut text = format!(
        "[web]\nlisten_address = \"127.0.0.1:0\"\n\n[defaults]\ncron = \"{CRON}\"\ntimeout = \"5s\"\nstartup_jitter = \"0s\"\n"
    );
    for t in 0..shape.targets {
        text.push_str(&format!(
            "\n[[targets]]\nname = \"t{t}\"\nbase_url = \"{upstream}\"\napi_key = {{ env = \"LASTFM_API_KEY\" }}\nmax_requests_per_second = {}\nburst = {}\n",
            shape.rate, shape.burst
        ));
        for p in 0..shape.probes_per_target {
            text.push_str(&format!(
                "\n[[targets.probes]]\nname = \"p{p}\"\nmethod = \"artist.getInfo\"\nparams = {{ artist = \"Cher\" }}\n"
            ));
        }
    }
    text
}

/// A minimal HTTP/1.1 upstream on its own thread: every request gets the JSON, then close.
fn spawn_upstream() -> String {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("the upstream's runtime starts");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("the upstream binds a port");
    let address = listener
        .local_addr()
        .expect("a bound listener has an address");
    std::thread::spawn(move || {
        runtime.block_on(async move {
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{BODY}",
                BODY.len()
            );
            let response: Arc<str> = response.into();
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                let response = Arc::clone(&response);
                tokio::spawn(async move {
                    let mut buffer = vec![0_u8; 4096];
                    let mut seen = Vec::new();
                    // Read until the end of the headers and the (small) form body.
                    while let Ok(n) = stream.read(&mut buffer).await {
                        if n == 0 {
                            return;
                        }
                        seen.extend_from_slice(&buffer[..n]);
                        if request_complete(&seen) {
                            break;
                        }
                    }
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
    });
    format!("http://{address}/2.0/")
}

fn request_complete(seen: &[u8]) -> bool {
    let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&seen[..end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|value| value.trim().parse::<usize>().ok())
        .unwrap_or(0);
    seen.len() >= end + 4 + length
}

fn slot_of(at: DateTime<Utc>) -> DateTime<Utc> {
    let second = at.second() - at.second() % SLOT_SECONDS;
    at.with_second(second)
        .and_then(|t| t.with_nanosecond(0))
        .expect("a whole second is a valid time")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn millis(d: chrono::Duration) -> f64 {
    d.num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0
}

/// Minor page faults of this process (the daemon and the upstream run in it), sampled every
/// 10 ms by a thread, to tell a round's one-off costs (first-touch memory) from its steady work.
static FAULTS: Mutex<Vec<(DateTime<Utc>, u64)>> = Mutex::new(Vec::new());

fn minor_faults() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces); minflt is the 10th field overall.
    let rest = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
    rest.split_whitespace()
        .nth(7)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn sample_faults() {
    std::thread::spawn(|| {
        loop {
            let sample = (Utc::now(), minor_faults());
            FAULTS
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(sample);
            std::thread::sleep(Duration::from_millis(10));
        }
    });
}

/// Minor faults from just before `from` to `to`.
fn faults_between(from: DateTime<Utc>, to: DateTime<Utc>) -> u64 {
    let samples = FAULTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let at = |t: DateTime<Utc>| {
        samples
            .iter()
            .take_while(|(when, _)| *when <= t)
            .last()
            .map_or(0, |(_, n)| *n)
    };
    at(to).saturating_sub(at(from))
}

/// Allocates `mib` MiB of heap in blocks below glibc's mmap threshold, writes to every page, and
/// frees it all: the heap keeps the pages (given a high trim threshold) for the daemons to reuse.
fn prefault(mib: usize) {
    const BLOCK: usize = 4000;
    let blocks: Vec<Box<[u8]>> = (0..(mib << 20) / BLOCK)
        .map(|_| std::hint::black_box(vec![1u8; BLOCK].into_boxed_slice()))
        .collect();
    drop(blocks);
    println!(
        "pre-faulted {mib} MiB of heap (minor faults so far: {})",
        minor_faults()
    );
}

fn report(shape: &Shape, fires: &[FireRecord], rounds: usize) -> bool {
    let mut by_slot: BTreeMap<DateTime<Utc>, Vec<&FireRecord>> = BTreeMap::new();
    for fire in fires {
        by_slot.entry(slot_of(fire.at)).or_default().push(fire);
    }
    let mut ok = true;
    for (round, (slot, fires)) in by_slot.iter().enumerate().take(rounds) {
        // Per target, the k-th request of the slot may go at slot + max(0, k + 1 - burst) / rate.
        let mut per_target: BTreeMap<&str, Vec<DateTime<Utc>>> = BTreeMap::new();
        for fire in fires {
            per_target.entry(&fire.target).or_default().push(fire.at);
        }
        let mut late_slot = Vec::new();
        let mut late_budget = Vec::new();
        let mut worst_excess = f64::MIN;
        for times in per_target.values_mut() {
            times.sort();
            for (k, at) in times.iter().enumerate() {
                let allowed = (k as f64 + 1.0 - f64::from(shape.burst)).max(0.0) / shape.rate;
                let earliest = *slot + chrono::Duration::microseconds((allowed * 1e6) as i64);
                late_slot.push(millis(*at - *slot));
                late_budget.push(millis(*at - earliest));
            }
            // Sliding windows: requests in [t_i, t_i + w) never exceed burst + rate × w.
            for window_ms in [10.0, 100.0, 1000.0] {
                let window = chrono::Duration::microseconds((window_ms * 1000.0) as i64);
                let mut j = 0;
                for i in 0..times.len() {
                    while j < times.len() && times[j] < times[i] + window {
                        j += 1;
                    }
                    let allowed = f64::from(shape.burst) + shape.rate * window_ms / 1000.0;
                    worst_excess = worst_excess.max((j - i) as f64 - allowed);
                }
            }
        }
        late_slot.sort_by(f64::total_cmp);
        late_budget.sort_by(f64::total_cmp);
        let expected = shape.targets * shape.probes_per_target;
        // The gate reserves each request's moment; the timer wakes on whole milliseconds, so two
        // reservations 1 ms apart can go out together: one more request per millisecond of rate.
        let tolerance = 1.0 + shape.rate / 1000.0;
        let budget_ok = worst_excess <= tolerance;
        let within_50 = late_budget.iter().filter(|ms| **ms <= 50.0).count();
        let faults = faults_between(*slot, *slot + chrono::Duration::seconds(1));
        println!(
            "{} round {}: {} of {} fired; late after slot p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; after the budget's earliest p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {} within 50 ms; budget {} (worst window excess {:+.0}); {faults} minor page faults in the slot's second",
            shape.name,
            round + 1,
            fires.len(),
            expected,
            percentile(&late_slot, 0.5),
            percentile(&late_slot, 0.99),
            late_slot.last().copied().unwrap_or_default(),
            percentile(&late_budget, 0.5),
            percentile(&late_budget, 0.99),
            late_budget.last().copied().unwrap_or_default(),
            within_50,
            if budget_ok { "respected" } else { "EXCEEDED" },
            worst_excess,
        );
        ok &= fires.len() == expected && within_50 == expected && budget_ok;
    }
    ok
}

fn run_shape(shape: &Shape, upstream: &str, rounds: usize) -> bool {
    let runtime = lastfm_monitor::cli::runtime().expect("the daemon's runtime starts");
    let text = config_text(shape, upstream);
    let recording = Arc::new(Recording {
        inner: HttpProber::try_new().expect("the HTTP client initialises"),
        fires: Mutex::default(),
    });
    runtime.block_on(async {
        let config = Config::parse(&text, "<scheduler bench>", &Env, Utc::now())
            .unwrap_or_else(|err| panic!("the bench config is valid: {err}"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the daemon binds a port");
        let mut options = Options::for_file(std::path::PathBuf::new(), Arc::new(Env));
        options.source = ConfigSource::Fixed(text.clone());
        options.notifier = Notifier::from_vars(None, None, None);
        options.reload_on_sighup = false;
        options.prober = Some(Arc::clone(&recording) as Arc<dyn Prober>);
        options.clock = Arc::new(SystemClock);
        // Start just after a slot, then run `rounds` full slots and a little more.
        let now = Utc::now();
        let into_slot = f64::from(now.second() % SLOT_SECONDS) + f64::from(now.nanosecond()) / 1e9;
        let wait = (f64::from(SLOT_SECONDS) - into_slot + 1.0) % f64::from(SLOT_SECONDS);
        tokio::time::sleep(Duration::from_secs_f64(wait)).await;
        let run_for = Duration::from_secs(u64::from(SLOT_SECONDS) * rounds as u64 + 2);
        daemon::run_on(config, listener, options, tokio::time::sleep(run_for))
            .await
            .expect("the daemon runs");
    });
    let fires = recording
        .fires
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    report(shape, &fires, rounds)
}

fn main() {
    // `cargo bench` passes `--bench`; this bench takes no arguments.
    let rounds: usize = std::env::var("SCHED_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    sample_faults();
    if let Some(mib) = std::env::var("SCHED_PREFAULT_MIB")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        prefault(mib);
    }
    let upstream = std::env::var("SCHED_UPSTREAM").unwrap_or_else(|_| spawn_upstream());
    println!(
        "scheduler bench: the daemon's runtime (cli::runtime), upstream {upstream}, cron {CRON}, {rounds} round(s)"
    );
    let shapes = [
        Shape {
            name: "spread",
            targets: 10,
            probes_per_target: 100,
            rate: 100.0,
            burst: 100,
        },
        Shape {
            name: "spread-again",
            targets: 10,
            probes_per_target: 100,
            rate: 100.0,
            burst: 100,
        },
        Shape {
            name: "one-target",
            targets: 1,
            probes_per_target: 1000,
            rate: 1000.0,
            burst: 100,
        },
    ];
    let mut all_ok = true;
    for shape in &shapes {
        all_ok &= run_shape(shape, &upstream, rounds);
    }
    println!(
        "{}",
        if all_ok {
            "every probe fired within 50 ms of its slot (or of the budget's earliest moment) and the budget held"
        } else {
            "SOME PROBES WERE LATE, MISSING OR OVER BUDGET (see above)"
        }
    );
}

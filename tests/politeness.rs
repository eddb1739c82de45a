//! Politeness proven on paused time (docs/LASTFM-API.md §5): the monitor must never
//! be the reason a key is banned.
//!
//! No sockets: a scripted [`Prober`] answers with canned responses after a simulated latency and
//! records the instant of every request; the probe tasks are the daemon's own ([`Fleet`]: the real
//! `schedule::run` loop around the real `Runner`, with the real start-up jitter and, for restarts,
//! the real state file), on tokio's paused clock, so 24 simulated hours take seconds. The wall clock follows
//! the paused clock, so `Retry-After` dates work too.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use lastfm_monitor::classify::{Classification, Condition, Outcome};
use lastfm_monitor::config::{Config, Probe, Target};
use lastfm_monitor::daemon::fleet::Fleet;
use lastfm_monitor::daemon::state_file::StateFile;
use lastfm_monitor::health::politeness::Gate;
use lastfm_monitor::metrics::Metrics;
use lastfm_monitor::probe::{ProbeFuture, ProbeOutcome, Prober, Recorded, RequestTrace, Response};
use lastfm_monitor::run::references::References;
use lastfm_monitor::run::{Origin, Runner};
use lastfm_monitor::schedule::WallClock;
use proptest::prelude::*;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::support::{TestEnv, metric_sum};

/// How long a simulated request takes.
const LATENCY: Duration = Duration::from_millis(200);
const HOUR: Duration = Duration::from_secs(3600);

/// The wall clock, moving with tokio's paused clock from a fixed start.
#[derive(Debug)]
struct PausedWall {
    base: DateTime<Utc>,
    start: Instant,
}

impl PausedWall {
    fn new() -> Self {
        Self {
            base: DateTime::parse_from_rfc3339("2026-11-25T12:00:00Z")
                .expect("a valid date")
                .with_timezone(&Utc),
            start: Instant::now(),
        }
    }
}

impl WallClock for PausedWall {
    fn now(&self) -> DateTime<Utc> {
        self.base
            + chrono::Duration::from_std(Instant::now().duration_since(self.start))
                .expect("test spans fit")
    }
}

/// What the scripted upstream answers: status, `Retry-After`, body.
type Answer = (u16, Option<String>, String);

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
struct Call {
    at: Instant,
    target: String,
    probe: String,
}

/// Answers every request with `script(n, wall_now)` after [`LATENCY`], recording when each
/// request went out and for which target and probe.
struct Scripted {
    script: Box<dyn Fn(usize, DateTime<Utc>) -> Answer + Send + Sync>,
    wall: Arc<PausedWall>,
    calls: Mutex<Vec<Call>>,
}

impl std::fmt::Debug for Scripted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scripted").finish_non_exhaustive()
    }
}

impl Scripted {
    fn new(
        wall: Arc<PausedWall>,
        script: impl Fn(usize, DateTime<Utc>) -> Answer + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Self {
            script: Box::new(script),
            wall,
            calls: Mutex::new(Vec::new()),
        })
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("not poisoned").clone()
    }

    /// When requests to `target` went out, in order.
    fn instants(&self, target: &str) -> Vec<Instant> {
        let mut out: Vec<Instant> = self
            .calls()
            .into_iter()
            .filter(|c| c.target == target)
            .map(|c| c.at)
            .collect();
        out.sort();
        out
    }
}

impl Prober for Scripted {
    fn probe<'a>(&'a self, target: &'a Target, probe: &'a Probe) -> ProbeFuture<'a> {
        let n = {
            let mut calls = self.calls.lock().expect("not poisoned");
            calls.push(Call {
                at: Instant::now(),
                target: target.name.clone(),
                probe: probe.name.clone(),
            });
            calls.len() - 1
        };
        Box::pin(async move {
            tokio::time::sleep(LATENCY).await;
            let (status, retry_after, body) = (self.script)(n, self.wall.now());
            Recorded {
                request: RequestTrace::default(),
                outcome: ProbeOutcome {
                    elapsed: LATENCY,
                    timings: Default::default(),
                    tls: None,
                    http_status: Some(status),
                    result: Ok(Response {
                        status,
                        content_type: Some("application/json".to_owned()),
                        retry_after,
                        headers: Vec::new(),
                        body: body.into_bytes(),
                    }),
                },
            }
        })
    }
}

fn success() -> Answer {
    (200, None, r#"{"artist":{"name":"Cher"}}"#.to_owned())
}

fn error(status: u16, code: u32) -> Answer {
    (
        status,
        None,
        format!(r#"{{"error":{code},"message":"scripted"}}"#),
    )
}

/// A running set of probe tasks, started by the daemon's own [`Fleet`].
struct Running {
    metrics: Metrics,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl Running {
    async fn stop(self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }

    fn scrape(&self) -> String {
        self.metrics.render()
    }
}

/// Starts one task per probe of `config`, as the daemon does (real start-up jitter).
fn start(config: &Config, prober: Arc<dyn Prober>, wall: Arc<PausedWall>) -> Running {
    start_kept(config, prober, wall, None)
}

/// [`start`], keeping state in `state_directory` as the daemon does with `--state.directory`:
/// restored from the file at start, written while requests go out and at stop.
fn start_kept(
    config: &Config,
    prober: Arc<dyn Prober>,
    wall: Arc<PausedWall>,
    state_directory: Option<&std::path::Path>,
) -> Running {
    let metrics = Metrics::try_new("test", "test").expect("the metrics register");
    let runner = Runner::new(
        prober,
        Arc::new(lastfm_monitor::history::History::default()),
        Arc::clone(&wall) as Arc<dyn WallClock>,
    );
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let fleet = Fleet::new(runner.clone(), cancel.clone(), tracker.clone());
    let file = state_directory.map(StateFile::in_directory);
    let restored = file
        .as_ref()
        .map(|f| f.load().expect("the state file is readable"));
    let origin = match &restored {
        Some(Some(snapshot)) => Origin::Restored(snapshot),
        _ => Origin::Fresh,
    };
    let generation = fleet.start(config, &metrics, origin);
    if let Some(file) = file {
        tracker.spawn(file.keep_saved(
            runner.changed(),
            move || generation.save(wall.as_ref()),
            cancel.clone(),
        ));
    }
    Running {
        metrics,
        cancel,
        tracker,
    }
}

fn parse(text: &str, wall: &PausedWall) -> Config {
    Config::parse(text, "test.toml", &TestEnv::default(), wall.now())
        .unwrap_or_else(|err| panic!("test config is invalid:\n{err}\n---\n{text}"))
}

/// `n` probes of one target named `t`, with `target_extra` and `probe_extra` TOML.
fn target_toml(name: &str, n: usize, target_extra: &str, probe_extra: &str) -> String {
    let mut text = format!(
        "[[targets]]\nname = \"{name}\"\nbase_url = \"https://ws.audioscrobbler.com/2.0/\"\napi_key = \"0123456789abcdef0123456789abcdef\"\n{target_extra}\n"
    );
    for i in 0..n {
        text.push_str(&format!(
            "[[targets.probes]]\nname = \"p{i}\"\nmethod = \"artist.getInfo\"\n{probe_extra}\n"
        ));
    }
    text
}

/// The largest excess of requests over the token bucket: max over windows `[t_i, t_j]` of
/// `(j - i + 1) - rate · (t_j - t_i)`. The bucket holds iff this is at most `burst`.
fn bucket_excess(sorted: &[Instant], rate: f64) -> f64 {
    let Some(first) = sorted.first() else {
        return 0.0;
    };
    let t = |at: &Instant| at.duration_since(*first).as_secs_f64();
    let mut min_start = f64::INFINITY;
    let mut worst = 0.0_f64;
    for (j, at) in sorted.iter().enumerate() {
        // Window [t_i, t_j] holds j - i + 1 requests.
        min_start = min_start.min(j as f64 - rate * t(at));
        worst = worst.max(j as f64 + 1.0 - rate * t(at) - min_start);
    }
    worst
}

/// Most requests in any window of `width`.
fn max_in_window(sorted: &[Instant], width: Duration) -> usize {
    let mut start = 0;
    let mut best = 0;
    for end in 0..sorted.len() {
        while sorted[end].duration_since(sorted[start]) >= width {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}

/// For 24 simulated hours, a target whose probes ask far more than its budget (ten
/// probes every second, the shortest interval allowed, against 1 request/s with the largest
/// burst allowed, all starting at once) never exceeds its token bucket, and a second target
/// with a smaller budget keeps its own.
#[tokio::test(start_paused = true)]
async fn a_day_of_the_worst_allowed_config_stays_within_the_budget() {
    let wall = Arc::new(PausedWall::new());
    let prober = Scripted::new(Arc::clone(&wall), |_, _| success());
    let text = format!(
        "[defaults]\nstartup_jitter = \"0s\"\ninterval = \"1s\"\ntimeout = \"900ms\"\n{}\n{}",
        target_toml("slow", 10, "max_requests_per_second = 1.0\nburst = 100", ""),
        target_toml("slower", 3, "max_requests_per_second = 0.2\nburst = 3", ""),
    );
    let config = parse(&text, &wall);
    let running = start(&config, prober.clone(), Arc::clone(&wall));
    tokio::time::sleep(24 * HOUR).await;
    let text = running.scrape();
    running.stop().await;
    let runs = |target: &str| metric_sum(&text, "lastfm_probe_runs_total", &[("target", target)]);
    let day = 24.0 * 3600.0;
    let mut report = Vec::new();
    for (target, rate, burst) in [("slow", 1.0, 100.0), ("slower", 0.2, 3.0)] {
        let sent = prober.instants(target);
        let excess = bucket_excess(&sent, rate);
        assert!(
            excess <= burst + 1e-6,
            "{target}: {excess:.3} requests over the bucket's rate in some window (burst {burst})"
        );
        let n = sent.len() as f64;
        assert!(
            n >= 0.99 * rate * day,
            "{target}: only {n} requests in 24 h: the budget should be used, not starved"
        );
        // Every request is a recorded run, but for those still in flight at the end.
        let recorded = runs(target);
        assert!(
            recorded <= n && n <= recorded + 10.0,
            "{target}: {n} requests, {recorded} runs recorded"
        );
        report.push(format!(
            "{target}: {n} requests (budget {rate}/s + {burst}), worst window excess {excess:.2}, busiest second {}, busiest minute {}",
            max_in_window(&sent, Duration::from_secs(1)),
            max_in_window(&sent, Duration::from_secs(60))
        ));
    }
    println!("P1, 24 h, 13 probes every 1 s: {}", report.join("; "));
}

/// The shipped config's pace: ten probes a minute per target, start-up spread over 30 s.
fn shipped_like(target_extra: &str) -> String {
    format!(
        "[defaults]\ninterval = \"60s\"\ntimeout = \"10s\"\nstartup_jitter = \"30s\"\n{}",
        target_toml("lastfm", 10, target_extra, "")
    )
}

/// Runs `config` for `span` against `script`; the request instants and the final scrape.
async fn simulate(
    config: &str,
    span: Duration,
    script: impl Fn(usize, DateTime<Utc>) -> Answer + Send + Sync + 'static,
) -> (Vec<Instant>, String) {
    let wall = Arc::new(PausedWall::new());
    let prober = Scripted::new(Arc::clone(&wall), script);
    let config = parse(config, &wall);
    let running = start(&config, prober.clone(), wall);
    tokio::time::sleep(span).await;
    let text = running.scrape();
    running.stop().await;
    (prober.instants("lastfm"), text)
}

/// Every answer (a request's instant + [`LATENCY`]) asked for a wait. Each request sent after
/// `k` answers came no sooner than `min(k)` after the latest of them and no later than `max(k)`.
/// Requests sent while an earlier one was still in flight (nothing known yet) are held to the
/// answers before them only. Returns the wait before each request that had one.
#[track_caller]
fn assert_waits(
    sent: &[Instant],
    min: impl Fn(u32) -> Duration,
    max: impl Fn(u32) -> Duration,
) -> Vec<Duration> {
    assert!(sent.len() >= 3, "only {} requests", sent.len());
    let mut waits = Vec::new();
    for (j, at) in sent.iter().enumerate().skip(1) {
        let answered: Vec<Instant> = sent[..j]
            .iter()
            .map(|t| *t + LATENCY)
            .filter(|a| a < at)
            .collect();
        let Some(latest) = answered.last() else {
            continue;
        };
        let rank = u32::try_from(answered.len()).expect("few requests");
        let wait = at.duration_since(*latest);
        assert!(
            wait >= min(rank),
            "request {j} came {wait:?} after answer {rank}, sooner than {:?}",
            min(rank)
        );
        assert!(
            wait <= max(rank),
            "request {j} came {wait:?} after answer {rank}, later than {:?}",
            max(rank)
        );
        waits.push(wait);
    }
    waits
}

/// The shipped backoff: 60 s doubling up to 1 h.
fn nominal_backoff(rank: u32) -> Duration {
    (Duration::from_secs(60) * 2_u32.pow(rank.saturating_sub(1).min(10))).min(HOUR)
}

/// The slack after a wait: the next fire of one of ten probes a minute apart, and a token.
const NEXT_FIRE: Duration = Duration::from_secs(61);

/// Six hours of error 29 (with 200, as Last.fm sends it): the target backs off
/// exponentially, with jitter, capped at an hour; it never comes back early, never stays away
/// longer than the backoff plus one interval, and two runs do not align.
#[tokio::test(start_paused = true)]
async fn constant_29_backs_off_exponentially_with_jitter() {
    let config = shipped_like("");
    let (first, text) = simulate(&config, 6 * HOUR, |_, _| error(200, 29)).await;
    let gaps = assert_waits(
        &first,
        |k| nominal_backoff(k) / 2,
        |k| nominal_backoff(k) + NEXT_FIRE,
    );
    // Jitter: the waits are not the nominal backoff every time, and a second run differs.
    let fractions: Vec<f64> = gaps
        .iter()
        .zip(1_u32..)
        .map(|(gap, k)| gap.as_secs_f64() / nominal_backoff(k).as_secs_f64())
        .collect();
    let spread = fractions.iter().cloned().fold(f64::MIN, f64::max)
        - fractions.iter().cloned().fold(f64::MAX, f64::min);
    assert!(spread > 0.05, "waits without jitter: {fractions:?}");
    let (second, _) = simulate(&config, 6 * HOUR, |_, _| error(200, 29)).await;
    let offsets = |sent: &[Instant]| -> Vec<u64> {
        sent.windows(2)
            .map(|w| w[1].duration_since(w[0]).as_secs())
            .collect()
    };
    assert_ne!(offsets(&first), offsets(&second), "two runs aligned");
    // At most as many requests as the shortest waits allow in 6 h, doubled for requests that
    // went out while another was in flight (against 3600 at the normal pace).
    let mut fitting = 1;
    let mut spent = Duration::ZERO;
    while spent + nominal_backoff(fitting) / 2 <= 6 * HOUR {
        spent += nominal_backoff(fitting) / 2;
        fitting += 1;
    }
    let limit = 2 * fitting as usize;
    assert!(
        first.len() <= limit,
        "{} requests in 6 h of 29 (limit {limit})",
        first.len()
    );
    crate::support::assert_metric(
        &text,
        "lastfm_condition",
        &[("target", "lastfm"), ("condition", "rate_limited")],
        1.0,
    );
    assert!(
        metric_sum(
            &text,
            "lastfm_probe_skipped_total",
            &[("reason", "rate_limited")]
        ) > 100.0
    );
    println!(
        "P2, 6 h of error 29: {} requests; waits after each answer (s): {:?}",
        first.len(),
        gaps.iter().map(Duration::as_secs).collect::<Vec<_>>()
    );
}

/// A `Retry-After` case: name, header from the wall clock, shortest and longest wait.
type RetryCase = (
    &'static str,
    Box<dyn Fn(DateTime<Utc>) -> String + Send + Sync>,
    Duration,
    Duration,
);

fn http_date(at: DateTime<Utc>) -> String {
    at.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// Error 29 with `Retry-After`: seconds are honoured (not the exponential backoff), a wait longer
/// than `backoff_max` is clamped to it, and an HTTP date is honoured too.
#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured_and_clamped() {
    let config = shipped_like("");
    let cases: [RetryCase; 3] = [
        (
            "120",
            Box::new(|_| "120".to_owned()),
            Duration::from_secs(120),
            Duration::from_secs(120) + NEXT_FIRE,
        ),
        (
            "7200 (over backoff_max)",
            Box::new(|_| "7200".to_owned()),
            HOUR,
            HOUR + NEXT_FIRE,
        ),
        (
            "a date 5 min ahead",
            Box::new(|now| http_date(now + chrono::Duration::seconds(300))),
            // The date has whole seconds: the wait may be a second short of 300.
            Duration::from_secs(299),
            Duration::from_secs(300) + NEXT_FIRE,
        ),
    ];
    for (name, header, min, max) in cases {
        let (sent, _) = simulate(&config, 6 * HOUR, move |_, now| {
            (
                429,
                Some(header(now)),
                "<html><body>Too Many Requests</body></html>".to_owned(),
            )
        })
        .await;
        let gaps = assert_waits(&sent, |_| min, |_| max);
        println!(
            "P2, 6 h of 429 with Retry-After {name}: {} requests, waits {:?}..{:?} s",
            sent.len(),
            gaps.iter().min().map(Duration::as_secs),
            gaps.iter().max().map(Duration::as_secs)
        );
    }
}

/// Error 26 (and 10) slows the target to one request per `suspended_interval`, raises
/// the condition, counts the skipped runs, and a success ends it.
#[tokio::test(start_paused = true)]
async fn a_dead_key_gets_one_request_per_suspended_interval_until_a_success() {
    for (code, condition) in [(26, "api_key_suspended"), (10, "api_key_invalid")] {
        let config = shipped_like("");
        let wall = Arc::new(PausedWall::new());
        let recovered = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&recovered);
        let prober = Scripted::new(Arc::clone(&wall), move |_, _| {
            if flag.load(std::sync::atomic::Ordering::Relaxed) {
                success()
            } else {
                error(403, code)
            }
        });
        let config = parse(&config, &wall);
        let running = start(&config, prober.clone(), wall);
        tokio::time::sleep(6 * HOUR).await;
        let text = running.scrape();
        let sent = prober.instants("lastfm");
        let interval = Duration::from_secs(900);
        // Before the first answer arrives, nothing is known yet; after it, one per interval.
        let first_answer = sent[0] + LATENCY;
        let after: Vec<Instant> = sent.iter().copied().filter(|t| *t > first_answer).collect();
        for pair in after.windows(2) {
            let gap = pair[1].duration_since(pair[0]);
            assert!(
                gap >= interval && gap <= interval + NEXT_FIRE,
                "error {code}: a gap of {gap:?} between requests in slow mode"
            );
        }
        assert!(
            after
                .first()
                .is_some_and(|t| t.duration_since(first_answer) >= interval),
            "error {code}: the first request after the answer came too soon"
        );
        let limit = 6 * 3600 / 900 + 1;
        assert!(
            sent.len() <= limit + 1,
            "error {code}: {} requests in 6 h",
            sent.len()
        );
        crate::support::assert_metric(
            &text,
            "lastfm_condition",
            &[("target", "lastfm"), ("condition", condition)],
            1.0,
        );
        assert!(
            metric_sum(
                &text,
                "lastfm_probe_skipped_total",
                &[("reason", "suspended")]
            ) > 100.0
        );

        // A success ends slow mode: normal pace (ten probes a minute) resumes.
        recovered.store(true, std::sync::atomic::Ordering::Relaxed);
        tokio::time::sleep(HOUR).await;
        let text = running.scrape();
        running.stop().await;
        let resumed = prober.instants("lastfm").len() - sent.len();
        assert!(
            resumed >= 500,
            "error {code}: only {resumed} requests in the hour after the key recovered"
        );
        crate::support::assert_metric(
            &text,
            "lastfm_condition",
            &[("target", "lastfm"), ("condition", condition)],
            0.0,
        );
        println!(
            "P3, 6 h of error {code}: {} requests (one per 15 min), then {resumed} in the hour after a success",
            sent.len()
        );
    }
}

/// Ten restarts within a minute, six seconds apart, with the real start-up jitter; state kept in
/// `state_directory` across them (the daemon under systemd) or not: the requests of each life,
/// and all of them.
async fn ten_restarts(
    config: &str,
    state_directory: Option<&std::path::Path>,
) -> (Vec<usize>, Vec<Call>, Arc<PausedWall>) {
    let wall = Arc::new(PausedWall::new());
    let prober = Scripted::new(Arc::clone(&wall), |_, _| success());
    let config = parse(config, &wall);
    let mut per_restart = Vec::new();
    for _ in 0..10 {
        let before = prober.calls().len();
        let running = start_kept(&config, prober.clone(), Arc::clone(&wall), state_directory);
        tokio::time::sleep(Duration::from_secs(6)).await;
        running.stop().await;
        per_restart.push(prober.calls().len() - before);
    }
    (per_restart, prober.calls(), wall)
}

/// Ten restarts in 60 s make at most ten requests per target. With the state kept
/// (`--state.directory`, systemd's `StateDirectory=`) every probe of the shipped pace (ten probes
/// a minute, 30 s start-up spread, budget 1/s + 3) sends at most once in the minute, whatever the
/// jitter draws: a probe that sent resumes one interval after that send, the bucket is not
/// refilled by a restart. Without it the jitter alone spreads restarts (measured and printed,
/// not the bar).
#[tokio::test(start_paused = true)]
async fn ten_restarts_in_a_minute_make_at_most_ten_requests() {
    let shipped = shipped_like("max_requests_per_second = 1.0\nburst = 3");
    let mut kept_totals = Vec::new();
    let mut fresh_totals = Vec::new();
    for _ in 0..20 {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (per_restart, calls, _) = ten_restarts(&shipped, Some(dir.path())).await;
        assert!(
            calls.len() <= 10,
            "{} requests: {per_restart:?}",
            calls.len()
        );
        for probe in 0..10 {
            let name = format!("p{probe}");
            let n = calls.iter().filter(|c| c.probe == name).count();
            assert!(n <= 1, "{name}: {n} requests in ten restarts");
        }
        kept_totals.push(calls.len());

        let (per_restart, calls, _) = ten_restarts(&shipped, None).await;
        // Each life's fresh bucket: burst + rate x 6 s at most.
        assert!(per_restart.iter().all(|n| *n <= 3 + 6), "{per_restart:?}");
        fresh_totals.push(calls.len());
    }
    // After the minute every probe has run exactly once (none starved by the restarts).
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (_, calls, wall) = ten_restarts(&shipped, Some(dir.path())).await;
    let prober = Scripted::new(Arc::clone(&wall), |_, _| success());
    let running = start_kept(
        &parse(&shipped, &wall),
        prober.clone(),
        wall,
        Some(dir.path()),
    );
    tokio::time::sleep(Duration::from_secs(60)).await;
    running.stop().await;
    let mut probes: Vec<String> = calls.into_iter().map(|c| c.probe).collect();
    probes.sort();
    probes.dedup();
    let mut after: Vec<String> = prober.calls().into_iter().map(|c| c.probe).collect();
    after.sort();
    assert_eq!(
        after,
        (0..10).map(|i| format!("p{i}")).collect::<Vec<_>>(),
        "the minute after the restarts: each probe once (heard from during them: {probes:?})"
    );

    let unjittered = shipped.replace("startup_jitter = \"30s\"", "startup_jitter = \"0s\"");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (_, kept_burst, _) = ten_restarts(&unjittered, Some(dir.path())).await;
    assert_eq!(kept_burst.len(), 10, "without jitter, once per probe");
    let (_, fresh_burst, _) = ten_restarts(&unjittered, None).await;
    let mean = |v: &[usize]| v.iter().sum::<usize>() as f64 / v.len() as f64;
    println!(
        "P5, ten restarts in 60 s, shipped pace (10 probes, 60 s, jitter 30 s), 20 trials: state kept: mean {:.1}, max {}; not kept: mean {:.1}, max {}; without jitter: kept {}, not kept {}",
        mean(&kept_totals),
        kept_totals.iter().max().unwrap_or(&0),
        mean(&fresh_totals),
        fresh_totals.iter().max().unwrap_or(&0),
        kept_burst.len(),
        fresh_burst.len()
    );
}

/// A restart in the middle of a backoff (29) or of slow mode (26) does not end it: the state
/// file carries the wait over, and the first request after the restart comes when it would have
/// come without one.
#[tokio::test(start_paused = true)]
async fn a_restart_keeps_backoff_and_slow_mode() {
    for (status, code, quiet) in [
        (200, 29, Duration::from_secs(30)),
        (403, 26, Duration::from_secs(15 * 60)),
    ] {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let wall = Arc::new(PausedWall::new());
        let refusing = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let prober = Scripted::new(Arc::clone(&wall), {
            let refusing = Arc::clone(&refusing);
            move |_, _| {
                if refusing.load(std::sync::atomic::Ordering::Relaxed) {
                    error(status, code)
                } else {
                    success()
                }
            }
        });
        // Ten probes every minute; the first answer refuses.
        let config = parse(&shipped_like("backoff_initial = \"60s\""), &wall);
        let running = start_kept(&config, prober.clone(), Arc::clone(&wall), Some(dir.path()));
        while prober.calls().is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(LATENCY + Duration::from_millis(50)).await;
        let refused_at = prober.instants("lastfm")[0];
        running.stop().await;
        let before = prober.calls().len();
        // Restarted at once, state kept: nothing within the quiet time (backoff: at least half of
        // 60 s with jitter; slow mode: 15 minutes).
        refusing.store(false, std::sync::atomic::Ordering::Relaxed);
        let running = start_kept(&config, prober.clone(), Arc::clone(&wall), Some(dir.path()));
        tokio::time::sleep_until(refused_at + LATENCY + quiet - Duration::from_secs(1)).await;
        let during = prober.calls().len() - before;
        tokio::time::sleep(Duration::from_secs(120)).await;
        let after = prober.calls().len() - before;
        running.stop().await;
        assert!(
            before <= 3,
            "error {code}: {before} requests before the restart"
        );
        assert_eq!(during, 0, "error {code}: the restart ended the wait");
        assert!(after >= 1, "error {code}: probing never resumed");

        // The same without the state file: the restart forgets and probes at once.
        let wall = Arc::new(PausedWall::new());
        let prober = Scripted::new(Arc::clone(&wall), move |_, _| error(status, code));
        let running = start(&config, prober.clone(), Arc::clone(&wall));
        while prober.calls().is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(LATENCY + Duration::from_millis(50)).await;
        running.stop().await;
        let before = prober.calls().len();
        let running = start(&config, prober.clone(), Arc::clone(&wall));
        tokio::time::sleep(Duration::from_secs(30)).await;
        running.stop().await;
        assert!(
            prober.calls().len() > before,
            "error {code}: the control forgot nothing"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(500),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// The token bucket alone, on arbitrary request times: whatever the pattern of asks, the
    /// admitted instants never exceed `burst + rate · t` in any window.
    #[test]
    fn the_bucket_holds_for_any_request_pattern(
        rate in 0.05_f64..20.0,
        burst in 1_u32..20,
        steps in proptest::collection::vec((0_u64..5_000, 0_u64..10_000), 1..300),
    ) {
        let start = Instant::now();
        let policy = lastfm_monitor::config::Politeness {
            max_requests_per_second: rate,
            burst,
            suspended_interval: Duration::from_secs(900),
            backoff_initial: Duration::from_secs(60),
            backoff_max: HOUR,
        };
        let gate = Gate::new(policy, start);
        let mut now = start;
        let mut admitted = Vec::new();
        for (advance_ms, patience_ms) in steps {
            now += Duration::from_millis(advance_ms);
            if let Ok(at) = gate.admit(now, now + Duration::from_millis(patience_ms)) {
                prop_assert!(at >= now);
                prop_assert!(at <= now + Duration::from_millis(patience_ms));
                admitted.push(at);
            }
        }
        admitted.sort();
        let excess = bucket_excess(&admitted, rate);
        prop_assert!(excess <= f64::from(burst) + 1e-6, "excess {excess}");
    }
}

/// A request waiting for its token when another probe's answer starts a backoff (or slow mode)
/// must not go out when its token comes: the reservation was made before the upstream said stop.
#[tokio::test(start_paused = true)]
async fn a_token_reserved_before_a_29_or_26_is_void() {
    for (status, code) in [(200, 29), (403, 26)] {
        // Two probes fire together against a bucket of one: the second reserves the token of
        // t = 1 s; the first one's answer (at 0.2 s) says stop.
        let config = format!(
            "[defaults]\ninterval = \"60s\"\ntimeout = \"10s\"\nstartup_jitter = \"0s\"\n{}",
            target_toml("lastfm", 2, "max_requests_per_second = 1.0\nburst = 1", "")
        );
        let (sent, text) = simulate(&config, Duration::from_secs(30), move |_, _| {
            error(status, code)
        })
        .await;
        assert_eq!(
            sent.len(),
            1,
            "error {code}: {} requests in 30 s; the reserved one went out after the answer",
            sent.len()
        );
        assert!(metric_sum(&text, "lastfm_probe_skipped_total", &[]) >= 1.0);
    }
}

/// A reload that changes a target's budget keeps the old gate's state under the new policy: a
/// backoff stays in force and the bucket is not refilled (a reload is not a burst either).
#[tokio::test(start_paused = true)]
async fn a_reload_with_a_new_budget_keeps_the_backoff_and_the_empty_bucket() {
    use lastfm_monitor::run::Generation;
    let wall = Arc::new(PausedWall::new());
    let metrics = Metrics::try_new("test", "test").expect("the metrics register");
    let old_config = parse(
        &shipped_like("max_requests_per_second = 1.0\nburst = 3"),
        &wall,
    );
    let old = Generation {
        targets: Generation::targets_of(
            &old_config,
            &metrics,
            wall.as_ref(),
            Origin::Fresh,
            &References::none(),
        ),
        references: References::none(),
        cancel: CancellationToken::new(),
    };
    let now = Instant::now();
    let far = now + HOUR;
    let gate = &old.targets[0].gate;
    for _ in 0..3 {
        gate.admit(now, far).expect("the burst");
    }
    let new_config = parse(
        &shipped_like("max_requests_per_second = 2.0\nburst = 5"),
        &wall,
    );
    let reloaded = Generation::targets_of(
        &new_config,
        &metrics,
        wall.as_ref(),
        Origin::Reload(&old),
        &References::none(),
    );
    let gate = &reloaded[0].gate;
    assert_eq!(gate.policy().burst, 5);
    assert_eq!(
        gate.admit(now, far),
        Ok(now + Duration::from_millis(500)),
        "the bucket the old budget emptied is not refilled by the reload"
    );

    // And a backoff in force survives a budget change.
    let limited = Classification {
        http_status: Some(200),
        error_code: Some(29),
        raises: vec![Condition::RateLimited],
        ..Classification::new(Outcome::ApiError)
    };
    gate.record(&limited, now, 0, 1.0);
    let current = Generation {
        targets: reloaded,
        references: References::none(),
        cancel: CancellationToken::new(),
    };
    let again = parse(
        &shipped_like("max_requests_per_second = 1.5\nburst = 5"),
        &wall,
    );
    let reloaded = Generation::targets_of(
        &again,
        &metrics,
        wall.as_ref(),
        Origin::Reload(&current),
        &References::none(),
    );
    assert_eq!(
        reloaded[0].gate.backoff_remaining(now),
        Duration::from_secs(60)
    );
}

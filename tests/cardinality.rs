//! Bounded series and valid exposition (README.md, Metrics reference): 10 000 random upstream
//! responses (random statuses, codes and bytes) cannot grow `/metrics` past a bound computed from
//! the closed label sets, the series set is the same after 1 000 and after 10 000, and the text
//! passes `promtool check metrics`, hostile label values included.
//!
//! The first responses are a sweep over every label value the closed sets allow (each status
//! label × each payload kind × each code), so every series any response could create exists by
//! response 1 000; the 9 000 random ones after it must then add none. Runs go through the real
//! runner, classifier and metrics on paused time with a fake prober (no sockets), and `/metrics`
//! is read through the real router.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lastfm_monitor::classify::{
    CODE_LABELS, CanaryResult, CodeTable, IgnoredCode, KNOWN_CODES, MismatchKind, Outcome,
    RateLimitScope, STATUS_LABELS,
};
use lastfm_monitor::config::{Format, Probe, Target};
use lastfm_monitor::health::politeness::SkipReason;
use lastfm_monitor::probe::{
    ProbeFuture, ProbeOutcome, Prober, Recorded, RequestTrace, Response, TransportFailure,
};
use lastfm_monitor::run::{CanaryRun, Mode, RunResult};
use lastfm_monitor::schedule::SystemClock;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::support::{CANARY_KEY, Offline, promtool_check_metrics, series_count};

const RESPONSES: usize = 10_000;
const CHECKPOINT: usize = 1_000;
/// The most bytes `/metrics` may take for one probe, whatever the responses (the series are
/// bounded by the closed label sets: README.md, Metrics reference).
const MAX_EXPOSITION_BYTES: usize = 64 * 1024;
/// One status per `status` label: the listed ones, then one of each class, then `other`.
const STATUS_REPRESENTATIVES: [u16; 22] = [
    200, 201, 204, 301, 302, 304, 400, 401, 403, 404, 405, 429, 500, 502, 503, 504, 150, 250, 350,
    450, 550, 999,
];
/// `metrics::DURATION_BUCKETS` has 10 bounds; the test checks the count against the output.
const HISTOGRAM_BOUNDS: usize = 10;
/// `process_*` series of the process collector on Linux.
const MAX_PROCESS_SERIES: usize = 10;

/// One target with one probe; `probe` completes its table.
fn config(probe: &str) -> String {
    format!(
        r#"
[[targets]]
name = "card"
base_url = "http://127.0.0.1:9/2.0/"
api_key = "KEY"
max_requests_per_second = 1000.0
burst = 100

[[targets.probes]]
method = "artist.getInfo"
{probe}
"#
    )
}

/// What one response carries.
#[derive(Debug, Clone)]
enum Body {
    Success,
    Error(i64),
    Html,
    Empty,
    Bytes(Vec<u8>),
}

fn body_bytes(body: &Body, format: Format) -> Vec<u8> {
    match (body, format) {
        (Body::Success, Format::Json) => br#"{"artist":{"name":"Cher"}}"#.to_vec(),
        (Body::Success, Format::Xml) => {
            b"<lfm status=\"ok\"><artist><name>Cher</name></artist></lfm>".to_vec()
        }
        (Body::Error(code), Format::Json) => {
            format!(r#"{{"error":{code},"message":"random"}}"#).into_bytes()
        }
        (Body::Error(code), Format::Xml) => {
            format!("<lfm status=\"failed\"><error code=\"{code}\">random</error></lfm>")
                .into_bytes()
        }
        (Body::Html, _) => b"<!DOCTYPE html><html><body>502</body></html>".to_vec(),
        (Body::Empty, _) => Vec::new(),
        (Body::Bytes(bytes), _) => bytes.clone(),
    }
}

/// The sweep: every status label × every payload kind, then every transport failure.
fn sweep() -> Vec<Canned> {
    let mut bodies = vec![Body::Success, Body::Html, Body::Empty, Body::Error(12_345)];
    bodies.extend(KNOWN_CODES.iter().map(|c| Body::Error(i64::from(*c))));
    let mut out = Vec::new();
    for status in STATUS_REPRESENTATIVES {
        for body in &bodies {
            out.push(Ok((status, body.clone())));
        }
    }
    for failure in TransportFailure::all() {
        out.push(Err(failure));
    }
    out
}

/// A status and a body, or no response.
type Canned = Result<(u16, Body), TransportFailure>;

fn random_response(rng: &mut StdRng) -> Canned {
    if rng.random_ratio(1, 20) {
        let every: Vec<TransportFailure> = TransportFailure::all().collect();
        return Err(every[rng.random_range(0..every.len())]);
    }
    let status = match rng.random_range(0..4) {
        0 => STATUS_REPRESENTATIVES[rng.random_range(0..STATUS_REPRESENTATIVES.len())],
        1 => rng.random_range(100..=599),
        2 => rng.random_range(0..=999),
        _ => rng.random(),
    };
    let body = match rng.random_range(0..6) {
        0 => Body::Success,
        1 => Body::Error(i64::from(
            KNOWN_CODES[rng.random_range(0..KNOWN_CODES.len())],
        )),
        2 => Body::Error(rng.random::<i64>()),
        3 => Body::Html,
        4 => Body::Empty,
        _ => {
            let len = rng.random_range(0..300);
            Body::Bytes((0..len).map(|_| rng.random()).collect())
        }
    };
    Ok((status, body))
}

/// Half of the time, a canary step gets an answer of its own shape: a write with a random
/// `ignoredMessage` code (0 accepted, 1 to 5, or beyond), a read-back with or without the play.
fn canary_answer(method: &str, rng: &mut StdRng) -> Option<Canned> {
    if !rng.random_ratio(1, 2) {
        return None;
    }
    let body = match method {
        "track.updateNowPlaying" => format!(
            r##"{{"nowplaying":{{"artist":{{"#text":"lastfm-monitor"}},"track":{{"#text":"write-path canary"}},"ignoredMessage":{{"code":"{}","#text":""}}}}}}"##,
            rng.random_range(0..8)
        ),
        "user.getRecentTracks" => format!(
            r##"{{"recenttracks":{{"track":[{{"artist":{{"#text":"lastfm-monitor"}},"name":"{}","@attr":{{"nowplaying":"true"}}}}],"@attr":{{"user":"{}"}}}}}}"##,
            if rng.random_ratio(1, 2) {
                "write-path canary"
            } else {
                "another"
            },
            if rng.random_ratio(4, 5) {
                "canary"
            } else {
                "someone"
            },
        ),
        _ => return None,
    };
    Some(Ok((200, Body::Bytes(body.into_bytes()))))
}

/// Answers the sweep, then seeded random responses; counts the responses given.
#[derive(Debug)]
struct RandomUpstream {
    /// Responses given, the rest of the sweep (reversed), the random source after it.
    state: Mutex<(usize, Vec<Canned>, StdRng)>,
}

impl RandomUpstream {
    fn new(seed: u64) -> Self {
        let mut sweep = sweep();
        sweep.reverse();
        Self {
            state: Mutex::new((0, sweep, StdRng::seed_from_u64(seed))),
        }
    }

    fn given(&self) -> usize {
        self.state.lock().expect("not poisoned").0
    }
}

impl Prober for RandomUpstream {
    fn probe<'a>(&'a self, _target: &'a Target, probe: &'a Probe) -> ProbeFuture<'a> {
        let next = {
            let mut state = self.state.lock().expect("not poisoned");
            let (given, sweep, rng) = &mut *state;
            *given += 1;
            match sweep.pop() {
                Some(next) => next,
                None => canary_answer(&probe.method, rng).unwrap_or_else(|| random_response(rng)),
            }
        };
        let format = probe.format;
        Box::pin(async move {
            let result = next.map(|(status, body)| Response {
                status,
                content_type: Some("application/json".to_owned()),
                retry_after: None,
                headers: Vec::new(),
                body: body_bytes(&body, format),
            });
            Recorded {
                request: RequestTrace::default(),
                outcome: ProbeOutcome {
                    elapsed: Duration::from_millis(120),
                    timings: Default::default(),
                    tls: None,
                    http_status: result.as_ref().ok().map(|r| r.status),
                    result,
                },
            }
        })
    }
}

/// The most series the closed label sets allow for `probes` probes of `targets` targets.
fn series_bound(targets: usize, probes: usize) -> usize {
    let table = CodeTable::lastfm();
    let two_xx = STATUS_LABELS.iter().filter(|l| l.starts_with('2')).count();
    let other_statuses = STATUS_LABELS.len() - two_xx;
    // status_disagrees_with_code: a code with documented statuses, with any other non-2xx.
    let disagreeing: usize = KNOWN_CODES
        .iter()
        .map(|c| table.documented(*c))
        .filter(|documented| !documented.is_empty())
        .map(|documented| other_statuses - documented.len())
        .sum();
    // error_with_success_status: any code with a 2xx; success_with_error_status: code "none"
    // with a non-2xx.
    let mismatches = CODE_LABELS.len() * two_xx + other_statuses + disagreeing;
    assert_eq!(
        MismatchKind::ALL.len(),
        3,
        "a new mismatch kind needs its term here"
    );
    let per_probe = Outcome::ALL.len() // lastfm_probe_runs_total
        + CODE_LABELS.len() // lastfm_api_errors_total
        + STATUS_LABELS.len() // lastfm_http_responses_total
        + mismatches // lastfm_status_mismatch_total
        + SkipReason::ALL.len() // lastfm_probe_skipped_total
        + HISTOGRAM_BOUNDS + 3 // buckets, +Inf, _sum, _count
        + 6 // success, http_status_code, last_error_code, last_run, last_success, interval
        + TransportFailure::all().count() // lastfm_probe_failures_total
        + RateLimitScope::ALL.len() // lastfm_rate_limited_total
        + lastfm_monitor::probe::TIMED_PHASES.len(); // lastfm_probe_phase_duration_seconds
    // available, conditions, backoff, availability objective, certificate expiry (https
    // targets only)
    let per_target = 1 + lastfm_monitor::classify::Condition::ALL.len() + 1 + 1 + 1;
    let global = 1 + 2 + MAX_PROCESS_SERIES; // build_info, reload gauges, process_*
    probes * per_probe + targets * per_target + global
}

/// A canary's own series on top of its two steps' per-probe ones.
fn canary_series() -> usize {
    CanaryResult::ALL.len() * 2 // lastfm_canary_runs_total, lastfm_canary_last_result
        + IgnoredCode::ALL.len() // lastfm_canary_ignored_total
        + 10 + 3 // lastfm_canary_visible_seconds: buckets, +Inf, _sum, _count
        + 2 // last run, last visible
}

/// A canary's runs (a write, then read-back polls) under random answers, every result among
/// them: its series and its steps' stay within the bound, and promtool accepts the text.
#[tokio::test(start_paused = true)]
async fn random_canary_answers_cannot_grow_the_series_set() {
    let seed = std::env::var("CARDINALITY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    let upstream = Arc::new(RandomUpstream::new(seed));
    let text = config("").replace(
        "burst = 100",
        "burst = 100\napi_secret = \"S\"\nsession_key = \"sk\"\nbackoff_initial = \"1s\"\nbackoff_max = \"2s\"",
    ) + "\n[[targets.canaries]]\nname = \"np\"\nuser = \"canary\"\ninterval = \"1m\"\nvisible_within = \"3s\"\npoll_every = \"1s\"\ntimeout = \"1s\"\n";
    let offline = Offline::new(
        &text,
        Arc::clone(&upstream) as Arc<dyn Prober>,
        Arc::new(SystemClock),
        "1.0.0",
        "abc",
    );
    let generation = offline.shared.generation();
    let rt = Arc::clone(&generation.targets[0]);
    let cancel = CancellationToken::new();
    let mut results = std::collections::BTreeSet::new();
    while upstream.given() < 3 * CHECKPOINT {
        let latest = Instant::now() + Duration::from_secs(3600);
        match offline
            .shared
            .runner
            .canary(&rt, 0, latest, Mode::Scheduled, &cancel)
            .await
        {
            CanaryRun::Done { result, .. } => {
                results.insert(result.as_label());
            }
            CanaryRun::Skipped(_) => tokio::time::sleep(Duration::from_secs(3600)).await,
            CanaryRun::Cancelled => panic!("nothing cancels"),
        }
    }
    let (status, last) = offline.request("GET", "/metrics").await;
    assert_eq!(status, 200);
    let bound = series_bound(1, 3) + canary_series();
    println!(
        "cardinality (canary; seed {seed}): {} series, bound {bound}, results {results:?}",
        series_count(&last)
    );
    assert!(
        series_count(&last) <= bound,
        "{} series, bound {bound} (seed {seed})",
        series_count(&last)
    );
    for result in ["visible", "not_visible", "ignored", "failed"] {
        assert!(
            results.contains(result),
            "{result} never came (seed {seed}): {results:?}"
        );
    }
    match promtool_check_metrics(&last) {
        None | Some(Ok(())) => {}
        Some(Err(findings)) => panic!("promtool check metrics (seed {seed}):\n{findings}"),
    }
}

#[tokio::test(start_paused = true)]
async fn random_json_responses_cannot_grow_the_series_set() {
    saturate(r#"checks = [{ pointer = "/artist/name", equals = "Cher" }]"#).await;
}

#[tokio::test(start_paused = true)]
async fn random_xml_responses_cannot_grow_the_series_set() {
    saturate(r#"format = "xml""#).await;
}

/// Feeds [`RESPONSES`] responses (the sweep, then random ones) to one probe and checks the
/// series set against the bound, at [`CHECKPOINT`] and at the end.
async fn saturate(probe: &str) {
    let seed = std::env::var("CARDINALITY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    let upstream = Arc::new(RandomUpstream::new(seed));
    let offline = Offline::new(
        &config(probe),
        Arc::clone(&upstream) as Arc<dyn Prober>,
        Arc::new(SystemClock),
        "1.0.0",
        "abc",
    );
    let bound = series_bound(1, 1);
    let (_, fresh) = offline.request("GET", "/metrics").await;
    let at_checkpoint = feed_every_response(&offline, &upstream).await;
    let (status, last) = offline.request("GET", "/metrics").await;
    assert_eq!(status, 200);
    let buckets = fresh
        .lines()
        .filter(|l| l.starts_with("lastfm_probe_duration_seconds_bucket{"))
        .count();
    assert_eq!(buckets, HISTOGRAM_BOUNDS + 1, "histogram bounds changed");
    let process = last.lines().filter(|l| l.starts_with("process_")).count();
    assert!(process <= MAX_PROCESS_SERIES, "{process} process_* series");
    println!(
        "cardinality ({probe}; seed {seed}): {} series at start, {} after {CHECKPOINT}, {} after {RESPONSES} responses; bound {bound}; /metrics {} bytes",
        series_count(&fresh),
        series_count(&at_checkpoint),
        series_count(&last),
        last.len()
    );
    assert_the_series_set_is_unchanged(&at_checkpoint, &last, seed);
    assert_bounded_and_valid(&last, bound, seed);
}

/// Runs the probe until the upstream has given [`RESPONSES`] responses, waiting out backoff and
/// slow mode on the paused clock; returns `/metrics` as it was at [`CHECKPOINT`].
async fn feed_every_response(offline: &Offline, upstream: &RandomUpstream) -> String {
    let generation = offline.shared.generation();
    let rt = Arc::clone(&generation.targets[0]);
    let cancel = CancellationToken::new();
    let mut at_checkpoint = None;
    while upstream.given() < RESPONSES {
        let latest = Instant::now() + Duration::from_secs(3600);
        match offline
            .shared
            .runner
            .run(&rt, 0, latest, Mode::Scheduled, &cancel)
            .await
        {
            RunResult::Done(_) => {}
            // 29/429 backoff or 26/10 slow mode: wait it out on the paused clock.
            RunResult::Skipped(_) => tokio::time::sleep(Duration::from_secs(3600)).await,
            RunResult::Cancelled => panic!("nothing cancels"),
        }
        if upstream.given() == CHECKPOINT && at_checkpoint.is_none() {
            at_checkpoint = Some(offline.request("GET", "/metrics").await.1);
        }
    }
    at_checkpoint.expect("the checkpoint was reached")
}

/// The same series (names and labels) at [`CHECKPOINT`] and after [`RESPONSES`] responses.
fn assert_the_series_set_is_unchanged(at_checkpoint: &str, last: &str, seed: u64) {
    let names = |text: &str| -> Vec<String> {
        let mut series: Vec<String> = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| l.rsplit_once(' ').map(|(series, _)| series.to_owned()))
            .collect();
        series.sort();
        series
    };
    let (before, after) = (names(at_checkpoint), names(last));
    let new: Vec<&String> = after.iter().filter(|s| !before.contains(s)).collect();
    assert!(
        new.is_empty() && before.len() == after.len(),
        "the series set changed between {CHECKPOINT} and {RESPONSES} responses (seed {seed}); new: {new:#?}"
    );
}

/// The final `/metrics`: within the series bound and [`MAX_EXPOSITION_BYTES`], its runs
/// counters add up to the responses given, and promtool accepts it.
fn assert_bounded_and_valid(last: &str, bound: usize, seed: u64) {
    assert!(
        series_count(last) <= bound,
        "{} series, bound {bound} (seed {seed})",
        series_count(last)
    );
    assert!(
        last.len() <= MAX_EXPOSITION_BYTES,
        "/metrics is {} bytes (bar {MAX_EXPOSITION_BYTES})",
        last.len()
    );
    // The runs counters add up to the responses given: nothing lost or double counted.
    let runs: f64 = last
        .lines()
        .filter(|l| l.starts_with("lastfm_probe_runs_total{"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    assert_eq!(runs as usize, RESPONSES);
    match promtool_check_metrics(last) {
        None | Some(Ok(())) => {}
        Some(Err(findings)) => panic!("promtool check metrics (seed {seed}):\n{findings}"),
    }
}

/// Label values (README.md, Metrics reference) with `"`, `\` and a newline are escaped, and promtool accepts them.
/// Config names cannot carry them (validation refuses), so they are injected through the
/// metrics' own API and the build revision.
#[tokio::test(start_paused = true)]
async fn hostile_label_values_are_escaped() {
    let hostile = "quote\" backslash\\ newline\n brace} end";
    let offline = Offline::new(
        &format!(
            "[[targets]]\nname = \"t\"\nbase_url = \"http://127.0.0.1:9/2.0/\"\napi_key = \"{CANARY_KEY}\"\n[[targets.probes]]\nmethod = \"a.b\"\n"
        ),
        Arc::new(RandomUpstream::new(1)),
        Arc::new(SystemClock),
        hostile,
        hostile,
    );
    let metrics = &offline.shared.metrics;
    metrics.probe(hostile, hostile, Duration::from_secs(60));
    metrics
        .target(hostile, 0.995)
        .set(true, |_| true, Duration::from_secs(1));
    let (_, text) = offline.request("GET", "/metrics").await;
    let escaped = r#"quote\" backslash\\ newline\n brace} end"#;
    assert!(
        text.contains(&format!(
            "lastfm_monitor_build_info{{revision=\"{escaped}\",version=\"{escaped}\"}} 1"
        )),
        "{}",
        text.lines()
            .filter(|l| l.starts_with("lastfm_monitor_build_info"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(text.contains(&format!("target=\"{escaped}\"")));
    assert!(
        !text.contains("newline\n"),
        "a raw newline inside a label value"
    );
    match promtool_check_metrics(&text) {
        None | Some(Ok(())) => {}
        Some(Err(findings)) => panic!("promtool check metrics:\n{findings}"),
    }
}

/// The check has teeth: one unescaped quote in a label value is a finding.
#[test]
fn promtool_rejects_an_unescaped_label_value() {
    let broken = "# HELP x_total A counter.\n# TYPE x_total counter\nx_total{target=\"a\"b\"} 1\n";
    match promtool_check_metrics(broken) {
        None => {}
        Some(Ok(())) => panic!("promtool accepted an unescaped quote"),
        Some(Err(findings)) => assert!(!findings.is_empty()),
    }
}

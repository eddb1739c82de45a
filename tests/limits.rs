//! Every duration, rate and count has a range (README.md, Configuration reference), and the
//! time arithmetic saturates: no configuration, however hostile, and no upstream's word (a
//! `Retry-After` of 2^64-1 seconds, an error 26) makes the daemon panic.
//!
//! Property tests over mutated configurations: the loader either refuses with every problem
//! located (file:line) or accepts a configuration whose schedules, budget and backoff then run
//! through the same arithmetic the daemon does; `--config.check` exits 0 or 64, never panics.
//! Case counts are small enough to run in seconds (`PROPTEST_CASES` raises them).

use std::process::Command;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use lastfm_monitor::classify::{Classification, Condition, Outcome, RetryAfter};
use lastfm_monitor::config::{Config, Politeness, Schedule};
use lastfm_monitor::health::politeness::{Gate, SavedGate};
use lastfm_monitor::schedule::{first_fire, next_fire, startup_jitter};
use proptest::prelude::*;
use tokio::time::Instant;

use crate::support::{TestEnv, run_with_limit};

const BIN: &str = env!("CARGO_BIN_EXE_lastfm-monitor");

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0)
        .single()
        .expect("a valid date")
}

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A duration as an operator (or a fuzzer) might write it: sane, huge, zero or not one at all.
fn duration_text() -> impl Strategy<Value = String> {
    let unit = prop::sample::select(vec!["ns", "us", "ms", "s", "m", "h", "d", "w", "M", "y"]);
    prop_oneof![
        (0_u64..120, unit.clone()).prop_map(|(n, u)| format!("{n}{u}")),
        (any::<u64>(), unit).prop_map(|(n, u)| format!("{n}{u}")),
        Just("18446744073709551615s".to_owned()),
        Just("soon".to_owned()),
        Just(String::new()),
    ]
}

/// A TOML float: ordinary, tiny, huge, negative, NaN or infinite.
fn float_text() -> impl Strategy<Value = String> {
    prop_oneof![
        (0.0_f64..2000.0).prop_map(|f| format!("{f:?}")),
        any::<f64>().prop_map(|f| {
            if f.is_nan() {
                "nan".to_owned()
            } else if f.is_infinite() {
                if f > 0.0 { "inf" } else { "-inf" }.to_owned()
            } else {
                format!("{f:?}")
            }
        }),
        Just("1e-300".to_owned()),
        Just("0.001".to_owned()),
    ]
}

fn integer_text() -> impl Strategy<Value = String> {
    prop_oneof![
        (0_i64..1200).prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
    ]
}

fn cron_text() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "0 * * * * *",
        "*/5 * * * *",
        "@yearly",
        "0 0 0 29 2 *",
        "0 0 0 31 2 *",
        "0 0 0 1 1 * 2099",
        "0 0 0 1 1 * 2027",
        "59 59 23 31 12 * 2026",
        "not cron",
    ])
    .prop_map(str::to_owned)
}

/// `key = value` or nothing.
fn line(key: &'static str, value: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
    prop::option::weighted(0.7, value)
        .prop_map(move |v| v.map_or(String::new(), |v| format!("{key} = {v}\n")))
}

fn quoted(value: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
    value.prop_map(|v| format!("{v:?}"))
}

/// A configuration with every bounded key drawn from the strategies above (or left out).
fn config_text() -> impl Strategy<Value = String> {
    let defaults = (
        prop_oneof![
            line("interval", quoted(duration_text())),
            line("cron", quoted(cron_text()))
        ],
        line("timeout", quoted(duration_text())),
        line("startup_jitter", quoted(duration_text())),
        line("max_body_bytes", integer_text()),
    );
    let target = (
        line("max_requests_per_second", float_text()),
        line("burst", integer_text()),
        line("down_after", integer_text()),
        line("up_after", integer_text()),
        line("suspended_interval", quoted(duration_text())),
        line("backoff_initial", quoted(duration_text())),
        line("backoff_max", quoted(duration_text())),
    );
    let probe = (
        prop_oneof![
            line("interval", quoted(duration_text())),
            line("cron", quoted(cron_text()))
        ],
        line("timeout", quoted(duration_text())),
    );
    let reference = (
        line("interval", quoted(duration_text())),
        line("timeout", quoted(duration_text())),
    );
    (defaults, target, probe, reference).prop_map(|(d, t, p, r)| {
        format!(
            "[defaults]\n{}{}{}{}\n[[targets]]\nname = \"lastfm\"\n\
             base_url = \"https://ws.audioscrobbler.com/2.0/\"\n\
             api_key = \"0123456789abcdef0123456789abcdef\"\n{}{}{}{}{}{}{}\n\
             [[targets.probes]]\nmethod = \"artist.getInfo\"\n{}{}\n\
             [[references]]\nname = \"gateway\"\nurl = \"http://127.0.0.1/\"\n{}{}",
            d.0, d.1, d.2, d.3, t.0, t.1, t.2, t.3, t.4, t.5, t.6, p.0, p.1, r.0, r.1
        )
    })
}

/// Verdicts the upstream can hand a gate: a 29 that asks for forever, a 26, a success.
fn verdicts() -> [Classification; 4] {
    [
        Classification {
            http_status: Some(429),
            raises: vec![Condition::RateLimited],
            retry_after: Some(RetryAfter::Seconds(u64::MAX)),
            ..Classification::new(Outcome::ApiError)
        },
        Classification {
            http_status: Some(429),
            raises: vec![Condition::RateLimited],
            retry_after: Some(RetryAfter::At(i64::MAX)),
            ..Classification::new(Outcome::ApiError)
        },
        Classification {
            http_status: Some(403),
            error_code: Some(26),
            raises: vec![Condition::ApiKeySuspended],
            ..Classification::new(Outcome::ApiError)
        },
        Classification {
            http_status: Some(200),
            raises: vec![Condition::RateLimited],
            ..Classification::new(Outcome::ApiError)
        },
    ]
}

/// What the daemon computes from a schedule, at `now` and far from it.
fn exercise_schedule(schedule: &Schedule, lag: Duration, unit: f64) {
    let start = Instant::now();
    let wall = now();
    let _ = schedule.upcoming(wall, 3);
    let _ = schedule.shortest_gap(wall);
    let _ = schedule.nominal_interval(wall);
    let _ = schedule.describe();
    let jitter = startup_jitter(schedule, Duration::from_secs(3600), unit);
    let due = first_fire(schedule, start, wall, jitter);
    let (next, _) = next_fire(schedule, due, start + lag, wall);
    assert!(next > start, "the next fire is ahead of the start");
}

/// What the daemon computes from a target's budget, under every hostile verdict.
fn exercise_gate(policy: Politeness, unit: f64) {
    let start = Instant::now();
    let gate = Gate::new(policy.clone(), start);
    let far = start + Duration::from_secs(3600);
    for verdict in verdicts() {
        let _ = gate.admit(start, far);
        let _ = gate.depart(start);
        let _ = gate.record(&verdict, start, 1_764_000_000, unit);
        let _ = gate.admit(start, far);
        let _ = gate.backoff_remaining(start);
    }
    let saved = gate.save(start, 1_764_000_000_000);
    let _ = Gate::restored(policy.clone(), &saved, start, i64::MIN);
    let hostile = SavedGate {
        tokens: f64::NAN,
        at_ms: i64::MIN,
        backoff_until_ms: Some(i64::MAX),
        backoff_attempts: u32::MAX,
        suspended: true,
        next_suspended_slot_ms: i64::MAX,
    };
    let restored = Gate::restored(policy, &hostile, start, i64::MAX);
    let _ = restored.admit(start, far);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(400),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// The loader never panics; a refusal locates every problem; an accepted configuration's
    /// schedules and budgets run through the daemon's arithmetic without a panic.
    #[test]
    fn any_config_is_refused_with_locations_or_runs_without_panicking(
        text in config_text(),
        lag_secs in prop_oneof![0_u64..100, 0_u64..(200 * 365 * 24 * 3600)],
        unit in prop_oneof![0.0_f64..1.0, Just(f64::NAN), Just(f64::INFINITY)],
    ) {
        match Config::parse(&text, "mutated.toml", &TestEnv::default(), now()) {
            Err(err) => {
                for problem in &err.problems {
                    prop_assert!(problem.line.is_some(), "unlocated: {err}\n---\n{text}");
                }
            }
            Ok(config) => {
                let _ = config.summary(now());
                for target in &config.targets {
                    exercise_gate(target.politeness.clone(), unit);
                    for probe in &target.probes {
                        exercise_schedule(&probe.schedule.schedule, Duration::from_secs(lag_secs), unit);
                    }
                }
            }
        }
    }

    /// The arithmetic alone, beyond what the validator lets through: saturated, never a panic.
    #[test]
    fn the_time_arithmetic_saturates_beyond_the_ranges(
        gap_secs in prop_oneof![1_u64..100, any::<u64>()],
        rate in prop_oneof![Just(1e-300_f64), Just(f64::MIN_POSITIVE), 0.000_001_f64..1000.0],
        period_secs in any::<u64>(),
        lag_secs in 0_u64..(200 * 365 * 24 * 3600),
        unit in prop_oneof![0.0_f64..1.0, Just(f64::NAN)],
    ) {
        exercise_schedule(&Schedule::Every(Duration::from_secs(gap_secs)), Duration::from_secs(lag_secs), unit);
        exercise_gate(
            Politeness {
                max_requests_per_second: rate,
                burst: 1,
                suspended_interval: Duration::from_secs(period_secs),
                backoff_initial: Duration::from_secs(period_secs),
                backoff_max: Duration::MAX,
            },
            unit,
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        // Each case is a process: a few dozen keep this to seconds.
        cases: cases(400) / 10,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// `--config.check` on a mutated file: exit 0 with the summary, or exit 64 with every
    /// problem at file:line; never a panic, never a hang.
    #[test]
    fn config_check_exits_0_or_64_with_locations(text in config_text()) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("mutated.toml");
        std::fs::write(&path, &text).expect("write");
        let file = path.to_str().expect("UTF-8 path");
        let run = run_with_limit(
            Command::new(BIN).args(["--config.file", file, "--config.check"]).env_clear(),
            Duration::from_secs(20),
        );
        prop_assert!(!run.stderr.contains("panicked"), "{}\n---\n{text}", run.stderr);
        match run.status.and_then(|s| s.code()) {
            Some(0) => prop_assert!(run.stdout.starts_with("configuration OK"), "{}", run.stdout),
            Some(64) => {
                let lines: Vec<&str> = run.stderr.lines().collect();
                prop_assert!(lines.len() >= 2, "{}", run.stderr);
                for problem in &lines[..lines.len() - 1] {
                    let located = problem
                        .strip_prefix(&format!("{file}:"))
                        .and_then(|rest| rest.split(':').next())
                        .is_some_and(|line| line.parse::<usize>().is_ok());
                    prop_assert!(located, "not at file:line: {problem}\n---\n{text}");
                }
            }
            other => prop_assert!(false, "exit {other:?}:\n{}\n---\n{text}", run.stderr),
        }
    }
}

/// The reproductions of the hostile-testing report, as the upstream says them: a 29 asking for
/// 2^64-1 seconds under the longest backoff cap, an error 26 under the longest slow mode.
#[test]
fn the_longest_accepted_settings_survive_the_upstreams_worst_word() {
    let text = "[defaults]\ninterval = \"30d\"\ntimeout = \"10m\"\nstartup_jitter = \"1h\"\n\
        [[targets]]\nname = \"lastfm\"\nbase_url = \"https://ws.audioscrobbler.com/2.0/\"\n\
        api_key = \"0123456789abcdef0123456789abcdef\"\nmax_requests_per_second = 0.001\n\
        burst = 1000\nsuspended_interval = \"30d\"\nbackoff_initial = \"30d\"\nbackoff_max = \"30d\"\n\
        [[targets.probes]]\nmethod = \"artist.getInfo\"\n";
    let config = Config::parse(text, "longest.toml", &TestEnv::default(), now())
        .unwrap_or_else(|err| panic!("the range's ends are accepted:\n{err}"));
    exercise_gate(config.targets[0].politeness.clone(), 1.0);
    exercise_schedule(
        &config.targets[0].probes[0].schedule.schedule,
        Duration::from_secs(100 * 365 * 24 * 3600),
        1.0,
    );
}

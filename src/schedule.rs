//! When each probe fires: interval or cron schedules, start-up jitter, and overrun skips.
//!
//! The arithmetic is pure (fixed `now` in, instants out) so it is tested without a clock; the
//! [`run`] loop is the only place that sleeps, on tokio's clock, so tests drive it on paused time.
//! Cron expressions are evaluated in UTC on the wall clock, which is injected through
//! [`WallClock`]; interval schedules never look at the wall clock, so a clock step does not burst.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often a probe fires.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// A fixed gap between fires, anchored at the (jittered) first fire.
    Every(Duration),
    /// A seconds-first cron expression, evaluated in UTC.
    Cron(Box<cron::Schedule>),
}

/// How many fires are inspected to find a cron schedule's shortest gap.
const CRON_GAP_SAMPLES: usize = 512;

impl Schedule {
    /// Parses a cron expression: 6 or 7 fields seconds-first, a 5-field crontab line (which gets
    /// a `0` seconds field), or an `@hourly`-style shorthand.
    pub fn parse_cron(expr: &str) -> Result<Self, String> {
        let trimmed = expr.trim();
        let fields = trimmed.split_whitespace().count();
        let normalised = if fields == 5 && !trimmed.starts_with('@') {
            format!("0 {trimmed}")
        } else {
            trimmed.to_owned()
        };
        normalised
            .parse::<cron::Schedule>()
            .map(|schedule| Self::Cron(Box::new(schedule)))
            .map_err(|err| {
                // The parser's message repeats the expression and a caret on lines of their
                // own; keep its explanation, on one line, so each problem stays one line.
                let text = err.to_string();
                let why: Vec<&str> = text
                    .lines()
                    .map(str::trim)
                    .filter(|line| {
                        !line.is_empty()
                            && *line != normalised.trim()
                            && !line.chars().all(|c| c == '^' || c.is_whitespace())
                    })
                    .collect();
                let why = if why.is_empty() {
                    "unreadable".to_owned()
                } else {
                    why.join(" ")
                };
                format!(
                    "{expr:?} is not a valid cron expression ({why}); use 6 fields \
                     \"sec min hour day month weekday\" or a 5-field crontab line"
                )
            })
    }

    /// The shortest gap between two consecutive fires (for cron, over the next few hundred fires).
    pub fn shortest_gap(&self, now: DateTime<Utc>) -> Option<Duration> {
        match self {
            Self::Every(gap) => Some(*gap),
            Self::Cron(schedule) => {
                let fires: Vec<_> = schedule.after(&now).take(CRON_GAP_SAMPLES).collect();
                fires
                    .windows(2)
                    .filter_map(|pair| (pair[1] - pair[0]).to_std().ok())
                    .min()
            }
        }
    }

    /// The nominal gap between fires, exported so alerts can tell a stale probe from a slow one.
    pub fn nominal_interval(&self, now: DateTime<Utc>) -> Duration {
        match self {
            Self::Every(gap) => *gap,
            Self::Cron(schedule) => {
                let mut fires = schedule.after(&now);
                match (fires.next(), fires.next()) {
                    (Some(a), Some(b)) => (b - a).to_std().unwrap_or_default(),
                    _ => Duration::ZERO,
                }
            }
        }
    }

    /// The next `n` fire times after `now` (for interval schedules: as if started at `now`).
    pub fn upcoming(&self, now: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        match self {
            Self::Every(gap) => (1..=n)
                .filter_map(|k| {
                    let step = chrono::Duration::from_std(*gap * u32::try_from(k).ok()?).ok()?;
                    Some(now + step)
                })
                .collect(),
            Self::Cron(schedule) => schedule.after(&now).take(n).collect(),
        }
    }

    /// A short human description for `--config.check` and the status page.
    pub fn describe(&self) -> String {
        match self {
            Self::Every(gap) => format!("every {}", humantime::format_duration(*gap)),
            Self::Cron(schedule) => format!("cron {:?} (UTC)", schedule.source()),
        }
    }
}

/// The wall clock, injected so cron arithmetic is testable.
pub trait WallClock: Send + Sync + std::fmt::Debug + 'static {
    /// Now, in UTC.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl WallClock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The first-fire delay spread: a restart of many probes must not become a burst.
pub fn startup_jitter(schedule: &Schedule, max: Duration, unit: f64) -> Duration {
    let span = match schedule {
        Schedule::Every(gap) => (*gap).min(max),
        // Cron fires are aligned on purpose; spread only a little so probes sharing an
        // expression do not arrive together.
        Schedule::Cron(_) => max.min(Duration::from_secs(5)),
    };
    span.mul_f64(unit.clamp(0.0, 1.0))
}

/// What the loop hands to the run callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fire {
    /// When this fire was due.
    pub due: Instant,
    /// The next fire after this one, the run's latest useful end.
    pub next_due: Instant,
}

/// Where the next fire is, given the previous one, and how many fires were missed meanwhile.
///
/// Pure: `now` and `now_wall` describe the same moment on tokio's and the wall clock.
pub fn next_fire(
    schedule: &Schedule,
    previous_due: Instant,
    now: Instant,
    now_wall: DateTime<Utc>,
) -> (Instant, u64) {
    match schedule {
        Schedule::Every(gap) => {
            let gap = (*gap).max(Duration::from_millis(1));
            let mut due = previous_due + gap;
            let mut missed = 0;
            if due <= now {
                let behind = now.duration_since(due);
                let slots = behind.as_nanos() / gap.as_nanos() + 1;
                missed = u64::try_from(slots).unwrap_or(u64::MAX);
                due += gap * u32::try_from(slots).unwrap_or(u32::MAX);
            }
            (due, missed)
        }
        Schedule::Cron(cron) => {
            // Fires between the previous due time and now were missed (the run overran them).
            let previous_wall = now_wall
                - chrono::Duration::from_std(now.saturating_duration_since(previous_due))
                    .unwrap_or_default();
            let missed = cron
                .after(&previous_wall)
                .take_while(|fire| *fire <= now_wall)
                .count();
            let due = cron
                .after(&now_wall)
                .next()
                .and_then(|fire| (fire - now_wall).to_std().ok())
                .map_or(now + Duration::from_secs(365 * 24 * 3600), |delay| {
                    now + delay
                });
            (due, u64::try_from(missed).unwrap_or(u64::MAX))
        }
    }
}

/// The first fire: cron's next slot, or `now` for intervals, plus the start-up jitter.
pub fn first_fire(
    schedule: &Schedule,
    now: Instant,
    now_wall: DateTime<Utc>,
    jitter: Duration,
) -> Instant {
    match schedule {
        Schedule::Every(_) => now + jitter,
        Schedule::Cron(cron) => {
            let delay = cron
                .after(&now_wall)
                .next()
                .and_then(|fire| (fire - now_wall).to_std().ok())
                .unwrap_or(Duration::from_secs(365 * 24 * 3600));
            now + delay + jitter
        }
    }
}

/// Runs `on_fire` at every fire of `schedule` until `cancel` fires.
///
/// A run never overlaps the next: fires that come while a run is still going are skipped and
/// reported to `on_overrun` with their count, and the loop waits for the next fire after now.
/// `on_planned` hears every next fire as soon as it is known (the status page shows it).
pub async fn run<F, Fut>(
    schedule: Schedule,
    clock: &dyn WallClock,
    jitter: Duration,
    cancel: CancellationToken,
    mut on_fire: F,
    mut on_overrun: impl FnMut(u64),
    mut on_planned: impl FnMut(Instant),
) where
    F: FnMut(Fire) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut due = first_fire(&schedule, Instant::now(), clock.now(), jitter);
    on_planned(due);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep_until(due) => {}
        }
        let (planned_next, _) = next_fire(&schedule, due, due, clock.now());
        on_planned(planned_next);
        tokio::select! {
            () = cancel.cancelled() => return,
            () = on_fire(Fire { due, next_due: planned_next }) => {}
        }
        let (next, missed) = next_fire(&schedule, due, Instant::now(), clock.now());
        if missed > 0 {
            on_overrun(missed);
        }
        if next != planned_next {
            on_planned(next);
        }
        due = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::sync::{Arc, Mutex};

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, h, m, s).unwrap()
    }

    #[test]
    fn five_field_crontab_lines_get_a_seconds_field() {
        let schedule = Schedule::parse_cron("*/5 * * * *").unwrap();
        assert_eq!(
            schedule.upcoming(at(10, 2, 30), 3),
            vec![at(10, 5, 0), at(10, 10, 0), at(10, 15, 0)]
        );
    }

    #[test]
    fn seconds_first_cron_is_accepted() {
        let schedule = Schedule::parse_cron("*/20 * * * * *").unwrap();
        assert_eq!(
            schedule.shortest_gap(at(0, 0, 0)),
            Some(Duration::from_secs(20))
        );
    }

    #[test]
    fn cron_shortest_gap_sees_uneven_schedules() {
        // Fires at :00 and :10 of every minute: gaps of 10 s and 50 s.
        let schedule = Schedule::parse_cron("0,10 * * * * *").unwrap();
        assert_eq!(
            schedule.shortest_gap(at(0, 0, 0)),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            schedule.nominal_interval(at(0, 0, 5)),
            Duration::from_secs(50)
        );
    }

    #[test]
    fn bad_cron_says_what_is_accepted() {
        let err = Schedule::parse_cron("every five minutes").unwrap_err();
        assert!(err.contains("not a valid cron expression"), "{err}");
        assert!(err.contains("5-field crontab"), "{err}");
    }

    #[test]
    fn interval_next_fire_without_overrun_is_one_gap_later() {
        let start = Instant::now();
        let every = Schedule::Every(Duration::from_secs(60));
        let (next, missed) = next_fire(&every, start, start + Duration::from_secs(2), at(0, 0, 0));
        assert_eq!(next, start + Duration::from_secs(60));
        assert_eq!(missed, 0);
    }

    #[test]
    fn interval_overrun_skips_to_the_next_slot_after_now() {
        let start = Instant::now();
        let every = Schedule::Every(Duration::from_secs(10));
        let (next, missed) = next_fire(&every, start, start + Duration::from_secs(25), at(0, 0, 0));
        assert_eq!(next, start + Duration::from_secs(30));
        assert_eq!(missed, 2, "fires at 10 s and 20 s were skipped");
    }

    #[test]
    fn cron_overrun_counts_missed_fires() {
        let cron = Schedule::parse_cron("*/10 * * * * *").unwrap();
        let due = Instant::now();
        // Due at 00:00:00, the run ended at 00:00:25: fires at :10 and :20 were missed.
        let (next, missed) = next_fire(&cron, due, due + Duration::from_secs(25), at(0, 0, 25));
        assert_eq!(missed, 2);
        assert_eq!(next, due + Duration::from_secs(30));
    }

    #[test]
    fn jitter_never_exceeds_the_interval_or_the_cap() {
        let every = Schedule::Every(Duration::from_secs(10));
        assert_eq!(
            startup_jitter(&every, Duration::from_secs(30), 1.0),
            Duration::from_secs(10)
        );
        let slow = Schedule::Every(Duration::from_secs(600));
        assert_eq!(
            startup_jitter(&slow, Duration::from_secs(30), 0.5),
            Duration::from_secs(15)
        );
    }

    #[derive(Debug)]
    struct FixedClock;
    impl WallClock for FixedClock {
        fn now(&self) -> DateTime<Utc> {
            at(12, 0, 0)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn loop_fires_on_schedule_and_counts_overruns() {
        let fires = Arc::new(Mutex::new(Vec::new()));
        let overruns = Arc::new(Mutex::new(0_u64));
        let planned = Arc::new(Mutex::new(Vec::new()));
        let cancel = CancellationToken::new();
        let start = Instant::now();
        let task = {
            let fires = Arc::clone(&fires);
            let overruns = Arc::clone(&overruns);
            let planned = Arc::clone(&planned);
            let cancel = cancel.clone();
            tokio::spawn(async move {
                run(
                    Schedule::Every(Duration::from_secs(10)),
                    &FixedClock,
                    Duration::from_secs(3),
                    cancel,
                    |fire| {
                        let fires = Arc::clone(&fires);
                        async move {
                            let n = {
                                let mut fires = fires.lock().unwrap();
                                fires.push(fire.due.duration_since(start));
                                fires.len()
                            };
                            // The second run takes 25 s: it overruns two fires.
                            if n == 2 {
                                tokio::time::sleep(Duration::from_secs(25)).await;
                            }
                        }
                    },
                    move |missed| *overruns.lock().unwrap() += missed,
                    move |due: Instant| planned.lock().unwrap().push(due.duration_since(start)),
                )
                .await;
            })
        };
        tokio::time::sleep(Duration::from_secs(60)).await;
        cancel.cancel();
        task.await.unwrap();
        let secs: Vec<u64> = fires.lock().unwrap().iter().map(|d| d.as_secs()).collect();
        assert_eq!(secs, vec![3, 13, 43, 53]);
        assert_eq!(*overruns.lock().unwrap(), 2);
        // Each next fire is published as soon as it is known; the overrun moves 23 to 43.
        let planned: Vec<u64> = planned
            .lock()
            .unwrap()
            .iter()
            .map(|d| d.as_secs())
            .collect();
        assert_eq!(planned, vec![3, 13, 23, 43, 53, 63]);
    }
}

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

use crate::config::Schedule;

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

/// When a cron schedule finds no next fire: a year on, as if it were far away.
const NO_FIRE: Duration = Duration::from_secs(365 * 24 * 3600);

/// `at + by`, or the latest instant near it the clock holds: the schedule's arithmetic never
/// panics, whatever the schedule (the validator bounds periods, this bounds the rest).
pub fn saturating_add(at: Instant, by: Duration) -> Instant {
    at.checked_add(by)
        .or_else(|| at.checked_add(NO_FIRE))
        .unwrap_or(at)
}

/// The first-fire delay spread: a restart of many probes must not become a burst.
pub fn startup_jitter(schedule: &Schedule, max: Duration, unit: f64) -> Duration {
    let span = match schedule {
        Schedule::Every(gap) => (*gap).min(max),
        // Cron fires are aligned on purpose; spread only a little so probes sharing an
        // expression do not arrive together.
        Schedule::Cron(_) => max.min(Duration::from_secs(5)),
    };
    // `clamp` keeps a NaN, which `mul_f64` panics on.
    let unit = if unit.is_nan() {
        0.0
    } else {
        unit.clamp(0.0, 1.0)
    };
    span.mul_f64(unit)
}

/// The delay before a probe's first fire. A probe on an interval that sent `since_last_send`
/// ago (before a restart or a reload) keeps its cadence: it fires one interval after that send,
/// so neither repeats a request early. Otherwise, or on cron (whose slots are fixed anyway), the
/// start-up jitter ([`startup_jitter`]) with `unit` in `[0, 1)`.
pub fn first_delay(
    schedule: &Schedule,
    max_jitter: Duration,
    unit: f64,
    since_last_send: Option<Duration>,
) -> Duration {
    match (schedule, since_last_send) {
        (Schedule::Every(gap), Some(ago)) if ago < *gap => *gap - ago,
        _ => startup_jitter(schedule, max_jitter, unit),
    }
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
            let mut due = saturating_add(previous_due, gap);
            let mut missed = 0;
            if due <= now {
                let behind = now.duration_since(due);
                let slots = behind.as_nanos() / gap.as_nanos() + 1;
                missed = u64::try_from(slots).unwrap_or(u64::MAX);
                // `slots` gaps on from `due`: the first slot after now, in nanoseconds that a
                // u128 holds whatever the gap and the lag.
                let ahead = gap.as_nanos().saturating_mul(slots);
                let ahead = u64::try_from(ahead / 1_000_000_000).map_or(Duration::MAX, |secs| {
                    Duration::new(secs, u32::try_from(ahead % 1_000_000_000).unwrap_or(0))
                });
                due = saturating_add(due, ahead);
                if due <= now {
                    due = saturating_add(now, gap);
                }
            }
            (due, missed)
        }
        Schedule::Cron(cron) => {
            // Fires between the previous due time and now were missed (the run overran them).
            let previous_wall =
                chrono::Duration::from_std(now.saturating_duration_since(previous_due))
                    .ok()
                    .and_then(|lag| now_wall.checked_sub_signed(lag))
                    .unwrap_or(now_wall);
            let missed = cron
                .after(&previous_wall)
                .take_while(|fire| *fire <= now_wall)
                .count();
            let delay = cron
                .after(&now_wall)
                .next()
                .and_then(|fire| (fire - now_wall).to_std().ok())
                .unwrap_or(NO_FIRE);
            let due = saturating_add(now, delay);
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
        Schedule::Every(_) => saturating_add(now, jitter),
        Schedule::Cron(cron) => {
            let delay = cron
                .after(&now_wall)
                .next()
                .and_then(|fire| (fire - now_wall).to_std().ok())
                .unwrap_or(NO_FIRE);
            saturating_add(now, delay.saturating_add(jitter))
        }
    }
}

/// Runs `on_fire` at every fire of `schedule` until `cancel` fires.
///
/// A run never overlaps the next: fires that come while a run is still going are skipped and
/// reported to `on_overrun` with their count, and the loop waits for the next fire after now.
/// `on_planned` hears every next fire as soon as it is known (the status page shows it).
/// `first_delay` ([`first_delay`]) puts off the first fire: from now on an interval, from the
/// next slot on cron.
pub async fn run<F, Fut>(
    schedule: Schedule,
    clock: &dyn WallClock,
    first_delay: Duration,
    cancel: CancellationToken,
    mut on_fire: F,
    mut on_overrun: impl FnMut(u64),
    mut on_planned: impl FnMut(Instant),
) where
    F: FnMut(Fire) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut due = first_fire(&schedule, Instant::now(), clock.now(), first_delay);
    on_planned(due);
    loop {
        // Biased, here and below: a cancelled loop starts no run, even one due at that instant.
        tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            () = tokio::time::sleep_until(due) => {}
        }
        let (planned_next, _) = next_fire(&schedule, due, due, clock.now());
        on_planned(planned_next);
        tokio::select! {
            biased;
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
    fn a_probe_that_sent_recently_keeps_its_cadence() {
        let minute = Schedule::Every(Duration::from_secs(60));
        let jitter = Duration::from_secs(30);
        let secs = Duration::from_secs;
        assert_eq!(first_delay(&minute, jitter, 0.5, None), secs(15));
        assert_eq!(first_delay(&minute, jitter, 0.5, Some(secs(6))), secs(54));
        assert_eq!(
            first_delay(&minute, jitter, 0.5, Some(Duration::ZERO)),
            secs(60)
        );
        // Down for longer than an interval: the jitter again, not a catch-up.
        assert_eq!(first_delay(&minute, jitter, 0.5, Some(secs(60))), secs(15));
        assert_eq!(
            first_delay(&minute, jitter, 0.5, Some(secs(3600))),
            secs(15)
        );
        let cron = Schedule::parse_cron("0 * * * * *").unwrap();
        assert_eq!(
            first_delay(&cron, jitter, 0.5, Some(secs(6))),
            Duration::from_millis(2500)
        );
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

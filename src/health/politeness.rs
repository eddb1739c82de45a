//! The per-target request budget: token bucket, backoff after 29/429, slow mode after 26/10.
//!
//! The monitor must never be the reason a key gets banned, so every request of a target passes
//! its [`Gate`] first, which either reserves a token (possibly for a moment later) or says why
//! the run is skipped. The bucket is hand-rolled rather than `governor`'s (whose clock is
//! pluggable, so paused-time tests alone would not rule it out) because of what it must do that
//! `governor` does not: reserve a token for a moment later and void that reservation when a
//! backoff begins in between (an epoch), and hand its state to the state file so a restart keeps
//! the budget. It is a few lines of reservation arithmetic, tested below. State lives behind a `std::sync::Mutex` that is never
//! held across an `.await`.

use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::classify::{Classification, Condition, RetryAfter};
use crate::config::Politeness;
use crate::config::closed_set::closed_set;

/// Less than this short of a token counts as a token (floating-point refills).
const TOKEN_EPSILON: f64 = 1e-6;
/// The shortest wait [`Gate::depart`] asks for: the timer's resolution.
const MIN_RETRY: Duration = Duration::from_millis(1);
/// The shortest backoff a delay sent by the server gives: `Retry-After: 0` or a date already
/// past must not let the next fire hit a server that has just said 429.
const MIN_SERVER_DELAY: Duration = Duration::from_secs(1);
/// What an instant too far for the clock becomes: far enough to mean "not soon".
const FAR: Duration = Duration::from_secs(365 * 24 * 3600);

/// `at + by`, saturated: the validator bounds every period and rate (README.md, Configuration
/// reference), and this keeps an upstream's word (a `Retry-After` of 2^64-1 seconds) or a
/// hand-edited state file from ever making the arithmetic panic.
fn later(at: Instant, by: Duration) -> Instant {
    at.checked_add(by)
        .or_else(|| at.checked_add(FAR))
        .unwrap_or(at)
}

/// `seconds` as a wait: NaN or negative is none, too long for a `Duration` is the longest.
fn wait(seconds: f64) -> Duration {
    Duration::try_from_secs_f64(seconds).unwrap_or(if seconds > 0.0 {
        Duration::MAX
    } else {
        Duration::ZERO
    })
}

/// A uniform unit for the jitter: in `[0, 1]`, NaN as 0 (`clamp` keeps NaN, `mul_f64` panics).
fn unit_interval(unit: f64) -> f64 {
    if unit.is_nan() {
        0.0
    } else {
        unit.clamp(0.0, 1.0)
    }
}

closed_set! {
    /// Why a run was not sent (the `reason` label of `lastfm_probe_skipped_total`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum SkipReason {
        /// The target is in backoff after 29/429, or the budget had no token before the next
        /// fire.
        RateLimited => "rate_limited",
        /// The key is suspended or invalid: one request per `suspended_interval`.
        Suspended => "suspended",
        /// The previous run was still going when this fire came.
        Overrun => "overrun",
    }
}

/// A change of the gate worth a log line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GateEvent {
    /// Backoff started (or grew) for this long.
    BackoffStarted(Duration),
    /// A success ended the backoff.
    BackoffCleared,
    /// Slow mode after 26/10.
    SuspendedModeStarted,
    /// A success ended slow mode.
    SuspendedModeCleared,
}

/// A gate as it is written to the state file ([`crate::daemon::state_file`]), so a restart does not hand the
/// target a full bucket, end its backoff or leave slow mode. Instants become wall-clock Unix
/// milliseconds, the only time that survives the process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedGate {
    /// Tokens in the bucket at `at_ms` (negative: reserved ahead of time).
    pub tokens: f64,
    /// When the gate was saved.
    pub at_ms: i64,
    /// No request before this, after 29/429.
    pub backoff_until_ms: Option<i64>,
    /// Consecutive rate-limit answers, the backoff exponent.
    pub backoff_attempts: u32,
    /// Slow mode after 26/10.
    pub suspended: bool,
    /// In slow mode, the earliest next request.
    pub next_suspended_slot_ms: i64,
}

/// One target's budget.
#[derive(Debug)]
pub struct Gate {
    policy: Politeness,
    state: Mutex<GateState>,
}

#[derive(Debug)]
struct GateState {
    /// Tokens available at `updated` (negative: reserved ahead of time).
    tokens: f64,
    /// When `tokens` was last brought up to date.
    updated: Instant,
    /// No request before this, after 29/429.
    backoff_until: Option<Instant>,
    /// Consecutive rate-limit answers, the backoff exponent.
    backoff_attempts: u32,
    /// Slow mode after 26/10, until a healthy answer.
    suspended: bool,
    /// In slow mode, the earliest next request.
    next_suspended_slot: Instant,
    /// Bumped whenever a backoff or slow mode begins: a token reserved for later under an
    /// older epoch is void, since the upstream said stop after it was reserved.
    epoch: u64,
    /// The same bucket over the instants requests actually leave ([`Gate::depart`]).
    departures: f64,
    /// When `departures` was last brought up to date.
    departed: Instant,
}

impl Gate {
    /// A full bucket at `now`.
    pub fn new(policy: Politeness, now: Instant) -> Self {
        let tokens = f64::from(policy.burst);
        Self {
            policy,
            state: Mutex::new(GateState {
                tokens,
                updated: now,
                backoff_until: None,
                backoff_attempts: 0,
                suspended: false,
                next_suspended_slot: now,
                epoch: 0,
                departures: tokens,
                departed: now,
            }),
        }
    }

    /// The gate as a restart finds it: `saved` brought forward to `now` (`now_ms` on the wall
    /// clock) under `policy`. Every value is bounded by the policy, so a corrupt or hand-edited
    /// file can at worst make the gate stricter for one `backoff_max` or `suspended_interval`,
    /// and a wall clock that went backwards counts as no time elapsed.
    pub fn restored(policy: Politeness, saved: &SavedGate, now: Instant, now_ms: i64) -> Self {
        let burst = f64::from(policy.burst);
        let elapsed =
            Duration::from_millis(u64::try_from(now_ms.saturating_sub(saved.at_ms)).unwrap_or(0));
        let tokens = if saved.tokens.is_finite() {
            (saved.tokens.max(-burst) + elapsed.as_secs_f64() * policy.max_requests_per_second)
                .min(burst)
        } else {
            0.0
        };
        let ahead = |at_ms: i64, cap: Duration| {
            let wait =
                Duration::from_millis(u64::try_from(at_ms.saturating_sub(now_ms)).unwrap_or(0));
            later(now, wait.min(cap))
        };
        let backoff_until = saved
            .backoff_until_ms
            .map(|at| ahead(at, policy.backoff_max))
            .filter(|until| *until > now);
        let next_suspended_slot = ahead(saved.next_suspended_slot_ms, policy.suspended_interval);
        Self {
            state: Mutex::new(GateState {
                tokens,
                updated: now,
                backoff_until,
                backoff_attempts: saved.backoff_attempts.min(64),
                suspended: saved.suspended,
                next_suspended_slot,
                epoch: 0,
                departures: tokens.max(0.0),
                departed: now,
            }),
            policy,
        }
    }

    /// The gate as of `now` (`now_ms` on the wall clock), for the state file.
    pub fn save(&self, now: Instant, now_ms: i64) -> SavedGate {
        let state = self.lock();
        let refill = now.saturating_duration_since(state.updated).as_secs_f64()
            * self.policy.max_requests_per_second;
        let wall = |at: Instant| -> i64 {
            let ahead = at.saturating_duration_since(now).as_millis();
            now_ms.saturating_add(i64::try_from(ahead).unwrap_or(i64::MAX))
        };
        SavedGate {
            tokens: (state.tokens + refill).min(f64::from(self.policy.burst)),
            at_ms: now_ms,
            backoff_until_ms: state.backoff_until.filter(|until| *until > now).map(wall),
            backoff_attempts: state.backoff_attempts,
            suspended: state.suspended,
            next_suspended_slot_ms: wall(state.next_suspended_slot),
        }
    }

    /// The policy this gate enforces.
    pub fn policy(&self) -> &Politeness {
        &self.policy
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        // A poisoned lock only means a panic elsewhere mid-update of plain numbers; the state is
        // still usable, and refusing to probe forever would be worse.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Asks to send one request at `now`, useful until `latest`: the instant it may go (a token
    /// is reserved for it), or why the run is skipped.
    pub fn admit(&self, now: Instant, latest: Instant) -> Result<Instant, SkipReason> {
        let mut state = self.lock();
        if state.backoff_until.is_some_and(|until| until > now) {
            return Err(SkipReason::RateLimited);
        }
        if state.suspended && now < state.next_suspended_slot {
            return Err(SkipReason::Suspended);
        }
        if now > latest {
            // Asked after its useful end: the fire itself came late (the process was stopped,
            // or the host froze), whatever the bucket holds. The budget did not refuse it, so it
            // is an overrun, not a rate limit, and it takes no token.
            return Err(SkipReason::Overrun);
        }
        let rate = self.policy.max_requests_per_second;
        let burst = f64::from(self.policy.burst);
        let refill = now.saturating_duration_since(state.updated).as_secs_f64() * rate;
        state.tokens = (state.tokens + refill).min(burst);
        state.updated = now;
        let at = if state.tokens >= 1.0 {
            now
        } else {
            later(now, wait((1.0 - state.tokens) / rate))
        };
        if at > latest {
            return Err(SkipReason::RateLimited);
        }
        state.tokens -= 1.0;
        if state.suspended {
            state.next_suspended_slot = later(now, self.policy.suspended_interval);
        }
        Ok(at)
    }

    /// Takes a token for a request leaving at `now`, once its reserved instant has come: `Ok` to
    /// send, or `Err` with the instant to try again.
    ///
    /// Reservations keep the budget over the instants [`Gate::admit`] hands out, but a runtime
    /// busy with a burst can wake a reserved request late, together with the ones reserved after
    /// it, and the bunch would leave faster than the budget allows (the scheduler bench saw 3
    /// requests too many in a 10 ms window; docs/PERFORMANCE.md). This second bucket, over actual departures,
    /// holds such a bunch back; when nothing runs late it always has the token the reservation
    /// promised, and never waits.
    pub fn depart(&self, now: Instant) -> Result<(), Instant> {
        let mut state = self.lock();
        let rate = self.policy.max_requests_per_second;
        let refill = now.saturating_duration_since(state.departed).as_secs_f64() * rate;
        state.departures = (state.departures + refill).min(f64::from(self.policy.burst));
        state.departed = state.departed.max(now);
        // Refills sum to a token with rounding error (0.999999…): that is a token too, and a
        // retry computed from such a sliver would be "now" and spin.
        if state.departures >= 1.0 - TOKEN_EPSILON {
            state.departures = (state.departures - 1.0).max(0.0);
            Ok(())
        } else {
            let wait = wait((1.0 - state.departures) / rate);
            Err(later(now, wait.max(MIN_RETRY)))
        }
    }

    /// The current epoch: take it before [`Gate::admit`], and send only if it is unchanged
    /// when the reserved instant comes ([`Gate::still_admitted`]).
    pub fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    /// Whether a request admitted under `epoch` may still go: `Err` with the reason when a
    /// backoff or slow mode began since, which voids the reservation.
    pub fn still_admitted(&self, epoch: u64) -> Result<(), SkipReason> {
        let state = self.lock();
        if state.epoch == epoch {
            Ok(())
        } else if state.suspended {
            Err(SkipReason::Suspended)
        } else {
            Err(SkipReason::RateLimited)
        }
    }

    /// Updates backoff and slow mode from a run's verdict. `unit` is a uniform random number in
    /// `[0, 1)` for the jitter; `now_unix` resolves `Retry-After` dates.
    pub fn record(
        &self,
        verdict: &Classification,
        now: Instant,
        now_unix: i64,
        unit: f64,
    ) -> Vec<GateEvent> {
        let mut events = Vec::new();
        let mut state = self.lock();
        if verdict.raises.contains(&Condition::RateLimited) {
            state.backoff_attempts = state.backoff_attempts.saturating_add(1);
            let delay = match verdict.retry_after {
                Some(hint) => self.retry_after(hint, now_unix),
                None => self.exponential(state.backoff_attempts, unit),
            };
            state.backoff_until = Some(later(now, delay));
            state.epoch = state.epoch.wrapping_add(1);
            events.push(GateEvent::BackoffStarted(delay));
        }
        let key_problem = verdict
            .raises
            .iter()
            .any(|c| matches!(c, Condition::ApiKeySuspended | Condition::ApiKeyInvalid));
        if key_problem {
            if !state.suspended {
                events.push(GateEvent::SuspendedModeStarted);
            }
            state.suspended = true;
            state.next_suspended_slot = later(now, self.policy.suspended_interval);
            state.epoch = state.epoch.wrapping_add(1);
        }
        if verdict.api_healthy {
            if state.backoff_attempts > 0 || state.backoff_until.is_some() {
                events.push(GateEvent::BackoffCleared);
            }
            state.backoff_attempts = 0;
            state.backoff_until = None;
            if state.suspended {
                events.push(GateEvent::SuspendedModeCleared);
            }
            state.suspended = false;
        }
        events
    }

    /// Remaining backoff at `now` (zero when none).
    pub fn backoff_remaining(&self, now: Instant) -> Duration {
        self.lock()
            .backoff_until
            .map_or(Duration::ZERO, |until| until.saturating_duration_since(now))
    }

    /// Whether slow mode is on.
    pub fn is_suspended(&self) -> bool {
        self.lock().suspended
    }

    fn retry_after(&self, hint: RetryAfter, now_unix: i64) -> Duration {
        let asked = match hint {
            RetryAfter::Seconds(s) => Duration::from_secs(s),
            RetryAfter::At(at) => {
                Duration::from_secs(u64::try_from(at.saturating_sub(now_unix)).unwrap_or(0))
            }
        };
        self.server_delay(asked)
    }

    /// A delay the server asked for (`Retry-After` now, a rate-limit reset header later),
    /// clamped to `[1 s, backoff_max]`: the server's word within our bounds. `backoff_initial`
    /// plays no part; it only starts the exponential backoff used when the server sends none.
    fn server_delay(&self, asked: Duration) -> Duration {
        let max = self.policy.backoff_max;
        asked.clamp(MIN_SERVER_DELAY.min(max), max)
    }

    /// `initial · 2^(n-1)`, capped, with jitter in its upper half so clients spread out but
    /// never come back almost at once.
    fn exponential(&self, attempts: u32, unit: f64) -> Duration {
        let exponent = attempts.saturating_sub(1).min(30);
        let full = self
            .policy
            .backoff_initial
            .saturating_mul(1 << exponent)
            .min(self.policy.backoff_max);
        full.mul_f64(0.5 + 0.5 * unit_interval(unit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Outcome;

    fn policy(rate: f64, burst: u32) -> Politeness {
        Politeness {
            max_requests_per_second: rate,
            burst,
            suspended_interval: Duration::from_secs(900),
            backoff_initial: Duration::from_secs(60),
            backoff_max: Duration::from_secs(3600),
        }
    }

    fn verdict(
        raises: Vec<Condition>,
        healthy: bool,
        retry_after: Option<RetryAfter>,
    ) -> Classification {
        let outcome = if healthy {
            Outcome::Success
        } else {
            Outcome::ApiError
        };
        Classification {
            http_status: Some(200),
            met_expectation: healthy,
            api_healthy: healthy,
            raises,
            retry_after,
            ..Classification::new(outcome)
        }
    }

    #[test]
    fn reserved_requests_woken_late_together_leave_no_faster_than_the_budget() {
        let now = Instant::now();
        let gate = Gate::new(policy(10.0, 2), now);
        let far = now + Duration::from_secs(3600);
        let reserved: Vec<Instant> = (0..4).map(|_| gate.admit(now, far).unwrap()).collect();
        let ms = Duration::from_millis;
        assert_eq!(reserved, [now, now, now + ms(100), now + ms(200)]);

        // On time, every departure finds the token its reservation promised.
        let on_time = Gate::new(policy(10.0, 2), now);
        for at in &reserved {
            on_time.admit(now, far).unwrap();
            assert_eq!(on_time.depart(*at), Ok(()));
        }

        // All four woken at +200 ms by a busy runtime: two may leave (the burst), the third
        // waits for the token that comes back 100 ms later, and so does the fourth.
        let late = now + ms(200);
        assert_eq!(gate.depart(late), Ok(()));
        assert_eq!(gate.depart(late), Ok(()));
        assert_eq!(gate.depart(late), Err(late + ms(100)));
        assert_eq!(gate.depart(late), Err(late + ms(100)));
        assert_eq!(gate.depart(late + ms(100)), Ok(()));
        assert_eq!(gate.depart(late + ms(100)), Err(late + ms(200)));
    }

    #[test]
    fn departures_at_their_reserved_instants_never_wait_despite_rounding() {
        // Rates whose refills are not exact in binary (a third, a tenth, seven per second):
        // a departure at its reserved instant must find its token, not a sliver short of one.
        for rate in [3.0, 0.1, 7.0, 1000.0 / 3.0] {
            let start = Instant::now();
            let gate = Gate::new(policy(rate, 3), start);
            let far = start + Duration::from_secs(1_000_000);
            let mut now = start;
            for i in 0..5_000 {
                let at = gate.admit(now, far).unwrap();
                assert_eq!(gate.depart(at), Ok(()), "rate {rate}, request {i}");
                now = at;
            }
        }
    }

    #[test]
    fn a_restart_finds_the_bucket_as_it_was_left() {
        let now = Instant::now();
        let gate = Gate::new(policy(1.0, 3), now);
        let far = now + Duration::from_secs(3600);
        for _ in 0..3 {
            gate.admit(now, far).unwrap();
        }
        let saved = gate.save(now, 1_000_000);
        assert_eq!(saved.tokens, 0.0);

        // Restarted 2 s later: two tokens came back, not the whole burst.
        let later = now + Duration::from_secs(50);
        let restored = Gate::restored(policy(1.0, 3), &saved, later, 1_002_000);
        assert_eq!(restored.admit(later, far), Ok(later));
        assert_eq!(restored.admit(later, far), Ok(later));
        assert_eq!(
            restored.admit(later, far),
            Ok(later + Duration::from_secs(1))
        );
    }

    #[test]
    fn a_restart_keeps_backoff_and_slow_mode() {
        let now = Instant::now();
        let gate = Gate::new(policy(1.0, 3), now);
        gate.record(
            &verdict(vec![Condition::RateLimited], false, None),
            now,
            0,
            1.0,
        );
        gate.record(
            &verdict(vec![Condition::ApiKeySuspended], false, None),
            now,
            0,
            1.0,
        );
        let saved = gate.save(now + Duration::from_secs(10), 10_000);
        assert_eq!(saved.backoff_until_ms, Some(60_000));
        assert_eq!(saved.next_suspended_slot_ms, 900_000);

        let later = Instant::now() + Duration::from_secs(7);
        let restored = Gate::restored(policy(1.0, 3), &saved, later, 20_000);
        assert_eq!(restored.backoff_remaining(later), Duration::from_secs(40));
        assert!(restored.is_suspended());
        let far = later + Duration::from_secs(3600);
        assert_eq!(
            restored.admit(later + Duration::from_secs(41), far),
            Err(SkipReason::Suspended),
            "the slow-mode slot is 880 s away"
        );
        assert!(
            restored
                .admit(later + Duration::from_secs(880), far)
                .is_ok()
        );
        // The exponent carries on: the next 29 backs off twice as long as the first.
        restored.record(
            &verdict(vec![Condition::RateLimited], false, None),
            later,
            0,
            1.0,
        );
        assert_eq!(restored.backoff_remaining(later), Duration::from_secs(120));
    }

    #[test]
    fn a_bad_state_file_can_only_make_the_gate_stricter_for_a_while() {
        let now = Instant::now();
        let saved = SavedGate {
            tokens: f64::NAN,
            at_ms: 5_000,
            backoff_until_ms: Some(i64::MAX),
            backoff_attempts: u32::MAX,
            suspended: true,
            next_suspended_slot_ms: i64::MAX,
        };
        // The wall clock went backwards since the save: no refill for the missing time.
        let gate = Gate::restored(policy(1.0, 3), &saved, now, 1_000);
        assert_eq!(gate.backoff_remaining(now), Duration::from_secs(3600));
        let far = now + Duration::from_secs(100_000);
        assert_eq!(
            gate.admit(now + Duration::from_secs(1800), far),
            Err(SkipReason::RateLimited),
            "backoff, capped at backoff_max"
        );
        assert!(
            gate.admit(now + Duration::from_secs(3600), far).is_ok(),
            "both waits end within their caps"
        );
        let tokens = Gate::restored(
            policy(1.0, 3),
            &SavedGate {
                tokens: -1e12,
                suspended: false,
                backoff_until_ms: None,
                next_suspended_slot_ms: 0,
                ..saved
            },
            now,
            1_000,
        );
        assert_eq!(
            tokens.admit(now, far),
            Ok(now + Duration::from_secs(4)),
            "a hugely negative bucket is bounded by one burst"
        );
    }

    #[test]
    fn bucket_allows_the_burst_then_spaces_requests() {
        let now = Instant::now();
        let gate = Gate::new(policy(1.0, 3), now);
        let far = now + Duration::from_secs(3600);
        for _ in 0..3 {
            assert_eq!(gate.admit(now, far), Ok(now));
        }
        assert_eq!(gate.admit(now, far), Ok(now + Duration::from_secs(1)));
        assert_eq!(gate.admit(now, far), Ok(now + Duration::from_secs(2)));
    }

    #[test]
    fn no_token_before_the_next_fire_is_a_rate_limited_skip() {
        let now = Instant::now();
        let gate = Gate::new(policy(0.1, 1), now);
        assert!(gate.admit(now, now).is_ok());
        assert_eq!(
            gate.admit(now, now + Duration::from_secs(5)),
            Err(SkipReason::RateLimited)
        );
    }

    #[test]
    fn a_fire_already_past_its_useful_end_is_an_overrun_not_a_rate_limit() {
        let now = Instant::now();
        let ago = now - Duration::from_millis(1500);
        // The process was stopped past the next fire: the bucket is full, the fire is late.
        let full = Gate::new(policy(1.0, 3), now);
        assert_eq!(full.admit(now, ago), Err(SkipReason::Overrun));
        assert_eq!(
            full.admit(now, now),
            Ok(now),
            "the late fire took no token: the burst is whole"
        );
        assert_eq!(full.admit(now, now), Ok(now));
        assert_eq!(full.admit(now, now), Ok(now));
        // Late with an empty bucket: still late first of all.
        assert_eq!(full.admit(now, ago), Err(SkipReason::Overrun));
        assert_eq!(full.admit(now, now), Err(SkipReason::RateLimited));
        // A backoff is a real rate limit, late or not.
        full.record(
            &verdict(vec![Condition::RateLimited], false, None),
            now,
            0,
            1.0,
        );
        assert_eq!(full.admit(now, ago), Err(SkipReason::RateLimited));
    }

    #[test]
    fn rate_limit_answers_back_off_exponentially_and_success_clears() {
        let now = Instant::now();
        let gate = Gate::new(policy(1.0, 3), now);
        let limited = verdict(vec![Condition::RateLimited], false, None);
        gate.record(&limited, now, 0, 1.0);
        assert_eq!(gate.backoff_remaining(now), Duration::from_secs(60));
        gate.record(&limited, now, 0, 1.0);
        assert_eq!(gate.backoff_remaining(now), Duration::from_secs(120));
        gate.record(&limited, now, 0, 0.0);
        assert_eq!(
            gate.backoff_remaining(now),
            Duration::from_secs(120),
            "half of 240 s"
        );
        assert_eq!(
            gate.admit(
                now + Duration::from_secs(10),
                now + Duration::from_secs(3600)
            ),
            Err(SkipReason::RateLimited)
        );
        let events = gate.record(&verdict(vec![], true, None), now, 0, 0.5);
        assert_eq!(events, vec![GateEvent::BackoffCleared]);
        assert_eq!(gate.backoff_remaining(now), Duration::ZERO);
    }

    #[test]
    fn backoff_is_capped() {
        let now = Instant::now();
        let gate = Gate::new(policy(1.0, 3), now);
        let limited = verdict(vec![Condition::RateLimited], false, None);
        for _ in 0..40 {
            gate.record(&limited, now, 0, 1.0);
        }
        assert_eq!(gate.backoff_remaining(now), Duration::from_secs(3600));
    }

    #[test]
    fn retry_after_is_honoured_and_clamped() {
        let now = Instant::now();
        let gate = Gate::new(policy(1.0, 3), now);
        gate.record(
            &verdict(
                vec![Condition::RateLimited],
                false,
                Some(RetryAfter::Seconds(120)),
            ),
            now,
            0,
            0.0,
        );
        assert_eq!(gate.backoff_remaining(now), Duration::from_secs(120));
        gate.record(
            &verdict(
                vec![Condition::RateLimited],
                false,
                Some(RetryAfter::Seconds(999_999)),
            ),
            now,
            0,
            0.0,
        );
        assert_eq!(gate.backoff_remaining(now), Duration::from_secs(3600));
        gate.record(
            &verdict(
                vec![Condition::RateLimited],
                false,
                Some(RetryAfter::At(1_000)),
            ),
            now,
            2_000,
            0.0,
        );
        assert_eq!(
            gate.backoff_remaining(now),
            Duration::from_secs(1),
            "a past date is the shortest wait, not none"
        );
    }

    #[test]
    fn every_server_delay_is_clamped_between_a_second_and_backoff_max() {
        let now = Instant::now();
        let gate = Gate::new(policy(1.0, 3), now);
        let limited = |hint| verdict(vec![Condition::RateLimited], false, Some(hint));
        let cases = [
            (RetryAfter::Seconds(0), 1),
            (RetryAfter::Seconds(u64::MAX), 3600),
            (RetryAfter::At(i64::MIN), 1),
            (RetryAfter::At(i64::MAX), 3600),
            (RetryAfter::At(2_030), 30),
        ];
        for (hint, secs) in cases {
            let events = gate.record(&limited(hint), now, 2_000, 0.0);
            let want = Duration::from_secs(secs);
            assert_eq!(events, vec![GateEvent::BackoffStarted(want)], "{hint:?}");
            assert_eq!(gate.backoff_remaining(now), want, "{hint:?}");
            assert_eq!(
                gate.admit(now, now + Duration::from_secs(10_000)),
                Err(SkipReason::RateLimited),
                "{hint:?}: the next fire at once is held back"
            );
        }
    }

    #[test]
    fn a_backoff_or_slow_mode_voids_earlier_reservations() {
        let now = Instant::now();
        let gate = Gate::new(policy(1.0, 1), now);
        let far = now + Duration::from_secs(3600);
        let epoch = gate.epoch();
        assert_eq!(gate.admit(now, far), Ok(now));
        assert_eq!(gate.admit(now, far), Ok(now + Duration::from_secs(1)));
        gate.record(&verdict(vec![], true, None), now, 0, 0.5);
        assert_eq!(
            gate.still_admitted(epoch),
            Ok(()),
            "a success changes nothing"
        );
        gate.record(
            &verdict(vec![Condition::RateLimited], false, None),
            now,
            0,
            0.5,
        );
        assert_eq!(gate.still_admitted(epoch), Err(SkipReason::RateLimited));
        let epoch = gate.epoch();
        gate.record(
            &verdict(vec![Condition::ApiKeySuspended], false, None),
            now,
            0,
            0.5,
        );
        assert_eq!(gate.still_admitted(epoch), Err(SkipReason::Suspended));
    }

    #[test]
    fn suspended_key_allows_one_request_per_interval() {
        let now = Instant::now();
        let gate = Gate::new(policy(1.0, 3), now);
        let far = now + Duration::from_secs(100_000);
        gate.record(
            &verdict(vec![Condition::ApiKeySuspended], false, None),
            now,
            0,
            0.0,
        );
        assert_eq!(
            gate.admit(now + Duration::from_secs(60), far),
            Err(SkipReason::Suspended)
        );
        let slot = now + Duration::from_secs(900);
        assert_eq!(gate.admit(slot, far), Ok(slot));
        assert_eq!(
            gate.admit(slot + Duration::from_secs(1), far),
            Err(SkipReason::Suspended)
        );
        gate.record(&verdict(vec![], true, None), slot, 0, 0.0);
        assert!(!gate.is_suspended());
        assert!(gate.admit(slot + Duration::from_secs(2), far).is_ok());
    }
}

//! The per-target request budget: token bucket, backoff after 29/429, slow mode after 26/10.
//!
//! The monitor must never be the reason a key gets banned, so every request of a target passes
//! its [`Gate`] first, which either reserves a token (possibly for a moment later) or says why
//! the run is skipped. The bucket is hand-rolled rather than `governor`'s because the politeness
//! proofs run on tokio's paused clock, which `governor`'s clocks do not follow; it is a few lines
//! of reservation arithmetic, tested below. State lives behind a `std::sync::Mutex` that is never
//! held across an `.await`.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::classify::{Classification, Condition, RetryAfter};
use crate::config::Politeness;

/// Why a run was not sent (the `reason` label of `lastfm_probe_skipped_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// The target is in backoff after 29/429, or the budget had no token before the next fire.
    RateLimited,
    /// The key is suspended or invalid: one request per `suspended_interval`.
    Suspended,
    /// The previous run was still going when this fire came.
    Overrun,
}

impl SkipReason {
    /// Every reason, for pre-creating series.
    pub const ALL: [Self; 3] = [Self::RateLimited, Self::Suspended, Self::Overrun];

    /// The `reason` label value.
    pub fn as_label(self) -> &'static str {
        match self {
            Self::RateLimited => "rate_limited",
            Self::Suspended => "suspended",
            Self::Overrun => "overrun",
        }
    }

    /// Index into [`SkipReason::ALL`].
    pub fn index(self) -> usize {
        self as usize
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
    /// older epoch is void, since the upstream said stop after it was reserved (issue 5).
    epoch: u64,
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
            }),
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
        let rate = self.policy.max_requests_per_second;
        let burst = f64::from(self.policy.burst);
        let refill = now.saturating_duration_since(state.updated).as_secs_f64() * rate;
        state.tokens = (state.tokens + refill).min(burst);
        state.updated = now;
        let at = if state.tokens >= 1.0 {
            now
        } else {
            now + Duration::from_secs_f64((1.0 - state.tokens) / rate)
        };
        if at > latest {
            return Err(SkipReason::RateLimited);
        }
        state.tokens -= 1.0;
        if state.suspended {
            state.next_suspended_slot = now + self.policy.suspended_interval;
        }
        Ok(at)
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
            state.backoff_until = Some(now + delay);
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
            state.next_suspended_slot = now + self.policy.suspended_interval;
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
            RetryAfter::At(at) => Duration::from_secs(u64::try_from(at - now_unix).unwrap_or(0)),
        };
        asked.min(self.policy.backoff_max)
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
        full.mul_f64(0.5 + 0.5 * unit.clamp(0.0, 1.0))
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
        Classification {
            outcome: if healthy {
                Outcome::Success
            } else {
                Outcome::ApiError
            },
            http_status: Some(200),
            error_code: None,
            detail: None,
            mismatch: None,
            blame: None,
            met_expectation: healthy,
            api_healthy: healthy,
            raises,
            retry_after,
        }
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
            Duration::ZERO,
            "a past date is no wait"
        );
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

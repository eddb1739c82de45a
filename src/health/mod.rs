//! A target's health: availability with hysteresis, and the conditions a run raises.
//!
//! Availability answers "is Last.fm broken?", so only upstream-blamed failures move it down, and
//! only healthy answers move it up, each after a run of `down_after` / `up_after` in a row: one
//! blip does not flap the gauge. Streaks are counted per probe, because probes of one target
//! interleave: a broken `album.getInfo` must not be reset by a healthy `user.getInfo` a second
//! later. The target is unavailable while any of its probes is down. Conditions (the closed set
//! `classify::Condition`) answer "is our key in trouble?" and "is our network down?": raised by
//! the run that shows them, cleared by the next healthy answer (`session_invalid` by a healthy
//! *signed* run, since unsigned probes say nothing about the session).

pub mod politeness;

use crate::classify::{Blame, CanaryResult, Classification, Condition, IgnoredCode};

/// A change worth a log line at info or warn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthEvent {
    /// `lastfm_service_available` changed.
    Availability(bool),
    /// A condition was raised (`true`) or cleared (`false`).
    Condition(Condition, bool),
}

/// One probe's run of like answers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Streak {
    /// Upstream failures in a row.
    failures: u32,
    /// Healthy answers in a row.
    healthy: u32,
    /// Down after `down_after` failures, up again after `up_after` healthy answers.
    down: bool,
}

/// One target's availability and conditions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    down_after: u32,
    up_after: u32,
    /// Per probe: its streaks and whether it counts as down.
    probes: Vec<Streak>,
    /// Per canary: what its runs hold raised until its next `visible` run.
    canaries: Vec<CanaryFlags>,
    conditions: [bool; Condition::ALL.len()],
}

/// A canary's share of the write-path conditions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct CanaryFlags {
    /// Ignored with code 1 or 2.
    ignored: bool,
    /// Accepted and never seen.
    not_visible: bool,
}

impl Health {
    /// Starts available with no condition, for a target with `probes` probes and `canaries`
    /// canaries.
    pub fn new(down_after: u32, up_after: u32, probes: usize, canaries: usize) -> Self {
        Self {
            down_after,
            up_after,
            probes: vec![Streak::default(); probes],
            canaries: vec![CanaryFlags::default(); canaries],
            conditions: [false; Condition::ALL.len()],
        }
    }

    /// Whether the target counts as available: none of its probes is down.
    pub fn is_available(&self) -> bool {
        !self.probes.iter().any(|p| p.down)
    }

    /// Whether probe `index` counts as down.
    pub fn is_probe_down(&self, index: usize) -> bool {
        self.probes.get(index).is_some_and(|p| p.down)
    }

    /// Whether `condition` is raised.
    pub fn has(&self, condition: Condition) -> bool {
        self.conditions[condition.index()]
    }

    /// Clears `condition` from outside a run (a reachable reference clears
    /// `local_network_down`); the event when it was raised.
    pub fn clear(&mut self, condition: Condition) -> Option<HealthEvent> {
        let raised = std::mem::replace(&mut self.conditions[condition.index()], false);
        raised.then_some(HealthEvent::Condition(condition, false))
    }

    /// Folds in one run of probe `index` (`signed` tells whether it tested the session).
    pub fn observe(
        &mut self,
        index: usize,
        verdict: &Classification,
        signed: bool,
    ) -> Vec<HealthEvent> {
        let mut events = Vec::new();
        let was_available = self.is_available();
        let (down_after, up_after) = (self.down_after, self.up_after);
        if let Some(streak) = self.probes.get_mut(index) {
            if verdict.api_healthy {
                streak.failures = 0;
                streak.healthy = streak.healthy.saturating_add(1);
                if streak.down && streak.healthy >= up_after {
                    streak.down = false;
                }
            } else if verdict.blame == Some(Blame::Upstream) {
                streak.healthy = 0;
                streak.failures = streak.failures.saturating_add(1);
                if streak.failures >= down_after {
                    streak.down = true;
                }
            }
        }
        if was_available != self.is_available() {
            events.push(HealthEvent::Availability(self.is_available()));
        }
        self.fold_conditions(verdict, signed, &mut events);
        events
    }

    /// Folds in one request of a canary's step: its conditions (a write refused with 9 shows
    /// the session is invalid, like a signed probe's would), never availability.
    pub fn observe_step(&mut self, verdict: &Classification, signed: bool) -> Vec<HealthEvent> {
        let mut events = Vec::new();
        self.fold_conditions(verdict, signed, &mut events);
        events
    }

    /// Folds in the result of a run of canary `index`: `scrobbles_ignored` and
    /// `scrobbles_not_visible` hold while any canary's last word on them was bad, and a canary's
    /// `visible` run takes back its own share (a run that failed in between proves nothing).
    pub fn observe_canary(
        &mut self,
        index: usize,
        result: CanaryResult,
        ignored: Option<IgnoredCode>,
    ) -> Vec<HealthEvent> {
        if let Some(flags) = self.canaries.get_mut(index) {
            match result {
                // The best a service without a read-back can tell.
                CanaryResult::Visible | CanaryResult::Accepted => *flags = CanaryFlags::default(),
                CanaryResult::NotVisible => flags.not_visible = true,
                CanaryResult::Ignored if ignored.is_some_and(IgnoredCode::is_filter) => {
                    flags.ignored = true;
                }
                CanaryResult::Ignored | CanaryResult::Rejected | CanaryResult::Failed => {}
            }
        }
        let mut events = Vec::new();
        for (condition, held) in [
            (
                Condition::ScrobblesIgnored,
                self.canaries.iter().any(|f| f.ignored),
            ),
            (
                Condition::ScrobblesNotVisible,
                self.canaries.iter().any(|f| f.not_visible),
            ),
        ] {
            if std::mem::replace(&mut self.conditions[condition.index()], held) != held {
                events.push(HealthEvent::Condition(condition, held));
            }
        }
        events
    }

    /// Raises the verdict's conditions; a healthy answer clears the others (a write-path
    /// condition only by its canary's result).
    fn fold_conditions(
        &mut self,
        verdict: &Classification,
        signed: bool,
        events: &mut Vec<HealthEvent>,
    ) {
        // A run that got a connection (or did not need a new one) had the descriptors, memory
        // and ports it needed: the shortage is over, whatever became of the rest of the run.
        let past_connect = verdict
            .failure
            .is_none_or(|failure| !failure.before_connection());
        if past_connect && !verdict.api_healthy {
            let condition = Condition::LocalResourcesExhausted;
            if std::mem::replace(&mut self.conditions[condition.index()], false) {
                events.push(HealthEvent::Condition(condition, false));
            }
        }
        if verdict.api_healthy {
            for condition in Condition::ALL {
                let clears = !condition.is_write_path()
                    && (condition != Condition::SessionInvalid || signed);
                if clears && self.conditions[condition.index()] {
                    self.conditions[condition.index()] = false;
                    events.push(HealthEvent::Condition(condition, false));
                }
            }
        }
        for condition in &verdict.raises {
            if !self.conditions[condition.index()] {
                self.conditions[condition.index()] = true;
                events.push(HealthEvent::Condition(*condition, true));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Outcome;

    fn run(blame: Option<Blame>, healthy: bool, raises: Vec<Condition>) -> Classification {
        let outcome = if healthy {
            Outcome::Success
        } else {
            Outcome::ApiError
        };
        Classification {
            http_status: Some(200),
            blame,
            met_expectation: healthy,
            api_healthy: healthy,
            raises,
            ..Classification::new(outcome)
        }
    }

    #[test]
    fn availability_drops_after_down_after_upstream_failures_in_a_row() {
        let mut health = Health::new(3, 2, 2, 0);
        let failure = run(Some(Blame::Upstream), false, vec![]);
        assert!(health.observe(0, &failure, false).is_empty());
        assert!(health.observe(0, &failure, false).is_empty());
        assert_eq!(
            health.observe(0, &failure, false),
            vec![HealthEvent::Availability(false)]
        );
        assert!(!health.is_available());
    }

    #[test]
    fn a_blip_does_not_flap_availability() {
        let mut health = Health::new(3, 2, 2, 0);
        let failure = run(Some(Blame::Upstream), false, vec![]);
        let ok = run(None, true, vec![]);
        for _ in 0..10 {
            health.observe(0, &failure, false);
            health.observe(0, &failure, false);
            health.observe(0, &ok, false);
        }
        assert!(health.is_available());
    }

    #[test]
    fn recovery_needs_up_after_healthy_runs() {
        let mut health = Health::new(1, 2, 2, 0);
        health.observe(0, &run(Some(Blame::Upstream), false, vec![]), false);
        assert!(!health.is_available());
        assert!(
            health
                .observe(0, &run(None, true, vec![]), false)
                .is_empty()
        );
        assert_eq!(
            health.observe(0, &run(None, true, vec![]), false),
            vec![HealthEvent::Availability(true)]
        );
    }

    #[test]
    fn a_healthy_probe_does_not_reset_a_failing_one() {
        let mut health = Health::new(3, 2, 2, 0);
        let failure = run(Some(Blame::Upstream), false, vec![]);
        let ok = run(None, true, vec![]);
        for _ in 0..2 {
            health.observe(0, &failure, false);
            health.observe(1, &ok, false);
        }
        assert_eq!(
            health.observe(0, &failure, false),
            vec![HealthEvent::Availability(false)]
        );
        assert!(health.is_probe_down(0));
        assert!(!health.is_probe_down(1));
        assert!(
            health.observe(1, &ok, false).is_empty(),
            "probe 1 cannot bring probe 0 back"
        );
        assert!(!health.is_available());
    }

    #[test]
    fn client_failures_never_move_availability() {
        let mut health = Health::new(1, 1, 2, 0);
        let suspended = run(Some(Blame::Client), false, vec![Condition::ApiKeySuspended]);
        for _ in 0..5 {
            health.observe(0, &suspended, false);
        }
        assert!(health.is_available());
        assert!(health.has(Condition::ApiKeySuspended));
    }

    /// `local_resources_exhausted` never moves availability, and clears with the next run that
    /// gets past `connect`, healthy or not; one that fails resolving or connecting keeps it.
    #[test]
    fn exhausted_resources_clear_once_a_run_gets_past_connect() {
        use crate::probe::{Phase, Reason, TransportFailure};
        let failed = |phase, reason, blame, raises| Classification {
            failure: Some(TransportFailure::new(phase, reason)),
            blame: Some(blame),
            raises,
            ..Classification::new(Outcome::ConnectionError)
        };
        let exhausted = failed(
            Phase::Connect,
            Reason::LocalResources,
            Blame::Local,
            vec![Condition::LocalResourcesExhausted],
        );
        let mut health = Health::new(1, 1, 1, 0);
        assert_eq!(
            health.observe(0, &exhausted, false),
            vec![HealthEvent::Condition(
                Condition::LocalResourcesExhausted,
                true
            )]
        );
        assert!(health.is_available(), "never moves availability");
        let refused = failed(Phase::Connect, Reason::Refused, Blame::Local, vec![]);
        assert!(health.observe(0, &refused, false).is_empty());
        assert!(health.has(Condition::LocalResourcesExhausted));
        let reset = failed(Phase::Request, Reason::Reset, Blame::Upstream, vec![]);
        let events = health.observe(0, &reset, false);
        assert!(
            events.contains(&HealthEvent::Condition(
                Condition::LocalResourcesExhausted,
                false
            )),
            "{events:?}"
        );
        assert!(!health.has(Condition::LocalResourcesExhausted));
    }

    #[test]
    fn conditions_clear_on_a_healthy_answer_session_only_when_signed() {
        let mut health = Health::new(3, 2, 2, 0);
        health.observe(
            0,
            &run(
                Some(Blame::Client),
                false,
                vec![Condition::SessionInvalid, Condition::ServiceOffline],
            ),
            true,
        );
        let events = health.observe(0, &run(None, true, vec![]), false);
        assert_eq!(
            events,
            vec![HealthEvent::Condition(Condition::ServiceOffline, false)]
        );
        assert!(health.has(Condition::SessionInvalid));
        health.observe(0, &run(None, true, vec![]), true);
        assert!(!health.has(Condition::SessionInvalid));
    }

    /// The write-path conditions: held while any canary's last word was bad, each canary
    /// taking back only its own share, and never cleared by a probe's healthy run.
    #[test]
    fn write_path_conditions_follow_each_canarys_results() {
        use CanaryResult::{Accepted, Failed, Ignored, NotVisible, Visible};
        let mut health = Health::new(3, 2, 1, 2);
        let raised = health.observe_canary(0, Ignored, Some(IgnoredCode::of(1)));
        assert_eq!(
            raised,
            vec![HealthEvent::Condition(Condition::ScrobblesIgnored, true)]
        );
        assert!(
            health
                .observe_canary(1, Ignored, Some(IgnoredCode::of(5)))
                .is_empty(),
            "the daily limit is ours, not a broken write path"
        );
        health.observe_canary(1, NotVisible, None);
        assert!(health.has(Condition::ScrobblesNotVisible));
        // A probe's healthy answer says nothing about writes.
        health.observe(0, &run(None, true, vec![]), true);
        assert!(health.has(Condition::ScrobblesIgnored));
        // A failed run proves nothing either way; canary 0's visible run clears its share only.
        health.observe_canary(0, Failed, None);
        assert!(health.has(Condition::ScrobblesIgnored));
        health.observe_canary(0, Visible, None);
        assert!(!health.has(Condition::ScrobblesIgnored));
        assert!(health.has(Condition::ScrobblesNotVisible), "canary 1's");
        assert_eq!(
            health.observe_canary(1, Accepted, None),
            vec![HealthEvent::Condition(
                Condition::ScrobblesNotVisible,
                false
            )]
        );
    }
}

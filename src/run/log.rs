//! The log lines of a run: one per request at debug, and one per change of a gate or of a
//! target's health at info or warn.

use std::time::Duration;

use crate::classify::Classification;
use crate::config::{Probe, Target};
use crate::health::HealthEvent;
use crate::health::politeness::GateEvent;

pub(super) fn log_run(
    target: &Target,
    probe: &Probe,
    verdict: &Classification,
    elapsed: Duration,
    on_demand: bool,
) {
    tracing::debug!(
        target = %target.name,
        probe = %probe.name,
        outcome = verdict.outcome.as_label(),
        code = verdict.error_code.unwrap_or(0),
        status = verdict.http_status.unwrap_or(0),
        success = verdict.met_expectation,
        mismatch = verdict.mismatch.map_or("none", |m| m.kind.as_label()),
        blame = verdict.blame.map_or("none", |b| b.as_label()),
        duration_seconds = elapsed.as_secs_f64(),
        on_demand,
        "probe run"
    );
}

pub(super) fn log_events(target: &Target, gate: &[GateEvent], health: &[HealthEvent]) {
    for event in gate {
        match event {
            GateEvent::BackoffStarted(delay) => tracing::warn!(
                target = %target.name,
                backoff_seconds = delay.as_secs_f64(),
                "rate limited by the API: backing off"
            ),
            GateEvent::BackoffCleared => {
                tracing::info!(target = %target.name, "backoff cleared after a healthy answer");
            }
            GateEvent::SuspendedModeStarted => tracing::warn!(
                target = %target.name,
                suspended_interval_seconds = target.politeness.suspended_interval.as_secs_f64(),
                "API key refused: probing slowed to one request per suspended_interval"
            ),
            GateEvent::SuspendedModeCleared => {
                tracing::info!(target = %target.name, "API key accepted again: normal probing resumes");
            }
        }
    }
    for event in health {
        match event {
            HealthEvent::Availability(true) => {
                tracing::info!(target = %target.name, available = true, "target available again");
            }
            HealthEvent::Availability(false) => {
                tracing::warn!(target = %target.name, available = false, "target unavailable");
            }
            HealthEvent::Condition(condition, true) => tracing::warn!(
                target = %target.name,
                condition = condition.as_label(),
                "condition raised"
            ),
            HealthEvent::Condition(condition, false) => tracing::info!(
                target = %target.name,
                condition = condition.as_label(),
                "condition cleared"
            ),
        }
    }
}

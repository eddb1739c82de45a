//! One request of a run, and what its verdict changes whatever made it: through the target's
//! gate to the prober, the references' say on a failure our network could cause, the gate's
//! backoff (a rate limit on the canary account only the canaries'), the rate-limit count, and the
//! log lines. Probe runs (`run/mod.rs`) and canary runs (`run/canary.rs`) both go through here,
//! so a canary's requests obey the same budget and backoff as a probe's.

use std::borrow::Cow;
use std::sync::Arc;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Mode, Runner, TargetRuntime};
use crate::classify::{self, Classification, Condition, RateLimitScope};
use crate::config::{Probe, Target};
use crate::health::HealthEvent;
use crate::health::politeness::{GateEvent, SkipReason};
use crate::metrics::ProbeMetrics;
use crate::probe::Recorded;
use crate::run::references::References;

impl Runner {
    /// Holds a failure our own network could cause for the references' fresh checks (bounded
    /// by their timeouts), and blames it on our network when they fail too. `None` when
    /// `cancel` came first.
    pub(super) async fn localize(
        &self,
        references: Option<Arc<References>>,
        verdict: Classification,
        sent: Instant,
        cancel: &CancellationToken,
    ) -> Option<Classification> {
        match references {
            Some(references) if verdict.failure.is_some_and(classify::could_be_local) => {
                let network = tokio::select! {
                    biased;
                    () = cancel.cancelled() => return None,
                    network = references.confirm(sent) => network,
                };
                Some(classify::localize(verdict, network))
            }
            Some(_) | None => Some(verdict),
        }
    }

    /// One request through the target's gate: a token, then the prober, unless `cancel` comes
    /// first. `departed` runs as the request leaves.
    pub(super) async fn send(
        &self,
        rt: &TargetRuntime,
        probe: &Probe,
        latest: Instant,
        cancel: &CancellationToken,
        departed: impl FnOnce(),
    ) -> Result<(Instant, Recorded), Stop> {
        let epoch = rt.gate.epoch();
        let at = rt
            .gate
            .admit(Instant::now(), latest)
            .map_err(Stop::Skipped)?;
        let attempt = async {
            tokio::time::sleep_until(at).await;
            loop {
                // A 29/429 or 26/10 that another probe received while this one waited for its
                // token voids the reservation: the upstream said stop after it was made.
                rt.gate.still_admitted(epoch)?;
                match rt.gate.depart(Instant::now()) {
                    Ok(()) => break,
                    // Woken late together with later reservations: keep to the budget.
                    Err(retry) => tokio::time::sleep_until(retry).await,
                }
            }
            departed();
            self.changed.notify_one();
            let sent = Instant::now();
            Ok((sent, self.prober.probe(&rt.target, probe).await))
        };
        // Biased: once cancelled (shutdown) no request goes out, so the state file's last
        // capture, taken at cancellation, has every request that did.
        tokio::select! {
            biased;
            () = cancel.cancelled() => Err(Stop::Cancelled),
            attempted = attempt => attempted.map_err(Stop::Skipped),
        }
    }

    /// What every request's verdict changes, scheduled or not, probe or canary step: the gate
    /// (a rate limit on the canary account only the canaries' backoff), the rate-limit count
    /// and the certificate expiry. The verdict the target's health should see comes back.
    pub(super) fn account<'v>(
        &self,
        rt: &TargetRuntime,
        metrics: Option<&ProbeMetrics>,
        recorded: &Recorded,
        verdict: &'v Classification,
        mode: Mode,
        canary_step: bool,
    ) -> (Cow<'v, Classification>, Vec<GateEvent>) {
        let now = Instant::now();
        let wall = self.clock.now();
        let scope = classify::rate_limit_scope(verdict);
        let for_target = without_user_limit(verdict, scope);
        let mut gate_events =
            rt.gate
                .record(&for_target, now, wall.timestamp(), rand::random::<f64>());
        // Only a canary's own healthy answer ends the canaries' backoff schedule, never a probe's.
        if scope == Some(RateLimitScope::User) || (canary_step && verdict.api_healthy) {
            gate_events.extend(rt.canary_gate.record(
                verdict,
                now,
                wall.timestamp(),
                rand::random::<f64>(),
            ));
        }
        if mode == Mode::Scheduled {
            if let (Some(scope), Some(metrics)) = (scope, metrics) {
                metrics.record_rate_limit(scope);
            }
            if let Some(unix) = recorded.outcome.tls.as_ref().and_then(|t| t.not_after_unix) {
                rt.metrics.set_certificate_not_after(unix);
            }
        }
        if !gate_events.is_empty() {
            self.changed.notify_one();
        }
        (for_target, gate_events)
    }

}

/// Why a request was not sent.
#[derive(Debug, Clone, Copy)]
pub(super) enum Stop {
    /// The gate refused it.
    Skipped(SkipReason),
    /// Shutdown came first.
    Cancelled,
}

/// A rate limit on the canary account ("too many scrobbles") is not the key's: the target's gate
/// and health see the run without it, so it backs off the canaries only.
fn without_user_limit(
    verdict: &Classification,
    scope: Option<RateLimitScope>,
) -> Cow<'_, Classification> {
    if scope == Some(RateLimitScope::User) {
        let mut verdict = verdict.clone();
        verdict.raises.retain(|c| *c != Condition::RateLimited);
        verdict.retry_after = None;
        Cow::Owned(verdict)
    } else {
        Cow::Borrowed(verdict)
    }
}

pub(super) fn log_run(
    target: &Target,
    probe: &Probe,
    verdict: &Classification,
    elapsed: Duration,
    mode: Mode,
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
        on_demand = mode == Mode::OnDemand,
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

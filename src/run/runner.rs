//! Makes runs: the [`Runner`] every probe task, canary task and `/probe` shares. One request of
//! a run goes through the target's gate to the prober, then the references' say on a failure our
//! network could cause, the gate's backoff (a rate limit on the canary account only the
//! canaries'), the rate-limit count and the log lines; a probe run's verdict then moves the
//! probe's series, the target's health and the history.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::handover::{self, Home};
use super::log::{log_events, log_run};
use super::references::References;
use super::runtime::TargetRuntime;
use crate::classify::{self, Classification, Condition, RateLimitScope};
use crate::config::{Probe, Step};
use crate::health::politeness::{GateEvent, SkipReason};
use crate::history::trace::Trace;
use crate::history::{History, RunRecord, status::TargetFacts};
use crate::metrics::ProbeMetrics;
use crate::probe::{Prober, Recorded};
use crate::schedule::WallClock;

/// A probe of a target's runtime: where a run was made, or where it is recorded.
#[derive(Debug, Clone, Copy)]
struct Slot<'a> {
    rt: &'a TargetRuntime,
    index: usize,
}

/// Whether a run is scheduled (moves the series) or asked for through `/probe`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// From the probe's schedule.
    Scheduled,
    /// From `/probe`: obeys the budget, updates backoff, leaves the series alone.
    OnDemand,
}

/// What became of a run.
#[derive(Debug)]
pub enum RunResult {
    /// Not sent, with the reason (already counted for scheduled runs).
    Skipped(SkipReason),
    /// Cancelled by shutdown or reload before it finished.
    Cancelled,
    /// Sent and recorded (the history record carries the verdict and the trace).
    Done(Arc<RunRecord>),
}

/// Makes runs; shared by all probe tasks and the server.
#[derive(Debug, Clone)]
pub struct Runner {
    pub(super) prober: Arc<dyn Prober>,
    pub(super) history: Arc<History>,
    pub(super) clock: Arc<dyn WallClock>,
    /// Told whenever a request goes out or a verdict changes a gate: the state file is due.
    pub(super) changed: Arc<Notify>,
}

impl Runner {
    /// Wires a prober, the history and the wall clock.
    pub fn new(prober: Arc<dyn Prober>, history: Arc<History>, clock: Arc<dyn WallClock>) -> Self {
        Self {
            prober,
            history,
            clock,
            changed: Arc::new(Notify::new()),
        }
    }

    /// Notified when there is state worth saving (the daemon's state file).
    pub fn changed(&self) -> Arc<Notify> {
        Arc::clone(&self.changed)
    }

    /// The wall clock.
    pub fn clock(&self) -> &dyn WallClock {
        self.clock.as_ref()
    }

    /// The prober, for the reference checks.
    pub fn prober(&self) -> &Arc<dyn Prober> {
        &self.prober
    }

    /// A shared handle on the wall clock.
    pub fn clock_arc(&self) -> Arc<dyn WallClock> {
        Arc::clone(&self.clock)
    }

    /// The history.
    pub fn history(&self) -> &Arc<History> {
        &self.history
    }

    /// One run of probe `index` of `rt`, useful until `latest`. Only `cancel` (shutdown) stops
    /// it once admitted: a reload in between does not, and the result is recorded where the
    /// probe lives after it, or counted as abandoned when the reload removed it.
    pub async fn run(
        &self,
        rt: &TargetRuntime,
        index: usize,
        latest: Instant,
        mode: Mode,
        cancel: &CancellationToken,
    ) -> RunResult {
        let Some(probe) = rt.target.probes.get(index) else {
            return RunResult::Cancelled;
        };
        let made = Slot { rt, index };
        let (sent, recorded) = match self.attempt(made, probe, latest, mode, cancel).await {
            Ok(attempted) => attempted,
            Err(result) => return result,
        };
        let verdict = rt.judge(probe, &recorded.outcome);
        // Only a failure our own network could cause asks the references, and only then is
        // the run's verdict held for their fresh checks (bounded by their timeouts). After a
        // reload, the new generation's references: the old ones have stopped checking.
        let references = match handover::home(rt, &probe.name) {
            Home::Here => Some(Arc::clone(&rt.references)),
            Home::Moved(home, _) => Some(Arc::clone(&home.references)),
            Home::Gone => None,
        };
        let Some(verdict) = self.localize(references, verdict, sent, cancel).await else {
            return RunResult::Cancelled;
        };
        match handover::home(rt, &probe.name) {
            Home::Here => RunResult::Done(self.record(made, made, probe, recorded, &verdict, mode)),
            Home::Moved(home, home_index) => {
                // The request went out under the old runtime; the new one resumes its cadence
                // (and the state file its last send) from it.
                if let (Some(at), Some(slot)) =
                    (rt.last_sent_ms(index), home.last_sent_ms.get(home_index))
                {
                    slot.fetch_max(at, Ordering::Relaxed);
                }
                let home = Slot {
                    rt: &home,
                    index: home_index,
                };
                RunResult::Done(self.record(made, home, probe, recorded, &verdict, mode))
            }
            Home::Gone => {
                let outcome = verdict.outcome;
                rt.retirement.abandon(&rt.target.name, &probe.name, outcome);
                RunResult::Cancelled
            }
        }
    }

    /// The request of a run: a token from the gate, then the probe, unless `cancel` comes
    /// first. `Err` with the run's result when it was not sent.
    async fn attempt(
        &self,
        made: Slot<'_>,
        probe: &Probe,
        latest: Instant,
        mode: Mode,
        cancel: &CancellationToken,
    ) -> Result<(Instant, Recorded), RunResult> {
        let Slot { rt, index } = made;
        let sent = self
            .send(rt, probe, latest, cancel, || {
                if mode == Mode::Scheduled
                    && let Some(at) = rt.last_sent_ms.get(index)
                {
                    at.store(self.clock.now().timestamp_millis(), Ordering::Relaxed);
                }
            })
            .await;
        sent.map_err(|stop| match stop {
            Stop::Cancelled => RunResult::Cancelled,
            Stop::Skipped(reason) => {
                if mode == Mode::Scheduled {
                    rt.record_skip(index, reason, 1);
                    rt.publish(Instant::now());
                }
                tracing::debug!(
                    target = %rt.target.name,
                    probe = %probe.name,
                    reason = reason.as_label(),
                    "run skipped"
                );
                RunResult::Skipped(reason)
            }
        })
    }

    /// Records a run made on `made` into `home` (the same probe, or its successor after a
    /// reload): the gate, health and series of `home`; the trace and the scrubbing of the
    /// target the request was made with, whose secrets it may hold.
    fn record(
        &self,
        made: Slot<'_>,
        home: Slot<'_>,
        probe: &Probe,
        recorded: Recorded,
        verdict: &Classification,
        mode: Mode,
    ) -> Arc<RunRecord> {
        let Slot { rt, index } = home;
        let wall = self.clock.now();
        self.book(rt, Step::Probe(index), probe, &recorded, verdict, mode);
        // `detail` can be upstream text (an error message), which a hostile or buggy upstream
        // may fill with our key, sk or api_sig; the status page shows it, so it is scrubbed
        // like the trace before it is kept.
        let mut kept = verdict.clone();
        kept.detail = kept
            .detail
            .map(|detail| crate::history::trace::scrub_run(&made.rt.target, probe, detail));
        let id = self.history.record(RunRecord {
            id: 0,
            target: rt.target.name.clone(),
            probe: probe.name.clone(),
            at: wall,
            latency: recorded.outcome.elapsed,
            verdict: kept,
            on_demand: mode == Mode::OnDemand,
            facts: (mode == Mode::Scheduled).then(|| TargetFacts::of(&rt.health())),
            // Rendered when read (the status page's links, `/probe?debug=true`), not on every run.
            trace: Trace::new(
                Arc::clone(&made.rt.target),
                Step::Probe(made.index),
                recorded,
                verdict.clone(),
            ),
        });
        self.history
            .get(id)
            .unwrap_or_else(|| Arc::new(placeholder(rt, probe, verdict, wall)))
    }
}

/// Only reachable if the ring evicted the record between insert and read (it cannot: the ring
/// keeps at least 50); a record without a trace keeps callers total anyway.
fn placeholder(
    rt: &TargetRuntime,
    probe: &Probe,
    verdict: &Classification,
    at: chrono::DateTime<chrono::Utc>,
) -> RunRecord {
    RunRecord {
        id: 0,
        target: rt.target.name.clone(),
        probe: probe.name.clone(),
        at,
        latency: Duration::ZERO,
        verdict: verdict.clone(),
        on_demand: true,
        trace: Trace::default(),
        facts: None,
    }
}

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
            if let Some(remaining) = rate_limit_remaining(recorded) {
                rt.metrics.set_rate_limit_remaining(remaining);
            }
        }
        if !gate_events.is_empty() {
            self.changed.notify_one();
        }
        (for_target, gate_events)
    }
}

impl Runner {
    /// Books one request's verdict, whatever made it: the gate and rate-limit accounting, the
    /// request's series and the target's health (scheduled runs only; a canary's steps never
    /// move availability), the gauges, and the log lines.
    pub(super) fn book(
        &self,
        rt: &TargetRuntime,
        step: Step,
        probe: &Probe,
        recorded: &Recorded,
        verdict: &Classification,
        mode: Mode,
    ) {
        let now_unix = self.clock.now().timestamp_millis() as f64 / 1000.0;
        let metrics = match step {
            Step::Probe(i) => rt.probes.get(i),
            Step::Write(i) => rt.canaries.get(i).map(|c| &c.write),
            Step::Read(i) => rt.canaries.get(i).and_then(|c| c.read.as_ref()),
        };
        let canary_step = !matches!(step, Step::Probe(_));
        let (for_target, gate_events) =
            self.account(rt, metrics, recorded, verdict, mode, canary_step);
        let health_events = if mode == Mode::Scheduled {
            if let Some(metrics) = metrics {
                metrics.record_run(
                    verdict,
                    recorded.outcome.elapsed,
                    &recorded.outcome.timings,
                    now_unix,
                );
            }
            match step {
                Step::Probe(i) => rt.health().observe(i, &for_target, probe.signed),
                Step::Write(_) | Step::Read(_) => {
                    rt.health().observe_step(&for_target, probe.signed)
                }
            }
        } else {
            Vec::new()
        };
        rt.publish(Instant::now());
        log_run(
            &rt.target,
            probe,
            verdict,
            recorded.outcome.elapsed,
            mode == Mode::OnDemand,
        );
        log_events(&rt.target, &gate_events, &health_events);
    }
}

/// `X-RateLimit-Remaining` of the answer, when it carries a number.
fn rate_limit_remaining(recorded: &Recorded) -> Option<f64> {
    let response = recorded.outcome.result.as_ref().ok()?;
    let (_, value) = response
        .headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("x-ratelimit-remaining"))?;
    value.trim().parse::<u64>().ok().map(|n| n as f64)
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

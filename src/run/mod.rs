//! One run of a probe, end to end: politeness gate, one attempt, classification, recording.
//!
//! This is the only place the pieces meet: [`crate::health::politeness`] decides whether the request may
//! go, a [`Prober`] makes it, [`crate::classify`] judges it, and the verdict updates the target's
//! gate and health, the metrics, the history and one log line. Scheduled runs (from the probe
//! tasks) and on-demand runs (`/probe`) share this path, so `/probe` obeys the same budget; only
//! scheduled runs move the exported series, as their HELP texts promise.

mod handover;
pub mod references;
pub mod saved;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::classify::{self, Classification, CodeTable, Condition, ProbeSpec};
use crate::config::{Probe, Target};
use crate::health::politeness::{Gate, GateEvent, SkipReason};
use crate::health::{Health, HealthEvent};
use crate::history::trace::Trace;
use crate::history::{History, RunRecord, status::TargetFacts};
use crate::metrics::{Metrics, ProbeMetrics, TargetMetrics};
use crate::probe::{Prober, Recorded};
use crate::run::references::References;
use crate::schedule::WallClock;
use handover::{Home, Retirable, Retirement};
use saved::{Snapshot, TargetState};

/// `last_sent` of a probe that has not sent yet.
const NEVER: i64 = i64::MIN;

/// A target with its live state.
#[derive(Debug)]
pub struct TargetRuntime {
    /// The validated config of the target and its probes.
    pub target: Arc<Target>,
    /// The request budget, shared by all probes of the target.
    pub gate: Arc<Gate>,
    /// Availability and conditions, shared by all probes of the target.
    health: Arc<Mutex<Health>>,
    metrics: TargetMetrics,
    /// Per probe, in the order of `target.probes`.
    probes: Vec<ProbeMetrics>,
    /// Per probe, when its schedule fires next, published by its task for the status page.
    next_runs: Vec<Mutex<Option<Instant>>>,
    /// Per probe, when its last scheduled request went out (Unix ms, [`NEVER`]): a restart or a
    /// reload resumes the probe's cadence from it instead of sending again at once.
    last_sent_ms: Vec<AtomicI64>,
    /// The generation's reference checks, shared by its targets: whether a failed run is ours.
    references: Arc<References>,
    /// The service's error codes with the target's documented statuses, built once per
    /// generation rather than per run.
    codes: CodeTable,
    /// Where runs going at a reload that retires this runtime are recorded.
    retirement: Retirement<Self>,
}

/// A probe of a target's runtime: where a run was made, or where it is recorded.
#[derive(Debug, Clone, Copy)]
struct Slot<'a> {
    rt: &'a TargetRuntime,
    index: usize,
}

/// What a new [`TargetRuntime`] inherits.
#[derive(Debug, Clone, Copy)]
pub enum Carry<'a> {
    /// Nothing: a first start.
    Nothing,
    /// The same-named target of the running generation (a reload).
    Running(&'a TargetRuntime),
    /// The state file's entry for the target (a restart).
    Saved(&'a TargetState),
}

impl TargetRuntime {
    /// Registers the target's series. From a running target (a reload) it keeps the gate and
    /// health when their settings did not change; from the state file (a restart) the gate. Each
    /// probe keeps its last send from either, by name.
    pub fn new(
        target: Arc<Target>,
        metrics: &Metrics,
        clock: &dyn WallClock,
        carry: Carry<'_>,
        references: Arc<References>,
    ) -> Self {
        let now = clock.now();
        let (at, wall_ms) = (Instant::now(), now.timestamp_millis());
        // A reload and a restart inherit the same facts: the running target's, as the state file
        // would keep them, or the state file's own.
        let kept = match carry {
            Carry::Nothing => None,
            Carry::Running(old) => Some(old.save(at, wall_ms)),
            Carry::Saved(saved) => Some(saved.clone()),
        };
        let last_sent_ms = target
            .probes
            .iter()
            .map(|p| {
                let sent = kept
                    .as_ref()
                    .and_then(|k| k.last_sent_ms.get(&p.name).copied());
                AtomicI64::new(sent.unwrap_or(NEVER))
            })
            .collect();
        let carry_running = match carry {
            Carry::Running(old) => Some(old),
            Carry::Nothing | Carry::Saved(_) => None,
        };
        let probes = target
            .probes
            .iter()
            .map(|p| {
                metrics.probe(
                    &target.name,
                    &p.name,
                    p.schedule.schedule.nominal_interval(now),
                )
            })
            .collect();
        // The running gate itself while its budget is unchanged; otherwise its state (or the
        // file's) under the new policy, so neither a reload nor a restart is a burst or ends a
        // backoff.
        let gate = match (carry_running, &kept) {
            (Some(old), _) if old.target.politeness == target.politeness => Arc::clone(&old.gate),
            (_, Some(kept)) => Arc::new(Gate::restored(
                target.politeness.clone(),
                &kept.gate,
                at,
                wall_ms,
            )),
            (_, None) => Arc::new(Gate::new(target.politeness.clone(), at)),
        };
        let health = match carry_running {
            Some(old)
                if old.target.down_after == target.down_after
                    && old.target.up_after == target.up_after
                    && old.target.probes.len() == target.probes.len() =>
            {
                Arc::clone(&old.health)
            }
            _ => Arc::new(Mutex::new(Health::new(
                target.down_after,
                target.up_after,
                target.probes.len(),
            ))),
        };
        let runtime = Self {
            codes: CodeTable::lastfm().with_statuses(&target.statuses),
            metrics: metrics.target(&target.name, target.availability_objective),
            next_runs: target.probes.iter().map(|_| Mutex::new(None)).collect(),
            last_sent_ms,
            target,
            gate,
            health,
            probes,
            references,
            retirement: Retirement::new(metrics.abandoned_runs()),
        };
        runtime.publish(Instant::now());
        runtime
    }

    /// Clears `condition` (a reachable reference clears `local_network_down`), logged and
    /// published when it was raised.
    pub fn clear_condition(&self, condition: Condition) {
        let cleared = self.health().clear(condition);
        if let Some(event) = cleared {
            log_events(&self.target, &[], &[event]);
            self.publish(Instant::now());
        }
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        // Plain counters: a panic elsewhere cannot leave them unusable.
        self.health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A copy of the current health, for the status page.
    pub fn health_snapshot(&self) -> Health {
        self.health().clone()
    }

    /// Publishes when probe `index` fires next.
    pub fn set_next_run(&self, index: usize, due: Instant) {
        if let Some(slot) = self.next_runs.get(index) {
            *slot
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(due);
        }
    }

    /// When probe `index` fires next, once its task has started.
    pub fn next_run(&self, index: usize) -> Option<Instant> {
        self.next_runs.get(index).and_then(|slot| {
            *slot
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        })
    }

    /// When probe `index` last sent a scheduled request (Unix ms), if it has.
    pub fn last_sent_ms(&self, index: usize) -> Option<i64> {
        self.last_sent_ms
            .get(index)
            .map(|at| at.load(Ordering::Relaxed))
            .filter(|at| *at != NEVER)
    }

    /// The target's state for the state file, as of `now` (`now_ms` on the wall clock).
    pub fn save(&self, now: Instant, now_ms: i64) -> TargetState {
        TargetState {
            gate: self.gate.save(now, now_ms),
            last_sent_ms: self
                .target
                .probes
                .iter()
                .enumerate()
                .filter_map(|(i, p)| Some((p.name.clone(), self.last_sent_ms(i)?)))
                .collect(),
        }
    }

    /// Counts skipped runs of a probe.
    pub fn record_skip(&self, index: usize, reason: SkipReason, n: u64) {
        if let Some(metrics) = self.probes.get(index) {
            metrics.record_skip(reason, n);
        }
    }

    /// Publishes availability, conditions and backoff to the gauges.
    pub fn publish(&self, now: Instant) {
        let health = self.health();
        let backoff = self.gate.backoff_remaining(now);
        self.metrics.set(
            health.is_available(),
            |c| {
                if c == Condition::RateLimited {
                    health.has(c) || !backoff.is_zero()
                } else {
                    health.has(c)
                }
            },
            backoff,
        );
    }
}

/// The targets of one loaded configuration, with the token that stops their tasks on reload.
#[derive(Debug)]
pub struct Generation {
    /// The targets and their state.
    pub targets: Vec<Arc<TargetRuntime>>,
    /// The reference checks the targets consult.
    pub references: Arc<References>,
    /// Cancels this generation's probe tasks (a child of the app's shutdown token).
    pub cancel: CancellationToken,
}

/// Where a generation's state comes from.
#[derive(Debug, Clone, Copy)]
pub enum Origin<'a> {
    /// A start without a state file.
    Fresh,
    /// A start that found a state file.
    Restored(&'a Snapshot),
    /// A reload: the generation running until now.
    Reload(&'a Generation),
}

impl Retirable for TargetRuntime {
    fn name(&self) -> &str {
        &self.target.name
    }

    fn probe_index(&self, probe: &str) -> Option<usize> {
        self.target.probes.iter().position(|p| p.name == probe)
    }

    fn retirement(&self) -> &Retirement<Self> {
        &self.retirement
    }
}

impl Generation {
    /// Retires this generation in favour of `next` (a reload): runs still going are recorded
    /// into `next`, or counted as abandoned when their probe is gone.
    pub fn hand_over(&self, next: &Self) {
        handover::hand_over(&self.targets, &next.targets);
    }

    /// The runtimes of `config`'s targets, each inheriting what `origin` has for the same-named
    /// target ([`Carry`]).
    pub fn targets_of(
        config: &crate::config::Config,
        metrics: &Metrics,
        clock: &dyn WallClock,
        origin: Origin<'_>,
        references: &Arc<References>,
    ) -> Vec<Arc<TargetRuntime>> {
        config
            .targets
            .iter()
            .map(|target| {
                let carry = match origin {
                    Origin::Fresh => None,
                    Origin::Restored(snapshot) => {
                        snapshot.targets.get(&target.name).map(Carry::Saved)
                    }
                    Origin::Reload(g) => g
                        .targets
                        .iter()
                        .find(|rt| rt.target.name == target.name)
                        .map(|rt| Carry::Running(rt.as_ref())),
                }
                .unwrap_or(Carry::Nothing);
                Arc::new(TargetRuntime::new(
                    Arc::clone(target),
                    metrics,
                    clock,
                    carry,
                    Arc::clone(references),
                ))
            })
            .collect()
    }

    /// Everything the state file keeps of this generation, as of now.
    pub fn save(&self, clock: &dyn WallClock) -> Snapshot {
        let (now, now_ms) = (Instant::now(), clock.now().timestamp_millis());
        let mut snapshot = Snapshot::new();
        for rt in &self.targets {
            snapshot
                .targets
                .insert(rt.target.name.clone(), rt.save(now, now_ms));
        }
        snapshot
    }
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
    prober: Arc<dyn Prober>,
    history: Arc<History>,
    clock: Arc<dyn WallClock>,
    /// Told whenever a request goes out or a verdict changes a gate: the state file is due.
    changed: Arc<Notify>,
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
        let verdict = classify::classify(
            &recorded.outcome,
            &ProbeSpec {
                format: probe.format,
                signed: probe.signed,
                expect: probe.expect,
                checks: &probe.checks,
                codes: &rt.codes,
                host: rt.target.base_url.host_str().unwrap_or(""),
            },
        );
        // Only a failure our own network could cause asks the references, and only then is
        // the run's verdict held for their fresh checks (bounded by their timeouts). After a
        // reload, the new generation's references: the old ones have stopped checking.
        let references = match handover::home(rt, &probe.name) {
            Home::Here => Some(Arc::clone(&rt.references)),
            Home::Moved(home, _) => Some(Arc::clone(&home.references)),
            Home::Gone => None,
        };
        let verdict = match references {
            Some(references) if verdict.failure.is_some_and(classify::could_be_local) => {
                let network = tokio::select! {
                    biased;
                    () = cancel.cancelled() => return RunResult::Cancelled,
                    network = references.confirm(sent) => network,
                };
                classify::localize(verdict, network)
            }
            Some(_) | None => verdict,
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
        let skipped = |reason: SkipReason| {
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
        };
        let epoch = rt.gate.epoch();
        let at = rt.gate.admit(Instant::now(), latest).map_err(skipped)?;
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
            if mode == Mode::Scheduled
                && let Some(at) = rt.last_sent_ms.get(index)
            {
                at.store(self.clock.now().timestamp_millis(), Ordering::Relaxed);
            }
            self.changed.notify_one();
            let sent = Instant::now();
            Ok((sent, self.prober.probe(&rt.target, probe).await))
        };
        // Biased: once cancelled (shutdown) no request goes out, so the state file's last
        // capture, taken at cancellation, has every request that did.
        tokio::select! {
            biased;
            () = cancel.cancelled() => Err(RunResult::Cancelled),
            attempted = attempt => attempted.map_err(skipped),
        }
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
        let now = Instant::now();
        let wall = self.clock.now();
        let now_unix = wall.timestamp_millis() as f64 / 1000.0;
        let gate_events = rt
            .gate
            .record(verdict, now, wall.timestamp(), rand::random::<f64>());
        let health_events = if mode == Mode::Scheduled {
            if let Some(metrics) = rt.probes.get(index) {
                metrics.record_run(
                    verdict,
                    recorded.outcome.elapsed,
                    &recorded.outcome.timings,
                    now_unix,
                );
            }
            rt.health().observe(index, verdict, probe.signed)
        } else {
            Vec::new()
        };
        if mode == Mode::Scheduled
            && let Some(unix) = recorded.outcome.tls.as_ref().and_then(|t| t.not_after_unix)
        {
            rt.metrics.set_certificate_not_after(unix);
        }
        rt.publish(now);
        if !gate_events.is_empty() {
            self.changed.notify_one();
        }
        log_run(&rt.target, probe, verdict, recorded.outcome.elapsed, mode);
        log_events(&rt.target, &gate_events, &health_events);
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
                made.index,
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

fn log_run(
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

fn log_events(target: &Target, gate: &[GateEvent], health: &[HealthEvent]) {
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

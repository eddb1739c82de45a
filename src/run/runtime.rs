//! A target's live state across runs: its request budget (and the canaries' backoff), health,
//! series handles, cadence and error-code table, inherited over a reload or a restart; and a
//! [`Generation`], the targets of one loaded configuration.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::canary_state::CanaryRuntime;
use super::handover::{self, Retirable, Retirement};
use super::log::log_events;
use super::references::References;
use super::saved::{NEVER, Snapshot, TargetState};
use crate::classify::{self, Classification, CodeTable, Condition, ProbeSpec};
use crate::config::{Probe, Target};
use crate::health::Health;
use crate::health::politeness::{Gate, SkipReason};
use crate::metrics::{Metrics, ProbeMetrics, TargetMetrics};
use crate::probe::ProbeOutcome;
use crate::schedule::WallClock;

/// A target with its live state.
#[derive(Debug)]
pub struct TargetRuntime {
    /// The validated config of the target and its probes.
    pub target: Arc<Target>,
    /// The request budget, shared by all probes of the target.
    pub gate: Arc<Gate>,
    /// The canaries' own backoff, after a rate limit on the canary account ("too many
    /// scrobbles"): it holds the canaries back and leaves the probes alone. Its bucket is not
    /// used; every request still takes its token from `gate`.
    pub(super) canary_gate: Arc<Gate>,
    /// Per canary, in the order of `target.canaries`.
    pub(super) canaries: Vec<CanaryRuntime>,
    /// Availability and conditions, shared by all probes of the target.
    pub(super) health: Arc<Mutex<Health>>,
    pub(super) metrics: TargetMetrics,
    /// Per probe, in the order of `target.probes`.
    pub(super) probes: Vec<ProbeMetrics>,
    /// Per probe, when its schedule fires next, published by its task for the status page.
    pub(super) next_runs: Vec<Mutex<Option<Instant>>>,
    /// Per probe, when its last scheduled request went out (Unix ms, [`NEVER`]): a restart or a
    /// reload resumes the probe's cadence from it instead of sending again at once.
    pub(super) last_sent_ms: Vec<AtomicI64>,
    /// The generation's reference checks, shared by its targets: whether a failed run is ours.
    pub(super) references: Arc<References>,
    /// The service's error codes with the target's documented statuses, built once per
    /// generation rather than per run.
    pub(super) codes: CodeTable,
    /// Where runs going at a reload that retires this runtime are recorded.
    pub(super) retirement: Retirement<Self>,
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
                    && old.target.probes.len() == target.probes.len()
                    && old.target.canaries.len() == target.canaries.len() =>
            {
                Arc::clone(&old.health)
            }
            _ => Arc::new(Mutex::new(Health::new(
                target.down_after,
                target.up_after,
                target.probes.len(),
                target.canaries.len(),
            ))),
        };
        let canary_gate = canary_gate_of(&target, carry_running, kept.as_ref(), at, wall_ms);
        let canaries = CanaryRuntime::all_of(&target, metrics, now, kept.as_ref());
        let runtime = Self {
            codes: CodeTable::of(target.api).with_statuses(&target.statuses),
            metrics: metrics.target(&target.name, target.availability_objective),
            next_runs: target.probes.iter().map(|_| Mutex::new(None)).collect(),
            last_sent_ms,
            target,
            gate,
            canary_gate,
            canaries,
            health,
            probes,
            references,
            retirement: Retirement::new(metrics.abandoned_runs()),
        };
        runtime.publish(Instant::now());
        runtime
    }

    /// The classifier's verdict on a request of `probe` of this target, by its service's codes.
    pub(super) fn judge(&self, probe: &Probe, outcome: &ProbeOutcome) -> Classification {
        classify::classify(
            outcome,
            &ProbeSpec {
                format: probe.format,
                signed: probe.signed,
                expect: probe.expect,
                checks: &probe.checks,
                codes: &self.codes,
                host: self.target.base_url.host_str().unwrap_or(""),
            },
        )
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

    pub(super) fn health(&self) -> std::sync::MutexGuard<'_, Health> {
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
        let canaries = self.canaries.iter().zip(&self.target.canaries);
        TargetState {
            gate: self.gate.save(now, now_ms),
            canary_gate: Some(self.canary_gate.save(now, now_ms)),
            last_sent_ms: self
                .target
                .probes
                .iter()
                .enumerate()
                .filter_map(|(i, p)| Some((p.name.clone(), self.last_sent_ms(i)?)))
                .chain(
                    canaries.filter_map(|(rt, c)| Some((c.write.name.clone(), rt.last_sent_ms()?))),
                )
                .collect(),
        }
    }

    /// The live state of canary `index`.
    pub fn canary(&self, index: usize) -> Option<&CanaryRuntime> {
        self.canaries.get(index)
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

/// The canaries' backoff a new runtime starts with: the running one while the budget is
/// unchanged, else the state file's (or the running one's) under the new policy, else none.
fn canary_gate_of(
    target: &Target,
    running: Option<&TargetRuntime>,
    kept: Option<&TargetState>,
    at: Instant,
    wall_ms: i64,
) -> Arc<Gate> {
    match (running, kept.and_then(|k| k.canary_gate.as_ref())) {
        (Some(old), _) if old.target.politeness == target.politeness => {
            Arc::clone(&old.canary_gate)
        }
        (_, Some(saved)) => Arc::new(Gate::restored(
            target.politeness.clone(),
            saved,
            at,
            wall_ms,
        )),
        (_, None) => Arc::new(Gate::new(target.politeness.clone(), at)),
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

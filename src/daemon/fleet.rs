//! The probe tasks: one per probe and per write-path canary of a generation, each on its
//! schedule, and the runs in flight.
//!
//! A [`Fleet`] starts a loaded configuration's tasks under a child of the app's cancel token, so
//! a reload stops exactly one generation's schedules; each run is a task of its own that only
//! shutdown stops, so a run going at a reload finishes and is recorded. Each task's first fire comes from
//! [`schedule::first_delay`]: a probe that sent recently (before a reload, or before a restart,
//! from the state file) keeps its cadence, the others spread over the start-up jitter, so neither
//! a reload nor a restart becomes a burst. Every run registers in `InFlight` until it ends,
//! however it ends, which is what the watchdog reads: a run past its deadline by
//! [`STUCK_AFTER`] means the scheduler is wedged.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::classify::Condition;
use crate::config::Config;
use crate::health::politeness::SkipReason;
use crate::metrics::Metrics;
use crate::run::references::References;
use crate::run::{CanaryRun, Generation, Mode, Origin, RunResult, Runner, TargetRuntime};
use crate::schedule;

/// A run in flight this long past its useful end counts as stuck (watchdog).
pub const STUCK_AFTER: Duration = Duration::from_secs(30);

/// Starts and tracks probe tasks.
#[derive(Debug, Clone)]
pub struct Fleet {
    runner: Runner,
    root: CancellationToken,
    tracker: TaskTracker,
    in_flight: Arc<InFlight>,
}

impl Fleet {
    /// Tasks will run `runner`'s runs on `tracker`, until `root` is cancelled.
    pub fn new(runner: Runner, root: CancellationToken, tracker: TaskTracker) -> Self {
        Self {
            runner,
            root,
            tracker,
            in_flight: Arc::new(InFlight::default()),
        }
    }

    /// Starts one task per probe of `config` and per reference, its state inherited from
    /// `origin`.
    pub fn start(&self, config: &Config, metrics: &Metrics, origin: Origin<'_>) -> Arc<Generation> {
        let generation = self.standby(config, metrics, origin);
        self.spawn(&generation, config);
        generation
    }

    /// The generation of `config`, its state inherited from `origin`, with no task started: its
    /// runs are made only on request.
    pub fn standby(
        &self,
        config: &Config,
        metrics: &Metrics,
        origin: Origin<'_>,
    ) -> Arc<Generation> {
        let references = References::new(&config.references, metrics);
        let targets =
            Generation::targets_of(config, metrics, self.runner.clock(), origin, &references);
        Arc::new(Generation {
            targets,
            references,
            cancel: self.root.child_token(),
        })
    }

    /// Starts the reference checks and one task per probe of `generation`.
    fn spawn(&self, generation: &Generation, config: &Config) {
        let reached: Vec<Arc<TargetRuntime>> = generation.targets.clone();
        let on_reachable: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
            for rt in &reached {
                rt.clear_condition(Condition::LocalNetworkDown);
            }
        });
        generation.references.start(
            self.runner.prober(),
            &self.runner.clock_arc(),
            &on_reachable,
            &self.tracker,
            &generation.cancel,
        );
        let now_ms = self.runner.clock().now().timestamp_millis();
        for rt in &generation.targets {
            let probes = (0..rt.target.probes.len()).map(Job::Probe);
            let canaries = (0..rt.target.canaries.len()).map(Job::Canary);
            for job in probes.chain(canaries) {
                let Some(schedule) = job.schedule(rt) else {
                    continue;
                };
                let since_last_send = job.last_sent_ms(rt).map(|at| {
                    // A send "in the future" (the wall clock stepped back) counts as just now.
                    Duration::from_millis(u64::try_from(now_ms - at).unwrap_or(0))
                });
                let delay = schedule::first_delay(
                    &schedule,
                    config.startup_jitter,
                    rand::random::<f64>(),
                    since_last_send,
                );
                self.tracker.spawn(probe_task(
                    Arc::clone(rt),
                    job,
                    schedule,
                    delay,
                    self.runner.clone(),
                    generation.cancel.clone(),
                    self.runs(),
                ));
            }
        }
    }

    /// Where the probe tasks of any generation start their runs.
    fn runs(&self) -> Runs {
        Runs {
            tracker: self.tracker.clone(),
            shutdown: self.root.clone(),
            in_flight: Arc::clone(&self.in_flight),
        }
    }

    /// A run still going [`STUCK_AFTER`] past its deadline at `now`, if any ("target/probe").
    pub fn stuck(&self, now: Instant) -> Option<String> {
        self.in_flight.oldest_overdue(now)
    }
}

/// What a probe task needs to start a run that outlives its generation.
#[derive(Debug, Clone)]
struct Runs {
    tracker: TaskTracker,
    /// The app's token: only shutdown stops a run once it started.
    shutdown: CancellationToken,
    in_flight: Arc<InFlight>,
}

/// What a task runs on its schedule: a probe, or a write-path canary (by index).
#[derive(Debug, Clone, Copy)]
enum Job {
    Probe(usize),
    Canary(usize),
}

impl Job {
    fn schedule(self, rt: &TargetRuntime) -> Option<crate::config::Schedule> {
        let spec = match self {
            Self::Probe(i) => &rt.target.probes.get(i)?.schedule,
            Self::Canary(i) => &rt.target.canaries.get(i)?.schedule,
        };
        Some(spec.schedule.clone())
    }

    fn last_sent_ms(self, rt: &TargetRuntime) -> Option<i64> {
        match self {
            Self::Probe(i) => rt.last_sent_ms(i),
            Self::Canary(i) => rt.canary(i)?.last_sent_ms(),
        }
    }

    /// "target/probe" or "target/canary", and how long a run may take: a canary's write, its
    /// read-back window and the last poll's timeout.
    fn label_and_budget(self, rt: &TargetRuntime) -> (String, Duration) {
        let target = &rt.target;
        match self {
            Self::Probe(i) => target.probes.get(i).map_or_else(
                || (format!("{}/?", target.name), Duration::ZERO),
                |p| (format!("{}/{}", target.name, p.name), p.timeout),
            ),
            Self::Canary(i) => target.canaries.get(i).map_or_else(
                || (format!("{}/?", target.name), Duration::ZERO),
                |c| {
                    let budget = c.write.timeout + c.visible_within + c.read.timeout;
                    (format!("{}/{}", target.name, c.name), budget)
                },
            ),
        }
    }

    fn record_skip(self, rt: &TargetRuntime, reason: SkipReason, n: u64) {
        match self {
            Self::Probe(i) => rt.record_skip(i, reason, n),
            Self::Canary(i) => {
                if let Some(canary) = rt.canary(i) {
                    canary.record_skip(reason, n);
                }
            }
        }
    }

    fn set_next_run(self, rt: &TargetRuntime, due: Instant) {
        match self {
            Self::Probe(i) => rt.set_next_run(i, due),
            Self::Canary(_) => {}
        }
    }

    /// One scheduled run; its result is recorded by the runner.
    async fn run(
        self,
        rt: &TargetRuntime,
        runner: &Runner,
        latest: Instant,
        shutdown: &CancellationToken,
    ) {
        match self {
            Self::Probe(i) => {
                let result = runner.run(rt, i, latest, Mode::Scheduled, shutdown).await;
                if let RunResult::Skipped(reason) = result {
                    tracing::trace!(reason = reason.as_label(), "skipped");
                }
            }
            Self::Canary(i) => {
                let result = runner
                    .canary(rt, i, latest, Mode::Scheduled, shutdown)
                    .await;
                if let CanaryRun::Skipped(reason) = result {
                    tracing::trace!(reason = reason.as_label(), "canary skipped");
                }
            }
        }
    }
}

async fn probe_task(
    rt: Arc<TargetRuntime>,
    job: Job,
    schedule: crate::config::Schedule,
    first_delay: Duration,
    runner: Runner,
    cancel: CancellationToken,
    runs: Runs,
) {
    let (label, budget) = job.label_and_budget(&rt);
    let clock = Arc::clone(&runner.clock_arc());
    schedule::run(
        schedule,
        clock.as_ref(),
        first_delay,
        cancel,
        |fire| {
            let rt = Arc::clone(&rt);
            let runner = runner.clone();
            let runs = runs.clone();
            let label = label.clone();
            // A run of this probe that a reload overtook may still be going: this fire would
            // make the probe overlap itself, so it is an overrun, like a fire that comes while
            // the previous run of the same schedule is still going.
            let overtaken = runs.in_flight.is_running(&label);
            if overtaken {
                job.record_skip(&rt, SkipReason::Overrun, 1);
                tracing::debug!(run = %label, "a run from before the reload is still going: this fire is an overrun");
            }
            // The run is a task of its own: a reload cancels this generation's schedule and
            // drops the wait below, not the run, which finishes and is recorded where its probe
            // lives after the reload (`Runner::run`). Repeated reloads then cannot hide the
            // timeouts of a stalling upstream.
            let run = (!overtaken).then(|| runs.tracker.spawn(async move {
                // A guard, not enter/leave: a leaked entry would turn "stuck" once its deadline
                // passed and withhold the watchdog ping for good.
                let _ticket = runs
                    .in_flight
                    .enter(label, fire.next_due + budget + STUCK_AFTER);
                job.run(&rt, &runner, fire.next_due, &runs.shutdown).await;
            }));
            async move {
                if let Some(Err(err)) = match run {
                    Some(run) => Some(run.await),
                    None => None,
                } {
                    tracing::error!(error = %err, "a probe run ended abnormally");
                }
            }
        },
        |missed| job.record_skip(&rt, SkipReason::Overrun, missed),
        |due| job.set_next_run(&rt, due),
    )
    .await;
}

/// Runs in flight with the instant by which they must have finished (for the watchdog).
#[derive(Debug, Default)]
struct InFlight {
    next: AtomicU64,
    runs: Mutex<HashMap<u64, (String, Instant)>>,
}

impl InFlight {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (String, Instant)>> {
        self.runs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a run until the returned ticket is dropped, however the run ends.
    fn enter(self: &Arc<Self>, what: String, deadline: Instant) -> InFlightTicket {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, (what, deadline));
        InFlightTicket {
            runs: Arc::clone(self),
            id,
        }
    }

    /// Whether a run of `what` ("target/probe") is in flight, from this generation or an
    /// earlier one.
    fn is_running(&self, what: &str) -> bool {
        self.lock().values().any(|(running, _)| running == what)
    }

    fn oldest_overdue(&self, now: Instant) -> Option<String> {
        self.lock()
            .values()
            .filter(|(_, deadline)| *deadline < now)
            .map(|(what, _)| what.clone())
            .next()
    }
}

/// One run registered in [`InFlight`]; dropping it (the run finished or was cancelled) leaves.
#[derive(Debug)]
struct InFlightTicket {
    runs: Arc<InFlight>,
    id: u64,
}

impl Drop for InFlightTicket {
    fn drop(&mut self) {
        self.runs.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_run_leaves_in_flight_so_the_watchdog_keeps_pinging() {
        let runs = Arc::new(InFlight::default());
        let deadline = Instant::now();
        let later = deadline + Duration::from_secs(1);

        let ticket = runs.enter("sim/artist.getInfo".to_owned(), deadline);
        assert_eq!(
            runs.oldest_overdue(later).as_deref(),
            Some("sim/artist.getInfo")
        );
        // A run whose future is dropped (its task aborted or panicked): the ticket goes with it.
        drop(ticket);
        assert_eq!(runs.oldest_overdue(later), None);
    }

    /// What keeps a probe from overlapping itself across a reload: a fire of the new
    /// generation sees the overtaken run of the same target and probe as running.
    #[test]
    fn a_run_in_flight_is_seen_by_its_target_and_probe_until_it_ends() {
        let runs = Arc::new(InFlight::default());
        let ticket = runs.enter("sim/artist.getInfo".to_owned(), Instant::now());
        assert!(runs.is_running("sim/artist.getInfo"));
        assert!(!runs.is_running("sim/user.getInfo"));
        assert!(!runs.is_running("other/artist.getInfo"));
        drop(ticket);
        assert!(!runs.is_running("sim/artist.getInfo"));
    }

    #[tokio::test]
    async fn a_run_cancelled_mid_flight_by_a_reload_is_not_left_stuck() {
        let runs = Arc::new(InFlight::default());
        let cancel = CancellationToken::new();
        let run = {
            let runs = Arc::clone(&runs);
            async move {
                let _ticket = runs.enter("sim/stalled".to_owned(), Instant::now());
                std::future::pending::<()>().await;
            }
        };
        let task = tokio::spawn({
            let cancel = cancel.clone();
            async move {
                // A run that loses a race against a cancel token, its future dropped mid-flight.
                tokio::select! {
                    () = cancel.cancelled() => {}
                    () = run => {}
                }
            }
        });
        let far = Instant::now() + Duration::from_secs(3600);
        while runs.oldest_overdue(far).is_none() {
            tokio::task::yield_now().await;
        }
        cancel.cancel();
        task.await.expect("the task does not panic");

        assert_eq!(runs.oldest_overdue(far), None);
    }
}

//! Reference checks: is the monitor's own network working?
//!
//! A single host cannot tell a dead uplink, a broken resolver or an egress proxy's expired
//! certificate from a Last.fm outage by probing Last.fm alone: every one of them looks like "no
//! connection". So the monitor also checks a few endpoints that are not Last.fm (the host's
//! gateway, a large public site), each on its own timer with a plain `GET` whose answer, any
//! answer, proves the path out works. This module owns those checks, their latest results and
//! their series, and answers one question for the runner: when this Last.fm run failed, had every
//! reference failed too?
//!
//! The window: a run that failed at dns, connect or tls, or by timeout, is our network's fault
//! when every reference's latest check failed and that check started no earlier than the run's
//! start minus the reference's interval and timeout (so a check that old still describes the
//! run). A reference whose latest check succeeded before the run ended does not prove the path
//! still worked when the run failed, so the runner asks for a fresh check of every reference
//! ([`References::confirm`]) and waits for it, at most the longest reference timeout and a
//! second: the first failure of an outage is then judged by checks made after it, and a Last.fm
//! outage never waits longer than that to be counted. A reachable reference clears
//! `local_network_down` on every target at once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::classify::LocalNetwork;
use crate::config::Reference;
use crate::metrics::{Metrics, ReferenceMetrics};
use crate::probe::{Prober, TransportFailure};
use crate::schedule::WallClock;

/// The least time between two checks of one reference, however often a fresh one is asked for:
/// a burst of failing Last.fm runs must not become a burst of reference requests.
const MIN_GAP: Duration = Duration::from_secs(1);
/// How much longer than the longest reference timeout [`References::confirm`] waits.
const CONFIRM_SLACK: Duration = Duration::from_secs(1);

/// One finished check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    /// When the request went out.
    pub started: Instant,
    /// Whether any HTTP answer came back.
    pub reachable: bool,
    /// The status, when one came.
    pub status: Option<u16>,
    /// Where and why it failed, when it did.
    pub failure: Option<TransportFailure>,
}

/// One reference with its latest result.
#[derive(Debug)]
struct Slot {
    reference: Reference,
    latest: Mutex<Option<Checked>>,
    /// Wakes the reference's task for a check before its timer.
    wake: Notify,
    metrics: ReferenceMetrics,
}

/// A generation's references and their latest results.
#[derive(Debug)]
pub struct References {
    slots: Vec<Slot>,
    /// Bumped after every check, so [`References::confirm`] can wait for fresh results.
    results: watch::Sender<u64>,
}

impl References {
    /// The references of a configuration, their series registered at zero.
    pub fn new(references: &[Reference], metrics: &Metrics) -> Arc<Self> {
        Arc::new(Self {
            slots: references
                .iter()
                .map(|reference| Slot {
                    metrics: metrics.reference(&reference.name),
                    reference: reference.clone(),
                    latest: Mutex::new(None),
                    wake: Notify::new(),
                })
                .collect(),
            results: watch::Sender::new(0),
        })
    }

    /// No references: every failure stays Last.fm's, as without this module.
    pub fn none() -> Arc<Self> {
        Arc::new(Self {
            slots: Vec::new(),
            results: watch::Sender::new(0),
        })
    }

    /// Whether any reference is configured.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The names of the references, for reload bookkeeping.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.slots.iter().map(|slot| slot.reference.name.as_str())
    }

    /// Each reference with its latest check, for the status page.
    pub fn latest(&self) -> Vec<(Reference, Option<Checked>)> {
        self.slots
            .iter()
            .map(|slot| (slot.reference.clone(), *lock(&slot.latest)))
            .collect()
    }

    /// What the latest checks say about a run that started at `run_started`.
    pub fn view(&self, run_started: Instant) -> LocalNetwork {
        if self.slots.is_empty() {
            return LocalNetwork::Unknown;
        }
        let all_failed_recently = self.slots.iter().all(|slot| {
            let window = slot.reference.interval + slot.reference.timeout;
            lock(&slot.latest).is_some_and(|checked| {
                !checked.reachable && checked.started + window >= run_started
            })
        });
        if all_failed_recently {
            LocalNetwork::Down
        } else {
            LocalNetwork::Reachable
        }
    }

    /// The view for a run that started at `run_started` and failed just now, after fresh checks
    /// of every reference whose latest result does not already settle it: a success from before
    /// the failure does not prove the path still worked. Bounded by the longest reference
    /// timeout plus a second.
    pub async fn confirm(&self, run_started: Instant) -> LocalNetwork {
        if self.slots.is_empty() {
            return LocalNetwork::Unknown;
        }
        let asked = Instant::now();
        // A reference that failed after the run started already says what it can; the others
        // are asked again, and a check counts as fresh only if it started after the ask.
        let settled = |slot: &Slot| {
            lock(&slot.latest)
                .is_some_and(|c| c.started > asked || (!c.reachable && c.started >= run_started))
        };
        let mut waiting = false;
        for slot in self.slots.iter().filter(|slot| !settled(slot)) {
            slot.wake.notify_one();
            waiting = true;
        }
        if waiting {
            let longest = self
                .slots
                .iter()
                .map(|slot| slot.reference.timeout)
                .max()
                .unwrap_or_default();
            let deadline = asked + longest + MIN_GAP + CONFIRM_SLACK;
            let mut results = self.results.subscribe();
            while !self.slots.iter().all(settled) {
                match tokio::time::timeout_at(deadline, results.changed()).await {
                    Ok(Ok(())) => {}
                    // The deadline passed, or the generation ended: judge on what is known.
                    Ok(Err(_)) | Err(_) => break,
                }
            }
        }
        self.view(run_started)
    }

    /// Spawns one checking task per reference, until `cancel`. Every check that reaches its
    /// reference calls `on_reachable` (the generation clears `local_network_down` there); a
    /// callback rather than the targets themselves, so that this module does not depend on the
    /// runtime that holds it.
    pub fn start(
        self: &Arc<Self>,
        prober: &Arc<dyn Prober>,
        clock: &Arc<dyn WallClock>,
        on_reachable: &Arc<dyn Fn() + Send + Sync>,
        tracker: &tokio_util::task::TaskTracker,
        cancel: &CancellationToken,
    ) {
        for index in 0..self.slots.len() {
            tracker.spawn(check_loop(
                Arc::clone(self),
                index,
                Arc::clone(prober),
                Arc::clone(clock),
                Arc::clone(on_reachable),
                cancel.clone(),
            ));
        }
    }

    fn record(&self, index: usize, checked: Checked, elapsed: Duration, now_unix: f64) {
        let Some(slot) = self.slots.get(index) else {
            return;
        };
        slot.metrics.record(
            checked.reachable,
            checked.status,
            checked.failure,
            elapsed,
            now_unix,
        );
        let was = lock(&slot.latest).replace(checked);
        if was.is_none_or(|w| w.reachable) != checked.reachable {
            if checked.reachable {
                tracing::info!(reference = %slot.reference.name, "reference reachable");
            } else {
                tracing::warn!(
                    reference = %slot.reference.name,
                    failure = checked.failure.map_or("none", |f| f.reason.as_label()),
                    phase = checked.failure.map_or("none", |f| f.phase.as_label()),
                    "reference unreachable"
                );
            }
        }
        self.results.send_modify(|n| *n = n.wrapping_add(1));
    }
}

async fn check_loop(
    references: Arc<References>,
    index: usize,
    prober: Arc<dyn Prober>,
    clock: Arc<dyn WallClock>,
    on_reachable: Arc<dyn Fn() + Send + Sync>,
    cancel: CancellationToken,
) {
    let Some(slot) = references.slots.get(index) else {
        return;
    };
    let reference = &slot.reference;
    loop {
        let started = Instant::now();
        let reach = tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            reach = prober.reach(&reference.url, reference.timeout) => reach,
        };
        let checked = Checked {
            started,
            reachable: reach.result.is_ok(),
            status: reach.result.ok(),
            failure: reach.result.err(),
        };
        let now_unix = clock.now().timestamp_millis() as f64 / 1000.0;
        references.record(index, checked, reach.elapsed, now_unix);
        if checked.reachable {
            on_reachable();
        }
        // The next check at its time, or earlier when a failing run asks, never within
        // MIN_GAP of this one.
        tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            () = tokio::time::sleep_until(started + reference.interval) => {}
            () = slot.wake.notified() => {
                tokio::select! {
                    biased;
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep_until(started + MIN_GAP) => {}
                }
            }
        }
    }
}

/// Locks plain data; a panic elsewhere cannot leave it unusable.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{Phase, Reason};

    fn reference(name: &str, interval: u64) -> Reference {
        Reference {
            name: name.to_owned(),
            url: url::Url::parse("http://127.0.0.1:9/").expect("a valid URL"),
            interval: Duration::from_secs(interval),
            timeout: Duration::from_secs(1),
        }
    }

    fn refs(names: &[&str]) -> Arc<References> {
        let metrics = Metrics::try_new("test", "test").expect("metrics");
        let configured: Vec<Reference> = names.iter().map(|n| reference(n, 10)).collect();
        References::new(&configured, &metrics)
    }

    fn checked(started: Instant, reachable: bool) -> Checked {
        Checked {
            started,
            reachable,
            status: reachable.then_some(200),
            failure: (!reachable)
                .then_some(TransportFailure::new(Phase::Connect, Reason::Unreachable)),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn no_reference_means_unknown() {
        let none = References::none();
        assert_eq!(none.view(Instant::now()), LocalNetwork::Unknown);
        assert_eq!(none.confirm(Instant::now()).await, LocalNetwork::Unknown);
    }

    #[tokio::test(start_paused = true)]
    async fn down_only_when_every_reference_failed_within_the_window() {
        let refs = refs(&["gateway", "public"]);
        let run = Instant::now();
        refs.record(0, checked(run, false), Duration::ZERO, 0.0);
        assert_eq!(refs.view(run), LocalNetwork::Reachable, "one never checked");
        refs.record(1, checked(run, true), Duration::ZERO, 0.0);
        assert_eq!(refs.view(run), LocalNetwork::Reachable, "one reachable");
        refs.record(1, checked(run, false), Duration::ZERO, 0.0);
        assert_eq!(refs.view(run), LocalNetwork::Down);
        // Interval 10 s + timeout 1 s: a failure 12 s before the run is too old to describe it.
        tokio::time::advance(Duration::from_secs(12)).await;
        assert_eq!(refs.view(Instant::now()), LocalNetwork::Reachable);
    }

    #[tokio::test(start_paused = true)]
    async fn confirm_waits_for_a_fresh_check_and_gives_up_in_time() {
        let refs = refs(&["gateway"]);
        let run = Instant::now();
        refs.record(0, checked(run, true), Duration::ZERO, 0.0);
        // Nobody checks: confirm gives up after timeout + gap + slack and keeps the old view.
        let before = Instant::now();
        assert_eq!(refs.confirm(run).await, LocalNetwork::Reachable);
        assert_eq!(before.elapsed(), Duration::from_secs(3));
        // A check that fails after the ask settles it as down.
        let asked = Arc::clone(&refs);
        let waiter = tokio::spawn(async move { asked.confirm(run).await });
        tokio::time::advance(Duration::from_millis(100)).await;
        refs.record(0, checked(Instant::now(), false), Duration::ZERO, 0.0);
        assert_eq!(waiter.await.expect("joined"), LocalNetwork::Down);
    }
}

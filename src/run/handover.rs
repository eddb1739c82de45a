//! A reload in the middle of a run: where the run's result goes.
//!
//! A reload stops a generation's schedules, not its runs (`daemon::fleet`): a run that was going
//! finishes, and the reload's hand-over ([`hand_over`]) tells it where its probe lives now, so
//! repeated reloads cannot hide results (the timeouts of a stalling upstream above all). A run
//! whose probe the reload removed has no series and no recent runs left to record into; it is
//! counted (`lastfm_monitor_runs_abandoned_total`) and logged instead. Generic over the runtime
//! ([`Retirable`]) so that this file needs nothing from the rest of its stage.

use std::sync::{Arc, OnceLock};

use crate::classify::Outcome;
use crate::metrics::AbandonedRuns;

/// What a runtime keeps for a reload that retires it.
#[derive(Debug)]
pub(super) struct Retirement<T> {
    /// Set by the reload: the same-named target's runtime in the new generation, or `None`
    /// when the target is gone.
    successor: OnceLock<Option<Arc<T>>>,
    /// Where a run whose probe a reload removed is counted.
    abandoned: AbandonedRuns,
}

impl<T> Retirement<T> {
    /// Not retired yet.
    pub(super) fn new(abandoned: AbandonedRuns) -> Self {
        Self {
            successor: OnceLock::new(),
            abandoned,
        }
    }

    /// Counts and logs a run that finished after a reload removed its probe.
    pub(super) fn abandon(&self, target: &str, probe: &str, outcome: Outcome) {
        self.abandoned.inc();
        tracing::info!(
            target,
            probe,
            outcome = outcome.as_label(),
            "run abandoned: a reload removed its probe while it ran; not recorded"
        );
    }
}

/// A target's runtime, as the hand-over sees it.
pub(super) trait Retirable: Sized {
    /// The target's name.
    fn name(&self) -> &str;
    /// The index of the probe called `probe`, if the target has one.
    fn probe_index(&self, probe: &str) -> Option<usize>;
    /// What the runtime keeps for its retirement.
    fn retirement(&self) -> &Retirement<Self>;
}

/// Where a run's result goes once it has one.
#[derive(Debug)]
pub(super) enum Home<T> {
    /// The runtime the run started on: no reload since.
    Here,
    /// A reload since kept the probe: its runtime and index in the newest generation.
    Moved(Arc<T>, usize),
    /// A reload since removed the probe or its target.
    Gone,
}

/// Where a run of `probe` made on `start` goes now: `start` itself, the same-named probe of the
/// same-named target in the newest generation (after any number of reloads), or nowhere.
pub(super) fn home<T: Retirable>(start: &T, probe: &str) -> Home<T> {
    let mut moved: Option<(Arc<T>, usize)> = None;
    loop {
        let here = moved.as_ref().map_or(start, |(rt, _)| rt.as_ref());
        let next = match here.retirement().successor.get() {
            None => return moved.map_or(Home::Here, |(rt, i)| Home::Moved(rt, i)),
            Some(None) => return Home::Gone,
            Some(Some(next)) => next,
        };
        match next.probe_index(probe) {
            Some(i) => moved = Some((Arc::clone(next), i)),
            None => return Home::Gone,
        }
    }
}

/// Retires `old` (a reload): each runtime's runs still going are recorded into its same-named
/// runtime in `new`, or abandoned when it has none.
pub(super) fn hand_over<T: Retirable>(old: &[Arc<T>], new: &[Arc<T>]) {
    for rt in old {
        let successor = new.iter().find(|n| n.name() == rt.name()).map(Arc::clone);
        let _ = rt.retirement().successor.set(successor);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    #[derive(Debug)]
    struct Fake {
        name: &'static str,
        probes: Vec<&'static str>,
        retirement: Retirement<Self>,
    }

    impl Retirable for Fake {
        fn name(&self) -> &str {
            self.name
        }
        fn probe_index(&self, probe: &str) -> Option<usize> {
            self.probes.iter().position(|p| *p == probe)
        }
        fn retirement(&self) -> &Retirement<Self> {
            &self.retirement
        }
    }

    fn generation(
        metrics: &Metrics,
        targets: &[(&'static str, &[&'static str])],
    ) -> Vec<Arc<Fake>> {
        targets
            .iter()
            .map(|(name, probes)| {
                Arc::new(Fake {
                    name,
                    probes: probes.to_vec(),
                    retirement: Retirement::new(metrics.abandoned_runs()),
                })
            })
            .collect()
    }

    fn found(home: Home<Fake>) -> Option<(&'static str, usize)> {
        match home {
            Home::Here => Some(("here", 0)),
            Home::Moved(rt, index) => Some((rt.name, index)),
            Home::Gone => None,
        }
    }

    #[test]
    fn a_run_follows_its_probe_across_reloads_by_target_and_probe_name() {
        let metrics = Metrics::try_new("test", "test").unwrap();
        let first = generation(&metrics, &[("a", &["x", "y"]), ("b", &["z"])]);
        assert_eq!(found(home(first[0].as_ref(), "y")), Some(("here", 0)));

        // The second reorders a's probes, drops b and adds c.
        let second = generation(&metrics, &[("c", &["z"]), ("a", &["y", "x"])]);
        hand_over(&first, &second);
        assert_eq!(found(home(first[0].as_ref(), "y")), Some(("a", 0)));
        assert_eq!(found(home(first[0].as_ref(), "x")), Some(("a", 1)));
        assert_eq!(
            found(home(first[1].as_ref(), "z")),
            None,
            "target b is gone"
        );

        // The third drops y: a run started two generations ago follows the chain.
        let third = generation(&metrics, &[("a", &["x"])]);
        hand_over(&second, &third);
        assert_eq!(found(home(first[0].as_ref(), "x")), Some(("a", 0)));
        assert!(Arc::ptr_eq(
            &match home(first[0].as_ref(), "x") {
                Home::Moved(rt, _) => rt,
                Home::Here | Home::Gone => unreachable!(),
            },
            &third[0]
        ));
        assert_eq!(found(home(first[0].as_ref(), "y")), None, "probe y is gone");
        assert_eq!(found(home(third[0].as_ref(), "x")), Some(("here", 0)));
    }
}

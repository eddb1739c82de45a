//! Recent runs, kept for the status page and debug traces, and the status model built from
//! them (states, causes, uptime, incidents: `status.rs`, `uptime.rs`, `incidents.rs`).
//!
//! Two bounded rings, as blackbox_exporter does: failures are kept longer than successes, because
//! the run an operator wants to read is the one that went wrong an hour ago. Each record keeps
//! what its debug trace is made from and renders it (redacted) on first read, so a trace link
//! keeps working after the state it describes has moved on, and runs nobody reads cost no
//! rendering. Memory is bounded by the ring sizes and the body excerpt cap.

pub mod incidents;
pub mod state;
pub mod status;
pub mod trace;
pub mod uptime;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::classify::{Classification, Outcome};
use crate::history::status::{Observed, StatusBook, TargetFacts};
use crate::history::trace::Trace;

/// How many successful runs are kept.
const KEEP_SUCCESSES: usize = 50;
/// How many failed runs are kept.
const KEEP_FAILURES: usize = 150;

/// One finished run, as shown to operators.
#[derive(Debug, Clone)]
pub struct RunRecord {
    /// Unique within this process; the trace link's key.
    pub id: u64,
    /// `target` label.
    pub target: String,
    /// `probe` label.
    pub probe: String,
    /// When the run ended.
    pub at: DateTime<Utc>,
    /// Duration of the request.
    pub latency: Duration,
    /// The verdict.
    pub verdict: Classification,
    /// Whether this was an on-demand `/probe` run.
    pub on_demand: bool,
    /// The redacted debug trace, rendered when first read.
    pub trace: Trace,
    /// What a scheduled run left of its target's health; feeds the status model. `None` for
    /// on-demand runs, which leave health alone.
    pub facts: Option<TargetFacts>,
}

impl RunRecord {
    /// Whether the run met its expectation.
    pub fn is_success(&self) -> bool {
        self.verdict.met_expectation
    }
}

/// The latest run per probe and the recent-runs rings.
#[derive(Debug, Default)]
pub struct History {
    inner: Mutex<HistoryState>,
    /// States, uptime and incidents, fed by the scheduled runs recorded here.
    status: StatusBook,
}

#[derive(Debug, Default)]
struct HistoryState {
    next_id: u64,
    latest: BTreeMap<(String, String), Arc<RunRecord>>,
    last_success: BTreeMap<(String, String), DateTime<Utc>>,
    successes: VecDeque<Arc<RunRecord>>,
    failures: VecDeque<Arc<RunRecord>>,
}

impl History {
    fn lock(&self) -> std::sync::MutexGuard<'_, HistoryState> {
        // Plain data: a panic elsewhere cannot leave it inconsistent enough to stop reporting.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stores a run and returns its id.
    pub fn record(&self, mut record: RunRecord) -> u64 {
        let mut state = self.lock();
        state.next_id += 1;
        record.id = state.next_id;
        let id = record.id;
        let key = (record.target.clone(), record.probe.clone());
        if record.is_success() {
            state.last_success.insert(key.clone(), record.at);
        }
        let record = Arc::new(record);
        if let Some(facts) = &record.facts {
            let observed = Observed {
                id: record.id,
                target: &record.target,
                probe: &record.probe,
                at: record.at,
                latency: record.latency,
                verdict: &record.verdict,
            };
            self.status.observe(observed, facts);
        }
        if !record.on_demand {
            state.latest.insert(key, Arc::clone(&record));
        }
        let (ring, keep) = if record.is_success() {
            (&mut state.successes, KEEP_SUCCESSES)
        } else {
            (&mut state.failures, KEEP_FAILURES)
        };
        ring.push_back(record);
        while ring.len() > keep {
            ring.pop_front();
        }
        id
    }

    /// The status model.
    pub fn status(&self) -> &StatusBook {
        &self.status
    }

    /// The latest scheduled run of a probe.
    pub fn latest(&self, target: &str, probe: &str) -> Option<Arc<RunRecord>> {
        self.lock()
            .latest
            .get(&(target.to_owned(), probe.to_owned()))
            .cloned()
    }

    /// When the probe last met its expectation.
    pub fn last_success(&self, target: &str, probe: &str) -> Option<DateTime<Utc>> {
        self.lock()
            .last_success
            .get(&(target.to_owned(), probe.to_owned()))
            .copied()
    }

    /// Recent runs, newest first, failures and successes merged.
    pub fn recent(&self, limit: usize) -> Vec<Arc<RunRecord>> {
        let state = self.lock();
        let mut all: Vec<Arc<RunRecord>> = state
            .successes
            .iter()
            .chain(state.failures.iter())
            .cloned()
            .collect();
        all.sort_by_key(|r| std::cmp::Reverse(r.id));
        all.truncate(limit);
        all
    }

    /// A run by id, while it is still kept.
    pub fn get(&self, id: u64) -> Option<Arc<RunRecord>> {
        let state = self.lock();
        state
            .successes
            .iter()
            .chain(state.failures.iter())
            .find(|r| r.id == id)
            .cloned()
    }

    /// Forgets probes that are no longer configured.
    pub fn retain(&self, keep: impl Fn(&str, &str) -> bool) {
        let mut state = self.lock();
        state.latest.retain(|(t, p), _| keep(t, p));
        state.last_success.retain(|(t, p), _| keep(t, p));
        drop(state);
        self.status.retain(keep);
    }

    /// Counts of kept records (successes, failures), for tests and the status page.
    pub fn kept(&self) -> (usize, usize) {
        let state = self.lock();
        (state.successes.len(), state.failures.len())
    }
}

/// Short text of an outcome for tables.
pub fn outcome_text(verdict: &Classification) -> &'static str {
    if verdict.outcome == Outcome::ApiError && verdict.met_expectation {
        "api_error (expected)"
    } else {
        verdict.outcome.as_label()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(success: bool) -> RunRecord {
        RunRecord {
            id: 0,
            target: "t".into(),
            probe: "p".into(),
            at: Utc::now(),
            latency: Duration::from_millis(5),
            verdict: Classification {
                met_expectation: success,
                api_healthy: success,
                ..Classification::new(if success {
                    Outcome::Success
                } else {
                    Outcome::Timeout
                })
            },
            on_demand: false,
            trace: Trace::default(),
            facts: None,
        }
    }

    #[test]
    fn failures_are_kept_longer_than_successes() {
        let history = History::default();
        for i in 0..1000 {
            history.record(record(i % 10 != 0));
        }
        assert_eq!(history.kept(), (KEEP_SUCCESSES, 100));
        for _ in 0..1000 {
            history.record(record(false));
        }
        assert_eq!(history.kept(), (KEEP_SUCCESSES, KEEP_FAILURES));
        let recent = history.recent(10);
        assert_eq!(recent.len(), 10);
        assert!(recent.windows(2).all(|w| w[0].id > w[1].id));
    }
}

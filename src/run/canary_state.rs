//! A write-path canary's live state across runs: its run series, its two steps' per-probe series
//! and when its last scheduled write went out.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::Utc;

use super::saved::{NEVER, TargetState};
use crate::classify::{Blame, CanaryResult, IgnoredCode, RateLimitScope};
use crate::config::{Canary, Target};
use crate::health::politeness::SkipReason;
use crate::metrics::{CanaryMetrics, Metrics, ProbeMetrics};

/// A canary's live state: its series, its steps' series and its cadence.
#[derive(Debug)]
pub struct CanaryRuntime {
    pub(super) metrics: CanaryMetrics,
    pub(super) write: ProbeMetrics,
    /// `None` on a service without a read-back: a step that never runs exports nothing.
    pub(super) read: Option<ProbeMetrics>,
    /// When the last scheduled write went out (Unix ms, [`NEVER`]).
    pub(super) last_sent_ms: AtomicI64,
    /// How the last scheduled run ended, for the status page.
    pub(super) last: Mutex<Option<LastRun>>,
    /// When a scheduled run last saw its play (Unix seconds).
    pub(super) last_visible: Mutex<Option<i64>>,
}

/// How a canary's last run ended, as the status page shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastRun {
    /// The result.
    pub result: CanaryResult,
    /// The ignore code of an `ignored` run.
    pub ignored: Option<IgnoredCode>,
    /// The scope of a rate limit that refused the write.
    pub scope: Option<RateLimitScope>,
    /// Whose fault a bad result is.
    pub blame: Option<Blame>,
    /// When it ended (Unix seconds).
    pub at: i64,
    /// The history record whose trace shows the whole run.
    pub record: u64,
}

impl CanaryRuntime {
    /// Registers the canary's series and its steps'.
    fn new(
        target: &Target,
        canary: &Canary,
        metrics: &Metrics,
        now: chrono::DateTime<Utc>,
        last_sent_ms: i64,
    ) -> Self {
        let interval = canary.schedule.schedule.nominal_interval(now);
        Self {
            metrics: metrics.canary(&target.name, &canary.name),
            write: metrics.probe(&target.name, &canary.write.name, interval),
            read: target
                .api
                .has_read_back()
                .then(|| metrics.probe(&target.name, &canary.read.name, interval)),
            last_sent_ms: AtomicI64::new(last_sent_ms),
            last: Mutex::new(None),
            last_visible: Mutex::new(None),
        }
    }

    /// The runtimes of `target`'s canaries, each resuming its cadence from `kept` (by its
    /// write step's name).
    pub(super) fn all_of(
        target: &Target,
        metrics: &Metrics,
        now: chrono::DateTime<Utc>,
        kept: Option<&TargetState>,
    ) -> Vec<Self> {
        target
            .canaries
            .iter()
            .map(|c| {
                let sent = kept.and_then(|k| k.last_sent_ms.get(&c.write.name).copied());
                Self::new(target, c, metrics, now, sent.unwrap_or(NEVER))
            })
            .collect()
    }

    /// When the last scheduled write went out (Unix ms), if one has.
    pub fn last_sent_ms(&self) -> Option<i64> {
        Some(self.last_sent_ms.load(Ordering::Relaxed)).filter(|at| *at != NEVER)
    }

    /// How the last scheduled run ended, and when a run last saw its play.
    pub fn last_run(&self) -> (Option<LastRun>, Option<i64>) {
        (*lock(&self.last), *lock(&self.last_visible))
    }

    /// Counts skipped runs (a skipped run is a write not sent).
    pub fn record_skip(&self, reason: SkipReason, n: u64) {
        self.write.record_skip(reason, n);
    }
}

/// Locks plain data: a panic elsewhere cannot leave it unusable.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

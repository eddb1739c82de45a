//! The handles a probe, a target and a reference record through, and the series each exports.
//!
//! A handle's series are resolved once, when it is registered (`Metrics::probe`, `target`,
//! `reference`): recording a run touches atomics only, and `/metrics` never waits on a probe.
//! Every series of a known label value is created at zero at registration, so `increase()` and
//! alerts see the first event; only the series whose label sets are too large to create up front
//! (a probe's statuses and mismatches, a target's certificate expiry) enter the exposition on
//! first use. Label values come from config (`target`, `probe`, `reference`) or from `as_label()`
//! of a closed enum, never from upstream text. Families are named by [`Family`] variants, so a
//! handle cannot name one the table (`metrics/families.rs`) does not declare. README.md, "Metrics
//! reference", lists what each exports.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::cell::{Counter, Gauge, Histogram, IntGauge};
use super::exposition::{Batch, Exposition, lock};
use super::families::Family;
use crate::classify::{
    CODE_LABELS, CanaryResult, Classification, Condition, IgnoredCode, MismatchKind, Outcome,
    RateLimitScope, code_index, code_label, status_label,
};
use crate::health::politeness::SkipReason;
use crate::probe::{PhaseTimings, TIMED_PHASES, TransportFailure};

/// One probe's series, resolved once.
#[derive(Clone, Debug)]
pub struct ProbeMetrics {
    runs: [Counter; Outcome::ALL.len()],
    codes: [Counter; CODE_LABELS.len()],
    skipped: [Counter; SkipReason::ALL.len()],
    rate_limited: [Counter; RateLimitScope::ALL.len()],
    duration: Histogram,
    success: IntGauge,
    http_status: IntGauge,
    last_error_code: IntGauge,
    last_run: Gauge,
    last_success: Gauge,
    /// Per (phase, reason) pair, in [`TransportFailure::all`] order.
    failures: Arc<Vec<(TransportFailure, Counter)>>,
    /// Per phase of [`TIMED_PHASES`].
    phases: [Gauge; TIMED_PHASES.len()],
    /// Statuses and mismatches are sparse: resolved on first use from a bounded label set.
    sparse: Arc<Sparse>,
}

impl ProbeMetrics {
    /// Creates (or finds) a probe's series, all known ones at zero.
    pub(super) fn register(
        exposition: &Arc<Exposition>,
        target: &str,
        probe: &str,
        interval: Duration,
    ) -> Self {
        let tp = [("target", target), ("probe", probe)];
        let mut batch = Batch::new(exposition);
        let counters = ProbeCounters::register(&mut batch, &tp);
        batch
            .series::<Gauge>(Family::ProbeInterval, &tp)
            .set(interval.as_secs_f64());
        let metrics = Self {
            runs: counters.runs,
            codes: counters.codes,
            skipped: counters.skipped,
            rate_limited: RateLimitScope::ALL.map(|scope| {
                batch.series::<Counter>(
                    Family::RateLimited,
                    &[tp[0], tp[1], ("scope", scope.as_label())],
                )
            }),
            failures: Arc::new(failure_series(&mut batch, Family::ProbeFailures, &tp)),
            phases: TIMED_PHASES.map(|phase| {
                batch.series::<Gauge>(
                    Family::ProbePhaseDuration,
                    &[tp[0], tp[1], ("phase", phase)],
                )
            }),
            duration: batch.series::<Histogram>(Family::ProbeDuration, &tp),
            success: batch.series::<IntGauge>(Family::ProbeSuccess, &tp),
            http_status: batch.series::<IntGauge>(Family::ProbeHttpStatusCode, &tp),
            last_error_code: batch.series::<IntGauge>(Family::ProbeLastErrorCode, &tp),
            last_run: batch.series::<Gauge>(Family::ProbeLastRun, &tp),
            last_success: batch.series::<Gauge>(Family::ProbeLastSuccess, &tp),
            sparse: Arc::new(Sparse {
                target: target.to_owned(),
                probe: probe.to_owned(),
                exposition: Arc::clone(exposition),
                statuses: Mutex::default(),
                mismatch_series: Mutex::default(),
            }),
        };
        batch.commit(exposition);
        metrics
    }

    /// Records one run and where its time went.
    pub fn record_run(
        &self,
        verdict: &Classification,
        elapsed: Duration,
        timings: &PhaseTimings,
        now_unix: f64,
    ) {
        self.runs[verdict.outcome.index()].inc();
        if let Some(failure) = verdict.failure {
            count_failure(&self.failures, failure);
        }
        for (gauge, spent) in self.phases.iter().zip(timings.as_array()) {
            gauge.set(spent.as_secs_f64());
        }
        self.duration.observe(elapsed.as_secs_f64());
        self.success.set(i64::from(verdict.met_expectation));
        self.http_status
            .set(verdict.http_status.map_or(0, i64::from));
        self.last_error_code
            .set(verdict.error_code.map_or(0, i64::from));
        self.last_run.set(now_unix);
        if verdict.met_expectation {
            self.last_success.set(now_unix);
        }
        if let Some(code) = verdict.error_code {
            self.codes[code_index(code)].inc();
        }
        if let Some(status) = verdict.http_status {
            self.sparse.count_status(status_label(status));
        }
        if let Some(mismatch) = verdict.mismatch {
            self.sparse.count_mismatch(
                mismatch.kind.as_label(),
                mismatch.code.map_or("none", code_label),
                status_label(mismatch.status),
            );
        }
    }

    /// Counts `n` skipped runs.
    pub fn record_skip(&self, reason: SkipReason, n: u64) {
        self.skipped[reason.index()].inc_by(n);
    }

    /// Counts one rate-limit answer, by its scope.
    pub fn record_rate_limit(&self, scope: RateLimitScope) {
        self.rate_limited[scope.index()].inc();
    }
}

/// A probe's counters by a closed label set, and the series of the sparse families that exist
/// from start-up.
struct ProbeCounters {
    runs: [Counter; Outcome::ALL.len()],
    codes: [Counter; CODE_LABELS.len()],
    skipped: [Counter; SkipReason::ALL.len()],
}

impl ProbeCounters {
    fn register(batch: &mut Batch, tp: &[(&'static str, &str); 2]) -> Self {
        let runs = Outcome::ALL.map(|o| {
            batch.series::<Counter>(
                Family::ProbeRuns,
                &[tp[0], tp[1], ("outcome", o.as_label())],
            )
        });
        let codes = CODE_LABELS
            .map(|c| batch.series::<Counter>(Family::ApiErrors, &[tp[0], tp[1], ("code", c)]));
        let skipped = SkipReason::ALL.map(|r| {
            batch.series::<Counter>(
                Family::ProbeSkipped,
                &[tp[0], tp[1], ("reason", r.as_label())],
            )
        });
        // The quirk that matters most (an error delivered with 200) is visible from start-up.
        for code in CODE_LABELS {
            batch.series::<Counter>(
                Family::StatusMismatch,
                &[
                    tp[0],
                    tp[1],
                    ("kind", MismatchKind::ErrorWithSuccessStatus.as_label()),
                    ("code", code),
                    ("status", "200"),
                ],
            );
        }
        batch.series::<Counter>(Family::HttpResponses, &[tp[0], tp[1], ("status", "200")]);
        Self {
            runs,
            codes,
            skipped,
        }
    }
}

/// A probe's series whose label sets are too large to create up front (22 statuses; 3 kinds ×
/// 17 codes × 22 statuses of mismatches): each is created, and entered in the exposition, the
/// first time a run needs it. The handles found so far are kept in short lists (a probe sees a
/// handful of statuses), so later runs neither hash label values nor touch the exposition.
#[derive(Debug)]
struct Sparse {
    target: String,
    probe: String,
    exposition: Arc<Exposition>,
    /// `status` label → its counter.
    statuses: Mutex<Vec<(&'static str, Counter)>>,
    /// (`kind`, `code`, `status`) labels → their counter.
    mismatch_series: Mutex<Vec<([&'static str; 3], Counter)>>,
}

impl Sparse {
    fn count_status(&self, status: &'static str) {
        self.count(
            &self.statuses,
            status,
            Family::HttpResponses,
            &[("status", status)],
        );
    }

    fn count_mismatch(&self, kind: &'static str, code: &'static str, status: &'static str) {
        self.count(
            &self.mismatch_series,
            [kind, code, status],
            Family::StatusMismatch,
            &[("kind", kind), ("code", code), ("status", status)],
        );
    }

    /// Counts one on the series `key` names in `known`, resolving it (the probe's labels plus
    /// `labels`) the first time.
    fn count<K: PartialEq>(
        &self,
        known: &Mutex<Vec<(K, Counter)>>,
        key: K,
        family: Family,
        labels: &[(&'static str, &'static str)],
    ) {
        let mut known = lock(known);
        if let Some((_, counter)) = known.iter().find(|(k, _)| *k == key) {
            counter.inc();
            return;
        }
        let mut all = vec![
            ("target", self.target.as_str()),
            ("probe", self.probe.as_str()),
        ];
        all.extend_from_slice(labels);
        let mut batch = Batch::new(&self.exposition);
        let series = batch.series::<Counter>(family, &all);
        batch.commit(&self.exposition);
        series.inc();
        known.push((key, series));
    }
}

/// A counter per (phase, reason) pair of `family`, in [`TransportFailure::all`] order, labelled
/// `owner` and the pair.
fn failure_series(
    batch: &mut Batch,
    family: Family,
    owner: &[(&'static str, &str)],
) -> Vec<(TransportFailure, Counter)> {
    TransportFailure::all()
        .map(|f| {
            let mut labels = owner.to_vec();
            labels.push(("phase", f.phase.as_label()));
            labels.push(("reason", f.reason.as_label()));
            (f, batch.series::<Counter>(family, &labels))
        })
        .collect()
}

/// Counts one `failure` on its series of `all` (every pair is there from start-up).
fn count_failure(all: &[(TransportFailure, Counter)], failure: TransportFailure) {
    if let Some((_, counter)) = all.iter().find(|(f, _)| *f == failure) {
        counter.inc();
    }
}

/// One write-path canary's series (its steps' requests count in their own [`ProbeMetrics`]).
#[derive(Clone, Debug)]
pub struct CanaryMetrics {
    runs: [Counter; CanaryResult::ALL.len()],
    ignored: [Counter; IgnoredCode::ALL.len()],
    visible: Histogram,
    last_result: [IntGauge; CanaryResult::ALL.len()],
    last_run: Gauge,
    /// Entered in the exposition at the first `visible` run: a zero would read as "last seen
    /// in 1970" and fire the alert that quotes it.
    last_visible: Arc<Mutex<Option<Gauge>>>,
    labels: Arc<(String, String, Arc<Exposition>)>,
}

impl CanaryMetrics {
    /// Creates (or finds) a canary's series, all at zero, no result yet.
    pub(super) fn register(exposition: &Arc<Exposition>, target: &str, canary: &str) -> Self {
        let tc = [("target", target), ("canary", canary)];
        let mut batch = Batch::new(exposition);
        let per_result = |batch: &mut Batch, family| {
            CanaryResult::ALL.map(|r| {
                batch.series::<IntGauge>(family, &[tc[0], tc[1], ("result", r.as_label())])
            })
        };
        let last_result = per_result(&mut batch, Family::CanaryLastResult);
        let metrics = Self {
            runs: CanaryResult::ALL.map(|r| {
                batch.series::<Counter>(
                    Family::CanaryRuns,
                    &[tc[0], tc[1], ("result", r.as_label())],
                )
            }),
            ignored: IgnoredCode::ALL.map(|c| {
                batch.series::<Counter>(
                    Family::CanaryIgnored,
                    &[tc[0], tc[1], ("code", c.as_label())],
                )
            }),
            visible: batch.series::<Histogram>(Family::CanaryVisible, &tc),
            last_result,
            last_run: batch.series::<Gauge>(Family::CanaryLastRun, &tc),
            last_visible: Arc::default(),
            labels: Arc::new((target.to_owned(), canary.to_owned(), Arc::clone(exposition))),
        };
        // A reload that finds the gauge (the same canary) keeps it.
        *lock(&metrics.last_visible) = batch.existing::<Gauge>(Family::CanaryLastVisible, &tc);
        batch.commit(exposition);
        metrics
    }

    /// Records a finished run: its result, the ignore code of an ignored one, and for a
    /// visible one how long the play took to show.
    pub fn record(
        &self,
        result: CanaryResult,
        ignored: Option<IgnoredCode>,
        visible_after: Option<Duration>,
        now_unix: f64,
    ) {
        self.runs[result.index()].inc();
        for (i, gauge) in self.last_result.iter().enumerate() {
            gauge.set(i64::from(i == result.index()));
        }
        if let Some(code) = ignored {
            self.ignored[code.index()].inc();
        }
        self.last_run.set(now_unix);
        if let Some(after) = visible_after {
            self.visible.observe(after.as_secs_f64());
        }
        if result == CanaryResult::Visible {
            let mut gauge = lock(&self.last_visible);
            let gauge = gauge.get_or_insert_with(|| {
                let (target, canary, exposition) = &*self.labels;
                let mut batch = Batch::new(exposition);
                let series = batch.series::<Gauge>(
                    Family::CanaryLastVisible,
                    &[("target", target.as_str()), ("canary", canary.as_str())],
                );
                batch.commit(exposition);
                series
            });
            gauge.set(now_unix);
        }
    }
}

/// One reference's series.
#[derive(Clone, Debug)]
pub struct ReferenceMetrics {
    up: IntGauge,
    status: IntGauge,
    duration: Gauge,
    last_check: Gauge,
    failures: Arc<Vec<(TransportFailure, Counter)>>,
}

impl ReferenceMetrics {
    /// Creates (or finds) a reference's series: down and never checked until its first check.
    pub(super) fn register(exposition: &Exposition, reference: &str) -> Self {
        let r = [("reference", reference)];
        let mut batch = Batch::new(exposition);
        let metrics = Self {
            failures: Arc::new(failure_series(&mut batch, Family::ReferenceFailures, &r)),
            up: batch.series::<IntGauge>(Family::ReferenceUp, &r),
            status: batch.series::<IntGauge>(Family::ReferenceHttpStatusCode, &r),
            duration: batch.series::<Gauge>(Family::ReferenceDuration, &r),
            last_check: batch.series::<Gauge>(Family::ReferenceLastCheck, &r),
        };
        batch.commit(exposition);
        metrics
    }

    /// Records one check.
    pub fn record(
        &self,
        reachable: bool,
        status: Option<u16>,
        failure: Option<TransportFailure>,
        elapsed: Duration,
        now_unix: f64,
    ) {
        self.up.set(i64::from(reachable));
        self.status.set(status.map_or(0, i64::from));
        self.duration.set(elapsed.as_secs_f64());
        self.last_check.set(now_unix);
        if let Some(failure) = failure {
            count_failure(&self.failures, failure);
        }
    }
}

/// A target's gauge that enters the exposition with its first value: the certificate expiry at
/// the first handshake (a plain-http target never has one, and a zero would read as "expired in
/// 1970"), the rate-limit budget left at the first answer that says it (a zero would read as
/// "exhausted").
#[derive(Debug)]
struct Late {
    family: Family,
    target: String,
    exposition: Arc<Exposition>,
    gauge: Mutex<Option<Gauge>>,
}

impl Late {
    fn new(family: Family, target: &str, exposition: &Arc<Exposition>) -> Arc<Self> {
        Arc::new(Self {
            family,
            target: target.to_owned(),
            exposition: Arc::clone(exposition),
            gauge: Mutex::default(),
        })
    }

    fn set(&self, value: f64) {
        let mut gauge = lock(&self.gauge);
        let gauge = gauge.get_or_insert_with(|| {
            let mut batch = Batch::new(&self.exposition);
            let series = batch.series::<Gauge>(self.family, &[("target", self.target.as_str())]);
            batch.commit(&self.exposition);
            series
        });
        gauge.set(value);
    }
}

/// One target's series.
#[derive(Clone, Debug)]
pub struct TargetMetrics {
    available: IntGauge,
    conditions: [IntGauge; Condition::ALL.len()],
    backoff: Gauge,
    not_after: Arc<Late>,
    remaining: Arc<Late>,
}

impl TargetMetrics {
    /// Creates (or finds) a target's series: available, no condition, no backoff, and its
    /// availability objective (set again on every registration, so a reload updates it).
    pub(super) fn register(exposition: &Arc<Exposition>, target: &str, objective: f64) -> Self {
        let t = [("target", target)];
        let mut batch = Batch::new(exposition);
        batch
            .series::<Gauge>(Family::TargetAvailabilityObjective, &t)
            .set(objective);
        let metrics = Self {
            available: batch.series::<IntGauge>(Family::ServiceAvailable, &t),
            conditions: Condition::ALL.map(|c| {
                batch.series::<IntGauge>(Family::Condition, &[t[0], ("condition", c.as_label())])
            }),
            backoff: batch.series::<Gauge>(Family::TargetBackoff, &t),
            not_after: Late::new(Family::TlsCertificateNotAfter, target, exposition),
            remaining: Late::new(Family::TargetRateLimitRemaining, target, exposition),
        };
        batch.commit(exposition);
        metrics
    }

    /// Sets availability, conditions and backoff from the target's state.
    pub fn set(&self, available: bool, conditions: impl Fn(Condition) -> bool, backoff: Duration) {
        self.available.set(i64::from(available));
        for condition in Condition::ALL {
            self.conditions[condition.index()].set(i64::from(conditions(condition)));
        }
        self.backoff.set(backoff.as_secs_f64());
    }

    /// Sets the earliest `notAfter` of the chain the last handshake presented.
    pub fn set_certificate_not_after(&self, unix: i64) {
        self.not_after.set(unix as f64);
    }

    /// Sets the requests the service's rate limit still allows (`X-RateLimit-Remaining`).
    pub fn set_rate_limit_remaining(&self, remaining: f64) {
        self.remaining.set(remaining);
    }
}

//! The Prometheus metrics of SPEC §7: declared once, rendered on demand.
//!
//! [`Metrics`] hands out per-probe and per-target handles whose series are resolved once, at
//! registration: recording a run touches atomics only, and `/metrics` never waits on a probe. Every
//! series of a known label value is created at zero when a probe is registered, so `increase()` and
//! alerts see the first event. Label values come from config (`target`, `probe`) or from
//! `as_label()` of a closed enum, never from upstream text.
//!
//! Each series is an entry in an `Exposition` index that keeps its label block escaped and sorted,
//! beside the cell (`metrics/cell.rs`) whose atomics hold its value; a scrape copies those prefixes
//! and formats the numbers. Neither `Registry::gather` (which rebuilt every series as a protobuf
//! message on each scrape, about 0.5 µs a series) nor the prometheus crate's series (about 0.6 KiB
//! each, 65 KiB a probe) are used (issue 6); the crate still reads and encodes the `process_*`
//! families. The index is copy-on-write behind an `Arc`: a scrape takes a snapshot under a lock
//! held only to clone a pointer, so encoding never blocks a probe and a probe never blocks a
//! scrape. The text is byte for byte what the crate's `TextEncoder` writes for the same values
//! (families by name, series by label values; a test checks).

mod cell;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use self::cell::{Counter, Gauge, Histogram, IntGauge};
use crate::classify::{
    CODE_LABELS, Classification, Condition, MismatchKind, Outcome, code_index, code_label,
    status_label,
};
use crate::health::politeness::SkipReason;
use crate::probe::{PhaseTimings, TIMED_PHASES, TransportFailure};

/// Latency buckets (seconds): SLO thresholds at 0.25, 0.5, 1 and 2.5 s, up to the longest timeout.
const DURATION_BUCKETS: [f64; 10] = [0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

const CACHED: &str = "Values come from the last scheduled run, not from the scrape.";

/// The families whose series belong to a target rather than to one of its probes.
const TARGET_FAMILIES: [&str; 4] = [
    "lastfm_service_available",
    "lastfm_condition",
    "lastfm_target_backoff_seconds",
    "lastfm_tls_certificate_not_after_timestamp_seconds",
];

/// The families of a reference's series.
const REFERENCE_FAMILIES: [&str; 5] = [
    "lastfm_reference_up",
    "lastfm_reference_failures_total",
    "lastfm_reference_http_status_code",
    "lastfm_reference_duration_seconds",
    "lastfm_reference_last_check_timestamp_seconds",
];

/// Declaring the families failed: a name declared twice or not a valid metric name, a bug caught
/// at start-up.
#[derive(Debug, thiserror::Error)]
#[error("cannot register metric {0}: its name is declared twice or is not a valid metric name")]
pub struct RegisterMetric(&'static str);

/// All metrics. Cheap to clone: handles share the series.
#[derive(Clone, Debug)]
pub struct Metrics {
    /// What `/metrics` renders: every series, by family.
    exposition: Arc<Exposition>,
    /// `process_*` (Linux only).
    #[cfg(target_os = "linux")]
    process: Arc<ProcessMetrics>,
    reload_successful: IntGauge,
    reload_timestamp: Gauge,
}

impl Metrics {
    /// Declares every family in a fresh index.
    pub fn try_new(version: &str, revision: &str) -> Result<Self, RegisterMetric> {
        let mut index = Index::default();
        let families: [(&'static str, String, Kind); 26] = [
            (
                "lastfm_probe_runs_total",
                "Probe runs by outcome (success, api_error, http_error, malformed, check_failed, timeout, connection_error, body_too_large).".to_owned(),
                Kind::Counter,
            ),
            (
                "lastfm_api_errors_total",
                "Last.fm error payloads by error code (unlisted codes as \"other\"), whatever the HTTP status.".to_owned(),
                Kind::Counter,
            ),
            (
                "lastfm_http_responses_total",
                "HTTP responses by status (unlisted statuses as their class, e.g. \"4xx\").".to_owned(),
                Kind::Counter,
            ),
            (
                "lastfm_status_mismatch_total",
                "Runs whose HTTP status disagrees with the payload (error_with_success_status, success_with_error_status, status_disagrees_with_code).".to_owned(),
                Kind::Counter,
            ),
            (
                "lastfm_probe_duration_seconds",
                "Duration of probe runs, from sending the request to the end of the body or the failure.".to_owned(),
                Kind::Histogram,
            ),
            (
                "lastfm_probe_failures_total",
                "Runs that got no complete response, by where the exchange broke (phase: dns, connect, tls, request, body) and why (reason). Refines the timeout, connection_error and body_too_large outcomes.".to_owned(),
                Kind::Counter,
            ),
            (
                "lastfm_probe_phase_duration_seconds",
                format!(
                    "Time the last run spent in each phase (dns, connect, tls, first_byte, body); 0 for a phase a kept connection skipped or the run never reached. {CACHED}"
                ),
                Kind::Gauge,
            ),
            (
                "lastfm_tls_certificate_not_after_timestamp_seconds",
                "Unix time of the earliest notAfter of the certificate chain the target presented at the last TLS handshake; absent for plain http.".to_owned(),
                Kind::Gauge,
            ),
            (
                "lastfm_reference_up",
                "1 if the last check of the reference got any HTTP answer, else 0. References are not Last.fm: they tell the monitor's own network's faults from Last.fm's.".to_owned(),
                Kind::Gauge,
            ),
            (
                "lastfm_reference_failures_total",
                "Reference checks that got no answer, by phase and reason.".to_owned(),
                Kind::Counter,
            ),
            (
                "lastfm_reference_http_status_code",
                "HTTP status of the last reference check, 0 when none (reported, not judged)."
                    .to_owned(),
                Kind::Gauge,
            ),
            (
                "lastfm_reference_duration_seconds",
                "Duration of the last reference check, to the response headers or the failure."
                    .to_owned(),
                Kind::Gauge,
            ),
            (
                "lastfm_reference_last_check_timestamp_seconds",
                "Unix time the last reference check ended.".to_owned(),
                Kind::Gauge,
            ),
            (
                "lastfm_probe_success",
                format!("1 if the last run met the probe's expectation, else 0. {CACHED}"),
                Kind::Gauge,
            ),
            (
                "lastfm_probe_http_status_code",
                format!("HTTP status of the last run, 0 when there was no response. {CACHED}"),
                Kind::Gauge,
            ),
            (
                "lastfm_probe_last_error_code",
                format!("Last.fm error code of the last run, 0 when none. {CACHED}"),
                Kind::Gauge,
            ),
            (
                "lastfm_probe_last_run_timestamp_seconds",
                format!("Unix time the last run ended. {CACHED}"),
                Kind::Gauge,
            ),
            (
                "lastfm_probe_last_success_timestamp_seconds",
                format!(
                    "Unix time of the last run that met its expectation, 0 if none yet. {CACHED}"
                ),
                Kind::Gauge,
            ),
            (
                "lastfm_probe_interval_seconds",
                "The probe's nominal gap between scheduled runs, for staleness alerts.".to_owned(),
                Kind::Gauge,
            ),
            (
                "lastfm_probe_skipped_total",
                "Scheduled runs not sent, by reason (rate_limited, suspended, overrun).".to_owned(),
                Kind::Counter,
            ),
            (
                "lastfm_service_available",
                format!(
                    "1 unless down_after upstream failures in a row made the target unavailable; back after up_after healthy runs. {CACHED}"
                ),
                Kind::Gauge,
            ),
            (
                "lastfm_condition",
                format!(
                    "1 while a condition holds (service_offline, api_key_suspended, api_key_invalid, session_invalid, rate_limited, local_network_down). {CACHED}"
                ),
                Kind::Gauge,
            ),
            (
                "lastfm_target_backoff_seconds",
                "Remaining backoff of the target after a rate-limit answer, 0 when none.".to_owned(),
                Kind::Gauge,
            ),
            (
                "lastfm_monitor_config_last_reload_successful",
                "1 if the last configuration load or reload succeeded, else 0.".to_owned(),
                Kind::Gauge,
            ),
            (
                "lastfm_monitor_config_last_reload_success_timestamp_seconds",
                "Unix time of the last successful configuration load or reload.".to_owned(),
                Kind::Gauge,
            ),
            (
                "lastfm_monitor_build_info",
                "Always 1; labels carry the version and VCS revision of the running binary."
                    .to_owned(),
                Kind::Gauge,
            ),
        ];
        for (name, help, kind) in families {
            index.add_family(name, &help, kind)?;
        }
        let metrics = Self {
            exposition: Arc::default(),
            #[cfg(target_os = "linux")]
            process: Arc::default(),
            reload_successful: IntGauge::default(),
            reload_timestamp: Gauge::default(),
        };
        let info = IntGauge::default();
        info.set(1);
        index.insert(
            "lastfm_monitor_build_info",
            &[("version", version), ("revision", revision)],
            Value::IntGauge(info),
        );
        index.insert(
            "lastfm_monitor_config_last_reload_successful",
            &[],
            Value::IntGauge(metrics.reload_successful.clone()),
        );
        index.insert(
            "lastfm_monitor_config_last_reload_success_timestamp_seconds",
            &[],
            Value::Gauge(metrics.reload_timestamp.clone()),
        );
        *metrics.exposition.lock() = Arc::new(index);
        Ok(metrics)
    }

    /// Creates (or finds) a probe's series, all known ones at zero.
    pub fn probe(&self, target: &str, probe: &str, interval: Duration) -> ProbeMetrics {
        let tp = [("target", target), ("probe", probe)];
        let mut batch = Batch::new(&self.exposition);
        let runs = Outcome::ALL.map(|o| {
            batch.series::<Counter>(
                "lastfm_probe_runs_total",
                &[tp[0], tp[1], ("outcome", o.as_label())],
            )
        });
        let codes = CODE_LABELS.map(|c| {
            batch.series::<Counter>("lastfm_api_errors_total", &[tp[0], tp[1], ("code", c)])
        });
        let skipped = SkipReason::ALL.map(|r| {
            batch.series::<Counter>(
                "lastfm_probe_skipped_total",
                &[tp[0], tp[1], ("reason", r.as_label())],
            )
        });
        // The quirk that matters most (an error delivered with 200) is visible from start-up.
        for code in CODE_LABELS {
            batch.series::<Counter>(
                "lastfm_status_mismatch_total",
                &[
                    tp[0],
                    tp[1],
                    ("kind", MismatchKind::ErrorWithSuccessStatus.as_label()),
                    ("code", code),
                    ("status", "200"),
                ],
            );
        }
        batch.series::<Counter>(
            "lastfm_http_responses_total",
            &[tp[0], tp[1], ("status", "200")],
        );
        let failures = TransportFailure::all()
            .map(|f| {
                let series = batch.series::<Counter>(
                    "lastfm_probe_failures_total",
                    &[
                        tp[0],
                        tp[1],
                        ("phase", f.phase.as_label()),
                        ("reason", f.reason.as_label()),
                    ],
                );
                (f, series)
            })
            .collect();
        let phases = TIMED_PHASES.map(|phase| {
            batch.series::<Gauge>(
                "lastfm_probe_phase_duration_seconds",
                &[tp[0], tp[1], ("phase", phase)],
            )
        });
        batch
            .series::<Gauge>("lastfm_probe_interval_seconds", &tp)
            .set(interval.as_secs_f64());
        let metrics = ProbeMetrics {
            runs,
            codes,
            skipped,
            failures: Arc::new(failures),
            phases,
            duration: batch.series::<Histogram>("lastfm_probe_duration_seconds", &tp),
            success: batch.series::<IntGauge>("lastfm_probe_success", &tp),
            http_status: batch.series::<IntGauge>("lastfm_probe_http_status_code", &tp),
            last_error_code: batch.series::<IntGauge>("lastfm_probe_last_error_code", &tp),
            last_run: batch.series::<Gauge>("lastfm_probe_last_run_timestamp_seconds", &tp),
            last_success: batch.series::<Gauge>("lastfm_probe_last_success_timestamp_seconds", &tp),
            sparse: Arc::new(Sparse {
                target: target.to_owned(),
                probe: probe.to_owned(),
                exposition: Arc::clone(&self.exposition),
                statuses: Mutex::default(),
                mismatch_series: Mutex::default(),
            }),
        };
        batch.commit(&self.exposition);
        metrics
    }

    /// Creates (or finds) a target's series: available, no condition, no backoff.
    pub fn target(&self, target: &str) -> TargetMetrics {
        let t = [("target", target)];
        let mut batch = Batch::new(&self.exposition);
        let metrics = TargetMetrics {
            available: batch.series::<IntGauge>("lastfm_service_available", &t),
            conditions: Condition::ALL.map(|c| {
                batch.series::<IntGauge>("lastfm_condition", &[t[0], ("condition", c.as_label())])
            }),
            backoff: batch.series::<Gauge>("lastfm_target_backoff_seconds", &t),
            not_after: Arc::new(NotAfter {
                target: target.to_owned(),
                exposition: Arc::clone(&self.exposition),
                gauge: Mutex::default(),
            }),
        };
        batch.commit(&self.exposition);
        metrics
    }

    /// Creates (or finds) a reference's series: down and never checked until its first check.
    pub fn reference(&self, reference: &str) -> ReferenceMetrics {
        let r = [("reference", reference)];
        let mut batch = Batch::new(&self.exposition);
        let failures = TransportFailure::all()
            .map(|f| {
                let series = batch.series::<Counter>(
                    "lastfm_reference_failures_total",
                    &[
                        r[0],
                        ("phase", f.phase.as_label()),
                        ("reason", f.reason.as_label()),
                    ],
                );
                (f, series)
            })
            .collect();
        let metrics = ReferenceMetrics {
            up: batch.series::<IntGauge>("lastfm_reference_up", &r),
            status: batch.series::<IntGauge>("lastfm_reference_http_status_code", &r),
            duration: batch.series::<Gauge>("lastfm_reference_duration_seconds", &r),
            last_check: batch.series::<Gauge>("lastfm_reference_last_check_timestamp_seconds", &r),
            failures: Arc::new(failures),
        };
        batch.commit(&self.exposition);
        metrics
    }

    /// Drops every series of a reference that is no longer configured.
    pub fn remove_reference(&self, reference: &str) {
        self.exposition.remove(|family, labels| {
            REFERENCE_FAMILIES.contains(&family) && label(labels, "reference") == Some(reference)
        });
    }

    /// Drops every series of a probe that is no longer configured; a probe that comes back
    /// starts from zero.
    pub fn remove_probe(&self, target: &str, probe: &str) {
        self.exposition.remove(|family, labels| {
            !TARGET_FAMILIES.contains(&family)
                && label(labels, "target") == Some(target)
                && label(labels, "probe") == Some(probe)
        });
    }

    /// Drops every series of a target that is no longer configured (its probes separately).
    pub fn remove_target(&self, target: &str) {
        self.exposition.remove(|family, labels| {
            TARGET_FAMILIES.contains(&family) && label(labels, "target") == Some(target)
        });
    }

    /// Records the outcome of a configuration load or reload.
    pub fn record_reload(&self, ok: bool, now_unix: f64) {
        self.reload_successful.set(i64::from(ok));
        if ok {
            self.reload_timestamp.set(now_unix);
        }
    }

    /// The exposition, text format 0.0.4.
    pub fn render(&self) -> String {
        let index = self.exposition.snapshot();
        let mut out = String::with_capacity(self.exposition.size_hint());
        index.encode(&mut out);
        #[cfg(target_os = "linux")]
        out.push_str(&self.process.text(tokio::time::Instant::now()));
        self.exposition.remember_size(out.len());
        out
    }
}

/// The `process_*` families, read from `/proc` at most once per [`ProcessMetrics::MAX_AGE`].
///
/// Reading them (`/proc/self/stat`, `limits`, a walk of `fd/`) costs more than encoding a few
/// hundred series, and their resolution is coarser than that anyway (the CPU counter is in whole
/// seconds), so a burst of scrapes shares one reading instead of repeating it (issue 6).
#[cfg(target_os = "linux")]
#[derive(Debug, Default)]
struct ProcessMetrics {
    collector: std::sync::OnceLock<prometheus::process_collector::ProcessCollector>,
    /// The last encoding and when it was read; the lock is held only to copy the pointer.
    last: Mutex<Option<(tokio::time::Instant, Arc<str>)>>,
}

#[cfg(target_os = "linux")]
impl ProcessMetrics {
    const MAX_AGE: Duration = Duration::from_secs(1);

    fn text(&self, now: tokio::time::Instant) -> Arc<str> {
        if let Some((read_at, text)) = &*lock(&self.last) {
            if now.saturating_duration_since(*read_at) < Self::MAX_AGE {
                return Arc::clone(text);
            }
        }
        let collector = self
            .collector
            .get_or_init(prometheus::process_collector::ProcessCollector::for_self);
        let mut families = prometheus::core::Collector::collect(collector);
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let mut text = String::new();
        if let Err(err) = prometheus::TextEncoder::new().encode_utf8(&families, &mut text) {
            tracing::error!(error = %err, "cannot encode the process metrics");
        }
        let text: Arc<str> = text.into();
        *lock(&self.last) = Some((now, Arc::clone(&text)));
        text
    }
}

/// One probe's series, resolved once.
#[derive(Clone, Debug)]
pub struct ProbeMetrics {
    runs: [Counter; Outcome::ALL.len()],
    codes: [Counter; CODE_LABELS.len()],
    skipped: [Counter; SkipReason::ALL.len()],
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
            "lastfm_http_responses_total",
            &[("status", status)],
        );
    }

    fn count_mismatch(&self, kind: &'static str, code: &'static str, status: &'static str) {
        self.count(
            &self.mismatch_series,
            [kind, code, status],
            "lastfm_status_mismatch_total",
            &[("kind", kind), ("code", code), ("status", status)],
        );
    }

    /// Counts one on the series `key` names in `known`, resolving it (the probe's labels plus
    /// `labels`) the first time.
    fn count<K: PartialEq>(
        &self,
        known: &Mutex<Vec<(K, Counter)>>,
        key: K,
        family: &'static str,
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

/// Counts one `failure` on its series of `all` (every pair is there from start-up).
fn count_failure(all: &[(TransportFailure, Counter)], failure: TransportFailure) {
    if let Some((_, counter)) = all.iter().find(|(f, _)| *f == failure) {
        counter.inc();
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

/// A target's certificate expiry gauge, entered in the exposition at the first handshake: a
/// plain-http target never has one, and a zero would read as "expired in 1970".
#[derive(Debug)]
struct NotAfter {
    target: String,
    exposition: Arc<Exposition>,
    gauge: Mutex<Option<Gauge>>,
}

/// One target's series.
#[derive(Clone, Debug)]
pub struct TargetMetrics {
    available: IntGauge,
    conditions: [IntGauge; Condition::ALL.len()],
    backoff: Gauge,
    not_after: Arc<NotAfter>,
}

impl TargetMetrics {
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
        let mut gauge = lock(&self.not_after.gauge);
        let gauge = gauge.get_or_insert_with(|| {
            let mut batch = Batch::new(&self.not_after.exposition);
            let series = batch.series::<Gauge>(
                "lastfm_tls_certificate_not_after_timestamp_seconds",
                &[("target", self.not_after.target.as_str())],
            );
            batch.commit(&self.not_after.exposition);
            series
        });
        gauge.set(unix as f64);
    }
}

/// Locks plain data; a panic elsewhere cannot leave it unusable.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A kind of series value, as the exposition index holds it.
trait Cell: Clone {
    /// A new series at zero.
    fn fresh() -> Self;
    /// The handle in `value`, if it is of this kind.
    fn of(value: &Value) -> Option<&Self>;
    fn into_value(self) -> Value;
}

macro_rules! cell {
    ($cell:ident, $fresh:expr) => {
        impl Cell for $cell {
            fn fresh() -> Self {
                $fresh
            }
            fn of(value: &Value) -> Option<&Self> {
                match value {
                    Value::$cell(cell) => Some(cell),
                    _ => None,
                }
            }
            fn into_value(self) -> Value {
                Value::$cell(self)
            }
        }
    };
}

cell!(Counter, Counter::default());
cell!(IntGauge, IntGauge::default());
cell!(Gauge, Gauge::default());
cell!(Histogram, Histogram::new(&DURATION_BUCKETS));

/// Series being resolved against the exposition: one that exists already is shared, so a reload
/// (or a probe that comes back under the same labels) carries its values on; a missing one is
/// created at zero, and all of them enter the exposition together at [`Batch::commit`].
struct Batch {
    current: Arc<Index>,
    new: Vec<Entry>,
}

impl Batch {
    fn new(exposition: &Exposition) -> Self {
        Self {
            current: exposition.snapshot(),
            new: Vec::new(),
        }
    }

    /// The series of `family` with `labels`: the existing one (in the exposition or earlier in
    /// this batch), or a new one at zero.
    fn series<C: Cell>(&mut self, family: &'static str, labels: &[(&'static str, &str)]) -> C {
        let key = series_key(labels);
        let in_batch = self
            .new
            .iter()
            .find(|entry| entry.family == family && entry.key == key)
            .map(|entry| &entry.series.value);
        let existing = in_batch.or_else(|| {
            let family = self.current.families.get(family)?;
            family.series.get(&key).map(|series| &series.value)
        });
        if let Some(cell) = existing.and_then(C::of) {
            return cell.clone();
        }
        let cell = C::fresh();
        self.new
            .push(Entry::new(family, labels, cell.clone().into_value()));
        cell
    }

    fn commit(self, exposition: &Exposition) {
        let Self { current, new } = self;
        // Released first: while this snapshot lives, inserting would copy the whole index.
        drop(current);
        exposition.insert_all(new);
    }
}

/// The value of label `name`.
fn label<'a>(labels: &[(&str, &'a str)], name: &str) -> Option<&'a str> {
    labels
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, value)| *value)
}

/// The exposition index, swapped copy-on-write so that a scrape only clones a pointer.
#[derive(Debug, Default)]
struct Exposition {
    index: Mutex<Arc<Index>>,
    /// Length of the last rendering, so the next one allocates its buffer once.
    last_len: AtomicUsize,
}

impl Exposition {
    fn lock(&self) -> std::sync::MutexGuard<'_, Arc<Index>> {
        lock(&self.index)
    }

    /// The series as of now; later changes make a new index and leave this one alone.
    fn snapshot(&self) -> Arc<Index> {
        Arc::clone(&self.lock())
    }

    fn insert_all(&self, entries: Vec<Entry>) {
        if entries.is_empty() {
            return;
        }
        let mut guard = self.lock();
        // Copies the index only while a scrape still encodes the previous one.
        let index = Arc::make_mut(&mut guard);
        for entry in entries {
            index.insert_entry(entry);
        }
    }

    /// Removes the series `matches` selects, given their family and labels.
    fn remove(&self, matches: impl Fn(&str, &[(&str, &str)]) -> bool) {
        let mut guard = self.lock();
        let index = Arc::make_mut(&mut guard);
        for (name, family) in &mut index.families {
            let names = family.sorted_names();
            family.series.retain(|key, _| {
                let labels: Vec<(&str, &str)> = names
                    .iter()
                    .copied()
                    .zip(key.split(KEY_SEPARATOR))
                    .collect();
                !matches(name, &labels)
            });
        }
    }

    fn size_hint(&self) -> usize {
        self.last_len.load(Ordering::Relaxed).max(4096) + 1024
    }

    fn remember_size(&self, len: usize) {
        self.last_len.store(len, Ordering::Relaxed);
    }
}

/// Every family by name, each with its series by label values: the order of the text format.
#[derive(Debug, Default, Clone)]
struct Index {
    families: BTreeMap<&'static str, Family>,
}

impl Index {
    /// Declares a family; a name declared twice or outside `[a-zA-Z_:][a-zA-Z0-9_:]*` is a bug.
    fn add_family(
        &mut self,
        name: &'static str,
        help: &str,
        kind: Kind,
    ) -> Result<(), RegisterMetric> {
        let valid = name.chars().enumerate().all(|(i, c)| {
            c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
        });
        if !valid || name.is_empty() || self.families.contains_key(name) {
            return Err(RegisterMetric(name));
        }
        let mut header = String::new();
        if !help.is_empty() {
            header.push_str("# HELP ");
            header.push_str(name);
            header.push(' ');
            escape_into(&mut header, help, false);
            header.push('\n');
        }
        header.push_str("# TYPE ");
        header.push_str(name);
        header.push(' ');
        header.push_str(kind.as_str());
        header.push('\n');
        self.families.insert(
            name,
            Family {
                header,
                #[cfg(test)]
                help: help.to_owned(),
                #[cfg(test)]
                kind,
                declared: Vec::new(),
                series: BTreeMap::new(),
            },
        );
        Ok(())
    }

    fn insert(&mut self, family: &'static str, labels: &[(&'static str, &str)], value: Value) {
        self.insert_entry(Entry::new(family, labels, value));
    }

    fn insert_entry(&mut self, entry: Entry) {
        match self.families.get_mut(entry.family) {
            Some(family) => {
                if family.declared.is_empty() {
                    family.declared = entry.declared;
                }
                family.series.insert(entry.key, entry.series);
            }
            None => tracing::error!(family = entry.family, "series of an undeclared family"),
        }
    }

    fn encode(&self, out: &mut String) {
        for (name, family) in &self.families {
            // Like `gather`, a family without series is left out.
            if family.series.is_empty() {
                continue;
            }
            out.push_str(&family.header);
            for series in family.series.values() {
                series.encode(name, out);
            }
        }
    }
}

/// A metric family: its `# HELP`/`# TYPE` header and its series.
#[derive(Debug, Clone)]
struct Family {
    header: String,
    /// The help text and type the header was made of, for the reference encoding in the tests.
    #[cfg(test)]
    help: String,
    #[cfg(test)]
    kind: Kind,
    /// The label names in the order the series were created with.
    declared: Vec<&'static str>,
    /// By label values in the order of the label names (what `gather` sorts by), joined by
    /// [`KEY_SEPARATOR`]: one allocation per series, and the same order as comparing the values
    /// one by one, as no label value holds a NUL (config names cannot).
    series: BTreeMap<String, Series>,
}

impl Family {
    /// The label names in the order of a series key's values.
    fn sorted_names(&self) -> Vec<&'static str> {
        let mut names = self.declared.clone();
        names.sort_unstable();
        names
    }
}

/// Joins label values in a series key; sorts below every character a label value holds.
const KEY_SEPARATOR: char = '\0';

#[derive(Debug, Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

/// Where a series keeps its value.
#[derive(Debug, Clone)]
enum Value {
    Counter(Counter),
    IntGauge(IntGauge),
    Gauge(Gauge),
    Histogram(Histogram),
}

/// One series: the text that precedes its value, and where its value lives.
#[derive(Debug, Clone)]
struct Series {
    /// `{a="x",b="y"}`: sorted by name and escaped; empty without labels.
    block: String,
    value: Value,
}

impl Series {
    fn encode(&self, name: &str, out: &mut String) {
        match &self.value {
            Value::Counter(counter) => {
                self.sample(name, "", out);
                push_u64(out, counter.get());
            }
            Value::IntGauge(gauge) => {
                self.sample(name, "", out);
                push_i64(out, gauge.get());
            }
            Value::Gauge(gauge) => {
                self.sample(name, "", out);
                push_f64(out, gauge.get());
            }
            Value::Histogram(histogram) => {
                let snapshot = histogram.snapshot();
                for (bound, cumulative) in snapshot.buckets {
                    self.bucket(name, out);
                    if bound.is_infinite() {
                        out.push_str("+Inf");
                    } else {
                        push_f64(out, bound);
                    }
                    out.push_str("\"} ");
                    push_u64(out, cumulative);
                    out.push('\n');
                }
                self.sample(name, "_sum", out);
                push_f64(out, snapshot.sum);
                out.push('\n');
                self.sample(name, "_count", out);
                push_u64(out, snapshot.count);
            }
        }
        out.push('\n');
    }

    /// Writes `name_bucket{labels,le="`, up to the bound.
    fn bucket(&self, name: &str, out: &mut String) {
        out.push_str(name);
        out.push_str("_bucket");
        match self.block.strip_suffix('}') {
            Some(open) => {
                out.push_str(open);
                out.push(',');
            }
            None => out.push('{'),
        }
        out.push_str("le=\"");
    }

    /// Writes `name{labels} `, up to the value.
    fn sample(&self, name: &str, suffix: &str, out: &mut String) {
        out.push_str(name);
        out.push_str(suffix);
        out.push_str(&self.block);
        out.push(' ');
    }
}

/// A series about to enter the index.
#[derive(Debug)]
struct Entry {
    family: &'static str,
    declared: Vec<&'static str>,
    key: String,
    series: Series,
}

impl Entry {
    fn new(family: &'static str, labels: &[(&'static str, &str)], value: Value) -> Self {
        let mut block = String::new();
        for (i, (name, value)) in sorted(labels).iter().enumerate() {
            block.push(if i == 0 { '{' } else { ',' });
            block.push_str(name);
            block.push_str("=\"");
            escape_into(&mut block, value, true);
            block.push('"');
        }
        if !block.is_empty() {
            block.push('}');
        }
        Self {
            family,
            declared: labels.iter().map(|(name, _)| *name).collect(),
            key: series_key(labels),
            series: Series { block, value },
        }
    }
}

fn sorted<'a>(labels: &[(&'static str, &'a str)]) -> Vec<(&'static str, &'a str)> {
    let mut sorted = labels.to_vec();
    sorted.sort_unstable_by_key(|(name, _)| *name);
    sorted
}

/// A series' key in its family: the label values in the order of their names.
fn series_key(labels: &[(&'static str, &str)]) -> String {
    let mut key = String::new();
    for (i, (_, value)) in sorted(labels).iter().enumerate() {
        if i > 0 {
            key.push(KEY_SEPARATOR);
        }
        key.push_str(value);
    }
    key
}

/// The text format's escaping: `\` and newline always, `"` in label values.
fn escape_into(out: &mut String, text: &str, quotes: bool) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quotes => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// Integers up to 2^53 print the same as the `f64` the text encoder formatted them as.
const EXACT_IN_F64: u64 = 1 << 53;

fn push_u64(out: &mut String, value: u64) {
    if value <= EXACT_IN_F64 {
        out.push_str(itoa::Buffer::new().format(value));
    } else {
        push_f64_raw(out, value as f64);
    }
}

fn push_i64(out: &mut String, value: i64) {
    if value.unsigned_abs() <= EXACT_IN_F64 {
        out.push_str(itoa::Buffer::new().format(value));
    } else {
        push_f64_raw(out, value as f64);
    }
}

/// A float as `f64::to_string` writes it (what the text encoder used), whole numbers fast.
pub(crate) fn push_f64(out: &mut String, value: f64) {
    let whole = value.fract() == 0.0 && value.abs() <= EXACT_IN_F64 as f64;
    if whole && !(value == 0.0 && value.is_sign_negative()) {
        out.push_str(itoa::Buffer::new().format(value as i64));
    } else {
        push_f64_raw(out, value);
    }
}

fn push_f64_raw(out: &mut String, value: f64) {
    use std::fmt::Write as _;
    let _ = write!(out, "{value}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_probe_exports_every_outcome_and_code_at_zero() {
        let metrics = Metrics::try_new("1.2.3", "abc").unwrap();
        metrics.probe("lastfm", "artist.getInfo", Duration::from_secs(60));
        metrics
            .target("lastfm")
            .set(true, |_| false, Duration::ZERO);
        let text = metrics.render();
        for outcome in Outcome::ALL {
            let line = format!(
                "lastfm_probe_runs_total{{outcome=\"{}\",probe=\"artist.getInfo\",target=\"lastfm\"}} 0",
                outcome.as_label()
            );
            assert!(text.contains(&line), "missing {line}");
        }
        for code in CODE_LABELS {
            let line = format!(
                "lastfm_api_errors_total{{code=\"{code}\",probe=\"artist.getInfo\",target=\"lastfm\"}} 0"
            );
            assert!(text.contains(&line), "missing {line}");
        }
        assert!(
            text.contains("lastfm_condition{condition=\"api_key_suspended\",target=\"lastfm\"} 0")
        );
        assert!(text.contains("lastfm_monitor_build_info{revision=\"abc\",version=\"1.2.3\"} 1"));
        assert!(text.contains(
            "lastfm_probe_interval_seconds{probe=\"artist.getInfo\",target=\"lastfm\"} 60"
        ));
        assert!(text.contains("Values come from the last scheduled run"));
    }

    fn verdict(
        outcome: Outcome,
        status: Option<u16>,
        code: Option<u32>,
        mismatch: Option<crate::classify::Mismatch>,
    ) -> Classification {
        Classification {
            outcome,
            http_status: status,
            error_code: code,
            detail: None,
            failure: None,
            mismatch,
            blame: None,
            met_expectation: outcome == Outcome::Success,
            api_healthy: outcome == Outcome::Success,
            raises: Vec::new(),
            retry_after: None,
        }
    }

    #[test]
    fn render_is_byte_for_byte_what_the_text_encoder_writes() {
        let metrics = Metrics::try_new("1.2.3", "rev\"with\\odd\nchars").unwrap();
        let plain = metrics.probe("lastfm", "artist.getInfo", Duration::from_secs(60));
        let odd = metrics.probe("lastfm", "a\"b\\c\nd", Duration::from_millis(1500));
        metrics.probe("libre", "gone", Duration::from_secs(60));
        metrics.target("lastfm").set(
            false,
            |c| c == Condition::RateLimited,
            Duration::from_millis(2500),
        );
        metrics.target("libre").set(true, |_| false, Duration::ZERO);
        let mismatch = |kind, code, status| crate::classify::Mismatch { kind, code, status };
        plain.record_run(
            &verdict(Outcome::Success, Some(200), None, None),
            Duration::from_millis(120),
            &PhaseTimings::default(),
            1_764_000_000.25,
        );
        plain.record_run(
            &verdict(
                Outcome::ApiError,
                Some(200),
                Some(8),
                Some(mismatch(MismatchKind::ErrorWithSuccessStatus, Some(8), 200)),
            ),
            Duration::from_millis(3300),
            &PhaseTimings::default(),
            1_764_000_060.5,
        );
        odd.record_run(
            &verdict(
                Outcome::ApiError,
                Some(418),
                Some(99),
                Some(mismatch(
                    MismatchKind::StatusDisagreesWithCode,
                    Some(99),
                    418,
                )),
            ),
            Duration::from_secs(40),
            &PhaseTimings::default(),
            1_764_000_061.0,
        );
        odd.record_run(
            &verdict(Outcome::Timeout, None, None, None),
            Duration::from_secs(10),
            &PhaseTimings::default(),
            1_764_000_062.0,
        );
        odd.record_skip(SkipReason::Overrun, 3);
        metrics.remove_probe("libre", "gone");
        metrics.remove_target("libre");
        metrics.record_reload(true, 1_764_000_000.123);

        let ours = metrics.render();
        let ours = ours.split("# HELP process_").next().unwrap();
        let durations = [
            (["lastfm", "artist.getInfo"], 0.12),
            (["lastfm", "artist.getInfo"], 3.3),
            (["lastfm", "a\"b\\c\nd"], 40.0),
            (["lastfm", "a\"b\\c\nd"], 10.0),
        ];
        assert_eq!(ours, oracle(&metrics, &durations));
        assert!(!ours.contains("libre"), "removed series are gone");
        assert!(
            ours.contains("status=\"4xx\""),
            "sparse series appear once used"
        );
    }

    /// The same series with the same values, built from the prometheus crate's own types and
    /// written by its `TextEncoder`: the reference our encoder must match. Histograms cannot be
    /// set, so their observations are replayed: `(target and probe, seconds)`.
    fn oracle(metrics: &Metrics, durations: &[([&str; 2], f64)]) -> String {
        use prometheus::Encoder as _;
        use prometheus::core::Collector;
        let registry = prometheus::Registry::new();
        let index = metrics.exposition.snapshot();
        for (name, family) in &index.families {
            let opts = prometheus::Opts::new(*name, family.help.clone());
            let names = family.sorted_names();
            let declared = &family.declared;
            let collector: Box<dyn Collector> = match family.kind {
                Kind::Histogram => {
                    let vec = prometheus::HistogramVec::new(
                        prometheus::HistogramOpts::from(opts).buckets(DURATION_BUCKETS.to_vec()),
                        declared,
                    )
                    .unwrap();
                    for series in family.series.values() {
                        // A series observed nothing yet still appears, at zero.
                        assert!(matches!(series.value, Value::Histogram(_)));
                    }
                    for key in family.series.keys() {
                        vec.with_label_values(&values_of(key, &names, declared));
                    }
                    for (labels, seconds) in durations {
                        vec.with_label_values(labels).observe(*seconds);
                    }
                    Box::new(vec)
                }
                Kind::Counter => {
                    let vec = prometheus::IntCounterVec::new(opts, declared).unwrap();
                    for (key, series) in &family.series {
                        let Value::Counter(counter) = &series.value else {
                            panic!("{name} mixes kinds")
                        };
                        vec.with_label_values(&values_of(key, &names, declared))
                            .inc_by(counter.get());
                    }
                    Box::new(vec)
                }
                Kind::Gauge => {
                    let ints = prometheus::IntGaugeVec::new(opts.clone(), declared).unwrap();
                    let floats = prometheus::GaugeVec::new(opts, declared).unwrap();
                    let mut any_float = false;
                    for (key, series) in &family.series {
                        let values = values_of(key, &names, declared);
                        match &series.value {
                            Value::IntGauge(gauge) => {
                                ints.with_label_values(&values).set(gauge.get());
                            }
                            Value::Gauge(gauge) => {
                                any_float = true;
                                floats.with_label_values(&values).set(gauge.get());
                            }
                            _ => panic!("{name} mixes kinds"),
                        }
                    }
                    if any_float {
                        Box::new(floats)
                    } else {
                        Box::new(ints)
                    }
                }
            };
            registry.register(collector).unwrap();
        }
        let mut text = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&registry.gather(), &mut text)
            .unwrap();
        String::from_utf8(text).unwrap()
    }

    /// A series key's label values, in the order of `declared`.
    fn values_of<'a>(key: &'a str, sorted: &[&str], declared: &[&str]) -> Vec<&'a str> {
        let labels: Vec<(&str, &str)> = sorted
            .iter()
            .copied()
            .zip(key.split(KEY_SEPARATOR))
            .collect();
        declared
            .iter()
            .map(|name| label(&labels, name).unwrap())
            .collect()
    }

    #[test]
    fn a_family_declared_twice_or_badly_named_is_refused() {
        let mut index = Index::default();
        assert!(index.add_family("lastfm_x", "help", Kind::Gauge).is_ok());
        assert!(index.add_family("lastfm_x", "help", Kind::Gauge).is_err());
        assert!(index.add_family("9lastfm", "help", Kind::Gauge).is_err());
        assert!(index.add_family("lastfm-x", "help", Kind::Gauge).is_err());
        assert!(index.add_family("", "help", Kind::Gauge).is_err());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn render_ends_with_the_process_metrics() {
        let text = Metrics::try_new("1", "r").unwrap().render();
        assert!(text.contains("\n# HELP process_cpu_seconds_total "));
        assert!(text.contains("\nprocess_resident_memory_bytes "));
    }

    #[test]
    fn registering_a_probe_again_shares_its_series_and_a_removed_one_starts_at_zero() {
        let metrics = Metrics::try_new("1", "r").unwrap();
        let first = metrics.probe("lastfm", "kept", Duration::from_secs(60));
        first.record_run(
            &verdict(Outcome::ApiError, Some(404), Some(6), None),
            Duration::from_millis(100),
            &PhaseTimings::default(),
            1.0,
        );
        first.record_skip(SkipReason::Overrun, 2);
        let runs =
            "lastfm_probe_runs_total{outcome=\"api_error\",probe=\"kept\",target=\"lastfm\"}";
        let status = "lastfm_http_responses_total{probe=\"kept\",status=\"404\",target=\"lastfm\"}";
        let count = "lastfm_probe_duration_seconds_count{probe=\"kept\",target=\"lastfm\"}";

        // A reload registers the probe again: the values carry on and new runs add to them.
        let again = metrics.probe("lastfm", "kept", Duration::from_secs(30));
        again.record_run(
            &verdict(Outcome::ApiError, Some(404), Some(6), None),
            Duration::from_millis(100),
            &PhaseTimings::default(),
            2.0,
        );
        let text = metrics.render();
        for line in [
            format!("{runs} 2"),
            format!("{status} 2"),
            format!("{count} 2"),
            "lastfm_probe_interval_seconds{probe=\"kept\",target=\"lastfm\"} 30".to_owned(),
        ] {
            assert!(text.contains(&line), "missing {line}\n{text}");
        }
        assert_eq!(text.matches(runs).count(), 1, "one series, not two");

        metrics.remove_probe("lastfm", "kept");
        let back = metrics.probe("lastfm", "kept", Duration::from_secs(30));
        back.record_run(
            &verdict(Outcome::ApiError, Some(404), Some(6), None),
            Duration::from_millis(100),
            &PhaseTimings::default(),
            3.0,
        );
        let text = metrics.render();
        assert!(text.contains(&format!("{runs} 1")), "{text}");
        assert!(text.contains(&format!("{status} 1")), "{text}");
    }

    #[test]
    fn removing_a_probe_drops_its_series() {
        let metrics = Metrics::try_new("1", "r").unwrap();
        metrics.probe("lastfm", "gone", Duration::from_secs(60));
        metrics.probe("lastfm", "kept", Duration::from_secs(60));
        metrics.remove_probe("lastfm", "gone");
        let text = metrics.render();
        assert!(!text.contains("probe=\"gone\""));
        assert!(text.contains("probe=\"kept\""));
    }
}

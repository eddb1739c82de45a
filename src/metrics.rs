//! The Prometheus metrics of SPEC §7: one registry, registered once, rendered on demand.
//!
//! [`Metrics`] owns a private registry (never the global one, so each test builds its own) and
//! hands out per-probe and per-target handles whose series are resolved once, at registration:
//! recording a run touches atomics only, and `/metrics` never waits on a probe. Every series of a
//! known label value is created at zero when a probe is registered, so `increase()` and alerts see
//! the first event. Label values come from config (`target`, `probe`) or from `as_label()` of a
//! closed enum, never from upstream text.
//!
//! Rendering does not go through `Registry::gather`, which rebuilds every series as a protobuf
//! message on each scrape (label strings cloned, families merged and sorted) and cost about
//! 0.5 µs per series (issue 6). Instead each series, when it is created, is also entered in an
//! `Exposition` index that keeps its label block escaped and sorted, beside the handle whose
//! atomics hold its value; a scrape copies those prefixes and formats the numbers. The index is
//! copy-on-write behind an `Arc`: a scrape takes a snapshot under a lock held only to clone a
//! pointer, so encoding never blocks a probe and a probe never blocks a scrape. The text is byte
//! for byte what `TextEncoder` wrote (families by name, series by label values; a test checks).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::core::{Collector, Metric as _};
use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::classify::{
    CODE_LABELS, Classification, Condition, MismatchKind, Outcome, code_index, code_label,
    status_label,
};
use crate::politeness::SkipReason;

/// Latency buckets (seconds): SLO thresholds at 0.25, 0.5, 1 and 2.5 s, up to the longest timeout.
const DURATION_BUCKETS: [f64; 10] = [0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

const CACHED: &str = "Values come from the last scheduled run, not from the scrape.";

/// The families whose series belong to a target rather than to one of its probes.
const TARGET_FAMILIES: [&str; 3] = [
    "lastfm_service_available",
    "lastfm_condition",
    "lastfm_target_backoff_seconds",
];

/// Registration failed: a name or label clash, a bug caught at start-up.
#[derive(Debug, thiserror::Error)]
#[error("cannot register metric: {0}")]
pub struct RegisterMetric(#[from] prometheus::Error);

/// All metrics. Cheap to clone: handles share the series.
#[derive(Clone, Debug)]
pub struct Metrics {
    /// Holds every family once, so a name or label clash fails at start-up.
    registry: Registry,
    /// What `/metrics` renders: every series created through the vectors below.
    exposition: Arc<Exposition>,
    /// `process_*` (Linux only).
    #[cfg(target_os = "linux")]
    process: Arc<ProcessMetrics>,
    runs: IntCounterVec,
    api_errors: IntCounterVec,
    http_responses: IntCounterVec,
    mismatches: IntCounterVec,
    duration: HistogramVec,
    success: IntGaugeVec,
    http_status: IntGaugeVec,
    last_error_code: IntGaugeVec,
    last_run: GaugeVec,
    last_success: GaugeVec,
    interval: GaugeVec,
    skipped: IntCounterVec,
    available: IntGaugeVec,
    condition: IntGaugeVec,
    backoff: GaugeVec,
    reload_successful: IntGauge,
    reload_timestamp: Gauge,
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn try_new(version: &str, revision: &str) -> Result<Self, RegisterMetric> {
        let registry = Registry::new_custom(None, None)?;
        let mut index = Index::default();
        // Declares a family to the exposition index and returns its options for the vector.
        let mut family = |name: &'static str, help: &str, kind: Kind| {
            index.add_family(name, help, kind);
            Opts::new(name, help)
        };
        let tp = ["target", "probe"];
        let duration_help = "Duration of probe runs, from sending the request to the end of the body or the failure.";
        family(
            "lastfm_probe_duration_seconds",
            duration_help,
            Kind::Histogram,
        );
        let metrics = Self {
            runs: IntCounterVec::new(
                family(
                    "lastfm_probe_runs_total",
                    "Probe runs by outcome (success, api_error, http_error, malformed, check_failed, timeout, connection_error, body_too_large).",
                    Kind::Counter,
                ),
                &["target", "probe", "outcome"],
            )?,
            api_errors: IntCounterVec::new(
                family(
                    "lastfm_api_errors_total",
                    "Last.fm error payloads by error code (unlisted codes as \"other\"), whatever the HTTP status.",
                    Kind::Counter,
                ),
                &["target", "probe", "code"],
            )?,
            http_responses: IntCounterVec::new(
                family(
                    "lastfm_http_responses_total",
                    "HTTP responses by status (unlisted statuses as their class, e.g. \"4xx\").",
                    Kind::Counter,
                ),
                &["target", "probe", "status"],
            )?,
            mismatches: IntCounterVec::new(
                family(
                    "lastfm_status_mismatch_total",
                    "Runs whose HTTP status disagrees with the payload (error_with_success_status, success_with_error_status, status_disagrees_with_code).",
                    Kind::Counter,
                ),
                &["target", "probe", "kind", "code", "status"],
            )?,
            duration: HistogramVec::new(
                HistogramOpts::new("lastfm_probe_duration_seconds", duration_help)
                    .buckets(DURATION_BUCKETS.to_vec()),
                &tp,
            )?,
            success: IntGaugeVec::new(
                family(
                    "lastfm_probe_success",
                    &format!("1 if the last run met the probe's expectation, else 0. {CACHED}"),
                    Kind::Gauge,
                ),
                &tp,
            )?,
            http_status: IntGaugeVec::new(
                family(
                    "lastfm_probe_http_status_code",
                    &format!("HTTP status of the last run, 0 when there was no response. {CACHED}"),
                    Kind::Gauge,
                ),
                &tp,
            )?,
            last_error_code: IntGaugeVec::new(
                family(
                    "lastfm_probe_last_error_code",
                    &format!("Last.fm error code of the last run, 0 when none. {CACHED}"),
                    Kind::Gauge,
                ),
                &tp,
            )?,
            last_run: GaugeVec::new(
                family(
                    "lastfm_probe_last_run_timestamp_seconds",
                    &format!("Unix time the last run ended. {CACHED}"),
                    Kind::Gauge,
                ),
                &tp,
            )?,
            last_success: GaugeVec::new(
                family(
                    "lastfm_probe_last_success_timestamp_seconds",
                    &format!(
                        "Unix time of the last run that met its expectation, 0 if none yet. {CACHED}"
                    ),
                    Kind::Gauge,
                ),
                &tp,
            )?,
            interval: GaugeVec::new(
                family(
                    "lastfm_probe_interval_seconds",
                    "The probe's nominal gap between scheduled runs, for staleness alerts.",
                    Kind::Gauge,
                ),
                &tp,
            )?,
            skipped: IntCounterVec::new(
                family(
                    "lastfm_probe_skipped_total",
                    "Scheduled runs not sent, by reason (rate_limited, suspended, overrun).",
                    Kind::Counter,
                ),
                &["target", "probe", "reason"],
            )?,
            available: IntGaugeVec::new(
                family(
                    "lastfm_service_available",
                    &format!(
                        "1 unless down_after upstream failures in a row made the target unavailable; back after up_after healthy runs. {CACHED}"
                    ),
                    Kind::Gauge,
                ),
                &["target"],
            )?,
            condition: IntGaugeVec::new(
                family(
                    "lastfm_condition",
                    &format!(
                        "1 while a condition holds (service_offline, api_key_suspended, api_key_invalid, session_invalid, rate_limited). {CACHED}"
                    ),
                    Kind::Gauge,
                ),
                &["target", "condition"],
            )?,
            backoff: GaugeVec::new(
                family(
                    "lastfm_target_backoff_seconds",
                    "Remaining backoff of the target after a rate-limit answer, 0 when none.",
                    Kind::Gauge,
                ),
                &["target"],
            )?,
            reload_successful: IntGauge::with_opts(family(
                "lastfm_monitor_config_last_reload_successful",
                "1 if the last configuration load or reload succeeded, else 0.",
                Kind::Gauge,
            ))?,
            reload_timestamp: Gauge::with_opts(family(
                "lastfm_monitor_config_last_reload_success_timestamp_seconds",
                "Unix time of the last successful configuration load or reload.",
                Kind::Gauge,
            ))?,
            registry,
            exposition: Arc::default(),
            #[cfg(target_os = "linux")]
            process: Arc::default(),
        };
        let build_info = IntGaugeVec::new(
            family(
                "lastfm_monitor_build_info",
                "Always 1; labels carry the version and VCS revision of the running binary.",
                Kind::Gauge,
            ),
            &["version", "revision"],
        )?;
        let info = build_info.with_label_values(&[version, revision]);
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
        let collectors: [Box<dyn Collector>; 18] = [
            Box::new(metrics.runs.clone()),
            Box::new(metrics.api_errors.clone()),
            Box::new(metrics.http_responses.clone()),
            Box::new(metrics.mismatches.clone()),
            Box::new(metrics.duration.clone()),
            Box::new(metrics.success.clone()),
            Box::new(metrics.http_status.clone()),
            Box::new(metrics.last_error_code.clone()),
            Box::new(metrics.last_run.clone()),
            Box::new(metrics.last_success.clone()),
            Box::new(metrics.interval.clone()),
            Box::new(metrics.skipped.clone()),
            Box::new(metrics.available.clone()),
            Box::new(metrics.condition.clone()),
            Box::new(metrics.backoff.clone()),
            Box::new(metrics.reload_successful.clone()),
            Box::new(metrics.reload_timestamp.clone()),
            Box::new(build_info),
        ];
        for collector in collectors {
            metrics.registry.register(collector)?;
        }
        *metrics.exposition.lock() = Arc::new(index);
        Ok(metrics)
    }

    /// Creates (or finds) a probe's series, all known ones at zero.
    pub fn probe(&self, target: &str, probe: &str, interval: Duration) -> ProbeMetrics {
        let tp = [("target", target), ("probe", probe)];
        let mut new = Vec::new();
        let runs = Outcome::ALL.map(|o| {
            counter(
                &self.runs,
                "lastfm_probe_runs_total",
                &[tp[0], tp[1], ("outcome", o.as_label())],
                &mut new,
            )
        });
        let codes = CODE_LABELS.map(|c| {
            counter(
                &self.api_errors,
                "lastfm_api_errors_total",
                &[tp[0], tp[1], ("code", c)],
                &mut new,
            )
        });
        let skipped = SkipReason::ALL.map(|r| {
            counter(
                &self.skipped,
                "lastfm_probe_skipped_total",
                &[tp[0], tp[1], ("reason", r.as_label())],
                &mut new,
            )
        });
        // The quirk that matters most (an error delivered with 200) is visible from start-up.
        for code in CODE_LABELS {
            counter(
                &self.mismatches,
                "lastfm_status_mismatch_total",
                &[
                    tp[0],
                    tp[1],
                    ("kind", MismatchKind::ErrorWithSuccessStatus.as_label()),
                    ("code", code),
                    ("status", "200"),
                ],
                &mut new,
            );
        }
        counter(
            &self.http_responses,
            "lastfm_http_responses_total",
            &[tp[0], tp[1], ("status", "200")],
            &mut new,
        );
        let interval_gauge = gauge(
            &self.interval,
            "lastfm_probe_interval_seconds",
            &tp,
            &mut new,
        );
        interval_gauge.set(interval.as_secs_f64());
        let duration = self.duration.with_label_values(&[target, probe]);
        new.push(Entry::new(
            "lastfm_probe_duration_seconds",
            &tp,
            Value::Histogram(duration.clone()),
        ));
        let metrics = ProbeMetrics {
            runs,
            codes,
            skipped,
            duration,
            success: int_gauge(&self.success, "lastfm_probe_success", &tp, &mut new),
            http_status: int_gauge(
                &self.http_status,
                "lastfm_probe_http_status_code",
                &tp,
                &mut new,
            ),
            last_error_code: int_gauge(
                &self.last_error_code,
                "lastfm_probe_last_error_code",
                &tp,
                &mut new,
            ),
            last_run: gauge(
                &self.last_run,
                "lastfm_probe_last_run_timestamp_seconds",
                &tp,
                &mut new,
            ),
            last_success: gauge(
                &self.last_success,
                "lastfm_probe_last_success_timestamp_seconds",
                &tp,
                &mut new,
            ),
            sparse: Arc::new(Sparse {
                target: target.to_owned(),
                probe: probe.to_owned(),
                http_responses: self.http_responses.clone(),
                mismatches: self.mismatches.clone(),
                exposition: Arc::clone(&self.exposition),
                statuses: Mutex::default(),
                mismatch_series: Mutex::default(),
            }),
        };
        self.exposition.insert_all(new);
        metrics
    }

    /// Creates (or finds) a target's series: available, no condition, no backoff.
    pub fn target(&self, target: &str) -> TargetMetrics {
        let t = [("target", target)];
        let mut new = Vec::new();
        let available = int_gauge(&self.available, "lastfm_service_available", &t, &mut new);
        let conditions = Condition::ALL.map(|c| {
            int_gauge(
                &self.condition,
                "lastfm_condition",
                &[t[0], ("condition", c.as_label())],
                &mut new,
            )
        });
        let backoff = gauge(&self.backoff, "lastfm_target_backoff_seconds", &t, &mut new);
        self.exposition.insert_all(new);
        TargetMetrics {
            available,
            conditions,
            backoff,
        }
    }

    /// Drops every series of a probe that is no longer configured.
    pub fn remove_probe(&self, target: &str, probe: &str) {
        let removed = self.exposition.remove(|family, labels| {
            !TARGET_FAMILIES.contains(&family)
                && label(labels, "target") == Some(target)
                && label(labels, "probe") == Some(probe)
        });
        // The vectors forget them too, so a probe that comes back starts from zero.
        for (family, values) in removed {
            let values: Vec<&str> = values.iter().map(String::as_str).collect();
            let _ = match family {
                "lastfm_probe_runs_total" => self.runs.remove_label_values(&values),
                "lastfm_api_errors_total" => self.api_errors.remove_label_values(&values),
                "lastfm_http_responses_total" => self.http_responses.remove_label_values(&values),
                "lastfm_status_mismatch_total" => self.mismatches.remove_label_values(&values),
                "lastfm_probe_skipped_total" => self.skipped.remove_label_values(&values),
                "lastfm_probe_duration_seconds" => self.duration.remove_label_values(&values),
                "lastfm_probe_success" => self.success.remove_label_values(&values),
                "lastfm_probe_http_status_code" => self.http_status.remove_label_values(&values),
                "lastfm_probe_last_error_code" => self.last_error_code.remove_label_values(&values),
                "lastfm_probe_last_run_timestamp_seconds" => {
                    self.last_run.remove_label_values(&values)
                }
                "lastfm_probe_last_success_timestamp_seconds" => {
                    self.last_success.remove_label_values(&values)
                }
                "lastfm_probe_interval_seconds" => self.interval.remove_label_values(&values),
                _ => Ok(()),
            };
        }
    }

    /// Drops every series of a target that is no longer configured (its probes separately).
    pub fn remove_target(&self, target: &str) {
        let removed = self.exposition.remove(|family, labels| {
            TARGET_FAMILIES.contains(&family) && label(labels, "target") == Some(target)
        });
        for (family, values) in removed {
            let values: Vec<&str> = values.iter().map(String::as_str).collect();
            let _ = match family {
                "lastfm_service_available" => self.available.remove_label_values(&values),
                "lastfm_condition" => self.condition.remove_label_values(&values),
                "lastfm_target_backoff_seconds" => self.backoff.remove_label_values(&values),
                _ => Ok(()),
            };
        }
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
        let mut families = collector.collect();
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let mut text = String::new();
        if let Err(err) = TextEncoder::new().encode_utf8(&families, &mut text) {
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
    runs: [IntCounter; Outcome::ALL.len()],
    codes: [IntCounter; CODE_LABELS.len()],
    skipped: [IntCounter; SkipReason::ALL.len()],
    duration: Histogram,
    success: IntGauge,
    http_status: IntGauge,
    last_error_code: IntGauge,
    last_run: Gauge,
    last_success: Gauge,
    /// Statuses and mismatches are sparse: resolved on first use from a bounded label set.
    sparse: Arc<Sparse>,
}

impl ProbeMetrics {
    /// Records one run.
    pub fn record_run(&self, verdict: &Classification, elapsed: Duration, now_unix: f64) {
        self.runs[verdict.outcome.index()].inc();
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
    http_responses: IntCounterVec,
    mismatches: IntCounterVec,
    exposition: Arc<Exposition>,
    /// `status` label → its counter.
    statuses: Mutex<Vec<(&'static str, IntCounter)>>,
    /// (`kind`, `code`, `status`) labels → their counter.
    mismatch_series: Mutex<Vec<([&'static str; 3], IntCounter)>>,
}

impl Sparse {
    fn count_status(&self, status: &'static str) {
        let mut known = lock(&self.statuses);
        if let Some((_, counter)) = known.iter().find(|(s, _)| *s == status) {
            counter.inc();
            return;
        }
        let mut new = Vec::new();
        let series = counter(
            &self.http_responses,
            "lastfm_http_responses_total",
            &[
                ("target", &self.target),
                ("probe", &self.probe),
                ("status", status),
            ],
            &mut new,
        );
        self.exposition.insert_all(new);
        series.inc();
        known.push((status, series));
    }

    fn count_mismatch(&self, kind: &'static str, code: &'static str, status: &'static str) {
        let labels = [kind, code, status];
        let mut known = lock(&self.mismatch_series);
        if let Some((_, counter)) = known.iter().find(|(l, _)| *l == labels) {
            counter.inc();
            return;
        }
        let mut new = Vec::new();
        let series = counter(
            &self.mismatches,
            "lastfm_status_mismatch_total",
            &[
                ("target", &self.target),
                ("probe", &self.probe),
                ("kind", kind),
                ("code", code),
                ("status", status),
            ],
            &mut new,
        );
        self.exposition.insert_all(new);
        series.inc();
        known.push((labels, series));
    }
}

/// One target's series.
#[derive(Clone, Debug)]
pub struct TargetMetrics {
    available: IntGauge,
    conditions: [IntGauge; Condition::ALL.len()],
    backoff: Gauge,
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
}

/// Locks plain data; a panic elsewhere cannot leave it unusable.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Resolves a counter of `vec` (labels in the vector's order) and notes its exposition entry.
fn counter(
    vec: &IntCounterVec,
    family: &'static str,
    labels: &[(&'static str, &str)],
    new: &mut Vec<Entry>,
) -> IntCounter {
    let series = vec.with_label_values(&values(labels));
    new.push(Entry::new(family, labels, Value::Counter(series.clone())));
    series
}

/// As [`counter`], for an integer gauge.
fn int_gauge(
    vec: &IntGaugeVec,
    family: &'static str,
    labels: &[(&'static str, &str)],
    new: &mut Vec<Entry>,
) -> IntGauge {
    let series = vec.with_label_values(&values(labels));
    new.push(Entry::new(family, labels, Value::IntGauge(series.clone())));
    series
}

/// As [`counter`], for a float gauge.
fn gauge(
    vec: &GaugeVec,
    family: &'static str,
    labels: &[(&'static str, &str)],
    new: &mut Vec<Entry>,
) -> Gauge {
    let series = vec.with_label_values(&values(labels));
    new.push(Entry::new(family, labels, Value::Gauge(series.clone())));
    series
}

fn values<'a>(labels: &[(&'static str, &'a str)]) -> Vec<&'a str> {
    labels.iter().map(|(_, value)| *value).collect()
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

    /// Removes the series `matches` selects (given their labels) and returns their family and
    /// label values in the vector's order.
    fn remove(
        &self,
        matches: impl Fn(&str, &[(&str, &str)]) -> bool,
    ) -> Vec<(&'static str, Vec<String>)> {
        let mut guard = self.lock();
        let index = Arc::make_mut(&mut guard);
        let mut removed = Vec::new();
        for (name, family) in &mut index.families {
            let Family {
                declared, series, ..
            } = family;
            let mut names = declared.clone();
            names.sort_unstable();
            series.retain(|key, _| {
                let labels: Vec<(&str, &str)> = names
                    .iter()
                    .copied()
                    .zip(key.split(KEY_SEPARATOR))
                    .collect();
                if !matches(name, &labels) {
                    return true;
                }
                let values = declared
                    .iter()
                    .map(|n| label(&labels, n).unwrap_or_default().to_owned())
                    .collect();
                removed.push((*name, values));
                false
            });
        }
        removed
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
    fn add_family(&mut self, name: &'static str, help: &str, kind: Kind) {
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
                declared: Vec::new(),
                series: BTreeMap::new(),
            },
        );
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
    /// The label names in the vector's order (the order `remove_label_values` takes).
    declared: Vec<&'static str>,
    /// By label values in the order of the label names (what `gather` sorts by), joined by
    /// [`KEY_SEPARATOR`]: one allocation per series, and the same order as comparing the values
    /// one by one, as no label value holds a NUL (config names cannot).
    series: BTreeMap<String, Series>,
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
    Counter(IntCounter),
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
                let metric = histogram.metric();
                let proto = metric.get_histogram();
                let mut inf_seen = false;
                for bucket in proto.get_bucket() {
                    let bound = bucket.upper_bound();
                    self.bucket(name, out);
                    push_f64(out, bound);
                    out.push_str("\"} ");
                    push_u64(out, bucket.cumulative_count());
                    out.push('\n');
                    inf_seen |= bound.is_sign_positive() && bound.is_infinite();
                }
                if !inf_seen {
                    self.bucket(name, out);
                    out.push_str("+Inf\"} ");
                    push_u64(out, proto.get_sample_count());
                    out.push('\n');
                }
                self.sample(name, "_sum", out);
                push_f64(out, proto.get_sample_sum());
                out.push('\n');
                self.sample(name, "_count", out);
                push_u64(out, proto.get_sample_count());
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
        let mut sorted: Vec<(&str, &str)> = labels.to_vec();
        sorted.sort_unstable_by_key(|(name, _)| *name);
        let mut block = String::new();
        let mut key = String::new();
        for (i, (name, value)) in sorted.iter().enumerate() {
            block.push(if i == 0 { '{' } else { ',' });
            block.push_str(name);
            block.push_str("=\"");
            escape_into(&mut block, value, true);
            block.push('"');
            if i > 0 {
                key.push(KEY_SEPARATOR);
            }
            key.push_str(value);
        }
        if !block.is_empty() {
            block.push('}');
        }
        Self {
            family,
            declared: labels.iter().map(|(name, _)| *name).collect(),
            key,
            series: Series { block, value },
        }
    }
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
        use prometheus::Encoder as _;
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
            1_764_000_061.0,
        );
        odd.record_run(
            &verdict(Outcome::Timeout, None, None, None),
            Duration::from_secs(10),
            1_764_000_062.0,
        );
        odd.record_skip(SkipReason::Overrun, 3);
        metrics.remove_probe("libre", "gone");
        metrics.remove_target("libre");
        metrics.record_reload(true, 1_764_000_000.123);

        let ours = metrics.render();
        let ours = ours.split("# HELP process_").next().unwrap();
        let mut theirs = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&metrics.registry.gather(), &mut theirs)
            .unwrap();
        assert_eq!(ours, String::from_utf8(theirs).unwrap());
        assert!(!ours.contains("libre"), "removed series are gone");
        assert!(
            ours.contains("status=\"4xx\""),
            "sparse series appear once used"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn render_ends_with_the_process_metrics() {
        let text = Metrics::try_new("1", "r").unwrap().render();
        assert!(text.contains("\n# HELP process_cpu_seconds_total "));
        assert!(text.contains("\nprocess_resident_memory_bytes "));
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

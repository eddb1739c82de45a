//! The Prometheus metrics of SPEC §7: one registry, registered once, rendered on demand.
//!
//! [`Metrics`] owns a private registry (never the global one, so each test builds its own) and
//! hands out per-probe and per-target handles whose series are resolved once, at registration:
//! recording a run touches atomics only, and `/metrics` never waits on a probe. Every series of a
//! known label value is created at zero when a probe is registered, so `increase()` and alerts see
//! the first event. Label values come from config (`target`, `probe`) or from `as_label()` of a
//! closed enum, never from upstream text.

use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::classify::{
    CODE_LABELS, Classification, Condition, MismatchKind, Outcome, STATUS_LABELS, code_index,
    code_label, status_label,
};
use crate::politeness::SkipReason;

/// Latency buckets (seconds): SLO thresholds at 0.25, 0.5, 1 and 2.5 s, up to the longest timeout.
const DURATION_BUCKETS: [f64; 10] = [0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

const CACHED: &str = "Values come from the last scheduled run, not from the scrape.";

/// Registration failed: a name or label clash, a bug caught at start-up.
#[derive(Debug, thiserror::Error)]
#[error("cannot register metric: {0}")]
pub struct RegisterMetric(#[from] prometheus::Error);

/// All metrics. Cheap to clone: handles share the series.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Registry,
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

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help)
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn try_new(version: &str, revision: &str) -> Result<Self, RegisterMetric> {
        let registry = Registry::new_custom(None, None)?;
        let tp = ["target", "probe"];
        let metrics = Self {
            runs: IntCounterVec::new(
                opts(
                    "lastfm_probe_runs_total",
                    "Probe runs by outcome (success, api_error, http_error, malformed, check_failed, timeout, connection_error, body_too_large).",
                ),
                &["target", "probe", "outcome"],
            )?,
            api_errors: IntCounterVec::new(
                opts(
                    "lastfm_api_errors_total",
                    "Last.fm error payloads by error code (unlisted codes as \"other\"), whatever the HTTP status.",
                ),
                &["target", "probe", "code"],
            )?,
            http_responses: IntCounterVec::new(
                opts(
                    "lastfm_http_responses_total",
                    "HTTP responses by status (unlisted statuses as their class, e.g. \"4xx\").",
                ),
                &["target", "probe", "status"],
            )?,
            mismatches: IntCounterVec::new(
                opts(
                    "lastfm_status_mismatch_total",
                    "Runs whose HTTP status disagrees with the payload (error_with_success_status, success_with_error_status, status_disagrees_with_code).",
                ),
                &["target", "probe", "kind", "code", "status"],
            )?,
            duration: HistogramVec::new(
                HistogramOpts::new(
                    "lastfm_probe_duration_seconds",
                    "Duration of probe runs, from sending the request to the end of the body or the failure.",
                )
                .buckets(DURATION_BUCKETS.to_vec()),
                &tp,
            )?,
            success: IntGaugeVec::new(
                opts(
                    "lastfm_probe_success",
                    &format!("1 if the last run met the probe's expectation, else 0. {CACHED}"),
                ),
                &tp,
            )?,
            http_status: IntGaugeVec::new(
                opts(
                    "lastfm_probe_http_status_code",
                    &format!("HTTP status of the last run, 0 when there was no response. {CACHED}"),
                ),
                &tp,
            )?,
            last_error_code: IntGaugeVec::new(
                opts(
                    "lastfm_probe_last_error_code",
                    &format!("Last.fm error code of the last run, 0 when none. {CACHED}"),
                ),
                &tp,
            )?,
            last_run: GaugeVec::new(
                opts(
                    "lastfm_probe_last_run_timestamp_seconds",
                    &format!("Unix time the last run ended. {CACHED}"),
                ),
                &tp,
            )?,
            last_success: GaugeVec::new(
                opts(
                    "lastfm_probe_last_success_timestamp_seconds",
                    &format!("Unix time of the last run that met its expectation, 0 if none yet. {CACHED}"),
                ),
                &tp,
            )?,
            interval: GaugeVec::new(
                opts(
                    "lastfm_probe_interval_seconds",
                    "The probe's nominal gap between scheduled runs, for staleness alerts.",
                ),
                &tp,
            )?,
            skipped: IntCounterVec::new(
                opts(
                    "lastfm_probe_skipped_total",
                    "Scheduled runs not sent, by reason (rate_limited, suspended, overrun).",
                ),
                &["target", "probe", "reason"],
            )?,
            available: IntGaugeVec::new(
                opts(
                    "lastfm_service_available",
                    &format!("1 unless down_after upstream failures in a row made the target unavailable; back after up_after healthy runs. {CACHED}"),
                ),
                &["target"],
            )?,
            condition: IntGaugeVec::new(
                opts(
                    "lastfm_condition",
                    &format!("1 while a condition holds (service_offline, api_key_suspended, api_key_invalid, session_invalid, rate_limited). {CACHED}"),
                ),
                &["target", "condition"],
            )?,
            backoff: GaugeVec::new(
                opts(
                    "lastfm_target_backoff_seconds",
                    "Remaining backoff of the target after a rate-limit answer, 0 when none.",
                ),
                &["target"],
            )?,
            reload_successful: IntGauge::new(
                "lastfm_monitor_config_last_reload_successful",
                "1 if the last configuration load or reload succeeded, else 0.",
            )?,
            reload_timestamp: Gauge::new(
                "lastfm_monitor_config_last_reload_success_timestamp_seconds",
                "Unix time of the last successful configuration load or reload.",
            )?,
            registry,
        };
        let build_info = IntGaugeVec::new(
            opts(
                "lastfm_monitor_build_info",
                "Always 1; labels carry the version and VCS revision of the running binary.",
            ),
            &["version", "revision"],
        )?;
        build_info.with_label_values(&[version, revision]).set(1);
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
        #[cfg(target_os = "linux")]
        metrics.registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(metrics)
    }

    /// Creates (or finds) a probe's series, all known ones at zero.
    pub fn probe(&self, target: &str, probe: &str, interval: Duration) -> ProbeMetrics {
        let tp = [target, probe];
        let runs =
            Outcome::ALL.map(|o| self.runs.with_label_values(&[target, probe, o.as_label()]));
        let codes = CODE_LABELS.map(|c| self.api_errors.with_label_values(&[target, probe, c]));
        let skipped = SkipReason::ALL.map(|r| {
            self.skipped
                .with_label_values(&[target, probe, r.as_label()])
        });
        // The quirk that matters most (an error delivered with 200) is visible from start-up.
        for code in CODE_LABELS {
            self.mismatches.with_label_values(&[
                target,
                probe,
                MismatchKind::ErrorWithSuccessStatus.as_label(),
                code,
                "200",
            ]);
        }
        self.http_responses
            .with_label_values(&[target, probe, "200"]);
        self.interval
            .with_label_values(&tp)
            .set(interval.as_secs_f64());
        ProbeMetrics {
            target: target.to_owned(),
            probe: probe.to_owned(),
            runs,
            codes,
            skipped,
            duration: self.duration.with_label_values(&tp),
            success: self.success.with_label_values(&tp),
            http_status: self.http_status.with_label_values(&tp),
            last_error_code: self.last_error_code.with_label_values(&tp),
            last_run: self.last_run.with_label_values(&tp),
            last_success: self.last_success.with_label_values(&tp),
            http_responses: self.http_responses.clone(),
            mismatches: self.mismatches.clone(),
        }
    }

    /// Creates (or finds) a target's series: available, no condition, no backoff.
    pub fn target(&self, target: &str) -> TargetMetrics {
        let available = self.available.with_label_values(&[target]);
        let conditions =
            Condition::ALL.map(|c| self.condition.with_label_values(&[target, c.as_label()]));
        let backoff = self.backoff.with_label_values(&[target]);
        TargetMetrics {
            available,
            conditions,
            backoff,
        }
    }

    /// Drops every series of a probe that is no longer configured.
    pub fn remove_probe(&self, target: &str, probe: &str) {
        let tp = [target, probe];
        for outcome in Outcome::ALL {
            let _ = self
                .runs
                .remove_label_values(&[target, probe, outcome.as_label()]);
        }
        for code in CODE_LABELS {
            let _ = self.api_errors.remove_label_values(&[target, probe, code]);
        }
        for status in STATUS_LABELS {
            let _ = self
                .http_responses
                .remove_label_values(&[target, probe, status]);
        }
        for kind in MismatchKind::ALL {
            for code in CODE_LABELS.iter().chain(["none"].iter()) {
                for status in STATUS_LABELS {
                    let _ = self.mismatches.remove_label_values(&[
                        target,
                        probe,
                        kind.as_label(),
                        code,
                        status,
                    ]);
                }
            }
        }
        for reason in SkipReason::ALL {
            let _ = self
                .skipped
                .remove_label_values(&[target, probe, reason.as_label()]);
        }
        let _ = self.duration.remove_label_values(&tp);
        let _ = self.success.remove_label_values(&tp);
        let _ = self.http_status.remove_label_values(&tp);
        let _ = self.last_error_code.remove_label_values(&tp);
        let _ = self.last_run.remove_label_values(&tp);
        let _ = self.last_success.remove_label_values(&tp);
        let _ = self.interval.remove_label_values(&tp);
    }

    /// Drops every series of a target that is no longer configured (its probes separately).
    pub fn remove_target(&self, target: &str) {
        let _ = self.available.remove_label_values(&[target]);
        let _ = self.backoff.remove_label_values(&[target]);
        for condition in Condition::ALL {
            let _ = self
                .condition
                .remove_label_values(&[target, condition.as_label()]);
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
        let mut buffer = Vec::with_capacity(64 * 1024);
        let families = self.registry.gather();
        if let Err(err) = TextEncoder::new().encode(&families, &mut buffer) {
            tracing::error!(error = %err, "cannot encode metrics");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}

/// One probe's series, resolved once.
#[derive(Clone, Debug)]
pub struct ProbeMetrics {
    target: String,
    probe: String,
    runs: [IntCounter; Outcome::ALL.len()],
    codes: [IntCounter; CODE_LABELS.len()],
    skipped: [IntCounter; SkipReason::ALL.len()],
    duration: Histogram,
    success: IntGauge,
    http_status: IntGauge,
    last_error_code: IntGauge,
    last_run: Gauge,
    last_success: Gauge,
    /// Statuses and mismatches are sparse: resolved per run from a bounded label set.
    http_responses: IntCounterVec,
    mismatches: IntCounterVec,
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
            self.http_responses
                .with_label_values(&[&self.target, &self.probe, status_label(status)])
                .inc();
        }
        if let Some(mismatch) = verdict.mismatch {
            let code = mismatch.code.map_or("none", code_label);
            self.mismatches
                .with_label_values(&[
                    &self.target,
                    &self.probe,
                    mismatch.kind.as_label(),
                    code,
                    status_label(mismatch.status),
                ])
                .inc();
        }
    }

    /// Counts `n` skipped runs.
    pub fn record_skip(&self, reason: SkipReason, n: u64) {
        self.skipped[reason.index()].inc_by(n);
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

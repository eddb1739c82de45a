//! The Prometheus metrics: declared once, rendered on demand (README.md, "Metrics reference").
//!
//! The folder is split along its jobs, and this file is the front door the rest of the crate uses:
//! - `families.rs`: the closed set of families (the enum `Family`), each with its name, HELP text,
//!   type and owner in one table; no other file here spells a metric name.
//! - `handles.rs`: [`ProbeMetrics`], [`TargetMetrics`] and [`ReferenceMetrics`], the handles runs
//!   record through, and which series each creates.
//! - `exposition.rs`: the index of every series and its encoding in the text format.
//! - `cell.rs`: the atomics a series keeps its value in.
//!
//! [`Metrics`] owns the exposition, hands out the handles, removes the series of what a reload
//! dropped (by the owner the table gives each family) and renders `/metrics`: our families, then
//! the prometheus crate's `process_*` ones.

mod cell;
mod exposition;
mod families;
mod handles;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use self::cell::{Counter, Gauge, IntGauge};
pub use self::exposition::RegisterMetric;
pub(crate) use self::exposition::push_f64;
use self::exposition::{Batch, Cursor, Exposition, Index, label, lock};
use self::families::{Family, Owner};
pub use self::handles::{CanaryMetrics, ProbeMetrics, ReferenceMetrics, TargetMetrics};

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
    runs_abandoned: AbandonedRuns,
}

/// Counts the runs a reload abandoned (`lastfm_monitor_runs_abandoned_total`): process-wide, so
/// it outlives the probe and target whose series the reload removed.
#[derive(Clone, Debug)]
pub struct AbandonedRuns(Counter);

impl AbandonedRuns {
    /// One more run abandoned.
    pub fn inc(&self) {
        self.0.inc();
    }
}

impl Metrics {
    /// Declares every family of the table, and the process-wide series.
    pub fn try_new(version: &str, revision: &str) -> Result<Self, RegisterMetric> {
        let exposition = Arc::new(Exposition::declared()?);
        let mut batch = Batch::new(&exposition);
        batch
            .series::<IntGauge>(
                Family::BuildInfo,
                &[("version", version), ("revision", revision)],
            )
            .set(1);
        let metrics = Self {
            reload_successful: batch.series(Family::ConfigLastReloadSuccessful, &[]),
            reload_timestamp: batch.series(Family::ConfigLastReloadSuccessTimestamp, &[]),
            runs_abandoned: AbandonedRuns(batch.series(Family::RunsAbandoned, &[])),
            exposition: Arc::clone(&exposition),
            #[cfg(target_os = "linux")]
            process: Arc::default(),
        };
        batch.commit(&exposition);
        Ok(metrics)
    }

    /// Creates (or finds) a probe's series, all known ones at zero.
    pub fn probe(&self, target: &str, probe: &str, interval: Duration) -> ProbeMetrics {
        ProbeMetrics::register(&self.exposition, target, probe, interval)
    }

    /// Creates (or finds) a target's series: available, no condition, no backoff, and its
    /// availability objective (a ratio, set from the config on every registration).
    pub fn target(&self, target: &str, objective: f64) -> TargetMetrics {
        TargetMetrics::register(&self.exposition, target, objective)
    }

    /// Creates (or finds) a write-path canary's series: every result at zero, no run yet.
    pub fn canary(&self, target: &str, canary: &str) -> CanaryMetrics {
        CanaryMetrics::register(&self.exposition, target, canary)
    }

    /// Drops every series of a canary that is no longer configured (its steps' series go with
    /// their `probe` labels, through [`Metrics::remove_probe`]).
    pub fn remove_canary(&self, target: &str, canary: &str) {
        self.exposition
            .remove(Family::owned_by(Owner::Canary), |labels| {
                label(labels, "target") == Some(target) && label(labels, "canary") == Some(canary)
            });
    }

    /// Creates (or finds) a reference's series: down and never checked until its first check.
    pub fn reference(&self, reference: &str) -> ReferenceMetrics {
        ReferenceMetrics::register(&self.exposition, reference)
    }

    /// Drops every series of a reference that is no longer configured.
    pub fn remove_reference(&self, reference: &str) {
        self.exposition
            .remove(Family::owned_by(Owner::Reference), |labels| {
                label(labels, "reference") == Some(reference)
            });
    }

    /// Drops every series of a probe that is no longer configured; a probe that comes back
    /// starts from zero.
    pub fn remove_probe(&self, target: &str, probe: &str) {
        self.exposition
            .remove(Family::owned_by(Owner::Probe), |labels| {
                label(labels, "target") == Some(target) && label(labels, "probe") == Some(probe)
            });
    }

    /// Drops every series of a target that is no longer configured (its probes separately).
    pub fn remove_target(&self, target: &str) {
        self.exposition
            .remove(Family::owned_by(Owner::Target), |labels| {
                label(labels, "target") == Some(target)
            });
    }

    /// The process-wide count of runs a reload abandoned.
    pub fn abandoned_runs(&self) -> AbandonedRuns {
        self.runs_abandoned.clone()
    }

    /// Records the outcome of a configuration load or reload.
    pub fn record_reload(&self, ok: bool, now_unix: f64) {
        self.reload_successful.set(i64::from(ok));
        if ok {
            self.reload_timestamp.set(now_unix);
        }
    }

    /// The exposition in pieces of about `piece_bytes`, each encoded when it is asked for: a
    /// scrape streams it, so a slow scraper holds one piece of it, never the whole text.
    pub fn pieces(&self, piece_bytes: usize) -> Pieces {
        Pieces {
            index: self.exposition.snapshot(),
            cursor: Cursor::default(),
            piece_bytes,
            #[cfg(target_os = "linux")]
            process: Some(Arc::clone(&self.process)),
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

/// An exposition handed out piece by piece ([`Metrics::pieces`]): the series of the moment it was
/// made, their values as each piece is encoded.
#[derive(Debug)]
pub struct Pieces {
    index: Arc<Index>,
    cursor: Cursor,
    piece_bytes: usize,
    /// The `process_*` families, written last; `None` once written.
    #[cfg(target_os = "linux")]
    process: Option<Arc<ProcessMetrics>>,
}

impl Pieces {
    /// The next piece, `None` when the exposition is complete.
    pub fn next_piece(&mut self) -> Option<String> {
        let mut out = String::with_capacity(self.piece_bytes + 1024);
        let more = self
            .index
            .encode_some(&mut self.cursor, &mut out, self.piece_bytes);
        #[cfg(target_os = "linux")]
        if !more && let Some(process) = self.process.take() {
            out.push_str(&process.text(tokio::time::Instant::now()));
        }
        (more || !out.is_empty()).then_some(out)
    }
}

/// The `process_*` families, read from `/proc` at most once per [`ProcessMetrics::MAX_AGE`].
///
/// Reading them (`/proc/self/stat`, `limits`, a walk of `fd/`) costs more than encoding a few
/// hundred series, and their resolution is coarser than that anyway (the CPU counter is in whole
/// seconds), so a burst of scrapes shares one reading instead of repeating it (docs/PERFORMANCE.md,
/// "What changed in the third session").
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::{CODE_LABELS, Classification, Outcome};
    use crate::health::politeness::SkipReason;
    use crate::probe::PhaseTimings;

    /// A canary's series exist from registration (its last visible time only after a visible
    /// run), carry on when it is registered again (a reload), and go when it is removed.
    #[test]
    fn a_canarys_series_come_keep_and_go_with_it() {
        use crate::classify::{CanaryResult, IgnoredCode};
        let metrics = Metrics::try_new("1.2.3", "abc").unwrap();
        let canary = metrics.canary("lastfm", "np");
        let text = metrics.render();
        for result in CanaryResult::ALL {
            let line = format!(
                "lastfm_canary_runs_total{{canary=\"np\",result=\"{}\",target=\"lastfm\"}} 0",
                result.as_label()
            );
            assert!(text.contains(&line), "missing {line}");
        }
        assert!(!text.contains("lastfm_canary_last_visible_timestamp_seconds{"));
        canary.record(
            CanaryResult::Ignored,
            Some(IgnoredCode::of(2)),
            None,
            1_700_000_000.0,
        );
        canary.record(
            CanaryResult::Visible,
            None,
            Some(Duration::from_secs(3)),
            1_700_000_060.0,
        );
        let again = metrics.canary("lastfm", "np");
        again.record(CanaryResult::Visible, None, None, 1_700_000_120.0);
        let text = metrics.render();
        for line in [
            "lastfm_canary_runs_total{canary=\"np\",result=\"visible\",target=\"lastfm\"} 2",
            "lastfm_canary_ignored_total{canary=\"np\",code=\"2\",target=\"lastfm\"} 1",
            "lastfm_canary_last_result{canary=\"np\",result=\"visible\",target=\"lastfm\"} 1",
            "lastfm_canary_last_result{canary=\"np\",result=\"ignored\",target=\"lastfm\"} 0",
            "lastfm_canary_visible_seconds_bucket{canary=\"np\",target=\"lastfm\",le=\"5\"} 1",
            "lastfm_canary_last_visible_timestamp_seconds{canary=\"np\",target=\"lastfm\"} 1700000120",
        ] {
            assert!(text.contains(line), "missing {line}\n{text}");
        }
        metrics.remove_canary("lastfm", "np");
        assert!(!metrics.render().contains("canary=\"np\""));
    }

    #[test]
    fn a_fresh_probe_exports_every_outcome_and_code_at_zero() {
        let metrics = Metrics::try_new("1.2.3", "abc").unwrap();
        metrics.probe("lastfm", "artist.getInfo", Duration::from_secs(60));
        metrics
            .target("lastfm", 0.995)
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
        assert!(
            text.contains("lastfm_target_availability_objective_ratio{target=\"lastfm\"} 0.995")
        );
        // A reload registers the target again with its new objective.
        metrics.target("lastfm", 0.999);
        assert!(
            metrics
                .render()
                .contains("lastfm_target_availability_objective_ratio{target=\"lastfm\"} 0.999")
        );
    }

    /// A classification with the given outcome, status, code and mismatch.
    pub(super) fn verdict(
        outcome: Outcome,
        status: Option<u16>,
        code: Option<u32>,
        mismatch: Option<crate::classify::Mismatch>,
    ) -> Classification {
        Classification {
            http_status: status,
            error_code: code,
            mismatch,
            met_expectation: outcome == Outcome::Success,
            api_healthy: outcome == Outcome::Success,
            ..Classification::new(outcome)
        }
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

    #[test]
    fn removing_a_target_or_a_reference_drops_only_its_series() {
        let metrics = Metrics::try_new("1", "r").unwrap();
        metrics.probe("gone", "kept", Duration::from_secs(60));
        for target in ["gone", "kept"] {
            metrics.target(target, 0.995).set_certificate_not_after(1);
            metrics.reference(target);
        }
        metrics.remove_target("gone");
        metrics.remove_reference("gone");
        let text = metrics.render();
        for family in [
            "lastfm_service_available",
            "lastfm_condition",
            "lastfm_target_backoff",
            "lastfm_target_availability_objective_ratio",
        ] {
            assert!(
                !text.contains(&format!("{family}{{target=\"gone\"")),
                "{family}"
            );
        }
        assert!(
            !text.contains("lastfm_tls_certificate_not_after_timestamp_seconds{target=\"gone\"}")
        );
        assert!(!text.contains("reference=\"gone\""));
        assert!(text.contains("lastfm_service_available{target=\"kept\"} 0"));
        assert!(text.contains("lastfm_target_availability_objective_ratio{target=\"kept\"} 0.995"));
        assert!(
            text.contains("lastfm_tls_certificate_not_after_timestamp_seconds{target=\"kept\"} 1")
        );
        assert!(text.contains("lastfm_reference_up{reference=\"kept\"} 0"));
        // The probe's series stay: a probe is removed on its own.
        assert!(text.contains("lastfm_probe_success{probe=\"kept\",target=\"gone\"} 0"));
    }
}

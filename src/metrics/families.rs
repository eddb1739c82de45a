//! Every metric family the monitor exports, declared once: [`Family`] is the closed set, and
//! [`Family::declaration`] its one table of name, HELP text, type and owner.
//!
//! Everything else names a family by its variant, never by a string: the series handles
//! (`metrics/handles.rs`), the process-wide series (`metrics/mod.rs`) and the reload, which drops
//! a probe's, a target's or a reference's series by the families [`Family::owned_by`] derives
//! from the table. A misspelt family does not compile, and a new one is a variant whose missing
//! table row the compiler points at (every `match` over it is exhaustive, without a wildcard
//! arm). The HELP texts that list the values of a closed set (outcomes, phases, ...) are built
//! from that set's `ALL` and `as_label()` by [`Help`], so the text cannot drift from the labels
//! exported.
//! The families are documented in README.md, "Metrics reference".

use crate::classify::{CanaryResult, Condition, MismatchKind, Outcome, RateLimitScope};
use crate::config::closed_set::closed_set;
use crate::health::politeness::SkipReason;
use crate::probe::{Phase, TIMED_PHASES};

/// Latency buckets (seconds): SLO thresholds at 0.25, 0.5, 1 and 2.5 s, up to the longest timeout.
pub(super) const DURATION_BUCKETS: [f64; 10] =
    [0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Visibility buckets (seconds) of a write-path canary: from a play seen at the first poll to
/// one seen near the longest sensible `visible_within`.
pub(super) const VISIBLE_BUCKETS: [f64; 10] =
    [1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0];

/// Appended to the HELP of the gauges that describe the last scheduled run.
const CACHED: &str = "Values come from the last scheduled run, not from the scrape.";

closed_set! {
    /// A metric family of the monitor, its label the metric name; its row in
    /// [`Family::declaration`] says the rest.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) enum Family {
        ProbeRuns => "lastfm_probe_runs_total",
        ApiErrors => "lastfm_api_errors_total",
        HttpResponses => "lastfm_http_responses_total",
        StatusMismatch => "lastfm_status_mismatch_total",
        ProbeDuration => "lastfm_probe_duration_seconds",
        ProbeFailures => "lastfm_probe_failures_total",
        ProbePhaseDuration => "lastfm_probe_phase_duration_seconds",
        TlsCertificateNotAfter => "lastfm_tls_certificate_not_after_timestamp_seconds",
        ReferenceUp => "lastfm_reference_up",
        ReferenceFailures => "lastfm_reference_failures_total",
        ReferenceHttpStatusCode => "lastfm_reference_http_status_code",
        ReferenceDuration => "lastfm_reference_duration_seconds",
        ReferenceLastCheck => "lastfm_reference_last_check_timestamp_seconds",
        ProbeSuccess => "lastfm_probe_success",
        ProbeHttpStatusCode => "lastfm_probe_http_status_code",
        ProbeLastErrorCode => "lastfm_probe_last_error_code",
        ProbeLastRun => "lastfm_probe_last_run_timestamp_seconds",
        ProbeLastSuccess => "lastfm_probe_last_success_timestamp_seconds",
        ProbeInterval => "lastfm_probe_interval_seconds",
        ProbeSkipped => "lastfm_probe_skipped_total",
        ServiceAvailable => "lastfm_service_available",
        Condition => "lastfm_condition",
        TargetBackoff => "lastfm_target_backoff_seconds",
        TargetAvailabilityObjective => "lastfm_target_availability_objective_ratio",
        TargetRateLimitRemaining => "lastfm_target_rate_limit_remaining",
        ConfigLastReloadSuccessful => "lastfm_monitor_config_last_reload_successful",
        ConfigLastReloadSuccessTimestamp => "lastfm_monitor_config_last_reload_success_timestamp_seconds",
        RateLimited => "lastfm_rate_limited_total",
        CanaryRuns => "lastfm_canary_runs_total",
        CanaryIgnored => "lastfm_canary_ignored_total",
        CanaryVisible => "lastfm_canary_visible_seconds",
        CanaryLastResult => "lastfm_canary_last_result",
        CanaryLastRun => "lastfm_canary_last_run_timestamp_seconds",
        CanaryLastVisible => "lastfm_canary_last_visible_timestamp_seconds",
        RunsAbandoned => "lastfm_monitor_runs_abandoned_total",
        BuildInfo => "lastfm_monitor_build_info",
    }
}

/// Whose series a family holds: what a reload removes them with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Owner {
    /// Labelled `target` and `probe`; removed with the probe.
    Probe,
    /// Labelled `target` only; removed with the target (its probes separately).
    Target,
    /// Labelled `target` and `canary`; removed with the canary.
    Canary,
    /// Labelled `reference`; removed with the reference.
    Reference,
    /// One set for the whole process, never removed.
    Process,
}

/// A metric type, as the `# TYPE` line names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

/// A row of the table: what the exposition declares for a family, and who owns its series.
#[derive(Debug, Clone, Copy)]
pub(super) struct Declaration {
    pub(super) help: Help,
    pub(super) kind: Kind,
    pub(super) owner: Owner,
}

impl Family {
    /// The metric name.
    pub(super) fn name(self) -> &'static str {
        self.as_label()
    }

    /// The bucket bounds of a histogram family.
    pub(super) fn buckets(self) -> &'static [f64] {
        if self == Self::CanaryVisible {
            &VISIBLE_BUCKETS
        } else {
            &DURATION_BUCKETS
        }
    }

    /// The families whose series `owner` holds.
    pub(super) fn owned_by(owner: Owner) -> impl Iterator<Item = Self> {
        Self::ALL
            .iter()
            .copied()
            .filter(move |family| family.declaration().owner == owner)
    }

    /// The table: HELP, type and owner of every family.
    #[expect(clippy::too_many_lines, reason = "a table: one row per family")]
    pub(super) fn declaration(self) -> Declaration {
        use Kind::{Counter, Gauge, Histogram};
        use Owner::{Canary, Probe, Process, Reference, Target};
        let row = |help, kind, owner| Declaration { help, kind, owner };
        match self {
            Self::ProbeRuns => row(
                Help::listing("Probe runs by outcome (", Listed::Outcomes, ")."),
                Counter,
                Probe,
            ),
            Self::ApiErrors => row(
                Help::text(
                    "Last.fm error payloads by error code (unlisted codes as \"other\"), whatever the HTTP status.",
                ),
                Counter,
                Probe,
            ),
            Self::HttpResponses => row(
                Help::text("HTTP responses by status (unlisted statuses as their class, e.g. \"4xx\")."),
                Counter,
                Probe,
            ),
            Self::StatusMismatch => row(
                Help::listing(
                    "Runs whose HTTP status disagrees with the payload (",
                    Listed::MismatchKinds,
                    ").",
                ),
                Counter,
                Probe,
            ),
            Self::ProbeDuration => row(
                Help::text(
                    "Duration of probe runs, from sending the request to the end of the body or the failure.",
                ),
                Histogram,
                Probe,
            ),
            Self::ProbeFailures => row(
                Help::listing(
                    "Runs that got no complete response, by where the exchange broke (phase: ",
                    Listed::Phases,
                    ") and why (reason). Refines the timeout, connection_error and body_too_large outcomes.",
                ),
                Counter,
                Probe,
            ),
            Self::ProbePhaseDuration => row(
                Help::listing(
                    "Time the last run spent in each phase (",
                    Listed::TimedPhases,
                    "); 0 for a phase a kept connection skipped or the run never reached.",
                )
                .cached(),
                Gauge,
                Probe,
            ),
            Self::TlsCertificateNotAfter => row(
                Help::text(
                    "Unix time of the earliest notAfter of the certificate chain the target presented at the last TLS handshake; absent for plain http.",
                ),
                Gauge,
                Target,
            ),
            Self::ReferenceUp => row(
                Help::text(
                    "1 if the last check of the reference got any HTTP answer, else 0. References are not Last.fm: they tell the monitor's own network's faults from Last.fm's.",
                ),
                Gauge,
                Reference,
            ),
            Self::ReferenceFailures => row(
                Help::text("Reference checks that got no answer, by phase and reason."),
                Counter,
                Reference,
            ),
            Self::ReferenceHttpStatusCode => row(
                Help::text(
                    "HTTP status of the last reference check, 0 when none (reported, not judged).",
                ),
                Gauge,
                Reference,
            ),
            Self::ReferenceDuration => row(
                Help::text(
                    "Duration of the last reference check, to the response headers or the failure.",
                ),
                Gauge,
                Reference,
            ),
            Self::ReferenceLastCheck => row(
                Help::text("Unix time the last reference check ended."),
                Gauge,
                Reference,
            ),
            Self::ProbeSuccess => row(
                Help::text("1 if the last run met the probe's expectation, else 0.").cached(),
                Gauge,
                Probe,
            ),
            Self::ProbeHttpStatusCode => row(
                Help::text("HTTP status of the last run, 0 when there was no response.").cached(),
                Gauge,
                Probe,
            ),
            Self::ProbeLastErrorCode => row(
                Help::text("Last.fm error code of the last run, 0 when none.").cached(),
                Gauge,
                Probe,
            ),
            Self::ProbeLastRun => row(
                Help::text("Unix time the last run ended.").cached(),
                Gauge,
                Probe,
            ),
            Self::ProbeLastSuccess => row(
                Help::text("Unix time of the last run that met its expectation, 0 if none yet.")
                    .cached(),
                Gauge,
                Probe,
            ),
            Self::ProbeInterval => row(
                Help::text("The probe's nominal gap between scheduled runs, for staleness alerts."),
                Gauge,
                Probe,
            ),
            Self::ProbeSkipped => row(
                Help::listing("Scheduled runs not sent, by reason (", Listed::SkipReasons, ")."),
                Counter,
                Probe,
            ),
            Self::ServiceAvailable => row(
                Help::text(
                    "1 unless down_after upstream failures in a row made the target unavailable; back after up_after healthy runs.",
                )
                .cached(),
                Gauge,
                Target,
            ),
            Self::Condition => row(
                Help::listing("1 while a condition holds (", Listed::Conditions, ").").cached(),
                Gauge,
                Target,
            ),
            Self::TargetBackoff => row(
                Help::text("Remaining backoff of the target after a rate-limit answer, 0 when none."),
                Gauge,
                Target,
            ),
            Self::TargetAvailabilityObjective => row(
                Help::text(
                    "The target's configured availability objective over 30 days (availability_objective), a ratio; its error budget is 1 minus this.",
                ),
                Gauge,
                Target,
            ),
            Self::TargetRateLimitRemaining => row(
                Help::text(
                    "Requests the service's rate limit still allows, from the X-RateLimit-Remaining header of the last answer that carried one (ListenBrainz sends it); absent until then.",
                ),
                Gauge,
                Target,
            ),
            Self::ConfigLastReloadSuccessful => row(
                Help::text("1 if the last configuration load or reload succeeded, else 0."),
                Gauge,
                Process,
            ),
            Self::ConfigLastReloadSuccessTimestamp => row(
                Help::text("Unix time of the last successful configuration load or reload."),
                Gauge,
                Process,
            ),
            Self::RateLimited => row(
                Help::listing(
                    "Answers that rate-limited the monitor (error 29 or HTTP 429), by who the limit is on (scope: ",
                    Listed::RateLimitScopes,
                    "), read from the message.",
                ),
                Counter,
                Probe,
            ),
            Self::CanaryRuns => row(
                Help::listing(
                    "Write-path canary runs (a write, then a read-back) by result (",
                    Listed::CanaryResults,
                    ").",
                ),
                Counter,
                Canary,
            ),
            Self::CanaryIgnored => row(
                Help::text(
                    "Canary writes answered ignored, by ignoredMessage code (1 artist filtered, 2 track filtered, 3 too old, 4 too new, 5 daily limit, other).",
                ),
                Counter,
                Canary,
            ),
            Self::CanaryVisible => row(
                Help::text(
                    "Time from a canary's accepted write to the first read-back that showed the play.",
                ),
                Histogram,
                Canary,
            ),
            Self::CanaryLastResult => row(
                Help::text("1 for the result of the canary's last run, 0 for the others."),
                Gauge,
                Canary,
            ),
            Self::CanaryLastRun => row(
                Help::text("Unix time the canary's last run ended, 0 before the first."),
                Gauge,
                Canary,
            ),
            Self::CanaryLastVisible => row(
                Help::text(
                    "Unix time of the canary's last visible run; absent until the first.",
                ),
                Gauge,
                Canary,
            ),
            Self::RunsAbandoned => row(
                Help::text(
                    "Runs that finished after a reload removed their probe or its target; their results were not recorded.",
                ),
                Counter,
                Process,
            ),
            Self::BuildInfo => row(
                Help::text(
                    "Always 1; labels carry the version and VCS revision of the running binary.",
                ),
                Gauge,
                Process,
            ),
        }
    }
}

/// A HELP text: fixed text, optionally with the label values of a closed set spliced in, and
/// optionally followed by the note that the values come from the last scheduled run.
#[derive(Debug, Clone, Copy)]
pub(super) struct Help {
    before: &'static str,
    /// The set listed after `before` (its labels joined by ", "), and the text that follows it.
    listing: Option<(Listed, &'static str)>,
    cached: bool,
}

impl Help {
    const fn text(text: &'static str) -> Self {
        Self {
            before: text,
            listing: None,
            cached: false,
        }
    }

    const fn listing(before: &'static str, listed: Listed, after: &'static str) -> Self {
        Self {
            before,
            listing: Some((listed, after)),
            cached: false,
        }
    }

    /// The same text, then [`CACHED`].
    const fn cached(self) -> Self {
        Self {
            cached: true,
            ..self
        }
    }

    /// The text of the `# HELP` line (before escaping).
    pub(super) fn render(self) -> String {
        let mut text = self.before.to_owned();
        if let Some((listed, after)) = self.listing {
            text.push_str(&listed.labels().join(", "));
            text.push_str(after);
        }
        if self.cached {
            text.push(' ');
            text.push_str(CACHED);
        }
        text
    }
}

/// A closed set whose label values a HELP text lists.
#[derive(Debug, Clone, Copy)]
enum Listed {
    Outcomes,
    MismatchKinds,
    Phases,
    TimedPhases,
    SkipReasons,
    Conditions,
    RateLimitScopes,
    CanaryResults,
}

impl Listed {
    fn labels(self) -> Vec<&'static str> {
        match self {
            Self::Outcomes => Outcome::ALL.map(Outcome::as_label).to_vec(),
            Self::MismatchKinds => MismatchKind::ALL.map(MismatchKind::as_label).to_vec(),
            Self::Phases => Phase::ALL.map(Phase::as_label).to_vec(),
            Self::TimedPhases => TIMED_PHASES.to_vec(),
            Self::SkipReasons => SkipReason::ALL.map(SkipReason::as_label).to_vec(),
            Self::Conditions => Condition::ALL.map(Condition::as_label).to_vec(),
            Self::RateLimitScopes => RateLimitScope::ALL.map(RateLimitScope::as_label).to_vec(),
            Self::CanaryResults => CanaryResult::ALL.map(CanaryResult::as_label).to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_in_all_once_with_a_distinct_name() {
        let mut names: Vec<&str> = Family::ALL.iter().map(|f| f.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Family::ALL.len());
    }

    #[test]
    fn the_owners_give_the_families_a_reload_removes() {
        let names = |owner| {
            Family::owned_by(owner)
                .map(Family::name)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(Owner::Target),
            [
                "lastfm_tls_certificate_not_after_timestamp_seconds",
                "lastfm_service_available",
                "lastfm_condition",
                "lastfm_target_backoff_seconds",
                "lastfm_target_availability_objective_ratio",
                "lastfm_target_rate_limit_remaining",
            ]
        );
        assert_eq!(
            names(Owner::Reference),
            [
                "lastfm_reference_up",
                "lastfm_reference_failures_total",
                "lastfm_reference_http_status_code",
                "lastfm_reference_duration_seconds",
                "lastfm_reference_last_check_timestamp_seconds",
            ]
        );
        assert_eq!(
            names(Owner::Process),
            [
                "lastfm_monitor_config_last_reload_successful",
                "lastfm_monitor_config_last_reload_success_timestamp_seconds",
                "lastfm_monitor_runs_abandoned_total",
                "lastfm_monitor_build_info",
            ]
        );
        for name in names(Owner::Probe) {
            assert!(
                name.starts_with("lastfm_probe_") || name.ends_with("_total"),
                "{name}"
            );
        }
    }

    #[test]
    fn listing_helps_splice_the_labels_of_their_set() {
        assert_eq!(
            Family::ProbeRuns.declaration().help.render(),
            "Probe runs by outcome (success, api_error, http_error, malformed, check_failed, timeout, connection_error, body_too_large)."
        );
        assert_eq!(
            Family::Condition.declaration().help.render(),
            "1 while a condition holds (service_offline, api_key_suspended, api_key_invalid, session_invalid, rate_limited, local_network_down, local_resources_exhausted, scrobbles_ignored, scrobbles_not_visible). Values come from the last scheduled run, not from the scrape."
        );
    }
}

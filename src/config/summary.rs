//! The `--config.check` summary: what a validated [`Config`] will do, in words an operator
//! checks before starting the daemon (README.md, Configuration reference).
//!
//! Apart from the validated types because it is presentation: the types say what is
//! configured, this file how `--config.check` prints it. Secrets are never printed, only
//! whether they are set.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use crate::config::model::{Canary, Config, Probe, Reference, Target};
use crate::config::secret::REDACTED;

impl Config {
    /// A summary for `--config.check`: targets, probes, each probe's next three fires.
    pub fn summary(&self, now: DateTime<Utc>) -> String {
        let mut out = String::new();
        let probes: usize = self.targets.iter().map(|t| t.probes.len()).sum();
        let canaries: usize = self.targets.iter().map(|t| t.canaries.len()).sum();
        let canaries = if canaries == 0 {
            String::new()
        } else {
            format!(", {canaries} canary(ies)")
        };
        let _ = writeln!(
            out,
            "configuration OK: {} target(s), {probes} probe(s){canaries}, listening on {}",
            self.targets.len(),
            self.web.listen_address
        );
        for target in &self.targets {
            write_target(&mut out, target);
            for probe in &target.probes {
                write_probe(&mut out, probe, now);
            }
            for canary in &target.canaries {
                write_canary(&mut out, target, canary, now);
            }
        }
        for reference in &self.references {
            write_reference(&mut out, reference);
        }
        if self.references.is_empty() {
            let _ = writeln!(
                out,
                "warning: no [[references]] are configured: failures of this host's own network \
                 (resolver, routes, an egress proxy) will be blamed on Last.fm; add one \
                 (see config.toml)"
            );
        }
        for warning in &self.warnings {
            let _ = writeln!(out, "warning: {warning}");
        }
        let _ = write!(
            out,
            "interval schedules start at a random moment within {} of start-up; times are UTC",
            humantime::format_duration(self.startup_jitter)
        );
        out
    }
}

/// `target NAME URL (budget …, api_key <secret>, api_secret set|unset, …)`.
fn write_target(out: &mut String, target: &Target) {
    let _ = writeln!(
        out,
        "target {} {} (api {}, budget {}/s, burst {}, availability objective {}% over 30d, api_key {}, api_secret {}, session_key {}{})",
        target.name,
        target.base_url,
        target.api.as_label(),
        target.politeness.max_requests_per_second,
        target.politeness.burst,
        percent(target.availability_objective),
        REDACTED,
        if target.api_secret.is_some() {
            "set"
        } else {
            "unset"
        },
        if target.session_key.is_some() {
            "set"
        } else {
            "unset"
        },
        if target.reuse_connections {
            ", connections reused"
        } else {
            ""
        },
    );
}

/// A ratio as a percentage without float noise: 0.995 is `99.5`, 0.99999 is `99.999`.
fn write_canary(out: &mut String, target: &Target, canary: &Canary, now: DateTime<Utc>) {
    let next = canary
        .schedule
        .schedule
        .upcoming(now, 1)
        .first()
        .map_or_else(
            || "never".to_owned(),
            |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        );
    let read_back = if target.api.has_read_back() {
        format!(
            "then {} every {} for up to {}",
            canary.read.method,
            humantime::format_duration(canary.poll_every),
            humantime::format_duration(canary.visible_within)
        )
    } else {
        "only (the service has no read-back)".to_owned()
    };
    let cap = if canary.kind == crate::config::declared::CanaryKind::Scrobble {
        format!(", at most {} scrobbles a day", target.max_scrobbles_per_day)
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "  canary {} ({}, account {:?}, {}) {}: {} {read_back}, timeout={}, next: {next}{cap}",
        canary.name,
        canary.kind.as_label(),
        canary.user,
        canary.write.format.as_label(),
        canary.schedule.schedule.describe(),
        canary.write.method,
        humantime::format_duration(canary.write.timeout),
    );
}

fn percent(ratio: f64) -> String {
    let text = format!("{:.6}", ratio * 100.0);
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// `  probe NAME method=… schedule timeout=… expect=…`, then its next three fires.
fn write_probe(out: &mut String, probe: &Probe, now: DateTime<Utc>) {
    let fires: Vec<String> = probe
        .schedule
        .schedule
        .upcoming(now, 3)
        .iter()
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .collect();
    let _ = writeln!(
        out,
        "  probe {} method={} {} timeout={} expect={}{}{}\n    next: {}",
        probe.name,
        probe.method,
        probe.schedule.schedule.describe(),
        humantime::format_duration(probe.timeout),
        probe.expect.describe(),
        if probe.signed { " signed" } else { "" },
        if probe.checks.is_empty() {
            String::new()
        } else {
            format!(" checks={}", probe.checks.len())
        },
        fires.join(", "),
    );
}

/// `reference NAME URL every … timeout=…`.
fn write_reference(out: &mut String, reference: &Reference) {
    let _ = writeln!(
        out,
        "reference {} {} every {} timeout={}",
        reference.name,
        reference.url,
        humantime::format_duration(reference.interval),
        humantime::format_duration(reference.timeout),
    );
}

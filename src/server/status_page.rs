//! The `GET /` status page: plain HTML, no JavaScript, no external assets.
//!
//! It answers the on-call questions at a glance (which target, which probe, since when, is the
//! key in trouble) and links every recent run to its stored trace. Above the tables, the
//! pictures (`pictures.rs`): a state banner per target, each probe's last results and latency,
//! the incidents. Upstream text (error messages,
//! check failures) is untrusted, so everything interpolated goes through [`escape`].

use std::collections::HashSet;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use crate::classify::{
    Blame, CanaryResult, Classification, Condition, IgnoredCode, RateLimitScope,
};
use crate::history::{History, outcome_text};
use crate::run::Generation;
pub use crate::server::markup::escape;
use crate::server::pictures;

/// Who the page is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// The main listener: every table, run-now and trace links.
    Operators,
    /// The status listener (`--web.status-listen-address`), which a reverse proxy may publish:
    /// no links to endpoints it does not serve (`/probe`, `/runs/…`, `/metrics`), no references,
    /// no recent-runs table.
    Public,
}

/// How many recent runs the page lists.
const RECENT_ROWS: usize = 60;

fn age(now: DateTime<Utc>, then: DateTime<Utc>) -> String {
    let secs = (now - then).num_seconds().max(0);
    match secs {
        0..=119 => format!("{secs}s ago"),
        120..=7199 => format!("{}m ago", secs / 60),
        _ => format!("{}h ago", secs / 3600),
    }
}

/// "in 12s", or "due now" for a fire that has come (its run is going or about to start).
fn until(wait: std::time::Duration, at: DateTime<Utc>) -> String {
    // Rounded up: "due now" only once the fire has come.
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let rel = match secs {
        0 => return "due now".to_owned(),
        1..=119 => format!("in {secs}s"),
        120..=7199 => format!("in {}m", secs / 60),
        _ => format!("in {}h", secs / 3600),
    };
    format!("{rel} ({} UTC)", at.format("%H:%M:%S"))
}

/// Renders the page.
/// The outcome, with where the exchange broke and whose side it was when it broke: the first
/// thing on call reads ("connection_error at dns (nxdomain), our network").
fn outcome_and_failure(verdict: &Classification) -> String {
    let mut text = outcome_text(verdict).to_owned();
    if let Some(failure) = verdict.failure {
        let _ = write!(
            text,
            " at {} ({})",
            failure.phase.as_label(),
            failure.reason.as_label()
        );
    }
    if verdict.blame == Some(Blame::Local) {
        text.push_str(", our network");
    }
    text
}

/// The references and their last checks; without any, a line says what that costs.
fn references_table(
    out: &mut String,
    generation: &Generation,
    now: DateTime<Utc>,
    instant: tokio::time::Instant,
) {
    out.push_str("<h2>References</h2>\n");
    if generation.references.is_empty() {
        out.push_str("<p>No reference is configured: failures of this host's own network are blamed on Last.fm.</p>\n");
        return;
    }
    out.push_str("<table id=\"references\"><tr><th>reference</th><th>URL</th><th>reachable</th><th>status</th><th>failure</th><th>last check</th></tr>\n");
    for (reference, latest) in generation.references.latest() {
        let (class, reachable, status, failure, when) = match latest {
            None => (
                "warn",
                "not checked yet",
                "-".to_owned(),
                String::new(),
                "-".to_owned(),
            ),
            Some(checked) => {
                let ago = instant.saturating_duration_since(checked.started);
                let at = chrono::Duration::from_std(ago).map_or(now, |d| now - d);
                (
                    if checked.reachable { "ok" } else { "bad" },
                    if checked.reachable { "yes" } else { "NO" },
                    checked.status.map_or("-".to_owned(), |s| s.to_string()),
                    checked.failure.map_or(String::new(), |f| {
                        f.describe(reference.url.host_str().unwrap_or(""))
                    }),
                    age(now, at),
                )
            }
        };
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td><code>{}</code></td><td class=\"{class}\">{reachable}</td><td>{status}</td><td>{}</td><td>{when}</td></tr>",
            escape(&reference.name),
            escape(reference.url.as_str()),
            escape(&failure),
        );
    }
    out.push_str("</table>\n");
}

pub fn render(
    generation: &Generation,
    history: &History,
    now: DateTime<Utc>,
    audience: Audience,
) -> String {
    let mut out = String::with_capacity(64 * 1024);
    head(&mut out, now, audience);
    let targets: Vec<(&str, Vec<&str>)> = generation
        .targets
        .iter()
        .map(|rt| {
            let probes = rt.target.probes.iter().map(|p| p.name.as_str()).collect();
            (rt.target.name.as_str(), probes)
        })
        .collect();
    let statuses = history.status().view(&targets, now);
    pictures::banners(&mut out, &statuses, now.timestamp());
    // Trace links only to runs the rings still keep, and only for operators.
    let kept: Option<HashSet<u64>> = (audience == Audience::Operators)
        .then(|| history.recent(usize::MAX).iter().map(|r| r.id).collect());
    pictures::strips(&mut out, &statuses, kept.as_ref());
    pictures::incidents(&mut out, &history.status().incidents(), now.timestamp());
    let instant = tokio::time::Instant::now();
    targets_table(&mut out, generation, instant);
    write_path_table(&mut out, generation, now, kept.as_ref());
    if audience == Audience::Operators {
        references_table(&mut out, generation, now, instant);
    }
    probes_table(&mut out, generation, history, (now, instant), audience);
    match audience {
        Audience::Operators => recent_table(&mut out, history),
        Audience::Public => {}
    }
    out.push_str("</table>\n</body></html>\n");
    out
}

/// The document head, its style, and the line of links.
fn head(out: &mut String, now: DateTime<Utc>, audience: Audience) {
    out.push_str(concat!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<meta http-equiv=\"refresh\" content=\"15\">",
        "<title>lastfm-monitor</title><style>",
        "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}",
        "table{border-collapse:collapse;margin-bottom:1.5em}",
        "th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;font-size:.9em}",
        "th{background:#f3f3f3}.ok{background:#e6f4ea}.bad{background:#fce8e6}",
        ".warn{background:#fef7e0}code{font-size:.9em}",
    ));
    out.push_str(pictures::STYLE);
    out.push_str("</style></head><body>\n<h1>lastfm-monitor</h1>\n");
    let links = match audience {
        Audience::Operators => {
            "<a href=\"/metrics\">/metrics</a> &middot; <a href=\"/-/ready\">/-/ready</a> &middot; \
             <a href=\"/api/v1/status\">/api/v1/status</a> &middot; documentation: <code>man lastfm-monitor</code>"
        }
        Audience::Public => {
            "<a href=\"/api/v1/status\">/api/v1/status</a> &middot; \
             <a href=\"/api/v1/incidents.atom\">incidents (Atom)</a>"
        }
    };
    let _ = writeln!(
        out,
        "<p>Version {} &middot; {links} &middot; page generated {} UTC</p>",
        env!("CARGO_PKG_VERSION"),
        now.format("%Y-%m-%d %H:%M:%S")
    );
}

/// One row per target: availability, conditions, backoff.
/// The write-path canaries: how each one's last run ended, when a run last saw its play, and
/// (for operators) the trace of the whole run.
fn write_path_table(
    out: &mut String,
    generation: &Generation,
    now: DateTime<Utc>,
    kept: Option<&HashSet<u64>>,
) {
    let canaries = generation.targets.iter().flat_map(|rt| {
        rt.target
            .canaries
            .iter()
            .enumerate()
            .map(move |(i, canary)| (rt, canary, rt.canary(i).map(|c| c.last_run())))
    });
    let mut rows = String::new();
    for (rt, canary, last) in canaries {
        let (last, visible) = last.unwrap_or((None, None));
        let ago = |at: i64| format!("{}s ago", (now.timestamp() - at).max(0));
        let (class, result) = match last {
            None => ("", "no run yet"),
            Some(l) if matches!(l.result, CanaryResult::Visible | CanaryResult::Accepted) => {
                ("ok", l.result.as_label())
            }
            Some(l) => ("bad", l.result.as_label()),
        };
        let trace = match (last, kept) {
            (Some(l), Some(kept)) if kept.contains(&l.record) => {
                format!("<a href=\"/runs/{}\">trace</a>", l.record)
            }
            _ => String::new(),
        };
        let _ = writeln!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"{class}\">{result}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{trace}</td></tr>",
            escape(&rt.target.name),
            escape(&canary.name),
            canary.kind.as_label(),
            last.map_or(String::new(), |l| ago(l.at)),
            last.and_then(|l| l.ignored)
                .map_or("", IgnoredCode::as_label),
            last.and_then(|l| l.scope)
                .map_or("", RateLimitScope::as_label),
            last.and_then(|l| l.blame).map_or("", Blame::as_label),
            visible.map_or_else(|| "never".to_owned(), ago),
        );
    }
    if rows.is_empty() {
        return;
    }
    out.push_str("<h2>Write path</h2>\n<table id=\"write-path\"><tr><th>target</th><th>canary</th><th>kind</th><th>last result</th><th>when</th><th>ignored code</th><th>rate limit scope</th><th>blame</th><th>last visible</th><th></th></tr>\n");
    out.push_str(&rows);
    out.push_str("</table>\n");
}

fn targets_table(out: &mut String, generation: &Generation, instant: tokio::time::Instant) {
    out.push_str("<h2>Targets</h2>\n<table id=\"targets\"><tr><th>target</th><th>service</th><th>base URL</th><th>available</th><th>conditions</th><th>backoff</th></tr>\n");
    for rt in &generation.targets {
        let health = rt.health_snapshot();
        let raised: Vec<&str> = Condition::ALL
            .iter()
            .filter(|c| health.has(**c))
            .map(|c| c.as_label())
            .collect();
        let backoff = rt.gate.backoff_remaining(instant);
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{} (<code>{}</code>)</td><td><code>{}</code></td><td class=\"{}\">{}</td><td class=\"{}\">{}</td><td>{}</td></tr>",
            escape(&rt.target.name),
            rt.target.api.service_name(),
            rt.target.api.as_label(),
            escape(rt.target.base_url.as_str()),
            if health.is_available() { "ok" } else { "bad" },
            if health.is_available() { "yes" } else { "NO" },
            if raised.is_empty() { "ok" } else { "bad" },
            if raised.is_empty() {
                "none".to_owned()
            } else {
                raised.join(", ")
            },
            if backoff.is_zero() {
                "none".to_owned()
            } else {
                format!("{}s", backoff.as_secs())
            },
        );
    }
    out.push_str("</table>\n");
}

/// One row per probe: its last run, when it last succeeded, when it runs next.
fn probes_table(
    out: &mut String,
    generation: &Generation,
    history: &History,
    (now, instant): (DateTime<Utc>, tokio::time::Instant),
    audience: Audience,
) {
    let public = audience == Audience::Public;
    out.push_str("<h2>Probes</h2>\n<table id=\"probes\"><tr><th>target</th><th>probe</th><th>schedule</th><th>last outcome</th><th>code</th><th>status</th><th>latency</th><th>last run</th><th>last success</th><th>next run</th><th>message</th><th></th></tr>\n");
    for rt in &generation.targets {
        for (index, probe) in rt.target.probes.iter().enumerate() {
            let next_run = rt
                .next_run(index)
                .map_or("not scheduled yet".to_owned(), |due| {
                    let wait = due.saturating_duration_since(instant);
                    let at = chrono::Duration::from_std(wait).map_or(now, |d| now + d);
                    until(wait, at)
                });
            let latest = history.latest(&rt.target.name, &probe.name);
            let last_success = history
                .last_success(&rt.target.name, &probe.name)
                .map_or("never".to_owned(), |t| age(now, t));
            let debug_link = if public {
                String::new()
            } else {
                format!(
                    "<a href=\"/probe?target={}&amp;probe={}&amp;debug=true\">run now</a>",
                    escape(&rt.target.name),
                    escape(&probe.name)
                )
            };
            match latest {
                None => {
                    let _ = writeln!(
                        out,
                        "<tr><td>{}</td><td>{}</td><td>{}</td><td colspan=\"6\">not run yet</td><td>{}</td><td></td><td>{debug_link}</td></tr>",
                        escape(&rt.target.name),
                        escape(&probe.name),
                        escape(&probe.schedule.schedule.describe()),
                        next_run,
                    );
                }
                Some(run) => {
                    let v = &run.verdict;
                    let outcome = if public {
                        outcome_and_failure(v)
                    } else {
                        format!(
                            "<a href=\"/runs/{}\">{}</a>",
                            run.id,
                            outcome_and_failure(v)
                        )
                    };
                    let _ = writeln!(
                        out,
                        "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{outcome}</td><td>{}</td><td>{}</td><td>{:.0} ms</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{debug_link}</td></tr>",
                        escape(&rt.target.name),
                        escape(&probe.name),
                        escape(&probe.schedule.schedule.describe()),
                        if v.met_expectation { "ok" } else { "bad" },
                        v.error_code.map_or("-".to_owned(), |c| c.to_string()),
                        v.http_status.map_or("-".to_owned(), |s| s.to_string()),
                        run.latency.as_secs_f64() * 1000.0,
                        age(now, run.at),
                        last_success,
                        next_run,
                        escape(v.detail.as_deref().unwrap_or("")),
                    );
                }
            }
        }
    }
}

/// The most recent runs, newest first; the table is closed by the caller.
fn recent_table(out: &mut String, history: &History) {
    out.push_str("</table>\n<h2>Recent runs</h2>\n<p>Failures are kept longer than successes.</p>\n<table id=\"recent\"><tr><th>when</th><th>target</th><th>probe</th><th>outcome</th><th>code</th><th>status</th><th>latency</th><th>trace</th></tr>\n");
    for run in history.recent(RECENT_ROWS) {
        let v = &run.verdict;
        let _ = writeln!(
            out,
            "<tr class=\"{}\"><td>{} UTC</td><td>{}</td><td>{}</td><td>{}{}</td><td>{}</td><td>{}</td><td>{:.0} ms</td><td><a href=\"/runs/{}\">trace</a></td></tr>",
            if v.met_expectation { "ok" } else { "bad" },
            run.at.format("%H:%M:%S"),
            escape(&run.target),
            escape(&run.probe),
            outcome_and_failure(v),
            if run.on_demand { " (on demand)" } else { "" },
            v.error_code.map_or("-".to_owned(), |c| c.to_string()),
            v.http_status.map_or("-".to_owned(), |s| s.to_string()),
            run.latency.as_secs_f64() * 1000.0,
            run.id,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_run_rounds_up_and_says_due_only_when_due() {
        let at = Utc::now();
        let ms = std::time::Duration::from_millis;
        assert_eq!(until(ms(0), at), "due now");
        assert!(until(ms(300), at).starts_with("in 1s ("));
        assert!(until(ms(42_000), at).starts_with("in 42s ("));
        assert!(until(ms(600_000), at).starts_with("in 10m ("));
    }
}

//! The status page's pictures, drawn from the status model: a state banner per target (the
//! cause sentence, uptime with coverage), a strip of each probe's last results coloured by
//! outcome with a latency sparkline, and the incident list.
//!
//! Plain HTML and inline SVG: no JavaScript, no external asset, every interpolated text
//! escaped. The page must stay under 256 KiB with 100 probes (docs/PERFORMANCE.md), so a strip
//! draws runs of identical consecutive results as one segment (a healthy probe is one green
//! bar, with one title for its runs), and a probe whose last results alternate too much for
//! that is drawn in [`MAX_SEGMENTS`] equal buckets, each coloured by its worst result. Every
//! result keeps its 8 px, so the strip's length still reads as a count. A segment links to the
//! trace of its newest run while the recent-runs rings still keep it, and only on the
//! operators' page.

use std::collections::HashSet;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use crate::history::incidents::Incident;
use crate::history::status::{KEEP_POINTS, Point, State, TargetStatus};
use crate::server::markup::escape;

/// The most segments a strip draws.
pub const MAX_SEGMENTS: usize = 8;
/// Incidents the page lists.
pub const PAGE_INCIDENTS: usize = 30;
/// Pixels per result in a strip.
const SLOT: usize = 8;

/// The style of the pictures, added to the page's own.
pub const STYLE: &str = concat!(
    ".banner{padding:.6em 1em;margin:.4em 0;color:#fff;border-radius:4px}",
    ".b-operational{background:#1b5e20}.b-degraded{background:#e65100}",
    ".b-outage{background:#b71c1c}.b-local{background:#4a148c}.b-unknown{background:#616161}",
    ".banner small{display:block;opacity:.9}",
    ".g{fill:#2e7d32}.r{fill:#c62828}.a{fill:#f9a825}.n{fill:#e0e0e0}",
    ".strip{width:480px;height:16px}.strip rect{height:16px}.spark{width:120px;height:20px}",
    ".spark polyline{fill:none;stroke:#1565c0;vector-effect:non-scaling-stroke}",
);

/// How a result is coloured: met its expectation, failed by Last.fm's fault, failed otherwise.
fn class(point: &Point) -> &'static str {
    if point.met {
        "g"
    } else if point.upstream {
        "r"
    } else {
        "a"
    }
}

/// How bad a colour class is, for buckets.
fn rank(class: &str) -> u8 {
    match class {
        "r" => 2,
        "a" => 1,
        _ => 0,
    }
}

/// "api_error 11/503" (outcome, code, HTTP status), "success 200", "timeout".
fn what(point: &Point) -> String {
    let mut text = point.outcome.as_label().to_owned();
    match (point.code, point.status) {
        (Some(code), Some(status)) => {
            let _ = write!(text, " {code}/{status}");
        }
        (Some(code), None) => {
            let _ = write!(text, " {code}");
        }
        (None, Some(status)) => {
            let _ = write!(text, " {status}");
        }
        (None, None) => {}
    }
    text
}

fn hms(at: i64) -> String {
    DateTime::<Utc>::from_timestamp(at, 0)
        .map_or_else(String::new, |t| t.format("%H:%M:%S").to_string())
}

/// One banner per target.
pub fn banners(out: &mut String, statuses: &[TargetStatus], now: i64) {
    out.push_str("<div id=\"banners\">\n");
    for status in statuses {
        let state = status.state().as_label();
        let _ = write!(
            out,
            "<div class=\"banner b-{state}\" data-state=\"{state}\"><strong>{}</strong> is <strong class=\"state\">{state}</strong>: {}<small>uptime",
            escape(&status.name),
            escape(&status.cause.sentence(true, now)),
        );
        for figure in &status.uptime {
            let ratio = figure
                .ratio
                .map_or("n/a".to_owned(), |r| format!("{:.1} %", r * 100.0));
            let _ = write!(
                out,
                " &middot; {} {ratio} (cov. {:.1} %)",
                figure.window,
                figure.coverage * 100.0
            );
        }
        out.push_str("</small></div>\n");
    }
    out.push_str("</div>\n");
}

/// A run of results drawn as one segment.
struct Segment<'a> {
    class: &'static str,
    points: &'a [Point],
}

/// Runs of identical consecutive results; equal buckets when there are too many runs.
fn segments(points: &[Point]) -> Vec<Segment<'_>> {
    let mut runs: Vec<Segment<'_>> = Vec::new();
    let mut start = 0;
    for i in 1..=points.len() {
        let same = points.get(i).is_some_and(|p| {
            let first = &points[start];
            class(p) == class(first)
                && p.outcome == first.outcome
                && p.code == first.code
                && p.status == first.status
        });
        if !same {
            let slice = &points[start..i];
            runs.push(Segment {
                class: slice.first().map_or("n", class),
                points: slice,
            });
            start = i;
        }
    }
    if runs.len() <= MAX_SEGMENTS {
        return runs;
    }
    points
        .chunks(points.len().div_ceil(MAX_SEGMENTS))
        .map(|chunk| Segment {
            class: chunk
                .iter()
                .map(class)
                .max_by_key(|c| rank(c))
                .unwrap_or("n"),
            points: chunk,
        })
        .collect()
}

/// The title of a segment: when, how many, what, how fast.
fn title(points: &[Point]) -> String {
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return String::new();
    };
    let fastest = points.iter().map(|p| p.latency_ms).min().unwrap_or(0);
    let slowest = points.iter().map(|p| p.latency_ms).max().unwrap_or(0);
    if points.len() == 1 {
        return format!("{}: {} {fastest} ms", hms(first.at), what(first));
    }
    let mut kinds: Vec<(String, usize)> = Vec::new();
    for point in points {
        let kind = what(point);
        match kinds.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += 1,
            None => kinds.push((kind, 1)),
        }
    }
    let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
    format!(
        "{}\u{2013}{}: {}; {fastest}\u{2013}{slowest} ms",
        hms(first.at),
        hms(last.at),
        kinds.join(", ")
    )
}

/// A probe's strip; `kept` holds the run ids whose traces can be linked.
pub fn strip(out: &mut String, probe: &str, points: &[Point], kept: Option<&HashSet<u64>>) {
    let width = KEEP_POINTS * SLOT;
    let _ = write!(
        out,
        "<svg class=\"strip\" viewBox=\"0 0 {width} 16\" role=\"img\" aria-label=\"last {} results of {}\">",
        points.len(),
        escape(probe)
    );
    // Newest at the right end, as a timeline reads.
    let mut x = (KEEP_POINTS - points.len().min(KEEP_POINTS)) * SLOT;
    for segment in segments(points) {
        let w = segment.points.len() * SLOT - 1;
        let link = segment
            .points
            .iter()
            .rev()
            .map(|p| p.run)
            .find(|run| *run != 0 && kept.is_some_and(|k| k.contains(run)));
        if let Some(run) = link {
            let _ = write!(out, "<a href=\"/runs/{run}\">");
        }
        let _ = write!(
            out,
            "<rect x=\"{x}\" width=\"{w}\" class=\"{}\"><title>{}</title></rect>",
            segment.class,
            escape(&title(segment.points))
        );
        if link.is_some() {
            out.push_str("</a>");
        }
        x += segment.points.len() * SLOT;
    }
    out.push_str("</svg>");
}

/// A probe's latency sparkline over its kept results.
pub fn sparkline(out: &mut String, points: &[Point]) {
    let slowest = points
        .iter()
        .map(|p| p.latency_ms)
        .max()
        .unwrap_or(0)
        .max(1);
    let fastest = points.iter().map(|p| p.latency_ms).min().unwrap_or(0);
    // One unit a result, scaled to 120 px by the view box: short coordinates.
    let _ = write!(
        out,
        "<svg class=\"spark\" viewBox=\"0 0 {} 10\" preserveAspectRatio=\"none\"><title>latency {fastest}\u{2013}{slowest} ms over the last {} runs</title><polyline points=\"",
        KEEP_POINTS - 1,
        points.len()
    );
    for (i, point) in points.iter().enumerate() {
        // One digit of height: the line's shape, not its values (the title has those).
        let y = 9 - u64::from(point.latency_ms) * 9 / u64::from(slowest);
        let _ = write!(out, "{i},{y} ");
    }
    out.push_str("\"/></svg>");
}

/// The strips and sparklines of every probe, one row each.
pub fn strips(out: &mut String, statuses: &[TargetStatus], kept: Option<&HashSet<u64>>) {
    out.push_str("<h2>Last results</h2>\n<table id=\"strips\"><tr><th>target</th><th>probe</th><th>last 60 results (newest right)</th><th>latency</th></tr>\n");
    for status in statuses {
        for (probe, points) in &status.probes {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>",
                escape(&status.name),
                escape(probe)
            );
            strip(out, probe, points, kept);
            out.push_str("</td><td>");
            sparkline(out, points);
            out.push_str("</td></tr>\n");
        }
    }
    out.push_str("</table>\n");
}

fn duration(secs: i64) -> String {
    match secs {
        0..=119 => format!("{secs} s"),
        120..=7199 => format!("{} min", secs / 60),
        _ => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
    }
}

/// The incident list, newest first: the latest [`PAGE_INCIDENTS`] (the feed has every kept one).
pub fn incidents(out: &mut String, incidents: &[Incident], now: i64) {
    out.push_str("<h2>Incidents</h2>\n");
    if incidents.is_empty() {
        out.push_str("<p id=\"incidents\">No incident kept.</p>\n");
        return;
    }
    if incidents.len() > PAGE_INCIDENTS {
        let _ = writeln!(
            out,
            "<p>The latest {PAGE_INCIDENTS} of {}; every kept one is in <a href=\"/api/v1/incidents.atom\">the feed</a>.</p>",
            incidents.len()
        );
    }
    out.push_str("<table id=\"incidents\"><tr><th>target</th><th>state</th><th>start</th><th>end</th><th>duration</th><th>cause</th></tr>\n");
    let when = |at: i64| {
        DateTime::<Utc>::from_timestamp(at, 0).map_or_else(String::new, |t| {
            t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
        })
    };
    for incident in incidents.iter().take(PAGE_INCIDENTS) {
        let state = incident.state.as_label();
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"{}\">{state}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&incident.target),
            if incident.state == State::Local {
                "warn"
            } else {
                "bad"
            },
            when(incident.start),
            incident.end.map_or_else(|| "going on".to_owned(), when),
            duration(incident.duration(now)),
            escape(&incident.cause),
        );
    }
    out.push_str("</table>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Outcome;

    fn point(i: i64, met: bool, upstream: bool) -> Point {
        Point {
            at: 1_764_000_000 + i,
            outcome: if met {
                Outcome::Success
            } else {
                Outcome::ApiError
            },
            met,
            upstream,
            code: (!met).then_some(11),
            status: Some(if met { 200 } else { 503 }),
            latency_ms: 10 + u32::try_from(i).unwrap_or(0),
            run: u64::try_from(i).unwrap_or(0) + 1,
        }
    }

    #[test]
    fn identical_runs_are_one_segment_and_alternating_ones_are_bucketed() {
        let healthy: Vec<Point> = (0..60).map(|i| point(i, true, false)).collect();
        let drawn = segments(&healthy);
        assert_eq!(drawn.len(), 1);
        assert_eq!(drawn[0].class, "g");
        let mixed: Vec<Point> = (0..60).map(|i| point(i, i % 2 == 0, true)).collect();
        let drawn = segments(&mixed);
        assert_eq!(drawn.len(), MAX_SEGMENTS);
        assert!(
            drawn.iter().all(|s| s.class == "r"),
            "the worst result colours a bucket"
        );
        let text = title(drawn[0].points);
        assert!(
            text.ends_with(": 4 success 200, 4 api_error 11/503; 10\u{2013}17 ms"),
            "{text}"
        );
    }

    #[test]
    fn a_strip_links_only_kept_runs_and_escapes_names() {
        let points: Vec<Point> = (0..3).map(|i| point(i, i != 1, true)).collect();
        let mut out = String::new();
        let kept = HashSet::from([3]);
        strip(&mut out, "<p>", &points, Some(&kept));
        assert!(out.contains("results of &lt;p&gt;"), "{out}");
        assert_eq!(out.matches("<a href=").count(), 1, "{out}");
        assert!(out.contains("<a href=\"/runs/3\">"));
        assert_eq!(out.matches("<rect").count(), 3);
        let mut public = String::new();
        strip(&mut public, "p", &points, None);
        assert!(!public.contains("<a "));
    }
}

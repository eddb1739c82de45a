//! The status for bots and feeds: `GET /api/v1/status` (JSON, `docs/status-api.schema.json`),
//! `GET /api/v1/incidents.atom` (RFC 4287) and `GET /badge/<target>.svg`.
//!
//! The JSON document is a contract: versioned, every field always present, and stable. It
//! holds only what a bot acts on (state, whether Last.fm has issues, the cause without counts,
//! since when, conditions, uptime over complete minutes rounded to 0.1 %, each probe's last
//! outcome), never the time of the latest run, so it and its `ETag` change only when one of those
//! does, and a client polling with `If-None-Match` gets 304 in between. Nothing in it is
//! upstream text: causes are built from closed sets, names come from the configuration, and
//! every string is JSON-escaped by serde. The feed and the badge escape everything they
//! interpolate.

use std::fmt::Write as _;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::config::Api;
use crate::history::incidents::Incident;
use crate::history::status::{State as TargetState, TargetStatus};
use crate::server::markup::escape;

/// The document's `version`; a change that breaks a field's meaning raises it.
pub const VERSION: u32 = 1;
/// How long clients and proxies may reuse an answer.
const CACHE_CONTROL: &str = "max-age=5";

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn unix_rfc3339(at: i64) -> String {
    DateTime::<Utc>::from_timestamp(at, 0)
        .map_or_else(|| "1970-01-01T00:00:00Z".to_owned(), rfc3339)
}

/// A percentage rounded to 0.1.
fn percent(ratio: f64) -> f64 {
    (ratio * 1000.0).round() / 10.0
}

/// The `/api/v1/status` document.
/// `service` names each target's service (`api`) by the target's name.
pub fn document(
    statuses: &[TargetStatus],
    service: &dyn Fn(&str) -> Option<Api>,
    now: DateTime<Utc>,
) -> Value {
    let targets: Vec<Value> = statuses
        .iter()
        .map(|status| {
            let uptime: serde_json::Map<String, Value> = status
                .uptime
                .iter()
                .map(|figure| {
                    let value = json!({
                        "percent": figure.ratio.map(percent),
                        "coverage_percent": percent(figure.coverage),
                    });
                    (figure.window.to_owned(), value)
                })
                .collect();
            let probes: Vec<Value> = status
                .probes
                .iter()
                .map(|(name, points)| {
                    let last = points.last();
                    json!({
                        "name": name,
                        "outcome": last.map(|p| p.outcome.as_label()),
                        "success": last.map(|p| p.met),
                        "code": last.and_then(|p| p.code),
                        "status": last.and_then(|p| p.status),
                    })
                })
                .collect();
            json!({
                "name": status.name,
                "api": service(&status.name).map(Api::as_label),
                "state": status.state().as_label(),
                "degraded": status.state().is_degraded(),
                "cause": status.cause.sentence(false, now.timestamp()),
                "since": status.since.map(rfc3339),
                "conditions": status.cause.conditions.iter().map(|c| c.as_label()).collect::<Vec<_>>(),
                "uptime": uptime,
                "probes": probes,
            })
        })
        .collect();
    json!({ "version": VERSION, "targets": targets })
}

/// A strong validator of `body`: a digest of its bytes.
pub fn etag(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    let mut tag = String::with_capacity(34);
    tag.push('"');
    for byte in &digest[..16] {
        let _ = write!(tag, "{byte:02x}");
    }
    tag.push('"');
    tag
}

/// Whether `If-None-Match` names `etag` (or is `*`); weak tags compare by their value
/// (RFC 9110 §13.1.2).
fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == etag)
}

/// Answers `body` with its ETag and cache lifetime, or 304 when the client has it.
pub fn cached(headers: &HeaderMap, content_type: &'static str, body: Vec<u8>) -> Response {
    let tag = etag(&body);
    let value = HeaderValue::from_str(&tag).unwrap_or(HeaderValue::from_static("\"\""));
    let common = [
        (header::ETAG, value),
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static(CACHE_CONTROL),
        ),
    ];
    if not_modified(headers, &tag) {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (
        common,
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response()
}

/// The incident feed (RFC 4287): feed and entries with `id`, `title`, `updated`, an author.
pub fn atom(incidents: &[Incident], now: i64) -> String {
    let updated = incidents
        .iter()
        .map(|i| i.end.unwrap_or(i.start))
        .max()
        .unwrap_or(0);
    let mut out = String::with_capacity(1024 + incidents.len() * 512);
    let _ = write!(
        out,
        concat!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n",
            "<feed xmlns=\"http://www.w3.org/2005/Atom\">\n",
            "<id>urn:lastfm-monitor:incidents</id>\n",
            "<title>lastfm-monitor incidents</title>\n",
            "<updated>{}</updated>\n",
            "<author><name>lastfm-monitor</name></author>\n"
        ),
        unix_rfc3339(updated)
    );
    for incident in incidents {
        let ended = incident.end.map_or_else(
            || "still going on".to_owned(),
            |end| format!("ended {}", unix_rfc3339(end)),
        );
        let _ = write!(
            out,
            concat!(
                "<entry>\n<id>urn:lastfm-monitor:incident:{}-{}</id>\n",
                "<title>{}: {}{}</title>\n<updated>{}</updated>\n",
                "<summary>{}. Began {}, {}, lasted {} s.</summary>\n</entry>\n"
            ),
            incident.start,
            incident.id,
            escape(&incident.target),
            incident.state.as_label(),
            if incident.end.is_some() {
                " (ended)"
            } else {
                ""
            },
            unix_rfc3339(incident.end.unwrap_or(incident.start)),
            escape(&incident.cause),
            unix_rfc3339(incident.start),
            ended,
            incident.duration(now),
        );
    }
    out.push_str("</feed>\n");
    out
}

/// The badge's colour of a state.
pub fn colour(state: TargetState) -> &'static str {
    match state {
        TargetState::Operational => "#2e7d32",
        TargetState::Degraded => "#ef6c00",
        TargetState::Outage => "#c62828",
        TargetState::Local => "#6a1b9a",
        TargetState::Unknown => "#757575",
    }
}

/// A small two-part badge: the target's name, its state.
pub fn badge(name: &str, state: TargetState) -> String {
    // Widths from character counts (about 7 px a character at 11 px): no font metrics needed.
    let left = 10 + 7 * i64::try_from(name.chars().count().min(40)).unwrap_or(40);
    let label = state.as_label();
    let right = 10 + 7 * i64::try_from(label.len()).unwrap_or(0);
    let total = left + right;
    let name = escape(name);
    format!(
        concat!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{total}\" height=\"20\" role=\"img\" ",
            "aria-label=\"{name}: {label}\"><title>{name}: {label}</title>",
            "<rect width=\"{left}\" height=\"20\" fill=\"#555\"/>",
            "<rect x=\"{left}\" width=\"{right}\" height=\"20\" fill=\"{colour}\"/>",
            "<g fill=\"#fff\" font-family=\"Verdana,DejaVu Sans,sans-serif\" font-size=\"11\">",
            "<text x=\"5\" y=\"14\">{name}</text><text x=\"{text_x}\" y=\"14\">{label}</text>",
            "</g></svg>\n"
        ),
        total = total,
        name = name,
        label = label,
        left = left,
        right = right,
        colour = colour(state),
        text_x = left + 5,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::incidents::Incidents;

    #[test]
    fn if_none_match_compares_strong_weak_and_lists() {
        let tag = etag(b"x");
        let mut headers = HeaderMap::new();
        assert!(!not_modified(&headers, &tag));
        headers.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&format!("\"other\", W/{tag}")).unwrap(),
        );
        assert!(not_modified(&headers, &tag));
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(not_modified(&headers, &tag));
        assert_ne!(etag(b"x"), etag(b"y"));
    }

    #[test]
    fn the_feed_and_the_badge_escape_what_they_interpolate() {
        let mut incidents = Incidents::default();
        incidents.open(
            "<t&>",
            TargetState::Outage,
            1_764_000_000,
            "a <b> & c".into(),
        );
        let feed = atom(&incidents.newest_first(), 1_764_000_100);
        assert!(
            feed.contains("<title>&lt;t&amp;&gt;: outage</title>"),
            "{feed}"
        );
        assert!(feed.contains("a &lt;b&gt; &amp; c"), "{feed}");
        assert!(!feed.contains("<t&>"));
        let svg = badge("<script>", TargetState::Degraded);
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("&lt;script&gt;: degraded"));
    }
}

//! The daemon end to end against the simulator: outcomes, codes, mismatches, conditions,
//! politeness (backoff, slow mode, skips), availability, and the HTTP endpoints.
//!
//! Each test starts its own simulator and daemon on port 0 and asserts on the `/metrics` text.
//! Probes run every second; every wait is bounded by [`LIMIT`]. A test that needs a probe to see
//! several different answers swaps the simulator's scenario (`daemon.sim.set_scenario`) rather
//! than relying on a timeline, so it never races a phase boundary.

use std::time::Duration;

use lastfm_monitor::sim::Scenario;

use crate::support::{
    CANARY_KEY, CANARY_SECRET, CANARY_SK, Daemon, OUTCOME_LABELS, metric, target_toml,
};

/// The longest any single wait may take.
const LIMIT: Duration = Duration::from_secs(20);

/// `[defaults]` for probes that run every second.
const FAST: &str = "interval = \"1s\"\ntimeout = \"800ms\"";

const ARTIST: &str = r#"
[[targets.probes]]
method = "artist.getInfo"
params = { artist = "Cher" }
interval = "1s"
timeout = "800ms"
checks = [{ pointer = "/artist/name", equals = "Cher" }]
"#;

/// A `[[targets.probes]]` table from its TOML lines.
fn probe(lines: &str) -> String {
    format!("\n[[targets.probes]]\n{lines}\n")
}

/// A scenario whose single, endless phase holds `rules` (TOML inline tables' contents).
fn rules(rules: &[&str]) -> Scenario {
    let list: Vec<String> = rules.iter().map(|r| format!("{{ {r} }}")).collect();
    let text = format!(
        "[[phases]]\nname = \"test\"\nrules = [\n  {}\n]\n",
        list.join(",\n  ")
    );
    scenario(&text)
}

/// A scenario from its full TOML text.
fn scenario(text: &str) -> Scenario {
    Scenario::from_toml_str(text).unwrap_or_else(|err| panic!("bad test scenario: {err}\n{text}"))
}

/// `[[keys]]` knowing the test target's canary key and secret, with these session keys: the
/// simulated API then verifies every `api_sig`.
fn keyed(session_keys: &[&str]) -> Scenario {
    let sks: Vec<String> = session_keys.iter().map(|sk| format!("{sk:?}")).collect();
    scenario(&format!(
        "[[keys]]\napi_key = \"{CANARY_KEY}\"\nsecret = \"{CANARY_SECRET}\"\nsession_keys = [{}]\n",
        sks.join(", ")
    ))
}

/// How a series must compare with a value.
#[derive(Debug, Clone, Copy)]
enum Cmp {
    Eq,
    AtLeast,
    Above,
}

/// One expectation on a series of the exposition.
#[derive(Debug, Clone)]
struct Want {
    name: String,
    labels: Vec<(String, String)>,
    cmp: Cmp,
    value: f64,
}

impl Want {
    fn new(name: &str, labels: &[(&str, &str)], cmp: Cmp, value: f64) -> Self {
        Self {
            name: name.to_owned(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            cmp,
            value,
        }
    }

    fn got(&self, text: &str) -> Option<f64> {
        let labels: Vec<(&str, &str)> = self
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        metric(text, &self.name, &labels)
    }

    fn holds(&self, text: &str) -> bool {
        self.got(text).is_some_and(|got| match self.cmp {
            Cmp::Eq => got == self.value,
            Cmp::AtLeast => got >= self.value,
            Cmp::Above => got > self.value,
        })
    }

    /// The series of the same name and probe that are not zero, for a failure message.
    fn relatives<'t>(&self, text: &'t str) -> Vec<&'t str> {
        let probe = self
            .labels
            .iter()
            .find(|(k, _)| k == "probe")
            .map(|(_, v)| format!("probe=\"{v}\""));
        text.lines()
            .filter(|l| l.starts_with(self.name.as_str()))
            .filter(|l| probe.as_ref().is_none_or(|p| l.contains(p.as_str())))
            .filter(|l| !l.ends_with(" 0"))
            .take(40)
            .collect()
    }
}

/// `name{labels}` equals `value`.
fn eq(name: &str, labels: &[(&str, &str)], value: f64) -> Want {
    Want::new(name, labels, Cmp::Eq, value)
}

/// `name{labels}` is at least `value`.
fn ge(name: &str, labels: &[(&str, &str)], value: f64) -> Want {
    Want::new(name, labels, Cmp::AtLeast, value)
}

/// `name{labels}` is above `value`.
fn gt(name: &str, labels: &[(&str, &str)], value: f64) -> Want {
    Want::new(name, labels, Cmp::Above, value)
}

/// Runs of `probe` (of target `sim`) with `outcome`: at least `n`.
fn runs(probe: &str, outcome: &str, n: f64) -> Want {
    ge(
        "lastfm_probe_runs_total",
        &[("target", "sim"), ("probe", probe), ("outcome", outcome)],
        n,
    )
}

/// A per-probe gauge of target `sim` equals `value`.
fn gauge(name: &str, probe: &str, value: f64) -> Want {
    eq(name, &[("target", "sim"), ("probe", probe)], value)
}

/// `lastfm_condition{target="sim", condition}` equals `value` (0 or 1).
fn condition(name: &str, value: f64) -> Want {
    eq(
        "lastfm_condition",
        &[("target", "sim"), ("condition", name)],
        value,
    )
}

/// `lastfm_api_errors_total` of `probe` with `code`: at least `n`.
fn code(probe: &str, code: &str, n: f64) -> Want {
    ge(
        "lastfm_api_errors_total",
        &[("target", "sim"), ("probe", probe), ("code", code)],
        n,
    )
}

/// `lastfm_status_mismatch_total` of `probe` with `kind`, `code` and `status`: at least 1.
fn mismatch(probe: &str, kind: &str, code: &str, status: &str) -> Want {
    ge(
        "lastfm_status_mismatch_total",
        &[
            ("target", "sim"),
            ("probe", probe),
            ("kind", kind),
            ("code", code),
            ("status", status),
        ],
        1.0,
    )
}

/// `lastfm_http_responses_total` of `probe` with `status`: at least 1.
fn responses(probe: &str, status: &str) -> Want {
    ge(
        "lastfm_http_responses_total",
        &[("target", "sim"), ("probe", probe), ("status", status)],
        1.0,
    )
}

/// `lastfm_service_available{target="sim"}` equals `value`.
fn available(value: f64) -> Want {
    eq("lastfm_service_available", &[("target", "sim")], value)
}

/// `lastfm_target_backoff_seconds{target="sim"}` is above `value`.
fn backoff_above(value: f64) -> Want {
    gt("lastfm_target_backoff_seconds", &[("target", "sim")], value)
}

/// Skipped runs of `probe` with `reason`: at least `n`.
fn skipped(probe: &str, reason: &str, n: f64) -> Want {
    ge(
        "lastfm_probe_skipped_total",
        &[("target", "sim"), ("probe", probe), ("reason", reason)],
        n,
    )
}

/// Scrapes until every want holds (at most [`LIMIT`]), then asserts each on that scrape, so a
/// failure names the first series that is off and prints its non-zero relatives.
async fn settle(daemon: &Daemon, wants: &[Want]) -> String {
    let text = daemon
        .wait_for(LIMIT, |text| wants.iter().all(|w| w.holds(text)))
        .await;
    check(&text, wants);
    text
}

/// Asserts every want on one scrape.
#[track_caller]
fn check(text: &str, wants: &[Want]) {
    for want in wants {
        if !want.holds(text) {
            panic!(
                "{}{:?}: expected {:?} {}, got {:?}\nnon-zero relatives:\n{}",
                want.name,
                want.labels,
                want.cmp,
                want.value,
                want.got(text),
                want.relatives(text).join("\n")
            );
        }
    }
}

/// The sum of every series of `name` that carries all `labels`.
fn total(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, rest) = series.split_once('{')?;
            let matches = series_name == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            if matches {
                value.parse::<f64>().ok()
            } else {
                None
            }
        })
        .sum()
}

// ---------------------------------------------------------------------------------------------
// Outcomes

#[tokio::test]
async fn healthy_upstream_exports_success() {
    let daemon = Daemon::start(Scenario::healthy(), "", "", ARTIST).await;
    let p = "artist.getInfo";
    settle(
        &daemon,
        &[
            runs(p, "success", 1.0),
            gauge("lastfm_probe_success", p, 1.0),
            gauge("lastfm_probe_http_status_code", p, 200.0),
            gauge("lastfm_probe_last_error_code", p, 0.0),
            gt(
                "lastfm_probe_last_success_timestamp_seconds",
                &[("probe", p)],
                0.0,
            ),
            responses(p, "200"),
            available(1.0),
        ],
    )
    .await;
    daemon.stop().await;
}

#[tokio::test]
async fn every_outcome_code_and_condition_series_exists_at_zero_from_start_up() {
    // The only probe fires on New Year's midnight, so every scrape sees the start-up state.
    let probes =
        probe("method = \"user.getInfo\"\nparams = { user = \"canary\" }\ncron = \"0 0 0 1 1 *\"");
    let daemon = Daemon::start(Scenario::healthy(), "", "", &probes).await;
    let text = daemon.metrics().await;
    let (t, p) = (("target", "sim"), ("probe", "user.getInfo"));
    assert_eq!(
        lastfm_monitor::classify::Outcome::ALL.map(|o| o.as_label()),
        OUTCOME_LABELS,
        "the exporter's outcomes are the contract's"
    );
    for outcome in OUTCOME_LABELS {
        let labels = [t, p, ("outcome", outcome)];
        check(&text, &[eq("lastfm_probe_runs_total", &labels, 0.0)]);
    }
    for code in [
        "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "13", "16", "17", "26", "29", "other",
    ] {
        check(
            &text,
            &[
                eq("lastfm_api_errors_total", &[t, p, ("code", code)], 0.0),
                eq(
                    "lastfm_status_mismatch_total",
                    &[
                        t,
                        p,
                        ("kind", "error_with_success_status"),
                        ("code", code),
                        ("status", "200"),
                    ],
                    0.0,
                ),
            ],
        );
    }
    for name in [
        "service_offline",
        "api_key_suspended",
        "api_key_invalid",
        "session_invalid",
        "rate_limited",
    ] {
        check(&text, &[condition(name, 0.0)]);
    }
    for reason in ["rate_limited", "suspended", "overrun"] {
        let labels = [t, p, ("reason", reason)];
        check(&text, &[eq("lastfm_probe_skipped_total", &labels, 0.0)]);
    }
    check(
        &text,
        &[
            available(1.0),
            eq("lastfm_target_backoff_seconds", &[t], 0.0),
            eq("lastfm_target_availability_objective_ratio", &[t], 0.995),
            eq("lastfm_monitor_config_last_reload_successful", &[], 1.0),
        ],
    );
    assert!(
        text.contains("lastfm_monitor_build_info{"),
        "build info is exported"
    );
    assert_eq!(daemon.sim.request_count(), 0, "nothing ran yet");
    daemon.stop().await;
}

#[tokio::test]
async fn json_and_xml_successes_including_the_undeclared_opensearch_prefix_are_success() {
    let probes = [
        ARTIST.to_owned(),
        probe(
            "name = \"artist.xml\"\nmethod = \"artist.getInfo\"\nparams = { artist = \"Cher\" }\nformat = \"xml\"",
        ),
        probe(
            "name = \"search.xml\"\nmethod = \"track.search\"\nparams = { track = \"Believe\" }\nformat = \"xml\"",
        ),
    ]
    .concat();
    let daemon = Daemon::start(Scenario::healthy(), FAST, "", &probes).await;
    let mut wants = Vec::new();
    for p in ["artist.getInfo", "artist.xml", "search.xml"] {
        wants.extend([
            runs(p, "success", 1.0),
            gauge("lastfm_probe_success", p, 1.0),
            gauge("lastfm_probe_http_status_code", p, 200.0),
        ]);
    }
    let text = settle(&daemon, &wants).await;
    let seen = daemon.sim.requests();
    let search = seen
        .iter()
        .find(|r| r.method.as_deref() == Some("track.search"))
        .expect("track.search was sent");
    assert!(
        !search.params.contains_key("format"),
        "an XML probe sends no format, so the answer uses opensearch:"
    );
    assert_eq!(
        total(&text, "lastfm_status_mismatch_total", &[("target", "sim")]),
        0.0
    );
    daemon.stop().await;
}

#[tokio::test]
async fn error_payloads_in_json_and_xml_are_api_error_with_their_code() {
    let probes = [
        probe("method = \"artist.getInfo\"\nparams = { artist = \"Cher\" }"),
        probe(
            "name = \"artist.xml\"\nmethod = \"artist.getInfo\"\nparams = { artist = \"Cher\" }\nformat = \"xml\"",
        ),
    ]
    .concat();
    let scenario =
        rules(&["method = \"artist.getInfo\", respond = \"error\", code = 6, status = 404"]);
    let daemon = Daemon::start(scenario, FAST, "", &probes).await;
    let mut wants = Vec::new();
    for p in ["artist.getInfo", "artist.xml"] {
        wants.extend([
            runs(p, "api_error", 1.0),
            code(p, "6", 1.0),
            gauge("lastfm_probe_success", p, 0.0),
            gauge("lastfm_probe_last_error_code", p, 6.0),
            gauge("lastfm_probe_http_status_code", p, 404.0),
            responses(p, "404"),
        ]);
    }
    let text = settle(&daemon, &wants).await;
    assert_eq!(
        total(&text, "lastfm_status_mismatch_total", &[("target", "sim")]),
        0.0,
        "6 with 404 is documented"
    );
    check(&text, &[available(1.0)]);
    daemon.stop().await;
}

#[tokio::test]
async fn an_edge_proxy_html_502_is_http_error() {
    let probes = probe("method = \"chart.getTopArtists\"\nparams = { limit = 1 }");
    let daemon = Daemon::start(rules(&["respond = \"html\""]), FAST, "", &probes).await;
    let p = "chart.getTopArtists";
    let text = settle(
        &daemon,
        &[
            runs(p, "http_error", 1.0),
            responses(p, "502"),
            gauge("lastfm_probe_http_status_code", p, 502.0),
            gauge("lastfm_probe_last_error_code", p, 0.0),
            gauge("lastfm_probe_success", p, 0.0),
        ],
    )
    .await;
    assert_eq!(
        total(&text, "lastfm_api_errors_total", &[("probe", p)]),
        0.0,
        "no Last.fm code without a Last.fm payload"
    );
    daemon.stop().await;
}

#[tokio::test]
async fn empty_truncated_wrong_shape_and_html_bodies_with_200_are_malformed() {
    let probes = [
        probe("method = \"geo.getTopArtists\"\nparams = { country = \"Germany\" }"),
        probe("method = \"track.search\"\nparams = { track = \"Believe\" }"),
        probe("method = \"tag.getInfo\"\nparams = { tag = \"rock\" }\nformat = \"xml\""),
        probe("method = \"chart.getTopArtists\""),
        probe("method = \"user.getRecentTracks\"\nparams = { user = \"canary\" }"),
    ]
    .concat();
    let scenario = rules(&[
        "method = \"geo.getTopArtists\", respond = \"empty\"",
        "method = \"track.search\", respond = \"truncated\"",
        "method = \"tag.getInfo\", respond = \"truncated\"",
        "method = \"chart.getTopArtists\", respond = \"raw\", content_type = \"text/html\", \
         body = \"<!DOCTYPE html><html><body>Last.fm is down</body></html>\"",
        "method = \"user.getRecentTracks\", respond = \"raw\", body = \"[1, 2, 3]\"",
    ]);
    let daemon = Daemon::start(scenario, FAST, "", &probes).await;
    let mut wants = Vec::new();
    for p in [
        "geo.getTopArtists",
        "track.search",
        "tag.getInfo",
        "chart.getTopArtists",
        "user.getRecentTracks",
    ] {
        wants.extend([
            runs(p, "malformed", 1.0),
            gauge("lastfm_probe_http_status_code", p, 200.0),
            gauge("lastfm_probe_success", p, 0.0),
        ]);
    }
    settle(&daemon, &wants).await;
    daemon.stop().await;
}

#[tokio::test]
async fn a_success_that_fails_its_content_check_is_check_failed() {
    let probes = probe(
        "method = \"artist.getInfo\"\nparams = { artist = \"Cher\" }\n\
         checks = [{ pointer = \"/artist/name\", equals = \"Madonna\" }]",
    );
    let daemon = Daemon::start(Scenario::healthy(), FAST, "", &probes).await;
    let p = "artist.getInfo";
    settle(
        &daemon,
        &[
            runs(p, "check_failed", 1.0),
            eq(
                "lastfm_probe_runs_total",
                &[("probe", p), ("outcome", "success")],
                0.0,
            ),
            gauge("lastfm_probe_success", p, 0.0),
            gauge("lastfm_probe_http_status_code", p, 200.0),
            eq(
                "lastfm_probe_last_success_timestamp_seconds",
                &[("probe", p)],
                0.0,
            ),
        ],
    )
    .await;
    daemon.stop().await;
}

#[tokio::test]
async fn a_stalled_answer_is_a_timeout_within_the_probe_deadline() {
    let probes =
        probe("method = \"user.getInfo\"\nparams = { user = \"canary\" }\ntimeout = \"300ms\"");
    let daemon = Daemon::start(rules(&["respond = \"stall\""]), FAST, "", &probes).await;
    let p = "user.getInfo";
    settle(
        &daemon,
        &[
            runs(p, "timeout", 1.0),
            gauge("lastfm_probe_http_status_code", p, 0.0),
            gauge("lastfm_probe_success", p, 0.0),
            // The run ended near its 300 ms deadline: within the 1 s bucket.
            ge(
                "lastfm_probe_duration_seconds_bucket",
                &[("probe", p), ("le", "1")],
                1.0,
            ),
        ],
    )
    .await;
    daemon.stop().await;
}

#[tokio::test]
async fn a_connection_reset_mid_body_is_a_connection_error() {
    let probes =
        probe("method = \"album.getInfo\"\nparams = { artist = \"Cher\", album = \"Believe\" }");
    let daemon = Daemon::start(rules(&["respond = \"reset\""]), FAST, "", &probes).await;
    let p = "album.getInfo";
    settle(
        &daemon,
        &[
            runs(p, "connection_error", 1.0),
            gauge("lastfm_probe_success", p, 0.0),
        ],
    )
    .await;
    daemon.stop().await;
}

#[tokio::test]
async fn a_closed_port_is_a_connection_error() {
    let (sim, sim_addr) = lastfm_monitor::sim::spawn_local(Scenario::healthy())
        .await
        .expect("the simulator binds 127.0.0.1:0");
    // A port that was free a moment ago and that nothing listens on any more.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0");
    let text = format!(
        "[defaults]\nstartup_jitter = \"0s\"\n{FAST}\n{}\n{}",
        target_toml(closed, ""),
        probe("method = \"user.getInfo\"\nparams = { user = \"canary\" }")
    );
    let daemon = Daemon::start_with(sim, sim_addr, &text).await;
    let p = "user.getInfo";
    settle(
        &daemon,
        &[
            runs(p, "connection_error", 1.0),
            gauge("lastfm_probe_http_status_code", p, 0.0),
            gauge("lastfm_probe_success", p, 0.0),
        ],
    )
    .await;
    assert_eq!(
        daemon.sim.request_count(),
        0,
        "nothing reached the simulator"
    );
    daemon.stop().await;
}

#[tokio::test]
async fn a_body_over_max_body_bytes_is_body_too_large() {
    // 1024 is the smallest max_body_bytes the config accepts.
    let probes = probe(
        "method = \"library.getArtists\"\nparams = { user = \"canary\" }\nmax_body_bytes = 1024",
    );
    let scenario = rules(&["respond = \"oversized\", bytes = 100000"]);
    let daemon = Daemon::start(scenario, FAST, "", &probes).await;
    let p = "library.getArtists";
    settle(
        &daemon,
        &[
            runs(p, "body_too_large", 1.0),
            gauge("lastfm_probe_success", p, 0.0),
        ],
    )
    .await;
    daemon.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Codes, statuses and mismatches

#[tokio::test]
async fn every_error_code_is_counted_under_its_own_label_and_unknown_ones_as_other() {
    // Codes that change the target's budget (10, 26, 29) have their own tests below; the ones
    // here leave every probe running on schedule. (method, code, status, label)
    let cases: [(&str, u32, u16, &str); 14] = [
        ("user.getInfo", 2, 200, "2"),
        ("user.getRecentTracks", 3, 400, "3"),
        ("artist.getInfo", 4, 403, "4"),
        ("album.getInfo", 5, 400, "5"),
        ("track.search", 6, 404, "6"),
        ("chart.getTopArtists", 7, 200, "7"),
        ("tag.getInfo", 8, 503, "8"),
        ("geo.getTopArtists", 9, 403, "9"),
        ("library.getArtists", 11, 503, "11"),
        ("artist.getSimilar", 13, 400, "13"),
        ("artist.getTopAlbums", 16, 503, "16"),
        ("artist.getTopTracks", 17, 403, "17"),
        ("artist.getTopTags", 1, 400, "other"),
        ("user.getTopArtists", 19, 400, "other"),
    ];
    let probes: String = cases
        .iter()
        .map(|(method, ..)| {
            probe(&format!(
                "method = \"{method}\"\nparams = {{ user = \"canary\" }}"
            ))
        })
        .collect();
    let rule_text: Vec<String> = cases
        .iter()
        .map(|(method, code, status, _)| {
            format!("method = \"{method}\", respond = \"error\", code = {code}, status = {status}")
        })
        .collect();
    let rule_refs: Vec<&str> = rule_text.iter().map(String::as_str).collect();
    let daemon = Daemon::start(rules(&rule_refs), FAST, "", &probes).await;
    let mut wants = Vec::new();
    for (method, number, _, label) in cases {
        wants.extend([
            runs(method, "api_error", 1.0),
            code(method, label, 1.0),
            gauge("lastfm_probe_last_error_code", method, f64::from(number)),
            gauge("lastfm_probe_success", method, 0.0),
        ]);
    }
    let text = settle(&daemon, &wants).await;
    // Unknown codes stay inside the closed label set.
    assert!(!text.contains("code=\"1\""), "code 1 is exported as other");
    assert!(
        !text.contains("code=\"19\""),
        "code 19 is exported as other"
    );
    daemon.stop().await;
}

#[tokio::test]
async fn statuses_and_payloads_that_disagree_are_counted_by_kind_code_and_status() {
    let probes = [
        probe("method = \"album.getInfo\"\nparams = { artist = \"Cher\", album = \"Believe\" }"),
        probe("method = \"artist.getInfo\"\nparams = { artist = \"Cher\" }"),
        probe("method = \"tag.getInfo\"\nparams = { tag = \"rock\" }"),
        probe("method = \"user.getFriends\"\nparams = { user = \"canary\" }"),
    ]
    .concat();
    let scenario = rules(&[
        // The API's best-known quirk: an error with 200.
        "method = \"album.getInfo\", respond = \"error\", code = 8, status = 200",
        // A success payload with an error status: the body decides, the disagreement is counted.
        "method = \"artist.getInfo\", respond = \"success\", status = 500",
        // 6 is documented with 400 or 404, not 500.
        "method = \"tag.getInfo\", respond = \"error\", code = 6, status = 500",
        // Not a Last.fm payload: an unlisted status is exported as its class.
        "method = \"user.getFriends\", respond = \"raw\", body = \"I'm a teapot\", \
         content_type = \"text/plain\", status = 418",
    ]);
    let daemon = Daemon::start(scenario, FAST, "", &probes).await;
    let text = settle(
        &daemon,
        &[
            runs("album.getInfo", "api_error", 1.0),
            mismatch("album.getInfo", "error_with_success_status", "8", "200"),
            runs("artist.getInfo", "success", 1.0),
            gauge("lastfm_probe_success", "artist.getInfo", 1.0),
            gauge("lastfm_probe_http_status_code", "artist.getInfo", 500.0),
            mismatch("artist.getInfo", "success_with_error_status", "none", "500"),
            runs("tag.getInfo", "api_error", 1.0),
            mismatch("tag.getInfo", "status_disagrees_with_code", "6", "500"),
            runs("user.getFriends", "http_error", 1.0),
            responses("user.getFriends", "4xx"),
            gauge("lastfm_probe_http_status_code", "user.getFriends", 418.0),
        ],
    )
    .await;
    assert!(
        !text.contains("status=\"418\""),
        "unlisted statuses are exported as their class"
    );
    assert_eq!(
        total(
            &text,
            "lastfm_status_mismatch_total",
            &[("probe", "user.getFriends")]
        ),
        0.0,
        "no payload, no mismatch"
    );
    daemon.stop().await;
}

#[tokio::test]
async fn error_29_with_403_is_a_status_disagreement_and_raises_rate_limited() {
    let probes = probe("method = \"user.getInfo\"\nparams = { user = \"canary\" }");
    let scenario = rules(&["respond = \"error\", code = 29, status = 403"]);
    let daemon = Daemon::start(scenario, FAST, "", &probes).await;
    let p = "user.getInfo";
    settle(
        &daemon,
        &[
            runs(p, "api_error", 1.0),
            code(p, "29", 1.0),
            mismatch(p, "status_disagrees_with_code", "29", "403"),
            responses(p, "403"),
            condition("rate_limited", 1.0),
        ],
    )
    .await;
    daemon.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Conditions, each raised and cleared again

#[tokio::test]
async fn errors_11_and_2_raise_service_offline_until_a_success() {
    let probes = probe("method = \"user.getInfo\"\nparams = { user = \"canary\" }");
    let scenario = rules(&["respond = \"error\", code = 11"]);
    let daemon = Daemon::start(scenario, FAST, "", &probes).await;
    let p = "user.getInfo";
    let raised = [code(p, "11", 1.0), condition("service_offline", 1.0)];
    settle(&daemon, &raised).await;
    daemon.sim.set_scenario(Scenario::healthy());
    let cleared = [runs(p, "success", 1.0), condition("service_offline", 0.0)];
    settle(&daemon, &cleared).await;

    daemon
        .sim
        .set_scenario(rules(&["respond = \"error\", code = 2"]));
    let raised = [code(p, "2", 1.0), condition("service_offline", 1.0)];
    settle(&daemon, &raised).await;
    daemon.sim.set_scenario(Scenario::healthy());
    let cleared = [runs(p, "success", 2.0), condition("service_offline", 0.0)];
    settle(&daemon, &cleared).await;
    daemon.stop().await;
}

#[tokio::test]
async fn error_26_raises_api_key_suspended_until_a_success() {
    let probes = probe("method = \"user.getInfo\"\nparams = { user = \"canary\" }");
    let daemon = Daemon::start(
        rules(&["respond = \"error\", code = 26"]),
        FAST,
        // Slow mode sends one request per suspended_interval: short, to see the recovery.
        "suspended_interval = \"1s\"",
        &probes,
    )
    .await;
    let p = "user.getInfo";
    settle(
        &daemon,
        &[
            code(p, "26", 1.0),
            responses(p, "403"),
            condition("api_key_suspended", 1.0),
            condition("api_key_invalid", 0.0),
        ],
    )
    .await;
    daemon.sim.set_scenario(Scenario::healthy());
    let cleared = [runs(p, "success", 1.0), condition("api_key_suspended", 0.0)];
    settle(&daemon, &cleared).await;
    daemon.stop().await;
}

#[tokio::test]
async fn an_unknown_api_key_raises_api_key_invalid_until_a_success() {
    let probes = probe("method = \"user.getInfo\"\nparams = { user = \"canary\" }");
    // The simulated API knows another key only, so it answers the canary key with 10 itself.
    let other_key = scenario("[[keys]]\napi_key = \"0123456789abcdef0123456789abcdef\"\n");
    let daemon = Daemon::start(other_key, FAST, "suspended_interval = \"1s\"", &probes).await;
    let p = "user.getInfo";
    settle(
        &daemon,
        &[
            code(p, "10", 1.0),
            responses(p, "403"),
            condition("api_key_invalid", 1.0),
            condition("api_key_suspended", 0.0),
        ],
    )
    .await;
    daemon.sim.set_scenario(keyed(&[]));
    let cleared = [runs(p, "success", 1.0), condition("api_key_invalid", 0.0)];
    settle(&daemon, &cleared).await;
    daemon.stop().await;
}

#[tokio::test]
async fn error_9_on_a_signed_probe_raises_session_invalid_until_a_signed_success() {
    let probes = [
        probe("name = \"session\"\nmethod = \"user.getInfo\"\nsigned = true"),
        probe("method = \"artist.getInfo\"\nparams = { artist = \"Cher\" }"),
    ]
    .concat();
    // The simulated API knows the canary key and secret (so it verifies api_sig) but not the
    // session key: it answers the signed probe with 9.
    let daemon = Daemon::start(keyed(&[]), FAST, "", &probes).await;
    settle(
        &daemon,
        &[
            runs("session", "api_error", 1.0),
            code("session", "9", 1.0),
            condition("session_invalid", 1.0),
            // An unsigned success says nothing about the session.
            runs("artist.getInfo", "success", 2.0),
        ],
    )
    .await;
    check(
        &daemon.metrics().await,
        &[condition("session_invalid", 1.0)],
    );

    // With the session key known, a correct signature made with the canary secret succeeds.
    daemon.sim.set_scenario(keyed(&[CANARY_SK]));
    settle(
        &daemon,
        &[
            runs("session", "success", 1.0),
            gauge("lastfm_probe_success", "session", 1.0),
            condition("session_invalid", 0.0),
        ],
    )
    .await;
    let signed = daemon
        .sim
        .requests()
        .into_iter()
        .rfind(|r| r.params.contains_key("api_sig"))
        .expect("the signed probe sent api_sig");
    assert_eq!(signed.params.get("sk").map(String::as_str), Some(CANARY_SK));
    assert_eq!(signed.http_method, "POST", "POST by default");
    daemon.stop().await;
}

#[tokio::test]
async fn error_29_raises_rate_limited_with_a_backoff_until_a_success() {
    let probes = probe("method = \"user.getInfo\"\nparams = { user = \"canary\" }");
    let daemon = Daemon::start(
        rules(&["respond = \"error\", code = 29"]),
        FAST,
        "backoff_initial = \"1s\"\nbackoff_max = \"2s\"",
        &probes,
    )
    .await;
    let p = "user.getInfo";
    settle(
        &daemon,
        &[
            code(p, "29", 1.0),
            responses(p, "429"),
            condition("rate_limited", 1.0),
            backoff_above(0.0),
        ],
    )
    .await;
    daemon.sim.set_scenario(Scenario::healthy());
    settle(
        &daemon,
        &[
            runs(p, "success", 1.0),
            condition("rate_limited", 0.0),
            eq("lastfm_target_backoff_seconds", &[("target", "sim")], 0.0),
        ],
    )
    .await;
    daemon.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Politeness: backoff, Retry-After, slow mode, skips

#[tokio::test]
async fn during_a_backoff_runs_are_skipped_as_rate_limited_and_nothing_is_sent() {
    let probes = probe("method = \"user.getInfo\"\nparams = { user = \"canary\" }");
    // A backoff of 2-4 s (jitter in the upper half of 4 s): at least one 1 s fire falls inside.
    let daemon = Daemon::start(
        rules(&["respond = \"error\", code = 29"]),
        FAST,
        "backoff_initial = \"4s\"\nbackoff_max = \"4s\"",
        &probes,
    )
    .await;
    let p = "user.getInfo";
    let text = settle(&daemon, &[code(p, "29", 1.0), backoff_above(1.0)]).await;
    let backoff = metric(&text, "lastfm_target_backoff_seconds", &[("target", "sim")])
        .expect("the backoff gauge exists");
    assert!(backoff <= 4.0, "capped by backoff_max: {backoff}");
    let sent = daemon.sim.request_count();
    assert_eq!(sent, 1, "one request before the backoff");
    let skipping = [
        skipped(p, "rate_limited", 1.0),
        condition("rate_limited", 1.0),
    ];
    settle(&daemon, &skipping).await;
    assert_eq!(
        daemon.sim.request_count(),
        sent,
        "no request while backing off"
    );
    daemon.stop().await;
}

#[tokio::test]
async fn the_backoff_gauge_counts_down_between_runs() {
    // Fires 5 s apart and a backoff of 1-2 s: the backoff ends long before the next run, so
    // only the scrape itself can bring the gauge down.
    let probes = probe(
        "method = \"user.getInfo\"\nparams = { user = \"canary\" }\ninterval = \"5s\"\ntimeout = \"1s\"",
    );
    let daemon = Daemon::start(
        rules(&["respond = \"error\", code = 29"]),
        "",
        "backoff_initial = \"2s\"\nbackoff_max = \"2s\"",
        &probes,
    )
    .await;
    let gauge_now = |text: &str| {
        metric(text, "lastfm_target_backoff_seconds", &[("target", "sim")])
            .expect("the backoff gauge exists")
    };
    let first = gauge_now(
        &settle(
            &daemon,
            &[code("user.getInfo", "29", 1.0), backoff_above(0.0)],
        )
        .await,
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let later = gauge_now(&daemon.metrics().await);
    assert!(
        later < first,
        "the remaining backoff shrinks: {first} then {later}"
    );
    settle(
        &daemon,
        &[eq(
            "lastfm_target_backoff_seconds",
            &[("target", "sim")],
            0.0,
        )],
    )
    .await;
    assert_eq!(daemon.sim.request_count(), 1, "no run in between");
    daemon.stop().await;
}

#[tokio::test]
async fn a_retry_after_header_sets_the_backoff() {
    let probes = probe("method = \"user.getInfo\"\nparams = { user = \"canary\" }");
    // Exponential backoff would be at most 1 s; the header asks for 5.
    let daemon = Daemon::start(
        rules(&["respond = \"error\", code = 29, retry_after = 5"]),
        FAST,
        "backoff_initial = \"1s\"\nbackoff_max = \"60s\"",
        &probes,
    )
    .await;
    let p = "user.getInfo";
    let text = settle(&daemon, &[code(p, "29", 1.0), backoff_above(3.0)]).await;
    let backoff = metric(&text, "lastfm_target_backoff_seconds", &[("target", "sim")])
        .expect("the backoff gauge exists");
    assert!(backoff <= 5.0, "{backoff}");
    settle(&daemon, &[skipped(p, "rate_limited", 2.0)]).await;
    assert_eq!(
        daemon.sim.request_count(),
        1,
        "nothing sent before Retry-After"
    );
    daemon.stop().await;
}

#[tokio::test]
async fn a_bare_429_page_backs_off_too_and_probe_on_demand_respects_the_backoff() {
    let probes = probe("method = \"user.getInfo\"\nparams = { user = \"canary\" }");
    // An edge proxy's 429 without a Last.fm payload.
    let daemon = Daemon::start(
        rules(&["respond = \"html\", status = 429"]),
        FAST,
        "backoff_initial = \"4s\"\nbackoff_max = \"4s\"",
        &probes,
    )
    .await;
    let p = "user.getInfo";
    settle(
        &daemon,
        &[
            runs(p, "http_error", 1.0),
            responses(p, "429"),
            condition("rate_limited", 1.0),
            backoff_above(1.0),
        ],
    )
    .await;
    let sent = daemon.sim.request_count();
    let (status, body) = daemon
        .get("/probe?target=sim&probe=user.getInfo&debug=true")
        .await;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("rate_limited"), "{body}");
    assert_eq!(daemon.sim.request_count(), sent, "/probe sent nothing");
    daemon.stop().await;
}

#[tokio::test]
async fn a_run_the_budget_delays_past_the_next_fire_makes_that_fire_an_overrun() {
    // 0.6 requests per second for a probe that fires every second and stalls to its 800 ms
    // timeout: the second run waits ~0.7 s for a token and is still running at the third fire.
    let (sim, sim_addr) = lastfm_monitor::sim::spawn_local(rules(&["respond = \"stall\""]))
        .await
        .expect("the simulator binds 127.0.0.1:0");
    let target = target_toml(sim_addr, "").replace(
        "max_requests_per_second = 50.0\nburst = 50",
        "max_requests_per_second = 0.6\nburst = 1",
    );
    assert!(
        target.contains("= 0.6"),
        "the support target's budget lines moved"
    );
    let text = format!(
        "[defaults]\nstartup_jitter = \"0s\"\n{FAST}\n{target}\n{}",
        probe("method = \"user.getInfo\"\nparams = { user = \"canary\" }")
    );
    let daemon = Daemon::start_with(sim, sim_addr, &text).await;
    let p = "user.getInfo";
    settle(
        &daemon,
        &[runs(p, "timeout", 1.0), skipped(p, "overrun", 1.0)],
    )
    .await;
    daemon.stop().await;
}

#[tokio::test]
async fn after_26_the_target_sends_one_request_per_suspended_interval() {
    let probes = probe("method = \"user.getInfo\"\nparams = { user = \"canary\" }");
    let daemon = Daemon::start(
        rules(&["respond = \"error\", code = 26"]),
        FAST,
        "suspended_interval = \"30s\"",
        &probes,
    )
    .await;
    let p = "user.getInfo";
    let suspended = [
        condition("api_key_suspended", 1.0),
        skipped(p, "suspended", 2.0),
    ];
    settle(&daemon, &suspended).await;
    assert_eq!(
        daemon.sim.request_count(),
        1,
        "one request per suspended_interval"
    );
    daemon.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Availability

#[tokio::test]
async fn upstream_failures_drop_availability_after_down_after_and_healthy_runs_restore_it() {
    let probes = probe("method = \"chart.getTopArtists\"");
    let daemon = Daemon::start(
        rules(&["respond = \"html\""]),
        FAST,
        "down_after = 2\nup_after = 2",
        &probes,
    )
    .await;
    let p = "chart.getTopArtists";
    let failures = [("target", "sim"), ("probe", p), ("outcome", "http_error")];
    let text = settle(&daemon, &[runs(p, "http_error", 1.0)]).await;
    if metric(&text, "lastfm_probe_runs_total", &failures) == Some(1.0) {
        check(&text, &[available(1.0)]);
    }
    let text = settle(&daemon, &[available(0.0)]).await;
    check(&text, &[runs(p, "http_error", 2.0)]);

    daemon.sim.set_scenario(Scenario::healthy());
    let ok = [("target", "sim"), ("probe", p), ("outcome", "success")];
    let text = settle(&daemon, &[runs(p, "success", 1.0)]).await;
    if metric(&text, "lastfm_probe_runs_total", &ok) == Some(1.0) {
        check(&text, &[available(0.0)]);
    }
    let text = settle(&daemon, &[available(1.0)]).await;
    check(&text, &[runs(p, "success", 2.0)]);
    daemon.stop().await;
}

#[tokio::test]
async fn client_failures_never_drop_availability() {
    let probes = [
        probe("method = \"user.getInfo\"\nparams = { user = \"canary\" }"),
        probe("method = \"artist.getInfo\"\nparams = { artist = \"Cher\" }"),
    ]
    .concat();
    let scenario = rules(&[
        "method = \"user.getInfo\", respond = \"error\", code = 26",
        "method = \"artist.getInfo\", respond = \"error\", code = 6",
    ]);
    let daemon = Daemon::start(
        scenario,
        FAST,
        "down_after = 1\nsuspended_interval = \"1s\"",
        &probes,
    )
    .await;
    // With down_after = 1 one client failure of either probe would drop availability if it
    // counted. After the 26 the target is in slow mode: the two probes share one request a
    // second, and which one takes each slot is a race, so a second run of each is not promised.
    let text = settle(
        &daemon,
        &[
            runs("user.getInfo", "api_error", 1.0),
            runs("artist.getInfo", "api_error", 1.0),
            condition("api_key_suspended", 1.0),
        ],
    )
    .await;
    check(&text, &[available(1.0)]);
    daemon.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Negative control

#[tokio::test]
async fn a_negative_control_succeeds_on_error_6_and_fails_when_the_user_exists() {
    let probes = probe(
        "name = \"ghost\"\nmethod = \"user.getInfo\"\n\
         params = { user = \"nosuchuser-canary-0000\" }\nexpect = { error = 6 }",
    );
    // The simulated API answers a user name longer than 15 characters with 6 / 404 itself.
    let daemon = Daemon::start(Scenario::healthy(), FAST, "down_after = 1", &probes).await;
    let p = "ghost";
    let text = settle(
        &daemon,
        &[
            runs(p, "api_error", 1.0),
            code(p, "6", 1.0),
            gauge("lastfm_probe_success", p, 1.0),
            gauge("lastfm_probe_http_status_code", p, 404.0),
            gt(
                "lastfm_probe_last_success_timestamp_seconds",
                &[("probe", p)],
                0.0,
            ),
        ],
    )
    .await;
    check(&text, &[available(1.0)]);

    daemon
        .sim
        .set_scenario(rules(&["method = \"user.getInfo\", respond = \"success\""]));
    let broken = [
        runs(p, "success", 1.0),
        gauge("lastfm_probe_success", p, 0.0),
    ];
    settle(&daemon, &broken).await;

    daemon
        .sim
        .set_scenario(rules(&["respond = \"error\", code = 8"]));
    settle(
        &daemon,
        &[
            code(p, "8", 1.0),
            gauge("lastfm_probe_success", p, 0.0),
            // Error 8 is Last.fm's failure: with down_after = 1 the target is unavailable.
            available(0.0),
        ],
    )
    .await;
    daemon.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Endpoints

#[tokio::test]
async fn liveness_and_readiness_answer_200_and_unknown_paths_404_without_echoing_them() {
    let daemon = Daemon::start(Scenario::healthy(), "", "", ARTIST).await;
    assert_eq!(daemon.get("/-/healthy").await.0, 200);
    assert_eq!(daemon.get("/-/ready").await.0, 200);
    let (status, body) = daemon.get("/no-such-page-e5d1c0").await;
    assert_eq!(status, 404);
    assert!(
        !body.contains("e5d1c0"),
        "the 404 does not echo the path: {body}"
    );
    let (status, body) = daemon.get("/%3Cscript%3Ealert(1)%3C/script%3E").await;
    assert_eq!(status, 404);
    assert!(!body.contains("script"), "{body}");
    assert_eq!(daemon.post("/metrics").await.0, 405, "only GET on /metrics");
    daemon.stop().await;
}

#[tokio::test]
async fn reload_revalidates_the_config_and_counters_carry_on() {
    let daemon = Daemon::start(Scenario::healthy(), "", "", ARTIST).await;
    let p = "artist.getInfo";
    let labels = [("target", "sim"), ("probe", p), ("outcome", "success")];
    let text = settle(&daemon, &[runs(p, "success", 1.0)]).await;
    let before = metric(&text, "lastfm_probe_runs_total", &labels).expect("runs counter");

    let (status, body) = daemon.post("/-/reload").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("reloaded"), "{body}");
    check(
        &daemon.metrics().await,
        &[
            eq("lastfm_monitor_config_last_reload_successful", &[], 1.0),
            gt(
                "lastfm_monitor_config_last_reload_success_timestamp_seconds",
                &[],
                0.0,
            ),
            ge("lastfm_probe_runs_total", &labels, before),
        ],
    );
    // The probe keeps running under the reloaded config, counting on from where it was.
    settle(
        &daemon,
        &[ge("lastfm_probe_runs_total", &labels, before + 1.0)],
    )
    .await;
    daemon.stop().await;
}

#[tokio::test]
async fn probe_endpoint_runs_one_probe_and_its_debug_trace_redacts_every_secret() {
    let probes = [
        probe(
            "name = \"session\"\nmethod = \"user.getInfo\"\nsigned = true\n\
             interval = \"1m\"\ntimeout = \"5s\"",
        ),
        probe(
            "name = \"session.get\"\nmethod = \"user.getInfo\"\nsigned = true\n\
             http_method = \"GET\"\ninterval = \"1m\"\ntimeout = \"5s\"",
        ),
    ]
    .concat();
    let daemon = Daemon::start(keyed(&[CANARY_SK]), "", "", &probes).await;

    for p in ["session", "session.get"] {
        let (status, trace) = daemon
            .get(&format!("/probe?target=sim&probe={p}&debug=true"))
            .await;
        assert_eq!(status, 200, "{trace}");
        assert!(trace.contains("outcome: success"), "{trace}");
        assert!(trace.contains("expectation: success -> met"), "{trace}");
        for param in ["api_key", "sk", "api_sig"] {
            assert!(
                trace.contains(&format!("{param} = <secret>")),
                "{param} is redacted:\n{trace}"
            );
        }
        for canary in [CANARY_KEY, CANARY_SECRET, CANARY_SK] {
            assert!(!trace.contains(canary), "{canary} leaked:\n{trace}");
        }
        for request in daemon.sim.requests() {
            let sig = request
                .params
                .get("api_sig")
                .expect("every probe is signed");
            assert!(!trace.contains(sig.as_str()), "api_sig leaked:\n{trace}");
        }
    }
    assert!(
        daemon
            .sim
            .requests()
            .iter()
            .any(|r| r.http_method == "GET" && r.params.contains_key("sk")),
        "the GET probe put its parameters in the URL"
    );

    let (status, exposition) = daemon.get("/probe?target=sim&probe=session").await;
    assert_eq!(status, 200, "{exposition}");
    check(
        &exposition,
        &[
            gauge("lastfm_probe_success", "session", 1.0),
            gauge("lastfm_probe_http_status_code", "session", 200.0),
            eq(
                "lastfm_probe_outcome",
                &[("probe", "session"), ("outcome", "success")],
                1.0,
            ),
        ],
    );

    assert_eq!(daemon.get("/probe?target=nope&probe=session").await.0, 404);
    assert_eq!(daemon.get("/probe?target=sim&probe=nope").await.0, 404);
    assert_eq!(daemon.get("/probe?target=sim").await.0, 400);
    assert_eq!(daemon.get("/runs/999999999").await.0, 404);
    daemon.stop().await;
}

#[tokio::test]
async fn upstream_text_echoing_a_credential_is_scrubbed_from_the_status_page_and_traces() {
    let probes = [
        probe("method = \"user.getInfo\"\nparams = { user = \"canary\" }"),
        probe(
            "method = \"artist.getInfo\"\nparams = { artist = \"Cher\" }\n\
             checks = [{ pointer = \"/artist/name\", equals = \"Cher\" }]",
        ),
    ]
    .concat();
    // A hostile or careless upstream quotes the credentials in an error message and in a field
    // that a content check then reports.
    let error = format!(
        r#"{{"error": 6, "message": "Invalid parameters: api_key={CANARY_KEY} sk={CANARY_SK}"}}"#
    );
    let success = format!(r#"{{"artist": {{"name": "{CANARY_KEY}"}}}}"#);
    let scenario = rules(&[
        &format!("method = \"user.getInfo\", respond = \"raw\", body = '{error}', status = 400"),
        &format!("method = \"artist.getInfo\", respond = \"raw\", body = '{success}'"),
    ]);
    let daemon = Daemon::start(scenario, FAST, "", &probes).await;
    settle(
        &daemon,
        &[
            runs("user.getInfo", "api_error", 1.0),
            runs("artist.getInfo", "check_failed", 1.0),
        ],
    )
    .await;
    let (status, page) = daemon.get("/").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("Invalid parameters: api_key=&lt;secret&gt;"),
        "the detail is shown, redacted:\n{page}"
    );
    let mut pages = vec![page.clone()];
    for (at, _) in page.match_indices("href=\"/runs/") {
        let rest = &page[at + "href=\"".len()..];
        let link = &rest[..rest.find('"').expect("a closing quote")];
        let (status, trace) = daemon.get(link).await;
        assert_eq!(status, 200, "{link}");
        pages.push(trace);
    }
    assert!(pages.len() > 2, "the status page links the runs' traces");
    for text in &pages {
        for canary in [CANARY_KEY, CANARY_SK] {
            assert!(!text.contains(canary), "{canary} leaked:\n{text}");
        }
    }
    daemon.stop().await;
}

#[tokio::test]
async fn reloads_faster_than_the_probe_timeout_do_not_hide_the_timeouts_of_a_stalling_upstream() {
    // Every request stalls; the probe times out after 1.5 s and fires every 3 s. A reload every
    // 400 ms cancelled each run before its timeout, so a stalling outage recorded nothing.
    let probes = probe(
        "method = \"user.getInfo\"\nparams = { user = \"canary\" }\ninterval = \"3s\"\ntimeout = \"1500ms\"",
    );
    let daemon = Daemon::start(rules(&["respond = \"stall\""]), "", "", &probes).await;
    let p = "user.getInfo";
    // Runs start at 0 s and 3 s and time out at 1.5 s and 4.5 s, all under the reloads.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(6);
    let mut reloads = 0;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let (status, body) = daemon.post("/-/reload").await;
        assert_eq!(status, 200, "{body}");
        reloads += 1;
    }
    let text = daemon.metrics().await;
    check(&text, &[runs(p, "timeout", 2.0)]);
    assert!(reloads >= 10, "{reloads} reloads");
    assert_eq!(
        metric(&text, "lastfm_monitor_runs_abandoned_total", &[]),
        Some(0.0),
        "the probe stayed through every reload: nothing abandoned"
    );
    daemon.stop().await;
}

//! The write-path canaries against the simulator, in real time on 127.0.0.1: every run result,
//! both write-path conditions raised and cleared, and every rate-limit scope, read from
//! `/metrics` as Prometheus would. Each canary runs every 3 s with a 1 s read-back window, so
//! a scenario phase of 4 s holds at least one whole run; every wait is bounded.

use std::time::Duration;

use lastfm_monitor::sim::Scenario;

use crate::support::{CANARY_SK, Daemon, assert_metric, metric};

/// Long enough for a few canary runs on a loaded machine.
const WAIT: Duration = Duration::from_secs(30);

/// A simulator that maps the test target's session key to the user `canary`, then `phases`.
fn scenario(phases: &str) -> Scenario {
    Scenario::from_toml_str(&format!(
        "repeat = false\nsession_users = {{ \"{CANARY_SK}\" = \"canary\" }}\n{phases}"
    ))
    .expect("the scenario is valid")
}

/// One probe (so the target has something that moves availability) and canary `np`.
fn config(kind: &str, extra: &str) -> String {
    format!(
        r#"
[[targets.probes]]
method = "artist.getInfo"
params = {{ artist = "Cher" }}
interval = "2s"
timeout = "1s"

[[targets.canaries]]
name = "np"
kind = "{kind}"
user = "canary"
interval = "3s"
timeout = "1s"
visible_within = "1s"
poll_every = "1s"
{extra}
"#
    )
}

/// The traces the status page links to, fetched.
async fn traces(daemon: &Daemon) -> Vec<String> {
    let (status, page) = daemon.get("/").await;
    assert_eq!(status, 200);
    let mut out = Vec::new();
    for piece in page.split("/runs/").skip(1) {
        let id: String = piece.chars().take_while(char::is_ascii_digit).collect();
        if !id.is_empty() {
            out.push(daemon.get(&format!("/runs/{id}")).await.1);
        }
    }
    out
}

fn runs(text: &str, result: &str) -> f64 {
    metric(
        text,
        "lastfm_canary_runs_total",
        &[("target", "sim"), ("canary", "np"), ("result", result)],
    )
    .unwrap_or(0.0)
}

fn condition(text: &str, name: &str) -> Option<f64> {
    metric(
        text,
        "lastfm_condition",
        &[("target", "sim"), ("condition", name)],
    )
}

/// Writes that are accepted and never show, then healthy ones: `not_visible` raises
/// `scrobbles_not_visible`, the next `visible` clears it, and availability never moves.
#[tokio::test]
async fn invisible_writes_raise_scrobbles_not_visible_until_a_visible_run() {
    let daemon = Daemon::start(
        scenario(
            "[[phases]]\nname = \"invisible\"\nduration = \"4s\"\n[phases.writes]\ninvisible = true\n\
             [[phases]]\nname = \"healthy\"\n",
        ),
        "",
        "",
        &config("now_playing", ""),
    )
    .await;
    let fresh = daemon.metrics().await;
    for result in ["visible", "not_visible", "ignored", "rejected", "failed"] {
        assert_eq!(runs(&fresh, result), 0.0, "{result} exists from start-up");
    }
    assert!(
        !fresh.contains("lastfm_canary_last_visible_timestamp_seconds{"),
        "no last visible before a first visible run"
    );
    let raised = daemon
        .wait_for(WAIT, |t| runs(t, "not_visible") >= 1.0)
        .await;
    assert_eq!(runs(&raised, "not_visible"), 1.0, "{raised}");
    assert_eq!(condition(&raised, "scrobbles_not_visible"), Some(1.0));
    assert_metric(
        &raised,
        "lastfm_canary_last_result",
        &[
            ("target", "sim"),
            ("canary", "np"),
            ("result", "not_visible"),
        ],
        1.0,
    );
    assert_metric(
        &raised,
        "lastfm_service_available",
        &[("target", "sim")],
        1.0,
    );
    // The write and each read-back poll count under their steps' probe labels.
    assert!(
        metric(
            &raised,
            "lastfm_probe_runs_total",
            &[
                ("target", "sim"),
                ("probe", "np.read"),
                ("outcome", "success")
            ]
        )
        .is_some_and(|n| n >= 1.0),
        "{raised}"
    );

    let cleared = daemon.wait_for(WAIT, |t| runs(t, "visible") >= 1.0).await;
    assert!(runs(&cleared, "visible") >= 1.0, "{cleared}");
    assert_eq!(condition(&cleared, "scrobbles_not_visible"), Some(0.0));
    assert!(
        metric(
            &cleared,
            "lastfm_canary_last_visible_timestamp_seconds",
            &[("target", "sim"), ("canary", "np")]
        )
        .is_some_and(|at| at > 1.7e9),
        "{cleared}"
    );
    assert!(
        metric(
            &cleared,
            "lastfm_canary_visible_seconds_count",
            &[("target", "sim"), ("canary", "np")]
        )
        .is_some_and(|n| n >= 1.0)
    );
    assert_whole_run_trace(&daemon).await;
    daemon.stop().await;
}

/// The run's trace: a heading with the result, then the write and every poll.
async fn assert_whole_run_trace(daemon: &Daemon) {
    let traces = traces(daemon).await;
    let whole = traces
        .iter()
        .find(|t| t.starts_with("canary np of target sim (now_playing): result visible"))
        .unwrap_or_else(|| panic!("no whole-run trace among {traces:#?}"));
    assert!(whole.contains("==== request 1 of "), "{whole}");
    assert!(whole.contains("method = track.updateNowPlaying"), "{whole}");
    assert!(whole.contains("method = user.getRecentTracks"), "{whole}");
    // The status page's write-path table: the canary, its last result, its last visible run.
    let (_, page) = daemon.get("/").await;
    let table = page
        .split("<table id=\"write-path\">")
        .nth(1)
        .unwrap_or_else(|| panic!("no write-path table:\n{page}"));
    let row = table.split("</tr>").nth(1).expect("a row for the canary");
    assert!(
        row.contains("<td>np</td><td>now_playing</td><td class=\"ok\">visible</td>"),
        "{row}"
    );
    assert!(!row.contains(">never<"), "{row}");
}

/// Every write ignored with code 1 raises `scrobbles_ignored` and counts the code; the next
/// visible run clears it.
#[tokio::test]
async fn ignored_scrobbles_raise_scrobbles_ignored_until_a_visible_run() {
    let daemon = Daemon::start(
        scenario(
            "[[phases]]\nname = \"filtered\"\nduration = \"4s\"\n[phases.writes]\nignore = 1\n\
             [[phases]]\nname = \"healthy\"\n",
        ),
        "",
        "",
        &config("now_playing", ""),
    )
    .await;
    let raised = daemon.wait_for(WAIT, |t| runs(t, "ignored") >= 1.0).await;
    assert_eq!(
        condition(&raised, "scrobbles_ignored"),
        Some(1.0),
        "{raised}"
    );
    assert_metric(
        &raised,
        "lastfm_canary_ignored_total",
        &[("target", "sim"), ("canary", "np"), ("code", "1")],
        1.0,
    );
    let cleared = daemon.wait_for(WAIT, |t| runs(t, "visible") >= 1.0).await;
    assert!(runs(&cleared, "visible") >= 1.0, "{cleared}");
    assert_eq!(condition(&cleared, "scrobbles_ignored"), Some(0.0));
    daemon.stop().await;
}

/// A scrobble canary's play is read back by its timestamp. Its schedule must stay under the
/// daily cap (500 at most: a run every 3 minutes), so only the first run comes in a test.
#[tokio::test]
async fn a_scrobble_is_read_back_by_its_timestamp() {
    let canary = config("scrobble", "").replace("interval = \"3s\"", "interval = \"3m\"");
    let daemon = Daemon::start(
        scenario("[[phases]]\nname = \"healthy\"\n[phases.writes]\nvisible_after = \"1s\"\n"),
        "",
        "max_scrobbles_per_day = 500",
        &canary.replace("visible_within = \"1s\"", "visible_within = \"5s\""),
    )
    .await;
    let text = daemon.wait_for(WAIT, |t| runs(t, "visible") >= 1.0).await;
    assert_eq!(runs(&text, "visible"), 1.0, "{text}");
    // Seen at the second or third poll, a second or more after the write.
    let sum = metric(
        &text,
        "lastfm_canary_visible_seconds_sum",
        &[("target", "sim"), ("canary", "np")],
    );
    assert!(sum.is_some_and(|s| (1.0..5.0).contains(&s)), "{sum:?}");
    daemon.stop().await;
}

/// A write refused with an API error is `rejected`; an HTML page instead of an answer is
/// `failed`.
#[tokio::test]
async fn an_api_error_is_rejected_and_an_html_page_failed() {
    let daemon = Daemon::start(
        scenario(
            "[[phases]]\nname = \"session\"\nduration = \"4s\"\n\
             [[phases.rules]]\nmethod = \"track.updateNowPlaying\"\nrespond = \"error\"\ncode = 9\n\
             [[phases]]\nname = \"edge\"\n\
             [[phases.rules]]\nmethod = \"track.updateNowPlaying\"\nrespond = \"html\"\n",
        ),
        "",
        "",
        &config("now_playing", ""),
    )
    .await;
    let text = daemon
        .wait_for(WAIT, |t| {
            runs(t, "rejected") >= 1.0 && runs(t, "failed") >= 1.0
        })
        .await;
    assert!(runs(&text, "rejected") >= 1.0, "{text}");
    assert!(runs(&text, "failed") >= 1.0, "{text}");
    assert_eq!(runs(&text, "visible"), 0.0);
    assert_eq!(
        condition(&text, "session_invalid"),
        Some(1.0),
        "error 9 on the signed write"
    );
    assert_metric(&text, "lastfm_service_available", &[("target", "sim")], 1.0);
    daemon.stop().await;
}

fn limited(text: &str, probe: &str, scope: &str) -> f64 {
    metric(
        text,
        "lastfm_rate_limited_total",
        &[("target", "sim"), ("probe", probe), ("scope", scope)],
    )
    .unwrap_or(0.0)
}

/// "Too many scrobbles" is the canary account's limit: counted as scope `user`, the canaries
/// back off, the target does not (its probes go on, `rate_limited` stays down).
#[tokio::test]
async fn a_user_scoped_limit_backs_off_the_canaries_only() {
    let daemon = Daemon::start(
        scenario("[[phases]]\nname = \"busy\"\n[phases.writes]\nrate_limited = \"user\"\n"),
        "",
        "backoff_initial = \"30s\"\nbackoff_max = \"1m\"",
        &config("now_playing", ""),
    )
    .await;
    let text = daemon
        .wait_for(WAIT, |t| limited(t, "np.write", "user") >= 1.0)
        .await;
    assert_eq!(limited(&text, "np.write", "user"), 1.0, "{text}");
    assert_eq!(runs(&text, "rejected"), 1.0);
    assert_eq!(condition(&text, "rate_limited"), Some(0.0));
    assert_metric(
        &text,
        "lastfm_target_backoff_seconds",
        &[("target", "sim")],
        0.0,
    );
    for scope in ["key", "ip", "unknown"] {
        assert_eq!(
            limited(&text, "np.write", scope),
            0.0,
            "{scope} is present at 0"
        );
    }
    let probe_runs = |t: &str| {
        metric(
            t,
            "lastfm_probe_runs_total",
            &[
                ("target", "sim"),
                ("probe", "artist.getInfo"),
                ("outcome", "success"),
            ],
        )
        .unwrap_or(0.0)
    };
    let before = probe_runs(&text);
    // Two more canary fires come within 7 s: both are held back, while the probe goes on.
    let later = daemon
        .wait_for(Duration::from_secs(7), |t| probe_runs(t) >= before + 3.0)
        .await;
    assert!(probe_runs(&later) >= before + 3.0, "{later}");
    assert_eq!(runs(&later, "rejected"), 1.0, "the canaries are in backoff");
    assert!(
        metric(
            &later,
            "lastfm_probe_skipped_total",
            &[
                ("target", "sim"),
                ("probe", "np.write"),
                ("reason", "rate_limited")
            ]
        )
        .is_some_and(|n| n >= 1.0),
        "{later}"
    );
    let traces = traces(&daemon).await;
    assert!(
        traces.iter().any(|t| t.contains("result rejected")
            && t.contains("rate limited: scope user")
            && t.contains("the limit is on the canary account")),
        "{traces:#?}"
    );
    daemon.stop().await;
}

/// The other scopes, from the message of error 29 (or a bare 429): each backs off the whole
/// target.
#[tokio::test]
async fn key_ip_and_unknown_scopes_are_read_from_the_message() {
    let cases = [
        (
            "key",
            "[phases.writes]\nrate_limited = \"key\"\n".to_owned(),
        ),
        (
            "ip",
            "[[phases.rules]]\nmethod = \"track.updateNowPlaying\"\nrespond = \"error\"\ncode = 29\n\
             message = \"Your IP has made too many requests in a short period\"\n"
                .to_owned(),
        ),
        (
            "unknown",
            "[[phases.rules]]\nmethod = \"track.updateNowPlaying\"\nrespond = \"raw\"\nstatus = 429\n\
             body = \"\"\ncontent_type = \"text/plain\"\n"
                .to_owned(),
        ),
    ];
    for (scope, rule) in cases {
        let daemon = Daemon::start(
            scenario(&format!("[[phases]]\nname = \"limited\"\n{rule}")),
            "",
            "backoff_initial = \"30s\"\nbackoff_max = \"1m\"",
            &config("now_playing", ""),
        )
        .await;
        let text = daemon
            .wait_for(WAIT, |t| limited(t, "np.write", scope) >= 1.0)
            .await;
        assert_eq!(limited(&text, "np.write", scope), 1.0, "{scope}: {text}");
        assert_eq!(limited(&text, "np.write", "user"), 0.0, "{scope}");
        assert_eq!(
            condition(&text, "rate_limited"),
            Some(1.0),
            "{scope}: the target backs off"
        );
        daemon.stop().await;
    }
}

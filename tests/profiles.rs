//! Each service judged by its own profile, against the simulator's personality of it, in real
//! time on 127.0.0.1: Libre.fm's errors with 200 are no mismatch there (and are one for a target
//! that says it is Last.fm), its canary reads its play back; ListenBrainz's own 429 puts the target
//! into backoff for `X-RateLimit-Reset-In` and raises `rate_limited`, its remaining budget is
//! exported, and its canary, which has no read-back there, ends `accepted`. That a method a
//! service lacks is refused at load is in the configuration table (`invalid-api-method`).

use std::time::Duration;

use lastfm_monitor::sim::Scenario;

use crate::support::{CANARY_KEY, CANARY_SECRET, CANARY_SK, Daemon, metric};

const WAIT: Duration = Duration::from_secs(30);

fn scenario(personality: &str, extra: &str) -> Scenario {
    Scenario::from_toml_str(&format!(
        "personality = \"{personality}\"\nsession_users = {{ \"{CANARY_SK}\" = \"canary\" }}\n{extra}"
    ))
    .expect("the scenario is valid")
}

/// A target `name` of service `api` at `sim`, with a user that exists and a negative control
/// whose user cannot, and a now-playing canary.
fn target(name: &str, api: &str, sim: std::net::SocketAddr) -> String {
    format!(
        r#"
[[targets]]
name = "{name}"
base_url = "http://{sim}/2.0/"
api = "{api}"
api_key = "{CANARY_KEY}"
api_secret = "{CANARY_SECRET}"
session_key = "{CANARY_SK}"
max_requests_per_second = 50.0
burst = 50

[[targets.probes]]
name = "user"
method = "user.getInfo"
params = {{ user = "canary" }}
interval = "2s"
timeout = "1s"

[[targets.probes]]
name = "missing"
method = "user.getInfo"
params = {{ user = "no-such-user-lastfm-monitor" }}
expect = {{ error = 7 }}
interval = "2s"
timeout = "1s"

[[targets.canaries]]
name = "np"
user = "canary"
interval = "3s"
timeout = "1s"
visible_within = "1s"
poll_every = "1s"
"#
    )
}

fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric(text, name, labels).unwrap_or(0.0)
}

#[tokio::test]
async fn librefm_errors_with_200_are_no_mismatch_under_its_profile() {
    let (sim, addr) = lastfm_monitor::sim::spawn_local(scenario("librefm", ""))
        .await
        .expect("the simulator binds");
    // The same service twice: once as what it is, once mistaken for Last.fm.
    let text = format!(
        "[defaults]\nstartup_jitter = \"0s\"\n{}{}",
        target("libre", "librefm", addr),
        target("as-lastfm", "lastfm", addr)
            .replace("expect = { error = 7 }", "expect = { error = 6 }")
            .replace(
                "[[targets.canaries]]\nname = \"np\"",
                "[[targets.canaries]]\nname = \"np2\""
            ),
    );
    let daemon = Daemon::start_with(sim, addr, &text).await;
    let mismatches = |t: &str, target: &str| {
        value(
            t,
            "lastfm_status_mismatch_total",
            &[
                ("target", target),
                ("probe", "missing"),
                ("kind", "error_with_success_status"),
                ("code", "7"),
                ("status", "200"),
            ],
        )
    };
    let seen = daemon
        .wait_for(WAIT, |t| {
            mismatches(t, "as-lastfm") >= 1.0
                && value(
                    t,
                    "lastfm_canary_runs_total",
                    &[("target", "libre"), ("canary", "np"), ("result", "visible")],
                ) >= 1.0
        })
        .await;
    assert!(mismatches(&seen, "as-lastfm") >= 1.0, "{seen}");
    assert_eq!(
        mismatches(&seen, "libre"),
        0.0,
        "Libre.fm documents 7 with 200"
    );
    let control = |target: &str| {
        value(
            &seen,
            "lastfm_probe_success",
            &[("target", target), ("probe", "missing")],
        )
    };
    assert_eq!(
        control("libre"),
        1.0,
        "Libre.fm answers 7 for an unknown user"
    );
    assert_eq!(control("as-lastfm"), 0.0, "not the 6 Last.fm would send");
    assert_eq!(
        value(&seen, "lastfm_service_available", &[("target", "libre")]),
        1.0
    );
    daemon.stop().await;
}

#[tokio::test]
async fn listenbrainz_429_backs_off_for_reset_in_and_its_canary_ends_accepted() {
    // Three requests in its 10-second window: the probe and the canary's write at start-up, the
    // probe again; the next is its 429.
    let (sim, addr) =
        lastfm_monitor::sim::spawn_local(scenario("listenbrainz", "rate_limit_per_second = 0.3"))
            .await
            .expect("the simulator binds");
    let text = format!(
        "[defaults]\nstartup_jitter = \"0s\"\n{}",
        target("lb", "listenbrainz", addr)
            .replace(
                "method = \"user.getInfo\"",
                "method = \"user.getInfo\"\nsigned = true"
            )
            .replace(
                "burst = 50",
                "burst = 50\nbackoff_initial = \"30m\"\nbackoff_max = \"1h\""
            )
    );
    let daemon = Daemon::start_with(sim, addr, &text).await;
    let limited = |t: &str| {
        value(
            t,
            "lastfm_rate_limited_total",
            &[("target", "lb"), ("probe", "user"), ("scope", "unknown")],
        ) + value(
            t,
            "lastfm_rate_limited_total",
            &[("target", "lb"), ("probe", "missing"), ("scope", "unknown")],
        )
    };
    let seen = daemon.wait_for(WAIT, |t| limited(t) >= 1.0).await;
    assert!(limited(&seen) >= 1.0, "{seen}");
    assert_eq!(
        value(
            &seen,
            "lastfm_condition",
            &[("target", "lb"), ("condition", "rate_limited")]
        ),
        1.0
    );
    // The backoff is the service's Reset-In (at most its 10-second window), not backoff_initial.
    let backoff = value(&seen, "lastfm_target_backoff_seconds", &[("target", "lb")]);
    assert!(backoff > 0.0 && backoff <= 10.0, "backoff {backoff}");
    assert!(
        metric(
            &seen,
            "lastfm_target_rate_limit_remaining",
            &[("target", "lb")]
        )
        .is_some(),
        "{seen}"
    );
    assert_eq!(
        value(
            &seen,
            "lastfm_canary_runs_total",
            &[("target", "lb"), ("canary", "np"), ("result", "accepted")]
        ),
        1.0,
        "{seen}"
    );
    let reads: f64 = seen
        .lines()
        .filter(|l| l.starts_with("lastfm_probe_runs_total{") && l.contains("probe=\"np.read\""))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    assert_eq!(reads, 0.0, "no read-back on ListenBrainz");
    daemon.stop().await;
}

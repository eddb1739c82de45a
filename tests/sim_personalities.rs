//! The simulator's personalities over 127.0.0.1, as a client sees them: Libre.fm's errors with
//! HTTP 200 (7 for a user that cannot exist, 3 for a method outside GNU FM's list), ListenBrainz's
//! six methods, its 16 for a write sent with GET, its rate-limit headers and its 429 JSON; the
//! shipped scenarios for a three-service run; the `--personality` flag. Every request has a
//! five-second timeout and every child process a ten-second limit.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use lastfm_monitor::config::Api;
use lastfm_monitor::sim::{Scenario, spawn_local};
use serde_json::Value;

use crate::support::{http_client, run_with_limit};

const KEY: &str = "0123456789abcdef0123456789abcdef";

/// Status, the `X-RateLimit-*` headers (limit, remaining, reset-in) and body of one request.
struct Answer {
    status: u16,
    limit: Option<String>,
    remaining: Option<String>,
    reset_in: Option<String>,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// Sends `pairs` plus the key as a POST form (`post`) or a GET query string.
async fn call(base: &str, pairs: &[(&str, &str)], post: bool) -> Answer {
    let params: Vec<(&str, &str)> = pairs.iter().copied().chain([("api_key", KEY)]).collect();
    let client = http_client()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("a client builds");
    let request = if post {
        client.post(base).form(&params)
    } else {
        client.get(base).query(&params)
    };
    let response = request.send().await.expect("the simulator answers");
    let header = |name: &str| {
        let value = response.headers().get(name)?;
        value.to_str().ok().map(str::to_owned)
    };
    Answer {
        status: response.status().as_u16(),
        limit: header("x-ratelimit-limit"),
        remaining: header("x-ratelimit-remaining"),
        reset_in: header("x-ratelimit-reset-in"),
        body: response.text().await.expect("a whole body"),
    }
}

async fn serve(toml: &str) -> String {
    let scenario = Scenario::from_toml_str(toml).expect("the scenario is valid");
    let (_sim, addr) = spawn_local(scenario).await.expect("the simulator binds");
    format!("http://{addr}/2.0/")
}

#[tokio::test]
async fn librefm_answers_errors_with_200_and_an_unknown_user_with_7() {
    let base = serve("personality = \"librefm\"\n").await;
    let ghost = [
        ("method", "user.getInfo"),
        ("user", "nosuchuser-canary-0000"),
    ];
    let xml = call(&base, &ghost, false).await;
    assert_eq!(xml.status, 200, "{}", xml.body);
    assert!(
        xml.body.contains("<lfm status=\"failed\">")
            && xml
                .body
                .contains("<error code=\"7\">Invalid resource specified</error>"),
        "{}",
        xml.body
    );
    let json = call(&base, &[ghost[0], ghost[1], ("format", "json")], false).await;
    assert_eq!(json.status, 200);
    assert_eq!(json.json()["error"]["code"], "7", "GNU FM's JSON encoding");
    let outside = [
        ("method", "album.getInfo"),
        ("artist", "Cher"),
        ("album", "Believe"),
    ];
    let refused = call(
        &base,
        &[outside[0], outside[1], outside[2], ("format", "json")],
        false,
    )
    .await;
    assert_eq!(refused.status, 200);
    assert_eq!(refused.json()["error"], 3);
    assert_eq!(refused.limit, None, "no rate-limit headers on Libre.fm");
    let known = call(&base, &[("method", "user.getInfo"), ("user", "rj")], false).await;
    assert_eq!(known.status, 200);
    assert!(known.body.contains("<lfm status=\"ok\">"), "{}", known.body);
}

#[tokio::test]
async fn listenbrainz_takes_its_six_methods_writes_by_post_and_counts_its_window() {
    let base = serve("personality = \"listenbrainz\"\nrate_limit_per_second = 1.0\n").await;
    let np = [
        ("method", "track.updateNowPlaying"),
        ("artist", "Cher"),
        ("track", "Believe"),
        ("sk", "sk-any"),
        ("format", "json"),
    ];
    let get = call(&base, &np, false).await;
    assert_eq!((get.status, get.json()["error"].as_u64()), (200, Some(16)));
    let unknown = call(
        &base,
        &[("method", "artist.getInfo"), ("format", "json")],
        false,
    )
    .await;
    assert_eq!(
        (unknown.status, unknown.json()["error"].as_u64()),
        (200, Some(3))
    );
    let accepted = call(&base, &np, true).await;
    assert_eq!(accepted.status, 200, "{}", accepted.body);
    let json = accepted.json();
    assert_eq!(json["nowplaying"]["track"]["#text"], "Believe", "{json}");
    assert_eq!(json["nowplaying"]["ignoredMessage"]["code"], "0");
    assert_eq!(accepted.limit.as_deref(), Some("10"));
    assert_eq!(
        accepted.remaining.as_deref(),
        Some("7"),
        "the third request of ten"
    );
    let reset_in: u64 = accepted
        .reset_in
        .expect("Reset-In")
        .parse()
        .expect("seconds");
    assert!((1..=10).contains(&reset_in), "{reset_in}");
}

#[tokio::test]
async fn listenbrainz_rate_limits_with_its_429_json_and_three_headers() {
    let base = serve("personality = \"listenbrainz\"\nrate_limit_per_second = 0.1\n").await;
    let info = [
        ("method", "user.getInfo"),
        ("sk", "sk-any"),
        ("format", "json"),
    ];
    let first = call(&base, &info, false).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.remaining.as_deref(), Some("0"));
    let limited = call(&base, &info, false).await;
    assert_eq!(limited.status, 429, "{}", limited.body);
    let json = limited.json();
    assert_eq!(json["code"], 429);
    assert!(json["error"].is_string(), "{json}");
    assert!(
        json.get("message").is_none(),
        "not Last.fm's error 29: {json}"
    );
    assert_eq!(limited.limit.as_deref(), Some("1"));
    assert_eq!(limited.remaining.as_deref(), Some("0"));
    let reset_in: u64 = limited
        .reset_in
        .expect("Reset-In")
        .parse()
        .expect("seconds");
    assert!((1..=10).contains(&reset_in), "{reset_in}");
}

fn shipped(name: &str) -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("dashboards/e2e")
        .join(name);
    Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn the_shipped_three_service_scenarios_parse_with_their_personalities() {
    let libre = shipped("librefm-outage.toml");
    assert_eq!(libre.personality(), Api::Librefm);
    let phase = |at: u64| {
        libre
            .phase_at(Duration::from_secs(at))
            .map(|p| p.name().to_owned())
    };
    assert_eq!(phase(29).as_deref(), Some("healthy"));
    assert_eq!(phase(30).as_deref(), Some("outage"));
    assert_eq!(phase(89).as_deref(), Some("outage"));
    assert_eq!(phase(90).as_deref(), Some("recovery"));
    assert_eq!(phase(100_000).as_deref(), Some("recovery"));
    let lb = shipped("listenbrainz.toml");
    assert_eq!(lb.personality(), Api::Listenbrainz);
    assert_eq!(lb.cycle_length(), None, "healthy for good");
}

#[test]
fn the_personality_flag_overrides_the_file_and_refuses_what_the_service_never_does() {
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards/e2e/listenbrainz.toml");
    let mut command = Command::new(env!("CARGO_BIN_EXE_lastfm-monitor"));
    command
        .args([
            "simulate",
            "--listen",
            "127.0.0.1:0",
            "--personality",
            "librefm",
        ])
        .arg("--scenario")
        .arg(&scenario)
        .env_remove("RUST_LOG");
    let finished = run_with_limit(&mut command, Duration::from_secs(10));
    assert_eq!(
        finished.status.and_then(|s| s.code()),
        Some(64),
        "{}",
        finished.stderr
    );
    assert!(
        finished.stderr.contains("never rate limits"),
        "{}",
        finished.stderr
    );
}

//! The simulator's write path over 127.0.0.1, as a client sees it: signed `track.updateNowPlaying`
//! and `track.scrobble` POSTs, then `user.getRecentTracks` reading the play back, and a phase whose
//! writes are accepted but never show. Every request has a five-second timeout.

use std::time::Duration;

use lastfm_monitor::probe::sign::api_sig;
use lastfm_monitor::sim::Scenario;
use serde_json::Value;

use crate::support::http_client;

const KEY: &str = "0123456789abcdef0123456789abcdef";
const SECRET: &str = "fedcba9876543210fedcba9876543210";
const SK: &str = "sk-writer";

/// The simulator knows the key and maps the session key to `canary`; `phases` follows.
fn scenario(phases: &str) -> Scenario {
    Scenario::from_toml_str(&format!(
        "[[keys]]\napi_key = \"{KEY}\"\nsecret = \"{SECRET}\"\n\
         session_users = {{ \"{SK}\" = \"canary\" }}\n{phases}"
    ))
    .expect("the scenario is valid")
}

/// POSTs `pairs` (signed when `sign`) with the key and `format=json`; status and body.
async fn call(base: &str, pairs: &[(&str, &str)], sign: bool) -> (u16, Value) {
    let mut form: Vec<(String, String)> = pairs
        .iter()
        .chain(&[("api_key", KEY)])
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    if sign {
        let sig = api_sig(form.iter().map(|(k, v)| (k.as_str(), v.as_str())), SECRET);
        form.push(("api_sig".to_owned(), sig));
    }
    form.push(("format".to_owned(), "json".to_owned()));
    let client = http_client()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("a client builds");
    let response = client
        .post(base)
        .form(&form)
        .send()
        .await
        .expect("the simulator answers");
    let status = response.status().as_u16();
    let text = response.text().await.expect("a whole body");
    (status, serde_json::from_str(&text).expect("a JSON body"))
}

async fn recent(base: &str) -> Value {
    let pairs = [("method", "user.getRecentTracks"), ("user", "canary")];
    let (status, body) = call(base, &pairs, false).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["recenttracks"]["@attr"]["user"], "canary");
    body["recenttracks"]["track"].clone()
}

#[tokio::test]
async fn a_written_play_is_read_back() {
    let (_sim, addr) = lastfm_monitor::sim::spawn_local(scenario(""))
        .await
        .unwrap();
    let base = format!("http://{addr}/2.0/");
    let timestamp = "1700000321";
    let scrobble = [
        ("method", "track.scrobble"),
        ("artist", "Lastfm Monitor"),
        ("track", "Canary"),
        ("timestamp", timestamp),
        ("duration", "60"),
        ("sk", SK),
    ];
    let (status, body) = call(&base, &scrobble, true).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scrobbles"]["@attr"]["accepted"], 1);
    assert_eq!(body["scrobbles"]["scrobble"]["timestamp"], timestamp);

    let now_playing = [
        ("method", "track.updateNowPlaying"),
        ("artist", "Lastfm Monitor"),
        ("track", "Now"),
        ("sk", SK),
    ];
    let (status, body) = call(&base, &now_playing, true).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["nowplaying"]["ignoredMessage"]["code"], "0");

    let tracks = recent(&base).await;
    assert_eq!(tracks[0]["name"], "Now");
    assert_eq!(tracks[0]["@attr"]["nowplaying"], "true");
    assert_eq!(tracks[1]["name"], "Canary");
    assert_eq!(tracks[1]["date"]["uts"], timestamp);

    let (status, body) = call(&base, &scrobble, false).await;
    assert_eq!(
        (status, body["error"].as_u64()),
        (400, Some(13)),
        "unsigned"
    );
}

#[tokio::test]
async fn an_invisible_phase_accepts_writes_that_never_show() {
    let phases = "[[phases]]\nname = \"invisible\"\n[phases.writes]\ninvisible = true\n";
    let (_sim, addr) = lastfm_monitor::sim::spawn_local(scenario(phases))
        .await
        .unwrap();
    let base = format!("http://{addr}/2.0/");
    let now_playing = [
        ("method", "track.updateNowPlaying"),
        ("artist", "Lastfm Monitor"),
        ("track", "Now"),
        ("sk", SK),
    ];
    let (status, body) = call(&base, &now_playing, true).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["nowplaying"]["ignoredMessage"]["code"], "0");
    let tracks = recent(&base).await;
    assert!(tracks[0].get("@attr").is_none(), "{tracks}");
    assert_eq!(
        tracks.as_array().map(Vec::len),
        Some(1),
        "only the canned play"
    );
}

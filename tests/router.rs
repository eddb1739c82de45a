//! Every endpoint and error path through `server::router`, without sockets (tower `oneshot`),
//! with a fake prober behind `/probe`.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine as _;
use lastfm_monitor::config::web::{PasswordHash, WebConfig};
use lastfm_monitor::run::{Mode, RunResult};
use tokio::time::Instant;

use crate::support::{CANARY_KEY, CANARY_SECRET, CANARY_SK, FakeProber, RouterFixture};

const PROBES: &str = r#"
[[targets.probes]]
method = "artist.getInfo"
params = { artist = "Cher" }

[[targets.probes]]
name = "user.getInfo-signed"
method = "user.getInfo"
signed = true
"#;

const SUCCESS: &str = r#"{"artist":{"name":"Cher"}}"#;

fn fixture() -> RouterFixture {
    RouterFixture::new(
        "",
        PROBES,
        FakeProber::json(200, SUCCESS),
        &WebConfig::default(),
    )
}

/// Every form in which a canary could leak.
fn assert_no_canary(text: &str, what: &str) {
    for canary in [CANARY_KEY, CANARY_SECRET, CANARY_SK] {
        let encoded: String = url::form_urlencoded::byte_serialize(canary.as_bytes()).collect();
        assert!(
            !text.contains(canary) && !text.contains(&encoded),
            "{what} leaks a canary:\n{text}"
        );
    }
}

#[tokio::test]
async fn metrics_is_the_text_exposition() {
    let f = fixture();
    let answer = f.get("/metrics").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.headers[header::CONTENT_TYPE],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert!(answer.body.contains("lastfm_monitor_build_info"));
    assert!(answer.body.contains("probe=\"user.getInfo-signed\""));
    assert_eq!(f.prober.calls(), 0, "/metrics never runs a probe");
}

/// Prometheus asks for gzip: the same exposition comes compressed, and says so; a scraper that
/// does not ask for it, or refuses it, gets the text.
#[tokio::test]
async fn metrics_is_gzip_compressed_when_the_scraper_accepts_it() {
    use http_body_util::BodyExt as _;
    use std::io::Read as _;
    use tower::ServiceExt as _;

    let f = fixture();
    let scrape = |accept: Option<&'static str>| {
        let router = lastfm_monitor::server::router(std::sync::Arc::clone(&f.shared));
        async move {
            let mut request = Request::get("/metrics");
            if let Some(accept) = accept {
                request = request.header(header::ACCEPT_ENCODING, accept);
            }
            let response = router
                .oneshot(request.body(Body::empty()).unwrap())
                .await
                .unwrap();
            let headers = response.headers().clone();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            (headers, bytes)
        }
    };
    // Without the process families, whose values move between two scrapes.
    let series = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|line| !line.contains("process_"))
            .map(str::to_owned)
            .collect()
    };
    let (plain_headers, plain) = scrape(None).await;
    assert!(plain_headers.get(header::CONTENT_ENCODING).is_none());
    assert_eq!(plain_headers[header::VARY], "accept-encoding");
    let plain = String::from_utf8(plain.to_vec()).unwrap();

    let (headers, compressed) = scrape(Some("deflate, gzip;q=0.9, br")).await;
    assert_eq!(headers[header::CONTENT_ENCODING], "gzip");
    assert_eq!(
        headers[header::CONTENT_TYPE],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert!(
        compressed.len() * 3 < plain.len(),
        "{} of {}",
        compressed.len(),
        plain.len()
    );
    let mut text = String::new();
    flate2::read::GzDecoder::new(&compressed[..])
        .read_to_string(&mut text)
        .expect("a complete gzip stream");
    assert_eq!(series(&text), series(&plain));

    let (refused, body) = scrape(Some("gzip;q=0, identity")).await;
    assert!(refused.get(header::CONTENT_ENCODING).is_none());
    assert!(
        String::from_utf8(body.to_vec())
            .unwrap()
            .contains("lastfm_monitor_build_info")
    );
}

/// A reload cancels the generation's schedules, not a run someone asked for: the caller of
/// `/probe` gets its result.
#[tokio::test]
async fn an_on_demand_run_outlives_a_reload() {
    let f = fixture();
    f.prober.set_delay(Duration::from_millis(300));
    let shared = std::sync::Arc::clone(&f.shared);
    let reload = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        // What a reload does to the running generation.
        shared.generation().cancel.cancel();
    });
    let answer = f.get("/probe?target=sim&probe=artist.getInfo").await;
    reload.await.unwrap();
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(f.prober.calls(), 1);
}

#[tokio::test]
async fn healthy_and_ready() {
    let f = fixture();
    assert_eq!(f.get("/-/healthy").await.status, StatusCode::OK);
    let not_ready = f.get("/-/ready").await;
    assert_eq!(not_ready.status, StatusCode::SERVICE_UNAVAILABLE);
    f.shared.ready.store(true, Ordering::Release);
    assert_eq!(f.get("/-/ready").await.status, StatusCode::OK);
}

#[tokio::test]
async fn unknown_paths_are_404_without_echo_and_wrong_methods_405() {
    let f = fixture();
    let answer = f.get("/secret-admin-%3Cscript%3E").await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert!(!answer.body.contains("secret-admin"), "{}", answer.body);
    for (method, uri) in [
        ("POST", "/metrics"),
        ("GET", "/-/reload"),
        ("DELETE", "/"),
        ("PUT", "/probe"),
    ] {
        let answer = f
            .send(
                Request::builder()
                    .method(method)
                    .uri(uri)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(
            answer.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {uri}"
        );
    }
}

#[tokio::test]
async fn head_and_other_methods_on_probe_are_405_allow_get_without_a_run() {
    let f = fixture();
    for method in ["HEAD", "POST", "PUT"] {
        let answer = f
            .send(
                Request::builder()
                    .method(method)
                    .uri("/probe?target=sim&probe=artist.getInfo")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(answer.headers[header::ALLOW], "GET", "{method}");
    }
    assert_eq!(f.prober.calls(), 0, "HEAD /probe sends no upstream request");
    let get = f.get("/probe?target=sim&probe=artist.getInfo").await;
    assert_eq!(get.status, StatusCode::OK, "{}", get.body);
    assert_eq!(f.prober.calls(), 1);
}

#[tokio::test]
async fn reload_answers_with_the_app_s_verdict() {
    let f = fixture();
    let mut rx = f.reloads.lock().unwrap().take().unwrap();
    let app = tokio::spawn(async move {
        let first = rx.recv().await.unwrap();
        let _ = first.send(Ok(
            "configuration reloaded: 1 target(s), 2 probe(s)".to_owned()
        ));
        let second = rx.recv().await.unwrap();
        let _ = second.send(Err("config.toml:3:1: key `interval`: bad".to_owned()));
        drop(rx);
    });
    let post = || Request::post("/-/reload").body(Body::empty()).unwrap();
    let ok = f.send(post()).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert!(ok.body.contains("reloaded"));
    let refused = f.send(post()).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.body.contains("previous one keeps running"));
    assert!(refused.body.contains("key `interval`"));
    app.await.unwrap();
    let gone = f.send(post()).await;
    assert_eq!(
        gone.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        gone.body
    );
}

#[tokio::test]
async fn probe_needs_a_target_and_a_probe_it_knows() {
    let f = fixture();
    let usage = f.get("/probe?target=sim").await;
    assert_eq!(usage.status, StatusCode::BAD_REQUEST);
    assert!(usage.body.contains("usage: /probe?target=T&probe=P"));
    let target = f.get("/probe?target=nope&probe=artist.getInfo").await;
    assert_eq!(target.status, StatusCode::NOT_FOUND);
    assert!(target.body.contains("unknown target"), "{}", target.body);
    assert!(!target.body.contains("nope"), "the 404 does not echo input");
    let probe = f.get("/probe?target=sim&probe=artist.getinfo").await;
    assert_eq!(probe.status, StatusCode::NOT_FOUND);
    assert!(probe.body.contains("unknown probe"), "{}", probe.body);
    assert_eq!(f.prober.calls(), 0);
}

#[tokio::test]
async fn probe_returns_that_run_s_metrics() {
    let f = fixture();
    let answer = f.get("/probe?target=sim&probe=artist.getInfo").await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(
        answer.headers[header::CONTENT_TYPE],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let labels = r#"target="sim",probe="artist.getInfo""#;
    for line in [
        format!("lastfm_probe_success{{{labels}}} 1"),
        format!("lastfm_probe_http_status_code{{{labels}}} 200"),
        format!("lastfm_probe_last_error_code{{{labels}}} 0"),
        format!("lastfm_probe_outcome{{{labels},outcome=\"success\"}} 1"),
        format!("lastfm_probe_outcome{{{labels},outcome=\"timeout\"}} 0"),
    ] {
        assert!(
            answer.body.lines().any(|l| l == line),
            "{line} in\n{}",
            answer.body
        );
    }
    assert_eq!(f.prober.calls(), 1);
    // An on-demand run leaves the scheduled series alone, as their HELP texts promise.
    let metrics = f.get("/metrics").await.body;
    crate::support::assert_metric(
        &metrics,
        "lastfm_probe_runs_total",
        &[("probe", "artist.getInfo"), ("outcome", "success")],
        0.0,
    );
}

#[tokio::test]
async fn probe_debug_is_a_redacted_plain_text_trace() {
    // A hostile upstream echoes every secret back, raw and URL-encoded, in body and headers.
    let body = format!(
        r#"{{"error":10,"message":"Invalid API key {CANARY_KEY} (sig for {CANARY_SECRET}, sk {CANARY_SK}, {})"}}"#,
        url::form_urlencoded::byte_serialize(CANARY_SK.as_bytes()).collect::<String>()
    );
    let f = RouterFixture::new(
        "",
        PROBES,
        FakeProber::json(403, &body),
        &WebConfig::default(),
    );
    let answer = f
        .get("/probe?target=sim&probe=user.getInfo-signed&debug=true")
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(
        answer.headers[header::CONTENT_TYPE],
        "text/plain; charset=utf-8"
    );
    for part in [
        "== request",
        "POST http://127.0.0.1:9/2.0/",
        "api_key = <secret>",
        "== response",
        "status 403",
        "content-type: application/json",
        "-- body",
        "== classification",
        "outcome: api_error",
        "error code: 10",
        "raises condition: api_key_invalid",
    ] {
        assert!(answer.body.contains(part), "{part:?} in\n{}", answer.body);
    }
    assert_no_canary(&answer.body, "the debug trace");
}

/// A hostile upstream echoes the key changed (upper-cased, halved, base64- and percent-encoded)
/// and sends terminal escapes, NUL, CR/LF and a right-to-left override: the trace shows none of
/// the key and none of those characters raw, and the status page neither.
#[tokio::test]
async fn probe_debug_escapes_control_characters_and_redacts_every_form_of_a_secret() {
    use base64::Engine as _;
    let upper = CANARY_KEY.to_ascii_uppercase();
    let half = &CANARY_KEY[..16];
    let b64 = base64::engine::general_purpose::STANDARD.encode(CANARY_KEY);
    let message = format!(
        "bad key {upper} / {half} / {b64} \u{1b}[31mred\u{1b}[0m \u{0}nul \r\nX-Injected: 1 \u{202e}txt.exe"
    );
    let body = serde_json::json!({"error": 10, "message": message}).to_string();
    let f = RouterFixture::new(
        "",
        PROBES,
        FakeProber::json(403, &body),
        &WebConfig::default(),
    );
    let answer = f
        .get("/probe?target=sim&probe=user.getInfo-signed&debug=true")
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let trace = &answer.body;
    for shown in [
        "\\u{1b}[31mred",
        "\\u{0}nul",
        "\\u{d}\\u{a}X-Injected",
        "\\u{202e}txt.exe",
    ] {
        assert!(trace.contains(shown), "{shown:?} in\n{trace}");
    }
    for raw in ['\u{1b}', '\u{0}', '\r', '\u{202e}'] {
        assert!(!trace.contains(raw), "{raw:?} raw in\n{trace}");
    }
    let detail = trace
        .lines()
        .find(|line| line.starts_with("detail: "))
        .expect("a detail line");
    assert!(!detail.contains("\nX-Injected"), "one line: {detail}");
    for form in [
        upper.as_str(),
        half,
        b64.as_str(),
        &CANARY_KEY.to_ascii_lowercase(),
    ] {
        assert!(
            !trace
                .to_ascii_lowercase()
                .contains(&form.to_ascii_lowercase()),
            "{form} in\n{trace}"
        );
    }
    assert_no_canary(trace, "the debug trace");
    let page = f.get("/").await.body;
    for raw in ['\u{1b}', '\u{0}', '\u{202e}'] {
        assert!(!page.contains(raw), "{raw:?} raw on the status page");
    }
    assert!(
        !page
            .to_ascii_lowercase()
            .contains(&half.to_ascii_lowercase())
    );
}

#[tokio::test]
async fn probe_debug_shows_only_the_first_4_kib_of_the_body() {
    let body = format!(
        r#"{{"artist":{{"name":"Cher","bio":"{}"}}}}"#,
        "x".repeat(10_000)
    );
    let f = RouterFixture::new(
        "",
        PROBES,
        FakeProber::json(200, &body),
        &WebConfig::default(),
    );
    let answer = f
        .get("/probe?target=sim&probe=artist.getInfo&debug=1")
        .await;
    assert!(answer.body.contains("first 4 KiB shown"), "{}", answer.body);
    assert!(answer.body.len() < 6 * 1024, "{} bytes", answer.body.len());
}

#[tokio::test]
async fn probe_beyond_the_budget_is_429_with_the_reason() {
    let text = format!(
        r#"
[[targets]]
name = "sim"
base_url = "http://127.0.0.1:9/2.0/"
api_key = "{CANARY_KEY}"
api_secret = "{CANARY_SECRET}"
max_requests_per_second = 0.1
burst = 1
{PROBES}"#
    );
    let f =
        RouterFixture::with_config(&text, FakeProber::json(200, SUCCESS), &WebConfig::default());
    let first = f.get("/probe?target=sim&probe=artist.getInfo").await;
    assert_eq!(first.status, StatusCode::OK);
    let refused = f.get("/probe?target=sim&probe=artist.getInfo").await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers.contains_key(header::RETRY_AFTER));
    assert!(
        refused.body.contains("politeness budget"),
        "{}",
        refused.body
    );
    assert!(refused.body.contains("(rate_limited)"), "{}", refused.body);
    assert_eq!(f.prober.calls(), 1, "a refused run is never sent");
}

#[tokio::test]
async fn probe_during_backoff_is_429() {
    let f = RouterFixture::new(
        "",
        PROBES,
        FakeProber::json(429, r#"{"error":29,"message":"Rate Limit Exceeded"}"#),
        &WebConfig::default(),
    );
    let limited = f.get("/probe?target=sim&probe=artist.getInfo").await;
    assert!(limited.body.contains("lastfm_probe_last_error_code"));
    f.prober.set_json(200, SUCCESS);
    let refused = f.get("/probe?target=sim&probe=artist.getInfo").await;
    assert_eq!(
        refused.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        refused.body
    );
    assert!(refused.body.contains("rate_limited"));
}

#[tokio::test]
async fn runs_are_kept_with_their_trace() {
    let f = fixture();
    f.get("/probe?target=sim&probe=artist.getInfo").await;
    let page = f.get("/").await.body;
    let id = page
        .split("href=\"/runs/")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the recent runs link their trace");
    let trace = f.get(&format!("/runs/{id}")).await;
    assert_eq!(trace.status, StatusCode::OK);
    assert!(
        trace.body.starts_with("probe artist.getInfo of target sim"),
        "{}",
        trace.body
    );
    let gone = f.get("/runs/999999").await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert!(gone.body.contains("only recent runs are kept"));
    // Not a number: the fixed 404, never a parser error that repeats the path.
    let bad = f.get("/runs/not-a-number").await;
    assert_eq!(bad.status, StatusCode::NOT_FOUND);
    assert!(!bad.body.contains("not-a-number"), "{}", bad.body);
}

#[tokio::test]
async fn status_page_lists_targets_probes_and_runs_without_scripts_or_secrets() {
    let hostile =
        format!(r#"{{"error":6,"message":"<script>alert(1)</script> & key {CANARY_KEY}"}}"#);
    let f = RouterFixture::new(
        "",
        PROBES,
        FakeProber::json(200, &hostile),
        &WebConfig::default(),
    );
    let generation = f.shared.generation();
    let rt = &generation.targets[0];
    rt.set_next_run(0, Instant::now() + Duration::from_secs(42));
    // One scheduled run (the probes table shows those) and one on demand.
    let scheduled = f
        .shared
        .runner
        .run(
            rt,
            0,
            Instant::now() + Duration::from_secs(1),
            Mode::Scheduled,
            &generation.cancel,
        )
        .await;
    assert!(matches!(scheduled, RunResult::Done(_)), "{scheduled:?}");
    f.get("/probe?target=sim&probe=artist.getInfo").await;
    let answer = f.get("/").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(
        answer.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = answer.body;
    for part in [
        "id=\"targets\"",
        "id=\"probes\"",
        "id=\"recent\"",
        "<td>artist.getInfo</td>",
        "<td>user.getInfo-signed</td>",
        "href=\"/metrics\"",
        "documentation: <code>man lastfm-monitor</code>",
        "<th>next run</th>",
        "not scheduled yet",
        "(on demand)",
        "&lt;script&gt;alert(1)&lt;/script&gt; &amp; key",
    ] {
        assert!(page.contains(part), "{part:?} in\n{page}");
    }
    assert!(page.contains("in 42s ("), "next run shown: {page}");
    assert!(!page.contains("<script"), "no script, hostile text escaped");
    // Every link stays on the daemon: documentation that ships with the binary, no address
    // outside that may not exist.
    assert!(!page.contains("href=\"http"), "no external link: {page}");
    assert!(
        !page.contains("<link") && !page.contains(" src="),
        "no external assets"
    );
    assert_no_canary(&page, "the status page");
}

fn users() -> WebConfig {
    let hash = bcrypt::hash("s3cret", 4).expect("cost 4 is valid");
    WebConfig {
        users: BTreeMap::from([(
            "prometheus".to_owned(),
            PasswordHash::parse(&hash).expect("bcrypt made it"),
        )]),
        ..WebConfig::default()
    }
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

#[tokio::test]
async fn basic_auth_guards_every_route_including_unknown_ones() {
    let f = RouterFixture::new("", PROBES, FakeProber::json(200, SUCCESS), &users());
    for (method, uri) in [
        ("GET", "/"),
        ("GET", "/metrics"),
        ("GET", "/probe?target=sim&probe=artist.getInfo"),
        ("GET", "/runs/1"),
        ("GET", "/-/healthy"),
        ("GET", "/-/ready"),
        ("POST", "/-/reload"),
        ("GET", "/no-such-page"),
    ] {
        for authorization in [
            None,
            Some(basic("prometheus", "wrong")),
            Some(basic("root", "s3cret")),
        ] {
            let mut request = Request::builder().method(method).uri(uri);
            if let Some(value) = &authorization {
                request = request.header(header::AUTHORIZATION, value);
            }
            let answer = f.send(request.body(Body::empty()).unwrap()).await;
            assert_eq!(
                answer.status,
                StatusCode::UNAUTHORIZED,
                "{method} {uri} {authorization:?}"
            );
            assert_eq!(
                answer.headers[header::WWW_AUTHENTICATE],
                "Basic realm=\"lastfm-monitor\", charset=\"UTF-8\""
            );
        }
    }
    assert_eq!(f.prober.calls(), 0, "an unauthenticated /probe never runs");
    let ok = f
        .send(
            Request::get("/metrics")
                .header(header::AUTHORIZATION, basic("prometheus", "s3cret"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    let auth = f.shared.basic_auth().unwrap();
    let before = auth.slow_checks();
    for _ in 0..3 {
        let again = f
            .send(
                Request::get("/metrics")
                    .header(header::AUTHORIZATION, basic("prometheus", "s3cret"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(again.status, StatusCode::OK);
    }
    assert_eq!(auth.slow_checks(), before, "repeated scrapes hit the cache");
}

#[tokio::test]
async fn configured_security_headers_are_on_every_answer() {
    let pem_free = "http_server_config:\n  headers:\n    X-Frame-Options: deny\n    X-Content-Type-Options: nosniff\n";
    let mut web = WebConfig::parse(pem_free, "web.yml", std::path::Path::new(".")).unwrap();
    web.users = users().users;
    let f = RouterFixture::new("", PROBES, FakeProber::json(200, SUCCESS), &web);
    let denied = f.get("/").await;
    assert_eq!(denied.status, StatusCode::UNAUTHORIZED);
    assert_eq!(denied.headers["x-frame-options"], "deny");
    let ok = f
        .send(
            Request::get("/")
                .header(header::AUTHORIZATION, basic("prometheus", "s3cret"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.headers["x-content-type-options"], "nosniff");
}

#[tokio::test]
async fn the_status_api_says_unknown_before_a_run_and_follows_scheduled_runs() {
    let f = fixture();
    let before = f.get("/api/v1/status").await;
    assert_eq!(before.status, StatusCode::OK);
    assert_eq!(before.headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(before.headers[header::CACHE_CONTROL], "max-age=5");
    let doc: serde_json::Value = serde_json::from_str(&before.body).expect("JSON");
    let target = &doc["targets"][0];
    assert_eq!(target["state"], "unknown");
    assert_eq!(target["cause"], "no run yet");
    assert!(target["since"].is_null() && target["probes"][0]["outcome"].is_null());
    assert_no_canary(&before.body, "the status document");

    // A scheduled run moves it; an on-demand one does not.
    f.get("/probe?target=sim&probe=artist.getInfo").await;
    assert_eq!(f.get("/api/v1/status").await.body, before.body);
    let generation = f.shared.generation();
    let cancel = tokio_util::sync::CancellationToken::new();
    let latest = Instant::now() + Duration::from_secs(2);
    let run = f
        .shared
        .runner
        .run(&generation.targets[0], 0, latest, Mode::Scheduled, &cancel)
        .await;
    assert!(matches!(run, RunResult::Done(_)), "{run:?}");
    let after = f.get("/api/v1/status").await;
    let doc: serde_json::Value = serde_json::from_str(&after.body).expect("JSON");
    assert_eq!(doc["targets"][0]["state"], "operational");
    assert_eq!(doc["targets"][0]["probes"][0]["outcome"], "success");
    assert!(doc["targets"][0]["probes"][1]["outcome"].is_null());
    let etag = after.headers[header::ETAG].to_str().unwrap().to_owned();
    assert_ne!(etag, before.headers[header::ETAG].to_str().unwrap());

    let cached = f
        .send(
            Request::builder()
                .uri("/api/v1/status")
                .header(header::IF_NONE_MATCH, &etag)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(cached.status, StatusCode::NOT_MODIFIED);
    assert!(cached.body.is_empty());
    let post = f
        .send(
            Request::builder()
                .method("POST")
                .uri("/api/v1/status")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);

    let badge = f.get("/badge/sim.svg").await;
    assert_eq!(badge.status, StatusCode::OK);
    assert_eq!(badge.headers[header::CONTENT_TYPE], "image/svg+xml");
    assert!(badge.body.starts_with("<svg ") && badge.body.contains(">operational</text>"));
    assert_eq!(
        f.get("/badge/other.svg").await.status,
        StatusCode::NOT_FOUND
    );
    let feed = f.get("/api/v1/incidents.atom").await;
    assert_eq!(feed.headers[header::CONTENT_TYPE], "application/atom+xml");
    assert!(!feed.body.contains("<entry>"), "no incident yet");

    let page = f.get("/").await.body;
    assert!(page.contains("data-state=\"operational\""), "{page}");
    assert!(page.contains("class=\"strip\""), "{page}");
}

//! The status API end to end: `/api/v1/status` against its shipped schema in every state a short
//! real-time scenario walks (healthy, error 11, healthy again), its `ETag` and 304, the Atom
//! feed's RFC 4287 elements, the badge, and the status model surviving a restart through the
//! state file.
//!
//! The schema is checked by a small validator of the JSON Schema keywords the shipped schema
//! uses (`validate`); it refuses any other keyword, so it cannot pass a schema by ignoring
//! part of it.

use std::time::Duration;

use lastfm_monitor::history::state::State;
use lastfm_monitor::sim::Scenario;
use serde_json::Value;

use crate::support::{Daemon, Extra, http_client, target_toml};

/// The longest any single wait may take.
const LIMIT: Duration = Duration::from_secs(20);

const PROBES: &str = r#"
[[targets.probes]]
method = "artist.getInfo"
params = { artist = "Cher" }
interval = "1s"
timeout = "800ms"

[[targets.probes]]
method = "user.getInfo"
params = { user = "canary" }
interval = "1s"
timeout = "800ms"
"#;

fn scenario(rule: &str) -> Scenario {
    let text = format!("[[phases]]\nname = \"test\"\nrules = [{{ {rule} }}]\n");
    Scenario::from_toml_str(&text).unwrap_or_else(|err| panic!("bad scenario: {err}"))
}

fn healthy() -> Scenario {
    scenario("respond = \"success\"")
}

fn error_11() -> Scenario {
    scenario("respond = \"error\", code = 11, status = 503")
}

fn schema() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/status-api.schema.json"
    ))
    .expect("the schema is shipped");
    serde_json::from_str(&text).expect("the schema is JSON")
}

/// The problems of `doc` against `schema` (empty: valid). Supports the keywords the shipped
/// schema uses; any other keyword is itself a problem.
fn validate(root: &Value, schema: &Value, doc: &Value, at: &str, problems: &mut Vec<String>) {
    let Some(rules) = schema.as_object() else {
        problems.push(format!("{at}: schema is not an object"));
        return;
    };
    for (keyword, rule) in rules {
        match keyword.as_str() {
            "$schema" | "$id" | "title" | "description" | "$defs" => {}
            "$ref" => {
                let name = rule.as_str().unwrap_or("").trim_start_matches("#/$defs/");
                match root.pointer(&format!("/$defs/{name}")) {
                    Some(target) => validate(root, target, doc, at, problems),
                    None => problems.push(format!("{at}: unresolved $ref {rule}")),
                }
            }
            "type" if !fits_type(rule, doc) => {
                problems.push(format!("{at}: {doc} is not of type {rule}"));
            }
            "type" => {}
            "const" if doc != rule => problems.push(format!("{at}: {doc} is not {rule}")),
            "const" => {}
            "enum" => {
                if !rule.as_array().is_some_and(|values| values.contains(doc)) {
                    problems.push(format!("{at}: {doc} is not one of {rule}"));
                }
            }
            "required" => {
                for name in rule
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                {
                    if doc.is_object() && doc.get(name).is_none() {
                        problems.push(format!("{at}: missing {name}"));
                    }
                }
            }
            "properties" => {
                for (name, sub) in rule.as_object().into_iter().flatten() {
                    if let Some(value) = doc.get(name) {
                        validate(root, sub, value, &format!("{at}/{name}"), problems);
                    }
                }
            }
            "additionalProperties" => {
                let known = rules.get("properties").and_then(Value::as_object);
                for name in doc.as_object().into_iter().flat_map(|o| o.keys()) {
                    if rule == &Value::Bool(false) && !known.is_some_and(|k| k.contains_key(name)) {
                        problems.push(format!("{at}: unexpected field {name}"));
                    }
                }
            }
            "items" => {
                for (i, item) in doc.as_array().into_iter().flatten().enumerate() {
                    validate(root, rule, item, &format!("{at}/{i}"), problems);
                }
            }
            "pattern" => {
                let re = regex::Regex::new(rule.as_str().unwrap_or("")).expect("a valid pattern");
                if let Some(text) = doc.as_str()
                    && !re.is_match(text)
                {
                    problems.push(format!("{at}: {text:?} does not match {rule}"));
                }
            }
            "minimum" | "maximum" => {
                if let (Some(value), Some(bound)) = (doc.as_f64(), rule.as_f64())
                    && (if keyword == "minimum" {
                        value < bound
                    } else {
                        value > bound
                    })
                {
                    problems.push(format!("{at}: {value} is beyond its {keyword} {bound}"));
                }
            }
            other => problems.push(format!("{at}: unsupported keyword {other}")),
        }
    }
}

/// Whether `doc` is of the JSON Schema `type` `rule` (a name or a list of names).
fn fits_type(rule: &Value, doc: &Value) -> bool {
    let types: Vec<&str> = match rule {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::Object(_) => vec![],
    };
    types.iter().any(|t| match *t {
        "object" => doc.is_object(),
        "array" => doc.is_array(),
        "string" => doc.is_string(),
        "boolean" => doc.is_boolean(),
        "null" => doc.is_null(),
        "number" => doc.is_number(),
        "integer" => doc.is_i64() || doc.is_u64(),
        _ => false,
    })
}

fn assert_valid(doc: &Value) {
    let schema = schema();
    let mut problems = Vec::new();
    validate(&schema, &schema, doc, "", &mut problems);
    assert!(
        problems.is_empty(),
        "the document does not fit the schema: {problems:?}\n{doc:#}"
    );
}

/// GET with optional `If-None-Match`: status, ETag, Cache-Control, body.
async fn get(
    daemon: &Daemon,
    path: &str,
    if_none_match: Option<&str>,
) -> (u16, String, String, String) {
    let client = http_client().build().expect("client");
    let mut request = client.get(daemon.url(path));
    if let Some(tag) = if_none_match {
        request = request.header("if-none-match", tag);
    }
    let response = request.send().await.expect("the daemon answers");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let (etag, cache) = (header("etag"), header("cache-control"));
    let status = response.status().as_u16();
    (status, etag, cache, response.text().await.expect("a body"))
}

async fn status_doc(daemon: &Daemon) -> (Value, String) {
    let (status, etag, cache, body) = get(daemon, "/api/v1/status", None).await;
    assert_eq!(status, 200);
    assert_eq!(cache, "max-age=5");
    let doc: Value = serde_json::from_str(&body).expect("JSON");
    assert_valid(&doc);
    (doc, etag)
}

/// Polls the document (validating each) until target `sim` is in `state`; returns it.
async fn wait_state(daemon: &Daemon, state: &str, seen: &mut Vec<String>) -> Value {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let (doc, _) = status_doc(daemon).await;
        let now = doc["targets"][0]["state"].as_str().unwrap_or("").to_owned();
        if seen.last() != Some(&now) {
            seen.push(now.clone());
        }
        if now == state {
            return doc;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {state} within {LIMIT:?}: {doc:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the wall clock is at least 5 s from a minute boundary for the next `span`:
/// uptime is read over complete minutes, so a poll pair across a boundary may differ by right.
async fn away_from_minute_boundary(span: Duration) {
    loop {
        let second = chrono::Utc::now().timestamp().rem_euclid(60);
        if (5..55 - i64::try_from(span.as_secs()).unwrap_or(0)).contains(&second) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The well-formedness of an XML text, and its element names in order.
fn elements(xml: &str) -> Vec<String> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut names = Vec::new();
    loop {
        match reader.read_event() {
            Ok(quick_xml::events::Event::Eof) => return names,
            Ok(quick_xml::events::Event::Start(e) | quick_xml::events::Event::Empty(e)) => {
                names.push(String::from_utf8_lossy(e.name().as_ref()).into_owned());
            }
            Ok(_) => {}
            Err(err) => panic!("not well-formed XML: {err}\n{xml}"),
        }
    }
}

#[test]
fn the_schema_names_every_state_and_refuses_wrong_documents() {
    let schema = schema();
    let states: Vec<&str> = schema["$defs"]["target"]["properties"]["state"]["enum"]
        .as_array()
        .expect("an enum")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(states, State::ALL.map(State::as_label));

    let good = serde_json::json!({
        "version": 1,
        "targets": [{
            "name": "lastfm", "api": "lastfm", "state": "outage", "degraded": true,
            "cause": "error 11, service offline, since 20:41 UTC",
            "since": "2026-12-01T20:41:00Z", "conditions": ["service_offline"],
            "uptime": {
                "1h": {"percent": 12.5, "coverage_percent": 100.0},
                "24h": {"percent": null, "coverage_percent": 0.0},
                "7d": {"percent": 99.9, "coverage_percent": 3.2}
            },
            "probes": [{"name": "artist.getInfo", "outcome": "api_error", "success": false,
                        "code": 11, "status": 503}]
        }]
    });
    assert_valid(&good);
    let wrong: [(&str, Value); 7] = [
        ("/targets/0/extra", serde_json::json!(1)),
        ("/targets/0/state", serde_json::json!("broken")),
        ("/targets/0/degraded", serde_json::json!("yes")),
        ("/targets/0/since", serde_json::json!("yesterday")),
        ("/targets/0/uptime/1h/percent", serde_json::json!(101)),
        ("/targets/0/probes/0/code", serde_json::json!("11")),
        ("/version", serde_json::json!(2)),
    ];
    for (pointer, value) in wrong {
        let mut doc = good.clone();
        let (parent, name) = pointer.rsplit_once('/').expect("a pointer");
        doc.pointer_mut(parent)
            .and_then(Value::as_object_mut)
            .expect("the parent")
            .insert(name.to_owned(), value);
        let mut problems = Vec::new();
        validate(&schema, &schema, &doc, "", &mut problems);
        assert!(!problems.is_empty(), "{pointer} should fail the schema");
    }
    let mut missing = good;
    missing["targets"][0]
        .as_object_mut()
        .expect("a target")
        .remove("cause");
    let mut problems = Vec::new();
    validate(&schema, &schema, &missing, "", &mut problems);
    assert_eq!(problems, ["/targets/0: missing cause"]);
}

#[tokio::test]
async fn the_status_document_walks_the_states_of_an_error_11_episode() {
    let daemon = Daemon::start(healthy(), "", "down_after = 3\nup_after = 1", PROBES).await;
    let mut seen = Vec::new();
    let doc = wait_state(&daemon, "operational", &mut seen).await;
    let target = &doc["targets"][0];
    assert_eq!(target["name"], "sim");
    assert_eq!(target["degraded"], false);
    assert_eq!(target["probes"][0]["outcome"], "success");
    assert!(
        target["cause"]
            .as_str()
            .is_some_and(|c| c.starts_with("the service answers normally since ")),
        "{target}"
    );

    // Nothing a bot acts on changes between two polls 2 s apart: the same ETag, and 304.
    away_from_minute_boundary(Duration::from_secs(3)).await;
    let (_, first) = status_doc(&daemon).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, second) = status_doc(&daemon).await;
    assert!(first.starts_with('"') && first.len() > 2, "{first}");
    assert_eq!(first, second, "the ETag moved with nothing changed");
    let (status, etag, cache, body) = get(&daemon, "/api/v1/status", Some(&first)).await;
    assert_eq!(
        (status, etag.as_str(), cache.as_str()),
        (304, first.as_str(), "max-age=5")
    );
    assert!(body.is_empty());

    daemon.sim.set_scenario(error_11());
    let doc = wait_state(&daemon, "outage", &mut seen).await;
    let target = &doc["targets"][0];
    assert_eq!(target["degraded"], true);
    assert!(
        target["cause"]
            .as_str()
            .is_some_and(|c| c.starts_with("error 11, service offline, since ")),
        "{target}"
    );
    assert!(
        target["conditions"]
            .as_array()
            .is_some_and(|c| c.contains(&Value::from("service_offline")))
    );
    assert_eq!(target["probes"][1]["code"], 11);
    assert_eq!(target["probes"][1]["status"], 503);
    let (status, ..) = get(&daemon, "/api/v1/status", Some(&first)).await;
    assert_eq!(status, 200, "a new state is a new document");

    // The badge says so, as SVG.
    let (status, _, _, svg) = get(&daemon, "/badge/sim.svg", None).await;
    assert_eq!(status, 200);
    assert_eq!(elements(&svg).first().map(String::as_str), Some("svg"));
    assert!(svg.contains(">outage</text>"), "{svg}");
    for path in ["/badge/nope.svg", "/badge/sim", "/badge/%3Cx%3E.svg"] {
        let (status, _, _, body) = get(&daemon, path, None).await;
        assert_eq!((status, body.as_str()), (404, "no such target\n"), "{path}");
    }

    daemon.sim.set_scenario(healthy());
    wait_state(&daemon, "operational", &mut seen).await;
    assert!(seen.contains(&"outage".to_owned()), "{seen:?}");
    assert_eq!(seen.last().map(String::as_str), Some("operational"));

    // The feed: RFC 4287's required elements, the outage among its entries, ended.
    let (status, _, _, feed) = get(&daemon, "/api/v1/incidents.atom", None).await;
    assert_eq!(status, 200);
    let names = elements(&feed);
    assert_eq!(names.first().map(String::as_str), Some("feed"));
    let entries = feed.split("<entry>").skip(1).collect::<Vec<_>>();
    assert!(!entries.is_empty(), "{feed}");
    for part in
        std::iter::once(feed.split("<entry>").next().unwrap_or("")).chain(entries.iter().copied())
    {
        for element in ["<id>", "<title>", "<updated>"] {
            assert!(part.contains(element), "{element} missing in {part}");
        }
    }
    assert!(feed.contains("<author><name>"), "{feed}");
    assert!(
        feed.contains("<title>sim: outage (ended)</title>"),
        "{feed}"
    );
    daemon.stop().await;
}

#[tokio::test]
async fn incidents_survive_a_restart_through_the_state_file() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = |sim| {
        format!(
            "[defaults]\nstartup_jitter = \"0s\"\n{}\n{PROBES}",
            target_toml(sim, "down_after = 2\nup_after = 1")
        )
    };
    let (sim, sim_addr) = lastfm_monitor::sim::spawn_local(error_11())
        .await
        .expect("the simulator binds");
    let kept = || Extra {
        state_directory: Some(dir.path().to_owned()),
        ..Extra::default()
    };
    let daemon = Daemon::start_extra(sim, sim_addr, &config(sim_addr), kept()).await;
    let mut seen = Vec::new();
    wait_state(&daemon, "outage", &mut seen).await;
    daemon.sim.set_scenario(healthy());
    wait_state(&daemon, "operational", &mut seen).await;
    let (_, _, _, before) = get(&daemon, "/api/v1/incidents.atom", None).await;
    assert!(
        before.contains("<title>sim: outage (ended)</title>"),
        "{before}"
    );
    daemon.stop().await;
    let file = std::fs::read_to_string(dir.path().join("state.json")).expect("a state file");
    assert!(file.contains("\"incidents\""), "{file}");

    // A new process (and a new simulator) with the same state directory.
    let (sim, sim_addr) = lastfm_monitor::sim::spawn_local(healthy())
        .await
        .expect("the simulator binds");
    let daemon = Daemon::start_extra(sim, sim_addr, &config(sim_addr), kept()).await;
    let (_, _, _, after) = get(&daemon, "/api/v1/incidents.atom", None).await;
    assert!(
        after.contains("<title>sim: outage (ended)</title>"),
        "{after}"
    );
    let entry = |feed: &str| feed.split("<entry>").nth(1).map(str::to_owned);
    assert_eq!(
        entry(&after),
        entry(&before),
        "the same incident, same id and times"
    );
    let (doc, _) = status_doc(&daemon).await;
    assert!(
        doc["targets"][0]["since"].is_string(),
        "the state's start is kept: {doc:#}"
    );
    daemon.stop().await;
}

#[tokio::test]
async fn the_status_listener_serves_the_status_and_refuses_metrics_and_probe() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let status_addr = listener.local_addr().expect("an address");
    let (sim, sim_addr) = lastfm_monitor::sim::spawn_local(healthy())
        .await
        .expect("the simulator binds");
    let config = format!(
        "[defaults]\nstartup_jitter = \"0s\"\n{}\n{PROBES}",
        target_toml(sim_addr, "")
    );
    let extra = Extra {
        status_listener: Some(std::sync::Arc::new(listener)),
        ..Extra::default()
    };
    let daemon = Daemon::start_extra(sim, sim_addr, &config, extra).await;
    wait_state(&daemon, "operational", &mut Vec::new()).await;
    let client = http_client().build().expect("client");
    let fetch = |path: &str| {
        let request = client.get(format!("http://{status_addr}{path}"));
        async move {
            let response = request.send().await.expect("the status listener answers");
            let status = response.status().as_u16();
            (status, response.text().await.expect("a body"))
        }
    };
    let (status, page) = fetch("/").await;
    assert_eq!(status, 200);
    assert!(page.contains("artist.getInfo"), "{page}");
    for link in ["/probe?", "/runs/", "href=\"/metrics\""] {
        assert!(!page.contains(link), "the public page links {link}");
    }
    let (status, body) = fetch("/api/v1/status").await;
    assert_eq!(status, 200);
    assert_valid(&serde_json::from_str(&body).expect("JSON"));
    assert_eq!(fetch("/api/v1/incidents.atom").await.0, 200);
    assert_eq!(fetch("/badge/sim.svg").await.0, 200);
    assert_eq!(fetch("/-/healthy").await, (200, "OK\n".to_owned()));
    for refused in [
        "/metrics",
        "/probe?target=sim&probe=artist.getInfo",
        "/runs/1",
        "/-/ready",
    ] {
        assert_eq!(fetch(refused).await.0, 404, "{refused}");
    }
    let (status, _) = {
        let response = client
            .post(format!("http://{status_addr}/-/reload"))
            .send()
            .await
            .expect("an answer");
        (response.status().as_u16(), ())
    };
    assert!(status == 404 || status == 405, "reload refused: {status}");
    // The main listener still has everything, its page with the links.
    let (status, page) = daemon.get("/").await;
    assert_eq!(status, 200);
    assert!(page.contains("/probe?target=sim"), "{page}");
    assert_eq!(daemon.get("/metrics").await.0, 200);
    daemon.stop().await;
}

//! The two Last.fm-compatible services the simulator can play besides Last.fm (its
//! personalities, `config::Api`): each one's own checks of a request, in its order, and the
//! shapes its answers take where they differ from Last.fm's. The method lists come from
//! `config::Api`, the one list the configuration checks probes against too.
//!
//! - Libre.fm runs GNU FM (`nixtape/2.0/index.php` of foocorp/gnu-fm): every error with HTTP 200;
//!   an unknown method answers 3 before anything else; the api_key is only length-checked;
//!   signatures are never checked; a write reads its parameters from the POST body only (a `GET`
//!   lacks them: 6), needs an `sk` (6 without, 9 unknown); `user.getInfo` needs `user`; an unknown
//!   user is 7 ("Invalid resource specified"), written by the entity classes, whose JSON encoder
//!   turns the XML error into `{"error": {"#text": …, "code": "7"}}` rather than the
//!   `{"error": 7, "message": …}` of its request-level errors.
//! - ListenBrainz's compatibility API (`webserver/views/api_compat.py`, `webserver/errors.py` of
//!   metabrainz/listenbrainz-server): every compat error with HTTP 200; a request without `method`
//!   is Flask's 400 JSON; a method outside its six answers 3; a write sent with `GET` answers 16;
//!   any api_key is valid, signatures are ignored, and the session key is what counts (9); an
//!   unknown user is 7. Its JSON is its XML converted without the `@attr` grouping: attributes
//!   become plain members (`"scrobbles": {"accepted": "1", …}`).

use serde_json::{Value, json};

use super::http::Params;
use super::responses::{self, MISSING_PARAMETER, Method, default_message};
use super::scenario::Scenario;
use crate::config::Api;

/// How a compatible service refuses a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The service's error reporter: `{"error": N, "message": …}` / `<lfm status="failed">`, 200.
    Api(u32, &'static str),
    /// GNU FM's entity classes: the same XML, but JSON `{"error": {"#text": …, "code": "N"}}`.
    Entity(u32, &'static str),
    /// The web framework's own error before the API's view runs: `{"code": N, "error": …}`.
    Http(u16, &'static str),
}

/// What a check lets through: the method to answer, or `None` for a method the service implements
/// and the simulator has no body for (answered with an empty success).
pub(crate) type Checked = Result<Option<&'static Method>, Refusal>;

/// ListenBrainz's text for a write sent with `GET` (`CompatError.SERVICE_UNAVAILABLE`).
const LISTENBRAINZ_16: &str = "The service is temporarily unavailable, please try again.";
/// Werkzeug's description of a 400, what Flask says when `method` is missing.
const BAD_REQUEST: &str =
    "The browser (or proxy) sent a request that this server could not understand.";
/// The `error` of ListenBrainz's 429 (brainzutils' `ratelimit`).
pub(crate) const LISTENBRAINZ_LIMIT_MESSAGE: &str = "You have exceeded your rate limit. See the \
     X-RateLimit-* response headers for more information on your current rate limit.";

fn api_error(code: u32) -> Refusal {
    Refusal::Api(code, default_message(code))
}

fn missing() -> Refusal {
    Refusal::Api(6, MISSING_PARAMETER)
}

/// Last.fm user names are 2-15 characters: a longer one is the negative control's user, one
/// that cannot exist on any of the services.
fn names_nobody(params: &Params) -> bool {
    params.get("user").is_some_and(|u| u.chars().count() > 15)
}

/// Whether `sk` is a session of `api_key`: any non-empty one without `[[keys]]`.
fn is_session(scenario: &Scenario, api_key: &str, sk: &str) -> bool {
    if scenario.keys().is_empty() {
        return !sk.is_empty();
    }
    scenario.keys().iter().any(|k| {
        k.api_key == api_key
            && (k.session_keys.iter().any(|s| s == sk) || k.session_users.contains_key(sk))
    })
}

/// The method, if `api` implements it: the method set is the configuration's.
fn implemented(api: Api, name: Option<&str>) -> Option<&str> {
    name.filter(|n| api.implements(n) == Some(true))
}

/// Libre.fm's checks, in GNU FM's order.
pub(crate) fn check_librefm(
    scenario: &Scenario,
    name: Option<&str>,
    params: &Params,
    is_post: bool,
) -> Checked {
    let name = implemented(Api::Librefm, name).ok_or(api_error(3))?;
    let api_key = params.get("api_key").map_or("", String::as_str);
    let is_known = if scenario.keys().is_empty() {
        api_key.chars().count() == 32
    } else {
        scenario.keys().iter().any(|k| k.api_key == api_key)
    };
    if !is_known {
        return Err(api_error(10));
    }
    let Some(method) = responses::lookup(name) else {
        return Ok(None);
    };
    let present = |name: &str| params.get(name).is_some_and(|v| !v.is_empty());
    // Its writes read `$_POST` only: a GET's parameters are not there.
    if method.is_write() && !is_post {
        return Err(missing());
    }
    let needs_user = method.name == "user.getInfo";
    let required = method.required.iter().chain(needs_user.then_some(&"user"));
    if required.copied().any(|name| !present(name)) {
        return Err(missing());
    }
    if method.is_write() {
        let sk = params.get("sk").ok_or(missing())?;
        if !is_session(scenario, api_key, sk) {
            return Err(api_error(9));
        }
    }
    if names_nobody(params) {
        return Err(Refusal::Entity(7, default_message(7)));
    }
    Ok(Some(method))
}

/// ListenBrainz's checks, in `api_methods`' order (its rate limit runs before, in the answer).
pub(crate) fn check_listenbrainz(
    scenario: &Scenario,
    name: Option<&str>,
    params: &Params,
    is_post: bool,
) -> Checked {
    let Some(asked) = name else {
        return Err(Refusal::Http(400, BAD_REQUEST));
    };
    let name = implemented(Api::Listenbrainz, Some(asked)).ok_or(api_error(3))?;
    let method = responses::lookup(name);
    let is_write = method.is_some_and(Method::is_write);
    if is_write && !is_post {
        return Err(Refusal::Api(16, LISTENBRAINZ_16));
    }
    // Absent parameters are a KeyError there (6); empty ones reach the session lookup (9).
    let api_key = params.get("api_key").ok_or(missing())?;
    let sk = params.get("sk");
    let is_user_info = name.eq_ignore_ascii_case("user.getInfo");
    if is_write || is_user_info {
        if sk.is_none() && (is_write || !params.contains_key("user")) {
            return Err(missing());
        }
        if !sk.is_some_and(|sk| is_session(scenario, api_key, sk)) {
            return Err(api_error(9));
        }
    }
    if is_user_info && names_nobody(params) {
        return Err(api_error(7));
    }
    let Some(method) = method else {
        return Ok(None);
    };
    let present = |name: &str| params.get(name).is_some_and(|v| !v.is_empty());
    if method.required.iter().any(|name| !present(name)) {
        return Err(missing());
    }
    Ok(Some(method))
}

/// The body of `refusal`, in JSON when the request asked for it (a framework error is always JSON).
pub(crate) fn refusal_body(refusal: Refusal, json: bool) -> String {
    match refusal {
        Refusal::Entity(code, message) if json => {
            let error = json!({"#text": message, "code": code.to_string()});
            json!({ "error": error }).to_string()
        }
        Refusal::Api(code, message) | Refusal::Entity(code, message) => {
            let format = if json {
                responses::Format::Json
            } else {
                responses::Format::Xml
            };
            responses::error_body(code, message, format)
        }
        Refusal::Http(status, message) => json!({"code": status, "error": message}).to_string(),
    }
}

/// ListenBrainz's JSON for a success the simulator writes Last.fm's way: every `@attr` object's
/// members become members of its parent, as strings (its converter drops the `@` of each
/// attribute). A body that is not JSON is left alone.
pub(crate) fn listenbrainz_json(body: String) -> String {
    match serde_json::from_str::<Value>(&body) {
        Ok(mut value) => {
            hoist_attributes(&mut value);
            value.to_string()
        }
        Err(_) => body,
    }
}

fn hoist_attributes(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Object(attrs)) = map.remove("@attr") {
                for (name, attr) in attrs {
                    map.insert(name, Value::String(text_of(&attr)));
                }
            }
            map.values_mut().for_each(hoist_attributes);
        }
        Value::Array(items) => items.iter_mut().for_each(hoist_attributes),
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {}
    }
}

fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other @ (Value::Bool(_) | Value::Number(_) | Value::Array(_) | Value::Object(_)) => {
            other.to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use super::*;
    use crate::sim::answer::{Asked, Memory, Reply, decide};
    use crate::sim::writes::Clock;

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    fn scenario(toml: &str) -> Scenario {
        Scenario::from_toml_str(toml).unwrap()
    }

    /// Asks `scenario` with `memory`, `format=json` and an api_key unless `pairs` names one.
    fn ask_with(
        scenario: &Scenario,
        memory: &mut Memory,
        pairs: &[(&str, &str)],
        is_post: bool,
    ) -> Reply {
        let mut params: Params = [("api_key", KEY), ("format", "json")]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        params.extend(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let now = Clock {
            at: Instant::now(),
            unix: 1_700_000_000,
        };
        let phase = scenario.phase_at(Duration::ZERO);
        let asked = Asked {
            params: &params,
            is_post,
        };
        decide(scenario, phase, asked, memory, now)
    }

    fn ask(scenario: &Scenario, pairs: &[(&str, &str)], is_post: bool) -> Reply {
        ask_with(scenario, &mut Memory::default(), pairs, is_post)
    }

    /// Status and error code (0 for a success), from a JSON body.
    fn outcome(reply: &Reply) -> (u16, u64) {
        let json: Value = serde_json::from_slice(&reply.body).unwrap();
        (reply.status, json["error"].as_u64().unwrap_or(0))
    }

    fn header<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
        reply
            .headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    const SCROBBLE: [(&str, &str); 5] = [
        ("method", "track.scrobble"),
        ("artist", "Cher"),
        ("track", "Believe"),
        ("timestamp", "1700000000"),
        ("sk", "sk-any"),
    ];

    #[test]
    fn librefm_answers_every_error_with_200_and_an_unknown_user_with_7() {
        let s = scenario("personality = \"librefm\"\n");
        let ghost = [
            ("method", "user.getInfo"),
            ("user", "nosuchuser-canary-0000"),
        ];
        let reply = ask(&s, &ghost, false);
        assert_eq!(reply.status, 200);
        let json: Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(json["error"]["code"], "7", "GNU FM's encoding: {json}");
        assert_eq!(json["error"]["#text"], "Invalid resource specified");
        let xml = ask(&s, &[ghost[0], ghost[1], ("format", "xml")], false);
        assert_eq!(xml.content_type, "text/xml");
        let text = String::from_utf8_lossy(&xml.body);
        assert!(
            text.contains("<error code=\"7\">Invalid resource specified</error>"),
            "{text}"
        );
        let outside = [
            ("method", "album.getInfo"),
            ("artist", "Cher"),
            ("album", "Believe"),
        ];
        assert_eq!(outcome(&ask(&s, &outside, false)), (200, 3));
        assert_eq!(
            outcome(&ask(&s, &[("method", "user.getInfo")], false)),
            (200, 6)
        );
        let info = [("method", "USER.GETINFO"), ("user", "rj")];
        assert_eq!(outcome(&ask(&s, &info, false)), (200, 0));
    }

    #[test]
    fn librefm_checks_only_the_key_length_and_takes_writes_by_post_with_a_session() {
        let s = scenario("personality = \"librefm\"\n");
        let info = [("method", "user.getInfo"), ("user", "rj")];
        let not_hex = [
            info[0],
            info[1],
            ("api_key", "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"),
        ];
        assert_eq!(outcome(&ask(&s, &not_hex, false)), (200, 0));
        let short = [info[0], info[1], ("api_key", "0123")];
        assert_eq!(outcome(&ask(&s, &short, false)), (200, 10));
        assert_eq!(outcome(&ask(&s, &SCROBBLE, false)), (200, 6), "GET");
        assert_eq!(outcome(&ask(&s, &SCROBBLE[..4], true)), (200, 6), "no sk");
        let reply = ask(&s, &SCROBBLE, true);
        assert_eq!(outcome(&reply), (200, 0), "unsigned is fine");
        let keyed = scenario(&format!(
            "personality = \"librefm\"\n[[keys]]\napi_key = \"{KEY}\"\nsession_keys = [\"sk-canary\"]\n"
        ));
        assert_eq!(outcome(&ask(&keyed, &SCROBBLE, true)), (200, 9));
    }

    #[test]
    fn librefm_reads_writes_back() {
        let s = scenario("personality = \"librefm\"\n");
        let mut memory = Memory::default();
        assert_eq!(
            outcome(&ask_with(&s, &mut memory, &SCROBBLE, true)),
            (200, 0)
        );
        let read = [("method", "user.getRecentTracks"), ("user", "simuser")];
        let reply = ask_with(&s, &mut memory, &read, false);
        let json: Value = serde_json::from_slice(&reply.body).unwrap();
        let tracks = json["recenttracks"]["track"].as_array().map(Vec::len);
        assert_eq!(tracks, Some(2), "the scrobble and the canned play");
    }

    #[test]
    fn listenbrainz_implements_six_methods_and_refuses_a_get_write_with_16() {
        let s = scenario("personality = \"listenbrainz\"\n");
        assert_eq!(outcome(&ask(&s, &SCROBBLE, false)), (200, 16));
        let outside = [("method", "user.getRecentTracks"), ("user", "rj")];
        assert_eq!(outcome(&ask(&s, &outside, false)), (200, 3));
        assert_eq!(
            outcome(&ask(&s, &[("method", "artist.getInfo")], false)),
            (200, 3)
        );
        let reply = ask(&s, &SCROBBLE, true);
        assert_eq!(outcome(&reply), (200, 0));
        let json: Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(json["scrobbles"]["accepted"], "1", "no @attr: {json}");
        assert!(json["scrobbles"].get("@attr").is_none());
        let unsigned_info = [("method", "user.getInfo"), ("user", "rj")];
        assert_eq!(
            outcome(&ask(&s, &unsigned_info, false)),
            (200, 9),
            "needs an sk"
        );
        let ghost = [
            ("method", "user.getInfo"),
            ("user", "nosuchuser-canary-0000"),
            ("sk", "x"),
        ];
        assert_eq!(outcome(&ask(&s, &ghost, false)), (200, 7));
        let token = ask(&s, &[("method", "auth.getToken")], false);
        assert_eq!(outcome(&token), (200, 0));
        let no_method = ask(&s, &[], false);
        let json: Value = serde_json::from_slice(&no_method.body).unwrap();
        assert_eq!((no_method.status, &json["code"]), (400, &Value::from(400)));
        let xml = ask(&s, &[SCROBBLE[0], ("format", "xml")], false);
        assert_eq!(xml.content_type, "application/xml; charset=utf-8");
    }

    #[test]
    fn listenbrainz_counts_down_its_window_then_answers_its_429() {
        let s = scenario("personality = \"listenbrainz\"\nrate_limit_per_second = 0.2\n");
        let mut memory = Memory::default();
        let np = [
            ("method", "track.updateNowPlaying"),
            ("artist", "Cher"),
            ("track", "Believe"),
            ("sk", "sk-any"),
        ];
        let first = ask_with(&s, &mut memory, &np, true);
        assert_eq!(outcome(&first), (200, 0));
        assert_eq!(header(&first, "X-RateLimit-Limit"), Some("2"));
        assert_eq!(header(&first, "X-RateLimit-Remaining"), Some("1"));
        assert_eq!(header(&first, "X-RateLimit-Reset-In"), Some("10"));
        let second = ask_with(&s, &mut memory, &np, true);
        assert_eq!(header(&second, "X-RateLimit-Remaining"), Some("0"));
        let third = ask_with(&s, &mut memory, &np, true);
        assert_eq!(third.status, 429);
        let json: Value = serde_json::from_slice(&third.body).unwrap();
        assert_eq!(json["code"], 429);
        assert!(
            json["error"]
                .as_str()
                .is_some_and(|e| e.contains("rate limit"))
        );
        assert!(json.get("message").is_none(), "not error 29: {json}");
        assert_eq!(header(&third, "X-RateLimit-Remaining"), Some("0"));
        assert!(header(&third, "X-RateLimit-Reset-In").is_some());
        let other = ask_with(&s, &mut memory, &[np[0], ("api_key", "another")], true);
        assert_ne!(other.status, 429, "a window per key");
    }

    #[test]
    fn a_forced_rate_limit_takes_each_personalitys_shape() {
        let rule =
            "[[phases]]\nname = \"p\"\nrules = [{ respond = \"rate_limited\", reset_in = 42 }]\n";
        let lb = scenario(&format!("personality = \"listenbrainz\"\n{rule}"));
        let reply = ask(&lb, &SCROBBLE, true);
        assert_eq!((reply.status, reply.kind), (429, "rate_limited"));
        assert_eq!(header(&reply, "X-RateLimit-Reset-In"), Some("42"));
        assert_eq!(header(&reply, "X-RateLimit-Limit"), Some("100"));
        assert_eq!(outcome(&ask(&scenario(rule), &SCROBBLE, true)), (429, 29));
        let knob = "personality = \"listenbrainz\"\n[[phases]]\nname = \"p\"\n\
                    [phases.writes]\nrate_limited = \"user\"\n";
        let reply = ask(&scenario(knob), &SCROBBLE, true);
        assert_eq!(reply.status, 429);
        assert_eq!(header(&reply, "X-RateLimit-Remaining"), Some("0"));
    }

    #[test]
    fn compatible_services_send_rule_errors_with_200_and_nginx_pages() {
        let rules = "[[phases]]\nname = \"p\"\nrules = [\n\
                     { method = \"user.getInfo\", respond = \"error\", code = 11 },\n\
                     { respond = \"html\" },\n]\n";
        let libre = scenario(&format!("personality = \"librefm\"\n{rules}"));
        let info = [("method", "user.getInfo"), ("user", "rj")];
        assert_eq!(outcome(&ask(&libre, &info, false)), (200, 11));
        let page = ask(&libre, &SCROBBLE, true);
        assert_eq!(
            (page.status, page.content_type.as_str()),
            (502, "text/html")
        );
        assert!(String::from_utf8_lossy(&page.body).contains("<center>nginx</center>"));
        assert_eq!(outcome(&ask(&scenario(rules), &info, false)), (503, 11));
    }

    #[test]
    fn write_quirks_break_the_answer_but_keep_the_play() {
        for (quirk, empty) in [("empty_body", true), ("text_html", false)] {
            let s = scenario(&format!(
                "personality = \"librefm\"\n[[phases]]\nname = \"p\"\n[phases.writes]\nquirk = \"{quirk}\"\n"
            ));
            let mut memory = Memory::default();
            let reply = ask_with(&s, &mut memory, &SCROBBLE, true);
            assert_eq!(reply.status, 200);
            assert_eq!(reply.content_type, "text/html; charset=UTF-8");
            assert_eq!(reply.body.is_empty(), empty, "{quirk}");
            let read = [("method", "user.getRecentTracks"), ("user", "simuser")];
            let back = ask_with(&s, &mut memory, &read, false);
            assert_eq!(
                back.content_type, "application/json; charset=utf-8",
                "reads are untouched"
            );
            let json: Value = serde_json::from_slice(&back.body).unwrap();
            assert_eq!(json["recenttracks"]["track"][0]["name"], "Believe");
            assert_eq!(
                json["recenttracks"]["track"].as_array().map(Vec::len),
                Some(2)
            );
        }
    }
}

//! The decision for one request: which status, which body, delivered how. Pure, given the scenario,
//! the active phase, the request, the limiters and the time, so the API's rules are tested without
//! sockets.
//!
//! Order: a matching rule of the active phase wins outright (so a phase can force error 26 for
//! everything). Otherwise the simulated service checks, like the real one. Last.fm: method (3),
//! api_key (6, 10), rate limit (29), signature (13), session key (9), users that cannot exist
//! (6 / 404, the negative control), required parameters (6). Libre.fm and ListenBrainz have their
//! own checks (`compat.rs`); ListenBrainz counts every request in its window first and reports
//! the window on every answer. Then it answers with a success body.

use std::time::Duration;

use tokio::time::Instant;

use super::compat::{self, LISTENBRAINZ_LIMIT_MESSAGE, Refusal};
use super::http::Params;
use super::limits::{self, RateLimiter, WindowState, Windows};
use super::plays::PlayStore;
use super::responses::{
    self, Format, MISSING_PARAMETER, Method, SESSION_USER, default_message, default_status,
    error_body, html_page, nginx_page, success_body,
};
use super::scenario::{Phase, Respond, Rule, Scenario, WriteQuirk};
use super::writes::{self, Clock, WriteRequest};
use crate::config::Api;
use crate::probe::sign::api_sig;

/// How an answer's bytes leave the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// A head with the body's length, then the body.
    Whole,
    /// A head with the body's full length, half of the body, then the connection closes.
    CutShort,
    /// A head with the body's length, then the body one byte per second.
    Trickle,
    /// Nothing until the client leaves.
    Stall,
    /// `bytes` bytes of JSON-like filler with an honest length, generated while sending.
    Filler { bytes: u64 },
}

/// Everything the server needs to send one answer.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) content_type: String,
    pub(crate) body: Vec<u8>,
    pub(crate) delivery: Delivery,
    pub(crate) delay: Duration,
    /// Headers beyond the fixed ones: a rule's `Retry-After`, ListenBrainz's `X-RateLimit-*`.
    pub(crate) headers: Vec<(&'static str, String)>,
    /// What was chosen, for the debug log: a rule's `respond` kind, `api_error` or `api_success`.
    pub(crate) kind: &'static str,
}

/// What the simulated API remembers between requests.
#[derive(Debug, Default)]
pub(crate) struct Memory {
    /// Last.fm's buckets per key; start afresh with each scenario.
    pub(crate) limiter: RateLimiter,
    /// ListenBrainz's windows per key; start afresh with each scenario.
    pub(crate) windows: Windows,
    /// Per user; outlives a scenario swap, as an account outlives an incident.
    pub(crate) plays: PlayStore,
}

/// One request as the decision needs it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Asked<'a> {
    pub(crate) params: &'a Params,
    /// Sent with `POST` (else `GET`): the compatible services take writes by POST only.
    pub(crate) is_post: bool,
}

/// Decides the answer to `asked` at `now`.
pub(crate) fn decide(
    scenario: &Scenario,
    phase: Option<&Phase>,
    asked: Asked<'_>,
    memory: &mut Memory,
    now: Clock,
) -> Reply {
    let params = asked.params;
    let method_name = params.get("method").map(String::as_str);
    if let Some(rule) = phase.and_then(|p| p.rule_for(method_name)) {
        return from_rule(rule, scenario, params, now.unix);
    }
    // ListenBrainz's limiter wraps its whole view: every request counts, every answer says so.
    let window = (scenario.personality() == Api::Listenbrainz).then(|| {
        let key = params.get("api_key").map_or("", String::as_str);
        memory
            .windows
            .take(key, listenbrainz_rate(scenario, key), now.at)
    });
    if let Some(state) = window.filter(|w| !w.allowed) {
        return too_many_requests(state, 429, now.unix);
    }
    let mut reply = answer_api(scenario, phase, asked, memory, now, window);
    if let Some(state) = window {
        reply.headers.extend(state.headers(now.unix));
    }
    reply
}

/// The service's own checks, then its answer.
fn answer_api(
    scenario: &Scenario,
    phase: Option<&Phase>,
    asked: Asked<'_>,
    memory: &mut Memory,
    now: Clock,
    window: Option<WindowState>,
) -> Reply {
    let Asked { params, is_post } = asked;
    let api = scenario.personality();
    let format = Format::of(params);
    let method_name = params.get("method").map(String::as_str);
    let checked = match api {
        Api::Lastfm => {
            let method = method_name.and_then(responses::lookup);
            match check_request(scenario, method, params, &mut memory.limiter, now.at) {
                Ok(method) => Ok(Some(method)),
                Err((code, message, status)) => return api_error(code, message, status, format),
            }
        }
        Api::Librefm => compat::check_librefm(scenario, method_name, params, is_post),
        Api::Listenbrainz => compat::check_listenbrainz(scenario, method_name, params, is_post),
    };
    let method = match checked {
        Ok(Some(method)) => method,
        Ok(None) => return success(api, format, success_body(None, params, format)),
        Err(refusal) => return compat_error(api, refusal, format),
    };
    let api_key = params.get("api_key").map(String::as_str);
    let key = scenario
        .keys()
        .iter()
        .find(|k| Some(k.api_key.as_str()) == api_key);
    let session_user = params
        .get("sk")
        .map_or(SESSION_USER, |sk| scenario.session_user(key, sk));
    let Some(path) = method.write_path() else {
        // Signed user.getInfo without `user` describes the session's user.
        let body = if !params.contains_key("user") && params.contains_key("sk") {
            let mut params = params.clone();
            params.insert("user".to_owned(), session_user.to_owned());
            success_body(Some(method), &params, format)
        } else {
            success_body(Some(method), params, format)
        };
        return success(api, format, body);
    };
    let request = WriteRequest {
        path,
        session_user,
        params,
        format,
    };
    let knobs = phase.map(Phase::writes).cloned().unwrap_or_default();
    match writes::answer(&request, &knobs, &mut memory.plays, now) {
        Ok(body) => {
            let mut reply = success(api, format, body);
            let is_write = method.is_write();
            match knobs.quirk.filter(|_| is_write) {
                Some(WriteQuirk::EmptyBody) => {
                    reply.body.clear();
                    "text/html; charset=UTF-8".clone_into(&mut reply.content_type);
                }
                Some(WriteQuirk::TextHtml) => {
                    "text/html; charset=UTF-8".clone_into(&mut reply.content_type);
                }
                None => {}
            }
            reply
        }
        Err((29, _)) if api == Api::Listenbrainz => {
            let state = window.unwrap_or_else(|| exhausted_window(scenario, params));
            too_many_requests(state.exhausted(), 429, now.unix)
        }
        Err((code, message)) => match api {
            Api::Lastfm => api_error(code, message, default_status(code, method_name), format),
            Api::Librefm | Api::Listenbrainz => {
                compat_error(api, Refusal::Api(code, message), format)
            }
        },
    }
}

/// The rate ListenBrainz allows `key`: its own, the scenario's, or the service's default.
fn listenbrainz_rate(scenario: &Scenario, key: &str) -> f64 {
    let own = scenario.keys().iter().find(|k| k.api_key == key);
    own.and_then(|k| k.rate_limit_per_second)
        .or(scenario.rate_limit_per_second())
        .unwrap_or(limits::DEFAULT_PER_SECOND)
}

/// A window with nothing left, for a rate limit a rule or a write knob forces.
fn exhausted_window(scenario: &Scenario, params: &Params) -> WindowState {
    let key = params.get("api_key").map_or("", String::as_str);
    WindowState {
        allowed: false,
        limit: limits::window_limit(listenbrainz_rate(scenario, key)),
        remaining: 0,
        reset_in: limits::WINDOW.as_secs(),
    }
}

/// ListenBrainz's 429: Flask's JSON error and the window's headers.
fn too_many_requests(state: WindowState, status: u16, unix_now: u64) -> Reply {
    let body = serde_json::json!({"code": 429, "error": LISTENBRAINZ_LIMIT_MESSAGE});
    Reply {
        status,
        content_type: "application/json".to_owned(),
        body: body.to_string().into_bytes(),
        delivery: Delivery::Whole,
        delay: Duration::ZERO,
        headers: state.exhausted().headers(unix_now),
        kind: "api_error",
    }
}

fn success(api: Api, format: Format, body: String) -> Reply {
    let body = match (api, format) {
        (Api::Listenbrainz, Format::Json) => compat::listenbrainz_json(body),
        (Api::Lastfm | Api::Librefm | Api::Listenbrainz, Format::Json | Format::Xml) => body,
    };
    Reply {
        status: 200,
        content_type: format.content_type_of(api).to_owned(),
        body: body.into_bytes(),
        delivery: Delivery::Whole,
        delay: Duration::ZERO,
        headers: Vec::new(),
        kind: "api_success",
    }
}

/// A compatible service's refusal: HTTP 200 for its API errors, the framework's status else.
fn compat_error(api: Api, refusal: Refusal, format: Format) -> Reply {
    let (status, content_type) = match refusal {
        Refusal::Api(..) | Refusal::Entity(..) => (200, format.content_type_of(api)),
        Refusal::Http(status, _) => (status, "application/json"),
    };
    Reply {
        status,
        content_type: content_type.to_owned(),
        body: compat::refusal_body(refusal, format == Format::Json).into_bytes(),
        delivery: Delivery::Whole,
        delay: Duration::ZERO,
        headers: Vec::new(),
        kind: "api_error",
    }
}

fn from_rule(rule: &Rule, scenario: &Scenario, params: &Params, unix_now: u64) -> Reply {
    let api = scenario.personality();
    let format = Format::of(params);
    let method_name = params.get("method").map(String::as_str);
    let method = method_name.and_then(responses::lookup);
    let status = rule_status(rule, api, method_name);
    let headers: Vec<_> = rule
        .retry_after
        .map(|seconds| ("Retry-After", seconds.to_string()))
        .into_iter()
        .collect();
    if let (Respond::RateLimited { reset_in }, Api::Listenbrainz) = (&rule.respond, api) {
        let state = WindowState {
            reset_in: *reset_in,
            ..exhausted_window(scenario, params)
        };
        let mut reply = too_many_requests(state, status, unix_now);
        reply.headers.splice(0..0, headers);
        reply.delay = rule.delay;
        reply.kind = rule.respond.as_label();
        return reply;
    }
    // Libre.fm never limits: a scenario asking it to is refused at load, so a `rate_limited`
    // rule below is Last.fm's error 29.
    let content_type = format.content_type_of(api);
    let success = || success_body(method, params, format).into_bytes();
    let (content_type, body, delivery) = match &rule.respond {
        Respond::Success => (content_type, success(), Delivery::Whole),
        Respond::Error { code, message } => {
            let message = message.as_deref().unwrap_or(default_message(*code));
            let body = error_body(*code, message, format).into_bytes();
            (content_type, body, Delivery::Whole)
        }
        Respond::Html => match api {
            Api::Lastfm => (
                "text/html; charset=UTF-8",
                html_page(status).into_bytes(),
                Delivery::Whole,
            ),
            Api::Librefm | Api::Listenbrainz => (
                "text/html",
                nginx_page(status).into_bytes(),
                Delivery::Whole,
            ),
        },
        // ListenBrainz's took its own path above.
        Respond::RateLimited { .. } => {
            let body = error_body(29, default_message(29), format).into_bytes();
            (content_type, body, Delivery::Whole)
        }
        Respond::Empty => (content_type, Vec::new(), Delivery::Whole),
        Respond::Truncated => {
            let mut body = success();
            body.truncate(body.len() / 2);
            (content_type, body, Delivery::Whole)
        }
        Respond::Reset => (content_type, success(), Delivery::CutShort),
        Respond::Stall => (content_type, Vec::new(), Delivery::Stall),
        Respond::Trickle => (content_type, success(), Delivery::Trickle),
        Respond::Raw { body, content_type } => (
            content_type.as_deref().unwrap_or("application/json"),
            body.clone().into_bytes(),
            Delivery::Whole,
        ),
        Respond::Oversized { bytes } => (
            "application/json",
            Vec::new(),
            Delivery::Filler { bytes: *bytes },
        ),
    };
    Reply {
        status,
        content_type: content_type.to_owned(),
        body,
        delivery,
        delay: rule.delay,
        headers,
        kind: rule.respond.as_label(),
    }
}

/// A rule's status: its own, else what the service sends with that kind of answer.
fn rule_status(rule: &Rule, api: Api, method_name: Option<&str>) -> u16 {
    rule.status.unwrap_or(match &rule.respond {
        // Last.fm documents a status per code; the compatible services send 200 with every error.
        Respond::Error { code, .. } if api == Api::Lastfm => default_status(*code, method_name),
        Respond::Error { .. } => 200,
        Respond::Html => 502,
        Respond::RateLimited { .. } => 429,
        Respond::Success
        | Respond::Empty
        | Respond::Truncated
        | Respond::Reset
        | Respond::Stall
        | Respond::Trickle
        | Respond::Raw { .. }
        | Respond::Oversized { .. } => 200,
    })
}

/// An API error: code, message, status.
type LastfmRefusal = (u32, &'static str, u16);

/// The real API's own checks; `Ok` carries the method to answer.
fn check_request(
    scenario: &Scenario,
    method: Option<&'static Method>,
    params: &Params,
    limiter: &mut RateLimiter,
    now: Instant,
) -> Result<&'static Method, LastfmRefusal> {
    let refuse = |code: u32, status: u16| Err((code, default_message(code), status));
    let Some(method) = method else {
        return refuse(3, 400);
    };
    let present = |name: &str| params.get(name).filter(|v| !v.is_empty());
    let Some(api_key) = present("api_key") else {
        return Err((6, MISSING_PARAMETER, 400));
    };
    let key = scenario.keys().iter().find(|k| k.api_key == *api_key);
    let is_known = if scenario.keys().is_empty() {
        api_key.len() == 32 && api_key.chars().all(|c| c.is_ascii_hexdigit())
    } else {
        key.is_some()
    };
    if !is_known {
        return refuse(10, 403);
    }
    let limit = key.and_then(|k| k.rate_limit_per_second);
    if let Some(per_second) = limit.or(scenario.rate_limit_per_second()) {
        if !limiter.allow(api_key, per_second, now) {
            return refuse(29, 429);
        }
    }
    let sig = present("api_sig");
    match (sig, key) {
        (None, _) if method.is_write() => return refuse(13, 400),
        (Some(sig), Some(key)) => {
            let pairs: Vec<_> = params
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            if !api_sig(pairs.iter().copied(), &key.secret).eq_ignore_ascii_case(sig) {
                return refuse(13, 400);
            }
        }
        _ => {}
    }
    let sk = params.get("sk");
    match (sk, key) {
        (None, _) if method.is_write() => return refuse(9, 403),
        (Some(sk), Some(key))
            if !key.session_keys.contains(sk) && !key.session_users.contains_key(sk) =>
        {
            return refuse(9, 403);
        }
        (Some(sk), None) if sk.is_empty() => return refuse(9, 403),
        _ => {}
    }
    // Last.fm user names are 2-15 characters: a longer one is the negative control's user.
    if params.get("user").is_some_and(|u| u.chars().count() > 15) {
        return refuse(6, 404);
    }
    let has_session = sig.is_some() && sk.is_some();
    let needs_user = method.name == "user.getInfo" && !has_session;
    let missing = method
        .required
        .iter()
        .chain(needs_user.then_some(&"user"))
        .any(|name| present(name).is_none());
    if missing {
        return Err((6, MISSING_PARAMETER, 400));
    }
    Ok(method)
}

fn api_error(code: u32, message: &str, status: u16, format: Format) -> Reply {
    Reply {
        status,
        content_type: format.content_type().to_owned(),
        body: error_body(code, message, format).into_bytes(),
        delivery: Delivery::Whole,
        delay: Duration::ZERO,
        headers: Vec::new(),
        kind: "api_error",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    const KEY: &str = "0123456789abcdef0123456789abcdef";
    const SECRET: &str = "fedcba9876543210fedcba9876543210";

    fn keyed() -> Scenario {
        Scenario::from_toml_str(&format!(
            "[[keys]]\napi_key = \"{KEY}\"\nsecret = \"{SECRET}\"\nsession_keys = [\"sk-canary\"]\n"
        ))
        .unwrap()
    }

    fn post(params: &Params) -> Asked<'_> {
        Asked {
            params,
            is_post: true,
        }
    }

    fn ask(scenario: &Scenario, pairs: &[(&str, &str)]) -> Reply {
        let params: Params = [("api_key", KEY), ("format", "json")]
            .iter()
            .chain(pairs)
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let phase = scenario.phase_at(Duration::ZERO);
        let now = Clock {
            at: Instant::now(),
            unix: 1_700_000_000,
        };
        decide(scenario, phase, post(&params), &mut Memory::default(), now)
    }

    /// Status and error code (0 for a success).
    fn outcome(reply: &Reply) -> (u16, u64) {
        let json: Value = serde_json::from_slice(&reply.body).unwrap();
        (reply.status, json["error"].as_u64().unwrap_or(0))
    }

    fn signed<'a>(pairs: &[(&'a str, &'a str)], secret: &str) -> Vec<(&'a str, String)> {
        let mut all: Vec<_> = pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        let mut to_sign = pairs.to_vec();
        to_sign.push(("api_key", KEY));
        all.push(("api_sig", api_sig(to_sign.iter().copied(), secret)));
        all
    }

    fn ask_signed(scenario: &Scenario, pairs: &[(&str, &str)], secret: &str) -> Reply {
        let owned = signed(pairs, secret);
        let borrowed: Vec<_> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
        ask(scenario, &borrowed)
    }

    #[test]
    fn method_and_key_checks() {
        let any = Scenario::healthy();
        assert_eq!(outcome(&ask(&any, &[("method", "nope.nope")])), (400, 3));
        assert_eq!(outcome(&ask(&any, &[])), (400, 3));
        assert_eq!(
            outcome(&ask(&any, &[("method", "tag.getInfo"), ("tag", "rock")])),
            (200, 0)
        );
        let bad_key = [("method", "tag.getInfo"), ("api_key", "short")];
        assert_eq!(outcome(&ask(&any, &bad_key)), (403, 10));
        let no_key = [("method", "tag.getInfo"), ("api_key", "")];
        assert_eq!(outcome(&ask(&any, &no_key)), (400, 6));
        let other = [("method", "tag.getInfo"), ("tag", "x"), ("api_key", SECRET)];
        assert_eq!(
            outcome(&ask(&any, &other)),
            (200, 0),
            "any hex key without [[keys]]"
        );
        assert_eq!(
            outcome(&ask(&keyed(), &other)),
            (403, 10),
            "only listed keys with them"
        );
    }

    #[test]
    fn signatures_and_session_keys_are_verified() {
        let s = keyed();
        let info = [("method", "user.getInfo"), ("sk", "sk-canary")];
        let reply = ask_signed(&s, &info, SECRET);
        assert_eq!(outcome(&reply), (200, 0));
        let user: Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(user["user"]["name"], "simuser");
        assert_eq!(outcome(&ask_signed(&s, &info, "wrong")), (400, 13));
        let stale = [("method", "user.getInfo"), ("sk", "sk-revoked")];
        assert_eq!(outcome(&ask_signed(&s, &stale, SECRET)), (403, 9));
        let love = [
            ("method", "track.love"),
            ("artist", "Cher"),
            ("track", "Believe"),
        ];
        assert_eq!(outcome(&ask(&s, &love)), (400, 13), "writes must be signed");
        assert_eq!(
            outcome(&ask_signed(&s, &love, SECRET)),
            (403, 9),
            "and carry an sk"
        );
        // Unsigned user.getInfo without `user` is a missing parameter.
        assert_eq!(outcome(&ask(&s, &[("method", "user.getInfo")])), (400, 6));
    }

    #[test]
    fn writes_need_a_signature_and_a_session_and_land_with_the_sessions_user() {
        let s = Scenario::from_toml_str(&format!(
            "[[keys]]\napi_key = \"{KEY}\"\nsecret = \"{SECRET}\"\nsession_keys = [\"sk-canary\"]\n\
             session_users = {{ \"sk-writer\" = \"writer\" }}\n"
        ))
        .unwrap();
        let mut memory = Memory::default();
        let mut call = |pairs: &[(&str, &str)], secret: &str| {
            let owned = signed(pairs, secret);
            let params: Params = owned
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .chain([("api_key".to_owned(), KEY.to_owned())])
                .chain([("format".to_owned(), "json".to_owned())])
                .collect();
            let now = Clock {
                at: Instant::now(),
                unix: 1_700_000_000,
            };
            decide(&s, None, post(&params), &mut memory, now)
        };
        let scrobble = [
            ("method", "track.scrobble"),
            ("artist", "Cher"),
            ("track", "Believe"),
            ("timestamp", "1700000000"),
            ("sk", "sk-writer"),
        ];
        assert_eq!(outcome(&call(&scrobble, "wrong")), (400, 13));
        let mut stale = scrobble;
        stale[4] = ("sk", "sk-gone");
        assert_eq!(outcome(&call(&stale, SECRET)), (403, 9));
        let reply = call(&scrobble, SECRET);
        assert_eq!(outcome(&reply), (200, 0));
        let json: Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(json["scrobbles"]["@attr"]["accepted"], 1);
        let read = |memory: &mut Memory, user: &str| -> Value {
            let params: Params = [
                ("method", "user.getRecentTracks"),
                ("user", user),
                ("api_key", KEY),
                ("format", "json"),
            ]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
            let now = Clock {
                at: Instant::now(),
                unix: 1_700_000_000,
            };
            let reply = decide(&s, None, post(&params), memory, now);
            serde_json::from_slice(&reply.body).unwrap()
        };
        let writer = read(&mut memory, "writer");
        assert_eq!(
            writer["recenttracks"]["track"].as_array().map(Vec::len),
            Some(2)
        );
        let simuser = read(&mut memory, SESSION_USER);
        assert_eq!(
            simuser["recenttracks"]["track"].as_array().map(Vec::len),
            Some(1)
        );
        let info = ask_signed(
            &s,
            &[("method", "user.getInfo"), ("sk", "sk-writer")],
            SECRET,
        );
        let info: Value = serde_json::from_slice(&info.body).unwrap();
        assert_eq!(info["user"]["name"], "writer", "the session's user");
    }

    #[test]
    fn the_phase_write_knobs_apply_after_the_checks_and_rules_still_win() {
        let s = Scenario::from_toml_str(
            "[[phases]]\nname = \"p\"\n[phases.writes]\nrate_limited = \"user\"\n\
             [[phases.rules]]\nmethod = \"track.updateNowPlaying\"\nrespond = \"html\"\n",
        )
        .unwrap();
        let scrobble = [
            ("method", "track.scrobble"),
            ("artist", "Cher"),
            ("track", "Believe"),
            ("timestamp", "1700000000"),
            ("sk", "sk-any"),
            ("api_sig", "unchecked-without-keys"),
        ];
        let reply = ask(&s, &scrobble);
        assert_eq!(outcome(&reply), (429, 29));
        assert!(String::from_utf8_lossy(&reply.body).contains("Too many scrobbles"));
        assert_eq!(
            outcome(&ask(&s, &scrobble[..4])),
            (400, 13),
            "unsigned first"
        );
        let np = [("method", "track.updateNowPlaying"), ("artist", "Cher")];
        assert_eq!(ask(&s, &np).status, 502, "the rule");
    }

    #[test]
    fn a_user_name_too_long_to_exist_is_not_found() {
        let ghost = [
            ("method", "user.getInfo"),
            ("user", "nosuchuser-canary-0000"),
        ];
        let reply = ask(&Scenario::healthy(), &ghost);
        assert_eq!(outcome(&reply), (404, 6));
        assert!(String::from_utf8_lossy(&reply.body).contains("User not found"));
    }

    #[test]
    fn a_matching_rule_wins_over_the_api_checks() {
        let s = Scenario::from_toml_str(
            "[[phases]]\nname = \"p\"\n\
             [[phases.rules]]\nmethod = \"album.getInfo\"\nrespond = \"error\"\ncode = 6\n\
             [[phases.rules]]\nmethod = \"tag.getInfo\"\nrespond = \"html\"\nstatus = 504\n\
             [[phases.rules]]\nrespond = \"error\"\ncode = 26\n",
        )
        .unwrap();
        assert_eq!(outcome(&ask(&s, &[("method", "album.getInfo")])), (200, 6));
        assert_eq!(
            outcome(&ask(&s, &[("method", "nope"), ("api_key", "x")])),
            (403, 26)
        );
        let html = ask(&s, &[("method", "TAG.GETINFO")]);
        assert_eq!((html.status, html.kind), (504, "html"));
        assert!(String::from_utf8_lossy(&html.body).contains("<title>504 Server Error"));
    }

    #[test]
    fn truncated_is_the_first_half_of_the_success() {
        let s = Scenario::from_toml_str(
            "[[phases]]\nname = \"p\"\nrules = [{ respond = \"truncated\" }]\n",
        )
        .unwrap();
        let cut = ask(&s, &[("method", "track.search"), ("track", "Believe")]);
        let full = ask(
            &Scenario::healthy(),
            &[("method", "track.search"), ("track", "Believe")],
        );
        assert_eq!(cut.body.len(), full.body.len() / 2);
        assert!(full.body.starts_with(&cut.body));
        assert!(serde_json::from_slice::<Value>(&cut.body).is_err());
    }
}

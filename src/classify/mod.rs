//! Pure classification: recorded facts in, a [`Classification`] out. No I/O, no clock.
//!
//! Last.fm's HTTP statuses do not tell the truth, so the body decides: a well-formed Last.fm
//! payload (success or error) is classified by its content whatever the status, the status is
//! recorded beside it, and every disagreement between the two is a [`Mismatch`]. Only when the body
//! is not a Last.fm payload does the status matter (`http_error` for non-2xx, else `malformed`).
//! Every label this module produces comes from a closed enum through `as_label`, never from
//! upstream text, so no response can grow the metric set.

use serde_json::Value;

use crate::config::{Check, CheckRule, Expectation, Format, StatusTable};
use crate::probe::{ProbeOutcome, Reason, Response, TransportFailure};

/// The closed set of run outcomes (SPEC §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// A well-formed success payload that passed the probe's checks.
    Success,
    /// A well-formed Last.fm error payload, whatever the HTTP status.
    ApiError,
    /// A non-2xx status without a Last.fm payload (an edge proxy's page).
    HttpError,
    /// A body that is neither a success nor an error payload.
    Malformed,
    /// A success payload that failed the probe's content checks.
    CheckFailed,
    /// The deadline passed.
    Timeout,
    /// No response, or a response that broke off.
    ConnectionError,
    /// The body exceeded `max_body_bytes`.
    BodyTooLarge,
}

impl Outcome {
    /// Every outcome, for pre-creating series.
    pub const ALL: [Self; 8] = [
        Self::Success,
        Self::ApiError,
        Self::HttpError,
        Self::Malformed,
        Self::CheckFailed,
        Self::Timeout,
        Self::ConnectionError,
        Self::BodyTooLarge,
    ];

    /// The `outcome` label value.
    pub fn as_label(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::ApiError => "api_error",
            Self::HttpError => "http_error",
            Self::Malformed => "malformed",
            Self::CheckFailed => "check_failed",
            Self::Timeout => "timeout",
            Self::ConnectionError => "connection_error",
            Self::BodyTooLarge => "body_too_large",
        }
    }

    /// Index into [`Outcome::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Whose fault a failed run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    /// Last.fm (or what fronts it) is failing: moves availability.
    Upstream,
    /// Our request, key, session or rate: raises conditions, never availability.
    Client,
    /// The monitor's own network: the run could not reach Last.fm while every reference failed
    /// too. Raises `local_network_down`, never moves availability: from here, Last.fm's state
    /// is unknown.
    Local,
}

impl Blame {
    /// Text for traces and logs.
    pub fn as_label(self) -> &'static str {
        match self {
            Self::Upstream => "upstream",
            Self::Client => "client",
            Self::Local => "local",
        }
    }
}

/// What the reference checks said about the monitor's own network when a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalNetwork {
    /// No reference is configured: nothing tells our network's faults from Last.fm's.
    Unknown,
    /// At least one reference answered in the window (or none failed in it).
    Reachable,
    /// Every reference failed in the window.
    Down,
}

/// Whether a failure is one a broken local network causes: it never reached Last.fm (our
/// resolver, our route, a handshake that never completed), or the deadline passed.
pub fn could_be_local(failure: TransportFailure) -> bool {
    failure.before_request() || failure.is_timeout()
}

/// Moves the blame of a run to our side when the references say our network is down. Pure: the
/// verdict and the references' view in, the verdict out. Only runs that got no response at all
/// can be ours; an answer from Last.fm, even an edge's 502, proves the path to it works.
pub fn localize(mut verdict: Classification, network: LocalNetwork) -> Classification {
    let ours = network == LocalNetwork::Down
        && verdict.blame == Some(Blame::Upstream)
        && verdict.failure.is_some_and(could_be_local);
    if ours {
        verdict.blame = Some(Blame::Local);
        verdict.raises.push(Condition::LocalNetworkDown);
    }
    verdict
}

/// The three ways status and payload disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MismatchKind {
    /// An error payload with a 2xx status: the API's best-known quirk.
    ErrorWithSuccessStatus,
    /// A success payload with a non-2xx status.
    SuccessWithErrorStatus,
    /// An error payload whose non-2xx status is not the documented one for its code.
    StatusDisagreesWithCode,
}

impl MismatchKind {
    /// Every kind, for pre-creating and removing series.
    pub const ALL: [Self; 3] = [
        Self::ErrorWithSuccessStatus,
        Self::SuccessWithErrorStatus,
        Self::StatusDisagreesWithCode,
    ];

    /// The `kind` label value.
    pub fn as_label(self) -> &'static str {
        match self {
            Self::ErrorWithSuccessStatus => "error_with_success_status",
            Self::SuccessWithErrorStatus => "success_with_error_status",
            Self::StatusDisagreesWithCode => "status_disagrees_with_code",
        }
    }
}

/// A disagreement between the HTTP status and the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mismatch {
    /// Which disagreement.
    pub kind: MismatchKind,
    /// The error code, when the payload was an error.
    pub code: Option<u32>,
    /// The HTTP status received.
    pub status: u16,
}

/// Per-target states a run can raise (SPEC §6 conditions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Condition {
    /// Error 11 or 2 seen, until a success.
    ServiceOffline,
    /// Error 26: the key is suspended; page a human.
    ApiKeySuspended,
    /// Error 10: the key is not valid.
    ApiKeyInvalid,
    /// Error 9 or 4 on a signed probe.
    SessionInvalid,
    /// In backoff after error 29 or HTTP 429.
    RateLimited,
    /// A run could not reach Last.fm while every reference failed too: our network is down.
    LocalNetworkDown,
}

impl Condition {
    /// Every condition, for pre-creating series.
    pub const ALL: [Self; 6] = [
        Self::ServiceOffline,
        Self::ApiKeySuspended,
        Self::ApiKeyInvalid,
        Self::SessionInvalid,
        Self::RateLimited,
        Self::LocalNetworkDown,
    ];

    /// The `condition` label value.
    pub fn as_label(self) -> &'static str {
        match self {
            Self::ServiceOffline => "service_offline",
            Self::ApiKeySuspended => "api_key_suspended",
            Self::ApiKeyInvalid => "api_key_invalid",
            Self::SessionInvalid => "session_invalid",
            Self::RateLimited => "rate_limited",
            Self::LocalNetworkDown => "local_network_down",
        }
    }

    /// Index into [`Condition::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// The Last.fm error codes exported under their own label; anything else is `other`.
pub const KNOWN_CODES: [u32; 15] = [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 16, 17, 26, 29];

/// The `code` label values, in the order of [`KNOWN_CODES`], then `other`.
pub const CODE_LABELS: [&str; 16] = [
    "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "13", "16", "17", "26", "29", "other",
];

/// The `code` label for an error code: itself when known, else `other`.
pub fn code_label(code: u32) -> &'static str {
    CODE_LABELS[code_index(code)]
}

/// Index into [`CODE_LABELS`].
pub fn code_index(code: u32) -> usize {
    KNOWN_CODES
        .iter()
        .position(|known| *known == code)
        .unwrap_or(KNOWN_CODES.len())
}

/// HTTP statuses exported as themselves; others become their class.
const KNOWN_STATUSES: [(u16, &str); 16] = [
    (200, "200"),
    (201, "201"),
    (204, "204"),
    (301, "301"),
    (302, "302"),
    (304, "304"),
    (400, "400"),
    (401, "401"),
    (403, "403"),
    (404, "404"),
    (405, "405"),
    (429, "429"),
    (500, "500"),
    (502, "502"),
    (503, "503"),
    (504, "504"),
];

/// Every `status` label value: the known statuses, the classes, and `other`.
pub const STATUS_LABELS: [&str; 22] = [
    "200", "201", "204", "301", "302", "304", "400", "401", "403", "404", "405", "429", "500",
    "502", "503", "504", "1xx", "2xx", "3xx", "4xx", "5xx", "other",
];

/// The `status` label for an HTTP status: itself when in the fixed list, else its class.
pub fn status_label(status: u16) -> &'static str {
    if let Some((_, label)) = KNOWN_STATUSES.iter().find(|(known, _)| *known == status) {
        return label;
    }
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    }
}

fn is_2xx(status: u16) -> bool {
    (200..300).contains(&status)
}

/// `None` when `check` holds on `payload`, else why not.
fn check_failure(check: &Check, payload: &Value) -> Option<String> {
    let Some(found) = payload.pointer(&check.pointer) else {
        return Some(format!("{} is missing", check.pointer));
    };
    match &check.rule {
        CheckRule::Equals(want) => {
            let equal = found == want
                || matches!((found, want), (Value::String(s), Value::Number(n)) if *s == n.to_string());
            (!equal).then(|| format!("{} is {found}, expected {want}", check.pointer))
        }
        CheckRule::NonEmpty => {
            let empty = match found {
                Value::Null => true,
                Value::String(s) => s.is_empty(),
                Value::Array(a) => a.is_empty(),
                Value::Object(o) => o.is_empty(),
                Value::Bool(_) | Value::Number(_) => false,
            };
            empty.then(|| format!("{} is empty", check.pointer))
        }
        CheckRule::GreaterThan(min) => {
            let number = match found {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => s.trim().parse::<f64>().ok(),
                _ => None,
            };
            match number {
                Some(n) if n > *min => None,
                Some(n) => Some(format!("{} is {n}, expected > {min}", check.pointer)),
                None => Some(format!("{} is {found}, not a number", check.pointer)),
            }
        }
    }
}

/// What the classifier needs to know about the probe.
#[derive(Debug, Clone, Copy)]
pub struct ProbeSpec<'a> {
    /// The format asked for.
    pub format: Format,
    /// Whether the request was signed (with a session key), for `session_invalid`.
    pub signed: bool,
    /// What counts as a success of this probe.
    pub expect: Expectation,
    /// Content checks on a JSON success.
    pub checks: &'a [Check],
    /// The documented status per code.
    pub statuses: &'a StatusTable,
    /// The target's host name, for the words of a transport failure.
    pub host: &'a str,
}

/// The verdict on one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Classification {
    /// The closed outcome.
    pub outcome: Outcome,
    /// The HTTP status, when a response arrived.
    pub http_status: Option<u16>,
    /// The Last.fm error code, when the payload was an error.
    pub error_code: Option<u32>,
    /// The upstream error message or the reason for `malformed`/`check_failed` (never a label).
    pub detail: Option<String>,
    /// Where and why the exchange broke, when no complete response arrived.
    pub failure: Option<TransportFailure>,
    /// A status/payload disagreement, at most one per run.
    pub mismatch: Option<Mismatch>,
    /// Whose fault, when the run did not meet its expectation.
    pub blame: Option<Blame>,
    /// Whether the run met the probe's expectation: the probe's success.
    pub met_expectation: bool,
    /// Whether the API answered normally (a success payload, or the expected error): clears
    /// conditions and counts toward availability.
    pub api_healthy: bool,
    /// Conditions this run raises.
    pub raises: Vec<Condition>,
    /// Backoff asked for by the upstream (`Retry-After`), parsed.
    pub retry_after: Option<RetryAfter>,
}

/// A parsed `Retry-After` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAfter {
    /// Delay in seconds.
    Seconds(u64),
    /// An HTTP date, as unix seconds.
    At(i64),
}

/// Parses `Retry-After` (RFC 9110 §10.2.3): delay-seconds or an HTTP date.
pub fn parse_retry_after(raw: &str) -> Option<RetryAfter> {
    let raw = raw.trim();
    if let Ok(seconds) = raw.parse::<u64>() {
        return Some(RetryAfter::Seconds(seconds));
    }
    chrono::DateTime::parse_from_rfc2822(raw)
        .ok()
        .map(|date| RetryAfter::At(date.timestamp()))
}

/// The payload as the classifier reads it.
#[derive(Debug, PartialEq)]
enum Payload {
    Success(Option<Value>),
    Error { code: u32, message: String },
    NotLastfm(String),
}

/// Classifies one run. Pure and total: any input yields a verdict, never a panic.
pub fn classify(outcome: &ProbeOutcome, spec: &ProbeSpec<'_>) -> Classification {
    match &outcome.result {
        Err(failure) => transport(*failure, spec),
        Ok(response) => response_verdict(response, spec),
    }
}

/// The SPEC outcome of a transport failure; phase and reason refine it, never replace it.
pub fn transport_outcome(failure: TransportFailure) -> Outcome {
    match failure.reason {
        Reason::Timeout => Outcome::Timeout,
        Reason::TooLarge => Outcome::BodyTooLarge,
        _ => Outcome::ConnectionError,
    }
}

fn transport(failure: TransportFailure, spec: &ProbeSpec<'_>) -> Classification {
    Classification {
        outcome: transport_outcome(failure),
        http_status: None,
        error_code: None,
        detail: Some(failure.describe(spec.host)),
        failure: Some(failure),
        mismatch: None,
        blame: Some(Blame::Upstream),
        met_expectation: false,
        api_healthy: false,
        raises: Vec::new(),
        retry_after: None,
    }
}

fn response_verdict(response: &Response, spec: &ProbeSpec<'_>) -> Classification {
    let status = response.status;
    let payload = parse_payload(&response.body, spec.format, spec.checks);
    let retry_after = response.retry_after.as_deref().and_then(parse_retry_after);
    let mut raises = Vec::new();
    if status == 429 {
        raises.push(Condition::RateLimited);
    }
    let base = Classification {
        outcome: Outcome::Malformed,
        http_status: Some(status),
        error_code: None,
        detail: None,
        failure: None,
        mismatch: None,
        blame: None,
        met_expectation: false,
        api_healthy: false,
        raises,
        retry_after,
    };
    match payload {
        Payload::Success(value) => success_verdict(base, value.as_ref(), status, spec),
        Payload::Error { code, message } => error_verdict(base, code, message, status, spec),
        Payload::NotLastfm(reason) if !is_2xx(status) => Classification {
            outcome: Outcome::HttpError,
            detail: Some(reason),
            failure: None,
            blame: Some(if !(200..500).contains(&status) {
                Blame::Upstream
            } else {
                Blame::Client
            }),
            ..base
        },
        Payload::NotLastfm(reason) => Classification {
            outcome: Outcome::Malformed,
            detail: Some(reason),
            failure: None,
            blame: Some(Blame::Upstream),
            ..base
        },
    }
}

fn success_verdict(
    base: Classification,
    value: Option<&Value>,
    status: u16,
    spec: &ProbeSpec<'_>,
) -> Classification {
    let mismatch = (!is_2xx(status)).then_some(Mismatch {
        kind: MismatchKind::SuccessWithErrorStatus,
        code: None,
        status,
    });
    let failed_check = value.and_then(|payload| {
        spec.checks
            .iter()
            .find_map(|check| check_failure(check, payload))
    });
    let (outcome, detail) = match failed_check {
        Some(reason) => (Outcome::CheckFailed, Some(reason)),
        None => (Outcome::Success, None),
    };
    let met = outcome == Outcome::Success && spec.expect == Expectation::Success;
    Classification {
        outcome,
        detail: detail.or_else(|| {
            (!met).then(|| format!("expected {}, got a success", spec.expect.describe()))
        }),
        mismatch,
        // A negative control answered with data: the API's error path broke.
        blame: (!met).then_some(Blame::Upstream),
        met_expectation: met,
        api_healthy: outcome == Outcome::Success,
        ..base
    }
}

fn error_verdict(
    mut base: Classification,
    code: u32,
    message: String,
    status: u16,
    spec: &ProbeSpec<'_>,
) -> Classification {
    let mismatch = if is_2xx(status) {
        Some(MismatchKind::ErrorWithSuccessStatus)
    } else {
        let documented = spec.statuses.documented(code);
        (!documented.is_empty() && !documented.contains(&status))
            .then_some(MismatchKind::StatusDisagreesWithCode)
    }
    .map(|kind| Mismatch {
        kind,
        code: Some(code),
        status,
    });
    let met = spec.expect == Expectation::Error(code);
    match code {
        11 | 2 => base.raises.push(Condition::ServiceOffline),
        26 => base.raises.push(Condition::ApiKeySuspended),
        10 => base.raises.push(Condition::ApiKeyInvalid),
        9 | 4 if spec.signed => base.raises.push(Condition::SessionInvalid),
        29 if !base.raises.contains(&Condition::RateLimited) => {
            base.raises.push(Condition::RateLimited);
        }
        _ => {}
    }
    Classification {
        outcome: Outcome::ApiError,
        error_code: Some(code),
        detail: Some(message),
        failure: None,
        mismatch,
        blame: (!met).then_some(blame_for_code(code)),
        met_expectation: met,
        api_healthy: met,
        ..base
    }
}

/// SPEC §6: errors 2, 8, 11, 16 (and unknown codes) are Last.fm's; the rest are ours.
fn blame_for_code(code: u32) -> Blame {
    match code {
        3 | 4 | 5 | 6 | 7 | 9 | 10 | 13 | 14 | 15 | 17 | 26 | 29 => Blame::Client,
        _ => Blame::Upstream,
    }
}

fn parse_payload(body: &[u8], format: Format, checks: &[Check]) -> Payload {
    let Ok(text) = std::str::from_utf8(body) else {
        return Payload::NotLastfm("the body is not valid UTF-8".to_owned());
    };
    let trimmed = text.trim_start_matches('\u{feff}').trim();
    if trimmed.is_empty() {
        return Payload::NotLastfm("the body is empty".to_owned());
    }
    if looks_like_html(trimmed) {
        return Payload::NotLastfm("the body is an HTML page, not an API payload".to_owned());
    }
    match format {
        Format::Json => parse_json(trimmed, checks),
        Format::Xml => parse_xml(trimmed),
    }
}

fn looks_like_html(text: &str) -> bool {
    let head: String = text
        .chars()
        .take(64)
        .collect::<String>()
        .to_ascii_lowercase();
    head.starts_with("<!doctype html") || head.starts_with("<html")
}

/// Judges a JSON body as [`parse_json_value`] does, building only what classification reads:
/// `error`, `message`, and the values the checks' pointers reach.
///
/// The whole document goes through the same parser (the same syntax errors, and the same
/// recursion limit, since [`Skip`] and [`Prune`] visit nested values as `Value` does), but what no
/// check reads is dropped as it is read instead of becoming a tree of strings and maps: on a 2 KB
/// success body that tree was most of the cost of a run (issue 6). Anything unusual (a parse
/// error, a check on the whole document) takes the full path, so every verdict and message is
/// the same as before.
fn parse_json(text: &str, checks: &[Check]) -> Payload {
    use serde::de::DeserializeSeed as _;

    let Some(paths) = checks
        .iter()
        .map(|check| pointer_tokens(&check.pointer))
        .collect::<Option<Vec<Vec<String>>>>()
    else {
        return parse_json_value(text);
    };
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let outline = Outline {
        paths: paths.iter().map(Vec::as_slice).collect(),
    };
    let parsed = outline
        .deserialize(&mut deserializer)
        .and_then(|skeleton| deserializer.end().map(|()| skeleton));
    let Ok(skeleton) = parsed else {
        return parse_json_value(text);
    };
    let Some(members) = skeleton.members else {
        return Payload::NotLastfm("the JSON is not an object".to_owned());
    };
    match skeleton.error {
        Some(error) => error_payload(&error, skeleton.message.as_ref()),
        None if members == 0 => Payload::NotLastfm("the JSON object is empty".to_owned()),
        None => Payload::Success(Some(Value::Object(skeleton.kept))),
    }
}

/// The reference tokens of a JSON pointer, unescaped as `Value::pointer` does; `None` for the
/// whole document. A pointer without its leading '/' finds nothing: it needs no tokens.
fn pointer_tokens(pointer: &str) -> Option<Vec<String>> {
    if pointer.is_empty() {
        return None;
    }
    Some(pointer.strip_prefix('/').map_or_else(Vec::new, |rest| {
        rest.split('/')
            .map(|token| token.replace("~1", "/").replace("~0", "~"))
            .collect()
    }))
}

/// An array index as `Value::pointer` reads one (no sign, no leading zero).
fn pointer_index(token: &str) -> Option<usize> {
    if token.starts_with('+') || (token.starts_with('0') && token.len() != 1) {
        return None;
    }
    token.parse().ok()
}

/// What [`Outline`] keeps of a document.
#[derive(Debug, Default)]
struct Skeleton {
    /// Members read, `None` when the document is not an object.
    members: Option<usize>,
    /// The last `error` member, as `Map::get` would find it.
    error: Option<Value>,
    /// The last `message` member.
    message: Option<Value>,
    /// The members the checks point into, pruned to what the pointers reach.
    kept: serde_json::Map<String, Value>,
}

/// Reads a document's top level into a [`Skeleton`]; `paths` are the checks' pointer tokens.
struct Outline<'a> {
    paths: Vec<&'a [String]>,
}

impl<'de> serde::de::DeserializeSeed<'de> for Outline<'_> {
    type Value = Skeleton;

    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Skeleton, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Outline<'_> {
    type Value = Skeleton;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Skeleton, A::Error> {
        let mut skeleton = Skeleton {
            members: Some(0),
            ..Skeleton::default()
        };
        while let Some(name) = map.next_key_seed(MemberName {
            paths: &self.paths,
            also: &["error", "message"],
        })? {
            skeleton.members = skeleton.members.map(|n| n + 1);
            let Some(name) = name else {
                map.next_value::<Skip>()?;
                continue;
            };
            let inner = Prune::below(&self.paths, &name);
            if name == "error" || name == "message" {
                // Read whole: a full value answers every pointer a pruned one would.
                let value: Value = map.next_value()?;
                if !inner.is_empty() {
                    skeleton.kept.insert(name.clone(), value.clone());
                }
                if name == "error" {
                    skeleton.error = Some(value);
                } else {
                    skeleton.message = Some(value);
                }
            } else {
                let value = map.next_value_seed(Prune { paths: inner })?;
                skeleton.kept.insert(name, value);
            }
        }
        Ok(skeleton)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Skeleton, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Skeleton::default())
    }

    fn visit_bool<E>(self, _: bool) -> Result<Skeleton, E> {
        Ok(Skeleton::default())
    }

    fn visit_i64<E>(self, _: i64) -> Result<Skeleton, E> {
        Ok(Skeleton::default())
    }

    fn visit_u64<E>(self, _: u64) -> Result<Skeleton, E> {
        Ok(Skeleton::default())
    }

    fn visit_f64<E>(self, _: f64) -> Result<Skeleton, E> {
        Ok(Skeleton::default())
    }

    fn visit_str<E>(self, _: &str) -> Result<Skeleton, E> {
        Ok(Skeleton::default())
    }

    fn visit_unit<E>(self) -> Result<Skeleton, E> {
        Ok(Skeleton::default())
    }
}

/// Builds the part of a value that pointers reach: where a pointer ends, the value is read
/// whole; on the way there, other members are skipped and other array elements become `null`
/// (so the wanted ones keep the index `Value::pointer` looks them up by).
struct Prune<'a> {
    /// What is left of each pointer that reaches this value.
    paths: Vec<&'a [String]>,
}

impl<'a> Prune<'a> {
    /// The rest of the paths that continue into member or element `token`.
    fn below(paths: &[&'a [String]], token: &str) -> Vec<&'a [String]> {
        paths
            .iter()
            .filter_map(|path| match path.split_first() {
                Some((first, rest)) if first == token => Some(rest),
                _ => None,
            })
            .collect()
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for Prune<'_> {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        if self.paths.iter().any(|path| path.is_empty()) {
            serde::Deserialize::deserialize(deserializer)
        } else {
            deserializer.deserialize_any(self)
        }
    }
}

impl<'de> serde::de::Visitor<'de> for Prune<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut kept = serde_json::Map::new();
        while let Some(name) = map.next_key_seed(MemberName {
            paths: &self.paths,
            also: &[],
        })? {
            match name {
                Some(name) => {
                    let inner = Prune::below(&self.paths, &name);
                    let value = map.next_value_seed(Prune { paths: inner })?;
                    kept.insert(name, value);
                }
                None => {
                    map.next_value::<Skip>()?;
                }
            }
        }
        Ok(Value::Object(kept))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let wanted: Vec<usize> = self
            .paths
            .iter()
            .filter_map(|path| path.first().and_then(|token| pointer_index(token)))
            .collect();
        let last = wanted.iter().copied().max();
        let mut kept = Vec::new();
        let mut index = 0_usize;
        loop {
            let more = if wanted.contains(&index) {
                let token = index.to_string();
                let inner = Prune::below(&self.paths, &token);
                seq.next_element_seed(Prune { paths: inner })?
                    .map(|value| kept.push(value))
            } else {
                seq.next_element::<Skip>()?.map(|Skip| {
                    if last.is_some_and(|last| index < last) {
                        kept.push(Value::Null);
                    }
                })
            };
            if more.is_none() {
                break;
            }
            index += 1;
        }
        Ok(Value::Array(kept))
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

/// Reads a member name, and keeps it (allocates) only when a path continues into it or it is
/// one of `also`.
struct MemberName<'a, 'b> {
    paths: &'a [&'b [String]],
    also: &'a [&'a str],
}

impl<'de> serde::de::DeserializeSeed<'de> for MemberName<'_, '_> {
    type Value = Option<String>;

    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Option<String>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl serde::de::Visitor<'_> for MemberName<'_, '_> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E>(self, name: &str) -> Result<Option<String>, E> {
        let wanted = self.also.contains(&name)
            || self
                .paths
                .iter()
                .any(|path| path.first().is_some_and(|first| first == name));
        Ok(wanted.then(|| name.to_owned()))
    }
}

/// Any JSON value, checked by the parser and dropped: visited like `Value` visits (so nesting
/// counts against the same recursion limit), nothing kept.
struct Skip;

impl<'de> serde::Deserialize<'de> for Skip {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(Self)
    }
}

impl<'de> serde::de::Visitor<'de> for Skip {
    type Value = Self;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self, A::Error> {
        while map.next_key::<Self>()?.is_some() {
            map.next_value::<Self>()?;
        }
        Ok(Self)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<Self>()?.is_some() {}
        Ok(Self)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self, E> {
        Ok(Self)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self, E> {
        Ok(Self)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self, E> {
        Ok(Self)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self, E> {
        Ok(Self)
    }

    fn visit_str<E>(self, _: &str) -> Result<Self, E> {
        Ok(Self)
    }

    fn visit_unit<E>(self) -> Result<Self, E> {
        Ok(Self)
    }
}

/// The full parse into a `Value`: the reference [`parse_json`] agrees with, and its path for
/// errors (their messages come from here).
fn parse_json_value(text: &str) -> Payload {
    // serde_json keeps its recursion limit (128): deeply nested input is an error, not a crash.
    let value: Value = match serde_json::from_str(text) {
        Ok(value) => value,
        Err(err) => {
            let what = if err.is_eof() {
                "the JSON ends early (truncated body)"
            } else {
                "the body is not valid JSON"
            };
            return Payload::NotLastfm(format!("{what}: {err}"));
        }
    };
    let Value::Object(map) = &value else {
        return Payload::NotLastfm("the JSON is not an object".to_owned());
    };
    match map.get("error") {
        Some(error) => error_payload(error, map.get("message")),
        None if map.is_empty() => Payload::NotLastfm("the JSON object is empty".to_owned()),
        None => Payload::Success(Some(value)),
    }
}

/// A document with an `error` member: a Last.fm error when it is a whole number.
fn error_payload(error: &Value, message: Option<&Value>) -> Payload {
    match error {
        Value::Number(n) => match n.as_u64().and_then(|c| u32::try_from(c).ok()) {
            Some(code) => Payload::Error {
                code,
                message: message
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            },
            None => Payload::NotLastfm(format!("the error code {n} is not a whole number")),
        },
        other => Payload::NotLastfm(format!("the error code {other} is not a number")),
    }
}

/// Reads `<lfm status="…">` tolerantly: undeclared prefixes (`opensearch:`) and stray control
/// characters, which strict parsers reject in real successful responses, are accepted; an
/// unclosed document (truncated body) is not. Entities are never expanded.
fn parse_xml(text: &str) -> Payload {
    use quick_xml::events::Event;

    let mut reader = quick_xml::Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    let mut depth = 0_usize;
    let mut status: Option<String> = None;
    let mut error_code: Option<String> = None;
    let mut in_error = false;
    let mut message = String::new();
    let mut root_seen = false;
    loop {
        let event = match reader.read_event() {
            Ok(event) => event,
            Err(err) => return Payload::NotLastfm(format!("the XML is not well-formed: {err}")),
        };
        match event {
            Event::Start(ref element) | Event::Empty(ref element) => {
                let is_empty = matches!(event, Event::Empty(_));
                let name = element.name();
                if depth == 0 {
                    if root_seen || name.as_ref() != b"lfm" {
                        return Payload::NotLastfm("the XML root is not <lfm>".to_owned());
                    }
                    root_seen = true;
                    status = attribute(element, b"status");
                } else if depth == 1 && name.as_ref() == b"error" {
                    error_code = attribute(element, b"code");
                    in_error = !is_empty;
                }
                if !is_empty {
                    depth += 1;
                }
            }
            Event::End(_) => {
                depth = depth.saturating_sub(1);
                in_error = false;
            }
            Event::Text(ref t) if in_error => {
                message.push_str(&String::from_utf8_lossy(t.as_ref()));
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !root_seen {
        return Payload::NotLastfm("the body is not XML".to_owned());
    }
    if depth != 0 {
        return Payload::NotLastfm("the XML ends early (truncated body)".to_owned());
    }
    match (status.as_deref(), error_code) {
        (Some("ok"), _) => Payload::Success(None),
        (Some("failed"), Some(code)) => match code.trim().parse::<u32>() {
            Ok(code) => Payload::Error {
                code,
                message: message.trim().to_owned(),
            },
            Err(_) => Payload::NotLastfm(format!("the error code {code:?} is not a number")),
        },
        (Some("failed"), None) => {
            Payload::NotLastfm("<lfm status=\"failed\"> without an <error code>".to_owned())
        }
        (other, _) => Payload::NotLastfm(format!("<lfm> has status {other:?}")),
    }
}

fn attribute(element: &quick_xml::events::BytesStart<'_>, key: &[u8]) -> Option<String> {
    element
        .attributes()
        .with_checks(false)
        .flatten()
        .find(|attr| attr.key.as_ref() == key)
        .map(|attr| String::from_utf8_lossy(&attr.value).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::Phase;
    use std::time::Duration;

    fn response(status: u16, body: &str) -> ProbeOutcome {
        response_bytes(status, body.as_bytes())
    }

    fn response_bytes(status: u16, body: &[u8]) -> ProbeOutcome {
        ProbeOutcome {
            elapsed: Duration::from_millis(120),
            timings: Default::default(),
            tls: None,
            result: Ok(Response {
                status,
                content_type: None,
                retry_after: None,
                headers: Vec::new(),
                body: body.to_vec(),
            }),
        }
    }

    fn run(outcome: &ProbeOutcome, format: Format, expect: Expectation) -> Classification {
        let table = StatusTable::default();
        classify(
            outcome,
            &ProbeSpec {
                format,
                signed: false,
                expect,
                checks: &[],
                statuses: &table,
                host: "ws.audioscrobbler.com",
            },
        )
    }

    fn json(status: u16, body: &str) -> Classification {
        run(&response(status, body), Format::Json, Expectation::Success)
    }

    fn xml(status: u16, body: &str) -> Classification {
        run(&response(status, body), Format::Xml, Expectation::Success)
    }

    const GFE_502: &str = "<!DOCTYPE html>\n<html lang=en>\n<title>Error 502 (Server Error)!!1</title>\n<p>The server encountered a temporary error and could not complete your request.<p>Please try again in 30 seconds.";

    /// The classification table over realistic responses (LASTFM-API.md §2, §3).
    #[test]
    fn classification_table() {
        struct Row {
            name: &'static str,
            got: Classification,
            outcome: Outcome,
            code: Option<u32>,
            mismatch: Option<MismatchKind>,
            blame: Option<Blame>,
        }
        let rows = [
            Row {
                name: "json success",
                got: json(200, r#"{"artist":{"name":"Cher","listeners":"1234"}}"#),
                outcome: Outcome::Success,
                code: None,
                mismatch: None,
                blame: None,
            },
            Row {
                name: "json error 8 with 503",
                got: json(
                    503,
                    r#"{"error":8,"message":"Operation failed","links":[]}"#,
                ),
                outcome: Outcome::ApiError,
                code: Some(8),
                mismatch: None,
                blame: Some(Blame::Upstream),
            },
            Row {
                name: "json error 8 with 200",
                got: json(200, r#"{"message":"Operation failed","error":8}"#),
                outcome: Outcome::ApiError,
                code: Some(8),
                mismatch: Some(MismatchKind::ErrorWithSuccessStatus),
                blame: Some(Blame::Upstream),
            },
            Row {
                name: "json error 6 user not found 404",
                got: json(404, r#"{"error":6,"message":"User not found"}"#),
                outcome: Outcome::ApiError,
                code: Some(6),
                mismatch: None,
                blame: Some(Blame::Client),
            },
            Row {
                name: "json error 29 with 403 disagrees",
                got: json(403, r#"{"error":29,"message":"Rate Limit Exceeded"}"#),
                outcome: Outcome::ApiError,
                code: Some(29),
                mismatch: Some(MismatchKind::StatusDisagreesWithCode),
                blame: Some(Blame::Client),
            },
            Row {
                name: "json error 26 with 403",
                got: json(403, r#"{"error":26,"message":"Suspended API key"}"#),
                outcome: Outcome::ApiError,
                code: Some(26),
                mismatch: None,
                blame: Some(Blame::Client),
            },
            Row {
                name: "json success with 500",
                got: json(500, r#"{"user":{"name":"rj"}}"#),
                outcome: Outcome::Success,
                code: None,
                mismatch: Some(MismatchKind::SuccessWithErrorStatus),
                blame: None,
            },
            Row {
                name: "gfe 502 html",
                got: json(502, GFE_502),
                outcome: Outcome::HttpError,
                code: None,
                mismatch: None,
                blame: Some(Blame::Upstream),
            },
            Row {
                name: "gfe 400 html",
                got: json(400, GFE_502),
                outcome: Outcome::HttpError,
                code: None,
                mismatch: None,
                blame: Some(Blame::Client),
            },
            Row {
                name: "html with 200",
                got: json(200, GFE_502),
                outcome: Outcome::Malformed,
                code: None,
                mismatch: None,
                blame: Some(Blame::Upstream),
            },
            Row {
                name: "empty 200",
                got: json(200, ""),
                outcome: Outcome::Malformed,
                code: None,
                mismatch: None,
                blame: Some(Blame::Upstream),
            },
            Row {
                name: "truncated json",
                got: json(200, r#"{"artist":{"name":"Ch"#),
                outcome: Outcome::Malformed,
                code: None,
                mismatch: None,
                blame: Some(Blame::Upstream),
            },
            Row {
                name: "error as a string",
                got: json(200, r#"{"error":"8","message":"x"}"#),
                outcome: Outcome::Malformed,
                code: None,
                mismatch: None,
                blame: Some(Blame::Upstream),
            },
            Row {
                name: "error as a float",
                got: json(200, r#"{"error":8.5}"#),
                outcome: Outcome::Malformed,
                code: None,
                mismatch: None,
                blame: Some(Blame::Upstream),
            },
            Row {
                name: "json array",
                got: json(200, "[1,2]"),
                outcome: Outcome::Malformed,
                code: None,
                mismatch: None,
                blame: Some(Blame::Upstream),
            },
            Row {
                name: "xml where json was asked",
                got: json(
                    200,
                    r#"<?xml version="1.0"?><lfm status="ok"><user/></lfm>"#,
                ),
                outcome: Outcome::Malformed,
                code: None,
                mismatch: None,
                blame: Some(Blame::Upstream),
            },
            Row {
                name: "xml success",
                got: xml(
                    200,
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<lfm status=\"ok\"><artist><name>Cher</name></artist></lfm>",
                ),
                outcome: Outcome::Success,
                code: None,
                mismatch: None,
                blame: None,
            },
            Row {
                name: "xml write success is empty lfm",
                got: xml(200, "<lfm status=\"ok\"></lfm>"),
                outcome: Outcome::Success,
                code: None,
                mismatch: None,
                blame: None,
            },
            Row {
                name: "xml error 10 403",
                got: xml(
                    403,
                    "<?xml version=\"1.0\"?><lfm status=\"failed\"><error code=\"10\">Invalid API Key</error></lfm>",
                ),
                outcome: Outcome::ApiError,
                code: Some(10),
                mismatch: None,
                blame: Some(Blame::Client),
            },
            Row {
                name: "xml error 6 with 200",
                got: xml(
                    200,
                    "<lfm status=\"failed\">\n<error code=\"6\">Album not found</error>\n</lfm>",
                ),
                outcome: Outcome::ApiError,
                code: Some(6),
                mismatch: Some(MismatchKind::ErrorWithSuccessStatus),
                blame: Some(Blame::Client),
            },
            Row {
                name: "xml undeclared opensearch prefix",
                got: xml(
                    200,
                    "<lfm status=\"ok\"><results for=\"Believe\"><opensearch:Query role=\"request\" startPage=\"1\"/><opensearch:totalResults>61</opensearch:totalResults></results></lfm>",
                ),
                outcome: Outcome::Success,
                code: None,
                mismatch: None,
                blame: None,
            },
            Row {
                name: "xml with stray control character",
                got: xml(
                    200,
                    "<lfm status=\"ok\"><track><name>Bad\u{1}Name</name></track></lfm>",
                ),
                outcome: Outcome::Success,
                code: None,
                mismatch: None,
                blame: None,
            },
            Row {
                name: "xml truncated",
                got: xml(200, "<lfm status=\"ok\"><artist><name>Cher</name>"),
                outcome: Outcome::Malformed,
                code: None,
                mismatch: None,
                blame: Some(Blame::Upstream),
            },
            Row {
                name: "xml 503 with error 16",
                got: xml(
                    503,
                    "<lfm status=\"failed\"><error code=\"16\">There was a temporary error</error></lfm>",
                ),
                outcome: Outcome::ApiError,
                code: Some(16),
                mismatch: None,
                blame: Some(Blame::Upstream),
            },
        ];
        for row in rows {
            assert_eq!(row.got.outcome, row.outcome, "{}: outcome", row.name);
            assert_eq!(row.got.error_code, row.code, "{}: code", row.name);
            assert_eq!(
                row.got.mismatch.map(|m| m.kind),
                row.mismatch,
                "{}: mismatch",
                row.name
            );
            assert_eq!(row.got.blame, row.blame, "{}: blame", row.name);
        }
    }

    /// The outline parse (issue 6) agrees with the full `Value` parse on every payload, error
    /// message and check result, including at serde_json's recursion limit.
    #[test]
    fn outline_parse_agrees_with_the_full_parse() {
        let nested =
            |depth: usize| format!("{{\"a\":{}1{}}}", "[".repeat(depth), "]".repeat(depth));
        let mut bodies: Vec<String> = [
            r#"{"artist":{"name":"Cher","stats":{"listeners":"1366557"},"tags":{"tag":[{"name":"pop"}]}}}"#,
            r#"{"error":8,"message":"Operation failed","links":[]}"#,
            r#"{"message":"first","error":29,"message":"last"}"#,
            r#"{"error":6,"error":8}"#,
            r#"{"\u0065rror":6,"m\u0065ssage":"escaped names"}"#,
            r#"{"error":29,"message":7}"#,
            r#"{"error":"8"}"#,
            r#"{"error":8.5}"#,
            r#"{"error":-1}"#,
            r#"{"error":99999999999}"#,
            r#"{"error":null}"#,
            r#"{"artist":{"name":"Cher"},"artist":{"name":""}}"#,
            r#"{"a/b":{"~":2},"a":[],"message":"x"}"#,
            r#"{"a":1e400}"#,
            r#"{"a":"bad \x escape"}"#,
            "{\"a\":\"control \u{1} char\"}",
            r#"{"a":01}"#,
            r#"{"a":1,}"#,
            r#"{} trailing"#,
            r#"{"artist":{"name":"Ch"#,
            r#"{}"#,
            r#"[1,{"error":8}]"#,
            r#""just a string""#,
            r#"{"results":{"opensearch:totalResults":"61","trackmatches":{"track":[{"name":"a"},{"name":"b"},{"name":""}]}}}"#,
            r#"{"results":{"trackmatches":{"track":{"name":"only one"}}},"results":{"x":1}}"#,
            r#"{"results":{"trackmatches":{"track":[[1,[2,{"name":"deep"}]],"s",null,true,1.5,-3]}}}"#,
            "12",
            "null",
            "true",
        ]
        .iter()
        .map(|b| (*b).to_owned())
        .collect();
        for depth in [1, 125, 126, 127, 128, 129, 10_000] {
            bodies.push(nested(depth));
        }
        let check = |pointer: &str, rule: CheckRule| Check {
            pointer: pointer.to_owned(),
            rule,
        };
        let check_sets = [
            vec![],
            vec![check("/artist/name", CheckRule::NonEmpty)],
            vec![
                check("/artist/stats/listeners", CheckRule::GreaterThan(0.0)),
                check(
                    "/artist/name",
                    CheckRule::Equals(Value::String("Cher".into())),
                ),
            ],
            vec![check("/a~1b/~0", CheckRule::GreaterThan(1.0))],
            vec![check("/a", CheckRule::NonEmpty)],
            vec![check("/message", CheckRule::NonEmpty)],
            vec![check("", CheckRule::NonEmpty)],
            vec![check("no-slash", CheckRule::NonEmpty)],
            vec![
                check("/artist", CheckRule::NonEmpty),
                check(
                    "/artist/name",
                    CheckRule::Equals(Value::String("Cher".into())),
                ),
            ],
            vec![
                check(
                    "/results/trackmatches/track/1/name",
                    CheckRule::Equals(Value::String("b".into())),
                ),
                check("/results/trackmatches/track/2/name", CheckRule::NonEmpty),
                check("/results/trackmatches/track/5", CheckRule::NonEmpty),
                check("/results/trackmatches/track/01", CheckRule::NonEmpty),
                check("/results/trackmatches/track/+1", CheckRule::NonEmpty),
                check(
                    "/results/opensearch:totalResults",
                    CheckRule::GreaterThan(0.0),
                ),
            ],
            vec![
                check("/results/trackmatches/track", CheckRule::NonEmpty),
                check(
                    "/results/trackmatches/track/0/1/1/name",
                    CheckRule::NonEmpty,
                ),
                check("/results/trackmatches/track/4", CheckRule::GreaterThan(1.0)),
                check("/results/trackmatches/track/name", CheckRule::NonEmpty),
            ],
        ];
        for body in &bodies {
            let full = parse_json_value(body);
            for checks in &check_sets {
                let fast = parse_json(body, checks);
                match (&fast, &full) {
                    (Payload::Success(Some(fast_value)), Payload::Success(Some(full_value))) => {
                        for c in checks {
                            assert_eq!(
                                check_failure(c, fast_value),
                                check_failure(c, full_value),
                                "check {:?} on {body}",
                                c.pointer
                            );
                        }
                    }
                    _ => assert_eq!(fast, full, "body {body}"),
                }
            }
        }
    }

    #[test]
    fn invalid_utf8_is_malformed() {
        let got = run(
            &response_bytes(200, b"{\"user\":\"\xff\xfe\"}"),
            Format::Json,
            Expectation::Success,
        );
        assert_eq!(got.outcome, Outcome::Malformed);
        assert_eq!(got.detail.as_deref(), Some("the body is not valid UTF-8"));
    }

    #[test]
    fn deeply_nested_json_is_malformed_not_a_crash() {
        let body = "[".repeat(100_000);
        assert_eq!(json(200, &body).outcome, Outcome::Malformed);
    }

    #[test]
    fn error_29_with_200_raises_rate_limited() {
        let got = json(200, r#"{"error":29,"message":"Rate Limit Exceeded"}"#);
        assert_eq!(got.outcome, Outcome::ApiError);
        assert_eq!(got.error_code, Some(29));
        assert_eq!(
            got.mismatch,
            Some(Mismatch {
                kind: MismatchKind::ErrorWithSuccessStatus,
                code: Some(29),
                status: 200
            })
        );
        assert_eq!(got.raises, vec![Condition::RateLimited]);
    }

    #[test]
    fn plain_429_raises_rate_limited_once() {
        let got = json(429, r#"{"error":29,"message":"Rate Limit Exceeded"}"#);
        assert_eq!(got.raises, vec![Condition::RateLimited]);
        assert_eq!(got.mismatch, None);
        let html = json(429, "<html><body>Too Many Requests</body></html>");
        assert_eq!(html.outcome, Outcome::HttpError);
        assert_eq!(html.raises, vec![Condition::RateLimited]);
    }

    #[test]
    fn conditions_follow_codes() {
        let cases = [
            (11, Some(Condition::ServiceOffline)),
            (2, Some(Condition::ServiceOffline)),
            (26, Some(Condition::ApiKeySuspended)),
            (10, Some(Condition::ApiKeyInvalid)),
            (9, None),
            (8, None),
        ];
        for (code, condition) in cases {
            let got = json(200, &format!(r#"{{"error":{code},"message":"m"}}"#));
            assert_eq!(
                got.raises,
                condition.into_iter().collect::<Vec<_>>(),
                "{code}"
            );
        }
    }

    #[test]
    fn session_errors_raise_session_invalid_only_on_signed_probes() {
        let table = StatusTable::default();
        let outcome = response(403, r#"{"error":9,"message":"Invalid session key"}"#);
        let signed = classify(
            &outcome,
            &ProbeSpec {
                format: Format::Json,
                signed: true,
                expect: Expectation::Success,
                checks: &[],
                statuses: &table,
                host: "ws.audioscrobbler.com",
            },
        );
        assert_eq!(signed.raises, vec![Condition::SessionInvalid]);
    }

    #[test]
    fn negative_control_meets_its_expectation_with_error_6() {
        let got = run(
            &response(404, r#"{"error":6,"message":"User not found"}"#),
            Format::Json,
            Expectation::Error(6),
        );
        assert_eq!(got.outcome, Outcome::ApiError);
        assert!(got.met_expectation);
        assert!(got.api_healthy);
        assert_eq!(got.blame, None);
    }

    #[test]
    fn negative_control_fails_on_data_or_error_8() {
        let data = run(
            &response(200, r#"{"user":{"name":"ghost"}}"#),
            Format::Json,
            Expectation::Error(6),
        );
        assert_eq!(data.outcome, Outcome::Success);
        assert!(!data.met_expectation);
        assert_eq!(data.blame, Some(Blame::Upstream));
        let eight = run(
            &response(503, r#"{"error":8,"message":"Operation failed"}"#),
            Format::Json,
            Expectation::Error(6),
        );
        assert!(!eight.met_expectation);
        assert_eq!(eight.blame, Some(Blame::Upstream));
    }

    #[test]
    fn checks_turn_a_success_into_check_failed() {
        let table = StatusTable::default();
        let checks = [
            Check {
                pointer: "/recenttracks/@attr/user".into(),
                rule: CheckRule::Equals(Value::String("canary".into())),
            },
            Check {
                pointer: "/results/opensearch:totalResults".into(),
                rule: CheckRule::GreaterThan(0.0),
            },
        ];
        let spec = ProbeSpec {
            format: Format::Json,
            signed: false,
            expect: Expectation::Success,
            checks: &checks,
            statuses: &table,
            host: "ws.audioscrobbler.com",
        };
        let ok = classify(
            &response(
                200,
                r#"{"recenttracks":{"@attr":{"user":"canary"}},"results":{"opensearch:totalResults":"61"}}"#,
            ),
            &spec,
        );
        assert_eq!(ok.outcome, Outcome::Success);
        let wrong_user = classify(
            &response(
                200,
                r#"{"recenttracks":{"@attr":{"user":"someone-else"}},"results":{"opensearch:totalResults":"61"}}"#,
            ),
            &spec,
        );
        assert_eq!(wrong_user.outcome, Outcome::CheckFailed);
        assert_eq!(wrong_user.blame, Some(Blame::Upstream));
        assert!(
            wrong_user
                .detail
                .as_deref()
                .unwrap_or_default()
                .contains("someone-else")
        );
        let empty = classify(
            &response(
                200,
                r#"{"recenttracks":{"@attr":{"user":"canary"}},"results":{"opensearch:totalResults":"0"}}"#,
            ),
            &spec,
        );
        assert_eq!(empty.outcome, Outcome::CheckFailed);
    }

    #[test]
    fn non_empty_check() {
        let check = Check {
            pointer: "/album/tracks/track".into(),
            rule: CheckRule::NonEmpty,
        };
        let full: Value =
            serde_json::json!({"album": {"tracks": {"track": [{"name": "Believe"}]}}});
        let empty: Value = serde_json::json!({"album": {"tracks": {"track": []}}});
        assert_eq!(check_failure(&check, &full), None);
        assert!(check_failure(&check, &empty).is_some());
    }

    fn failed(failure: TransportFailure) -> Classification {
        run(
            &ProbeOutcome {
                elapsed: Duration::from_secs(1),
                timings: Default::default(),
                tls: None,
                result: Err(failure),
            },
            Format::Json,
            Expectation::Success,
        )
    }

    #[test]
    fn a_failure_before_the_request_is_ours_only_when_every_reference_failed() {
        let nxdomain = TransportFailure::new(Phase::Dns, Reason::Nxdomain);
        let ours = localize(failed(nxdomain), LocalNetwork::Down);
        assert_eq!(ours.blame, Some(Blame::Local));
        assert_eq!(ours.raises, vec![Condition::LocalNetworkDown]);
        assert_eq!(ours.outcome, Outcome::ConnectionError, "the outcome stays");
        for network in [LocalNetwork::Reachable, LocalNetwork::Unknown] {
            let theirs = localize(failed(nxdomain), network);
            assert_eq!(theirs.blame, Some(Blame::Upstream), "{network:?}");
            assert!(theirs.raises.is_empty());
        }
    }

    #[test]
    fn only_failures_our_network_can_cause_move_to_local() {
        let local = [
            TransportFailure::new(Phase::Connect, Reason::Unreachable),
            TransportFailure::new(Phase::Tls, Reason::CertificateUntrusted),
            TransportFailure::timeout(Phase::Request),
            TransportFailure::timeout(Phase::Body),
        ];
        for failure in local {
            assert_eq!(
                localize(failed(failure), LocalNetwork::Down).blame,
                Some(Blame::Local),
                "{failure:?}"
            );
        }
        // The server got the request: the path to Last.fm works, whatever the references say.
        let theirs = [
            TransportFailure::new(Phase::Request, Reason::Reset),
            TransportFailure::new(Phase::Body, Reason::Interrupted),
            TransportFailure::new(Phase::Body, Reason::TooLarge),
        ];
        for failure in theirs {
            assert_eq!(
                localize(failed(failure), LocalNetwork::Down).blame,
                Some(Blame::Upstream),
                "{failure:?}"
            );
        }
        // An answer, even an edge's 502, is never ours.
        let edge = localize(json(502, "<html>bad gateway</html>"), LocalNetwork::Down);
        assert_eq!(edge.blame, Some(Blame::Upstream));
    }

    #[test]
    fn every_listed_pair_is_a_closed_label_set() {
        let all: Vec<TransportFailure> = TransportFailure::all().collect();
        assert_eq!(all.len(), 19);
        let mut labels: Vec<(&str, &str)> = all
            .iter()
            .map(|f| (f.phase.as_label(), f.reason.as_label()))
            .collect();
        labels.dedup();
        assert_eq!(labels.len(), all.len());
        for failure in all {
            let words = failure.describe("ws.audioscrobbler.com");
            assert!(words.starts_with(failure.phase.describe()), "{words}");
        }
        assert_eq!(
            TransportFailure::new(Phase::Dns, Reason::Nxdomain).describe("ws.audioscrobbler.com"),
            "DNS: ws.audioscrobbler.com does not exist (NXDOMAIN)"
        );
    }

    #[test]
    fn transport_failures_map_to_their_outcomes() {
        let cases = [
            (TransportFailure::timeout(Phase::Dns), Outcome::Timeout),
            (TransportFailure::timeout(Phase::Body), Outcome::Timeout),
            (
                TransportFailure::new(Phase::Dns, Reason::Nxdomain),
                Outcome::ConnectionError,
            ),
            (
                TransportFailure::new(Phase::Tls, Reason::CertificateExpired),
                Outcome::ConnectionError,
            ),
            (
                TransportFailure::new(Phase::Body, Reason::Interrupted),
                Outcome::ConnectionError,
            ),
            (
                TransportFailure::new(Phase::Body, Reason::TooLarge),
                Outcome::BodyTooLarge,
            ),
        ];
        for (failure, outcome) in cases {
            let got = failed(failure);
            assert_eq!(got.outcome, outcome);
            assert_eq!(got.blame, Some(Blame::Upstream));
            assert_eq!(got.http_status, None);
        }
    }

    #[test]
    fn status_labels_are_bounded() {
        assert_eq!(status_label(200), "200");
        assert_eq!(status_label(418), "4xx");
        assert_eq!(status_label(599), "5xx");
        assert_eq!(status_label(999), "other");
        assert_eq!(status_label(0), "other");
        for status in 0..=1000 {
            assert!(STATUS_LABELS.contains(&status_label(status)));
        }
    }

    #[test]
    fn unknown_codes_are_other() {
        assert_eq!(code_label(29), "29");
        assert_eq!(code_label(1), "other");
        assert_eq!(code_label(u32::MAX), "other");
    }

    #[test]
    fn documented_statuses_can_be_overridden() {
        let mut table = StatusTable::default();
        table.set(29, vec![403]);
        let got = classify(
            &response(403, r#"{"error":29,"message":"x"}"#),
            &ProbeSpec {
                format: Format::Json,
                signed: false,
                expect: Expectation::Success,
                checks: &[],
                statuses: &table,
                host: "ws.audioscrobbler.com",
            },
        );
        assert_eq!(got.mismatch, None);
    }

    #[test]
    fn retry_after_is_seconds_or_a_date() {
        assert_eq!(parse_retry_after("120"), Some(RetryAfter::Seconds(120)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(RetryAfter::At(1_445_412_480))
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}

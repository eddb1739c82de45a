//! Pure classification: recorded facts in, a [`Classification`] out. No I/O, no clock.
//!
//! Last.fm's HTTP statuses do not tell the truth, so the body decides: a well-formed Last.fm
//! payload (success or error) is classified by its content whatever the status, the status is
//! recorded beside it, and every disagreement between the two is a [`Mismatch`]. Only when the body
//! is not a Last.fm payload does the status matter (`http_error` for non-2xx, else `malformed`).
//! Every label this stage produces comes from a closed enum through `as_label`, never from
//! upstream text, so no response can grow the metric set.
//!
//! - `verdict`: the closed sets (outcome, blame, mismatch, condition) and [`Classification`].
//! - `codes`: the one table of error codes (label, documented statuses, blame, condition) and
//!   the bounded label sets of codes and statuses.
//! - `canary`: what a write-path canary's write and read-back meant, and its run's result.
//! - `local`: whether a failure is our network's fault, from the reference checks.
//! - `payload`, `json`, `xml`: the readers that turn a body into what is judged.
//! - `write`: what a write's success and a recent-tracks read-back say (for the canaries), and
//!   the scope of a rate limit.
//! - this module: the judgement itself, from facts and the probe's spec to a verdict.

mod canary;
mod codes;
mod json;
mod local;
mod payload;
mod verdict;
mod write;
mod xml;

use serde_json::Value;

pub use canary::{
    CanaryResult, IgnoredCode, Sight, Wanted, WriteJudgement, canary_blame, judge_read, judge_write,
};
pub use codes::{
    CODE_LABELS, Code, CodeTable, KNOWN_CODES, Raises, STATUS_LABELS, code_index, code_label,
    code_name, status_label,
};
pub use local::{LocalNetwork, could_be_local, localize};
pub use verdict::{
    Blame, Classification, Condition, Mismatch, MismatchKind, Outcome, RetryAfter,
    parse_retry_after,
};
pub use write::{
    RateLimitScope, RecentEntry, RecentTracks, WriteAnswer, rate_limit_scope, read_recent_tracks,
    read_write_answer,
};

use crate::config::{Check, CheckRule, Expectation, Format};
use crate::probe::{ProbeOutcome, Reason, Response, TransportFailure};
use json::parse_json;
use payload::Payload;
use xml::parse_xml;

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
                Value::Null | Value::Bool(_) | Value::Array(_) | Value::Object(_) => None,
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
    /// The service's error codes, with the target's documented statuses.
    pub codes: &'a CodeTable,
    /// The target's host name, for the words of a transport failure.
    pub host: &'a str,
}

/// Classifies one run. Pure and total: any input yields a verdict, never a panic.
pub fn classify(outcome: &ProbeOutcome, spec: &ProbeSpec<'_>) -> Classification {
    match &outcome.result {
        Err(failure) => transport(*failure, outcome.http_status, spec),
        Ok(response) => response_verdict(response, spec),
    }
}

/// The outcome of a transport failure; phase and reason refine it, never replace it.
pub fn transport_outcome(failure: TransportFailure) -> Outcome {
    match failure.reason {
        Reason::Timeout => Outcome::Timeout,
        Reason::TooLarge => Outcome::BodyTooLarge,
        Reason::Nxdomain
        | Reason::NoAddress
        | Reason::ResolverFailure
        | Reason::Refused
        | Reason::Unreachable
        | Reason::Reset
        | Reason::CertificateExpired
        | Reason::CertificateNotYetValid
        | Reason::CertificateUntrusted
        | Reason::HostnameMismatch
        | Reason::HandshakeFailed
        | Reason::Interrupted
        | Reason::LocalResources
        | Reason::ProtocolError => Outcome::ConnectionError,
    }
}

/// The verdict on a run that got no complete response; `http_status` is the status of the
/// headers when they arrived before the failure (a body cut off, stalled or too large).
fn transport(
    failure: TransportFailure,
    http_status: Option<u16>,
    spec: &ProbeSpec<'_>,
) -> Classification {
    let mut verdict = Classification {
        detail: Some(failure.describe(spec.host)),
        http_status,
        failure: Some(failure),
        blame: Some(Blame::Upstream),
        ..Classification::new(transport_outcome(failure))
    };
    // Out of descriptors, memory or ports is this host's fault whatever the references say:
    // blamed on us at once, so availability does not move and on-call looks here.
    if failure.is_local_resources() {
        verdict.blame = Some(Blame::Local);
        verdict.raise(Condition::LocalResourcesExhausted);
    }
    verdict
}

fn response_verdict(response: &Response, spec: &ProbeSpec<'_>) -> Classification {
    let status = response.status;
    let payload = parse_payload(&response.body, spec.format, spec.checks);
    let retry_after = response
        .retry_after
        .as_deref()
        .and_then(parse_retry_after)
        .or_else(|| reset_in(response, spec.codes));
    let mut base = Classification {
        http_status: Some(status),
        retry_after,
        ..Classification::new(Outcome::Malformed)
    };
    if status == 429 {
        base.raise(Condition::RateLimited);
    }
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

/// `X-RateLimit-Reset-In` (seconds) as a `Retry-After`, where the service says so.
fn reset_in(response: &Response, codes: &CodeTable) -> Option<RetryAfter> {
    if !codes.reads_reset_in() {
        return None;
    }
    response
        .headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("x-ratelimit-reset-in"))
        .and_then(|(_, value)| parse_retry_after(value))
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
    let documented = spec.codes.documented(code);
    // A service that documents its errors with 200 (Libre.fm, ListenBrainz) tells no lie there.
    let mismatch = if documented.contains(&status) {
        None
    } else if is_2xx(status) {
        Some(MismatchKind::ErrorWithSuccessStatus)
    } else {
        (!documented.is_empty()).then_some(MismatchKind::StatusDisagreesWithCode)
    }
    .map(|kind| Mismatch {
        kind,
        code: Some(code),
        status,
    });
    let met = spec.expect == Expectation::Error(code);
    if let Some(condition) = spec.codes.raises(code, spec.signed) {
        base.raise(condition);
    }
    Classification {
        outcome: Outcome::ApiError,
        error_code: Some(code),
        detail: Some(message),
        failure: None,
        mismatch,
        blame: (!met).then_some(spec.codes.blame(code)),
        met_expectation: met,
        api_healthy: met,
        ..base
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StatusTable;
    use crate::probe::Phase;
    use json::parse_json_value;
    use std::time::Duration;

    fn response(status: u16, body: &str) -> ProbeOutcome {
        response_bytes(status, body.as_bytes())
    }

    fn response_bytes(status: u16, body: &[u8]) -> ProbeOutcome {
        ProbeOutcome {
            elapsed: Duration::from_millis(120),
            timings: Default::default(),
            tls: None,
            http_status: Some(status),
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
        let table = CodeTable::lastfm();
        classify(
            outcome,
            &ProbeSpec {
                format,
                signed: false,
                expect,
                checks: &[],
                codes: &table,
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

    /// The classification table over realistic responses (docs/LASTFM-API.md §2, §3).
    #[test]
    #[expect(
        clippy::too_many_lines,
        reason = "a table: one row per realistic response and its expected verdict"
    )]
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
                name: "error as a string of digits",
                got: json(200, r#"{"error":"8","message":"x"}"#),
                outcome: Outcome::ApiError,
                code: Some(8),
                mismatch: Some(MismatchKind::ErrorWithSuccessStatus),
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

    /// An error code is one to four digits, as a JSON integer or string or an XML attribute;
    /// anything else, and more than one `error` member, is a malformed body
    /// (README.md, Classification).
    #[test]
    fn an_error_code_is_one_to_four_digits_and_only_one() {
        for (body, code) in [
            (r#"{"error":11,"message":"x"}"#, Some(11)),
            (r#"{"error":"11","message":"x"}"#, Some(11)),
            (r#"{"error":"0029"}"#, Some(29)),
            (r#"{"error":11.0}"#, None),
            (r#"{"error":"+11"}"#, None),
            (r#"{"error":" 11"}"#, None),
            (r#"{"error":"11 "}"#, None),
            (r#"{"error":"1e1"}"#, None),
            (r#"{"error":12345}"#, None),
            (r#"{"error":"12345"}"#, None),
            (r#"{"error":""}"#, None),
            (r#"{"error":-1}"#, None),
            (r#"{"error":11,"error":29}"#, None),
            (r#"{"error":29,"message":"a","error":29}"#, None),
        ] {
            let got = json(200, body);
            assert_eq!(got.error_code, code, "{body}");
            let outcome = if code.is_some() {
                Outcome::ApiError
            } else {
                Outcome::Malformed
            };
            assert_eq!(got.outcome, outcome, "{body}");
        }
        for (attribute, code) in [
            ("11", Some(11)),
            ("+11", None),
            (" 11", None),
            ("11.0", None),
            ("12345", None),
        ] {
            let body = format!(
                "<lfm status=\"failed\"><error code=\"{attribute}\">Service Offline</error></lfm>"
            );
            let got = xml(200, &body);
            assert_eq!(got.error_code, code, "{body}");
        }
        // The full parse (a check on the whole document) judges duplicates the same way.
        let whole = [Check {
            pointer: String::new(),
            rule: CheckRule::NonEmpty,
        }];
        let spec_codes = CodeTable::lastfm();
        let got = classify(
            &response(200, r#"{"error":11,"error":29}"#),
            &ProbeSpec {
                format: Format::Json,
                signed: false,
                expect: Expectation::Success,
                checks: &whole,
                codes: &spec_codes,
                host: "ws.audioscrobbler.com",
            },
        );
        assert_eq!(got.outcome, Outcome::Malformed);
        assert_eq!(got.error_code, None);
    }

    /// The outline parse (the fast path of the JSON reader) agrees with the full `Value` parse
    /// on every payload, error message and check result, including at serde_json's recursion
    /// limit.
    #[test]
    #[expect(
        clippy::too_many_lines,
        reason = "a table: the bodies and check sets compared, then one loop"
    )]
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
        let table = CodeTable::lastfm();
        let outcome = response(403, r#"{"error":9,"message":"Invalid session key"}"#);
        let signed = classify(
            &outcome,
            &ProbeSpec {
                format: Format::Json,
                signed: true,
                expect: Expectation::Success,
                checks: &[],
                codes: &table,
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
        let table = CodeTable::lastfm();
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
            codes: &table,
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
        failed_after(failure, None)
    }

    /// A run that failed with `failure` after headers of `status`, when any arrived.
    fn failed_after(failure: TransportFailure, status: Option<u16>) -> Classification {
        run(
            &ProbeOutcome {
                elapsed: Duration::from_secs(1),
                timings: Default::default(),
                tls: None,
                http_status: status,
                result: Err(failure),
            },
            Format::Json,
            Expectation::Success,
        )
    }

    /// A body cut off, stalled or too large after a 200 keeps the 200 beside its failure.
    #[test]
    fn a_failure_after_the_headers_keeps_their_status() {
        for failure in [
            TransportFailure::new(Phase::Body, Reason::Interrupted),
            TransportFailure::timeout(Phase::Body),
            TransportFailure::new(Phase::Body, Reason::TooLarge),
            TransportFailure::new(Phase::Body, Reason::ProtocolError),
        ] {
            let verdict = failed_after(failure, Some(200));
            assert_eq!(verdict.http_status, Some(200), "{failure:?}");
            assert_eq!(verdict.failure, Some(failure));
            assert_eq!(verdict.outcome, transport_outcome(failure));
            assert_eq!(verdict.blame, Some(Blame::Upstream));
        }
        assert_eq!(
            failed(TransportFailure::timeout(Phase::Request)).http_status,
            None
        );
    }

    /// Out of descriptors, memory or ports: `local` and `local_resources_exhausted` whatever the
    /// references say, never asking them, never moving availability.
    #[test]
    fn exhausted_local_resources_are_ours_whatever_the_references_say() {
        for phase in [Phase::Dns, Phase::Connect] {
            let failure = TransportFailure::new(phase, Reason::LocalResources);
            assert!(phase.reasons().contains(&Reason::LocalResources));
            assert!(!could_be_local(failure), "no reference is asked");
            for network in [
                LocalNetwork::Unknown,
                LocalNetwork::Reachable,
                LocalNetwork::Down,
            ] {
                let verdict = localize(failed(failure), network);
                assert_eq!(verdict.outcome, Outcome::ConnectionError);
                assert_eq!(verdict.blame, Some(Blame::Local), "{network:?}");
                assert_eq!(verdict.raises, vec![Condition::LocalResourcesExhausted]);
                assert!(!verdict.api_healthy);
            }
        }
    }

    /// A peer that answered in something that is not HTTP is theirs, never ours.
    #[test]
    fn protocol_errors_are_connection_errors_blamed_upstream() {
        for phase in [Phase::Request, Phase::Body] {
            let failure = TransportFailure::new(phase, Reason::ProtocolError);
            assert!(phase.reasons().contains(&Reason::ProtocolError));
            assert!(!could_be_local(failure));
            let verdict = localize(failed(failure), LocalNetwork::Down);
            assert_eq!(verdict.outcome, Outcome::ConnectionError);
            assert_eq!(verdict.blame, Some(Blame::Upstream));
            assert!(verdict.raises.is_empty());
        }
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
            TransportFailure::timeout(Phase::Dns),
            TransportFailure::timeout(Phase::Connect),
            TransportFailure::timeout(Phase::Tls),
        ];
        for failure in local {
            assert_eq!(
                localize(failed(failure), LocalNetwork::Down).blame,
                Some(Blame::Local),
                "{failure:?}"
            );
        }
        // The request was written: the path to Last.fm works, whatever the references say,
        // and a deadline passing while waiting for the headers or the body does not change it.
        let theirs = [
            TransportFailure::new(Phase::Request, Reason::Reset),
            TransportFailure::new(Phase::Request, Reason::ProtocolError),
            TransportFailure::timeout(Phase::Request),
            TransportFailure::timeout(Phase::Body),
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
        // Every reason is listed under some phase: a reason left out would have no series.
        for reason in Reason::ALL {
            assert!(
                all.iter().any(|f| f.reason == reason),
                "{reason:?} has no phase"
            );
        }
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
        let mut overrides = StatusTable::default();
        overrides.set(29, vec![403]);
        let table = CodeTable::lastfm().with_statuses(&overrides);
        let got = classify(
            &response(403, r#"{"error":29,"message":"x"}"#),
            &ProbeSpec {
                format: Format::Json,
                signed: false,
                expect: Expectation::Success,
                checks: &[],
                codes: &table,
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

    #[test]
    fn a_retry_after_too_large_to_parse_is_the_longest_wait_and_other_junk_is_absent() {
        assert_eq!(
            parse_retry_after("99999999999999999999"),
            Some(RetryAfter::Seconds(u64::MAX))
        );
        assert_eq!(parse_retry_after(" 0 "), Some(RetryAfter::Seconds(0)));
        for junk in ["", "+5", "-5", "1.5", "5s", "0x10"] {
            assert_eq!(parse_retry_after(junk), None, "{junk:?}");
        }
    }

    fn on(api: crate::config::Api, outcome: &ProbeOutcome, format: Format) -> Classification {
        let table = CodeTable::of(api);
        classify(
            outcome,
            &ProbeSpec {
                format,
                signed: false,
                expect: Expectation::Success,
                checks: &[],
                codes: &table,
                host: "example.org",
            },
        )
    }

    /// Each service's profile judges its own answers: an error with 200 is no mismatch where the
    /// service documents it so, and Libre.fm's 7 for an unknown user is the request's fault.
    #[test]
    fn profiles_judge_errors_with_200_by_their_service() {
        use crate::config::Api;
        let libre =
            r#"<lfm status="failed"><error code="7">Invalid resource specified</error></lfm>"#;
        let got = on(Api::Librefm, &response(200, libre), Format::Xml);
        assert_eq!((got.outcome, got.error_code), (Outcome::ApiError, Some(7)));
        assert_eq!(got.mismatch, None, "Libre.fm documents its errors with 200");
        assert_eq!(got.blame, Some(Blame::Client));
        let lastfm = on(Api::Lastfm, &response(200, libre), Format::Xml);
        assert_eq!(
            lastfm.mismatch.map(|m| m.kind),
            Some(MismatchKind::ErrorWithSuccessStatus),
            "the same answer from Last.fm is its best-known quirk"
        );
        // GNU FM's JSON keeps the XML element's shape.
        let element = on(
            Api::Librefm,
            &response(
                200,
                r##"{"error":{"#text":"Invalid resource specified","code":"7"}}"##,
            ),
            Format::Json,
        );
        assert_eq!((element.error_code, element.mismatch), (Some(7), None));
        assert_eq!(
            element.detail.as_deref(),
            Some("Invalid resource specified")
        );
        let offline = on(
            Api::Librefm,
            &response(200, r#"{"error":11,"message":"Service Offline"}"#),
            Format::Json,
        );
        assert_eq!(offline.blame, Some(Blame::Upstream));
        assert_eq!(offline.raises, vec![Condition::ServiceOffline]);
        // ListenBrainz answers a write sent with GET with 16: our request, not an outage.
        let get_write = on(
            Api::Listenbrainz,
            &response(
                200,
                r#"{"error":16,"message":"The service is temporarily unavailable"}"#,
            ),
            Format::Json,
        );
        assert_eq!(
            (get_write.blame, get_write.mismatch),
            (Some(Blame::Client), None)
        );
        let on_lastfm = json(200, r#"{"error":16,"message":"temporarily unavailable"}"#);
        assert_eq!(on_lastfm.blame, Some(Blame::Upstream));
    }

    /// ListenBrainz throttles with its own 429 JSON and says when to come back in
    /// `X-RateLimit-Reset-In`: rate limited, scope unknown, backoff from the header.
    #[test]
    fn listenbrainz_429_json_backs_off_for_reset_in() {
        use crate::config::Api;
        let mut outcome = response(429, r#"{"code": 429, "error": "Ratelimit exceeded"}"#);
        if let Ok(response) = &mut outcome.result {
            response.headers = vec![
                ("x-ratelimit-limit".to_owned(), "30".to_owned()),
                ("x-ratelimit-remaining".to_owned(), "0".to_owned()),
                ("x-ratelimit-reset-in".to_owned(), "42".to_owned()),
            ];
        }
        let got = on(Api::Listenbrainz, &outcome, Format::Json);
        assert_eq!(got.outcome, Outcome::HttpError);
        assert_eq!(got.raises, vec![Condition::RateLimited]);
        assert_eq!(got.retry_after, Some(RetryAfter::Seconds(42)));
        assert_eq!(rate_limit_scope(&got), Some(RateLimitScope::Unknown));
        // Last.fm's profile does not read the header.
        let lastfm = on(Api::Lastfm, &outcome, Format::Json);
        assert_eq!(lastfm.retry_after, None);
    }
}

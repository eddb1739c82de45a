//! Hostile and broken upstreams: every fault gets the outcome README.md's Classification
//! prescribes, within its deadline + 1 s, the next run still happens, memory stays
//! bounded and no secret leaks into logs, `/metrics` or any response.
//!
//! The matrix runs in a process of its own ([`fault_matrix`] re-executes this test binary on
//! [`fault_matrix_in_this_process`]) so that its peak RSS (`VmHWM`) is not muddled by the other
//! tests running in parallel threads. Each fault is its own target with its own raw fake
//! (`support::raw`), so a fault that moves the politeness gate (29, 26, 10) does not starve the
//! others. The matrix is checked twice: each fault once through [`HttpProber`] directly (timed
//! from outside), then all of them as the in-process daemon's scheduled probes at 3 s intervals
//! until each has run twice.

use std::io::Write as _;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use lastfm_monitor::classify::{self, Outcome, ProbeSpec};
use lastfm_monitor::config::Config;
use lastfm_monitor::probe::http::{HttpProber, request_params};
use lastfm_monitor::probe::{Phase, ProbeOutcome, Prober, Reason, Response};
use proptest::prelude::*;
use tokio::time::Instant;

use crate::support::raw::{self, RawServer, Reply};
use crate::support::{
    CANARY_KEY, CANARY_SECRET, CANARY_SK, Daemon, TestEnv, metric, mib, proc_status_bytes,
    run_with_limit,
};

/// Every fault probe's deadline.
const TIMEOUT: Duration = Duration::from_millis(1500);
/// The histogram bucket that holds every run finishing within the deadline + 1 s.
const DEADLINE_BUCKET: &str = "2.5";
/// The RSS bar over the whole matrix.
const MAX_RSS_GROWTH: u64 = 16 * 1024 * 1024;
/// How long the child process may take before it is killed.
const CHILD_LIMIT: Duration = Duration::from_secs(80);
/// The cap the boundary rows use (the others use the 2 MiB default).
const SMALL_CAP: usize = 4096;

const SUCCESS_JSON: &str = r#"{"artist":{"name":"Cher","listeners":"1234"}}"#;
const GFE_502: &str = "<!DOCTYPE html>\n<html lang=en>\n<title>Error 502 (Server Error)!!1</title>\n<p>The server encountered a temporary error and could not complete your request.<p>Please try again in 30 seconds.";

/// Where a fault's requests go.
enum Upstream {
    Raw(RawServer),
    /// A loopback port nobody listens on.
    Refused(std::net::SocketAddr),
    /// A `.invalid` name (RFC 6761), which never resolves.
    Dns,
}

/// One fault and the outcome README.md's Classification prescribes for it.
struct Row {
    /// Target name (and the row's name in messages).
    name: &'static str,
    upstream: Upstream,
    /// Extra probe TOML.
    probe_extra: String,
    /// The expected `outcome` label.
    outcome: &'static str,
    /// Also acceptable (only the DNS row: a resolver that cannot be reached times out).
    or_outcome: Option<&'static str>,
    /// The expected `code` label of an `api_error`.
    code: Option<&'static str>,
}

impl Row {
    fn base_url(&self) -> String {
        match &self.upstream {
            Upstream::Raw(server) => server.base_url(),
            Upstream::Refused(addr) => format!("http://{addr}/2.0/"),
            Upstream::Dns => "https://lastfm-monitor-fault-matrix.invalid/2.0/".to_owned(),
        }
    }

    fn accepts(&self, outcome: &str) -> bool {
        outcome == self.outcome || self.or_outcome == Some(outcome)
    }
}

/// Where the rows that get no complete response break (README.md's phase table), and the status
/// of the headers that came before the break, if any: the phase and reason refine the outcome,
/// and the status is recorded whenever there was one.
fn broke(name: &str) -> Option<(Phase, Reason, Option<u16>)> {
    let (phase, reason, status) = match name {
        "refused" => (Phase::Connect, Reason::Refused, None),
        "stall" | "trickle-head" => (Phase::Request, Reason::Timeout, None),
        "closed-at-once" => (Phase::Request, Reason::Reset, None),
        "trickle-body" => (Phase::Body, Reason::Timeout, Some(200)),
        "truncated" | "reset-mid-body" => (Phase::Body, Reason::Interrupted, Some(200)),
        "oversized-8mib" | "oversized-1gib-unframed" | "limit-plus-one" => {
            (Phase::Body, Reason::TooLarge, Some(200))
        }
        "status-000"
        | "status-garbage"
        | "not-http"
        | "header-flood"
        | "header-512kib"
        | "content-length-twice"
        | "nul-in-header"
        | "http-0_9"
        | "status-line-512kib" => (Phase::Request, Reason::ProtocolError, None),
        "bad-chunked" => (Phase::Body, Reason::ProtocolError, Some(200)),
        _ => return None,
    };
    Some((phase, reason, status))
}

fn row(name: &'static str, upstream: Upstream, outcome: &'static str) -> Row {
    Row {
        name,
        upstream,
        probe_extra: String::new(),
        outcome,
        or_outcome: None,
        code: None,
    }
}

async fn fake(name: &'static str, reply: Reply, outcome: &'static str) -> Row {
    row(name, Upstream::Raw(RawServer::always(reply).await), outcome)
}

/// A gzip stream of `members` concatenated members, each 1 MiB of zeros compressed: a real
/// bomb (about 1000:1), built small.
fn gzip_bomb(members: usize) -> Vec<u8> {
    use flate2::Compression;
    use flate2::write::GzEncoder;
    let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
    encoder
        .write_all(&vec![0_u8; 1 << 20])
        .expect("compressing into memory");
    let member = encoder.finish().expect("compressing into memory");
    member.repeat(members)
}

/// `{"artist":{"name":"xxx…"}}` of exactly `len` bytes.
fn json_of_len(len: usize) -> String {
    let (open, close) = (r#"{"artist":{"name":""#, r#""}}"#);
    format!(
        "{open}{}{close}",
        "x".repeat(len - open.len() - close.len())
    )
}

/// The secrets as they would appear on the wire for `request`: key, sk and api_sig, raw and
/// URL-encoded.
fn echo_of(request: &raw::RawRequest) -> String {
    ["api_key", "sk", "api_sig"]
        .iter()
        .filter_map(|name| request.param(name))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The fault matrix: every row a fault with the outcome (and code) README.md's Classification
/// prescribes. The rows come in groups, in this order.
async fn matrix(trap: &RawServer) -> Vec<Row> {
    let mut rows = broken_connection_rows().await;
    rows.extend(oversized_rows().await);
    rows.extend(unreadable_body_rows().await);
    rows.extend(bad_error_code_rows().await);
    rows.extend(politeness_rows().await);
    rows.extend(secret_echo_rows(trap.addr).await);
    rows.extend(broken_framing_rows().await);
    rows.extend(boundary_rows().await);
    rows
}

/// Nothing listens, nothing resolves, nothing or too little arrives in time, or the
/// connection breaks off.
async fn broken_connection_rows() -> Vec<Row> {
    let success_len = SUCCESS_JSON.len().to_string();
    let cl_1000 = raw::head(
        "HTTP/1.1 200 OK",
        &[
            ("Content-Type", "application/json"),
            ("Content-Length", "1000"),
        ],
    );
    let half_body = |head: &[u8]| {
        let mut bytes = head.to_vec();
        bytes.extend_from_slice(&json_of_len(1000).as_bytes()[..500]);
        bytes
    };
    vec![
        row(
            "refused",
            Upstream::Refused(raw::refused_addr().await),
            "connection_error",
        ),
        Row {
            or_outcome: Some("timeout"),
            ..row("dns", Upstream::Dns, "connection_error")
        },
        fake("stall", Reply::Stall, "timeout").await,
        fake(
            "trickle-body",
            Reply::Trickle {
                head: raw::head(
                    "HTTP/1.1 200 OK",
                    &[
                        ("Content-Type", "application/json"),
                        ("Content-Length", &success_len),
                    ],
                ),
                body: SUCCESS_JSON.as_bytes().to_vec(),
                every: Duration::from_secs(1),
            },
            "timeout",
        )
        .await,
        fake(
            "trickle-head",
            Reply::Trickle {
                head: Vec::new(),
                body: raw::json(200, SUCCESS_JSON),
                every: Duration::from_secs(1),
            },
            "timeout",
        )
        .await,
        fake(
            "truncated",
            Reply::bytes(half_body(&cl_1000)),
            "connection_error",
        )
        .await,
        fake(
            "reset-mid-body",
            Reply::ResetAfter(half_body(&cl_1000).into()),
            "connection_error",
        )
        .await,
        fake("closed-at-once", Reply::Close, "connection_error").await,
    ]
}

/// Bodies larger than the cap, announced or not, and a length that lies.
async fn oversized_rows() -> Vec<Row> {
    let filler: Arc<[u8]> = vec![b'x'; 64 * 1024].into();
    vec![
        fake(
            "oversized-8mib",
            Reply::Stream {
                head: raw::head(
                    "HTTP/1.1 200 OK",
                    &[
                        ("Content-Type", "application/json"),
                        ("Content-Length", &(8_u64 << 20).to_string()),
                    ],
                ),
                chunk: Arc::clone(&filler),
                total: 8 << 20,
            },
            "body_too_large",
        )
        .await,
        fake(
            "oversized-1gib-unframed",
            Reply::Stream {
                head: raw::head("HTTP/1.1 200 OK", &[("Content-Type", "application/json")]),
                chunk: Arc::clone(&filler),
                total: 1 << 30,
            },
            "body_too_large",
        )
        .await,
        fake(
            "lying-length",
            Reply::Stream {
                head: raw::head(
                    "HTTP/1.1 200 OK",
                    &[
                        ("Content-Type", "application/json"),
                        ("Content-Length", "10"),
                    ],
                ),
                chunk: Arc::clone(&filler),
                total: 64 << 20,
            },
            "malformed",
        )
        .await,
    ]
}

/// Bodies that are not a Last.fm payload: a gzip bomb, invalid UTF-8, empty, HTML, XML for
/// JSON, nesting too deep.
async fn unreadable_body_rows() -> Vec<Row> {
    let bomb = gzip_bomb(1024);
    let mut bomb_response = raw::head(
        "HTTP/1.1 200 OK",
        &[
            ("Content-Type", "application/json"),
            ("Content-Encoding", "gzip"),
            ("Content-Length", &bomb.len().to_string()),
        ],
    );
    bomb_response.extend_from_slice(&bomb);
    let mut invalid_utf8 = br#"{"artist":{"name":""#.to_vec();
    invalid_utf8.extend_from_slice(b"\xff\xfe\xc3\x28");
    invalid_utf8.extend_from_slice(br#""}}"#);
    vec![
        fake("gzip-bomb", Reply::bytes(bomb_response), "malformed").await,
        fake(
            "invalid-utf8",
            Reply::bytes(raw::response(200, "application/json", &invalid_utf8)),
            "malformed",
        )
        .await,
        fake(
            "empty-200",
            Reply::bytes(raw::json(200, "")),
            "malformed",
        )
        .await,
        fake(
            "html-200",
            Reply::bytes(raw::response(200, "text/html", GFE_502.as_bytes())),
            "malformed",
        )
        .await,
        fake(
            "html-502",
            Reply::bytes(raw::response(502, "text/html", GFE_502.as_bytes())),
            "http_error",
        )
        .await,
        fake(
            "xml-for-json",
            Reply::bytes(raw::response(
                200,
                "text/xml",
                b"<?xml version=\"1.0\"?><lfm status=\"ok\"><artist><name>Cher</name></artist></lfm>",
            )),
            "malformed",
        )
        .await,
        fake(
            "nested-json",
            Reply::bytes(raw::json(200, &"[".repeat(100_000))),
            "malformed",
        )
        .await,
        fake(
            "nested-objects",
            Reply::bytes(raw::json(200, &r#"{"a":"#.repeat(50_000))),
            "malformed",
        )
        .await,
    ]
}

/// Error payloads whose code is not a code: a signed string, a float, negative, five digits, too
/// large, two codes; a string of digits, which is one; and random unknown codes under random
/// statuses, counted as `other`.
async fn bad_error_code_rows() -> Vec<Row> {
    vec![
        Row {
            code: Some("8"),
            ..fake(
                "error-string-of-digits",
                Reply::bytes(raw::json(
                    200,
                    r#"{"error":"8","message":"Operation failed"}"#,
                )),
                "api_error",
            )
            .await
        },
        fake(
            "error-string-signed",
            Reply::bytes(raw::json(
                200,
                r#"{"error":"+8","message":"Operation failed"}"#,
            )),
            "malformed",
        )
        .await,
        fake(
            "error-five-digits",
            Reply::bytes(raw::json(200, r#"{"error":12345,"message":"x"}"#)),
            "malformed",
        )
        .await,
        fake(
            "error-twice",
            Reply::bytes(raw::json(200, r#"{"error":11,"error":29,"message":"x"}"#)),
            "malformed",
        )
        .await,
        fake(
            "error-float",
            Reply::bytes(raw::json(
                200,
                r#"{"error":8.5,"message":"Operation failed"}"#,
            )),
            "malformed",
        )
        .await,
        fake(
            "error-negative",
            Reply::bytes(raw::json(200, r#"{"error":-1,"message":"x"}"#)),
            "malformed",
        )
        .await,
        fake(
            "error-huge",
            Reply::bytes(raw::json(200, r#"{"error":4294967296,"message":"x"}"#)),
            "malformed",
        )
        .await,
        random_unknown_code_row().await,
    ]
}

/// Random unknown codes under random statuses, each counted as `other`.
async fn random_unknown_code_row() -> Row {
    Row {
        code: Some("other"),
        ..row(
            "error-random",
            Upstream::Raw(
                RawServer::start(|_| {
                    // Any code the table lacks (an error code has at most four digits).
                    let code = rand::random_range(30..=9999_u32);
                    // 204, 205 and 304 carry no body by definition: the client drops it.
                    let status = loop {
                        let status = rand::random_range(200..=599_u16);
                        if !matches!(status, 204 | 205 | 304) {
                            break status;
                        }
                    };
                    Reply::bytes(raw::json(
                        status,
                        &format!(r#"{{"error":{code},"message":"random"}}"#),
                    ))
                })
                .await,
            ),
            "api_error",
        )
    }
}

/// Errors that move the politeness gate (every known code in turn, 429 with `Retry-After`, 26):
/// the next run still happens.
async fn politeness_rows() -> Vec<Row> {
    let code_turn = Arc::new(AtomicUsize::new(0));
    vec![
        Row {
            // Every known code in turn, 29, 26 and 10 included: the politeness gate reacts
            // (1 s backoff and suspended interval here) and the next run still happens.
            ..row(
                "every-code",
                Upstream::Raw(
                    RawServer::start(move |_| {
                        let turn = code_turn.fetch_add(1, Ordering::Relaxed);
                        let code = classify::KNOWN_CODES[turn % classify::KNOWN_CODES.len()];
                        Reply::bytes(raw::json(
                            200,
                            &format!(r#"{{"error":{code},"message":"code {code}"}}"#),
                        ))
                    })
                    .await,
                ),
                "api_error",
            )
        },
        Row {
            code: Some("29"),
            ..row(
                "rate-limited-429",
                Upstream::Raw(
                    RawServer::always(Reply::bytes({
                        let body = r#"{"error":29,"message":"Rate Limit Exceeded"}"#;
                        let mut bytes = raw::head(
                            "HTTP/1.1 429 Too Many Requests",
                            &[
                                ("Content-Type", "application/json"),
                                ("Retry-After", "1"),
                                ("Content-Length", &body.len().to_string()),
                            ],
                        );
                        bytes.extend_from_slice(body.as_bytes());
                        bytes
                    }))
                    .await,
                ),
                "api_error",
            )
        },
        Row {
            code: Some("26"),
            ..fake(
                "suspended-26",
                Reply::bytes(raw::json(
                    403,
                    r#"{"error":26,"message":"Suspended API key"}"#,
                )),
                "api_error",
            )
            .await
        },
    ]
}

/// Upstreams that echo the secrets back, or redirect with them to `trap_addr`.
async fn secret_echo_rows(trap_addr: std::net::SocketAddr) -> Vec<Row> {
    vec![
        Row {
            // The key, sk and api_sig echoed back in the message and a header: they must be
            // scrubbed wherever the run is shown.
            code: Some("8"),
            ..row(
                "echo-secrets",
                Upstream::Raw(
                    RawServer::start(|request| {
                        let echo = echo_of(request);
                        let body =
                            format!(r#"{{"error":8,"message":"Operation failed for {echo}"}}"#);
                        let mut bytes = raw::head(
                            "HTTP/1.1 200 OK",
                            &[
                                ("Content-Type", "application/json"),
                                ("X-Echo", &echo),
                                ("Content-Length", &body.len().to_string()),
                            ],
                        );
                        bytes.extend_from_slice(body.as_bytes());
                        Reply::bytes(bytes)
                    })
                    .await,
                ),
                "api_error",
            )
        },
        row(
            "redirect-with-key",
            Upstream::Raw(
                RawServer::start(move |request| {
                    let key = request.param("api_key").unwrap_or_default();
                    let sk = request.param("sk").unwrap_or_default();
                    let location = format!("http://{trap_addr}/2.0/?api_key={key}&sk={sk}");
                    Reply::bytes(raw::head(
                        "HTTP/1.1 302 Found",
                        &[("Location", &location), ("Content-Length", "0")],
                    ))
                })
                .await,
            ),
            "http_error",
        ),
    ]
}

/// Odd or broken status lines and framing: statuses 599, 204, 999, 000 and garbage, not HTTP at
/// all, bad chunking, a header flood.
async fn broken_framing_rows() -> Vec<Row> {
    let success_len = SUCCESS_JSON.len().to_string();
    let header_flood = {
        let headers: Vec<(String, String)> = (0..200)
            .map(|i| (format!("X-Flood-{i}"), "v".to_owned()))
            .collect();
        let refs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let mut bytes = raw::head("HTTP/1.1 200 OK", &refs);
        bytes.extend_from_slice(SUCCESS_JSON.as_bytes());
        bytes
    };
    let mut rows = vec![
        fake(
            "status-599",
            Reply::bytes(raw::response(599, "text/html", GFE_502.as_bytes())),
            "http_error",
        )
        .await,
        fake(
            // A 204 has no body by definition: what follows it is not read as one.
            "status-204-with-body",
            Reply::bytes(raw::json(204, r#"{"error":8,"message":"x"}"#)),
            "malformed",
        )
        .await,
        fake("status-999", Reply::bytes(raw::json(999, "")), "http_error").await,
        fake(
            "status-000",
            Reply::bytes(
                [
                    raw::head("HTTP/1.1 000 Garbage", &[("Content-Length", &success_len)]),
                    SUCCESS_JSON.as_bytes().to_vec(),
                ]
                .concat(),
            ),
            "connection_error",
        )
        .await,
        fake(
            "status-garbage",
            Reply::bytes(
                [
                    raw::head("HTTP/1.1 2x0 0K", &[("Content-Length", &success_len)]),
                    SUCCESS_JSON.as_bytes().to_vec(),
                ]
                .concat(),
            ),
            "connection_error",
        )
        .await,
        fake(
            "not-http",
            Reply::bytes(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n\x00\x00\x01\x14garbage".to_vec()),
            "connection_error",
        )
        .await,
        fake(
            "bad-chunked",
            Reply::bytes(
                [
                    raw::head("HTTP/1.1 200 OK", &[("Transfer-Encoding", "chunked")]),
                    b"zz\r\nnot a chunk\r\n0\r\n\r\n".to_vec(),
                ]
                .concat(),
            ),
            "connection_error",
        )
        .await,
        fake(
            "header-flood",
            Reply::bytes(header_flood),
            "connection_error",
        )
        .await,
    ];
    rows.extend(unparsable_head_rows().await);
    rows
}

/// Response heads hyper refuses to parse: the peer answered, wrongly (`protocol_error`, never a
/// reset). The header and the status line are just over hyper's 400 KiB head limit: the 4 MiB
/// and 1 MiB ones are in tests/failures.rs, outside the RSS bar.
async fn unparsable_head_rows() -> Vec<Row> {
    let body = SUCCESS_JSON.as_bytes();
    let length = body.len().to_string();
    let with_body = |head: Vec<u8>| Reply::bytes([head, body.to_vec()].concat());
    vec![
        fake(
            "header-512kib",
            with_body(raw::head(
                "HTTP/1.1 200 OK",
                &[
                    ("X-Big", &"a".repeat(512 << 10)),
                    ("Content-Length", &length),
                ],
            )),
            "connection_error",
        )
        .await,
        fake(
            "content-length-twice",
            with_body(raw::head(
                "HTTP/1.1 200 OK",
                &[("Content-Length", &length), ("Content-Length", "3")],
            )),
            "connection_error",
        )
        .await,
        fake(
            "nul-in-header",
            with_body(raw::head(
                "HTTP/1.1 200 OK",
                &[("X-Bad", "a\0b"), ("Content-Length", &length)],
            )),
            "connection_error",
        )
        .await,
        fake("http-0_9", Reply::bytes(body.to_vec()), "connection_error").await,
        fake(
            "status-line-512kib",
            with_body(raw::head(
                &format!("HTTP/1.1 200 {}", "O".repeat(512 << 10)),
                &[("Content-Length", &length)],
            )),
            "connection_error",
        )
        .await,
    ]
}

/// The body cap's boundary (exactly at it, one byte over) and an XML entity bomb.
async fn boundary_rows() -> Vec<Row> {
    let entity_bomb = {
        let mut doc =
            String::from("<?xml version=\"1.0\"?>\n<!DOCTYPE lfm [\n<!ENTITY e0 \"lol\">\n");
        for i in 1..10 {
            let refs = format!("&e{};", i - 1).repeat(10);
            doc.push_str(&format!("<!ENTITY e{i} \"{refs}\">\n"));
        }
        doc.push_str("]>\n<lfm status=\"ok\"><artist><name>&e9;</name></artist></lfm>");
        doc
    };
    vec![
        Row {
            probe_extra: format!("max_body_bytes = {SMALL_CAP}"),
            ..fake(
                "limit-exact",
                Reply::bytes(raw::json(200, &json_of_len(SMALL_CAP))),
                "success",
            )
            .await
        },
        Row {
            probe_extra: format!("max_body_bytes = {SMALL_CAP}"),
            ..fake(
                "limit-plus-one",
                Reply::bytes(raw::json(200, &json_of_len(SMALL_CAP + 1))),
                "body_too_large",
            )
            .await
        },
        Row {
            // Entities are never expanded: the document is read as the `<lfm status="ok">` it is.
            probe_extra: "format = \"xml\"".to_owned(),
            ..fake(
                "xml-entity-bomb",
                Reply::bytes(raw::response(200, "text/xml", entity_bomb.as_bytes())),
                "success",
            )
            .await
        },
    ]
}

fn config_text(rows: &[Row]) -> String {
    let mut text = format!(
        "[defaults]\nstartup_jitter = \"0s\"\ninterval = \"3s\"\ntimeout = \"{}ms\"\n",
        TIMEOUT.as_millis()
    );
    for row in rows {
        text.push_str(&format!(
            r#"
[[targets]]
name = "{name}"
base_url = "{url}"
api_key = "{CANARY_KEY}"
api_secret = "{CANARY_SECRET}"
session_key = "{CANARY_SK}"
max_requests_per_second = 10.0
burst = 5
suspended_interval = "1s"
backoff_initial = "1s"
backoff_max = "1s"

[[targets.probes]]
method = "artist.getInfo"
params = {{ artist = "Cher" }}
signed = true
{extra}
"#,
            name = row.name,
            url = row.base_url(),
            extra = row.probe_extra,
        ));
    }
    text
}

/// Every form a secret of the matrix could leak in: raw, URL-encoded, and the `api_sig`s.
fn canaries(config: &Config) -> Vec<String> {
    let mut out = vec![
        CANARY_KEY.to_owned(),
        CANARY_SECRET.to_owned(),
        CANARY_SK.to_owned(),
    ];
    for secret in [CANARY_KEY, CANARY_SECRET, CANARY_SK] {
        out.push(url::form_urlencoded::byte_serialize(secret.as_bytes()).collect());
    }
    for target in &config.targets {
        for probe in &target.probes {
            if let Some((_, sig)) = request_params(target, probe)
                .into_iter()
                .find(|(name, _)| name == "api_sig")
            {
                out.push(sig);
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[track_caller]
fn assert_no_canary(what: &str, text: &str, canaries: &[String]) {
    for canary in canaries {
        assert!(
            !text.contains(canary.as_str()),
            "{what} leaks a secret ({} chars)",
            canary.len()
        );
    }
}

fn runs_of(text: &str, target: &str) -> f64 {
    Outcome::ALL
        .iter()
        .filter_map(|o| {
            metric(
                text,
                "lastfm_probe_runs_total",
                &[("target", target), ("outcome", o.as_label())],
            )
        })
        .sum()
}

/// Re-runs this binary on [`fault_matrix_in_this_process`] alone, so its RSS is its own.
#[test]
fn fault_matrix() {
    let exe = std::env::current_exe().expect("the test binary's path");
    let finished = run_with_limit(
        Command::new(exe)
            .args([
                "faults::fault_matrix_in_this_process",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("RUST_BACKTRACE", "0"),
        CHILD_LIMIT,
    );
    let output = format!("{}{}", finished.stdout, finished.stderr);
    println!("{output}");
    match finished.status {
        None => panic!("the fault matrix did not finish within {CHILD_LIMIT:?}:\n{output}"),
        Some(status) => assert!(status.success(), "the fault matrix failed:\n{output}"),
    }
    assert!(
        output.contains("1 passed"),
        "the fault matrix did not run:\n{output}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs in a process of its own, started by faults::fault_matrix"]
async fn fault_matrix_in_this_process() {
    let log = trace_everything_to_a_file();
    let prober: Arc<HttpProber> = Arc::new(HttpProber::try_new().expect("the HTTP client"));
    let trap = RawServer::always(Reply::bytes(raw::json(200, SUCCESS_JSON))).await;
    let rows = matrix(&trap).await;
    let text = config_text(&rows);
    let config = Config::parse(
        &text,
        "faults.toml",
        &TestEnv::default(),
        chrono::Utc::now(),
    )
    .unwrap_or_else(|err| panic!("the matrix config is valid: {err}"));
    let canaries = canaries(&config);
    let rss_before = proc_status_bytes("VmRSS");
    let hwm_before = proc_status_bytes("VmHWM");

    // Phase 1: each fault once, straight through the prober, timed from outside.
    assert_direct_attempts(&prober, &config, &rows).await;
    let hwm_direct = proc_status_bytes("VmHWM");

    // Phase 2: the daemon probes every fault on its schedule until each has run twice.
    let daemon = Daemon::start_config(&text, Some(prober.clone() as Arc<dyn Prober>)).await;
    let scrape = daemon
        .wait_for(Duration::from_secs(20), |text| {
            rows.iter().all(|row| runs_of(text, row.name) >= 2.0)
        })
        .await;
    let failures: Vec<String> = rows
        .iter()
        .flat_map(|row| scheduled_failures(row, &scrape))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // What the operator sees: no secret in the exposition, the status page, any trace.
    let traces = assert_no_secret_shown(&daemon, &scrape, &canaries).await;
    daemon.stop().await;

    assert_no_redirect_followed_nor_compression_asked(&trap, &rows);
    assert_memory_bounded(rss_before, hwm_before, hwm_direct);
    assert_the_trace_log_is_clean(log.path(), &canaries, traces);
}

/// Everything at TRACE, dependencies included, to a file: no secret may appear.
fn trace_everything_to_a_file() -> tempfile::NamedTempFile {
    let log = tempfile::NamedTempFile::new().expect("a temp file");
    let writer = std::sync::Mutex::new(log.reopen().expect("reopen the log"));
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
        .with_writer(writer)
        .with_ansi(false)
        .init();
    log
}

/// Probes every target of `config` once, concurrently, straight through `prober`: its name,
/// its classification and how long the attempt took, timed from outside.
fn attempt_each_fault(
    prober: &Arc<HttpProber>,
    config: &Config,
) -> tokio::task::JoinSet<(String, classify::Classification, Duration)> {
    let mut attempts = tokio::task::JoinSet::new();
    for target in &config.targets {
        let target = Arc::clone(target);
        let prober = Arc::clone(prober);
        attempts.spawn(async move {
            let probe = &target.probes[0];
            let started = Instant::now();
            let recorded = prober.probe(&target, probe).await;
            let elapsed = started.elapsed();
            let verdict = classify::classify(
                &recorded.outcome,
                &ProbeSpec {
                    format: probe.format,
                    signed: probe.signed,
                    expect: probe.expect,
                    checks: &probe.checks,
                    codes: &classify::CodeTable::lastfm().with_statuses(&target.statuses),
                    host: "127.0.0.1",
                },
            );
            (target.name.clone(), verdict, elapsed)
        });
    }
    attempts
}

/// Phase 1: every fault, attempted once, gets its row's outcome (and code) within the
/// deadline + 1 s. Prints the table of attempts.
async fn assert_direct_attempts(prober: &Arc<HttpProber>, config: &Config, rows: &[Row]) {
    let mut attempts = attempt_each_fault(prober, config);
    let mut failures = Vec::new();
    let mut table = Vec::new();
    while let Some(joined) = attempts.join_next().await {
        let (name, verdict, elapsed) = joined.expect("no attempt panics");
        let row = rows
            .iter()
            .find(|r| r.name == name)
            .expect("a row per target");
        let outcome = verdict.outcome.as_label();
        let code = verdict.error_code.map(classify::code_label);
        table.push(format!(
            "{name:<24} {outcome:<17} code={:<6} {:>6} ms",
            code.unwrap_or("-"),
            elapsed.as_millis()
        ));
        if !row.accepts(outcome) {
            failures.push(format!(
                "{name}: outcome {outcome}, expected {} ({:?})",
                row.outcome, verdict.detail
            ));
        }
        if row.code.is_some() && code != row.code {
            failures.push(format!("{name}: code {code:?}, expected {:?}", row.code));
        }
        if let Some((phase, reason, status)) = broke(&name) {
            let got = verdict.failure.map(|f| (f.phase, f.reason));
            if got != Some((phase, reason)) || verdict.http_status != status {
                failures.push(format!(
                    "{name}: broke at {got:?} after status {:?}, expected {:?} after {status:?}",
                    verdict.http_status,
                    (phase, reason)
                ));
            }
        }
        if elapsed > TIMEOUT + Duration::from_secs(1) {
            failures.push(format!("{name}: took {elapsed:?}, over the deadline + 1 s"));
        }
    }
    table.sort();
    println!("fault matrix, direct attempts:\n{}", table.join("\n"));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Phase 2 for one row, from the daemon's `scrape`: the next run happened (two runs or more),
/// every run got the row's outcome and code, and every run finished within the deadline + 1 s.
fn scheduled_failures(row: &Row, scrape: &str) -> Vec<String> {
    let runs = runs_of(scrape, row.name);
    if runs < 2.0 {
        return vec![format!(
            "{}: {runs} run(s); the next run did not happen",
            row.name
        )];
    }
    let mut failures: Vec<String> = outcome_failure(row, scrape, runs).into_iter().collect();
    if let Some(code) = row.code {
        let n = metric(
            scrape,
            "lastfm_api_errors_total",
            &[("target", row.name), ("code", code)],
        )
        .unwrap_or(0.0);
        if n < runs {
            failures.push(format!(
                "{}: code {code} counted {n} of {runs} runs",
                row.name
            ));
        }
    }
    let count = metric(
        scrape,
        "lastfm_probe_duration_seconds_count",
        &[("target", row.name)],
    );
    let within = metric(
        scrape,
        "lastfm_probe_duration_seconds_bucket",
        &[("target", row.name), ("le", DEADLINE_BUCKET)],
    );
    if count.is_none() || count != within {
        failures.push(format!(
            "{}: {within:?} of {count:?} runs within the deadline + 1 s",
            row.name
        ));
    }
    failures
}

/// Unless all `runs` of the row got its outcome (or its alternative): what they got instead.
fn outcome_failure(row: &Row, scrape: &str, runs: f64) -> Option<String> {
    let expected: f64 = [Some(row.outcome), row.or_outcome]
        .into_iter()
        .flatten()
        .filter_map(|o| {
            metric(
                scrape,
                "lastfm_probe_runs_total",
                &[("target", row.name), ("outcome", o)],
            )
        })
        .sum();
    if expected == runs {
        return None;
    }
    let got: Vec<String> = Outcome::ALL
        .iter()
        .filter_map(|o| {
            let n = metric(
                scrape,
                "lastfm_probe_runs_total",
                &[("target", row.name), ("outcome", o.as_label())],
            )?;
            (n > 0.0).then(|| format!("{}={n}", o.as_label()))
        })
        .collect();
    Some(format!(
        "{}: runs {}, expected all {}",
        row.name,
        got.join(" "),
        row.outcome
    ))
}

/// No secret in `/metrics`, the status page, any run trace it links (there are some) or the
/// echo row's `/probe` debug trace, which shows the scrubbed message. Returns how many run
/// traces were searched.
async fn assert_no_secret_shown(daemon: &Daemon, scrape: &str, canaries: &[String]) -> usize {
    let (_, page) = daemon.get("/").await;
    assert_no_canary("/metrics", scrape, canaries);
    assert_no_canary("the status page", &page, canaries);
    let mut traces = 0;
    for id in page
        .split("href=\"/runs/")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
    {
        let (status, trace) = daemon.get(&format!("/runs/{id}")).await;
        // The probes keep running: a run the page linked can leave the recent-runs rings
        // before its link is followed, and then it is gone, not shown.
        if status == 404 && trace.contains("only recent runs are kept") {
            continue;
        }
        assert_eq!(status, 200, "/runs/{id}");
        assert_no_canary(&format!("/runs/{id}"), &trace, canaries);
        traces += 1;
    }
    assert!(traces > 0, "the status page links traces");
    let (_, debug) = daemon
        .get("/probe?target=echo-secrets&probe=artist.getInfo&debug=true")
        .await;
    assert!(debug.contains("Operation failed for <secret>"), "{debug}");
    assert_no_canary("a /probe debug trace", &debug, canaries);
    traces
}

/// Redirects are not followed, and nothing asked for compression.
fn assert_no_redirect_followed_nor_compression_asked(trap: &RawServer, rows: &[Row]) {
    assert_eq!(trap.connections(), 0, "a redirect was followed");
    for row in rows {
        if let Upstream::Raw(server) = &row.upstream {
            for request in server.requests() {
                assert_eq!(
                    request.header("accept-encoding"),
                    None,
                    "{}: the request asked for compression",
                    row.name
                );
            }
        }
    }
}

/// The peak RSS grew less than [`MAX_RSS_GROWTH`] over the matrix.
fn assert_memory_bounded(rss_before: u64, hwm_before: u64, hwm_direct: u64) {
    let rss_after = proc_status_bytes("VmRSS");
    let hwm_after = proc_status_bytes("VmHWM");
    let growth = hwm_after.saturating_sub(rss_before);
    println!(
        "memory: VmRSS before {:.1} MiB (VmHWM {:.1}); VmHWM after the direct attempts {:.1} MiB; after the daemon VmRSS {:.1} MiB, VmHWM {:.1} MiB; peak growth {:.1} MiB",
        mib(rss_before),
        mib(hwm_before),
        mib(hwm_direct),
        mib(rss_after),
        mib(hwm_after),
        mib(growth)
    );
    assert!(
        growth < MAX_RSS_GROWTH,
        "peak RSS grew {:.1} MiB over the matrix (bar: < {:.0} MiB)",
        mib(growth),
        mib(MAX_RSS_GROWTH)
    );
}

/// The TRACE log was captured, and holds no secret.
fn assert_the_trace_log_is_clean(log: &std::path::Path, canaries: &[String], traces: usize) {
    let logged = std::fs::read_to_string(log).expect("the log file");
    assert!(logged.lines().count() > 100, "trace logging was captured");
    assert_no_canary("the TRACE log", &logged, canaries);
    println!(
        "secrets: {} canaries absent from {} log lines, /metrics, the status page and {traces} traces",
        canaries.len(),
        logged.lines().count()
    );
}

#[test]
fn the_gzip_bomb_is_real() {
    use std::io::Read as _;
    let bomb = gzip_bomb(4);
    let mut inflated = Vec::new();
    flate2::read::MultiGzDecoder::new(bomb.as_slice())
        .read_to_end(&mut inflated)
        .expect("a valid gzip stream");
    assert_eq!(inflated.len(), 4 << 20);
    assert!(
        inflated.len() / bomb.len() > 500,
        "ratio {}",
        inflated.len() / bomb.len()
    );
}

fn spec_codes() -> &'static classify::CodeTable {
    static TABLE: std::sync::OnceLock<classify::CodeTable> = std::sync::OnceLock::new();
    TABLE.get_or_init(classify::CodeTable::lastfm)
}

/// Bodies worth more than random bytes: real payload shapes, cut, nested and mangled.
fn body_strategy() -> impl Strategy<Value = Vec<u8>> {
    let shapes = prop_oneof![
        Just(SUCCESS_JSON.to_owned()),
        Just(r#"{"error":29,"message":"Rate Limit Exceeded"}"#.to_owned()),
        Just("<lfm status=\"failed\"><error code=\"26\">Suspended</error></lfm>".to_owned()),
        Just("<?xml version=\"1.0\"?><lfm status=\"ok\"><a/></lfm>".to_owned()),
        Just(GFE_502.to_owned()),
        any::<i64>().prop_map(|n| format!(r#"{{"error":{n},"message":"m"}}"#)),
        any::<f64>().prop_map(|n| format!(r#"{{"error":{n}}}"#)),
        "[\\[{\"]{0,300}",
        "\\PC{0,200}",
        "<lfm status=\"(ok|failed|x)\">(<error code=\"[0-9a-z-]{0,12}\">[^<]{0,20}</error>)?(</lfm>)?",
        (1..400_usize).prop_map(|n| "[".repeat(n) + &"]".repeat(n)),
    ];
    prop_oneof![
        3 => shapes.prop_flat_map(|s| {
            let len = s.len();
            (Just(s), 0..=len).prop_map(|(s, cut)| s.into_bytes()[..cut].to_vec())
        }),
        1 => proptest::collection::vec(any::<u8>(), 0..512),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        // Bounded for CI; raise with PROPTEST_CASES for a longer local run.
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// The classifier is total over arbitrary facts: every run yields one outcome (README.md,
    /// Classification).
    #[test]
    fn classifier_never_panics(
        status in prop_oneof![any::<u16>(), 100..600_u16],
        content_type in proptest::option::of("\\PC{0,40}"),
        retry_after in proptest::option::of("\\PC{0,40}|[0-9]{1,25}"),
        headers in proptest::collection::vec(("[a-z-]{1,20}", "\\PC{0,40}"), 0..8),
        body in body_strategy(),
        xml in any::<bool>(),
        signed in any::<bool>(),
        expect_error in proptest::option::of(0..100_u32),
        pointer in "/[a-z@:/]{0,20}",
    ) {
        let checks = [lastfm_monitor::config::Check { pointer, rule: lastfm_monitor::config::CheckRule::GreaterThan(0.0) }];
        let spec = ProbeSpec {
            format: if xml { lastfm_monitor::config::Format::Xml } else { lastfm_monitor::config::Format::Json },
            signed,
            expect: expect_error.map_or(lastfm_monitor::config::Expectation::Success, lastfm_monitor::config::Expectation::Error),
            checks: &checks,
            codes: spec_codes(),
            host: "127.0.0.1",
        };
        let outcome = ProbeOutcome {
            elapsed: Duration::from_millis(5),
            timings: Default::default(),
            tls: None,
            http_status: Some(status),
            result: Ok(Response { status, content_type, retry_after, headers, body }),
        };
        let verdict = classify::classify(&outcome, &spec);
        // Every label it produces is from the closed sets.
        prop_assert!(Outcome::ALL.contains(&verdict.outcome));
        prop_assert!(classify::STATUS_LABELS.contains(&classify::status_label(status)));
        if let Some(code) = verdict.error_code {
            prop_assert!(classify::CODE_LABELS.contains(&classify::code_label(code)));
        }
    }
}

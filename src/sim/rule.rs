//! One rule of a scenario phase: which requests it matches and what it sends instead of the
//! simulated API's own answer. The TOML shape is checked kind by kind, so a field that does not fit
//! its `respond` is an error with the rule's line (the format is documented in `scenario.rs`).

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// "Answer requests for `method` (or every method) like this."
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RuleFile")]
pub(crate) struct Rule {
    pub(crate) method: Option<String>,
    pub(crate) respond: Respond,
    pub(crate) status: Option<u16>,
    pub(crate) delay: Duration,
    /// Seconds for a `Retry-After` header; the real API never sends one (docs/LASTFM-API.md §3), but
    /// the monitor must honour it when it does, so tests need a way to send it.
    pub(crate) retry_after: Option<u64>,
}

/// What a matched rule sends; the kind-specific fields live in their variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Respond {
    Success,
    Error {
        code: u32,
        message: Option<String>,
    },
    Html,
    Empty,
    Truncated,
    Reset,
    Stall,
    Trickle,
    Raw {
        body: String,
        content_type: Option<String>,
    },
    Oversized {
        bytes: u64,
    },
    /// The personality's own rate-limit answer: Last.fm's error 29, ListenBrainz's 429 JSON whose
    /// `X-RateLimit-Reset-In` is `reset_in` seconds. Libre.fm never limits (refused at load).
    RateLimited {
        reset_in: u64,
    },
}

/// `X-RateLimit-Reset-In` of a `rate_limited` rule without `reset_in`: one ListenBrainz window.
const DEFAULT_RESET_IN: u64 = 10;

impl Respond {
    /// The `respond` value, for logs.
    pub(crate) fn as_label(&self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Error { .. } => "error",
            Self::Html => "html",
            Self::Empty => "empty",
            Self::Truncated => "truncated",
            Self::Reset => "reset",
            Self::Stall => "stall",
            Self::Trickle => "trickle",
            Self::Raw { .. } => "raw",
            Self::Oversized { .. } => "oversized",
            Self::RateLimited { .. } => "rate_limited",
        }
    }
}

/// The raw TOML shape of a rule: every field of every kind, checked by `TryFrom` so that
/// a field that does not fit its `respond` is an error with the rule's line.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    method: Option<String>,
    respond: RespondKind,
    status: Option<u16>,
    #[serde(default, deserialize_with = "duration_opt")]
    delay: Option<Duration>,
    retry_after: Option<u64>,
    code: Option<u32>,
    message: Option<String>,
    body: Option<String>,
    content_type: Option<String>,
    bytes: Option<u64>,
    reset_in: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum RespondKind {
    Success,
    Error,
    Html,
    Empty,
    Truncated,
    Reset,
    Stall,
    Trickle,
    Raw,
    Oversized,
    #[serde(rename = "rate_limited")]
    RateLimited,
}

impl TryFrom<RuleFile> for Rule {
    type Error = String;

    fn try_from(raw: RuleFile) -> Result<Self, String> {
        let respond = match raw.respond {
            RespondKind::Success => Respond::Success,
            RespondKind::Error => Respond::Error {
                code: raw.code.ok_or("respond = \"error\" needs `code`")?,
                message: raw.message.clone(),
            },
            RespondKind::Html => Respond::Html,
            RespondKind::Empty => Respond::Empty,
            RespondKind::Truncated => Respond::Truncated,
            RespondKind::Reset => Respond::Reset,
            RespondKind::Stall => Respond::Stall,
            RespondKind::Trickle => Respond::Trickle,
            RespondKind::Raw => Respond::Raw {
                body: raw.body.clone().ok_or("respond = \"raw\" needs `body`")?,
                content_type: raw.content_type.clone(),
            },
            RespondKind::Oversized => Respond::Oversized {
                bytes: raw.bytes.ok_or("respond = \"oversized\" needs `bytes`")?,
            },
            RespondKind::RateLimited => Respond::RateLimited {
                reset_in: raw.reset_in.unwrap_or(DEFAULT_RESET_IN),
            },
        };
        let kind = respond.as_label();
        let misplaced = [
            ("code", raw.code.is_some(), kind == "error"),
            ("message", raw.message.is_some(), kind == "error"),
            ("body", raw.body.is_some(), kind == "raw"),
            ("content_type", raw.content_type.is_some(), kind == "raw"),
            ("bytes", raw.bytes.is_some(), kind == "oversized"),
            ("reset_in", raw.reset_in.is_some(), kind == "rate_limited"),
        ];
        if let Some((field, ..)) = misplaced.iter().find(|(_, set, fits)| *set && !fits) {
            return Err(format!("`{field}` does not apply to respond = \"{kind}\""));
        }
        if let Some(status) = raw.status.filter(|s| !(100..=599).contains(s)) {
            return Err(format!("status {status} is not an HTTP status (100-599)"));
        }
        Ok(Self {
            method: raw.method,
            respond,
            status: raw.status,
            delay: raw.delay.unwrap_or_default(),
            retry_after: raw.retry_after,
        })
    }
}

/// A humantime duration (`"20s"`, `"1m"`), for the optional duration keys of the format.
pub(super) fn duration_opt<'de, D: Deserializer<'de>>(de: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(de)?;
    humantime::parse_duration(&text)
        .map(Some)
        .map_err(|e| serde::de::Error::custom(format!("invalid duration {text:?}: {e}")))
}

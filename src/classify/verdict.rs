//! The vocabulary of a verdict: the closed sets a run is judged in (outcome, blame, mismatch,
//! condition) and the [`Classification`] that carries them.
//!
//! Every label the classifier produces comes from one of these closed sets through `as_label`,
//! never from upstream text, so no response can grow the metric set. The other classify modules
//! and every later stage import these types from here; this module imports none of them.

use crate::config::closed_set::closed_set;
use crate::probe::TransportFailure;

closed_set! {
    /// The closed set of run outcomes (README.md, Classification).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub enum Outcome {
        /// A well-formed success payload that passed the probe's checks.
        Success => "success",
        /// A well-formed Last.fm error payload, whatever the HTTP status.
        ApiError => "api_error",
        /// A non-2xx status without a Last.fm payload (an edge proxy's page).
        HttpError => "http_error",
        /// A body that is neither a success nor an error payload.
        Malformed => "malformed",
        /// A success payload that failed the probe's content checks.
        CheckFailed => "check_failed",
        /// The deadline passed.
        Timeout => "timeout",
        /// No response, or a response that broke off.
        ConnectionError => "connection_error",
        /// The body exceeded `max_body_bytes`.
        BodyTooLarge => "body_too_large",
    }
}

closed_set! {
    /// Whose fault a failed run is.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Blame {
        /// Last.fm (or what fronts it) is failing: moves availability.
        Upstream => "upstream",
        /// Our request, key, session or rate: raises conditions, never availability.
        Client => "client",
        /// The monitor's own network: the run could not reach Last.fm while every reference
        /// failed too. Raises `local_network_down`, never moves availability: from here,
        /// Last.fm's state is unknown.
        Local => "local",
    }
}

closed_set! {
    /// The three ways status and payload disagree.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum MismatchKind {
        /// An error payload with a 2xx status: the API's best-known quirk.
        ErrorWithSuccessStatus => "error_with_success_status",
        /// A success payload with a non-2xx status.
        SuccessWithErrorStatus => "success_with_error_status",
        /// An error payload whose non-2xx status is not the documented one for its code.
        StatusDisagreesWithCode => "status_disagrees_with_code",
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

closed_set! {
    /// Per-target states a run can raise (README.md, Classification: conditions).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub enum Condition {
        /// Error 11 or 2 seen, until a success.
        ServiceOffline => "service_offline",
        /// Error 26: the key is suspended; page a human.
        ApiKeySuspended => "api_key_suspended",
        /// Error 10: the key is not valid.
        ApiKeyInvalid => "api_key_invalid",
        /// Error 9 or 4 on a signed probe.
        SessionInvalid => "session_invalid",
        /// In backoff after error 29 or HTTP 429.
        RateLimited => "rate_limited",
        /// A run could not reach Last.fm while every reference failed too: our network is down.
        LocalNetworkDown => "local_network_down",
        /// A run could not resolve or connect because this host ran out of descriptors, memory
        /// or ephemeral ports; cleared by the next run that gets past `connect`.
        LocalResourcesExhausted => "local_resources_exhausted",
        /// A write-path canary's last run was ignored with code 1 or 2 (artist or track
        /// filtered); cleared by that canary's next `visible` run.
        ScrobblesIgnored => "scrobbles_ignored",
        /// A write-path canary's last run was accepted but never seen in `visible_within`;
        /// cleared by that canary's next `visible` run.
        ScrobblesNotVisible => "scrobbles_not_visible",
    }
}

impl Condition {
    /// Whether only a write-path canary's result raises and clears it: a healthy read says
    /// nothing about whether plays get through.
    pub fn is_write_path(self) -> bool {
        matches!(self, Self::ScrobblesIgnored | Self::ScrobblesNotVisible)
    }
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

/// Parses `Retry-After` (RFC 9110 §10.2.3): delay-seconds or an HTTP date. delay-seconds is
/// `1*DIGIT` with no upper bound, so a number too large for a `u64` is a wait longer than any
/// cap (`u64::MAX`, clamped to `backoff_max` by the gate), not an unreadable header; anything
/// else that is neither form (a sign, a fraction, words) is treated as absent.
pub fn parse_retry_after(raw: &str) -> Option<RetryAfter> {
    let raw = raw.trim();
    if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) {
        return Some(RetryAfter::Seconds(raw.parse::<u64>().unwrap_or(u64::MAX)));
    }
    chrono::DateTime::parse_from_rfc2822(raw)
        .ok()
        .map(|date| RetryAfter::At(date.timestamp()))
}

impl Classification {
    /// A verdict of `outcome` and nothing else yet: no status, code, detail, failure, mismatch
    /// or blame, the expectation not met, the API not healthy, no condition raised. The
    /// classifier starts every verdict from it, and so do tests, with `..Classification::new(…)`.
    pub fn new(outcome: Outcome) -> Self {
        Self {
            outcome,
            http_status: None,
            error_code: None,
            detail: None,
            failure: None,
            mismatch: None,
            blame: None,
            met_expectation: false,
            api_healthy: false,
            raises: Vec::new(),
            retry_after: None,
        }
    }

    /// A success that met its expectation, with `status`.
    pub fn success(status: u16) -> Self {
        Self {
            http_status: Some(status),
            met_expectation: true,
            api_healthy: true,
            ..Self::new(Outcome::Success)
        }
    }

    /// Raises `condition` unless it is raised already.
    pub fn raise(&mut self, condition: Condition) {
        if !self.raises.contains(&condition) {
            self.raises.push(condition);
        }
    }
}

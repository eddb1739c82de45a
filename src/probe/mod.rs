//! One probe run as recorded facts, and the seam through which runs are made.
//!
//! A run never fails with `Err`: whatever happens on the wire (a timeout, a refused connection, a
//! body over the cap) is a [`ProbeOutcome`], data for the pure classifier. The [`Prober`] trait is
//! the seam between scheduling and I/O: the daemon uses [`http::HttpProber`], tests can use a fake.

pub mod http;
pub mod sign;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// The response format a probe asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `format=json` is sent.
    Json,
    /// No `format` parameter: the API's default XML.
    Xml,
}

impl Format {
    /// Label and config text.
    pub fn as_label(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Xml => "xml",
        }
    }
}

/// How the request is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    /// Parameters in an `application/x-www-form-urlencoded` body: secrets stay out of URLs.
    Post,
    /// Parameters in the query string (the URL is then redacted wherever it is shown).
    Get,
}

impl HttpMethod {
    /// Config and trace text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Post => "POST",
            Self::Get => "GET",
        }
    }
}

/// Why no complete response was received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportFailure {
    /// The run's deadline passed (connect, headers or body).
    Timeout,
    /// DNS, refused, reset before a response, TLS handshake: no response at all.
    Connection,
    /// The response started but the body broke off (reset mid-body, lying `Content-Length`).
    BodyInterrupted,
    /// The body grew past `max_body_bytes`; reading stopped there.
    BodyTooLarge,
}

impl TransportFailure {
    /// Trace text.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Timeout => "the deadline passed before the response was complete",
            Self::Connection => "no response: the connection could not be made or was dropped",
            Self::BodyInterrupted => "the response body broke off before its end",
            Self::BodyTooLarge => "the body exceeded max_body_bytes; reading stopped there",
        }
    }
}

/// A complete HTTP response, as received.
#[derive(Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code, any value 100–999 (never trust it to be a known one).
    pub status: u16,
    /// `Content-Type`, when sent.
    pub content_type: Option<String>,
    /// `Retry-After`, raw, when sent.
    pub retry_after: Option<String>,
    /// Response headers for debug traces (names lowercased), capped in count.
    pub headers: Vec<(String, String)>,
    /// The body, at most `max_body_bytes`.
    pub body: Vec<u8>,
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("content_type", &self.content_type)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// Everything observed during one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeOutcome {
    /// From sending the request to the end of the body (or the failure).
    pub elapsed: Duration,
    /// The response, or why there was none.
    pub result: Result<Response, TransportFailure>,
}

/// What a debug trace shows of the request (secrets already redacted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestTrace {
    /// `POST` or `GET`.
    pub http_method: &'static str,
    /// The URL, with any secret query parameter redacted.
    pub url: String,
    /// Parameters as sent, secrets replaced by the redaction marker.
    pub params: Vec<(String, String)>,
}

/// A recorded run: facts plus the redacted request that produced them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The request, redacted.
    pub request: RequestTrace,
    /// What came back.
    pub outcome: ProbeOutcome,
}

/// Boxed future returned by [`Prober::probe`], so the trait stays object-safe.
pub type ProbeFuture<'a> = Pin<Box<dyn Future<Output = Recorded> + Send + 'a>>;

/// Makes one attempt of a probe. Implementations must return within `deadline` (plus a little)
/// and never retry.
pub trait Prober: Send + Sync + fmt::Debug {
    /// One attempt of `probe` against `target`.
    fn probe<'a>(
        &'a self,
        target: &'a crate::config::Target,
        probe: &'a crate::config::Probe,
    ) -> ProbeFuture<'a>;
}

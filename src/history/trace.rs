//! The human-readable trace of one run (`/probe?debug=true` and the status page's trace links).
//!
//! It shows what an operator needs to argue with Last.fm or with their own config: the request
//! (secrets already replaced by the prober), the status line, the headers, the start of the body
//! and the verdict with its reasons. Upstream text can be hostile: anything in it that equals one
//! of the target's secrets (raw or URL-encoded, e.g. echoed back in a redirect) is scrubbed here.
//!
//! Every run keeps a [`Trace`] (the status page links the recent ones), but few are ever read:
//! rendering and scrubbing some 4 KB of text on every run was a measurable part of a scheduled
//! run's CPU (docs/PERFORMANCE.md), so a run keeps what its text is made from and renders it on first read.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};

use crate::classify::Classification;
use crate::config::secret::REDACTED;
use crate::config::{Probe, Step, Target};
use crate::probe::{Recorded, RequestTrace};

/// How much of the body a trace shows.
pub const BODY_EXCERPT_BYTES: usize = 4096;

/// A run's trace: rendered on first read, then kept.
#[derive(Clone, Default)]
pub struct Trace {
    /// What the text is rendered from; `None` for a run without a trace.
    source: Option<Arc<Source>>,
    /// The text, once read.
    text: OnceLock<String>,
}

/// What a trace is rendered from.
#[expect(
    clippy::large_enum_variant,
    reason = "one per run behind an Arc; boxing the common variant would cost every run an allocation"
)]
enum Source {
    /// One request.
    Run(RunSource),
    /// A run of several requests (a canary's write and read-back polls): a heading of our own
    /// words, then each request's trace.
    Steps {
        /// Made of labels and numbers only: it holds no upstream text to scrub.
        head: String,
        steps: Vec<Trace>,
    },
}

/// The facts a request's trace shows, as the run left them.
struct RunSource {
    /// Holds the secrets to scrub and the probe, as configured when the run was made (a reload
    /// does not change an old run's trace).
    target: Arc<Target>,
    /// Which of the target's requests it was.
    step: Step,
    /// The request and response; the body cut to the excerpt the trace shows.
    recorded: Recorded,
    /// The body's length as received.
    body_len: usize,
    /// The verdict before its `detail` was scrubbed: the whole text is scrubbed on rendering.
    verdict: Classification,
}

impl Trace {
    /// Keeps a run's facts for its trace; of the body, only the excerpt shown is kept.
    pub fn new(
        target: Arc<Target>,
        step: Step,
        mut recorded: Recorded,
        verdict: Classification,
    ) -> Self {
        let mut body_len = 0;
        if let Ok(response) = &mut recorded.outcome.result {
            body_len = response.body.len();
            // A fresh allocation for the excerpt, not the body's buffer shrunk in place: a buffer
            // shrunk in place keeps the head of a block of up to `max_body_bytes` for as long as
            // the history keeps the run, so the next large body cannot reuse the block and the
            // heap grows (the fault matrix saw its peak RSS rise by 2 to 5 MiB). The copy also
            // drops the spare capacity a lying Content-Length reserved.
            let excerpt = response.body[..body_len.min(BODY_EXCERPT_BYTES)].to_vec();
            response.body = excerpt;
        }
        Self {
            source: Some(Arc::new(Source::Run(RunSource {
                target,
                step,
                recorded,
                body_len,
                verdict,
            }))),
            text: OnceLock::new(),
        }
    }

    /// The trace of a run of several requests: `head`, then each step's trace in order.
    /// `head` must hold no upstream text (it is not scrubbed); the steps scrub themselves.
    pub fn steps(head: String, steps: Vec<Self>) -> Self {
        Self {
            source: Some(Arc::new(Source::Steps { head, steps })),
            text: OnceLock::new(),
        }
    }

    /// The trace's text, rendered on the first call.
    pub fn text(&self) -> &str {
        self.text.get_or_init(|| match self.source.as_deref() {
            None => String::new(),
            Some(Source::Steps { head, steps }) => {
                let mut out = head.clone();
                for (i, step) in steps.iter().enumerate() {
                    let _ = write!(out, "\n\n==== request {} of {}\n", i + 1, steps.len());
                    out.push_str(step.text());
                }
                out
            }
            Some(Source::Run(source)) => {
                // `step` named a request of this very target when the run was made.
                let Some(probe) = source.target.step(source.step) else {
                    return String::new();
                };
                render(
                    &source.target,
                    probe,
                    &source.recorded,
                    source.body_len,
                    &source.verdict,
                )
            }
        })
    }
}

impl std::fmt::Debug for Trace {
    // The source holds upstream text that is only shown scrubbed: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trace")
            .field("rendered", &self.text.get().is_some())
            .finish_non_exhaustive()
    }
}

/// Renders a run's trace; `body_len` is the length of the body as received, of which
/// `recorded` may hold only the excerpt.
fn render(
    target: &Target,
    probe: &Probe,
    recorded: &Recorded,
    body_len: usize,
    verdict: &Classification,
) -> String {
    let excerpt_len = match &recorded.outcome.result {
        Ok(response) => response.body.len().min(BODY_EXCERPT_BYTES),
        Err(_) => 0,
    };
    // One allocation for the usual trace; lines are pushed piecewise (this runs on every run).
    let mut out = String::with_capacity(excerpt_len + 2048);
    let _ = writeln!(out, "probe {} of target {}", probe.name, target.name);
    write_request(&mut out, &recorded.request);
    write_response(&mut out, recorded, excerpt_len, body_len, verdict);
    write_verdict(&mut out, probe, verdict);
    write_timing(&mut out, recorded, verdict);
    let mut out = scrub_run(target, probe, out);
    // Kept in the history for a while: give back the growth slack.
    out.shrink_to_fit();
    out
}

/// The request as sent (secrets are scrubbed from the whole trace afterwards).
fn write_request(out: &mut String, request: &RequestTrace) {
    let _ = writeln!(out, "\n== request");
    let _ = writeln!(out, "{} {}", request.http_method, request.url);
    for (name, value) in &request.params {
        for part in ["  ", name, " = ", value, "\n"] {
            out.push_str(part);
        }
    }
}

/// The response: status, headers and the body's excerpt, or why none arrived.
fn write_response(
    out: &mut String,
    recorded: &Recorded,
    excerpt_len: usize,
    body_len: usize,
    verdict: &Classification,
) {
    let _ = writeln!(out, "\n== response");
    match &recorded.outcome.result {
        Ok(response) => {
            let _ = writeln!(out, "status {}", response.status);
            for (name, value) in &response.headers {
                let (name, value) = (printable(name, Lines::One), printable(value, Lines::One));
                for part in [&*name, ": ", &*value, "\n"] {
                    out.push_str(part);
                }
            }
            let excerpt = &response.body[..excerpt_len];
            let _ = writeln!(
                out,
                "\n-- body ({} bytes{})",
                body_len,
                if body_len > BODY_EXCERPT_BYTES {
                    ", first 4 KiB shown"
                } else {
                    ""
                }
            );
            // The excerpt is almost always valid UTF-8: skip the lossy path's char walk then.
            match std::str::from_utf8(excerpt) {
                Ok(text) => out.push_str(&printable(text, Lines::Many)),
                Err(_) => out.push_str(&printable(&String::from_utf8_lossy(excerpt), Lines::Many)),
            }
            out.push('\n');
        }
        Err(_) => {
            let words = verdict.detail.as_deref().unwrap_or("no detail");
            let _ = writeln!(
                out,
                "no complete response: {}",
                printable(words, Lines::One)
            );
        }
    }
}

/// The verdict, line by line.
fn write_verdict(out: &mut String, probe: &Probe, verdict: &Classification) {
    let _ = writeln!(out, "\n== classification");
    let _ = writeln!(out, "outcome: {}", verdict.outcome.as_label());
    let _ = match verdict.http_status {
        Some(status) => writeln!(out, "http status: {status}"),
        None => writeln!(out, "http status: none"),
    };
    let _ = match verdict.error_code {
        Some(code) => writeln!(out, "error code: {code}"),
        None => writeln!(out, "error code: none"),
    };
    if let Some(detail) = &verdict.detail {
        let _ = writeln!(out, "detail: {}", printable(detail, Lines::One));
    }
    let _ = writeln!(
        out,
        "expectation: {} -> {}",
        probe.expect.describe(),
        if verdict.met_expectation {
            "met"
        } else {
            "NOT met"
        }
    );
    if let Some(mismatch) = verdict.mismatch {
        let _ = writeln!(
            out,
            "status mismatch: {} (code {}, status {})",
            mismatch.kind.as_label(),
            mismatch.code.map_or("none".to_owned(), |c| c.to_string()),
            mismatch.status
        );
    }
    if let Some(blame) = verdict.blame {
        let _ = writeln!(out, "blame: {}", blame.as_label());
    }
    if let Some(scope) = crate::classify::rate_limit_scope(verdict) {
        let _ = writeln!(out, "rate limited: scope {}", scope.as_label());
    }
    for condition in &verdict.raises {
        let _ = writeln!(out, "raises condition: {}", condition.as_label());
    }
}

/// Latency, the phase a failure broke in, where the time went per phase, and the TLS facts.
fn write_timing(out: &mut String, recorded: &Recorded, verdict: &Classification) {
    let _ = writeln!(
        out,
        "latency: {:.3}s",
        recorded.outcome.elapsed.as_secs_f64()
    );
    if let Some(failure) = verdict.failure {
        let _ = writeln!(
            out,
            "failed in phase: {} (reason {})",
            failure.phase.as_label(),
            failure.reason.as_label()
        );
    }
    let timings = recorded.outcome.timings.as_array();
    let _ = write!(out, "phases:");
    for (phase, spent) in crate::probe::TIMED_PHASES.iter().zip(timings) {
        let _ = write!(out, " {phase} {:.3}s", spent.as_secs_f64());
    }
    out.push('\n');
    if let Some(tls) = &recorded.outcome.tls {
        let _ = write!(out, "tls: {}", tls.version);
        if let Some(unix) = tls.not_after_unix
            && let Some(at) = chrono::DateTime::from_timestamp(unix, 0)
        {
            let _ = write!(
                out,
                ", certificate chain valid until {}",
                at.format("%Y-%m-%dT%H:%M:%SZ")
            );
        }
        out.push('\n');
    }
}

/// [`scrub`], plus the probe's `api_sig`: it can be replayed like `sk`, and an upstream that
/// echoes its request sends it back too.
pub fn scrub_run(target: &Target, probe: &Probe, text: String) -> String {
    let mut text = scrub(target, text);
    if probe.signed {
        let params = crate::probe::http::request_params(target, probe);
        if let Some((_, sig)) = params.iter().find(|(name, _)| name == "api_sig") {
            text = text.replace(sig.as_str(), REDACTED);
        }
    }
    text
}

/// `text` with every secret of `target` replaced by the redaction marker.
///
/// Upstream text can echo a secret back changed: upper-cased, cut, base64- or percent-encoded.
/// So each secret is redacted raw and URL-encoded, and so is its base64 encoding (standard and
/// URL-safe alphabets); and any run of at least [`SECRET_PIECE`] characters of one of those forms
/// is redacted wherever it appears, compared case-insensitively.
pub fn scrub(target: &Target, text: String) -> String {
    let secrets = [
        Some(&target.api_key),
        target.api_secret.as_ref(),
        target.session_key.as_ref(),
    ];
    let mut forms: Vec<String> = Vec::new();
    for secret in secrets.into_iter().flatten() {
        let raw = secret.expose();
        if raw.len() < 4 {
            continue;
        }
        forms.push(raw.to_owned());
        forms.push(url::form_urlencoded::byte_serialize(raw.as_bytes()).collect());
        for engine in [
            &base64::engine::general_purpose::STANDARD,
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ] {
            forms.push(base64::Engine::encode(engine, raw.as_bytes()));
        }
    }
    forms.sort_unstable();
    forms.dedup();
    redact(text, &forms)
}

/// The shortest piece of a secret that is redacted on its own: long enough that ordinary text
/// does not match it by chance, short enough that a secret cut in half is still caught.
pub const SECRET_PIECE: usize = 12;

/// `text` with each byte range that holds one of `forms` whole, or a piece of at least
/// [`SECRET_PIECE`] of its characters, replaced by the redaction marker, case-insensitively.
fn redact(text: String, forms: &[String]) -> String {
    // ASCII lower-casing keeps every byte where it was, so ranges found here hold in `text`.
    let haystack = text.to_ascii_lowercase();
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for form in forms {
        let needle = form.to_ascii_lowercase();
        let pieces: Vec<&str> = if needle.len() <= SECRET_PIECE || !needle.is_ascii() {
            vec![needle.as_str()]
        } else {
            (0..=needle.len() - SECRET_PIECE)
                .map(|at| &needle[at..at + SECRET_PIECE])
                .collect()
        };
        for piece in pieces {
            ranges.extend(
                haystack
                    .match_indices(piece)
                    .map(|(at, found)| (at, at + found.len())),
            );
        }
    }
    if ranges.is_empty() {
        return text;
    }
    ranges.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut done = 0;
    let mut at = 0;
    while at < ranges.len() {
        let (start, mut end) = ranges[at];
        while at + 1 < ranges.len() && ranges[at + 1].0 <= end {
            at += 1;
            end = end.max(ranges[at].1);
        }
        // A range can start inside a multi-byte character only if a form is not ASCII, and
        // those are matched whole: both ends are character boundaries.
        out.push_str(text.get(done..start).unwrap_or_default());
        out.push_str(REDACTED);
        done = end;
        at += 1;
    }
    out.push_str(text.get(done..).unwrap_or_default());
    out
}

/// Whether text shown may span lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lines {
    /// One line (a header, a detail): line breaks are escaped too.
    One,
    /// Several lines (a body): `\n` and `\t` stay.
    Many,
}

/// Upstream text made safe to show: control characters (NUL, ESC sequences, CR, LF on one line)
/// and the bidirectional overrides that reorder what a reader sees (U+202E and its kin) are
/// written as `\u{…}` escapes, so no upstream byte can move a cursor, recolour a terminal or
/// disguise a line.
pub fn printable(text: &str, lines: Lines) -> Cow<'_, str> {
    let hidden = |c: char| {
        let kept = lines == Lines::Many && (c == '\n' || c == '\t');
        !kept && (c.is_control() || is_bidi_control(c))
    };
    if !text.chars().any(hidden) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if hidden(c) {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// The Unicode bidirectional formatting characters (marks, embeddings, overrides, isolates).
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "c0ffee00c0ffee00c0ffee00c0ffee00";

    #[test]
    fn every_form_and_every_long_piece_of_a_secret_is_redacted() {
        use base64::Engine as _;
        let forms = [
            KEY.to_owned(),
            base64::engine::general_purpose::STANDARD.encode(KEY),
        ];
        for echoed in [
            KEY.to_owned(),
            KEY.to_ascii_uppercase(),
            KEY[..16].to_owned(),
            KEY[10..22].to_owned(),
            base64::engine::general_purpose::STANDARD.encode(KEY),
        ] {
            let got = redact(format!("before {echoed} after"), &forms);
            assert_eq!(got, format!("before {REDACTED} after"), "{echoed}");
        }
        // Eleven characters are not enough to be taken for the secret.
        let short = &KEY[..SECRET_PIECE - 1];
        assert_eq!(
            redact(format!("x {short} y"), &forms),
            format!("x {short} y")
        );
        // Overlapping and adjacent pieces become one marker; other text is kept as it was.
        let twice = format!("é{KEY}{}ü", &KEY[..14]);
        assert_eq!(redact(twice, &forms), format!("é{REDACTED}ü"));
    }

    #[test]
    fn printable_escapes_controls_and_bidi_overrides_keeping_lines_where_asked() {
        let hostile = "a\u{1b}[31mb\u{0}c\r\nd\te\u{202e}f";
        assert_eq!(
            printable(hostile, Lines::One),
            "a\\u{1b}[31mb\\u{0}c\\u{d}\\u{a}d\\u{9}e\\u{202e}f"
        );
        assert_eq!(
            printable(hostile, Lines::Many),
            "a\\u{1b}[31mb\\u{0}c\\u{d}\nd\te\\u{202e}f"
        );
        assert!(matches!(
            printable("plain text", Lines::One),
            Cow::Borrowed(_)
        ));
    }
}

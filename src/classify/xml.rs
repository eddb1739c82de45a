//! The XML reader: a body in, the [`Payload`] the classifier judges out.
//!
//! A Last.fm XML payload is `<lfm status="ok">` around a success, or `<lfm status="failed">`
//! around `<error code="…">message</error>` (docs/LASTFM-API.md §3).

use super::payload::{self, Payload};

/// Reads `<lfm status="…">` tolerantly: undeclared prefixes (`opensearch:`) and stray control
/// characters, which strict parsers reject in real successful responses, are accepted; an
/// unclosed document (truncated body) is not. Entities are never expanded.
#[expect(
    clippy::wildcard_enum_match_arm,
    reason = "quick-xml's other events (declarations, comments, CDATA, references) carry nothing \
              the classifier reads"
)]
pub(super) fn parse_xml(text: &str) -> Payload {
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
        (Some("failed"), Some(code)) => match payload::error_code(&code) {
            Some(code) => Payload::Error {
                code,
                message: message.trim().to_owned(),
            },
            None => Payload::NotLastfm(format!("the error code {code:?} is not 1 to 4 digits")),
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

//! What the JSON and XML readers make of a body, for the classifier to judge.

use serde_json::Value;

/// An error code as both readers accept it: one to four ASCII digits and nothing else (no sign,
/// no space, no fraction, no exponent), so `"11"` is 11 while `11.0`, `"+11"` and `" 11"` are not
/// codes at all (README.md, Classification). A number that is not a code is a malformed body,
/// never a guess at which code was meant.
pub(super) fn error_code(text: &str) -> Option<u32> {
    let digits = (1..=4).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit());
    digits.then(|| text.parse().ok()).flatten()
}

/// The payload as the classifier reads it.
#[derive(Debug, PartialEq)]
pub(super) enum Payload {
    /// A success payload; the JSON members the checks read, when any.
    Success(Option<Value>),
    /// An error payload: its code and message.
    Error { code: u32, message: String },
    /// Not a Last.fm payload, and why not.
    NotLastfm(String),
}

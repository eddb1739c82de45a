//! What the JSON and XML readers make of a body, for the classifier to judge.

use serde_json::Value;

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

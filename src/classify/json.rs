//! The JSON reader: a body in, the [`Payload`] the classifier judges out.
//!
//! A Last.fm JSON payload is an object whose `error` member (an integer code) marks an error and
//! whose other members are a success (docs/LASTFM-API.md §3). Only what classification reads is
//! kept: `error`, `message`, and the values the probe's checks point at.

use serde_json::Value;

use super::payload::{Payload, error_code};
use crate::config::Check;

/// Judges a JSON body as [`parse_json_value`] does, building only what classification reads:
/// `error`, `message`, and the values the checks' pointers reach.
///
/// The whole document goes through the same parser (the same syntax errors, and the same
/// recursion limit, since [`Skip`] and [`Prune`] visit nested values as `Value` does), but what no
/// check reads is dropped as it is read instead of becoming a tree of strings and maps: on a 2 KB
/// success body that tree was most of the cost of a run (docs/PERFORMANCE.md). Anything unusual (a parse
/// error, a check on the whole document) takes the full path, so every verdict and message is
/// the same as before.
pub(super) fn parse_json(text: &str, checks: &[Check]) -> Payload {
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
    if skeleton.errors > 1 {
        return duplicate_errors(skeleton.errors);
    }
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
    /// How many `error` members the object has: more than one is malformed, since which one
    /// the API meant cannot be known.
    errors: usize,
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
                    skeleton.errors += 1;
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
pub(super) fn parse_json_value(text: &str) -> Payload {
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
        // `Value` keeps the last of duplicate members: count them with the outline.
        Some(_) if error_members(text) > 1 => duplicate_errors(error_members(text)),
        Some(error) => error_payload(error, map.get("message")),
        None if map.is_empty() => Payload::NotLastfm("the JSON object is empty".to_owned()),
        None => Payload::Success(Some(value)),
    }
}

/// The verdict on an object with `count` `error` members.
fn duplicate_errors(count: usize) -> Payload {
    Payload::NotLastfm(format!(
        "the JSON has {count} `error` members; which code was meant is unknown"
    ))
}

/// How many `error` members a valid JSON object has at its top level.
fn error_members(text: &str) -> usize {
    use serde::de::DeserializeSeed as _;

    let mut deserializer = serde_json::Deserializer::from_str(text);
    Outline { paths: Vec::new() }
        .deserialize(&mut deserializer)
        .map_or(0, |skeleton| skeleton.errors)
}

/// A document with an `error` member: a Last.fm error when it is a whole number.
fn error_payload(error: &Value, message: Option<&Value>) -> Payload {
    // GNU FM turns its XML `<error code="7">text</error>` into JSON as it is:
    // `{"error": {"code": "7", "#text": "text"}}` (docs/LASTFM-API.md, "Compatible APIs").
    if let Value::Object(element) = error
        && let Some(code) = element.get("code")
    {
        return error_payload(code, element.get("#text").or(message));
    }
    let text = match error {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        other @ (Value::Null | Value::Bool(_) | Value::Array(_) | Value::Object(_)) => {
            return Payload::NotLastfm(format!("the error code {other} is not a number"));
        }
    };
    match error_code(&text) {
        Some(code) => Payload::Error {
            code,
            message: message
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        },
        None => Payload::NotLastfm(format!("the error code {error} is not 1 to 4 digits")),
    }
}

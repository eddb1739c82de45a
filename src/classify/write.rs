//! What a write said and what the read-back shows: the readers a canary needs once the classifier
//! has judged a response, and the scope of a rate limit.
//!
//! The classifier decides whether an answer is a success at all; a write's success can still mean
//! that nothing was recorded (an `ignoredMessage` code), and a read-back's success is only useful
//! once its entries are known. Those meanings are read here, in JSON and XML, from the shapes in
//! docs/LASTFM-API.md §7: `scrobble` as one object or an array, counts as numbers or strings,
//! element names in either casing, a recent-tracks `track` that is an array, one object or absent,
//! an artist as `#text` or (with `extended=1`) `name`.
//!
//! Pure and total like the rest of the stage: no I/O, no clock, no panic on any input. The JSON
//! parser has a nesting limit and the XML reader is a loop over events, so no body makes the work
//! recursive beyond a fixed depth; the bodies are capped by the prober already.

use std::borrow::Cow;

use serde_json::Value;

use super::verdict::Classification;
use crate::config::Format;
use crate::config::closed_set::closed_set;

/// What a write (`track.updateNowPlaying` or `track.scrobble`) answered, once the classifier has
/// found a success payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteAnswer {
    /// Plays accepted (`@attr.accepted` of `scrobbles`; a now-playing without an ignore code: 1).
    pub accepted: u32,
    /// Plays ignored.
    pub ignored: u32,
    /// The first non-zero `ignoredMessage` code, when any play was ignored.
    pub ignored_code: Option<u32>,
}

/// One entry of `user.getRecentTracks`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentEntry {
    /// The artist's name (`artist.#text`, or `artist.name` with `extended=1`).
    pub artist: String,
    /// The track's name.
    pub track: String,
    /// Flagged `nowplaying="true"`: the track playing now, which has no date.
    pub now_playing: bool,
    /// When it was scrobbled (`date.uts`, UTC seconds); `None` for the now-playing entry.
    pub uts: Option<i64>,
}

/// The read-back: whose tracks they are (`recenttracks.@attr.user`; XML `<recenttracks user=…>`)
/// and the entries, in the order the API listed them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentTracks {
    /// The user the API says the list belongs to; a canary checks it is its own.
    pub user: Option<String>,
    /// The entries, the now-playing one (when any) first as the API sends it.
    pub entries: Vec<RecentEntry>,
}

closed_set! {
    /// Who a rate limit is on: the same error 29 comes from three limiters that call for different
    /// reactions (docs/LASTFM-API.md §5).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum RateLimitScope {
        /// The API key: "This application has made too many requests".
        Key => "key",
        /// One account's scrobbles: "Too many scrobbles in a short period".
        User => "user",
        /// The caller's address: "Your IP has made too many requests".
        Ip => "ip",
        /// Rate limited, but the message (if any) names no scope.
        Unknown => "unknown",
    }
}

/// The scope of a rate limit, `None` when the verdict is not one: the code decides (error 29 or
/// HTTP 429), only then the message refines it, case-insensitively: "this application" → Key,
/// "too many scrobbles" → User, "your ip" → Ip, anything else or no message → Unknown.
///
/// Only an API error's message is read: for any other outcome `detail` is the monitor's own
/// words about the body, not Last.fm's, so a 429 without a payload is `Unknown`.
pub fn rate_limit_scope(verdict: &Classification) -> Option<RateLimitScope> {
    let limited = verdict.error_code == Some(29) || verdict.http_status == Some(429);
    if !limited {
        return None;
    }
    let message = verdict
        .error_code
        .and(verdict.detail.as_deref())
        .unwrap_or_default()
        .to_lowercase();
    let scope = if message.contains("this application") {
        RateLimitScope::Key
    } else if message.contains("too many scrobbles") {
        RateLimitScope::User
    } else if message.contains("your ip") {
        RateLimitScope::Ip
    } else {
        RateLimitScope::Unknown
    };
    Some(scope)
}

/// Reads a write's success body. `Err(why)` when it is not a recognisable write answer.
pub fn read_write_answer(format: Format, body: &[u8]) -> Result<WriteAnswer, String> {
    let text = body_text(body)?;
    match format {
        Format::Json => json_write_answer(text),
        Format::Xml => xml_write_answer(text),
    }
}

/// Reads a `user.getRecentTracks` success body. `Err(why)` when it is not a recent-tracks list or
/// an entry lacks its artist or name.
pub fn read_recent_tracks(format: Format, body: &[u8]) -> Result<RecentTracks, String> {
    let text = body_text(body)?;
    match format {
        Format::Json => json_recent_tracks(text),
        Format::Xml => xml_recent_tracks(text),
    }
}

fn body_text(body: &[u8]) -> Result<&str, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the body is not valid UTF-8".to_owned())?;
    let text = text.trim_start_matches('\u{feff}').trim();
    if text.is_empty() {
        return Err("the body is empty".to_owned());
    }
    Ok(text)
}

/// A count or a code as the API sends either: a JSON number or a string of digits, at most
/// `u32::MAX`. Anything else (a sign, a fraction, words) is not a count.
fn number_text(text: &str) -> Result<u32, String> {
    let digits = !text.is_empty() && text.len() <= 10 && text.bytes().all(|b| b.is_ascii_digit());
    digits
        .then(|| text.parse::<u32>().ok())
        .flatten()
        .ok_or_else(|| format!("{text:?} is not a count"))
}

fn write_counts(plays: &[u32]) -> (u32, u32) {
    let ignored = plays.iter().filter(|code| **code != 0).count();
    let accepted = plays.len() - ignored;
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    (count(accepted), count(ignored))
}

/// The answer to a now playing: one play, ignored when its code is not 0.
fn now_playing_answer(code: u32) -> WriteAnswer {
    WriteAnswer {
        accepted: u32::from(code == 0),
        ignored: u32::from(code != 0),
        ignored_code: (code != 0).then_some(code),
    }
}

/// The answer to a scrobble: the counts the API states (`@attr` in JSON, attributes in XML),
/// or, when it states neither, the counts of the plays listed; the first non-zero code.
fn scrobbles_answer(
    accepted: Option<u32>,
    ignored: Option<u32>,
    plays: &[u32],
) -> Result<WriteAnswer, String> {
    let (accepted, ignored) = match (accepted, ignored) {
        (Some(accepted), Some(ignored)) => (accepted, ignored),
        (None, None) if !plays.is_empty() => write_counts(plays),
        (None, None) => return Err("scrobbles states no counts and lists no play".to_owned()),
        (Some(_), None) | (None, Some(_)) => {
            return Err("scrobbles states only one of accepted and ignored".to_owned());
        }
    };
    Ok(WriteAnswer {
        accepted,
        ignored,
        ignored_code: plays.iter().copied().find(|code| *code != 0),
    })
}

// ---- JSON ----

/// The member `name` of an object, its name matched case-insensitively (Last.fm's own examples
/// spell `ignoredMessage` both ways); `None` for a non-object.
fn member<'a>(value: &'a Value, name: &str) -> Option<&'a Value> {
    let object = value.as_object()?;
    object.get(name).or_else(|| {
        object
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

fn json_number(value: &Value, what: &str) -> Result<u32, String> {
    match value {
        Value::Number(n) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| format!("{what} {n} is not a count")),
        Value::String(s) => number_text(s).map_err(|why| format!("{what}: {why}")),
        Value::Null | Value::Bool(_) | Value::Array(_) | Value::Object(_) => {
            Err(format!("{what} is {value}, not a count"))
        }
    }
}

fn json_document(text: &str) -> Result<Value, String> {
    let value: Value =
        serde_json::from_str(text).map_err(|err| format!("the JSON is not well-formed: {err}"))?;
    if !value.is_object() {
        return Err("the JSON is not an object".to_owned());
    }
    if let Some(code) = member(&value, "error") {
        return Err(format!("an error payload (error {code}), not a success"));
    }
    Ok(value)
}

/// The `ignoredMessage` code of a now playing or of one scrobbled play: 0 when there is none.
fn json_ignored_code(play: &Value) -> Result<u32, String> {
    if !play.is_object() {
        return Err(format!("a play is {play}, not an object"));
    }
    match member(play, "ignoredMessage") {
        None => Ok(0),
        Some(message @ Value::Object(_)) => {
            member(message, "code").map_or(Ok(0), |code| json_number(code, "ignoredMessage.code"))
        }
        Some(other) => Err(format!("ignoredMessage is {other}, not an object")),
    }
}

fn json_write_answer(text: &str) -> Result<WriteAnswer, String> {
    let document = json_document(text)?;
    match (
        member(&document, "nowplaying"),
        member(&document, "scrobbles"),
    ) {
        (Some(now_playing), None) => json_ignored_code(now_playing).map(now_playing_answer),
        (None, Some(scrobbles)) => json_scrobbles(scrobbles),
        (Some(_), Some(_)) => {
            Err("both nowplaying and scrobbles: not one write's answer".to_owned())
        }
        (None, None) => Err("neither nowplaying nor scrobbles: not a write's answer".to_owned()),
    }
}

fn json_scrobbles(scrobbles: &Value) -> Result<WriteAnswer, String> {
    if !scrobbles.is_object() {
        return Err(format!("scrobbles is {scrobbles}, not an object"));
    }
    let plays = match member(scrobbles, "scrobble") {
        None => Vec::new(),
        Some(Value::Array(plays)) => plays
            .iter()
            .map(json_ignored_code)
            .collect::<Result<_, _>>()?,
        Some(one) => vec![json_ignored_code(one)?],
    };
    let attr = member(scrobbles, "@attr");
    let count = |name: &str| {
        attr.and_then(|attr| member(attr, name))
            .map(|value| json_number(value, name))
            .transpose()
    };
    scrobbles_answer(count("accepted")?, count("ignored")?, &plays)
}

/// A JSON text member: a string, or an object's `#text` (how the API renders an element with
/// attributes).
fn json_text(value: &Value) -> Option<&str> {
    match value {
        Value::String(s) => Some(s),
        Value::Object(_) => member(value, "#text").and_then(Value::as_str),
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::Array(_) => None,
    }
}

fn json_recent_tracks(text: &str) -> Result<RecentTracks, String> {
    let document = json_document(text)?;
    let recent = member(&document, "recenttracks")
        .filter(|recent| recent.is_object())
        .ok_or("no recenttracks object: not a recent-tracks answer")?;
    let user = member(recent, "@attr")
        .and_then(|attr| member(attr, "user"))
        .and_then(json_text)
        .map(str::to_owned);
    let entries = match member(recent, "track") {
        None | Some(Value::Null) => Vec::new(),
        // An empty list is sometimes sent as "" rather than [].
        Some(Value::String(s)) if s.trim().is_empty() => Vec::new(),
        Some(Value::Array(tracks)) => tracks.iter().map(json_entry).collect::<Result<_, _>>()?,
        Some(one) => vec![json_entry(one)?],
    };
    Ok(RecentTracks { user, entries })
}

fn json_entry(track: &Value) -> Result<RecentEntry, String> {
    if !track.is_object() {
        return Err(format!("a track is {track}, not an object"));
    }
    let artist = member(track, "artist")
        .and_then(|artist| {
            json_text(artist).or_else(|| member(artist, "name").and_then(Value::as_str))
        })
        .ok_or("a track has no artist name")?;
    let name = member(track, "name")
        .and_then(json_text)
        .ok_or("a track has no name")?;
    let now_playing = member(track, "@attr")
        .and_then(|attr| member(attr, "nowplaying"))
        .is_some_and(|flag| match flag {
            Value::Bool(b) => *b,
            Value::String(s) => s.eq_ignore_ascii_case("true"),
            Value::Null | Value::Number(_) | Value::Array(_) | Value::Object(_) => false,
        });
    let uts = match member(track, "date").and_then(|date| member(date, "uts")) {
        None => None,
        Some(Value::Number(n)) => Some(n.as_i64().ok_or(format!("date.uts {n} is not a time"))?),
        Some(Value::String(s)) => Some(uts_text(s)?),
        Some(other) => return Err(format!("date.uts is {other}, not a time")),
    };
    Ok(RecentEntry {
        artist: artist.to_owned(),
        track: name.to_owned(),
        now_playing,
        uts,
    })
}

fn uts_text(text: &str) -> Result<i64, String> {
    let digits = !text.is_empty() && text.len() <= 18 && text.bytes().all(|b| b.is_ascii_digit());
    digits
        .then(|| text.parse::<i64>().ok())
        .flatten()
        .ok_or_else(|| format!("date.uts {text:?} is not a time"))
}

// ---- XML ----

/// One step of an `<lfm status="ok">` document, with the path of lower-cased element names from
/// the root (`["lfm", "scrobbles", "scrobble"]`).
enum Step<'a> {
    /// An element opened, with its attributes (lower-cased names, unescaped values).
    Open(&'a [String], &'a [(String, String)]),
    /// Text inside the innermost element (entities resolved; may come in several pieces).
    Text(&'a [String], &'a str),
    /// The innermost element closed.
    Close(&'a [String]),
}

/// Walks an `<lfm status="ok">` document event by event, with no recursion: the path is a list,
/// so nesting costs memory in proportion to the (capped) body, never stack. Undeclared prefixes
/// and stray control characters are tolerated as the classifier's reader tolerates them; an
/// unclosed document, another root or `status="failed"` is an `Err`.
#[expect(
    clippy::wildcard_enum_match_arm,
    reason = "quick-xml's other events (declarations, comments, processing instructions, doctypes) \
              carry nothing a write's meaning is in"
)]
fn walk_lfm(
    text: &str,
    mut visit: impl FnMut(Step<'_>) -> Result<(), String>,
) -> Result<(), String> {
    use quick_xml::events::Event;

    let mut reader = quick_xml::Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    let mut path: Vec<String> = Vec::new();
    let mut root_seen = false;
    loop {
        let event = reader
            .read_event()
            .map_err(|err| format!("the XML is not well-formed: {err}"))?;
        match event {
            Event::Start(ref element) | Event::Empty(ref element) => {
                let name = String::from_utf8_lossy(element.name().as_ref()).to_ascii_lowercase();
                let attrs = attributes(element, reader.decoder());
                if path.is_empty() {
                    if root_seen || name != "lfm" {
                        return Err("the XML root is not <lfm>".to_owned());
                    }
                    root_seen = true;
                    lfm_status(&attrs)?;
                }
                path.push(name);
                visit(Step::Open(&path, &attrs))?;
                if matches!(event, Event::Empty(_)) {
                    visit(Step::Close(&path))?;
                    path.pop();
                }
            }
            Event::End(_) => {
                visit(Step::Close(&path))?;
                path.pop();
            }
            Event::Text(ref t) => visit(Step::Text(&path, &String::from_utf8_lossy(t)))?,
            Event::CData(ref t) => visit(Step::Text(&path, &String::from_utf8_lossy(t)))?,
            Event::GeneralRef(ref r) => visit(Step::Text(&path, &entity(r)))?,
            Event::Eof => break,
            _ => {}
        }
    }
    if !root_seen {
        return Err("the body is not XML".to_owned());
    }
    if !path.is_empty() {
        return Err("the XML ends early (truncated body)".to_owned());
    }
    Ok(())
}

fn lfm_status(attrs: &[(String, String)]) -> Result<(), String> {
    match attr(attrs, "status") {
        Some("ok") => Ok(()),
        Some("failed") => Err("an error payload (<lfm status=\"failed\">), not a success".into()),
        other => Err(format!("<lfm> has status {other:?}")),
    }
}

/// The text an entity reference stands for: a character reference or one of XML's five; any
/// other (which an API never sends) stays as written.
fn entity(reference: &quick_xml::events::BytesRef<'_>) -> Cow<'static, str> {
    if let Ok(Some(ch)) = reference.resolve_char_ref() {
        return Cow::Owned(ch.to_string());
    }
    let name = String::from_utf8_lossy(reference);
    quick_xml::escape::resolve_predefined_entity(&name)
        .map_or_else(|| Cow::Owned(format!("&{name};")), Cow::Borrowed)
}

fn attributes(
    element: &quick_xml::events::BytesStart<'_>,
    decoder: quick_xml::encoding::Decoder,
) -> Vec<(String, String)> {
    element
        .attributes()
        .with_checks(false)
        .flatten()
        .map(|a| {
            let key = String::from_utf8_lossy(a.key.as_ref()).to_ascii_lowercase();
            let value = a.decode_and_unescape_value(decoder).map_or_else(
                |_| String::from_utf8_lossy(&a.value).into_owned(),
                Cow::into_owned,
            );
            (key, value)
        })
        .collect()
}

/// The value of the attribute `name` (lower case).
fn attr<'a>(attrs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// Whether `path` is exactly these names.
fn at(path: &[String], names: &[&str]) -> bool {
    path.len() == names.len() && path.iter().zip(names).all(|(a, b)| a == b)
}

/// What the XML write reader has seen so far.
#[derive(Default)]
struct XmlWrite {
    /// The `ignoredMessage` code of `<nowplaying>`, once it opened (0 until a code is read).
    now_playing: Option<u32>,
    /// The counts on `<scrobbles>`, once it opened.
    scrobbles: Option<(Option<u32>, Option<u32>)>,
    /// One code per `<scrobble>`, 0 until its `ignoredMessage` says otherwise.
    plays: Vec<u32>,
}

fn xml_code(attrs: &[(String, String)]) -> Result<u32, String> {
    attr(attrs, "code").map_or(Ok(0), |code| {
        number_text(code.trim()).map_err(|why| format!("ignoredMessage code: {why}"))
    })
}

fn xml_write_answer(text: &str) -> Result<WriteAnswer, String> {
    let mut seen = XmlWrite::default();
    walk_lfm(text, |step| {
        let Step::Open(path, attrs) = step else {
            return Ok(());
        };
        if at(path, &["lfm", "nowplaying"]) {
            seen.now_playing = Some(0);
        } else if at(path, &["lfm", "nowplaying", "ignoredmessage"]) {
            seen.now_playing = Some(xml_code(attrs)?);
        } else if at(path, &["lfm", "scrobbles"]) {
            let count = |name: &str| {
                attr(attrs, name)
                    .map(|n| number_text(n.trim()).map_err(|why| format!("{name}: {why}")))
                    .transpose()
            };
            seen.scrobbles = Some((count("accepted")?, count("ignored")?));
        } else if at(path, &["lfm", "scrobbles", "scrobble"]) {
            seen.plays.push(0);
        } else if at(path, &["lfm", "scrobbles", "scrobble", "ignoredmessage"]) {
            let code = xml_code(attrs)?;
            if let Some(last) = seen.plays.last_mut() {
                *last = code;
            }
        }
        Ok(())
    })?;
    match (seen.now_playing, seen.scrobbles) {
        (Some(code), None) => Ok(now_playing_answer(code)),
        (None, Some((accepted, ignored))) => scrobbles_answer(accepted, ignored, &seen.plays),
        (Some(_), Some(_)) => {
            Err("both <nowplaying> and <scrobbles>: not one write's answer".to_owned())
        }
        (None, None) => Err("neither <nowplaying> nor <scrobbles>: not a write's answer".into()),
    }
}

/// One `<track>` of a recent-tracks list being read.
#[derive(Default)]
struct XmlEntry {
    now_playing: bool,
    /// The text directly inside `<artist>` (the plain form).
    artist_text: Option<String>,
    /// The text of `<artist><name>` (the `extended=1` form).
    artist_name: Option<String>,
    name: Option<String>,
    uts: Option<i64>,
}

impl XmlEntry {
    fn finish(self) -> Result<RecentEntry, String> {
        // Pretty-printed XML puts whitespace around elements: it is layout, not a name.
        let artist = self
            .artist_name
            .or(self.artist_text)
            .ok_or("a track has no artist name")?;
        Ok(RecentEntry {
            artist: artist.trim().to_owned(),
            track: self.name.ok_or("a track has no name")?.trim().to_owned(),
            now_playing: self.now_playing,
            uts: self.uts,
        })
    }
}

fn xml_recent_tracks(text: &str) -> Result<RecentTracks, String> {
    const LIST: [&str; 2] = ["lfm", "recenttracks"];
    const TRACK: [&str; 3] = ["lfm", "recenttracks", "track"];
    const ARTIST: [&str; 4] = ["lfm", "recenttracks", "track", "artist"];
    const ARTIST_NAME: [&str; 5] = ["lfm", "recenttracks", "track", "artist", "name"];
    const NAME: [&str; 4] = ["lfm", "recenttracks", "track", "name"];
    const DATE: [&str; 4] = ["lfm", "recenttracks", "track", "date"];

    let mut list: Option<RecentTracks> = None;
    let mut entry: Option<XmlEntry> = None;
    walk_lfm(text, |step| {
        match step {
            Step::Open(path, attrs) if at(path, &LIST) => {
                list = Some(RecentTracks {
                    user: attr(attrs, "user").map(str::to_owned),
                    entries: Vec::new(),
                });
            }
            Step::Open(path, attrs) if at(path, &TRACK) => {
                entry = Some(XmlEntry {
                    now_playing: attr(attrs, "nowplaying")
                        .is_some_and(|flag| flag.eq_ignore_ascii_case("true")),
                    ..XmlEntry::default()
                });
            }
            Step::Open(path, attrs) => {
                let Some(entry) = entry.as_mut() else {
                    return Ok(());
                };
                if at(path, &ARTIST) {
                    entry.artist_text.get_or_insert_default();
                } else if at(path, &ARTIST_NAME) {
                    entry.artist_name.get_or_insert_default();
                } else if at(path, &NAME) {
                    entry.name.get_or_insert_default();
                } else if at(path, &DATE) {
                    entry.uts = attr(attrs, "uts").map(|t| uts_text(t.trim())).transpose()?;
                }
            }
            Step::Text(path, text) => {
                let Some(entry) = entry.as_mut() else {
                    return Ok(());
                };
                let into = if at(path, &ARTIST) {
                    entry.artist_text.as_mut()
                } else if at(path, &ARTIST_NAME) {
                    entry.artist_name.as_mut()
                } else if at(path, &NAME) {
                    entry.name.as_mut()
                } else {
                    None
                };
                if let Some(into) = into {
                    into.push_str(text);
                }
            }
            Step::Close(path) if at(path, &TRACK) => {
                if let (Some(done), Some(list)) = (entry.take(), list.as_mut()) {
                    list.entries.push(done.finish()?);
                }
            }
            Step::Close(_) => {}
        }
        Ok(())
    })?;
    list.ok_or_else(|| "no <recenttracks>: not a recent-tracks answer".to_owned())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::classify::Outcome;

    fn write(format: Format, body: &str) -> Result<WriteAnswer, String> {
        read_write_answer(format, body.as_bytes())
    }

    fn recent(format: Format, body: &str) -> Result<RecentTracks, String> {
        read_recent_tracks(format, body.as_bytes())
    }

    fn answer(accepted: u32, ignored: u32, ignored_code: Option<u32>) -> WriteAnswer {
        WriteAnswer {
            accepted,
            ignored,
            ignored_code,
        }
    }

    fn entry(artist: &str, track: &str, now_playing: bool, uts: Option<i64>) -> RecentEntry {
        RecentEntry {
            artist: artist.to_owned(),
            track: track.to_owned(),
            now_playing,
            uts,
        }
    }

    const NOW_PLAYING_JSON: &str = r##"{"nowplaying":{"artist":{"corrected":"0","#text":"Cher"},
        "track":{"corrected":"0","#text":"Believe"},"album":{"corrected":"0","#text":""},
        "albumArtist":{"corrected":"0","#text":""},"ignoredMessage":{"code":"0","#text":""}}}"##;

    const SCROBBLE_JSON: &str = r##"{"scrobbles":{"@attr":{"accepted":1,"ignored":0},
        "scrobble":{"artist":{"corrected":"0","#text":"Cher"},"track":{"corrected":"0","#text":"Believe"},
        "timestamp":"1700000000","ignoredMessage":{"code":"0","#text":""}}}}"##;

    const SCROBBLES_JSON: &str = r##"{"scrobbles":{"@attr":{"accepted":"1","ignored":"2"},
        "scrobble":[
          {"track":{"#text":"A"},"timestamp":"1700000000","ignoredMessage":{"code":"0","#text":""}},
          {"track":{"#text":"B"},"timestamp":"1700000001","ignoredMessage":{"code":"3","#text":"Timestamp was too old"}},
          {"track":{"#text":"C"},"timestamp":"1700000002","ignoredMessage":{"code":1,"#text":"Artist was ignored"}}]}}"##;

    const NOW_PLAYING_XML: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<lfm status="ok">
  <nowplaying>
    <track corrected="0">Believe</track>
    <artist corrected="0">Cher</artist>
    <album corrected="0"></album>
    <albumArtist corrected="0"></albumArtist>
    <ignoredMessage code="0"></ignoredMessage>
  </nowplaying>
</lfm>"#;

    const SCROBBLE_XML: &str = r#"<lfm status="ok">
  <scrobbles accepted="0" ignored="1">
    <scrobble>
      <track corrected="0">Believe</track>
      <artist corrected="0">Cher</artist>
      <timestamp>1700000000</timestamp>
      <ignoredMessage code="1">Artist was ignored</ignoredMessage>
    </scrobble>
  </scrobbles>
</lfm>"#;

    const RECENT_JSON: &str = r##"{"recenttracks":{"track":[
        {"artist":{"mbid":"","#text":"Cher"},"name":"Believe","@attr":{"nowplaying":"true"}},
        {"artist":{"#text":"Cher"},"name":"Believe","date":{"uts":"1700000000","#text":"14 Nov 2023, 22:13"}}],
        "@attr":{"user":"canary","page":"1","perPage":"10","totalPages":"1","total":"1"}}}"##;

    const RECENT_XML: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<lfm status="ok">
<recenttracks user="canary" page="1" perPage="10" totalPages="1" total="1">
<track nowplaying="true">
<artist mbid="">Cher</artist>
<name>Believe</name>
<streamable>0</streamable>
<image size="small"></image>
</track>
<track>
<artist mbid="">Simon &amp; Garfunkel</artist>
<name>The Boxer</name>
<date uts="1700000000">14 Nov 2023, 22:13</date>
</track>
</recenttracks>
</lfm>"#;

    #[test]
    fn json_now_playing_is_one_accepted_play_unless_its_code_is_not_zero() {
        assert_eq!(
            write(Format::Json, NOW_PLAYING_JSON),
            Ok(answer(1, 0, None))
        );
        let numeric = NOW_PLAYING_JSON.replace(r#""code":"0""#, r#""code":0"#);
        assert_eq!(write(Format::Json, &numeric), Ok(answer(1, 0, None)));
        let ignored = NOW_PLAYING_JSON.replace(r#""code":"0""#, r#""code":"2""#);
        assert_eq!(write(Format::Json, &ignored), Ok(answer(0, 1, Some(2))));
        let numeric = NOW_PLAYING_JSON.replace(r#""code":"0""#, r#""code":5"#);
        assert_eq!(write(Format::Json, &numeric), Ok(answer(0, 1, Some(5))));
        let lower = ignored.replace("ignoredMessage", "ignoredmessage");
        assert_eq!(write(Format::Json, &lower), Ok(answer(0, 1, Some(2))));
        let bare = r##"{"nowplaying":{"track":{"#text":"Believe"}}}"##;
        assert_eq!(write(Format::Json, bare), Ok(answer(1, 0, None)), "no code");
    }

    #[test]
    fn json_scrobble_reads_one_object_or_an_array_with_counts_as_numbers_or_strings() {
        assert_eq!(write(Format::Json, SCROBBLE_JSON), Ok(answer(1, 0, None)));
        let ignored = SCROBBLE_JSON
            .replace(
                r#""accepted":1,"ignored":0"#,
                r#""accepted":"0","ignored":"1""#,
            )
            .replace(r#""code":"0""#, r#""code":"4""#);
        assert_eq!(write(Format::Json, &ignored), Ok(answer(0, 1, Some(4))));
        assert_eq!(
            write(Format::Json, SCROBBLES_JSON),
            Ok(answer(1, 2, Some(3))),
            "the first non-zero code, whatever its type"
        );
        let array_of_one = r##"{"scrobbles":{"@attr":{"accepted":1,"ignored":0},
            "scrobble":[{"ignoredMessage":{"code":"0","#text":""}}]}}"##;
        assert_eq!(write(Format::Json, array_of_one), Ok(answer(1, 0, None)));
        let uncounted = r##"{"scrobbles":{"scrobble":[{"ignoredMessage":{"code":"0"}},
            {"ignoredmessage":{"code":"1"}}]}}"##;
        assert_eq!(
            write(Format::Json, uncounted),
            Ok(answer(1, 1, Some(1))),
            "no @attr: the plays are counted"
        );
    }

    #[test]
    fn xml_write_answers_are_read_from_attributes_in_either_casing() {
        assert_eq!(write(Format::Xml, NOW_PLAYING_XML), Ok(answer(1, 0, None)));
        let ignored = NOW_PLAYING_XML.replace(
            r#"<ignoredMessage code="0"></ignoredMessage>"#,
            r#"<ignoredmessage code="1">Artist was ignored</ignoredmessage>"#,
        );
        assert_eq!(write(Format::Xml, &ignored), Ok(answer(0, 1, Some(1))));
        assert_eq!(write(Format::Xml, SCROBBLE_XML), Ok(answer(0, 1, Some(1))));
        let accepted = r#"<lfm status="ok"><scrobbles accepted="1" ignored="0"><scrobble>
            <timestamp>1700000000</timestamp><ignoredMessage code="0"/></scrobble></scrobbles></lfm>"#;
        assert_eq!(write(Format::Xml, accepted), Ok(answer(1, 0, None)));
        let batch = r#"<lfm status="ok"><Scrobbles Accepted="1" Ignored="2">
            <scrobble><ignoredMessage code="0"></ignoredMessage></scrobble>
            <scrobble><IgnoredMessage code="5">Daily scrobble limit exceeded</IgnoredMessage></scrobble>
            <scrobble><ignoredmessage code="1"></ignoredmessage></scrobble>
            </Scrobbles></lfm>"#;
        assert_eq!(write(Format::Xml, batch), Ok(answer(1, 2, Some(5))));
    }

    #[test]
    fn what_is_not_a_write_answer_is_an_err_with_its_reason() {
        let cases: [(Format, &str, &str); 12] = [
            (
                Format::Json,
                r#"{"error":29,"message":"x"}"#,
                "error payload",
            ),
            (Format::Json, r#"{"user":{"name":"canary"}}"#, "neither"),
            (Format::Json, "[1]", "not an object"),
            (Format::Json, "", "empty"),
            (
                Format::Json,
                "<html><body>502</body></html>",
                "not well-formed",
            ),
            (
                Format::Json,
                r#"{"nowplaying":{"ignoredMessage":{"code":"x"}}}"#,
                "count",
            ),
            (
                Format::Json,
                r#"{"scrobbles":{"@attr":{"accepted":-1,"ignored":0}}}"#,
                "count",
            ),
            (
                Format::Json,
                r#"{"scrobbles":{"@attr":{"accepted":1}}}"#,
                "only one",
            ),
            (Format::Json, r#"{"scrobbles":{}}"#, "no play"),
            (
                Format::Xml,
                r#"<lfm status="failed"><error code="29">x</error></lfm>"#,
                "failed",
            ),
            (Format::Xml, r#"<lfm status="ok"></lfm>"#, "neither"),
            (
                Format::Xml,
                r#"<lfm status="ok"><scrobbles accepted="1.0" ignored="0"/></lfm>"#,
                "count",
            ),
        ];
        for (format, body, why) in cases {
            let err = write(format, body).expect_err(body);
            assert!(err.contains(why), "{body}: {err}");
        }
        assert!(read_write_answer(Format::Json, b"{\"nowplaying\":\xff}").is_err());
        assert!(write(Format::Xml, &NOW_PLAYING_XML[..NOW_PLAYING_XML.len() - 7]).is_err());
    }

    #[test]
    fn json_recent_tracks_read_the_user_and_every_entry() {
        let got = recent(Format::Json, RECENT_JSON).unwrap();
        assert_eq!(got.user.as_deref(), Some("canary"));
        assert_eq!(
            got.entries,
            [
                entry("Cher", "Believe", true, None),
                entry("Cher", "Believe", false, Some(1_700_000_000)),
            ]
        );
        let one = r##"{"recenttracks":{"track":{"artist":{"#text":"Cher"},"name":"Believe",
            "date":{"uts":1700000000}},"@attr":{"user":"canary"}}}"##;
        let got = recent(Format::Json, one).unwrap();
        assert_eq!(
            got.entries,
            [entry("Cher", "Believe", false, Some(1_700_000_000))]
        );
        let extended = r##"{"recenttracks":{"track":[{"artist":{"url":"u","name":"Cher",
            "image":[],"mbid":""},"name":"Believe","@attr":{"nowplaying":"true"},"loved":"0"}],
            "@attr":{"user":"canary"}}}"##;
        let got = recent(Format::Json, extended).unwrap();
        assert_eq!(got.entries, [entry("Cher", "Believe", true, None)]);
        for empty in [
            r#"{"recenttracks":{"track":[],"@attr":{"user":"canary"}}}"#,
            r#"{"recenttracks":{"@attr":{"user":"canary"}}}"#,
            r#"{"recenttracks":{"track":"","@attr":{"user":"canary"}}}"#,
        ] {
            let got = recent(Format::Json, empty).unwrap();
            assert_eq!(got.user.as_deref(), Some("canary"), "{empty}");
            assert!(got.entries.is_empty(), "{empty}");
        }
        let anonymous = recent(Format::Json, r#"{"recenttracks":{"track":[]}}"#).unwrap();
        assert_eq!(anonymous.user, None);
    }

    #[test]
    fn xml_recent_tracks_read_the_user_and_every_entry() {
        let got = recent(Format::Xml, RECENT_XML).unwrap();
        assert_eq!(got.user.as_deref(), Some("canary"));
        assert_eq!(
            got.entries,
            [
                entry("Cher", "Believe", true, None),
                entry("Simon & Garfunkel", "The Boxer", false, Some(1_700_000_000)),
            ]
        );
        let extended = r#"<lfm status="ok"><recenttracks user="a&amp;b">
            <track nowplaying="true"><artist><url>u</url><name>Cher</name><mbid></mbid></artist>
            <name>Believe</name></track></recenttracks></lfm>"#;
        let got = recent(Format::Xml, extended).unwrap();
        assert_eq!(got.user.as_deref(), Some("a&b"));
        assert_eq!(got.entries, [entry("Cher", "Believe", true, None)]);
        let empty = r#"<lfm status="ok"><recenttracks user="canary" total="0"/></lfm>"#;
        let got = recent(Format::Xml, empty).unwrap();
        assert!(got.entries.is_empty());
    }

    #[test]
    fn a_read_back_that_is_not_a_list_of_tracks_is_an_err() {
        let cases: [(Format, &str, &str); 8] = [
            (
                Format::Json,
                r#"{"user":{"name":"canary"}}"#,
                "no recenttracks",
            ),
            (
                Format::Json,
                r#"{"error":6,"message":"User not found"}"#,
                "error payload",
            ),
            (
                Format::Json,
                r#"{"recenttracks":{"track":[{"name":"x"}]}}"#,
                "no artist",
            ),
            (
                Format::Json,
                r##"{"recenttracks":{"track":[{"artist":{"#text":"x"}}]}}"##,
                "no name",
            ),
            (
                Format::Json,
                r##"{"recenttracks":{"track":{"artist":"a","name":"b","date":{"uts":"soon"}}}}"##,
                "not a time",
            ),
            (
                Format::Json,
                r#"{"recenttracks":{"track":[7]}}"#,
                "not an object",
            ),
            (
                Format::Xml,
                r#"<lfm status="ok"><user name="x"/></lfm>"#,
                "no <recenttracks>",
            ),
            (
                Format::Xml,
                r#"<lfm status="ok"><recenttracks><track><name>x</name></track></recenttracks></lfm>"#,
                "no artist",
            ),
        ];
        for (format, body, why) in cases {
            let err = recent(format, body).expect_err(body);
            assert!(err.contains(why), "{body}: {err}");
        }
    }

    const KEY_LIMIT: &str = "Rate Limit Exceeded - This application has made too many requests in \
         a short period. If this is your API key, see https://www.last.fm/api/tos#4.4 for \
         information about raising the limit.";
    const USER_LIMIT: &str =
        "Rate Limit Exceeded - Too many scrobbles in a short period. Please try again later.";
    const IP_LIMIT: &str = "Your IP has made too many requests in a short period";

    fn api_error(code: u32, status: u16, message: &str) -> Classification {
        Classification {
            http_status: Some(status),
            error_code: Some(code),
            detail: Some(message.to_owned()),
            ..Classification::new(Outcome::ApiError)
        }
    }

    #[test]
    fn the_code_decides_a_rate_limit_and_the_message_its_scope() {
        assert_eq!(
            rate_limit_scope(&api_error(29, 200, KEY_LIMIT)),
            Some(RateLimitScope::Key)
        );
        assert_eq!(
            rate_limit_scope(&api_error(29, 429, USER_LIMIT)),
            Some(RateLimitScope::User)
        );
        assert_eq!(
            rate_limit_scope(&api_error(29, 200, IP_LIMIT)),
            Some(RateLimitScope::Ip)
        );
        assert_eq!(
            rate_limit_scope(&api_error(29, 200, &USER_LIMIT.to_uppercase())),
            Some(RateLimitScope::User)
        );
        assert_eq!(
            rate_limit_scope(&api_error(29, 200, "Rate Limit Exceeded")),
            Some(RateLimitScope::Unknown)
        );
        let no_message = Classification {
            detail: None,
            ..api_error(29, 200, "")
        };
        assert_eq!(rate_limit_scope(&no_message), Some(RateLimitScope::Unknown));
        // A 429 without a payload: the detail is the monitor's words, never read for a scope.
        let bare = Classification {
            http_status: Some(429),
            detail: Some("the body is an HTML page; your IP too many scrobbles".to_owned()),
            ..Classification::new(Outcome::HttpError)
        };
        assert_eq!(rate_limit_scope(&bare), Some(RateLimitScope::Unknown));
        assert_eq!(
            rate_limit_scope(&api_error(8, 429, IP_LIMIT)),
            Some(RateLimitScope::Ip),
            "a 429 is a rate limit whatever the code"
        );
        for not_limited in [
            api_error(8, 200, USER_LIMIT),
            api_error(26, 403, KEY_LIMIT),
            api_error(11, 503, "too many"),
        ] {
            assert_eq!(rate_limit_scope(&not_limited), None, "{not_limited:?}");
        }
        assert_eq!(rate_limit_scope(&Classification::success(200)), None);
        assert_eq!(
            RateLimitScope::ALL.map(RateLimitScope::as_label),
            ["key", "user", "ip", "unknown"]
        );
    }

    /// Both readers in both formats over `body`: whatever it is, an answer or an `Err`.
    fn read_everything(body: &[u8]) {
        for format in [Format::Json, Format::Xml] {
            let _ = read_write_answer(format, body);
            let _ = read_recent_tracks(format, body);
        }
    }

    #[test]
    fn no_truncation_of_a_sample_panics_and_none_reads_as_a_complete_answer() {
        let samples = [
            NOW_PLAYING_JSON,
            SCROBBLE_JSON,
            SCROBBLES_JSON,
            NOW_PLAYING_XML,
            SCROBBLE_XML,
            RECENT_JSON,
            RECENT_XML,
        ];
        for sample in samples {
            let bytes = sample.as_bytes();
            for cut in 0..bytes.len() {
                read_everything(&bytes[..cut]);
                read_everything(&bytes[cut..]);
            }
        }
        // A cut-off body is never taken for a whole one.
        for cut in 0..SCROBBLE_XML.trim_end().len() {
            assert!(write(Format::Xml, &SCROBBLE_XML[..cut]).is_err(), "{cut}");
        }
        for cut in 0..RECENT_JSON.len() {
            assert!(recent(Format::Json, &RECENT_JSON[..cut]).is_err(), "{cut}");
        }
    }

    #[test]
    fn deep_nesting_is_refused_or_walked_without_recursion() {
        let depth = 100_000;
        let json = format!("{}{}", r#"{"scrobbles":"#.repeat(depth), "}".repeat(depth));
        assert!(write(Format::Json, &json).is_err());
        assert!(recent(Format::Json, &json).is_err());
        let xml = format!(
            "<lfm status=\"ok\">{}{}</lfm>",
            "<recenttracks>".repeat(depth),
            "</recenttracks>".repeat(depth)
        );
        assert!(write(Format::Xml, &xml).is_err());
        assert!(recent(Format::Xml, &xml).is_ok(), "the outer list, empty");
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 256,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Arbitrary bytes, and arbitrary edits of real shapes, never panic.
        #[test]
        fn readers_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..256),
            sample in 0_usize..7,
            at in any::<prop::sample::Index>(),
            insert in "[<>\"{}\\[\\]&;:,a-z0-9 /=#@-]{0,8}",
        ) {
            read_everything(&bytes);
            let samples = [
                NOW_PLAYING_JSON, SCROBBLE_JSON, SCROBBLES_JSON, NOW_PLAYING_XML, SCROBBLE_XML,
                RECENT_JSON, RECENT_XML,
            ];
            let mut edited = samples[sample].as_bytes().to_vec();
            let at = at.index(edited.len() + 1);
            edited.splice(at..at, insert.bytes());
            read_everything(&edited);
        }
    }
}

//! What the simulated API says: the method table, success bodies, error payloads and their default
//! messages and statuses, and the edge proxy's HTML page.
//!
//! Success bodies are written once, as the JSON the real API sends (counts as strings, `#text` for
//! element text, `@attr` for list attributes), and the XML is derived from them with the same
//! convention the API's own converter follows, so both formats always say the same thing. Like the
//! real API, the XML of search results uses the `opensearch:` prefix without declaring it.

use serde_json::{Map, Value, json};

use super::http::{Params, reason_phrase};
use super::plays::{Play, Track};
use crate::config::Api;

/// The response format a request asked for: JSON with `format=json`, else XML.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Json,
    Xml,
}

impl Format {
    pub(crate) fn of(params: &Params) -> Self {
        match params.get("format") {
            Some(f) if f.eq_ignore_ascii_case("json") => Self::Json,
            _ => Self::Xml,
        }
    }

    pub(crate) fn content_type(self) -> &'static str {
        self.content_type_of(Api::Lastfm)
    }

    /// The type each service labels the format with: GNU FM's PHP sends a bare `text/xml`,
    /// ListenBrainz's Flask `application/xml`.
    pub(crate) fn content_type_of(self, api: Api) -> &'static str {
        match (self, api) {
            (Self::Json, Api::Lastfm | Api::Librefm | Api::Listenbrainz) => {
                "application/json; charset=utf-8"
            }
            (Self::Xml, Api::Lastfm) => "text/xml; charset=utf-8",
            (Self::Xml, Api::Librefm) => "text/xml",
            (Self::Xml, Api::Listenbrainz) => "application/xml; charset=utf-8",
        }
    }
}

/// A method the simulated API knows.
#[derive(Debug)]
pub(crate) struct Method {
    pub(crate) name: &'static str,
    /// Parameters without which the API answers error 6.
    pub(crate) required: &'static [&'static str],
    shape: Shape,
}

impl Method {
    /// Writes need a signature and a session key.
    pub(crate) fn is_write(&self) -> bool {
        matches!(
            self.shape,
            Shape::NowPlaying | Shape::Scrobble | Shape::Done
        )
    }

    /// Which part of the write path the method is, if any.
    pub(crate) fn write_path(&self) -> Option<WritePath> {
        match self.shape {
            Shape::NowPlaying => Some(WritePath::NowPlaying),
            Shape::Scrobble => Some(WritePath::Scrobble),
            Shape::RecentTracks => Some(WritePath::ReadBack),
            Shape::UserInfo
            | Shape::ArtistInfo
            | Shape::AlbumInfo
            | Shape::TrackSearch
            | Shape::ChartTopArtists
            | Shape::TagInfo
            | Shape::GeoTopArtists
            | Shape::LibraryArtists
            | Shape::Done
            | Shape::Generic(_) => None,
        }
    }
}

/// The methods that write plays, and the one that reads them back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WritePath {
    NowPlaying,
    Scrobble,
    ReadBack,
}

#[derive(Debug, Clone, Copy)]
enum Shape {
    UserInfo,
    RecentTracks,
    ArtistInfo,
    AlbumInfo,
    TrackSearch,
    ChartTopArtists,
    TagInfo,
    GeoTopArtists,
    LibraryArtists,
    NowPlaying,
    Scrobble,
    /// Other writes (`track.love`, …) answer an empty `<lfm status="ok">` / `{}`.
    Done,
    /// Methods the probes do not use: a plausible root element and nothing in it.
    Generic(&'static str),
}

const fn m(name: &'static str, required: &'static [&'static str], shape: Shape) -> Method {
    Method {
        name,
        required,
        shape,
    }
}

const METHODS: &[Method] = &[
    // `user` is required by user.getInfo unless the request is signed with a session key.
    m("user.getInfo", &[], Shape::UserInfo),
    m("user.getRecentTracks", &["user"], Shape::RecentTracks),
    m("artist.getInfo", &["artist"], Shape::ArtistInfo),
    m("album.getInfo", &["artist", "album"], Shape::AlbumInfo),
    m("track.search", &["track"], Shape::TrackSearch),
    m("chart.getTopArtists", &[], Shape::ChartTopArtists),
    m("tag.getInfo", &["tag"], Shape::TagInfo),
    m("geo.getTopArtists", &["country"], Shape::GeoTopArtists),
    m("library.getArtists", &["user"], Shape::LibraryArtists),
    m(
        "track.updateNowPlaying",
        &["artist", "track"],
        Shape::NowPlaying,
    ),
    // Required parameters are checked by the write path: a batch names them `artist[0]`, ….
    m("track.scrobble", &[], Shape::Scrobble),
    m("track.love", &["artist", "track"], Shape::Done),
    m("track.unlove", &["artist", "track"], Shape::Done),
    m("track.addTags", &["artist", "track", "tags"], Shape::Done),
    m("artist.getSimilar", &[], Shape::Generic("similarartists")),
    m("artist.getTopAlbums", &[], Shape::Generic("topalbums")),
    m("artist.getTopTracks", &[], Shape::Generic("toptracks")),
    m("artist.getTopTags", &[], Shape::Generic("toptags")),
    m("artist.search", &[], Shape::Generic("results")),
    m("album.search", &[], Shape::Generic("results")),
    m("track.getInfo", &[], Shape::Generic("track")),
    m("track.getSimilar", &[], Shape::Generic("similartracks")),
    m("user.getTopArtists", &[], Shape::Generic("topartists")),
    m("user.getTopTracks", &[], Shape::Generic("toptracks")),
    m("user.getLovedTracks", &[], Shape::Generic("lovedtracks")),
    m("user.getFriends", &[], Shape::Generic("friends")),
    m("tag.getTopArtists", &[], Shape::Generic("topartists")),
    m("chart.getTopTracks", &[], Shape::Generic("tracks")),
    m("geo.getTopTracks", &[], Shape::Generic("tracks")),
];

/// Looks a method up the way Last.fm does, ignoring ASCII case.
pub(crate) fn lookup(name: &str) -> Option<&'static Method> {
    METHODS.iter().find(|m| m.name.eq_ignore_ascii_case(name))
}

/// The user the session key belongs to, answered by signed `user.getInfo` without `user`.
pub(crate) const SESSION_USER: &str = "simuser";

const XML_DECL: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
const ARTISTS: [&str; 5] = ["Cher", "Radiohead", "Taylor Swift", "The Weeknd", "Björk"];

/// A realistic success body; an unknown method gets the empty success a write gets.
pub(crate) fn success_body(method: Option<&Method>, params: &Params, format: Format) -> String {
    let (root, value) = match method.map(|m| m.shape) {
        None | Some(Shape::Done) => return ok_body(format),
        Some(shape) => success_value(shape, params),
    };
    wrap(root, &value, format)
}

fn ok_body(format: Format) -> String {
    match format {
        Format::Json => "{}".to_owned(),
        Format::Xml => format!("{XML_DECL}<lfm status=\"ok\">\n</lfm>\n"),
    }
}

#[expect(
    clippy::too_many_lines,
    reason = "a table: the success payload of each simulated method's shape"
)]
fn success_value(shape: Shape, params: &Params) -> (&'static str, Value) {
    let param = |name: &str, default: &'static str| -> String {
        params
            .get(name)
            .cloned()
            .unwrap_or_else(|| default.to_owned())
    };
    let count = params
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .map_or(ARTISTS.len(), |l| l.clamp(1, ARTISTS.len()));
    let page = |extra: Value| {
        let mut attr = json!({"page": "1", "perPage": count.to_string(), "totalPages": "1000", "total": "5000"});
        merge(&mut attr, extra);
        attr
    };
    let user = param("user", SESSION_USER);
    let artist = param("artist", "Cher");
    let list = |extra: Value| -> Vec<Value> {
        ARTISTS[..count]
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let mut entry = json!({"name": name, "mbid": "", "url": music_url(name), "streamable": "0", "image": images()});
                merge(&mut entry, extra.clone());
                merge(&mut entry, json!({"playcount": (9_000_000 - i * 1000).to_string()}));
                entry
            })
            .collect()
    };
    match shape {
        Shape::UserInfo => (
            "user",
            json!({
                "name": user, "realname": "Simulated User", "url": format!("https://www.last.fm/user/{user}"),
                "image": images(), "country": "None", "age": "0", "gender": "n", "subscriber": "0",
                "playcount": "12345", "artist_count": "321", "track_count": "2345", "album_count": "456",
                "playlists": "0", "bootstrap": "0", "type": "user",
                "registered": {"unixtime": "1262304000", "#text": 1_262_304_000},
            }),
        ),
        Shape::RecentTracks => (
            "recenttracks",
            json!({
                "track": recent_entries(None, &[], params),
                "@attr": page(json!({"user": user})),
            }),
        ),
        Shape::ArtistInfo => (
            "artist",
            json!({
                "name": artist, "mbid": "bfcc6d75-a6a5-4bc6-8282-47aec8531818", "url": music_url(&artist),
                "image": images(), "streamable": "0", "ontour": "0",
                "stats": {"listeners": "3271010", "playcount": "61553712"},
                "similar": {"artist": []},
                "tags": {"tag": [{"name": "pop", "url": "https://www.last.fm/tag/pop"}]},
                "bio": {"published": "01 Jan 2010, 00:00", "summary": "A simulated biography.", "content": "A simulated biography."},
            }),
        ),
        Shape::AlbumInfo => {
            let tracks: Vec<Value> = ["Believe", "The Power", "Runaway"]
                .iter()
                .enumerate()
                .map(|(i, name)| json!({
                    "name": name, "duration": 239, "url": format!("{}/_/{}", music_url(&artist), encode(name)),
                    "streamable": {"fulltrack": "0", "#text": "0"}, "@attr": {"rank": i + 1},
                    "artist": {"name": artist, "mbid": "", "url": music_url(&artist)},
                }))
                .collect();
            (
                "album",
                json!({
                    "name": param("album", "Believe"), "artist": artist, "mbid": "", "url": music_url(&artist),
                    "image": images(), "listeners": "861547", "playcount": "5541302",
                    "tags": {"tag": [{"name": "pop", "url": "https://www.last.fm/tag/pop"}]},
                    "tracks": {"track": tracks},
                }),
            )
        }
        Shape::TrackSearch => {
            let track = param("track", "Believe");
            (
                "results",
                json!({
                    "opensearch:Query": {"#text": "", "role": "request", "searchTerms": track, "startPage": "1"},
                    "opensearch:totalResults": "68943", "opensearch:startIndex": "0",
                    "opensearch:itemsPerPage": count.to_string(),
                    "trackmatches": {"track": [{
                        "name": track, "artist": "Cher", "url": "https://www.last.fm/music/Cher/_/Believe",
                        "streamable": "FIXME", "listeners": "1052331", "image": images(), "mbid": "",
                    }]},
                    "@attr": {"for": track},
                }),
            )
        }
        Shape::ChartTopArtists => (
            "artists",
            json!({
                "artist": list(json!({"listeners": "4000000"})), "@attr": page(json!({})),
            }),
        ),
        // tag.getInfo is the one place the real JSON has numbers, not strings.
        Shape::TagInfo => (
            "tag",
            json!({
                "name": param("tag", "rock"), "total": 4_113_466, "reach": 400_848,
                "wiki": {"summary": "A simulated tag.", "content": "A simulated tag."},
            }),
        ),
        Shape::GeoTopArtists => (
            "topartists",
            json!({
                "artist": list(json!({"listeners": "1500000"})),
                "@attr": page(json!({"country": param("country", "Germany")})),
            }),
        ),
        Shape::LibraryArtists => (
            "artists",
            json!({
                "artist": list(json!({"tagcount": "0"})), "@attr": page(json!({"user": user})),
            }),
        ),
        Shape::NowPlaying | Shape::Scrobble => {
            let track = Track {
                artist,
                name: param("track", "Believe"),
                album: param("album", ""),
                album_artist: param("albumArtist", ""),
            };
            if matches!(shape, Shape::Scrobble) {
                let timestamp = param("timestamp", "").parse().unwrap_or(0);
                (
                    "scrobbles",
                    scrobbles_value(&[(Play { track, timestamp }, 0)]),
                )
            } else {
                ("nowplaying", now_playing_value(&track, 0))
            }
        }
        Shape::Generic(root) => (root, json!({"@attr": page(json!({}))})),
        Shape::Done => ("", json!({})),
    }
}

/// The answer to `track.updateNowPlaying`: the track as written and its `ignoredMessage` code.
pub(crate) fn now_playing_body(track: &Track, ignored: u8, format: Format) -> String {
    wrap("nowplaying", &now_playing_value(track, ignored), format)
}

/// The answer to `track.scrobble`: one play is an object, several an array, as Last.fm sends them.
pub(crate) fn scrobbles_body(plays: &[(Play, u8)], format: Format) -> String {
    wrap("scrobbles", &scrobbles_value(plays), format)
}

/// `user.getRecentTracks` for `user`: the track playing now, then `plays` (newest first), then the
/// canned history every simulated user has, `limit` of them (the now playing is extra, as on Last.fm).
pub(crate) fn recent_tracks_body(
    user: &str,
    now_playing: Option<&Track>,
    plays: &[&Play],
    params: &Params,
    format: Format,
) -> String {
    let (_, mut value) = success_value(Shape::RecentTracks, params);
    value["track"] = Value::Array(recent_entries(now_playing, plays, params));
    value["@attr"]["user"] = Value::String(user.to_owned());
    wrap("recenttracks", &value, format)
}

fn wrap(root: &str, value: &Value, format: Format) -> String {
    match format {
        Format::Json => json!({ root: value }).to_string(),
        Format::Xml => {
            let mut out = format!("{XML_DECL}<lfm status=\"ok\">\n");
            xml_element(&mut out, root, value);
            out.push_str("</lfm>\n");
            out
        }
    }
}

/// The official scrobbling guide's meaning of each `ignoredMessage` code (last.fm/api/scrobbling).
fn ignored_text(code: u8) -> &'static str {
    match code {
        0 => "",
        1 => "Artist was ignored",
        2 => "Track was ignored",
        3 => "Timestamp was too old",
        4 => "Timestamp was too new",
        5 => "Daily scrobble limit exceeded",
        _ => "Ignored",
    }
}

fn corrected(text: &str) -> Value {
    json!({"corrected": "0", "#text": text})
}

fn ignored_message(code: u8) -> Value {
    json!({"code": code.to_string(), "#text": ignored_text(code)})
}

fn now_playing_value(track: &Track, ignored: u8) -> Value {
    json!({
        "artist": corrected(&track.artist), "track": corrected(&track.name),
        "album": corrected(&track.album), "albumArtist": corrected(&track.album_artist),
        "ignoredMessage": ignored_message(ignored),
    })
}

fn scrobbles_value(plays: &[(Play, u8)]) -> Value {
    let entries: Vec<Value> = plays
        .iter()
        .map(|(play, ignored)| {
            let mut entry = now_playing_value(&play.track, *ignored);
            merge(&mut entry, json!({"timestamp": play.timestamp.to_string()}));
            entry
        })
        .collect();
    let ignored = plays.iter().filter(|(_, code)| *code != 0).count();
    let attr = json!({"accepted": plays.len() - ignored, "ignored": ignored});
    match <[Value; 1]>::try_from(entries) {
        Ok([one]) => json!({"@attr": attr, "scrobble": one}),
        Err(many) => json!({"@attr": attr, "scrobble": many}),
    }
}

/// Every simulated user listened to this once: the history behind whatever they scrobble.
fn canned_play() -> Play {
    Play {
        track: Track {
            artist: "Cher".to_owned(),
            name: "Believe".to_owned(),
            album: "Believe".to_owned(),
            album_artist: String::new(),
        },
        timestamp: 1_700_000_000,
    }
}

fn recent_entries(now_playing: Option<&Track>, plays: &[&Play], params: &Params) -> Vec<Value> {
    // Last.fm's default page is 50 and at most 200; the history ends with the canned play.
    let limit = params
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .map_or(50, |l| l.clamp(1, 200));
    let canned = canned_play();
    let played = plays.iter().copied().chain(std::iter::once(&canned));
    let mut entries: Vec<Value> = now_playing
        .map(|track| {
            let mut entry = recent_entry(track);
            merge(&mut entry, json!({"@attr": {"nowplaying": "true"}}));
            entry
        })
        .into_iter()
        .collect();
    entries.extend(played.take(limit).map(|play| {
        let mut entry = recent_entry(&play.track);
        let when = i64::try_from(play.timestamp)
            .ok()
            .and_then(|uts| chrono::DateTime::from_timestamp(uts, 0))
            .map(|at| at.format("%d %b %Y, %H:%M").to_string())
            .unwrap_or_default();
        merge(
            &mut entry,
            json!({"date": {"uts": play.timestamp.to_string(), "#text": when}}),
        );
        entry
    }));
    entries
}

fn recent_entry(track: &Track) -> Value {
    json!({
        "artist": {"mbid": "", "#text": track.artist}, "album": {"mbid": "", "#text": track.album},
        "name": track.name, "mbid": "", "streamable": "0", "image": images(),
        "url": format!("{}/_/{}", music_url(&track.artist), encode(&track.name)),
    })
}

fn merge(into: &mut Value, extra: Value) {
    if let (Value::Object(into), Value::Object(extra)) = (into, extra) {
        into.extend(extra);
    }
}

fn images() -> Value {
    let sizes = ["small", "medium", "large", "extralarge"];
    Value::Array(
        sizes
            .iter()
            .map(|s| json!({"#text": "", "size": s}))
            .collect(),
    )
}

fn music_url(artist: &str) -> String {
    format!("https://www.last.fm/music/{}", encode(artist))
}

fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// Writes `value` as the element `name`, inverting the API's XML-to-JSON convention: an object with
/// `#text` is an element whose other members are attributes; `@attr` members are attributes; arrays
/// repeat the element; everything else is a child element.
fn xml_element(out: &mut String, name: &str, value: &Value) {
    match value {
        Value::Array(items) => items.iter().for_each(|item| xml_element(out, name, item)),
        Value::Object(map) => {
            let text = map.get("#text");
            let listed = map.get("@attr").and_then(Value::as_object);
            let attrs = listed.into_iter().flat_map(Map::iter).chain(
                map.iter()
                    .filter(|(k, _)| text.is_some() && k.as_str() != "#text"),
            );
            out.push('<');
            out.push_str(name);
            for (k, v) in attrs {
                out.push_str(&format!(" {k}=\"{}\"", escape(&scalar(v))));
            }
            out.push('>');
            match text {
                Some(t) => out.push_str(&escape(&scalar(t))),
                None => {
                    out.push('\n');
                    for (k, v) in map.iter().filter(|(k, _)| k.as_str() != "@attr") {
                        xml_element(out, k, v);
                    }
                }
            }
            out.push_str(&format!("</{name}>\n"));
        }
        scalar_value @ (Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_)) => {
            let text = escape(&scalar(scalar_value));
            out.push_str(&format!("<{name}>{text}</{name}>\n"));
        }
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other @ (Value::Bool(_) | Value::Number(_) | Value::Array(_) | Value::Object(_)) => {
            other.to_string()
        }
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The Last.fm error payload in the requested format.
pub(crate) fn error_body(code: u32, message: &str, format: Format) -> String {
    match format {
        Format::Json => json!({"error": code, "message": message}).to_string(),
        Format::Xml => format!(
            "{XML_DECL}<lfm status=\"failed\">\n<error code=\"{code}\">{}</error>\n</lfm>\n",
            escape(message)
        ),
    }
}

/// The live API's wording for each error code.
pub(crate) fn default_message(code: u32) -> &'static str {
    match code {
        2 => "Invalid service - This service does not exist",
        3 => "Invalid Method - No method with that name in this package",
        4 => "Authentication Failed - You do not have permissions to access the service",
        5 => "Invalid format - This service doesn't exist in that format",
        6 => "User not found",
        7 => "Invalid resource specified",
        8 => "Operation failed - Most likely the backend service failed. Please try again.",
        9 => "Invalid session key - Please re-authenticate",
        10 => "Invalid API key - You must be granted a valid key by last.fm",
        11 => "Service Offline - This service is temporarily offline. Try again later.",
        13 => "Invalid method signature supplied",
        14 => "Unauthorized Token - This token has not been authorized",
        15 => "This token has expired",
        16 => "There was a temporary error processing your request. Please try again",
        17 => "Login: User required to be logged in",
        26 => {
            "Suspended API key - Access for your account has been suspended, please contact Last.fm"
        }
        27 => "Deprecated - This type of request is no longer supported",
        29 => "Rate Limit Exceeded - Your IP has made too many requests in a short period",
        _ => "Unknown error",
    }
}

/// The message for error 6 when a required parameter is missing.
pub(crate) const MISSING_PARAMETER: &str =
    "Invalid parameters - Your request is missing a required parameter";

/// The status the API is documented to send with `code` for `method` (docs/LASTFM-API.md §2).
pub(crate) fn default_status(code: u32, method: Option<&str>) -> u16 {
    let family = method
        .and_then(|m| m.split_once('.'))
        .map(|(family, _)| family.to_ascii_lowercase());
    match code {
        29 => 429,
        4 | 9 | 10 | 17 | 26 => 403,
        8 | 11 | 16 => 503,
        6 => match family.as_deref() {
            Some("user" | "artist") => 404,
            Some("album" | "track" | "tag" | "geo") => 200,
            _ => 400,
        },
        _ => 400,
    }
}

/// The Google front-end's error page, as the API's load balancer sends it.
pub(crate) fn html_page(status: u16) -> String {
    // The real page says "Server Error" for every 5xx.
    let reason = if status >= 500 {
        "Server Error"
    } else {
        reason_phrase(status)
    };
    format!(
        "<html><head>\n<meta http-equiv=\"content-type\" content=\"text/html;charset=utf-8\">\n\
         <title>{status} {reason}</title>\n</head>\n<body text=#000000 bgcolor=#ffffff>\n\
         <h1>Error: {reason}</h1>\n\
         <h2>The server encountered a temporary error and could not complete your request.\
         <p>Please try again in 30 seconds.</h2>\n<h2></h2>\n</body></html>\n"
    )
}

/// The error page of an nginx in front of a compatible service (Libre.fm, ListenBrainz).
pub(crate) fn nginx_page(status: u16) -> String {
    let reason = reason_phrase(status);
    format!(
        "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n\
         <center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n\
         </body>\r\n</html>\r\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn every_method_has_a_one_key_json_success_and_an_ok_xml() {
        let p = params(&[("user", "canary"), ("limit", "1")]);
        for method in METHODS {
            let json: Value = serde_json::from_str(&success_body(Some(method), &p, Format::Json))
                .unwrap_or_else(|e| panic!("{}: {e}", method.name));
            let keys = json.as_object().map_or(usize::MAX, Map::len);
            assert!(keys <= 1, "{}: {json}", method.name);
            let xml = success_body(Some(method), &p, Format::Xml);
            assert!(xml.contains("<lfm status=\"ok\">"), "{}", method.name);
            assert!(xml.trim_end().ends_with("</lfm>"), "{}", method.name);
        }
    }

    #[test]
    fn probe_bodies_carry_what_the_probes_check() {
        let body = |name: &str, p: &[(&str, &str)]| -> Value {
            let text = success_body(lookup(name), &params(p), Format::Json);
            serde_json::from_str(&text).unwrap()
        };
        let v = body("user.getinfo", &[("user", "canary")]);
        assert_eq!(v["user"]["name"], "canary");
        let v = body(
            "user.getRecentTracks",
            &[("user", "canary"), ("limit", "1")],
        );
        assert_eq!(v["recenttracks"]["@attr"]["user"], "canary");
        assert_eq!(v["recenttracks"]["track"].as_array().map(Vec::len), Some(1));
        assert_eq!(
            body("artist.getInfo", &[("artist", "Cher")])["artist"]["name"],
            "Cher"
        );
        assert!(body("album.getInfo", &[])["album"]["tracks"]["track"][0].is_object());
        let v = body("track.search", &[("track", "Believe")]);
        assert_eq!(v["results"]["opensearch:totalResults"], "68943");
        let v = body("chart.getTopArtists", &[("limit", "1")]);
        assert_eq!(v["artists"]["artist"].as_array().map(Vec::len), Some(1));
        assert!(body("tag.getInfo", &[("tag", "rock")])["tag"]["total"].as_u64() > Some(0));
        let v = body(
            "geo.getTopArtists",
            &[("country", "Germany"), ("limit", "1")],
        );
        assert_eq!(v["topartists"]["@attr"]["country"], "Germany");
        assert_eq!(body("user.getInfo", &[])["user"]["name"], SESSION_USER);
        let v = body(
            "track.updateNowPlaying",
            &[("artist", "Cher"), ("track", "Believe")],
        );
        assert_eq!(v["nowplaying"]["ignoredMessage"]["code"], "0");
        assert_eq!(v["nowplaying"]["track"]["#text"], "Believe");
    }

    #[test]
    fn xml_follows_the_api_conventions() {
        let p = params(&[("user", "a<b"), ("track", "Believe"), ("limit", "1")]);
        let xml = success_body(lookup("user.getRecentTracks"), &p, Format::Xml);
        assert!(xml.contains("<recenttracks page=\"1\""), "{xml}");
        assert!(xml.contains("user=\"a&lt;b\""), "{xml}");
        assert!(xml.contains("<artist mbid=\"\">Cher</artist>"), "{xml}");
        let xml = success_body(lookup("track.search"), &p, Format::Xml);
        assert!(xml.contains("<opensearch:totalResults>68943</opensearch:totalResults>"));
        assert!(
            !xml.contains("xmlns:opensearch"),
            "the prefix stays undeclared"
        );
    }

    #[test]
    fn errors_in_both_formats() {
        let json: Value = serde_json::from_str(&error_body(8, "x", Format::Json)).unwrap();
        assert_eq!(json, json!({"error": 8, "message": "x"}));
        let xml = error_body(10, default_message(10), Format::Xml);
        assert!(xml.contains("<lfm status=\"failed\">\n<error code=\"10\">Invalid API key"));
    }

    #[test]
    fn documented_statuses_per_code_and_method() {
        let cases = [
            (29, "user.getInfo", 429),
            (26, "artist.getInfo", 403),
            (9, "user.getInfo", 403),
            (13, "track.love", 400),
            (6, "user.getInfo", 404),
            (6, "artist.getInfo", 404),
            (6, "album.getInfo", 200),
            (6, "geo.getTopArtists", 200),
            (6, "library.getArtists", 400),
            (8, "album.getInfo", 503),
            (11, "tag.getInfo", 503),
            (2, "tag.getInfo", 400),
            (99, "tag.getInfo", 400),
        ];
        for (code, method, status) in cases {
            assert_eq!(
                default_status(code, Some(method)),
                status,
                "{code} {method}"
            );
        }
    }
}

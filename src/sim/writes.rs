//! The write path of the simulated API: `track.updateNowPlaying` and `track.scrobble` into the play
//! store, and `user.getRecentTracks` out of it, under the phase's write knobs (documented with the
//! scenario format). Runs after the API's own checks, so the key, the signature and the session are
//! already valid and the session's user is known.

use std::time::Duration;

use tokio::time::Instant;

use super::http::Params;
use super::plays::{Play, PlayStore, Track, VisibleFrom};
use super::responses::{
    Format, MISSING_PARAMETER, WritePath, now_playing_body, recent_tracks_body, scrobbles_body,
};
use super::scenario::{LimitScope, WriteKnobs};

/// How long a now-playing track without a `duration` lasts; Last.fm publishes no figure.
const DEFAULT_NOW_PLAYING: Duration = Duration::from_secs(300);
/// Last.fm takes at most this many scrobbles in one request.
const MAX_BATCH: usize = 50;
/// The `ignoredMessage` code of the daily scrobble limit.
const DAILY_LIMIT_CODE: u8 = 5;

/// Error 29 as a user's scrobbles exhaust it (Last.fm's wording; docs/LASTFM-API.md §7).
pub(crate) const USER_LIMIT_MESSAGE: &str =
    "Rate Limit Exceeded - Too many scrobbles in a short period. Please try again later.";
/// Error 29 as an API key exhausts it (Last.fm's wording; docs/LASTFM-API.md §7).
pub(crate) const KEY_LIMIT_MESSAGE: &str = "Rate Limit Exceeded - This application has made too \
     many requests in a short period. If this is your API key, see \
     https://www.last.fm/api/tos#4.4 for information about raising the limit.";

/// The time twice: the monotonic clock for delays and expiry, the wall clock for the UTC day.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    pub(crate) at: Instant,
    /// Seconds since the Unix epoch.
    pub(crate) unix: u64,
}

/// One request on the write path, already past the API's checks.
pub(crate) struct WriteRequest<'a> {
    pub(crate) path: WritePath,
    /// The session's user for a write; `user.getRecentTracks` names its own.
    pub(crate) session_user: &'a str,
    pub(crate) params: &'a Params,
    pub(crate) format: Format,
}

/// The success body, or an API error (code and message).
pub(crate) fn answer(
    request: &WriteRequest<'_>,
    knobs: &WriteKnobs,
    store: &mut PlayStore,
    now: Clock,
) -> Result<String, (u32, &'static str)> {
    let WriteRequest {
        path,
        session_user: user,
        params,
        format,
    } = *request;
    match path {
        WritePath::ReadBack => {
            let asked = params.get("user").map_or(user, String::as_str);
            let (now_playing, plays) = store.recent(asked, now.at);
            Ok(recent_tracks_body(
                asked,
                now_playing,
                &plays,
                params,
                format,
            ))
        }
        WritePath::NowPlaying | WritePath::Scrobble => {
            if let Some(scope) = knobs.rate_limited {
                return Err(match scope {
                    LimitScope::User => (29, USER_LIMIT_MESSAGE),
                    LimitScope::Key => (29, KEY_LIMIT_MESSAGE),
                });
            }
            let visible_from: VisibleFrom =
                (!knobs.invisible).then(|| now.at + knobs.visible_after.unwrap_or_default());
            if path == WritePath::NowPlaying {
                Ok(now_playing(
                    user,
                    knobs,
                    store,
                    params,
                    visible_from,
                    now,
                    format,
                ))
            } else {
                scrobble(user, knobs, store, params, visible_from, now, format)
            }
        }
    }
}

fn now_playing(
    user: &str,
    knobs: &WriteKnobs,
    store: &mut PlayStore,
    params: &Params,
    visible_from: VisibleFrom,
    now: Clock,
    format: Format,
) -> String {
    let track = track_at(params, "").unwrap_or_else(|| Track {
        artist: String::new(),
        name: String::new(),
        album: String::new(),
        album_artist: String::new(),
    });
    let ignored = knobs.ignore.unwrap_or(0);
    if ignored == 0 {
        let lasts = params
            .get("duration")
            .and_then(|d| d.parse::<u64>().ok())
            .filter(|d| *d > 0)
            .map_or(DEFAULT_NOW_PLAYING, Duration::from_secs);
        store.set_now_playing(user, track.clone(), visible_from, now.at, lasts);
    }
    now_playing_body(&track, ignored, format)
}

fn scrobble(
    user: &str,
    knobs: &WriteKnobs,
    store: &mut PlayStore,
    params: &Params,
    visible_from: VisibleFrom,
    now: Clock,
    format: Format,
) -> Result<String, (u32, &'static str)> {
    let plays = batch(params).ok_or((6, MISSING_PARAMETER))?;
    let day = now.unix / 86_400;
    let judged: Vec<(Play, u8)> = plays
        .into_iter()
        .map(|play| {
            let code = match knobs.ignore {
                Some(code) => code,
                None if !store.count_scrobble(user, day, knobs.daily_cap) => DAILY_LIMIT_CODE,
                None => {
                    store.scrobble(user, play.clone(), visible_from);
                    0
                }
            };
            (play, code)
        })
        .collect();
    Ok(scrobbles_body(&judged, format))
}

/// The plays of a scrobble request: `artist[0]`, `track[0]`, `timestamp[0]`, … for a batch, else
/// `artist`, `track`, `timestamp`; `None` when one lacks a field or the timestamp is no number.
fn batch(params: &Params) -> Option<Vec<Play>> {
    let indexed: Vec<String> = (0..MAX_BATCH)
        .map(|i| format!("[{i}]"))
        .take_while(|suffix| params.contains_key(&format!("artist{suffix}")))
        .collect();
    let suffixes = if indexed.is_empty() {
        vec![String::new()]
    } else {
        indexed
    };
    suffixes
        .iter()
        .map(|suffix| {
            let timestamp = params.get(&format!("timestamp{suffix}"))?.parse().ok()?;
            Some(Play {
                track: track_at(params, suffix)?,
                timestamp,
            })
        })
        .collect()
}

/// The track named by `artist{suffix}` and `track{suffix}`, with its optional album fields.
fn track_at(params: &Params, suffix: &str) -> Option<Track> {
    let get = |name: &str| params.get(&format!("{name}{suffix}")).cloned();
    let present = |name: &str| get(name).filter(|v| !v.is_empty());
    Some(Track {
        artist: present("artist")?,
        name: present("track")?,
        album: get("album").unwrap_or_default(),
        album_artist: get("albumArtist").unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::sim::scenario::Scenario;

    const T0: u64 = 1_700_000_000;

    /// A store and a clock, written to and read from as one user.
    struct Account {
        store: PlayStore,
        start: Instant,
        now: Clock,
    }

    impl Account {
        fn new() -> Self {
            let start = Instant::now();
            Self {
                store: PlayStore::default(),
                start,
                now: Clock {
                    at: start,
                    unix: T0,
                },
            }
        }

        fn after(&mut self, secs: u64) {
            self.now.at = self.start + Duration::from_secs(secs);
        }

        fn call(
            &mut self,
            path: WritePath,
            knobs: &WriteKnobs,
            pairs: &[(&str, &str)],
            format: Format,
        ) -> Result<String, (u32, &'static str)> {
            let params: Params = pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            let request = WriteRequest {
                path,
                session_user: "canary",
                params: &params,
                format,
            };
            answer(&request, knobs, &mut self.store, self.now)
        }

        fn json(&mut self, path: WritePath, knobs: &WriteKnobs, pairs: &[(&str, &str)]) -> Value {
            let body = self.call(path, knobs, pairs, Format::Json).unwrap();
            serde_json::from_str(&body).unwrap()
        }

        fn scrobble(&mut self, knobs: &WriteKnobs, track: &str, timestamp: u64) -> Value {
            let ts = timestamp.to_string();
            let pairs = [("artist", "Cher"), ("track", track), ("timestamp", &ts)];
            self.json(WritePath::Scrobble, knobs, &pairs)
        }

        fn now_playing(&mut self, knobs: &WriteKnobs, pairs: &[(&str, &str)]) -> Value {
            let mut all = vec![("artist", "Cher"), ("track", "Believe")];
            all.extend_from_slice(pairs);
            self.json(WritePath::NowPlaying, knobs, &all)
        }

        /// The names in `user.getRecentTracks` of `user`, "now:" marking the one playing.
        fn recent(&mut self, user: &str) -> Vec<String> {
            let v = self.json(WritePath::ReadBack, &healthy(), &[("user", user)]);
            assert_eq!(v["recenttracks"]["@attr"]["user"], user);
            let tracks = v["recenttracks"]["track"].as_array().unwrap().clone();
            tracks
                .iter()
                .map(|t| match t["@attr"]["nowplaying"].as_str() {
                    Some("true") => format!("now:{}", t["name"].as_str().unwrap()),
                    _ => t["name"].as_str().unwrap().to_owned(),
                })
                .collect()
        }
    }

    fn healthy() -> WriteKnobs {
        WriteKnobs::default()
    }

    /// The write knobs of a phase written as TOML.
    fn knobs(toml: &str) -> WriteKnobs {
        let text = format!("[[phases]]\nname = \"p\"\n[phases.writes]\n{toml}\n");
        let scenario = Scenario::from_toml_str(&text).unwrap();
        scenario.phases()[0].writes().clone()
    }

    #[test]
    fn a_scrobble_is_answered_as_one_object_and_read_back_with_its_date() {
        let mut account = Account::new();
        let v = account.scrobble(&healthy(), "Strong Enough", T0);
        let scrobbles = &v["scrobbles"];
        assert_eq!(scrobbles["@attr"]["accepted"], 1);
        assert_eq!(scrobbles["@attr"]["ignored"], 0);
        assert!(scrobbles["scrobble"].is_object(), "{v}");
        assert_eq!(scrobbles["scrobble"]["timestamp"], T0.to_string());
        assert_eq!(scrobbles["scrobble"]["track"]["#text"], "Strong Enough");
        assert_eq!(scrobbles["scrobble"]["ignoredMessage"]["code"], "0");
        let read = account.json(WritePath::ReadBack, &healthy(), &[("user", "canary")]);
        let first = &read["recenttracks"]["track"][0];
        assert_eq!(first["name"], "Strong Enough");
        assert_eq!(first["date"]["uts"], T0.to_string());
        assert_eq!(first["date"]["#text"], "14 Nov 2023, 22:13");
        assert_eq!(account.recent("canary"), ["Strong Enough", "Believe"]);
        assert_eq!(
            account.recent("someone"),
            ["Believe"],
            "another user's history"
        );
    }

    #[test]
    fn a_batch_is_answered_as_an_array_and_shows_newest_first() {
        let mut account = Account::new();
        let (a, b) = (T0.to_string(), (T0 + 200).to_string());
        let pairs = [
            ("artist[0]", "Cher"),
            ("track[0]", "Older"),
            ("timestamp[0]", a.as_str()),
            ("artist[1]", "Cher"),
            ("track[1]", "Newer"),
            ("timestamp[1]", b.as_str()),
        ];
        let v = account.json(WritePath::Scrobble, &healthy(), &pairs);
        assert_eq!(v["scrobbles"]["@attr"]["accepted"], 2);
        assert_eq!(v["scrobbles"]["scrobble"].as_array().map(Vec::len), Some(2));
        assert_eq!(account.recent("canary"), ["Newer", "Older", "Believe"]);
        let missing = account.call(
            WritePath::Scrobble,
            &healthy(),
            &[("artist", "Cher"), ("track", "x")],
            Format::Json,
        );
        assert_eq!(missing, Err((6, MISSING_PARAMETER)), "no timestamp");
    }

    #[test]
    fn now_playing_comes_first_without_a_date_and_expires() {
        let mut account = Account::new();
        account.scrobble(&healthy(), "Strong Enough", T0);
        let v = account.now_playing(&healthy(), &[("duration", "60")]);
        assert_eq!(v["nowplaying"]["track"]["#text"], "Believe");
        assert_eq!(v["nowplaying"]["ignoredMessage"]["code"], "0");
        let read = account.json(WritePath::ReadBack, &healthy(), &[("user", "Canary")]);
        let first = &read["recenttracks"]["track"][0];
        assert_eq!(first["@attr"]["nowplaying"], "true");
        assert!(first.get("date").is_none(), "{first}");
        assert_eq!(read["recenttracks"]["@attr"]["user"], "Canary");
        account.after(59);
        assert_eq!(account.recent("canary")[0], "now:Believe");
        account.after(60);
        assert_eq!(account.recent("canary"), ["Strong Enough", "Believe"]);
        account.now_playing(&healthy(), &[]);
        account.after(60 + 299);
        assert_eq!(account.recent("canary")[0], "now:Believe", "5 min default");
        account.after(60 + 300);
        assert_eq!(account.recent("canary")[0], "Strong Enough");
    }

    #[test]
    fn the_now_playing_is_extra_to_the_limit() {
        let mut account = Account::new();
        account.scrobble(&healthy(), "Strong Enough", T0);
        account.now_playing(&healthy(), &[]);
        let read = account.json(
            WritePath::ReadBack,
            &healthy(),
            &[("user", "canary"), ("limit", "1")],
        );
        let names: Vec<_> = read["recenttracks"]["track"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].clone())
            .collect();
        assert_eq!(names, ["Believe", "Strong Enough"]);
    }

    #[test]
    fn the_write_answers_in_xml() {
        let mut account = Account::new();
        let ts = T0.to_string();
        let pairs = [
            ("artist", "Cher"),
            ("track", "Believe"),
            ("timestamp", ts.as_str()),
        ];
        let xml = account
            .call(
                WritePath::Scrobble,
                &knobs("ignore = 3"),
                &pairs,
                Format::Xml,
            )
            .unwrap();
        assert!(xml.contains("<lfm status=\"ok\">"), "{xml}");
        assert!(
            xml.contains("<scrobbles accepted=\"0\" ignored=\"1\">"),
            "{xml}"
        );
        assert!(
            xml.contains("<track corrected=\"0\">Believe</track>"),
            "{xml}"
        );
        assert!(xml.contains("<timestamp>1700000000</timestamp>"), "{xml}");
        assert!(
            xml.contains("<ignoredMessage code=\"3\">Timestamp was too old</ignoredMessage>"),
            "{xml}"
        );
        let xml = account
            .call(WritePath::NowPlaying, &healthy(), &pairs, Format::Xml)
            .unwrap();
        assert!(xml.contains("<nowplaying>"), "{xml}");
        assert!(
            xml.contains("<ignoredMessage code=\"0\"></ignoredMessage>"),
            "{xml}"
        );
        account.scrobble(&healthy(), "Strong Enough", T0);
        let xml = account
            .call(
                WritePath::ReadBack,
                &healthy(),
                &[("user", "canary")],
                Format::Xml,
            )
            .unwrap();
        assert!(xml.contains("<recenttracks "), "{xml}");
        assert!(xml.contains("user=\"canary\""), "{xml}");
        assert!(xml.contains("<track nowplaying=\"true\">"), "{xml}");
        assert!(
            xml.contains("<date uts=\"1700000000\">14 Nov 2023, 22:13</date>"),
            "{xml}"
        );
        let np = xml.find("nowplaying=\"true\"").unwrap();
        assert!(np < xml.find("Strong Enough").unwrap(), "now playing first");
    }

    #[test]
    fn every_write_ignored_with_the_phase_code_and_nothing_stored() {
        let mut account = Account::new();
        for code in 1..=5_u8 {
            let knobs = knobs(&format!("ignore = {code}"));
            let v = account.scrobble(&knobs, "Strong Enough", T0);
            assert_eq!(v["scrobbles"]["@attr"]["ignored"], 1);
            assert_eq!(v["scrobbles"]["@attr"]["accepted"], 0);
            let message = &v["scrobbles"]["scrobble"]["ignoredMessage"];
            assert_eq!(message["code"], code.to_string());
            assert_ne!(message["#text"], "");
            let v = account.now_playing(&knobs, &[]);
            assert_eq!(v["nowplaying"]["ignoredMessage"]["code"], code.to_string());
        }
        assert_eq!(account.recent("canary"), ["Believe"]);
    }

    #[test]
    fn visibility_is_delayed_or_never() {
        let mut account = Account::new();
        let late = knobs("visible_after = \"30s\"");
        account.scrobble(&late, "Late", T0);
        account.now_playing(&late, &[]);
        account.after(29);
        assert_eq!(account.recent("canary"), ["Believe"]);
        account.after(30);
        assert_eq!(account.recent("canary"), ["now:Believe", "Late", "Believe"]);
        let never = knobs("invisible = true");
        let v = account.scrobble(&never, "Lost", T0 + 60);
        assert_eq!(
            v["scrobbles"]["@attr"]["accepted"], 1,
            "accepted all the same"
        );
        account.after(10_000);
        assert_eq!(account.recent("canary"), ["Late", "Believe"]);
    }

    #[test]
    fn the_daily_cap_ignores_with_code_5_until_the_next_utc_day() {
        let mut account = Account::new();
        let capped = knobs("daily_cap = 2");
        for i in 0..2 {
            let v = account.scrobble(&capped, "Fits", T0 + i);
            assert_eq!(v["scrobbles"]["@attr"]["accepted"], 1);
        }
        let v = account.scrobble(&capped, "Over", T0 + 2);
        assert_eq!(v["scrobbles"]["scrobble"]["ignoredMessage"]["code"], "5");
        assert_eq!(v["scrobbles"]["@attr"]["ignored"], 1);
        let v = account.now_playing(&capped, &[]);
        assert_eq!(v["nowplaying"]["ignoredMessage"]["code"], "0", "not capped");
        account.now.unix += 86_400;
        let v = account.scrobble(&capped, "Tomorrow", T0 + 86_400);
        assert_eq!(v["scrobbles"]["@attr"]["accepted"], 1);
        assert!(!account.recent("canary").contains(&"Over".to_owned()));
    }

    #[test]
    fn rate_limits_speak_for_their_scope() {
        let mut account = Account::new();
        let pairs = [
            ("artist", "Cher"),
            ("track", "Believe"),
            ("timestamp", "1700000000"),
        ];
        for (scope, message) in [("user", USER_LIMIT_MESSAGE), ("key", KEY_LIMIT_MESSAGE)] {
            let limited = knobs(&format!("rate_limited = \"{scope}\""));
            for path in [WritePath::Scrobble, WritePath::NowPlaying] {
                let refused = account.call(path, &limited, &pairs, Format::Json);
                assert_eq!(refused, Err((29, message)), "{scope} {path:?}");
            }
            assert!(
                account
                    .call(
                        WritePath::ReadBack,
                        &limited,
                        &[("user", "canary")],
                        Format::Json
                    )
                    .is_ok()
            );
        }
        assert!(USER_LIMIT_MESSAGE.contains("Too many scrobbles"));
        assert!(KEY_LIMIT_MESSAGE.contains("This application has made too many requests"));
        assert_eq!(account.recent("canary"), ["Believe"]);
    }

    /// The monitor's readers (`crate::classify`) take every write answer and read-back the
    /// simulator gives, in both formats, so a canary against it reads what it wrote.
    #[test]
    fn the_monitors_readers_take_every_write_answer_and_read_back() {
        use crate::classify::{RecentEntry, WriteAnswer, read_recent_tracks, read_write_answer};
        use crate::config::Format as Asked;

        let counts = |accepted, ignored, ignored_code| WriteAnswer {
            accepted,
            ignored,
            ignored_code,
        };
        for (format, asked) in [(Format::Json, Asked::Json), (Format::Xml, Asked::Xml)] {
            let mut account = Account::new();
            let mut written = |path, knobs: &WriteKnobs, pairs: &[(&str, &str)]| {
                let body = account.call(path, knobs, pairs, format).unwrap();
                read_write_answer(asked, body.as_bytes()).unwrap()
            };
            let track = [("artist", "Cher"), ("track", "Believe")];
            let late = (T0 + 60).to_string();
            let one = [
                ("artist", "Cher"),
                ("track", "Strong Enough"),
                ("timestamp", &late),
            ];
            let two = [
                ("artist[0]", "Cher"),
                ("track[0]", "A"),
                ("timestamp[0]", "1700000100"),
                ("artist[1]", "Cher"),
                ("track[1]", "B"),
                ("timestamp[1]", "1700000200"),
            ];
            let ignore = |code| knobs(&format!("ignore = {code}"));
            let np = WritePath::NowPlaying;
            assert_eq!(
                written(np, &ignore(2), &track),
                counts(0, 1, Some(2)),
                "{format:?}"
            );
            assert_eq!(written(np, &healthy(), &track), counts(1, 0, None));
            let scrobble = WritePath::Scrobble;
            assert_eq!(written(scrobble, &ignore(3), &two), counts(0, 2, Some(3)));
            assert_eq!(written(scrobble, &ignore(5), &one), counts(0, 1, Some(5)));
            assert_eq!(written(scrobble, &healthy(), &two), counts(2, 0, None));
            assert_eq!(written(scrobble, &healthy(), &one), counts(1, 0, None));

            let body = account
                .call(
                    WritePath::ReadBack,
                    &healthy(),
                    &[("user", "canary")],
                    format,
                )
                .unwrap();
            let read = read_recent_tracks(asked, body.as_bytes()).unwrap();
            assert_eq!(read.user.as_deref(), Some("canary"), "{format:?}");
            let entry = |track: &str, now_playing, uts| RecentEntry {
                artist: "Cher".to_owned(),
                track: track.to_owned(),
                now_playing,
                uts,
            };
            let t0 = i64::try_from(T0).unwrap();
            assert_eq!(read.entries.first(), Some(&entry("Believe", true, None)));
            for (track, uts) in [("Strong Enough", t0 + 60), ("A", t0 + 100), ("B", t0 + 200)] {
                assert!(
                    read.entries.contains(&entry(track, false, Some(uts))),
                    "{format:?} {track}: {read:?}"
                );
            }
            assert_eq!(
                read.entries.last(),
                Some(&entry("Believe", false, Some(t0)))
            );
            assert_eq!(read.entries.len(), 5, "{read:?}");
        }
    }

    /// The monitor tells the simulator's two error-29 wordings apart as Last.fm's.
    #[test]
    fn the_monitor_reads_the_scope_of_each_simulated_rate_limit() {
        use crate::classify::{Classification, Outcome, RateLimitScope, rate_limit_scope};

        for (message, scope) in [
            (USER_LIMIT_MESSAGE, RateLimitScope::User),
            (KEY_LIMIT_MESSAGE, RateLimitScope::Key),
        ] {
            let verdict = Classification {
                http_status: Some(200),
                error_code: Some(29),
                detail: Some(message.to_owned()),
                ..Classification::new(Outcome::ApiError)
            };
            assert_eq!(rate_limit_scope(&verdict), Some(scope), "{message}");
        }
    }
}

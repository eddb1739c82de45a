//! Which service a target speaks to (`api`), and what the configuration checks of it: the
//! methods the service implements, the shape of its keys, and how it takes writes.
//!
//! The monitor works against any Last.fm-compatible API, but the compatible ones differ in what
//! they implement (docs/LASTFM-API.md, "Compatible APIs"): a probe of a method the service lacks
//! would only ever measure "invalid method", so it is refused at load. How each service's error
//! codes and statuses are judged is the classifier's part of the profile (`classify/codes.rs`);
//! this module holds what the configuration and the simulator need, so both read one list.

use crate::config::closed_set::closed_set;

closed_set! {
    /// The service a target speaks to (`api` in a `[[targets]]` table).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub enum Api {
        /// Last.fm itself (`https://ws.audioscrobbler.com/2.0/`).
        Lastfm => "lastfm",
        /// Libre.fm and other GNU FM servers (`https://libre.fm/2.0/`).
        Librefm => "librefm",
        /// ListenBrainz's Last.fm-compatible API (`https://api.listenbrainz.org/2.0/`).
        Listenbrainz => "listenbrainz",
    }
}

/// The methods of GNU FM's 2.0 API (`nixtape/2.0/index.php` of foocorp/gnu-fm), lower-cased as
/// its method map holds them.
const LIBREFM_METHODS: [&str; 45] = [
    "auth.gettoken",
    "auth.getsession",
    "auth.getmobilesession",
    "artist.addtags",
    "artist.getinfo",
    "artist.gettoptracks",
    "artist.gettoptags",
    "artist.gettopfans",
    "artist.gettags",
    "artist.getflattr",
    "artist.search",
    "album.addtags",
    "album.gettoptags",
    "album.gettags",
    "library.removescrobble",
    "user.getinfo",
    "user.gettopartists",
    "user.gettoptracks",
    "user.getrecenttracks",
    "user.gettoptags",
    "user.getpersonaltags",
    "user.gettaginfo",
    "user.getlovedtracks",
    "user.getbannedtracks",
    "user.getneighbours",
    "radio.tune",
    "radio.getplaylist",
    "tag.gettoptags",
    "tag.gettopartists",
    "tag.gettopalbums",
    "tag.gettoptracks",
    "tag.getinfo",
    "track.addtags",
    "track.removetag",
    "track.getinfo",
    "track.gettoptags",
    "track.gettopfans",
    "track.gettags",
    "track.ban",
    "track.love",
    "track.unlove",
    "track.unban",
    "track.updatenowplaying",
    "track.scrobble",
    "chart.gettopartists",
];

/// The methods of ListenBrainz's compatibility API (`webserver/views/api_compat.py` of
/// metabrainz/listenbrainz-server); every other method answers error 3.
const LISTENBRAINZ_METHODS: [&str; 6] = [
    "auth.gettoken",
    "auth.getsession",
    "auth.getsessioninfo",
    "user.getinfo",
    "track.updatenowplaying",
    "track.scrobble",
];

impl Api {
    /// The service's name, for messages.
    pub fn service_name(self) -> &'static str {
        match self {
            Self::Lastfm => "Last.fm",
            Self::Librefm => "Libre.fm (GNU FM)",
            Self::Listenbrainz => "ListenBrainz's Last.fm-compatible API",
        }
    }

    /// Whether the service implements `method`, compared case-insensitively (the services
    /// lower-case it). `None` for Last.fm: its method set is large and grows, so any method
    /// name is accepted there.
    pub fn implements(self, method: &str) -> Option<bool> {
        let listed: &[&str] = match self {
            Self::Lastfm => return None,
            Self::Librefm => &LIBREFM_METHODS,
            Self::Listenbrainz => &LISTENBRAINZ_METHODS,
        };
        Some(listed.iter().any(|m| m.eq_ignore_ascii_case(method)))
    }

    /// The methods the service implements, for a refusal's message (`None`: any).
    pub fn methods(self) -> Option<&'static [&'static str]> {
        match self {
            Self::Lastfm => None,
            Self::Librefm => Some(&LIBREFM_METHODS),
            Self::Listenbrainz => Some(&LISTENBRAINZ_METHODS),
        }
    }

    /// The key length the service checks, and whether it must be hex: Last.fm's 32 hex
    /// digits, GNU FM's length check of 32; ListenBrainz takes its user tokens.
    pub fn key_shape(self) -> Option<(usize, bool)> {
        match self {
            Self::Lastfm => Some((32, true)),
            Self::Librefm => Some((32, false)),
            Self::Listenbrainz => None,
        }
    }

    /// Whether a write-path canary can read its play back (`user.getRecentTracks`):
    /// ListenBrainz's compatibility API has no read methods, so a good write there ends a run.
    pub fn has_read_back(self) -> bool {
        self.implements("user.getRecentTracks") != Some(false)
    }

    /// Whether the service refuses a write sent with `GET` (ListenBrainz answers it with error
    /// 16); the monitor sends writes as `POST` everywhere anyway.
    pub fn writes_are_post_only(self) -> bool {
        matches!(self, Self::Listenbrainz)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_compare_case_insensitively_and_lastfm_takes_any() {
        assert_eq!(Api::Lastfm.implements("whatever.method"), None);
        assert_eq!(Api::Librefm.implements("user.getRecentTracks"), Some(true));
        assert_eq!(Api::Librefm.implements("album.getInfo"), Some(false));
        assert_eq!(Api::Listenbrainz.implements("TRACK.SCROBBLE"), Some(true));
        assert_eq!(Api::Listenbrainz.implements("artist.getInfo"), Some(false));
        assert!(Api::Lastfm.has_read_back() && Api::Librefm.has_read_back());
        assert!(!Api::Listenbrainz.has_read_back());
    }

    #[test]
    fn the_lists_hold_no_duplicates_and_are_lower_case() {
        for api in Api::ALL {
            let Some(methods) = api.methods() else {
                continue;
            };
            let mut sorted = methods.to_vec();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), methods.len(), "{api:?}");
            assert!(methods.iter().all(|m| *m == m.to_lowercase()), "{api:?}");
        }
    }
}

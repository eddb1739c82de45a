//! The built-in demo's scenarios: Last.fm's incident timeline, and beside it a Libre.fm and a
//! ListenBrainz that `lastfm-monitor demo` runs as well, so the three services show side by side
//! (their own rules, each its own target). The three timelines have the same length and start
//! together: Libre.fm's outage comes while Last.fm recovers, so its alert is its own.

use super::scenario::Scenario;
use crate::config::Api;

/// The built-in demo: an incident cycle of 3 minutes 25 s; the first incident starts after 10 s.
const DEMO_TOML: &str = r#"
name = "demo"
repeat = true
# The demo config's session key, and its canary account.
session_users = { "sk-demo-canary" = "canary" }

# Throughout the healthy phases, track.getInfo of a missing track answers error 6 with 200 OK, as
# the real API does for tracks: the demo's negative control sees the best-known quirk at once.
[[phases]]
name = "healthy"
duration = "10s"
rules = [
  { method = "track.getInfo", respond = "error", code = 6, status = 200, message = "Track not found" },
]

[[phases]]
name = "error-8-burst"
duration = "25s"
rules = [
  { method = "artist.getInfo", respond = "error", code = 8, status = 503 },
  { method = "album.getInfo", respond = "error", code = 8, status = 503 },
  { method = "chart.getTopArtists", respond = "html" },
  { method = "track.getInfo", respond = "error", code = 6, status = 200, message = "Track not found" },
]

[[phases]]
name = "200-with-error"
duration = "25s"
rules = [
  { method = "album.getInfo", respond = "error", code = 8, status = 200 },
  { method = "tag.getInfo", respond = "error", code = 8, status = 200 },
  { method = "geo.getTopArtists", respond = "empty" },
  { method = "track.search", respond = "truncated" },
  { method = "track.getInfo", respond = "error", code = 6, status = 200, message = "Track not found" },
]

[[phases]]
name = "rate-limited"
duration = "25s"
rules = [{ respond = "error", code = 29 }]

[[phases]]
name = "service-offline"
duration = "30s"
rules = [{ respond = "error", code = 11 }]

[[phases]]
name = "key-suspended"
duration = "30s"
rules = [{ respond = "error", code = 26 }]

# Writes are accepted (200, status ok) and never show in the recent tracks.
[[phases]]
name = "writes-invisible"
duration = "25s"
[phases.writes]
invisible = true

[[phases]]
name = "recovery"
duration = "35s"
rules = [
  { method = "track.getInfo", respond = "error", code = 6, status = 200, message = "Track not found" },
]
"#;

/// Libre.fm beside the demo: healthy, then its site down behind its nginx (a 502 page for every
/// method) while Last.fm recovers.
const DEMO_LIBREFM_TOML: &str = r#"
name = "demo-librefm"
personality = "librefm"
repeat = true
session_users = { "sk-demo-canary" = "canary" }

[[phases]]
name = "healthy"
duration = "175s"

[[phases]]
name = "outage"
duration = "30s"
rules = [{ respond = "html", status = 502 }]
"#;

/// ListenBrainz beside the demo: healthy throughout, with its rate-limit headers.
const DEMO_LISTENBRAINZ_TOML: &str = r#"
name = "demo-listenbrainz"
personality = "listenbrainz"
repeat = true
session_users = { "sk-demo-canary" = "canary" }

[[phases]]
name = "healthy"
"#;

impl Scenario {
    /// The built-in demo's timeline for `api`'s service (Last.fm's is the incident cycle).
    pub fn demo_of(api: Api) -> Self {
        let text = match api {
            Api::Lastfm => DEMO_TOML,
            Api::Librefm => DEMO_LIBREFM_TOML,
            Api::Listenbrainz => DEMO_LISTENBRAINZ_TOML,
        };
        Self::from_toml_str(text).expect("the built-in demo scenarios are valid (tested)")
    }

    /// The built-in demo: Last.fm's incident cycle of 3 minutes 25 s; the first incident starts
    /// after 10 s.
    pub fn demo() -> Self {
        Self::demo_of(Api::Lastfm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_demo_timelines_have_one_length_and_their_services() {
        for api in Api::ALL {
            let scenario = Scenario::demo_of(api);
            assert_eq!(scenario.personality(), api);
            assert_eq!(
                scenario.cycle_length(),
                Some(std::time::Duration::from_secs(205)).filter(|_| api != Api::Listenbrainz),
                "{api:?}"
            );
        }
    }
}

//! `lastfm-monitor demo`: the daemon against the built-in simulator, with a scripted incident
//! timeline, so anyone can see every outcome, code, mismatch and condition without a key.
//!
//! The demo config is ordinary config text (validated like any other) pointing at the simulator
//! on a loopback port; its pace is fast (every 5 s) because the simulator, not Last.fm, answers.

use std::net::SocketAddr;

/// The demo's API key: 32 hex characters, accepted by the simulator, worthless anywhere else.
pub const DEMO_API_KEY: &str = "deadbeefdeadbeefdeadbeefdeadbeef";

/// The demo's session key, which the demo scenario says belongs to [`DEMO_CANARY_USER`].
pub const DEMO_SESSION_KEY: &str = "sk-demo-canary";
/// The demo's canary account.
pub const DEMO_CANARY_USER: &str = "canary";

/// Where the demo's simulated services listen.
#[derive(Debug, Clone, Copy)]
pub struct Simulated {
    /// Last.fm, with the incident timeline.
    pub lastfm: SocketAddr,
    /// Libre.fm (GNU FM's rules).
    pub librefm: SocketAddr,
    /// ListenBrainz's compatibility API.
    pub listenbrainz: SocketAddr,
}

/// The demo configuration for the simulated services, serving on `listen`.
pub fn config_text(simulated: Simulated, listen: SocketAddr) -> String {
    let sim = simulated.lastfm;
    let lastfm = format!(
        r#"# The built-in demo configuration (lastfm-monitor demo).
[web]
listen_address = "{listen}"

[defaults]
interval = "5s"
timeout = "3s"
startup_jitter = "2s"

# A reference: not Last.fm, checked to tell the monitor's own network's faults from
# Last.fm's. The simulator answers it (any HTTP answer counts as reachable).
[[references]]
name = "simulated-gateway"
url = "http://{sim}/"
interval = "5s"
timeout = "2s"

[[targets]]
name = "lastfm-sim"
base_url = "http://{sim}/2.0/"
api_key = "{DEMO_API_KEY}"
# The simulator checks neither the signature nor the secret; a real target's come from files.
api_secret = "{DEMO_API_KEY}"
session_key = "{DEMO_SESSION_KEY}"
max_requests_per_second = 5.0
burst = 10
down_after = 2
up_after = 2
suspended_interval = "20s"
backoff_initial = "10s"
backoff_max = "20s"

[[targets.probes]]
method = "user.getInfo"
params = {{ user = "rj" }}
checks = [{{ pointer = "/user/name", equals = "rj" }}]

[[targets.probes]]
method = "user.getRecentTracks"
params = {{ user = "rj", limit = 1 }}
checks = [{{ pointer = "/recenttracks/@attr/user", equals = "rj" }}]

[[targets.probes]]
method = "artist.getInfo"
params = {{ artist = "Cher" }}
checks = [{{ pointer = "/artist/name", non_empty = true }}]

[[targets.probes]]
method = "album.getInfo"
params = {{ artist = "Cher", album = "Believe" }}
checks = [{{ pointer = "/album/tracks/track", non_empty = true }}]

[[targets.probes]]
method = "track.search"
params = {{ track = "Believe", limit = 1 }}
format = "xml"

[[targets.probes]]
method = "chart.getTopArtists"
params = {{ limit = 1 }}

[[targets.probes]]
method = "tag.getInfo"
params = {{ tag = "rock" }}

[[targets.probes]]
method = "geo.getTopArtists"
params = {{ country = "Germany", limit = 1 }}

[[targets.probes]]
name = "track.getInfo.missing"
method = "track.getInfo"
params = {{ artist = "Cher", track = "no-such-track-lastfm-monitor" }}
expect = {{ error = 6 }}

[[targets.probes]]
name = "user.getInfo.missing"
method = "user.getInfo"
params = {{ user = "no-such-user-lastfm-monitor" }}
expect = {{ error = 6 }}

# The write path: now playing on the canary account, read back until it shows. The demo's
# "writes-invisible" phase accepts writes that never show.
[[targets.canaries]]
name = "now-playing"
user = "{DEMO_CANARY_USER}"
interval = "15s"
visible_within = "6s"
poll_every = "2s"
"#
    );
    lastfm + &compatible_targets(simulated)
}

/// The Libre.fm and ListenBrainz targets beside the simulated Last.fm.
fn compatible_targets(simulated: Simulated) -> String {
    let Simulated {
        librefm,
        listenbrainz,
        ..
    } = simulated;
    format!(
        r#"
# The same scrobblers write to Libre.fm and ListenBrainz: each a target judged by its own rules.
[[targets]]
name = "librefm-sim"
base_url = "http://{librefm}/2.0/"
api = "librefm"
api_key = "{DEMO_API_KEY}"
api_secret = "{DEMO_API_KEY}"
session_key = "{DEMO_SESSION_KEY}"
down_after = 2
up_after = 2

[[targets.probes]]
method = "user.getInfo"
params = {{ user = "{DEMO_CANARY_USER}" }}

[[targets.probes]]
method = "artist.getInfo"
params = {{ artist = "Cher" }}

# Libre.fm answers 7, with 200 OK, where Last.fm says 6: no mismatch under its profile.
[[targets.probes]]
name = "user.getInfo.missing"
method = "user.getInfo"
params = {{ user = "no-such-user-lastfm-monitor" }}
expect = {{ error = 7 }}

[[targets.canaries]]
name = "now-playing"
user = "{DEMO_CANARY_USER}"
interval = "15s"
visible_within = "6s"
poll_every = "2s"

[[targets]]
name = "listenbrainz-sim"
base_url = "http://{listenbrainz}/2.0/"
api = "listenbrainz"
api_key = "{DEMO_API_KEY}"
api_secret = "{DEMO_API_KEY}"
session_key = "{DEMO_SESSION_KEY}"

[[targets.probes]]
method = "user.getInfo"
signed = true

# No read-back there: a good write ends the run as "accepted".
[[targets.canaries]]
name = "now-playing"
user = "{DEMO_CANARY_USER}"
interval = "15s"
visible_within = "6s"
poll_every = "2s"
"#
    )
}

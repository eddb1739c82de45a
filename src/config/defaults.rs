//! Every default in one place; `config.toml` mirrors these and a test keeps them in step.
//!
//! A file of its own so that the validator (which falls back on them) and the other stages
//! (the CLI prints the listen address) name the same constants; README.md, Configuration
//! reference, lists them for the operator.

use std::time::Duration;

/// `[web] listen_address`: loopback, outside the crowded 9100–9999 range.
pub const LISTEN_ADDRESS: &str = "127.0.0.1:10987";
/// `[web] max_connections`, unless a quarter of the descriptor limit is lower.
pub const MAX_CONNECTIONS: u32 = 256;
/// The most `[web] max_connections` may say (the descriptor limit usually refuses less).
pub const MAX_CONNECTIONS_CEILING: u32 = 1_000_000;
/// `interval`
pub const INTERVAL: Duration = Duration::from_secs(60);
/// `timeout`
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// `max_body_bytes`
pub const MAX_BODY_BYTES: u64 = 2 * 1024 * 1024;
/// `startup_jitter`: the first run of each probe comes at a random moment within this.
pub const STARTUP_JITTER: Duration = Duration::from_secs(30);
/// `max_requests_per_second`
pub const MAX_REQUESTS_PER_SECOND: f64 = 1.0;
/// `burst`
pub const BURST: u32 = 3;
/// `down_after`
pub const DOWN_AFTER: u32 = 3;
/// `up_after`
pub const UP_AFTER: u32 = 2;
/// `suspended_interval`
pub const SUSPENDED_INTERVAL: Duration = Duration::from_secs(15 * 60);
/// `backoff_initial`
pub const BACKOFF_INITIAL: Duration = Duration::from_secs(60);
/// `backoff_max`
pub const BACKOFF_MAX: Duration = Duration::from_secs(3600);
/// `availability_objective`: the share of 30 days a target should be available.
pub const AVAILABILITY_OBJECTIVE: f64 = 0.995;
/// The range `availability_objective` is held to: below 90% a budget means little, above
/// 99.999% (26 s in 30 days) a 15 s scrape cannot measure it.
pub const AVAILABILITY_OBJECTIVE_RANGE: std::ops::RangeInclusive<f64> = 0.9..=0.99999;
/// How often a reference is checked.
pub const REFERENCE_INTERVAL: Duration = Duration::from_secs(15);
/// A reference check's deadline.
pub const REFERENCE_TIMEOUT: Duration = Duration::from_secs(5);
/// A `now_playing` canary's `interval`: often enough to see a write-path outage within minutes.
pub const CANARY_NOW_PLAYING_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// A `scrobble` canary's `interval`: each run leaves a play in the account's history.
pub const CANARY_SCROBBLE_INTERVAL: Duration = Duration::from_secs(3600);
/// A canary's `visible_within`: how long the read-back looks for the play.
pub const CANARY_VISIBLE_WITHIN: Duration = Duration::from_secs(120);
/// A canary's `poll_every`: the gap between read-back polls.
pub const CANARY_POLL_EVERY: Duration = Duration::from_secs(10);
/// A canary's `artist`, so that the plays it leaves say where they come from.
pub const CANARY_ARTIST: &str = "lastfm-monitor";
/// A canary's `track`.
pub const CANARY_TRACK: &str = "write-path canary";
/// `max_scrobbles_per_day`: far below the account's own cap of about 3,000 a day.
pub const MAX_SCROBBLES_PER_DAY: u32 = 100;
/// The most `max_scrobbles_per_day` may say: a sixth of the account's cap.
pub const MAX_SCROBBLES_PER_DAY_CEILING: u32 = 500;

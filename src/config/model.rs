//! The validated configuration the other stages read: [`Config`] and its [`Target`]s,
//! [`Probe`]s and [`Reference`]s, with every duration, schedule, URL and secret parsed.
//!
//! Only the validator (`validate/`) builds these, so a value of these types has passed every
//! check in README.md, Configuration reference. They are re-exported as `crate::config::…`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use url::Url;

use crate::config::api::Api;
use crate::config::declared::{
    CanaryKind, Check, Expectation, Format, HttpMethod, Schedule, StatusTable,
};
use crate::config::secret::Secret;

/// Above this, the monitor could itself get a key suspended (Last.fm ToS: 5 requests/s per IP).
pub const LASTFM_RATE_CEILING: f64 = 5.0;

/// The validated configuration.
#[derive(Debug)]
pub struct Config {
    /// `[web]`
    pub web: Web,
    /// Cap of the random first-run delay.
    pub startup_jitter: Duration,
    /// The targets, shared with their probe tasks.
    pub targets: Vec<Arc<Target>>,
    /// Endpoints that are not Last.fm, checked to tell our network's faults from Last.fm's.
    pub references: Vec<Reference>,
    /// What is accepted but looks wrong (a key that cannot be one), each a located line
    /// `file:line:col: context: key `k`: …`; `--config.check` prints them, the daemon logs them.
    pub warnings: Vec<String>,
}

/// `[[references]]`: an endpoint that is not Last.fm (the host's gateway, a large public site),
/// checked on its own schedule with a plain `GET`. Any HTTP answer counts as reachable: when
/// every reference fails too, a Last.fm run that could not connect is blamed on our network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The `reference` label.
    pub name: String,
    /// What is fetched; no secret is ever sent to it.
    pub url: Url,
    /// Gap between checks.
    pub interval: Duration,
    /// A check's deadline, shorter than `interval`.
    pub timeout: Duration,
}

/// `[web]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Web {
    /// Where `/metrics` and the other endpoints listen.
    pub listen_address: SocketAddr,
    /// `max_connections` when the file sets it; `None`: the default, which depends on the
    /// descriptor limit the daemon ends up with (README.md, Configuration reference).
    pub max_connections: Option<MaxConnections>,
}

/// `[web] max_connections` as configured, with its place in the file: whether it fits the
/// descriptor limit is known only once the daemon has raised that limit, and the refusal
/// then still names the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxConnections {
    /// Connections the server holds at once.
    pub value: u32,
    /// 1-based line of the value.
    pub line: usize,
    /// 1-based column of the value.
    pub column: usize,
}

/// One API to probe (Last.fm, Libre.fm, …).
#[derive(Debug, PartialEq)]
pub struct Target {
    /// The `target` label.
    pub name: String,
    /// API root, e.g. `https://ws.audioscrobbler.com/2.0/`.
    pub base_url: Url,
    /// The service it speaks to (`api`), which decides how its answers are judged.
    pub api: Api,
    /// Sent with every request.
    pub api_key: Secret,
    /// Signs `signed` probes; never sent.
    pub api_secret: Option<Secret>,
    /// Sent as `sk` on signed probes.
    pub session_key: Option<Secret>,
    /// How fast this target may be asked.
    pub politeness: Politeness,
    /// Consecutive upstream failures before the target counts as unavailable.
    pub down_after: u32,
    /// Consecutive healthy runs before it counts as available again.
    pub up_after: u32,
    /// The documented status per error code, with this target's overrides.
    pub statuses: StatusTable,
    /// Keep connections open between runs instead of a fresh one per run (`reuse_connections`).
    pub reuse_connections: bool,
    /// The share of 30 days the target should be available (`availability_objective`), the
    /// objective its error budget is measured against.
    pub availability_objective: f64,
    /// The probes of this target.
    pub probes: Vec<Probe>,
    /// The write-path canaries of this target (`[[targets.canaries]]`), beside its probes.
    pub canaries: Vec<Canary>,
    /// The most plays the target's `scrobble` canaries may write in a day (`max_scrobbles_per_day`).
    pub max_scrobbles_per_day: u32,
}

/// `[[targets.canaries]]`: a write to the canary account, then a read-back of its recent tracks
/// until the play shows, as one run. Each step is a request like a probe's, with its own
/// `probe` label (`<name>.write`, `<name>.read`), so the per-probe series and traces cover it.
#[derive(Debug, Clone, PartialEq)]
pub struct Canary {
    /// The `canary` label.
    pub name: String,
    /// Now playing or scrobble.
    pub kind: CanaryKind,
    /// The canary account, whose session the target's `session_key` is.
    pub user: String,
    /// The artist written.
    pub artist: String,
    /// The track written.
    pub track: String,
    /// When a run starts.
    pub schedule: ScheduleSpec,
    /// How long after an accepted write the read-back keeps looking.
    pub visible_within: Duration,
    /// The gap between read-back polls.
    pub poll_every: Duration,
    /// The write: a signed POST of `kind`'s method, named `<name>.write`.
    pub write: Probe,
    /// The read-back: `user.getRecentTracks` of `user`, named `<name>.read`.
    pub read: Probe,
}

/// One kind of request a target makes: a probe, or a step of a canary (by index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `probes[i]`.
    Probe(usize),
    /// The write of `canaries[i]`.
    Write(usize),
    /// The read-back of `canaries[i]`.
    Read(usize),
}

/// A target's request budget and backoff.
#[derive(Debug, Clone, PartialEq)]
pub struct Politeness {
    /// Token-bucket refill rate.
    pub max_requests_per_second: f64,
    /// Token-bucket size.
    pub burst: u32,
    /// After error 26 or 10: at most one request per this.
    pub suspended_interval: Duration,
    /// First backoff after 29/429 without `Retry-After`.
    pub backoff_initial: Duration,
    /// Backoff cap (also the cap on `Retry-After`).
    pub backoff_max: Duration,
}

/// One probe of a target.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// The `probe` label.
    pub name: String,
    /// The API method, e.g. `artist.getInfo`.
    pub method: String,
    /// Extra parameters, in config order.
    pub params: Vec<(String, String)>,
    /// JSON or XML.
    pub format: Format,
    /// POST (form body) or GET.
    pub http_method: HttpMethod,
    /// Whether `api_sig` (and `sk` when configured) are sent.
    pub signed: bool,
    /// What counts as a success.
    pub expect: Expectation,
    /// Content checks on a JSON success.
    pub checks: Vec<Check>,
    /// When it fires.
    pub schedule: ScheduleSpec,
    /// The run's deadline.
    pub timeout: Duration,
    /// Body read cap.
    pub max_body_bytes: u64,
}

/// A schedule with its source text (for equality across reloads and for display).
#[derive(Debug, Clone)]
pub struct ScheduleSpec {
    /// As written: `60s` or the cron expression.
    pub source: String,
    /// Parsed.
    pub schedule: Schedule,
}

impl PartialEq for ScheduleSpec {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Target {
    /// The request of `step`.
    pub fn step(&self, step: Step) -> Option<&Probe> {
        match step {
            Step::Probe(i) => self.probes.get(i),
            Step::Write(i) => self.canaries.get(i).map(|c| &c.write),
            Step::Read(i) => self.canaries.get(i).map(|c| &c.read),
        }
    }

    /// Every `probe` label the target exports: its probes, then each canary's steps (no
    /// read-back on a service without one).
    pub fn step_names(&self) -> impl Iterator<Item = &str> {
        let reads = self.api.has_read_back();
        self.probes
            .iter()
            .map(|p| p.name.as_str())
            .chain(self.canaries.iter().flat_map(move |c| {
                std::iter::once(c.write.name.as_str()).chain(reads.then_some(c.read.name.as_str()))
            }))
    }
}

impl Config {
    /// Finds a target by name.
    pub fn target(&self, name: &str) -> Option<&Arc<Target>> {
        self.targets.iter().find(|t| t.name == name)
    }

    /// Probes over all targets, a canary counting as one (a run holds one request at a time).
    pub fn probe_count(&self) -> usize {
        self.targets
            .iter()
            .map(|t| t.probes.len() + t.canaries.len())
            .sum()
    }
}

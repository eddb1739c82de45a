//! Scenarios: the data that tells the simulator what to answer, and when.
//!
//! A scenario is a timeline of phases; each phase holds rules that override the simulated API's
//! normal behaviour for some or all methods. Tests, `demo` and an operator's fire drill are all
//! scenarios, so this module owns only data and its validation: no sockets, no clock. The server asks
//! [`Scenario::phase_at`] with the time elapsed since the scenario started.
//!
//! # Format (TOML)
//!
//! ```toml
//! name = "fire-drill"
//! personality = "lastfm"             # or "librefm", "listenbrainz" (below); `--personality` overrides it
//! repeat = true                      # after the last phase, start again from the first (default true)
//!
//! # Optional: keys the simulator knows. Without any, every api_key of 32 hex characters is accepted,
//! # signatures are not verified and any non-empty sk is valid. With keys, an unknown api_key gets
//! # error 10, a wrong api_sig error 13 (verified with `secret`, default "") and an sk that is not
//! # listed error 9.
//! rate_limit_per_second = 5.0        # optional, for every key: beyond it error 29 / 429 (ListenBrainz: below)
//! session_users = { "sk-any" = "canary" }  # optional, without [[keys]]: whose session each sk is
//!
//! [[keys]]
//! api_key = "0123456789abcdef0123456789abcdef"
//! secret = "fedcba9876543210fedcba9876543210"
//! session_keys = ["sk-canary"]
//! session_users = { "sk-writer" = "canary" }  # optional: more valid session keys, each a user's
//! rate_limit_per_second = 5.0        # optional, for this key only (overrides the top-level one)
//!
//! [[phases]]
//! name = "healthy"
//! duration = "20s"                   # humantime; only the last phase may omit it (it then lasts forever)
//!
//! [[phases]]
//! name = "outage"
//! duration = "1m"
//! [[phases.rules]]                   # first match wins; without `method` a rule matches every method
//! method = "artist.getInfo"
//! respond = "error"
//! code = 8
//! status = 503                       # optional: default = the documented status for code and method
//! message = "Operation failed"       # optional: default = the real API's wording for the code
//! delay = "2s"                       # optional, every kind: wait before answering
//! retry_after = 30                   # optional, every kind: also send `Retry-After: 30`
//!
//! [[phases]]
//! name = "writes-invisible"
//! duration = "1m"
//! [phases.writes]                    # optional: how the write path behaves during this phase
//! visible_after = "20s"              # an accepted write shows in user.getRecentTracks this late
//! invisible = true                   # accepted writes never show (default false)
//! ignore = 1                         # every write answered ignored with this code, 1-5
//! daily_cap = 3                      # per user and UTC day, the scrobble after the 3rd: ignored, code 5
//! rate_limited = "user"              # every write: error 29, "user" or "key" scoped wording
//! quirk = "empty_body"               # accepted writes answered 200 with an empty `text/html` body;
//!                                    # "text_html": the usual body labelled `text/html; charset=UTF-8`
//! ```
//!
//! # The write path
//!
//! `track.updateNowPlaying` and `track.scrobble` (signed POSTs with an `sk`) write to a per-user play
//! store, and `user.getRecentTracks` reads it back (docs/LASTFM-API.md §7): the now-playing track
//! first, marked `nowplaying="true"` and without a date, then the scrobbles newest first, then the
//! canned history every user has. The user is the one the `sk` belongs to: `session_users` of the
//! key (or the top-level `session_users` without `[[keys]]`); every other valid session key belongs
//! to `simuser`, the user signed `user.getInfo` names. A now-playing track lasts its `duration`
//! (seconds) or 5 minutes without one, and a scrobble of the same track ends it. The checks run in
//! this order: `rate_limited`, `ignore`, `daily_cap` (scrobbles only; the count is kept across
//! phases), then the write is accepted and stored unless `invisible`. The knobs apply to the two
//! writes only; a rule (below) still wins over all of them, and a rule with `code = 29` and a
//! `message` limits every method. A `quirk` (Libre.fm's habit, pylast#186, multi-scrobbler#663,
//! but any personality takes it) breaks only the answer of an accepted write: the play is stored.
//!
//! `respond` is one of (all accept `status`, `delay` and `retry_after`):
//!
//! | respond | sends |
//! |---|---|
//! | `success` | a realistic success body for the method (JSON for `format=json`, else XML), 200 |
//! | `error` | the Last.fm error payload for `code` (required), optional `message` |
//! | `html` | the Google front-end "temporary error" HTML page, 502 |
//! | `empty` | an empty body, `Content-Length: 0`, 200 |
//! | `truncated` | the first half of a success body with an honest `Content-Length`, 200 |
//! | `reset` | a `Content-Length` for the whole success body, half of it, then the connection closes |
//! | `stall` | nothing, until the client leaves (at most 10 minutes) |
//! | `trickle` | a success body, one byte per second |
//! | `raw` | `body` verbatim as `content_type` (default `application/json`), 200 |
//! | `oversized` | `bytes` bytes of JSON-like filler with an honest `Content-Length`, 200 |
//! | `rate_limited` | the personality's rate limit: Last.fm's error 29 (429); ListenBrainz's 429 JSON with `X-RateLimit-Reset-In: reset_in` (optional, default 10) |
//!
//! A matched rule is answered as written, before any of the API's own checks (key, signature,
//! session, rate limit, unknown users), so a phase can force error 26 for everything. Requests no rule
//! matches get the normal behaviour. After the last phase the timeline starts again when `repeat` is
//! true; otherwise no phase is active any more and everything behaves normally.
//!
//! # Personalities
//!
//! A simulator plays one service (`personality`, default `lastfm`: everything above). The method
//! sets are the configuration's (`config::Api`); the checks and shapes are in `compat.rs`.
//!
//! - `librefm` (GNU FM): every API error with HTTP 200, also a rule's `error` without `status`;
//!   a method outside GNU FM's list is 3; without `[[keys]]` an api_key is only length-checked
//!   (32 characters, error 10 otherwise), signatures are never checked; writes must be POSTed (a
//!   GET lacks the parameters: 6) with an `sk` (6 without, 9 unknown); `user.getInfo` needs `user`;
//!   the too-long user is 7 "Invalid resource specified", in JSON as GNU FM's encoder writes it,
//!   `{"error": {"#text": "Invalid resource specified", "code": "7"}}`. XML comes as `text/xml`.
//!   `user.getRecentTracks` reads the play store back, under the visibility knobs. It never rate
//!   limits: `rate_limit_per_second`, `writes.rate_limited` and `respond = "rate_limited"` are
//!   refused. An `html` rule sends an nginx error page.
//! - `listenbrainz` (its compatibility API): only `auth.getToken`, `auth.getSession`,
//!   `auth.getSessionInfo`, `user.getInfo`, `track.updateNowPlaying` and `track.scrobble`, every
//!   other method 3, all with HTTP 200, also a rule's `error` without `status`; a write sent with
//!   `GET` is 16; any api_key is valid and signatures are ignored, the `sk` is what counts (9);
//!   `user.getInfo` needs an `sk` even with `user`; the too-long user is 7. JSON successes are its
//!   converter's (attributes as plain members, no `@attr`); XML comes as `application/xml`. Every
//!   request counts in a 10-second window per api_key of `rate_limit_per_second` × 10 requests
//!   (at least 1; 100 without the key), and every answer carries `X-RateLimit-Limit`,
//!   `X-RateLimit-Remaining` (counting down), `X-RateLimit-Reset-In` (seconds to the window's end)
//!   and `X-RateLimit-Reset` (its Unix time). Beyond the window, and for `writes.rate_limited` and
//!   `respond = "rate_limited"`, the answer is HTTP 429 with `{"code": 429, "error": "…"}` and
//!   those headers (`Remaining: 0`), never error 29. The auth methods answer an empty success.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::responses::SESSION_USER;
use super::rule::duration_opt;
pub(crate) use super::rule::{Respond, Rule};
use crate::config::Api;

/// A validated timeline of phases plus the keys the simulated API knows.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    #[serde(default = "default_name")]
    name: String,
    /// Which service the simulator plays; the `simulate --personality` flag overrides it.
    #[serde(default = "default_personality", deserialize_with = "personality")]
    personality: Api,
    #[serde(default = "default_repeat")]
    repeat: bool,
    #[serde(default)]
    rate_limit_per_second: Option<f64>,
    #[serde(default)]
    session_users: BTreeMap<String, String>,
    #[serde(default)]
    keys: Vec<KeyEntry>,
    #[serde(default)]
    phases: Vec<Phase>,
}

/// One stretch of the timeline and the rules that hold during it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    name: String,
    #[serde(default, deserialize_with = "duration_opt")]
    duration: Option<Duration>,
    #[serde(default)]
    rules: Vec<Rule>,
    #[serde(default)]
    writes: WriteKnobs,
}

/// How the write path behaves during a phase; the default is the healthy API.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WriteKnobs {
    /// How long after an accepted write the play shows in `user.getRecentTracks`.
    #[serde(default, deserialize_with = "duration_opt")]
    pub(crate) visible_after: Option<Duration>,
    /// Accepted writes never show.
    #[serde(default)]
    pub(crate) invisible: bool,
    /// Every write is ignored with this `ignoredMessage` code.
    #[serde(default)]
    pub(crate) ignore: Option<u8>,
    /// Scrobbles per user and UTC day before the next is ignored with code 5.
    #[serde(default)]
    pub(crate) daily_cap: Option<u32>,
    /// Every write is refused with error 29 in this scope's wording.
    #[serde(default)]
    pub(crate) rate_limited: Option<LimitScope>,
    /// Accepted writes come back broken the way Libre.fm's sometimes do.
    #[serde(default)]
    pub(crate) quirk: Option<WriteQuirk>,
}

/// How an accepted write's answer is broken (Libre.fm: pylast#186, multi-scrobbler#663); the
/// play is stored all the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum WriteQuirk {
    /// 200 with an empty body, as `text/html` (what PHP sends when a script dies early).
    EmptyBody,
    /// The usual body, labelled `text/html; charset=UTF-8`.
    TextHtml,
}

/// Whose budget a simulated error 29 says was spent; the wording is what tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LimitScope {
    User,
    Key,
}

/// An API key the simulator accepts, with its secret and valid session keys.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeyEntry {
    pub(crate) api_key: String,
    #[serde(default)]
    pub(crate) secret: String,
    #[serde(default)]
    pub(crate) session_keys: Vec<String>,
    #[serde(default)]
    pub(crate) session_users: BTreeMap<String, String>,
    #[serde(default)]
    pub(crate) rate_limit_per_second: Option<f64>,
}

impl fmt::Debug for KeyEntry {
    // Scenarios end up in logs; even simulated credentials stay out of them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyEntry")
            .field("api_key", &"<redacted>")
            .field("secret", &"<redacted>")
            .field("session_keys", &self.session_keys.len())
            .field("session_users", &self.session_users.len())
            .field("rate_limit_per_second", &self.rate_limit_per_second)
            .finish()
    }
}

/// Why a scenario could not be loaded; the message is meant for the operator.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read scenario file {}: {cause}", path.display())]
    ReadScenario {
        path: PathBuf,
        cause: std::io::Error,
    },
    /// Syntax, unknown keys or bad values; toml's message carries line, column and the key.
    #[error("invalid scenario{}: {cause}", origin(path.as_deref()))]
    ParseScenario {
        path: Option<PathBuf>,
        cause: toml::de::Error,
    },
    #[error("invalid scenario{}: {reason}", origin(path.as_deref()))]
    InvalidScenario {
        path: Option<PathBuf>,
        reason: String,
    },
}

fn origin(path: Option<&Path>) -> String {
    path.map(|p| format!(" {}", p.display()))
        .unwrap_or_default()
}

impl Scenario {
    /// Parses and validates a scenario; errors name the line and the offending key.
    pub fn from_toml_str(s: &str) -> Result<Self, ScenarioError> {
        Self::parse(s, None)
    }

    /// Reads and parses a scenario file; errors name the file.
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|cause| ScenarioError::ReadScenario {
            path: path.to_path_buf(),
            cause,
        })?;
        Self::parse(&text, Some(path))
    }

    /// Every request succeeds (subject to the API's own checks), forever.
    pub fn healthy() -> Self {
        Self {
            name: "healthy".to_owned(),
            personality: Api::Lastfm,
            repeat: true,
            rate_limit_per_second: None,
            session_users: BTreeMap::new(),
            keys: Vec::new(),
            phases: vec![Phase {
                name: "healthy".to_owned(),
                duration: None,
                rules: Vec::new(),
                writes: WriteKnobs::default(),
            }],
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The service the simulator plays (`personality`, default `lastfm`).
    pub fn personality(&self) -> Api {
        self.personality
    }

    /// The same scenario played as `api` (`simulate --personality`); refused when the scenario
    /// asks for something that service never does (Libre.fm has no rate limiting).
    pub fn with_personality(mut self, api: Api) -> Result<Self, ScenarioError> {
        self.personality = api;
        self.validate()
            .map_err(|reason| ScenarioError::InvalidScenario { path: None, reason })
    }

    pub fn phases(&self) -> &[Phase] {
        &self.phases
    }

    /// The length of one pass through the timeline; `None` when the last phase lasts forever.
    pub fn cycle_length(&self) -> Option<Duration> {
        // An overflowing sum never wraps either.
        self.phases
            .iter()
            .try_fold(Duration::ZERO, |acc, p| acc.checked_add(p.duration?))
    }

    /// The phase active `elapsed` after the scenario started; `None` once a non-repeating
    /// timeline has run out (or when there are no phases): then no rule applies.
    pub fn phase_at(&self, elapsed: Duration) -> Option<&Phase> {
        let t = match self.cycle_length() {
            Some(cycle) if self.repeat && !cycle.is_zero() => {
                let rem = elapsed.as_nanos() % cycle.as_nanos();
                // A cycle beyond u64 nanoseconds (584 years) has not wrapped yet.
                u64::try_from(rem).map_or(elapsed, Duration::from_nanos)
            }
            _ => elapsed,
        };
        let mut start = Duration::ZERO;
        for phase in &self.phases {
            match phase.duration {
                None => return Some(phase),
                Some(d) if t < start.saturating_add(d) => return Some(phase),
                Some(d) => start = start.saturating_add(d),
            }
        }
        None
    }

    pub(crate) fn keys(&self) -> &[KeyEntry] {
        &self.keys
    }

    pub(crate) fn rate_limit_per_second(&self) -> Option<f64> {
        self.rate_limit_per_second
    }

    /// The user a session key belongs to, for the key it came with (`None` without `[[keys]]`);
    /// a valid session key nobody claims is `simuser`'s.
    pub(crate) fn session_user<'a>(&'a self, key: Option<&'a KeyEntry>, sk: &str) -> &'a str {
        let users = key.map_or(&self.session_users, |k| &k.session_users);
        users.get(sk).map_or(SESSION_USER, String::as_str)
    }

    fn parse(text: &str, path: Option<&Path>) -> Result<Self, ScenarioError> {
        let scenario: Self =
            toml::from_str(text).map_err(|cause| ScenarioError::ParseScenario {
                path: path.map(Path::to_path_buf),
                cause,
            })?;
        scenario
            .validate()
            .map_err(|reason| ScenarioError::InvalidScenario {
                path: path.map(Path::to_path_buf),
                reason,
            })
    }

    /// Checks that span more than one value, so toml cannot place them on a line.
    fn validate(self) -> Result<Self, String> {
        let last = self.phases.len().saturating_sub(1);
        for (i, phase) in self.phases.iter().enumerate() {
            match phase.duration {
                None if i != last => {
                    return Err(format!(
                        "phase {:?} has no `duration` but is not the last phase",
                        phase.name
                    ));
                }
                Some(d) if d.is_zero() => {
                    return Err(format!("phase {:?} has a zero `duration`", phase.name));
                }
                _ => {}
            }
        }
        let limits = std::iter::once(self.rate_limit_per_second)
            .chain(self.keys.iter().map(|k| k.rate_limit_per_second));
        for limit in limits.flatten() {
            if !(limit.is_finite() && limit > 0.0) {
                return Err(format!("rate_limit_per_second = {limit} must be above 0"));
            }
        }
        for phase in &self.phases {
            phase.writes.validate(&phase.name)?;
        }
        self.validate_personality()?;
        let users = self.session_users.iter();
        let users = users.chain(self.keys.iter().flat_map(|k| &k.session_users));
        if let Some((sk, user)) = users
            .into_iter()
            .find(|(sk, u)| sk.is_empty() || u.is_empty())
        {
            return Err(format!(
                "session_users maps {} to {}: neither may be empty",
                if sk.is_empty() {
                    "an empty sk"
                } else {
                    "an sk"
                },
                if user.is_empty() {
                    "an empty user"
                } else {
                    "a user"
                },
            ));
        }
        if let Some(key) = self.keys.iter().find(|k| k.api_key.is_empty()) {
            return Err(format!(
                "a [[keys]] entry has an empty api_key ({} session keys)",
                key.session_keys.len()
            ));
        }
        Ok(self)
    }
}

impl Scenario {
    /// Libre.fm never rate limits (docs/LASTFM-API.md, Compatible APIs): a limit asked of it
    /// would rehearse an incident that cannot happen there, so it is refused rather than ignored.
    fn validate_personality(&self) -> Result<(), String> {
        if self.personality != Api::Librefm {
            return Ok(());
        }
        let refuse = |what: &str| {
            Err(format!(
                "{what}: personality \"librefm\" never rate limits (use an `error` or `html` rule)"
            ))
        };
        let per_key = self.keys.iter().any(|k| k.rate_limit_per_second.is_some());
        if self.rate_limit_per_second.is_some() || per_key {
            return refuse("rate_limit_per_second");
        }
        for phase in &self.phases {
            if phase.writes.rate_limited.is_some() {
                return refuse(&format!("phase {:?}: writes.rate_limited", phase.name));
            }
            let limits = |r: &&Rule| matches!(r.respond, Respond::RateLimited { .. });
            if phase.rules.iter().any(|r| limits(&r)) {
                return refuse(&format!(
                    "phase {:?}: respond = \"rate_limited\"",
                    phase.name
                ));
            }
        }
        Ok(())
    }
}

/// The personality named `text`: one of the `api` labels a target may carry.
pub fn personality_from_label(text: &str) -> Result<Api, String> {
    Api::ALL
        .into_iter()
        .find(|api| api.as_label() == text)
        .ok_or_else(|| {
            let known: Vec<_> = Api::ALL.into_iter().map(Api::as_label).collect();
            format!(
                "unknown personality {text:?}, expected one of {}",
                known.join(", ")
            )
        })
}

fn personality<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Api, D::Error> {
    let text = String::deserialize(de)?;
    personality_from_label(&text).map_err(serde::de::Error::custom)
}

fn default_personality() -> Api {
    Api::Lastfm
}

impl Phase {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `None` for a last phase that lasts forever.
    pub fn duration(&self) -> Option<Duration> {
        self.duration
    }

    /// The write path's knobs during this phase.
    pub(crate) fn writes(&self) -> &WriteKnobs {
        &self.writes
    }

    /// The first rule for `method` (compared like Last.fm does, ignoring ASCII case).
    pub(crate) fn rule_for(&self, method: Option<&str>) -> Option<&Rule> {
        self.rules.iter().find(|rule| match (&rule.method, method) {
            (None, _) => true,
            (Some(want), Some(got)) => want.eq_ignore_ascii_case(got),
            (Some(_), None) => false,
        })
    }
}

impl WriteKnobs {
    fn validate(&self, phase: &str) -> Result<(), String> {
        if let Some(code) = self.ignore.filter(|c| !(1..=5).contains(c)) {
            return Err(format!(
                "phase {phase:?}: writes.ignore = {code} is not an ignoredMessage code (1-5)"
            ));
        }
        if self.daily_cap == Some(0) {
            return Err(format!(
                "phase {phase:?}: writes.daily_cap must be above 0 (use `ignore = 5` to refuse all)"
            ));
        }
        Ok(())
    }
}

fn default_name() -> String {
    "unnamed".to_owned()
}

fn default_repeat() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn phase_name(scenario: &Scenario, at: Duration) -> Option<&str> {
        scenario.phase_at(at).map(Phase::name)
    }

    #[test]
    fn demo_runs_the_phases_in_order_over_three_and_a_half_minutes() {
        let demo = Scenario::demo();
        let names: Vec<_> = demo.phases().iter().map(Phase::name).collect();
        assert_eq!(
            names,
            [
                "healthy",
                "error-8-burst",
                "200-with-error",
                "rate-limited",
                "service-offline",
                "key-suspended",
                "writes-invisible",
                "recovery"
            ]
        );
        assert_eq!(demo.cycle_length(), Some(secs(205)));
        assert_eq!(phase_name(&demo, secs(9)), Some("healthy"));
        assert_eq!(phase_name(&demo, secs(10)), Some("error-8-burst"));
        assert_eq!(phase_name(&demo, secs(100)), Some("service-offline"));
        assert_eq!(phase_name(&demo, secs(150)), Some("writes-invisible"));
        assert_eq!(phase_name(&demo, secs(204)), Some("recovery"));
        assert_eq!(phase_name(&demo, secs(205 + 21)), Some("error-8-burst"));
    }

    #[test]
    fn demo_rules_say_what_the_incident_is() {
        let demo = Scenario::demo();
        let burst = demo.phase_at(secs(30)).expect("demo has a phase at 30 s");
        let rule = burst.rule_for(Some("ARTIST.getinfo")).expect("artist rule");
        assert_eq!(
            rule.respond,
            Respond::Error {
                code: 8,
                message: None
            }
        );
        assert_eq!(rule.status, Some(503));
        assert!(burst.rule_for(Some("user.getInfo")).is_none());
        let suspended = demo.phase_at(secs(130)).expect("demo has a phase at 130 s");
        assert!(suspended.rule_for(None).is_some(), "matches every method");
    }

    #[test]
    fn non_repeating_timeline_ends_without_a_phase() {
        let s = Scenario::from_toml_str(
            "repeat = false\n[[phases]]\nname = \"a\"\nduration = \"10s\"\n",
        )
        .unwrap();
        assert_eq!(phase_name(&s, secs(9)), Some("a"));
        assert_eq!(phase_name(&s, secs(10)), None);
    }

    #[test]
    fn last_phase_without_duration_lasts_forever() {
        let s = Scenario::from_toml_str(
            "[[phases]]\nname = \"a\"\nduration = \"1s\"\n[[phases]]\nname = \"b\"\n",
        )
        .unwrap();
        assert_eq!(s.cycle_length(), None);
        assert_eq!(phase_name(&s, secs(0)), Some("a"));
        assert_eq!(phase_name(&s, secs(100_000)), Some("b"));
        assert_eq!(
            phase_name(&Scenario::healthy(), secs(1 << 40)),
            Some("healthy")
        );
    }

    #[test]
    fn documented_example_parses() {
        let text = r#"
            name = "fire-drill"
            rate_limit_per_second = 2.0
            [[keys]]
            api_key = "0123456789abcdef0123456789abcdef"
            secret = "fedcba9876543210fedcba9876543210"
            session_keys = ["sk-canary"]
            rate_limit_per_second = 5.0
            [[phases]]
            name = "healthy"
            duration = "20s"
            [[phases]]
            name = "outage"
            [[phases.rules]]
            method = "artist.getInfo"
            respond = "error"
            code = 8
            status = 503
            delay = "2s"
            retry_after = 30
            [[phases.rules]]
            respond = "raw"
            body = "{}"
            [[phases.rules]]
            respond = "oversized"
            bytes = 1000
        "#;
        let s = Scenario::from_toml_str(text).unwrap();
        assert_eq!(s.name(), "fire-drill");
        assert_eq!(s.keys()[0].rate_limit_per_second, Some(5.0));
        let outage = s.phase_at(secs(25)).unwrap();
        assert_eq!(outage.rules[0].delay, secs(2));
        assert_eq!(outage.rules[0].retry_after, Some(30));
        assert_eq!(outage.rules[1].retry_after, None);
        assert!(!format!("{s:?}").contains("fedcba"), "secrets are redacted");
    }

    #[test]
    fn write_knobs_and_session_users_parse_with_defaults_that_change_nothing() {
        let text = r#"
            session_users = { "sk-any" = "anyone" }
            [[keys]]
            api_key = "0123456789abcdef0123456789abcdef"
            session_keys = ["sk-canary"]
            session_users = { "sk-writer" = "canary" }
            [[phases]]
            name = "writes-invisible"
            duration = "1m"
            [phases.writes]
            visible_after = "20s"
            invisible = true
            ignore = 1
            daily_cap = 3
            rate_limited = "user"
            [[phases]]
            name = "healthy"
        "#;
        let s = Scenario::from_toml_str(text).unwrap();
        let writes = s.phases()[0].writes();
        assert_eq!(writes.visible_after, Some(secs(20)));
        assert!(writes.invisible);
        assert_eq!((writes.ignore, writes.daily_cap), (Some(1), Some(3)));
        assert_eq!(writes.rate_limited, Some(LimitScope::User));
        let healthy = s.phases()[1].writes();
        assert!(healthy.visible_after.is_none() && !healthy.invisible);
        assert!(healthy.ignore.is_none() && healthy.daily_cap.is_none());
        assert!(healthy.rate_limited.is_none());
        let key = Some(&s.keys()[0]);
        assert_eq!(s.session_user(key, "sk-writer"), "canary");
        assert_eq!(s.session_user(key, "sk-canary"), SESSION_USER);
        assert_eq!(s.session_user(None, "sk-any"), "anyone");
        assert_eq!(s.session_user(None, "sk-other"), SESSION_USER);
        let demo = Scenario::demo();
        assert!(
            demo.phases()
                .iter()
                .all(|p| p.writes().rate_limited.is_none())
        );
    }

    #[test]
    fn write_knobs_are_checked() {
        for (writes, want) in [
            ("ignore = 0", "not an ignoredMessage code"),
            ("ignore = 6", "not an ignoredMessage code"),
            ("daily_cap = 0", "must be above 0"),
            ("rate_limited = \"ip\"", "unknown variant"),
            ("visible_after = \"later\"", "invalid duration"),
            ("invisibel = true", "invisibel"),
        ] {
            let text = format!("[[phases]]\nname = \"a\"\n[phases.writes]\n{writes}\n");
            let err = Scenario::from_toml_str(&text).unwrap_err().to_string();
            assert!(err.contains(want), "{writes}: {err}");
        }
        let err = Scenario::from_toml_str("session_users = { \"sk\" = \"\" }\n").unwrap_err();
        assert!(err.to_string().contains("neither may be empty"), "{err}");
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let err = Scenario::from_toml_str(
            "[[phases]]\nname = \"a\"\n[[phases.rules]]\nrespond = \"success\"\nstatuz = 200\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("statuz"), "{err}");
        assert!(err.contains("line 5"), "{err}");
    }

    #[test]
    fn rule_fields_must_fit_the_kind() {
        for (toml_rule, want) in [
            ("respond = \"error\"", "needs `code`"),
            ("respond = \"raw\"", "needs `body`"),
            ("respond = \"oversized\"", "needs `bytes`"),
            ("respond = \"html\"\ncode = 8", "`code` does not apply"),
            (
                "respond = \"error\"\ncode = 8\nstatus = 1000",
                "not an HTTP status",
            ),
            ("respond = \"teapot\"", "teapot"),
            ("respond = \"stall\"\ndelay = \"soon\"", "invalid duration"),
        ] {
            let text = format!("[[phases]]\nname = \"a\"\n[[phases.rules]]\n{toml_rule}\n");
            let err = Scenario::from_toml_str(&text).unwrap_err().to_string();
            assert!(err.contains(want), "{toml_rule:?}: {err}");
            assert!(err.contains("line "), "{err}");
        }
    }

    #[test]
    fn timeline_rules_are_checked() {
        for (text, want) in [
            (
                "[[phases]]\nname = \"a\"\n[[phases]]\nname = \"b\"\n",
                "not the last",
            ),
            ("[[phases]]\nname = \"a\"\nduration = \"0s\"\n", "zero"),
            ("rate_limit_per_second = 0.0\n", "must be above 0"),
        ] {
            let err = Scenario::from_toml_str(text).unwrap_err();
            assert!(
                matches!(err, ScenarioError::InvalidScenario { .. }),
                "{err}"
            );
            assert!(err.to_string().contains(want), "{err}");
        }
    }

    #[test]
    fn load_names_the_missing_file() {
        let path = Path::new("/nonexistent/drill.toml");
        let err = Scenario::load(path).unwrap_err().to_string();
        assert!(
            err.starts_with("cannot read scenario file /nonexistent/drill.toml"),
            "{err}"
        );
    }

    #[test]
    fn the_personality_defaults_to_lastfm_and_the_flag_overrides_the_file() {
        assert_eq!(Scenario::healthy().personality(), Api::Lastfm);
        assert_eq!(Scenario::demo().personality(), Api::Lastfm);
        let s = Scenario::from_toml_str("personality = \"listenbrainz\"\n").unwrap();
        assert_eq!(s.personality(), Api::Listenbrainz);
        let s = s.with_personality(Api::Librefm).unwrap();
        assert_eq!(s.personality(), Api::Librefm);
        for api in Api::ALL {
            assert_eq!(personality_from_label(api.as_label()), Ok(api));
        }
        let err = Scenario::from_toml_str("personality = \"maloja\"\n").unwrap_err();
        let err = err.to_string();
        assert!(err.contains("unknown personality \"maloja\""), "{err}");
        assert!(err.contains("lastfm, librefm, listenbrainz"), "{err}");
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn librefm_refuses_every_rate_limit_it_could_never_send() {
        for text in [
            "rate_limit_per_second = 1.0\n",
            "[[keys]]\napi_key = \"k\"\nrate_limit_per_second = 1.0\n",
            "[[phases]]\nname = \"a\"\n[phases.writes]\nrate_limited = \"key\"\n",
            "[[phases]]\nname = \"a\"\nrules = [{ respond = \"rate_limited\" }]\n",
        ] {
            let err = Scenario::from_toml_str(&format!("personality = \"librefm\"\n{text}"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("never rate limits"), "{text}: {err}");
            let other = Scenario::from_toml_str(text).unwrap();
            let err = other
                .with_personality(Api::Librefm)
                .unwrap_err()
                .to_string();
            assert!(err.contains("never rate limits"), "{text}: {err}");
        }
    }

    #[test]
    fn the_write_quirk_and_the_rate_limited_rule_parse() {
        let s = Scenario::from_toml_str(
            "[[phases]]\nname = \"a\"\nrules = [{ respond = \"rate_limited\", reset_in = 5 }]\n\
             [phases.writes]\nquirk = \"text_html\"\n",
        )
        .unwrap();
        let phase = &s.phases()[0];
        assert_eq!(phase.writes().quirk, Some(WriteQuirk::TextHtml));
        assert_eq!(phase.rules[0].respond, Respond::RateLimited { reset_in: 5 });
        let err = Scenario::from_toml_str(
            "[[phases]]\nname = \"a\"\nrules = [{ respond = \"html\", reset_in = 5 }]\n",
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("`reset_in` does not apply"),
            "{err}"
        );
        let err = Scenario::from_toml_str(
            "[[phases]]\nname = \"a\"\n[phases.writes]\nquirk = \"gone\"\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown variant"), "{err}");
    }
}

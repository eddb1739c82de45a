//! The status model: per target a state people and bots read, why, since when, uptime and
//! incidents, and per probe its last results. The page, `/api/v1/status`, the incident feed
//! and the badges are all views of it.
//!
//! It is fed by scheduled runs only (on-demand runs say nothing about the schedule's coverage),
//! each with its target's availability and conditions as health left them after the run
//! ([`TargetFacts`]). The state is derived, in this order: `unknown` before any run; `local` while
//! `local_network_down` or `local_resources_exhausted` is raised (our side is at fault, Last.fm's
//! state is unknown from here); `outage` while the target is unavailable; `degraded` while any
//! probe's latest run failed by Last.fm's fault; else `operational`. Only upstream-blamed facts
//! move a target to `degraded` or `outage`: our suspended key shows in the conditions, never
//! in the state.
//!
//! Memory is bounded whatever the uptime: per probe the last [`KEEP_POINTS`] results (about 40
//! bytes each), per target the uptime rings (under 1 KiB, `uptime.rs`) and a tally of at most
//! `KEEP_KINDS` failure kinds, and one ring of at most 100 incidents (`incidents.rs`). For 100
//! probes on 100 targets that is about 0.4 MiB, under the 1 MiB the design allows. It
//! survives a restart through the state file, captured at most once a minute ([`StatusBook::saved`]).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::classify::{Blame, Classification, Condition, Outcome};
use crate::health::Health;
use crate::history::incidents::{Incident, Incidents};
pub use crate::history::state::State;
use crate::history::uptime::{Figure, Uptime};

/// Results kept per probe: the page's strip.
pub const KEEP_POINTS: usize = 60;
/// Failure kinds tallied per target and state (a tally beyond it still counts the run).
const KEEP_KINDS: usize = 16;
/// Results the state file keeps, all probes together.
const SAVE_POINTS: usize = 20_000;
/// The least time between two captures for the state file (seconds).
const SAVE_GAP: i64 = 60;

/// What a run leaves of its target: read from the target's health right after the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetFacts {
    /// `lastfm_service_available`.
    pub available: bool,
    /// The raised conditions, in [`Condition::ALL`] order.
    pub conditions: Vec<Condition>,
}

impl TargetFacts {
    /// The facts of `health`.
    pub fn of(health: &Health) -> Self {
        Self {
            available: health.is_available(),
            conditions: Condition::ALL
                .into_iter()
                .filter(|c| health.has(*c))
                .collect(),
        }
    }
}

/// One result of a probe, as the strip shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Point {
    /// When the run ended (Unix seconds).
    pub at: i64,
    /// Its outcome.
    pub outcome: Outcome,
    /// Whether it met the probe's expectation.
    pub met: bool,
    /// Whether it failed by Last.fm's fault.
    pub upstream: bool,
    /// The Last.fm error code.
    pub code: Option<u32>,
    /// The HTTP status.
    pub status: Option<u16>,
    /// The request's duration.
    pub latency_ms: u32,
    /// The run's id for its trace link; 0 when the run is from before a restart.
    pub run: u64,
}

/// What a failure was, for the cause sentence: the closed outcome, code and status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kind {
    /// The outcome.
    pub outcome: Outcome,
    /// The error code of an `api_error`.
    pub code: Option<u32>,
    /// The status of an `http_error`.
    pub status: Option<u16>,
}

impl Kind {
    fn of(verdict: &Classification) -> Self {
        Self {
            outcome: verdict.outcome,
            code: verdict
                .error_code
                .filter(|_| verdict.outcome == Outcome::ApiError),
            status: verdict
                .http_status
                .filter(|_| verdict.outcome == Outcome::HttpError),
        }
    }

    /// "error 11, service offline", "HTTP 503", "timeout".
    pub fn describe(self) -> String {
        match (self.code, self.status) {
            (Some(code), _) => match crate::classify::code_name(code) {
                Some(name) => format!("error {code}, {name}"),
                None => format!("error {code}"),
            },
            (None, Some(status)) => format!("HTTP {status}"),
            (None, None) => self.outcome.as_label().replace('_', " "),
        }
    }
}

/// Why a target is in its state, from the verdicts since it entered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// The state.
    pub state: State,
    /// The most frequent upstream failure since `since`, if any.
    pub kind: Option<Kind>,
    /// Runs that failed so.
    pub failing: u32,
    /// Runs of the target since `since`.
    pub runs: u32,
    /// When the state began (Unix seconds).
    pub since: i64,
    /// The raised conditions.
    pub conditions: Vec<Condition>,
}

impl Cause {
    /// The sentence: "error 11, service offline, on 12 of 12 runs since 20:41 UTC". Without
    /// `counts` it leaves the counts out, so that it changes only with the state or the kind.
    pub fn sentence(&self, counts: bool, now: i64) -> String {
        let since = when(self.since, now);
        let ours: Vec<&str> = self
            .conditions
            .iter()
            .filter(|c| !matches!(c, Condition::ServiceOffline))
            .map(|c| c.as_label())
            .collect();
        let ours = if ours.is_empty() {
            String::new()
        } else {
            format!("; on our side: {}", ours.join(", "))
        };
        match (self.state, self.kind) {
            (State::Unknown, _) => "no run yet".to_owned(),
            (State::Local, _) => format!(
                "our network or host is at fault ({}): the service's state is unknown from here since {since}",
                ours.trim_start_matches("; on our side: ")
            ),
            (State::Degraded | State::Outage, Some(kind)) if counts => format!(
                "{}, on {} of {} runs since {since}{ours}",
                kind.describe(),
                self.failing,
                self.runs
            ),
            (State::Degraded | State::Outage, Some(kind)) => {
                format!("{}, since {since}{ours}", kind.describe())
            }
            (State::Degraded | State::Outage, None) => {
                format!("upstream failures since {since}{ours}")
            }
            (State::Operational, _) if counts => format!(
                "the service answers normally, {} run{} since {since}{ours}",
                self.runs,
                if self.runs == 1 { "" } else { "s" }
            ),
            (State::Operational, _) => {
                format!("the service answers normally since {since}{ours}")
            }
        }
    }
}

/// "20:41 UTC" on the day of `now`, else "2026-12-01 20:41 UTC".
fn when(at: i64, now: i64) -> String {
    let Some(at) = DateTime::<Utc>::from_timestamp(at, 0) else {
        return "an unknown time".to_owned();
    };
    let same_day =
        DateTime::<Utc>::from_timestamp(now, 0).is_some_and(|n| n.date_naive() == at.date_naive());
    if same_day {
        at.format("%H:%M UTC").to_string()
    } else {
        at.format("%Y-%m-%d %H:%M UTC").to_string()
    }
}

/// A recorded run, as the status model reads it.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    /// The run's id (its trace link).
    pub id: u64,
    /// `target` label.
    pub target: &'a str,
    /// `probe` label.
    pub probe: &'a str,
    /// When the run ended.
    pub at: DateTime<Utc>,
    /// Duration of the request.
    pub latency: std::time::Duration,
    /// The verdict.
    pub verdict: &'a Classification,
}

/// A probe's kept results.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct ProbeTrack {
    /// The last [`KEEP_POINTS`] results, oldest first: the strip and the last outcome.
    #[serde(with = "points_text")]
    points: VecDeque<Point>,
}

/// A probe's results in the state file as one line of text, "at outcome met upstream code
/// status latency run" per result, `;` between results: a JSON array of objects would take
/// five times the room once pretty-printed.
mod points_text {
    use std::collections::VecDeque;
    use std::fmt::Write as _;

    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    use crate::classify::Outcome;
    use crate::history::status::Point;

    fn optional<T: std::fmt::Display>(value: Option<T>) -> String {
        value.map_or_else(|| "-".to_owned(), |v| v.to_string())
    }

    pub(super) fn serialize<S: Serializer>(
        points: &VecDeque<Point>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut text = String::with_capacity(points.len() * 40);
        for (i, p) in points.iter().enumerate() {
            let _ = write!(
                text,
                "{}{} {} {} {} {} {} {} {}",
                if i == 0 { "" } else { ";" },
                p.at,
                p.outcome.as_label(),
                u8::from(p.met),
                u8::from(p.upstream),
                optional(p.code),
                optional(p.status),
                p.latency_ms,
                p.run
            );
        }
        serializer.serialize_str(&text)
    }

    fn parse(item: &str) -> Option<Point> {
        let mut fields = item.split(' ');
        let mut next = || fields.next();
        let at = next()?.parse().ok()?;
        let label = next()?;
        let outcome = Outcome::ALL.into_iter().find(|o| o.as_label() == label)?;
        let flag = |text: Option<&str>| match text? {
            "1" => Some(true),
            "0" => Some(false),
            _ => None,
        };
        let met = flag(next())?;
        let upstream = flag(next())?;
        let code = match next()? {
            "-" => None,
            text => Some(text.parse().ok()?),
        };
        let status = match next()? {
            "-" => None,
            text => Some(text.parse().ok()?),
        };
        Some(Point {
            at,
            outcome,
            met,
            upstream,
            code,
            status,
            latency_ms: next()?.parse().ok()?,
            run: next()?.parse().ok()?,
        })
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<VecDeque<Point>, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.split(';')
            .filter(|item| !item.is_empty())
            .map(|item| parse(item).ok_or_else(|| D::Error::custom("unreadable result")))
            .collect()
    }
}

/// A target's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Track {
    /// The state as of the latest run, so a change opens or closes an incident.
    state: State,
    /// When `state` began (Unix seconds): the cause's "since".
    since: i64,
    /// Runs since `since`.
    runs: u32,
    /// Upstream failures since `since`, by kind.
    kinds: Vec<(Kind, u32)>,
    /// Availability after the latest run: the span until the next run counts as up or down.
    available: bool,
    /// The conditions after the latest run, shown beside the state.
    conditions: Vec<Condition>,
    /// Time up and monitored.
    uptime: Uptime,
    /// Per probe name, its last results; a probe's latest failure by Last.fm's fault makes
    /// the target `degraded`.
    probes: BTreeMap<String, ProbeTrack>,
    /// The previous run's end in this process: the span since it is monitored time. Not kept
    /// across a restart, whose downtime is no one's.
    #[serde(skip)]
    last_at: Option<i64>,
}

impl Track {
    fn new(at: i64) -> Self {
        Self {
            state: State::Unknown,
            since: at,
            runs: 0,
            kinds: Vec::new(),
            available: true,
            conditions: Vec::new(),
            uptime: Uptime::default(),
            probes: BTreeMap::new(),
            last_at: None,
        }
    }

    fn derive(&self) -> State {
        let local = [
            Condition::LocalNetworkDown,
            Condition::LocalResourcesExhausted,
        ];
        if self.conditions.iter().any(|c| local.contains(c)) {
            State::Local
        } else if !self.available {
            State::Outage
        } else if self
            .probes
            .values()
            .any(|p| p.points.back().is_some_and(|p| p.upstream))
        {
            State::Degraded
        } else {
            State::Operational
        }
    }

    fn tally(&mut self, kind: Option<Kind>) {
        self.runs = self.runs.saturating_add(1);
        let Some(kind) = kind else { return };
        if let Some((_, n)) = self.kinds.iter_mut().find(|(k, _)| *k == kind) {
            *n = n.saturating_add(1);
        } else if self.kinds.len() < KEEP_KINDS {
            self.kinds.push((kind, 1));
        }
    }

    fn cause(&self) -> Cause {
        let top = self.kinds.iter().max_by_key(|(_, n)| *n).copied();
        Cause {
            state: self.state,
            kind: top.map(|(k, _)| k),
            failing: top.map_or(0, |(_, n)| n),
            runs: self.runs,
            since: self.since,
            conditions: self.conditions.clone(),
        }
    }
}

/// What the state file keeps of the status model.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedStatus {
    /// Per target name.
    targets: BTreeMap<String, Track>,
    /// Every target's incidents, in one capped ring.
    incidents: Incidents,
}

impl SavedStatus {
    /// Keeps at most [`SAVE_POINTS`] results in all, the newest of each probe, so the state
    /// file stays far below its cap (about 130 bytes a result) with thousands of probes.
    fn trim_points(&mut self) {
        let probes: usize = self.targets.values().map(|t| t.probes.len()).sum();
        let keep = (SAVE_POINTS / probes.max(1)).min(KEEP_POINTS);
        for probe in self
            .targets
            .values_mut()
            .flat_map(|t| t.probes.values_mut())
        {
            while probe.points.len() > keep {
                probe.points.pop_front();
            }
        }
    }
}

/// A target's status as views read it.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetStatus {
    /// The target's name.
    pub name: String,
    /// Why it is in its state (the state included).
    pub cause: Cause,
    /// When the state began; `None` before any run.
    pub since: Option<DateTime<Utc>>,
    /// Uptime over 1 h, 24 h and 7 d.
    pub uptime: [Figure; 3],
    /// Per configured probe, its kept results, oldest first.
    pub probes: Vec<(String, Vec<Point>)>,
}

impl TargetStatus {
    /// The state.
    pub fn state(&self) -> State {
        self.cause.state
    }
}

/// The status model, shared by the runner (which feeds it) and the server (which reads it).
#[derive(Debug, Default)]
pub struct StatusBook {
    inner: Mutex<SavedStatus>,
    /// The last capture for the state file and when it was taken.
    saved: Mutex<Option<(i64, SavedStatus)>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Plain data: a panic elsewhere cannot leave it inconsistent enough to stop reporting.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl StatusBook {
    /// Folds in a scheduled run and the facts it left of its target.
    pub fn observe(&self, record: Observed<'_>, facts: &TargetFacts) {
        let at = record.at.timestamp();
        let verdict = &record.verdict;
        let upstream = !verdict.api_healthy && verdict.blame == Some(Blame::Upstream);
        let mut book = lock(&self.inner);
        let SavedStatus { targets, incidents } = &mut *book;
        let track = targets
            .entry(record.target.to_owned())
            .or_insert_with(|| Track::new(at));
        if let Some(last) = track.last_at.filter(|last| *last < at) {
            track.uptime.add(last, at, track.available);
        }
        track.last_at = Some(track.last_at.map_or(at, |last| last.max(at)));
        track.available = facts.available;
        track.conditions.clone_from(&facts.conditions);
        let points = &mut track
            .probes
            .entry(record.probe.to_owned())
            .or_default()
            .points;
        points.push_back(Point {
            at,
            outcome: verdict.outcome,
            met: verdict.met_expectation,
            upstream,
            code: verdict.error_code,
            status: verdict.http_status,
            latency_ms: u32::try_from(record.latency.as_millis()).unwrap_or(u32::MAX),
            run: record.id,
        });
        while points.len() > KEEP_POINTS {
            points.pop_front();
        }
        let state = track.derive();
        if state != track.state {
            if track.state.is_incident() {
                incidents.close(record.target, at);
            }
            track.state = state;
            track.since = at;
            track.runs = 0;
            track.kinds.clear();
        }
        track.tally(upstream.then(|| Kind::of(verdict)));
        let cause = track.cause();
        if state.is_incident() && cause.runs == 1 {
            incidents.open(record.target, state, at, cause.sentence(true, at));
        } else if state.is_incident() {
            incidents.set_cause(record.target, || cause.sentence(true, at));
        }
    }

    /// The status of each of `targets` (name, probe names) at `now`.
    pub fn view(&self, targets: &[(&str, Vec<&str>)], now: DateTime<Utc>) -> Vec<TargetStatus> {
        let book = lock(&self.inner);
        let unix = now.timestamp();
        targets
            .iter()
            .map(|(name, probes)| {
                let track = book.targets.get(*name);
                let cause = track.map_or_else(|| Track::new(unix).cause(), |track| track.cause());
                TargetStatus {
                    name: (*name).to_owned(),
                    since: track.and_then(|t| DateTime::from_timestamp(t.since, 0)),
                    cause,
                    uptime: track.map_or_else(
                        || Uptime::default().figures(unix),
                        |t| t.uptime.figures(unix),
                    ),
                    probes: probes
                        .iter()
                        .map(|probe| {
                            let points = track
                                .and_then(|t| t.probes.get(*probe))
                                .map(|p| p.points.iter().cloned().collect())
                                .unwrap_or_default();
                            ((*probe).to_owned(), points)
                        })
                        .collect(),
                }
            })
            .collect()
    }

    /// The kept incidents, newest first.
    pub fn incidents(&self) -> Vec<Incident> {
        lock(&self.inner).incidents.newest_first()
    }

    /// Forgets probes (and targets with none left, with their incidents) that `keep` refuses.
    pub fn retain(&self, keep: impl Fn(&str, &str) -> bool) {
        let mut book = lock(&self.inner);
        let SavedStatus { targets, incidents } = &mut *book;
        targets.retain(|target, track| {
            track.probes.retain(|probe, _| keep(target, probe));
            !track.probes.is_empty()
        });
        incidents.retain(|target| targets.contains_key(target));
    }

    /// What the state file keeps, as of at most a minute ago unless `fresh` (shutdown).
    pub fn saved(&self, now: i64, fresh: bool) -> SavedStatus {
        let mut saved = lock(&self.saved);
        match &*saved {
            Some((at, status)) if !fresh && now - *at < SAVE_GAP => status.clone(),
            Some(_) | None => {
                let mut status = lock(&self.inner).clone();
                status.trim_points();
                *saved = Some((now, status.clone()));
                status
            }
        }
    }

    /// Takes up what a state file kept. Its results' run ids are of another process: their
    /// trace links are dropped. Anything out of shape is bounded or reset.
    pub fn restore(&self, saved: &SavedStatus) {
        let mut saved = saved.clone();
        for track in saved.targets.values_mut() {
            if !track.uptime.is_well_formed() {
                track.uptime = Uptime::default();
            }
            track.kinds.truncate(KEEP_KINDS);
            for probe in track.probes.values_mut() {
                while probe.points.len() > KEEP_POINTS {
                    probe.points.pop_front();
                }
                for point in &mut probe.points {
                    point.run = 0;
                }
            }
        }
        saved.incidents = saved.incidents.bounded();
        *lock(&self.inner) = saved;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::history::RunRecord;
    use crate::history::trace::Trace;

    trait Feed {
        fn feed(&self, record: &RunRecord, facts: &TargetFacts);
    }

    impl Feed for StatusBook {
        fn feed(&self, r: &RunRecord, facts: &TargetFacts) {
            let observed = Observed {
                id: r.id,
                target: &r.target,
                probe: &r.probe,
                at: r.at,
                latency: r.latency,
                verdict: &r.verdict,
            };
            self.observe(observed, facts);
        }
    }

    const T0: i64 = 1_764_000_000;

    fn run(id: u64, probe: &str, at: i64, verdict: Classification) -> RunRecord {
        RunRecord {
            id,
            target: "lastfm".into(),
            probe: probe.into(),
            at: DateTime::from_timestamp(at, 0).unwrap(),
            latency: Duration::from_millis(40),
            verdict,
            on_demand: false,
            trace: Trace::default(),
            facts: None,
        }
    }

    fn error_11() -> Classification {
        Classification {
            http_status: Some(503),
            error_code: Some(11),
            blame: Some(Blame::Upstream),
            ..Classification::new(Outcome::ApiError)
        }
    }

    fn facts(available: bool, conditions: &[Condition]) -> TargetFacts {
        TargetFacts {
            available,
            conditions: conditions.to_vec(),
        }
    }

    fn view(book: &StatusBook, now: i64) -> TargetStatus {
        let now = DateTime::from_timestamp(now, 0).unwrap();
        book.view(&[("lastfm", vec!["a", "b"])], now).remove(0)
    }

    #[test]
    fn states_walk_from_unknown_through_degraded_and_outage_with_incidents() {
        let book = StatusBook::default();
        assert_eq!(view(&book, T0).state(), State::Unknown);
        assert_eq!(view(&book, T0).cause.sentence(true, T0), "no run yet");
        book.feed(
            &run(1, "a", T0, Classification::success(200)),
            &facts(true, &[]),
        );
        assert_eq!(view(&book, T0).state(), State::Operational);
        book.feed(&run(2, "a", T0 + 60, error_11()), &facts(true, &[]));
        assert_eq!(view(&book, T0 + 60).state(), State::Degraded);
        let offline = [Condition::ServiceOffline];
        for i in 0..11 {
            book.feed(
                &run(3 + i, "a", T0 + 120 + 60 * i as i64, error_11()),
                &facts(false, &offline),
            );
        }
        let now = T0 + 120 + 60 * 11;
        let status = view(&book, now);
        assert_eq!(status.state(), State::Outage);
        assert!(status.state().is_degraded());
        let since = DateTime::<Utc>::from_timestamp(T0 + 120, 0)
            .unwrap()
            .format("%H:%M");
        assert_eq!(
            status.cause.sentence(true, now),
            format!("error 11, service offline, on 11 of 11 runs since {since} UTC")
        );
        assert_eq!(
            status.cause.sentence(false, now),
            format!("error 11, service offline, since {since} UTC")
        );
        assert_eq!(status.probes[0].1.len(), 13);
        assert!(status.probes[1].1.is_empty(), "b has not run");
        book.feed(
            &run(20, "a", now + 60, Classification::success(200)),
            &facts(true, &[]),
        );
        assert_eq!(view(&book, now + 60).state(), State::Operational);
        let incidents = book.incidents();
        assert_eq!(incidents.len(), 2);
        assert_eq!(
            (incidents[0].state, incidents[0].end),
            (State::Outage, Some(now + 60))
        );
        assert_eq!(
            (incidents[1].state, incidents[1].end),
            (State::Degraded, Some(T0 + 120))
        );
        assert!(
            incidents[0].cause.contains("on 11 of 11 runs"),
            "{}",
            incidents[0].cause
        );
    }

    #[test]
    fn our_own_faults_are_local_or_conditions_never_degraded() {
        let book = StatusBook::default();
        let mut suspended = Classification::new(Outcome::ApiError);
        suspended.blame = Some(Blame::Client);
        suspended.error_code = Some(26);
        book.feed(
            &run(1, "a", T0, suspended),
            &facts(true, &[Condition::ApiKeySuspended]),
        );
        let status = view(&book, T0);
        assert_eq!(status.state(), State::Operational);
        assert!(
            status
                .cause
                .sentence(false, T0)
                .ends_with("; on our side: api_key_suspended")
        );
        let mut local = Classification::new(Outcome::ConnectionError);
        local.blame = Some(Blame::Local);
        book.feed(
            &run(2, "a", T0 + 60, local),
            &facts(true, &[Condition::LocalNetworkDown]),
        );
        let status = view(&book, T0 + 60);
        assert_eq!(status.state(), State::Local);
        assert!(!status.state().is_degraded());
        assert!(
            status
                .cause
                .sentence(false, T0)
                .contains("(local_network_down)")
        );
    }

    #[test]
    fn uptime_counts_the_time_between_runs_and_a_restore_keeps_it_without_links() {
        let book = StatusBook::default();
        let start = T0 - T0 % 3600;
        for i in 0..10 {
            let verdict = if i < 5 {
                Classification::success(200)
            } else {
                error_11()
            };
            book.feed(
                &run(i + 1, "a", start + 60 * i as i64, verdict),
                &facts(i < 6, &[]),
            );
        }
        let figures = view(&book, start + 3600).uptime;
        assert_eq!(figures[0].ratio, Some(6.0 / 9.0));
        assert!((figures[0].coverage - 540.0 / 3600.0).abs() < 1e-9);

        let saved = book.saved(start + 3600, false);
        let json = serde_json::to_string(&saved).unwrap();
        let back: SavedStatus = serde_json::from_str(&json).unwrap();
        assert_eq!(serde_json::to_string(&back).unwrap(), json);
        let restored = StatusBook::default();
        restored.restore(&back);
        let status = view(&restored, start + 3600);
        assert_eq!(status.uptime, figures);
        assert!(status.probes[0].1.iter().all(|p| p.run == 0));
        assert_eq!(restored.incidents(), book.incidents());
        // Captures are at most a minute apart unless fresh.
        book.feed(
            &run(99, "b", start + 3700, Classification::success(200)),
            &facts(true, &[]),
        );
        assert_eq!(book.saved(start + 3630, false), saved);
        assert_ne!(book.saved(start + 3630, true), saved);
    }

    #[test]
    fn the_state_file_keeps_fewer_results_per_probe_when_there_are_thousands() {
        let book = StatusBook::default();
        for p in 0..1000 {
            for i in 0..60 {
                let mut r = run(i, &format!("p{p}"), T0 + i as i64, error_11());
                r.target = format!("t{}", p % 10);
                book.feed(&r, &facts(true, &[]));
            }
        }
        let saved = book.saved(T0 + 100, true);
        let kept: usize = saved
            .targets
            .values()
            .flat_map(|t| t.probes.values())
            .map(|p| p.points.len())
            .sum();
        assert_eq!(kept, 20 * 1000);
        let small = StatusBook::default();
        small.feed(&run(1, "a", T0, error_11()), &facts(true, &[]));
        let saved = small.saved(T0, true);
        assert_eq!(saved.targets["lastfm"].probes["a"].points.len(), 1);
    }

    #[test]
    fn results_are_one_line_of_text_in_the_state_file_and_a_bad_one_is_refused() {
        let book = StatusBook::default();
        book.feed(&run(7, "a", T0, error_11()), &facts(false, &[]));
        book.feed(
            &run(8, "a", T0 + 60, Classification::success(200)),
            &facts(true, &[]),
        );
        let json = serde_json::to_string(&book.saved(T0 + 60, true)).unwrap();
        assert!(
            json.contains("\"points\":\"1764000000 api_error 0 1 11 503 40 7;1764000060 success 1 0 - 200 40 8\""),
            "{json}"
        );
        let broken = json.replace("api_error 0 1 11", "api_error 0 1 eleven");
        assert!(serde_json::from_str::<SavedStatus>(&broken).is_err());
        let broken = json.replace("success 1 0", "no_such_outcome 1 0");
        assert!(serde_json::from_str::<SavedStatus>(&broken).is_err());
    }

    #[test]
    fn memory_stays_bounded_per_probe() {
        let book = StatusBook::default();
        for i in 0..1000 {
            book.feed(&run(i, "a", T0 + i as i64, error_11()), &facts(true, &[]));
        }
        assert_eq!(view(&book, T0 + 1000).probes[0].1.len(), KEEP_POINTS);
    }
}

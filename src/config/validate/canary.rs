//! A target's `[[targets.canaries]]`: each canary's name, kind, account, play, schedule and
//! read-back window, and the rules that keep canaries polite and safe (README.md, "The write
//! path"): they need the target's `api_secret` and `session_key`, they all write to one
//! account, their steps' `probe` labels are free, a run ends before the next one starts, and the
//! `scrobble` canaries stay under `max_scrobbles_per_day`.

use std::collections::BTreeSet;
use std::ops::Range;
use std::time::Duration;

use chrono::Utc;
use toml::Spanned;

use crate::config::declared::{CanaryKind, Expectation, HttpMethod, Schedule};
use crate::config::defaults;
use crate::config::file::{CanaryFile, TargetFile};
use crate::config::model::{Canary, Probe, ScheduleSpec};
use crate::config::parse;

use super::{Inherited, Validator};

/// Entries the read-back asks for: the canary's play is the newest unless the account is used
/// by something else at the same time.
const READ_LIMIT: &str = "10";
/// The `duration` a scrobble carries: plays shorter than 30 s are filtered.
const SCROBBLE_SECONDS: u64 = 180;
/// A day, for the scrobble cap.
const DAY: Duration = Duration::from_secs(24 * 3600);

/// What the target's canaries need from the target.
pub(super) struct CanaryContext<'a> {
    /// "target \"name\"".
    pub(super) target_ctx: &'a str,
    /// The target's table, for its secrets and its cap.
    pub(super) file: &'a TargetFile,
    /// The names of the target's probes.
    pub(super) probe_names: BTreeSet<String>,
}

impl Validator<'_> {
    /// The target's canaries, and its `max_scrobbles_per_day`.
    pub(super) fn target_canaries(
        &mut self,
        files: &[Spanned<CanaryFile>],
        context: &CanaryContext<'_>,
        inherited: &Inherited,
    ) -> (Vec<Canary>, u32) {
        let ctx = context.target_ctx;
        let cap = self
            .count(
                context.file.max_scrobbles_per_day.as_ref(),
                ctx,
                "max_scrobbles_per_day",
                1,
                defaults::MAX_SCROBBLES_PER_DAY_CEILING,
            )
            .unwrap_or(defaults::MAX_SCROBBLES_PER_DAY);
        let Some(first) = files.first() else {
            return (Vec::new(), cap);
        };
        for (key, present) in [
            ("api_secret", context.file.api_secret.is_some()),
            ("session_key", context.file.session_key.is_some()),
        ] {
            if !present {
                self.problem(
                    Some(first.span()),
                    ctx,
                    key,
                    format!(
                        "canaries write to the canary account and need the target's {key}; set {key} = {{ credential = \"{key}\" }} (README.md, \"The write path\") or remove the canaries"
                    ),
                );
            }
        }
        let mut names = BTreeSet::new();
        let mut user: Option<String> = None;
        let mut canaries = Vec::new();
        for (index, file) in files.iter().enumerate() {
            let Some(canary) = self.canary(index, file, context, inherited) else {
                continue;
            };
            let cctx = format!("{ctx}, canary {:?}", canary.name);
            let name_span = file.get_ref().name.as_ref().map(Spanned::span);
            if !names.insert(canary.name.clone()) {
                self.problem(
                    name_span,
                    &cctx,
                    "name",
                    "another canary of this target has the same name; set a distinct name"
                        .to_owned(),
                );
            }
            match &user {
                None => user = Some(canary.user.clone()),
                Some(u) if !u.eq_ignore_ascii_case(&canary.user) => self.problem(
                    file.get_ref().user.as_ref().map(Spanned::span),
                    &cctx,
                    "user",
                    format!(
                        "{:?} is not {u:?}, the user of this target's other canaries; the target's session_key belongs to one account, so every canary names it",
                        canary.user
                    ),
                ),
                Some(_) => {}
            }
            canaries.push(canary);
        }
        self.scrobble_cap(files, &canaries, cap, context);
        (canaries, cap)
    }

    /// Refuses `scrobble` canaries whose schedules write more than `cap` plays in a day.
    fn scrobble_cap(
        &mut self,
        files: &[Spanned<CanaryFile>],
        canaries: &[Canary],
        cap: u32,
        context: &CanaryContext<'_>,
    ) {
        let per_day: u64 = canaries
            .iter()
            .filter(|c| c.kind == CanaryKind::Scrobble)
            .map(|c| fires_per_day(&c.schedule.schedule, self.now, cap))
            .sum();
        if per_day > u64::from(cap) {
            let at = context
                .file
                .max_scrobbles_per_day
                .as_ref()
                .map(Spanned::span)
                .or_else(|| files.first().map(Spanned::span));
            self.problem(
                at,
                context.target_ctx,
                "max_scrobbles_per_day",
                format!(
                    "the scrobble canaries' schedules write {per_day} plays a day, more than max_scrobbles_per_day ({cap}); run them less often (the account itself is cut off near 3,000 a day)"
                ),
            );
        }
    }

    /// One canary, or `None` when a key it cannot do without is wrong.
    fn canary(
        &mut self,
        index: usize,
        spanned: &Spanned<CanaryFile>,
        context: &CanaryContext<'_>,
        inherited: &Inherited,
    ) -> Option<Canary> {
        let file = spanned.get_ref();
        let indexed = format!("{}, canaries[{index}]", context.target_ctx);
        let name = self.canary_name(file.name.as_ref(), spanned.span(), &indexed, context);
        let ctx = match &name {
            Some(n) => format!("{}, canary {n:?}", context.target_ctx),
            None => indexed,
        };
        let kind = match &file.kind {
            None => Some(CanaryKind::NowPlaying),
            Some(kind) => self.choice(
                Some(kind),
                &ctx,
                "kind",
                &CanaryKind::ALL.map(|k| (k.as_label(), k)),
                "use \"now_playing\" (leaves nothing in the history) or \"scrobble\"",
            ),
        };
        let user = self.canary_text(file.user.as_ref(), &ctx, "user", None, spanned.span());
        let artist = self.canary_text(
            file.artist.as_ref(),
            &ctx,
            "artist",
            Some(defaults::CANARY_ARTIST),
            spanned.span(),
        );
        let track = self.canary_text(
            file.track.as_ref(),
            &ctx,
            "track",
            Some(defaults::CANARY_TRACK),
            spanned.span(),
        );
        let schedule = self.canary_schedule(file, kind?, &ctx);
        let timing = self.canary_timing(file, schedule.as_ref(), spanned.span(), inherited, &ctx);
        let steps = Steps {
            format: match &file.format {
                Some(f) => self.format(Some(f), &ctx)?,
                None => inherited.format,
            },
            read_method: match &file.http_method {
                Some(m) => self.http_method(Some(m), &ctx)?,
                None => inherited.http_method,
            },
            max_body_bytes: match &file.max_body_bytes {
                Some(m) => self.max_body_bytes(Some(m), &ctx)?,
                None => inherited.max_body_bytes,
            },
        };
        let (name, kind, user, artist, track, schedule) =
            (name?, kind?, user?, artist?, track?, schedule?);
        let (timeout, visible_within, poll_every) = timing;
        let write = steps.write(
            &name,
            kind,
            &artist,
            &track,
            &schedule,
            timeout,
            visible_within,
        );
        let read = steps.read(&name, &user, &schedule, timeout);
        Some(Canary {
            name,
            kind,
            user,
            artist,
            track,
            schedule,
            visible_within,
            poll_every,
            write,
            read,
        })
    }

    /// The `canary` label: required, `[a-z0-9_-]`, and its steps' `probe` labels not taken by
    /// a probe of the target.
    fn canary_name(
        &mut self,
        name: Option<&Spanned<String>>,
        span: Range<usize>,
        ctx: &str,
        context: &CanaryContext<'_>,
    ) -> Option<String> {
        let Some(name) = name else {
            self.problem(
                Some(span),
                ctx,
                "name",
                "missing; every canary needs a name made of [a-z0-9_-] (it becomes the `canary` label)"
                    .to_owned(),
            );
            return None;
        };
        let text = name.get_ref();
        if !parse::is_target_name(text) {
            self.problem(
                Some(name.span()),
                ctx,
                "name",
                format!(
                    "{text:?} is not a valid canary name; use lowercase letters, digits, '_' and '-' (it becomes the `canary` label)"
                ),
            );
            return None;
        }
        for step in [format!("{text}.write"), format!("{text}.read")] {
            if context.probe_names.contains(&step) {
                self.problem(
                    Some(name.span()),
                    ctx,
                    "name",
                    format!(
                        "a probe of this target is named {step:?}, the `probe` label of this canary's step; rename that probe"
                    ),
                );
            }
        }
        Some(text.clone())
    }

    /// `user`, `artist` or `track`: text sent to the API, 1 to 256 bytes, without control
    /// characters; `default` when absent (`None`: required).
    fn canary_text(
        &mut self,
        value: Option<&Spanned<String>>,
        ctx: &str,
        key: &str,
        default: Option<&str>,
        span: Range<usize>,
    ) -> Option<String> {
        let Some(value) = value else {
            if default.is_none() {
                self.problem(
                    Some(span),
                    ctx,
                    key,
                    "missing; name the canary account, whose session the target's session_key is"
                        .to_owned(),
                );
            }
            return default.map(str::to_owned);
        };
        let text = value.get_ref();
        if text.trim().is_empty() || text.len() > 256 || text.chars().any(char::is_control) {
            self.problem(
                Some(value.span()),
                ctx,
                key,
                format!("{text:?} must be 1 to 256 bytes of text without control characters"),
            );
            return None;
        }
        Some(text.clone())
    }

    /// The canary's own `interval` or `cron`, else its kind's default (not `[defaults]`'
    /// probe interval: a write is a heavier request than a read).
    fn canary_schedule(
        &mut self,
        file: &CanaryFile,
        kind: CanaryKind,
        ctx: &str,
    ) -> Option<ScheduleSpec> {
        if file.interval.is_some() || file.cron.is_some() {
            return self.schedule(file.interval.as_ref(), file.cron.as_ref(), ctx);
        }
        let every = match kind {
            CanaryKind::NowPlaying => defaults::CANARY_NOW_PLAYING_INTERVAL,
            CanaryKind::Scrobble => defaults::CANARY_SCROBBLE_INTERVAL,
        };
        Some(ScheduleSpec {
            source: humantime::format_duration(every).to_string(),
            schedule: Schedule::Every(every),
        })
    }

    /// `timeout`, `visible_within` and `poll_every`: a whole run (the write, then the
    /// read-back's window) ends before the next one starts.
    fn canary_timing(
        &mut self,
        file: &CanaryFile,
        schedule: Option<&ScheduleSpec>,
        span: Range<usize>,
        inherited: &Inherited,
        ctx: &str,
    ) -> (Duration, Duration, Duration) {
        let timeout = self
            .duration(file.timeout.as_ref(), ctx, "timeout", parse::TIMEOUT)
            .unwrap_or(inherited.timeout);
        let visible_within = self
            .duration(
                file.visible_within.as_ref(),
                ctx,
                "visible_within",
                parse::PERIOD,
            )
            .unwrap_or(defaults::CANARY_VISIBLE_WITHIN);
        let poll_every = self
            .duration(file.poll_every.as_ref(), ctx, "poll_every", parse::PERIOD)
            .unwrap_or(defaults::CANARY_POLL_EVERY);
        if poll_every > visible_within {
            self.problem(
                file.poll_every
                    .as_ref()
                    .map_or(Some(span.clone()), |p| Some(p.span())),
                ctx,
                "poll_every",
                format!(
                    "{} is longer than visible_within ({}); the read-back would never poll",
                    humantime::format_duration(poll_every),
                    humantime::format_duration(visible_within)
                ),
            );
        }
        let run = visible_within.saturating_add(timeout);
        if let Some(gap) = schedule.and_then(|s| s.schedule.shortest_gap(self.now))
            && run >= gap
        {
            let at = file
                .visible_within
                .as_ref()
                .or(file.timeout.as_ref())
                .or(file.interval.as_ref())
                .or(file.cron.as_ref())
                .map_or(span, Spanned::span);
            self.problem(
                Some(at),
                ctx,
                "visible_within",
                format!(
                    "visible_within + timeout ({}) is not shorter than the shortest gap between runs ({}); a run would still be reading back when the next one starts: shorten visible_within or run less often",
                    humantime::format_duration(run),
                    humantime::format_duration(gap)
                ),
            );
        }
        (timeout, visible_within, poll_every)
    }
}

/// The settings both steps of a canary share.
struct Steps {
    format: crate::config::declared::Format,
    read_method: HttpMethod,
    max_body_bytes: u64,
}

impl Steps {
    /// The write: signed, always POST. A now-playing's `duration` is the read-back's window
    /// and the last poll's timeout: it shows for as long as the run looks for it and is gone
    /// before the next run (the schedule leaves a longer gap), so a run never sees the
    /// previous run's play.
    #[expect(clippy::too_many_arguments, reason = "the fields of one request")]
    fn write(
        &self,
        name: &str,
        kind: CanaryKind,
        artist: &str,
        track: &str,
        schedule: &ScheduleSpec,
        timeout: Duration,
        visible_within: Duration,
    ) -> Probe {
        let seconds = match kind {
            CanaryKind::NowPlaying => {
                visible_within.saturating_add(timeout).as_secs_f64().ceil() as u64
            }
            CanaryKind::Scrobble => SCROBBLE_SECONDS,
        };
        Probe {
            name: format!("{name}.write"),
            method: kind.method().to_owned(),
            params: vec![
                ("artist".to_owned(), artist.to_owned()),
                ("track".to_owned(), track.to_owned()),
                ("duration".to_owned(), seconds.to_string()),
            ],
            format: self.format,
            http_method: HttpMethod::Post,
            signed: true,
            expect: Expectation::Success,
            checks: Vec::new(),
            schedule: schedule.clone(),
            timeout,
            max_body_bytes: self.max_body_bytes,
        }
    }

    /// The read-back: the account's recent tracks, unsigned (they are public).
    fn read(&self, name: &str, user: &str, schedule: &ScheduleSpec, timeout: Duration) -> Probe {
        Probe {
            name: format!("{name}.read"),
            method: "user.getRecentTracks".to_owned(),
            params: vec![
                ("user".to_owned(), user.to_owned()),
                ("limit".to_owned(), READ_LIMIT.to_owned()),
            ],
            format: self.format,
            http_method: self.read_method,
            signed: false,
            expect: Expectation::Success,
            checks: Vec::new(),
            schedule: schedule.clone(),
            timeout,
            max_body_bytes: self.max_body_bytes,
        }
    }
}

/// How many times `schedule` fires in the day after `now`, counted up to `cap + 1`.
fn fires_per_day(schedule: &Schedule, now: chrono::DateTime<Utc>, cap: u32) -> u64 {
    match schedule {
        Schedule::Every(gap) if !gap.is_zero() => DAY.as_secs().div_ceil(gap.as_secs().max(1)),
        Schedule::Every(_) => u64::from(cap) + 1,
        Schedule::Cron(_) => {
            let end = now + chrono::Duration::days(1);
            schedule
                .upcoming(now, cap as usize + 1)
                .into_iter()
                .filter(|at| *at <= end)
                .count() as u64
        }
    }
}

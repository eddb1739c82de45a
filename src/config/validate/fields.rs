//! One value at its key: durations, schedules, choices among names, counts and sizes, each
//! parsed by `config::parse` and, when wrong, recorded as a problem at the value's span.
//!
//! Shared by every table (`[defaults]`, targets, probes, references), so a duration or a
//! count reads and fails the same way wherever it is written.

use std::time::Duration;

use toml::Spanned;

use crate::config::declared::{Format, HttpMethod, Schedule};
use crate::config::model::ScheduleSpec;
use crate::config::parse::{self, Bounds};

use super::Validator;

/// A day.
const DAY: Duration = Duration::from_secs(24 * 3600);

/// How far ahead a cron schedule's next fire may be: a yearly expression always fires within
/// it; one that fires only on 29 February, or in a year far ahead, does not.
const CRON_HORIZON_DAYS: u32 = 400;

impl Validator<'_> {
    /// A duration within `bounds`. `None` when absent or wrong.
    pub(super) fn duration(
        &mut self,
        value: Option<&Spanned<String>>,
        ctx: &str,
        key: &str,
        bounds: Bounds,
    ) -> Option<Duration> {
        let value = value?;
        let checked = parse::duration(value.get_ref(), bounds.min.is_zero()).and_then(|d| {
            if (bounds.min..=bounds.max).contains(&d) {
                Ok(d)
            } else {
                Err(format!(
                    "{:?} is out of range; use a duration {}",
                    value.get_ref(),
                    bounds.text
                ))
            }
        });
        checked
            .map_err(|message| self.problem(Some(value.span()), ctx, key, message))
            .ok()
    }

    /// `interval` (1s to 30d) or `cron` (firing within 400 days), never both. `None` when
    /// neither is set or either is wrong.
    pub(super) fn schedule(
        &mut self,
        interval: Option<&Spanned<String>>,
        cron: Option<&Spanned<String>>,
        ctx: &str,
    ) -> Option<ScheduleSpec> {
        match (interval, cron) {
            (Some(i), Some(_)) => {
                self.problem(
                    Some(i.span()),
                    ctx,
                    "interval",
                    "interval and cron are both set; keep one of them".to_owned(),
                );
                None
            }
            (Some(i), None) => self.interval(i, ctx),
            (None, Some(c)) => self.cron(c, ctx),
            (None, None) => None,
        }
    }

    fn interval(&mut self, i: &Spanned<String>, ctx: &str) -> Option<ScheduleSpec> {
        let gap = self.duration(Some(i), ctx, "interval", parse::PERIOD)?;
        Some(ScheduleSpec {
            source: i.get_ref().clone(),
            schedule: Schedule::Every(gap),
        })
    }

    fn cron(&mut self, c: &Spanned<String>, ctx: &str) -> Option<ScheduleSpec> {
        match Schedule::parse_cron(c.get_ref()) {
            Ok(schedule) => {
                let Some(next) = schedule.upcoming(self.now, 1).first().copied() else {
                    self.problem(
                        Some(c.span()),
                        ctx,
                        "cron",
                        format!("{:?} never fires after now", c.get_ref()),
                    );
                    return None;
                };
                let horizon = DAY * CRON_HORIZON_DAYS;
                if (next - self.now)
                    .to_std()
                    .is_ok_and(|ahead| ahead > horizon)
                {
                    self.problem(
                        Some(c.span()),
                        ctx,
                        "cron",
                        format!(
                            "{:?} next fires at {}, more than {CRON_HORIZON_DAYS} days ahead; \
                             use a schedule that fires at least once a year",
                            c.get_ref(),
                            next.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                        ),
                    );
                    return None;
                }
                Some(ScheduleSpec {
                    source: c.get_ref().clone(),
                    schedule,
                })
            }
            Err(message) => {
                self.problem(Some(c.span()), ctx, "cron", message);
                None
            }
        }
    }

    /// A string key whose value must be one of `options`; the error lists them.
    pub(super) fn choice<T: Copy>(
        &mut self,
        value: Option<&Spanned<String>>,
        ctx: &str,
        key: &str,
        options: &[(&str, T)],
        advice: &str,
    ) -> Option<T> {
        let value = value?;
        let found = parse::choice(value.get_ref(), options);
        if found.is_none() {
            self.problem(
                Some(value.span()),
                ctx,
                key,
                format!("{:?} is not supported; {advice}", value.get_ref()),
            );
        }
        found
    }

    /// `format`: `json` or `xml`.
    pub(super) fn format(&mut self, value: Option<&Spanned<String>>, ctx: &str) -> Option<Format> {
        self.choice(
            value,
            ctx,
            "format",
            &[("json", Format::Json), ("xml", Format::Xml)],
            "use \"json\" or \"xml\"",
        )
    }

    /// `http_method`: `POST` or `GET`.
    pub(super) fn http_method(
        &mut self,
        value: Option<&Spanned<String>>,
        ctx: &str,
    ) -> Option<HttpMethod> {
        self.choice(
            value,
            ctx,
            "http_method",
            &[("POST", HttpMethod::Post), ("GET", HttpMethod::Get)],
            "use \"POST\" (recommended: keeps the key out of URLs) or \"GET\"",
        )
    }

    /// `max_body_bytes`.
    pub(super) fn max_body_bytes(
        &mut self,
        value: Option<&Spanned<i64>>,
        ctx: &str,
    ) -> Option<u64> {
        let value = value?;
        parse::max_body_bytes(*value.get_ref())
            .map_err(|message| self.problem(Some(value.span()), ctx, "max_body_bytes", message))
            .ok()
    }

    /// A whole number from `min` to `max`.
    pub(super) fn count(
        &mut self,
        value: Option<&Spanned<i64>>,
        ctx: &str,
        key: &str,
        min: u32,
        max: u32,
    ) -> Option<u32> {
        let value = value?;
        parse::count(*value.get_ref(), min, max)
            .map_err(|message| self.problem(Some(value.span()), ctx, key, message))
            .ok()
    }
}

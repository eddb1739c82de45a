//! A `[[targets.probes]]` table: its method and name, parameters, schedule and timeout (with
//! what `[defaults]` gives it), format, HTTP method, body cap, expectation and content checks
//! (README.md, Configuration reference).

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use crate::config::declared::{Check, CheckRule, Expectation, Format, Schedule};
use crate::config::defaults;
use crate::config::file::{CheckFile, ProbeFile};
use crate::config::model::{Probe, ScheduleSpec};
use crate::config::parse;

use super::{Inherited, Validator};

impl Validator<'_> {
    /// The probe, or `None` when a key it cannot do without is wrong (the problems are
    /// recorded either way).
    pub(super) fn probe(
        &mut self,
        target_ctx: &str,
        index: usize,
        span: Range<usize>,
        file: ProbeFile,
        inherited: &Inherited,
    ) -> Option<Probe> {
        let indexed = format!("{target_ctx}, probes[{index}]");
        let method = self.probe_method(file.method.as_ref(), span.clone(), &indexed);
        let name = self.probe_name(file.name.as_ref(), method.as_ref(), &indexed);
        let ctx = match &name {
            Some(n) => format!("{target_ctx}, probe {n:?}"),
            None => indexed,
        };
        let params = self.params(file.params.as_ref(), &ctx);
        let schedule = self.probe_schedule(&file, inherited, &ctx);
        let timeout = self.probe_timeout(&file, schedule.as_ref(), span, inherited, &ctx);
        let format = match &file.format {
            Some(f) => self.format(Some(f), &ctx),
            None => Some(inherited.format),
        };
        let http_method = match &file.http_method {
            Some(m) => self.http_method(Some(m), &ctx),
            None => Some(inherited.http_method),
        };
        let max_body_bytes = match &file.max_body_bytes {
            Some(m) => self.max_body_bytes(Some(m), &ctx),
            None => Some(inherited.max_body_bytes),
        };
        let expect = self.expect(file.expect.as_ref(), &ctx);
        let checks = self.checks(&file.checks, format, &ctx);
        Some(Probe {
            name: name?,
            method: method?,
            params,
            format: format?,
            http_method: http_method?,
            signed: file.signed.unwrap_or(false),
            expect: expect?,
            checks,
            schedule: schedule?,
            timeout,
            max_body_bytes: max_body_bytes?,
        })
    }

    /// `method`: required, an API method name such as `artist.getInfo`.
    fn probe_method(
        &mut self,
        method: Option<&Spanned<String>>,
        span: Range<usize>,
        ctx: &str,
    ) -> Option<String> {
        match method {
            Some(m) if parse::is_method_name(m.get_ref()) => Some(m.get_ref().clone()),
            Some(m) => {
                self.problem(
                    Some(m.span()),
                    ctx,
                    "method",
                    format!(
                        "{:?} is not an API method name such as \"artist.getInfo\"",
                        m.get_ref()
                    ),
                );
                None
            }
            None => {
                self.problem(
                    Some(span),
                    ctx,
                    "method",
                    "missing; every probe needs the API method it calls, e.g. method = \"artist.getInfo\"".to_owned(),
                );
                None
            }
        }
    }

    /// The `probe` label: `name`, or the method when no name is given.
    fn probe_name(
        &mut self,
        name: Option<&Spanned<String>>,
        method: Option<&String>,
        ctx: &str,
    ) -> Option<String> {
        match name {
            Some(n) if parse::is_probe_name(n.get_ref()) => Some(n.get_ref().clone()),
            Some(n) => {
                self.problem(
                    Some(n.span()),
                    ctx,
                    "name",
                    format!(
                        "{:?} is not a valid probe name; use letters, digits, '.', '_', ':' and '-' (it becomes the `probe` label)",
                        n.get_ref()
                    ),
                );
                None
            }
            None => method.cloned(),
        }
    }

    /// `params`, in config order; none may be one the monitor sets itself.
    fn params(
        &mut self,
        params: Option<&Spanned<BTreeMap<String, toml::Value>>>,
        ctx: &str,
    ) -> Vec<(String, String)> {
        let Some(params) = params else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (key, value) in params.get_ref() {
            let problem = if parse::RESERVED_PARAMS.contains(&key.as_str()) {
                "is set by the monitor itself and cannot be a probe parameter"
            } else if let Some(text) = parse::param_text(value) {
                out.push((key.clone(), text));
                continue;
            } else {
                "must be a string, number or boolean"
            };
            self.problem(
                Some(params.span()),
                ctx,
                &format!("params.{key}"),
                problem.to_owned(),
            );
        }
        out
    }

    /// The probe's own `interval` or `cron`, else `[defaults]`', else the default interval.
    fn probe_schedule(
        &mut self,
        file: &ProbeFile,
        inherited: &Inherited,
        ctx: &str,
    ) -> Option<ScheduleSpec> {
        if file.interval.is_some() || file.cron.is_some() {
            return self.schedule(file.interval.as_ref(), file.cron.as_ref(), ctx);
        }
        inherited.schedule.clone().or_else(|| {
            Some(ScheduleSpec {
                source: humantime::format_duration(defaults::INTERVAL).to_string(),
                schedule: Schedule::Every(defaults::INTERVAL),
            })
        })
    }

    /// `timeout`, which must be shorter than the shortest gap between two runs.
    fn probe_timeout(
        &mut self,
        file: &ProbeFile,
        schedule: Option<&ScheduleSpec>,
        span: Range<usize>,
        inherited: &Inherited,
        ctx: &str,
    ) -> Duration {
        let timeout = self
            .duration(file.timeout.as_ref(), ctx, "timeout", parse::TIMEOUT)
            .unwrap_or(inherited.timeout);
        let gap = schedule.and_then(|s| s.schedule.shortest_gap(self.now));
        if let Some(gap) = gap
            && timeout >= gap
        {
            let key_span = file
                .timeout
                .as_ref()
                .or(file.interval.as_ref())
                .or(file.cron.as_ref())
                .map_or(span, Spanned::span);
            self.problem(
                Some(key_span),
                ctx,
                "timeout",
                format!(
                    "{} is not shorter than the shortest gap between runs ({}); lower the timeout or run less often",
                    humantime::format_duration(timeout),
                    humantime::format_duration(gap)
                ),
            );
        }
        timeout
    }

    /// `expect`: success unless it says `{ error = N }`.
    fn expect(&mut self, value: Option<&Spanned<toml::Value>>, ctx: &str) -> Option<Expectation> {
        let Some(value) = value else {
            return Some(Expectation::Success);
        };
        let expectation = parse::expectation(value.get_ref());
        if expectation.is_none() {
            self.problem(
                Some(value.span()),
                ctx,
                "expect",
                "must be \"success\" or { error = N } with a Last.fm error code N from 1 to 99"
                    .to_owned(),
            );
        }
        expectation
    }

    /// `checks`: each valid one; content checks read JSON, so not with `format = "xml"`.
    fn checks(
        &mut self,
        files: &[Spanned<CheckFile>],
        format: Option<Format>,
        ctx: &str,
    ) -> Vec<Check> {
        let checks: Vec<Check> = files
            .iter()
            .filter_map(|check| self.check(check, ctx))
            .collect();
        if !checks.is_empty() && format == Some(Format::Xml) {
            self.problem(
                files.first().map(Spanned::span),
                ctx,
                "checks",
                "content checks read JSON; set format = \"json\" or remove the checks".to_owned(),
            );
        }
        checks
    }

    fn check(&mut self, value: &Spanned<CheckFile>, ctx: &str) -> Option<Check> {
        let file = value.get_ref();
        if !file.pointer.starts_with('/') {
            self.problem(
                Some(value.span()),
                ctx,
                "checks.pointer",
                format!(
                    "{:?} is not a JSON pointer; it starts with '/', e.g. \"/artist/name\"",
                    file.pointer
                ),
            );
            return None;
        }
        let rule = match (&file.equals, file.non_empty, file.greater_than) {
            (Some(v), None, None) => {
                let Some(json) = parse::toml_to_json(v) else {
                    self.problem(
                        Some(value.span()),
                        ctx,
                        "checks.equals",
                        "must be a string, number or boolean".to_owned(),
                    );
                    return None;
                };
                CheckRule::Equals(json)
            }
            (None, Some(true), None) => CheckRule::NonEmpty,
            (None, None, Some(min)) => CheckRule::GreaterThan(min),
            _ => {
                self.problem(
                    Some(value.span()),
                    ctx,
                    "checks",
                    "each check needs exactly one of equals = …, non_empty = true or greater_than = N".to_owned(),
                );
                return None;
            }
        };
        Some(Check {
            pointer: file.pointer.clone(),
            rule,
        })
    }
}

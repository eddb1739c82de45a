//! The second phase: the TOML mirror (`ConfigFile`) in, a validated [`Config`] out, or every
//! problem found, each located at its file, line, column, target, probe and key.
//!
//! [`Validator`] carries what every check needs (the text to locate spans in, the environment
//! secrets resolve from, the clock cron schedules are checked against, the problems so far)
//! and never stops at the first problem, so an operator fixes a config in one pass (README.md,
//! Configuration reference). The checks are split by what they validate:
//! - this file: the whole file, `[web]` and `[defaults]`;
//! - `fields`: one value at its key (durations, schedules, choices, counts);
//! - `target`: a `[[targets]]` table (name, URL, secrets, politeness, statuses, its probes);
//! - `probe`: a `[[targets.probes]]` table (names, params, schedule, expectation, checks);
//! - `canary`: a target's `[[targets.canaries]]` (the write path) and their cap;
//! - `reference`: a `[[references]]` table.

mod canary;
mod fields;
mod probe;
mod reference;
mod target;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use toml::Spanned;

use crate::config::declared::{Format, HttpMethod};
use crate::config::defaults;
use crate::config::file::{ConfigFile, DefaultsFile, TargetFile, WebFile};
use crate::config::model::{Config, MaxConnections, ScheduleSpec, Target, Web};
use crate::config::parse;
use crate::config::problem::{Problem, line_col};
use crate::config::secret::Environment;

/// Validates the mirror of `text`: the config and its warnings, or every problem found.
pub(crate) fn validate(
    file: ConfigFile,
    text: &str,
    env: &dyn Environment,
    now: DateTime<Utc>,
) -> Result<(Config, Vec<Problem>), Vec<Problem>> {
    let mut v = Validator {
        text,
        env,
        now,
        problems: Vec::new(),
        warnings: Vec::new(),
    };
    let config = v.config(file);
    if v.problems.is_empty() {
        Ok((config, v.warnings))
    } else {
        Err(v.problems)
    }
}

/// What every check needs, and the problems found so far.
pub(crate) struct Validator<'a> {
    text: &'a str,
    env: &'a dyn Environment,
    now: DateTime<Utc>,
    problems: Vec<Problem>,
    /// Accepted but suspicious values, located like problems.
    warnings: Vec<Problem>,
}

/// The settings `[defaults]` gives every probe.
pub(crate) struct Inherited {
    schedule: Option<ScheduleSpec>,
    timeout: Duration,
    format: Format,
    http_method: HttpMethod,
    max_body_bytes: u64,
}

impl Validator<'_> {
    /// Records a problem at `span` (unlocated without one).
    fn problem(&mut self, span: Option<Range<usize>>, context: &str, key: &str, message: String) {
        self.problems
            .push(Problem::at(self.text, span, context, key, message));
    }

    /// Records a warning at `span`: accepted, but shown by `--config.check` and logged.
    fn warning(&mut self, span: Option<Range<usize>>, context: &str, key: &str, message: String) {
        self.warnings
            .push(Problem::at(self.text, span, context, key, message));
    }

    fn config(&mut self, file: ConfigFile) -> Config {
        let listen_address = self.listen_address(&file.web);
        let max_connections = self.max_connections(&file.web);
        let ctx = "[defaults]";
        let startup_jitter = self
            .duration(
                file.defaults.startup_jitter.as_ref(),
                ctx,
                "startup_jitter",
                parse::JITTER,
            )
            .unwrap_or(defaults::STARTUP_JITTER);
        let inherited = self.inherited(&file.defaults);
        let targets = self.targets(file.targets, &inherited);
        let references = self.references(file.references);
        Config {
            web: Web {
                listen_address,
                max_connections,
            },
            startup_jitter,
            targets,
            references,
            warnings: Vec::new(),
        }
    }

    /// `[web] listen_address`, or the default.
    fn listen_address(&mut self, web: &WebFile) -> SocketAddr {
        let default = || {
            defaults::LISTEN_ADDRESS
                .parse()
                .expect("the default listen address is a valid socket address")
        };
        let Some(addr) = &web.listen_address else {
            return default();
        };
        addr.get_ref().parse::<SocketAddr>().unwrap_or_else(|_| {
            self.problem(
                Some(addr.span()),
                "[web]",
                "listen_address",
                format!(
                    "{:?} is not an address:port such as \"127.0.0.1:10987\"",
                    addr.get_ref()
                ),
            );
            default()
        })
    }

    /// `[web] max_connections`, with its place for a refusal once the descriptor limit is known.
    fn max_connections(&mut self, web: &WebFile) -> Option<MaxConnections> {
        let spanned = web.max_connections.as_ref()?;
        let value = self.count(
            Some(spanned),
            "[web]",
            "max_connections",
            1,
            defaults::MAX_CONNECTIONS_CEILING,
        )?;
        let (line, column) = line_col(self.text, spanned.span().start);
        Some(MaxConnections {
            value,
            line,
            column,
        })
    }

    /// `[defaults]`: what a probe gets when it does not say.
    fn inherited(&mut self, d: &DefaultsFile) -> Inherited {
        let ctx = "[defaults]";
        Inherited {
            schedule: self.schedule(d.interval.as_ref(), d.cron.as_ref(), ctx),
            timeout: self
                .duration(d.timeout.as_ref(), ctx, "timeout", parse::TIMEOUT)
                .unwrap_or(defaults::TIMEOUT),
            format: self.format(d.format.as_ref(), ctx).unwrap_or(Format::Json),
            http_method: self
                .http_method(d.http_method.as_ref(), ctx)
                .unwrap_or(HttpMethod::Post),
            max_body_bytes: self
                .max_body_bytes(d.max_body_bytes.as_ref(), ctx)
                .unwrap_or(defaults::MAX_BODY_BYTES),
        }
    }

    /// Every `[[targets]]`, at least one, with distinct names.
    fn targets(
        &mut self,
        files: Vec<Spanned<TargetFile>>,
        inherited: &Inherited,
    ) -> Vec<Arc<Target>> {
        if files.is_empty() {
            self.problem(
                None,
                "",
                "targets",
                "no [[targets]] are configured; add at least one".to_owned(),
            );
        }
        let mut seen = BTreeSet::new();
        let mut targets = Vec::new();
        for (index, target) in files.into_iter().enumerate() {
            let span = target.span();
            // Located at the second `name`, so the operator finds the duplicate.
            let name_span = target.get_ref().name.as_ref().map(Spanned::span);
            if let Some(t) = self.target(index, span, target.into_inner(), inherited) {
                if !seen.insert(t.name.clone()) {
                    self.problem(
                        name_span,
                        &format!("target {:?}", t.name),
                        "name",
                        "the name is used by another target; target names must be unique"
                            .to_owned(),
                    );
                }
                targets.push(Arc::new(t));
            }
        }
        targets
    }
}

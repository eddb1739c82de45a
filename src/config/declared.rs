//! The types an operator declares in the configuration and the later stages act on: the
//! request's format and method, what a probe expects, its content checks, and the documented
//! HTTP statuses per error code, and when a probe fires.
//!
//! They live here, in the leaf stage, so that `config` names them without importing the
//! stages that act on them (`probe` sends with them, `classify` judges with them).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use serde_json::Value;

use crate::config::closed_set::closed_set;

/// The response format a probe asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `format=json` is sent.
    Json,
    /// No `format` parameter: the API's default XML.
    Xml,
}

impl Format {
    /// Label and config text.
    pub fn as_label(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Xml => "xml",
        }
    }
}

closed_set! {
    /// What a write-path canary writes.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum CanaryKind {
        /// `track.updateNowPlaying`: leaves nothing in the account's history.
        NowPlaying => "now_playing",
        /// `track.scrobble`: one play in the account's history per run.
        Scrobble => "scrobble",
    }
}

impl CanaryKind {
    /// The API method the write calls.
    pub fn method(self) -> &'static str {
        match self {
            Self::NowPlaying => "track.updateNowPlaying",
            Self::Scrobble => "track.scrobble",
        }
    }
}

/// How the request is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    /// Parameters in an `application/x-www-form-urlencoded` body: secrets stay out of URLs.
    Post,
    /// Parameters in the query string (the URL is then redacted wherever it is shown).
    Get,
}

impl HttpMethod {
    /// Config and trace text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Post => "POST",
            Self::Get => "GET",
        }
    }
}

/// What a probe must observe to count as a success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expectation {
    /// A success payload that passes the checks.
    Success,
    /// A negative control: the API must answer with this error code.
    Error(u32),
}

impl Expectation {
    /// Text for traces and `--config.check`.
    pub fn describe(self) -> String {
        match self {
            Self::Success => "success".to_owned(),
            Self::Error(code) => format!("error {code}"),
        }
    }
}

/// A content check on a JSON success payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// RFC 6901 JSON pointer, e.g. `/artist/name`.
    pub pointer: String,
    /// What must hold there.
    pub rule: CheckRule,
}

/// The rule of a [`Check`].
#[derive(Debug, Clone, PartialEq)]
pub enum CheckRule {
    /// The value equals this (a string also matches a number with the same text, as Last.fm
    /// sends counts as strings).
    Equals(Value),
    /// The value exists and is not null, `""`, `[]` or `{}`.
    NonEmpty,
    /// The value (number or numeric string) is greater than this.
    GreaterThan(f64),
}

/// The documented HTTP statuses per error code that a target's `documented_statuses` declares,
/// in place of its service's own (the classifier's code table has those).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusTable(BTreeMap<u32, Vec<u16>>);

impl StatusTable {
    /// Replaces the documented statuses of `code`.
    pub fn set(&mut self, code: u32, statuses: Vec<u16>) {
        self.0.insert(code, statuses);
    }

    /// The statuses declared for `code`, when declared.
    pub fn get(&self, code: u32) -> Option<&[u16]> {
        self.0.get(&code).map(Vec::as_slice)
    }

    /// The statuses declared for `code`, empty when none are.
    pub fn documented(&self, code: u32) -> &[u16] {
        self.get(code).unwrap_or(&[])
    }
}

/// How often a probe fires.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// A fixed gap between fires, anchored at the (jittered) first fire.
    Every(Duration),
    /// A seconds-first cron expression, evaluated in UTC.
    Cron(Box<cron::Schedule>),
}

/// How many fires are inspected to find a cron schedule's shortest gap.
const CRON_GAP_SAMPLES: usize = 512;

impl Schedule {
    /// Parses a cron expression: 6 or 7 fields seconds-first, a 5-field crontab line (which gets
    /// a `0` seconds field), or an `@hourly`-style shorthand.
    pub fn parse_cron(expr: &str) -> Result<Self, String> {
        let trimmed = expr.trim();
        let fields = trimmed.split_whitespace().count();
        let normalised = if fields == 5 && !trimmed.starts_with('@') {
            format!("0 {trimmed}")
        } else {
            trimmed.to_owned()
        };
        normalised
            .parse::<cron::Schedule>()
            .map(|schedule| Self::Cron(Box::new(schedule)))
            .map_err(|err| {
                // The parser's message repeats the expression and a caret on lines of their
                // own; keep its explanation, on one line, so each problem stays one line.
                let text = err.to_string();
                let why: Vec<&str> = text
                    .lines()
                    .map(str::trim)
                    .filter(|line| {
                        !line.is_empty()
                            && *line != normalised.trim()
                            && !line.chars().all(|c| c == '^' || c.is_whitespace())
                    })
                    .collect();
                let why = if why.is_empty() {
                    "unreadable".to_owned()
                } else {
                    why.join(" ")
                };
                format!(
                    "{expr:?} is not a valid cron expression ({why}); use 6 fields \
                     \"sec min hour day month weekday\" or a 5-field crontab line"
                )
            })
    }

    /// The shortest gap between two consecutive fires (for cron, over the next few hundred fires).
    pub fn shortest_gap(&self, now: DateTime<Utc>) -> Option<Duration> {
        match self {
            Self::Every(gap) => Some(*gap),
            Self::Cron(schedule) => {
                let fires: Vec<_> = schedule.after(&now).take(CRON_GAP_SAMPLES).collect();
                fires
                    .windows(2)
                    .filter_map(|pair| (pair[1] - pair[0]).to_std().ok())
                    .min()
            }
        }
    }

    /// The nominal gap between fires, exported so alerts can tell a stale probe from a slow one.
    pub fn nominal_interval(&self, now: DateTime<Utc>) -> Duration {
        match self {
            Self::Every(gap) => *gap,
            Self::Cron(schedule) => {
                let mut fires = schedule.after(&now);
                match (fires.next(), fires.next()) {
                    (Some(a), Some(b)) => (b - a).to_std().unwrap_or_default(),
                    _ => Duration::ZERO,
                }
            }
        }
    }

    /// The next `n` fire times after `now` (for interval schedules: as if started at `now`).
    pub fn upcoming(&self, now: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        match self {
            // Checked all the way: a gap the validator would refuse still yields no panic, only
            // fewer times.
            Self::Every(gap) => (1..=n)
                .map_while(|k| {
                    let step = gap.checked_mul(u32::try_from(k).ok()?)?;
                    now.checked_add_signed(chrono::Duration::from_std(step).ok()?)
                })
                .collect(),
            Self::Cron(schedule) => schedule.after(&now).take(n).collect(),
        }
    }

    /// A short human description for `--config.check` and the status page.
    pub fn describe(&self) -> String {
        match self {
            Self::Every(gap) => format!("every {}", humantime::format_duration(*gap)),
            Self::Cron(schedule) => format!("cron {:?} (UTC)", schedule.source()),
        }
    }
}

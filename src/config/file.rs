//! The raw mirror of `config.toml`: serde structs that follow the TOML exactly, with
//! `deny_unknown_fields` (a typo is refused, never ignored) and spans kept for line numbers.
//!
//! First of the two phases (README.md, Configuration reference): [`from_toml`] turns text into
//! this mirror or one located syntax or type problem; `validate/` then turns the mirror into
//! the validated [`crate::config::Config`]. The mirror never leaves the config module.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::config::problem::{ConfigError, Problem, key_at, line_col};

/// Parses config text into the mirror; `origin` names it in the error.
pub(crate) fn from_toml(text: &str, origin: &str) -> Result<ConfigFile, ConfigError> {
    toml::from_str(text).map_err(|err| {
        let (line, column) = err.span().map_or((None, None), |span| {
            let (l, c) = line_col(text, span.start);
            (Some(l), Some(c))
        });
        ConfigError::one(
            origin,
            Problem {
                line,
                column,
                context: String::new(),
                // serde's type errors ("invalid type: integer `60`, expected a string") do
                // not say which key; the span's line does.
                key: err
                    .span()
                    .and_then(|span| key_at(text, span.start))
                    .unwrap_or_default(),
                message: err.message().trim().to_owned(),
            },
        )
    })
}
/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConfigFile {
    #[serde(default)]
    pub(crate) web: WebFile,
    #[serde(default)]
    pub(crate) defaults: DefaultsFile,
    #[serde(default)]
    pub(crate) targets: Vec<Spanned<TargetFile>>,
    #[serde(default)]
    pub(crate) references: Vec<Spanned<ReferenceFile>>,
}

/// `[[references]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReferenceFile {
    pub(crate) name: Option<Spanned<String>>,
    pub(crate) url: Option<Spanned<String>>,
    pub(crate) interval: Option<Spanned<String>>,
    pub(crate) timeout: Option<Spanned<String>>,
}

/// `[web]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WebFile {
    pub(crate) listen_address: Option<Spanned<String>>,
    pub(crate) max_connections: Option<Spanned<i64>>,
}

/// `[defaults]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DefaultsFile {
    pub(crate) interval: Option<Spanned<String>>,
    pub(crate) cron: Option<Spanned<String>>,
    pub(crate) timeout: Option<Spanned<String>>,
    pub(crate) format: Option<Spanned<String>>,
    pub(crate) http_method: Option<Spanned<String>>,
    pub(crate) max_body_bytes: Option<Spanned<i64>>,
    pub(crate) startup_jitter: Option<Spanned<String>>,
}

/// `[[targets]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TargetFile {
    pub(crate) name: Option<Spanned<String>>,
    pub(crate) base_url: Option<Spanned<String>>,
    pub(crate) api: Option<Spanned<String>>,
    pub(crate) api_key: Option<Spanned<toml::Value>>,
    pub(crate) api_secret: Option<Spanned<toml::Value>>,
    pub(crate) session_key: Option<Spanned<toml::Value>>,
    pub(crate) max_requests_per_second: Option<Spanned<f64>>,
    pub(crate) burst: Option<Spanned<i64>>,
    pub(crate) down_after: Option<Spanned<i64>>,
    pub(crate) up_after: Option<Spanned<i64>>,
    pub(crate) suspended_interval: Option<Spanned<String>>,
    pub(crate) backoff_initial: Option<Spanned<String>>,
    pub(crate) backoff_max: Option<Spanned<String>>,
    pub(crate) documented_statuses: Option<Spanned<BTreeMap<String, Vec<i64>>>>,
    pub(crate) reuse_connections: Option<bool>,
    pub(crate) availability_objective: Option<Spanned<f64>>,
    pub(crate) max_scrobbles_per_day: Option<Spanned<i64>>,
    #[serde(default)]
    pub(crate) probes: Vec<Spanned<ProbeFile>>,
    #[serde(default)]
    pub(crate) canaries: Vec<Spanned<CanaryFile>>,
}

/// `[[targets.canaries]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CanaryFile {
    pub(crate) name: Option<Spanned<String>>,
    pub(crate) kind: Option<Spanned<String>>,
    pub(crate) user: Option<Spanned<String>>,
    pub(crate) artist: Option<Spanned<String>>,
    pub(crate) track: Option<Spanned<String>>,
    pub(crate) interval: Option<Spanned<String>>,
    pub(crate) cron: Option<Spanned<String>>,
    pub(crate) timeout: Option<Spanned<String>>,
    pub(crate) visible_within: Option<Spanned<String>>,
    pub(crate) poll_every: Option<Spanned<String>>,
    pub(crate) format: Option<Spanned<String>>,
    pub(crate) http_method: Option<Spanned<String>>,
    pub(crate) max_body_bytes: Option<Spanned<i64>>,
}

/// `[[targets.probes]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProbeFile {
    pub(crate) name: Option<Spanned<String>>,
    pub(crate) method: Option<Spanned<String>>,
    pub(crate) params: Option<Spanned<BTreeMap<String, toml::Value>>>,
    pub(crate) expect: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub(crate) checks: Vec<Spanned<CheckFile>>,
    pub(crate) signed: Option<bool>,
    pub(crate) interval: Option<Spanned<String>>,
    pub(crate) cron: Option<Spanned<String>>,
    pub(crate) timeout: Option<Spanned<String>>,
    pub(crate) format: Option<Spanned<String>>,
    pub(crate) http_method: Option<Spanned<String>>,
    pub(crate) max_body_bytes: Option<Spanned<i64>>,
}

/// One of a probe's `checks`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CheckFile {
    pub(crate) pointer: String,
    pub(crate) equals: Option<toml::Value>,
    pub(crate) non_empty: Option<bool>,
    pub(crate) greater_than: Option<f64>,
}

//! The configuration: strict TOML in, a validated [`Config`] out, or every problem at once.
//!
//! Two phases, as in ripgrep and tokio-console: `ConfigFile` mirrors the TOML exactly
//! (`deny_unknown_fields`, spans kept for line numbers) and never leaves this module;
//! validation turns it into [`Config`] with parsed durations, schedules, URLs and resolved
//! secrets. Validation collects all problems before failing, each naming file, line, column,
//! target, probe and key, so an operator fixes a config in one pass. Defaults live in one
//! place, [`defaults`], and are mirrored (and tested) in the shipped `config.toml` (README.md,
//! Configuration reference).
//!
//! The module map, in the order text flows through it:
//! - `file`: the serde mirror of `config.toml` and the TOML syntax/type error, located;
//! - `parse`: field parsers, one value's text in, the typed value or a message out;
//! - `validate/`: the mirror in, [`Config`] out, every problem located at its key
//!   (`fields`, `target`, `probe`, `reference` by what they check);
//! - `model`: the validated types the other stages read ([`Config`], [`Target`], [`Probe`],
//!   [`Reference`], …), re-exported here;
//! - `summary`: the `--config.check` text;
//! - `problem`: [`Problem`] and [`ConfigError`], shared with the web config, and how a byte
//!   offset becomes line and column;
//! - [`api`]: the service a target speaks to, with the methods it implements;
//! - [`defaults`], [`declared`] (the types an operator declares: format, schedule, checks…),
//!   [`secret`] (secrets and where they come from), [`regular_file`] (reading a file the daemon
//!   is pointed at without hanging on a FIFO or reading a huge one whole);
//! - [`web`]: `--web.config.file` (TLS, basic auth, headers), the same two phases for YAML.
//!
//! This file only reads and ties the phases together, so the submodules never import it: the
//! dependencies point one way.

pub mod api;
pub mod closed_set;
pub mod declared;
pub mod defaults;
mod file;
mod model;
mod parse;
mod problem;
pub mod regular_file;
pub mod secret;
mod summary;
mod validate;
pub mod web;

pub use api::Api;
pub use declared::{
    CanaryKind, Check, CheckRule, Expectation, Format, HttpMethod, Schedule, StatusTable,
};
pub use model::{
    Canary, Config, LASTFM_RATE_CEILING, MaxConnections, Politeness, Probe, Reference,
    ScheduleSpec, Step, Target, Web,
};
pub use problem::{ConfigError, Problem};

use std::path::Path;

use chrono::{DateTime, Utc};

use crate::config::regular_file::ReadError;
use crate::config::secret::Environment;

/// The most a configuration file may hold; a thousand probes take a few hundred KiB.
pub const CONFIG_FILE_CAP: u64 = 16 * 1024 * 1024;

impl Config {
    /// Reads and validates a config file: a regular file of at most [`CONFIG_FILE_CAP`] bytes,
    /// so that a FIFO or a device named by mistake is refused at once instead of hanging
    /// `--config.check`, the start or a reload.
    pub fn load(path: &Path, env: &dyn Environment) -> Result<Self, ConfigError> {
        let origin = path.display().to_string();
        let text = regular_file::read(path, CONFIG_FILE_CAP).map_err(|err| {
            let message = match err {
                ReadError::Io(err) => format!("cannot read the configuration file: {err}"),
                ReadError::NotRegular(_) | ReadError::TooLarge(_) => format!(
                    "cannot read the configuration file: {err}; point --config.file at a \
                     regular TOML file"
                ),
            };
            ConfigError::one(&origin, Problem::of_key("", message))
        })?;
        Self::parse(&text, &origin, env, Utc::now())
    }

    /// Parses and validates config text; `origin` names it in errors.
    pub fn parse(
        text: &str,
        origin: &str,
        env: &dyn Environment,
        now: DateTime<Utc>,
    ) -> Result<Self, ConfigError> {
        let file = file::from_toml(text, origin)?;
        let (mut config, warnings) =
            validate::validate(file, text, env, now).map_err(|problems| ConfigError {
                origin: origin.to_owned(),
                problems,
            })?;
        if !warnings.is_empty() {
            let located = ConfigError {
                origin: origin.to_owned(),
                problems: warnings,
            };
            config.warnings = located.to_string().lines().map(str::to_owned).collect();
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::collections::HashMap;
    use std::time::Duration;

    #[derive(Debug)]
    pub(crate) struct FakeEnv(pub(crate) HashMap<String, String>);
    impl Environment for FakeEnv {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).cloned()
        }
    }

    fn env() -> FakeEnv {
        FakeEnv(HashMap::from([(
            "LASTFM_API_KEY".to_owned(),
            "0123456789abcdef0123456789abcdef".to_owned(),
        )]))
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, "test.toml", &env(), now())
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    const MINIMAL: &str = r#"
[[targets]]
name = "lastfm"
base_url = "https://ws.audioscrobbler.com/2.0/"
api_key = { env = "LASTFM_API_KEY" }

[[targets.probes]]
method = "artist.getInfo"
params = { artist = "Cher", limit = 1 }
"#;

    #[test]
    fn minimal_config_gets_every_default() {
        let config = parse(MINIMAL).unwrap();
        assert_eq!(config.web.listen_address.to_string(), "127.0.0.1:10987");
        let target = &config.targets[0];
        assert_eq!(target.politeness.max_requests_per_second, 1.0);
        assert_eq!(
            target.politeness.suspended_interval,
            Duration::from_secs(900)
        );
        assert_eq!(target.down_after, 3);
        assert!((target.availability_objective - 0.995).abs() < f64::EPSILON);
        assert!(
            !target.reuse_connections,
            "a fresh connection per run by default"
        );
        let probe = &target.probes[0];
        assert_eq!(probe.name, "artist.getInfo");
        assert_eq!(
            probe.params,
            vec![
                ("artist".into(), "Cher".into()),
                ("limit".into(), "1".into())
            ]
        );
        assert_eq!(probe.format, Format::Json);
        assert_eq!(probe.http_method, HttpMethod::Post);
        assert_eq!(probe.timeout, Duration::from_secs(10));
        assert_eq!(probe.max_body_bytes, 2_097_152);
        assert_eq!(probe.expect, Expectation::Success);
        assert!(
            matches!(probe.schedule.schedule, Schedule::Every(d) if d == Duration::from_secs(60))
        );
    }

    #[test]
    fn debug_of_the_config_redacts_the_key() {
        let config = parse(MINIMAL).unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains("0123456789abcdef"), "{debug}");
        assert!(debug.contains("<secret>"));
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let text = MINIMAL.replace("params =", "intervall = \"5s\"\nparams =");
        let message = err(&text);
        assert!(message.starts_with("test.toml:9:1: "), "{message}");
        assert!(message.contains("unknown field `intervall`"), "{message}");
    }

    #[test]
    fn missing_env_var_is_named() {
        let message = match Config::parse(MINIMAL, "test.toml", &FakeEnv(HashMap::new()), now()) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("must fail"),
        };
        assert!(message.contains("test.toml:5:"), "{message}");
        assert!(message.contains("key `api_key`"), "{message}");
        assert!(message.contains("LASTFM_API_KEY is not set"), "{message}");
    }

    #[test]
    fn timeout_must_be_shorter_than_the_interval() {
        let text = MINIMAL.replace("params =", "interval = \"5s\"\ntimeout = \"5s\"\nparams =");
        let message = err(&text);
        assert!(message.contains("key `timeout`"), "{message}");
        assert!(
            message.contains("not shorter than the shortest gap"),
            "{message}"
        );
        assert!(message.contains("probe \"artist.getInfo\""), "{message}");
    }

    #[test]
    fn timeout_is_checked_against_the_shortest_cron_gap() {
        let text = MINIMAL.replace(
            "params =",
            "cron = \"0,5 * * * * *\"\ntimeout = \"10s\"\nparams =",
        );
        assert!(err(&text).contains("shortest gap between runs (5s)"));
    }

    #[test]
    fn five_field_cron_in_defaults_is_inherited() {
        let text = format!("[defaults]\ncron = \"*/5 * * * *\"\n{MINIMAL}");
        let config = parse(&text).unwrap();
        assert_eq!(config.targets[0].probes[0].schedule.source, "*/5 * * * *");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = r#"
[defaults]
interval = "soon"
[[targets]]
name = "Last FM"
base_url = "ftp://example.com/"
api_key = { env = "NOPE" }
[[targets.probes]]
method = "artist.getInfo"
expect = { error = "six" }
format = "yaml"
"#;
        let message = err(text);
        for needle in [
            "key `interval`: \"soon\" is not a duration",
            "key `name`: \"Last FM\" is not a valid target name",
            "key `base_url`",
            "NOPE is not set",
            "key `expect`",
            "key `format`: \"yaml\" is not supported",
        ] {
            assert!(
                message.contains(needle),
                "missing {needle:?} in:\n{message}"
            );
        }
        assert_eq!(message.lines().count(), 6, "{message}");
    }

    #[test]
    fn a_key_that_cannot_be_lastfms_is_accepted_with_a_located_warning() {
        assert!(parse(MINIMAL).unwrap().warnings.is_empty());
        let short = FakeEnv(HashMap::from([(
            "LASTFM_API_KEY".to_owned(),
            "0123456789abcdef0123456789abcde".to_owned(),
        )]));
        let config = Config::parse(MINIMAL, "test.toml", &short, now()).unwrap();
        assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
        let warning = &config.warnings[0];
        assert!(
            warning.starts_with("test.toml:5:11: target \"lastfm\": key `api_key`: the value from environment variable LASTFM_API_KEY is 31 characters long"),
            "{warning}"
        );
        assert!(
            config
                .summary(now())
                .contains(&format!("warning: {warning}"))
        );
    }

    #[test]
    fn duplicate_probe_names_are_refused() {
        let text = format!("{MINIMAL}\n[[targets.probes]]\nmethod = \"artist.getInfo\"\n");
        assert!(err(&text).contains("same name"));
    }

    #[test]
    fn duplicate_target_names_are_refused() {
        let text = format!(
            "{MINIMAL}{}",
            MINIMAL.replace("[[targets]]", "\n[[targets]]")
        );
        assert!(err(&text).contains("target names must be unique"));
    }

    #[test]
    fn signed_probe_needs_a_secret() {
        let text = MINIMAL.replace("params =", "signed = true\nparams =");
        assert!(err(&text).contains("needs the target's api_secret"));
    }

    #[test]
    fn reuse_connections_is_a_target_boolean_shown_by_the_check() {
        let text = MINIMAL.replace(
            "api_key = { env",
            "reuse_connections = true\napi_key = { env",
        );
        let config = parse(&text).unwrap();
        assert!(config.targets[0].reuse_connections);
        assert!(
            config
                .summary(Utc::now())
                .contains("session_key unset, connections reused)")
        );
        let wrong = MINIMAL.replace(
            "api_key = { env",
            "reuse_connections = \"yes\"\napi_key = { env",
        );
        let message = err(&wrong);
        assert!(message.contains("reuse_connections"), "{message}");
        assert!(message.contains(":5:"), "{message}");
    }

    #[test]
    fn availability_objective_is_a_bounded_ratio_shown_by_the_check() {
        let with = |value: &str| {
            MINIMAL.replace(
                "api_key = { env",
                &format!("availability_objective = {value}\napi_key = {{ env"),
            )
        };
        let config = parse(&with("0.999")).unwrap();
        assert!((config.targets[0].availability_objective - 0.999).abs() < f64::EPSILON);
        assert!(
            config
                .summary(now())
                .contains("availability objective 99.9% over 30d"),
            "{}",
            config.summary(now())
        );
        assert!(
            parse(MINIMAL)
                .unwrap()
                .summary(now())
                .contains("availability objective 99.5% over 30d")
        );
        for edge in ["0.9", "0.99999"] {
            assert!(parse(&with(edge)).is_ok(), "{edge}");
        }
        for wrong in ["0.89", "0.999991", "1.0", "99.5", "nan", "-0.995"] {
            let message = err(&with(wrong));
            assert!(
                message.contains(":5:") && message.contains("`availability_objective`"),
                "{wrong}: {message}"
            );
        }
    }

    #[test]
    fn plain_http_is_only_for_loopback() {
        let remote = MINIMAL.replace(
            "https://ws.audioscrobbler.com",
            "http://ws.audioscrobbler.com",
        );
        assert!(err(&remote).contains("plain http"));
        let local = MINIMAL.replace("https://ws.audioscrobbler.com", "http://127.0.0.1:8080");
        assert!(parse(&local).is_ok());
    }

    #[test]
    fn reserved_params_are_refused() {
        let text = MINIMAL.replace("artist = \"Cher\"", "api_key = \"x\"");
        assert!(err(&text).contains("key `params.api_key`"));
    }

    #[test]
    fn negative_control_and_checks_parse() {
        let text = MINIMAL.replace(
            "params =",
            "expect = { error = 6 }\nchecks = [{ pointer = \"/artist/name\", equals = \"Cher\" }, { pointer = \"/x\", greater_than = 0 }]\nparams =",
        );
        let config = parse(&text).unwrap();
        let probe = &config.targets[0].probes[0];
        assert_eq!(probe.expect, Expectation::Error(6));
        assert_eq!(probe.checks.len(), 2);
    }

    #[test]
    fn checks_need_json() {
        let text = MINIMAL.replace(
            "params =",
            "format = \"xml\"\nchecks = [{ pointer = \"/artist/name\", non_empty = true }]\nparams =",
        );
        assert!(err(&text).contains("content checks read JSON"));
    }

    #[test]
    fn not_toml_at_all_is_a_clear_error() {
        let message = err("this is not toml");
        assert!(message.starts_with("test.toml:1:"), "{message}");
    }

    #[test]
    fn documented_statuses_override() {
        let text = MINIMAL.replace(
            "[[targets.probes]]",
            "documented_statuses = { \"29\" = [403, 429] }\n[[targets.probes]]",
        );
        let config = parse(&text).unwrap();
        assert_eq!(config.targets[0].statuses.documented(29), &[403, 429]);
    }

    #[test]
    fn shipped_config_validates_with_only_the_api_key_set() {
        let text = include_str!("../../config.toml");
        let config = Config::parse(text, "config.toml", &env(), now())
            .unwrap_or_else(|err| panic!("shipped config.toml is invalid:\n{err}"));
        let target = &config.targets[0];
        assert!(target.probes.len() >= 10, "a representative probe set");
        assert!(
            target
                .probes
                .iter()
                .any(|p| matches!(p.expect, Expectation::Error(6))),
            "a negative control"
        );
        // Pace: far below Last.fm's limits.
        let per_second: f64 = target
            .probes
            .iter()
            .map(|p| 1.0 / p.schedule.schedule.nominal_interval(now()).as_secs_f64())
            .sum();
        assert!(per_second < 0.5, "{per_second} requests/s");
    }

    #[test]
    fn shipped_config_mirrors_every_default() {
        let text = include_str!("../../config.toml");
        for line in [
            &format!("listen_address = \"{}\"", defaults::LISTEN_ADDRESS),
            &format!("# max_connections = {}", defaults::MAX_CONNECTIONS),
            "interval = \"60s\"",
            "timeout = \"10s\"",
            "format = \"json\"",
            "http_method = \"POST\"",
            &format!("max_body_bytes = {}", defaults::MAX_BODY_BYTES),
            "startup_jitter = \"30s\"",
            "max_requests_per_second = 1.0",
            &format!("burst = {}", defaults::BURST),
            &format!("down_after = {}", defaults::DOWN_AFTER),
            &format!("up_after = {}", defaults::UP_AFTER),
            "suspended_interval = \"15m\"",
            "backoff_initial = \"60s\"",
            "backoff_max = \"1h\"",
            &format!(
                "# availability_objective = {}",
                defaults::AVAILABILITY_OBJECTIVE
            ),
            "interval = \"15s\"",
            "timeout = \"5s\"",
        ] {
            assert!(text.contains(line), "config.toml lacks {line:?}");
        }
        assert_eq!(defaults::INTERVAL, Duration::from_secs(60));
        assert_eq!(defaults::TIMEOUT, Duration::from_secs(10));
        assert_eq!(defaults::STARTUP_JITTER, Duration::from_secs(30));
        assert_eq!(defaults::SUSPENDED_INTERVAL, Duration::from_secs(900));
        assert_eq!(defaults::BACKOFF_INITIAL, Duration::from_secs(60));
        assert_eq!(defaults::BACKOFF_MAX, Duration::from_secs(3600));
        assert!((defaults::MAX_REQUESTS_PER_SECOND - 1.0).abs() < f64::EPSILON);
        assert_eq!(defaults::REFERENCE_INTERVAL, Duration::from_secs(15));
        assert_eq!(defaults::REFERENCE_TIMEOUT, Duration::from_secs(5));
    }

    #[test]
    fn summary_lists_next_three_fires() {
        let config = parse(MINIMAL).unwrap();
        let summary = config.summary(now());
        assert!(
            summary.contains("2026-11-25T12:01:00Z, 2026-11-25T12:02:00Z, 2026-11-25T12:03:00Z"),
            "{summary}"
        );
        assert!(!summary.contains("0123456789abcdef"));
    }
}

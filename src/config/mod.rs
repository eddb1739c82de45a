//! The configuration: strict TOML in, a validated [`Config`] out, or every problem at once.
//!
//! Two phases, as in ripgrep and tokio-console: `ConfigFile` mirrors the TOML exactly
//! (`deny_unknown_fields`, spans kept for line numbers) and never leaves this module;
//! `TryFrom`-style validation turns it into [`Config`] with parsed durations, schedules, URLs and
//! resolved secrets. Validation collects all problems before failing, each naming file, line,
//! column, target, probe and key, so an operator fixes a config in one pass. Defaults live here
//! once, in [`defaults`], and are mirrored (and tested) in the shipped `config.toml`.

pub mod closed_set;
pub mod declared;
pub mod secret;
pub mod web;

pub use declared::{Check, CheckRule, Expectation, Format, HttpMethod, Schedule, StatusTable};

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use toml::Spanned;
use url::Url;

use crate::config::secret::{Environment, Secret, SecretSource};

/// Every default in one place; `config.toml` mirrors these and a test keeps them in step.
pub mod defaults {
    use std::time::Duration;

    /// `[web] listen_address`: loopback, outside the crowded 9100–9999 range.
    pub const LISTEN_ADDRESS: &str = "127.0.0.1:10987";
    /// `interval`
    pub const INTERVAL: Duration = Duration::from_secs(60);
    /// `timeout`
    pub const TIMEOUT: Duration = Duration::from_secs(10);
    /// `max_body_bytes`
    pub const MAX_BODY_BYTES: u64 = 2 * 1024 * 1024;
    /// `startup_jitter`: the first run of each probe comes at a random moment within this.
    pub const STARTUP_JITTER: Duration = Duration::from_secs(30);
    /// `max_requests_per_second`
    pub const MAX_REQUESTS_PER_SECOND: f64 = 1.0;
    /// `burst`
    pub const BURST: u32 = 3;
    /// `down_after`
    pub const DOWN_AFTER: u32 = 3;
    /// `up_after`
    pub const UP_AFTER: u32 = 2;
    /// `suspended_interval`
    pub const SUSPENDED_INTERVAL: Duration = Duration::from_secs(15 * 60);
    /// `backoff_initial`
    pub const BACKOFF_INITIAL: Duration = Duration::from_secs(60);
    /// `backoff_max`
    pub const BACKOFF_MAX: Duration = Duration::from_secs(3600);
    /// How often a reference is checked.
    pub const REFERENCE_INTERVAL: Duration = Duration::from_secs(15);
    /// A reference check's deadline.
    pub const REFERENCE_TIMEOUT: Duration = Duration::from_secs(5);
}

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
}

/// One API to probe (Last.fm, Libre.fm, …).
#[derive(Debug, PartialEq)]
pub struct Target {
    /// The `target` label.
    pub name: String,
    /// API root, e.g. `https://ws.audioscrobbler.com/2.0/`.
    pub base_url: Url,
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
    /// The probes of this target.
    pub probes: Vec<Probe>,
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

/// One configuration problem, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// `target "lastfm", probe "artist.getInfo"`-style context, empty at top level.
    pub context: String,
    /// The offending key.
    pub key: String,
    /// What is wrong and what to do.
    pub message: String,
}

/// Why a configuration was refused: every problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (or `<string>`).
    pub origin: String,
    /// At least one problem.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}", self.origin)?;
            if let Some(line) = problem.line {
                write!(f, ":{line}")?;
                if let Some(column) = problem.column {
                    write!(f, ":{column}")?;
                }
            }
            write!(f, ": ")?;
            if !problem.context.is_empty() {
                write!(f, "{}: ", problem.context)?;
            }
            if !problem.key.is_empty() {
                write!(f, "key `{}`: ", problem.key)?;
            }
            write!(f, "{}", problem.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path, env: &dyn Environment) -> Result<Self, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|err| ConfigError {
            origin: origin.clone(),
            problems: vec![Problem {
                line: None,
                column: None,
                context: String::new(),
                key: String::new(),
                message: format!("cannot read the configuration file: {err}"),
            }],
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
        let file: ConfigFile = toml::from_str(text).map_err(|err| {
            let (line, column) = err.span().map_or((None, None), |span| {
                let (l, c) = line_col(text, span.start);
                (Some(l), Some(c))
            });
            ConfigError {
                origin: origin.to_owned(),
                problems: vec![Problem {
                    line,
                    column,
                    context: String::new(),
                    // serde's type errors ("invalid type: integer `60`, expected a string") do
                    // not say which key; the span's line does (issue 5).
                    key: err
                        .span()
                        .and_then(|span| key_at(text, span.start))
                        .unwrap_or_default(),
                    message: err.message().trim().to_owned(),
                }],
            }
        })?;
        let mut v = Validator {
            text,
            env,
            now,
            problems: Vec::new(),
        };
        let config = v.config(file);
        if v.problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError {
                origin: origin.to_owned(),
                problems: v.problems,
            })
        }
    }

    /// Finds a target by name.
    pub fn target(&self, name: &str) -> Option<&Arc<Target>> {
        self.targets.iter().find(|t| t.name == name)
    }

    /// Probes over all targets.
    pub fn probe_count(&self) -> usize {
        self.targets.iter().map(|t| t.probes.len()).sum()
    }

    /// A summary for `--config.check`: targets, probes, each probe's next three fires.
    pub fn summary(&self, now: DateTime<Utc>) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let probes = self.probe_count();
        let _ = writeln!(
            out,
            "configuration OK: {} target(s), {probes} probe(s), listening on {}",
            self.targets.len(),
            self.web.listen_address
        );
        for target in &self.targets {
            let _ = writeln!(
                out,
                "target {} {} (budget {}/s, burst {}, api_key {}, api_secret {}, session_key {}{})",
                target.name,
                target.base_url,
                target.politeness.max_requests_per_second,
                target.politeness.burst,
                crate::config::secret::REDACTED,
                if target.api_secret.is_some() {
                    "set"
                } else {
                    "unset"
                },
                if target.session_key.is_some() {
                    "set"
                } else {
                    "unset"
                },
                if target.reuse_connections {
                    ", connections reused"
                } else {
                    ""
                },
            );
            for probe in &target.probes {
                let fires: Vec<String> = probe
                    .schedule
                    .schedule
                    .upcoming(now, 3)
                    .iter()
                    .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                    .collect();
                let _ = writeln!(
                    out,
                    "  probe {} method={} {} timeout={} expect={}{}{}\n    next: {}",
                    probe.name,
                    probe.method,
                    probe.schedule.schedule.describe(),
                    humantime::format_duration(probe.timeout),
                    probe.expect.describe(),
                    if probe.signed { " signed" } else { "" },
                    if probe.checks.is_empty() {
                        String::new()
                    } else {
                        format!(" checks={}", probe.checks.len())
                    },
                    fires.join(", "),
                );
            }
        }
        for reference in &self.references {
            let _ = writeln!(
                out,
                "reference {} {} every {} timeout={}",
                reference.name,
                reference.url,
                humantime::format_duration(reference.interval),
                humantime::format_duration(reference.timeout),
            );
        }
        if self.references.is_empty() {
            let _ = writeln!(
                out,
                "warning: no [[references]] are configured: failures of this host's own network \
                 (resolver, routes, an egress proxy) will be blamed on Last.fm; add one \
                 (see config.toml)"
            );
        }
        let _ = write!(
            out,
            "interval schedules start at a random moment within {} of start-up; times are UTC",
            humantime::format_duration(self.startup_jitter)
        );
        out
    }
}

/// The key of a `key = value` line whose value holds byte `offset`, for errors serde reports
/// without the key. `None` when the offset is not in a value (a broken header, a stray word).
fn key_at(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let start = text[..offset].rfind('\n').map_or(0, |nl| nl + 1);
    let (key, _) = text[start..offset].split_once('=')?;
    let key = key.trim();
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'"'));
    bare.then(|| key.to_owned())
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(before.chars().count(), |nl| {
        before[nl + 1..].chars().count()
    }) + 1;
    (line, column)
}

// ---------------------------------------------------------------------------------------------
// The raw mirror of the TOML. Never leaves this module.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    web: WebFile,
    #[serde(default)]
    defaults: DefaultsFile,
    #[serde(default)]
    targets: Vec<Spanned<TargetFile>>,
    #[serde(default)]
    references: Vec<Spanned<ReferenceFile>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReferenceFile {
    name: Option<Spanned<String>>,
    url: Option<Spanned<String>>,
    interval: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebFile {
    listen_address: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DefaultsFile {
    interval: Option<Spanned<String>>,
    cron: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    format: Option<Spanned<String>>,
    http_method: Option<Spanned<String>>,
    max_body_bytes: Option<Spanned<i64>>,
    startup_jitter: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetFile {
    name: Option<Spanned<String>>,
    base_url: Option<Spanned<String>>,
    api_key: Option<Spanned<toml::Value>>,
    api_secret: Option<Spanned<toml::Value>>,
    session_key: Option<Spanned<toml::Value>>,
    max_requests_per_second: Option<Spanned<f64>>,
    burst: Option<Spanned<i64>>,
    down_after: Option<Spanned<i64>>,
    up_after: Option<Spanned<i64>>,
    suspended_interval: Option<Spanned<String>>,
    backoff_initial: Option<Spanned<String>>,
    backoff_max: Option<Spanned<String>>,
    documented_statuses: Option<Spanned<BTreeMap<String, Vec<i64>>>>,
    reuse_connections: Option<bool>,
    #[serde(default)]
    probes: Vec<Spanned<ProbeFile>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProbeFile {
    name: Option<Spanned<String>>,
    method: Option<Spanned<String>>,
    params: Option<Spanned<BTreeMap<String, toml::Value>>>,
    expect: Option<Spanned<toml::Value>>,
    #[serde(default)]
    checks: Vec<Spanned<CheckFile>>,
    signed: Option<bool>,
    interval: Option<Spanned<String>>,
    cron: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    format: Option<Spanned<String>>,
    http_method: Option<Spanned<String>>,
    max_body_bytes: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckFile {
    pointer: String,
    equals: Option<toml::Value>,
    non_empty: Option<bool>,
    greater_than: Option<f64>,
}

/// Parameters the monitor sets itself; a probe may not override them.
const RESERVED_PARAMS: [&str; 6] = ["api_key", "method", "format", "api_sig", "sk", "callback"];

// ---------------------------------------------------------------------------------------------
// Validation.

struct Validator<'a> {
    text: &'a str,
    env: &'a dyn Environment,
    now: DateTime<Utc>,
    problems: Vec<Problem>,
}

/// The settings `[defaults]` gives every probe.
struct Inherited {
    schedule: Option<ScheduleSpec>,
    timeout: Duration,
    format: Format,
    http_method: HttpMethod,
    max_body_bytes: u64,
}

impl Validator<'_> {
    fn problem(
        &mut self,
        span: Option<std::ops::Range<usize>>,
        context: &str,
        key: &str,
        message: String,
    ) {
        let (line, column) = span.map_or((None, None), |s| {
            let (l, c) = line_col(self.text, s.start);
            (Some(l), Some(c))
        });
        self.problems.push(Problem {
            line,
            column,
            context: context.to_owned(),
            key: key.to_owned(),
            message,
        });
    }

    fn config(&mut self, file: ConfigFile) -> Config {
        let listen_address = match &file.web.listen_address {
            None => defaults::LISTEN_ADDRESS
                .parse()
                .expect("the default listen address is a valid socket address"),
            Some(addr) => match addr.get_ref().parse::<SocketAddr>() {
                Ok(parsed) => parsed,
                Err(_) => {
                    self.problem(
                        Some(addr.span()),
                        "[web]",
                        "listen_address",
                        format!(
                            "{:?} is not an address:port such as \"127.0.0.1:10987\"",
                            addr.get_ref()
                        ),
                    );
                    defaults::LISTEN_ADDRESS
                        .parse()
                        .expect("the default listen address is a valid socket address")
                }
            },
        };
        let ctx = "[defaults]";
        let d = &file.defaults;
        let startup_jitter = self
            .duration(d.startup_jitter.as_ref(), ctx, "startup_jitter", true)
            .unwrap_or(defaults::STARTUP_JITTER);
        let inherited = Inherited {
            schedule: self.schedule(d.interval.as_ref(), d.cron.as_ref(), ctx),
            timeout: self
                .duration(d.timeout.as_ref(), ctx, "timeout", false)
                .unwrap_or(defaults::TIMEOUT),
            format: self.format(d.format.as_ref(), ctx).unwrap_or(Format::Json),
            http_method: self
                .http_method(d.http_method.as_ref(), ctx)
                .unwrap_or(HttpMethod::Post),
            max_body_bytes: self
                .max_body_bytes(d.max_body_bytes.as_ref(), ctx)
                .unwrap_or(defaults::MAX_BODY_BYTES),
        };
        if file.targets.is_empty() {
            self.problem(
                None,
                "",
                "targets",
                "no [[targets]] are configured; add at least one".to_owned(),
            );
        }
        let mut seen = BTreeSet::new();
        let mut targets = Vec::new();
        for (index, target) in file.targets.into_iter().enumerate() {
            let span = target.span();
            // Located at the second `name`, so the operator finds the duplicate (issue 5).
            let name_span = target.get_ref().name.as_ref().map(Spanned::span);
            if let Some(t) = self.target(index, span, target.into_inner(), &inherited) {
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
        let references = self.references(file.references);
        Config {
            web: Web { listen_address },
            startup_jitter,
            targets,
            references,
        }
    }

    fn references(&mut self, files: Vec<Spanned<ReferenceFile>>) -> Vec<Reference> {
        let mut seen = BTreeSet::new();
        let mut references = Vec::new();
        for (index, file) in files.into_iter().enumerate() {
            let span = file.span();
            let file = file.into_inner();
            let mut ctx = format!("references[{index}]");
            let name = match &file.name {
                Some(name) if is_target_name(name.get_ref()) => {
                    ctx = format!("reference {:?}", name.get_ref());
                    if !seen.insert(name.get_ref().clone()) {
                        self.problem(
                            Some(name.span()),
                            &ctx,
                            "name",
                            "the name is used by another reference; reference names must be unique"
                                .to_owned(),
                        );
                    }
                    Some(name.get_ref().clone())
                }
                Some(name) => {
                    self.problem(
                        Some(name.span()),
                        &ctx,
                        "name",
                        format!(
                            "{:?} is not a valid name: use [a-z0-9_-], it becomes the `reference` label",
                            name.get_ref()
                        ),
                    );
                    None
                }
                None => {
                    self.problem(
                        Some(span.clone()),
                        &ctx,
                        "name",
                        "missing; every reference needs a name made of [a-z0-9_-]".to_owned(),
                    );
                    None
                }
            };
            let url = self.reference_url(file.url.as_ref(), span, &ctx);
            let interval = self
                .duration(file.interval.as_ref(), &ctx, "interval", false)
                .unwrap_or(defaults::REFERENCE_INTERVAL);
            let timeout = self
                .duration(file.timeout.as_ref(), &ctx, "timeout", false)
                .unwrap_or(defaults::REFERENCE_TIMEOUT);
            if timeout >= interval {
                let at = file.timeout.as_ref().or(file.interval.as_ref());
                self.problem(
                    at.map(Spanned::span),
                    &ctx,
                    "timeout",
                    format!(
                        "{} is not shorter than the interval ({}); lower the timeout or check less often",
                        humantime::format_duration(timeout),
                        humantime::format_duration(interval)
                    ),
                );
            }
            if let (Some(name), Some(url)) = (name, url) {
                references.push(Reference {
                    name,
                    url,
                    interval,
                    timeout,
                });
            }
        }
        references
    }

    fn reference_url(
        &mut self,
        value: Option<&Spanned<String>>,
        span: std::ops::Range<usize>,
        ctx: &str,
    ) -> Option<Url> {
        let Some(value) = value else {
            self.problem(
                Some(span),
                ctx,
                "url",
                "missing; e.g. url = \"http://192.168.1.1/\" (the gateway) or a large public site"
                    .to_owned(),
            );
            return None;
        };
        let problem = match Url::parse(value.get_ref()) {
            Err(err) => Some(format!("is not a URL ({err})")),
            Ok(url) if !matches!(url.scheme(), "http" | "https") => {
                Some("must be an http(s) URL".to_owned())
            }
            Ok(url) if url.host().is_none() => Some("has no host".to_owned()),
            Ok(url) if !url.username().is_empty() || url.password().is_some() => {
                Some("must not carry credentials: a reference is fetched anonymously".to_owned())
            }
            Ok(url) => return Some(url),
        };
        if let Some(problem) = problem {
            self.problem(
                Some(value.span()),
                ctx,
                "url",
                format!("{:?} {problem}", value.get_ref()),
            );
        }
        None
    }

    fn target(
        &mut self,
        index: usize,
        span: std::ops::Range<usize>,
        file: TargetFile,
        inherited: &Inherited,
    ) -> Option<Target> {
        let name = match &file.name {
            None => {
                self.problem(
                    Some(span.clone()),
                    &format!("targets[{index}]"),
                    "name",
                    "missing; every target needs a name made of [a-z0-9_-]".to_owned(),
                );
                None
            }
            Some(name) if !is_target_name(name.get_ref()) => {
                self.problem(
                    Some(name.span()),
                    &format!("targets[{index}]"),
                    "name",
                    format!(
                        "{:?} is not a valid target name; use lowercase letters, digits, '_' and '-' (it becomes the `target` label)",
                        name.get_ref()
                    ),
                );
                None
            }
            Some(name) => Some(name.get_ref().clone()),
        };
        let ctx = match &name {
            Some(n) => format!("target {n:?}"),
            None => format!("targets[{index}]"),
        };
        let base_url = self.base_url(file.base_url.as_ref(), span.clone(), &ctx);
        let api_key = match &file.api_key {
            None => {
                self.problem(
                    Some(span.clone()),
                    &ctx,
                    "api_key",
                    "missing; set api_key = { env = \"LASTFM_API_KEY\" } (or file/credential)"
                        .to_owned(),
                );
                None
            }
            Some(value) => self.secret(value, &ctx, "api_key"),
        };
        let api_secret = file
            .api_secret
            .as_ref()
            .and_then(|value| self.secret(value, &ctx, "api_secret"));
        let session_key = file
            .session_key
            .as_ref()
            .and_then(|value| self.secret(value, &ctx, "session_key"));
        let politeness = Politeness {
            max_requests_per_second: match &file.max_requests_per_second {
                None => defaults::MAX_REQUESTS_PER_SECOND,
                Some(rate) if *rate.get_ref() > 0.0 && *rate.get_ref() <= 1000.0 => *rate.get_ref(),
                Some(rate) => {
                    self.problem(
                        Some(rate.span()),
                        &ctx,
                        "max_requests_per_second",
                        format!(
                            "{} is out of range; use a rate above 0 and at most 1000 (Last.fm allows about {LASTFM_RATE_CEILING} per second)",
                            rate.get_ref()
                        ),
                    );
                    defaults::MAX_REQUESTS_PER_SECOND
                }
            },
            burst: self
                .count(file.burst.as_ref(), &ctx, "burst", 1, 100)
                .unwrap_or(defaults::BURST),
            suspended_interval: self
                .duration(
                    file.suspended_interval.as_ref(),
                    &ctx,
                    "suspended_interval",
                    false,
                )
                .unwrap_or(defaults::SUSPENDED_INTERVAL),
            backoff_initial: self
                .duration(
                    file.backoff_initial.as_ref(),
                    &ctx,
                    "backoff_initial",
                    false,
                )
                .unwrap_or(defaults::BACKOFF_INITIAL),
            backoff_max: self
                .duration(file.backoff_max.as_ref(), &ctx, "backoff_max", false)
                .unwrap_or(defaults::BACKOFF_MAX),
        };
        if politeness.backoff_max < politeness.backoff_initial {
            self.problem(
                file.backoff_max.as_ref().map(Spanned::span),
                &ctx,
                "backoff_max",
                "is shorter than backoff_initial; the cap must be at least the first backoff"
                    .to_owned(),
            );
        }
        let down_after = self
            .count(file.down_after.as_ref(), &ctx, "down_after", 1, 1000)
            .unwrap_or(defaults::DOWN_AFTER);
        let up_after = self
            .count(file.up_after.as_ref(), &ctx, "up_after", 1, 1000)
            .unwrap_or(defaults::UP_AFTER);
        let statuses = self.statuses(file.documented_statuses.as_ref(), &ctx);
        if file.probes.is_empty() {
            self.problem(
                Some(span),
                &ctx,
                "probes",
                "no [[targets.probes]] are configured; add at least one".to_owned(),
            );
        }
        let mut probe_names = BTreeSet::new();
        let mut probes = Vec::new();
        let has_secret = file.api_secret.is_some();
        for (i, probe) in file.probes.into_iter().enumerate() {
            let probe_span = probe.span();
            if let Some(p) = self.probe(&ctx, i, probe_span.clone(), probe.into_inner(), inherited)
            {
                if p.signed && !has_secret {
                    self.problem(
                        Some(probe_span.clone()),
                        &format!("{ctx}, probe {:?}", p.name),
                        "signed",
                        "a signed probe needs the target's api_secret; set api_secret = { credential = \"api_secret\" } or remove signed".to_owned(),
                    );
                }
                if !probe_names.insert(p.name.clone()) {
                    self.problem(
                        Some(probe_span),
                        &format!("{ctx}, probe {:?}", p.name),
                        "name",
                        "another probe of this target has the same name; set a distinct name"
                            .to_owned(),
                    );
                }
                probes.push(p);
            }
        }
        Some(Target {
            name: name?,
            base_url: base_url?,
            api_key: api_key?,
            api_secret,
            session_key,
            politeness,
            down_after,
            up_after,
            statuses,
            reuse_connections: file.reuse_connections.unwrap_or(false),
            probes,
        })
    }

    fn probe(
        &mut self,
        target_ctx: &str,
        index: usize,
        span: std::ops::Range<usize>,
        file: ProbeFile,
        inherited: &Inherited,
    ) -> Option<Probe> {
        let method = match &file.method {
            Some(m) if is_method_name(m.get_ref()) => Some(m.get_ref().clone()),
            Some(m) => {
                self.problem(
                    Some(m.span()),
                    &format!("{target_ctx}, probes[{index}]"),
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
                    Some(span.clone()),
                    &format!("{target_ctx}, probes[{index}]"),
                    "method",
                    "missing; every probe needs the API method it calls, e.g. method = \"artist.getInfo\"".to_owned(),
                );
                None
            }
        };
        let name = match (&file.name, &method) {
            (Some(n), _) if is_probe_name(n.get_ref()) => Some(n.get_ref().clone()),
            (Some(n), _) => {
                self.problem(
                    Some(n.span()),
                    &format!("{target_ctx}, probes[{index}]"),
                    "name",
                    format!(
                        "{:?} is not a valid probe name; use letters, digits, '.', '_', ':' and '-' (it becomes the `probe` label)",
                        n.get_ref()
                    ),
                );
                None
            }
            (None, m) => m.clone(),
        };
        let ctx = match &name {
            Some(n) => format!("{target_ctx}, probe {n:?}"),
            None => format!("{target_ctx}, probes[{index}]"),
        };
        let mut params = Vec::new();
        let empty = BTreeMap::new();
        let params_span = file.params.as_ref().map(Spanned::span);
        let raw_params = file.params.as_ref().map_or(&empty, Spanned::get_ref);
        for (key, value) in raw_params {
            if RESERVED_PARAMS.contains(&key.as_str()) {
                self.problem(
                    params_span.clone(),
                    &ctx,
                    &format!("params.{key}"),
                    "is set by the monitor itself and cannot be a probe parameter".to_owned(),
                );
                continue;
            }
            let text = match value {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                _ => {
                    self.problem(
                        params_span.clone(),
                        &ctx,
                        &format!("params.{key}"),
                        "must be a string, number or boolean".to_owned(),
                    );
                    continue;
                }
            };
            params.push((key.clone(), text));
        }
        let schedule = if file.interval.is_some() || file.cron.is_some() {
            self.schedule(file.interval.as_ref(), file.cron.as_ref(), &ctx)
        } else {
            inherited.schedule.clone().or_else(|| {
                Some(ScheduleSpec {
                    source: humantime::format_duration(defaults::INTERVAL).to_string(),
                    schedule: Schedule::Every(defaults::INTERVAL),
                })
            })
        };
        let timeout = self
            .duration(file.timeout.as_ref(), &ctx, "timeout", false)
            .unwrap_or(inherited.timeout);
        if let Some(schedule) = &schedule {
            if let Some(gap) = schedule.schedule.shortest_gap(self.now) {
                if timeout >= gap {
                    let key_span = file
                        .timeout
                        .as_ref()
                        .or(file.interval.as_ref())
                        .or(file.cron.as_ref())
                        .map_or(span, Spanned::span);
                    self.problem(
                        Some(key_span),
                        &ctx,
                        "timeout",
                        format!(
                            "{} is not shorter than the shortest gap between runs ({}); lower the timeout or run less often",
                            humantime::format_duration(timeout),
                            humantime::format_duration(gap)
                        ),
                    );
                }
            }
        }
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
        let mut checks = Vec::new();
        for check in &file.checks {
            if let Some(c) = self.check(check, &ctx) {
                checks.push(c);
            }
        }
        if !checks.is_empty() && format == Some(Format::Xml) {
            self.problem(
                file.checks.first().map(Spanned::span),
                &ctx,
                "checks",
                "content checks read JSON; set format = \"json\" or remove the checks".to_owned(),
            );
        }
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

    fn duration(
        &mut self,
        value: Option<&Spanned<String>>,
        ctx: &str,
        key: &str,
        zero_ok: bool,
    ) -> Option<Duration> {
        let value = value?;
        match humantime::parse_duration(value.get_ref()) {
            Ok(d) if d.is_zero() && !zero_ok => {
                self.problem(
                    Some(value.span()),
                    ctx,
                    key,
                    "must be longer than zero".to_owned(),
                );
                None
            }
            Ok(d) => Some(d),
            Err(err) => {
                self.problem(
                    Some(value.span()),
                    ctx,
                    key,
                    format!(
                        "{:?} is not a duration ({err}); write it like \"30s\", \"5m\" or \"1h\"",
                        value.get_ref()
                    ),
                );
                None
            }
        }
    }

    fn schedule(
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
            (Some(i), None) => {
                let gap = self.duration(Some(i), ctx, "interval", false)?;
                if gap < Duration::from_secs(1) {
                    self.problem(
                        Some(i.span()),
                        ctx,
                        "interval",
                        "must be at least 1s".to_owned(),
                    );
                    return None;
                }
                Some(ScheduleSpec {
                    source: i.get_ref().clone(),
                    schedule: Schedule::Every(gap),
                })
            }
            (None, Some(c)) => match Schedule::parse_cron(c.get_ref()) {
                Ok(schedule) => {
                    if schedule.upcoming(self.now, 1).is_empty() {
                        self.problem(
                            Some(c.span()),
                            ctx,
                            "cron",
                            format!("{:?} never fires after now", c.get_ref()),
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
            },
            (None, None) => None,
        }
    }

    /// A string key whose value must be one of `options`; the error lists them.
    fn choice<T: Copy>(
        &mut self,
        value: Option<&Spanned<String>>,
        ctx: &str,
        key: &str,
        options: &[(&str, T)],
        advice: &str,
    ) -> Option<T> {
        let value = value?;
        let found = options
            .iter()
            .find(|(name, _)| name == value.get_ref())
            .map(|(_, v)| *v);
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

    fn format(&mut self, value: Option<&Spanned<String>>, ctx: &str) -> Option<Format> {
        self.choice(
            value,
            ctx,
            "format",
            &[("json", Format::Json), ("xml", Format::Xml)],
            "use \"json\" or \"xml\"",
        )
    }

    fn http_method(&mut self, value: Option<&Spanned<String>>, ctx: &str) -> Option<HttpMethod> {
        self.choice(
            value,
            ctx,
            "http_method",
            &[("POST", HttpMethod::Post), ("GET", HttpMethod::Get)],
            "use \"POST\" (recommended: keeps the key out of URLs) or \"GET\"",
        )
    }

    fn max_body_bytes(&mut self, value: Option<&Spanned<i64>>, ctx: &str) -> Option<u64> {
        let value = value?;
        match u64::try_from(*value.get_ref()) {
            Ok(n) if (1024..=64 * 1024 * 1024).contains(&n) => Some(n),
            _ => {
                self.problem(
                    Some(value.span()),
                    ctx,
                    "max_body_bytes",
                    format!(
                        "{} is out of range; use 1024 to 67108864 bytes",
                        value.get_ref()
                    ),
                );
                None
            }
        }
    }

    fn count(
        &mut self,
        value: Option<&Spanned<i64>>,
        ctx: &str,
        key: &str,
        min: u32,
        max: u32,
    ) -> Option<u32> {
        let value = value?;
        match u32::try_from(*value.get_ref()) {
            Ok(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.problem(
                    Some(value.span()),
                    ctx,
                    key,
                    format!(
                        "{} is out of range; use a whole number from {min} to {max}",
                        value.get_ref()
                    ),
                );
                None
            }
        }
    }

    fn base_url(
        &mut self,
        value: Option<&Spanned<String>>,
        target_span: std::ops::Range<usize>,
        ctx: &str,
    ) -> Option<Url> {
        let Some(value) = value else {
            self.problem(
                Some(target_span),
                ctx,
                "base_url",
                "missing; e.g. base_url = \"https://ws.audioscrobbler.com/2.0/\"".to_owned(),
            );
            return None;
        };
        let url = match Url::parse(value.get_ref()) {
            Ok(url) => url,
            Err(err) => {
                self.problem(
                    Some(value.span()),
                    ctx,
                    "base_url",
                    format!("{:?} is not a URL ({err})", value.get_ref()),
                );
                return None;
            }
        };
        let loopback = match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(d)) => d == "localhost",
            None => false,
        };
        let problem = match url.scheme() {
            _ if url.host().is_none() => Some("has no host"),
            _ if !url.username().is_empty() || url.password().is_some() => {
                Some("must not carry credentials; use api_key")
            }
            _ if url.query().is_some() => Some("must not have a query string"),
            "https" => None,
            "http" if loopback => None,
            "http" => Some(
                "uses plain http to a non-loopback host, which would send the api_key in clear; use https",
            ),
            _ => Some("must be an http(s) URL"),
        };
        if let Some(problem) = problem {
            self.problem(
                Some(value.span()),
                ctx,
                "base_url",
                format!("{:?} {problem}", value.get_ref()),
            );
            return None;
        }
        Some(url)
    }

    fn secret(&mut self, value: &Spanned<toml::Value>, ctx: &str, key: &str) -> Option<Secret> {
        let (source, inline) = match value.get_ref() {
            toml::Value::String(s) => (SecretSource::Inline, Some(s.as_str())),
            toml::Value::Table(table) if table.len() == 1 => {
                let (kind, arg) = table
                    .iter()
                    .next()
                    .expect("the table has exactly one entry");
                match (kind.as_str(), arg.as_str()) {
                    ("env", Some(name)) => (SecretSource::Env(name.to_owned()), None),
                    ("file", Some(path)) => (SecretSource::File(PathBuf::from(path)), None),
                    ("credential", Some(name)) => (SecretSource::Credential(name.to_owned()), None),
                    _ => {
                        self.problem(
                            Some(value.span()),
                            ctx,
                            key,
                            format!("`{kind}` is not a secret source; use {{ env = \"NAME\" }}, {{ file = \"/path\" }} or {{ credential = \"name\" }}"),
                        );
                        return None;
                    }
                }
            }
            _ => {
                self.problem(
                    Some(value.span()),
                    ctx,
                    key,
                    "must be { env = \"NAME\" }, { file = \"/path\" } or { credential = \"name\" }"
                        .to_owned(),
                );
                return None;
            }
        };
        match source.resolve(inline, self.env) {
            Ok(secret) => Some(secret),
            Err(message) => {
                self.problem(Some(value.span()), ctx, key, message);
                None
            }
        }
    }

    fn expect(&mut self, value: Option<&Spanned<toml::Value>>, ctx: &str) -> Option<Expectation> {
        let Some(value) = value else {
            return Some(Expectation::Success);
        };
        let code = match value.get_ref() {
            toml::Value::String(s) if s == "success" => return Some(Expectation::Success),
            toml::Value::Table(t) if t.len() == 1 => {
                t.get("error").and_then(toml::Value::as_integer)
            }
            _ => None,
        };
        match code
            .and_then(|c| u32::try_from(c).ok())
            .filter(|c| (1..=99).contains(c))
        {
            Some(code) => Some(Expectation::Error(code)),
            None => {
                self.problem(
                    Some(value.span()),
                    ctx,
                    "expect",
                    "must be \"success\" or { error = N } with a Last.fm error code N from 1 to 99"
                        .to_owned(),
                );
                None
            }
        }
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
            (Some(v), None, None) => match toml_to_json(v) {
                Some(json) => CheckRule::Equals(json),
                None => {
                    self.problem(
                        Some(value.span()),
                        ctx,
                        "checks.equals",
                        "must be a string, number or boolean".to_owned(),
                    );
                    return None;
                }
            },
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

    fn statuses(
        &mut self,
        value: Option<&Spanned<BTreeMap<String, Vec<i64>>>>,
        ctx: &str,
    ) -> StatusTable {
        let mut table = StatusTable::default();
        let Some(value) = value else {
            return table;
        };
        for (code, statuses) in value.get_ref() {
            let parsed_code = code.parse::<u32>().ok().filter(|c| (1..=99).contains(c));
            let parsed_statuses: Option<Vec<u16>> = statuses
                .iter()
                .map(|s| u16::try_from(*s).ok().filter(|s| (100..=599).contains(s)))
                .collect();
            match (parsed_code, parsed_statuses) {
                (Some(code), Some(statuses)) => table.set(code, statuses),
                _ => self.problem(
                    Some(value.span()),
                    ctx,
                    &format!("documented_statuses.{code}"),
                    "keys are error codes (\"29\") and values lists of HTTP statuses 100–599"
                        .to_owned(),
                ),
            }
        }
        table
    }
}

fn toml_to_json(value: &toml::Value) -> Option<serde_json::Value> {
    match value {
        toml::Value::String(s) => Some(serde_json::Value::String(s.clone())),
        toml::Value::Integer(i) => Some(serde_json::Value::from(*i)),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f).map(serde_json::Value::Number),
        toml::Value::Boolean(b) => Some(serde_json::Value::Bool(*b)),
        _ => None,
    }
}

fn is_target_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn is_probe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

fn is_method_name(name: &str) -> bool {
    is_probe_name(name) && name.contains('.')
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::collections::HashMap;

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

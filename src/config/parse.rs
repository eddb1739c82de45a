//! Field parsers: one configuration value's text (or TOML value) in, the typed value or what
//! is wrong with it out. Pure functions, with no spans and no problem list.
//!
//! Apart from the validator so that each rule (what a name may hold, which URLs are allowed,
//! how a secret source is written) reads on its own; the validator (`validate/`) places the
//! messages at their key, file, line and column. The rules are those of README.md,
//! Configuration reference.

use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use crate::config::declared::Expectation;
use crate::config::secret::SecretSource;

/// Parameters the monitor sets itself; a probe may not override them.
pub(crate) const RESERVED_PARAMS: [&str; 6] =
    ["api_key", "method", "format", "api_sig", "sk", "callback"];

/// A target or reference name: it becomes a label, so `[a-z0-9_-]`, 1 to 64 bytes.
pub(crate) fn is_target_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// A probe name: it becomes the `probe` label, so letters, digits, `.`, `_`, `:` and `-`.
pub(crate) fn is_probe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

/// An API method name such as `artist.getInfo`.
pub(crate) fn is_method_name(name: &str) -> bool {
    is_probe_name(name) && name.contains('.')
}

/// The range a duration key must fall in, and how its message writes it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    /// The shortest allowed.
    pub(crate) min: Duration,
    /// The longest allowed.
    pub(crate) max: Duration,
    /// The range as the message writes it.
    pub(crate) text: &'static str,
}

/// `interval` (probes and references), `suspended_interval`, `backoff_initial`, `backoff_max`:
/// a period of the daemon's clockwork. A month is longer than any sensible one and keeps every
/// instant the daemon computes from one (a fire, a backoff's end) far inside what the clocks
/// hold; an `interval` of 300000000000y once overflowed the schedule's arithmetic.
pub(crate) const PERIOD: Bounds = Bounds {
    min: Duration::from_secs(1),
    max: Duration::from_secs(30 * 24 * 3600),
    text: "from 1s to 30d",
};

/// `timeout` (probes and references): a run's deadline.
pub(crate) const TIMEOUT: Bounds = Bounds {
    min: Duration::from_millis(100),
    max: Duration::from_secs(600),
    text: "from 100ms to 10m",
};

/// `startup_jitter`: zero turns it off.
pub(crate) const JITTER: Bounds = Bounds {
    min: Duration::ZERO,
    max: Duration::from_secs(3600),
    text: "from 0s to 1h",
};

/// A duration such as `30s`, `5m` or `1h`; zero only when `zero_ok`.
pub(crate) fn duration(text: &str, zero_ok: bool) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if d.is_zero() && !zero_ok => Err("must be longer than zero".to_owned()),
        Ok(d) => Ok(d),
        Err(err) => Err(format!(
            "{text:?} is not a duration ({err}); write it like \"30s\", \"5m\" or \"1h\""
        )),
    }
}

/// A whole number from `min` to `max`.
pub(crate) fn count(value: i64, min: u32, max: u32) -> Result<u32, String> {
    match u32::try_from(value) {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!(
            "{value} is out of range; use a whole number from {min} to {max}"
        )),
    }
}

/// `max_body_bytes`: 1 KiB to 64 MiB.
pub(crate) fn max_body_bytes(value: i64) -> Result<u64, String> {
    match u64::try_from(value) {
        Ok(n) if (1024..=64 * 1024 * 1024).contains(&n) => Ok(n),
        _ => Err(format!(
            "{value} is out of range; use 1024 to 67108864 bytes"
        )),
    }
}

/// The value of `options` named `text`.
pub(crate) fn choice<T: Copy>(text: &str, options: &[(&str, T)]) -> Option<T> {
    options
        .iter()
        .find(|(name, _)| *name == text)
        .map(|(_, v)| *v)
}

/// A target's `base_url`: https, or plain http to a loopback host; no credentials, no query.
pub(crate) fn base_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|err| format!("{text:?} is not a URL ({err})"))?;
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
    match problem {
        Some(problem) => Err(format!("{text:?} {problem}")),
        None => Ok(url),
    }
}

/// Whether `url` is Last.fm's API (`ws.audioscrobbler.com`, docs/LASTFM-API.md), whose keys and
/// secrets are 32 hex digits; other services (Libre.fm, a simulator) are not held to that shape.
pub(crate) fn is_lastfm(url: &Url) -> bool {
    url.host_str().is_some_and(|host| {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        host == "audioscrobbler.com"
            || host.ends_with(".audioscrobbler.com")
            || host == "last.fm"
            || host.ends_with(".last.fm")
    })
}

/// A reference's `url`: http(s) with a host and no credentials (it is fetched anonymously).
pub(crate) fn reference_url(text: &str) -> Result<Url, String> {
    let problem = match Url::parse(text) {
        Err(err) => format!("is not a URL ({err})"),
        Ok(url) if !matches!(url.scheme(), "http" | "https") => "must be an http(s) URL".to_owned(),
        Ok(url) if url.host().is_none() => "has no host".to_owned(),
        Ok(url) if !url.username().is_empty() || url.password().is_some() => {
            "must not carry credentials: a reference is fetched anonymously".to_owned()
        }
        Ok(url) => return Ok(url),
    };
    Err(format!("{text:?} {problem}"))
}

/// Where a secret comes from: an inline string, or `{ env | file | credential = "…" }`; the
/// inline text, if any, comes along.
pub(crate) fn secret_source(value: &toml::Value) -> Result<(SecretSource, Option<&str>), String> {
    match value {
        toml::Value::String(s) => Ok((SecretSource::Inline, Some(s.as_str()))),
        toml::Value::Table(table) if table.len() == 1 => {
            let (kind, arg) = table
                .iter()
                .next()
                .expect("the table has exactly one entry");
            match (kind.as_str(), arg.as_str()) {
                ("env", Some(name)) => Ok((SecretSource::Env(name.to_owned()), None)),
                ("file", Some(path)) => Ok((SecretSource::File(PathBuf::from(path)), None)),
                ("credential", Some(name)) => Ok((SecretSource::Credential(name.to_owned()), None)),
                _ => Err(format!(
                    "`{kind}` is not a secret source; use {{ env = \"NAME\" }}, {{ file = \"/path\" }} or {{ credential = \"name\" }}"
                )),
            }
        }
        toml::Value::Table(_)
        | toml::Value::Integer(_)
        | toml::Value::Float(_)
        | toml::Value::Boolean(_)
        | toml::Value::Datetime(_)
        | toml::Value::Array(_) => Err(
            "must be { env = \"NAME\" }, { file = \"/path\" } or { credential = \"name\" }"
                .to_owned(),
        ),
    }
}

/// `expect`: `"success"` or `{ error = N }` with N from 1 to 99.
pub(crate) fn expectation(value: &toml::Value) -> Option<Expectation> {
    let code = match value {
        toml::Value::String(s) if s == "success" => return Some(Expectation::Success),
        toml::Value::Table(t) if t.len() == 1 => t.get("error").and_then(toml::Value::as_integer),
        toml::Value::String(_)
        | toml::Value::Table(_)
        | toml::Value::Integer(_)
        | toml::Value::Float(_)
        | toml::Value::Boolean(_)
        | toml::Value::Datetime(_)
        | toml::Value::Array(_) => None,
    };
    code.and_then(|c| u32::try_from(c).ok())
        .filter(|c| (1..=99).contains(c))
        .map(Expectation::Error)
}

/// A probe parameter's value as sent: strings, numbers and booleans only.
pub(crate) fn param_text(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Datetime(_) | toml::Value::Array(_) | toml::Value::Table(_) => None,
    }
}

/// A check's `equals` value as JSON: strings, numbers and booleans only.
pub(crate) fn toml_to_json(value: &toml::Value) -> Option<serde_json::Value> {
    match value {
        toml::Value::String(s) => Some(serde_json::Value::String(s.clone())),
        toml::Value::Integer(i) => Some(serde_json::Value::from(*i)),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f).map(serde_json::Value::Number),
        toml::Value::Boolean(b) => Some(serde_json::Value::Bool(*b)),
        toml::Value::Datetime(_) | toml::Value::Array(_) | toml::Value::Table(_) => None,
    }
}

/// One `documented_statuses` entry: an error code 1–99 and HTTP statuses 100–599.
pub(crate) fn documented_statuses(code: &str, statuses: &[i64]) -> Option<(u32, Vec<u16>)> {
    let code = code.parse::<u32>().ok().filter(|c| (1..=99).contains(c))?;
    let statuses = statuses
        .iter()
        .map(|s| u16::try_from(*s).ok().filter(|s| (100..=599).contains(s)))
        .collect::<Option<Vec<u16>>>()?;
    Some((code, statuses))
}

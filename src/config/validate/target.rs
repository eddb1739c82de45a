//! A `[[targets]]` table: its name, base URL, secrets, politeness (request budget and backoff),
//! hysteresis counts, documented statuses, and its probes with distinct names (README.md,
//! Configuration reference).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use toml::Spanned;
use url::Url;

use crate::config::api::Api;
use crate::config::declared::{HttpMethod, StatusTable};
use crate::config::defaults;
use crate::config::file::{ProbeFile, TargetFile};
use crate::config::model::{LASTFM_RATE_CEILING, Politeness, Probe, Target};
use crate::config::parse;
use crate::config::secret::{Secret, SecretSource};

use super::canary::CanaryContext;
use super::{Inherited, Validator};

/// A target's three secrets; `api_key` is `None` when missing or unresolved.
struct Secrets {
    api_key: Option<Secret>,
    api_secret: Option<Secret>,
    session_key: Option<Secret>,
}

/// What a target's probes are checked against.
#[derive(Debug, Clone, Copy)]
struct ProbeFacts {
    /// The target has an `api_secret`: signed probes may be.
    has_secret: bool,
    /// The target has canaries: it may have no probe.
    has_canaries: bool,
    /// Its service: probes of methods it lacks are refused.
    api: Api,
}

impl Validator<'_> {
    /// The target, or `None` when a key it cannot do without is wrong (the problems are
    /// recorded either way).
    pub(super) fn target(
        &mut self,
        index: usize,
        span: Range<usize>,
        mut file: TargetFile,
        inherited: &Inherited,
    ) -> Option<Target> {
        let name = self.target_name(file.name.as_ref(), index, span.clone());
        let ctx = match &name {
            Some(n) => format!("target {n:?}"),
            None => format!("targets[{index}]"),
        };
        let base_url = self.base_url(file.base_url.as_ref(), span.clone(), &ctx);
        let api = self.api(file.api.as_ref(), &ctx);
        let lastfm = api == Api::Lastfm && base_url.as_ref().is_some_and(parse::is_lastfm);
        let secrets = self.secrets(&file, span.clone(), &ctx, lastfm);
        if api == Api::Librefm {
            self.key_length(file.api_key.as_ref(), secrets.api_key.as_ref(), &ctx);
        }
        let politeness = self.politeness(&file, &ctx);
        let down_after = self
            .count(file.down_after.as_ref(), &ctx, "down_after", 1, 100)
            .unwrap_or(defaults::DOWN_AFTER);
        let up_after = self
            .count(file.up_after.as_ref(), &ctx, "up_after", 1, 100)
            .unwrap_or(defaults::UP_AFTER);
        let statuses = self.statuses(file.documented_statuses.as_ref(), &ctx);
        let availability_objective = self.objective(file.availability_objective.as_ref(), &ctx);
        let has_secret = file.api_secret.is_some();
        let probes = self.target_probes(
            std::mem::take(&mut file.probes),
            span,
            &ctx,
            ProbeFacts {
                has_secret,
                has_canaries: !file.canaries.is_empty(),
                api,
            },
            inherited,
        );
        let canary_files = std::mem::take(&mut file.canaries);
        let (canaries, max_scrobbles_per_day) = self.target_canaries(
            &canary_files,
            &CanaryContext {
                target_ctx: &ctx,
                file: &file,
                probe_names: probes.iter().map(|p| p.name.clone()).collect(),
            },
            inherited,
        );
        Some(Target {
            name: name?,
            base_url: base_url?,
            api,
            api_key: secrets.api_key?,
            api_secret: secrets.api_secret,
            session_key: secrets.session_key,
            politeness,
            down_after,
            up_after,
            statuses,
            reuse_connections: file.reuse_connections.unwrap_or(false),
            availability_objective,
            probes,
            canaries,
            max_scrobbles_per_day,
        })
    }

    /// The `target` label: required, `[a-z0-9_-]`.
    fn target_name(
        &mut self,
        name: Option<&Spanned<String>>,
        index: usize,
        span: Range<usize>,
    ) -> Option<String> {
        match name {
            None => {
                self.problem(
                    Some(span),
                    &format!("targets[{index}]"),
                    "name",
                    "missing; every target needs a name made of [a-z0-9_-]".to_owned(),
                );
                None
            }
            Some(name) if !parse::is_target_name(name.get_ref()) => {
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
        }
    }

    fn base_url(
        &mut self,
        value: Option<&Spanned<String>>,
        target_span: Range<usize>,
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
        parse::base_url(value.get_ref())
            .map_err(|message| self.problem(Some(value.span()), ctx, "base_url", message))
            .ok()
    }

    /// `api`: the service, Last.fm unless it says otherwise.
    fn api(&mut self, value: Option<&Spanned<String>>, ctx: &str) -> Api {
        match value {
            None => Api::Lastfm,
            Some(value) => self
                .choice(
                    Some(value),
                    ctx,
                    "api",
                    &Api::ALL.map(|api| (api.as_label(), api)),
                    "use \"lastfm\", \"librefm\" or \"listenbrainz\"",
                )
                .unwrap_or(Api::Lastfm),
        }
    }

    /// GNU FM checks only that a key is 32 characters long: another length is refused there
    /// with error 10, so it is worth a warning here.
    fn key_length(
        &mut self,
        value: Option<&Spanned<toml::Value>>,
        key: Option<&Secret>,
        ctx: &str,
    ) {
        let (Some(value), Some(key)) = (value, key) else {
            return;
        };
        let length = key.expose().chars().count();
        if length != 32 {
            self.warning(
                Some(value.span()),
                ctx,
                "api_key",
                format!("is {length} characters long; Libre.fm (GNU FM) refuses a key that is not 32 characters with error 10"),
            );
        }
    }

    /// Refuses a probe of a method the target's service does not implement: it would only
    /// ever measure "invalid method".
    fn method_of(&mut self, api: Api, probe: &Probe, at: Range<usize>, ctx: &str) {
        let write = ["track.updateNowPlaying", "track.scrobble"]
            .iter()
            .any(|m| m.eq_ignore_ascii_case(&probe.method));
        if write && api.writes_are_post_only() && probe.http_method == HttpMethod::Get {
            self.problem(
                Some(at.clone()),
                &format!("{ctx}, probe {:?}", probe.name),
                "http_method",
                format!(
                    "{} takes {} only as a POST (a GET is answered with error 16); remove http_method = \"GET\"",
                    api.service_name(),
                    probe.method
                ),
            );
        }
        let Some(methods) = api.methods() else {
            return;
        };
        if api.implements(&probe.method) == Some(false) {
            self.problem(
                Some(at),
                &format!("{ctx}, probe {:?}", probe.name),
                "method",
                format!(
                    "{:?} is not a method of {} (api = {:?}), which implements {}; probe one of those",
                    probe.method,
                    api.service_name(),
                    api.as_label(),
                    methods.join(", ")
                ),
            );
        }
    }

    /// `api_key` (required), `api_secret` and `session_key`, resolved; a value that cannot be a
    /// key (of Last.fm's shape when `lastfm`) is accepted with a warning.
    fn secrets(
        &mut self,
        file: &TargetFile,
        span: Range<usize>,
        ctx: &str,
        lastfm: bool,
    ) -> Secrets {
        let api_key = match &file.api_key {
            None => {
                self.problem(
                    Some(span),
                    ctx,
                    "api_key",
                    "missing; set api_key = { env = \"LASTFM_API_KEY\" } (or file/credential)"
                        .to_owned(),
                );
                None
            }
            Some(value) => self.secret(value, ctx, "api_key", lastfm),
        };
        let api_secret = file
            .api_secret
            .as_ref()
            .and_then(|value| self.secret(value, ctx, "api_secret", lastfm));
        // Session keys come from auth.getSession; their shape is not documented.
        let session_key = file
            .session_key
            .as_ref()
            .and_then(|value| self.secret(value, ctx, "session_key", false));
        Secrets {
            api_key,
            api_secret,
            session_key,
        }
    }

    fn secret(
        &mut self,
        value: &Spanned<toml::Value>,
        ctx: &str,
        key: &str,
        lastfm_hex: bool,
    ) -> Option<Secret> {
        let (source, secret) =
            match parse::secret_source(value.get_ref()).and_then(|(source, inline)| {
                source
                    .resolve(inline, self.env)
                    .map(|secret| (source, secret))
            }) {
                Ok(resolved) => resolved,
                Err(message) => {
                    self.problem(Some(value.span()), ctx, key, message);
                    return None;
                }
            };
        if let Some(why) = secret.shape_problem(lastfm_hex) {
            let from = match &source {
                SecretSource::Inline => "the value".to_owned(),
                SecretSource::Env(_) | SecretSource::File(_) | SecretSource::Credential(_) => {
                    format!("the value from {}", source.describe())
                }
            };
            self.warning(Some(value.span()), ctx, key, format!("{from} {why}"));
        }
        Some(secret)
    }

    /// The request budget and backoff; a wrong value falls back on its default.
    fn politeness(&mut self, file: &TargetFile, ctx: &str) -> Politeness {
        let politeness = Politeness {
            max_requests_per_second: self.rate(file.max_requests_per_second.as_ref(), ctx),
            burst: self
                .count(file.burst.as_ref(), ctx, "burst", 1, 1000)
                .unwrap_or(defaults::BURST),
            suspended_interval: self
                .duration(
                    file.suspended_interval.as_ref(),
                    ctx,
                    "suspended_interval",
                    parse::PERIOD,
                )
                .unwrap_or(defaults::SUSPENDED_INTERVAL),
            backoff_initial: self
                .duration(
                    file.backoff_initial.as_ref(),
                    ctx,
                    "backoff_initial",
                    parse::PERIOD,
                )
                .unwrap_or(defaults::BACKOFF_INITIAL),
            backoff_max: self
                .duration(file.backoff_max.as_ref(), ctx, "backoff_max", parse::PERIOD)
                .unwrap_or(defaults::BACKOFF_MAX),
        };
        if politeness.backoff_max < politeness.backoff_initial {
            // At backoff_max, or at backoff_initial when the cap is the default.
            let at = file.backoff_max.as_ref().or(file.backoff_initial.as_ref());
            self.problem(
                at.map(Spanned::span),
                ctx,
                "backoff_max",
                "is shorter than backoff_initial; the cap must be at least the first backoff"
                    .to_owned(),
            );
        }
        politeness
    }

    /// `max_requests_per_second`: from 0.001 (one request in about 17 minutes) to 1000. Below
    /// that, the wait for a token is longer than any instant the clocks hold (1e-300 once
    /// aborted the daemon); NaN is in no range.
    fn rate(&mut self, value: Option<&Spanned<f64>>, ctx: &str) -> f64 {
        match value {
            None => defaults::MAX_REQUESTS_PER_SECOND,
            Some(rate) if (0.001..=1000.0).contains(rate.get_ref()) => *rate.get_ref(),
            Some(rate) => {
                self.problem(
                    Some(rate.span()),
                    ctx,
                    "max_requests_per_second",
                    format!(
                        "{:?} is out of range; use a rate from 0.001 to 1000 (Last.fm allows about {LASTFM_RATE_CEILING} per second)",
                        rate.get_ref()
                    ),
                );
                defaults::MAX_REQUESTS_PER_SECOND
            }
        }
    }

    /// `availability_objective`: a ratio from 0.9 to 0.99999 (NaN is in no range).
    fn objective(&mut self, value: Option<&Spanned<f64>>, ctx: &str) -> f64 {
        let range = defaults::AVAILABILITY_OBJECTIVE_RANGE;
        match value {
            None => defaults::AVAILABILITY_OBJECTIVE,
            Some(ratio) if range.contains(ratio.get_ref()) => *ratio.get_ref(),
            Some(ratio) => {
                self.problem(
                    Some(ratio.span()),
                    ctx,
                    "availability_objective",
                    format!(
                        "{:?} is out of range; use a ratio from {} to {} (0.995: available 99.5% of 30 days)",
                        ratio.get_ref(),
                        range.start(),
                        range.end()
                    ),
                );
                defaults::AVAILABILITY_OBJECTIVE
            }
        }
    }

    /// `documented_statuses`: this target's overrides of the documented table.
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
            match parse::documented_statuses(code, statuses) {
                Some((code, statuses)) => table.set(code, statuses),
                None => self.problem(
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

    /// The target's probes: at least one unless it has canaries, distinct names, signed only
    /// with an `api_secret`.
    fn target_probes(
        &mut self,
        files: Vec<Spanned<ProbeFile>>,
        span: Range<usize>,
        ctx: &str,
        facts: ProbeFacts,
        inherited: &Inherited,
    ) -> Vec<Probe> {
        let ProbeFacts {
            has_secret,
            has_canaries,
            api,
        } = facts;
        if files.is_empty() && !has_canaries {
            self.problem(
                Some(span),
                ctx,
                "probes",
                "no [[targets.probes]] (and no [[targets.canaries]]) are configured; add at least one probe".to_owned(),
            );
        }
        let mut probe_names = BTreeSet::new();
        let mut probes = Vec::new();
        for (i, probe) in files.into_iter().enumerate() {
            let probe_span = probe.span();
            let method_span = probe.get_ref().method.as_ref().map(Spanned::span);
            let Some(p) = self.probe(ctx, i, probe_span.clone(), probe.into_inner(), inherited)
            else {
                continue;
            };
            self.method_of(api, &p, method_span.unwrap_or(probe_span.clone()), ctx);
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
        probes
    }
}

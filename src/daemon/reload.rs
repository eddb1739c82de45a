//! A reload: read and validate the configuration again, then swap the new generation in, or
//! refuse it and keep the running one.
//!
//! The old generation's probe tasks are cancelled and the new ones started; gates, health and the
//! counters of probes that stay carry on (the run stage's `Origin::Reload`). A run that was going
//! finishes: it is recorded into the new generation when its probe stays, else counted in
//! `lastfm_monitor_runs_abandoned_total` and logged. The series and
//! recent runs of probes, targets and references that are gone are removed, so a reload leaves no
//! dead series behind.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::descriptors::Descriptors;
use super::fleet::Fleet;
use super::options::{ConfigSource, Options};
use crate::config::{Config, ConfigError, Problem};
use crate::run::{Generation, Origin};
use crate::schedule::WallClock;
use crate::server::Shared;

/// Validates the new configuration and swaps it in, or keeps the old one: the sentence the
/// caller of `POST /-/reload` gets.
pub(super) async fn reload(
    config: &mut Config,
    descriptors: &mut Descriptors,
    options: &Options,
    shared: &Arc<Shared>,
    fleet: &Fleet,
) -> Result<String, String> {
    options.notifier.reloading();
    let loaded = load(options).await;
    let now_unix = unix_now(options.clock.as_ref());
    let result = match loaded {
        Err(err) => {
            for problem in err.to_string().lines() {
                tracing::error!(
                    problem,
                    "configuration reload refused; the previous configuration keeps running"
                );
            }
            shared.metrics.record_reload(false, now_unix);
            Err(err.to_string())
        }
        Ok(new) => {
            for warning in &new.warnings {
                tracing::warn!(warning = %warning, "configuration accepted with a warning");
            }
            if new.web.listen_address != config.web.listen_address {
                tracing::warn!("web.listen_address changed; it takes effect at the next restart");
            }
            if new.web.max_connections != config.web.max_connections {
                tracing::warn!("web.max_connections changed; it takes effect at the next restart");
            }
            let old = shared.generation();
            old.cancel.cancel();
            retire(&old, &new, shared);
            let probes = new.probe_count();
            if let Err(problem) = descriptors.prepare(probes, new.web.max_connections) {
                // `load` checked it against the limit this would reach; only a failed raise
                // gets here, and the running server keeps its cap.
                tracing::warn!(%problem.message, "web.max_connections does not fit the descriptor limit");
            }
            let generation = fleet.start(&new, &shared.metrics, Origin::Reload(&old));
            // Runs of the old generation still going finish and are recorded there, or are
            // counted as abandoned when their probe is gone.
            old.hand_over(&generation);
            shared.set_generation(generation);
            shared.metrics.record_reload(true, now_unix);
            let summary = format!(
                "configuration reloaded: {} target(s), {probes} probe(s)",
                new.targets.len()
            );
            tracing::info!(
                targets = new.targets.len(),
                probes,
                "configuration reloaded"
            );
            *config = new;
            Ok(summary)
        }
    };
    options.notifier.ready();
    result
}

/// The configuration from where reloads read it, read and validated on the blocking pool (the
/// file and the secret files it names are file I/O, which must not stall the thread that serves
/// `/metrics` and schedules the probes), and refused when its `max_connections` exceeds its share
/// of the descriptor limit.
async fn load(options: &Options) -> Result<Config, ConfigError> {
    let source = options.source.clone();
    let env = Arc::clone(&options.env);
    let clock = Arc::clone(&options.clock);
    let origin = options.source.origin();
    let config = tokio::task::spawn_blocking(move || match &source {
        ConfigSource::File(path) => Config::load(path, env.as_ref()),
        ConfigSource::Fixed(text) => {
            Config::parse(text, &source.origin(), env.as_ref(), clock.now())
        }
    })
    .await
    .unwrap_or_else(|err| {
        Err(ConfigError {
            origin: "reload".to_owned(),
            problems: vec![Problem {
                line: None,
                column: None,
                context: String::new(),
                key: String::new(),
                message: format!("the configuration could not be read: {err}"),
            }],
        })
    })?;
    match super::descriptors::check(config.probe_count(), config.web.max_connections) {
        Ok(_) => Ok(config),
        Err(problem) => Err(ConfigError {
            origin,
            problems: vec![problem],
        }),
    }
}

/// Removes the series and recent runs of what `old` has and `new` no longer does.
fn retire(old: &Generation, new: &Config, shared: &Shared) {
    let kept: BTreeSet<(String, String)> = new
        .targets
        .iter()
        .flat_map(|t| t.step_names().map(|p| (t.name.clone(), p.to_owned())))
        .collect();
    for rt in &old.targets {
        for probe in rt.target.step_names() {
            if !kept.contains(&(rt.target.name.clone(), probe.to_owned())) {
                shared.metrics.remove_probe(&rt.target.name, probe);
            }
        }
        let new_target = new.target(&rt.target.name);
        for canary in &rt.target.canaries {
            if !new_target.is_some_and(|t| t.canaries.iter().any(|c| c.name == canary.name)) {
                shared.metrics.remove_canary(&rt.target.name, &canary.name);
            }
        }
        if new_target.is_none() {
            shared.metrics.remove_target(&rt.target.name);
        }
    }
    for name in old.references.names() {
        if !new.references.iter().any(|r| r.name == name) {
            shared.metrics.remove_reference(name);
        }
    }
    shared
        .runner
        .history()
        .retain(|t, p| kept.contains(&(t.to_owned(), p.to_owned())));
}

/// The wall clock's now, as Unix seconds for the exporter.
pub(super) fn unix_now(clock: &dyn WallClock) -> f64 {
    clock.now().timestamp_millis() as f64 / 1000.0
}

//! The one seam where the daemon's parts are wired: the metrics, the runner, the fleet of probe
//! tasks, the first generation and the state the server shares.
//!
//! The daemon and every test fixture assemble through [`assemble`] (as axum's examples expose
//! `app()` for `oneshot` tests), so what a test exercises is wired as in production. What
//! differs is passed in: the prober, the clock, and whether probe tasks run at all (router tests
//! drive runs by hand).

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::fleet::Fleet;
use crate::config::Config;
use crate::config::web::WebConfig;
use crate::history::History;
use crate::metrics::{Metrics, RegisterMetric};
use crate::probe::Prober;
use crate::run::{Origin, Runner};
use crate::schedule::WallClock;
use crate::server::{ReloadReply, Shared};

/// What is passed in to [`assemble`].
#[derive(Debug)]
pub struct Parts<'a> {
    /// Makes the runs: the HTTP prober in the daemon, a fake in tests.
    pub prober: Arc<dyn Prober>,
    /// The wall clock of cron schedules and timestamps.
    pub clock: Arc<dyn WallClock>,
    /// The `version` label of `lastfm_monitor_build_info`.
    pub version: &'a str,
    /// The `revision` label of `lastfm_monitor_build_info`.
    pub revision: &'a str,
    /// Basic auth and response headers of every route.
    pub web: &'a WebConfig,
    /// Whether the first generation's probe and reference tasks start; without them the
    /// targets exist with their series, and runs are made only on request.
    pub start_tasks: bool,
}

/// The wired daemon, before any socket is served.
#[derive(Debug)]
pub struct Assembly {
    /// Every series.
    pub metrics: Metrics,
    /// Makes and records runs.
    pub runner: Runner,
    /// Starts and tracks the probe tasks of each generation.
    pub fleet: Fleet,
    /// What the endpoints share, the first generation in it.
    pub shared: Arc<Shared>,
    /// Reload requests from `POST /-/reload`.
    pub reloads: mpsc::Receiver<ReloadReply>,
    /// Cancelled at shutdown: every task stops.
    pub root: CancellationToken,
    /// Every task, so shutdown can wait for them.
    pub tracker: TaskTracker,
}

/// Wires `config` with `parts`, the first generation inheriting from `origin`.
pub fn assemble(
    config: &Config,
    parts: Parts<'_>,
    origin: Origin<'_>,
) -> Result<Assembly, RegisterMetric> {
    let metrics = Metrics::try_new(parts.version, parts.revision)?;
    let history = Arc::new(History::default());
    if let Origin::Restored(snapshot) = origin
        && let Some(status) = &snapshot.status
    {
        history.status().restore(status);
    }
    let runner = Runner::new(parts.prober, history, parts.clock);
    let root = CancellationToken::new();
    let tracker = TaskTracker::new();
    let fleet = Fleet::new(runner.clone(), root.clone(), tracker.clone());
    let generation = if parts.start_tasks {
        fleet.start(config, &metrics, origin)
    } else {
        fleet.standby(config, &metrics, origin)
    };
    let (reload_tx, reloads) = mpsc::channel(4);
    let shared = Arc::new(
        Shared::new(metrics.clone(), runner.clone(), generation, reload_tx)
            .with_web_config(parts.web)
            .with_shutdown(&root),
    );
    Ok(Assembly {
        metrics,
        runner,
        fleet,
        shared,
        reloads,
        root,
        tracker,
    })
}

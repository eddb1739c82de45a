//! Wiring: the server, one task per probe, reload, the watchdog and a bounded shutdown.
//!
//! Everything runs on one [`TaskTracker`] under one [`CancellationToken`]; each loaded
//! configuration is a [`Generation`] whose probe tasks hang off a child token, so a reload
//! cancels exactly the old probe tasks (in-flight runs are dropped cleanly) and starts the new
//! ones, while gates, health and the counters of probes that stay carry on. A bad new config is
//! refused with every problem and the old generation keeps running. The supervisor loop here is
//! also where systemd's watchdog is fed: it pings only while no probe run is stuck past its
//! deadline, so a wedged scheduler stops the pings and systemd restarts the service.

pub mod descriptors;
pub mod fleet;
pub mod shutdown;
pub mod state_file;
pub mod systemd;

use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::config::secret::Environment;
use crate::config::web::WebConfig;
use crate::daemon::descriptors::Descriptors;
use crate::daemon::fleet::Fleet;
use crate::daemon::state_file::StateFile;
use crate::daemon::systemd::Notifier;
use crate::metrics::Metrics;
use crate::probe::Prober;
use crate::probe::http::HttpProber;
use crate::run::saved::Snapshot;
use crate::run::{Generation, Origin, Runner};
use crate::schedule::{SystemClock, WallClock};
use crate::server::{self, ReloadReply, Shared};

/// How long shutdown waits for tasks before giving up (systemd's stop timeout is longer).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(8);

/// Where a reload reads its configuration from.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    /// A file, re-read on every reload.
    File(PathBuf),
    /// Fixed text (the demo); reload re-validates it.
    Fixed(String),
}

/// How the daemon runs, beyond its configuration.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where reloads read the configuration.
    pub source: ConfigSource,
    /// Resolves secrets on reload.
    pub env: Arc<dyn Environment + Send + Sync>,
    /// systemd readiness and watchdog.
    pub notifier: Notifier,
    /// Whether SIGHUP reloads (off in tests that run several daemons in one process).
    pub reload_on_sighup: bool,
    /// The prober; tests may inject a fake.
    pub prober: Option<Arc<dyn Prober>>,
    /// The wall clock.
    pub clock: Arc<dyn WallClock>,
    /// TLS, basic auth and headers for every endpoint (`--web.config.file`); the default is
    /// plain HTTP without authentication. Read once, at start.
    pub web: WebConfig,
    /// Where the request budgets and probe cadence survive restarts ([`crate::daemon::state_file`]);
    /// nothing is kept without one.
    pub state_directory: Option<PathBuf>,
}

impl Options {
    /// Production defaults for a file-backed daemon.
    pub fn for_file(path: PathBuf, env: Arc<dyn Environment + Send + Sync>) -> Self {
        Self {
            source: ConfigSource::File(path),
            env,
            notifier: Notifier::from_env(),
            reload_on_sighup: true,
            prober: None,
            clock: Arc::new(SystemClock),
            web: WebConfig::default(),
            state_directory: None,
        }
    }
}

/// Binds the configured address and runs until `shutdown`.
pub async fn run(
    config: Config,
    listen: Option<SocketAddr>,
    options: Options,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let address = listen.unwrap_or(config.web.listen_address);
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address}"))?;
    run_on(config, listener, options, shutdown).await
}

/// Runs on an already bound listener until `shutdown` (tests bind port 0 themselves).
pub async fn run_on(
    config: Config,
    listener: TcpListener,
    options: Options,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    // Signal handlers first: SIGHUP's default action and an un-hooked SIGTERM/SIGINT kill the
    // process, so both must be installed before READY=1 lets systemd send them. Tokio installs the
    // shutdown future's handlers on its first poll, hence the poll here.
    let mut hangup = hangup_stream(options.reload_on_sighup);
    tokio::pin!(shutdown);
    let mut shutdown_requested = tokio::select! {
        biased;
        () = &mut shutdown => true,
        () = std::future::ready(()) => false,
    };
    let metrics = Metrics::try_new(env!("CARGO_PKG_VERSION"), revision())?;
    let prober: Arc<dyn Prober> = match &options.prober {
        Some(prober) => Arc::clone(prober),
        None => Arc::new(HttpProber::try_new().context("cannot initialise the HTTP client")?),
    };
    let runner = Runner::new(
        prober,
        Arc::new(crate::history::History::default()),
        Arc::clone(&options.clock),
    );
    let root = CancellationToken::new();
    let tracker = TaskTracker::new();
    let fleet = Fleet::new(runner.clone(), root.clone(), tracker.clone());
    let state = options
        .state_directory
        .as_deref()
        .map(StateFile::in_directory);
    let restored = state.as_ref().and_then(restore);
    let mut descriptors =
        Descriptors::new(&listener).context("cannot duplicate the listener's descriptor")?;
    descriptors.prepare(config.probe_count());
    let generation = fleet.start(
        &config,
        &metrics,
        restored.as_ref().map_or(Origin::Fresh, Origin::Restored),
    );
    if restored.is_some() {
        log_restored(&generation);
    }
    metrics.record_reload(true, unix_now(options.clock.as_ref()));
    let (reload_tx, mut reload_rx) = mpsc::channel::<ReloadReply>(4);
    let shared = Arc::new(
        Shared::new(metrics.clone(), runner.clone(), generation, reload_tx)
            .with_web_config(&options.web),
    );
    let address = listener
        .local_addr()
        .context("cannot read the bound address")?;
    if let Some(warning) = options.web.exposure_warning(address) {
        tracing::warn!(%address, "{warning}");
    }
    tracker.spawn(server::serve_tls(
        listener,
        server::router(Arc::clone(&shared)),
        options.web.tls.as_ref().map(|tls| tls.acceptor()),
        root.clone(),
        tracker.clone(),
    ));
    if let Some(file) = state {
        let shared = Arc::clone(&shared);
        let clock = Arc::clone(&options.clock);
        tracker.spawn(file.keep_saved(
            runner.changed(),
            move || shared.generation().save(clock.as_ref()),
            root.clone(),
        ));
    }
    shared.ready.store(true, Ordering::Release);
    options.notifier.ready();
    tracing::info!(
        %address,
        scheme = options.web.scheme(),
        web = %options.web.describe(),
        version = env!("CARGO_PKG_VERSION"),
        "lastfm-monitor is running"
    );

    let mut config = config;
    let watchdog_period = options.notifier.watchdog_period();
    let mut watchdog = tokio::time::interval(watchdog_period.unwrap_or(Duration::from_secs(3600)));
    while !shutdown_requested {
        tokio::select! {
            () = &mut shutdown => shutdown_requested = true,
            Some(reply) = reload_rx.recv() => {
                let result = reload(&mut config, &mut descriptors, &options, &shared, &fleet);
                let _ = reply.send(result);
            }
            Some(()) = next_hangup(&mut hangup) => {
                let _ = reload(&mut config, &mut descriptors, &options, &shared, &fleet);
            }
            _ = watchdog.tick(), if watchdog_period.is_some() => {
                match fleet.stuck(Instant::now()) {
                    None => options.notifier.watchdog(),
                    Some(what) => tracing::error!(run = %what, "a probe run is stuck past its deadline: withholding the watchdog ping"),
                }
            }
        }
    }

    tracing::info!("shutting down");
    options.notifier.stopping();
    shared.ready.store(false, Ordering::Release);
    root.cancel();
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_seconds = SHUTDOWN_GRACE.as_secs(),
            "some tasks did not stop within the grace period"
        );
    }
    Ok(())
}

/// The VCS revision baked in at build time, `unknown` without one.
pub fn revision() -> &'static str {
    option_env!("LASTFM_MONITOR_REVISION").unwrap_or("unknown")
}

fn unix_now(clock: &dyn WallClock) -> f64 {
    clock.now().timestamp_millis() as f64 / 1000.0
}

/// Validates the new configuration and swaps it in, or keeps the old one.
fn reload(
    config: &mut Config,
    descriptors: &mut Descriptors,
    options: &Options,
    shared: &Arc<Shared>,
    fleet: &Fleet,
) -> Result<String, String> {
    options.notifier.reloading();
    let loaded = match &options.source {
        ConfigSource::File(path) => Config::load(path, options.env.as_ref()),
        ConfigSource::Fixed(text) => Config::parse(
            text,
            "<built-in>",
            options.env.as_ref(),
            options.clock.now(),
        ),
    };
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
            if new.web.listen_address != config.web.listen_address {
                tracing::warn!("web.listen_address changed; it takes effect at the next restart");
            }
            let old = shared.generation();
            let kept: BTreeSet<(String, String)> = new
                .targets
                .iter()
                .flat_map(|t| t.probes.iter().map(|p| (t.name.clone(), p.name.clone())))
                .collect();
            old.cancel.cancel();
            for rt in &old.targets {
                for probe in &rt.target.probes {
                    if !kept.contains(&(rt.target.name.clone(), probe.name.clone())) {
                        shared.metrics.remove_probe(&rt.target.name, &probe.name);
                    }
                }
                if new.target(&rt.target.name).is_none() {
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
            let probes = new.probe_count();
            descriptors.prepare(probes);
            let generation = fleet.start(&new, &shared.metrics, Origin::Reload(&old));
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

/// The state file's content, or `None` (logged) when there is none or it cannot be used.
fn restore(file: &StateFile) -> Option<Snapshot> {
    match file.load() {
        Ok(Some(snapshot)) => Some(snapshot),
        Ok(None) => {
            tracing::info!(file = %file.path().display(), "no state file yet: fresh request budgets");
            None
        }
        Err(problem) => {
            tracing::warn!(
                problem,
                "state file ignored: starting with fresh request budgets; it is rewritten from now on"
            );
            None
        }
    }
}

/// Says what a restart kept, above all a backoff or slow mode still in force.
fn log_restored(generation: &Generation) {
    let now = Instant::now();
    for rt in &generation.targets {
        let backoff = rt.gate.backoff_remaining(now);
        if !backoff.is_zero() {
            tracing::warn!(
                target = %rt.target.name,
                backoff_seconds = backoff.as_secs_f64(),
                "still backing off after a rate limit before the restart"
            );
        }
        if rt.gate.is_suspended() {
            tracing::warn!(
                target = %rt.target.name,
                suspended_interval_seconds = rt.target.politeness.suspended_interval.as_secs_f64(),
                "API key was refused before the restart: probing stays at one request per suspended_interval"
            );
        }
    }
    tracing::info!(
        targets = generation.targets.len(),
        "restored request budgets and probe cadence from the state file"
    );
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = Option<()>;

#[cfg(unix)]
fn hangup_stream(enabled: bool) -> Hangup {
    if !enabled {
        return None;
    }
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(err) => {
            tracing::warn!(error = %err, "cannot listen for SIGHUP; use POST /-/reload");
            None
        }
    }
}

#[cfg(unix)]
async fn next_hangup(hangup: &mut Hangup) -> Option<()> {
    match hangup {
        Some(signal) => signal.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(not(unix))]
fn hangup_stream(_enabled: bool) -> Hangup {
    None
}

#[cfg(not(unix))]
async fn next_hangup(_hangup: &mut Hangup) -> Option<()> {
    std::future::pending().await
}

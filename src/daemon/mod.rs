//! The daemon: wiring, the supervisor loop, reload, the watchdog and a bounded shutdown.
//!
//! Everything runs on one task tracker under one cancellation token; each loaded configuration
//! is a generation whose probe tasks hang off a child token, so a reload cancels exactly the old
//! probe tasks and starts the new ones, while gates, health and the counters of probes that stay
//! carry on. A bad new config is refused with every problem and the old generation keeps
//! running. The supervisor loop here is also where systemd's watchdog is fed: it pings only
//! while no probe run is stuck past its deadline, so a wedged scheduler stops the pings and
//! systemd restarts the service.
//!
//! - `assembly`: [`assembly::assemble`], the one seam that wires the parts (tests use it too).
//! - `fleet`: one task per probe and per reference of a generation; stuck-run tracking.
//! - `reload`: validate the new configuration, then swap the generation or keep the old one.
//! - `options`: how the daemon runs beyond its configuration.
//! - `state_file`: the snapshot of request budgets and cadence kept across restarts.
//! - `descriptors`: the descriptor limit and table, ready before a burst needs them.
//! - `systemd`: readiness, reload and stopping notifications, the watchdog.
//! - `shutdown`: the signals that stop the daemon.

pub mod assembly;
pub mod descriptors;
pub mod fleet;
mod options;
mod reload;
pub mod shutdown;
pub mod state_file;
pub mod systemd;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::time::Instant;

use assembly::{Assembly, Parts, assemble};
use descriptors::Descriptors;
pub use options::{ConfigSource, Options};
use reload::unix_now;
use state_file::StateFile;

use crate::config::{Config, ConfigError};
use crate::probe::Prober;
use crate::probe::http::HttpProber;
use crate::run::saved::Snapshot;
use crate::run::{Generation, Origin};
use crate::server;

/// How long shutdown waits for tasks before giving up (systemd's stop timeout is longer).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(8);

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

/// Runs on an already bound listener until `shutdown` (tests bind port 0 themselves). A
/// `[web] max_connections` above its share of the descriptor limit is a [`ConfigError`].
pub async fn run_on(
    config: Config,
    listener: TcpListener,
    options: Options,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    // Signal handlers first: SIGHUP's default action and an un-hooked SIGTERM/SIGINT kill the
    // process, so both must be installed before READY=1 lets systemd send them. Tokio installs the
    // shutdown future's handlers on its first poll, hence the poll here.
    let hangup = hangup_stream(options.reload_on_sighup);
    tokio::pin!(shutdown);
    let shutdown_requested = tokio::select! {
        biased;
        () = &mut shutdown => true,
        () = std::future::ready(()) => false,
    };
    let state = options
        .state_directory
        .as_deref()
        .map(StateFile::in_directory);
    let restored = match &state {
        Some(file) => restore(file.clone()).await,
        None => None,
    };
    let mut descriptors =
        Descriptors::new(&listener).context("cannot duplicate the listener's descriptor")?;
    // Before the first generation's burst: the descriptor table grows now, not mid-burst.
    let max_connections = descriptors
        .prepare(config.probe_count(), config.web.max_connections)
        .map_err(|problem| ConfigError {
            origin: options.source.origin(),
            problems: vec![problem],
        })?;
    let prober: Arc<dyn Prober> = match &options.prober {
        Some(prober) => Arc::clone(prober),
        None => Arc::new(HttpProber::try_new().context("cannot initialise the HTTP client")?),
    };
    let parts = Parts {
        prober,
        clock: Arc::clone(&options.clock),
        version: env!("CARGO_PKG_VERSION"),
        revision: revision(),
        web: &options.web,
        start_tasks: true,
    };
    let origin = restored.as_ref().map_or(Origin::Fresh, Origin::Restored);
    let daemon = assemble(&config, parts, origin)?;
    if restored.is_some() {
        log_restored(&daemon.shared.generation());
    }
    daemon
        .metrics
        .record_reload(true, unix_now(options.clock.as_ref()));
    let address = serve(listener, &daemon, &options, max_connections)?;
    if let Some(file) = state {
        daemon.tracker.spawn(file.keep_saved(
            daemon.runner.changed(),
            capture(&daemon, &options),
            daemon.root.clone(),
        ));
    }
    daemon.shared.ready.store(true, Ordering::Release);
    options.notifier.ready();
    tracing::info!(
        %address,
        scheme = options.web.scheme(),
        web = %options.web.describe(),
        version = env!("CARGO_PKG_VERSION"),
        "lastfm-monitor is running"
    );
    let mut daemon = daemon;
    if !shutdown_requested {
        let mut running = Running {
            config,
            descriptors,
            hangup,
        };
        running.supervise(&mut daemon, &options, shutdown).await;
    }
    stop(&daemon, &options).await;
    Ok(())
}

/// Serves the endpoints on `listener`; the bound address.
fn serve(
    listener: TcpListener,
    daemon: &Assembly,
    options: &Options,
    max_connections: u32,
) -> anyhow::Result<SocketAddr> {
    let address = listener
        .local_addr()
        .context("cannot read the bound address")?;
    if let Some(warning) = options.web.exposure_warning(address) {
        tracing::warn!(%address, "{warning}");
    }
    if let Some(warning) = crate::config::web::cost_warning(&options.web.users) {
        tracing::warn!("{warning}");
    }
    // One cap for both listeners: the descriptor table was sized for `max_connections`.
    let cap = server::ConnectionCap::new(usize::try_from(max_connections).unwrap_or(usize::MAX));
    daemon.tracker.spawn(server::serve_capped(
        listener,
        server::router(Arc::clone(&daemon.shared)),
        options.web.tls.as_ref().map(|tls| tls.acceptor()),
        cap.clone(),
        daemon.root.clone(),
        daemon.tracker.clone(),
    ));
    if let Some(status) = &options.status_listener {
        // Its own copy of the socket: `Options` stays cloneable and the bound one is kept.
        let status = status
            .try_clone()
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .and_then(TcpListener::from_std)
            .context("cannot use the status listener")?;
        let status_address = status
            .local_addr()
            .context("cannot read the status address")?;
        tracing::info!(address = %status_address, "status listener: /, /api/v1/*, /badge/*, /-/healthy");
        daemon.tracker.spawn(server::serve_capped(
            status,
            server::status_router(Arc::clone(&daemon.shared)),
            options.web.tls.as_ref().map(|tls| tls.acceptor()),
            cap,
            daemon.root.clone(),
            daemon.tracker.clone(),
        ));
    }
    Ok(address)
}

/// What the supervisor loop changes while the daemon runs.
struct Running {
    /// The configuration in force, replaced by each accepted reload.
    config: Config,
    /// Grown before each generation's first burst.
    descriptors: Descriptors,
    /// SIGHUP, when reloads listen for it.
    hangup: Hangup,
}

impl Running {
    /// Reloads on request and feeds systemd's watchdog until `shutdown`.
    async fn supervise(
        &mut self,
        daemon: &mut Assembly,
        options: &Options,
        shutdown: std::pin::Pin<&mut impl Future<Output = ()>>,
    ) {
        let mut shutdown = shutdown;
        let watchdog_period = options.notifier.watchdog_period();
        let mut watchdog =
            tokio::time::interval(watchdog_period.unwrap_or(Duration::from_secs(3600)));
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                Some(reply) = daemon.reloads.recv() => {
                    let _ = reply.send(self.reload(daemon, options).await);
                }
                Some(()) = next_hangup(&mut self.hangup) => {
                    let _ = self.reload(daemon, options).await;
                }
                _ = watchdog.tick(), if watchdog_period.is_some() => {
                    match daemon.fleet.stuck(Instant::now()) {
                        None => options.notifier.watchdog(),
                        Some(what) => tracing::error!(run = %what, "a probe run is stuck past its deadline: withholding the watchdog ping"),
                    }
                }
            }
        }
    }

    async fn reload(&mut self, daemon: &Assembly, options: &Options) -> Result<String, String> {
        reload::reload(
            &mut self.config,
            &mut self.descriptors,
            options,
            &daemon.shared,
            &daemon.fleet,
        )
        .await
    }
}

/// Stops every task, waiting at most [`SHUTDOWN_GRACE`] for them.
async fn stop(daemon: &Assembly, options: &Options) {
    tracing::info!("shutting down");
    options.notifier.stopping();
    daemon.shared.ready.store(false, Ordering::Release);
    daemon.root.cancel();
    daemon.tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, daemon.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_seconds = SHUTDOWN_GRACE.as_secs(),
            "some tasks did not stop within the grace period"
        );
    }
}

/// The VCS revision baked in at build time, `unknown` without one.
pub fn revision() -> &'static str {
    option_env!("LASTFM_MONITOR_REVISION").unwrap_or("unknown")
}

/// The state file's content, or `None` (logged) when there is none or it cannot be used. Read on
/// the blocking pool: file I/O stays off the thread that serves and schedules.
/// What the state file keeps, taken on each write: the generation's budgets and cadence, and
/// the status model as of at most a minute ago (fresh at shutdown).
fn capture(daemon: &Assembly, options: &Options) -> impl Fn() -> Snapshot + Send + 'static {
    let shared = Arc::clone(&daemon.shared);
    let clock = Arc::clone(&options.clock);
    let root = daemon.root.clone();
    move || {
        let mut snapshot = shared.generation().save(clock.as_ref());
        let now = clock.now().timestamp();
        let status = shared.runner.history().status();
        snapshot.status = Some(status.saved(now, root.is_cancelled()));
        snapshot
    }
}

async fn restore(file: StateFile) -> Option<Snapshot> {
    let path = file.path().to_owned();
    let loaded = tokio::task::spawn_blocking(move || file.load())
        .await
        .unwrap_or_else(|err| Err(format!("cannot read {}: {err}", path.display())));
    match loaded {
        Ok(Some(snapshot)) => Some(snapshot),
        Ok(None) => {
            tracing::info!(file = %path.display(), "no state file yet: fresh request budgets");
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

//! Wiring: the server, one task per probe, reload, the watchdog and a bounded shutdown.
//!
//! Everything runs on one [`TaskTracker`] under one [`CancellationToken`]; each loaded
//! configuration is a [`Generation`] whose probe tasks hang off a child token, so a reload
//! cancels exactly the old probe tasks (in-flight runs are dropped cleanly) and starts the new
//! ones, while gates, health and the counters of probes that stay carry on. A bad new config is
//! refused with every problem and the old generation keeps running. The supervisor loop here is
//! also where systemd's watchdog is fed: it pings only while no probe run is stuck past its
//! deadline, so a wedged scheduler stops the pings and systemd restarts the service.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::politeness::SkipReason;
use crate::probe::Prober;
use crate::probe::http::HttpProber;
use crate::runner::{Generation, Mode, RunResult, Runner, TargetRuntime};
use crate::schedule::{self, SystemClock, WallClock};
use crate::secret::Environment;
use crate::server::{self, ReloadReply, Shared};
use crate::web_config::WebConfig;

/// How long shutdown waits for tasks before giving up (systemd's stop timeout is longer).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(8);
/// A run in flight this long past its useful end counts as stuck (watchdog).
const STUCK_AFTER: Duration = Duration::from_secs(30);

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
    let stuck = Arc::new(InFlight::default());
    let generation = start_generation(&config, &metrics, &runner, &root, &tracker, &stuck, None);
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
                let result = reload(&mut config, &options, &shared, &root, &tracker, &stuck);
                let _ = reply.send(result);
            }
            Some(()) = next_hangup(&mut hangup) => {
                let _ = reload(&mut config, &options, &shared, &root, &tracker, &stuck);
            }
            _ = watchdog.tick(), if watchdog_period.is_some() => {
                match stuck.oldest_overdue(Instant::now()) {
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
    options: &Options,
    shared: &Arc<Shared>,
    root: &CancellationToken,
    tracker: &TaskTracker,
    stuck: &Arc<InFlight>,
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
            shared
                .runner
                .history()
                .retain(|t, p| kept.contains(&(t.to_owned(), p.to_owned())));
            let generation = start_generation(
                &new,
                &shared.metrics,
                &shared.runner,
                root,
                tracker,
                stuck,
                Some(&old),
            );
            shared.set_generation(generation);
            shared.metrics.record_reload(true, now_unix);
            let probes: usize = new.targets.iter().map(|t| t.probes.len()).sum();
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

/// Starts one task per probe of `config`.
fn start_generation(
    config: &Config,
    metrics: &Metrics,
    runner: &Runner,
    root: &CancellationToken,
    tracker: &TaskTracker,
    stuck: &Arc<InFlight>,
    previous: Option<&Generation>,
) -> Arc<Generation> {
    let cancel = root.child_token();
    let targets = Generation::targets_of(config, metrics, runner.clock(), previous);
    for rt in &targets {
        for (index, probe) in rt.target.probes.iter().enumerate() {
            let jitter = schedule::startup_jitter(
                &probe.schedule.schedule,
                config.startup_jitter,
                rand::random::<f64>(),
            );
            tracker.spawn(probe_task(
                Arc::clone(rt),
                index,
                probe.schedule.schedule.clone(),
                jitter,
                runner.clone(),
                cancel.clone(),
                Arc::clone(stuck),
            ));
        }
    }
    Arc::new(Generation { targets, cancel })
}

async fn probe_task(
    rt: Arc<TargetRuntime>,
    index: usize,
    schedule: schedule::Schedule,
    jitter: Duration,
    runner: Runner,
    cancel: CancellationToken,
    stuck: Arc<InFlight>,
) {
    let timeout = rt.target.probes[index].timeout;
    let label = format!("{}/{}", rt.target.name, rt.target.probes[index].name);
    let clock = Arc::clone(&runner.clock_arc());
    schedule::run(
        schedule,
        clock.as_ref(),
        jitter,
        cancel.clone(),
        |fire| {
            let rt = Arc::clone(&rt);
            let runner = runner.clone();
            let cancel = cancel.clone();
            let stuck = Arc::clone(&stuck);
            let label = label.clone();
            async move {
                // A guard, not enter/leave: a reload or shutdown drops this future mid-run
                // (`schedule::run` selects on the cancel token), and a leaked entry would turn
                // "stuck" once its deadline passed and withhold the watchdog ping for good.
                let _ticket = stuck.enter(label, fire.next_due + timeout + STUCK_AFTER);
                let result = runner
                    .run(&rt, index, fire.next_due, Mode::Scheduled, &cancel)
                    .await;
                if let RunResult::Skipped(reason) = result {
                    tracing::trace!(reason = reason.as_label(), "skipped");
                }
            }
        },
        |missed| rt.record_skip(index, SkipReason::Overrun, missed),
        |due| rt.set_next_run(index, due),
    )
    .await;
}

/// Runs in flight with the instant by which they must have finished (for the watchdog).
#[derive(Debug, Default)]
struct InFlight {
    next: AtomicU64,
    runs: Mutex<HashMap<u64, (String, Instant)>>,
}

impl InFlight {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (String, Instant)>> {
        self.runs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a run until the returned ticket is dropped, however the run ends.
    fn enter(self: &Arc<Self>, what: String, deadline: Instant) -> InFlightTicket {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, (what, deadline));
        InFlightTicket {
            runs: Arc::clone(self),
            id,
        }
    }

    fn oldest_overdue(&self, now: Instant) -> Option<String> {
        self.lock()
            .values()
            .filter(|(_, deadline)| *deadline < now)
            .map(|(what, _)| what.clone())
            .next()
    }
}

/// One run registered in [`InFlight`]; dropping it (the run finished or was cancelled) leaves.
#[derive(Debug)]
struct InFlightTicket {
    runs: Arc<InFlight>,
    id: u64,
}

impl Drop for InFlightTicket {
    fn drop(&mut self) {
        self.runs.lock().remove(&self.id);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_run_leaves_in_flight_so_the_watchdog_keeps_pinging() {
        let runs = Arc::new(InFlight::default());
        let deadline = Instant::now();
        let later = deadline + Duration::from_secs(1);

        let ticket = runs.enter("sim/artist.getInfo".to_owned(), deadline);
        assert_eq!(
            runs.oldest_overdue(later).as_deref(),
            Some("sim/artist.getInfo")
        );
        // What a reload does to a run in flight: its future, and the ticket in it, is dropped.
        drop(ticket);
        assert_eq!(runs.oldest_overdue(later), None);
    }

    #[tokio::test]
    async fn a_run_cancelled_mid_flight_by_a_reload_is_not_left_stuck() {
        let runs = Arc::new(InFlight::default());
        let cancel = CancellationToken::new();
        let run = {
            let runs = Arc::clone(&runs);
            async move {
                let _ticket = runs.enter("sim/stalled".to_owned(), Instant::now());
                std::future::pending::<()>().await;
            }
        };
        let task = tokio::spawn({
            let cancel = cancel.clone();
            async move {
                // The shape of `schedule::run`: the run loses the race against the cancel token.
                tokio::select! {
                    () = cancel.cancelled() => {}
                    () = run => {}
                }
            }
        });
        let far = Instant::now() + Duration::from_secs(3600);
        while runs.oldest_overdue(far).is_none() {
            tokio::task::yield_now().await;
        }
        cancel.cancel();
        task.await.expect("the task does not panic");

        assert_eq!(runs.oldest_overdue(far), None);
    }
}

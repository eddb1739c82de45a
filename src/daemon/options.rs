//! How the daemon runs beyond its configuration: where reloads read it, the prober and clock
//! (tests inject theirs), systemd, the web config and the state directory.

use std::path::PathBuf;
use std::sync::Arc;

use super::systemd::Notifier;
use crate::config::secret::Environment;
use crate::config::web::WebConfig;
use crate::probe::Prober;
use crate::schedule::{SystemClock, WallClock};

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
    /// The status listener (`--web.status-listen-address`), bound before the daemon starts so
    /// that a taken port is refused at once; it serves [`crate::server::status_router`].
    pub status_listener: Option<Arc<std::net::TcpListener>>,
}

impl ConfigSource {
    /// How problems in this configuration name it.
    pub fn origin(&self) -> String {
        match self {
            Self::File(path) => path.display().to_string(),
            Self::Fixed(_) => "<built-in>".to_owned(),
        }
    }
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
            status_listener: None,
        }
    }
}

//! The process entry: command line → logging → validated config → run → exit code.
//!
//! Kept out of `main.rs` so the binary is one line and this flow is testable. Configuration
//! problems (in `--config.file` or `--web.config.file`) are printed in full and end with exit 64
//! before any port is bound; runtime failures (a port in use) end with exit 1; a clean shutdown
//! is 0.

/// `println!` that never panics: a closed stdout (`--config.check | head -1`) loses the rest of
/// the text, not the exit code.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// `eprintln!` that never panics when stderr is closed.
macro_rules! complain {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

pub mod args;
pub mod demo;
pub mod logging;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use crate::config::secret::ProcessEnv;
use crate::config::web::WebConfig;
use crate::config::{Config, ConfigError};
use crate::daemon::{self, ConfigSource, Options};
use args::{Cli, Command, Parsed};

/// Runs the program with `args` and returns its exit code.
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let cli = match args::parse(args) {
        Parsed::Run(cli) => cli,
        Parsed::Exit {
            text,
            code,
            is_error,
        } => {
            if is_error {
                let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), text.as_bytes());
            } else {
                let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
            }
            return ExitCode::from(code);
        }
    };
    crate::cli::logging::init(cli.log_level, cli.log_format);
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(err) => {
            complain!("lastfm-monitor: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(run(cli));
    // Dropping the runtime would wait for every blocking task, e.g. the getaddrinfo(3) of a probe
    // that shutdown abandoned, which can take resolv.conf's timeouts × attempts and push a clean
    // stop past 10 s. The async tasks are done by now; leave stragglers to the process exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}

/// The async runtime the daemon runs on (the scheduler bench builds the same one).
///
/// One thread (tokio's current-thread scheduler, plus its blocking pool for DNS lookups): the
/// daemon's work is a few requests a second and the odd scrape, and on a 2-core host a second
/// worker cost more than it gave (docs/PERFORMANCE.md): cross-thread wake-ups and work
/// stealing raised the CPU per `/probe` by about 15 %, each worker added a stack and a malloc
/// arena to the RSS, and a burst of 1,000 probes due at the same second fired later, not sooner.
/// The price: a task that computes for long delays the others (a run's measured latency
/// includes it). Nothing here does for long: the largest `/metrics` renders in milliseconds and a
/// body is at most `max_body_bytes`.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("lastfm-monitor")
        .build()
}

async fn run(cli: Cli) -> ExitCode {
    if let Some(Command::Simulate {
        listen,
        scenario,
        personality,
    }) = cli.command
    {
        if cli.status_listen_address.is_some() {
            complain!(
                "lastfm-monitor: --web.status-listen-address is the daemon's (run and demo), \
                 not the simulator's; drop it"
            );
            return ExitCode::from(crate::EXIT_USAGE);
        }
        if cli.web_config_file.is_some() {
            complain!(
                "lastfm-monitor: --web.config.file protects the daemon's endpoints (run and demo), \
                 not the simulator; drop it"
            );
            return ExitCode::from(crate::EXIT_USAGE);
        }
        return simulate(listen, scenario, personality).await;
    }
    let web = match load_web_config(&cli) {
        Ok(web) => web,
        Err(code) => {
            if cli.command.is_none() {
                // Report the main config's problems too, so one pass fixes both files.
                if let Err(err) = Config::load(&cli.config_file, &ProcessEnv) {
                    complain!("{err}");
                    complain!(
                        "lastfm-monitor: configuration refused ({} problem(s)) as well",
                        err.problems.len()
                    );
                }
            }
            return code;
        }
    };
    match cli.command {
        Some(Command::Demo) => match status_listener(&cli) {
            Ok(status) => demo(cli.listen_address, web, status).await,
            Err(code) => code,
        },
        _ => daemon(cli, web).await,
    }
}

/// Reads `--web.config.file`, or the plain-HTTP default; exit 64 with every problem otherwise.
fn load_web_config(cli: &Cli) -> Result<WebConfig, ExitCode> {
    let Some(path) = &cli.web_config_file else {
        return Ok(WebConfig::default());
    };
    WebConfig::load(path).map_err(|err| {
        complain!("{err}");
        complain!(
            "lastfm-monitor: web configuration refused ({} problem(s)); fix them and start again",
            err.problems.len()
        );
        ExitCode::from(crate::EXIT_USAGE)
    })
}

async fn daemon(cli: Cli, web: WebConfig) -> ExitCode {
    let env = Arc::new(ProcessEnv);
    let config = match Config::load(&cli.config_file, env.as_ref()) {
        Ok(config) => config,
        Err(err) => return refuse(err),
    };
    // The descriptor limit the daemon would reach decides whether `max_connections` fits:
    // refused here, before any port is bound, like every other configuration problem.
    if let Err(problem) =
        daemon::descriptors::check(config.probe_count(), config.web.max_connections)
    {
        return refuse(ConfigError {
            origin: cli.config_file.display().to_string(),
            problems: vec![problem],
        });
    }
    if cli.config_check {
        // The summary carries the warnings.
        say!("{}", config.summary(chrono::Utc::now()));
        if let Some(path) = &cli.web_config_file {
            say!("web config {}: {}", path.display(), web.describe());
        }
        return ExitCode::SUCCESS;
    }
    for warning in &config.warnings {
        tracing::warn!(warning = %warning, "configuration accepted with a warning");
    }
    let state_directory = match state_directory(&cli) {
        Ok(directory) => directory,
        Err(problem) => {
            complain!("lastfm-monitor: {problem}");
            return ExitCode::from(crate::EXIT_USAGE);
        }
    };
    let mut options = Options::for_file(cli.config_file.clone(), env);
    options.web = web;
    options.state_directory = state_directory;
    match status_listener(&cli) {
        Ok(status) => options.status_listener = status,
        Err(code) => return code,
    }
    finish(
        daemon::run(
            config,
            cli.listen_address,
            options,
            crate::daemon::shutdown::signal(),
        )
        .await,
    )
}

/// `--state.directory`, else the first of systemd's `$STATE_DIRECTORY` (a colon-separated list);
/// an explicit directory that does not exist is a bad command line.
fn state_directory(cli: &Cli) -> Result<Option<std::path::PathBuf>, String> {
    if let Some(directory) = &cli.state_directory {
        return if directory.is_dir() {
            Ok(Some(directory.clone()))
        } else {
            Err(format!(
                "--state.directory {}: not a directory; create it (writable by the daemon's user) or drop the flag",
                directory.display()
            ))
        };
    }
    Ok(std::env::var_os("STATE_DIRECTORY").and_then(|list| {
        std::env::split_paths(&list)
            .next()
            .filter(|first| !first.as_os_str().is_empty())
    }))
}

/// `--web.status-listen-address`, bound now: a taken port stops the start (exit 1).
fn status_listener(cli: &Cli) -> Result<Option<Arc<std::net::TcpListener>>, ExitCode> {
    let Some(address) = cli.status_listen_address else {
        return Ok(None);
    };
    match std::net::TcpListener::bind(address) {
        Ok(listener) => Ok(Some(Arc::new(listener))),
        Err(err) => {
            complain!(
                "lastfm-monitor: cannot listen on --web.status-listen-address {address}: {err}"
            );
            Err(ExitCode::FAILURE)
        }
    }
}

async fn demo(
    listen: Option<SocketAddr>,
    web: WebConfig,
    status: Option<Arc<std::net::TcpListener>>,
) -> ExitCode {
    // One simulator per service, each with its own timeline, all started together.
    let mut simulators = Vec::new();
    let mut addresses = Vec::new();
    for api in crate::config::Api::ALL {
        match crate::sim::spawn_local(crate::sim::Scenario::demo_of(api)).await {
            Ok((simulator, address)) => {
                simulators.push(simulator);
                addresses.push(address);
            }
            Err(err) => {
                complain!("lastfm-monitor: cannot start the simulator: {err}");
                return ExitCode::FAILURE;
            }
        }
    }
    let [sim_address, librefm, listenbrainz] = addresses[..] else {
        complain!("lastfm-monitor: the demo needs one simulator per service (a bug)");
        return ExitCode::FAILURE;
    };
    let listen = listen.unwrap_or_else(|| {
        crate::config::defaults::LISTEN_ADDRESS
            .parse()
            .expect("the default listen address is a valid socket address")
    });
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(listener) => listener,
        Err(err) => {
            complain!("lastfm-monitor: {}", demo_bind_failure(listen, &err));
            return ExitCode::FAILURE;
        }
    };
    let bound = listener.local_addr().unwrap_or(listen);
    let text = crate::cli::demo::config_text(
        crate::cli::demo::Simulated {
            lastfm: sim_address,
            librefm,
            listenbrainz,
        },
        bound,
    );
    let env = Arc::new(ProcessEnv);
    let config = match Config::parse(&text, "<demo>", env.as_ref(), chrono::Utc::now()) {
        Ok(config) => config,
        Err(err) => {
            complain!("lastfm-monitor: the built-in demo configuration is invalid (a bug): {err}");
            return ExitCode::FAILURE;
        }
    };
    say!(
        "lastfm-monitor demo: the daemon probes a simulated Last.fm at http://{sim_address}/2.0/, \
         Libre.fm at http://{librefm}/2.0/ and ListenBrainz at http://{listenbrainz}/2.0/"
    );
    let scheme = web.scheme();
    say!("  status page:  {scheme}://{bound}/");
    say!("  status API:   {scheme}://{bound}/api/v1/status (incidents: /api/v1/incidents.atom)");
    say!("  metrics:      {scheme}://{bound}/metrics");
    if let Some(address) = status.as_ref().and_then(|l| l.local_addr().ok()) {
        say!("  public page:  {scheme}://{address}/ (no /metrics, no /probe)");
    }
    say!(
        "  debug a run:  {scheme}://{bound}/probe?target=lastfm-sim&probe=artist.getInfo&debug=true"
    );
    say!(
        "The incident timeline (about 3.5 minutes, repeating): healthy, error 8 burst, errors with 200 OK,"
    );
    say!(
        "rate limited (29), service offline (11), API key suspended (26), writes accepted but never"
    );
    say!("visible, recovery (while Libre.fm is down behind a 502). Ctrl-C stops.");
    let mut options = Options::for_file(std::path::PathBuf::new(), env);
    options.source = ConfigSource::Fixed(text);
    options.web = web;
    options.status_listener = status;
    let result = daemon::run_on(config, listener, options, crate::daemon::shutdown::signal()).await;
    drop(simulators);
    finish(result)
}

/// Why the demo could not listen, and the flag that moves it (the demo has no config file to
/// edit, so the command line is the only way out).
fn demo_bind_failure(listen: SocketAddr, err: &std::io::Error) -> String {
    format!(
        "cannot listen on {listen}: {err}; choose another address with --web.listen-address, \
         e.g. `lastfm-monitor demo --web.listen-address 127.0.0.1:0` (port 0: any free port; the \
         URLs printed at start-up name it)"
    )
}

async fn simulate(
    listen: SocketAddr,
    scenario: Option<std::path::PathBuf>,
    personality: Option<crate::config::Api>,
) -> ExitCode {
    let scenario = match scenario {
        None => Ok(crate::sim::Scenario::demo()),
        Some(path) => crate::sim::Scenario::load(&path),
    };
    // The flag overrides the file's `personality`.
    let scenario = match (scenario, personality) {
        (Ok(scenario), Some(api)) => scenario.with_personality(api),
        (scenario, None) => scenario,
        (Err(err), Some(_)) => Err(err),
    };
    let scenario = match scenario {
        Ok(scenario) => scenario,
        Err(err) => {
            complain!("{err}");
            return ExitCode::from(crate::EXIT_USAGE);
        }
    };
    let personality = scenario.personality().as_label();
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(listener) => listener,
        Err(err) => {
            complain!("lastfm-monitor: cannot listen on {listen}: {err}");
            return ExitCode::FAILURE;
        }
    };
    let bound = listener.local_addr().unwrap_or(listen);
    say!(
        "lastfm-monitor simulate: a simulated Last.fm API at http://{bound}/2.0/ \
         (personality {personality}; Ctrl-C stops)"
    );
    match crate::sim::Simulator::new(scenario)
        .serve(listener, crate::daemon::shutdown::signal())
        .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            complain!("lastfm-monitor: the simulator failed: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Prints every problem of a refused configuration; exit 64.
fn refuse(err: ConfigError) -> ExitCode {
    complain!("{err}");
    complain!(
        "lastfm-monitor: configuration refused ({} problem(s)); fix them and start again",
        err.problems.len()
    );
    ExitCode::from(crate::EXIT_USAGE)
}

fn finish(result: anyhow::Result<()>) -> ExitCode {
    let Err(err) = result else {
        return ExitCode::SUCCESS;
    };
    // A configuration the daemon could judge only once running (its descriptor limit).
    match err.downcast::<ConfigError>() {
        Ok(config) => refuse(config),
        Err(err) => {
            complain!("lastfm-monitor: {err:#}");
            ExitCode::FAILURE
        }
    }
}

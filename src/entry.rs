//! The process entry: command line → logging → validated config → run → exit code.
//!
//! Kept out of `main.rs` so the binary is one line and this flow is testable. Configuration
//! problems are printed in full and end with exit 64 before any port is bound; runtime failures
//! (a port in use) end with exit 1; a clean shutdown is 0.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use crate::app::{self, ConfigSource, Options};
use crate::cli::{self, Cli, Command, Parsed};
use crate::config::Config;
use crate::secret::ProcessEnv;

/// Runs the program with `args` and returns its exit code.
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let cli = match cli::parse(args) {
        Parsed::Run(cli) => cli,
        Parsed::Exit {
            text,
            code,
            is_error,
        } => {
            if is_error {
                eprint!("{text}");
            } else {
                print!("{text}");
            }
            return ExitCode::from(code);
        }
    };
    crate::logging::init(cli.log_level, cli.log_format);
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("lastfm-monitor: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cli))
}

/// The async runtime the daemon runs on (the scheduler bench builds the same one).
///
/// One thread (tokio's current-thread scheduler, plus its blocking pool for DNS lookups): the
/// daemon's work is a few requests a second and the odd scrape, and on a 2-core host a second
/// worker cost more than it gave (issue 6, docs/PERFORMANCE.md): cross-thread wake-ups and work
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
    if cli.web_config_file.is_some() {
        eprintln!(
            "lastfm-monitor: --web.config.file is not supported by this build yet; \
             keep the listener on loopback or put a TLS proxy in front"
        );
        return ExitCode::from(crate::EXIT_USAGE);
    }
    match cli.command {
        Some(Command::Demo) => demo(cli.listen_address).await,
        Some(Command::Simulate { listen, scenario }) => simulate(listen, scenario).await,
        None => daemon(cli).await,
    }
}

async fn daemon(cli: Cli) -> ExitCode {
    let env = Arc::new(ProcessEnv);
    let config = match Config::load(&cli.config_file, env.as_ref()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("{err}");
            eprintln!(
                "lastfm-monitor: configuration refused ({} problem(s)); fix them and start again",
                err.problems.len()
            );
            return ExitCode::from(crate::EXIT_USAGE);
        }
    };
    if cli.config_check {
        println!("{}", config.summary(chrono::Utc::now()));
        return ExitCode::SUCCESS;
    }
    let options = Options::for_file(cli.config_file.clone(), env);
    finish(
        app::run(
            config,
            cli.listen_address,
            options,
            crate::shutdown::signal(),
        )
        .await,
    )
}

async fn demo(listen: Option<SocketAddr>) -> ExitCode {
    let (simulator, sim_address) = match crate::sim::spawn_local(crate::sim::Scenario::demo()).await
    {
        Ok(pair) => pair,
        Err(err) => {
            eprintln!("lastfm-monitor: cannot start the simulator: {err}");
            return ExitCode::FAILURE;
        }
    };
    let listen = listen.unwrap_or_else(|| {
        crate::config::defaults::LISTEN_ADDRESS
            .parse()
            .expect("the default listen address is a valid socket address")
    });
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("lastfm-monitor: cannot listen on {listen}: {err}");
            return ExitCode::FAILURE;
        }
    };
    let bound = listener.local_addr().unwrap_or(listen);
    let text = crate::demo::config_text(sim_address, bound);
    let env = Arc::new(ProcessEnv);
    let config = match Config::parse(&text, "<demo>", env.as_ref(), chrono::Utc::now()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("lastfm-monitor: the built-in demo configuration is invalid (a bug): {err}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "lastfm-monitor demo: the daemon probes a simulated Last.fm at http://{sim_address}/2.0/"
    );
    println!("  status page:  http://{bound}/");
    println!("  metrics:      http://{bound}/metrics");
    println!(
        "  debug a run:  http://{bound}/probe?target=lastfm-sim&probe=artist.getInfo&debug=true"
    );
    println!(
        "The incident timeline (about 3 minutes, repeating): healthy, error 8 burst, errors with 200 OK,"
    );
    println!(
        "rate limited (29), service offline (11), API key suspended (26), recovery. Ctrl-C stops."
    );
    let mut options = Options::for_file(std::path::PathBuf::new(), env);
    options.source = ConfigSource::Fixed(text);
    let result = app::run_on(config, listener, options, crate::shutdown::signal()).await;
    drop(simulator);
    finish(result)
}

async fn simulate(listen: SocketAddr, scenario: Option<std::path::PathBuf>) -> ExitCode {
    let scenario = match scenario {
        None => crate::sim::Scenario::demo(),
        Some(path) => match crate::sim::Scenario::load(&path) {
            Ok(scenario) => scenario,
            Err(err) => {
                eprintln!("{err}");
                return ExitCode::from(crate::EXIT_USAGE);
            }
        },
    };
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("lastfm-monitor: cannot listen on {listen}: {err}");
            return ExitCode::FAILURE;
        }
    };
    let bound = listener.local_addr().unwrap_or(listen);
    println!(
        "lastfm-monitor simulate: a simulated Last.fm API at http://{bound}/2.0/ (Ctrl-C stops)"
    );
    match crate::sim::Simulator::new(scenario)
        .serve(listener, crate::shutdown::signal())
        .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("lastfm-monitor: the simulator failed: {err}");
            ExitCode::FAILURE
        }
    }
}

fn finish(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("lastfm-monitor: {err:#}");
            ExitCode::FAILURE
        }
    }
}

//! The command line (README.md, Operations), in the Prometheus exporters' flag style (`--config.file`, …).
//!
//! Parsing never exits the process itself: [`parse`] returns what to do, or the text to print and
//! the exit code (0 for `--help`/`--version`, 64 for a bad command line), so `main` stays the one
//! place that decides how the process ends.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::cli::logging::{LogFormat, LogLevel};
use crate::config::Api;

/// Probes the Last.fm API on a schedule, classifies every response, exports Prometheus metrics.
#[derive(Debug, Parser)]
#[command(name = "lastfm-monitor", version, about, long_about = None)]
pub struct Cli {
    /// The configuration file.
    #[arg(
        long = "config.file",
        value_name = "FILE",
        default_value = "config.toml",
        global = true
    )]
    pub config_file: PathBuf,

    /// Validate the configuration, print a summary with each probe's next three runs, and exit
    /// (0 when valid, 64 otherwise).
    #[arg(long = "config.check")]
    pub config_check: bool,

    /// Listen address for /metrics and the other endpoints (overrides `[web] listen_address`).
    #[arg(long = "web.listen-address", value_name = "ADDR", global = true)]
    pub listen_address: Option<SocketAddr>,

    /// A second listen address that serves only the status page (without run-now and trace
    /// links), /api/v1/*, /badge/* and /-/healthy, for a public status page behind a reverse
    /// proxy while /metrics and /probe stay private. The web config applies to it too; `run`
    /// and `demo` take it.
    #[arg(long = "web.status-listen-address", value_name = "ADDR", global = true)]
    pub status_listen_address: Option<SocketAddr>,

    /// TLS (min_version TLS12 by default, client certificates) and bcrypt basic auth for every
    /// endpoint, in exporter-toolkit's web-config.yml format (see docs/web-config.yml). Checked at
    /// start (exit 64 when invalid); read once, so changes need a restart.
    #[arg(long = "web.config.file", value_name = "FILE", global = true)]
    pub web_config_file: Option<PathBuf>,

    /// Where request budgets, backoff and each probe's cadence are kept across restarts (the file
    /// `state.json`), so restarts do not become bursts. Default: `$STATE_DIRECTORY`, which
    /// systemd's `StateDirectory=` sets; without either nothing is kept.
    #[arg(long = "state.directory", value_name = "DIR")]
    pub state_directory: Option<PathBuf>,

    /// Log level (RUST_LOG overrides it).
    #[arg(long = "log.level", value_enum, default_value = "info", global = true)]
    pub log_level: LogLevel,

    /// Log format.
    #[arg(
        long = "log.format",
        value_enum,
        default_value = "logfmt",
        global = true
    )]
    pub log_format: LogFormat,

    /// Subcommands; without one, the daemon runs.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon against the built-in Last.fm simulator with a scripted incident timeline
    /// (no API key or internet needed).
    Demo,
    /// Serve the Last.fm simulator alone, to rehearse alerting against scripted incidents.
    Simulate {
        /// Where the simulator listens, e.g. 127.0.0.1:8080.
        #[arg(long, value_name = "ADDR")]
        listen: SocketAddr,
        /// A scenario file (TOML); the built-in demo scenario when absent.
        #[arg(long, value_name = "FILE")]
        scenario: Option<PathBuf>,
        /// The service to play: lastfm, librefm or listenbrainz (overrides the scenario's
        /// `personality`; default lastfm).
        #[arg(long, value_name = "API", value_parser = crate::sim::personality_from_label)]
        personality: Option<Api>,
    },
}

/// What parsing decided.
#[derive(Debug)]
pub enum Parsed {
    /// Run with these arguments.
    Run(Cli),
    /// Print this and exit with this code.
    Exit {
        /// The text (help, version or the error).
        text: String,
        /// 0 for help and version, 64 for a usage error.
        code: u8,
        /// Whether it goes to stderr.
        is_error: bool,
    },
}

/// Parses `args` (including the program name).
pub fn parse<I, T>(args: I) -> Parsed
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    match Cli::try_parse_from(args) {
        Ok(cli) => Parsed::Run(cli),
        Err(err) => {
            let is_error = err.use_stderr();
            Parsed::Exit {
                text: err.render().to_string(),
                code: if is_error { crate::EXIT_USAGE } else { 0 },
                is_error,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_listen_address_parses() {
        let Parsed::Run(cli) = parse([
            "lastfm-monitor",
            "--web.status-listen-address",
            "0.0.0.0:10988",
        ]) else {
            panic!("must parse");
        };
        assert_eq!(
            cli.status_listen_address,
            Some("0.0.0.0:10988".parse().unwrap())
        );
        assert_eq!(cli.listen_address, None);
    }

    #[test]
    fn exporter_style_flags_parse() {
        let Parsed::Run(cli) = parse([
            "lastfm-monitor",
            "--config.file",
            "/etc/lastfm-monitor/config.toml",
            "--config.check",
            "--web.listen-address",
            "127.0.0.1:9999",
            "--log.format",
            "json",
        ]) else {
            panic!("must parse");
        };
        assert_eq!(
            cli.config_file,
            PathBuf::from("/etc/lastfm-monitor/config.toml")
        );
        assert!(cli.config_check);
        assert_eq!(cli.listen_address, Some("127.0.0.1:9999".parse().unwrap()));
        assert_eq!(cli.log_format, LogFormat::Json);
    }

    #[test]
    fn web_config_file_is_accepted_before_or_after_a_subcommand() {
        for args in [
            ["lastfm-monitor", "--web.config.file", "web.yml", "demo"],
            ["lastfm-monitor", "demo", "--web.config.file", "web.yml"],
        ] {
            let Parsed::Run(cli) = parse(args) else {
                panic!("must parse: {args:?}");
            };
            assert_eq!(cli.web_config_file, Some(PathBuf::from("web.yml")));
        }
    }

    #[test]
    fn unknown_flag_is_exit_64() {
        let Parsed::Exit { code, is_error, .. } = parse(["lastfm-monitor", "--bogus"]) else {
            panic!("must fail");
        };
        assert_eq!(code, 64);
        assert!(is_error);
    }

    #[test]
    fn version_is_exit_0() {
        let Parsed::Exit { code, text, .. } = parse(["lastfm-monitor", "--version"]) else {
            panic!("must exit");
        };
        assert_eq!(code, 0);
        assert!(text.contains(env!("CARGO_PKG_VERSION")));
    }

    #[test]
    fn simulate_takes_listen_and_scenario() {
        let Parsed::Run(cli) = parse([
            "lastfm-monitor",
            "simulate",
            "--listen",
            "127.0.0.1:8080",
            "--scenario",
            "drill.toml",
        ]) else {
            panic!("must parse");
        };
        assert!(matches!(
            cli.command,
            Some(Command::Simulate {
                scenario: Some(_),
                personality: None,
                ..
            })
        ));
    }

    #[test]
    fn simulate_takes_a_personality_and_refuses_an_unknown_one() {
        let args = ["lastfm-monitor", "simulate", "--listen", "127.0.0.1:0"];
        let with = |name: &'static str| parse(args.into_iter().chain(["--personality", name]));
        let Parsed::Run(cli) = with("librefm") else {
            panic!("must parse");
        };
        assert!(matches!(
            cli.command,
            Some(Command::Simulate {
                personality: Some(Api::Librefm),
                ..
            })
        ));
        let Parsed::Exit { text, code, .. } = with("maloja") else {
            panic!("must refuse");
        };
        assert_eq!(code, 64);
        assert!(text.contains("unknown personality \"maloja\""), "{text}");
    }
}

//! `lastfm-monitor`: parse the command line, set up logging, validate the config before binding
//! anything, run, and turn the result into an exit code (0 clean, 64 usage/config, 1 runtime).

use std::process::ExitCode;

fn main() -> ExitCode {
    lastfm_monitor::cli::main(std::env::args_os())
}

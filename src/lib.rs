//! `lastfm-monitor` probes the Last.fm API on a schedule, classifies every response and exports
//! Prometheus metrics.
//!
//! # Architecture
//!
//! The tree is the data flow; each stage imports only stages above it in this list
//! (docs/ARCHITECTURE.md has the flow of a run and of a reload, and recipes for common changes):
//!
//! - [`config`]: text to a validated [`config::Config`], every problem located (file, line,
//!   key); the types an operator declares, the service each target speaks to (`api`), the
//!   write-path canaries, secrets that cannot be printed, the web config.
//! - [`schedule`]: when each probe fires (interval or cron), start-up jitter, overrun skips.
//! - [`probe`]: one HTTP attempt under a deadline, recorded as facts, never an `Err`: a failure
//!   is the phase that broke and why, with per-phase timings and the TLS facts; signing.
//! - [`classify`]: pure verdicts over facts: outcome, code, status, mismatch, blame, conditions,
//!   by the code table of the target's service; what a canary's write and read-back meant.
//! - [`health`]: availability with hysteresis, the per-target conditions, and the request
//!   budget (politeness) that keeps the API key from being banned.
//! - [`metrics`]: the exported series in a private registry and the exposition writer.
//! - [`history`]: recent runs and their traces, what operators read; the status model (states,
//!   causes, uptime, incidents) people and bots read.
//! - [`run`]: one run through the stages (a probe's, or a canary's write then read-back), the
//!   per-target runtime, references.
//! - [`server`]: the HTTP endpoints with timeouts and a concurrency cap, auth, the status page,
//!   the status API for bots, and the public status listener.
//! - [`daemon`]: wiring, reload, the fleet of probe and canary tasks, systemd, descriptors, shutdown and
//!   the state file.
//! - [`cli`]: arguments, logging, `demo` and `simulate`: the process around it.
//! - [`sim`]: a scenario-driven simulator of Last.fm (or Libre.fm, or ListenBrainz) for tests,
//!   `demo` and `simulate`.

pub mod classify;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod health;
pub mod history;
pub mod metrics;
pub mod probe;
pub mod run;
pub mod schedule;
pub mod server;
pub mod sim;

/// Exit code for a bad command line or configuration (BSD `EX_USAGE`).
pub const EXIT_USAGE: u8 = 64;

//! `lastfm-monitor` probes the Last.fm API on a schedule, classifies every response and exports
//! Prometheus metrics.
//!
//! # Architecture
//!
//! A run flows `config → schedule → runner → probe → classify → metrics/health/history → server`:
//!
//! - [`config`]: strict TOML to a validated [`config::Config`], every problem located (file, line,
//!   key). [`secret`] holds secrets in a type that cannot be printed.
//! - [`schedule`]: when each probe fires (interval or cron), start-up jitter, overrun skips.
//! - [`runner`]: one run end to end; the only place the pieces meet.
//! - [`politeness`]: the per-target budget (token bucket, backoff after 29/429, slow mode after
//!   26/10), so the monitor never gets a key banned.
//! - [`probe`]: one HTTP attempt under a deadline, recorded as facts, never an `Err`: a failure
//!   is the phase that broke (DNS, connect, TLS, request, body) and why, with per-phase timings
//!   and the TLS facts (version, the chain's earliest notAfter); [`probe::sign`] computes
//!   `api_sig`.
//! - [`classify`]: pure verdicts over facts: outcome, code, status, mismatch, blame, conditions.
//! - [`health`]: availability with hysteresis and the per-target conditions.
//! - [`metrics`]: the SPEC §7 series in a private registry; [`history`], [`trace`] and
//!   [`status_page`]: what operators read.
//! - [`server`]: the HTTP endpoints with timeouts and a concurrency cap; [`web_config`]: the
//!   `--web.config.file` TLS, client certificates and basic auth in front of them; [`app`]:
//!   wiring, reload, watchdog, shutdown; [`notify`]: systemd readiness and watchdog.
//! - [`sim`]: a scenario-driven Last.fm simulator for tests, `demo` and `simulate`.
//! - [`cli`], [`entry`], [`logging`], [`shutdown`], [`demo`]: the process around it;
//!   [`descriptors`]: the file descriptor limit and table, ready before a burst needs them.

pub mod app;
pub mod classify;
pub mod cli;
pub mod config;
pub mod demo;
pub mod descriptors;
pub mod entry;
pub mod fleet;
pub mod health;
pub mod history;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod politeness;
pub mod probe;
pub mod references;
pub mod runner;
pub mod schedule;
pub mod secret;
pub mod server;
pub mod shutdown;
pub mod sim;
pub mod state;
pub mod status_page;
pub mod trace;
pub mod web_config;

/// Exit code for a bad command line or configuration (BSD `EX_USAGE`).
pub const EXIT_USAGE: u8 = 64;

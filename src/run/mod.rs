//! One run of a probe or a canary, end to end: politeness gate, the request, classification,
//! recording.
//!
//! This is the only place the pieces meet: [`crate::health::politeness`] decides whether the
//! request may go, a [`crate::probe::Prober`] makes it, [`crate::classify`] judges it, and the
//! verdict updates the target's gate and health, the metrics, the history and one log line. Scheduled runs (from the probe
//! tasks) and on-demand runs (`/probe`) share this path, so `/probe` obeys the same budget; only
//! scheduled runs move the exported series, as their HELP texts promise.

//! - `runtime`: a target's live state (gate, health, series, cadence) and a generation of them;
//! - `runner`: the [`Runner`], one request through the gate, and a probe run end to end;
//! - `canary`, `canary_state`: a write-path canary's run (a write, then read-back polls) and its
//!   live state;
//! - `log`: the log lines of runs and of gate and health changes;
//! - `handover`: where a run that a reload overtook is recorded;
//! - `references`: the checks that tell our network's faults from Last.fm's;
//! - `saved`: what the state file keeps of a generation.

mod canary;
mod canary_state;
mod handover;
mod log;
pub mod references;
mod runner;
mod runtime;
pub mod saved;

pub use canary::CanaryRun;
pub use canary_state::{CanaryRuntime, LastRun};
pub use runner::{Mode, RunResult, Runner};
pub use runtime::{Carry, Generation, Origin, TargetRuntime};

//! What a generation hands the state file to keep across a restart: each target's request
//! budget and when each probe last sent, and the status model (states, uptime, incidents). The
//! types are the run stage's and the history's; the daemon's state file only serialises them.
//! A field added later is optional with a serde default, so a file an older version wrote
//! still loads.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::health::politeness::SavedGate;
use crate::history::status::SavedStatus;

/// `last_sent` of a probe that has not sent yet.
pub const NEVER: i64 = i64::MIN;

/// The format written; a file of another version is set aside.
pub const VERSION: u32 = 1;

/// Everything kept across a restart.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The format version (1 for now).
    pub version: u32,
    /// Per target name.
    pub targets: BTreeMap<String, TargetState>,
    /// The status model; absent from files written before it existed. One this version cannot
    /// read (a label a later version added) is dropped, never the budgets with it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient"
    )]
    pub status: Option<SavedStatus>,
}

/// The status model when it reads, else nothing.
fn lenient<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<SavedStatus>, D::Error> {
    let value = serde_json::Value::deserialize(deserializer)?;
    Ok(serde_json::from_value(value).ok())
}

/// One target's kept state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetState {
    /// The request budget.
    pub gate: SavedGate,
    /// The canaries' backoff after a rate limit on the canary account; absent in files
    /// written before canaries existed.
    #[serde(default)]
    pub canary_gate: Option<SavedGate>,
    /// Per probe name (a canary's by its write step's), when its last scheduled request went
    /// out (Unix milliseconds).
    pub last_sent_ms: BTreeMap<String, i64>,
}

impl Snapshot {
    /// An empty snapshot of the current version.
    pub fn new() -> Self {
        Self {
            version: VERSION,
            targets: BTreeMap::new(),
            status: None,
        }
    }
}

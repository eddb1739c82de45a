//! A target's state, the word people and bots read, shared by the status model and the
//! incident list; kept and parsed by its label, like every closed set the state file holds.

use serde::{Deserialize, Serialize};

use crate::classify::{Condition, Outcome};
use crate::config::closed_set::closed_set;

closed_set! {
    /// A target's state, for people and bots.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum State {
        /// Every probe's latest run was healthy, or failed by our side's fault.
        Operational => "operational",
        /// Available, but some probe's latest run failed by Last.fm's fault.
        Degraded => "degraded",
        /// Not available: a probe failed by Last.fm's fault `down_after` times in a row.
        Outage => "outage",
        /// Our network or host is at fault: Last.fm's state is unknown from here.
        Local => "local",
        /// No run yet.
        Unknown => "unknown",
    }
}

impl State {
    /// Whether bots should act as if Last.fm has issues.
    pub fn is_degraded(self) -> bool {
        match self {
            Self::Degraded | Self::Outage => true,
            Self::Operational | Self::Local | Self::Unknown => false,
        }
    }

    /// Whether the state is an incident.
    pub fn is_incident(self) -> bool {
        match self {
            Self::Degraded | Self::Outage | Self::Local => true,
            Self::Operational | Self::Unknown => false,
        }
    }
}

/// Serde through labels, so a state file keeps readable, stable words.
macro_rules! label_serde {
    ($($set:ty),+) => {$(
        impl Serialize for $set {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_label())
            }
        }
        impl<'de> Deserialize<'de> for $set {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let label = String::deserialize(deserializer)?;
                <$set>::ALL
                    .into_iter()
                    .find(|v| v.as_label() == label)
                    .ok_or_else(|| serde::de::Error::custom("unknown label"))
            }
        }
    )+};
}
label_serde!(State, Outcome, Condition);

//! Incidents: the periods a target spent out of `operational`, with start, end and cause.
//!
//! An incident opens when a target enters `degraded`, `outage` or `local` and closes when it
//! leaves that state (into another incident, or back to `operational`). The list is one ring for
//! all targets, newest last, capped at [`KEEP`]: a flapping target can push older incidents out,
//! but never grow memory. Causes are sentences built from closed sets and counts, never
//! upstream text, so each stays under a few hundred bytes.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::state::State;

/// Incidents kept, all targets together.
pub const KEEP: usize = 100;

/// One incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    /// Unique and increasing within the list (the Atom entry's id).
    pub id: u64,
    /// The target's name.
    pub target: String,
    /// The state the target was in.
    pub state: State,
    /// When it began (Unix seconds).
    pub start: i64,
    /// When it ended; `None` while it goes on.
    pub end: Option<i64>,
    /// The cause sentence, as of its end or now.
    pub cause: String,
}

impl Incident {
    /// How long it lasted, or has lasted by `now` (seconds).
    pub fn duration(&self, now: i64) -> i64 {
        (self.end.unwrap_or(now) - self.start).max(0)
    }
}

/// The incident ring.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incidents {
    /// The last id given, kept across restarts so a feed reader never sees an id twice.
    next_id: u64,
    /// Oldest first, at most [`KEEP`].
    list: VecDeque<Incident>,
}

impl Incidents {
    /// Closes `target`'s open incident at `at`, if it has one.
    pub fn close(&mut self, target: &str, at: i64) {
        if let Some(open) = self.open_mut(target) {
            open.end = Some(at);
        }
    }

    /// Opens an incident of `target` in `state` at `at`.
    pub fn open(&mut self, target: &str, state: State, at: i64, cause: String) {
        self.close(target, at);
        self.next_id += 1;
        self.list.push_back(Incident {
            id: self.next_id,
            target: target.to_owned(),
            state,
            start: at,
            end: None,
            cause,
        });
        while self.list.len() > KEEP {
            self.list.pop_front();
        }
    }

    /// Updates the cause of `target`'s open incident.
    pub fn set_cause(&mut self, target: &str, cause: impl FnOnce() -> String) {
        if let Some(open) = self.open_mut(target) {
            open.cause = cause();
        }
    }

    fn open_mut(&mut self, target: &str) -> Option<&mut Incident> {
        self.list
            .iter_mut()
            .rev()
            .find(|i| i.target == target && i.end.is_none())
    }

    /// Every kept incident, newest first.
    pub fn newest_first(&self) -> Vec<Incident> {
        self.list.iter().rev().cloned().collect()
    }

    /// Drops the incidents of targets `keep` refuses.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.list.retain(|i| keep(&i.target));
    }

    /// Caps a list read from a state file.
    pub fn bounded(mut self) -> Self {
        while self.list.len() > KEEP {
            self.list.pop_front();
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_state_closes_the_open_incident_and_the_list_is_capped() {
        let mut incidents = Incidents::default();
        incidents.open("lastfm", State::Degraded, 100, "a".into());
        incidents.open("lastfm", State::Outage, 160, "b".into());
        incidents.set_cause("lastfm", || "c".into());
        incidents.close("lastfm", 400);
        let list = incidents.newest_first();
        assert_eq!(list.len(), 2);
        assert_eq!(
            (list[0].state, list[0].start, list[0].end),
            (State::Outage, 160, Some(400))
        );
        assert_eq!(list[0].cause, "c");
        assert_eq!((list[1].end, list[1].duration(1000)), (Some(160), 60));
        for i in 0..300 {
            incidents.open("other", State::Local, 500 + i, String::new());
        }
        assert_eq!(incidents.newest_first().len(), KEEP);
        assert!(incidents.newest_first()[0].end.is_none());
        assert_eq!(incidents.newest_first()[1].end, Some(799));
    }
}

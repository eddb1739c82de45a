//! File descriptors: the limit and the kernel's table, made ready for the configuration before
//! a burst of runs needs them.
//!
//! Every run in flight holds a socket, so N probes due in the same second want N descriptors at
//! once. Two things can go wrong in the middle of such a burst, and this module settles both
//! when a configuration starts (at start-up and at every reload):
//!
//! - **The limit.** A socket beyond the soft `RLIMIT_NOFILE` fails with "too many open files",
//!   which a run reports as a connection error: an outage of Last.fm that is really ours. The
//!   soft limit is raised as far as the configuration needs and the hard limit allows (what Go
//!   does for every program); when even the hard limit is short, the daemon says so, with what
//!   to change, instead of letting runs fail later.
//! - **The table.** The kernel grows a process's descriptor table by doubling, and while another
//!   thread shares the table (the resolver's threads do) each growth waits for an RCU grace
//!   period. The scheduler bench saw the first burst of 1,000 probes fire 13–28 ms late for it,
//!   once per process (docs/PERFORMANCE.md). Duplicating a descriptor onto the highest number
//!   the configuration may reach, and closing it at once, grows the table ahead of time; a table
//!   never shrinks, and its cost is kernel memory of 8 bytes a slot.

use std::os::fd::{AsFd, OwnedFd};

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

use crate::server::MAX_IN_FLIGHT;

/// Descriptors the process holds whatever the configuration: standard streams, the listener,
/// the runtime's epoll and wake-up descriptors, signals, the state file, log files.
const PROCESS_BASE: u64 = 32;
/// Connections the web server may hold beyond the requests it serves at once (clients still
/// sending their headers, idle keep-alive connections).
const WEB_CONNECTIONS: u64 = MAX_IN_FLIGHT as u64 + 24;

/// How many descriptors a configuration with `probes` probes may hold at once: one socket per
/// run in flight (a probe never overlaps itself, and a kept connection serves one run at a
/// time), the web server's connections, and the process's own.
pub fn needed_for(probes: usize) -> u64 {
    probes as u64 + WEB_CONNECTIONS + PROCESS_BASE
}

/// What to do about the soft limit, decided from the numbers alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitPlan {
    /// The soft limit already covers the need.
    Enough,
    /// Raise the soft limit to this; then it covers the need.
    Raise(u64),
    /// The hard limit is below the need: raise the soft limit to it if it is lower (`raise_to`),
    /// and report the shortfall.
    Short {
        /// The soft limit to set first, when the hard limit is above it.
        raise_to: Option<u64>,
        /// The hard limit, the most the soft limit can become.
        hard: u64,
    },
}

/// Plans the soft limit for `needed` descriptors; `None` stands for unlimited.
pub fn plan(needed: u64, soft: Option<u64>, hard: Option<u64>) -> LimitPlan {
    match (soft, hard) {
        (None, _) => LimitPlan::Enough,
        (Some(soft), _) if soft >= needed => LimitPlan::Enough,
        (Some(_), None) => LimitPlan::Raise(needed),
        (Some(_), Some(hard)) if hard >= needed => LimitPlan::Raise(needed),
        (Some(soft), Some(hard)) => LimitPlan::Short {
            raise_to: (hard > soft).then_some(hard),
            hard,
        },
    }
}

/// The descriptor table's keeper: holds a descriptor to duplicate when the table must grow.
#[derive(Debug)]
pub struct Descriptors {
    /// A duplicate of the listener: any open descriptor would do, this one is always there.
    anchor: OwnedFd,
    /// The highest need prepared so far; the table only grows.
    prepared: u64,
}

impl Descriptors {
    /// Keeps a duplicate of `anchor` (the daemon's listener) for later growth.
    pub fn new(anchor: impl AsFd) -> std::io::Result<Self> {
        Ok(Self {
            anchor: anchor.as_fd().try_clone_to_owned()?,
            prepared: 0,
        })
    }

    /// Makes the limit and the table ready for `probes` probes; logs what it changed, and warns
    /// when the hard limit is short. Never fails: a run that later lacks a descriptor is
    /// reported as it happens.
    pub fn prepare(&mut self, probes: usize) {
        let needed = needed_for(probes);
        let current = getrlimit(Resource::Nofile);
        let soft = match plan(needed, current.current, current.maximum) {
            LimitPlan::Enough => current.current.unwrap_or(needed),
            LimitPlan::Raise(to) => raise(current, to, needed),
            LimitPlan::Short { raise_to, hard } => {
                let soft = match raise_to {
                    Some(to) => raise(current, to, needed),
                    None => current.current.unwrap_or(hard),
                };
                tracing::warn!(
                    probes,
                    needed,
                    limit = soft,
                    "the configuration may hold more file descriptors at once than RLIMIT_NOFILE allows: \
                     runs beyond the limit fail as connection errors that are not Last.fm's; \
                     raise LimitNOFILE= (systemd) or `ulimit -n`"
                );
                soft
            }
        };
        let highest = needed.min(soft);
        if highest <= self.prepared {
            return;
        }
        self.prepared = highest;
        self.grow_table(highest);
    }

    /// Duplicates the anchor onto descriptor `slots - 1` and closes it: the kernel sizes the
    /// table for it, and keeps that size.
    fn grow_table(&self, slots: u64) {
        let Ok(top) = i32::try_from(slots.saturating_sub(1)) else {
            return;
        };
        match rustix::io::fcntl_dupfd_cloexec(&self.anchor, top) {
            Ok(duplicate) => drop(duplicate),
            Err(err) => {
                tracing::debug!(error = %err, slots, "cannot pre-size the descriptor table")
            }
        }
    }
}

/// Sets the soft limit to `to`; returns the soft limit in force afterwards.
fn raise(current: Rlimit, to: u64, needed: u64) -> u64 {
    let before = current.current.unwrap_or(u64::MAX);
    let wanted = Rlimit {
        current: Some(to),
        maximum: current.maximum,
    };
    match setrlimit(Resource::Nofile, wanted) {
        Ok(()) => {
            tracing::info!(from = before, to, needed, "raised the soft RLIMIT_NOFILE");
            to
        }
        Err(err) => {
            // systemd's SystemCallFilter=~@resources answers EPERM: the unit's LimitNOFILE= rules.
            tracing::warn!(
                error = %err,
                limit = before,
                needed,
                "cannot raise the soft RLIMIT_NOFILE: runs beyond it fail as connection errors \
                 that are not Last.fm's; raise LimitNOFILE= (systemd) or `ulimit -n`"
            );
            before
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_need_counts_one_socket_per_probe_plus_the_server_and_the_process() {
        assert_eq!(needed_for(0), WEB_CONNECTIONS + PROCESS_BASE);
        assert_eq!(needed_for(1000) - needed_for(0), 1000);
        assert!(WEB_CONNECTIONS > MAX_IN_FLIGHT as u64);
    }

    #[test]
    fn the_soft_limit_is_raised_only_as_far_as_needed_and_allowed() {
        assert_eq!(plan(100, Some(1024), Some(4096)), LimitPlan::Enough);
        assert_eq!(plan(1024, Some(1024), Some(1024)), LimitPlan::Enough);
        assert_eq!(plan(100, None, None), LimitPlan::Enough);
        assert_eq!(
            plan(1100, Some(1024), Some(524_288)),
            LimitPlan::Raise(1100)
        );
        assert_eq!(plan(1100, Some(1024), None), LimitPlan::Raise(1100));
        assert_eq!(
            plan(5000, Some(1024), Some(4096)),
            LimitPlan::Short {
                raise_to: Some(4096),
                hard: 4096
            }
        );
        assert_eq!(
            plan(1100, Some(1024), Some(1024)),
            LimitPlan::Short {
                raise_to: None,
                hard: 1024
            }
        );
    }

    /// Slots in this process's descriptor table (`FDSize` in /proc/self/status).
    fn table_size() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
        status
            .lines()
            .find_map(|line| line.strip_prefix("FDSize:"))
            .and_then(|n| n.trim().parse().ok())
            .expect("FDSize in /proc/self/status")
    }

    #[test]
    fn preparing_grows_the_table_ahead_and_never_shrinks_it() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut descriptors = Descriptors::new(&listener).expect("duplicate");
        let soft = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
        // A need within the limit this test runs under (the table of a test process may already
        // be large from other tests: ask for more than it has, up to the limit).
        let before = table_size();
        let want = (before * 2).min(soft);
        assert!(
            want > before && want > needed_for(0),
            "the soft limit ({soft}) leaves no room to test growth beyond {before} slots"
        );
        let probes = usize::try_from(want - needed_for(0)).expect("fits");
        descriptors.prepare(probes);
        assert!(table_size() >= want, "table {} < {want}", table_size());
        let grown = table_size();
        descriptors.prepare(1);
        assert_eq!(
            table_size(),
            grown,
            "a smaller configuration keeps the table"
        );
    }
}

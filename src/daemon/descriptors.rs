//! File descriptors: the limit and the kernel's table, made ready for the configuration before
//! a burst of runs needs them, and the share of them the web server's connections may take.
//!
//! Every run in flight holds a socket, so N probes due in the same second want N descriptors at
//! once. Three things can go wrong in the middle of such a burst, and this module settles them
//! when a configuration starts (at start-up and at every reload):
//!
//! - **The limit.** A socket beyond the soft `RLIMIT_NOFILE` fails with "too many open files",
//!   which a run reports as a connection error: an outage of Last.fm that is really ours. The
//!   soft limit is raised as far as the configuration needs and the hard limit allows (what Go
//!   does for every program); when even the hard limit is short, the daemon says so, with what
//!   to change, instead of letting runs fail later.
//! - **The web server's share.** Every connection to the endpoints holds a descriptor too, and a
//!   client that opens thousands and sends nothing would otherwise take them all, the probes'
//!   included. The server holds at most `[web] max_connections` (default 256) and closes the
//!   rest at once; that cap may take at most a quarter of the limit ([`connection_cap`]), so a
//!   larger configured value is refused, naming its line, and a smaller limit lowers the default.
//! - **The table.** The kernel grows a process's descriptor table by doubling, and while another
//!   thread shares the table (the resolver's threads do) each growth waits for an RCU grace
//!   period. The scheduler bench saw the first burst of 1,000 probes fire 13–28 ms late for it,
//!   once per process (docs/PERFORMANCE.md). Duplicating a descriptor onto the highest number
//!   the configuration may reach, and closing it at once, grows the table ahead of time; a table
//!   never shrinks, and its cost is kernel memory of 8 bytes a slot.

use std::os::fd::{AsFd, OwnedFd};

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

use crate::config::{MaxConnections, Problem, defaults};

/// Descriptors the process holds whatever the configuration: standard streams, the listener,
/// the runtime's epoll and wake-up descriptors, signals, the state file, log files.
const PROCESS_BASE: u64 = 32;
/// The web server's connections take at most 1/this of the descriptor limit.
const CONNECTION_SHARE: u64 = 4;

/// How many descriptors a configuration with `probes` probes may hold at once when the web
/// server holds at most `connections`: one socket per run in flight (a probe never overlaps
/// itself, and a kept connection serves one run at a time), the web server's connections, and
/// the process's own.
pub fn needed_for(probes: usize, connections: u32) -> u64 {
    probes as u64 + u64::from(connections) + PROCESS_BASE
}

/// The soft limit the daemon asks for: what it may hold, and at least enough that
/// `connections` is within the web server's share.
pub fn wanted_for(probes: usize, connections: u32) -> u64 {
    needed_for(probes, connections).max(u64::from(connections) * CONNECTION_SHARE)
}

/// The default connection cap under the soft limit `soft` (`None`: unlimited): 256, or a
/// quarter of the limit when that is lower.
pub fn default_cap(soft: Option<u64>) -> u32 {
    let quarter = soft.map_or(u64::MAX, |soft| soft / CONNECTION_SHARE);
    u32::try_from(quarter)
        .unwrap_or(u32::MAX)
        .clamp(1, defaults::MAX_CONNECTIONS)
}

/// The web server's connection cap under the soft limit `soft` (`None`: unlimited): the
/// configured value, else [`default_cap`]; `Err` with the quarter of the limit when the
/// configured value exceeds it.
pub fn connection_cap(configured: Option<u32>, soft: Option<u64>) -> Result<u32, u64> {
    let quarter = soft.map_or(u64::MAX, |soft| soft / CONNECTION_SHARE);
    match configured {
        Some(value) if u64::from(value) > quarter => Err(quarter),
        Some(value) => Ok(value),
        None => Ok(default_cap(soft)),
    }
}

/// Why a configured `max_connections` is refused under `soft` descriptors (its `quarter`).
fn refusal(configured: MaxConnections, soft: Option<u64>, quarter: u64) -> Problem {
    let limit = soft.map_or_else(|| "unlimited".to_owned(), |soft| soft.to_string());
    Problem {
        line: Some(configured.line),
        column: Some(configured.column),
        context: "[web]".to_owned(),
        key: "max_connections".to_owned(),
        message: format!(
            "{} is more than a quarter of the file descriptor limit ({limit}, so at most \
             {quarter}): idle connections could take the descriptors the probes need; lower it \
             or drop it for the default, or raise LimitNOFILE= (systemd) or `ulimit -n` to at \
             least {}",
            configured.value,
            u64::from(configured.value) * CONNECTION_SHARE
        ),
    }
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

/// The soft limit `plan` leads to from `soft` (`None`: unlimited), when raising succeeds.
fn planned_soft(plan: LimitPlan, soft: Option<u64>) -> Option<u64> {
    match plan {
        LimitPlan::Enough => soft,
        LimitPlan::Raise(to) => Some(to),
        LimitPlan::Short { raise_to, hard } => raise_to.or(soft).or(Some(hard)),
    }
}

/// Checks `[web] max_connections` against the limit the daemon would end up with for `probes`
/// probes, without changing anything: for `--config.check` and before a reload is swapped in.
pub fn check(probes: usize, configured: Option<MaxConnections>) -> Result<u32, Problem> {
    let wanted = wanted_for(
        probes,
        configured.map_or(defaults::MAX_CONNECTIONS, |c| c.value),
    );
    let current = getrlimit(Resource::Nofile);
    let soft = planned_soft(
        plan(wanted, current.current, current.maximum),
        current.current,
    );
    cap_or_refusal(configured, soft)
}

fn cap_or_refusal(configured: Option<MaxConnections>, soft: Option<u64>) -> Result<u32, Problem> {
    let Some(configured) = configured else {
        return Ok(default_cap(soft));
    };
    connection_cap(Some(configured.value), soft)
        .map_err(|quarter| refusal(configured, soft, quarter))
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

    /// Makes the limit and the table ready for `probes` probes and the web server's
    /// connections; logs what it changed, and warns when the hard limit is short. Returns the
    /// web server's connection cap, or the refusal of a configured one above its share.
    pub fn prepare(
        &mut self,
        probes: usize,
        configured: Option<MaxConnections>,
    ) -> Result<u32, Problem> {
        let wanted = wanted_for(
            probes,
            configured.map_or(defaults::MAX_CONNECTIONS, |c| c.value),
        );
        let current = getrlimit(Resource::Nofile);
        let soft = match plan(wanted, current.current, current.maximum) {
            LimitPlan::Enough => current.current,
            LimitPlan::Raise(to) => raise(current, to, wanted),
            LimitPlan::Short { raise_to, hard } => match raise_to {
                Some(to) => raise(current, to, wanted),
                None => current.current.or(Some(hard)),
            },
        };
        let cap = cap_or_refusal(configured, soft)?;
        let needed = needed_for(probes, cap);
        if let Some(limit) = soft.filter(|&limit| limit < needed) {
            tracing::warn!(
                probes,
                needed,
                limit,
                "the configuration may hold more file descriptors at once than RLIMIT_NOFILE allows: \
                 runs beyond the limit fail as connection errors that are not Last.fm's; \
                 raise LimitNOFILE= (systemd) or `ulimit -n`"
            );
        }
        let highest = soft.map_or(needed, |soft| needed.min(soft));
        if highest > self.prepared {
            self.prepared = highest;
            self.grow_table(highest);
        }
        Ok(cap)
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

/// Sets the soft limit to `to`; returns the soft limit in force afterwards (`None`: unlimited).
fn raise(current: Rlimit, to: u64, needed: u64) -> Option<u64> {
    let before = current.current.unwrap_or(u64::MAX);
    let wanted = Rlimit {
        current: Some(to),
        maximum: current.maximum,
    };
    match setrlimit(Resource::Nofile, wanted) {
        Ok(()) => {
            tracing::info!(from = before, to, needed, "raised the soft RLIMIT_NOFILE");
            Some(to)
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
            current.current
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_need_counts_one_socket_per_probe_plus_the_server_and_the_process() {
        assert_eq!(needed_for(0, 256), 256 + PROCESS_BASE);
        assert_eq!(needed_for(1000, 256) - needed_for(0, 256), 1000);
        assert_eq!(needed_for(10, 64) - needed_for(10, 0), 64);
        assert_eq!(wanted_for(10, 256), 1024, "room for 256 within a quarter");
        assert_eq!(wanted_for(1000, 256), needed_for(1000, 256));
    }

    #[test]
    fn connections_take_at_most_a_quarter_of_the_limit() {
        assert_eq!(connection_cap(None, Some(1024)), Ok(256));
        assert_eq!(connection_cap(None, Some(524_288)), Ok(256));
        assert_eq!(connection_cap(None, None), Ok(256));
        assert_eq!(connection_cap(None, Some(256)), Ok(64));
        assert_eq!(connection_cap(None, Some(2)), Ok(1), "never zero");
        assert_eq!(connection_cap(Some(100), Some(1024)), Ok(100));
        assert_eq!(connection_cap(Some(256), Some(1024)), Ok(256));
        assert_eq!(connection_cap(Some(257), Some(1024)), Err(256));
        assert_eq!(connection_cap(Some(1000), None), Ok(1000));
    }

    #[test]
    fn a_refused_cap_names_its_line_the_limit_and_what_to_do() {
        let configured = MaxConnections {
            value: 300,
            line: 4,
            column: 19,
        };
        let problem = cap_or_refusal(Some(configured), Some(1024)).expect_err("above 256");
        assert_eq!((problem.line, problem.column), (Some(4), Some(19)));
        assert_eq!(problem.key, "max_connections");
        assert!(
            problem.message.contains(
                "300 is more than a quarter of the file descriptor limit (1024, so at most 256)"
            ),
            "{}",
            problem.message
        );
        assert!(
            problem.message.contains("at least 1200"),
            "{}",
            problem.message
        );
        assert_eq!(cap_or_refusal(None, Some(256)), Ok(64));
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
            want > before && want > wanted_for(0, 1) && want / CONNECTION_SHARE >= 1,
            "the soft limit ({soft}) leaves no room to test growth beyond {before} slots"
        );
        let probes = usize::try_from(want - needed_for(0, 1)).expect("fits");
        let first = MaxConnections {
            value: 1,
            line: 1,
            column: 1,
        };
        assert_eq!(descriptors.prepare(probes, Some(first)), Ok(1));
        assert!(table_size() >= want, "table {} < {want}", table_size());
        let grown = table_size();
        assert_eq!(descriptors.prepare(1, Some(first)), Ok(1));
        assert_eq!(
            table_size(),
            grown,
            "a smaller configuration keeps the table"
        );
    }
}

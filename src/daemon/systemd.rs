//! The daemon's side of systemd's readiness protocol (sd_notify(3)) and software watchdog
//! (sd_watchdog_enabled(3)), for `Type=notify` + `WatchdogSec=` in
//! `systemd/lastfm-monitor.service`.
//!
//! [`Notifier`] is built once from `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`
//! ([`Notifier::from_env`]); tests pass the values in through [`Notifier::from_vars`] instead of
//! touching the process environment. Without `NOTIFY_SOCKET` (a terminal, a test, `demo`) the
//! notifier is inactive and every method is a no-op, so callers never branch on how they were
//! started.
//!
//! Why our own code rather than the `sd-notify` crate (0.5): that crate reads `NOTIFY_SOCKET`
//! and `WATCHDOG_USEC` from the process environment inside every call, so testing it means
//! `std::env::set_var`, which is `unsafe` in edition 2024 and banned here (clippy.toml); it
//! returns an `io::Result` from every call, leaving "warn once" to each call site; and it brings
//! `libc`. The protocol itself is one datagram over [`UnixDatagram`] (abstract `@` names
//! included, through `SocketAddrExt::from_abstract_name`), which needs no `unsafe` and no
//! dependency. The one extra dependency is `rustix` (already in the lock file through
//! `tempfile`) for `CLOCK_MONOTONIC`: `MONOTONIC_USEC=` must be on that clock, and
//! `std::time::Instant` does not expose its value.
//!
//! Behaviour worth knowing:
//! - Sending never blocks and never panics. The socket is non-blocking, so a wedged service
//!   manager cannot stall the tokio worker that pings the watchdog; a failed send is logged
//!   with `warn!` the first time and at `debug!` after that (it would otherwise repeat every
//!   15 s forever).
//! - The watchdog is honoured as sd_watchdog_enabled(3) does: `WATCHDOG_USEC` must be a positive
//!   integer, and a `WATCHDOG_PID` naming another process means the watchdog is not ours. The
//!   daemon pings at half the interval, from the probe scheduler loop so that a wedged scheduler
//!   stops the pings (docs/SERVICE.md).
//! - The variables are not unset after reading (that needs `set_var`): the daemon spawns no
//!   children, and `NotifyAccess=main` makes systemd ignore any other sender anyway.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[cfg(any(target_os = "linux", target_os = "android"))]
use std::os::linux::net::SocketAddrExt;

/// Talks to systemd's service manager when run under Type=notify; a no-op otherwise.
#[derive(Debug, Clone)]
pub struct Notifier {
    /// The socket to systemd; `None` when not started by systemd (or `NOTIFY_SOCKET` was unusable),
    /// which makes every method a no-op.
    channel: Option<Arc<Channel>>,
    /// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC`. `None` when systemd expects no
    /// pings from this process.
    watchdog_period: Option<Duration>,
}

/// An unbound datagram socket and the address of systemd's notification socket.
#[derive(Debug)]
struct Channel {
    /// Kept open for the daemon's lifetime instead of one socket per message; non-blocking.
    socket: UnixDatagram,
    /// Parsed once from `NOTIFY_SOCKET`.
    addr: SocketAddr,
    /// Set by the first failed send, so the warning is logged once and not on every ping.
    warned: AtomicBool,
}

/// Why the environment handed over by systemd cannot be used as is.
#[derive(Debug, thiserror::Error)]
enum EnvError {
    #[error("NOTIFY_SOCKET {0:?} is neither an absolute path nor an abstract name (\"@...\")")]
    UnsupportedSocket(String),
    #[error("NOTIFY_SOCKET {value:?} is not a valid socket address: {error}")]
    InvalidSocketAddress { value: String, error: io::Error },
    #[error("create the notification socket: {0}")]
    CreateSocket(io::Error),
    #[error("WATCHDOG_USEC {0:?} is not a positive number of microseconds")]
    InvalidWatchdogUsec(String),
    #[error("WATCHDOG_PID {0:?} is not a process id")]
    InvalidWatchdogPid(String),
}

impl Notifier {
    /// A notifier for the environment systemd gave this process; inactive outside systemd.
    pub fn from_env() -> Self {
        let notify_socket = env_var("NOTIFY_SOCKET");
        let watchdog_usec = env_var("WATCHDOG_USEC");
        let watchdog_pid = env_var("WATCHDOG_PID");
        Self::from_vars(
            notify_socket.as_deref(),
            watchdog_usec.as_deref(),
            watchdog_pid.as_deref(),
        )
    }

    /// A notifier for the given values of `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`.
    ///
    /// Unusable values are logged with `warn!` and switch the affected part off (the socket, or
    /// only the watchdog); they never fail start-up.
    pub fn from_vars(
        notify_socket: Option<&str>,
        watchdog_usec: Option<&str>,
        watchdog_pid: Option<&str>,
    ) -> Self {
        let channel = match notify_socket.filter(|s| !s.is_empty()).map(Channel::open) {
            None => None,
            Some(Ok(channel)) => Some(Arc::new(channel)),
            Some(Err(error)) => {
                tracing::warn!(%error, "not notifying systemd");
                None
            }
        };
        let watchdog_period = match watchdog_interval(watchdog_usec, watchdog_pid) {
            // Pings need the socket; without it the watchdog cannot be served.
            Ok(interval) if channel.is_some() => {
                interval.map(|usec| Duration::from_micros(usec / 2))
            }
            Ok(_) => None,
            Err(error) => {
                tracing::warn!(%error, "watchdog disabled");
                None
            }
        };
        Self {
            channel,
            watchdog_period,
        }
    }

    /// Whether messages go anywhere, i.e. the process was started by systemd with `Type=notify`.
    pub fn is_active(&self) -> bool {
        self.channel.is_some()
    }

    /// Start-up or a reload is complete: `READY=1`.
    pub fn ready(&self) {
        self.send("READY=1\nSTATUS=running");
    }

    /// A reload (SIGHUP, `POST /-/reload`) has begun; call [`ready`](Self::ready) when it is done.
    ///
    /// Carries `MONOTONIC_USEC=`, which systemd ≥ 253 uses to match the reload with its `READY=1`;
    /// earlier versions ignore it.
    pub fn reloading(&self) {
        if self.channel.is_some() {
            self.send(&format!(
                "RELOADING=1\nSTATUS=reloading the configuration\nMONOTONIC_USEC={}",
                monotonic_usec()
            ));
        }
    }

    /// Shutdown has begun: `STOPPING=1`.
    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=stopping");
    }

    /// A free-form status line for `systemctl status`. Newlines become spaces: each line of a
    /// notification is an assignment, so a newline would let the text send other commands.
    pub fn status(&self, text: &str) {
        if self.channel.is_some() {
            self.send(&format!("STATUS={}", text.replace(['\n', '\r'], " ")));
        }
    }

    /// Keep-alive for `WatchdogSec=`: `WATCHDOG=1`, sent only when the watchdog is ours.
    pub fn watchdog(&self) {
        if self.watchdog_period.is_some() {
            self.send("WATCHDOG=1");
        }
    }

    /// How often to call [`watchdog`](Self::watchdog): half of `WATCHDOG_USEC`, as
    /// sd_watchdog_enabled(3) recommends; `None` when no watchdog is expected from this process.
    pub fn watchdog_period(&self) -> Option<Duration> {
        self.watchdog_period
    }

    fn send(&self, message: &str) {
        let Some(channel) = &self.channel else {
            return;
        };
        let result = channel
            .socket
            .send_to_addr(message.as_bytes(), &channel.addr);
        if let Err(error) = result {
            let state = message.lines().next().unwrap_or_default();
            if channel.warned.swap(true, Ordering::Relaxed) {
                tracing::debug!(%error, state, "systemd notification failed");
            } else {
                tracing::warn!(
                    %error,
                    state,
                    "systemd notification failed (further failures are logged at debug level)"
                );
            }
        }
    }
}

impl Channel {
    fn open(notify_socket: &str) -> Result<Self, EnvError> {
        let invalid = |error| EnvError::InvalidSocketAddress {
            value: notify_socket.to_owned(),
            error,
        };
        let addr = if let Some(name) = notify_socket.strip_prefix('@') {
            abstract_addr(name).map_err(invalid)?
        } else if notify_socket.starts_with('/') {
            SocketAddr::from_pathname(notify_socket).map_err(invalid)?
        } else {
            // Also systemd ≥ 253's "vsock:" addresses, used by VMs, not by a unit's services.
            return Err(EnvError::UnsupportedSocket(notify_socket.to_owned()));
        };
        let socket = UnixDatagram::unbound().map_err(EnvError::CreateSocket)?;
        socket
            .set_nonblocking(true)
            .map_err(EnvError::CreateSocket)?;
        Ok(Self {
            socket,
            addr,
            warned: AtomicBool::new(false),
        })
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn abstract_addr(name: &str) -> io::Result<SocketAddr> {
    SocketAddr::from_abstract_name(name.as_bytes())
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn abstract_addr(_name: &str) -> io::Result<SocketAddr> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract sockets exist only on Linux",
    ))
}

/// The watchdog interval in µs if it is this process's to serve, per sd_watchdog_enabled(3).
fn watchdog_interval(
    watchdog_usec: Option<&str>,
    watchdog_pid: Option<&str>,
) -> Result<Option<u64>, EnvError> {
    let Some(usec) = watchdog_usec.filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let usec = match usec.parse::<u64>() {
        Ok(usec) if usec > 0 => usec,
        _ => return Err(EnvError::InvalidWatchdogUsec(usec.to_owned())),
    };
    if let Some(pid) = watchdog_pid.filter(|s| !s.is_empty()) {
        let pid = pid
            .parse::<u32>()
            .map_err(|_| EnvError::InvalidWatchdogPid(pid.to_owned()))?;
        if pid != std::process::id() {
            // Meant for another process (e.g. the parent that exec'd us without passing it on).
            return Ok(None);
        }
    }
    Ok(Some(usec))
}

/// `CLOCK_MONOTONIC` in µs, the clock `MONOTONIC_USEC=` is defined on.
fn monotonic_usec() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    // Both fields are non-negative for CLOCK_MONOTONIC; saturate rather than panic regardless.
    let secs = u64::try_from(now.tv_sec).unwrap_or(0);
    let micros = u64::try_from(now.tv_nsec).unwrap_or(0) / 1_000;
    secs.saturating_mul(1_000_000).saturating_add(micros)
}

/// An environment variable, `None` when unset or not UTF-8 (systemd only writes ASCII here).
fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A stand-in for systemd's notification socket, bound in a temporary directory.
    struct FakeSystemd {
        socket: UnixDatagram,
        path: String,
        _dir: tempfile::TempDir,
    }

    impl FakeSystemd {
        fn new() -> Self {
            let dir = tempfile::tempdir().expect("a temporary directory can be created");
            let path = dir.path().join("notify.sock");
            let socket = UnixDatagram::bind(&path).expect("binding in a fresh directory succeeds");
            socket
                .set_read_timeout(Some(Duration::from_secs(5)))
                .expect("a non-zero timeout is accepted");
            Self {
                socket,
                path: path.to_str().expect("tempdir paths are UTF-8").to_owned(),
                _dir: dir,
            }
        }

        fn notifier(&self, watchdog_usec: Option<&str>, watchdog_pid: Option<&str>) -> Notifier {
            Notifier::from_vars(Some(&self.path), watchdog_usec, watchdog_pid)
        }

        fn recv(&self) -> String {
            recv(&self.socket)
        }

        fn assert_nothing_received(&self) {
            assert_nothing_received(&self.socket);
        }
    }

    fn recv(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 4096];
        let n = socket.recv(&mut buf).expect("a notification arrives");
        String::from_utf8(buf[..n].to_vec()).expect("notifications are UTF-8")
    }

    fn assert_nothing_received(socket: &UnixDatagram) {
        socket
            .set_nonblocking(true)
            .expect("a bound socket can be made non-blocking");
        let mut buf = [0u8; 4096];
        match socket.recv(&mut buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            other => panic!("expected no notification, got {other:?}"),
        }
    }

    fn our_pid() -> String {
        std::process::id().to_string()
    }

    #[test]
    fn ready_watchdog_stopping_and_reloading_arrive() {
        let systemd = FakeSystemd::new();
        let notifier = systemd.notifier(Some("30000000"), None);
        assert!(notifier.is_active());

        notifier.ready();
        assert_eq!(systemd.recv(), "READY=1\nSTATUS=running");
        notifier.watchdog();
        assert_eq!(systemd.recv(), "WATCHDOG=1");
        notifier.stopping();
        assert_eq!(systemd.recv(), "STOPPING=1\nSTATUS=stopping");
        notifier.status("probing 12 targets");
        assert_eq!(systemd.recv(), "STATUS=probing 12 targets");
        notifier.reloading();
        let reloading = systemd.recv();
        assert!(
            reloading.starts_with("RELOADING=1\n"),
            "unexpected message: {reloading:?}"
        );
    }

    #[test]
    fn reloading_carries_monotonic_usec_on_clock_monotonic() {
        let systemd = FakeSystemd::new();
        let notifier = systemd.notifier(None, None);

        let before = monotonic_usec();
        notifier.reloading();
        let after = monotonic_usec();

        let message = systemd.recv();
        let stamp: u64 = message
            .lines()
            .find_map(|line| line.strip_prefix("MONOTONIC_USEC="))
            .expect("RELOADING=1 carries MONOTONIC_USEC=")
            .parse()
            .expect("MONOTONIC_USEC is an integer");
        assert!(before > 0);
        assert!(
            (before..=after).contains(&stamp),
            "{before} <= {stamp} <= {after}"
        );
    }

    #[test]
    fn abstract_notify_socket_is_supported() {
        let name = format!("lastfm-monitor-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes())
            .expect("a short abstract name is valid");
        let socket = UnixDatagram::bind_addr(&addr).expect("the abstract name is unused");
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("a non-zero timeout is accepted");

        let notifier = Notifier::from_vars(Some(&format!("@{name}")), None, None);
        notifier.ready();

        assert_eq!(recv(&socket), "READY=1\nSTATUS=running");
    }

    #[test]
    fn watchdog_period_is_half_of_watchdog_usec() {
        let systemd = FakeSystemd::new();
        let notifier = systemd.notifier(Some("2000000"), None);
        assert_eq!(notifier.watchdog_period(), Some(Duration::from_secs(1)));
    }

    #[test]
    fn watchdog_pid_of_this_process_keeps_the_watchdog() {
        let systemd = FakeSystemd::new();
        let notifier = systemd.notifier(Some("2000000"), Some(&our_pid()));
        assert_eq!(notifier.watchdog_period(), Some(Duration::from_secs(1)));
    }

    #[test]
    fn watchdog_pid_of_another_process_disables_the_watchdog() {
        let systemd = FakeSystemd::new();
        let other = std::process::id().wrapping_add(1).to_string();
        let notifier = systemd.notifier(Some("2000000"), Some(&other));

        assert_eq!(notifier.watchdog_period(), None);
        notifier.watchdog();
        systemd.assert_nothing_received();
        // Readiness still goes through: only the watchdog belongs to someone else.
        notifier.ready();
        systemd
            .socket
            .set_nonblocking(false)
            .expect("a bound socket can be made blocking");
        assert_eq!(systemd.recv(), "READY=1\nSTATUS=running");
    }

    #[test]
    fn no_watchdog_without_watchdog_usec_or_with_a_bad_one() {
        let systemd = FakeSystemd::new();
        for usec in [None, Some(""), Some("0"), Some("-5"), Some("30s")] {
            let notifier = systemd.notifier(usec, None);
            assert_eq!(notifier.watchdog_period(), None, "WATCHDOG_USEC={usec:?}");
            notifier.watchdog();
        }
        let bad_pid = systemd.notifier(Some("2000000"), Some("self"));
        assert_eq!(bad_pid.watchdog_period(), None);
        systemd.assert_nothing_received();
    }

    #[test]
    fn inactive_notifier_sends_nothing_and_does_not_fail() {
        let systemd = FakeSystemd::new();
        // WATCHDOG_USEC without a socket cannot be served either.
        let notifier = Notifier::from_vars(None, Some("2000000"), Some(&our_pid()));

        assert!(!notifier.is_active());
        assert_eq!(notifier.watchdog_period(), None);
        notifier.ready();
        notifier.reloading();
        notifier.status("ignored");
        notifier.watchdog();
        notifier.stopping();
        systemd.assert_nothing_received();
    }

    #[test]
    fn unusable_notify_socket_makes_the_notifier_inactive() {
        for value in ["", "relative/notify.sock", "vsock:2:1234"] {
            let notifier = Notifier::from_vars(Some(value), None, None);
            assert!(!notifier.is_active(), "NOTIFY_SOCKET={value:?}");
            notifier.ready();
        }
    }

    #[test]
    fn status_newlines_cannot_inject_other_assignments() {
        let systemd = FakeSystemd::new();
        let notifier = systemd.notifier(None, None);
        notifier.status("bad\nREADY=1\r\nX");
        assert_eq!(systemd.recv(), "STATUS=bad READY=1  X");
    }

    #[test]
    fn send_failures_warn_once_and_never_panic() {
        let dir = tempfile::tempdir().expect("a temporary directory can be created");
        let missing = dir.path().join("nobody-listens.sock");
        let missing = missing.to_str().expect("tempdir paths are UTF-8");
        let warnings = Arc::new(AtomicUsize::new(0));
        let subscriber = CountWarnings(Arc::clone(&warnings));

        tracing::subscriber::with_default(subscriber, || {
            let notifier = Notifier::from_vars(Some(missing), Some("2000000"), None);
            assert!(notifier.is_active());
            for _ in 0..3 {
                notifier.ready();
                notifier.watchdog();
                notifier.reloading();
                notifier.stopping();
            }
        });

        assert_eq!(warnings.load(Ordering::Relaxed), 1);
    }

    /// Counts `WARN` events; just enough of a subscriber for one assertion.
    struct CountWarnings(Arc<AtomicUsize>);

    impl tracing::Subscriber for CountWarnings {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            if *event.metadata().level() == tracing::Level::WARN {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }
}

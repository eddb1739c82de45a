//! Name resolution through the system resolver, keeping the reason a lookup failed.
//!
//! reqwest's default resolver calls `getaddrinfo` too, but hands back an `io::Error` whose text is
//! all that is left of the `EAI_*` code, and classifying by error text breaks silently. This resolver
//! makes the same call (so `/etc/hosts`, nsswitch and `/etc/resolv.conf` are honoured exactly as
//! before) on tokio's blocking pool, and fails with a [`DnsFailure`] that carries the [`Reason`]
//! for `failure_of` in `http.rs` to find in reqwest's source chain. It also marks the start and
//! end of the lookup in the run's progress record, which is how a deadline that passes while
//! resolving is told from one that passes while connecting.

use std::fmt;
use std::net::SocketAddr;

use dns_lookup::{AddrInfoHints, LookupError, LookupErrorKind, SockType};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::Reason;
use super::progress;

/// glibc's `EAI_ADDRFAMILY` (a GNU extension the libc crate does not export): the host exists but
/// has no address in the family asked for.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const EAI_ADDRFAMILY: i32 = -9;

/// The system resolver (`getaddrinfo`), run off the runtime thread.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SystemResolver;

/// Why a lookup failed, as a [`Reason`] of the DNS phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DnsFailure {
    /// `Nxdomain`, `NoAddress`, `ResolverFailure` or `LocalResources`.
    pub(crate) reason: Reason,
    /// For `LocalResources`: the name of the error that said so (`EMFILE`, `EAI_MEMORY`…), for
    /// the warning `http.rs` logs.
    pub(crate) errno: Option<&'static str>,
}

impl DnsFailure {
    const fn new(reason: Reason) -> Self {
        Self {
            reason,
            errno: None,
        }
    }
}

impl fmt::Display for DnsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.reason {
            Reason::Nxdomain => "the name does not exist",
            Reason::NoAddress => "the name has no address record",
            Reason::ResolverFailure => "the resolver failed",
            Reason::LocalResources => "this host ran out of descriptors, memory or ports",
            // Not DNS reasons: the resolver never makes a failure of them.
            Reason::Timeout
            | Reason::Refused
            | Reason::Unreachable
            | Reason::Reset
            | Reason::CertificateExpired
            | Reason::CertificateNotYetValid
            | Reason::CertificateUntrusted
            | Reason::HostnameMismatch
            | Reason::HandshakeFailed
            | Reason::Interrupted
            | Reason::TooLarge
            | Reason::ProtocolError => "the resolver failed",
        };
        f.write_str(what)
    }
}

impl std::error::Error for DnsFailure {}

impl Resolve for SystemResolver {
    fn resolve(&self, name: Name) -> Resolving {
        // Called from inside the request future (hyper-util's connector), so the run's progress
        // record is in scope here and in the future below, not on the blocking thread.
        progress::resolving();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found = tokio::task::spawn_blocking(move || lookup(&host)).await;
            progress::resolved();
            match found {
                Ok(Ok(addrs)) => Ok(Box::new(addrs.into_iter()) as Addrs),
                Ok(Err(failure)) => Err(failure.into()),
                // The blocking task panicked or the runtime is shutting down.
                Err(_) => Err(DnsFailure::new(Reason::ResolverFailure).into()),
            }
        })
    }
}

/// One `getaddrinfo` call, as `std`'s `to_socket_addrs` makes it (any family, stream sockets);
/// the port is left 0 for reqwest to fill in.
fn lookup(host: &str) -> Result<Vec<SocketAddr>, DnsFailure> {
    let hints = AddrInfoHints {
        socktype: SockType::Stream.into(),
        ..AddrInfoHints::default()
    };
    let found = dns_lookup::getaddrinfo(Some(host), None, Some(hints)).map_err(failure_of)?;
    let addrs: Vec<SocketAddr> = found
        .filter_map(Result::ok)
        .map(|info| info.sockaddr)
        .collect();
    if addrs.is_empty() {
        return Err(DnsFailure::new(Reason::NoAddress));
    }
    Ok(addrs)
}

fn failure_of(err: LookupError) -> DnsFailure {
    let reason = match err.kind() {
        // dns-lookup files codes it does not know under `IO`.
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        _ if err.error_num() == EAI_ADDRFAMILY => Reason::NoAddress,
        LookupErrorKind::NoName => Reason::Nxdomain,
        LookupErrorKind::NoData => Reason::NoAddress,
        // The resolver's allocation failed: this host is out of memory.
        LookupErrorKind::Memory => {
            return DnsFailure {
                reason: Reason::LocalResources,
                errno: Some("EAI_MEMORY"),
            };
        }
        // EAI_SYSTEM keeps errno in the error (dns-lookup reads it right after the call, on
        // the same thread): the resolver could not open a socket or a file for want of
        // descriptors, memory or ports. Other errnos stay resolver failures.
        LookupErrorKind::System | LookupErrorKind::IO => {
            let errno = std::io::Error::from(err)
                .raw_os_error()
                .and_then(super::local_resources_errno);
            return match errno {
                Some(_) => DnsFailure {
                    reason: Reason::LocalResources,
                    errno,
                },
                None => DnsFailure::new(Reason::ResolverFailure),
            };
        }
        // EAI_AGAIN (SERVFAIL, no answer, refused), EAI_FAIL and the rest.
        _ => Reason::ResolverFailure,
    };
    DnsFailure::new(reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eai_codes_map_to_dns_reasons() {
        assert_eq!(failure_of(LookupError::new(-2)).reason, Reason::Nxdomain); // EAI_NONAME
        assert_eq!(failure_of(LookupError::new(-5)).reason, Reason::NoAddress); // EAI_NODATA
        assert_eq!(failure_of(LookupError::new(-9)).reason, Reason::NoAddress); // EAI_ADDRFAMILY
        assert_eq!(
            failure_of(LookupError::new(-3)).reason, // EAI_AGAIN
            Reason::ResolverFailure
        );
        assert_eq!(
            failure_of(LookupError::new(-4)).reason, // EAI_FAIL
            Reason::ResolverFailure
        );
    }

    /// EAI_MEMORY, and EAI_SYSTEM whose errno says descriptors, memory or ports ran out, are
    /// this host's fault; any other errno stays a resolver failure.
    #[test]
    fn exhausted_resources_in_a_lookup_are_local_resources() {
        use rustix::io::Errno;
        let memory = failure_of(LookupError::new(-10)); // EAI_MEMORY
        assert_eq!(
            (memory.reason, memory.errno),
            (Reason::LocalResources, Some("EAI_MEMORY"))
        );
        for (errno, name) in [
            (Errno::MFILE, "EMFILE"),
            (Errno::NFILE, "ENFILE"),
            (Errno::NOMEM, "ENOMEM"),
            (Errno::NOBUFS, "ENOBUFS"),
            (Errno::ADDRNOTAVAIL, "EADDRNOTAVAIL"),
        ] {
            // What dns-lookup builds for EAI_SYSTEM: the errno as an OS error.
            let system = std::io::Error::from_raw_os_error(errno.raw_os_error());
            let failure = failure_of(LookupError::from(system));
            assert_eq!(
                (failure.reason, failure.errno),
                (Reason::LocalResources, Some(name))
            );
        }
        let other = std::io::Error::from_raw_os_error(Errno::CONNREFUSED.raw_os_error());
        assert_eq!(
            failure_of(LookupError::from(other)),
            DnsFailure::new(Reason::ResolverFailure)
        );
    }

    #[test]
    fn localhost_resolves_through_the_hosts_file() {
        let addrs = lookup("localhost").expect("localhost resolves");
        assert!(
            addrs.iter().all(|addr| addr.ip().is_loopback()),
            "{addrs:?}"
        );
    }
}

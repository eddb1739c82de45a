//! Local blame: whether a failed run is our network's fault rather than Last.fm's.
//!
//! A run that got no answer at all could be either side's; the reference checks (endpoints that
//! are not Last.fm) tell which. Pure: the verdict and the references' view in, the verdict out.

use super::verdict::{Blame, Classification, Condition};
use crate::probe::TransportFailure;

/// What the reference checks said about the monitor's own network when a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalNetwork {
    /// No reference is configured: nothing tells our network's faults from Last.fm's.
    Unknown,
    /// At least one reference answered in the window (or none failed in it).
    Reachable,
    /// Every reference failed in the window.
    Down,
}

/// Whether a failure is one a broken local network causes: it never reached Last.fm (our
/// resolver, our route, a handshake that never completed), a deadline passing in those phases
/// included. A run that broke after the request was written, a timeout waiting for the headers
/// or the body included, reached Last.fm: the path works (README.md, Classification: blame).
/// A shortage of this host's resources is `local` already and needs no reference to say so.
pub fn could_be_local(failure: TransportFailure) -> bool {
    failure.before_request() && !failure.is_local_resources()
}

/// Moves the blame of a run to our side when the references say our network is down. Pure: the
/// verdict and the references' view in, the verdict out. Only runs that got no response at all
/// can be ours; an answer from Last.fm, even an edge's 502, proves the path to it works.
pub fn localize(mut verdict: Classification, network: LocalNetwork) -> Classification {
    let ours = network == LocalNetwork::Down
        && verdict.blame == Some(Blame::Upstream)
        && verdict.failure.is_some_and(could_be_local);
    if ours {
        verdict.blame = Some(Blame::Local);
        verdict.raises.push(Condition::LocalNetworkDown);
    }
    verdict
}

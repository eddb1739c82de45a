//! How far one run got: the phase in progress, when each phase began, and what the TLS handshake
//! showed.
//!
//! The exchange is one reqwest future, and the run's deadline drops it wherever it is; what was in
//! progress then is known only if every step marks itself as it goes. reqwest offers no per-request
//! hooks into its connector, but for a fresh connection hyper-util drives the lookup, the TCP
//! connect and the handshake inside the request future, so a [`tokio::task_local!`] record scoped
//! around the exchange is visible from all of them: the resolver (`dns.rs`), the connector layer
//! below, the session store and certificate verifier (`tls.rs`), and `http.rs` for the headers
//! and the body. Every mark is a few `Cell` writes: no lock, no allocation. Outside a scope (a
//! connection hyper-util finishes in the background for its pool) a mark does nothing.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::time::Instant;

use super::{Phase, PhaseTimings, TlsFacts};

tokio::task_local! {
    static PROGRESS: Progress;
}

/// One run's record. Each stamp is when its step began; a step not reached is `None`.
#[derive(Debug)]
struct Progress {
    /// The step in progress: what a deadline passing now would blame.
    phase: Cell<Phase>,
    /// When the run began (the request was handed to reqwest).
    started: Instant,
    /// The connector was called: a fresh connection is being opened.
    connecting: Cell<Option<Instant>>,
    /// The lookup began and ended (a literal IP address skips both).
    dns_start: Cell<Option<Instant>>,
    dns_end: Cell<Option<Instant>>,
    /// rustls built its ClientHello: the TCP connection is up.
    tls_start: Cell<Option<Instant>>,
    /// The connector returned a connection (TCP, and TLS when https).
    ready: Cell<Option<Instant>>,
    /// The response headers arrived.
    headers: Cell<Option<Instant>>,
    /// Their status, kept for a run whose body then fails or whose deadline passes.
    status: Cell<Option<u16>>,
    /// The body was read to its end.
    done: Cell<Option<Instant>>,
    /// The certificate verifier saw a chain: the earliest notAfter of it, when it parsed.
    not_after: Cell<Option<Option<i64>>>,
    /// The negotiated TLS version, known once the server's handshake signature is checked.
    tls_version: Cell<Option<&'static str>>,
}

/// Runs `exchange` with a fresh progress record in scope, then hands `finish` the record's
/// [`Report`], still inside the scope (the exchange may have been dropped by a deadline by then).
pub(crate) async fn scope<F, T, R>(exchange: F, finish: impl FnOnce(T, &Report) -> R) -> R
where
    F: Future<Output = T>,
{
    let progress = Progress::new(Instant::now());
    PROGRESS
        .scope(progress, async move {
            let output = exchange.await;
            let report = PROGRESS.with(Progress::report);
            finish(output, &report)
        })
        .await
}

/// What a run's record says once the run is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Report {
    /// The step in progress when the run ended (the last one, for a complete run).
    pub(crate) phase: Phase,
    /// Where the time went; a step in progress at the end counts until then.
    pub(crate) timings: PhaseTimings,
    /// The handshake, when the run made one that got as far as a certificate.
    pub(crate) tls: Option<TlsFacts>,
    /// The status of the response headers, when they arrived.
    pub(crate) status: Option<u16>,
}

/// The phase in progress now ([`Phase::Request`] outside a run).
pub(crate) fn phase() -> Phase {
    PROGRESS
        .try_with(|progress| progress.phase.get())
        .unwrap_or(Phase::Request)
}

fn mark(f: impl FnOnce(&Progress, Instant)) {
    let _ = PROGRESS.try_with(|progress| f(progress, Instant::now()));
}

/// The connector was called for a new connection.
pub(crate) fn connecting() {
    mark(|p, now| {
        p.connecting.set(Some(now));
        p.phase.set(Phase::Connect);
    });
}

/// The resolver started a lookup.
pub(crate) fn resolving() {
    mark(|p, now| {
        p.dns_start.set(Some(now));
        p.phase.set(Phase::Dns);
    });
}

/// The lookup ended (either way): the TCP connect comes next.
pub(crate) fn resolved() {
    mark(|p, now| {
        p.dns_end.set(Some(now));
        p.phase.set(Phase::Connect);
    });
}

/// rustls started the handshake, so the TCP connection is up. Called from more than one hook of
/// the same handshake: only the first counts.
pub(crate) fn handshaking() {
    mark(|p, now| {
        if p.tls_start.get().is_none() && p.ready.get().is_none() {
            p.tls_start.set(Some(now));
            p.phase.set(Phase::Tls);
        }
    });
}

/// The connector returned a usable connection: the request goes out now.
pub(crate) fn connected() {
    mark(|p, now| {
        p.ready.set(Some(now));
        p.phase.set(Phase::Request);
    });
}

/// The response headers arrived, with `status`.
pub(crate) fn headers_received(status: u16) {
    mark(|p, now| {
        p.headers.set(Some(now));
        p.status.set(Some(status));
        p.phase.set(Phase::Body);
    });
}

/// The body was read to its end.
pub(crate) fn body_read() {
    mark(|p, now| p.done.set(Some(now)));
}

/// The server presented a chain whose earliest notAfter is `not_after` (`None`: unparsable).
pub(crate) fn certificate_seen(not_after: Option<i64>) {
    let _ = PROGRESS.try_with(|p| p.not_after.set(Some(not_after)));
}

/// The server's handshake signature was checked under `version`.
pub(crate) fn version_negotiated(version: &'static str) {
    let _ = PROGRESS.try_with(|p| p.tls_version.set(Some(version)));
}

impl Progress {
    fn new(started: Instant) -> Self {
        Self {
            // A kept connection goes straight to the request; a fresh one marks `connecting`
            // on the future's first poll.
            phase: Cell::new(Phase::Request),
            started,
            connecting: Cell::new(None),
            dns_start: Cell::new(None),
            dns_end: Cell::new(None),
            tls_start: Cell::new(None),
            ready: Cell::new(None),
            headers: Cell::new(None),
            status: Cell::new(None),
            done: Cell::new(None),
            not_after: Cell::new(None),
            tls_version: Cell::new(None),
        }
    }

    fn report(&self) -> Report {
        let now = Instant::now();
        // `from` to the first of `to` that was reached, or to now: the time of a step that was in
        // progress at the end counts until the end.
        let span = |from: Option<Instant>, to: &[Option<Instant>]| {
            from.map(|from| {
                to.iter()
                    .flatten()
                    .next()
                    .copied()
                    .unwrap_or(now)
                    .saturating_duration_since(from)
            })
            .unwrap_or_default()
        };
        let connecting = self.connecting.get();
        let (ready, headers) = (self.ready.get(), self.headers.get());
        let tls_start = self.tls_start.get();
        // The request went out on a ready connection, or at once on a kept one.
        let request_start = ready.or(connecting.is_none().then_some(self.started));
        let timings = PhaseTimings {
            dns: span(self.dns_start.get(), &[self.dns_end.get()]),
            connect: span(self.dns_end.get().or(connecting), &[tls_start, ready]),
            tls: span(tls_start, &[ready]),
            first_byte: span(request_start, &[headers]),
            body: span(headers, &[self.done.get()]),
        };
        let tls = self.not_after.get().map(|not_after| TlsFacts {
            version: self.tls_version.get().unwrap_or(TlsFacts::UNKNOWN_VERSION),
            not_after_unix: not_after,
        });
        Report {
            phase: self.phase.get(),
            timings,
            tls,
            status: self.status.get(),
        }
    }
}

/// A tower layer for reqwest's connector (`ClientBuilder::connector_layer`): marks when a new
/// connection is asked for and when it is ready. Everything between is DNS, TCP and TLS, told
/// apart by the resolver and the TLS hooks.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct MarkConnect;

impl<S> tower::Layer<S> for MarkConnect {
    type Service = Marked<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Marked { inner }
    }
}

/// The connector under [`MarkConnect`].
#[derive(Debug, Clone)]
pub(crate) struct Marked<S> {
    inner: S,
}

impl<S, R> tower::Service<R> for Marked<S>
where
    S: tower::Service<R>,
    S::Future: Unpin,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = MarkedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        connecting();
        MarkedFuture {
            inner: self.inner.call(request),
        }
    }
}

/// The connector's future; marks the connection ready when it succeeds. reqwest's boxed
/// connector future is `Unpin`, so no pin projection is needed.
#[derive(Debug)]
pub(crate) struct MarkedFuture<F> {
    inner: F,
}

impl<F, T, E> Future for MarkedFuture<F>
where
    F: Future<Output = Result<T, E>> + Unpin,
{
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let polled = Pin::new(&mut self.inner).poll(cx);
        if let Poll::Ready(Ok(_)) = &polled {
            connected();
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn marks_outside_a_run_do_nothing() {
        resolving();
        connected();
        assert_eq!(phase(), Phase::Request);
    }

    #[tokio::test]
    async fn a_fresh_connection_walks_the_phases_in_order() {
        let report = scope(
            async {
                connecting();
                assert_eq!(phase(), Phase::Connect);
                resolving();
                assert_eq!(phase(), Phase::Dns);
                tokio::time::sleep(Duration::from_millis(5)).await;
                resolved();
                assert_eq!(phase(), Phase::Connect);
                handshaking();
                assert_eq!(phase(), Phase::Tls);
                certificate_seen(Some(1_700_000_000));
                version_negotiated("TLSv1.3");
                handshaking();
                connected();
                assert_eq!(phase(), Phase::Request);
                headers_received(200);
                assert_eq!(phase(), Phase::Body);
                body_read();
            },
            |(), report| report.clone(),
        )
        .await;
        assert_eq!(report.phase, Phase::Body);
        assert_eq!(report.status, Some(200));
        assert!(report.timings.dns >= Duration::from_millis(5), "{report:?}");
        assert_eq!(
            report.tls,
            Some(TlsFacts {
                version: "TLSv1.3",
                not_after_unix: Some(1_700_000_000)
            })
        );
    }

    #[tokio::test]
    async fn a_kept_connection_times_only_the_request_and_body() {
        let report = scope(
            async {
                tokio::time::sleep(Duration::from_millis(5)).await;
                headers_received(204);
            },
            |(), report| report.clone(),
        )
        .await;
        let timings = report.timings;
        assert_eq!(
            (timings.dns, timings.connect, timings.tls),
            (Duration::ZERO, Duration::ZERO, Duration::ZERO)
        );
        assert!(
            timings.first_byte >= Duration::from_millis(5),
            "{timings:?}"
        );
        assert_eq!(report.tls, None);
    }
}

//! The accept loop: what a connection may hold and for how long, before the router sees it.
//!
//! - **A cap on connections.** The requests-in-flight cap counts requests, so clients that
//!   connect and send nothing were unlimited, and 10,000 of them took every descriptor the
//!   process had, the probes' included (README.md, Operations, File descriptors). At most
//!   `max_connections` connections are held at once; one beyond is closed as soon as it is
//!   accepted, which frees its descriptor at once.
//! - **10 s from accept to the first complete request header**, the TLS handshake included:
//!   an idle connection holds its place in the cap for at most that long. After the first
//!   request hyper's header-read timeout bounds each wait for the next one (axum's `serve`
//!   installs none, axum#2741, hence this loop).
//! - With TLS, the handshake runs inside each connection's task, so a slow or silent client never
//!   stalls the loop; plain HTTP on the TLS listener gets a short 400 that says why.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::response::Response;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::defaults;

/// How long a client may take to send its request headers, and from accept to the first
/// complete request header.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to complete the TLS handshake (within the same 10 s from accept).
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// At most one warning this often while connections are refused at the cap.
const REFUSAL_WARNING_EVERY: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `cancel`, with header-read timeouts, and drains
/// connections gracefully on cancel. Connection tasks are spawned on `tracker`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    serve_tls(listener, router, None, cancel, tracker).await;
}

/// [`serve`], with TLS when `tls` is given: each connection's handshake runs in its own task
/// under [`TLS_HANDSHAKE_TIMEOUT`], so a slow or silent client never stalls the accept loop.
/// Holds at most the default number of connections (`[web] max_connections`).
pub async fn serve_tls(
    listener: TcpListener,
    router: Router,
    tls: Option<TlsAcceptor>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    let cap = ConnectionCap::new(usize::try_from(defaults::MAX_CONNECTIONS).unwrap_or(usize::MAX));
    serve_capped(listener, router, tls, cap, cancel, tracker).await;
}

/// A cap on open connections; listeners given clones of one cap share it.
#[derive(Debug, Clone)]
pub struct ConnectionCap {
    slots: Arc<Semaphore>,
    max: usize,
}

impl ConnectionCap {
    /// At most `max` connections.
    pub fn new(max: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max)),
            max,
        }
    }
}

/// [`serve_tls`] holding at most `cap` connections: one beyond is closed as soon as it is
/// accepted. Listeners given clones of one cap share it (the main and the status listener: the
/// descriptor table is sized for one `max_connections`).
pub async fn serve_capped(
    listener: TcpListener,
    router: Router,
    tls: Option<TlsAcceptor>,
    cap: ConnectionCap,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    let service = hyper_util::service::TowerToHyperService::new(router);
    let ConnectionCap {
        slots,
        max: max_connections,
    } = cap;
    let mut refusals = Refusals::default();
    loop {
        let (stream, peer) = tokio::select! {
            () = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // Out of descriptors and the like: back off a little instead of spinning.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            drop(stream);
            refusals.note(max_connections);
            continue;
        };
        let accepted = Instant::now();
        let deadline = accepted + HEADER_READ_TIMEOUT;
        let service = service.clone();
        let cancel = cancel.clone();
        let tls = tls.clone();
        tracker.spawn(async move {
            let _slot = slot;
            match tls {
                None => serve_connection(stream, peer, service, deadline, cancel).await,
                Some(acceptor) => {
                    let handshake =
                        tls_handshake(stream, peer, acceptor, accepted + TLS_HANDSHAKE_TIMEOUT);
                    let stream = tokio::select! {
                        () = cancel.cancelled() => return,
                        stream = handshake => stream,
                    };
                    if let Some(stream) = stream {
                        serve_connection(stream, peer, service, deadline, cancel).await;
                    }
                }
            }
        });
    }
}

/// Connections closed at the cap, counted between warnings so a flood logs a line every
/// [`REFUSAL_WARNING_EVERY`], not one per connection.
#[derive(Debug, Default)]
struct Refusals {
    /// Refused since the last warning.
    count: u64,
    /// When the last warning was written.
    warned: Option<Instant>,
}

impl Refusals {
    fn note(&mut self, max_connections: usize) {
        self.count += 1;
        let now = Instant::now();
        if self
            .warned
            .is_some_and(|at| now.duration_since(at) < REFUSAL_WARNING_EVERY)
        {
            return;
        }
        tracing::warn!(
            refused = self.count,
            max_connections,
            "connection cap reached: new connections to the endpoints are closed at once until \
             held ones end (a connection that sends no request is closed 10 s after accept); \
             see [web] max_connections"
        );
        self.count = 0;
        self.warned = Some(now);
    }
}

/// The answer to plain HTTP on the TLS listener (what Go's servers do too).
const PLAIN_HTTP_REFUSED: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
    content-type: text/plain; charset=utf-8\r\n\
    connection: close\r\n\
    content-length: 33\r\n\
    \r\n\
    this endpoint speaks HTTPS only.\n";

/// The TLS handshake by `deadline` (counted from accept); a client speaking plain HTTP gets a short 400 that
/// says why, instead of a bare reset, and is never served.
async fn tls_handshake(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    deadline: Instant,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    /// The first byte of a TLS handshake record.
    const TLS_HANDSHAKE_RECORD: u8 = 0x16;
    let mut first = [0_u8; 1];
    match tokio::time::timeout_at(deadline, stream.peek(&mut first)).await {
        Ok(Ok(1)) if first[0] == TLS_HANDSHAKE_RECORD => {}
        Ok(Ok(1)) => {
            tracing::debug!(%peer, "plain HTTP on the TLS listener: refused");
            refuse_plain_http(stream, deadline).await;
            return None;
        }
        Ok(_) => return None,
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return None;
        }
    }
    match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(err)) => {
            tracing::debug!(%peer, error = %err, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}

async fn refuse_plain_http(mut stream: TcpStream, deadline: Instant) {
    let _ = tokio::time::timeout_at(deadline, stream.write_all(PLAIN_HTTP_REFUSED)).await;
    let _ = stream.shutdown().await;
    // Read what the client sent (a little, briefly) before closing, so the close is not a
    // reset that could destroy the answer before the client reads it.
    let mut sink = [0_u8; 4096];
    let drain = async {
        let mut left = 64 * 1024_usize;
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}

/// Serves one connection; closes it at `first_request_by` unless a complete request header
/// has arrived by then.
async fn serve_connection<I, S>(
    io: I,
    peer: SocketAddr,
    service: S,
    first_request_by: Instant,
    cancel: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = Response,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    // hyper calls the service once a request's header is complete: that is the first request.
    let requested = Arc::new(AtomicBool::new(false));
    let seen = Arc::clone(&requested);
    let service = hyper::service::service_fn(move |request| {
        seen.store(true, Ordering::Relaxed);
        service.call(request)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    let mut first_request = std::pin::pin!(tokio::time::sleep_until(first_request_by));
    let mut waiting_for_first = true;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(err) = result {
                    tracing::trace!(%peer, error = %err, "connection ended with an error");
                }
                return;
            }
            () = first_request.as_mut(), if waiting_for_first => {
                if !requested.load(Ordering::Relaxed) {
                    tracing::debug!(%peer, "no complete request header within 10 s of accept: closed");
                    return;
                }
                waiting_for_first = false;
            }
            () = cancel.cancelled() => {
                connection.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(Duration::from_secs(5), connection).await;
                return;
            }
        }
    }
}

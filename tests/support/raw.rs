//! Raw TCP fakes: upstreams that misbehave below HTTP, where the simulator cannot reach.
//!
//! The simulator speaks well-formed HTTP with broken bodies; these fakes write whatever bytes a
//! test asks for: a status line of `000`, a `Content-Length` that lies, a reset (RST) mid-body,
//! a 1 GiB stream, a stall before any byte. A [`RawServer`] reads each request (head and a
//! `Content-Length` body, both capped), hands it to a route that picks a [`Reply`], and delivers
//! it. Everything is bounded: reads by size and time, stalls by [`MAX_HOLD`], streams by the
//! client leaving, and every connection task ends when the server is dropped.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// The longest a fake holds a connection it does not answer.
pub const MAX_HOLD: Duration = Duration::from_secs(60);
/// Cap on a request's head plus body as read by a fake.
const MAX_REQUEST: usize = 64 * 1024;
/// How long a fake waits for a request.
const READ_LIMIT: Duration = Duration::from_secs(5);

/// A request as a fake received it.
#[derive(Debug, Clone)]
pub struct RawRequest {
    /// Request line and headers, as sent.
    pub head: String,
    /// Form parameters from the query string and an urlencoded body.
    pub params: Vec<(String, String)>,
}

impl RawRequest {
    /// The first value of parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// What a fake does with a request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Writes these bytes, then closes (FIN); shared, so a large payload is held once.
    Bytes(Arc<[u8]>),
    /// Writes `head`, then `body` one byte per `every`, then closes.
    Trickle {
        /// Status line and headers, with the blank line.
        head: Vec<u8>,
        /// Sent byte by byte.
        body: Vec<u8>,
        /// Gap between bytes.
        every: Duration,
    },
    /// Writes `head`, then `chunk` over and over until `total` bytes or the client leaves.
    Stream {
        /// Status line and headers, with the blank line.
        head: Vec<u8>,
        /// Repeated.
        chunk: Arc<[u8]>,
        /// Body bytes to write at most.
        total: u64,
    },
    /// Writes these bytes, then resets the connection (RST via `SO_LINGER` 0).
    ResetAfter(Arc<[u8]>),
    /// Answers nothing and holds the connection until the client leaves (at most [`MAX_HOLD`]).
    Stall,
    /// Closes without a byte.
    Close,
    /// Writes these bytes (a response without `Connection: close`, see [`kept_json`]) and keeps
    /// the connection for the next request, closing it (FIN) after `idle` without one, as a
    /// server's keep-alive timeout does.
    KeepAlive {
        /// The whole response.
        bytes: Arc<[u8]>,
        /// How long the connection may idle.
        idle: Duration,
    },
}

/// A response head: status line (`status` and `reason` verbatim, so `000` is possible) and
/// headers, ending with the blank line.
pub fn head(status_line: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = format!("{status_line}\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("Connection: close\r\n\r\n");
    out.into_bytes()
}

impl Reply {
    /// [`Reply::Bytes`] from anything byte-like.
    pub fn bytes(bytes: impl Into<Vec<u8>>) -> Self {
        Self::Bytes(bytes.into().into())
    }
}

/// A complete response with an honest `Content-Length`.
pub fn response(status: u16, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = head(
        &format!("HTTP/1.1 {status} Whatever"),
        &[
            ("Content-Type", content_type),
            ("Content-Length", &body.len().to_string()),
        ],
    );
    out.extend_from_slice(body);
    out
}

/// A JSON response that leaves the connection open, for [`Reply::KeepAlive`].
pub fn kept_json(status: u16, body: &str) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} Whatever\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

/// A JSON response.
pub fn json(status: u16, body: &str) -> Vec<u8> {
    response(status, "application/json", body.as_bytes())
}

type Route = dyn Fn(&RawRequest) -> Reply + Send + Sync;

/// A fake upstream on 127.0.0.1; stops (with all its connections) when dropped.
#[derive(Debug)]
pub struct RawServer {
    /// Where it listens.
    pub addr: SocketAddr,
    cancel: CancellationToken,
    seen: Arc<Mutex<Vec<RawRequest>>>,
    connections: Arc<AtomicUsize>,
}

impl RawServer {
    /// Binds 127.0.0.1:0 and answers every request with `route(request)`.
    pub async fn start(route: impl Fn(&RawRequest) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("bound address");
        let cancel = CancellationToken::new();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let route: Arc<Route> = Arc::new(route);
        {
            let cancel = cancel.clone();
            let seen = Arc::clone(&seen);
            let connections = Arc::clone(&connections);
            tokio::spawn(async move {
                loop {
                    let stream = tokio::select! {
                        () = cancel.cancelled() => return,
                        accepted = listener.accept() => match accepted {
                            Ok((stream, _)) => stream,
                            Err(_) => {
                                tokio::time::sleep(Duration::from_millis(20)).await;
                                continue;
                            }
                        },
                    };
                    connections.fetch_add(1, Ordering::Relaxed);
                    let route = Arc::clone(&route);
                    let seen = Arc::clone(&seen);
                    let cancel = cancel.clone();
                    tokio::spawn(async move {
                        tokio::select! {
                            () = cancel.cancelled() => {}
                            () = serve(stream, route.as_ref(), &seen) => {}
                        }
                    });
                }
            });
        }
        Self {
            addr,
            cancel,
            seen,
            connections,
        }
    }

    /// Answers every request with the same reply.
    pub async fn always(reply: Reply) -> Self {
        Self::start(move |_| reply.clone()).await
    }

    /// `http://{addr}/2.0/`
    pub fn base_url(&self) -> String {
        format!("http://{}/2.0/", self.addr)
    }

    /// The requests read so far.
    pub fn requests(&self) -> Vec<RawRequest> {
        self.seen.lock().expect("not poisoned").clone()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// A port on 127.0.0.1 where nothing listens (bound, then released).
pub async fn refused_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    listener.local_addr().expect("bound address")
}

async fn serve(mut stream: TcpStream, route: &Route, seen: &Mutex<Vec<RawRequest>>) {
    loop {
        let Ok(Some(request)) = tokio::time::timeout(READ_LIMIT, read_request(&mut stream)).await
        else {
            return;
        };
        let reply = route(&request);
        seen.lock().expect("not poisoned").push(request);
        if let Reply::KeepAlive { bytes, idle } = reply {
            if stream.write_all(&bytes).await.is_err() {
                return;
            }
            // The next request, or the end of the client, within `idle`; else close.
            if let Ok(Ok(())) = tokio::time::timeout(idle, stream.readable()).await {
                continue;
            }
            let _ = stream.shutdown().await;
            return;
        }
        // Write errors mean the client left, which is what most faults provoke.
        let _ = deliver(&mut stream, reply).await;
        return;
    }
}

async fn deliver(stream: &mut TcpStream, reply: Reply) -> std::io::Result<()> {
    match reply {
        Reply::Bytes(bytes) => {
            stream.write_all(&bytes).await?;
            stream.shutdown().await
        }
        Reply::Trickle { head, body, every } => {
            stream.write_all(&head).await?;
            for byte in body {
                stream.write_all(&[byte]).await?;
                stream.flush().await?;
                tokio::time::sleep(every).await;
            }
            stream.shutdown().await
        }
        Reply::Stream { head, chunk, total } => {
            stream.write_all(&head).await?;
            let mut left = total;
            while left > 0 {
                let n = usize::try_from(left).map_or(chunk.len(), |l| l.min(chunk.len()));
                stream.write_all(&chunk[..n]).await?;
                left -= n as u64;
            }
            stream.shutdown().await
        }
        Reply::ResetAfter(bytes) => {
            stream.write_all(&bytes).await?;
            stream.flush().await?;
            // Let the bytes leave before the reset discards the send queue.
            tokio::time::sleep(Duration::from_millis(50)).await;
            stream.set_zero_linger()?;
            Ok(())
        }
        Reply::Stall => {
            let mut sink = [0_u8; 1024];
            let until_closed = async { while stream.read(&mut sink).await.is_ok_and(|n| n > 0) {} };
            let _ = tokio::time::timeout(MAX_HOLD, until_closed).await;
            Ok(())
        }
        Reply::Close => Ok(()),
        Reply::KeepAlive { bytes, .. } => stream.write_all(&bytes).await,
    }
}

/// Reads one request: head up to the blank line, then a `Content-Length` body, both capped.
async fn read_request(stream: &mut TcpStream) -> Option<RawRequest> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0_u8; 4096];
    let head_end = loop {
        if let Some(pos) = find(&buf, b"\r\n\r\n") {
            break pos;
        }
        if buf.len() > MAX_REQUEST {
            return None;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .skip(1)
        .find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0)
        .min(MAX_REQUEST);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let target = head.split_whitespace().nth(1).unwrap_or("");
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let mut params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    params.extend(url::form_urlencoded::parse(&body).into_owned());
    Some(RawRequest { head, params })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

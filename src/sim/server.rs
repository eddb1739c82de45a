//! The simulator's TCP server: accepts connections, reads one request each, asks `answer` what to
//! say, records the request, and sends the answer the way the scenario wants it delivered, including
//! the broken ways (short bodies, stalls, trickles).
//!
//! Connections run on a `JoinSet` owned by `serve`, so shutdown aborts them all, stalled ones
//! included. The only shared state is behind one `std::sync::Mutex`, never held across an `.await`.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, timeout};
use tracing::{debug, warn};

use super::answer::{self, Asked, Delivery, Memory, Reply};
use super::http::{self, RequestError};
use super::limits::{RateLimiter, Windows};
use super::scenario::{Phase, Scenario};
use super::writes::Clock;

/// A client gets this long to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// A stalled answer gives up after this long even if the client stays.
const MAX_STALL: Duration = Duration::from_secs(600);
/// `requests()` keeps this many of the most recent requests, so a long `simulate` run stays bounded.
const MAX_SEEN: usize = 10_000;

/// One request as the simulator saw it; tests assert on these.
#[derive(Clone)]
pub struct SeenRequest {
    /// `GET` or `POST`.
    pub http_method: String,
    /// The `method` parameter, when sent.
    pub method: Option<String>,
    /// Query-string and form parameters merged (the form wins on a clash).
    pub params: BTreeMap<String, String>,
    pub at: Instant,
}

impl fmt::Debug for SeenRequest {
    // Credentials stay out of any log that prints a request.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let params: BTreeMap<_, _> = self
            .params
            .iter()
            .map(|(k, v)| match k.as_str() {
                "api_key" | "api_sig" | "sk" | "password" | "token" => (k.as_str(), "<redacted>"),
                _ => (k.as_str(), v.as_str()),
            })
            .collect();
        f.debug_struct("SeenRequest")
            .field("http_method", &self.http_method)
            .field("method", &self.method)
            .field("params", &params)
            .field("at", &self.at)
            .finish()
    }
}

/// A handle to a simulated Last.fm API; clones share one state.
#[derive(Debug, Clone)]
pub struct Simulator {
    state: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct State {
    /// What to answer; `set_scenario` swaps it.
    scenario: Scenario,
    /// Time zero of the scenario's timeline; `set_scenario` resets it.
    started: Instant,
    /// The most recent requests, oldest first, for tests and debugging.
    seen: VecDeque<SeenRequest>,
    /// Every request ever seen, including those `seen` has dropped.
    seen_total: usize,
    /// The simulated API's limiter and play store.
    memory: Memory,
}

impl Simulator {
    /// A simulator for `scenario`, whose timeline starts now.
    pub fn new(scenario: Scenario) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                scenario,
                started: Instant::now(),
                seen: VecDeque::new(),
                seen_total: 0,
                memory: Memory::default(),
            })),
        }
    }

    /// Swaps the scenario and restarts its timeline at 0.
    pub fn set_scenario(&self, scenario: Scenario) {
        let mut state = self.lock();
        state.scenario = scenario;
        state.started = Instant::now();
        state.memory.limiter = RateLimiter::default();
        state.memory.windows = Windows::default();
    }

    /// The requests to `/2.0/` seen so far, oldest first (at most the latest 10 000).
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.lock().seen.iter().cloned().collect()
    }

    /// How many requests the simulator has answered or is answering.
    pub fn request_count(&self) -> usize {
        self.lock().seen_total
    }

    /// Serves until `shutdown` completes, then aborts the connections still open.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        debug!(address = %listener.local_addr()?, "simulator listening");
        let mut connections = JoinSet::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let sim = self.clone();
                        connections.spawn(async move { sim.handle(stream).await });
                    }
                    // Usually out of file descriptors: wait for some to close rather than spin.
                    Err(error) => {
                        warn!(%error, "simulator failed to accept a connection");
                        sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(_) = connections.join_next() => {}
            }
        }
        connections.shutdown().await;
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind, still usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn handle(&self, mut stream: TcpStream) {
        let request = match timeout(READ_TIMEOUT, http::read_request(&mut stream)).await {
            Ok(Ok(request)) => request,
            Ok(Err(RequestError::Reject(status, reason))) => {
                return send_plain(&mut stream, status, reason).await;
            }
            Ok(Err(RequestError::Closed)) | Err(_) => return,
        };
        if !request.is_api_path() {
            return send_plain(&mut stream, 404, "not found").await;
        }
        if !matches!(request.method.as_str(), "GET" | "POST") {
            return send_plain(&mut stream, 405, "use GET or POST").await;
        }
        let params = request.params();
        let reply = {
            let mut guard = self.lock();
            let state = &mut *guard;
            let now = Instant::now();
            let phase = state.scenario.phase_at(now.duration_since(state.started));
            let clock = Clock {
                at: now,
                unix: unix_now(),
            };
            let asked = Asked {
                params: &params,
                is_post: request.method == "POST",
            };
            let reply = answer::decide(&state.scenario, phase, asked, &mut state.memory, clock);
            debug!(
                method = params.get("method").map(String::as_str),
                phase = phase.map(Phase::name),
                response = reply.kind,
                "simulator answers"
            );
            state.seen_total += 1;
            if state.seen.len() == MAX_SEEN {
                state.seen.pop_front();
            }
            state.seen.push_back(SeenRequest {
                http_method: request.method,
                method: params.get("method").cloned(),
                params,
                at: now,
            });
            reply
        };
        sleep(reply.delay).await;
        // Write errors mean the client left; there is nobody to tell.
        let _ = deliver(&mut stream, reply).await;
    }
}

/// The wall clock in Unix seconds; a clock before 1970 counts as 1970.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn deliver(stream: &mut TcpStream, reply: Reply) -> std::io::Result<()> {
    let body_len = match reply.delivery {
        Delivery::Stall => return stall(stream).await,
        Delivery::Filler { bytes } => bytes,
        Delivery::Whole | Delivery::CutShort | Delivery::Trickle => reply.body.len() as u64,
    };
    let head = http::response_head(reply.status, &reply.content_type, body_len, &reply.headers);
    stream.write_all(head.as_bytes()).await?;
    match reply.delivery {
        Delivery::Whole => stream.write_all(&reply.body).await?,
        Delivery::CutShort => {
            stream
                .write_all(&reply.body[..reply.body.len() / 2])
                .await?;
        }
        Delivery::Trickle => {
            for (i, byte) in reply.body.iter().enumerate() {
                if i > 0 {
                    sleep(Duration::from_secs(1)).await;
                }
                stream.write_all(&[*byte]).await?;
                stream.flush().await?;
            }
        }
        Delivery::Filler { bytes } => send_filler(stream, bytes).await?,
        Delivery::Stall => {}
    }
    stream.shutdown().await
}

/// Holds the connection without answering until the client leaves or `MAX_STALL` passes.
async fn stall(stream: &mut TcpStream) -> std::io::Result<()> {
    let mut sink = [0_u8; 1024];
    let wait_for_close = async { while stream.read(&mut sink).await.is_ok_and(|n| n > 0) {} };
    let _ = timeout(MAX_STALL, wait_for_close).await;
    Ok(())
}

/// `{"pad":"xxxx…"}` of exactly `bytes` bytes, written in chunks and never held whole.
async fn send_filler(stream: &mut TcpStream, bytes: u64) -> std::io::Result<()> {
    const OPEN: &[u8] = b"{\"pad\":\"";
    const CLOSE: &[u8] = b"\"}";
    let frame = (OPEN.len() + CLOSE.len()) as u64;
    let (open, close) = if bytes >= frame {
        (OPEN, CLOSE)
    } else {
        (&b""[..], &b""[..])
    };
    stream.write_all(open).await?;
    let chunk = [b'x'; 8192];
    let mut left = bytes - (open.len() + close.len()) as u64;
    while left > 0 {
        let n = usize::try_from(left).map_or(chunk.len(), |l| l.min(chunk.len()));
        stream.write_all(&chunk[..n]).await?;
        left -= n as u64;
    }
    stream.write_all(close).await
}

async fn send_plain(stream: &mut TcpStream, status: u16, text: &str) {
    let head = http::response_head(status, "text/plain; charset=utf-8", text.len() as u64, &[]);
    let sent = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(text.as_bytes()).await?;
        stream.shutdown().await
    };
    // The client may already be gone; nothing else to do then.
    let _ = sent.await;
}

/// Binds 127.0.0.1 on a free port and serves `scenario` on a background task until the runtime
/// stops; returns the handle and the address to point a client at (`http://{addr}/2.0/`).
pub async fn spawn_local(scenario: Scenario) -> std::io::Result<(Simulator, std::net::SocketAddr)> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let sim = Simulator::new(scenario);
    let server = sim.clone();
    tokio::spawn(async move {
        if let Err(error) = server.serve(listener, std::future::pending()).await {
            warn!(%error, "simulator stopped");
        }
    });
    Ok((sim, addr))
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use serde_json::Value;

    use super::*;
    use crate::probe::sign::api_sig;

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    /// A response as a raw client sees it; `body` is everything after the head up to EOF.
    #[derive(Debug)]
    struct Response {
        status: u16,
        head: String,
        body: Vec<u8>,
    }

    impl Response {
        fn header(&self, name: &str) -> Option<&str> {
            self.head.lines().find_map(|line| {
                let (n, v) = line.split_once(':')?;
                n.eq_ignore_ascii_case(name).then(|| v.trim())
            })
        }

        fn content_length(&self) -> usize {
            self.header("content-length").unwrap().parse().unwrap()
        }

        fn json(&self) -> Value {
            serde_json::from_slice(&self.body).unwrap()
        }

        /// Status and Last.fm error code of a JSON answer.
        fn outcome(&self) -> (u16, Option<u64>) {
            (self.status, self.json()["error"].as_u64())
        }

        fn text(&self) -> String {
            String::from_utf8_lossy(&self.body).into_owned()
        }
    }

    fn parse(raw: &[u8]) -> Response {
        let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8(raw[..end].to_vec()).unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        Response {
            status,
            head,
            body: raw[end + 4..].to_vec(),
        }
    }

    /// Sends raw bytes and reads to EOF, within five seconds.
    async fn exchange(addr: SocketAddr, request: &[u8]) -> Response {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut raw = Vec::new();
        timeout(Duration::from_secs(5), stream.read_to_end(&mut raw))
            .await
            .expect("the simulator answers within 5 s")
            .unwrap();
        parse(&raw)
    }

    fn post_request(form: &str) -> Vec<u8> {
        format!(
            "POST /2.0/ HTTP/1.1\r\nHost: sim\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\n\r\n{form}",
            form.len()
        )
        .into_bytes()
    }

    /// POSTs `form` plus the default api_key.
    async fn post(addr: SocketAddr, form: &str) -> Response {
        exchange(addr, &post_request(&format!("api_key={KEY}&{form}"))).await
    }

    async fn start(scenario_toml: &str) -> (Simulator, SocketAddr) {
        spawn_local(Scenario::from_toml_str(scenario_toml).unwrap())
            .await
            .unwrap()
    }

    /// A scenario whose only phase answers every method with `rule`.
    async fn start_with(rule: &str) -> (Simulator, SocketAddr) {
        start(&format!(
            "[[phases]]\nname = \"p\"\nrules = [{{ {rule} }}]\n"
        ))
        .await
    }

    #[tokio::test]
    async fn json_is_chosen_by_format_and_xml_is_the_default() {
        let (_, addr) = spawn_local(Scenario::healthy()).await.unwrap();
        let json = post(addr, "method=user.getInfo&user=canary&format=json").await;
        assert_eq!(json.status, 200);
        assert!(
            json.header("content-type")
                .unwrap()
                .starts_with("application/json")
        );
        assert_eq!(json.header("connection"), Some("close"));
        assert_eq!(json.content_length(), json.body.len());
        assert_eq!(json.json()["user"]["name"], "canary");

        let xml = post(addr, "method=track.search&track=Believe").await;
        assert!(xml.header("content-type").unwrap().starts_with("text/xml"));
        let text = xml.text();
        assert!(text.contains("<lfm status=\"ok\">"), "{text}");
        assert!(text.contains("<opensearch:totalResults>"), "{text}");
    }

    #[tokio::test]
    async fn query_string_parameters_work_with_get() {
        let (sim, addr) = spawn_local(Scenario::healthy()).await.unwrap();
        let request = format!(
            "GET /2.0/?method=artist.getInfo&artist=Cher&format=json&api_key={KEY} HTTP/1.1\r\n\r\n"
        );
        let response = exchange(addr, request.as_bytes()).await;
        assert_eq!(response.json()["artist"]["name"], "Cher");
        let seen = sim.requests();
        assert_eq!(sim.request_count(), 1);
        assert_eq!(seen[0].http_method, "GET");
        assert_eq!(seen[0].method.as_deref(), Some("artist.getInfo"));
        assert_eq!(seen[0].params["artist"], "Cher");
        assert!(
            !format!("{:?}", seen[0]).contains(KEY),
            "Debug redacts the key"
        );
    }

    #[tokio::test]
    async fn other_paths_are_plain_404s_and_huge_heads_431() {
        let (sim, addr) = spawn_local(Scenario::healthy()).await.unwrap();
        let response = exchange(addr, b"GET /3.0/ HTTP/1.1\r\n\r\n").await;
        assert_eq!(response.status, 404);
        assert!(
            response
                .header("content-type")
                .unwrap()
                .starts_with("text/plain")
        );
        let huge = format!("GET /2.0/ HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000));
        assert_eq!(exchange(addr, huge.as_bytes()).await.status, 431);
        assert_eq!(sim.request_count(), 0);
    }

    /// One phase where each method gets a different answer.
    const PER_METHOD: &str = r#"
        [[phases]]
        name = "broken"
        rules = [
          { method = "artist.getInfo", respond = "error", code = 8 },
          { method = "chart.getTopArtists", respond = "html" },
          { method = "geo.getTopArtists", respond = "empty" },
          { method = "track.search", respond = "truncated" },
          { method = "album.getInfo", respond = "reset" },
          { method = "library.getArtists", respond = "oversized", bytes = 100000 },
          { method = "user.getFriends", respond = "raw", body = "<b>hi</b>", content_type = "text/html", status = 418 },
        ]
    "#;

    #[tokio::test]
    async fn error_rules_use_the_documented_status_in_both_formats() {
        let (_, addr) = start(PER_METHOD).await;
        let json = post(addr, "method=artist.getInfo&artist=Cher&format=json").await;
        assert_eq!(json.outcome(), (503, Some(8)));
        let message = json.json()["message"].as_str().map(str::to_owned);
        assert!(message.unwrap().starts_with("Operation failed"));
        let xml = post(addr, "method=artist.getInfo&artist=Cher").await;
        assert_eq!(xml.status, 503);
        assert!(
            xml.text()
                .contains("<lfm status=\"failed\">\n<error code=\"8\">")
        );
        // Unmatched methods behave normally.
        let other = post(addr, "method=tag.getInfo&tag=rock&format=json").await;
        assert_eq!(other.outcome(), (200, None));
    }

    #[tokio::test]
    async fn broken_bodies_are_what_they_claim() {
        let (_, addr) = start(PER_METHOD).await;
        let html = post(addr, "method=chart.getTopArtists&format=json").await;
        assert_eq!(html.status, 502);
        assert!(
            html.header("content-type")
                .unwrap()
                .starts_with("text/html")
        );
        assert!(
            html.text()
                .contains("The server encountered a temporary error")
        );

        let empty = post(addr, "method=geo.getTopArtists&country=x&format=json").await;
        assert_eq!((empty.status, empty.content_length()), (200, 0));
        assert!(empty.body.is_empty());

        let cut = post(addr, "method=track.search&track=Believe&format=json").await;
        assert_eq!((cut.status, cut.content_length()), (200, cut.body.len()));
        assert!(cut.body.starts_with(b"{\""));
        assert!(serde_json::from_slice::<Value>(&cut.body).is_err());

        let raw = post(addr, "method=user.getFriends").await;
        assert_eq!(
            (raw.status, raw.header("content-type")),
            (418, Some("text/html"))
        );
        assert_eq!(raw.body, b"<b>hi</b>");
    }

    #[tokio::test]
    async fn reset_lies_about_the_length_and_oversized_does_not() {
        let (_, addr) = start(PER_METHOD).await;
        let reset = post(
            addr,
            "method=album.getInfo&artist=Cher&album=Believe&format=json",
        )
        .await;
        assert_eq!(reset.status, 200);
        assert_eq!(reset.body.len(), reset.content_length() / 2);

        let big = post(addr, "method=library.getArtists&user=canary&format=json").await;
        assert_eq!((big.content_length(), big.body.len()), (100_000, 100_000));
        assert!(big.body.starts_with(b"{\"pad\":\"xxx"));
        assert!(big.body.ends_with(b"xx\"}"));
    }

    #[tokio::test]
    async fn stall_sends_nothing_while_the_client_waits() {
        let (sim, addr) = start_with("respond = \"stall\"").await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let form = format!("api_key={KEY}&method=user.getInfo");
        stream.write_all(&post_request(&form)).await.unwrap();
        let mut buf = [0_u8; 64];
        let read = timeout(Duration::from_millis(300), stream.read(&mut buf)).await;
        assert!(read.is_err(), "nothing arrives within 300 ms");
        assert_eq!(sim.request_count(), 1, "the request was read");
    }

    #[tokio::test]
    async fn trickle_sends_about_one_byte_per_second() {
        let (_, addr) = start_with("respond = \"trickle\"").await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let form = format!("api_key={KEY}&method=user.getInfo&user=canary&format=json");
        stream.write_all(&post_request(&form)).await.unwrap();
        let mut raw = Vec::new();
        let mut byte = [0_u8; 1];
        while !raw.ends_with(b"\r\n\r\n{") {
            stream.read_exact(&mut byte).await.unwrap();
            raw.push(byte[0]);
        }
        let first = Instant::now();
        timeout(Duration::from_secs(3), stream.read_exact(&mut byte))
            .await
            .unwrap()
            .unwrap();
        assert!(
            first.elapsed() >= Duration::from_millis(800),
            "{:?}",
            first.elapsed()
        );
        assert!(parse(&raw).content_length() > 100);
    }

    #[tokio::test]
    async fn retry_after_is_sent_only_when_a_rule_asks_for_it() {
        let (_, addr) = start_with("respond = \"error\", code = 29, retry_after = 7").await;
        let limited = post(addr, "method=user.getInfo&user=canary&format=json").await;
        assert_eq!(limited.outcome(), (429, Some(29)));
        assert_eq!(limited.header("retry-after"), Some("7"));
        let (_, addr) = spawn_local(Scenario::healthy()).await.unwrap();
        let plain = post(addr, "method=user.getInfo&user=canary&format=json").await;
        assert_eq!(
            plain.header("retry-after"),
            None,
            "the real API never sends it"
        );
    }

    #[tokio::test]
    async fn delay_holds_the_answer_back() {
        let (_, addr) = start_with("respond = \"success\", delay = \"300ms\"").await;
        let started = Instant::now();
        let response = post(addr, "method=user.getInfo&user=canary&format=json").await;
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!(response.json()["user"]["name"], "canary");
    }

    #[tokio::test]
    async fn keys_signatures_sessions_and_missing_users_are_checked() {
        let secret = "fedcba9876543210fedcba9876543210";
        let (_, addr) = start(&format!(
            "[[keys]]\napi_key = \"{KEY}\"\nsecret = \"{secret}\"\nsession_keys = [\"sk-canary\"]\n"
        ))
        .await;
        let unknown = "api_key=ffffffffffffffffffffffffffffffff&method=user.getInfo&format=json";
        assert_eq!(
            exchange(addr, &post_request(unknown)).await.outcome(),
            (403, Some(10))
        );

        let sign = |sk: &str, secret: &str| {
            let params = [("api_key", KEY), ("method", "user.getInfo"), ("sk", sk)];
            let sig = api_sig(params.iter().copied(), secret);
            format!("method=user.getInfo&sk={sk}&api_sig={sig}&format=json")
        };
        let good = post(addr, &sign("sk-canary", secret)).await;
        assert_eq!(good.json()["user"]["name"], "simuser");
        assert_eq!(
            post(addr, &sign("sk-canary", "nope")).await.outcome(),
            (400, Some(13))
        );
        assert_eq!(
            post(addr, &sign("sk-other", secret)).await.outcome(),
            (403, Some(9))
        );

        let ghost = post(
            addr,
            "method=user.getInfo&user=no-such-user-4711x&format=json",
        )
        .await;
        assert_eq!(ghost.outcome(), (404, Some(6)));
        assert_eq!(ghost.json()["message"], "User not found");
    }

    #[tokio::test]
    async fn a_signed_scrobble_over_tcp_shows_in_recent_tracks() {
        let secret = "fedcba9876543210fedcba9876543210";
        let (_, addr) = start(&format!(
            "[[keys]]\napi_key = \"{KEY}\"\nsecret = \"{secret}\"\n\
             session_users = {{ \"sk-writer\" = \"canary\" }}\n"
        ))
        .await;
        let params = [
            ("api_key", KEY),
            ("artist", "Cher"),
            ("method", "track.scrobble"),
            ("sk", "sk-writer"),
            ("timestamp", "1700000123"),
            ("track", "Strong Enough"),
        ];
        let sig = api_sig(params.iter().copied(), secret);
        let form = format!(
            "method=track.scrobble&artist=Cher&track=Strong+Enough&timestamp=1700000123\
             &sk=sk-writer&api_sig={sig}"
        );
        let written = post(addr, &form).await;
        assert_eq!(written.status, 200);
        assert!(
            written
                .text()
                .contains("<scrobbles accepted=\"1\" ignored=\"0\">"),
            "{}",
            written.text()
        );
        let read = post(addr, "method=user.getRecentTracks&user=canary&format=json").await;
        let first = &read.json()["recenttracks"]["track"][0];
        assert_eq!(first["name"], "Strong Enough");
        assert_eq!(first["date"]["uts"], "1700000123");
    }

    #[tokio::test]
    async fn beyond_the_rate_limit_the_answer_is_29() {
        let (_, addr) = start("rate_limit_per_second = 2.0\n").await;
        let mut outcomes = Vec::new();
        for _ in 0..4 {
            outcomes.push(
                post(addr, "method=tag.getInfo&tag=rock&format=json")
                    .await
                    .outcome(),
            );
        }
        assert_eq!(outcomes[0], (200, None));
        assert_eq!(outcomes[3], (429, Some(29)), "{outcomes:?}");
    }

    #[tokio::test]
    async fn set_scenario_swaps_the_answers() {
        let (sim, addr) = spawn_local(Scenario::healthy()).await.unwrap();
        assert_eq!(post(addr, "method=tag.getInfo&tag=rock").await.status, 200);
        let suspended = "[[phases]]\nname = \"s\"\nrules = [{ respond = \"error\", code = 26 }]\n";
        sim.set_scenario(Scenario::from_toml_str(suspended).unwrap());
        let response = post(addr, "method=tag.getInfo&tag=rock&format=json").await;
        assert_eq!(response.outcome(), (403, Some(26)));
    }

    #[tokio::test]
    async fn serve_returns_on_shutdown_and_drops_stalled_connections() {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sim = Simulator::new(
            Scenario::from_toml_str(
                "[[phases]]\nname = \"s\"\nrules = [{ respond = \"stall\" }]\n",
            )
            .unwrap(),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(sim.clone().serve(listener, async {
            let _ = stopped.await;
        }));
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let form = format!("api_key={KEY}&method=user.getInfo");
        stream.write_all(&post_request(&form)).await.unwrap();
        let read_by_server = async {
            while sim.request_count() == 0 {
                sleep(Duration::from_millis(10)).await;
            }
        };
        timeout(Duration::from_secs(2), read_by_server)
            .await
            .unwrap();
        stop.send(()).unwrap();
        timeout(Duration::from_secs(2), server)
            .await
            .expect("serve stops promptly")
            .unwrap()
            .unwrap();
        let mut rest = Vec::new();
        let read = timeout(Duration::from_secs(2), stream.read_to_end(&mut rest)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "the stalled connection is closed"
        );
    }
}

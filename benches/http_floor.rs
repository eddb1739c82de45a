//! The CPU floor of one HTTP/1.1 exchange on this machine (docs/PERFORMANCE.md), cold and on a
//! kept connection.
//!
//! A minimal blocking client (std only: connect, write one POST, read the response, close; no
//! runtime, no parsing beyond finding the end of the response, no allocation per request) against
//! an upstream on 127.0.0.1, measured in CPU time of the client thread (utime + stime of
//! /proc/thread-self/stat). Two connection modes: cold (a new connection per request, what the
//! monitor does by default) and kept (one connection for every request, what
//! `reuse_connections = true` does). Two paces: back to back, and one request every 10 ms, like
//! scheduled probes that run alone and find the CPU idle. Whatever a prober does, a run costs at
//! least this; docs/PERFORMANCE.md compares the daemon's scheduled runs with it.
//!
//! Run: `cargo bench --bench http_floor`; `FLOOR_UPSTREAM=127.0.0.1:PORT` uses an external
//! upstream (e.g. the nginx of bench/compare.sh, which serves POST /2.0/) instead of the built-in
//! one; `FLOOR_REQUESTS=N` sets the number of requests per pace (default 2000).

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

const BODY: &str = include_str!("../bench/artist.getInfo.json");
const FORM: &str =
    "artist=Cher&method=artist.getInfo&api_key=0123456789abcdef0123456789abcdef&format=json";

/// CPU time of the calling thread, user and system, in clock ticks (100 per second on Linux).
fn thread_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("Linux /proc is mounted");
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .map_or("", |(_, rest)| rest)
        .split(' ')
        .collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field(11), field(12))
}

/// A blocking upstream on its own thread: each connection is answered one request after another
/// until the client closes it (one request for a cold client, all of them for a kept one).
fn spawn_upstream() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("the upstream binds a port");
    let address = listener
        .local_addr()
        .expect("a bound listener has an address");
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    std::thread::spawn(move || {
        let mut buffer = [0_u8; 4096];
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            'requests: loop {
                let mut seen = 0;
                // Headers and the small form body arrive together; read until the body is in.
                while !buffer[..seen].ends_with(FORM.as_bytes()) {
                    match stream.read(&mut buffer[seen..]) {
                        Ok(0) | Err(_) => break 'requests,
                        Ok(n) => seen += n,
                    }
                }
                if stream.write_all(response.as_bytes()).is_err() {
                    break;
                }
            }
        }
    });
    address.to_string()
}

/// How the client treats its connection.
#[derive(Clone, Copy)]
enum Connection {
    /// A new connection for every request, closed after it.
    Cold,
    /// One connection for all requests.
    Kept,
}

/// Sends `request` and reads until the body's last byte: whether the whole response arrived.
/// Both upstreams send `Content-Length` and nothing after the body.
fn exchange(stream: &mut TcpStream, request: &[u8], buffer: &mut [u8]) -> bool {
    if stream.write_all(request).is_err() {
        return false;
    }
    let mut total = 0;
    while !buffer[..total].ends_with(BODY.trim_end().as_bytes()) {
        match stream.read(&mut buffer[total..]) {
            Ok(0) | Err(_) => return false,
            Ok(n) => total += n,
        }
    }
    total > BODY.len()
}

/// Microseconds of CPU per request: (user, system).
fn run(address: &str, connection: Connection, requests: u32, gap: Duration) -> (f64, f64) {
    let request = format!(
        "POST /2.0/ HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{FORM}",
        FORM.len()
    );
    let connect = || {
        let stream = TcpStream::connect(address).expect("the upstream accepts");
        stream.set_nodelay(true).expect("TCP_NODELAY can be set");
        stream
    };
    let mut kept = match connection {
        Connection::Kept => Some(connect()),
        Connection::Cold => None,
    };
    let mut buffer = vec![0_u8; 16 * 1024];
    let before = thread_ticks();
    for _ in 0..requests {
        if !gap.is_zero() {
            std::thread::sleep(gap);
        }
        // A kept connection the upstream closed (nginx ends one after 1,000 requests) is
        // replaced once; that reconnect is part of what keeping connections costs.
        for attempt in 0..2 {
            let mut cold = None;
            let stream = match kept.as_mut() {
                Some(stream) => stream,
                None => cold.insert(connect()),
            };
            if exchange(stream, request.as_bytes(), &mut buffer) {
                break;
            }
            assert!(
                kept.is_some() && attempt == 0,
                "the upstream answered the whole response"
            );
            kept = Some(connect());
        }
    }
    let after = thread_ticks();
    let per_request = |ticks: u64| ticks as f64 * 10_000.0 / f64::from(requests);
    (
        per_request(after.0 - before.0),
        per_request(after.1 - before.1),
    )
}

fn main() {
    let requests: u32 = std::env::var("FLOOR_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let address = std::env::var("FLOOR_UPSTREAM").unwrap_or_else(|_| spawn_upstream());
    println!("http floor: {requests} POSTs per pace and mode to {address}, client thread CPU");
    for round in 1..=2 {
        for (mode, connection) in [("cold", Connection::Cold), ("kept", Connection::Kept)] {
            for (pace, gap) in [
                ("back to back", Duration::ZERO),
                ("one every 10 ms", Duration::from_millis(10)),
            ] {
                let (user, system) = run(&address, connection, requests, gap);
                println!(
                    "round {round}: {mode}, {pace}: {:.0} us per request ({user:.0} user, {system:.0} system)",
                    user + system
                );
            }
        }
    }
}

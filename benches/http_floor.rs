//! The CPU floor of one cold HTTP/1.1 exchange on this machine (issue 6).
//!
//! A minimal blocking client (std only: connect, write one POST, read to the end, close; no
//! runtime, no parsing, no allocation per request) against an upstream on 127.0.0.1, measured in
//! CPU time of the client thread (utime + stime of /proc/thread-self/stat). Two paces:
//! back to back, and one request every 10 ms, like scheduled probes that run alone and find the
//! CPU idle. Whatever a prober does, a run costs at least this; docs/PERFORMANCE.md compares the
//! daemon's scheduled runs with it.
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

/// A blocking upstream on its own thread: every connection gets the JSON, then close.
fn spawn_upstream() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("the upstream binds a port");
    let address = listener
        .local_addr()
        .expect("a bound listener has an address");
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    std::thread::spawn(move || {
        let mut buffer = [0_u8; 4096];
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut seen = 0;
            // Headers and the small form body arrive together; read until the body is in.
            while let Ok(n) = stream.read(&mut buffer[seen..]) {
                seen += n;
                if n == 0 || buffer[..seen].ends_with(FORM.as_bytes()) {
                    break;
                }
            }
            let _ = stream.write_all(response.as_bytes());
        }
    });
    address.to_string()
}

/// Microseconds of CPU per request: (user, system).
fn run(address: &str, requests: u32, gap: Duration) -> (f64, f64) {
    let request = format!(
        "POST /2.0/ HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{FORM}",
        FORM.len()
    );
    let mut buffer = vec![0_u8; 16 * 1024];
    let before = thread_ticks();
    for _ in 0..requests {
        if !gap.is_zero() {
            std::thread::sleep(gap);
        }
        let mut stream = TcpStream::connect(address).expect("the upstream accepts");
        stream.set_nodelay(true).expect("TCP_NODELAY can be set");
        stream
            .write_all(request.as_bytes())
            .expect("the request is sent");
        let mut total = 0;
        while let Ok(n) = stream.read(&mut buffer) {
            if n == 0 {
                break;
            }
            total += n;
        }
        assert!(total > BODY.len(), "the whole response arrived");
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
    println!("http floor: {requests} cold POSTs per pace to {address}, client thread CPU");
    for round in 1..=2 {
        let (user, system) = run(&address, requests, Duration::ZERO);
        println!(
            "round {round}: back to back {:.0} us per request ({user:.0} user, {system:.0} system)",
            user + system
        );
        let (user, system) = run(&address, requests, Duration::from_millis(10));
        println!(
            "round {round}: one every 10 ms {:.0} us per request ({user:.0} user, {system:.0} system)",
            user + system
        );
    }
}

//! `/metrics` of a large configuration under slow scrapers: the real binary, one target with
//! thousands of probes (none of which runs during the test), and thirty scrapers that ask for the
//! exposition and then read almost nothing. Streamed, the daemon holds one piece per scraper, so
//! its memory grows by far less than thirty copies of the text, and a normal scrape still gets
//! the whole of it.

#![allow(
    clippy::unwrap_used,
    reason = "process and socket plumbing: a failed unwrap is a failed test"
)]

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::support::child::{ChildDaemon, many_probes};

const PROBES: usize = 1500;
const SLOW_SCRAPERS: usize = 30;

/// The daemon with `PROBES` probes that do not run during the test.
struct Running {
    daemon: ChildDaemon,
    addr: SocketAddr,
}

impl Running {
    fn start() -> Self {
        let config = many_probes(
            "interval = \"1h\"\nstartup_jitter = \"1h\"",
            "http://127.0.0.1:9/2.0/",
            "",
            PROBES,
        );
        let mut daemon = ChildDaemon::start("", &config, &[]);
        let addr = daemon.address();
        Self { daemon, addr }
    }

    fn rss_bytes(&self) -> u64 {
        self.daemon.rss_bytes()
    }

    /// Sends a scrape request on a new connection, reading nothing yet.
    fn ask(&self) -> TcpStream {
        let mut stream = TcpStream::connect(self.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .unwrap();
        stream
    }

    /// A whole scrape: the size of the response.
    fn scrape(&self) -> usize {
        let mut body = Vec::new();
        self.ask().read_to_end(&mut body).unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(
            text.starts_with("HTTP/1.1 200"),
            "{}",
            &text[..200.min(text.len())]
        );
        assert!(
            text.contains("# HELP process_"),
            "the exposition is complete"
        );
        body.len()
    }
}

#[test]
fn thirty_slow_scrapers_hold_far_less_than_thirty_copies_of_a_large_exposition() {
    let daemon = Running::start();
    let size = daemon.scrape();
    assert!(size > 5 << 20, "a large exposition: {size} bytes");
    let before = daemon.rss_bytes();
    let mut slow: Vec<TcpStream> = (0..SLOW_SCRAPERS).map(|_| daemon.ask()).collect();
    for stream in &mut slow {
        let mut start = [0_u8; 1024];
        stream.read_exact(&mut start).unwrap();
        assert!(start.starts_with(b"HTTP/1.1 200"));
    }
    // Let every response fill what the sockets take and stop there.
    std::thread::sleep(Duration::from_secs(2));
    let during = daemon.rss_bytes();
    assert!(
        daemon.scrape() > 5 << 20,
        "a normal scrape still gets all of it meanwhile"
    );
    let grown = during.saturating_sub(before);
    let copies = grown as f64 / size as f64;
    eprintln!(
        "exposition {size} bytes; RSS {before} -> {during} bytes with {SLOW_SCRAPERS} slow scrapers ({copies:.2} copies)"
    );
    assert!(
        copies < 3.0,
        "{SLOW_SCRAPERS} slow scrapers grew the RSS by {grown} bytes, {copies:.1} copies of the text"
    );
    drop(slow);
}

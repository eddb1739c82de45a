//! `/metrics` of a large configuration under slow scrapers: the real binary, one target with
//! thousands of probes (none of which runs during the test), and thirty scrapers that ask for the
//! exposition and then read almost nothing. Streamed, the daemon holds one piece per scraper, so
//! its memory grows by far less than thirty copies of the text, and a normal scrape still gets
//! the whole of it.

#![allow(
    clippy::unwrap_used,
    reason = "process and socket plumbing: a failed unwrap is a failed test"
)]

use std::io::{BufRead as _, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command};
use std::time::Duration;

use crate::support::{CANARY_KEY, spawn_with_stderr};

const PROBES: usize = 1500;
const SLOW_SCRAPERS: usize = 30;

/// One target with `PROBES` probes that do not run during the test.
fn config() -> String {
    let mut text = format!(
        "[defaults]\ninterval = \"1h\"\nstartup_jitter = \"1h\"\n\n[[targets]]\nname = \"t\"\n\
         base_url = \"http://127.0.0.1:9/2.0/\"\napi_key = \"{CANARY_KEY}\"\n"
    );
    for i in 0..PROBES {
        text.push_str(&format!(
            "\n[[targets.probes]]\nname = \"p{i}\"\nmethod = \"artist.getInfo\"\n"
        ));
    }
    text
}

/// The daemon as a child process, killed on drop.
struct Running {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, config()).unwrap();
        let (child, stderr) = spawn_with_stderr(
            Command::new(env!("CARGO_BIN_EXE_lastfm-monitor"))
                .args([
                    "--web.listen-address",
                    "127.0.0.1:0",
                    "--log.format",
                    "json",
                ])
                .arg("--config.file")
                .arg(&path),
        );
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let addr = loop {
            let line = rx
                .recv_timeout(Duration::from_secs(20))
                .expect("the daemon says it is running within 20 s");
            let event: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if event["fields"]["message"] == "lastfm-monitor is running" {
                break event["fields"]["address"]
                    .as_str()
                    .unwrap()
                    .parse()
                    .unwrap();
            }
        };
        Self {
            child,
            addr,
            _dir: dir,
        }
    }

    fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        kib * 1024
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

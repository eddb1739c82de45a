//! Is it Last.fm, or is it us? The real daemon, a target whose port is closed, and a reference
//! that is down, then up: the same refused connection is blamed on our network while every
//! reference fails, and on Last.fm once one answers. All on 127.0.0.1.

use std::net::SocketAddr;
use std::time::Duration;

use crate::support::{Daemon, assert_metric, metric, metric_sum, target_toml};

/// A port on 127.0.0.1 that nothing listens on (bound, then released).
fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("bound address")
}

/// A daemon whose one probe runs every second against a closed port, with one reference at
/// `reference` checked every second.
async fn daemon(target: SocketAddr, reference: Option<SocketAddr>) -> Daemon {
    let references = reference.map_or(String::new(), |at| {
        format!(
            "[[references]]\nname = \"gateway\"\nurl = \"http://{at}/\"\ninterval = \"1s\"\ntimeout = \"500ms\"\n"
        )
    });
    let text = format!(
        "[defaults]\nstartup_jitter = \"0s\"\ninterval = \"1s\"\ntimeout = \"800ms\"\n{references}{}\n[[targets.probes]]\nmethod = \"artist.getInfo\"\nparams = {{ artist = \"Cher\" }}\n",
        target_toml(target, "down_after = 2\nup_after = 1")
    );
    Daemon::start_config(&text, None).await
}

const TARGET: (&str, &str) = ("target", "sim");
const REFUSED: [(&str, &str); 2] = [("phase", "connect"), ("reason", "refused")];

#[tokio::test]
async fn a_refused_connection_is_ours_while_every_reference_fails_and_theirs_once_one_answers() {
    let reference = closed_port();
    let daemon = daemon(closed_port(), Some(reference)).await;
    assert_blamed_on_our_network(&daemon).await;

    // The reference comes back: the condition clears, and the same refusal is Last.fm's again.
    let server = serve_reference(reference).await;
    assert_blamed_on_last_fm_once_the_reference_answers(&daemon).await;
    daemon.stop().await;
    server.abort();
}

/// While every reference is refused: three refused runs, the reference down with its own
/// failure counted, `local_network_down` raised, availability untouched, and the debug trace
/// and the status page both say "our network".
async fn assert_blamed_on_our_network(daemon: &Daemon) {
    let text = daemon
        .wait_for(Duration::from_secs(10), |text| {
            metric_sum(
                text,
                "lastfm_probe_failures_total",
                &[TARGET, REFUSED[0], REFUSED[1]],
            ) >= 3.0
        })
        .await;
    assert!(
        metric_sum(
            text.as_str(),
            "lastfm_probe_failures_total",
            &[TARGET, REFUSED[0], REFUSED[1]]
        ) >= 3.0,
        "three refused runs:\n{text}"
    );
    assert_metric(
        &text,
        "lastfm_reference_up",
        &[("reference", "gateway")],
        0.0,
    );
    assert!(
        metric(
            &text,
            "lastfm_reference_failures_total",
            &[("reference", "gateway"), REFUSED[0], REFUSED[1]]
        )
        .is_some_and(|n| n >= 1.0),
        "the reference's own failure is counted by phase and reason:\n{text}"
    );
    assert_metric(
        &text,
        "lastfm_condition",
        &[TARGET, ("condition", "local_network_down")],
        1.0,
    );
    // Three failures past down_after = 2, and still available: local failures do not move it.
    assert_metric(&text, "lastfm_service_available", &[TARGET], 1.0);
    let (_, trace) = daemon
        .get("/probe?target=sim&probe=artist.getInfo&debug=true")
        .await;
    assert!(trace.contains("blame: local"), "{trace}");
    assert!(
        trace.contains("failed in phase: connect (reason refused)"),
        "{trace}"
    );
    let (_, page) = daemon.get("/").await;
    assert!(page.contains("at connect (refused), our network"), "{page}");
}

/// Rebinds the reference's port and answers every connection with `204 No Content`.
async fn serve_reference(reference: SocketAddr) -> tokio::task::JoinHandle<()> {
    let listener = tokio::net::TcpListener::bind(reference)
        .await
        .expect("rebind the reference port");
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf).await;
            let _ = stream
                .write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
                .await;
        }
    })
}

/// Once the reference answers: it is up with its status code, `local_network_down` clears,
/// and the target goes unavailable.
async fn assert_blamed_on_last_fm_once_the_reference_answers(daemon: &Daemon) {
    let text = daemon
        .wait_for(Duration::from_secs(10), |text| {
            metric(text, "lastfm_service_available", &[TARGET]) == Some(0.0)
        })
        .await;
    assert_metric(
        &text,
        "lastfm_reference_up",
        &[("reference", "gateway")],
        1.0,
    );
    assert_metric(
        &text,
        "lastfm_reference_http_status_code",
        &[("reference", "gateway")],
        204.0,
    );
    assert_metric(
        &text,
        "lastfm_condition",
        &[TARGET, ("condition", "local_network_down")],
        0.0,
    );
    assert_metric(&text, "lastfm_service_available", &[TARGET], 0.0);
}

#[tokio::test]
async fn without_references_the_same_failure_is_blamed_on_last_fm() {
    let daemon = daemon(closed_port(), None).await;
    let text = daemon
        .wait_for(Duration::from_secs(10), |text| {
            metric(text, "lastfm_service_available", &[TARGET]) == Some(0.0)
        })
        .await;
    assert_metric(&text, "lastfm_service_available", &[TARGET], 0.0);
    assert_metric(
        &text,
        "lastfm_condition",
        &[TARGET, ("condition", "local_network_down")],
        0.0,
    );
    let (_, page) = daemon.get("/").await;
    assert!(page.contains("No reference is configured"), "{page}");
    daemon.stop().await;
}

/// A 200 whose body then stalls, and a request written whose headers never come, while every
/// reference fails: both reached Last.fm (the request was written), so both are Last.fm's, never
/// our network's: `local_network_down` stays 0 and availability drops. The 200 is recorded
/// beside the body's timeout: in the status gauge, the responses counter and the trace.
#[tokio::test]
async fn a_timeout_after_the_request_was_written_is_theirs_even_while_every_reference_fails() {
    use crate::support::raw::{self, RawServer, Reply};
    let upstream = RawServer::start(|request| {
        if request.param("method") == Some("artist.getInfo") {
            Reply::Trickle {
                head: raw::head(
                    "HTTP/1.1 200 OK",
                    &[
                        ("Content-Type", "application/json"),
                        ("Content-Length", "64"),
                    ],
                ),
                body: vec![b' '; 64],
                every: Duration::from_secs(3),
            }
        } else {
            Reply::Stall
        }
    })
    .await;
    let text = format!(
        "[defaults]\nstartup_jitter = \"0s\"\ninterval = \"1s\"\ntimeout = \"800ms\"\n\
         [[references]]\nname = \"gateway\"\nurl = \"http://{}/\"\ninterval = \"1s\"\ntimeout = \"500ms\"\n\
         {}\n[[targets.probes]]\nmethod = \"artist.getInfo\"\n\n[[targets.probes]]\nmethod = \"album.getInfo\"\n",
        closed_port(),
        target_toml(upstream.addr, "down_after = 2\nup_after = 1")
    );
    let daemon = Daemon::start_config(&text, None).await;
    let body = [
        ("probe", "artist.getInfo"),
        ("phase", "body"),
        ("reason", "timeout"),
    ];
    let head = [
        ("probe", "album.getInfo"),
        ("phase", "request"),
        ("reason", "timeout"),
    ];
    let text = daemon
        .wait_for(Duration::from_secs(15), |text| {
            metric_sum(text, "lastfm_probe_failures_total", &body) >= 2.0
                && metric_sum(text, "lastfm_probe_failures_total", &head) >= 2.0
                && metric(text, "lastfm_service_available", &[TARGET]) == Some(0.0)
        })
        .await;
    assert!(
        metric_sum(&text, "lastfm_probe_failures_total", &body) >= 2.0
            && metric_sum(&text, "lastfm_probe_failures_total", &head) >= 2.0,
        "two runs of each timed out after the request was written:\n{text}"
    );
    assert_metric(
        &text,
        "lastfm_reference_up",
        &[("reference", "gateway")],
        0.0,
    );
    assert_metric(
        &text,
        "lastfm_condition",
        &[TARGET, ("condition", "local_network_down")],
        0.0,
    );
    assert_metric(&text, "lastfm_service_available", &[TARGET], 0.0);
    assert_the_status_is_kept(&daemon, &text).await;
    daemon.stop().await;
}

/// The status of the headers that came before the body stalled: in the gauge, the responses
/// counter and the trace; none where no headers came.
async fn assert_the_status_is_kept(daemon: &Daemon, text: &str) {
    let artist = [TARGET, ("probe", "artist.getInfo")];
    assert_metric(text, "lastfm_probe_http_status_code", &artist, 200.0);
    assert!(
        metric(
            text,
            "lastfm_http_responses_total",
            &[TARGET, ("probe", "artist.getInfo"), ("status", "200")]
        )
        .is_some_and(|n| n >= 2.0),
        "every 200 counted, whatever became of its body:\n{text}"
    );
    let album = [TARGET, ("probe", "album.getInfo")];
    assert_metric(text, "lastfm_probe_http_status_code", &album, 0.0);
    let (_, trace) = daemon
        .get("/probe?target=sim&probe=artist.getInfo&debug=true")
        .await;
    assert!(trace.contains("http status: 200"), "{trace}");
    assert!(trace.contains("blame: upstream"), "{trace}");
}

//! `--web.config.file` end to end: the real daemon behind TLS (certificates generated here),
//! basic auth and client certificates, reached over 127.0.0.1; and the binary refusing a bad web
//! config with exit 64 before it binds.

#![allow(
    clippy::unwrap_used,
    reason = "certificate and client set-up helpers: a failed unwrap is a failed test"
)]

use std::path::Path;
use std::time::Duration;

use lastfm_monitor::config::web::WebConfig;
use lastfm_monitor::sim::Scenario;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::support::{Access, CANARY_KEY, CANARY_SECRET, CANARY_SK, Daemon, target_toml};

const PROBES: &str = crate::support::ARTIST_EVERY_SECOND;

/// Certificates for one test: a self-signed server certificate for localhost and 127.0.0.1,
/// and a client CA with one client certificate (for mutual TLS).
struct Pki {
    dir: tempfile::TempDir,
    server_cert: String,
    client_identity: String,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let server_key = rcgen::KeyPair::generate().unwrap();
        let server = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
            .unwrap()
            .self_signed(&server_key)
            .unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "lastfm-monitor test client CA");
        let ca =
            rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
                .unwrap();
        let client_key = rcgen::KeyPair::generate().unwrap();
        let client = rcgen::CertificateParams::new(vec!["prometheus.example".into()])
            .unwrap()
            .signed_by(&client_key, &ca)
            .unwrap();
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        write("server.crt", &server.pem());
        write("server.key", &server_key.serialize_pem());
        write("clients-ca.crt", &ca.pem());
        Self {
            server_cert: server.pem(),
            client_identity: format!("{}{}", client.pem(), client_key.serialize_pem()),
            dir,
        }
    }

    /// Writes `text` as the web config and loads it as the daemon does.
    fn web_config(&self, text: &str) -> WebConfig {
        let path = self.dir.path().join("web-config.yml");
        std::fs::write(&path, text).unwrap();
        WebConfig::load(&path).unwrap_or_else(|err| panic!("{err}"))
    }

    /// A client that trusts the server certificate and nothing else.
    fn client(&self) -> reqwest::ClientBuilder {
        crate::support::http_client()
            .timeout(Duration::from_secs(10))
            .tls_certs_only([reqwest::Certificate::from_pem(self.server_cert.as_bytes()).unwrap()])
    }
}

fn hash(password: &str) -> String {
    bcrypt::hash(password, 4).unwrap()
}

async fn start(web: WebConfig, access: Access) -> Daemon {
    let (sim, sim_addr) = lastfm_monitor::sim::spawn_local(Scenario::healthy())
        .await
        .unwrap();
    let text = format!(
        "[defaults]\nstartup_jitter = \"0s\"\n{}\n{PROBES}",
        target_toml(sim_addr, "")
    );
    Daemon::start_web(sim, sim_addr, &text, web, access).await
}

async fn status(client: &reqwest::Client, url: &str, user: Option<(&str, &str)>) -> u16 {
    let request = client.get(url);
    let request = match user {
        Some((user, password)) => request.basic_auth(user, Some(password)),
        None => request,
    };
    request
        .send()
        .await
        .unwrap_or_else(|err| panic!("{url}: {err:?}"))
        .status()
        .as_u16()
}

fn assert_no_canary(text: &str, what: &str) {
    for canary in [CANARY_KEY, CANARY_SECRET, CANARY_SK] {
        let encoded: String = url::form_urlencoded::byte_serialize(canary.as_bytes()).collect();
        assert!(
            !text.contains(canary) && !text.contains(&encoded),
            "{what} leaks a canary:\n{text}"
        );
    }
}

#[tokio::test]
async fn tls_and_basic_auth_protect_every_endpoint() {
    let pki = Pki::new();
    let web = pki.web_config(&format!(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n\
         basic_auth_users:\n  prometheus: '{}'\n",
        hash("s3cret")
    ));
    let client = pki.client().build().unwrap();
    let access = Access {
        client: client.clone(),
        scheme: "https",
        credentials: Some(("prometheus".into(), "s3cret".into())),
    };
    let daemon = start(web, access).await;
    let metrics = daemon.url("/metrics");

    assert_eq!(status(&client, &metrics, None).await, 401, "no credentials");
    assert_eq!(
        status(&client, &metrics, Some(("prometheus", "wrong"))).await,
        401,
        "wrong password"
    );
    assert_eq!(
        status(&client, &metrics, Some(("nobody", "s3cret"))).await,
        401,
        "unknown user"
    );
    assert_eq!(
        status(&client, &metrics, Some(("prometheus", "s3cret"))).await,
        200
    );
    for path in ["/", "/-/healthy", "/probe?target=sim&probe=artist.getInfo"] {
        assert_eq!(
            status(&client, &daemon.url(path), None).await,
            401,
            "{path}"
        );
    }

    // Plain HTTP on the TLS port is refused with a short explanation, never served.
    let plain = crate::support::http_client()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let answer = plain
        .get(format!("http://{}/metrics", daemon.addr))
        .basic_auth("prometheus", Some("s3cret"))
        .send()
        .await
        .expect("the refusal is an HTTP answer");
    assert_eq!(answer.status().as_u16(), 400);
    assert!(answer.text().await.unwrap().contains("HTTPS only"));

    // A client that does not trust the certificate gets no answer at all.
    let untrusting = crate::support::http_client()
        .timeout(Duration::from_secs(10))
        .tls_certs_only([])
        .build()
        .unwrap();
    assert!(untrusting.get(&metrics).send().await.is_err());

    // Authenticated, the content is there and carries no secret.
    let (code, text) = daemon.get("/metrics").await;
    assert_eq!(code, 200);
    assert!(text.contains("lastfm_probe_runs_total"));
    daemon
        .wait_metric(
            Duration::from_secs(5),
            "lastfm_probe_runs_total",
            &[("outcome", "success")],
            1.0,
        )
        .await;
    let (code, page) = daemon.get("/").await;
    assert_eq!(code, 200);
    assert!(page.contains("id=\"probes\""));
    assert_no_canary(&page, "the status page");
    let (code, trace) = daemon
        .get("/probe?target=sim&probe=artist.getInfo&debug=true")
        .await;
    assert_eq!(code, 200, "{trace}");
    assert!(trace.contains("api_key = <secret>"), "{trace}");
    assert_no_canary(&trace, "the debug trace");
    daemon.stop().await;
}

#[tokio::test]
async fn a_stalled_handshake_does_not_stall_other_clients() {
    let pki = Pki::new();
    let web =
        pki.web_config("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n");
    let client = pki.client().build().unwrap();
    let access = Access {
        client: client.clone(),
        scheme: "https",
        credentials: None,
    };
    let daemon = start(web, access).await;
    // Ten connections that never send a byte, and one that sends half a record.
    let mut stalled = Vec::new();
    for _ in 0..10 {
        stalled.push(tokio::net::TcpStream::connect(daemon.addr).await.unwrap());
    }
    let mut half = tokio::net::TcpStream::connect(daemon.addr).await.unwrap();
    half.write_all(&[0x16, 0x03, 0x01, 0x01]).await.unwrap();
    let started = tokio::time::Instant::now();
    assert_eq!(status(&client, &daemon.url("/-/healthy"), None).await, 200);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered in {:?}",
        started.elapsed()
    );
    drop(stalled);
    drop(half);
    daemon.stop().await;
}

/// A flood of wrong passwords (README.md, TLS and basic auth): 200 clients sending wrong
/// passwords in parallel, over and over, while a scraper whose credentials were verified once
/// scrapes 16 times. bcrypt checks queue on their own bound, outside the requests-in-flight cap,
/// so every scrape is answered 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_wrong_passwords_does_not_starve_an_authorised_scraper() {
    const ATTACKERS: usize = 200;
    const SCRAPES: usize = 16;
    /// Dear enough that each wrong password holds its request for a while, as cost 10 does in
    /// a release build (about 60 ms), cheap enough for a debug build.
    const FLOOD_COST: u32 = 8;
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "web-config.yml",
        &format!(
            "basic_auth_users:\n  prometheus: '{}'\n  grafana: '{}'\n",
            bcrypt::hash("s3cret", FLOOD_COST).unwrap(),
            bcrypt::hash("other", FLOOD_COST).unwrap()
        ),
    );
    let web = WebConfig::load(&path).unwrap();
    let access = Access {
        credentials: Some(("prometheus".into(), "s3cret".into())),
        ..Access::plain()
    };
    let scraper = access.client.clone();
    let daemon = start(web, access).await;
    // The scraper logs in once before the flood, as a running Prometheus has.
    assert_eq!(daemon.get("/-/healthy").await.0, 200);

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let attacker = crate::support::http_client()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let url = daemon.url("/metrics");
    let mut flood = tokio::task::JoinSet::new();
    for i in 0..ATTACKERS {
        let (client, url, stop) = (attacker.clone(), url.clone(), std::sync::Arc::clone(&stop));
        let user = if i % 2 == 0 { "prometheus" } else { "mallory" };
        flood.spawn(async move {
            let mut answers = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && answers.len() < 50 {
                let sent = client
                    .get(&url)
                    .basic_auth(user, Some(format!("wrong-{i}")))
                    .send()
                    .await;
                answers.push(sent.map_or(0, |r| r.status().as_u16()));
            }
            answers
        });
    }
    // Let the flood fill every queue before the scrapes start.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut statuses = Vec::with_capacity(SCRAPES);
    for _ in 0..SCRAPES {
        let request = scraper.get(&url).basic_auth("prometheus", Some("s3cret"));
        let status = tokio::time::timeout(Duration::from_secs(5), request.send())
            .await
            .map_or(0, |sent| sent.map_or(0, |r| r.status().as_u16()));
        statuses.push(status);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut refused = 0;
    let mut attacks = 0;
    while let Some(answers) = flood.join_next().await {
        let answers = answers.unwrap();
        attacks += answers.len();
        assert!(
            answers.iter().all(|s| *s != 200),
            "a wrong password was let in: {answers:?}"
        );
        refused += answers.iter().filter(|s| **s == 401).count();
    }
    println!(
        "auth flood: {ATTACKERS} clients sent {attacks} wrong passwords ({refused} answered 401); \
         authorised scrapes: {statuses:?}"
    );
    assert_eq!(
        statuses,
        vec![200; SCRAPES],
        "every authorised scrape answers 200 during the flood"
    );
    daemon.stop().await;
}

/// A minimal ClientHello with `version` as its legacy version (and no supported_versions
/// extension, so that is the version offered), ECDHE-GCM suites and the extensions TLS 1.2 needs.
fn client_hello(version: [u8; 2]) -> Vec<u8> {
    let mut body = version.to_vec();
    body.extend([0x42; 32]); // random
    body.push(0); // session id
    body.extend([0x00, 0x04, 0xc0, 0x2b, 0xc0, 0x2f]); // ECDHE-{ECDSA,RSA}-AES128-GCM-SHA256
    body.extend([0x01, 0x00]); // null compression
    let extensions: [&[u8]; 3] = [
        &[0x00, 0x0a, 0x00, 0x06, 0x00, 0x04, 0x00, 0x1d, 0x00, 0x17], // groups: x25519, P-256
        &[0x00, 0x0d, 0x00, 0x06, 0x00, 0x04, 0x04, 0x03, 0x08, 0x04], // ECDSA-SHA256, PSS-SHA256
        &[0x00, 0x0b, 0x00, 0x02, 0x01, 0x00],                         // uncompressed points
    ];
    let extensions = extensions.concat();
    body.extend([0x00, u8::try_from(extensions.len()).unwrap()]);
    body.extend(extensions);
    let mut handshake = vec![0x01, 0x00, 0x00, u8::try_from(body.len()).unwrap()];
    handshake.extend(body);
    let mut record = vec![
        0x16,
        0x03,
        0x01,
        0x00,
        u8::try_from(handshake.len()).unwrap(),
    ];
    record.extend(handshake);
    record
}

/// The first record type the server answers `hello` with (0x16 handshake, 0x15 alert).
async fn first_record(addr: std::net::SocketAddr, hello: &[u8]) -> Option<u8> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(hello).await.unwrap();
    let mut first = [0_u8; 1];
    match tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut first)).await {
        Ok(Ok(_)) => Some(first[0]),
        _ => None,
    }
}

#[tokio::test]
async fn tls_below_1_2_is_refused_and_min_version_is_honoured() {
    let pki = Pki::new();
    let base = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n";
    let daemon = start(
        pki.web_config(base),
        Access {
            client: pki.client().build().unwrap(),
            scheme: "https",
            credentials: None,
        },
    )
    .await;
    // The same hello is answered with a ServerHello as TLS 1.2 and an alert as TLS 1.1.
    assert_eq!(
        first_record(daemon.addr, &client_hello([0x03, 0x03])).await,
        Some(0x16)
    );
    assert_eq!(
        first_record(daemon.addr, &client_hello([0x03, 0x02])).await,
        Some(0x15)
    );
    assert_eq!(
        first_record(daemon.addr, &client_hello([0x03, 0x01])).await,
        Some(0x15)
    );
    // TLS 1.2 is the default minimum: a client that stops at 1.2 is served.
    let tls12 = pki
        .client()
        .tls_version_max(reqwest::tls::Version::TLS_1_2)
        .build()
        .unwrap();
    assert_eq!(status(&tls12, &daemon.url("/-/healthy"), None).await, 200);
    daemon.stop().await;

    let daemon = start(
        pki.web_config(&format!("{base}  min_version: TLS13\n")),
        Access {
            client: pki.client().build().unwrap(),
            scheme: "https",
            credentials: None,
        },
    )
    .await;
    assert!(tls12.get(daemon.url("/-/healthy")).send().await.is_err());
    daemon.stop().await;
}

#[tokio::test]
async fn mutual_tls_requires_a_certificate_from_the_client_ca() {
    let pki = Pki::new();
    let web = pki.web_config(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  \
         client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: clients-ca.crt\n",
    );
    let identity = reqwest::Identity::from_pem(pki.client_identity.as_bytes()).unwrap();
    let with_cert = pki.client().identity(identity).build().unwrap();
    let daemon = start(
        web,
        Access {
            client: with_cert.clone(),
            scheme: "https",
            credentials: None,
        },
    )
    .await;
    assert_eq!(status(&with_cert, &daemon.url("/metrics"), None).await, 200);
    let without = pki.client().build().unwrap();
    let refused = without.get(daemon.url("/metrics")).send().await;
    assert!(refused.is_err(), "no certificate, no answer: {refused:?}");
    daemon.stop().await;
}

fn binary() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_lastfm-monitor"));
    command.env_remove("RUST_LOG").env_remove("NOTIFY_SOCKET");
    command
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Web configs the daemon refuses: file name, contents, and what the refusal says.
const BAD_WEB_CONFIGS: [(&str, &str, &str); 4] = [
    (
        "typo.yml",
        "tls_server_confg:\n  cert_file: x\n",
        "typo.yml:1:1: unknown field `tls_server_confg`",
    ),
    (
        "missing-cert.yml",
        "tls_server_config:\n  cert_file: nowhere.crt\n  key_file: nowhere.key\n",
        "missing-cert.yml: key `tls_server_config.cert_file`: cannot read",
    ),
    (
        "plain-password.yml",
        "basic_auth_users:\n  prometheus: hunter2\n",
        "plain-password.yml: key `basic_auth_users.prometheus`: not a bcrypt hash",
    ),
    (
        "old-tls.yml",
        "tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS10\n",
        "key `tls_server_config.min_version`",
    ),
];

#[test]
fn a_bad_web_config_is_exit_64_before_binding() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "config.toml",
        &format!(
            "[defaults]\nstartup_jitter = \"0s\"\n{}\n{PROBES}",
            target_toml("127.0.0.1:9".parse().unwrap(), "")
        ),
    );
    // Hold the port: a daemon that got as far as binding would fail with exit 1 instead.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = held.local_addr().unwrap().to_string();
    for (name, text, expected) in BAD_WEB_CONFIGS {
        let web = write(dir.path(), name, text);
        let output = binary()
            .arg("--config.file")
            .arg(&config)
            .arg("--web.listen-address")
            .arg(&address)
            .arg("--web.config.file")
            .arg(&web)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(64), "{name}: {stderr}");
        assert!(
            stderr.contains(expected),
            "{name}: {expected:?} in\n{stderr}"
        );
        assert!(stderr.contains("web configuration refused"), "{stderr}");
        assert!(
            !stderr.contains("hunter2"),
            "a password is never echoed: {stderr}"
        );
        assert!(!stderr.contains("cannot listen"), "{stderr}");
    }
    assert_a_valid_web_config_passes_the_check(dir.path(), &config);
    drop(held);
}

/// A valid web config passes `--config.check`, which describes it.
fn assert_a_valid_web_config_passes_the_check(dir: &Path, config: &Path) {
    let good = write(
        dir,
        "good.yml",
        &format!("basic_auth_users:\n  prometheus: '{}'\n", hash("x")),
    );
    let output = binary()
        .arg("--config.file")
        .arg(config)
        .arg("--config.check")
        .arg("--web.config.file")
        .arg(&good)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("plain HTTP, basic auth for 1 user(s)"),
        "{stdout}"
    );
}

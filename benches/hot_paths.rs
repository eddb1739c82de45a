//! Criterion benchmarks of the hot paths: classification (JSON and XML), signing, recording a
//! run, rendering `/metrics` at 500, 5,000 and 50,000 series, and rendering the status page
//! with 100 probes (whose size is checked too: at most 256 KiB).
//!
//! Run: `cargo bench --bench hot_paths`. Numbers and the machine they came from are in
//! docs/PERFORMANCE.md.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use lastfm_monitor::classify::{self, CodeTable, ProbeSpec};
use lastfm_monitor::config::{self, Expectation, Format};
use lastfm_monitor::metrics::Metrics;
use lastfm_monitor::probe::{ProbeOutcome, Response, sign};

const ARTIST_JSON: &str = r##"{"artist":{"name":"Cher","mbid":"bfcc6d75-a6a5-4bc6-8282-47aec8531818","url":"https://www.last.fm/music/Cher","image":[{"#text":"","size":"small"},{"#text":"","size":"medium"}],"streamable":"0","ontour":"0","stats":{"listeners":"1366557","playcount":"20330960"},"similar":{"artist":[{"name":"Madonna","url":"https://www.last.fm/music/Madonna"},{"name":"Kylie Minogue","url":"https://www.last.fm/music/Kylie+Minogue"}]},"tags":{"tag":[{"name":"pop","url":"https://www.last.fm/tag/pop"},{"name":"female vocalists","url":"https://www.last.fm/tag/female+vocalists"}]},"bio":{"published":"01 Jan 2006, 00:00","summary":"Cher (born Cherilyn Sarkisian; May 20, 1946) is an American singer, actress and television host.","content":"Cher (born Cherilyn Sarkisian; May 20, 1946) is an American singer, actress and television host. Described as embodying female autonomy in a male-dominated industry, she is known for her distinctive contralto singing voice."}}}"##;

const SEARCH_XML: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<lfm status="ok">
<results for="Believe">
<opensearch:Query role="request" searchTerms="Believe" startPage="1" />
<opensearch:totalResults>61</opensearch:totalResults>
<opensearch:startIndex>0</opensearch:startIndex>
<opensearch:itemsPerPage>1</opensearch:itemsPerPage>
<trackmatches><track><name>Believe</name><artist>Cher</artist><url>https://www.last.fm/music/Cher/_/Believe</url><listeners>1026379</listeners></track></trackmatches>
</results></lfm>"#;

const ERROR_JSON: &str = r#"{"error":8,"message":"Operation failed - Most likely the backend service failed. Please try again.","links":[]}"#;

fn outcome(status: u16, body: &str) -> ProbeOutcome {
    ProbeOutcome {
        elapsed: Duration::from_millis(120),
        timings: Default::default(),
        tls: None,
        http_status: Some(status),
        result: Ok(Response {
            status,
            content_type: Some("application/json".into()),
            retry_after: None,
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
        }),
    }
}

fn classification(c: &mut Criterion) {
    let table = CodeTable::lastfm();
    let checks = [config::Check {
        pointer: "/artist/name".into(),
        rule: config::CheckRule::Equals(serde_json::Value::String("Cher".into())),
    }];
    let json_spec = ProbeSpec {
        format: Format::Json,
        signed: false,
        expect: Expectation::Success,
        checks: &checks,
        codes: &table,
        host: "ws.audioscrobbler.com",
    };
    let xml_spec = ProbeSpec {
        format: Format::Xml,
        checks: &[],
        ..json_spec
    };
    let mut group = c.benchmark_group("classify");
    let json = outcome(200, ARTIST_JSON);
    group.throughput(Throughput::Bytes(ARTIST_JSON.len() as u64));
    group.bench_function("json_success_with_check", |b| {
        b.iter(|| classify::classify(black_box(&json), &json_spec));
    });
    let xml = outcome(200, SEARCH_XML);
    group.throughput(Throughput::Bytes(SEARCH_XML.len() as u64));
    group.bench_function("xml_search_success", |b| {
        b.iter(|| classify::classify(black_box(&xml), &xml_spec));
    });
    let error = outcome(200, ERROR_JSON);
    group.throughput(Throughput::Bytes(ERROR_JSON.len() as u64));
    group.bench_function("json_error_with_200", |b| {
        b.iter(|| classify::classify(black_box(&error), &json_spec));
    });
    group.finish();
}

fn signing(c: &mut Criterion) {
    let params = [
        ("method", "user.getInfo"),
        ("api_key", "0123456789abcdef0123456789abcdef"),
        ("sk", "d580d57f32848f5dcf574d1ce18d78b2"),
        ("format", "json"),
    ];
    c.bench_function("sign/api_sig_4_params", |b| {
        b.iter(|| sign::api_sig(black_box(params), "fedcba9876543210fedcba9876543210"));
    });
}

fn recording(c: &mut Criterion) {
    let metrics = Metrics::try_new("bench", "bench").expect("metrics register");
    let probe = metrics.probe("lastfm", "artist.getInfo", Duration::from_secs(60));
    let table = CodeTable::lastfm();
    let spec = ProbeSpec {
        format: Format::Json,
        signed: false,
        expect: Expectation::Success,
        checks: &[],
        codes: &table,
        host: "ws.audioscrobbler.com",
    };
    let verdict = classify::classify(&outcome(200, ERROR_JSON), &spec);
    c.bench_function("metrics/record_run_error_with_mismatch", |b| {
        b.iter(|| {
            probe.record_run(
                black_box(&verdict),
                Duration::from_millis(120),
                &Default::default(),
                1.7e9,
            )
        });
    });
}

/// Registers enough probes for about `series` series (each probe has ~58).
fn metrics_with_series(series: usize) -> Metrics {
    let metrics = Metrics::try_new("bench", "bench").expect("metrics register");
    let probes = series / 58;
    for i in 0..probes.max(1) {
        let target = format!("t{}", i / 50);
        metrics.probe(&target, &format!("p{i}"), Duration::from_secs(60));
        metrics.target(&target, 0.995);
    }
    metrics
}

fn rendering(c: &mut Criterion) {
    let mut group = c.benchmark_group("metrics/render");
    group.sample_size(20);
    for series in [500, 5_000, 50_000] {
        let metrics = metrics_with_series(series);
        let lines = metrics
            .render()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .count();
        group.throughput(Throughput::Elements(lines as u64));
        group.bench_with_input(BenchmarkId::from_parameter(series), &metrics, |b, m| {
            b.iter(|| black_box(m.render()));
        });
    }
    group.finish();
}

/// A daemon's generation and history with `targets` targets of `per_target` probes, each probe
/// with 60 kept results (a third of them alternating, the strips' worst case) and the incident
/// list full.
fn status_page_fixture(
    targets: usize,
    per_target: usize,
) -> (
    lastfm_monitor::daemon::assembly::Assembly,
    std::sync::Arc<lastfm_monitor::history::History>,
) {
    use lastfm_monitor::classify::{Blame, Classification, Outcome};
    use lastfm_monitor::history::status::TargetFacts;
    use lastfm_monitor::history::{RunRecord, trace::Trace};

    let mut text = String::from("[defaults]\nstartup_jitter = \"0s\"\n");
    for t in 0..targets {
        text.push_str(&format!(
            "[[targets]]\nname = \"target-{t}\"\nbase_url = \"https://ws.audioscrobbler.com/2.0/\"\napi_key = \"0123456789abcdef0123456789abcdef\"\n"
        ));
        for p in 0..per_target {
            text.push_str(&format!(
                "[[targets.probes]]\nname = \"artist.getInfo-{p}\"\nmethod = \"artist.getInfo\"\nparams = {{ artist = \"Cher\" }}\n"
            ));
        }
    }
    let env = lastfm_monitor::config::secret::ProcessEnv;
    let config = config::Config::parse(&text, "bench.toml", &env, chrono::Utc::now())
        .expect("the bench config is valid");
    let prober = std::sync::Arc::new(
        lastfm_monitor::probe::http::HttpProber::try_new().expect("an HTTP client"),
    );
    let web = lastfm_monitor::config::web::WebConfig::default();
    let parts = lastfm_monitor::daemon::assembly::Parts {
        prober,
        clock: std::sync::Arc::new(lastfm_monitor::schedule::SystemClock),
        version: "bench",
        revision: "bench",
        web: &web,
        start_tasks: false,
    };
    let assembly = lastfm_monitor::daemon::assembly::assemble(
        &config,
        parts,
        lastfm_monitor::run::Origin::Fresh,
    )
    .expect("assembled");
    let history = std::sync::Arc::clone(assembly.runner.history());
    let start = chrono::Utc::now() - chrono::Duration::minutes(61);
    let mut n = 0_i64;
    for run in 0..60_i64 {
        for t in 0..targets {
            for p in 0..per_target {
                n += 1;
                let failing = if p % 3 == 0 {
                    run % 2 == 0
                } else {
                    (20..35).contains(&run)
                };
                let verdict = if failing {
                    Classification {
                        http_status: Some(503),
                        error_code: Some(11),
                        blame: Some(Blame::Upstream),
                        ..Classification::new(Outcome::ApiError)
                    }
                } else {
                    Classification::success(200)
                };
                history.record(RunRecord {
                    id: 0,
                    target: format!("target-{t}"),
                    probe: format!("artist.getInfo-{p}"),
                    at: start + chrono::Duration::seconds(run * 60 + n % 60),
                    latency: Duration::from_millis(u64::try_from(40 + n % 300).unwrap_or(0)),
                    verdict,
                    on_demand: false,
                    trace: Trace::default(),
                    facts: Some(TargetFacts {
                        available: !failing,
                        conditions: Vec::new(),
                    }),
                });
            }
        }
    }
    (assembly, history)
}

fn status_page(c: &mut Criterion) {
    use lastfm_monitor::server::status_page::{Audience, render};
    const BUDGET: usize = 256 * 1024;
    let mut group = c.benchmark_group("status_page/render_100_probes");
    group.sample_size(20);
    for (targets, per_target) in [(10, 10), (100, 1)] {
        let (assembly, history) = status_page_fixture(targets, per_target);
        let generation = assembly.shared.generation();
        let page = render(
            &generation,
            &history,
            chrono::Utc::now(),
            Audience::Operators,
        );
        println!(
            "status page, {targets} target(s) of {per_target} probe(s): {} bytes ({:.1} KiB, budget {} KiB)",
            page.len(),
            page.len() as f64 / 1024.0,
            BUDGET / 1024
        );
        // STATUS_PAGE_DUMP=DIR keeps the pages to look at.
        if let Some(dir) = std::env::var_os("STATUS_PAGE_DUMP") {
            let path =
                std::path::Path::new(&dir).join(format!("status-page-{targets}x{per_target}.html"));
            std::fs::write(path, &page).expect("the dump is written");
        }
        assert!(page.len() <= BUDGET, "the page is over its budget");
        let id = format!("{targets}x{per_target}");
        group.bench_with_input(BenchmarkId::from_parameter(id), &generation, |b, g| {
            b.iter(|| black_box(render(g, &history, chrono::Utc::now(), Audience::Operators)));
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    classification,
    signing,
    recording,
    rendering,
    status_page
);
criterion_main!(benches);

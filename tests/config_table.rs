//! Bad configurations, one file per broken rule (README.md, Configuration reference and the exit
//! codes under Operations): the real binary, run as
//! `lastfm-monitor --config.file F --config.check`, exits 64, names the line and the key, prints
//! exactly the message in the sibling `.expected` file, and never panics.
//!
//! The files are `tests/testdata/invalid-*.toml`; the table below says, for each, which line and
//! key the message must name (so a wording change is one `.expected` edit, while a lost line
//! number fails loudly). `LASTFM_MONITOR_BLESS=1` rewrites the `.expected` files from the
//! binary's output, for review in the diff.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::{Finished, run_with_limit};

/// A run of `--config.check` takes milliseconds; this only bounds a hang.
const LIMIT: Duration = Duration::from_secs(20);

/// Stem after `invalid-`, the line the message must name (`None`: the problem has no line, e.g.
/// an unreadable file), and the key it must name (`None`: not TOML, nothing to name).
const TABLE: &[(&str, Option<usize>, Option<&str>)] = &[
    (
        "availability-objective",
        Some(6),
        Some("availability_objective"),
    ),
    ("api", Some(5), Some("api")),
    ("api-get-write", Some(11), Some("http_method")),
    ("api-method", Some(9), Some("method")),
    ("backoff", Some(7), Some("backoff_max")),
    ("canary-kind", Some(12), Some("kind")),
    (
        "canary-max-scrobbles",
        Some(6),
        Some("max_scrobbles_per_day"),
    ),
    (
        "canary-scrobble-cap",
        Some(9),
        Some("max_scrobbles_per_day"),
    ),
    ("canary-step-name", Some(15), Some("name")),
    ("canary-users", Some(15), Some("user")),
    ("canary-window", Some(13), Some("visible_within")),
    ("canary-without-session", Some(12), Some("session_key")),
    ("backoff-too-long", Some(6), Some("backoff_max")),
    ("bad-cron", Some(10), Some("cron")),
    ("bad-duration", Some(10), Some("interval")),
    ("bad-secret-source", Some(5), Some("api_key")),
    ("bad-url", Some(4), Some("base_url")),
    ("burst", Some(6), Some("burst")),
    ("check-pointer", Some(10), Some("checks.pointer")),
    ("check-xml", Some(11), Some("checks")),
    ("credential-path", Some(5), Some("api_key")),
    ("cron-far", Some(10), Some("cron")),
    ("cron-never", Some(10), Some("cron")),
    ("down-after", Some(6), Some("down_after")),
    (
        "documented-statuses",
        Some(6),
        Some("documented_statuses.29"),
    ),
    ("duplicate-probe", Some(11), Some("name")),
    ("duplicate-target", Some(12), Some("name")),
    ("expect-code", Some(10), Some("expect")),
    ("expect-type", Some(10), Some("expect")),
    ("format", Some(10), Some("format")),
    ("http-method", Some(10), Some("http_method")),
    ("interval-and-cron", Some(10), Some("interval")),
    ("interval-too-long", Some(10), Some("interval")),
    ("interval-too-short", Some(10), Some("interval")),
    ("listen-address", Some(3), Some("listen_address")),
    ("max-body-bytes", Some(10), Some("max_body_bytes")),
    ("max-connections", Some(3), Some("max_connections")),
    ("method-name", Some(8), Some("method")),
    ("missing-credential", Some(5), Some("api_key")),
    ("missing-env", Some(5), Some("api_key")),
    ("missing-file", Some(5), Some("api_key")),
    ("no-probes", Some(2), Some("probes")),
    ("no-targets", None, Some("targets")),
    ("not-toml", Some(1), None),
    ("not-utf8", None, None),
    ("plain-http", Some(4), Some("base_url")),
    ("probe-name", Some(8), Some("name")),
    ("rate", Some(6), Some("max_requests_per_second")),
    ("rate-tiny", Some(6), Some("max_requests_per_second")),
    ("reference-interval", Some(14), Some("interval")),
    ("reserved-param", Some(9), Some("params.api_key")),
    ("signed-without-secret", Some(7), Some("signed")),
    ("startup-jitter", Some(3), Some("startup_jitter")),
    (
        "suspended-interval-too-long",
        Some(6),
        Some("suspended_interval"),
    ),
    ("target-name", Some(3), Some("name")),
    ("timeout-not-shorter", Some(11), Some("timeout")),
    ("timeout-too-short", Some(10), Some("timeout")),
    ("timeout-vs-cron", Some(11), Some("timeout")),
    ("unknown-key", Some(10), Some("intervall")),
    ("url-with-query", Some(4), Some("base_url")),
    ("wrong-type", Some(10), Some("interval")),
];

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `--config.check` on `file` (relative to the crate root, so messages name a stable path), in an
/// environment without the variables the table relies on being unset.
fn check(file: &str, extra_env: &[(&str, &str)]) -> Finished {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lastfm-monitor"));
    command
        .current_dir(manifest_dir())
        .args(["--config.file", file, "--config.check"])
        .env_remove("CREDENTIALS_DIRECTORY")
        .env_remove("LASTFM_MONITOR_TEST_UNSET_VARIABLE")
        .env_remove("LASTFM_API_KEY")
        .env_remove("RUST_LOG")
        .env("RUST_BACKTRACE", "1");
    for (name, value) in extra_env {
        command.env(name, value);
    }
    run_with_limit(&mut command, LIMIT)
}

fn testdata() -> PathBuf {
    manifest_dir().join("tests/testdata")
}

#[test]
fn every_invalid_file_is_in_the_table_and_back() {
    let mut on_disk: Vec<String> = std::fs::read_dir(testdata())
        .expect("tests/testdata exists")
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            let stem = name.strip_prefix("invalid-")?.strip_suffix(".toml")?;
            Some(stem.to_owned())
        })
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = TABLE.iter().map(|(stem, ..)| (*stem).to_owned()).collect();
    listed.sort();
    assert_eq!(
        on_disk, listed,
        "tests/testdata/invalid-*.toml and TABLE differ"
    );
}

#[test]
fn each_broken_rule_exits_64_with_its_exact_message() {
    let bless = std::env::var("LASTFM_MONITOR_BLESS").is_ok_and(|v| v == "1");
    let mut failures = Vec::new();
    for (stem, line, key) in TABLE {
        let file = format!("tests/testdata/invalid-{stem}.toml");
        let run = check(&file, &[]);
        let expected_path = testdata().join(format!("invalid-{stem}.expected"));
        if bless {
            std::fs::write(&expected_path, &run.stderr).expect("write the .expected file");
        }
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|err| panic!("{}: {err}", expected_path.display()));
        let mut problems = Vec::new();
        if run.status.and_then(|s| s.code()) != Some(64) {
            problems.push(format!("exit status {:?}, expected 64", run.status));
        }
        if run.stderr.contains("panicked") || run.stdout.contains("panicked") {
            problems.push("it panicked".to_owned());
        }
        if !run.stdout.is_empty() {
            problems.push(format!("stdout is not empty: {:?}", run.stdout));
        }
        if run.stderr != expected {
            problems.push(format!(
                "stderr differs from {}:\n--- expected\n{expected}--- got\n{}",
                expected_path.display(),
                run.stderr
            ));
        }
        let first = run.stderr.lines().next().unwrap_or_default();
        match line {
            Some(line) => {
                let located = format!("{file}:{line}:");
                if !first.starts_with(&located) {
                    problems.push(format!("does not start with {located:?}: {first}"));
                }
            }
            None => {
                if !first.starts_with(&format!("{file}: ")) {
                    problems.push(format!("does not name the file: {first}"));
                }
            }
        }
        if let Some(key) = key {
            if !first.contains(&format!("`{key}`")) {
                problems.push(format!("does not name the key `{key}`: {first}"));
            }
        }
        if !run.stderr.ends_with(
            "lastfm-monitor: configuration refused (1 problem(s)); fix them and start again\n",
        ) {
            problems.push("does not end with the one-problem summary".to_owned());
        }
        if run.stderr.lines().count() != 2 {
            problems.push(format!(
                "one problem takes {} lines, expected 1 plus the summary",
                run.stderr.lines().count()
            ));
        }
        if !problems.is_empty() {
            failures.push(format!("invalid-{stem}.toml:\n  {}", problems.join("\n  ")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_missing_config_file_exits_64() {
    let run = check("tests/testdata/no-such-config.toml", &[]);
    assert_eq!(run.status.and_then(|s| s.code()), Some(64), "{run:?}");
    assert_eq!(
        run.stderr,
        "tests/testdata/no-such-config.toml: cannot read the configuration file: No such file or directory (os error 2)\n\
         lastfm-monitor: configuration refused (1 problem(s)); fix them and start again\n"
    );
}

/// The control: the harness itself accepts a good file (the shipped one, with its key set).
#[test]
fn the_shipped_config_passes_the_same_check() {
    let run = check(
        "config.toml",
        &[("LASTFM_API_KEY", "0123456789abcdef0123456789abcdef")],
    );
    assert_eq!(run.status.and_then(|s| s.code()), Some(0), "{run:?}");
    assert!(run.stdout.starts_with("configuration OK"), "{}", run.stdout);
    assert!(
        !run.stdout.contains("0123456789abcdef"),
        "the key is printed"
    );
}

/// A reader that goes away (`--config.check | head -1`) cuts the text short, never the run: no
/// panic, and the exit status still says the file is good.
#[test]
fn a_closed_stdout_is_not_a_panic() {
    use std::io::Read as _;
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_lastfm-monitor"))
        .current_dir(manifest_dir())
        .args(["--config.file", "config.toml", "--config.check"])
        .env("LASTFM_API_KEY", "0123456789abcdef0123456789abcdef")
        .env("RUST_BACKTRACE", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    // Closed before the summary is written: every write to stdout fails with EPIPE.
    drop(child.stdout.take());
    let mut stderr = String::new();
    let _ = child
        .stderr
        .take()
        .expect("piped")
        .read_to_string(&mut stderr);
    let status = child.wait().expect("the binary exits");
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

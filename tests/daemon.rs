//! The daemon end to end against the simulator: outcomes, codes, mismatches, conditions.

use std::time::Duration;

use lastfm_monitor::sim::Scenario;

use crate::support::{Daemon, assert_metric, assert_metric_at_least};

const ARTIST: &str = r#"
[[targets.probes]]
method = "artist.getInfo"
params = { artist = "Cher" }
interval = "1s"
timeout = "800ms"
checks = [{ pointer = "/artist/name", equals = "Cher" }]
"#;

#[tokio::test]
async fn healthy_upstream_exports_success() {
    let daemon = Daemon::start(Scenario::healthy(), "", "", ARTIST).await;
    let labels = [
        ("target", "sim"),
        ("probe", "artist.getInfo"),
        ("outcome", "success"),
    ];
    let text = daemon
        .wait_metric(
            Duration::from_secs(5),
            "lastfm_probe_runs_total",
            &labels,
            1.0,
        )
        .await;
    assert_metric_at_least(&text, "lastfm_probe_runs_total", &labels, 1.0);
    assert_metric(
        &text,
        "lastfm_probe_success",
        &[("probe", "artist.getInfo")],
        1.0,
    );
    assert_metric(
        &text,
        "lastfm_probe_http_status_code",
        &[("probe", "artist.getInfo")],
        200.0,
    );
    assert_metric(&text, "lastfm_service_available", &[("target", "sim")], 1.0);
    daemon.stop().await;
}

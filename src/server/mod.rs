//! The HTTP surface (README.md, Endpoints) and the accept loop that keeps it safe from slow or hostile clients.
//!
//! Routes:
//! - `GET /metrics`: the exposition, from memory, streamed and gzip-compressed when accepted
//!   (`scrape`); never waits on a probe.
//! - `GET /`: the status page (targets, probes, conditions, recent runs).
//! - `GET /runs/{id}`: the stored debug trace of a recent run.
//! - `GET /api/v1/status`: the status document for bots (JSON, `docs/status-api.schema.json`),
//!   with an `ETag` that changes only with what a bot acts on (`status_api`).
//! - `GET /api/v1/incidents.atom`: the incidents as an Atom feed.
//! - `GET /badge/{target}.svg`: a small status badge of a target.
//! - `GET /probe?target=T&probe=P[&debug=true]`: one run now, within the target's budget
//!   (`HEAD` and every other method: 405 with `Allow: GET`, never a run).
//! - `GET /-/healthy`: liveness. `GET /-/ready`: 200 once the config is loaded and probes run.
//! - `POST /-/reload`: reload the configuration, as SIGHUP does.
//!
//! The status listener (`--web.status-listen-address`, [`status_router`]) serves only `/` (without
//! run-now and trace links), `/api/v1/*`, `/badge/*` and `/-/healthy`, behind the same layers.
//!
//! Other methods on these paths answer 405, other paths a fixed 404 that does not echo the path.
//! axum's `serve` installs no header-read timeout (axum#2741), so [`serve`] runs its own hyper
//! accept loop (`accept.rs`) with one, a cap on connections and 10 s from accept to the first
//! request; a middleware caps requests in flight (503 beyond) and bounds each request's time. With a web config ([`crate::config::web`]), [`serve_tls`] does the TLS
//! handshake inside each connection's task under a deadline, and every route, the 404 included,
//! answers 401 without valid basic-auth credentials; the configured security headers go on every
//! response.

mod accept;
pub mod markup;
pub mod pictures;
pub mod scrape;
pub mod status_api;
pub mod status_page;

pub use accept::{
    ConnectionCap, HEADER_READ_TIMEOUT, TLS_HANDSHAKE_TIMEOUT, serve, serve_capped, serve_tls,
};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::web::{BasicAuth, Verdict, WebConfig};
use crate::history::status::TargetStatus;
use crate::metrics::Metrics;
use crate::run::{Generation, Mode, RunResult, Runner};

/// Requests handled at once; beyond this, 503 at once (node_exporter's `--web.max-requests`).
pub const MAX_IN_FLIGHT: usize = 40;
/// How long one request may take (an on-demand probe is bounded by its own timeout first).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(70);
/// How long `/probe` waits for a token of the target's budget before answering 429.
const PROBE_BUDGET_WAIT: Duration = Duration::from_secs(2);

/// Reply channel of a reload request: `Ok(summary)` or every problem.
pub type ReloadReply = oneshot::Sender<Result<String, String>>;

/// What the handlers share.
#[derive(Debug)]
pub struct Shared {
    /// The metrics to render.
    pub metrics: Metrics,
    /// Makes on-demand runs.
    pub runner: Runner,
    /// The running generation of targets, swapped on reload.
    pub generation: RwLock<Arc<Generation>>,
    /// Set once the config is loaded and the probe tasks run.
    pub ready: AtomicBool,
    /// Asks the app to reload.
    pub reload: mpsc::Sender<ReloadReply>,
    /// Caps requests in flight.
    in_flight: Semaphore,
    /// Basic-auth users from the web config; `None`: no authentication.
    auth: Option<BasicAuth>,
    /// Headers from the web config, added to every response.
    headers: Vec<(HeaderName, HeaderValue)>,
    /// Cancelled at shutdown only: an on-demand run outlives a reload, as a scheduled one does,
    /// and its caller gets its result.
    shutdown: CancellationToken,
}

impl Shared {
    /// Bundles the shared state.
    pub fn new(
        metrics: Metrics,
        runner: Runner,
        generation: Arc<Generation>,
        reload: mpsc::Sender<ReloadReply>,
    ) -> Self {
        Self {
            metrics,
            runner,
            generation: RwLock::new(generation),
            ready: AtomicBool::new(false),
            reload,
            in_flight: Semaphore::new(MAX_IN_FLIGHT),
            auth: None,
            headers: Vec::new(),
            shutdown: CancellationToken::new(),
        }
    }

    /// Stops on-demand runs with `shutdown` (by default, only when this state is dropped).
    #[must_use]
    pub fn with_shutdown(mut self, shutdown: &CancellationToken) -> Self {
        self.shutdown = shutdown.clone();
        self
    }

    /// Applies the web config's basic auth and response headers to every route.
    #[must_use]
    pub fn with_web_config(mut self, web: &WebConfig) -> Self {
        self.auth = BasicAuth::from_users(&web.users);
        self.headers.clone_from(&web.headers);
        self
    }

    /// The basic-auth checker, when users are configured.
    pub fn basic_auth(&self) -> Option<&BasicAuth> {
        self.auth.as_ref()
    }

    /// The current generation.
    pub fn generation(&self) -> Arc<Generation> {
        Arc::clone(
            &self
                .generation
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Swaps in a new generation.
    pub fn set_generation(&self, generation: Arc<Generation>) {
        *self
            .generation
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = generation;
    }
}

/// The router for every endpoint.
pub fn router(shared: Arc<Shared>) -> Router {
    let routes = Router::new()
        .route("/metrics", get(metrics))
        // axum answers HEAD with the GET handler (dropping the body), which for `/probe` would
        // send a real upstream request: HEAD, like every other method, gets 405 here.
        .route(
            "/probe",
            get(probe).head(probe_get_only).fallback(probe_get_only),
        )
        .route("/runs/{id}", get(run_trace))
        .route("/-/ready", get(ready))
        .route("/-/reload", post(reload));
    layered(status_routes(routes, status_page), shared)
}

/// The router of the status listener (`--web.status-listen-address`), which a reverse proxy
/// may publish: the page without run-now and trace links, the status API, the badges and
/// liveness; `/metrics`, `/probe` and everything else answer 404.
pub fn status_router(shared: Arc<Shared>) -> Router {
    layered(status_routes(Router::new(), public_status_page), shared)
}

/// The routes both listeners serve, with `page` at `/`.
fn status_routes<H, T>(routes: Router<Arc<Shared>>, page: H) -> Router<Arc<Shared>>
where
    H: axum::handler::Handler<T, Arc<Shared>>,
    T: 'static,
{
    routes
        .route("/", get(page))
        .route("/api/v1/status", get(api_status))
        .route("/api/v1/incidents.atom", get(api_incidents))
        .route("/badge/{file}", get(badge_svg))
        .route("/-/healthy", get(healthy))
        .fallback(not_found)
}

/// The layers every listener has: headers on every answer, then authentication, then the cap.
fn layered(routes: Router<Arc<Shared>>, shared: Arc<Shared>) -> Router {
    routes
        // Outermost last: headers on every answer, then authentication, then the cap. Password
        // checks have their own bound (`BasicAuth::check`), so wrong passwords queue there and
        // never take the requests-in-flight permits an authorised scraper needs.
        .layer(middleware::from_fn_with_state(Arc::clone(&shared), guard))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&shared),
            authenticate,
        ))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&shared),
            security_headers,
        ))
        .with_state(shared)
}

/// Answers 401 unless the request carries valid basic-auth credentials (when users are set).
async fn authenticate(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let Some(auth) = &shared.auth else {
        return next.run(request).await;
    };
    match auth
        .check(request.headers().get(header::AUTHORIZATION))
        .await
    {
        Verdict::Authorized => next.run(request).await,
        Verdict::Refused => (
            StatusCode::UNAUTHORIZED,
            [(
                header::WWW_AUTHENTICATE,
                crate::config::web::WWW_AUTHENTICATE,
            )],
            "unauthorized\n",
        )
            .into_response(),
        Verdict::Busy => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            "too many password checks waiting\n",
        )
            .into_response(),
    }
}

/// Adds the web config's headers to every response.
async fn security_headers(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = next.run(request).await;
    for (name, value) in &shared.headers {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    response
}

/// Caps concurrency and bounds each request's time.
async fn guard(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let Ok(_permit) = shared.in_flight.try_acquire() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            "too many requests in flight\n",
        )
            .into_response();
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "request timed out\n").into_response(),
    }
}

async fn metrics(State(shared): State<Arc<Shared>>, request: HeaderMap) -> Response {
    // `lastfm_target_backoff_seconds` is a countdown, but runs and skips publish it only at each
    // fire, so between fires it would stay frozen for up to a whole interval. Republishing the
    // target gauges here takes two short-lived `std` locks that are never held across an
    // `.await`: the scrape still never waits on a probe.
    let now = Instant::now();
    for rt in &shared.generation().targets {
        rt.publish(now);
    }
    scrape::respond(shared.metrics.pieces(scrape::PIECE_BYTES), &request)
}

/// `/probe` with any method but GET: 405, `Allow: GET`, and no run.
async fn probe_get_only() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::ALLOW, "GET")],
        "/probe answers GET only\n",
    )
        .into_response()
}

async fn healthy() -> &'static str {
    "OK\n"
}

async fn ready(State(shared): State<Arc<Shared>>) -> Response {
    if shared.ready.load(Ordering::Acquire) {
        "ready\n".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

async fn reload(State(shared): State<Arc<Shared>>) -> Response {
    let (tx, rx) = oneshot::channel();
    if shared.reload.send(tx).await.is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    match rx.await {
        Ok(Ok(summary)) => format!("{summary}\n").into_response(),
        Ok(Err(problems)) => (
            StatusCode::BAD_REQUEST,
            format!("configuration refused; the previous one keeps running:\n{problems}\n"),
        )
            .into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response(),
    }
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        "not found; see / for the endpoints\n",
    )
        .into_response()
}

async fn status_page(State(shared): State<Arc<Shared>>) -> Html<String> {
    Html(status_page::render(
        &shared.generation(),
        shared.runner.history(),
        shared.runner.clock().now(),
        status_page::Audience::Operators,
    ))
}

async fn public_status_page(State(shared): State<Arc<Shared>>) -> Html<String> {
    Html(status_page::render(
        &shared.generation(),
        shared.runner.history(),
        shared.runner.clock().now(),
        status_page::Audience::Public,
    ))
}

async fn run_trace(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    // Parsed here, not by `Path<u64>`: axum's rejection would echo the path back.
    let record = id
        .parse::<u64>()
        .ok()
        .and_then(|id| shared.runner.history().get(id));
    match record {
        Some(record) => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            record.trace.text().to_owned(),
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "no such run; only recent runs are kept\n",
        )
            .into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct ProbeQuery {
    target: Option<String>,
    probe: Option<String>,
    #[serde(default)]
    debug: Option<String>,
}

async fn probe(State(shared): State<Arc<Shared>>, Query(query): Query<ProbeQuery>) -> Response {
    let (Some(target_name), Some(probe_name)) = (query.target, query.probe) else {
        return (
            StatusCode::BAD_REQUEST,
            "usage: /probe?target=T&probe=P[&debug=true]\n",
        )
            .into_response();
    };
    let generation = shared.generation();
    let Some(rt) = generation
        .targets
        .iter()
        .find(|t| t.target.name == target_name)
    else {
        return (
            StatusCode::NOT_FOUND,
            "unknown target; see / for the configured ones\n",
        )
            .into_response();
    };
    let Some(index) = rt.target.probes.iter().position(|p| p.name == probe_name) else {
        return (
            StatusCode::NOT_FOUND,
            "unknown probe for this target; see / for the configured ones\n",
        )
            .into_response();
    };
    let debug = matches!(query.debug.as_deref(), Some("true" | "1"));
    let latest = Instant::now() + PROBE_BUDGET_WAIT;
    match shared
        .runner
        .run(rt, index, latest, Mode::OnDemand, &shared.shutdown)
        .await
    {
        RunResult::Skipped(reason) => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "10")],
            format!(
                "not sent: the target's politeness budget refuses it now ({})\n",
                reason.as_label()
            ),
        )
            .into_response(),
        RunResult::Cancelled => {
            (StatusCode::SERVICE_UNAVAILABLE, "cancelled by shutdown\n").into_response()
        }
        RunResult::Done(record) if debug => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            record.trace.text().to_owned(),
        )
            .into_response(),
        RunResult::Done(record) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            single_run_exposition(&record),
        )
            .into_response(),
    }
}

/// Every configured target's status at now.
fn current_status(shared: &Shared) -> (Vec<TargetStatus>, chrono::DateTime<chrono::Utc>) {
    let generation = shared.generation();
    let targets: Vec<(&str, Vec<&str>)> = generation
        .targets
        .iter()
        .map(|rt| {
            let probes = rt.target.probes.iter().map(|p| p.name.as_str()).collect();
            (rt.target.name.as_str(), probes)
        })
        .collect();
    let now = shared.runner.clock().now();
    (shared.runner.history().status().view(&targets, now), now)
}

/// `GET /api/v1/status`.
async fn api_status(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let (statuses, now) = current_status(&shared);
    let generation = shared.generation();
    let service = |name: &str| {
        generation
            .targets
            .iter()
            .find(|rt| rt.target.name == name)
            .map(|rt| rt.target.api)
    };
    let document = status_api::document(&statuses, &service, now);
    let mut body = serde_json::to_vec_pretty(&document).unwrap_or_default();
    body.push(b'\n');
    status_api::cached(&headers, "application/json", body)
}

/// `GET /api/v1/incidents.atom`.
async fn api_incidents(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let now = shared.runner.clock().now().timestamp();
    let body = status_api::atom(&shared.runner.history().status().incidents(), now);
    status_api::cached(&headers, "application/atom+xml", body.into_bytes())
}

/// `GET /badge/<target>.svg`; 404 for a target that is not configured.
async fn badge_svg(
    State(shared): State<Arc<Shared>>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (statuses, _) = current_status(&shared);
    let found = file
        .strip_suffix(".svg")
        .and_then(|name| statuses.iter().find(|s| s.name == name));
    match found {
        Some(status) => status_api::cached(
            &headers,
            "image/svg+xml",
            status_api::badge(&status.name, status.state()).into_bytes(),
        ),
        // A fixed answer: the path is not echoed.
        None => (StatusCode::NOT_FOUND, "no such target\n").into_response(),
    }
}

/// The metrics of one on-demand run, blackbox-style gauges.
fn single_run_exposition(record: &crate::history::RunRecord) -> String {
    let labels = format!("target=\"{}\",probe=\"{}\"", record.target, record.probe);
    let v = &record.verdict;
    // Written piecewise into one buffer: this answer is made for every `/probe`.
    let mut out = String::with_capacity(2048);
    let gauges: [(&str, &str, f64); 4] = [
        (
            "lastfm_probe_success",
            "1 if this on-demand run met the probe's expectation.",
            f64::from(u8::from(v.met_expectation)),
        ),
        (
            "lastfm_probe_duration_seconds",
            "Duration of this on-demand run.",
            record.latency.as_secs_f64(),
        ),
        (
            "lastfm_probe_http_status_code",
            "HTTP status of this run, 0 when there was no response.",
            f64::from(v.http_status.unwrap_or(0)),
        ),
        (
            "lastfm_probe_last_error_code",
            "Last.fm error code of this run, 0 when none.",
            f64::from(
                v.error_code
                    .map_or(0, |c| u16::try_from(c).unwrap_or(u16::MAX)),
            ),
        ),
    ];
    for (name, help, value) in gauges {
        for part in [
            "# HELP ",
            name,
            " ",
            help,
            "\n# TYPE ",
            name,
            " gauge\n",
            name,
            "{",
        ] {
            out.push_str(part);
        }
        out.push_str(&labels);
        out.push_str("} ");
        crate::metrics::push_f64(&mut out, value);
        out.push('\n');
    }
    out.push_str(
        "# HELP lastfm_probe_outcome The outcome of this on-demand run (1 for the outcome that occurred).\n# TYPE lastfm_probe_outcome gauge\n",
    );
    for outcome in crate::classify::Outcome::ALL {
        for part in [
            "lastfm_probe_outcome{",
            &labels,
            ",outcome=\"",
            outcome.as_label(),
        ] {
            out.push_str(part);
        }
        out.push_str(if outcome == v.outcome {
            "\"} 1\n"
        } else {
            "\"} 0\n"
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::{Classification, Outcome};
    use crate::history::RunRecord;

    #[test]
    fn an_on_demand_run_is_exposed_as_gauges_of_that_run() {
        let record = RunRecord {
            id: 1,
            target: "lastfm".into(),
            probe: "artist.getInfo".into(),
            at: chrono::Utc::now(),
            latency: Duration::from_micros(123_456),
            verdict: Classification {
                http_status: Some(200),
                error_code: Some(8),
                ..Classification::new(Outcome::ApiError)
            },
            on_demand: true,
            trace: crate::history::trace::Trace::default(),
            facts: None,
        };
        let l = "target=\"lastfm\",probe=\"artist.getInfo\"";
        let mut want = String::new();
        for (name, help, value) in [
            (
                "lastfm_probe_success",
                "1 if this on-demand run met the probe's expectation.",
                "0",
            ),
            (
                "lastfm_probe_duration_seconds",
                "Duration of this on-demand run.",
                "0.123456",
            ),
            (
                "lastfm_probe_http_status_code",
                "HTTP status of this run, 0 when there was no response.",
                "200",
            ),
            (
                "lastfm_probe_last_error_code",
                "Last.fm error code of this run, 0 when none.",
                "8",
            ),
        ] {
            want.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{{l}}} {value}\n"
            ));
        }
        want.push_str("# HELP lastfm_probe_outcome The outcome of this on-demand run (1 for the outcome that occurred).\n# TYPE lastfm_probe_outcome gauge\n");
        for outcome in Outcome::ALL {
            let value = u8::from(outcome == Outcome::ApiError);
            want.push_str(&format!(
                "lastfm_probe_outcome{{{l},outcome=\"{}\"}} {value}\n",
                outcome.as_label()
            ));
        }
        assert_eq!(single_run_exposition(&record), want);
    }
}

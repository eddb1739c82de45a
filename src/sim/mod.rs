//! A Last.fm API simulator: the upstream for the test suite, `lastfm-monitor demo` and
//! `lastfm-monitor simulate`.
//!
//! It reproduces what the real API does (docs/LASTFM-API.md): JSON and XML, error payloads with
//! their various statuses, `200 OK` errors, the edge proxy's HTML pages, empty, truncated, cut-short,
//! stalled and trickled bodies, rate limiting, suspended keys and signature checks. What it answers
//! and when is a [`Scenario`], plain data, so a test, the demo and an operator's fire drill are each
//! one scenario. A scenario plays one service, its personality (a `config::Api`): Last.fm, or
//! Libre.fm or ListenBrainz's compatibility API with their own checks, statuses and rate limits.
//!
//! | file | owns |
//! |---|---|
//! | `scenario.rs` | the scenario format (documented there), validation, the timeline |
//! | `demo.rs` | the built-in demo's timelines: Last.fm's incidents, and a Libre.fm and a ListenBrainz beside it |
//! | `rule.rs` | one phase rule: the methods it matches and what it sends, checked kind by kind |
//! | `answer.rs` | the decision for one request: phase rules first, then the API's own checks |
//! | `compat.rs` | the Libre.fm and ListenBrainz personalities: their checks and answer shapes |
//! | `limits.rs` | Last.fm's token buckets and ListenBrainz's windows with their headers |
//! | `writes.rs` | the write path: now playing and scrobbles into the store, recent tracks out |
//! | `plays.rs` | the per-user play store: now playing, scrobbles, visibility, the daily count |
//! | `responses.rs` | the method table, success and error bodies, default messages and statuses |
//! | `http.rs` | reading one HTTP/1.1 request, writing a response head |
//! | `server.rs` | the TCP server, delivery of (broken) answers, the [`Simulator`] handle |
//!
//! From outside `crate::sim` it uses the request signature (`probe::sign`), so a signed request is
//! checked exactly as the monitor signs it, and `config::Api`, so a personality implements exactly
//! the methods the configuration accepts for its service. The simulator never logs
//! credentials: its debug log names only the method, the phase and the kind of answer.

mod answer;
mod compat;
mod demo;
mod http;
mod limits;
mod plays;
mod responses;
mod rule;
mod scenario;
mod server;
mod writes;

pub use scenario::{Phase, Scenario, ScenarioError, personality_from_label};
pub use server::{SeenRequest, Simulator, spawn_local};

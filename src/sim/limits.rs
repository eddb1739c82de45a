//! The simulated services' limiters: Last.fm's (a token bucket per key, error 29 beyond it) and
//! ListenBrainz's (a fixed window per client that every answer reports in `X-RateLimit-*`
//! headers, HTTP 429 beyond it). Libre.fm has none. Pure, given the time.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

/// Without `[[keys]]` any well-formed key is accepted, so the maps are bounded by forgetting.
const MAX_TRACKED_KEYS: usize = 1024;

/// A token bucket per api_key: the simulated Last.fm's politeness limiter.
#[derive(Debug, Default)]
pub(crate) struct RateLimiter {
    buckets: HashMap<String, Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl RateLimiter {
    /// Takes a token for `key` refilled at `per_second`; the burst is one second's worth (at least 1).
    pub(crate) fn allow(&mut self, key: &str, per_second: f64, now: Instant) -> bool {
        if self.buckets.len() >= MAX_TRACKED_KEYS && !self.buckets.contains_key(key) {
            self.buckets.clear();
        }
        let burst = per_second.max(1.0);
        let bucket = self.buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: burst,
            updated: now,
        });
        let refill = now.saturating_duration_since(bucket.updated).as_secs_f64() * per_second;
        bucket.tokens = (bucket.tokens + refill).min(burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// ListenBrainz's window (brainzutils' `ratelimit`, 10 seconds by default).
pub(crate) const WINDOW: Duration = Duration::from_secs(10);
/// The rate a ListenBrainz personality allows without `rate_limit_per_second`: 100 requests per
/// window, brainzutils' default per client.
pub(crate) const DEFAULT_PER_SECOND: f64 = 10.0;

/// ListenBrainz's fixed windows, one per api_key. The real service counts per IP address (or per
/// user token); the simulator's clients all share 127.0.0.1, so it counts per key, which lets two
/// targets of one test have separate budgets. A window starts with its first request (the real one
/// is aligned to the clock), so a test knows where it stands.
#[derive(Debug, Default)]
pub(crate) struct Windows {
    windows: HashMap<String, Window>,
}

#[derive(Debug)]
struct Window {
    started: Instant,
    used: u64,
}

/// Where a client stands in its window after one request, as the `X-RateLimit-*` headers say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WindowState {
    /// Whether this request fitted in the window.
    pub(crate) allowed: bool,
    pub(crate) limit: u64,
    pub(crate) remaining: u64,
    /// Whole seconds until the window ends, rounded up.
    pub(crate) reset_in: u64,
}

/// Requests per window at `per_second` (at least one).
pub(crate) fn window_limit(per_second: f64) -> u64 {
    let per_window = (per_second * WINDOW.as_secs_f64()).round();
    // Validation keeps the rate finite and positive; the float-to-int cast saturates anyway.
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a finite, non-negative count of requests, saturating"
    )]
    let limit = per_window as u64;
    limit.max(1)
}

impl Windows {
    /// Counts one request of `key` against `per_second` × the window.
    pub(crate) fn take(&mut self, key: &str, per_second: f64, now: Instant) -> WindowState {
        if self.windows.len() >= MAX_TRACKED_KEYS && !self.windows.contains_key(key) {
            self.windows.clear();
        }
        let limit = window_limit(per_second);
        let window = self.windows.entry(key.to_owned()).or_insert(Window {
            started: now,
            used: 0,
        });
        if now.saturating_duration_since(window.started) >= WINDOW {
            *window = Window {
                started: now,
                used: 0,
            };
        }
        let allowed = window.used < limit;
        if allowed {
            window.used += 1;
        }
        let left = (window.started + WINDOW).saturating_duration_since(now);
        WindowState {
            allowed,
            limit,
            remaining: limit.saturating_sub(window.used),
            reset_in: left.as_secs() + u64::from(left.subsec_nanos() > 0),
        }
    }
}

impl WindowState {
    /// The state of a refused request: nothing remains.
    pub(crate) fn exhausted(self) -> Self {
        Self {
            allowed: false,
            remaining: 0,
            ..self
        }
    }

    /// ListenBrainz's four headers; `X-RateLimit-Reset` is the window's end in Unix seconds.
    pub(crate) fn headers(self, unix_now: u64) -> Vec<(&'static str, String)> {
        vec![
            ("X-RateLimit-Limit", self.limit.to_string()),
            ("X-RateLimit-Remaining", self.remaining.to_string()),
            ("X-RateLimit-Reset-In", self.reset_in.to_string()),
            (
                "X-RateLimit-Reset",
                unix_now.saturating_add(self.reset_in).to_string(),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_allows_a_burst_then_refills() {
        let mut limiter = RateLimiter::default();
        let t0 = Instant::now();
        let allowed = (0..5).filter(|_| limiter.allow("k", 2.0, t0)).count();
        assert_eq!(allowed, 2);
        assert!(limiter.allow("other", 2.0, t0), "per key");
        assert!(limiter.allow("k", 2.0, t0 + Duration::from_millis(500)));
        assert!(!limiter.allow("k", 2.0, t0 + Duration::from_millis(500)));
    }

    #[test]
    fn a_window_counts_down_refuses_then_starts_afresh() {
        let mut windows = Windows::default();
        let t0 = Instant::now();
        let first = windows.take("k", 0.3, t0);
        assert_eq!(
            first,
            WindowState {
                allowed: true,
                limit: 3,
                remaining: 2,
                reset_in: 10
            }
        );
        let later = t0 + Duration::from_millis(2500);
        assert_eq!(windows.take("k", 0.3, later).remaining, 1);
        let last = windows.take("k", 0.3, later);
        assert!(last.allowed && last.remaining == 0);
        let refused = windows.take("k", 0.3, later);
        assert!(!refused.allowed);
        assert_eq!(
            (refused.remaining, refused.reset_in),
            (0, 8),
            "7.5 s, rounded up"
        );
        assert!(windows.take("other", 0.3, later).allowed, "per key");
        let next = windows.take("k", 0.3, t0 + WINDOW);
        assert!(next.allowed && next.remaining == 2 && next.reset_in == 10);
    }

    #[test]
    fn a_tiny_rate_still_allows_one_request_per_window_and_headers_say_so() {
        assert_eq!(window_limit(0.01), 1);
        assert_eq!(window_limit(DEFAULT_PER_SECOND), 100);
        let state = Windows::default().take("k", 0.01, Instant::now());
        let headers = state.headers(1_700_000_000);
        let names: Vec<_> = headers.iter().map(|(name, _)| *name).collect();
        assert_eq!(
            names,
            [
                "X-RateLimit-Limit",
                "X-RateLimit-Remaining",
                "X-RateLimit-Reset-In",
                "X-RateLimit-Reset"
            ]
        );
        assert_eq!(headers[1].1, "0");
        assert_eq!(headers[3].1, "1700000010");
        assert_eq!(state.exhausted().remaining, 0);
    }
}

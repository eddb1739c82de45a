//! `basic_auth_users`: the bcrypt hashes ([`PasswordHash`]) and the checker the server asks
//! about each request's `Authorization` header ([`BasicAuth`]); README.md, TLS and basic auth.
//!
//! bcrypt is slow on purpose (about 70 ms at cost 10), so it runs on the blocking pool and a
//! successful check is cached per user as SHA-256(bcrypt hash, password), compared in constant
//! time; unknown users are checked against a dummy hash of the highest configured cost, so an
//! unknown name costs what the dearest user costs. Users hashed at different costs still answer
//! a wrong password at different speeds, which tells who exists: [`cost_warning`] says so at
//! start-up.
//!
//! At most [`VERIFYING_AT_ONCE`] bcrypt checks run at once, on their own bound: a flood of wrong
//! passwords queues here (first come, first served, for at most [`VERIFY_QUEUE_WAIT`]) instead of
//! filling the blocking pool's hundreds of threads or the server's requests-in-flight cap, so a
//! scraper whose credentials are cached is answered at once whatever the flood.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderValue;
use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use tokio::sync::Semaphore;

use crate::config::problem::Problem;
use crate::config::secret::REDACTED;

/// A bcrypt hash from `basic_auth_users`; its `Debug` is redacted (exporter-toolkit treats it
/// as a secret: it can be attacked offline).
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash {
    hash: Arc<str>,
    /// The work factor, 4–31; the dummy hash for unknown users gets the same.
    cost: u32,
}

impl PasswordHash {
    /// Parses a bcrypt hash (`$2a$`, `$2b$`, `$2x$` or `$2y$`, as `htpasswd -B` writes).
    pub fn parse(hash: &str) -> Result<Self, String> {
        let hash = hash.trim();
        match hash.parse::<bcrypt::HashParts>() {
            Ok(parts) if (4..=31).contains(&parts.get_cost()) => Ok(Self {
                hash: hash.into(),
                cost: parts.get_cost(),
            }),
            Ok(_) => Err("the bcrypt cost must be between 4 and 31".to_owned()),
            Err(_) => Err(
                "not a bcrypt hash; make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`"
                    .to_owned(),
            ),
        }
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// Checks each `basic_auth_users` entry: a name basic auth can carry, a bcrypt hash.
pub(super) fn validate_users(
    users: Vec<(String, String)>,
    problems: &mut Vec<Problem>,
) -> BTreeMap<String, PasswordHash> {
    let mut valid = BTreeMap::new();
    for (user, hash) in users {
        let key = format!("basic_auth_users.{user}");
        if user.is_empty() || user.contains(':') {
            problems.push(Problem::of_key(
                "basic_auth_users",
                format!(
                    "user name {user:?} is empty or contains ':', which basic auth cannot carry"
                ),
            ));
            continue;
        }
        match PasswordHash::parse(&hash) {
            Ok(hash) => {
                valid.insert(user, hash);
            }
            Err(message) => problems.push(Problem::of_key(&key, message)),
        }
    }
    valid
}

/// Why the users' bcrypt costs give away which users exist, when they differ.
pub fn cost_warning(users: &BTreeMap<String, PasswordHash>) -> Option<String> {
    let lowest = users.values().map(|h| h.cost).min()?;
    let highest = users.values().map(|h| h.cost).max()?;
    (lowest != highest).then(|| {
        format!(
            "basic_auth_users are hashed with different bcrypt costs ({lowest} to {highest}): a wrong \
             password for a cheaper user is answered faster, which tells which users exist; hash \
             every password with the same cost (htpasswd -nBC {highest})"
        )
    })
}

/// bcrypt checks that run at once; more wait their turn (the host the daemon is sized for has
/// two cores, and the runtime thread needs one of them).
pub const VERIFYING_AT_ONCE: usize = 2;
/// How long a request waits for its bcrypt check to start before it is answered 503.
pub const VERIFY_QUEUE_WAIT: Duration = Duration::from_secs(10);

/// What a check of the `Authorization` header found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Valid credentials.
    Authorized,
    /// None, malformed or wrong.
    Refused,
    /// The bcrypt queue did not let this check start within [`VERIFY_QUEUE_WAIT`].
    Busy,
}

/// Checks `Authorization: Basic` against the configured users, caching successes.
pub struct BasicAuth {
    /// User name → bcrypt hash, from the web config.
    users: BTreeMap<String, PasswordHash>,
    /// Checked for unknown users, so a miss costs what a hit costs.
    dummy: PasswordHash,
    /// Per user, SHA-256(hash, password) of the last password that verified: a scrape every
    /// second must not pay bcrypt every time. Bounded by the number of configured users.
    verified: Mutex<HashMap<String, [u8; 32]>>,
    /// How many bcrypt verifications ran (the cache's tests read it).
    slow_checks: AtomicU64,
    /// Bounds the bcrypt checks running at once ([`VERIFYING_AT_ONCE`]).
    verifying: Arc<Semaphore>,
}

impl fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicAuth")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl BasicAuth {
    /// A checker for `users`; `None` when there are none (no authentication).
    pub fn from_users(users: &BTreeMap<String, PasswordHash>) -> Option<Self> {
        let cost = users.values().map(|h| h.cost).max()?;
        // A fixed salt is fine: the dummy hash protects timing, not a password.
        let dummy = bcrypt::hash_with_salt(b"lastfm-monitor: no such user", cost, [7; 16])
            .expect("the cost comes from a parsed hash, checked to be within 4..=31");
        let dummy = PasswordHash {
            hash: dummy.to_string().into(),
            cost,
        };
        Some(Self {
            users: users.clone(),
            dummy,
            verified: Mutex::new(HashMap::new()),
            slow_checks: AtomicU64::new(0),
            verifying: Arc::new(Semaphore::new(VERIFYING_AT_ONCE)),
        })
    }

    /// Whether the `Authorization` header carries valid credentials.
    pub async fn is_authorized(&self, authorization: Option<&HeaderValue>) -> bool {
        self.check(authorization).await == Verdict::Authorized
    }

    /// Checks the `Authorization` header: cached credentials at once, others by bcrypt on the
    /// blocking pool, at most [`VERIFYING_AT_ONCE`] at a time.
    pub async fn check(&self, authorization: Option<&HeaderValue>) -> Verdict {
        let Some((user, password)) = authorization.and_then(parse_basic) else {
            return Verdict::Refused;
        };
        let known = self.users.get(&user);
        let hash = known.unwrap_or(&self.dummy).clone();
        let digest = cache_digest(&hash, &password);
        if known.is_some() && self.is_cached(&user, &digest) {
            return Verdict::Authorized;
        }
        let turn = Arc::clone(&self.verifying).acquire_owned();
        let Ok(Ok(turn)) = tokio::time::timeout(VERIFY_QUEUE_WAIT, turn).await else {
            return Verdict::Busy;
        };
        self.slow_checks.fetch_add(1, Ordering::Relaxed);
        // The turn goes with the check: a client that hangs up does not free it while bcrypt
        // still runs.
        let verified = tokio::task::spawn_blocking(move || {
            let _turn = turn;
            bcrypt::verify(password.as_bytes(), &hash.hash).unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        if verified && known.is_some() {
            self.lock().insert(user, digest);
            Verdict::Authorized
        } else {
            Verdict::Refused
        }
    }

    /// How many bcrypt verifications have run.
    pub fn slow_checks(&self) -> u64 {
        self.slow_checks.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, [u8; 32]>> {
        // Only a cache: a panic elsewhere cannot make it wrong, at worst cold.
        self.verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn is_cached(&self, user: &str, digest: &[u8; 32]) -> bool {
        self.lock()
            .get(user)
            .is_some_and(|cached| bool::from(cached.ct_eq(digest)))
    }
}

fn cache_digest(hash: &PasswordHash, password: &str) -> [u8; 32] {
    // The bcrypt hash carries a random salt, so the cached digest is salted too.
    Sha256::new()
        .chain_update(hash.hash.as_bytes())
        .chain_update([0])
        .chain_update(password.as_bytes())
        .finalize()
        .into()
}

/// `Basic base64(user:password)` → (user, password).
fn parse_basic(value: &HeaderValue) -> Option<(String, String)> {
    let text = value.to_str().ok()?.trim();
    let (scheme, encoded) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

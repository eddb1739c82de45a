//! `basic_auth_users`: the bcrypt hashes ([`PasswordHash`]) and the checker the server asks
//! about each request's `Authorization` header ([`BasicAuth`]); README.md, TLS and basic auth.
//!
//! bcrypt is slow on purpose (about 70 ms at cost 10), so it runs on the blocking pool and a
//! successful check is cached per user as SHA-256(bcrypt hash, password), compared in constant
//! time; unknown users are checked against a dummy hash of the same cost, so the answer time
//! does not reveal which users exist.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::http::HeaderValue;
use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

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
        })
    }

    /// Whether the `Authorization` header carries valid credentials.
    pub async fn is_authorized(&self, authorization: Option<&HeaderValue>) -> bool {
        let Some((user, password)) = authorization.and_then(parse_basic) else {
            return false;
        };
        let known = self.users.get(&user);
        let hash = known.unwrap_or(&self.dummy).clone();
        let digest = cache_digest(&hash, &password);
        if known.is_some() && self.is_cached(&user, &digest) {
            return true;
        }
        self.slow_checks.fetch_add(1, Ordering::Relaxed);
        let verified = tokio::task::spawn_blocking(move || {
            bcrypt::verify(password.as_bytes(), &hash.hash).unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        let ok = verified && known.is_some();
        if ok {
            self.lock().insert(user, digest);
        }
        ok
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

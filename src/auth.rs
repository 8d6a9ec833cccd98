//! Who is calling: API keys (argon2-hashed secret, shown once), their
//! scopes, and the [`Principal`] every domain operation is done as. The
//! HTTP extractor that turns a Bearer header into a principal lives in
//! `api::auth`; this module knows nothing of HTTP.
//!
//! A token looks like `hk_<id>_<secret>`. The id finds the record; the secret
//! is checked against its argon2 hash once, after which a SHA-256 digest of
//! the whole token is cached for [`CACHE_TTL`], so a busy client costs one
//! hash lookup per request, not one argon2 run. Unknown ids are refused
//! before any hashing, and argon2 runs at most [`MAX_CONCURRENT_VERIFIES`] at
//! a time off the async threads, so bad tokens cannot exhaust the CPU.
//!
//! A token whose secret failed verification is remembered too (its digest,
//! for [`FAILED_TTL`], at most [`MAX_FAILED`] of them): a client retrying a
//! wrong key, or an attacker replaying one, is answered 401 from memory and
//! does not take the verify slots that first-time verifications of good keys
//! need. Each distinct wrong secret still costs one verify. A wrong secret
//! can never become right (secrets are random per key), so the only cost of
//! the negative cache is memory, which is bounded.
//!
//! Distinct wrong secrets for one key id (guessing, or a flood aimed at the
//! verify slots) are throttled per id: after [`FAIL_BURST`] wrong secrets
//! within [`FAIL_WINDOW`], that id gets one verification per
//! [`FAIL_SPACING`] and the rest are refused without hashing, so the slots
//! stay free for other keys.
//!
//! A revocation reaches every node within [`REVOCATION_CHECK`]: the store
//! counts revocations, the count is read at most that often, and a change
//! drops every cached verification.
//!
//! `herald_auth_verifies_total{code="ok"|"wrong"}` counts the argon2 runs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::metrics::Metrics;
use crate::model::now_micros;
use crate::store::{ApiKeyRecord, KeyStore, StoreError};

/// How long a verified token is trusted without asking the store again
/// (unless a revocation is seen first).
pub const CACHE_TTL: Duration = Duration::from_secs(30);
/// How often the store's revocation count is read: the longest a revoked
/// key keeps working on any node (plus one store round trip).
pub const REVOCATION_CHECK: Duration = Duration::from_millis(250);
/// Wrong secrets for one key id before it is throttled.
pub const FAIL_BURST: u32 = 5;
/// How long wrong secrets count against a key id.
pub const FAIL_WINDOW: Duration = Duration::from_secs(60);
/// A throttled key id gets one verification per this.
pub const FAIL_SPACING: Duration = Duration::from_secs(1);
const MAX_CACHED: usize = 10_000;
const MAX_CONCURRENT_VERIFIES: usize = 2;
/// How long a token that failed verification is refused from memory.
pub const FAILED_TTL: Duration = Duration::from_secs(60);
/// Most failed tokens remembered; past it, expired ones are dropped, then
/// (under a flood of distinct wrong secrets) all of them.
pub const MAX_FAILED: usize = 10_000;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Send messages and read their status.
    Send,
    /// Issue and verify OTPs.
    Otp,
    /// Create and approve broadcasts; send emergency-class messages.
    Broadcast,
    /// Everything, including other principals' messages.
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::Send, Scope::Otp, Scope::Broadcast, Scope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Send => "send",
            Scope::Otp => "otp",
            Scope::Broadcast => "broadcast",
            Scope::Admin => "admin",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of scopes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scopes(u8);

impl Scopes {
    /// Parses `send,otp` or `all`.
    ///
    /// # Errors
    /// The unknown scope's name.
    pub fn parse(text: &str) -> Result<Scopes, String> {
        let mut bits = 0;
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if part == "all" {
                bits |= Scope::ALL.iter().map(|s| s.bit()).fold(0, |a, b| a | b);
                continue;
            }
            let scope = Scope::ALL
                .into_iter()
                .find(|s| s.as_str() == part)
                .ok_or_else(|| {
                    format!("unknown scope '{part}' (send, otp, broadcast, admin or all)")
                })?;
            bits |= scope.bit();
        }
        if bits == 0 {
            return Err("at least one scope is required".into());
        }
        Ok(Scopes(bits))
    }

    /// Admin holds every scope.
    pub fn allows(self, scope: Scope) -> bool {
        self.0 & (scope.bit() | Scope::Admin.bit()) != 0
    }

    pub fn names(self) -> Vec<String> {
        Scope::ALL
            .into_iter()
            .filter(|s| self.0 & s.bit() != 0)
            .map(|s| s.as_str().to_string())
            .collect()
    }
}

/// The authenticated caller: an API key's owner, or Herald itself acting
/// for an internal sender (see [`Principal::internal`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The key's name (for logs and the CLI).
    pub name: String,
    /// Who owns what this principal creates (messages, idempotency keys,
    /// OTPs, budgets): an API key's id, which is never reused, so a new key
    /// given a revoked key's name inherits nothing of it; an internal
    /// sender's name.
    pub owner: String,
    pub scopes: Scopes,
    /// The sender ids it may put in `from` (see [`crate::senders`]).
    pub senders: crate::senders::Senders,
}

/// A principal lacks the scope an operation needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this API key lacks the '{}' scope", .0.as_str())]
pub struct MissingScope(pub Scope);

impl Principal {
    /// Herald itself sending on behalf of a feature (e.g. inbound
    /// auto-replies): the name shows as the messages' owner.
    pub fn internal(name: &str, scopes: &[Scope]) -> Principal {
        Principal {
            name: name.to_string(),
            owner: name.to_string(),
            senders: crate::senders::Senders::Any,
            scopes: Scopes(scopes.iter().fold(0, |bits, s| bits | s.bit())),
        }
    }

    /// Whether the principal holds `scope` (admin holds every scope).
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.allows(scope)
    }

    /// Refuses unless the principal holds `scope`.
    ///
    /// # Errors
    /// [`MissingScope`].
    pub fn require(&self, scope: Scope) -> Result<(), MissingScope> {
        if self.has(scope) {
            Ok(())
        } else {
            Err(MissingScope(scope))
        }
    }
}

/// Why a token was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Unknown, revoked, malformed or wrong token.
    #[error("missing or invalid API key")]
    Unauthorized,
    /// The key store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The process is shutting down.
    #[error("shutting down")]
    ShuttingDown,
    /// A bug (a verify task died, a stored record is unreadable).
    #[error("{0}")]
    Internal(String),
}

struct Cached {
    principal: Principal,
    verified: Instant,
}

/// Wrong secrets seen for one key id.
struct Failures {
    count: u32,
    since: Instant,
    last_verify: Instant,
}

/// The last revocation count read, and when.
#[derive(Default)]
struct Revocations {
    seen: Option<u64>,
    checked: Option<Instant>,
}

/// Verifies Bearer tokens against the store, with a digest cache of good
/// tokens and one of wrong ones.
pub struct Authenticator {
    store: Arc<dyn KeyStore>,
    metrics: Arc<Metrics>,
    cache: Mutex<HashMap<[u8; 32], Cached>>,
    /// Digests of tokens whose secret failed verification, and when.
    failed: Mutex<HashMap<[u8; 32], Instant>>,
    /// Wrong secrets per key id (see [`FAIL_BURST`]).
    failures: Mutex<HashMap<String, Failures>>,
    revocations: tokio::sync::Mutex<Revocations>,
    verifies: Semaphore,
}

impl Authenticator {
    pub fn new(store: Arc<dyn KeyStore>, metrics: Arc<Metrics>) -> Self {
        Authenticator {
            store,
            metrics,
            cache: Mutex::new(HashMap::new()),
            failed: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            revocations: tokio::sync::Mutex::new(Revocations::default()),
            verifies: Semaphore::new(MAX_CONCURRENT_VERIFIES),
        }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, Failures>> {
        // Entries are replaced whole: a poisoned map is still consistent.
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether key `id` may have a secret verified now; a throttled id
    /// gets one verification per [`FAIL_SPACING`].
    fn may_verify(&self, id: &str) -> bool {
        let mut failures = self.failures();
        let Some(f) = failures.get_mut(id) else {
            return true;
        };
        if f.since.elapsed() >= FAIL_WINDOW {
            failures.remove(id);
            return true;
        }
        if f.count < FAIL_BURST {
            return true;
        }
        if f.last_verify.elapsed() >= FAIL_SPACING {
            f.last_verify = Instant::now();
            return true;
        }
        false
    }

    fn note_wrong_secret(&self, id: &str) {
        let mut failures = self.failures();
        if failures.len() >= MAX_FAILED && !failures.contains_key(id) {
            failures.retain(|_, f| f.since.elapsed() < FAIL_WINDOW);
            if failures.len() >= MAX_FAILED {
                failures.clear();
            }
        }
        let now = Instant::now();
        let f = failures.entry(id.to_string()).or_insert(Failures {
            count: 0,
            since: now,
            last_verify: now,
        });
        f.count += 1;
    }

    /// Drops every cached verification when the store counted a revocation
    /// since the last look (at most every [`REVOCATION_CHECK`]; one caller
    /// looks, the others go on). A store that cannot be read keeps the
    /// cache: the keys it holds were valid at their last check.
    async fn check_revocations(&self) {
        let Ok(mut r) = self.revocations.try_lock() else {
            return;
        };
        if r.checked.is_some_and(|t| t.elapsed() < REVOCATION_CHECK) {
            return;
        }
        r.checked = Some(Instant::now());
        if let Ok(n) = self.store.revocations().await {
            if r.seen.is_some_and(|seen| seen != n) {
                self.cache().clear();
            }
            r.seen = Some(n);
        }
    }

    fn failed(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Instant>> {
        // Entries are single timestamps: a poisoned map is still consistent.
        self.failed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `digest` failed verification less than [`FAILED_TTL`] ago.
    fn recently_failed(&self, digest: &[u8; 32]) -> bool {
        let mut failed = self.failed();
        match failed.get(digest) {
            Some(at) if at.elapsed() < FAILED_TTL => true,
            Some(_) => {
                failed.remove(digest);
                false
            }
            None => false,
        }
    }

    fn remember_failure(&self, digest: [u8; 32]) {
        let mut failed = self.failed();
        if failed.len() >= MAX_FAILED {
            failed.retain(|_, at| at.elapsed() < FAILED_TTL);
            if failed.len() >= MAX_FAILED {
                failed.clear();
            }
        }
        failed.insert(digest, Instant::now());
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Cached>> {
        // Entries are replaced whole: a poisoned map is still consistent.
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The principal a token belongs to.
    ///
    /// # Errors
    /// [`AuthError::Unauthorized`] for unknown, revoked or wrong tokens,
    /// [`AuthError::Store`] when the store is down.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, AuthError> {
        self.check_revocations().await;
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(hit) = self.cache().get(&digest)
            && hit.verified.elapsed() < CACHE_TTL
        {
            return Ok(hit.principal.clone());
        }
        let (id, secret) = split_token(token).ok_or(AuthError::Unauthorized)?;
        if self.recently_failed(&digest) {
            return Err(AuthError::Unauthorized);
        }
        let record = self
            .store
            .api_key(id)
            .await?
            .filter(|r| r.revoked_at.is_none())
            .ok_or(AuthError::Unauthorized)?;
        if !self.may_verify(id) {
            return Err(AuthError::Unauthorized);
        }
        let _permit = self
            .verifies
            .acquire()
            .await
            .map_err(|_| AuthError::ShuttingDown)?;
        // Requests with the same token that queued behind the one verifying
        // it take its answer instead of verifying again.
        if self.recently_failed(&digest) {
            return Err(AuthError::Unauthorized);
        }
        // Checked again in turn: guesses that queued together must not all
        // pass the check made before any of them failed.
        if !self.may_verify(id) {
            return Err(AuthError::Unauthorized);
        }
        if let Some(hit) = self.cache().get(&digest)
            && hit.verified.elapsed() < CACHE_TTL
        {
            return Ok(hit.principal.clone());
        }
        let hash = record.hash.clone();
        let secret = secret.to_string();
        let span = tracing::Span::current();
        let ok =
            tokio::task::spawn_blocking(move || span.in_scope(|| verify_secret(&secret, &hash)))
                .await
                .map_err(|e| AuthError::Internal(format!("verify task: {e}")))?;
        self.metrics.auth_verify(if ok { "ok" } else { "wrong" });
        if !ok {
            self.remember_failure(digest);
            self.note_wrong_secret(id);
            return Err(AuthError::Unauthorized);
        }
        let scopes = Scopes::parse(&record.scopes.join(",")).map_err(AuthError::Internal)?;
        let senders =
            crate::senders::SenderPatterns::parse(&record.senders).map_err(AuthError::Internal)?;
        let principal = Principal {
            name: record.name,
            owner: record.id,
            scopes,
            senders: crate::senders::Senders::Only(senders),
        };
        let mut cache = self.cache();
        if cache.len() >= MAX_CACHED {
            cache.retain(|_, c| c.verified.elapsed() < CACHE_TTL);
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
        }
        cache.insert(
            digest,
            Cached {
                principal: principal.clone(),
                verified: Instant::now(),
            },
        );
        Ok(principal)
    }

    /// Drops cached verifications (after a revocation in this process).
    pub fn forget_all(&self) {
        self.cache().clear();
        self.failed().clear();
    }
}

fn split_token(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix("hk_")?;
    let (id, secret) = rest.split_once('_')?;
    let valid = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    (valid(id, 16) && valid(secret, 64)).then_some((id, secret))
}

/// Whether `secret` matches the argon2 PHC string `hash` (a malformed hash
/// matches nothing).
pub fn verify_secret(secret: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(secret.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Hashes a secret (API key or password) with argon2id and a random salt.
///
/// # Errors
/// When the system RNG or argon2 fails.
pub fn hash_secret(secret: &str) -> Result<String, String> {
    Argon2::default()
        .hash_password(secret.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Random bytes from the OS CSPRNG as lowercase hex.
///
/// # Errors
/// When the OS RNG is unavailable.
pub fn random_hex(bytes: usize) -> Result<String, String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| e.to_string())?;
    Ok(hex::encode(buf))
}

/// A new key: the token to show once, and the record to store.
///
/// # Errors
/// Bad name or scopes, or RNG/hash failure.
pub fn new_api_key(
    name: &str,
    scopes: &str,
    senders: &str,
) -> Result<(String, ApiKeyRecord), String> {
    let name_ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !name_ok {
        return Err("name must be 1 to 64 letters, digits, '-', '_' or '.'".into());
    }
    let scopes = Scopes::parse(scopes)?;
    let senders: Vec<&str> = senders
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let senders = crate::senders::SenderPatterns::parse(&senders)?;
    let id = random_hex(8)?;
    let secret = random_hex(32)?;
    let record = ApiKeyRecord {
        id: id.clone(),
        name: name.to_string(),
        scopes: scopes.names(),
        hash: hash_secret(&secret)?,
        created_at: now_micros(),
        revoked_at: None,
        webhook_secret: Some(crate::webhook::signature::new_secret()?),
        senders: senders.as_slice().to_vec(),
    };
    Ok((format!("hk_{id}_{secret}"), record))
}

/// Creates and stores a key; returns what to show once: the token on the
/// first line, the webhook signing secret on the second.
///
/// # Errors
/// Invalid input, a taken name, or a store failure, as text for the CLI.
pub async fn create_api_key(
    store: &dyn KeyStore,
    name: &str,
    scopes: &str,
    senders: &str,
) -> Result<String, String> {
    let (name, scopes, senders) = (name.to_string(), scopes.to_string(), senders.to_string());
    let (token, record) =
        tokio::task::spawn_blocking(move || new_api_key(&name, &scopes, &senders))
            .await
            .map_err(|e| e.to_string())??;
    let name = record.name.clone();
    let webhook_secret = record.webhook_secret.clone().unwrap_or_default();
    match store.create_api_key(record).await {
        Ok(true) => Ok(format!("{token}\nwebhook secret: {webhook_secret}")),
        Ok(false) => Err(format!("an API key named '{name}' already exists")),
        Err(e) => Err(store_text(&e)),
    }
}

fn store_text(e: &StoreError) -> String {
    e.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_and_admin_allows_everything() {
        let s = Scopes::parse("send, otp").expect("parse");
        assert!(s.allows(Scope::Send) && s.allows(Scope::Otp));
        assert!(!s.allows(Scope::Broadcast));
        let all = Scopes::parse("all").expect("all");
        assert!(all.allows(Scope::Broadcast));
        assert!(Scopes::parse("admin").expect("admin").allows(Scope::Otp));
        assert!(Scopes::parse("sned").is_err());
        assert!(Scopes::parse("").is_err());
    }

    #[test]
    fn new_key_verifies_and_others_do_not() {
        let (token, record) = new_api_key("app", "send", "").expect("key");
        let (id, secret) = split_token(&token).expect("shape");
        assert_eq!(id, record.id);
        assert!(verify_secret(secret, &record.hash));
        assert!(!verify_secret(&"0".repeat(64), &record.hash));
        assert!(!record.hash.contains(secret));
    }

    #[test]
    fn malformed_tokens_are_refused_before_lookup() {
        assert!(split_token("hk_short_x").is_none());
        assert!(split_token("Bearer abc").is_none());
        assert!(split_token(&format!("hk_{}_{}", "g".repeat(16), "0".repeat(64))).is_none());
    }
}

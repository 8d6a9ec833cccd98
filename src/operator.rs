//! Console operators: accounts (argon2-hashed passwords), the login rules
//! (a lockout after repeated wrong passwords) and server-side sessions with
//! idle and absolute expiry. The console (an edge layer) and the admin
//! commands call this; the store keeps the records
//! ([`crate::store::OperatorStore`]).

use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::auth::{hash_secret, random_hex, verify_secret};
use crate::model::{Micros, format_micros, now_micros};
use crate::store::{OperatorRecord, OperatorRole, OperatorStore, SessionRecord, StoreError};

/// Shortest password accepted: long enough that the lockout, not luck,
/// bounds guessing.
pub const MIN_PASSWORD_LEN: usize = 12;
/// Longest password accepted (argon2 hashes anything, but a megabyte of
/// "password" is a mistake).
pub const MAX_PASSWORD_LEN: usize = 1024;

/// Whether `name` is an operator name: 1 to 64 of `A-Z a-z 0-9 - _ .`.
pub fn valid_name(name: &str) -> bool {
    crate::group::valid_name(name)
}

/// Why an account could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("name must be 1 to 64 letters, digits, '-', '_' or '.'")]
    Name,
    #[error("role must be operator, approver or admin")]
    Role,
    #[error("the password must be {MIN_PASSWORD_LEN} to {MAX_PASSWORD_LEN} characters")]
    Password,
    #[error("an operator named '{0}' already exists")]
    Taken(String),
    #[error("cannot hash the password: {0}")]
    Hash(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl CreateError {
    /// A stable code for the audit log.
    pub fn code(&self) -> &'static str {
        match self {
            CreateError::Name => "invalid_name",
            CreateError::Role => "invalid_role",
            CreateError::Password => "invalid_password",
            CreateError::Taken(_) => "name_taken",
            CreateError::Hash(_) => "internal",
            CreateError::Store(_) => "unavailable",
        }
    }
}

/// Creates an account.
///
/// # Errors
/// A bad name, role or password, a taken name, or a store failure.
pub async fn create(
    store: &dyn OperatorStore,
    name: &str,
    role: &str,
    password: &str,
) -> Result<OperatorRecord, CreateError> {
    if !valid_name(name) {
        return Err(CreateError::Name);
    }
    let role = OperatorRole::parse(role).ok_or(CreateError::Role)?;
    let length = password.chars().count();
    if !(MIN_PASSWORD_LEN..=MAX_PASSWORD_LEN).contains(&length) {
        return Err(CreateError::Password);
    }
    let password = password.to_string();
    let hash = tokio::task::spawn_blocking(move || hash_secret(&password))
        .await
        .map_err(|e| CreateError::Hash(e.to_string()))?
        .map_err(CreateError::Hash)?;
    let record = OperatorRecord {
        name: name.to_string(),
        role,
        hash,
        created_at: now_micros(),
        disabled_at: None,
        failed_logins: 0,
        locked_until: None,
    };
    if store.create_operator(record.clone()).await? {
        Ok(record)
    } else {
        Err(CreateError::Taken(name.to_string()))
    }
}

/// `operator list` output: never the hashes.
pub fn describe(operators: &[OperatorRecord]) -> String {
    let now = now_micros();
    let mut out = String::from("NAME\tROLE\tCREATED\tSTATUS\n");
    for op in operators {
        let status = match (op.disabled_at, op.locked_until) {
            (Some(t), _) => format!("disabled {}", format_micros(t)),
            (None, Some(until)) if until > now => format!("locked until {}", format_micros(until)),
            _ => "active".to_string(),
        };
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\n",
            op.name,
            op.role.as_str(),
            format_micros(op.created_at),
            status
        ));
    }
    out.trim_end().to_string()
}

/// How logins and sessions are limited (`[console]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    /// Wrong passwords in a row before the account is locked.
    pub max_failures: u32,
    /// How long a lock lasts.
    pub lockout: Duration,
    /// A session unused this long ends.
    pub idle: Duration,
    /// A session ends this long after login, however busy.
    pub absolute: Duration,
}

/// Why a login failed. Unknown names, disabled accounts and wrong
/// passwords all read the same to the person trying.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("wrong name or password")]
    Invalid,
    #[error("too many wrong passwords: this account is locked until {}", format_micros(*.until))]
    Locked { until: Micros },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn micros(d: Duration) -> Micros {
    Micros::try_from(d.as_micros()).unwrap_or(Micros::MAX)
}

async fn verify(password: &str, hash: &str) -> bool {
    let (password, hash) = (password.to_string(), hash.to_string());
    tokio::task::spawn_blocking(move || verify_secret(&password, &hash))
        .await
        .unwrap_or(false)
}

/// A hash no password matches, verified for unknown names so that a
/// wrong name takes as long as a wrong password.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        random_hex(16)
            .and_then(|p| hash_secret(&p))
            .unwrap_or_default()
    })
}

/// Checks a login at `now`: the account's record on success. A locked
/// account is refused without checking the password; the
/// `max_failures`-th wrong password in a row locks it for `lockout`.
///
/// # Errors
/// See [`LoginError`].
pub async fn login(
    store: &dyn OperatorStore,
    name: &str,
    password: &str,
    policy: &SessionPolicy,
    now: Micros,
) -> Result<OperatorRecord, LoginError> {
    let Some(mut op) = (if valid_name(name) {
        store.operator(name).await?
    } else {
        None
    }) else {
        verify(password, decoy_hash()).await;
        return Err(LoginError::Invalid);
    };
    if let Some(until) = op.locked_until.filter(|u| *u > now) {
        return Err(LoginError::Locked { until });
    }
    let right = verify(password, &op.hash).await;
    if op.disabled_at.is_some() {
        return Err(LoginError::Invalid);
    }
    if right {
        if op.failed_logins != 0 || op.locked_until.is_some() {
            op.failed_logins = 0;
            op.locked_until = None;
            store.update_operator(op.clone()).await?;
        }
        return Ok(op);
    }
    op.failed_logins = op.failed_logins.saturating_add(1);
    let locked = op.failed_logins >= policy.max_failures.max(1);
    if locked {
        op.failed_logins = 0;
        op.locked_until = Some(now.saturating_add(micros(policy.lockout)));
    }
    store.update_operator(op.clone()).await?;
    tracing::warn!(operator = %op.name, locked, "console login with a wrong password");
    match op.locked_until {
        Some(until) if locked => Err(LoginError::Locked { until }),
        _ => Err(LoginError::Invalid),
    }
}

/// The SHA-256 of a session token, as the store keys sessions.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A signed-in operator: their account and their session.
#[derive(Debug, Clone)]
pub struct Session {
    pub operator: OperatorRecord,
    pub record: SessionRecord,
}

/// Starts a session for `operator`: the token for the cookie (shown only
/// to the browser) and the stored record.
///
/// # Errors
/// An RNG or store failure.
pub async fn start_session(
    store: &dyn OperatorStore,
    operator: OperatorRecord,
    policy: &SessionPolicy,
    now: Micros,
) -> Result<(String, Session), StoreError> {
    let rng = |e: String| StoreError::Io(format!("no randomness: {e}"));
    let token = random_hex(32).map_err(rng)?;
    let record = SessionRecord {
        token_hash: token_hash(&token),
        operator: operator.name.clone(),
        csrf: random_hex(32).map_err(rng)?,
        created_at: now,
        last_seen: now,
        expires_at: now.saturating_add(micros(policy.absolute)),
    };
    store.create_session(record.clone()).await?;
    Ok((token, Session { operator, record }))
}

/// The live session of cookie `token` at `now`, its idle clock restarted;
/// `None` when there is none, it timed out (then it is deleted) or its
/// account is disabled.
///
/// # Errors
/// A store failure.
pub async fn resume(
    store: &dyn OperatorStore,
    token: &str,
    policy: &SessionPolicy,
    now: Micros,
) -> Result<Option<Session>, StoreError> {
    let hash = token_hash(token);
    let Some(record) = store.session(&hash).await? else {
        return Ok(None);
    };
    let idle_end = record.last_seen.saturating_add(micros(policy.idle));
    if now >= record.expires_at || now >= idle_end {
        store.delete_session(&hash).await?;
        return Ok(None);
    }
    let Some(operator) = store.operator(&record.operator).await? else {
        store.delete_session(&hash).await?;
        return Ok(None);
    };
    if operator.disabled_at.is_some() {
        store.delete_session(&hash).await?;
        return Ok(None);
    }
    store.touch_session(&hash, now).await?;
    Ok(Some(Session { operator, record }))
}

/// Ends the session of cookie `token`.
///
/// # Errors
/// A store failure.
pub async fn end_session(store: &dyn OperatorStore, token: &str) -> Result<bool, StoreError> {
    store.delete_session(&token_hash(token)).await
}

/// Compares two tokens in time independent of where they differ.
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_include_the_ones_below() {
        assert!(!OperatorRole::Operator.may_approve());
        assert!(OperatorRole::Approver.may_approve());
        assert!(OperatorRole::Admin.may_approve() && OperatorRole::Admin.may_audit());
        assert!(!OperatorRole::Approver.may_audit());
        assert_eq!(
            OperatorRole::parse("approver"),
            Some(OperatorRole::Approver)
        );
        assert_eq!(OperatorRole::parse("root"), None);
    }

    #[test]
    fn tokens_compare_exactly() {
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("abc", "abcd"));
        assert_eq!(token_hash("x").len(), 64);
    }
}

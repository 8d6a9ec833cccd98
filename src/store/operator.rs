//! The operator role of a store: console accounts and their server-side
//! sessions. Sessions live in the store (not in one node's memory) so a
//! console behind a load balancer keeps working on any node, and so that
//! logging out or disabling an account ends a session everywhere at once.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::model::Micros;

/// What an operator may do in the console. Each role includes the ones
/// before it: an approver can also compose, an admin can also approve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OperatorRole {
    /// Composes and sends broadcasts, manages groups.
    Operator,
    /// Also approves or rejects other people's broadcasts.
    Approver,
    /// Also reads the audit log.
    Admin,
}

impl OperatorRole {
    pub fn as_str(self) -> &'static str {
        match self {
            OperatorRole::Operator => "operator",
            OperatorRole::Approver => "approver",
            OperatorRole::Admin => "admin",
        }
    }

    /// `operator`, `approver` or `admin`.
    pub fn parse(text: &str) -> Option<OperatorRole> {
        match text.trim() {
            "operator" => Some(OperatorRole::Operator),
            "approver" => Some(OperatorRole::Approver),
            "admin" => Some(OperatorRole::Admin),
            _ => None,
        }
    }

    /// Whether this role may approve or reject broadcasts.
    pub fn may_approve(self) -> bool {
        self >= OperatorRole::Approver
    }

    /// Whether this role may read the audit log.
    pub fn may_audit(self) -> bool {
        self == OperatorRole::Admin
    }
}

/// One console account as stored: only an argon2 hash of the password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorRecord {
    pub name: String,
    pub role: OperatorRole,
    /// argon2id PHC string of the password.
    pub hash: String,
    pub created_at: Micros,
    #[serde(default)]
    pub disabled_at: Option<Micros>,
    /// Wrong passwords since the last successful login.
    #[serde(default)]
    pub failed_logins: u32,
    /// No login is checked before this time (too many wrong passwords).
    #[serde(default)]
    pub locked_until: Option<Micros>,
}

/// A console session as stored: the cookie holds the token, the store only
/// its SHA-256, so a copy of the store cannot be replayed as a login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Hex SHA-256 of the session token.
    pub token_hash: String,
    pub operator: String,
    /// The per-session CSRF token every console form carries.
    pub csrf: String,
    pub created_at: Micros,
    pub last_seen: Micros,
    /// The absolute end of the session, whatever its activity; a store may
    /// forget the record after it.
    pub expires_at: Micros,
}

#[async_trait]
pub trait OperatorStore: Send + Sync + 'static {
    /// Stores a new account. `false` if the name is taken.
    async fn create_operator(&self, operator: OperatorRecord) -> Result<bool, StoreError>;

    async fn operator(&self, name: &str) -> Result<Option<OperatorRecord>, StoreError>;

    /// Every account, disabled ones included, by name.
    async fn operators(&self) -> Result<Vec<OperatorRecord>, StoreError>;

    /// Replaces an existing account's record (login accounting). `false`
    /// when there is no such account.
    async fn update_operator(&self, operator: OperatorRecord) -> Result<bool, StoreError>;

    /// Disables the account and deletes every session of it. `false` when
    /// there is no such account.
    async fn disable_operator(&self, name: &str, at: Micros) -> Result<bool, StoreError>;

    async fn create_session(&self, session: SessionRecord) -> Result<(), StoreError>;

    /// The session whose token hashes to `token_hash`, if any.
    async fn session(&self, token_hash: &str) -> Result<Option<SessionRecord>, StoreError>;

    /// Records activity on a session (its idle clock restarts).
    async fn touch_session(&self, token_hash: &str, at: Micros) -> Result<(), StoreError>;

    /// Ends a session. `false` when there was none.
    async fn delete_session(&self, token_hash: &str) -> Result<bool, StoreError>;
}

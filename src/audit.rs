//! The audit log: who did what, when, with what outcome.
//!
//! Append-only by construction: [`AuditStore`] has no way to change or
//! remove an entry, and retention never purges it, so the log answers
//! "who changed this?" long after the fact. Recording never undoes or
//! blocks the action it describes: a failed append is logged and counted
//! (`herald_audit_write_failures_total`) and the action stands, because
//! refusing an emergency broadcast because the log is down would be worse
//! than a gap in the log.
//!
//! Wire shape of an entry (the outcome is flattened into it):
//!
//! ```json
//! {"id": "01J…", "at": 1733400000000000, "principal": "key:ops",
//!  "action": "group_replace", "target": "group:north",
//!  "outcome": "refused", "code": "invalid_members", "detail": null}
//! ```
//!
//! `outcome` is `"ok"` (no `code`) or `"refused"` with the error `code`
//! the caller was answered with: the action did not take effect.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::metrics::Metrics;
use crate::model::{MessageId, Micros, now_micros};
use crate::store::AuditStore;

/// Longest `target` kept: a target built from caller input (a path
/// segment) cannot bloat the log.
pub const MAX_TARGET_CHARS: usize = 200;

/// One thing someone did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// A ULID: entries sort by it in the order they were recorded.
    pub id: MessageId,
    pub at: Micros,
    /// Who: `key:<API key name>` (see [`key_principal`]), or
    /// `operator:<name>` for console operators.
    pub principal: String,
    pub action: AuditAction,
    /// What it was done to, `<kind>:<name>`, e.g. `group:north`.
    pub target: String,
    #[serde(flatten)]
    pub outcome: AuditOutcome,
    /// Anything else worth keeping (e.g. a member count).
    #[serde(default)]
    pub detail: Option<String>,
}

/// What was done. Names read `<subject><verb>`; on the wire they are
/// snake_case (`group_replace`). Adding one is adding its line here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    GroupReplace,
    GroupDelete,
    BroadcastCreate,
    BroadcastApprove,
    BroadcastReject,
    BroadcastCancel,
    CapIntake,
    OperatorLogin,
    OperatorLoginFailed,
    OperatorCreate,
    OperatorDisable,
}

/// How it ended: done, or refused with the error code the caller got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum AuditOutcome {
    /// It took effect.
    Ok,
    /// It did not take effect; `code` is the error's stable code.
    Refused { code: String },
}

impl AuditOutcome {
    pub fn refused(code: impl Into<String>) -> Self {
        AuditOutcome::Refused { code: code.into() }
    }

    /// `"ok"` or `"refused"`, as on the wire.
    pub fn as_str(&self) -> &'static str {
        match self {
            AuditOutcome::Ok => "ok",
            AuditOutcome::Refused { .. } => "refused",
        }
    }

    /// The error code of a refusal.
    pub fn code(&self) -> Option<&str> {
        match self {
            AuditOutcome::Ok => None,
            AuditOutcome::Refused { code } => Some(code),
        }
    }
}

impl AuditEntry {
    /// An entry stamped now with a fresh id. A `target` longer than
    /// [`MAX_TARGET_CHARS`] is cut there.
    pub fn new(
        principal: impl Into<String>,
        action: AuditAction,
        target: impl Into<String>,
        outcome: AuditOutcome,
    ) -> Self {
        let mut target: String = target.into();
        if let Some((cut, _)) = target.char_indices().nth(MAX_TARGET_CHARS) {
            target.truncate(cut);
        }
        AuditEntry {
            id: MessageId::generate(),
            at: now_micros(),
            principal: principal.into(),
            action,
            target,
            outcome,
            detail: None,
        }
    }

    /// The entry with `detail` set.
    #[must_use]
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

/// The principal of an API key as the log names it.
pub fn key_principal(key_name: &str) -> String {
    format!("key:{key_name}")
}

/// How long a recording waits for the store before giving up on it.
pub const RECORD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The handle features record through.
#[derive(Clone)]
pub struct Audit {
    store: Arc<dyn AuditStore>,
    metrics: Arc<Metrics>,
}

impl Audit {
    pub fn new(store: Arc<dyn AuditStore>, metrics: Arc<Metrics>) -> Self {
        Audit { store, metrics }
    }

    /// Appends `entry`. A store failure, or no answer within
    /// [`RECORD_TIMEOUT`], is logged at error level and counted, never
    /// returned: the action it records is not undone, and a slow store
    /// cannot turn a change that took effect into a timed-out request.
    pub async fn record(&self, entry: AuditEntry) {
        let (id, action) = (entry.id, entry.action);
        let error = match tokio::time::timeout(RECORD_TIMEOUT, self.store.append_audit(vec![entry]))
            .await
        {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("not confirmed within {RECORD_TIMEOUT:?} (it may still land)"),
        };
        self.metrics.audit_write_failed();
        tracing::error!(%error, %id, ?action, "audit entry not written");
    }
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;
    use serde_json::json;

    use super::*;
    use crate::store::StoreError;

    #[test]
    fn outcomes_are_flat_in_the_entry() {
        let mut e = AuditEntry::new(
            "key:ops",
            AuditAction::GroupReplace,
            "group:north",
            AuditOutcome::Ok,
        );
        let v = serde_json::to_value(&e).expect("json");
        assert_eq!(v["outcome"], "ok");
        assert_eq!(v["action"], "group_replace");
        assert!(v.get("code").is_none(), "{v}");
        e.outcome = AuditOutcome::refused("invalid_members");
        let v = serde_json::to_value(&e).expect("json");
        assert_eq!(
            (&v["outcome"], &v["code"]),
            (&json!("refused"), &json!("invalid_members"))
        );
        let back: AuditEntry = serde_json::from_value(v).expect("decode");
        assert_eq!(back, e);
    }

    #[test]
    fn long_targets_are_cut() {
        let e = AuditEntry::new(
            "key:ops",
            AuditAction::GroupDelete,
            "é".repeat(MAX_TARGET_CHARS + 5),
            AuditOutcome::Ok,
        );
        assert_eq!(e.target.chars().count(), MAX_TARGET_CHARS);
    }

    struct Broken;

    #[async_trait]
    impl AuditStore for Broken {
        async fn append_audit(&self, _: Vec<AuditEntry>) -> Result<(), StoreError> {
            Err(StoreError::Closed)
        }
        async fn audit(
            &self,
            _: Option<MessageId>,
            _: usize,
        ) -> Result<Vec<AuditEntry>, StoreError> {
            Err(StoreError::Closed)
        }
    }

    #[tokio::test]
    async fn a_failed_append_is_counted_not_returned() {
        let metrics = Arc::new(Metrics::new());
        let audit = Audit::new(Arc::new(Broken), metrics.clone());
        audit
            .record(AuditEntry::new(
                "key:ops",
                AuditAction::GroupDelete,
                "group:north",
                AuditOutcome::Ok,
            ))
            .await;
        let text = metrics.render([0; 4], 0);
        assert!(
            text.contains("herald_audit_write_failures_total 1"),
            "{text}"
        );
    }
}

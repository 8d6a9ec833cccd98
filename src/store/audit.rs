//! The audit role of a store: an append-only log of [`AuditEntry`]s,
//! read newest first.
//!
//! There is deliberately no way to change or remove an entry, and
//! `maintain` never purges the log: what it says stays said.

use async_trait::async_trait;

use super::StoreError;
use crate::audit::AuditEntry;
use crate::model::MessageId;

#[async_trait]
pub trait AuditStore: Send + Sync + 'static {
    /// Appends `entries` (each with a fresh, unique id), all or nothing.
    async fn append_audit(&self, entries: Vec<AuditEntry>) -> Result<(), StoreError>;

    /// Up to `limit` entries older than `before` (exclusive; `None`: from
    /// the newest), newest first.
    async fn audit(
        &self,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError>;
}

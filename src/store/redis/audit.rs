//! The audit role of the Redis store: one sorted set, every score 0, each
//! member `<ULID> <entry JSON>`. ULIDs of equal length sort lexically in
//! time order, so a newest-first page before an id is one
//! `ZREVRANGEBYLEX`, and an append from any node is one `ZADD`.

use async_trait::async_trait;

use super::decode::corrupt;
use super::{RedisStore, unavailable};
use crate::audit::AuditEntry;
use crate::model::MessageId;
use crate::store::StoreError;
use crate::store::audit::AuditStore;

/// The log's sorted set.
const AUDIT: &str = "audit";

fn decode(member: &str) -> Result<AuditEntry, StoreError> {
    let (_, json) = member
        .split_once(' ')
        .ok_or_else(|| corrupt("audit member without an id"))?;
    serde_json::from_str(json).map_err(|e| corrupt(format_args!("audit entry: {e}")))
}

#[async_trait]
impl AuditStore for RedisStore {
    async fn append_audit(&self, entries: Vec<AuditEntry>) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut cmd = ::redis::cmd("ZADD");
        cmd.arg(self.shared.key(AUDIT));
        for e in &entries {
            let json = serde_json::to_string(e)
                .map_err(|e| StoreError::Io(format!("audit entry: {e}")))?;
            cmd.arg(0).arg(format!("{} {json}", e.id));
        }
        let mut conn = self.shared.conn()?;
        cmd.query_async::<()>(&mut conn).await.map_err(unavailable)
    }

    async fn audit(
        &self,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // Every member of an earlier id sorts below "<before>"; the
        // members of `before` itself sort above it, so it is excluded.
        let max = before.map_or_else(|| "+".to_string(), |b| format!("({b}"));
        let mut conn = self.shared.conn()?;
        let members: Vec<String> = ::redis::cmd("ZREVRANGEBYLEX")
            .arg(self.shared.key(AUDIT))
            .arg(max)
            .arg("-")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        members.iter().map(|m| decode(m)).collect()
    }
}

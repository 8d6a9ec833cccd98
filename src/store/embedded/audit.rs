//! The audit role of the embedded store: one row per entry keyed by its
//! id, so key order is time order and a newest-first page is one reverse
//! range scan. Appends go through the group-committed writer.

use async_trait::async_trait;
use redb::{TableDefinition, WriteTransaction};

use super::{EmbeddedStore, io};
use crate::audit::AuditEntry;
use crate::model::MessageId;
use crate::store::StoreError;
use crate::store::audit::AuditStore;

/// Entry id → entry (JSON).
const AUDIT: TableDefinition<u128, &[u8]> = TableDefinition::new("audit");

/// Creates the role's tables, so readers never meet a missing one.
pub(super) fn create_tables(tx: &WriteTransaction) -> Result<(), StoreError> {
    tx.open_table(AUDIT).map_err(io)?;
    Ok(())
}

#[async_trait]
impl AuditStore for EmbeddedStore {
    async fn append_audit(&self, entries: Vec<AuditEntry>) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        // Encoded here, so the writer thread only copies bytes.
        let rows = entries
            .iter()
            .map(|e| {
                serde_json::to_vec(e)
                    .map(|json| (e.id.0, json))
                    .map_err(|e| StoreError::Io(format!("audit entry: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.write(rows.len(), move |w, _| {
            let mut table = w.tx.open_table(AUDIT).map_err(io)?;
            for (id, json) in &rows {
                table.insert(*id, json.as_slice()).map_err(io)?;
            }
            Ok(())
        })
        .await
    }

    async fn audit(
        &self,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let tx = self.read()?;
        let table = tx.open_table(AUDIT).map_err(io)?;
        let rows = match before {
            Some(b) => table.range(..b.0).map_err(io)?,
            None => table.range::<u128>(..).map_err(io)?,
        };
        let mut out = Vec::with_capacity(limit.min(1000));
        for row in rows.rev().take(limit) {
            let (_, v) = row.map_err(io)?;
            out.push(
                serde_json::from_slice(v.value())
                    .map_err(|e| StoreError::Corrupt(format!("audit entry: {e}")))?,
            );
        }
        Ok(out)
    }
}

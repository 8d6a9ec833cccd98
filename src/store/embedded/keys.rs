//! The API-key role of the embedded store: one record per key id (only an
//! argon2 hash of the secret) and a name index, written through the shared
//! group-committed writer.

use async_trait::async_trait;
use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::{EmbeddedStore, Writer, io};
use crate::model::Micros;
use crate::store::{ApiKeyRecord, KeyStore, StoreError};

/// key id → API key record (JSON).
const API_KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("api_keys");
/// key name → key id.
const API_KEY_NAMES: TableDefinition<&str, &str> = TableDefinition::new("api_key_names");

/// Creates the role's tables, so readers never meet a missing one.
pub(super) fn create_tables(tx: &WriteTransaction) -> Result<(), StoreError> {
    tx.open_table(API_KEYS).map_err(io)?;
    tx.open_table(API_KEY_NAMES).map_err(io)?;
    Ok(())
}

#[async_trait]
impl KeyStore for EmbeddedStore {
    async fn create_api_key(&self, key: ApiKeyRecord) -> Result<bool, StoreError> {
        self.write(1, move |w, _| create_key(w, &key)).await
    }

    async fn api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let tx = self.read()?;
        let table = tx.open_table(API_KEYS).map_err(io)?;
        match table.get(id).map_err(io)? {
            Some(v) => serde_json::from_slice(v.value())
                .map(Some)
                .map_err(|e| StoreError::Corrupt(e.to_string())),
            None => Ok(None),
        }
    }

    async fn api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let tx = self.read()?;
        let table = tx.open_table(API_KEYS).map_err(io)?;
        let mut out = Vec::new();
        for row in table.iter().map_err(io)? {
            let (_, v) = row.map_err(io)?;
            out.push(
                serde_json::from_slice(v.value())
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            );
        }
        Ok(out)
    }

    /// A count of revoked records: keys are few, and only this process
    /// writes the file, so the scan runs a few times a second at most.
    async fn revocations(&self) -> Result<u64, StoreError> {
        Ok(self
            .api_keys()
            .await?
            .iter()
            .filter(|k| k.revoked_at.is_some())
            .count() as u64)
    }

    async fn revoke_api_key(&self, name: &str, at: Micros) -> Result<bool, StoreError> {
        let name = name.to_string();
        self.write(1, move |w, _| revoke_key(w, &name, at)).await
    }
}

fn create_key(w: &Writer<'_>, key: &ApiKeyRecord) -> Result<bool, StoreError> {
    let mut keys = w.tx.open_table(API_KEYS).map_err(io)?;
    let mut names = w.tx.open_table(API_KEY_NAMES).map_err(io)?;
    if names.get(key.name.as_str()).map_err(io)?.is_some() {
        return Ok(false);
    }
    let bytes = serde_json::to_vec(key).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    keys.insert(key.id.as_str(), bytes.as_slice()).map_err(io)?;
    names
        .insert(key.name.as_str(), key.id.as_str())
        .map_err(io)?;
    Ok(true)
}

fn revoke_key(w: &Writer<'_>, name: &str, at: Micros) -> Result<bool, StoreError> {
    let mut keys = w.tx.open_table(API_KEYS).map_err(io)?;
    let mut names = w.tx.open_table(API_KEY_NAMES).map_err(io)?;
    let Some(id) = names
        .remove(name)
        .map_err(io)?
        .map(|v| v.value().to_string())
    else {
        return Ok(false);
    };
    let record = keys
        .get(id.as_str())
        .map_err(io)?
        .map(|v| v.value().to_vec());
    if let Some(bytes) = record {
        let mut key: ApiKeyRecord =
            serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        key.revoked_at = Some(at);
        let bytes = serde_json::to_vec(&key).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        keys.insert(id.as_str(), bytes.as_slice()).map_err(io)?;
    }
    Ok(true)
}

//! The operator role of the embedded store: one JSON record per account
//! and one per session (keyed by the token's hash), written through the
//! shared group-committed writer. Accounts and sessions are few, so
//! disabling an account scans the sessions.

use async_trait::async_trait;
use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::{EmbeddedStore, Writer, io};
use crate::model::Micros;
use crate::store::StoreError;
use crate::store::operator::{OperatorRecord, OperatorStore, SessionRecord};

/// Operator name → record (JSON).
const OPERATORS: TableDefinition<&str, &[u8]> = TableDefinition::new("operators");
/// Session token hash → session (JSON).
const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("operator_sessions");

/// Creates the role's tables, so readers never meet a missing one.
pub(super) fn create_tables(tx: &WriteTransaction) -> Result<(), StoreError> {
    tx.open_table(OPERATORS).map_err(io)?;
    tx.open_table(SESSIONS).map_err(io)?;
    Ok(())
}

fn corrupt(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn put_operator(w: &Writer<'_>, op: &OperatorRecord, must_exist: bool) -> Result<bool, StoreError> {
    let mut table = w.tx.open_table(OPERATORS).map_err(io)?;
    let exists = table.get(op.name.as_str()).map_err(io)?.is_some();
    if exists != must_exist {
        return Ok(false);
    }
    let bytes = serde_json::to_vec(op).map_err(corrupt)?;
    table
        .insert(op.name.as_str(), bytes.as_slice())
        .map_err(io)?;
    Ok(true)
}

fn disable(w: &Writer<'_>, name: &str, at: Micros) -> Result<bool, StoreError> {
    let mut table = w.tx.open_table(OPERATORS).map_err(io)?;
    let Some(bytes) = table.get(name).map_err(io)?.map(|v| v.value().to_vec()) else {
        return Ok(false);
    };
    let mut op: OperatorRecord = serde_json::from_slice(&bytes).map_err(corrupt)?;
    op.disabled_at.get_or_insert(at);
    let bytes = serde_json::to_vec(&op).map_err(corrupt)?;
    table.insert(name, bytes.as_slice()).map_err(io)?;
    let mut sessions = w.tx.open_table(SESSIONS).map_err(io)?;
    let mut failure = None;
    sessions
        .retain(|_, v| match serde_json::from_slice::<SessionRecord>(v) {
            Ok(s) => s.operator != name,
            Err(e) => {
                failure = Some(corrupt(e));
                true
            }
        })
        .map_err(io)?;
    failure.map_or(Ok(true), Err)
}

fn touch(w: &Writer<'_>, token_hash: &str, at: Micros) -> Result<(), StoreError> {
    let mut table = w.tx.open_table(SESSIONS).map_err(io)?;
    let Some(bytes) = table
        .get(token_hash)
        .map_err(io)?
        .map(|v| v.value().to_vec())
    else {
        return Ok(());
    };
    let mut s: SessionRecord = serde_json::from_slice(&bytes).map_err(corrupt)?;
    s.last_seen = s.last_seen.max(at);
    let bytes = serde_json::to_vec(&s).map_err(corrupt)?;
    table.insert(token_hash, bytes.as_slice()).map_err(io)?;
    Ok(())
}

/// Drops sessions past their absolute end, so the table stays small.
fn purge_ended(w: &Writer<'_>, now: Micros) -> Result<(), StoreError> {
    let mut table = w.tx.open_table(SESSIONS).map_err(io)?;
    table
        .retain(|_, v| {
            serde_json::from_slice::<SessionRecord>(v).map_or(true, |s| s.expires_at > now)
        })
        .map_err(io)?;
    Ok(())
}

#[async_trait]
impl OperatorStore for EmbeddedStore {
    async fn create_operator(&self, operator: OperatorRecord) -> Result<bool, StoreError> {
        self.write(1, move |w, _| put_operator(w, &operator, false))
            .await
    }

    async fn operator(&self, name: &str) -> Result<Option<OperatorRecord>, StoreError> {
        let tx = self.read()?;
        let table = tx.open_table(OPERATORS).map_err(io)?;
        match table.get(name).map_err(io)? {
            Some(v) => serde_json::from_slice(v.value()).map(Some).map_err(corrupt),
            None => Ok(None),
        }
    }

    async fn operators(&self) -> Result<Vec<OperatorRecord>, StoreError> {
        let tx = self.read()?;
        let table = tx.open_table(OPERATORS).map_err(io)?;
        let mut out = Vec::new();
        for row in table.iter().map_err(io)? {
            let (_, v) = row.map_err(io)?;
            out.push(serde_json::from_slice(v.value()).map_err(corrupt)?);
        }
        Ok(out)
    }

    async fn update_operator(&self, operator: OperatorRecord) -> Result<bool, StoreError> {
        self.write(1, move |w, _| put_operator(w, &operator, true))
            .await
    }

    async fn disable_operator(&self, name: &str, at: Micros) -> Result<bool, StoreError> {
        let name = name.to_string();
        self.write(1, move |w, _| disable(w, &name, at)).await
    }

    async fn create_session(&self, session: SessionRecord) -> Result<(), StoreError> {
        self.write(1, move |w, _| {
            purge_ended(w, session.created_at)?;
            let bytes = serde_json::to_vec(&session).map_err(corrupt)?;
            w.tx.open_table(SESSIONS)
                .map_err(io)?
                .insert(session.token_hash.as_str(), bytes.as_slice())
                .map_err(io)?;
            Ok(())
        })
        .await
    }

    async fn session(&self, token_hash: &str) -> Result<Option<SessionRecord>, StoreError> {
        let tx = self.read()?;
        let table = tx.open_table(SESSIONS).map_err(io)?;
        match table.get(token_hash).map_err(io)? {
            Some(v) => serde_json::from_slice(v.value()).map(Some).map_err(corrupt),
            None => Ok(None),
        }
    }

    async fn touch_session(&self, token_hash: &str, at: Micros) -> Result<(), StoreError> {
        let token_hash = token_hash.to_string();
        self.write(1, move |w, _| touch(w, &token_hash, at)).await
    }

    async fn delete_session(&self, token_hash: &str) -> Result<bool, StoreError> {
        let token_hash = token_hash.to_string();
        self.write(1, move |w, _| {
            Ok(w.tx
                .open_table(SESSIONS)
                .map_err(io)?
                .remove(token_hash.as_str())
                .map_err(io)?
                .is_some())
        })
        .await
    }
}

//! The group role of the embedded store: a summary row per group and one
//! row per member, replaced inside one write transaction.

use async_trait::async_trait;
use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::{EmbeddedStore, Writer, io};
use crate::model::Micros;
use crate::store::StoreError;
use crate::store::group::{GroupStore, GroupSummary};

/// Group name → (member count, updated at).
const GROUPS: TableDefinition<&str, (u64, i64)> = TableDefinition::new("groups");
/// (group name, member) → ().
const GROUP_MEMBERS: TableDefinition<(&str, &str), ()> = TableDefinition::new("group_members");

/// Above every member ("+" and digits).
const LAST: &str = "\u{10ffff}";

/// Creates the role's tables, so readers never meet a missing one.
pub(super) fn create_tables(tx: &WriteTransaction) -> Result<(), StoreError> {
    tx.open_table(GROUPS).map_err(io)?;
    tx.open_table(GROUP_MEMBERS).map_err(io)?;
    Ok(())
}

fn clear(w: &Writer<'_>, name: &str) -> Result<bool, StoreError> {
    let mut members = w.tx.open_table(GROUP_MEMBERS).map_err(io)?;
    members
        .retain_in((name, "")..=(name, LAST), |_, ()| false)
        .map_err(io)?;
    let existed =
        w.tx.open_table(GROUPS)
            .map_err(io)?
            .remove(name)
            .map_err(io)?
            .is_some();
    Ok(existed)
}

fn replace(
    w: &Writer<'_>,
    name: &str,
    members: &[String],
    now: Micros,
) -> Result<GroupSummary, StoreError> {
    clear(w, name)?;
    let mut table = w.tx.open_table(GROUP_MEMBERS).map_err(io)?;
    for m in members {
        table.insert((name, m.as_str()), ()).map_err(io)?;
    }
    let count = members.len() as u64;
    w.tx.open_table(GROUPS)
        .map_err(io)?
        .insert(name, (count, now))
        .map_err(io)?;
    Ok(GroupSummary {
        name: name.to_string(),
        count,
        updated_at: now,
    })
}

#[async_trait]
impl GroupStore for EmbeddedStore {
    async fn replace_group(
        &self,
        name: &str,
        members: Vec<String>,
        now: Micros,
    ) -> Result<GroupSummary, StoreError> {
        let name = name.to_string();
        let weight = members.len().max(1);
        self.write(weight, move |w, _| replace(w, &name, &members, now))
            .await
    }

    async fn groups(&self) -> Result<Vec<GroupSummary>, StoreError> {
        let tx = self.read()?;
        let table = tx.open_table(GROUPS).map_err(io)?;
        let mut out = Vec::new();
        for row in table.iter().map_err(io)? {
            let (k, v) = row.map_err(io)?;
            let (count, updated_at) = v.value();
            out.push(GroupSummary {
                name: k.value().to_string(),
                count,
                updated_at,
            });
        }
        Ok(out)
    }

    async fn group(&self, name: &str) -> Result<Option<GroupSummary>, StoreError> {
        let tx = self.read()?;
        let table = tx.open_table(GROUPS).map_err(io)?;
        Ok(table.get(name).map_err(io)?.map(|v| {
            let (count, updated_at) = v.value();
            GroupSummary {
                name: name.to_string(),
                count,
                updated_at,
            }
        }))
    }

    async fn group_members(
        &self,
        name: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let tx = self.read()?;
        let table = tx.open_table(GROUP_MEMBERS).map_err(io)?;
        let start = after.unwrap_or("");
        let mut out = Vec::with_capacity(limit.min(10_000));
        for row in table.range((name, start)..=(name, LAST)).map_err(io)? {
            let (k, ()) = row.map(|(k, v)| (k, v.value())).map_err(io)?;
            let member = k.value().1;
            if after.is_some_and(|a| member == a) {
                continue;
            }
            out.push(member.to_string());
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    async fn delete_group(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.to_string();
        self.write(1, move |w, _| clear(w, &name)).await
    }
}

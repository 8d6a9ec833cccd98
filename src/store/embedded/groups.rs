//! The group role of the embedded store: each group points at a member
//! list; a replace writes a new list and swaps the pointer inside one write
//! transaction. A list a broadcast's audience was fixed to stays until the
//! broadcast ends (see `broadcasts.rs`), so replacing a group never changes
//! who an approved broadcast reaches.

use async_trait::async_trait;
use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::{EmbeddedStore, Writer, io};
use crate::model::Micros;
use crate::store::StoreError;
use crate::store::group::{GroupStore, GroupSummary};

/// Group name → (member count, updated at, member list).
pub(super) const GROUPS: TableDefinition<&str, (u64, i64, u64)> =
    TableDefinition::new("group_lists");
/// (member list, member) → ().
pub(super) const LIST_MEMBERS: TableDefinition<(u64, &str), ()> =
    TableDefinition::new("list_members");
/// Member list → (broadcasts holding it, whether a group points at it).
pub(super) const LISTS: TableDefinition<u64, (u32, bool)> = TableDefinition::new("lists");
/// Last member list id handed out.
const META_LIST: &str = "list_seq";

/// Above every member ("+" and digits).
pub(super) const LAST: &str = "\u{10ffff}";

/// Creates the role's tables, so readers never meet a missing one.
pub(super) fn create_tables(tx: &WriteTransaction) -> Result<(), StoreError> {
    tx.open_table(GROUPS).map_err(io)?;
    tx.open_table(LIST_MEMBERS).map_err(io)?;
    tx.open_table(LISTS).map_err(io)?;
    Ok(())
}

/// Writes `members` (sorted, distinct) as a new list held by `pins`
/// broadcasts; returns its id.
pub(super) fn new_list(
    w: &mut Writer<'_>,
    members: &[String],
    pins: u32,
    current: bool,
) -> Result<u64, StoreError> {
    let id = w.meta.get(META_LIST).map_err(io)?.map_or(0, |v| v.value()) + 1;
    w.meta.insert(META_LIST, id).map_err(io)?;
    let mut table = w.tx.open_table(LIST_MEMBERS).map_err(io)?;
    for m in members {
        table.insert((id, m.as_str()), ()).map_err(io)?;
    }
    w.tx.open_table(LISTS)
        .map_err(io)?
        .insert(id, (pins, current))
        .map_err(io)?;
    Ok(id)
}

/// Changes a list's holders; drops the list once nothing holds it.
pub(super) fn release_list(
    w: &Writer<'_>,
    id: u64,
    pins_delta: i64,
    current: Option<bool>,
) -> Result<(), StoreError> {
    let mut lists = w.tx.open_table(LISTS).map_err(io)?;
    let Some((pins, is_current)) = lists.get(id).map_err(io)?.map(|v| v.value()) else {
        return Ok(());
    };
    let pins = u32::try_from((i64::from(pins) + pins_delta).max(0)).unwrap_or(0);
    let is_current = current.unwrap_or(is_current);
    if pins == 0 && !is_current {
        lists.remove(id).map_err(io)?;
        w.tx.open_table(LIST_MEMBERS)
            .map_err(io)?
            .retain_in((id, "")..=(id, LAST), |_, ()| false)
            .map_err(io)?;
    } else {
        lists.insert(id, (pins, is_current)).map_err(io)?;
    }
    Ok(())
}

/// The list group `name` points at, and its member count.
pub(super) fn current_list(w: &Writer<'_>, name: &str) -> Result<Option<(u64, u64)>, StoreError> {
    Ok(w.tx
        .open_table(GROUPS)
        .map_err(io)?
        .get(name)
        .map_err(io)?
        .map(|v| {
            let (count, _, list) = v.value();
            (list, count)
        }))
}

fn clear(w: &Writer<'_>, name: &str) -> Result<bool, StoreError> {
    let old =
        w.tx.open_table(GROUPS)
            .map_err(io)?
            .remove(name)
            .map_err(io)?
            .map(|v| v.value().2);
    match old {
        Some(list) => {
            release_list(w, list, 0, Some(false))?;
            Ok(true)
        }
        None => Ok(false),
    }
}

fn replace(
    w: &mut Writer<'_>,
    name: &str,
    members: &[String],
    now: Micros,
) -> Result<GroupSummary, StoreError> {
    clear(w, name)?;
    let list = new_list(w, members, 0, true)?;
    let count = members.len() as u64;
    w.tx.open_table(GROUPS)
        .map_err(io)?
        .insert(name, (count, now, list))
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
            let (count, updated_at, _) = v.value();
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
            let (count, updated_at, _) = v.value();
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
        let Some(list) = tx
            .open_table(GROUPS)
            .map_err(io)?
            .get(name)
            .map_err(io)?
            .map(|v| v.value().2)
        else {
            return Ok(Vec::new());
        };
        let table = tx.open_table(LIST_MEMBERS).map_err(io)?;
        let start = after.unwrap_or("");
        let mut out = Vec::with_capacity(limit.min(10_000));
        for row in table.range((list, start)..=(list, LAST)).map_err(io)? {
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

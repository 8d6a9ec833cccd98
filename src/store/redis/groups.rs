//! The group role of the Redis store. A group points at a member list, one
//! sorted set `glist:<id>` (all scores 0, so members page in lexical
//! order) that never changes once written; `groups` maps each name to
//! "count updated_at list". A replace stages a new list and swaps the
//! pointer in one script, so readers on any node see the old list or the
//! new one, never a mix. A list a broadcast's audience was fixed to is held
//! (`lpins`) and outlives a replace or delete until the broadcast ends;
//! `lcur` marks the lists a group points at.

use ::redis::AsyncCommands;
use async_trait::async_trait;

use super::decode::corrupt;
use super::{RedisStore, Shared, unavailable};
use crate::model::Micros;
use crate::store::StoreError;
use crate::store::group::{GroupStore, GroupSummary};

/// Group name → "count updated_at list".
pub(super) const GROUPS: &str = "groups";
/// Members sent per ZADD while staging.
pub(super) const CHUNK: usize = 10_000;

impl Shared {
    /// The key of member list `list`.
    pub(super) fn list_key(&self, list: u64) -> String {
        self.key(&format!("glist:{list}"))
    }

    /// A fresh member list id.
    pub(super) async fn new_list_id(&self) -> Result<u64, StoreError> {
        let mut conn = self.conn()?;
        conn.incr(self.key("list_seq"), 1)
            .await
            .map_err(unavailable)
    }

    /// Writes `members` as list `list` (expiring in an hour unless a swap
    /// or a broadcast makes it permanent: a crashed writer leaves nothing).
    pub(super) async fn stage_list(&self, list: u64, members: &[String]) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let key = self.list_key(list);
        for chunk in members.chunks(CHUNK) {
            let mut cmd = ::redis::cmd("ZADD");
            cmd.arg(&key);
            for m in chunk {
                cmd.arg(0).arg(m);
            }
            cmd.query_async::<()>(&mut conn)
                .await
                .map_err(unavailable)?;
        }
        if !members.is_empty() {
            conn.expire::<_, ()>(&key, 3600)
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    /// Group `name`'s summary and list (`None` for an empty group).
    pub(super) async fn group_entry(
        &self,
        name: &str,
    ) -> Result<Option<(GroupSummary, Option<u64>)>, StoreError> {
        let mut conn = self.conn()?;
        let value: Option<String> = conn
            .hget(self.key(GROUPS), name)
            .await
            .map_err(unavailable)?;
        value.map(|v| entry(name, &v)).transpose()
    }
}

/// A `groups` value: "count updated_at list" ("-" for no list).
fn entry(name: &str, value: &str) -> Result<(GroupSummary, Option<u64>), StoreError> {
    let mut fields = value.split(' ');
    let (Some(count), Some(at)) = (fields.next(), fields.next()) else {
        return Err(corrupt(format_args!("group summary {value:?}")));
    };
    let list = match fields.next() {
        None | Some("-") => None,
        Some(l) => Some(
            l.parse()
                .map_err(|_| corrupt(format_args!("group list {l:?}")))?,
        ),
    };
    Ok((
        GroupSummary {
            name: name.to_string(),
            count: count
                .parse()
                .map_err(|_| corrupt(format_args!("group count {count:?}")))?,
            updated_at: at
                .parse()
                .map_err(|_| corrupt(format_args!("group time {at:?}")))?,
        },
        list,
    ))
}

impl RedisStore {
    /// Points group `name` at `list` (or removes it, `value` empty) and
    /// drops the list it pointed at unless a broadcast holds it. Whether
    /// the group existed.
    async fn swap_group(
        &self,
        name: &str,
        value: &str,
        list: Option<u64>,
    ) -> Result<bool, StoreError> {
        let s = &self.shared;
        let mut inv = s.invocation(&s.scripts.group_swap, crate::model::now_micros());
        inv.arg(name)
            .arg(value)
            .arg(list.map(|l| l.to_string()).unwrap_or_default());
        let existed: i64 = super::decode::int(&s.invoke(&inv).await?)?;
        Ok(existed == 1)
    }
}

#[async_trait]
impl GroupStore for RedisStore {
    async fn replace_group(
        &self,
        name: &str,
        members: Vec<String>,
        now: Micros,
    ) -> Result<GroupSummary, StoreError> {
        let list = if members.is_empty() {
            None
        } else {
            let id = self.shared.new_list_id().await?;
            self.shared.stage_list(id, &members).await?;
            Some(id)
        };
        let count = members.len() as u64;
        let list_field = list.map_or_else(|| "-".to_string(), |l| l.to_string());
        self.swap_group(name, &format!("{count} {now} {list_field}"), list)
            .await?;
        Ok(GroupSummary {
            name: name.to_string(),
            count,
            updated_at: now,
        })
    }

    async fn groups(&self) -> Result<Vec<GroupSummary>, StoreError> {
        let mut conn = self.shared.conn()?;
        let all: Vec<(String, String)> = conn
            .hgetall(self.shared.key(GROUPS))
            .await
            .map_err(unavailable)?;
        let mut out = all
            .iter()
            .map(|(name, value)| entry(name, value).map(|(s, _)| s))
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn group(&self, name: &str) -> Result<Option<GroupSummary>, StoreError> {
        Ok(self.shared.group_entry(name).await?.map(|(s, _)| s))
    }

    async fn group_members(
        &self,
        name: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let Some((_, Some(list))) = self.shared.group_entry(name).await? else {
            return Ok(Vec::new());
        };
        self.shared.list_page(list, after, limit).await
    }

    async fn delete_group(&self, name: &str) -> Result<bool, StoreError> {
        self.swap_group(name, "", None).await
    }
}

impl Shared {
    /// Up to `limit` members of list `list` after `after` (exclusive).
    pub(super) async fn list_page(
        &self,
        list: u64,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn()?;
        let start = after.map_or_else(|| "-".to_string(), |a| format!("({a}"));
        ::redis::cmd("ZRANGEBYLEX")
            .arg(self.list_key(list))
            .arg(start)
            .arg("+")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)
    }
}

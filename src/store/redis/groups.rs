//! The group role of the Redis store: each group's members in one sorted
//! set (all scores 0, so members page in lexical order), and one hash of
//! summaries. A replace builds the new set under a staging key and swaps
//! it in with the summary in one MULTI, so readers on any node see the old
//! list or the new one, never a mix.

use ::redis::AsyncCommands;
use async_trait::async_trait;

use super::decode::corrupt;
use super::{RedisStore, unavailable};
use crate::model::Micros;
use crate::store::StoreError;
use crate::store::group::{GroupStore, GroupSummary};

/// Group name → "count updated_at".
const GROUPS: &str = "groups";
/// Members sent per ZADD while staging.
const CHUNK: usize = 10_000;

impl RedisStore {
    fn members_key(&self, name: &str) -> String {
        self.shared.key(&format!("group:{name}"))
    }
}

fn summary(name: &str, value: &str) -> Result<GroupSummary, StoreError> {
    let (count, at) = value
        .split_once(' ')
        .ok_or_else(|| corrupt(format_args!("group summary {value:?}")))?;
    Ok(GroupSummary {
        name: name.to_string(),
        count: count
            .parse()
            .map_err(|_| corrupt(format_args!("group count {count:?}")))?,
        updated_at: at
            .parse()
            .map_err(|_| corrupt(format_args!("group time {at:?}")))?,
    })
}

#[async_trait]
impl GroupStore for RedisStore {
    async fn replace_group(
        &self,
        name: &str,
        members: Vec<String>,
        now: Micros,
    ) -> Result<GroupSummary, StoreError> {
        let mut conn = self.shared.conn()?;
        let staging = self.shared.key(&format!(
            "group_staging:{name}:{}",
            crate::model::MessageId::generate()
        ));
        for chunk in members.chunks(CHUNK) {
            let mut cmd = ::redis::cmd("ZADD");
            cmd.arg(&staging);
            for m in chunk {
                cmd.arg(0).arg(m);
            }
            cmd.query_async::<()>(&mut conn)
                .await
                .map_err(unavailable)?;
        }
        // A staging set a crashed node left behind goes by itself.
        if !members.is_empty() {
            conn.expire::<_, ()>(&staging, 3600)
                .await
                .map_err(unavailable)?;
        }
        let count = members.len() as u64;
        let key = self.members_key(name);
        let mut swap = ::redis::pipe();
        swap.atomic();
        if members.is_empty() {
            swap.del(&key).ignore();
        } else {
            swap.cmd("RENAME").arg(&staging).arg(&key).ignore();
            swap.persist(&key).ignore();
        }
        swap.hset(self.shared.key(GROUPS), name, format!("{count} {now}"))
            .ignore();
        swap.query_async::<()>(&mut conn)
            .await
            .map_err(unavailable)?;
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
            .map(|(name, value)| summary(name, value))
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn group(&self, name: &str) -> Result<Option<GroupSummary>, StoreError> {
        let mut conn = self.shared.conn()?;
        let value: Option<String> = conn
            .hget(self.shared.key(GROUPS), name)
            .await
            .map_err(unavailable)?;
        value.map(|v| summary(name, &v)).transpose()
    }

    async fn group_members(
        &self,
        name: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let mut conn = self.shared.conn()?;
        let start = after.map_or_else(|| "-".to_string(), |a| format!("({a}"));
        ::redis::cmd("ZRANGEBYLEX")
            .arg(self.members_key(name))
            .arg(start)
            .arg("+")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)
    }

    async fn delete_group(&self, name: &str) -> Result<bool, StoreError> {
        let mut conn = self.shared.conn()?;
        let (removed, _): (u64, u64) = ::redis::pipe()
            .atomic()
            .hdel(self.shared.key(GROUPS), name)
            .del(self.members_key(name))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(removed > 0)
    }
}

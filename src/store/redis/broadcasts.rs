//! The broadcast role of the Redis store.
//!
//! `b:<id>` is a hash: the record as created (`j`, JSON) and the fields
//! that change (`st` status, `cur` cursor, `fan`/`ref`/`tot` counts, the
//! decision). `b:<id>:aud` is the audience, fixed at creation as one sorted
//! set (a union of the groups' sets and the numbers named directly, made by
//! Redis itself); `b:<id>:n` counts its messages per status, kept by the
//! scripts that change a message's status (`count_broadcast` in
//! `lua/common.lua`). `broadcasts` lists every id (lexically = by time),
//! `bactive` those not final, `bcap` maps CAP alerts to broadcasts.

use std::collections::HashMap;

use ::redis::AsyncCommands;
use async_trait::async_trait;

use super::decode::{array, corrupt, int};
use super::{RedisStore, Shared, push_items, unavailable};
use crate::model::{Class, MessageId, now_micros};
use crate::store::broadcast::{
    BroadcastRecord, BroadcastState, BroadcastStatus, BroadcastStore, CreateRefused, Decided,
    Decision, FanOut, StatusCounts,
};
use crate::store::{NewMessage, StoreError};

/// Reads of the audience's groups before a create gives up (each retry
/// means a group was replaced in between).
const CREATE_TRIES: usize = 5;
/// Members read per list and step when counting a union.
const UNION_STEP: usize = 10_000;

fn parse_status(s: &str) -> Result<BroadcastStatus, StoreError> {
    Ok(match s {
        "pending_approval" => BroadcastStatus::PendingApproval,
        "sending" => BroadcastStatus::Sending,
        "completed" => BroadcastStatus::Completed,
        "canceled" => BroadcastStatus::Canceled,
        "rejected" => BroadcastStatus::Rejected,
        other => return Err(corrupt(format_args!("broadcast status {other:?}"))),
    })
}

fn num<T: std::str::FromStr>(h: &HashMap<String, String>, k: &str) -> Option<T> {
    h.get(k).and_then(|v| v.parse().ok())
}

/// A record from its hash: the JSON as created, with the changing fields
/// laid over it.
fn record_of(h: &HashMap<String, String>) -> Result<BroadcastRecord, StoreError> {
    let json = h
        .get("j")
        .ok_or_else(|| corrupt("broadcast without record"))?;
    let mut r: BroadcastRecord =
        serde_json::from_str(json).map_err(|e| corrupt(format_args!("broadcast: {e}")))?;
    if let Some(st) = h.get("st") {
        r.status = parse_status(st)?;
    }
    r.total = num(h, "tot").unwrap_or(0);
    r.fanned = num(h, "fan").unwrap_or(0);
    r.refused = num(h, "ref").unwrap_or(0);
    r.cursor = h.get("cur").cloned();
    r.decided_by = h.get("by").cloned();
    r.decided_at = num(h, "dat");
    r.comment = h.get("cm").cloned();
    r.canceled_by = h.get("cby").cloned();
    r.done_at = num(h, "done");
    Ok(r)
}

fn counts_of(h: &HashMap<String, String>) -> StatusCounts {
    let n = |k: &str| num::<i64>(h, k).unwrap_or(0);
    StatusCounts::from_slots([
        n("queued"),
        n("submitted"),
        n("delivered"),
        n("failed"),
        n("expired"),
        n("canceled"),
    ])
}

impl Shared {
    /// Up to `limit` distinct members of `lists` after `after`, in order
    /// (any of the first `limit` of the union is among the first `limit`
    /// of its own list).
    async fn merged(
        &self,
        lists: &[u64],
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let mut all = Vec::new();
        for list in lists {
            all.extend(self.list_page(*list, after, limit).await?);
        }
        all.sort_unstable();
        all.dedup();
        all.truncate(limit);
        Ok(all)
    }

    /// Distinct members of `lists`, read in steps (Redis is never held).
    async fn union_count(&self, lists: &[u64]) -> Result<u64, StoreError> {
        let mut count = 0;
        let mut after: Option<String> = None;
        loop {
            let chunk = self.merged(lists, after.as_deref(), UNION_STEP).await?;
            let Some(last) = chunk.last() else {
                return Ok(count);
            };
            count += chunk.len() as u64;
            after = Some(last.clone());
        }
    }

    fn broadcast_key(&self, id: &str) -> String {
        self.key(&format!("b:{id}"))
    }

    async fn broadcast_state(&self, id: &str) -> Result<Option<BroadcastState>, StoreError> {
        let mut conn = self.conn()?;
        let (h, n): (HashMap<String, String>, HashMap<String, String>) = ::redis::pipe()
            .hgetall(self.broadcast_key(id))
            .hgetall(format!("{}:n", self.broadcast_key(id)))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        if h.is_empty() {
            return Ok(None);
        }
        Ok(Some(BroadcastState {
            record: record_of(&h)?,
            counts: counts_of(&n),
        }))
    }
}

#[async_trait]
impl BroadcastStore for RedisStore {
    async fn create_broadcast(
        &self,
        mut record: BroadcastRecord,
    ) -> Result<Result<BroadcastState, CreateRefused>, StoreError> {
        let s = &self.shared;
        let id = record.id.to_string();
        let named = if record.recipients.is_empty() {
            None
        } else {
            let list = s.new_list_id().await?;
            s.stage_list(list, &record.recipients).await?;
            Some((list, record.recipients.len() as u64))
        };
        let cap = record
            .cap
            .as_ref()
            .map(|c| format!("{}\n{}", c.sender, c.identifier))
            .unwrap_or_default();
        // A group replaced between the read and the script: read again.
        for _ in 0..CREATE_TRIES {
            let mut pairs: Vec<(String, String)> = Vec::with_capacity(record.groups.len());
            let mut lists: Vec<(u64, u64)> = Vec::new();
            for g in &record.groups {
                let Some((summary, list)) = s.group_entry(g).await? else {
                    return Ok(Err(CreateRefused::UnknownGroup(g.clone())));
                };
                pairs.push((
                    g.clone(),
                    list.map_or_else(|| "-".to_string(), |l| l.to_string()),
                ));
                if let Some(l) = list
                    && !lists.iter().any(|(x, _)| *x == l)
                {
                    lists.push((l, summary.count));
                }
            }
            lists.extend(named);
            let ids: Vec<u64> = lists.iter().map(|(l, _)| *l).collect();
            record.total = match lists.as_slice() {
                [] => 0,
                [(_, count)] => *count,
                _ => s.union_count(&ids).await?,
            };
            record.lists = ids;
            let json = serde_json::to_string(&record).map_err(|e| corrupt(e.to_string()))?;
            let mut inv = s.invocation(&s.scripts.bcast_create, now_micros());
            inv.arg(&id)
                .arg(json)
                .arg(record.status.as_str())
                .arg(&record.created_by)
                .arg(&cap)
                .arg(record.total)
                .arg(pairs.len());
            for (name, list) in &pairs {
                inv.arg(name).arg(list);
            }
            inv.arg(record.lists.len());
            for l in &record.lists {
                inv.arg(l);
            }
            let reply = array(s.invoke(&inv).await?)?;
            match reply.first().map(int).transpose()? {
                Some(0) => {
                    return s
                        .broadcast_state(&id)
                        .await?
                        .map(Ok)
                        .ok_or_else(|| corrupt("broadcast vanished after create"));
                }
                Some(1) => {
                    let name = match reply.get(1) {
                        Some(v) => super::decode::text(v.clone())?.unwrap_or_default(),
                        None => String::new(),
                    };
                    return Ok(Err(CreateRefused::UnknownGroup(name)));
                }
                Some(2) => {}
                _ => return Err(corrupt("broadcast create reply")),
            }
        }
        Err(StoreError::Io(
            "the audience's groups kept changing; try again".into(),
        ))
    }

    async fn broadcast(&self, id: MessageId) -> Result<Option<BroadcastState>, StoreError> {
        self.shared.broadcast_state(&id.to_string()).await
    }

    async fn broadcasts(
        &self,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<BroadcastState>, StoreError> {
        let s = &self.shared;
        let mut conn = s.conn()?;
        let max = before.map_or_else(|| "+".to_string(), |b| format!("({b}"));
        let ids: Vec<String> = ::redis::cmd("ZREVRANGEBYLEX")
            .arg(s.key("broadcasts"))
            .arg(max)
            .arg("-")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(state) = s.broadcast_state(&id).await? {
                out.push(state);
            }
        }
        Ok(out)
    }

    async fn sending_broadcasts(&self) -> Result<Vec<BroadcastRecord>, StoreError> {
        let s = &self.shared;
        let mut conn = s.conn()?;
        let ids: Vec<String> = conn.smembers(s.key("bactive")).await.map_err(unavailable)?;
        let mut out = Vec::new();
        for id in ids {
            let h: HashMap<String, String> = conn
                .hgetall(s.broadcast_key(&id))
                .await
                .map_err(unavailable)?;
            if h.get("st").map(String::as_str) == Some("sending") {
                out.push(record_of(&h)?);
            }
        }
        Ok(out)
    }

    async fn broadcast_by_cap(
        &self,
        sender: &str,
        identifier: &str,
    ) -> Result<Option<MessageId>, StoreError> {
        let s = &self.shared;
        let mut conn = s.conn()?;
        let id: Option<String> = conn
            .hget(s.key("bcap"), format!("{sender}\n{identifier}"))
            .await
            .map_err(unavailable)?;
        id.map(|i| {
            i.parse()
                .map_err(|()| corrupt(format_args!("broadcast id {i:?}")))
        })
        .transpose()
    }

    async fn decide_broadcast(
        &self,
        id: MessageId,
        decision: Decision,
    ) -> Result<Decided, StoreError> {
        let s = &self.shared;
        let key = id.to_string();
        // Cancel needs the class and connectors to find queued messages.
        let Some(state) = s.broadcast_state(&key).await? else {
            return Ok(Decided::NotFound);
        };
        let (kind, by, at, comment) = match decision {
            Decision::Approve { by, at, comment } => ("A", by, at, comment),
            Decision::Reject { by, at, comment } => ("R", by, at, comment),
            Decision::Cancel { by, at } => ("C", by, at, None),
            Decision::Complete { at } => ("K", String::new(), at, None),
        };
        let mut inv = s.invocation(&s.scripts.bcast_decide, now_micros());
        inv.arg(&key)
            .arg(kind)
            .arg(by)
            .arg(at)
            .arg(comment.as_deref().unwrap_or_default())
            .arg(if comment.is_some() { "1" } else { "0" })
            .arg(state.record.class.index())
            .arg(state.record.route.len());
        for c in &state.record.route {
            inv.arg(c);
        }
        inv.arg(state.record.lists.len());
        for l in &state.record.lists {
            inv.arg(l);
        }
        let parts = s.with_gauges(s.invoke(&inv).await?)?;
        let reply = array(parts.into_iter().next().unwrap_or_default())?;
        match reply.first().map(int).transpose()? {
            Some(0) => {}
            Some(1) => return Ok(Decided::NotFound),
            Some(2) => {
                let st = match reply.get(1) {
                    Some(v) => super::decode::text(v.clone())?.unwrap_or_default(),
                    None => String::new(),
                };
                return Ok(Decided::WrongState(parse_status(&st)?));
            }
            Some(3) => return Ok(Decided::SelfApproval),
            Some(4) => return Ok(Decided::NotYet),
            _ => return Err(corrupt("broadcast decide reply")),
        }
        s.wake_all();
        s.broadcast_state(&key)
            .await?
            .map(|s| Decided::Done(Box::new(s)))
            .ok_or_else(|| corrupt("broadcast vanished"))
    }

    async fn audience(
        &self,
        id: MessageId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let s = &self.shared;
        let mut conn = s.conn()?;
        let json: Option<String> = conn
            .hget(s.broadcast_key(&id.to_string()), "j")
            .await
            .map_err(unavailable)?;
        let Some(json) = json else {
            return Ok(Vec::new());
        };
        let r: BroadcastRecord =
            serde_json::from_str(&json).map_err(|e| corrupt(format_args!("broadcast: {e}")))?;
        s.merged(&r.lists, after, limit).await
    }

    async fn fan_out(
        &self,
        id: MessageId,
        after: Option<String>,
        last: String,
        items: Vec<NewMessage>,
        refused: u64,
    ) -> Result<FanOut, StoreError> {
        let s = &self.shared;
        let mut inv = s.invocation(&s.scripts.bcast_fanout, now_micros());
        inv.arg(id.to_string())
            .arg(if after.is_some() { "1" } else { "0" })
            .arg(after.as_deref().unwrap_or_default())
            .arg(&last)
            .arg(refused)
            .arg(items.len());
        push_items(&mut inv, &items)?;
        let parts = s.with_gauges(s.invoke(&inv).await?)?;
        let reply = array(parts.into_iter().next().unwrap_or_default())?;
        match reply.first().map(int).transpose()? {
            Some(0) => {
                let n = |i: usize| -> Result<u64, StoreError> {
                    Ok(reply
                        .get(i)
                        .map(int)
                        .transpose()?
                        .and_then(|v| u64::try_from(v).ok())
                        .unwrap_or(0))
                };
                // Wake the dispatchers of what was queued.
                for item in &items {
                    if let Some(c) = item.message.current_connector() {
                        s.notifier(c).notify_one();
                        break;
                    }
                }
                Ok(FanOut::Applied {
                    created: n(1)?,
                    refused: n(2)?,
                })
            }
            Some(1) => Ok(FanOut::Stale),
            _ => Err(corrupt("broadcast fan-out reply")),
        }
    }

    async fn ready_depth(&self, connector: &str, class: Class) -> Result<u64, StoreError> {
        let s = &self.shared;
        let mut conn = s.conn()?;
        conn.zcard(s.key(&format!("q:{connector}:{}", class.index())))
            .await
            .map_err(unavailable)
    }
}

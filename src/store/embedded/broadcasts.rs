//! The broadcast role of the embedded store.
//!
//! A broadcast's audience is a set of member lists (its groups' lists at
//! creation, held until it ends, plus one list of the numbers named
//! directly); recipients are read from them by a k-way merge after the
//! cursor, which de-duplicates without ever copying the audience. Counters
//! per status are kept by the writer: every save of a broadcast message
//! counts its status change (see `Writer::save`), written once per commit.

use std::sync::Arc;

use async_trait::async_trait;
use redb::{ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};

use super::groups::{LAST, LIST_MEMBERS, current_list, new_list, release_list};
use super::{Effects, EmbeddedStore, Shared, Writer, io};
use crate::model::{Class, MessageId, Micros, Status};
use crate::store::broadcast::{
    BroadcastRecord, BroadcastState, BroadcastStatus, BroadcastStore, CreateRefused, Decided,
    Decision, FanOut, StatusCounts,
};
use crate::store::memqueue::Slot;
use crate::store::{Admission, NewMessage, StoreError};

/// Broadcast id → record (JSON).
const BROADCASTS: TableDefinition<u128, &[u8]> = TableDefinition::new("broadcasts");
/// (broadcast id, status slot) → messages in that status.
const COUNTS: TableDefinition<(u128, u8), i64> = TableDefinition::new("broadcast_counts");
/// Broadcasts not final yet.
const ACTIVE: TableDefinition<u128, ()> = TableDefinition::new("broadcasts_active");
/// (CAP sender, CAP identifier) → broadcast id.
const BY_CAP: TableDefinition<(&str, &str), u128> = TableDefinition::new("broadcasts_by_cap");

/// Most queued rows one cancel looks at per connector; a broadcast never
/// has more queued than its fan-out buffer.
const CANCEL_SCAN_MOST: usize = 500_000;

pub(super) fn create_tables(tx: &WriteTransaction) -> Result<(), StoreError> {
    tx.open_table(BROADCASTS).map_err(io)?;
    tx.open_table(COUNTS).map_err(io)?;
    tx.open_table(ACTIVE).map_err(io)?;
    tx.open_table(BY_CAP).map_err(io)?;
    Ok(())
}

fn encode(r: &BroadcastRecord) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(r).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn decode(bytes: &[u8]) -> Result<BroadcastRecord, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("broadcast: {e}")))
}

/// Writes the counter changes the transaction's saves collected.
pub(super) fn flush_counts(w: &mut Writer<'_>) -> Result<(), StoreError> {
    if w.broadcast_deltas.is_empty() {
        return Ok(());
    }
    let mut table = w.tx.open_table(COUNTS).map_err(io)?;
    for ((id, slot), delta) in w.broadcast_deltas.drain() {
        if delta == 0 {
            continue;
        }
        let now = table.get((id, slot)).map_err(io)?.map_or(0, |v| v.value());
        table.insert((id, slot), now + delta).map_err(io)?;
    }
    Ok(())
}

fn read_counts<T: ReadableTable<(u128, u8), i64>>(
    table: &T,
    id: u128,
) -> Result<[i64; 6], StoreError> {
    let mut slots = [0i64; 6];
    for row in table.range((id, 0)..=(id, 5)).map_err(io)? {
        let (k, v) = row.map_err(io)?;
        if let Some(slot) = slots.get_mut(usize::from(k.value().1)) {
            *slot = v.value();
        }
    }
    Ok(slots)
}

/// Counts as of this point of the transaction (saves not flushed yet
/// included).
fn counts_now(w: &Writer<'_>, id: u128) -> Result<StatusCounts, StoreError> {
    let table = w.tx.open_table(COUNTS).map_err(io)?;
    let mut slots = read_counts(&table, id)?;
    for (i, slot) in slots.iter_mut().enumerate() {
        *slot += w.broadcast_deltas.get(&(id, i as u8)).copied().unwrap_or(0);
    }
    Ok(StatusCounts::from_slots(slots))
}

fn load(w: &Writer<'_>, id: u128) -> Result<Option<BroadcastRecord>, StoreError> {
    let table = w.tx.open_table(BROADCASTS).map_err(io)?;
    let v = table.get(id).map_err(io)?;
    v.map(|v| decode(v.value())).transpose()
}

fn save(w: &Writer<'_>, r: &BroadcastRecord) -> Result<(), StoreError> {
    let bytes = encode(r)?;
    w.tx.open_table(BROADCASTS)
        .map_err(io)?
        .insert(r.id.0, bytes.as_slice())
        .map_err(io)?;
    Ok(())
}

/// Up to `limit` distinct members of `lists` after `after`, in order.
///
/// Any of the first `limit` of the union is among the first `limit` of its
/// own list, so reading that many from each list is enough.
fn merged<T: ReadableTable<(u64, &'static str), ()>>(
    table: &T,
    lists: &[u64],
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<String>, StoreError> {
    let start = after.unwrap_or("");
    let mut all: Vec<String> = Vec::new();
    for &list in lists {
        let mut taken = 0;
        for row in table.range((list, start)..=(list, LAST)).map_err(io)? {
            let (k, ()) = row.map(|(k, v)| (k, v.value())).map_err(io)?;
            let member = k.value().1;
            if after.is_some_and(|a| member <= a) {
                continue;
            }
            all.push(member.to_string());
            taken += 1;
            if taken >= limit {
                break;
            }
        }
    }
    all.sort_unstable();
    all.dedup();
    all.truncate(limit);
    Ok(all)
}

/// Distinct members of `lists`.
fn union_count(w: &Writer<'_>, lists: &[u64]) -> Result<u64, StoreError> {
    let table = w.tx.open_table(LIST_MEMBERS).map_err(io)?;
    let mut count = 0u64;
    let mut after: Option<String> = None;
    loop {
        let chunk = merged(&table, lists, after.as_deref(), 50_000)?;
        let Some(last) = chunk.last() else {
            return Ok(count);
        };
        count += chunk.len() as u64;
        after = Some(last.clone());
    }
}

fn create(
    w: &mut Writer<'_>,
    mut record: BroadcastRecord,
) -> Result<Result<BroadcastState, CreateRefused>, StoreError> {
    let mut lists: Vec<(u64, u64)> = Vec::new();
    for g in &record.groups {
        match current_list(w, g)? {
            Some(found) => {
                if !lists.iter().any(|(l, _)| *l == found.0) {
                    lists.push(found);
                }
            }
            None => return Ok(Err(CreateRefused::UnknownGroup(g.clone()))),
        }
    }
    for (list, _) in &lists {
        release_list(w, *list, 1, None)?;
    }
    if !record.recipients.is_empty() {
        let list = new_list(w, &record.recipients, 1, false)?;
        lists.push((list, record.recipients.len() as u64));
    }
    record.total = match lists.as_slice() {
        [] => 0,
        [(_, count)] => *count,
        _ => union_count(w, &lists.iter().map(|(l, _)| *l).collect::<Vec<_>>())?,
    };
    record.lists = lists.iter().map(|(l, _)| *l).collect();
    record.cursor = None;
    record.fanned = 0;
    record.refused = 0;
    save(w, &record)?;
    if !record.status.is_final() {
        w.tx.open_table(ACTIVE)
            .map_err(io)?
            .insert(record.id.0, ())
            .map_err(io)?;
    }
    if let Some(cap) = &record.cap {
        w.tx.open_table(BY_CAP)
            .map_err(io)?
            .insert((cap.sender.as_str(), cap.identifier.as_str()), record.id.0)
            .map_err(io)?;
    }
    Ok(Ok(BroadcastState {
        record,
        counts: StatusCounts::default(),
    }))
}

/// A broadcast that reached a final status lets go of its lists.
fn finish(w: &Writer<'_>, r: &mut BroadcastRecord, at: Micros) -> Result<(), StoreError> {
    r.done_at = Some(at);
    for list in &r.lists {
        release_list(w, *list, -1, None)?;
    }
    w.tx.open_table(ACTIVE)
        .map_err(io)?
        .remove(r.id.0)
        .map_err(io)?;
    Ok(())
}

/// Every message of `r` still waiting in a queue (not claimed by a
/// dispatcher) becomes `canceled`.
fn cancel_queued(
    w: &mut Writer<'_>,
    fx: &mut Effects,
    shared: &Shared,
    r: &BroadcastRecord,
    at: Micros,
) -> Result<(), StoreError> {
    let class = r.class;
    let class_index = class.index() as u8;
    for connector in &r.route {
        let rows: Vec<(u64, u128)> = w
            .queue
            .range(
                (connector.as_str(), class_index, 0)..=(connector.as_str(), class_index, u64::MAX),
            )
            .map_err(io)?
            .take(CANCEL_SCAN_MOST)
            .map(|row| row.map(|(k, v)| (k.value().2, v.value().0)).map_err(io))
            .collect::<Result<_, _>>()?;
        for (seq, id) in rows {
            let Some(mut m) = w.load(id)? else { continue };
            if m.broadcast != Some(r.id) || m.status != Status::Queued {
                continue;
            }
            let slot = Slot {
                connector: connector.clone(),
                class,
                seq,
            };
            // Claimed by a dispatcher: on its way to the carrier already.
            if !shared.ready.remove(&slot) {
                continue;
            }
            w.dequeue(&m)?;
            cancel_message(w, fx, &mut m, at)?;
        }
    }
    // Deferred (quiet hours) and waiting for a retry.
    let delayed: Vec<((i64, u64), u128)> = w
        .delayed
        .iter()
        .map_err(io)?
        .map(|row| row.map(|(k, v)| (k.value(), v.value())).map_err(io))
        .collect::<Result<_, _>>()?;
    for (key, id) in delayed {
        let Some(mut m) = w.load(id)? else { continue };
        if m.broadcast != Some(r.id) || m.status != Status::Queued {
            continue;
        }
        w.delayed.remove(key).map_err(io)?;
        fx.delayed_delta -= 1;
        cancel_message(w, fx, &mut m, at)?;
    }
    Ok(())
}

/// Whether broadcast `id` was canceled.
pub(super) fn is_canceled(w: &Writer<'_>, id: u128) -> Result<bool, StoreError> {
    Ok(load(w, id)?.is_some_and(|r| r.status == BroadcastStatus::Canceled))
}

pub(super) fn cancel_message(
    w: &mut Writer<'_>,
    fx: &mut Effects,
    m: &mut crate::model::Message,
    at: Micros,
) -> Result<(), StoreError> {
    m.status = Status::Canceled;
    m.done_at = Some(at);
    m.error = Some("broadcast canceled".into());
    m.sealed_body = None;
    w.save(m)?;
    w.on_final(m, fx)
}

fn decide(
    w: &mut Writer<'_>,
    fx: &mut Effects,
    shared: &Shared,
    id: MessageId,
    decision: Decision,
) -> Result<Decided, StoreError> {
    let Some(mut r) = load(w, id.0)? else {
        return Ok(Decided::NotFound);
    };
    match decision {
        Decision::Approve { by, at, comment } => {
            if r.status != BroadcastStatus::PendingApproval {
                return Ok(Decided::WrongState(r.status));
            }
            if by == r.created_by {
                return Ok(Decided::SelfApproval);
            }
            r.status = BroadcastStatus::Sending;
            r.decided_by = Some(by);
            r.decided_at = Some(at);
            r.comment = comment;
        }
        Decision::Reject { by, at, comment } => {
            if r.status != BroadcastStatus::PendingApproval {
                return Ok(Decided::WrongState(r.status));
            }
            r.status = BroadcastStatus::Rejected;
            r.decided_by = Some(by);
            r.decided_at = Some(at);
            r.comment = comment;
            finish(w, &mut r, at)?;
        }
        Decision::Cancel { by, at } => {
            if r.status.is_final() {
                return Ok(Decided::WrongState(r.status));
            }
            r.status = BroadcastStatus::Canceled;
            r.canceled_by = Some(by);
            cancel_queued(w, fx, shared, &r, at)?;
            finish(w, &mut r, at)?;
        }
        Decision::Complete { at } => {
            if r.status != BroadcastStatus::Sending {
                return Ok(Decided::WrongState(r.status));
            }
            if r.unfanned() > 0 || counts_now(w, id.0)?.queued > 0 {
                return Ok(Decided::NotYet);
            }
            r.status = BroadcastStatus::Completed;
            finish(w, &mut r, at)?;
        }
    }
    save(w, &r)?;
    let counts = counts_now(w, id.0)?;
    Ok(Decided::Done(Box::new(BroadcastState {
        record: r,
        counts,
    })))
}

fn fan_out(
    w: &mut Writer<'_>,
    fx: &mut Effects,
    id: MessageId,
    after: Option<String>,
    last: String,
    items: &[NewMessage],
    refused: u64,
) -> Result<FanOut, StoreError> {
    let Some(mut r) = load(w, id.0)? else {
        return Ok(FanOut::Stale);
    };
    if r.status != BroadcastStatus::Sending || r.cursor != after {
        return Ok(FanOut::Stale);
    }
    let mut created = 0u64;
    let mut refused_now = refused;
    for admission in w.admit(items, fx)? {
        match admission {
            Admission::Created(_) => created += 1,
            Admission::Existing(_) => {}
            Admission::RateLimited { .. } | Admission::OptedOut => refused_now += 1,
        }
    }
    r.cursor = Some(last);
    r.fanned += created;
    r.refused += refused_now;
    save(w, &r)?;
    Ok(FanOut::Applied {
        created,
        refused: refused_now,
    })
}

impl EmbeddedStore {
    fn state_of(
        &self,
        tx: &redb::ReadTransaction,
        r: BroadcastRecord,
    ) -> Result<BroadcastState, StoreError> {
        let counts = tx.open_table(COUNTS).map_err(io)?;
        let slots = read_counts(&counts, r.id.0)?;
        Ok(BroadcastState {
            record: r,
            counts: StatusCounts::from_slots(slots),
        })
    }
}

#[async_trait]
impl BroadcastStore for EmbeddedStore {
    async fn create_broadcast(
        &self,
        record: BroadcastRecord,
    ) -> Result<Result<BroadcastState, CreateRefused>, StoreError> {
        let weight = 1 + record.recipients.len();
        self.write(weight, move |w, _| create(w, record)).await
    }

    async fn broadcast(&self, id: MessageId) -> Result<Option<BroadcastState>, StoreError> {
        let tx = self.read()?;
        let table = tx.open_table(BROADCASTS).map_err(io)?;
        let Some(r) = table
            .get(id.0)
            .map_err(io)?
            .map(|v| decode(v.value()))
            .transpose()?
        else {
            return Ok(None);
        };
        self.state_of(&tx, r).map(Some)
    }

    async fn broadcasts(
        &self,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<BroadcastState>, StoreError> {
        let tx = self.read()?;
        let table = tx.open_table(BROADCASTS).map_err(io)?;
        let end = before.map_or(u128::MAX, |b| b.0);
        let mut out = Vec::new();
        for row in table.range(..end).map_err(io)?.rev() {
            let (_, v) = row.map_err(io)?;
            let r = decode(v.value())?;
            out.push(self.state_of(&tx, r)?);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    async fn sending_broadcasts(&self) -> Result<Vec<BroadcastRecord>, StoreError> {
        let tx = self.read()?;
        let active = tx.open_table(ACTIVE).map_err(io)?;
        let table = tx.open_table(BROADCASTS).map_err(io)?;
        let mut out = Vec::with_capacity(usize::try_from(active.len().map_err(io)?).unwrap_or(0));
        for row in active.iter().map_err(io)? {
            let (k, ()) = row.map(|(k, v)| (k, v.value())).map_err(io)?;
            if let Some(v) = table.get(k.value()).map_err(io)? {
                let r = decode(v.value())?;
                if r.status == BroadcastStatus::Sending {
                    out.push(r);
                }
            }
        }
        Ok(out)
    }

    async fn broadcast_by_cap(
        &self,
        sender: &str,
        identifier: &str,
    ) -> Result<Option<MessageId>, StoreError> {
        let tx = self.read()?;
        let table = tx.open_table(BY_CAP).map_err(io)?;
        Ok(table
            .get((sender, identifier))
            .map_err(io)?
            .map(|v| MessageId(v.value())))
    }

    async fn decide_broadcast(
        &self,
        id: MessageId,
        decision: Decision,
    ) -> Result<Decided, StoreError> {
        let shared: Arc<Shared> = self.shared.clone();
        self.write(1000, move |w, fx| decide(w, fx, &shared, id, decision))
            .await
    }

    async fn audience(
        &self,
        id: MessageId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let tx = self.read()?;
        let table = tx.open_table(BROADCASTS).map_err(io)?;
        let Some(r) = table
            .get(id.0)
            .map_err(io)?
            .map(|v| decode(v.value()))
            .transpose()?
        else {
            return Ok(Vec::new());
        };
        let members = tx.open_table(LIST_MEMBERS).map_err(io)?;
        merged(&members, &r.lists, after, limit)
    }

    async fn fan_out(
        &self,
        id: MessageId,
        after: Option<String>,
        last: String,
        mut items: Vec<NewMessage>,
        refused: u64,
    ) -> Result<FanOut, StoreError> {
        for item in &mut items {
            if item.message.seq == 0 {
                item.message.seq = self.next_seq();
            }
        }
        let weight = items.len().max(1);
        self.write(weight, move |w, fx| {
            fan_out(w, fx, id, after, last, &items, refused)
        })
        .await
    }

    async fn ready_depth(&self, connector: &str, class: Class) -> Result<u64, StoreError> {
        Ok(self.shared.ready.depth(connector, class))
    }
}

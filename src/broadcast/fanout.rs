//! The fan-out: turns the recipients of sending broadcasts into queued
//! messages, as fast as the carriers take them and no faster.
//!
//! Each connector a broadcast may use is kept topped up with a buffer of
//! its messages (about two seconds of its TPS cap, or a fixed amount when
//! uncapped). A connector that sends faster drains its buffer faster and
//! gets more, so the audience spreads over the connectors in proportion to
//! what they accept; a connector that is down gets nothing new, and what it
//! held is moved on by the dispatcher's failover sweep (every message's
//! route lists the broadcast's other connectors after its own). Emergency
//! messages are of the highest class, so they overtake every backlog.
//!
//! Recipients become messages in chunks, each one store write that also
//! moves the broadcast's cursor: a restart resumes at the cursor, and a
//! second node filling the same broadcast finds the cursor moved and reads
//! again — nobody gets a second copy.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::admission::{Admitter, Outgoing};
use crate::auth::{Principal, Scope};
use crate::connector::Health;
use crate::model::{Class, Message, MessageId, Status, now_micros};
use crate::store::broadcast::{BroadcastRecord, Decided, Decision, FanOut};
use crate::store::{BroadcastStore, NewMessage, StoreError};

/// Most recipients turned into messages in one write.
const CHUNK: usize = 10_000;
/// The first write of a broadcast is small, so its first message leaves
/// without waiting for a whole chunk to be stored.
const FIRST_CHUNK: usize = 500;
/// Buffer of a connector without a TPS cap.
const UNCAPPED_BUFFER: u64 = 20_000;
/// Buffer bounds of a capped connector.
const MIN_BUFFER: u64 = 500;
const MAX_BUFFER: u64 = 50_000;
/// How often sending broadcasts are looked at when nothing wakes us.
const POLL: Duration = Duration::from_millis(20);

/// What the fan-out needs of the gateway.
pub struct FanOutTask {
    pub store: Arc<dyn BroadcastStore>,
    pub admitter: Arc<Admitter>,
    pub health: Health,
    /// TPS cap per connector (`None`: uncapped).
    pub caps: HashMap<String, Option<u32>>,
    pub wake: Arc<Notify>,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub stop: CancellationToken,
}

/// How many of a connector's messages to keep queued.
fn buffer_for(cap: Option<u32>) -> u64 {
    match cap {
        None => UNCAPPED_BUFFER,
        Some(tps) => (u64::from(tps) * 2).clamp(MIN_BUFFER, MAX_BUFFER),
    }
}

impl FanOutTask {
    /// Runs until `stop`.
    pub async fn run(self) {
        loop {
            let busy = match self.pass().await {
                Ok(busy) => busy,
                Err(e) => {
                    tracing::warn!(error = %e, "broadcast fan-out: store unavailable; retrying");
                    false
                }
            };
            if busy {
                tokio::task::yield_now().await;
                if self.stop.is_cancelled() {
                    return;
                }
                continue;
            }
            tokio::select! {
                () = self.stop.cancelled() => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// One look at every sending broadcast; whether anything was written.
    async fn pass(&self) -> Result<bool, StoreError> {
        let mut busy = false;
        for mut b in self.store.sending_broadcasts().await? {
            if b.unfanned() == 0 {
                self.try_complete(&b).await?;
                continue;
            }
            for connector in b.route.clone() {
                if !(self.health)(&connector) && b.route.len() > 1 {
                    continue;
                }
                let depth = self.store.ready_depth(&connector, b.class).await?;
                let target = buffer_for(self.caps.get(&connector).copied().flatten());
                if depth >= target / 2 {
                    continue;
                }
                let chunk = CHUNK.min(self.store.fan_out_chunk());
                let mut want = usize::try_from(target - depth).unwrap_or(chunk).min(chunk);
                if b.fanned + b.refused == 0 {
                    want = want.min(FIRST_CHUNK);
                }
                match self.fill(&mut b, &connector, want).await? {
                    Some(n) if n > 0 => busy = true,
                    Some(_) => {}
                    // Someone else moved the cursor: read it again next pass.
                    None => break,
                }
                if b.unfanned() == 0 {
                    break;
                }
            }
        }
        Ok(busy)
    }

    /// Completes `b` once nothing of it is queued any more.
    async fn try_complete(&self, b: &BroadcastRecord) -> Result<(), StoreError> {
        match self.store.broadcast(b.id).await? {
            Some(state) if state.counts.queued == 0 => {
                if let Decided::Done(s) = self
                    .store
                    .decide_broadcast(b.id, Decision::Complete { at: now_micros() })
                    .await?
                {
                    tracing::info!(
                        broadcast = %b.id,
                        total = s.record.total,
                        refused = s.record.refused,
                        "broadcast completed"
                    );
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Turns up to `want` more recipients of `b` into messages queued
    /// first for `connector`. `None` when the cursor moved under us.
    async fn fill(
        &self,
        b: &mut BroadcastRecord,
        connector: &str,
        want: usize,
    ) -> Result<Option<u64>, StoreError> {
        let started = Instant::now();
        let recipients = self.store.audience(b.id, b.cursor.as_deref(), want).await?;
        let Some(last) = recipients.last().cloned() else {
            return Ok(Some(0));
        };
        let (items, refused) = self.messages_for(b, connector, recipients);
        match self
            .store
            .fan_out(b.id, b.cursor.clone(), last.clone(), items, refused)
            .await?
        {
            FanOut::Applied { created, refused } => {
                b.cursor = Some(last);
                b.fanned += created;
                b.refused += refused;
                self.metrics.broadcast_fanned_out(
                    created,
                    refused,
                    started.elapsed().as_secs_f64(),
                );
                tracing::debug!(
                    broadcast = %b.id,
                    connector,
                    created,
                    refused,
                    micros = started.elapsed().as_micros() as u64,
                    "broadcast recipients queued"
                );
                Ok(Some(created + refused))
            }
            FanOut::Stale => Ok(None),
        }
    }

    /// The messages of one chunk, and how many recipients were refused
    /// before the store (marketing: `on_submit`, routing).
    fn messages_for(
        &self,
        b: &BroadcastRecord,
        connector: &str,
        recipients: Vec<String>,
    ) -> (Vec<NewMessage>, u64) {
        // This connector first, the broadcast's others after it: a failover
        // sweep moves a message of a connector that went down.
        let mut route = vec![connector.to_string()];
        route.extend(b.route.iter().filter(|c| *c != connector).cloned());
        if b.class == Class::Marketing {
            return self.marketing(b, &route, recipients);
        }
        let now = now_micros();
        let expires_at = now.saturating_add(b.validity_micros);
        // Emergency: no recipient limit, no opt-out, no per-message script.
        let items = recipients
            .into_iter()
            .map(|to| {
                NewMessage::plain(Message {
                    id: MessageId::generate(),
                    to,
                    from: b.from.clone(),
                    body: b.text.clone(),
                    class: b.class,
                    encoding: b.encoding,
                    segments: b.segments,
                    status: Status::Queued,
                    route: route.clone(),
                    route_index: 0,
                    connector: None,
                    smsc_message_ids: Vec::new(),
                    parts_delivered: 0,
                    parts_failed: 0,
                    error: None,
                    created_at: now,
                    submitted_at: None,
                    done_at: None,
                    expires_at,
                    attempts: 0,
                    seq: 0,
                    callback_url: None,
                    owner: b.owner.clone(),
                    idempotency_key: None,
                    tags: vec!["broadcast".into()],
                    not_before: None,
                    partial: None,
                    sealed_body: None,
                    broadcast: Some(b.id),
                })
            })
            .collect();
        (items, 0)
    }

    /// Marketing recipients pass admission one by one: opt-outs and
    /// limits (checked by the store in the fan-out write), `on_submit`
    /// (quiet hours) and routing.
    fn marketing(
        &self,
        b: &BroadcastRecord,
        route: &[String],
        recipients: Vec<String>,
    ) -> (Vec<NewMessage>, u64) {
        let who = Principal::internal(&b.owner, &[Scope::Send]);
        let mut refused = 0;
        let mut items = Vec::with_capacity(recipients.len());
        for to in recipients {
            let mut out = Outgoing::text(to, b.text.clone(), Class::Marketing);
            out.tags = vec!["broadcast".into()];
            out.validity = Some(Duration::from_micros(
                u64::try_from(b.validity_micros).unwrap_or(0),
            ));
            match self.admitter.prepare(&who, out) {
                Ok(mut item) => {
                    item.message.broadcast = Some(b.id);
                    if item.message.route.is_empty() {
                        item.message.route = route.to_vec();
                    }
                    items.push(item);
                }
                Err(e) => {
                    tracing::debug!(broadcast = %b.id, error = %e, "broadcast recipient refused");
                    refused += 1;
                }
            }
        }
        (items, refused)
    }
}

//! The embedded store: one redb file, no server needed.
//!
//! All writes go through one writer thread that drains every pending request
//! into a single write transaction and commits it durably before answering
//! any of them (group commit): a burst of concurrent admissions, claims'
//! outcomes and receipts costs one fsync. Reads use their own read
//! transactions and never wait for the writer.
//!
//! The file is held exclusively by one process. Claims live in memory: a
//! claimed message keeps its durable queue row until its outcome is
//! recorded, so after a crash it is simply queued again (at-least-once).

use std::any::Any;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table,
    TableDefinition, WriteTransaction,
};
use tokio::sync::{mpsc, oneshot};

use self::flush::{FlushTimer, LAZY_MAX, LAZY_MOST};

use super::broadcast::count_slot;
use super::memqueue::{HELD_MOST, Ready, ReadyQueues, Slot};

mod audit;
mod broadcasts;
mod flush;
mod groups;
mod keys;
mod operators;
mod otp;
#[cfg(test)]
mod tests;
use super::{
    Admission, InboundStore, MaintenanceReport, MessageStore, NewMessage, Outcome, QueueDepths,
    Retention, Store, StoreError, WebhookEvent, WebhookJob, WebhookResult, WebhookStore,
};
use crate::limits::{LimitDecision, decode_history, encode_history};
use crate::model::{Class, InboundRecord, Message, MessageId, Micros, Receipt, Status, now_micros};

/// id → message record (JSON).
const MESSAGES: TableDefinition<u128, &[u8]> = TableDefinition::new("messages");
/// (connector, class, seq) → (id, expires_at): ready messages.
const QUEUE: TableDefinition<(&str, u8, u64), (u128, i64)> = TableDefinition::new("queue");
/// (due, seq) → id: messages waiting for a retry.
const DELAYED: TableDefinition<(i64, u64), u128> = TableDefinition::new("delayed");
/// (connector, smsc message id) → id: matches receipts to messages.
const SMSC_IDS: TableDefinition<(&str, &str), u128> = TableDefinition::new("smsc_ids");
/// (connector, smsc message id) → receipt (JSON) that arrived before its submit was recorded.
const EARLY_RECEIPTS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("early_receipts");
/// owner \n key → (id, created_at).
const IDEMPOTENCY: TableDefinition<&str, (u128, i64)> = TableDefinition::new("idempotency");
/// (created_at, owner \n key) → (): ages idempotency keys out in order.
const IDEMPOTENCY_AGE: TableDefinition<(i64, &str), ()> = TableDefinition::new("idempotency_age");
/// (class, recipient) → recent send times (little-endian i64s).
const LIMITS: TableDefinition<(u8, &str), &[u8]> = TableDefinition::new("limits");
/// number → when it opted out of marketing.
const OPT_OUTS: TableDefinition<&str, i64> = TableDefinition::new("opt_outs");
/// id → inbound message (JSON).
const INBOUND: TableDefinition<u128, &[u8]> = TableDefinition::new("inbound");
/// (next_at, id) → webhook job (JSON).
const WEBHOOKS: TableDefinition<(i64, u128), &[u8]> = TableDefinition::new("webhooks");
/// Final messages with no work left (their status webhook, if any, is
/// delivered), by when that happened: what retention purges, oldest first.
const FINISHED: TableDefinition<(i64, u128), ()> = TableDefinition::new("finished");
/// Counters that must survive restarts.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

const META_SEQ: &str = "seq";
/// Largest number of items one write transaction takes.
const MAX_ITEMS_PER_COMMIT: usize = 20_000;
/// Most expired messages handled per maintenance pass.
const EXPIRE_PER_PASS: usize = 10_000;

pub(crate) fn io(e: impl std::fmt::Display) -> StoreError {
    StoreError::Io(e.to_string())
}

fn encode(m: &Message) -> Result<Vec<u8>, StoreError> {
    if m.sealed_body.is_some() && m.status != Status::Queued {
        // Submitted or final: the sealed clear text goes (see `seal`).
        let mut m = m.clone();
        m.sealed_body = None;
        return serde_json::to_vec(&m).map_err(|e| StoreError::Corrupt(e.to_string()));
    }
    serde_json::to_vec(m).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn decode(bytes: &[u8]) -> Result<Message, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn idempotency_scope(owner: &str, key: &str) -> String {
    format!("{owner}\n{key}")
}

/// A write request for the writer thread.
enum WriteOp {
    Admit {
        items: Vec<NewMessage>,
        reply: oneshot::Sender<Result<Vec<Admission>, StoreError>>,
    },
    Record {
        outcomes: Vec<Outcome>,
        reply: oneshot::Sender<Result<Vec<Message>, StoreError>>,
    },
    Receipts {
        receipts: Vec<Receipt>,
        reply: oneshot::Sender<Result<Vec<Message>, StoreError>>,
    },
    Maintain {
        now: Micros,
        retention: Retention,
        expire: Vec<(Slot, Ready)>,
        reply: oneshot::Sender<Result<MaintenanceReport, StoreError>>,
    },
    OptOut {
        number: String,
        at: Micros,
        reply: oneshot::Sender<Result<bool, StoreError>>,
    },
    OptIn {
        number: String,
        reply: oneshot::Sender<Result<bool, StoreError>>,
    },
    RecordInbound {
        records: Vec<InboundRecord>,
        webhook_url: Option<String>,
        reply: oneshot::Sender<Result<bool, StoreError>>,
    },
    ClaimWebhooks {
        now: Micros,
        max: usize,
        lease: Duration,
        reply: oneshot::Sender<Result<Vec<WebhookJob>, StoreError>>,
    },
    FinishWebhooks {
        results: Vec<(WebhookJob, WebhookResult)>,
        reply: oneshot::Sender<Result<bool, StoreError>>,
    },
    /// Work of a store role kept in its own module (see [`EmbeddedStore::write`]).
    Run {
        weight: usize,
        job: Job,
        reply: oneshot::Sender<Result<Box<dyn Any + Send>, StoreError>>,
    },
    /// Make what came before durable (see `flush`).
    Flush,
    /// Commit what came before, then stop: later writes fail with `Closed`.
    Close { reply: oneshot::Sender<()> },
}

/// A write of a role module, run inside the group-committed transaction;
/// its answer is sent only after the commit.
type Job = Box<
    dyn FnOnce(&mut Writer<'_>, &mut Effects) -> Result<Box<dyn Any + Send>, StoreError> + Send,
>;

impl WriteOp {
    fn weight(&self) -> usize {
        match self {
            WriteOp::Admit { items, .. } => items.len(),
            WriteOp::Record { outcomes, .. } => outcomes.len(),
            WriteOp::Receipts { receipts, .. } => receipts.len(),
            WriteOp::Maintain { expire, .. } => expire.len() + 100,
            WriteOp::RecordInbound { records, .. } => records.len(),
            WriteOp::ClaimWebhooks { max, .. } => *max,
            WriteOp::FinishWebhooks { results, .. } => results.len(),
            WriteOp::Run { weight, .. } => *weight,
            WriteOp::OptOut { .. } | WriteOp::OptIn { .. } | WriteOp::Close { .. } => 1,
            WriteOp::Flush => 0,
        }
    }

    /// Facts whose writers only need to know once they are durable, and
    /// that may wait for a later fsync (see `flush`).
    fn is_lazy(&self) -> bool {
        matches!(self, WriteOp::Record { .. } | WriteOp::Receipts { .. })
    }
}

/// State shared by the handle and the writer thread.
struct Shared {
    db: Database,
    ready: ReadyQueues,
    /// Messages in the retry table.
    delayed: AtomicU64,
    /// Next admission sequence number.
    next_seq: AtomicU64,
    /// Webhook deliveries in the table.
    webhooks: AtomicU64,
    /// Commits made durable (fsynced) since open.
    durable_commits: AtomicU64,
}

/// The embedded store. Cheap to clone behind an `Arc`.
pub struct EmbeddedStore {
    shared: Arc<Shared>,
    writer: mpsc::Sender<WriteOp>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store at `path` with a page cache of
    /// `cache_bytes`, and rebuilds the in-memory ready queues.
    ///
    /// # Errors
    /// [`StoreError::Locked`] when another process holds the file.
    pub fn open(path: &Path, cache_bytes: usize) -> Result<EmbeddedStore, StoreError> {
        EmbeddedStore::open_with_lazy_window(path, cache_bytes, LAZY_MAX)
    }

    /// [`EmbeddedStore::open`] holding lazy answers up to `window` (see `flush`).
    fn open_with_lazy_window(
        path: &Path,
        cache_bytes: usize,
        window: Duration,
    ) -> Result<EmbeddedStore, StoreError> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            private_dir(dir).map_err(|e| StoreError::Open(format!("{}: {e}", dir.display())))?;
        }
        private_file(path).map_err(|e| StoreError::Open(format!("{}: {e}", path.display())))?;
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked,
                other => StoreError::Open(format!("{}: {other}", path.display())),
            })?;
        // Create every table so readers never meet a missing one.
        {
            let tx = db.begin_write().map_err(io)?;
            tx.open_table(MESSAGES).map_err(io)?;
            tx.open_table(QUEUE).map_err(io)?;
            tx.open_table(DELAYED).map_err(io)?;
            tx.open_table(SMSC_IDS).map_err(io)?;
            tx.open_table(EARLY_RECEIPTS).map_err(io)?;
            tx.open_table(IDEMPOTENCY).map_err(io)?;
            tx.open_table(IDEMPOTENCY_AGE).map_err(io)?;
            keys::create_tables(&tx)?;
            otp::create_tables(&tx)?;
            groups::create_tables(&tx)?;
            operators::create_tables(&tx)?;
            broadcasts::create_tables(&tx)?;
            audit::create_tables(&tx)?;
            tx.open_table(META).map_err(io)?;
            tx.open_table(LIMITS).map_err(io)?;
            tx.open_table(OPT_OUTS).map_err(io)?;
            tx.open_table(INBOUND).map_err(io)?;
            tx.open_table(WEBHOOKS).map_err(io)?;
            tx.open_table(FINISHED).map_err(io)?;
            tx.commit().map_err(io)?;
        }
        let ready = ReadyQueues::default();
        let (next_seq, delayed, webhooks) = {
            let tx = db.begin_read().map_err(io)?;
            let queue = tx.open_table(QUEUE).map_err(io)?;
            let mut entries = Vec::new();
            for row in queue.iter().map_err(io)? {
                let (k, v) = row.map_err(io)?;
                let (connector, class, seq) = k.value();
                let (id, expires_at) = v.value();
                let class = Class::from_index(class)
                    .ok_or_else(|| StoreError::Corrupt(format!("queue class {class}")))?;
                entries.push((
                    Slot {
                        connector: connector.to_string(),
                        class,
                        seq,
                    },
                    Ready {
                        id,
                        expires_at,
                        message: None,
                    },
                ));
            }
            ready.push_many(entries);
            let meta = tx.open_table(META).map_err(io)?;
            let seq = meta
                .get(META_SEQ)
                .map_err(io)?
                .map(|v| v.value())
                .unwrap_or(0);
            let delayed = tx.open_table(DELAYED).map_err(io)?.len().map_err(io)?;
            let webhooks = tx.open_table(WEBHOOKS).map_err(io)?.len().map_err(io)?;
            (seq + 1, delayed, webhooks)
        };
        let shared = Arc::new(Shared {
            db,
            ready,
            delayed: AtomicU64::new(delayed),
            next_seq: AtomicU64::new(next_seq),
            webhooks: AtomicU64::new(webhooks),
            durable_commits: AtomicU64::new(0),
        });
        let (tx, rx) = mpsc::channel(4096);
        let timer = Arc::new(FlushTimer::new(window));
        let weak = tx.downgrade();
        let ticker = timer.clone();
        std::thread::Builder::new()
            .name("herald-store-flush".into())
            .spawn(move || ticker.run(&weak))
            .map_err(|e| StoreError::Open(e.to_string()))?;
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("herald-store-writer".into())
            .spawn(move || {
                writer_loop(&thread_shared, rx, &timer);
                timer.stop();
            })
            .map_err(|e| StoreError::Open(e.to_string()))?;
        Ok(EmbeddedStore {
            shared,
            writer: tx,
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    /// The next queue sequence number; admission assigns it before the
    /// write so records can be encoded outside the writer thread.
    pub fn next_seq(&self) -> u64 {
        self.shared.next_seq.fetch_add(1, Ordering::Relaxed)
    }

    async fn send<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> WriteOp,
    ) -> Result<T, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.writer
            .send(make(reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs `job` inside the next group-committed write transaction and
    /// answers once it is durable. This is how a store role in its own
    /// module writes: it opens its tables through [`Writer::tx`] and may
    /// use the message helpers of [`Writer`]. `weight` is the number of
    /// items it writes (it bounds how much one commit takes). If the job
    /// fails, the whole transaction is rolled back and every write in it
    /// fails.
    pub(crate) async fn write<T: Send + 'static>(
        &self,
        weight: usize,
        job: impl FnOnce(&mut Writer<'_>, &mut Effects) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let job: Job =
            Box::new(move |w, fx| job(w, fx).map(|v| Box::new(v) as Box<dyn Any + Send>));
        let any = self
            .send(|reply| WriteOp::Run { weight, job, reply })
            .await?;
        any.downcast::<T>()
            .map(|v| *v)
            .map_err(|_| StoreError::Corrupt("a write answered with the wrong type".into()))
    }

    /// Durable (fsynced) commits since open: what a message costs in
    /// fsyncs, for tests and diagnostics.
    pub fn durable_commits(&self) -> u64 {
        self.shared.durable_commits.load(Ordering::Relaxed)
    }

    /// A read transaction, for role modules.
    pub(crate) fn read(&self) -> Result<redb::ReadTransaction, StoreError> {
        self.shared.db.begin_read().map_err(io)
    }

    fn read_messages(&self, ids: &[u128]) -> Result<Vec<Option<Message>>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let tx = self.shared.db.begin_read().map_err(io)?;
        let table = tx.open_table(MESSAGES).map_err(io)?;
        ids.iter()
            .map(|id| match table.get(*id).map_err(io)? {
                Some(v) => decode(v.value()).map(Some),
                None => Ok(None),
            })
            .collect()
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn ping(&self) -> Result<(), StoreError> {
        if self.writer.is_closed() {
            return Err(StoreError::Closed);
        }
        let tx = self.shared.db.begin_read().map_err(io)?;
        tx.open_table(META).map_err(io)?;
        Ok(())
    }

    async fn close(&self) {
        let (reply, done) = oneshot::channel();
        if self.writer.send(WriteOp::Close { reply }).await.is_ok() {
            let _ = done.await;
        }
        let handle = self
            .thread
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(handle) = handle {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
    }
}

#[async_trait]
impl MessageStore for EmbeddedStore {
    async fn admit(&self, mut items: Vec<NewMessage>) -> Result<Vec<Admission>, StoreError> {
        for item in &mut items {
            if item.message.seq == 0 {
                item.message.seq = self.next_seq();
            }
        }
        self.send(|reply| WriteOp::Admit { items, reply }).await
    }

    async fn message(&self, id: MessageId) -> Result<Option<Message>, StoreError> {
        Ok(self.read_messages(&[id.0])?.pop().flatten())
    }

    async fn claim(&self, connector: &str, max: usize) -> Result<Vec<Message>, StoreError> {
        let popped = self.shared.ready.pop(connector, max);
        if popped.is_empty() {
            return Ok(Vec::new());
        }
        // Entries holding their message need no read.
        let unheld: Vec<u128> = popped
            .iter()
            .filter(|(_, r)| r.message.is_none())
            .map(|(_, r)| r.id)
            .collect();
        let mut read = match self.read_messages(&unheld) {
            Ok(found) => found.into_iter(),
            Err(e) => {
                // Put them back: the rows are still durable, nothing is lost.
                self.shared.ready.push_many(popped);
                return Err(e);
            }
        };
        let mut out = Vec::with_capacity(popped.len());
        for (slot, ready) in popped {
            let message = match ready.message {
                Some(held) => Some(Arc::try_unwrap(held).unwrap_or_else(|m| (*m).clone())),
                None => read.next().flatten(),
            };
            match message {
                Some(m) => out.push(m),
                None => tracing::error!(seq = slot.seq, "queued message has no record; skipped"),
            }
        }
        Ok(out)
    }

    async fn wait_for_work(&self, connector: &str, timeout: Duration) {
        let notify = self.shared.ready.notifier(connector);
        let _ = tokio::time::timeout(timeout, notify.notified()).await;
    }

    async fn record(&self, outcomes: Vec<Outcome>) -> Result<Vec<Message>, StoreError> {
        if outcomes.is_empty() {
            return Ok(Vec::new());
        }
        self.send(|reply| WriteOp::Record { outcomes, reply }).await
    }

    async fn apply_receipts(&self, receipts: Vec<Receipt>) -> Result<Vec<Message>, StoreError> {
        if receipts.is_empty() {
            return Ok(Vec::new());
        }
        self.send(|reply| WriteOp::Receipts { receipts, reply })
            .await
    }

    async fn maintain(
        &self,
        now: Micros,
        retention: Retention,
    ) -> Result<MaintenanceReport, StoreError> {
        let expire = self.shared.ready.take_expired(now, EXPIRE_PER_PASS);
        let put_back = expire.clone();
        let result = self
            .send(|reply| WriteOp::Maintain {
                now,
                retention,
                expire,
                reply,
            })
            .await;
        if result.is_err() {
            self.shared.ready.push_many(put_back);
        }
        result
    }

    async fn awaiting_receipts(&self, connector: &str) -> Result<Vec<String>, StoreError> {
        let tx = self.shared.db.begin_read().map_err(io)?;
        let table = tx.open_table(SMSC_IDS).map_err(io)?;
        let mut out = Vec::new();
        for row in table.range((connector, "")..).map_err(io)? {
            let (k, _) = row.map_err(io)?;
            let (c, smsc_id) = k.value();
            if c != connector {
                break;
            }
            out.push(smsc_id.to_string());
        }
        Ok(out)
    }

    fn queue_depths(&self) -> QueueDepths {
        self.shared.ready.depths()
    }

    fn retry_depth(&self) -> u64 {
        self.shared.delayed.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl InboundStore for EmbeddedStore {
    async fn opt_out(&self, number: &str, at: Micros) -> Result<(), StoreError> {
        let number = number.to_string();
        self.send(|reply| WriteOp::OptOut { number, at, reply })
            .await
            .map(|_| ())
    }

    async fn opt_in(&self, number: &str) -> Result<bool, StoreError> {
        let number = number.to_string();
        self.send(|reply| WriteOp::OptIn { number, reply }).await
    }

    async fn is_opted_out(&self, number: &str) -> Result<bool, StoreError> {
        let tx = self.shared.db.begin_read().map_err(io)?;
        let table = tx.open_table(OPT_OUTS).map_err(io)?;
        Ok(table.get(number).map_err(io)?.is_some())
    }

    async fn record_inbound(
        &self,
        records: Vec<InboundRecord>,
        webhook_url: Option<String>,
    ) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        self.send(|reply| WriteOp::RecordInbound {
            records,
            webhook_url,
            reply,
        })
        .await
        .map(|_| ())
    }

    async fn inbound(
        &self,
        after: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<InboundRecord>, StoreError> {
        let tx = self.shared.db.begin_read().map_err(io)?;
        let table = tx.open_table(INBOUND).map_err(io)?;
        let start = after.map_or(0, |id| id.0.saturating_add(1));
        let mut out = Vec::new();
        for row in table.range(start..).map_err(io)?.take(limit) {
            let (_, v) = row.map_err(io)?;
            out.push(
                serde_json::from_slice(v.value())
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            );
        }
        Ok(out)
    }
}

#[async_trait]
impl WebhookStore for EmbeddedStore {
    async fn claim_webhooks(
        &self,
        now: Micros,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<WebhookJob>, StoreError> {
        self.send(|reply| WriteOp::ClaimWebhooks {
            now,
            max,
            lease,
            reply,
        })
        .await
    }

    async fn finish_webhooks(
        &self,
        results: Vec<(WebhookJob, WebhookResult)>,
    ) -> Result<(), StoreError> {
        if results.is_empty() {
            return Ok(());
        }
        self.send(|reply| WriteOp::FinishWebhooks { results, reply })
            .await
            .map(|_| ())
    }

    fn webhook_depth(&self) -> u64 {
        self.shared.webhooks.load(Ordering::Relaxed)
    }
}

/// Creates `dir` (and missing parents) readable by its owner only (0700):
/// it holds messages, phone numbers and API key hashes. An existing
/// directory is left as the operator made it.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Creates the database file 0600 before redb opens it, so it is never
/// readable by others, not even for a moment; an existing file readable by
/// others is made private.
fn private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    let mode = file.metadata()?.permissions().mode();
    if mode & 0o077 != 0 {
        tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "store file was readable by others; now 0600");
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// What a committed transaction changes in memory.
#[derive(Default)]
pub(crate) struct Effects {
    ready: Vec<(Slot, Ready)>,
    /// How many more ready entries may hold their message (see `memqueue`).
    room_to_hold: usize,
    delayed_delta: i64,
    webhooks_delta: i64,
    max_seq: u64,
}

impl Effects {
    /// Makes `m` ready on `connector` once committed, holding the message
    /// while the ready queues have room for it.
    fn make_ready(&mut self, m: &Message, connector: &str) {
        let message = (self.room_to_hold > 0).then(|| Arc::new(m.clone()));
        self.room_to_hold = self.room_to_hold.saturating_sub(1);
        self.ready.push((
            Slot {
                connector: connector.to_string(),
                class: m.class,
                seq: m.seq,
            },
            Ready {
                id: m.id.0,
                expires_at: m.expires_at,
                message,
            },
        ));
    }
}

fn apply_delta(counter: &AtomicU64, delta: i64) {
    if delta >= 0 {
        counter.fetch_add(delta.unsigned_abs(), Ordering::Relaxed);
    } else {
        counter.fetch_sub(delta.unsigned_abs(), Ordering::Relaxed);
    }
}

/// A reply to send once the transaction holding its work is committed.
enum Pending {
    Admit(
        oneshot::Sender<Result<Vec<Admission>, StoreError>>,
        Vec<Admission>,
    ),
    Messages(
        oneshot::Sender<Result<Vec<Message>, StoreError>>,
        Vec<Message>,
    ),
    Maintain(
        oneshot::Sender<Result<MaintenanceReport, StoreError>>,
        MaintenanceReport,
    ),
    Bool(oneshot::Sender<Result<bool, StoreError>>, bool),
    Jobs(
        oneshot::Sender<Result<Vec<WebhookJob>, StoreError>>,
        Vec<WebhookJob>,
    ),
    Any(
        oneshot::Sender<Result<Box<dyn Any + Send>, StoreError>>,
        Box<dyn Any + Send>,
    ),
    None,
}

impl Pending {
    fn send(self) {
        match self {
            Pending::Admit(tx, v) => {
                let _ = tx.send(Ok(v));
            }
            Pending::Messages(tx, v) => {
                let _ = tx.send(Ok(v));
            }
            Pending::Maintain(tx, v) => {
                let _ = tx.send(Ok(v));
            }
            Pending::Bool(tx, v) => {
                let _ = tx.send(Ok(v));
            }
            Pending::Jobs(tx, v) => {
                let _ = tx.send(Ok(v));
            }
            Pending::Any(tx, v) => {
                let _ = tx.send(Ok(v));
            }
            Pending::None => {}
        }
    }

    fn fail(self, e: &StoreError) {
        let err = || StoreError::Io(e.to_string());
        match self {
            Pending::Admit(tx, _) => {
                let _ = tx.send(Err(err()));
            }
            Pending::Messages(tx, _) => {
                let _ = tx.send(Err(err()));
            }
            Pending::Maintain(tx, _) => {
                let _ = tx.send(Err(err()));
            }
            Pending::Bool(tx, _) => {
                let _ = tx.send(Err(err()));
            }
            Pending::Jobs(tx, _) => {
                let _ = tx.send(Err(err()));
            }
            Pending::Any(tx, _) => {
                let _ = tx.send(Err(err()));
            }
            Pending::None => {}
        }
    }
}

fn fail_op(op: WriteOp, e: &StoreError) {
    let err = || StoreError::Io(e.to_string());
    match op {
        WriteOp::Admit { reply, .. } => {
            let _ = reply.send(Err(err()));
        }
        WriteOp::Record { reply, .. } | WriteOp::Receipts { reply, .. } => {
            let _ = reply.send(Err(err()));
        }
        WriteOp::Maintain { reply, .. } => {
            let _ = reply.send(Err(err()));
        }
        WriteOp::OptOut { reply, .. }
        | WriteOp::OptIn { reply, .. }
        | WriteOp::RecordInbound { reply, .. }
        | WriteOp::FinishWebhooks { reply, .. } => {
            let _ = reply.send(Err(err()));
        }
        WriteOp::ClaimWebhooks { reply, .. } => {
            let _ = reply.send(Err(err()));
        }
        WriteOp::Run { reply, .. } => {
            let _ = reply.send(Err(err()));
        }
        WriteOp::Close { reply } => {
            let _ = reply.send(());
        }
        WriteOp::Flush => {}
    }
}

/// Answers committed without an fsync, waiting for a durable commit.
struct Held {
    answers: Vec<Pending>,
    weight: usize,
    since: Option<std::time::Instant>,
    /// When the last commit with more than lazy facts in it was made.
    last_eager: std::time::Instant,
}

impl Held {
    fn new() -> Held {
        Held {
            answers: Vec::new(),
            weight: 0,
            since: None,
            last_eager: std::time::Instant::now(),
        }
    }

    /// Whether a batch of lazy facts must be made durable now: when answers
    /// have waited `window`, when many are held, or when nothing but lazy
    /// facts came for `window` — without admissions flowing there is no
    /// fsync to share, and waiting would only slow the recorders down.
    fn due(&self, window: Duration) -> bool {
        self.weight >= LAZY_MOST
            || self.since.is_some_and(|t| t.elapsed() >= window)
            || self.last_eager.elapsed() >= window
    }
}

fn writer_loop(shared: &Shared, mut rx: mpsc::Receiver<WriteOp>, timer: &FlushTimer) {
    let mut held = Held::new();
    while let Some(first) = rx.blocking_recv() {
        let mut ops = Vec::new();
        let mut weight = 0;
        let mut close = None;
        let mut next = Some(first);
        while let Some(op) = next.take() {
            if let WriteOp::Close { reply } = op {
                close = Some(reply);
                break;
            }
            weight += op.weight();
            ops.push(op);
            if weight < MAX_ITEMS_PER_COMMIT {
                next = rx.try_recv().ok();
            }
        }
        // A flush or a close asks for a durable commit of what is held.
        let asked = close.is_some() || ops.iter().any(|op| matches!(op, WriteOp::Flush));
        ops.retain(|op| !matches!(op, WriteOp::Flush));
        let lazy = ops.iter().all(WriteOp::is_lazy);
        if !ops.is_empty() || (asked && !held.answers.is_empty()) {
            if !lazy {
                held.last_eager = std::time::Instant::now();
            }
            let durable = !lazy || asked || held.due(timer.window);
            commit_batch(shared, ops, durable, weight, &mut held);
            if !held.answers.is_empty() {
                timer.arm();
            }
        }
        if let Some(reply) = close {
            rx.close();
            // Answer whatever was queued behind the close.
            while let Ok(op) = rx.try_recv() {
                fail_op(op, &StoreError::Closed);
            }
            let _ = reply.send(());
            return;
        }
    }
}

/// Applies `ops` in one write transaction. A durable commit answers them
/// and everything `held`; one without an fsync (only lazy facts in it)
/// adds their answers to `held`.
fn commit_batch(shared: &Shared, ops: Vec<WriteOp>, durable: bool, weight: usize, held: &mut Held) {
    let durability = if durable {
        Durability::Immediate
    } else {
        Durability::None
    };
    let tx = match shared.db.begin_write() {
        Ok(mut tx) => {
            if let Err(e) = tx.set_durability(durability) {
                let e = io(e);
                for op in ops {
                    fail_op(op, &e);
                }
                return;
            }
            tx
        }
        Err(e) => {
            let e = io(e);
            for op in ops {
                fail_op(op, &e);
            }
            return;
        }
    };
    let mut effects = Effects {
        room_to_hold: HELD_MOST.saturating_sub(shared.ready.held()),
        ..Effects::default()
    };
    let mut pending = Vec::with_capacity(ops.len());
    let mut failed: Option<StoreError> = None;
    let mut unapplied = Vec::new();
    {
        let mut w = match Writer::open(&tx) {
            Ok(w) => w,
            Err(e) => {
                for op in ops {
                    fail_op(op, &e);
                }
                return;
            }
        };
        for op in ops {
            if failed.is_some() {
                unapplied.push(op);
                continue;
            }
            match w.apply(op, &mut effects) {
                Ok(p) => pending.push(p),
                Err((e, op)) => {
                    failed = Some(e);
                    unapplied.push(*op);
                }
            }
        }
        if failed.is_none()
            && effects.max_seq > 0
            && let Err(e) = w.bump_seq(effects.max_seq)
        {
            failed = Some(e);
        }
        if failed.is_none()
            && let Err(e) = broadcasts::flush_counts(&mut w)
        {
            failed = Some(e);
        }
    }
    // What this transaction makes ready goes to the dispatchers now, while
    // the commit is made durable: a submit overlaps the fsync of its
    // admission (see `memqueue`). A commit that fails takes them back.
    let early: Vec<Slot> = if failed.is_none() {
        let slots = effects.ready.iter().map(|(slot, _)| slot.clone()).collect();
        shared.ready.push_many(std::mem::take(&mut effects.ready));
        slots
    } else {
        Vec::new()
    };
    let result = match failed {
        Some(e) => Err(e),
        None => tx.commit().map_err(io),
    };
    match result {
        Ok(()) => {
            apply_delta(&shared.delayed, effects.delayed_delta);
            apply_delta(&shared.webhooks, effects.webhooks_delta);
            if durable {
                shared.durable_commits.fetch_add(1, Ordering::Relaxed);
                for p in held.answers.drain(..).chain(pending) {
                    p.send();
                }
                held.weight = 0;
                held.since = None;
            } else {
                held.answers.extend(pending);
                held.weight += weight;
                held.since.get_or_insert_with(std::time::Instant::now);
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "store commit failed");
            let taken = early
                .iter()
                .filter(|slot| !shared.ready.remove(slot))
                .count();
            if taken > 0 {
                tracing::error!(
                    messages = taken,
                    "messages of the failed commit were already taken by a dispatcher"
                );
            }
            for p in pending {
                p.fail(&e);
            }
            for op in unapplied {
                fail_op(op, &e);
            }
        }
    }
}

/// The tables of one write transaction.
pub(crate) struct Writer<'t> {
    /// For role modules to open their own tables.
    pub(crate) tx: &'t WriteTransaction,
    messages: Table<'t, u128, &'static [u8]>,
    queue: Table<'t, (&'static str, u8, u64), (u128, i64)>,
    delayed: Table<'t, (i64, u64), u128>,
    smsc_ids: Table<'t, (&'static str, &'static str), u128>,
    early: Table<'t, (&'static str, &'static str), &'static [u8]>,
    idempotency: Table<'t, &'static str, (u128, i64)>,
    idempotency_age: Table<'t, (i64, &'static str), ()>,
    meta: Table<'t, &'static str, u64>,
    limits: Table<'t, (u8, &'static str), &'static [u8]>,
    opt_outs: Table<'t, &'static str, i64>,
    inbound: Table<'t, u128, &'static [u8]>,
    webhooks: Table<'t, (i64, u128), &'static [u8]>,
    finished: Table<'t, (i64, u128), ()>,
    /// Broadcast messages loaded or saved in this transaction: their
    /// broadcast and last status, so every save counts one transition.
    broadcast_seen: std::cell::RefCell<HashMap<u128, (u128, Status)>>,
    /// Counter changes per (broadcast, status slot), written at commit.
    broadcast_deltas: HashMap<(u128, u8), i64>,
}

type ApplyResult = Result<Pending, (StoreError, Box<WriteOp>)>;

impl<'t> Writer<'t> {
    fn open(tx: &'t WriteTransaction) -> Result<Writer<'t>, StoreError> {
        Ok(Writer {
            tx,
            messages: tx.open_table(MESSAGES).map_err(io)?,
            queue: tx.open_table(QUEUE).map_err(io)?,
            delayed: tx.open_table(DELAYED).map_err(io)?,
            smsc_ids: tx.open_table(SMSC_IDS).map_err(io)?,
            early: tx.open_table(EARLY_RECEIPTS).map_err(io)?,
            idempotency: tx.open_table(IDEMPOTENCY).map_err(io)?,
            idempotency_age: tx.open_table(IDEMPOTENCY_AGE).map_err(io)?,
            meta: tx.open_table(META).map_err(io)?,
            limits: tx.open_table(LIMITS).map_err(io)?,
            opt_outs: tx.open_table(OPT_OUTS).map_err(io)?,
            inbound: tx.open_table(INBOUND).map_err(io)?,
            webhooks: tx.open_table(WEBHOOKS).map_err(io)?,
            finished: tx.open_table(FINISHED).map_err(io)?,
            broadcast_seen: std::cell::RefCell::default(),
            broadcast_deltas: HashMap::new(),
        })
    }

    fn apply(&mut self, op: WriteOp, fx: &mut Effects) -> ApplyResult {
        match op {
            WriteOp::Admit { items, reply } => match self.admit(&items, fx) {
                Ok(v) => Ok(Pending::Admit(reply, v)),
                Err(e) => Err((e, Box::new(WriteOp::Admit { items, reply }))),
            },
            WriteOp::Record { outcomes, reply } => match self.record(&outcomes, fx) {
                Ok(v) => Ok(Pending::Messages(reply, v)),
                Err(e) => Err((e, Box::new(WriteOp::Record { outcomes, reply }))),
            },
            WriteOp::Receipts { receipts, reply } => match self.receipts(&receipts, fx) {
                Ok(v) => Ok(Pending::Messages(reply, v)),
                Err(e) => Err((e, Box::new(WriteOp::Receipts { receipts, reply }))),
            },
            WriteOp::Maintain {
                now,
                retention,
                expire,
                reply,
            } => match self.maintain(now, retention, &expire, fx) {
                Ok(v) => Ok(Pending::Maintain(reply, v)),
                Err(e) => Err((
                    e,
                    Box::new(WriteOp::Maintain {
                        now,
                        retention,
                        expire,
                        reply,
                    }),
                )),
            },
            WriteOp::OptOut { number, at, reply } => {
                match self.opt_outs.insert(number.as_str(), at) {
                    Ok(_) => Ok(Pending::Bool(reply, true)),
                    Err(e) => Err((io(e), Box::new(WriteOp::OptOut { number, at, reply }))),
                }
            }
            WriteOp::OptIn { number, reply } => match self.opt_outs.remove(number.as_str()) {
                Ok(v) => Ok(Pending::Bool(reply, v.is_some())),
                Err(e) => Err((io(e), Box::new(WriteOp::OptIn { number, reply }))),
            },
            WriteOp::RecordInbound {
                records,
                webhook_url,
                reply,
            } => match self.record_inbound(&records, webhook_url.as_deref(), fx) {
                Ok(()) => Ok(Pending::Bool(reply, true)),
                Err(e) => Err((
                    e,
                    Box::new(WriteOp::RecordInbound {
                        records,
                        webhook_url,
                        reply,
                    }),
                )),
            },
            WriteOp::ClaimWebhooks {
                now,
                max,
                lease,
                reply,
            } => match self.claim_webhooks(now, max, lease) {
                Ok(v) => Ok(Pending::Jobs(reply, v)),
                Err(e) => Err((
                    e,
                    Box::new(WriteOp::ClaimWebhooks {
                        now,
                        max,
                        lease,
                        reply,
                    }),
                )),
            },
            WriteOp::FinishWebhooks { results, reply } => {
                match self.finish_webhooks(&results, fx) {
                    Ok(()) => Ok(Pending::Bool(reply, true)),
                    Err(e) => Err((e, Box::new(WriteOp::FinishWebhooks { results, reply }))),
                }
            }
            // Handled by the writer loop before a batch is built.
            WriteOp::Run { weight, job, reply } => {
                // A job cannot be handed back after it ran; a failed one
                // answers through the transaction's failure like the rest.
                let _ = weight;
                match job(self, fx) {
                    Ok(v) => Ok(Pending::Any(reply, v)),
                    Err(e) => Err((
                        e,
                        Box::new(WriteOp::Run {
                            weight: 0,
                            job: Box::new(|_, _| Err(StoreError::Closed)),
                            reply,
                        }),
                    )),
                }
            }
            WriteOp::Close { reply } => {
                let _ = reply.send(());
                Ok(Pending::None)
            }
            WriteOp::Flush => Ok(Pending::None),
        }
    }

    fn bump_seq(&mut self, seq: u64) -> Result<(), StoreError> {
        let current = self
            .meta
            .get(META_SEQ)
            .map_err(io)?
            .map(|v| v.value())
            .unwrap_or(0);
        if seq > current {
            self.meta.insert(META_SEQ, seq).map_err(io)?;
        }
        Ok(())
    }

    fn load(&self, id: u128) -> Result<Option<Message>, StoreError> {
        match self.messages.get(id).map_err(io)? {
            Some(v) => {
                let m = decode(v.value())?;
                if let Some(b) = m.broadcast {
                    self.broadcast_seen
                        .borrow_mut()
                        .entry(id)
                        .or_insert((b.0, m.status));
                }
                Ok(Some(m))
            }
            None => Ok(None),
        }
    }

    fn save(&mut self, m: &Message) -> Result<(), StoreError> {
        let bytes = encode(m)?;
        self.messages.insert(m.id.0, bytes.as_slice()).map_err(io)?;
        if let Some(b) = m.broadcast {
            let before = self
                .broadcast_seen
                .borrow_mut()
                .insert(m.id.0, (b.0, m.status));
            let now = count_slot(m.status) as u8;
            match before {
                Some((_, old)) if count_slot(old) as u8 == now => {}
                Some((_, old)) => {
                    *self
                        .broadcast_deltas
                        .entry((b.0, count_slot(old) as u8))
                        .or_default() -= 1;
                    *self.broadcast_deltas.entry((b.0, now)).or_default() += 1;
                }
                None => *self.broadcast_deltas.entry((b.0, now)).or_default() += 1,
            }
        }
        Ok(())
    }

    fn enqueue(&mut self, m: &Message, fx: &mut Effects) -> Result<(), StoreError> {
        let Some(connector) = m.current_connector() else {
            return Err(StoreError::Corrupt(format!(
                "message {} has no route",
                m.id
            )));
        };
        self.queue
            .insert(
                (connector, m.class.index() as u8, m.seq),
                (m.id.0, m.expires_at),
            )
            .map_err(io)?;
        fx.make_ready(m, connector);
        Ok(())
    }

    fn dequeue(&mut self, m: &Message) -> Result<(), StoreError> {
        if let Some(connector) = m.current_connector() {
            self.queue
                .remove((connector, m.class.index() as u8, m.seq))
                .map_err(io)?;
        }
        Ok(())
    }

    fn admit(
        &mut self,
        items: &[NewMessage],
        fx: &mut Effects,
    ) -> Result<Vec<Admission>, StoreError> {
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let m = &item.message;
            let scope = item
                .idempotency
                .as_ref()
                .map(|(owner, key)| idempotency_scope(owner, key));
            if let Some(scope) = &scope {
                let seen = self
                    .idempotency
                    .get(scope.as_str())
                    .map_err(io)?
                    .map(|v| v.value().0);
                if let Some(id) = seen
                    && let Some(existing) = self.load(id)?
                {
                    out.push(Admission::Existing(existing));
                    continue;
                }
            }
            if item.refuse_if_opted_out && self.opt_outs.get(m.to.as_str()).map_err(io)?.is_some() {
                out.push(Admission::OptedOut);
                continue;
            }
            if let Some(policy) = item.limit.filter(|p| p.is_active()) {
                let subject = item.limit_subject();
                let key = (m.class.index() as u8, subject.as_ref());
                let history = self
                    .limits
                    .get(key)
                    .map_err(io)?
                    .map(|v| decode_history(v.value()))
                    .unwrap_or_default();
                match policy.check(&history, m.created_at) {
                    LimitDecision::Refused { retry_after } => {
                        out.push(Admission::RateLimited { retry_after });
                        continue;
                    }
                    LimitDecision::Allowed(next) => {
                        self.limits
                            .insert(key, encode_history(&next).as_slice())
                            .map_err(io)?;
                    }
                }
            }
            if let Some(scope) = &scope {
                self.idempotency
                    .insert(scope.as_str(), (m.id.0, m.created_at))
                    .map_err(io)?;
                self.idempotency_age
                    .insert((m.created_at, scope.as_str()), ())
                    .map_err(io)?;
            }
            self.save(m)?;
            if m.status == Status::Queued {
                match item.not_before {
                    Some(at) if at > m.created_at => {
                        self.delayed.insert((at, m.seq), m.id.0).map_err(io)?;
                        fx.delayed_delta += 1;
                    }
                    _ => self.enqueue(m, fx)?,
                }
            }
            fx.max_seq = fx.max_seq.max(m.seq);
            out.push(Admission::Created(m.clone()));
        }
        Ok(out)
    }

    /// Queues the status webhook of a message that just became final.
    fn on_final(&mut self, m: &Message, fx: &mut Effects) -> Result<(), StoreError> {
        let Some(url) = &m.callback_url else {
            let at = m.done_at.unwrap_or_else(now_micros);
            self.finished.insert((at, m.id.0), ()).map_err(io)?;
            return Ok(());
        };
        let job = WebhookJob::new(
            url.clone(),
            WebhookEvent::MessageStatus {
                message_id: m.id,
                owner: m.owner.clone(),
            },
            now_micros(),
        );
        self.put_job(&job)?;
        fx.webhooks_delta += 1;
        Ok(())
    }

    fn put_job(&mut self, job: &WebhookJob) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(job).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.webhooks
            .insert((job.next_at, job.id.0), bytes.as_slice())
            .map_err(io)?;
        Ok(())
    }

    fn record_inbound(
        &mut self,
        records: &[InboundRecord],
        webhook_url: Option<&str>,
        fx: &mut Effects,
    ) -> Result<(), StoreError> {
        for r in records {
            let bytes = serde_json::to_vec(r).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            self.inbound.insert(r.id.0, bytes.as_slice()).map_err(io)?;
            match r.action.as_deref() {
                Some("opt_out") => {
                    self.opt_outs
                        .insert(r.from.as_str(), r.received_at)
                        .map_err(io)?;
                }
                Some("opt_in") => {
                    self.opt_outs.remove(r.from.as_str()).map_err(io)?;
                }
                _ => {}
            }
            if let Some(url) = webhook_url {
                let job = WebhookJob::new(
                    url.to_string(),
                    WebhookEvent::Inbound { record: r.clone() },
                    r.received_at,
                );
                self.put_job(&job)?;
                fx.webhooks_delta += 1;
            }
        }
        Ok(())
    }

    fn claim_webhooks(
        &mut self,
        now: Micros,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<WebhookJob>, StoreError> {
        let due: Vec<((i64, u128), Vec<u8>)> = self
            .webhooks
            .range(..=(now, u128::MAX))
            .map_err(io)?
            .take(max)
            .map(|row| {
                row.map(|(k, v)| (k.value(), v.value().to_vec()))
                    .map_err(io)
            })
            .collect::<Result<_, _>>()?;
        let until = now.saturating_add(i64::try_from(lease.as_micros()).unwrap_or(i64::MAX / 2));
        let mut jobs = Vec::with_capacity(due.len());
        for (key, bytes) in due {
            self.webhooks.remove(key).map_err(io)?;
            let mut job: WebhookJob =
                serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            job.next_at = until;
            self.put_job(&job)?;
            jobs.push(job);
        }
        Ok(jobs)
    }

    fn finish_webhooks(
        &mut self,
        results: &[(WebhookJob, WebhookResult)],
        fx: &mut Effects,
    ) -> Result<(), StoreError> {
        for (job, result) in results {
            // Gone already if a lapsed claim was taken again and finished.
            if self
                .webhooks
                .remove((job.next_at, job.id.0))
                .map_err(io)?
                .is_none()
            {
                continue;
            }
            match result {
                WebhookResult::Done => {
                    fx.webhooks_delta -= 1;
                    // The message's last work is done: its retention starts.
                    if let WebhookEvent::MessageStatus { message_id, .. } = &job.event {
                        self.finished
                            .insert((now_micros(), message_id.0), ())
                            .map_err(io)?;
                    }
                }
                WebhookResult::Retry { next_at, error } => {
                    let mut next = job.clone();
                    next.attempts += 1;
                    next.next_at = *next_at;
                    next.last_error = Some(error.clone());
                    self.put_job(&next)?;
                }
                WebhookResult::Postpone { next_at } => {
                    let mut next = job.clone();
                    next.next_at = *next_at;
                    self.put_job(&next)?;
                }
            }
        }
        Ok(())
    }

    fn record(
        &mut self,
        outcomes: &[Outcome],
        fx: &mut Effects,
    ) -> Result<Vec<Message>, StoreError> {
        let mut finals = Vec::new();
        for outcome in outcomes {
            let Some(mut m) = self.load(outcome.id().0)? else {
                tracing::warn!(id = %outcome.id(), "outcome for an unknown message ignored");
                continue;
            };
            if m.status != Status::Queued {
                // Already decided (e.g. expired by the sweeper); keep the first word.
                continue;
            }
            // A message of a canceled broadcast that was in flight when the
            // cancel came and did not reach the carrier is not tried again.
            if matches!(
                outcome,
                Outcome::Retry { .. } | Outcome::Failover { .. } | Outcome::Released { .. }
            ) && let Some(b) = m.broadcast
                && broadcasts::is_canceled(self, b.0)?
            {
                self.dequeue(&m)?;
                broadcasts::cancel_message(self, fx, &mut m, now_micros())?;
                finals.push(m);
                continue;
            }
            match outcome {
                Outcome::Submitted {
                    connector,
                    smsc_ids,
                    at,
                    ..
                } => {
                    self.dequeue(&m)?;
                    // Parts taken on an earlier try are linked (and maybe
                    // receipted) already: link only the new ones.
                    if m.partial
                        .as_ref()
                        .is_some_and(|p| p.connector != *connector)
                    {
                        self.unlink_partial(&mut m)?;
                    }
                    let linked: Vec<String> = m
                        .partial
                        .take()
                        .map(|p| p.smsc_ids.into_iter().flatten().collect())
                        .unwrap_or_default();
                    m.status = Status::Submitted;
                    m.connector = Some(connector.clone());
                    m.smsc_message_ids = smsc_ids.clone();
                    m.submitted_at = Some(*at);
                    m.attempts += 1;
                    if m.parts_failed == 0 {
                        // Keep a failed part's carrier error; drop retry noise.
                        m.error = None;
                    }
                    let fresh = smsc_ids.iter().filter(|id| !linked.contains(id));
                    let early = self.link_parts(connector, fresh, m.id)?;
                    self.save(&m)?;
                    if !early.is_empty() {
                        finals.extend(self.receipts(&early, fx)?);
                    }
                }
                Outcome::Retry {
                    not_before,
                    error,
                    counts_attempt,
                    partial,
                    ..
                } => {
                    self.dequeue(&m)?;
                    if *counts_attempt {
                        m.attempts += 1;
                    }
                    if m.parts_failed == 0 {
                        m.error = Some(error.clone());
                    }
                    self.delayed
                        .insert((*not_before, m.seq), m.id.0)
                        .map_err(io)?;
                    fx.delayed_delta += 1;
                    let mut early = Vec::new();
                    if let Some(p) = partial {
                        if m.partial
                            .as_ref()
                            .is_some_and(|old| old.connector != p.connector)
                        {
                            self.unlink_partial(&mut m)?;
                        }
                        let known: Vec<String> = m
                            .partial
                            .take()
                            .map(|old| old.smsc_ids.into_iter().flatten().collect())
                            .unwrap_or_default();
                        let fresh = p.smsc_ids.iter().flatten().filter(|id| !known.contains(id));
                        early = self.link_parts(&p.connector, fresh, m.id)?;
                        m.partial = Some(p.clone());
                    }
                    self.save(&m)?;
                    if !early.is_empty() {
                        finals.extend(self.receipts(&early, fx)?);
                    }
                }
                Outcome::Failover { error, .. } => {
                    self.dequeue(&m)?;
                    self.unlink_partial(&mut m)?;
                    m.error = Some(error.clone());
                    if (m.route_index as usize) + 1 < m.route.len() {
                        m.route_index += 1;
                        self.enqueue(&m, fx)?;
                    } else {
                        m.status = Status::Failed;
                        m.done_at = Some(now_micros());
                        self.on_final(&m, fx)?;
                        finals.push(m.clone());
                    }
                    self.save(&m)?;
                }
                Outcome::Failed { error, .. } => {
                    self.dequeue(&m)?;
                    m.status = Status::Failed;
                    m.error = Some(error.clone());
                    m.done_at = Some(now_micros());
                    self.save(&m)?;
                    self.on_final(&m, fx)?;
                    finals.push(m);
                }
                Outcome::Expired { .. } => {
                    self.dequeue(&m)?;
                    m.status = Status::Expired;
                    m.done_at = Some(now_micros());
                    self.save(&m)?;
                    self.on_final(&m, fx)?;
                    finals.push(m);
                }
                Outcome::Released { .. } => {
                    // The durable row never left; only the memory index needs it back.
                    if let Some(connector) = m.current_connector() {
                        fx.make_ready(&m, connector);
                    }
                }
            }
        }
        Ok(finals)
    }

    /// Maps the carrier ids of `message`'s parts to it, so their receipts
    /// find it; returns receipts that came before and were kept.
    fn link_parts<'i>(
        &mut self,
        connector: &str,
        smsc_ids: impl Iterator<Item = &'i String>,
        message: MessageId,
    ) -> Result<Vec<Receipt>, StoreError> {
        let mut early = Vec::new();
        for smsc_id in smsc_ids {
            let key = (connector, smsc_id.as_str());
            self.smsc_ids.insert(key, message.0).map_err(io)?;
            if let Some(r) = self.early.remove(key).map_err(io)? {
                if let Ok(receipt) = serde_json::from_slice::<Receipt>(r.value()) {
                    early.push(receipt);
                }
            }
        }
        Ok(early)
    }

    /// Forgets the parts a carrier took on earlier tries (the message moves
    /// to another connector, which gets every part): their ids no longer
    /// lead to it, and their receipts no longer count.
    fn unlink_partial(&mut self, m: &mut Message) -> Result<(), StoreError> {
        if let Some(p) = m.partial.take() {
            for smsc_id in p.smsc_ids.iter().flatten() {
                self.smsc_ids
                    .remove((p.connector.as_str(), smsc_id.as_str()))
                    .map_err(io)?;
            }
            m.parts_delivered = 0;
            m.parts_failed = 0;
        }
        Ok(())
    }

    fn receipts(
        &mut self,
        receipts: &[Receipt],
        fx: &mut Effects,
    ) -> Result<Vec<Message>, StoreError> {
        let mut finals = Vec::new();
        for r in receipts {
            let key = (r.connector.as_str(), r.smsc_id.as_str());
            let found = self.smsc_ids.remove(key).map_err(io)?.map(|v| v.value());
            let Some(id) = found else {
                let bytes =
                    serde_json::to_vec(r).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                self.early.insert(key, bytes.as_slice()).map_err(io)?;
                continue;
            };
            let Some(mut m) = self.load(id)? else {
                continue;
            };
            // A receipt for a part taken on an earlier try of a long message
            // that still waits for its other parts: counted, not final yet.
            let waiting_part = m.status == Status::Queued
                && m.partial
                    .as_ref()
                    .is_some_and(|p| p.connector == r.connector);
            let submitted_here =
                m.status == Status::Submitted && m.connector.as_deref() == Some(&r.connector);
            if !waiting_part && !submitted_here {
                continue;
            }
            if r.state.is_delivered() {
                m.parts_delivered += 1;
            } else {
                m.parts_failed += 1;
                m.error = Some(r.error_text());
            }
            let parts = u32::try_from(m.smsc_message_ids.len().max(1)).unwrap_or(u32::MAX);
            if submitted_here && m.parts_delivered + m.parts_failed >= parts {
                m.status = if m.parts_failed == 0 {
                    Status::Delivered
                } else {
                    Status::Failed
                };
                m.done_at = Some(r.at);
                self.on_final(&m, fx)?;
                finals.push(m.clone());
            }
            self.save(&m)?;
        }
        Ok(finals)
    }

    fn maintain(
        &mut self,
        now: Micros,
        retention: Retention,
        expire: &[(Slot, Ready)],
        fx: &mut Effects,
    ) -> Result<MaintenanceReport, StoreError> {
        let mut report = MaintenanceReport::default();
        for (_, ready) in expire {
            let Some(mut m) = self.load(ready.id)? else {
                continue;
            };
            if m.status != Status::Queued {
                continue;
            }
            self.dequeue(&m)?;
            m.status = Status::Expired;
            m.done_at = Some(now);
            self.save(&m)?;
            self.on_final(&m, fx)?;
            report.expired.push(m);
        }
        // Retries whose backoff ended go back to their queue (or expire).
        let due: Vec<((i64, u64), u128)> = self
            .delayed
            .range(..(now, u64::MAX))
            .map_err(io)?
            .take(EXPIRE_PER_PASS)
            .map(|row| row.map(|(k, v)| (k.value(), v.value())).map_err(io))
            .collect::<Result<_, _>>()?;
        for (key, id) in due {
            self.delayed.remove(key).map_err(io)?;
            fx.delayed_delta -= 1;
            let Some(mut m) = self.load(id)? else {
                continue;
            };
            if m.status != Status::Queued {
                continue;
            }
            if m.expires_at <= now {
                m.status = Status::Expired;
                m.done_at = Some(now);
                self.save(&m)?;
                self.on_final(&m, fx)?;
                report.expired.push(m);
            } else {
                self.enqueue(&m, fx)?;
                report.promoted += 1;
            }
        }
        // Idempotency keys past their TTL.
        let cutoff = now.saturating_sub(micros(retention.idempotency));
        let aged: Vec<(i64, String)> = self
            .idempotency_age
            .range(..(cutoff, ""))
            .map_err(io)?
            .take(EXPIRE_PER_PASS)
            .map(|row| {
                row.map(|(k, _)| {
                    let (t, s) = k.value();
                    (t, s.to_string())
                })
                .map_err(io)
            })
            .collect::<Result<_, _>>()?;
        for (t, scope) in aged {
            self.idempotency_age
                .remove((t, scope.as_str()))
                .map_err(io)?;
            let current = self
                .idempotency
                .get(scope.as_str())
                .map_err(io)?
                .map(|v| v.value());
            if current.is_some_and(|(_, created)| created == t) {
                self.idempotency.remove(scope.as_str()).map_err(io)?;
            }
            report.purged += 1;
        }
        report.purged += self.purge_early_receipts(now, retention.receipts)?;
        report.purged += self.purge_finished(now.saturating_sub(micros(retention.messages)))?;
        report.purged += self.purge_inbound(now.saturating_sub(micros(retention.inbound)))?;
        Ok(report)
    }

    /// Drops messages whose work ended before `cutoff`, with any carrier-id
    /// link still leading to them.
    fn purge_finished(&mut self, cutoff: Micros) -> Result<usize, StoreError> {
        let aged: Vec<(i64, u128)> = self
            .finished
            .range(..(cutoff, 0))
            .map_err(io)?
            .take(EXPIRE_PER_PASS)
            .map(|row| row.map(|(k, _)| k.value()).map_err(io))
            .collect::<Result<_, _>>()?;
        let mut purged = 0;
        for key in aged {
            self.finished.remove(key).map_err(io)?;
            let Some(m) = self.load(key.1)? else {
                continue;
            };
            if !m.status.is_final() {
                continue;
            }
            if let Some(p) = &m.partial {
                for sid in p.smsc_ids.iter().flatten() {
                    let link = (p.connector.as_str(), sid.as_str());
                    if self.smsc_ids.get(link).map_err(io)?.map(|v| v.value()) == Some(m.id.0) {
                        self.smsc_ids.remove(link).map_err(io)?;
                    }
                }
            }
            if let Some(connector) = &m.connector {
                for sid in &m.smsc_message_ids {
                    let link = (connector.as_str(), sid.as_str());
                    if self.smsc_ids.get(link).map_err(io)?.map(|v| v.value()) == Some(m.id.0) {
                        self.smsc_ids.remove(link).map_err(io)?;
                    }
                }
            }
            self.messages.remove(m.id.0).map_err(io)?;
            purged += 1;
        }
        Ok(purged)
    }

    /// Drops inbound messages that arrived before `cutoff` (their ids start
    /// with their arrival time; their webhooks carry their own copy).
    fn purge_inbound(&mut self, cutoff: Micros) -> Result<usize, StoreError> {
        let first_kept = MessageId::first_at(cutoff).0;
        let aged: Vec<u128> = self
            .inbound
            .range(..first_kept)
            .map_err(io)?
            .take(EXPIRE_PER_PASS)
            .map(|row| row.map(|(k, _)| k.value()).map_err(io))
            .collect::<Result<_, _>>()?;
        for id in &aged {
            self.inbound.remove(*id).map_err(io)?;
        }
        Ok(aged.len())
    }

    fn purge_early_receipts(&mut self, now: Micros, keep: Duration) -> Result<usize, StoreError> {
        let ttl = micros(keep);
        let mut old = Vec::new();
        for row in self.early.iter().map_err(io)?.take(EXPIRE_PER_PASS) {
            let (k, v) = row.map_err(io)?;
            let at = serde_json::from_slice::<Receipt>(v.value())
                .map(|r| r.at)
                .unwrap_or(0);
            if now.saturating_sub(at) > ttl {
                let (c, s) = k.value();
                old.push((c.to_string(), s.to_string()));
            }
        }
        for (c, s) in &old {
            self.early.remove((c.as_str(), s.as_str())).map_err(io)?;
        }
        Ok(old.len())
    }
}

fn micros(d: Duration) -> Micros {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

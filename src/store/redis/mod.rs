//! The Redis store: every piece of shared state in one Redis, so any number
//! of `herald serve` nodes share one workload.
//!
//! Every operation that touches more than one key is one Lua script call
//! (`lua/`), so it is atomic across nodes: admission (idempotency, opt-out,
//! the per-recipient limit and the write), claims, outcomes, receipts,
//! maintenance. A batch of messages is one call; concurrent callers share
//! the one multiplexed connection, which pipelines their calls.
//!
//! Queues are one sorted set per (connector, class) scored by admission
//! sequence: a claim pops the highest class first, so strict priority holds
//! across every node. A claim is recorded in the claiming node's set; each
//! node refreshes a heartbeat key with a TTL of the lease, and maintenance on
//! any node puts the claims of a node whose heartbeat lapsed back in their
//! queues (at-least-once). Dispatchers sleep until a script publishes that a
//! connector got work.
//!
//! Keys all start with `{prefix}:` (the braces are a hash tag: one Redis
//! Cluster slot holds a deployment, so scripts may touch any of its keys).
//! The layout is documented in README ("Redis store").

mod audit;
mod broadcasts;
mod decode;
pub mod durability;
mod groups;
mod lua;
mod operators;
mod otp;

use crate::config::Secret;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{AsyncCommands, Client, RedisError, Script, ScriptInvocation, Value};
use async_trait::async_trait;
use futures_util::StreamExt;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::decode::{array, corrupt, int, text};
use self::lua::Scripts;
use super::{
    Admission, ApiKeyRecord, InboundStore, KeyStore, MaintenanceReport, MessageStore, NewMessage,
    Outcome, QueueDepths, Retention, Store, StoreError, WebhookEvent, WebhookJob, WebhookResult,
    WebhookStore,
};
use crate::model::{InboundRecord, MessageId, Micros, Receipt, Status, now_micros};

/// Most items one admission script call takes (about a millisecond of
/// Redis time); larger batches are split.
const ADMIT_CHUNK: usize = 100;
/// Most entries one maintenance pass handles per step.
const MAINTAIN_MOST: usize = 10_000;
/// How long a dispatcher sleeps at most while the work channel is down.
const POLL_WITHOUT_SUBSCRIPTION: Duration = Duration::from_millis(100);
/// A command that gets no answer for this long fails (the caller answers 503).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Connecting gives up after this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Where the store is and who this node is.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// `redis://[user:password@]host:port/db` or `redis+unix:///path`
    /// (a secret: it may carry a password).
    pub url: Secret,
    /// Key prefix; keys are `{prefix}:…`.
    pub prefix: String,
    /// This node's name among the nodes sharing the store. Two live
    /// processes must never share one: a node starting under a name takes
    /// over whatever that name had claimed.
    pub node_id: String,
    /// A node that shows no sign of life for this long has its claims put
    /// back in the queues by the others.
    pub lease: Duration,
    /// What Redis must persist before this store is used (checked at open).
    pub durability: crate::config::RedisDurability,
}

/// What the opening process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A gateway node: claims work, keeps a heartbeat, takes over the claims
    /// of dead nodes.
    Node,
    /// A CLI command: reads and writes records, never claims.
    Client,
}

/// Gauges every script returns: ready per class, retries, webhooks.
#[derive(Default)]
struct Gauges([AtomicU64; 6]);

impl Gauges {
    fn set(&self, v: Value) -> Result<(), StoreError> {
        let values = array(v)?;
        if values.len() != 6 {
            return Err(corrupt("gauges reply"));
        }
        for (slot, v) in self.0.iter().zip(&values) {
            slot.store(u64::try_from(int(v)?).unwrap_or(0), Ordering::Relaxed);
        }
        Ok(())
    }

    fn get(&self, i: usize) -> u64 {
        self.0[i].load(Ordering::Relaxed)
    }
}

/// State shared with the background tasks.
struct Shared {
    conn: ConnectionManager,
    /// Claims only: a claim is what a dispatcher waits on, so it never
    /// queues behind admissions and records pipelined on `conn`.
    claims: ConnectionManager,
    /// `{prefix}`, the first argument of every script.
    prefix: String,
    /// A key of the deployment's slot, passed as KEYS[1] so a cluster-aware
    /// client routes each script to the right node.
    slot_key: String,
    node: String,
    scripts: Scripts,
    gauges: Gauges,
    notifiers: Mutex<HashMap<String, Arc<Notify>>>,
    /// Whether the work channel subscription is up.
    subscribed: AtomicBool,
    closed: AtomicBool,
}

impl Shared {
    fn key(&self, rest: &str) -> String {
        format!("{}:{rest}", self.prefix)
    }

    fn notifier(&self, connector: &str) -> Arc<Notify> {
        let mut map = self
            .notifiers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match map.get(connector) {
            Some(n) => n.clone(),
            None => map.entry(connector.to_string()).or_default().clone(),
        }
    }

    fn wake_all(&self) {
        let map = self
            .notifiers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for n in map.values() {
            n.notify_one();
        }
    }

    /// A script call with the common arguments (prefix, clock) in place.
    fn invocation<'a>(&'a self, script: &'a Script, now: Micros) -> ScriptInvocation<'a> {
        let mut inv = script.prepare_invoke();
        inv.key(&self.slot_key).arg(&self.prefix).arg(now);
        inv
    }

    async fn invoke(&self, inv: &ScriptInvocation<'_>) -> Result<Value, StoreError> {
        self.invoke_on(&self.conn, inv).await
    }

    async fn invoke_on(
        &self,
        conn: &ConnectionManager,
        inv: &ScriptInvocation<'_>,
    ) -> Result<Value, StoreError> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(StoreError::Closed);
        }
        let mut conn = conn.clone();
        inv.invoke_async(&mut conn).await.map_err(unavailable)
    }

    fn conn(&self) -> Result<ConnectionManager, StoreError> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(StoreError::Closed);
        }
        Ok(self.conn.clone())
    }

    /// Splits a `{payload, gauges}` reply, keeping the gauges.
    fn with_gauges(&self, reply: Value) -> Result<Vec<Value>, StoreError> {
        let mut parts = array(reply)?;
        let gauges = parts.pop().ok_or_else(|| corrupt("reply without gauges"))?;
        self.gauges.set(gauges)?;
        Ok(parts)
    }

    async fn refresh_gauges(&self) -> Result<(), StoreError> {
        let reply = self
            .invoke(&self.invocation(&self.scripts.gauges, now_micros()))
            .await?;
        self.gauges.set(reply)
    }

    /// Admits up to [`ADMIT_CHUNK`] items in one script call.
    async fn admit_chunk(&self, items: Vec<NewMessage>) -> Result<Vec<Admission>, StoreError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = self.invocation(&self.scripts.admit, now_micros());
        inv.arg(items.len());
        push_items(&mut inv, &items)?;
        let parts = self.with_gauges(self.invoke(&inv).await?)?;
        self.admissions(items, parts.into_iter().next().unwrap_or_default())
    }

    /// The admissions of `items` from their per-item script results (see
    /// `lua/admit_items.lua`), waking the dispatchers of queued ones.
    fn admissions(
        &self,
        items: Vec<NewMessage>,
        results: Value,
    ) -> Result<Vec<Admission>, StoreError> {
        let results = array(results)?;
        if results.len() != items.len() {
            return Err(corrupt("admit reply has the wrong length"));
        }
        let mut out = Vec::with_capacity(items.len());
        for (item, result) in items.into_iter().zip(results) {
            let mut fields = array(result)?.into_iter();
            let code = fields.next().as_ref().map(int).transpose()?;
            let admission = match code {
                Some(0) => {
                    let mut m = item.message;
                    m.seq = fields
                        .next()
                        .as_ref()
                        .map(int)
                        .transpose()?
                        .and_then(|v| u64::try_from(v).ok())
                        .ok_or_else(|| corrupt("admit reply without sequence"))?;
                    if m.status == Status::Queued
                        && item.not_before.is_none_or(|t| t <= m.created_at)
                        && let Some(c) = m.current_connector()
                    {
                        self.notifier(c).notify_one();
                    }
                    Admission::Created(m)
                }
                Some(1) => Admission::Existing(decode::message(&decode::hash(
                    fields.next().unwrap_or_default(),
                )?)?),
                Some(2) => Admission::RateLimited {
                    retry_after: fields.next().as_ref().map(int).transpose()?.unwrap_or(1),
                },
                Some(3) => Admission::OptedOut,
                _ => return Err(corrupt("admit reply code")),
            };
            out.push(admission);
        }
        Ok(out)
    }

    /// Puts this node's claims back in their queues; `leave` also removes
    /// the node from the node list.
    async fn release(&self, leave: bool) -> Result<i64, StoreError> {
        let mut inv = self.invocation(&self.scripts.release, now_micros());
        inv.arg(&self.node).arg(if leave { "1" } else { "0" });
        let parts = self.with_gauges(self.invoke(&inv).await?)?;
        parts.first().map(int).unwrap_or(Ok(0))
    }
}

fn unavailable(e: RedisError) -> StoreError {
    StoreError::Io(format!("redis: {e}"))
}

/// `url` without its password, for messages.
fn redacted(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://…@{host}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// The Redis store. See the module docs.
pub struct RedisStore {
    shared: Arc<Shared>,
    /// Small admissions on their way to [`group_admissions`].
    admissions: mpsc::Sender<AdmitRequest>,
    role: Role,
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl RedisStore {
    /// Connects, and for a [`Role::Node`] takes back what an earlier process
    /// under the same node id left claimed, then starts the heartbeat and
    /// the work subscription.
    ///
    /// # Errors
    /// [`StoreError::Open`] when Redis cannot be reached or the URL is bad.
    pub async fn open(settings: &RedisSettings, role: Role) -> Result<RedisStore, StoreError> {
        let shown = redacted(settings.url.expose());
        let client = Client::open(settings.url.expose())
            .map_err(|e| StoreError::Open(format!("redis URL {shown}: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500))
            .set_pipeline_buffer_size(1024);
        let conn = ConnectionManager::new_with_config(client.clone(), config.clone())
            .await
            .map_err(|e| StoreError::Open(format!("redis at {shown}: {e}")))?;
        let claims = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(|e| StoreError::Open(format!("redis at {shown}: {e}")))?;
        let seen = durability::observe(&conn).await;
        durability::judge(settings.durability, &seen)?;
        let always = matches!(&seen, durability::Persistence::Known { aof: true, fsync } if fsync == "always");
        if role == Role::Node && !always {
            tracing::warn!(redis = %shown, persistence = %seen, "redis may lose acknowledged messages in a crash");
        }
        let prefix = format!("{{{}}}", settings.prefix);
        let shared = Arc::new(Shared {
            conn,
            claims,
            slot_key: format!("{prefix}:seq"),
            prefix,
            node: settings.node_id.clone(),
            scripts: Scripts::new(),
            gauges: Gauges::default(),
            notifiers: Mutex::new(HashMap::new()),
            subscribed: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        });
        let (admissions, pending) = mpsc::channel(4096);
        let store = RedisStore {
            shared: shared.clone(),
            admissions,
            role,
            stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
        };
        store.tasks.spawn(group_admissions(
            shared.clone(),
            pending,
            store.stop.clone(),
        ));
        shared
            .refresh_gauges()
            .await
            .map_err(|e| StoreError::Open(format!("redis at {shown}: {e}")))?;
        if role == Role::Node {
            heartbeat(&shared, settings.lease)
                .await
                .map_err(|e| StoreError::Open(format!("redis at {shown}: {e}")))?;
            let taken = shared.release(false).await?;
            if taken > 0 {
                tracing::info!(node = %shared.node, messages = taken, "queued again what this node had claimed before it stopped");
            }
            store.tasks.spawn(keep_alive(
                shared.clone(),
                settings.lease,
                store.stop.clone(),
            ));
            store
                .tasks
                .spawn(subscribe_work(shared.clone(), client, store.stop.clone()));
        }
        store.tasks.close();
        Ok(store)
    }
}

/// A small admission and where its answer goes.
type AdmitRequest = (
    Vec<NewMessage>,
    oneshot::Sender<Result<Vec<Admission>, StoreError>>,
);

/// Script calls of grouped admissions in flight at once; while they run,
/// new admissions gather into the next groups (group commit).
const ADMIT_GROUPS_IN_FLIGHT: usize = 4;

/// Gathers concurrent small admissions into shared script calls of up to
/// [`ADMIT_CHUNK`] items: one call, one reply and one fsync for many
/// requests instead of one each. Each item stays atomic on its own.
async fn group_admissions(
    shared: Arc<Shared>,
    mut requests: mpsc::Receiver<AdmitRequest>,
    stop: CancellationToken,
) {
    let mut inflight = futures_util::stream::FuturesUnordered::new();
    let mut pending = Vec::new();
    loop {
        tokio::select! {
            biased;
            Some(()) = inflight.next(), if !inflight.is_empty() => {}
            n = requests.recv_many(&mut pending, 1024), if inflight.len() < ADMIT_GROUPS_IN_FLIGHT => {
                if n == 0 {
                    break;
                }
                let mut group: Vec<AdmitRequest> = Vec::new();
                let mut size = 0;
                for request in pending.drain(..) {
                    if size + request.0.len() > ADMIT_CHUNK && !group.is_empty() {
                        inflight.push(admit_group(shared.clone(), std::mem::take(&mut group)));
                        size = 0;
                    }
                    size += request.0.len();
                    group.push(request);
                }
                if !group.is_empty() {
                    inflight.push(admit_group(shared.clone(), group));
                }
            }
            () = stop.cancelled(), if inflight.is_empty() => break,
        }
    }
    while inflight.next().await.is_some() {}
}

/// One script call for a group of admissions; each gets its own answer.
async fn admit_group(shared: Arc<Shared>, group: Vec<AdmitRequest>) {
    let lens: Vec<usize> = group.iter().map(|(items, _)| items.len()).collect();
    let (items, replies): (Vec<Vec<NewMessage>>, Vec<_>) = group.into_iter().unzip();
    match shared
        .admit_chunk(items.into_iter().flatten().collect())
        .await
    {
        Ok(results) => {
            let mut results = results.into_iter();
            for (len, reply) in lens.into_iter().zip(replies) {
                let _ = reply.send(Ok(results.by_ref().take(len).collect()));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(match &e {
                    StoreError::Closed => StoreError::Closed,
                    other => StoreError::Io(other.to_string()),
                }));
            }
        }
    }
}

/// Marks this node alive for one lease.
async fn heartbeat(shared: &Shared, lease: Duration) -> Result<(), StoreError> {
    let mut conn = shared.conn()?;
    let ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX);
    ::redis::pipe()
        .set_options(
            shared.key(&format!("alive:{}", shared.node)),
            "1",
            ::redis::SetOptions::default().with_expiration(::redis::SetExpiry::PX(ms)),
        )
        .ignore()
        .sadd(shared.key("nodes"), &shared.node)
        .ignore()
        .query_async::<()>(&mut conn)
        .await
        .map_err(unavailable)
}

/// Refreshes the heartbeat three times per lease and the gauges with it (so
/// metrics show the other nodes' work too).
async fn keep_alive(shared: Arc<Shared>, lease: Duration, stop: CancellationToken) {
    let every = (lease / 3).clamp(Duration::from_millis(100), Duration::from_secs(1));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let result = match heartbeat(&shared, lease).await {
            Ok(()) => shared.refresh_gauges().await,
            Err(e) => Err(e),
        };
        match result {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("redis answers again");
            }
            Ok(()) => {}
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "redis heartbeat failed; retrying");
            }
            Err(_) => {}
        }
    }
}

/// Listens on the work channel and wakes the dispatcher of each connector
/// named there; reconnects while Redis is away.
async fn subscribe_work(shared: Arc<Shared>, client: Client, stop: CancellationToken) {
    let channel = shared.key("work");
    let mut backoff = Duration::from_millis(50);
    loop {
        let connected = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, RedisError>(pubsub)
        };
        let pubsub = tokio::select! {
            () = stop.cancelled() => return,
            r = connected => r,
        };
        match pubsub {
            Ok(pubsub) => {
                backoff = Duration::from_millis(50);
                shared.subscribed.store(true, Ordering::Relaxed);
                // Work may have arrived while the channel was down.
                shared.wake_all();
                let mut messages = pubsub.into_on_message();
                loop {
                    let msg = tokio::select! {
                        () = stop.cancelled() => return,
                        m = messages.next() => m,
                    };
                    let Some(msg) = msg else { break };
                    if let Ok(connector) = std::str::from_utf8(msg.get_payload_bytes()) {
                        shared.notifier(connector).notify_one();
                    }
                }
                shared.subscribed.store(false, Ordering::Relaxed);
                tracing::debug!("redis work channel closed; resubscribing");
            }
            Err(e) => tracing::debug!(error = %e, "redis work channel unavailable"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

fn json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(corrupt)
}

/// The webhook queue member of a job: status webhooks are keyed by their
/// message (one final status each), inbound ones by the job id.
/// Writes the 18 fields per item `lua/admit_items.lua` reads.
fn push_items(inv: &mut ScriptInvocation<'_>, items: &[NewMessage]) -> Result<(), StoreError> {
    for item in items {
        let m = &item.message;
        if m.status == Status::Queued && m.current_connector().is_none() {
            return Err(corrupt(format_args!("message {} has no route", m.id)));
        }
        let scope = item
            .idempotency
            .as_ref()
            .map(|(owner, key)| format!("{owner}\n{key}"))
            .unwrap_or_default();
        let policy = item.limit.filter(|p| p.is_active()).unwrap_or_default();
        // The sealed clear text lives in its own field, dropped at submit.
        let record = if m.sealed_body.is_some() {
            let mut plain = m.clone();
            plain.sealed_body = None;
            json(&plain)?
        } else {
            json(m)?
        };
        inv.arg(m.id.to_string())
            .arg(record)
            .arg(&m.to)
            .arg(m.class.index())
            .arg(m.route.join("\n"))
            .arg(m.expires_at)
            .arg(if m.callback_url.is_some() { "1" } else { "0" })
            .arg(item.not_before.map(|t| t.to_string()).unwrap_or_default())
            .arg(scope)
            .arg(if item.refuse_if_opted_out { "1" } else { "0" })
            .arg(policy.per_hour)
            .arg(policy.per_day)
            .arg(policy.min_interval_seconds)
            .arg(m.created_at)
            .arg(m.status.as_str())
            .arg(item.limit_subject().as_ref())
            .arg(m.sealed_body.as_deref().unwrap_or_default())
            .arg(m.broadcast.map(|b| b.to_string()).unwrap_or_default());
    }
    Ok(())
}

fn webhook_member(job: &WebhookJob) -> String {
    match &job.event {
        WebhookEvent::MessageStatus { message_id, .. } => format!("m:{message_id}"),
        WebhookEvent::Inbound { .. } => format!("i:{}", job.id),
    }
}

fn micros_of(d: Duration) -> Micros {
    Micros::try_from(d.as_micros()).unwrap_or(Micros::MAX / 2)
}

impl RedisStore {
    /// A claimed webhook job back from its stored parts; `None` when what it
    /// reports is gone.
    fn webhook_job(
        member: &str,
        fields: &HashMap<String, String>,
        message: Option<String>,
        next_at: Micros,
    ) -> Result<Option<WebhookJob>, StoreError> {
        let attempts = fields.get("a").and_then(|a| a.parse().ok()).unwrap_or(0);
        let last_error = fields.get("e").cloned();
        if let Some(id) = member.strip_prefix("m:") {
            let Some(message) = message else {
                return Ok(None);
            };
            let m: crate::model::Message = serde_json::from_str(&message).map_err(corrupt)?;
            let Some(url) = m.callback_url else {
                return Ok(None);
            };
            let message_id: MessageId = id.parse().map_err(|()| corrupt("webhook member"))?;
            return Ok(Some(WebhookJob {
                id: message_id,
                url,
                event: WebhookEvent::MessageStatus {
                    message_id,
                    owner: m.owner,
                },
                attempts,
                created_at: fields.get("c").and_then(|c| c.parse().ok()).unwrap_or(0),
                next_at,
                last_error,
            }));
        }
        let Some(j) = fields.get("j") else {
            return Ok(None);
        };
        let mut job: WebhookJob = serde_json::from_str(j).map_err(corrupt)?;
        job.attempts = attempts;
        job.last_error = last_error;
        job.next_at = next_at;
        Ok(Some(job))
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn ping(&self) -> Result<(), StoreError> {
        // Both connections: a failed PING also makes a dropped one reconnect.
        let mut conn = self.shared.conn()?;
        let mut claims = self.shared.claims.clone();
        let ping = ::redis::cmd("PING");
        let (a, b) = tokio::join!(
            ping.query_async::<()>(&mut conn),
            ping.query_async::<()>(&mut claims)
        );
        a.and(b).map_err(unavailable)
    }

    async fn close(&self) {
        if self.shared.closed.load(Ordering::Relaxed) {
            return;
        }
        self.stop.cancel();
        self.tasks.wait().await;
        if self.role == Role::Node {
            // Whatever is still claimed goes back now rather than after a lease.
            match self.shared.release(true).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(messages = n, "released claims at shutdown"),
                Err(e) => {
                    tracing::warn!(error = %e, "could not release claims; they return after the lease")
                }
            }
        }
        self.shared.closed.store(true, Ordering::Relaxed);
    }
}

#[async_trait]
impl MessageStore for RedisStore {
    async fn admit(&self, items: Vec<NewMessage>) -> Result<Vec<Admission>, StoreError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        if items.len() < ADMIT_CHUNK / 2 {
            // Small admissions (single POSTs) share script calls.
            let (reply, answer) = oneshot::channel();
            self.admissions
                .send((items, reply))
                .await
                .map_err(|_| StoreError::Closed)?;
            return answer.await.map_err(|_| StoreError::Closed)?;
        }
        // Large batches go as several script calls, pipelined in order on
        // one connection: each item is still atomic, and no single call
        // holds Redis (and every other node's claims) for long.
        let mut chunks = Vec::new();
        let mut items = items.into_iter().peekable();
        while items.peek().is_some() {
            chunks.push(
                self.shared
                    .admit_chunk(items.by_ref().take(ADMIT_CHUNK).collect()),
            );
        }
        let mut out = Vec::new();
        for chunk in futures_util::future::join_all(chunks).await {
            out.extend(chunk?);
        }
        Ok(out)
    }

    async fn message(&self, id: MessageId) -> Result<Option<crate::model::Message>, StoreError> {
        let mut conn = self.shared.conn()?;
        let fields: HashMap<String, String> = conn
            .hgetall(self.shared.key(&format!("m:{id}")))
            .await
            .map_err(unavailable)?;
        if fields.is_empty() {
            return Ok(None);
        }
        decode::message(&fields).map(Some)
    }

    async fn claim(
        &self,
        connector: &str,
        max: usize,
    ) -> Result<Vec<crate::model::Message>, StoreError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let s = &self.shared;
        let mut inv = s.invocation(&s.scripts.claim, now_micros());
        inv.arg(connector).arg(max).arg(&s.node);
        let parts = s.with_gauges(s.invoke_on(&s.claims, &inv).await?)?;
        decode::messages(parts.into_iter().next().unwrap_or_default())
    }

    async fn wait_for_work(&self, connector: &str, timeout: Duration) {
        let notify = self.shared.notifier(connector);
        let timeout = if self.shared.subscribed.load(Ordering::Relaxed) {
            timeout
        } else {
            timeout.min(POLL_WITHOUT_SUBSCRIPTION)
        };
        let _ = tokio::time::timeout(timeout, notify.notified()).await;
    }

    async fn record(
        &self,
        outcomes: Vec<Outcome>,
    ) -> Result<Vec<crate::model::Message>, StoreError> {
        if outcomes.is_empty() {
            return Ok(Vec::new());
        }
        let s = &self.shared;
        let mut inv = s.invocation(&s.scripts.record, now_micros());
        inv.arg(&s.node).arg(outcomes.len());
        for o in &outcomes {
            let none = String::new;
            let (kind, x, y, z) = match o {
                Outcome::Submitted {
                    connector,
                    smsc_ids,
                    at,
                    ..
                } => ("S", connector.clone(), smsc_ids.join("\n"), at.to_string()),
                Outcome::Retry {
                    not_before,
                    error,
                    counts_attempt,
                    ..
                } => (
                    "R",
                    not_before.to_string(),
                    error.clone(),
                    if *counts_attempt { "1" } else { "0" }.to_string(),
                ),
                Outcome::Failover { error, .. } => ("F", none(), error.clone(), none()),
                Outcome::Failed { error, .. } => ("X", none(), error.clone(), none()),
                Outcome::Expired { .. } => ("E", none(), none(), none()),
                Outcome::Released { .. } => ("L", none(), none(), none()),
            };
            // Parts of a long message the carrier took: kept whole for the
            // record, connector and ids apart for the script.
            let (partial, pconn, pids) = match o {
                Outcome::Retry {
                    partial: Some(p), ..
                } => (
                    json(p)?,
                    p.connector.clone(),
                    p.smsc_ids
                        .iter()
                        .flatten()
                        .map(String::as_str)
                        .collect::<Vec<_>>()
                        .join("\n"),
                ),
                _ => (none(), none(), none()),
            };
            inv.arg(kind)
                .arg(o.id().to_string())
                .arg(x)
                .arg(y)
                .arg(z)
                .arg(partial)
                .arg(pconn)
                .arg(pids);
        }
        let parts = s.with_gauges(s.invoke(&inv).await?)?;
        decode::messages(parts.into_iter().next().unwrap_or_default())
    }

    async fn apply_receipts(
        &self,
        receipts: Vec<Receipt>,
    ) -> Result<Vec<crate::model::Message>, StoreError> {
        if receipts.is_empty() {
            return Ok(Vec::new());
        }
        let s = &self.shared;
        let mut inv = s.invocation(&s.scripts.receipts, now_micros());
        inv.arg(receipts.len());
        for r in &receipts {
            inv.arg(&r.connector)
                .arg(&r.smsc_id)
                .arg(if r.state.is_delivered() { "1" } else { "0" })
                .arg(r.error_text())
                .arg(r.at);
        }
        let parts = s.with_gauges(s.invoke(&inv).await?)?;
        decode::messages(parts.into_iter().next().unwrap_or_default())
    }

    async fn maintain(
        &self,
        now: Micros,
        retention: Retention,
    ) -> Result<MaintenanceReport, StoreError> {
        let s = &self.shared;
        let mut inv = s.invocation(&s.scripts.maintain, now);
        inv.arg(now.saturating_sub(micros_of(retention.idempotency)))
            .arg(now.saturating_sub(micros_of(retention.receipts)))
            .arg(MAINTAIN_MOST)
            .arg(&s.node)
            .arg(retention.messages.as_millis().max(1).to_string())
            .arg(MessageId::first_at(now.saturating_sub(micros_of(retention.inbound))).to_string());
        let mut parts = s.with_gauges(s.invoke(&inv).await?)?.into_iter();
        let expired = decode::messages(parts.next().unwrap_or_default())?;
        let mut count = || -> Result<usize, StoreError> {
            let v = parts.next().ok_or_else(|| corrupt("maintenance reply"))?;
            Ok(usize::try_from(int(&v)?).unwrap_or(0))
        };
        let report = MaintenanceReport {
            expired,
            promoted: count()?,
            purged: count()?,
            reclaimed: count()?,
        };
        if report.reclaimed > 0 {
            tracing::warn!(
                messages = report.reclaimed,
                "queued again the claims of a node whose heartbeat lapsed"
            );
        }
        Ok(report)
    }

    async fn awaiting_receipts(&self, connector: &str) -> Result<Vec<String>, StoreError> {
        let mut conn = self.shared.conn()?;
        conn.hkeys(self.shared.key(&format!("smsc:{connector}")))
            .await
            .map_err(unavailable)
    }

    fn queue_depths(&self) -> QueueDepths {
        let g = &self.shared.gauges;
        [g.get(0), g.get(1), g.get(2), g.get(3)]
    }

    fn retry_depth(&self) -> u64 {
        self.shared.gauges.get(4)
    }
}

#[async_trait]
impl KeyStore for RedisStore {
    async fn create_api_key(&self, key: ApiKeyRecord) -> Result<bool, StoreError> {
        let s = &self.shared;
        let mut inv = s.invocation(&s.scripts.create_key, now_micros());
        inv.arg(&key.id).arg(&key.name).arg(json(&key)?);
        Ok(int(&s.invoke(&inv).await?)? == 1)
    }

    async fn api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let mut conn = self.shared.conn()?;
        let (record, revoked): (Option<String>, Option<Micros>) = ::redis::pipe()
            .hget(self.shared.key("apikeys"), id)
            .hget(self.shared.key("apikey_revoked"), id)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let Some(record) = record else {
            return Ok(None);
        };
        let mut key: ApiKeyRecord = serde_json::from_str(&record).map_err(corrupt)?;
        if revoked.is_some() {
            key.revoked_at = revoked;
        }
        Ok(Some(key))
    }

    /// `HLEN` of the revoked-key hash: one O(1) command.
    async fn revocations(&self) -> Result<u64, StoreError> {
        let mut conn = self.shared.conn()?;
        conn.hlen(self.shared.key("apikey_revoked"))
            .await
            .map_err(unavailable)
    }

    async fn api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let mut conn = self.shared.conn()?;
        let (records, revoked): (HashMap<String, String>, HashMap<String, Micros>) =
            ::redis::pipe()
                .hgetall(self.shared.key("apikeys"))
                .hgetall(self.shared.key("apikey_revoked"))
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
        let mut keys = records
            .values()
            .map(|r| serde_json::from_str::<ApiKeyRecord>(r).map_err(corrupt))
            .collect::<Result<Vec<_>, _>>()?;
        for key in &mut keys {
            if let Some(at) = revoked.get(&key.id) {
                key.revoked_at = Some(*at);
            }
        }
        keys.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(keys)
    }

    async fn revoke_api_key(&self, name: &str, at: Micros) -> Result<bool, StoreError> {
        let s = &self.shared;
        let mut inv = s.invocation(&s.scripts.revoke_key, at);
        inv.arg(name);
        Ok(int(&s.invoke(&inv).await?)? == 1)
    }
}

#[async_trait]
impl InboundStore for RedisStore {
    async fn opt_out(&self, number: &str, at: Micros) -> Result<(), StoreError> {
        let mut conn = self.shared.conn()?;
        conn.hset::<_, _, _, ()>(self.shared.key("optouts"), number, at)
            .await
            .map_err(unavailable)
    }

    async fn opt_in(&self, number: &str) -> Result<bool, StoreError> {
        let mut conn = self.shared.conn()?;
        let removed: i64 = conn
            .hdel(self.shared.key("optouts"), number)
            .await
            .map_err(unavailable)?;
        Ok(removed > 0)
    }

    async fn is_opted_out(&self, number: &str) -> Result<bool, StoreError> {
        let mut conn = self.shared.conn()?;
        conn.hexists(self.shared.key("optouts"), number)
            .await
            .map_err(unavailable)
    }

    async fn record_inbound(
        &self,
        records: Vec<InboundRecord>,
        webhook_url: Option<String>,
    ) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let s = &self.shared;
        let mut inv = s.invocation(&s.scripts.inbound, now_micros());
        inv.arg(records.len());
        for r in &records {
            let (member, job) = match &webhook_url {
                Some(url) => {
                    let job = WebhookJob::new(
                        url.clone(),
                        WebhookEvent::Inbound { record: r.clone() },
                        r.received_at,
                    );
                    (webhook_member(&job), json(&job)?)
                }
                None => (String::new(), String::new()),
            };
            inv.arg(r.id.to_string())
                .arg(json(r)?)
                .arg(r.action.as_deref().unwrap_or(""))
                .arg(&r.from)
                .arg(r.received_at)
                .arg(member)
                .arg(job);
        }
        s.gauges.set(s.invoke(&inv).await?)
    }

    async fn inbound(
        &self,
        after: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<InboundRecord>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.shared.conn()?;
        let start = after.map_or_else(|| "-".to_string(), |id| format!("({id}"));
        let ids: Vec<String> = conn
            .zrangebylex_limit(
                self.shared.key("inbound"),
                start,
                "+",
                0,
                isize::try_from(limit).unwrap_or(isize::MAX),
            )
            .await
            .map_err(unavailable)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let records: Vec<Option<String>> = ::redis::cmd("HMGET")
            .arg(self.shared.key("inbound:data"))
            .arg(&ids)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        records
            .into_iter()
            .flatten()
            .map(|r| serde_json::from_str(&r).map_err(corrupt))
            .collect()
    }
}

#[async_trait]
impl WebhookStore for RedisStore {
    async fn claim_webhooks(
        &self,
        now: Micros,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<WebhookJob>, StoreError> {
        let s = &self.shared;
        let until = now.saturating_add(micros_of(lease));
        let mut inv = s.invocation(&s.scripts.claim_webhooks, now);
        inv.arg(max).arg(until);
        let parts = s.with_gauges(s.invoke(&inv).await?)?;
        let mut jobs = Vec::new();
        let mut orphans = Vec::new();
        for entry in array(parts.into_iter().next().unwrap_or_default())? {
            let mut fields = array(entry)?.into_iter();
            let member = text(fields.next().unwrap_or_default())?
                .ok_or_else(|| corrupt("webhook member"))?;
            let data = decode::hash(fields.next().unwrap_or_default())?;
            let message = text(fields.next().unwrap_or_default())?;
            match Self::webhook_job(&member, &data, message, until)? {
                Some(job) => jobs.push(job),
                None => orphans.push(member),
            }
        }
        if !orphans.is_empty() {
            // What they would report is gone: nothing to deliver.
            let mut inv = s.invocation(&s.scripts.finish_webhooks, now);
            inv.arg(orphans.len());
            for member in &orphans {
                inv.arg(member).arg(until).arg("D").arg(0).arg("");
            }
            s.gauges.set(s.invoke(&inv).await?)?;
        }
        Ok(jobs)
    }

    async fn finish_webhooks(
        &self,
        results: Vec<(WebhookJob, WebhookResult)>,
    ) -> Result<(), StoreError> {
        if results.is_empty() {
            return Ok(());
        }
        let s = &self.shared;
        let mut inv = s.invocation(&s.scripts.finish_webhooks, now_micros());
        inv.arg(results.len());
        for (job, result) in &results {
            inv.arg(webhook_member(job)).arg(job.next_at);
            match result {
                WebhookResult::Done => inv.arg("D").arg(0).arg(""),
                WebhookResult::Retry { next_at, error } => inv.arg("R").arg(*next_at).arg(error),
                WebhookResult::Postpone { next_at } => inv.arg("P").arg(*next_at).arg(""),
            };
        }
        s.gauges.set(s.invoke(&inv).await?)
    }

    fn webhook_depth(&self) -> u64 {
        self.shared.gauges.get(5)
    }
}

impl Drop for RedisStore {
    /// Stops the heartbeat: a store dropped without `close` behaves like a
    /// crashed node, whose claims the others take over after the lease.
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_password_in_messages() {
        assert_eq!(
            redacted("redis://user:secret@10.0.0.1:6379/0"),
            "redis://…@10.0.0.1:6379/0"
        );
        assert_eq!(redacted("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }

    #[test]
    fn webhook_members_key_status_webhooks_by_message() {
        let id = MessageId::generate();
        let job = WebhookJob::new(
            "http://x".into(),
            WebhookEvent::MessageStatus {
                message_id: id,
                owner: "o".into(),
            },
            1,
        );
        assert_eq!(webhook_member(&job), format!("m:{id}"));
    }
}

//! The one source of truth: queues per connector and class, message records,
//! idempotency keys, receipts matching and API keys, behind the [`Store`]
//! trait so the embedded store and a Redis store are interchangeable and pass
//! one conformance suite (`tests/it/store_conformance.rs`).
//!
//! Every operation takes a batch: callers that arrive together share one
//! durable write (group commit), which is what keeps the store off the
//! critical path at thousands of messages per second.

pub mod audit;
pub mod broadcast;
pub mod embedded;
pub mod group;
mod memqueue;
pub mod operator;
pub mod otp;
pub mod redis;

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::limits::LimitPolicy;
use crate::model::{InboundRecord, Message, MessageId, Micros, PartialSubmit, Receipt};

pub use self::redis::{RedisSettings, RedisStore, Role};
pub use audit::AuditStore;
pub use broadcast::BroadcastStore;
pub use embedded::EmbeddedStore;
pub use group::{GroupStore, GroupSummary};
pub use operator::{OperatorRecord, OperatorRole, OperatorStore, SessionRecord};
pub use otp::{Attempt, Budget, OtpRecord, OtpStatus, OtpStore};

/// Why a store operation failed. Callers answer 503: the request may be
/// retried, nothing half-done is visible.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened.
    #[error("store cannot be opened: {0}")]
    Open(String),
    /// The database is held by another process (e.g. a running `herald serve`).
    #[error("store is in use by another process")]
    Locked,
    /// Reading or writing failed.
    #[error("store I/O failed: {0}")]
    Io(String),
    /// A stored record could not be decoded.
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
    /// The store is shutting down and takes no more work.
    #[error("store is closed")]
    Closed,
    /// Redis persists less than `[store] redis_durability` requires, so a
    /// 202 could be lost: the node refuses to serve.
    #[error("{0}")]
    NotDurable(String),
}

/// A message ready to be persisted: everything admission decided.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub message: Message,
    /// `(owner, key)`: a second admission with the same pair within the TTL
    /// returns the first message and stores nothing.
    pub idempotency: Option<(String, String)>,
    /// Per-recipient limit of the message's class, checked and consumed
    /// atomically with the write. `None`: not limited (emergency).
    pub limit: Option<LimitPolicy>,
    /// Whose budget the limit counts in: `None` counts per recipient;
    /// `Some(owner)` per owner and recipient (OTP: one application cannot
    /// use up another's codes for a number).
    pub limit_scope: Option<String>,
    /// Refuse when the recipient has opted out (marketing).
    pub refuse_if_opted_out: bool,
    /// Queue only from this time on (deferred by a script, e.g. quiet hours).
    pub not_before: Option<Micros>,
}

impl NewMessage {
    /// A message with no idempotency key, limit, opt-out check or deferral.
    pub fn plain(message: Message) -> Self {
        NewMessage {
            message,
            idempotency: None,
            limit: None,
            limit_scope: None,
            refuse_if_opted_out: false,
            not_before: None,
        }
    }

    /// The subject the limit of the message's class is counted under.
    pub fn limit_subject(&self) -> std::borrow::Cow<'_, str> {
        match &self.limit_scope {
            None => std::borrow::Cow::Borrowed(self.message.to.as_str()),
            Some(owner) => std::borrow::Cow::Owned(format!("{owner}\n{}", self.message.to)),
        }
    }
}

/// The result of admitting one [`NewMessage`].
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// Stored and queued.
    Created(Message),
    /// The idempotency key was seen before: the earlier message.
    Existing(Message),
    /// The recipient's limit for the class is used up; nothing stored.
    RateLimited {
        /// Microseconds until a send would be allowed.
        retry_after: Micros,
    },
    /// The recipient opted out of marketing; nothing stored.
    OptedOut,
}

impl Admission {
    /// The stored message, when there is one.
    pub fn message(&self) -> Option<&Message> {
        match self {
            Admission::Created(m) | Admission::Existing(m) => Some(m),
            Admission::RateLimited { .. } | Admission::OptedOut => None,
        }
    }
}

/// What a webhook reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WebhookEvent {
    /// A message reached a final status; signed with its owner key's secret.
    MessageStatus {
        message_id: MessageId,
        owner: String,
    },
    /// An inbound message; signed with the inbound webhook secret.
    Inbound { record: InboundRecord },
}

/// A queued webhook delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookJob {
    pub id: MessageId,
    pub url: String,
    pub event: WebhookEvent,
    pub attempts: u32,
    pub created_at: Micros,
    /// When it is due (while claimed: when the claim lapses).
    pub next_at: Micros,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl WebhookJob {
    /// A delivery of `event` to `url`, due at once.
    pub fn new(url: String, event: WebhookEvent, at: Micros) -> Self {
        WebhookJob {
            id: MessageId::generate(),
            url,
            event,
            attempts: 0,
            created_at: at,
            next_at: at,
            last_error: None,
        }
    }
}

/// What became of a claimed webhook delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookResult {
    /// Delivered (2xx), or given up for good: removed.
    Done,
    /// Try again at `next_at`.
    Retry { next_at: Micros, error: String },
    /// Not attempted (its destination was busy): due again at `next_at`,
    /// without counting as an attempt.
    Postpone { next_at: Micros },
}

/// What happened to a claimed message.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The carrier took it; `smsc_ids` match its receipts (one per part).
    Submitted {
        id: MessageId,
        connector: String,
        smsc_ids: Vec<String>,
        at: Micros,
    },
    /// A temporary failure: try again on the same connector after `not_before`.
    Retry {
        id: MessageId,
        not_before: Micros,
        error: String,
        /// Whether this try counts toward `dispatch.max_attempts`. A throttled
        /// submit never reached the carrier, so it does not.
        counts_attempt: bool,
        /// Parts of a long message the carrier took on this try or before
        /// (see [`PartialSubmit`]); `None` keeps what was recorded. Their
        /// receipts are matched while the message waits for the rest.
        partial: Option<PartialSubmit>,
    },
    /// Move it to the next connector of its route and queue it there (any
    /// [`PartialSubmit`] is forgotten: the next carrier gets every part).
    Failover { id: MessageId, error: String },
    /// A permanent failure: final.
    Failed { id: MessageId, error: String },
    /// Its validity ran out before it could be submitted: final, never sent.
    Expired { id: MessageId },
    /// Not submitted (e.g. shutdown): back to the queue as it was.
    Released { id: MessageId },
}

impl Outcome {
    /// The message this outcome is about.
    pub fn id(&self) -> MessageId {
        match self {
            Outcome::Submitted { id, .. }
            | Outcome::Retry { id, .. }
            | Outcome::Failover { id, .. }
            | Outcome::Failed { id, .. }
            | Outcome::Expired { id }
            | Outcome::Released { id } => *id,
        }
    }
}

/// Ready-queue depth per class (index = [`Class::index`]).
pub type QueueDepths = [u64; 4];

/// One API key as stored: only an argon2 hash of its secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    /// Public part of the token, used to find the record.
    pub id: String,
    pub name: String,
    pub scopes: Vec<String>,
    /// argon2id PHC string of the secret.
    pub hash: String,
    pub created_at: Micros,
    #[serde(default)]
    pub revoked_at: Option<Micros>,
    /// Secret that signs this key's webhooks (HMAC-SHA256). Kept in clear:
    /// signing needs it, and it grants nothing on the API.
    #[serde(default)]
    pub webhook_secret: Option<String>,
    /// Sender-id patterns this key may use in `from` (none: only the
    /// default sender); see [`crate::senders`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub senders: Vec<String>,
}

/// How long finished records are kept, per class. Nothing with work still
/// pending (queued, submitted and waiting for a receipt, a status webhook
/// not yet delivered) ever ages out: a message's time starts when its last
/// piece of work ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Idempotency keys, from their admission.
    pub idempotency: Duration,
    /// Final messages and their carrier-id links, from their final status
    /// (or from the delivery of their status webhook).
    pub messages: Duration,
    /// Inbound messages, from their arrival.
    pub inbound: Duration,
    /// Receipts that matched no submit, from their arrival.
    pub receipts: Duration,
}

impl Retention {
    /// Messages and inbound messages are kept 30 days, unmatched receipts
    /// an hour.
    pub const DEFAULT_MESSAGES: Duration = Duration::from_secs(30 * 86_400);
    pub const DEFAULT_INBOUND: Duration = Duration::from_secs(30 * 86_400);
    pub const DEFAULT_RECEIPTS: Duration = Duration::from_secs(3600);

    /// The default retention with idempotency keys kept for `ttl`.
    pub fn with_idempotency_ttl(ttl: Duration) -> Self {
        Retention {
            idempotency: ttl,
            messages: Self::DEFAULT_MESSAGES,
            inbound: Self::DEFAULT_INBOUND,
            receipts: Self::DEFAULT_RECEIPTS,
        }
    }
}

/// What a maintenance pass did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MaintenanceReport {
    /// Retries whose backoff ended, back in their queue.
    pub promoted: usize,
    /// Queued messages past their validity, now `expired`.
    pub expired: Vec<Message>,
    /// Idempotency keys, unmatched receipts, finished messages and inbound
    /// messages dropped for age (a Redis store counts the messages its key
    /// TTLs drop elsewhere).
    pub purged: usize,
    /// Claims of nodes that stopped answering, queued again (Redis store).
    pub reclaimed: usize,
}

/// The store contract, one role at a time: each caller depends on the
/// roles it uses ([`MessageStore`] for admission and dispatch, [`KeyStore`]
/// for authentication, [`InboundStore`] for inbound messages and opt-outs,
/// [`WebhookStore`] for deliveries), and a feature that needs new state adds
/// its own role trait. Every implementation passes the one conformance suite.
#[async_trait]
pub trait Store:
    MessageStore
    + KeyStore
    + InboundStore
    + WebhookStore
    + OtpStore
    + GroupStore
    + BroadcastStore
    + OperatorStore
    + AuditStore
{
    /// Whether the store answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Flushes and stops taking writes.
    async fn close(&self);
}

/// Messages and their queues: admission, claims, outcomes, receipts and
/// maintenance.
#[async_trait]
pub trait MessageStore: Send + Sync + 'static {
    /// Persists and queues messages. Returns once they are durable: only
    /// then may the caller answer 202.
    async fn admit(&self, items: Vec<NewMessage>) -> Result<Vec<Admission>, StoreError>;

    /// One message by id.
    async fn message(&self, id: MessageId) -> Result<Option<Message>, StoreError>;

    /// Claims up to `max` ready messages for `connector`, strictly by class
    /// (all emergency before any otp, …) and FIFO within a class. A claimed
    /// message is handed to nobody else until its [`Outcome`] is recorded;
    /// if the process dies first it is queued again (at-least-once).
    async fn claim(&self, connector: &str, max: usize) -> Result<Vec<Message>, StoreError>;

    /// Waits until `connector` may have ready messages, or `timeout`.
    async fn wait_for_work(&self, connector: &str, timeout: Duration);

    /// Records outcomes of claimed messages. Returns the messages that
    /// reached a final status. A message with a `callback_url` that becomes
    /// final gets its webhook queued in the same write.
    async fn record(&self, outcomes: Vec<Outcome>) -> Result<Vec<Message>, StoreError>;

    /// Applies delivery receipts. A receipt whose submit is not recorded yet
    /// is kept and applied when it is. Returns messages that became final.
    async fn apply_receipts(&self, receipts: Vec<Receipt>) -> Result<Vec<Message>, StoreError>;

    /// Moves due retries back to their queue, expires overdue queued
    /// messages and purges what `retention` no longer keeps.
    async fn maintain(
        &self,
        now: Micros,
        retention: Retention,
    ) -> Result<MaintenanceReport, StoreError>;

    /// Carrier ids of `connector` submits still waiting for a receipt. The
    /// in-process simulated carrier uses it to resume after a restart, as a
    /// real SMSC resends pending receipts when the ESME binds again.
    async fn awaiting_receipts(&self, connector: &str) -> Result<Vec<String>, StoreError>;

    /// Ready messages per class, across connectors.
    fn queue_depths(&self) -> QueueDepths;

    /// Messages waiting for a retry.
    fn retry_depth(&self) -> u64;
}

/// API keys: only argon2 hashes of their secrets.
#[async_trait]
pub trait KeyStore: Send + Sync + 'static {
    /// Stores a new API key. `false` if the name is taken.
    async fn create_api_key(&self, key: ApiKeyRecord) -> Result<bool, StoreError>;

    /// An API key by its public id.
    async fn api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>, StoreError>;

    /// Every API key, revoked ones included.
    async fn api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError>;

    /// Revokes the key named `name`. `false` if there is none.
    async fn revoke_api_key(&self, name: &str, at: Micros) -> Result<bool, StoreError>;

    /// How many keys were ever revoked: read every fraction of a second by
    /// every node, which drops its cached verifications when it grows, so
    /// it must be cheap.
    async fn revocations(&self) -> Result<u64, StoreError>;
}

/// Inbound messages and the opt-outs their STOP/START keywords set.
#[async_trait]
pub trait InboundStore: Send + Sync + 'static {
    /// Records that `number` opted out of marketing (STOP).
    async fn opt_out(&self, number: &str, at: Micros) -> Result<(), StoreError>;

    /// Removes an opt-out (START). `false` if there was none.
    async fn opt_in(&self, number: &str) -> Result<bool, StoreError>;

    /// Whether `number` has opted out.
    async fn is_opted_out(&self, number: &str) -> Result<bool, StoreError>;

    /// Stores inbound messages, applying their opt-out/opt-in action, and
    /// queues a webhook for each when `webhook_url` is set — all in one write.
    async fn record_inbound(
        &self,
        records: Vec<InboundRecord>,
        webhook_url: Option<String>,
    ) -> Result<(), StoreError>;

    /// Inbound messages after `after` (exclusive) in arrival order.
    async fn inbound(
        &self,
        after: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<InboundRecord>, StoreError>;
}

/// Webhook deliveries, queued by the writes that make them due.
#[async_trait]
pub trait WebhookStore: Send + Sync + 'static {
    /// Claims up to `max` webhook deliveries due at `now`; each stays claimed
    /// until `now + lease`, after which another claim may take it again.
    async fn claim_webhooks(
        &self,
        now: Micros,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<WebhookJob>, StoreError>;

    /// Records what became of claimed deliveries.
    async fn finish_webhooks(
        &self,
        results: Vec<(WebhookJob, WebhookResult)>,
    ) -> Result<(), StoreError>;

    /// Webhook deliveries waiting (due or not).
    fn webhook_depth(&self) -> u64;
}

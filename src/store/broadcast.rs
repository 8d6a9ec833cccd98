//! The broadcast role of a store: broadcast records, their audience and the
//! exact counters of their messages.
//!
//! A broadcast's audience is fixed when it is created (the current member
//! lists of its groups plus the numbers named directly, de-duplicated) and
//! read in order by a cursor: [`BroadcastStore::fan_out`] turns the next
//! recipients into queued messages and moves the cursor in one atomic
//! write, so a restart, or a second node doing the same, never turns a
//! recipient into a second message. Nothing proportional to the audience
//! happens when a broadcast is created, approved or canceled.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{NewMessage, StoreError};
use crate::model::{Class, Encoding, MessageId, Micros, Status};

/// Whether a broadcast reaches the public. There is no default anywhere:
/// every caller names one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The named audience.
    Live,
    /// Only the exercise group, with the exercise prefix on the text.
    Exercise,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Live => "live",
            Mode::Exercise => "exercise",
        }
    }
}

/// Where a broadcast is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BroadcastStatus {
    /// Waiting for a second principal to approve it.
    PendingApproval,
    /// Approved (or needing no approval): recipients are being turned into
    /// messages and sent.
    Sending,
    /// Every recipient is a message that left the queue (or was refused).
    Completed,
    /// Stopped: recipients not yet submitted get nothing.
    Canceled,
    /// Refused by an approver; nothing was sent.
    Rejected,
}

impl BroadcastStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            BroadcastStatus::PendingApproval => "pending_approval",
            BroadcastStatus::Sending => "sending",
            BroadcastStatus::Completed => "completed",
            BroadcastStatus::Canceled => "canceled",
            BroadcastStatus::Rejected => "rejected",
        }
    }

    /// Whether the status can no longer change.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            BroadcastStatus::Completed | BroadcastStatus::Canceled | BroadcastStatus::Rejected
        )
    }
}

/// The CAP alert a broadcast came from: what `<references>` of a later
/// Update or Cancel names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapOrigin {
    pub sender: String,
    pub identifier: String,
    pub sent: String,
}

/// A broadcast as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BroadcastRecord {
    pub id: MessageId,
    pub title: String,
    /// The final text every recipient gets (exercise prefix included).
    pub text: String,
    pub encoding: Encoding,
    pub segments: u32,
    pub class: Class,
    pub mode: Mode,
    pub status: BroadcastStatus,
    /// Owner of its messages (an API key's owner, or `operator:NAME`).
    pub owner: String,
    /// Who created it, as the two-person rule compares principals.
    pub created_by: String,
    pub created_at: Micros,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<Micros>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canceled_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done_at: Option<Micros>,
    /// Groups of the audience, as named (exercise: the exercise group).
    pub groups: Vec<String>,
    /// Numbers named directly: E.164, sorted, distinct.
    pub recipients: Vec<String>,
    /// Connectors its messages are spread over.
    pub route: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// How long each message may wait to be submitted.
    pub validity_micros: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap: Option<CapOrigin>,
    /// Recipients in the de-duplicated audience (set by the store).
    #[serde(default)]
    pub total: u64,
    /// Last recipient turned into a message (set by the store).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Recipients turned into messages.
    #[serde(default)]
    pub fanned: u64,
    /// Recipients refused (limits, opt-outs, scripts): counted, never sent.
    #[serde(default)]
    pub refused: u64,
    /// Store-private: the member lists the audience was fixed to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lists: Vec<u64>,
}

impl BroadcastRecord {
    /// Recipients not yet turned into messages nor refused.
    pub fn unfanned(&self) -> u64 {
        self.total.saturating_sub(self.fanned + self.refused)
    }
}

/// Messages of a broadcast per status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusCounts {
    pub queued: u64,
    pub submitted: u64,
    pub delivered: u64,
    pub failed: u64,
    pub expired: u64,
    pub canceled: u64,
}

/// The slot of a message status among [`StatusCounts`] (as stores keep
/// them: one counter per slot).
pub fn count_slot(status: Status) -> usize {
    match status {
        Status::Queued => 0,
        Status::Submitted => 1,
        Status::Delivered => 2,
        Status::Failed | Status::Rejected | Status::RateLimited => 3,
        Status::Expired => 4,
        Status::Canceled => 5,
    }
}

impl StatusCounts {
    /// From the per-slot counters of [`count_slot`].
    pub fn from_slots(slots: [i64; 6]) -> StatusCounts {
        let n = |i: usize| u64::try_from(slots[i]).unwrap_or(0);
        StatusCounts {
            queued: n(0),
            submitted: n(1),
            delivered: n(2),
            failed: n(3),
            expired: n(4),
            canceled: n(5),
        }
    }

    pub fn messages(&self) -> u64 {
        self.queued + self.submitted + self.delivered + self.failed + self.expired + self.canceled
    }
}

/// A broadcast and the counts of its messages.
#[derive(Debug, Clone, PartialEq)]
pub struct BroadcastState {
    pub record: BroadcastRecord,
    pub counts: StatusCounts,
}

/// A change of a broadcast's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// pending_approval → sending. Refused when `by` created it.
    Approve {
        by: String,
        at: Micros,
        comment: Option<String>,
    },
    /// pending_approval → rejected.
    Reject {
        by: String,
        at: Micros,
        comment: Option<String>,
    },
    /// pending_approval or sending → canceled; its queued messages become
    /// `canceled` in the same write.
    Cancel { by: String, at: Micros },
    /// sending → completed, once every recipient is fanned out (or
    /// refused) and none of its messages is still queued.
    Complete { at: Micros },
}

/// What became of a [`Decision`].
#[derive(Debug, Clone, PartialEq)]
pub enum Decided {
    Done(Box<BroadcastState>),
    NotFound,
    /// The broadcast is in a status the decision does not apply to.
    WrongState(BroadcastStatus),
    /// An approval by the broadcast's creator.
    SelfApproval,
    /// `Complete` while recipients or queued messages remain.
    NotYet,
}

/// Why a broadcast could not be created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateRefused {
    /// A group of the audience does not exist.
    UnknownGroup(String),
}

/// The result of one [`BroadcastStore::fan_out`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FanOut {
    /// Messages stored and queued; the cursor moved.
    Applied { created: u64, refused: u64 },
    /// The cursor was not where the caller read it (another writer moved
    /// it), or the broadcast is no longer sending: nothing written.
    Stale,
}

#[async_trait]
pub trait BroadcastStore: Send + Sync + 'static {
    /// Stores a new broadcast, fixing its audience: the current member
    /// lists of `record.groups` plus `record.recipients`, de-duplicated;
    /// sets `total`.
    async fn create_broadcast(
        &self,
        record: BroadcastRecord,
    ) -> Result<Result<BroadcastState, CreateRefused>, StoreError>;

    async fn broadcast(&self, id: MessageId) -> Result<Option<BroadcastState>, StoreError>;

    /// Broadcasts created before `before` (exclusive), newest first.
    async fn broadcasts(
        &self,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<BroadcastState>, StoreError>;

    /// Broadcasts that are sending (the fan-out's work list).
    async fn sending_broadcasts(&self) -> Result<Vec<BroadcastRecord>, StoreError>;

    /// The broadcast created from the CAP alert `(sender, identifier)`.
    async fn broadcast_by_cap(
        &self,
        sender: &str,
        identifier: &str,
    ) -> Result<Option<MessageId>, StoreError>;

    /// Applies `decision` atomically.
    async fn decide_broadcast(
        &self,
        id: MessageId,
        decision: Decision,
    ) -> Result<Decided, StoreError>;

    /// Up to `limit` recipients of the audience after `after` (exclusive),
    /// in order.
    async fn audience(
        &self,
        id: MessageId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError>;

    /// Stores and queues `items` (messages to recipients of the audience
    /// after `after` up to `last`), counting refusals (limits, opt-outs)
    /// and `refused` more refused before the store, and moves the cursor to
    /// `last` — only if the cursor is at `after` and the broadcast is
    /// sending.
    async fn fan_out(
        &self,
        id: MessageId,
        after: Option<String>,
        last: String,
        items: Vec<NewMessage>,
        refused: u64,
    ) -> Result<FanOut, StoreError>;

    /// Ready messages of `class` queued for `connector`.
    async fn ready_depth(&self, connector: &str, class: Class) -> Result<u64, StoreError>;
}

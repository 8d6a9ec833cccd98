//! The domain's plain data: message classes and statuses, ids, the stored
//! message record and timestamps. No I/O here.

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub use crate::text::Encoding;
pub use receipt::{InboundRecord, Receipt, ReceiptState};

mod receipt;

/// Microseconds since the Unix epoch. Every stored timestamp uses it.
pub type Micros = i64;

/// The current time in [`Micros`].
pub fn now_micros() -> Micros {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Formats [`Micros`] as RFC 3339 with microsecond precision, UTC.
pub fn format_micros(t: Micros) -> String {
    match jiff::Timestamp::from_microsecond(t) {
        Ok(ts) => format!("{ts:.6}"),
        Err(_) => String::from("1970-01-01T00:00:00.000Z"),
    }
}

/// Message class, which is also its priority: lower value goes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    Emergency = 0,
    Otp = 1,
    Transactional = 2,
    Marketing = 3,
}

impl Class {
    /// Every class, highest priority first.
    pub const ALL: [Class; 4] = [
        Class::Emergency,
        Class::Otp,
        Class::Transactional,
        Class::Marketing,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Emergency => "emergency",
            Class::Otp => "otp",
            Class::Transactional => "transactional",
            Class::Marketing => "marketing",
        }
    }

    /// Priority as an index into per-class arrays (0 = highest).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The class at a priority index.
    pub fn from_index(i: u8) -> Option<Class> {
        Class::ALL.get(usize::from(i)).copied()
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Class {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Class::ALL.into_iter().find(|c| c.as_str() == s).ok_or(())
    }
}

/// Lifecycle of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Queued,
    Submitted,
    Delivered,
    Failed,
    Expired,
    Rejected,
    Canceled,
    RateLimited,
}

impl Status {
    /// Whether the status can no longer change.
    pub fn is_final(self) -> bool {
        !matches!(self, Status::Queued | Status::Submitted)
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Submitted => "submitted",
            Status::Delivered => "delivered",
            Status::Failed => "failed",
            Status::Expired => "expired",
            Status::Rejected => "rejected",
            Status::Canceled => "canceled",
            Status::RateLimited => "rate_limited",
        }
    }
}

impl FromStr for Status {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        [
            Status::Queued,
            Status::Submitted,
            Status::Delivered,
            Status::Failed,
            Status::Expired,
            Status::Rejected,
            Status::Canceled,
            Status::RateLimited,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
        .ok_or(())
    }
}

/// A message id: a ULID, so ids sort by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub u128);

/// Ids handed out by this process increase strictly, even within one
/// millisecond, so records keyed by id list in creation order.
static GENERATOR: std::sync::Mutex<ulid::Generator> = std::sync::Mutex::new(ulid::Generator::new());

impl MessageId {
    /// A fresh id for a message created now.
    pub fn generate() -> Self {
        let mut g = GENERATOR
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Overflow needs 2^80 ids in one millisecond; fall back to a random one.
        MessageId(
            g.generate()
                .map_or_else(|_| ulid::Ulid::generate().0, |u| u.0),
        )
    }

    /// The smallest id of anything created at or after `at` (micros): ids
    /// before it were created earlier, which is how records keyed by id are
    /// aged out.
    pub fn first_at(at: Micros) -> Self {
        let millis = u128::try_from(at.max(0) / 1000).unwrap_or(0) & ((1 << 48) - 1);
        MessageId(millis << 80)
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&ulid::Ulid(self.0), f)
    }
}

impl FromStr for MessageId {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        if s.len() != 26 {
            return Err(());
        }
        ulid::Ulid::from_string(s)
            .map(|u| MessageId(u.0))
            .map_err(|_| ())
    }
}

impl Serialize for MessageId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MessageId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse()
            .map_err(|()| serde::de::Error::custom("invalid message id"))
    }
}

/// A message as the store keeps it: what was accepted plus its progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub id: MessageId,
    pub to: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    pub body: String,
    pub class: Class,
    pub encoding: Encoding,
    pub segments: u32,
    pub status: Status,
    /// Connectors in failover order; `route_index` is the current one.
    pub route: Vec<String>,
    #[serde(default)]
    pub route_index: u32,
    /// Connector the message was submitted through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connector: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub smsc_message_ids: Vec<String>,
    /// Receipts received, per part: delivered and failed counts.
    #[serde(default)]
    pub parts_delivered: u32,
    #[serde(default)]
    pub parts_failed: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub created_at: Micros,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitted_at: Option<Micros>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done_at: Option<Micros>,
    /// Past this, a message not yet submitted is expired, never sent.
    pub expires_at: Micros,
    #[serde(default)]
    pub attempts: u32,
    /// Position in its class queue (FIFO within a class).
    pub seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    /// Name of the API key (or principal) that created it.
    pub owner: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Held until then by `on_submit` (e.g. quiet hours); `None` when not
    /// deferred. Kept after the message went out, as a record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<Micros>,
    /// While queued: the parts of a long message a carrier already took on an
    /// earlier try, so a retry sends only the rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial: Option<PartialSubmit>,
    /// While queued: the clear text sealed (an OTP's code), when `body`
    /// holds only a masked copy. Dropped once the message is submitted or
    /// final, so the clear text never outlives its SMS (see `seal`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_body: Option<String>,
    /// The broadcast this message is one recipient of: its status changes
    /// are counted in the broadcast's counters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broadcast: Option<MessageId>,
}

impl Message {
    /// A fresh queued transactional message of one GSM segment to `to` on
    /// the `sim` connector, created `at` and valid for an hour: where tests
    /// and benchmarks start (admission builds real ones from a request).
    pub fn sample(to: impl Into<String>, at: Micros) -> Message {
        Message {
            id: MessageId::generate(),
            to: to.into(),
            from: None,
            body: "hello".into(),
            class: Class::Transactional,
            encoding: Encoding::Gsm7,
            segments: 1,
            status: Status::Queued,
            route: vec!["sim".into()],
            route_index: 0,
            connector: None,
            smsc_message_ids: Vec::new(),
            parts_delivered: 0,
            parts_failed: 0,
            error: None,
            created_at: at,
            submitted_at: None,
            done_at: None,
            expires_at: at + 3_600_000_000,
            attempts: 0,
            seq: 0,
            callback_url: None,
            owner: "test".into(),
            idempotency_key: None,
            tags: Vec::new(),
            not_before: None,
            partial: None,
            sealed_body: None,
            broadcast: None,
        }
    }
}

/// Parts of a long message that a connector's carrier accepted on a try
/// where other parts failed.
///
/// Resending an accepted part would reach the handset twice; resending it
/// under a new concatenation reference would leave the handset with two
/// unfinished messages. So the retry on the same connector sends only the
/// missing parts, under the same reference, and the message records every
/// part's id once all are in. On any other connector it starts over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartialSubmit {
    /// The connector whose carrier holds the accepted parts.
    pub connector: String,
    /// Concatenation reference every part was (and will be) sent with.
    pub reference: u16,
    /// Per part in order: the carrier's id, or `None` while still to send.
    pub smsc_ids: Vec<Option<String>>,
}

impl PartialSubmit {
    /// Parts still to send.
    pub fn missing(&self) -> usize {
        self.smsc_ids.iter().filter(|id| id.is_none()).count()
    }
}

impl Message {
    /// The connector the message is currently queued for.
    pub fn current_connector(&self) -> Option<&str> {
        self.route
            .get(usize::try_from(self.route_index).unwrap_or(usize::MAX))
            .map(String::as_str)
    }

    /// The status a reader should see at `now`: a queued message past its
    /// validity is already expired even if the sweeper has not reached it.
    pub fn visible_status(&self, now: Micros) -> Status {
        if self.status == Status::Queued && now >= self.expires_at {
            Status::Expired
        } else {
            self.status
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_id_round_trips_through_text() {
        let id = MessageId::generate();
        let parsed: MessageId = id.to_string().parse().expect("parse");
        assert_eq!(parsed, id);
        assert!("not-an-id".parse::<MessageId>().is_err());
    }

    #[test]
    fn ids_increase_strictly() {
        let ids: Vec<MessageId> = (0..1000).map(|_| MessageId::generate()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn classes_order_by_priority() {
        assert!(Class::Emergency < Class::Otp);
        assert!(Class::Transactional < Class::Marketing);
        assert_eq!("otp".parse::<Class>(), Ok(Class::Otp));
        assert_eq!("spam".parse::<Class>(), Err(()));
    }

    #[test]
    fn statuses_parse_from_their_wire_names() {
        for st in [Status::Queued, Status::Delivered, Status::RateLimited] {
            assert_eq!(st.as_str().parse::<Status>(), Ok(st));
        }
        assert_eq!("lost".parse::<Status>(), Err(()));
    }

    #[test]
    fn timestamps_format_as_rfc3339_millis() {
        assert_eq!(format_micros(1_500_000), "1970-01-01T00:00:01.500000Z");
    }
}

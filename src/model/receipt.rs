//! What carriers report back: delivery receipts and inbound
//! (mobile-originated) messages as stored. Connectors produce them and the
//! store keeps them, so they live here, below both.

use serde::{Deserialize, Serialize};

use super::{MessageId, Micros};

/// The final state a carrier reports for one submitted part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptState {
    Delivered,
    Undeliverable,
    Expired,
    Rejected,
    Deleted,
    Unknown,
}

impl ReceiptState {
    /// Whether the part reached the handset.
    pub fn is_delivered(self) -> bool {
        self == ReceiptState::Delivered
    }
}

/// A delivery receipt from a connector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Receipt {
    pub connector: String,
    pub smsc_id: String,
    pub state: ReceiptState,
    /// Carrier error code, when it gave one.
    #[serde(default)]
    pub error_code: Option<String>,
    pub at: Micros,
}

impl Receipt {
    /// What a failed part records as the message's error.
    pub fn error_text(&self) -> String {
        let word = match self.state {
            ReceiptState::Delivered => "delivered",
            ReceiptState::Undeliverable => "undeliverable",
            ReceiptState::Expired => "expired at the carrier",
            ReceiptState::Rejected => "rejected by the carrier",
            ReceiptState::Deleted => "deleted by the carrier",
            ReceiptState::Unknown => "unknown final state",
        };
        match &self.error_code {
            Some(code) => format!("{word}: error {code}"),
            None => word.to_string(),
        }
    }
}

/// An inbound (mobile-originated) message as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundRecord {
    /// A ULID: inbound messages page in arrival order.
    pub id: MessageId,
    pub connector: String,
    pub from: String,
    pub to: String,
    pub body: String,
    pub received_at: Micros,
    /// `opt_out` / `opt_in` when the body was a STOP/START keyword.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

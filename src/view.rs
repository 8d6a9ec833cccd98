//! The JSON views of messages and inbound messages: what `GET /v1/...`
//! answers and what webhooks POST, from one definition so the two never
//! drift apart.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::{InboundRecord, Message, format_micros, now_micros};

/// A message and its progress.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MessageView {
    pub id: String,
    pub to: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    pub class: String,
    /// queued, submitted, delivered, failed, expired, rejected, canceled, rate_limited
    pub status: String,
    pub encoding: String,
    pub segments: u32,
    pub connector: Option<String>,
    pub smsc_message_ids: Vec<String>,
    pub error: Option<String>,
    pub attempts: u32,
    pub tags: Vec<String>,
    pub created_at: String,
    pub submitted_at: Option<String>,
    pub done_at: Option<String>,
    pub expires_at: String,
    /// When `on_submit` held the message until (e.g. quiet hours); absent
    /// when it was not deferred.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_before: Option<String>,
}

impl MessageView {
    pub fn from_message(m: &Message) -> Self {
        MessageView {
            id: m.id.to_string(),
            to: m.to.clone(),
            from: m.from.clone(),
            class: m.class.as_str().to_string(),
            status: m.visible_status(now_micros()).as_str().to_string(),
            encoding: m.encoding.as_str().to_string(),
            segments: m.segments,
            connector: m.connector.clone(),
            smsc_message_ids: m.smsc_message_ids.clone(),
            error: m.error.clone(),
            attempts: m.attempts,
            tags: m.tags.clone(),
            created_at: format_micros(m.created_at),
            submitted_at: m.submitted_at.map(format_micros),
            done_at: m.done_at.map(format_micros),
            expires_at: format_micros(m.expires_at),
            not_before: m.not_before.map(format_micros),
        }
    }
}

/// An inbound message.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InboundView {
    pub id: String,
    pub connector: String,
    pub from: String,
    pub to: String,
    pub body: String,
    pub received_at: String,
    /// `opt_out` or `opt_in` when the body was a STOP/START keyword.
    pub action: Option<String>,
}

impl From<&InboundRecord> for InboundView {
    fn from(r: &InboundRecord) -> Self {
        InboundView {
            id: r.id.to_string(),
            connector: r.connector.clone(),
            from: r.from.clone(),
            to: r.to.clone(),
            body: r.body.clone(),
            received_at: format_micros(r.received_at),
            action: r.action.clone(),
        }
    }
}

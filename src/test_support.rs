//! Builders shared by unit tests.

use crate::model::{Class, Encoding, Message, MessageId, Status, now_micros};

/// A queued transactional message to `to` on the `sim` connector.
pub fn message(to: &str) -> Message {
    let now = now_micros();
    Message {
        id: MessageId::generate(),
        to: to.to_string(),
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
        created_at: now,
        submitted_at: None,
        done_at: None,
        expires_at: now + 3_600_000_000,
        attempts: 0,
        seq: 0,
        callback_url: None,
        owner: "test".into(),
        idempotency_key: None,
        tags: Vec::new(),
        not_before: None,
        partial: None,
    }
}

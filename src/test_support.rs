//! Builders shared by unit tests.

use crate::model::{Message, now_micros};

/// A queued transactional message to `to` on the `sim` connector.
pub fn message(to: &str) -> Message {
    Message::sample(to, now_micros())
}

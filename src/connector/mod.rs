//! Carrier connectors: the [`Connector`] trait the dispatcher submits
//! through, the events (receipts and inbound messages) that connectors
//! report back on one channel, and their readiness ([`Health`]) that
//! routing consults.

pub mod sim;
pub mod smpp;

use std::num::NonZeroU32;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};

use crate::model::Receipt;
use crate::model::{Message, PartialSubmit};

/// A carrier accepted the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitAck {
    /// The carrier's ids, one per submitted part; receipts refer to them.
    pub smsc_ids: Vec<String>,
}

/// Why a submit did not succeed. The variant decides what the dispatcher does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// Worth retrying later on the same connector (link down, timeout, queue full).
    #[error("temporary failure: {0}")]
    Temporary(String),
    /// The carrier asked us to slow down; retry soon.
    #[error("throttled by the carrier")]
    Throttled,
    /// This connector will never take it (bad destination, rejected content):
    /// try the next connector of the route, or fail.
    #[error("permanent failure: {0}")]
    Permanent(String),
    /// The message's validity ended while it waited to be written (for a
    /// window slot, a throttle pause, a TPS permit): it was not sent, and a
    /// late alert or code is worse than none, so it expires.
    #[error("validity ended before the carrier got it")]
    Expired,
}

/// A submit that did not (entirely) succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct SubmitFailure {
    /// Why, and so what the dispatcher does next.
    pub error: SubmitError,
    /// Parts of a long message the carrier took nonetheless, to be kept for
    /// the retry on this connector (see [`PartialSubmit`]).
    pub partial: Option<PartialSubmit>,
}

impl From<SubmitError> for SubmitFailure {
    fn from(error: SubmitError) -> Self {
        SubmitFailure {
            error,
            partial: None,
        }
    }
}

/// An inbound (mobile-originated) message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundMessage {
    pub connector: String,
    pub from: String,
    pub to: String,
    pub body: String,
}

/// What connectors report, on one channel per gateway. Each event carries
/// the [`Ack`] the gateway fires once the event is durably stored (or could
/// not be), so a connector acknowledges the carrier's copy only then.
#[derive(Debug)]
pub enum ConnectorEvent {
    Receipt(Receipt, Ack),
    Inbound(InboundMessage, Ack),
}

/// The gateway's answer to a [`ConnectorEvent`]: stored or not.
///
/// Dropping it unanswered counts as "not stored". Connectors that cannot
/// ask the carrier to resend (the in-process `sim`) pass [`Ack::none`].
#[derive(Debug)]
#[must_use = "an event's ack tells the connector whether to acknowledge the carrier"]
pub struct Ack(Option<oneshot::Sender<bool>>);

impl Ack {
    /// An ack nobody waits for.
    pub fn none() -> Ack {
        Ack(None)
    }

    /// An ack and the receiver the connector waits on: `Ok(true)` once the
    /// event is stored, `Ok(false)` or `Err(_)` when it was not.
    pub fn channel() -> (Ack, oneshot::Receiver<bool>) {
        let (tx, rx) = oneshot::channel();
        (Ack(Some(tx)), rx)
    }

    /// Reports whether the event was durably stored.
    pub fn finish(self, stored: bool) {
        if let Some(tx) = self.0 {
            // The connector may have lost its session meanwhile; then the
            // carrier resends and the answer is moot.
            let _ = tx.send(stored);
        }
    }
}

/// Sender half connectors report events on.
pub type EventSender = mpsc::Sender<ConnectorEvent>;

/// A route to a carrier.
#[async_trait]
pub trait Connector: Send + Sync + 'static {
    /// Unique name from the config.
    fn name(&self) -> &str;
    /// Most submits outstanding at once.
    fn window(&self) -> usize;
    /// Submits per second allowed; `None` for no cap.
    fn tps(&self) -> Option<NonZeroU32>;
    /// Whether it can take submits now (e.g. bound).
    fn is_ready(&self) -> bool;
    /// Hands one message to the carrier and waits for its answer. A message
    /// carrying a [`PartialSubmit`] of this connector has only its missing
    /// parts sent. Nothing is written to the carrier once `msg.expires_at`
    /// has passed ([`SubmitError::Expired`]), however long the submit
    /// waited inside the connector.
    async fn submit(&self, msg: &Message) -> Result<SubmitAck, SubmitFailure>;
    /// Stops: unbinds, drops links. Receipts still in flight may be lost to
    /// the carrier's retry.
    async fn shutdown(&self);
}

/// Whether the connector of a name can take submits now (its
/// [`Connector::is_ready`]); routing lists ready connectors first.
pub type Health = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Readiness by connector name, for routing: `false` for unknown names.
pub fn health_of(connectors: &[Arc<dyn Connector>]) -> Health {
    let connectors: Vec<Arc<dyn Connector>> = connectors.to_vec();
    Arc::new(move |name: &str| connectors.iter().any(|c| c.name() == name && c.is_ready()))
}

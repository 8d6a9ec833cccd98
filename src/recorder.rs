//! Recorders: the tasks that write what happened to messages — submit
//! outcomes from the dispatchers, receipts and inbound messages from the
//! connectors — in batches, one store write per batch, retrying while the
//! store is unavailable. These are facts: they are never dropped while the
//! store is open.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::connector::ConnectorEvent;
use crate::inbound::InboundHandler;
use crate::metrics::Metrics;
use crate::model::{Message, Receipt};
use crate::store::{MessageStore, Outcome, Store, StoreError};

/// Most outcomes or receipts recorded in one store call.
const MAX_RECORD_BATCH: usize = 4096;

/// Records outcomes in batches until every dispatcher sender is gone.
pub async fn record_outcomes(
    store: Arc<dyn MessageStore>,
    mut rx: mpsc::Receiver<Outcome>,
    metrics: Arc<Metrics>,
) {
    let mut batch = Vec::with_capacity(256);
    while rx.recv_many(&mut batch, MAX_RECORD_BATCH).await > 0 {
        let done = persist(&*store, Batch::Outcomes(std::mem::take(&mut batch))).await;
        publish(done.unwrap_or_default(), &metrics);
    }
}

/// Applies receipts and hands inbound messages to `inbound`, in batches,
/// until the event channel closes. Each event's [`Ack`] fires once the batch
/// write that holds it has committed (or failed), so connectors acknowledge
/// the carrier only for what is durable, at one store write per batch.
///
/// [`Ack`]: crate::connector::Ack
pub async fn record_receipts(
    store: Arc<dyn Store>,
    mut events: mpsc::Receiver<ConnectorEvent>,
    metrics: Arc<Metrics>,
    inbound: InboundHandler,
) {
    let mut batch = Vec::with_capacity(256);
    while events.recv_many(&mut batch, MAX_RECORD_BATCH).await > 0 {
        let mut receipts = Vec::with_capacity(batch.len());
        let mut receipt_acks = Vec::with_capacity(batch.len());
        let mut mos = Vec::new();
        let mut mo_acks = Vec::new();
        for ev in batch.drain(..) {
            match ev {
                ConnectorEvent::Receipt(r, ack) => {
                    receipts.push(r);
                    receipt_acks.push(ack);
                }
                ConnectorEvent::Inbound(mo, ack) => {
                    mos.push(mo);
                    mo_acks.push(ack);
                }
            }
        }
        if !mos.is_empty() {
            let stored = inbound.handle(&*store, &metrics, mos).await;
            for (ack, stored) in mo_acks.into_iter().zip(stored) {
                ack.finish(stored);
            }
        }
        let done = persist(&*store, Batch::Receipts(receipts)).await;
        let stored = done.is_some();
        for ack in receipt_acks {
            ack.finish(stored);
        }
        publish(done.unwrap_or_default(), &metrics);
    }
}

/// Facts to write: outcomes of submits or carrier receipts.
enum Batch {
    Outcomes(Vec<Outcome>),
    Receipts(Vec<Receipt>),
}

/// Writes `batch`, retrying while the store is unavailable: outcomes and
/// receipts are facts that must not be dropped. Returns the messages that
/// became final, or `None` when the store is closed and nothing was written.
async fn persist(store: &dyn MessageStore, batch: Batch) -> Option<Vec<Message>> {
    let len = match &batch {
        Batch::Outcomes(b) => b.len(),
        Batch::Receipts(b) => b.len(),
    };
    if len == 0 {
        return Some(Vec::new());
    }
    let mut delay = Duration::from_millis(100);
    loop {
        let result = match &batch {
            Batch::Outcomes(b) => store.record(b.clone()).await,
            Batch::Receipts(b) => store.apply_receipts(b.clone()).await,
        };
        match result {
            Ok(done) => return Some(done),
            Err(StoreError::Closed) => {
                tracing::warn!(
                    count = len,
                    "store closed; results not recorded (messages stay queued, receipts are left to the carrier to resend)"
                );
                return None;
            }
            Err(e) => {
                tracing::warn!(error = %e, "recording failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Counts messages that reached a final status.
pub fn publish(done: Vec<Message>, metrics: &Metrics) {
    for m in done {
        metrics.finished(&m);
    }
}

//! Releases receipts `dlr_delay` after their `submit_sm`.
//!
//! The delay is the same for every message, so due times arrive in order and a plain FIFO
//! is a correct timer queue: one task sleeps until the head is due, then hands every due
//! receipt to the registry in one lock. No task or timer per message, so this keeps up
//! with any submit rate the sessions can take.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{sync::Notify, time::Instant};
use tokio_util::sync::CancellationToken;

use super::{receipt::Receipt, registry::Registry};

/// See the module docs.
#[derive(Debug)]
pub(super) struct Scheduler {
    delay: Duration,
    queue: Mutex<VecDeque<(Instant, Receipt)>>,
    /// Wakes the timer task when the queue goes from empty to non-empty.
    wake: Notify,
}

impl Scheduler {
    pub(super) fn new(delay: Duration) -> Self {
        Self {
            delay,
            queue: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
        }
    }

    /// Queues receipts accepted together (a session's read batch) under one lock.
    pub(super) fn schedule(&self, receipts: impl IntoIterator<Item = Receipt>) {
        let due = Instant::now() + self.delay;
        let was_empty = {
            let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            let was_empty = queue.is_empty();
            queue.extend(receipts.into_iter().map(|receipt| (due, receipt)));
            was_empty && !queue.is_empty()
        };
        if was_empty {
            // notify_one keeps a permit if the task is not waiting yet: no lost wake-up.
            self.wake.notify_one();
        }
    }

    /// Number of receipts waiting for their delay to pass.
    pub(super) fn len(&self) -> usize {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// The timer task: runs until `cancel` fires.
    pub(super) async fn run(
        self: Arc<Self>,
        registry: Arc<Mutex<Registry>>,
        cancel: CancellationToken,
    ) {
        let mut due_now = Vec::new();
        loop {
            let next_due = {
                let now = Instant::now();
                let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                while queue.front().is_some_and(|(due, _)| *due <= now) {
                    if let Some((_, receipt)) = queue.pop_front() {
                        due_now.push(receipt);
                    }
                }
                queue.front().map(|(due, _)| *due)
            };
            if !due_now.is_empty() {
                let mut registry = registry.lock().unwrap_or_else(|p| p.into_inner());
                for receipt in due_now.drain(..) {
                    registry.dispatch(receipt);
                }
            }
            match next_due {
                Some(due) => tokio::select! {
                    () = tokio::time::sleep_until(due) => {}
                    () = cancel.cancelled() => return,
                },
                None => tokio::select! {
                    () = self.wake.notified() => {}
                    () = cancel.cancelled() => return,
                },
            }
        }
    }
}

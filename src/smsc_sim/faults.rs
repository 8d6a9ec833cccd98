//! Scripted `submit_sm` answers, for fault tests: "answer the next submits with
//! these statuses" (e.g. `ESME_RINVBNDSTS` once, or OK, `ESME_RTHROTTLED`, OK to fail
//! the middle part of a long message).
//!
//! The hot path costs one relaxed load while nothing is queued.

use std::{
    collections::VecDeque,
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use rusmpp::CommandStatus;

/// See the module docs.
#[derive(Debug, Default)]
pub(super) struct SubmitScript {
    queued: AtomicUsize,
    statuses: Mutex<VecDeque<CommandStatus>>,
}

impl SubmitScript {
    /// Appends answers for the next `submit_sm` (over all sessions, in arrival order).
    /// `ESME_ROK` means "handle it normally".
    pub(super) fn push(&self, statuses: impl IntoIterator<Item = CommandStatus>) {
        let mut queue = self.statuses.lock().unwrap_or_else(|p| p.into_inner());
        queue.extend(statuses);
        self.queued.store(queue.len(), Ordering::Release);
    }

    /// The scripted answer for this `submit_sm`, if one is queued and is an error.
    pub(super) fn next_error(&self) -> Option<CommandStatus> {
        if self.queued.load(Ordering::Acquire) == 0 {
            return None;
        }
        let mut queue = self.statuses.lock().unwrap_or_else(|p| p.into_inner());
        let status = queue.pop_front();
        self.queued.store(queue.len(), Ordering::Release);
        status.filter(|s| *s != CommandStatus::EsmeRok)
    }
}

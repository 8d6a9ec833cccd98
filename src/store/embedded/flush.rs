//! Deferred durability for facts nobody is waiting on.
//!
//! While admissions flow (one was committed within [`LAZY_MAX`]),
//! submit outcomes and carrier receipts are committed without an fsync
//! when nothing else in the batch needs one; their answers are held until
//! a durable commit covers them — the next admission's, or one this timer
//! asks for [`LAZY_MAX`] after the first was held. Under load a message
//! then costs one fsync, shared with other admissions, instead of three,
//! and admissions wait behind fewer fsyncs. With no admissions to share
//! with, outcomes and receipts are made durable at once, as before. Nothing is
//! answered before it is durable: a `deliver_sm_resp` still follows the
//! durable commit of its receipt.

use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::mpsc;

use super::WriteOp;

/// Longest a held answer waits for a durable commit.
pub(super) const LAZY_MAX: Duration = Duration::from_millis(25);
/// Most held items before a durable commit is made regardless.
pub(super) const LAZY_MOST: usize = 8192;

/// Asks the writer for a durable commit [`LAZY_MAX`] after it is armed.
/// Sleeps on a condition variable while nothing is held: an idle store
/// wakes nobody.
pub(super) struct FlushTimer {
    /// How long after arming it asks ([`LAZY_MAX`] outside tests).
    pub(super) window: Duration,
    state: Mutex<TimerState>,
    wake: Condvar,
}

#[derive(Default)]
struct TimerState {
    armed: bool,
    stopped: bool,
}

impl FlushTimer {
    pub(super) fn new(window: Duration) -> FlushTimer {
        FlushTimer {
            window,
            state: Mutex::default(),
            wake: Condvar::new(),
        }
    }

    /// Starts the countdown if it is not running.
    pub(super) fn arm(&self) {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if !s.armed {
            s.armed = true;
            self.wake.notify_one();
        }
    }

    /// Ends [`FlushTimer::run`].
    pub(super) fn stop(&self) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .stopped = true;
        self.wake.notify_one();
    }

    /// The timer thread: each time it is armed, waits its window and
    /// sends the writer a [`WriteOp::Flush`], until stopped or the store
    /// is gone.
    pub(super) fn run(&self, writer: &mpsc::WeakSender<WriteOp>) {
        loop {
            {
                let guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                let s = self
                    .wake
                    .wait_while(guard, |s| !s.armed && !s.stopped)
                    .unwrap_or_else(PoisonError::into_inner);
                if s.stopped {
                    return;
                }
            }
            std::thread::sleep(self.window);
            let Some(writer) = writer.upgrade() else {
                return;
            };
            let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            if s.stopped {
                return;
            }
            // A full channel means the writer is busy; its next batch will
            // see the held answers' age. Disarm only once the ask is queued.
            if writer.try_send(WriteOp::Flush).is_ok() {
                s.armed = false;
            }
        }
    }
}

//! One bind's shared state: the live client (when bound), its window of
//! outstanding `submit_sm`, and a throttle pause. The session task writes
//! it; submits read it. Locks guard plain fields only and are never held
//! across an await.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusmppc::Client;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What a bind is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Submits and receives receipts and inbound messages.
    Transceiver,
    /// Only submits.
    Transmitter,
    /// Only receives (next to transmitters).
    Receiver,
}

impl Role {
    pub fn submits(self) -> bool {
        !matches!(self, Role::Receiver)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Transceiver => "transceiver",
            Role::Transmitter => "transmitter",
            Role::Receiver => "receiver",
        }
    }
}

#[derive(Debug, Default)]
struct State {
    client: Option<Client>,
    paused_until: Option<Instant>,
}

/// See the module docs.
#[derive(Debug)]
pub struct BindSlot {
    /// Position among the connector's binds (logs, spans).
    pub index: usize,
    pub role: Role,
    /// One permit per `submit_sm` allowed outstanding on this bind.
    pub window: Arc<Semaphore>,
    bound: AtomicBool,
    state: Mutex<State>,
}

impl BindSlot {
    pub fn new(index: usize, role: Role, window: usize) -> BindSlot {
        BindSlot {
            index,
            role,
            window: Arc::new(Semaphore::new(window)),
            bound: AtomicBool::new(false),
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Each critical section assigns or clones one field: a panic cannot
        // leave the state half-written, so poisoning is safe to ignore.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the bind is up.
    pub fn is_bound(&self) -> bool {
        self.bound.load(Ordering::Acquire)
    }

    /// The client, while bound.
    pub fn client(&self) -> Option<Client> {
        self.state().client.clone()
    }

    /// Called by the session task when the bind comes up or goes down.
    pub fn set_client(&self, client: Option<Client>) {
        let up = client.is_some();
        self.state().client = client;
        self.bound.store(up, Ordering::Release);
    }

    /// Stops submits on this bind for `pause` (the carrier throttled us).
    pub fn pause(&self, pause: Duration) {
        let until = Instant::now() + pause;
        let mut state = self.state();
        if state.paused_until.is_none_or(|t| t < until) {
            state.paused_until = Some(until);
        }
    }

    /// Whether a throttle pause is running.
    pub fn is_paused(&self) -> bool {
        self.state()
            .paused_until
            .is_some_and(|t| t > Instant::now())
    }

    /// Waits until no throttle pause is running (or `stop`).
    pub async fn wait_out_pause(&self, stop: &CancellationToken) {
        loop {
            let until = self.state().paused_until;
            match until {
                Some(t) if t > Instant::now() => {
                    tokio::select! {
                        () = tokio::time::sleep_until(t) => {}
                        () = stop.cancelled() => return,
                    }
                }
                _ => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_pause_holds_submits_until_it_ends() {
        let slot = BindSlot::new(0, Role::Transceiver, 4);
        slot.pause(Duration::from_millis(100));
        assert!(slot.is_paused());
        let started = Instant::now();
        slot.wait_out_pause(&CancellationToken::new()).await;
        assert!(started.elapsed() >= Duration::from_millis(100));
        assert!(!slot.is_paused());
    }

    #[test]
    fn a_shorter_pause_does_not_cut_a_longer_one() {
        let slot = BindSlot::new(0, Role::Transceiver, 4);
        slot.pause(Duration::from_secs(10));
        slot.pause(Duration::from_millis(1));
        assert!(slot.is_paused());
    }
}

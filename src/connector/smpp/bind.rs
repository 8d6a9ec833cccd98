//! One bind's shared state: the live client (when bound), its window of
//! outstanding `submit_sm`, a throttle pause, and a way for submits to ask
//! the session to rebind. The session task writes it; submits read it. Locks guard plain fields only and are never held
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
    /// Counts sessions, so a late answer from an old session cannot end a new one.
    generation: u64,
    /// Cancelled to make the current session drop and rebind.
    rebind: CancellationToken,
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

    /// The client while bound, with the session's generation (for
    /// [`BindSlot::request_rebind`]).
    pub fn client(&self) -> Option<(Client, u64)> {
        let state = self.state();
        state.client.clone().map(|c| (c, state.generation))
    }

    /// Called by the session task when the bind comes up or goes down. For a
    /// new session, returns the token that [`BindSlot::request_rebind`]
    /// cancels.
    pub fn set_client(&self, client: Option<Client>) -> CancellationToken {
        let up = client.is_some();
        let mut state = self.state();
        if up {
            state.generation += 1;
            state.rebind = CancellationToken::new();
        }
        state.client = client;
        self.bound.store(up, Ordering::Release);
        state.rebind.clone()
    }

    /// Asks session `generation` to drop its bind and bind again (the SMSC
    /// says the bind state is wrong: `ESME_RINVBNDSTS`, `ESME_RALYBND`). No
    /// more submits go to it meanwhile. Ignored if that session is gone.
    /// Returns whether it was still the current session.
    pub fn request_rebind(&self, generation: u64) -> bool {
        let state = self.state();
        if state.generation != generation || state.client.is_none() {
            return false;
        }
        self.bound.store(false, Ordering::Release);
        state.rebind.cancel();
        true
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

    #[tokio::test]
    async fn a_rebind_request_ends_only_the_session_it_names() {
        let slot = BindSlot::new(0, Role::Transceiver, 4);
        assert!(!slot.request_rebind(0), "nothing bound yet");
        let (near, _far) = tokio::io::duplex(1024);
        let (client, _events) = rusmppc::ConnectionBuilder::new().connected(near);
        let first = slot.set_client(Some(client.clone()));
        let (_, generation) = slot.client().expect("bound");
        assert!(slot.request_rebind(generation));
        assert!(first.is_cancelled());
        assert!(!slot.is_bound(), "no submits go to a bind being dropped");
        slot.set_client(None);
        let second = slot.set_client(Some(client));
        // A late answer from the first session must not end the second.
        assert!(!slot.request_rebind(generation));
        assert!(!second.is_cancelled());
        assert!(slot.is_bound());
    }

    #[test]
    fn a_shorter_pause_does_not_cut_a_longer_one() {
        let slot = BindSlot::new(0, Role::Transceiver, 4);
        slot.pause(Duration::from_secs(10));
        slot.pause(Duration::from_millis(1));
        assert!(slot.is_paused());
    }
}

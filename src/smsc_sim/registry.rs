//! Who is connected, who can receive, and receipts waiting for a receiver.
//!
//! One mutex guards the whole registry so that "find a receiver or park the receipt" and
//! "a receiver binds and takes the parked receipts" can never interleave and lose or
//! duplicate a receipt. It is never held across an await; sends go into unbounded
//! channels, which never block.

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    sync::Arc,
};

use rusmpp::pdus::DeliverSm;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{
    receipt::Receipt,
    stats::{BindKind, SessionCounters, SessionStats},
};

/// Something a session must write to its ESME besides responses.
#[derive(Debug)]
pub(super) enum Outbound {
    Receipt(Receipt),
    /// A mobile-originated message; `written` is completed once it is handed to the socket.
    Mo {
        pdu: DeliverSm,
        written: oneshot::Sender<()>,
    },
}

/// A session's registration.
#[derive(Debug)]
pub(super) struct Entry {
    pub peer: SocketAddr,
    pub cancel: CancellationToken,
    pub tx: mpsc::UnboundedSender<Outbound>,
    pub counters: Arc<SessionCounters>,
    pub bind: Option<(BindKind, Arc<str>)>,
}

/// See the module docs.
#[derive(Debug)]
pub(super) struct Registry {
    sessions: HashMap<u64, Entry>,
    /// Receiver-capable sessions by system_id, in bind order.
    receivers: HashMap<Arc<str>, Vec<u64>>,
    /// Receipts for system_ids that have no receiver-capable bind right now.
    parked: HashMap<Arc<str>, VecDeque<Receipt>>,
    parked_total: usize,
    parked_limit: usize,
    dropped: u64,
    /// Round-robin cursor for MO injection.
    next_mo: usize,
}

impl Registry {
    pub(super) fn new(parked_limit: usize) -> Self {
        Self {
            sessions: HashMap::new(),
            receivers: HashMap::new(),
            parked: HashMap::new(),
            parked_total: 0,
            parked_limit,
            dropped: 0,
            next_mo: 0,
        }
    }

    pub(super) fn insert(&mut self, id: u64, entry: Entry) {
        self.sessions.insert(id, entry);
    }

    /// Records a successful bind. A receiver-capable bind immediately takes every receipt
    /// parked for its system_id.
    pub(super) fn bound(&mut self, id: u64, kind: BindKind, system_id: Arc<str>) {
        let Some(entry) = self.sessions.get_mut(&id) else {
            return;
        };
        entry.bind = Some((kind, system_id.clone()));
        if !kind.can_receive() {
            return;
        }
        self.receivers
            .entry(system_id.clone())
            .or_default()
            .push(id);
        if let Some(parked) = self.parked.remove(&system_id) {
            self.parked_total -= parked.len();
            for receipt in parked {
                // Cannot fail: the receiver half lives in the session that is binding.
                let _ = entry.tx.send(Outbound::Receipt(receipt));
            }
        }
    }

    /// Forgets a session. Receipts it had not written yet come back to the caller.
    pub(super) fn remove(&mut self, id: u64) -> Option<Entry> {
        let entry = self.sessions.remove(&id)?;
        if let Some((_, system_id)) = &entry.bind {
            if let Some(ids) = self.receivers.get_mut(system_id) {
                ids.retain(|&other| other != id);
                if ids.is_empty() {
                    self.receivers.remove(system_id);
                }
            }
        }
        Some(entry)
    }

    /// Sends a receipt to its origin session if that can receive, else to another
    /// receiver of the same system_id, else parks it.
    pub(super) fn dispatch(&mut self, receipt: Receipt) {
        let origin_can_receive = self.sessions.get(&receipt.origin).is_some_and(|entry| {
            entry.bind.as_ref().is_some_and(|(kind, system_id)| {
                kind.can_receive() && **system_id == *receipt.system_id
            })
        });
        let target = if origin_can_receive {
            Some(receipt.origin)
        } else {
            self.receivers.get(&receipt.system_id).and_then(|ids| {
                // Spread receipts over receivers; any deterministic choice will do.
                let index = (receipt.message_id % ids.len() as u64) as usize;
                ids.get(index).copied()
            })
        };
        let receipt = match target.and_then(|id| self.sessions.get(&id)) {
            Some(entry) => match entry.tx.send(Outbound::Receipt(receipt)) {
                Ok(()) => return,
                Err(mpsc::error::SendError(Outbound::Receipt(receipt))) => receipt,
                Err(_) => return,
            },
            None => receipt,
        };
        self.park(receipt);
    }

    fn park(&mut self, receipt: Receipt) {
        if self.parked_limit == 0 {
            self.dropped += 1;
            return;
        }
        if self.parked_total >= self.parked_limit {
            self.drop_oldest(&receipt.system_id);
        }
        self.parked
            .entry(receipt.system_id.clone())
            .or_default()
            .push_back(receipt);
        self.parked_total += 1;
    }

    /// Drops the oldest parked receipt, preferring the queue about to grow.
    fn drop_oldest(&mut self, system_id: &Arc<str>) {
        let key = if self.parked.get(system_id).is_some_and(|q| !q.is_empty()) {
            Some(system_id.clone())
        } else {
            self.parked
                .iter()
                .find(|(_, queue)| !queue.is_empty())
                .map(|(key, _)| key.clone())
        };
        let popped = key
            .and_then(|key| self.parked.get_mut(&key))
            .and_then(VecDeque::pop_front);
        if popped.is_some() {
            self.parked_total -= 1;
            self.dropped += 1;
        }
    }

    /// A receiver-capable session for an MO, round-robin over all of them.
    pub(super) fn mo_target(&mut self) -> Option<&Entry> {
        let mut ids: Vec<u64> = self.receivers.values().flatten().copied().collect();
        if ids.is_empty() {
            return None;
        }
        ids.sort_unstable();
        let id = ids[self.next_mo % ids.len()];
        self.next_mo = self.next_mo.wrapping_add(1);
        self.sessions.get(&id)
    }

    /// Cancels every session (they close their sockets and deregister themselves).
    pub(super) fn cancel_all(&self) {
        for entry in self.sessions.values() {
            entry.cancel.cancel();
        }
    }

    pub(super) fn parked(&self) -> u64 {
        self.parked_total as u64
    }

    pub(super) fn dropped(&self) -> u64 {
        self.dropped
    }

    pub(super) fn session_stats(&self) -> Vec<SessionStats> {
        let mut stats: Vec<SessionStats> = self
            .sessions
            .iter()
            .map(|(&id, entry)| {
                let bind = entry
                    .bind
                    .as_ref()
                    .map(|(kind, system_id)| (*kind, &**system_id));
                entry.counters.snapshot(id, entry.peer, bind)
            })
            .collect();
        stats.sort_by_key(|s| s.id);
        stats
    }
}

//! In-memory index of the ready queues of the embedded store.
//!
//! The durable queue rows live in redb; this mirror of them (rebuilt at open)
//! makes a claim a pop from a B-tree instead of a scan that skips claimed
//! rows, and lets dispatchers sleep on a [`Notify`] until work arrives.
//!
//! New entries are pushed while the transaction that writes their rows is
//! being made durable, not after: the fsync of an admission then overlaps
//! its submit_sm instead of preceding it (the caller's 202 still waits for
//! the commit). If that commit fails, the entries still here are taken out
//! again; one a dispatcher already took may reach the carrier although its
//! caller was told the admission failed, as after a crash between a commit
//! and its answer (at-least-once).
//!
//! An entry may hold its message, so a claim need not read and decode the
//! record; at most [`HELD_MOST`] are held, beyond that a claim reads the store.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::model::{Class, Message, Micros};

/// Most messages held in memory by ready entries (under 1 KB each): enough
/// for several seconds of a fast connector's traffic, bounded under backlog.
pub(crate) const HELD_MOST: usize = 50_000;

/// One ready entry: the message, when it stops being sendable and, while
/// fewer than [`HELD_MOST`] are held, the message as stored.
#[derive(Debug, Clone)]
pub(crate) struct Ready {
    pub id: u128,
    pub expires_at: Micros,
    pub message: Option<Arc<Message>>,
}

/// Where a ready entry sits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Slot {
    pub connector: String,
    pub class: Class,
    pub seq: u64,
}

#[derive(Default)]
struct ConnectorQueues {
    /// Per class, FIFO by admission sequence.
    classes: [BTreeMap<u64, Ready>; 4],
    notify: Arc<Notify>,
}

/// Ready queues of every connector.
#[derive(Default)]
pub(crate) struct ReadyQueues {
    inner: Mutex<HashMap<String, ConnectorQueues>>,
    depths: [AtomicU64; 4],
    /// Entries holding their message.
    held: AtomicUsize,
}

impl ReadyQueues {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, ConnectorQueues>> {
        // A panic while holding this lock cannot leave the maps half-updated
        // (every operation is a single insert or remove), so poisoning is ignored.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds entries and wakes the dispatchers of the connectors concerned.
    pub fn push_many(&self, entries: impl IntoIterator<Item = (Slot, Ready)>) {
        let mut woken: Vec<Arc<Notify>> = Vec::new();
        {
            let mut map = self.lock();
            for (slot, mut ready) in entries {
                if ready.message.is_some() {
                    if self.held.load(Ordering::Relaxed) < HELD_MOST {
                        self.held.fetch_add(1, Ordering::Relaxed);
                    } else {
                        ready.message = None;
                    }
                }
                let q = match map.get_mut(&slot.connector) {
                    Some(q) => q,
                    None => map.entry(slot.connector.clone()).or_default(),
                };
                match q.classes[slot.class.index()].insert(slot.seq, ready) {
                    None => {
                        self.depths[slot.class.index()].fetch_add(1, Ordering::Relaxed);
                    }
                    Some(replaced) => self.forget(&replaced),
                }
                if !woken.iter().any(|n| Arc::ptr_eq(n, &q.notify)) {
                    woken.push(q.notify.clone());
                }
            }
        }
        for n in woken {
            n.notify_one();
        }
    }

    /// Counts an entry leaving the queues.
    fn forget(&self, ready: &Ready) {
        if ready.message.is_some() {
            self.held.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Takes up to `max` entries of `connector`, highest class first.
    pub fn pop(&self, connector: &str, max: usize) -> Vec<(Slot, Ready)> {
        let mut out = Vec::new();
        let mut map = self.lock();
        let Some(q) = map.get_mut(connector) else {
            return out;
        };
        for class in Class::ALL {
            let queue = &mut q.classes[class.index()];
            while out.len() < max {
                let Some((seq, ready)) = queue.pop_first() else {
                    break;
                };
                self.depths[class.index()].fetch_sub(1, Ordering::Relaxed);
                self.forget(&ready);
                out.push((
                    Slot {
                        connector: connector.to_string(),
                        class,
                        seq,
                    },
                    ready,
                ));
            }
            if out.len() >= max {
                break;
            }
        }
        out
    }

    /// Takes every entry whose validity has ended by `now`.
    pub fn take_expired(&self, now: Micros, limit: usize) -> Vec<(Slot, Ready)> {
        let mut out = Vec::new();
        let mut map = self.lock();
        for (name, q) in map.iter_mut() {
            for class in Class::ALL {
                let queue = &mut q.classes[class.index()];
                let due: Vec<u64> = queue
                    .iter()
                    .filter(|(_, r)| r.expires_at <= now)
                    .map(|(seq, _)| *seq)
                    .take(limit.saturating_sub(out.len()))
                    .collect();
                for seq in due {
                    if let Some(ready) = queue.remove(&seq) {
                        self.depths[class.index()].fetch_sub(1, Ordering::Relaxed);
                        self.forget(&ready);
                        out.push((
                            Slot {
                                connector: name.clone(),
                                class,
                                seq,
                            },
                            ready,
                        ));
                    }
                }
            }
        }
        out
    }

    /// The wake-up handle of `connector`'s dispatcher.
    pub fn notifier(&self, connector: &str) -> Arc<Notify> {
        let mut map = self.lock();
        match map.get(connector) {
            Some(q) => q.notify.clone(),
            None => map.entry(connector.to_string()).or_default().notify.clone(),
        }
    }

    /// Removes one entry, if it is still ready (not claimed): whether it was.
    pub fn remove(&self, slot: &Slot) -> bool {
        let mut map = self.lock();
        let removed = map
            .get_mut(&slot.connector)
            .and_then(|q| q.classes[slot.class.index()].remove(&slot.seq));
        match removed {
            Some(ready) => {
                self.depths[slot.class.index()].fetch_sub(1, Ordering::Relaxed);
                self.forget(&ready);
                true
            }
            None => false,
        }
    }

    /// Entries holding their message.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Ready entries of `class` for `connector`.
    pub fn depth(&self, connector: &str, class: Class) -> u64 {
        self.lock()
            .get(connector)
            .map_or(0, |q| q.classes[class.index()].len() as u64)
    }

    /// Ready entries per class.
    pub fn depths(&self) -> [u64; 4] {
        std::array::from_fn(|i| self.depths[i].load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(connector: &str, class: Class, seq: u64) -> Slot {
        Slot {
            connector: connector.into(),
            class,
            seq,
        }
    }

    fn ready(id: u128) -> Ready {
        Ready {
            id,
            expires_at: i64::MAX,
            message: None,
        }
    }

    #[test]
    fn pop_takes_higher_classes_first_then_fifo() {
        let q = ReadyQueues::default();
        q.push_many([
            (slot("a", Class::Marketing, 1), ready(1)),
            (slot("a", Class::Marketing, 2), ready(2)),
            (slot("a", Class::Emergency, 3), ready(3)),
            (slot("a", Class::Otp, 4), ready(4)),
        ]);
        let ids: Vec<u128> = q.pop("a", 3).into_iter().map(|(_, r)| r.id).collect();
        assert_eq!(ids, vec![3, 4, 1]);
        assert_eq!(q.depths(), [0, 0, 0, 1]);
    }

    #[test]
    fn connectors_do_not_share_queues() {
        let q = ReadyQueues::default();
        q.push_many([(slot("a", Class::Otp, 1), ready(1))]);
        assert!(q.pop("b", 10).is_empty());
        assert_eq!(q.pop("a", 10).len(), 1);
    }

    #[test]
    fn expired_entries_are_taken_out() {
        let q = ReadyQueues::default();
        q.push_many([
            (
                slot("a", Class::Otp, 1),
                Ready {
                    id: 1,
                    expires_at: 10,
                    message: None,
                },
            ),
            (
                slot("a", Class::Otp, 2),
                Ready {
                    id: 2,
                    expires_at: 100,
                    message: None,
                },
            ),
        ]);
        let gone = q.take_expired(50, 100);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].1.id, 1);
        assert_eq!(q.depths(), [0, 1, 0, 0]);
    }

    #[test]
    fn held_messages_are_bounded_and_counted_out() {
        let q = ReadyQueues::default();
        let held = Arc::new(crate::test_support::message("+447700900001"));
        let entries = (0..HELD_MOST as u64 + 10).map(|seq| {
            (
                slot("a", Class::Otp, seq),
                Ready {
                    id: u128::from(seq),
                    expires_at: i64::MAX,
                    message: Some(held.clone()),
                },
            )
        });
        q.push_many(entries);
        assert_eq!(q.held(), HELD_MOST);
        let popped = q.pop("a", HELD_MOST + 10);
        assert_eq!(
            popped.iter().filter(|(_, r)| r.message.is_some()).count(),
            HELD_MOST,
            "the first HELD_MOST keep their message, the rest are read from the store"
        );
        assert_eq!(q.held(), 0);
        q.push_many(popped.into_iter().take(3));
        assert!(q.remove(&slot("a", Class::Otp, 0)));
        assert_eq!(q.held(), 2);
    }
}

//! In-memory index of the ready queues of the embedded store.
//!
//! The durable queue rows live in redb; this mirror of them (rebuilt at open)
//! makes a claim a pop from a B-tree instead of a scan that skips claimed
//! rows, and lets dispatchers sleep on a [`Notify`] until work arrives. It is
//! only changed after the commit that made a row durable, so nothing a claim
//! returns can vanish in a crash.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::model::{Class, Micros};

/// One ready entry: the message and when it stops being sendable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ready {
    pub id: u128,
    pub expires_at: Micros,
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
            for (slot, ready) in entries {
                let q = match map.get_mut(&slot.connector) {
                    Some(q) => q,
                    None => map.entry(slot.connector.clone()).or_default(),
                };
                if q.classes[slot.class.index()]
                    .insert(slot.seq, ready)
                    .is_none()
                {
                    self.depths[slot.class.index()].fetch_add(1, Ordering::Relaxed);
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
            .and_then(|q| q.classes[slot.class.index()].remove(&slot.seq))
            .is_some();
        if removed {
            self.depths[slot.class.index()].fetch_sub(1, Ordering::Relaxed);
        }
        removed
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
                },
            ),
            (
                slot("a", Class::Otp, 2),
                Ready {
                    id: 2,
                    expires_at: 100,
                },
            ),
        ]);
        let gone = q.take_expired(50, 100);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].1.id, 1);
        assert_eq!(q.depths(), [0, 1, 0, 0]);
    }
}

//! The in-process simulated carrier (`kind = "sim"`), the default connector:
//! accepts every submit at once and reports a delivery receipt after a fixed
//! delay, failing a configurable fraction as undeliverable.
//!
//! Receipts are scheduled in one FIFO drained by one task (the delay is
//! constant, so arrival order is due order): no timer or task per message.
//! Like a real SMSC that resends pending receipts on re-bind, it resumes the
//! receipts of submits the store still awaits after a restart.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use std::sync::Mutex;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Ack, Connector, ConnectorEvent, EventSender, SubmitAck, SubmitError, SubmitFailure};
use crate::model::{Message, now_micros};

use crate::config::SimConfig;
use crate::model::{Receipt, ReceiptState};

struct Pending {
    due: Instant,
    smsc_id: String,
}

/// The simulated carrier.
pub struct SimConnector {
    settings: SimConfig,
    next_id: AtomicU64,
    /// Receipts not yet sent, oldest first.
    pending: Arc<Mutex<VecDeque<Pending>>>,
    wake: Arc<Notify>,
    stop: CancellationToken,
}

impl SimConnector {
    /// Starts the carrier; its receipts go to `events`. `resume` lists carrier
    /// ids of earlier submits still awaiting a receipt.
    pub fn start(settings: SimConfig, events: EventSender, resume: Vec<String>) -> Arc<Self> {
        // Ids start at a random point so they repeat neither across
        // restarts nor between nodes sharing a store (a clash would match a
        // receipt to another node's message); the clock is the fallback.
        let mut seed = [0u8; 8];
        let base = match getrandom::fill(&mut seed) {
            Ok(()) => u64::from_le_bytes(seed) >> 2,
            Err(_) => u64::try_from(now_micros()).unwrap_or(0),
        };
        let due = Instant::now() + settings.delay();
        let pending: VecDeque<Pending> = resume
            .into_iter()
            .map(|smsc_id| Pending { due, smsc_id })
            .collect();
        let sim = Arc::new(SimConnector {
            settings,
            next_id: AtomicU64::new(base),
            pending: Arc::new(Mutex::new(pending)),
            wake: Arc::new(Notify::new()),
            stop: CancellationToken::new(),
        });
        tokio::spawn(deliver_receipts(sim.clone(), events));
        sim
    }

    /// Whether the receipt of `smsc_id` reports failure: a stable hash of the
    /// id against the fail rate, so runs are reproducible.
    fn fails(&self, smsc_id: &str) -> bool {
        if self.settings.fail_rate <= 0.0 {
            return false;
        }
        let mut x: u64 = 0xcbf2_9ce4_8422_2325;
        for b in smsc_id.bytes() {
            x ^= u64::from(b);
            x = x.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // splitmix64 finaliser for an even spread.
        x ^= x >> 30;
        x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x ^= x >> 27;
        x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^= x >> 31;
        #[allow(clippy::cast_precision_loss)]
        let unit = (x >> 11) as f64 / (1u64 << 53) as f64;
        unit < self.settings.fail_rate
    }
}

fn lock(q: &Mutex<VecDeque<Pending>>) -> std::sync::MutexGuard<'_, VecDeque<Pending>> {
    // Each critical section is one push or pop: poisoning cannot leave it inconsistent.
    q.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn deliver_receipts(sim: Arc<SimConnector>, events: EventSender) {
    loop {
        let next = {
            let q = lock(&sim.pending);
            q.front().map(|p| p.due)
        };
        match next {
            None => {
                tokio::select! {
                    () = sim.wake.notified() => continue,
                    () = sim.stop.cancelled() => return,
                }
            }
            Some(due) => {
                tokio::select! {
                    () = tokio::time::sleep_until(due) => {}
                    () = sim.stop.cancelled() => return,
                }
            }
        }
        let now = Instant::now();
        let ready: Vec<Pending> = {
            let mut q = lock(&sim.pending);
            let mut out = Vec::new();
            while q.front().is_some_and(|p| p.due <= now) {
                if let Some(p) = q.pop_front() {
                    out.push(p);
                }
            }
            out
        };
        for p in ready {
            let state = if sim.fails(&p.smsc_id) {
                ReceiptState::Undeliverable
            } else {
                ReceiptState::Delivered
            };
            let receipt = Receipt {
                connector: sim.settings.name.clone(),
                error_code: (state != ReceiptState::Delivered).then(|| "001".to_string()),
                smsc_id: p.smsc_id,
                state,
                at: now_micros(),
            };
            if events
                .send(ConnectorEvent::Receipt(receipt, Ack::none()))
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

#[async_trait]
impl Connector for SimConnector {
    fn name(&self) -> &str {
        &self.settings.name
    }

    fn window(&self) -> usize {
        self.settings.window
    }

    fn tps(&self) -> Option<NonZeroU32> {
        NonZeroU32::new(self.settings.tps)
    }

    fn is_ready(&self) -> bool {
        !self.settings.offline && !self.stop.is_cancelled()
    }

    async fn submit(&self, msg: &Message) -> Result<SubmitAck, SubmitFailure> {
        if self.stop.is_cancelled() {
            return Err(SubmitError::Temporary("connector stopped".into()).into());
        }
        if self.settings.offline {
            return Err(SubmitError::Temporary("simulated carrier is offline".into()).into());
        }
        if self.settings.submit_delay_ms != 0 {
            tokio::select! {
                () = self.stop.cancelled() => {
                    return Err(SubmitError::Temporary("connector stopped".into()).into());
                }
                () = tokio::time::sleep(self.settings.submit_delay()) => {}
            }
        }
        if msg.expires_at <= now_micros() {
            return Err(SubmitError::Expired.into());
        }
        let smsc_id = format!("sim-{:x}", self.next_id.fetch_add(1, Ordering::Relaxed));
        let was_empty = {
            let mut q = lock(&self.pending);
            let was_empty = q.is_empty();
            q.push_back(Pending {
                due: Instant::now() + self.settings.delay(),
                smsc_id: smsc_id.clone(),
            });
            was_empty
        };
        if was_empty {
            self.wake.notify_one();
        }
        Ok(SubmitAck {
            smsc_ids: vec![smsc_id],
        })
    }

    async fn shutdown(&self) {
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn settings(fail_rate: f64) -> SimConfig {
        SimConfig {
            window: 8,
            fail_rate,
            ..SimConfig::named("sim")
        }
    }

    #[test]
    fn fail_rate_fails_about_that_fraction() {
        let (tx, _rx) = tokio::sync::mpsc::channel(1);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let sim = SimConnector::start(settings(0.25), tx, Vec::new());
            let failed = (0..10_000)
                .filter(|i| sim.fails(&format!("sim-{i:x}")))
                .count();
            assert!((2_000..3_000).contains(&failed), "{failed}");
            sim.shutdown().await;
        });
    }

    #[tokio::test]
    async fn every_submit_gets_a_receipt_after_the_delay() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let sim = SimConnector::start(settings(0.0), tx, vec!["old-1".into()]);
        let msg_ack = sim
            .submit(&crate::test_support::message("+447700900001"))
            .await
            .expect("submit");
        let mut seen = Vec::new();
        for _ in 0..2 {
            let ev = tokio::time::timeout(Duration::from_secs(2), rx.recv())
                .await
                .expect("receipt in time")
                .expect("channel open");
            let ConnectorEvent::Receipt(r, _) = ev else {
                panic!("expected a receipt");
            };
            assert_eq!(r.state, ReceiptState::Delivered);
            seen.push(r.smsc_id);
        }
        assert_eq!(seen, vec!["old-1".to_string(), msg_ack.smsc_ids[0].clone()]);
        sim.shutdown().await;
    }
}

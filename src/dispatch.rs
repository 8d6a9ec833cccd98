//! The dispatcher: one loop per connector that always submits the
//! highest-priority ready message next.
//!
//! Strict priority holds because the loop claims only what it can send right
//! now: it first waits for a free window slot and a TPS permit, then claims
//! exactly that many messages, highest class first. A message accepted a
//! moment later therefore never waits behind lower-class messages that were
//! claimed early; at most one window of them is already in flight.
//!
//! Outcomes and receipts are recorded by their own tasks in batches, so the
//! submit loop never waits on the store's commits.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::connector::{Connector, ConnectorEvent, SubmitAck, SubmitError};
use crate::metrics::Metrics;
use crate::model::{Message, MessageId, Micros, now_micros};
use crate::store::{InboundRecord, Outcome, Receipt, Store, StoreError};

/// Most messages claimed in one go.
const MAX_CLAIM: usize = 512;
/// Most outcomes or receipts recorded in one store call.
const MAX_RECORD_BATCH: usize = 4096;

/// Retry and timing policy of the dispatchers.
#[derive(Debug, Clone)]
pub struct DispatchSettings {
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub drain_timeout: Duration,
    pub submit_timeout: Duration,
}

impl From<&crate::config::DispatchConfig> for DispatchSettings {
    fn from(c: &crate::config::DispatchConfig) -> Self {
        DispatchSettings {
            max_attempts: c.max_attempts,
            retry_base: c.retry_base,
            retry_max: c.retry_max,
            drain_timeout: c.drain_timeout,
            submit_timeout: c.submit_timeout,
        }
    }
}

/// Where final messages go (webhooks, broadcast progress).
pub type FinalSender = mpsc::UnboundedSender<Message>;

/// Runs the dispatcher of `connector` until `shutdown`, then drains its
/// window for at most `drain_timeout`.
pub fn spawn_dispatcher(
    tracker: &TaskTracker,
    store: Arc<dyn Store>,
    connector: Arc<dyn Connector>,
    settings: DispatchSettings,
    metrics: Arc<Metrics>,
    finals: Option<FinalSender>,
    shutdown: CancellationToken,
) {
    let (outcome_tx, outcome_rx) = mpsc::channel::<Outcome>(connector.window().max(64) * 4);
    tracker.spawn(record_outcomes(
        store.clone(),
        outcome_rx,
        metrics.clone(),
        finals,
    ));
    let dispatcher = Dispatcher {
        limiter: connector
            .tps()
            .map(|tps| RateLimiter::direct(Quota::per_second(tps).allow_burst(burst_for(tps)))),
        store,
        connector,
        settings,
        metrics,
        outcomes: outcome_tx,
        shutdown,
    };
    tracker.spawn(dispatcher.run());
}

/// A tenth of a second of traffic: smooth, yet enough to batch claims.
fn burst_for(tps: NonZeroU32) -> NonZeroU32 {
    NonZeroU32::new(tps.get() / 10).unwrap_or(NonZeroU32::MIN)
}

type SubmitResult = (Message, Micros, Result<SubmitAck, SubmitError>);

struct Dispatcher {
    store: Arc<dyn Store>,
    connector: Arc<dyn Connector>,
    limiter: Option<DefaultDirectRateLimiter>,
    settings: DispatchSettings,
    metrics: Arc<Metrics>,
    outcomes: mpsc::Sender<Outcome>,
    shutdown: CancellationToken,
}

impl Dispatcher {
    async fn run(self) {
        let name = self.connector.name().to_string();
        let window = self.connector.window().max(1);
        let mut inflight = FuturesUnordered::new();
        tracing::info!(connector = %name, window, tps = ?self.connector.tps(), "dispatcher started");
        loop {
            if self.shutdown.is_cancelled() {
                break;
            }
            let free = window.saturating_sub(inflight.len());
            if free == 0 || !self.connector.is_ready() {
                tokio::select! {
                    biased;
                    () = self.shutdown.cancelled() => break,
                    Some(done) = inflight.next(), if !inflight.is_empty() => self.finish(done).await,
                    () = tokio::time::sleep(Duration::from_millis(50)), if inflight.is_empty() => {}
                }
                continue;
            }
            let mut want = free.min(MAX_CLAIM);
            if let Some(limiter) = &self.limiter {
                tokio::select! {
                    biased;
                    () = self.shutdown.cancelled() => break,
                    Some(done) = inflight.next(), if !inflight.is_empty() => {
                        self.finish(done).await;
                        continue;
                    }
                    () = limiter.until_ready() => {}
                }
                let mut granted = 1;
                while granted < want && limiter.check().is_ok() {
                    granted += 1;
                }
                want = granted;
            }
            let claimed = match self.store.claim(&name, want).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(connector = %name, error = %e, "claim failed; retrying");
                    tokio::select! {
                        () = self.shutdown.cancelled() => break,
                        () = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                    continue;
                }
            };
            if claimed.is_empty() {
                tokio::select! {
                    biased;
                    () = self.shutdown.cancelled() => break,
                    Some(done) = inflight.next(), if !inflight.is_empty() => self.finish(done).await,
                    () = self.store.wait_for_work(&name, Duration::from_secs(1)) => {}
                }
                continue;
            }
            for m in claimed {
                let now = now_micros();
                if m.expires_at <= now {
                    self.send_outcome(Outcome::Expired { id: m.id }).await;
                    continue;
                }
                if let Some(limiter) = &self.limiter
                    && m.segments > 1
                    && let Some(extra) = NonZeroU32::new(m.segments - 1)
                {
                    // Each part is one submit to the carrier; the cap counts parts.
                    let _ = limiter.until_n_ready(extra).await;
                }
                let connector = self.connector.clone();
                let timeout = self.settings.submit_timeout;
                let span = tracing::debug_span!(
                    "submit",
                    message_id = %m.id,
                    class = %m.class,
                    connector = %name
                );
                inflight.push(Instrument::instrument(
                    async move {
                        let started = now_micros();
                        let result = tokio::time::timeout(timeout, connector.submit(&m))
                            .await
                            .unwrap_or_else(|_| {
                                Err(SubmitError::Temporary("no answer from the carrier".into()))
                            });
                        (m, started, result)
                    },
                    span,
                ));
            }
        }
        // Drain: give in-flight submits a bounded time, then release the rest
        // (their rows are durable; they will be sent after restart).
        let deadline = tokio::time::Instant::now() + self.settings.drain_timeout;
        while !inflight.is_empty() {
            match tokio::time::timeout_at(deadline, inflight.next()).await {
                Ok(Some(done)) => self.finish(done).await,
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!(connector = %name, left = inflight.len(), "drain timed out");
                    break;
                }
            }
        }
        tracing::info!(connector = %name, "dispatcher stopped");
    }

    async fn send_outcome(&self, outcome: Outcome) {
        if self.outcomes.send(outcome).await.is_err() {
            tracing::error!("outcome recorder is gone; outcome dropped (message stays queued)");
        }
    }

    async fn finish(&self, (m, started, result): SubmitResult) {
        let outcome = match result {
            Ok(ack) => {
                #[allow(clippy::cast_precision_loss)]
                let waited = (started - m.created_at).max(0) as f64 / 1e6;
                self.metrics.submitted(m.class, waited);
                tracing::debug!(message_id = %m.id, class = %m.class, connector = %self.connector.name(), "submitted");
                Outcome::Submitted {
                    id: m.id,
                    connector: self.connector.name().to_string(),
                    smsc_ids: ack.smsc_ids,
                    at: started,
                }
            }
            Err(err) => {
                let kind = match err {
                    SubmitError::Temporary(_) => "temporary",
                    SubmitError::Throttled => "throttled",
                    SubmitError::Permanent(_) => "permanent",
                };
                self.metrics.submit_error(self.connector.name(), kind);
                tracing::info!(message_id = %m.id, connector = %self.connector.name(), error = %err, "submit failed");
                self.after_failure(&m, err)
            }
        };
        self.send_outcome(outcome).await;
    }

    /// Decides what a failed submit leads to.
    fn after_failure(&self, m: &Message, err: SubmitError) -> Outcome {
        match err {
            SubmitError::Permanent(reason) => Outcome::Failover {
                id: m.id,
                error: reason,
            },
            SubmitError::Throttled | SubmitError::Temporary(_) => {
                let attempts = m.attempts + 1;
                if attempts >= self.settings.max_attempts {
                    if (m.route_index as usize) + 1 < m.route.len() {
                        return Outcome::Failover {
                            id: m.id,
                            error: err.to_string(),
                        };
                    }
                    return Outcome::Failed {
                        id: m.id,
                        error: format!("{err} (after {attempts} attempts)"),
                    };
                }
                let delay = backoff(&self.settings, m.attempts, m.id.0);
                Outcome::Retry {
                    id: m.id,
                    not_before: now_micros()
                        + i64::try_from(delay.as_micros()).unwrap_or(i64::MAX / 2),
                    error: err.to_string(),
                }
            }
        }
    }
}

/// Exponential backoff from `retry_base`, capped at `retry_max`, with ±20 %
/// jitter derived from the message id so retries of a burst spread out.
pub fn backoff(settings: &DispatchSettings, attempts: u32, salt: u128) -> Duration {
    let exp = settings
        .retry_base
        .saturating_mul(2u32.saturating_pow(attempts.min(20)));
    let capped = exp.min(settings.retry_max);
    #[allow(clippy::cast_precision_loss)]
    let unit = ((salt ^ (salt >> 64)) as u64 % 1000) as f64 / 1000.0;
    capped.mul_f64(0.8 + 0.4 * unit)
}

/// Records outcomes in batches until every dispatcher sender is gone.
async fn record_outcomes(
    store: Arc<dyn Store>,
    mut rx: mpsc::Receiver<Outcome>,
    metrics: Arc<Metrics>,
    finals: Option<FinalSender>,
) {
    let mut batch = Vec::with_capacity(256);
    while rx.recv_many(&mut batch, MAX_RECORD_BATCH).await > 0 {
        let done = persist(&*store, Batch::Outcomes(std::mem::take(&mut batch))).await;
        publish(done, &metrics, finals.as_ref());
    }
}

/// What to do with inbound messages.
#[derive(Debug, Clone, Default)]
pub struct InboundSettings {
    /// Every inbound message is also POSTed here.
    pub webhook_url: Option<String>,
    /// Bodies that opt the sender out of marketing (compared trimmed, any case).
    pub stop_keywords: Vec<String>,
    /// Bodies that opt the sender back in.
    pub start_keywords: Vec<String>,
}

impl InboundSettings {
    pub fn from_config(c: &crate::config::InboundConfig) -> Self {
        InboundSettings {
            webhook_url: c.webhook_url.clone(),
            stop_keywords: c.stop_keywords.clone(),
            start_keywords: c.start_keywords.clone(),
        }
    }

    /// `opt_out`, `opt_in` or nothing, for a message body.
    pub fn action(&self, body: &str) -> Option<&'static str> {
        let word = body.trim();
        let is = |list: &[String]| list.iter().any(|k| k.eq_ignore_ascii_case(word));
        if is(&self.stop_keywords) {
            Some("opt_out")
        } else if is(&self.start_keywords) {
            Some("opt_in")
        } else {
            None
        }
    }
}

/// Applies receipts and stores inbound messages from every connector, in
/// batches, until the event channel closes.
pub async fn record_receipts(
    store: Arc<dyn Store>,
    mut events: mpsc::Receiver<ConnectorEvent>,
    metrics: Arc<Metrics>,
    finals: Option<FinalSender>,
    inbound: InboundSettings,
) {
    let mut batch = Vec::with_capacity(256);
    while events.recv_many(&mut batch, MAX_RECORD_BATCH).await > 0 {
        let mut receipts = Vec::with_capacity(batch.len());
        let mut mos = Vec::new();
        for ev in batch.drain(..) {
            match ev {
                ConnectorEvent::Receipt(r) => receipts.push(r),
                ConnectorEvent::Inbound(mo) => {
                    let action = inbound.action(&mo.body);
                    metrics.inbound(action.unwrap_or("message"));
                    tracing::info!(connector = %mo.connector, action = ?action, "inbound message");
                    mos.push(InboundRecord {
                        id: MessageId::generate(),
                        connector: mo.connector,
                        from: mo.from,
                        to: mo.to,
                        body: mo.body,
                        received_at: now_micros(),
                        action: action.map(str::to_string),
                    });
                }
            }
        }
        if !mos.is_empty() {
            store_inbound(&*store, mos, inbound.webhook_url.clone()).await;
        }
        let done = persist(&*store, Batch::Receipts(receipts)).await;
        publish(done, &metrics, finals.as_ref());
    }
}

/// Stores inbound messages, retrying while the store is unavailable.
async fn store_inbound(store: &dyn Store, records: Vec<InboundRecord>, webhook: Option<String>) {
    let mut delay = Duration::from_millis(100);
    loop {
        match store.record_inbound(records.clone(), webhook.clone()).await {
            Ok(()) => return,
            Err(StoreError::Closed) => {
                tracing::warn!(
                    count = records.len(),
                    "store closed; inbound messages not stored"
                );
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "storing inbound messages failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Facts to write: outcomes of submits or carrier receipts.
enum Batch {
    Outcomes(Vec<Outcome>),
    Receipts(Vec<Receipt>),
}

/// Writes `batch`, retrying while the store is unavailable: outcomes and
/// receipts are facts that must not be dropped.
async fn persist(store: &dyn Store, batch: Batch) -> Vec<Message> {
    let len = match &batch {
        Batch::Outcomes(b) => b.len(),
        Batch::Receipts(b) => b.len(),
    };
    if len == 0 {
        return Vec::new();
    }
    let mut delay = Duration::from_millis(100);
    loop {
        let result = match &batch {
            Batch::Outcomes(b) => store.record(b.clone()).await,
            Batch::Receipts(b) => store.apply_receipts(b.clone()).await,
        };
        match result {
            Ok(done) => return done,
            Err(StoreError::Closed) => {
                tracing::warn!(
                    count = len,
                    "store closed; results not recorded (messages stay queued)"
                );
                return Vec::new();
            }
            Err(e) => {
                tracing::warn!(error = %e, "recording failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

fn publish(done: Vec<Message>, metrics: &Metrics, finals: Option<&FinalSender>) {
    for m in done {
        metrics.finished(&m);
        if let Some(tx) = finals {
            let _ = tx.send(m);
        }
    }
}

/// Runs store maintenance (retries due, expiries, purges) every `every`.
pub async fn run_maintenance(
    store: Arc<dyn Store>,
    idempotency_ttl: Duration,
    every: Duration,
    metrics: Arc<Metrics>,
    finals: Option<FinalSender>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match store.maintain(now_micros(), idempotency_ttl).await {
            Ok(report) => {
                if report.promoted > 0 || !report.expired.is_empty() {
                    tracing::debug!(
                        promoted = report.promoted,
                        expired = report.expired.len(),
                        "maintenance"
                    );
                }
                publish(report.expired, &metrics, finals.as_ref());
            }
            Err(e) => tracing::warn!(error = %e, "maintenance failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> DispatchSettings {
        DispatchSettings {
            max_attempts: 5,
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(1),
            submit_timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn backoff_doubles_and_caps_with_bounded_jitter() {
        let s = settings();
        for salt in [0u128, 7, 999, u128::MAX] {
            let first = backoff(&s, 0, salt);
            assert!(first >= Duration::from_millis(800) && first <= Duration::from_millis(1200));
            let third = backoff(&s, 2, salt);
            assert!(third >= Duration::from_millis(3200) && third <= Duration::from_millis(4800));
            let late = backoff(&s, 30, salt);
            assert!(late <= Duration::from_secs(72));
        }
    }
}

//! The dispatcher: one loop per connector that always submits the
//! highest-priority ready message next.
//!
//! Strict priority holds because the loop claims only what it can send right
//! now: it first waits for a free window slot and a TPS permit, then claims
//! exactly that many messages, highest class first. A message accepted a
//! moment later therefore never waits behind lower-class messages that were
//! claimed early; at most one window of them is already in flight.
//!
//! Outcomes are recorded by their own task in batches ([`crate::recorder`]),
//! so the submit loop never waits on the store's commits.
//!
//! A freed window slot is refilled at once, not after several have freed up.
//! Refilling is what makes our side write after reading a response, and that
//! write carries the TCP acknowledgement of the response. An SMSC that leaves
//! Nagle's algorithm on (most do) sends its next responses only once its
//! previous one is acknowledged; if we wrote nothing, our kernel would hold
//! that acknowledgement for its delayed-ACK timer (40 ms on Linux) and the
//! bind would move one window per 40 ms. Claims still batch by themselves:
//! every slot that frees while a claim runs is filled by the next one.
//!
//! A connector that stays not ready (e.g. every SMPP bind down or refused)
//! for longer than `failover_after` has its queue swept: messages whose route
//! has a next connector move there (`Outcome::Failover`), the others are
//! released back in place and wait for the connector to return. Sweeps claim
//! in priority order too, so emergencies move first.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::config::DispatchConfig;
use crate::connector::{Connector, SubmitAck, SubmitError, SubmitFailure};
use crate::metrics::Metrics;
use crate::model::{Message, Micros, PartialSubmit, now_micros};
use crate::seal::Sealer;
use crate::store::{MessageStore, Outcome};
use crate::supervise::Supervisor;

/// Most messages claimed in one go.
const MAX_CLAIM: usize = 512;
/// Most messages one failover sweep holds aside because their route has no
/// next connector (ids only, 16 bytes each). Messages queued behind more
/// than this many such messages wait for a later sweep.
const SWEEP_HOLD_MAX: usize = 100_000;
/// Pause between failover sweeps while messages keep moving.
const SWEEP_AGAIN: Duration = Duration::from_secs(1);

/// Runs the dispatcher of `connector` until `shutdown`, then drains its
/// window for at most `drain_timeout`. It and its outcome recorder run on
/// `tracker` under `supervisor` (`dispatcher/<name>`, `outcomes/<name>`): a
/// panic in either stops the gateway, as neither can be restarted without
/// losing track of claimed messages.
#[allow(clippy::too_many_arguments)]
pub fn spawn_dispatcher(
    tracker: &TaskTracker,
    supervisor: &Supervisor,
    store: Arc<dyn MessageStore>,
    connector: Arc<dyn Connector>,
    settings: DispatchConfig,
    metrics: Arc<Metrics>,
    sealer: Option<Arc<Sealer>>,
    shutdown: CancellationToken,
) {
    let (outcome_tx, outcome_rx) = mpsc::channel::<Outcome>(connector.window().max(64) * 4);
    let name = connector.name().to_string();
    tracker.spawn(supervisor.stopping(
        format!("outcomes/{name}"),
        crate::recorder::record_outcomes(store.clone(), outcome_rx, metrics.clone()),
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
        sealer,
        shutdown,
    };
    tracker.spawn(supervisor.stopping(format!("dispatcher/{name}"), dispatcher.run()));
}

/// A tenth of a second of traffic: smooth, yet enough to batch claims.
fn burst_for(tps: NonZeroU32) -> NonZeroU32 {
    NonZeroU32::new(tps.get() / 10).unwrap_or(NonZeroU32::MIN)
}

type SubmitResult = (Message, Micros, Result<SubmitAck, SubmitFailure>);

struct Dispatcher {
    store: Arc<dyn MessageStore>,
    connector: Arc<dyn Connector>,
    limiter: Option<DefaultDirectRateLimiter>,
    settings: DispatchConfig,
    metrics: Arc<Metrics>,
    outcomes: mpsc::Sender<Outcome>,
    /// Opens sealed message text (OTP codes) right before the submit.
    sealer: Option<Arc<Sealer>>,
    shutdown: CancellationToken,
}

impl Dispatcher {
    async fn run(self) {
        let name = self.connector.name().to_string();
        let window = self.connector.window().max(1);
        let mut inflight = FuturesUnordered::new();
        let mut down = DownClock::default();
        tracing::info!(connector = %name, window, tps = ?self.connector.tps(), "dispatcher started");
        loop {
            if self.shutdown.is_cancelled() {
                break;
            }
            let ready = self.connector.is_ready();
            if !ready && down.sweep_due(self.settings.failover_after) {
                let moved = self.sweep_down_queue(&name).await;
                down.swept(moved, self.settings.failover_after);
            } else if ready {
                down = DownClock::default();
            }
            // Finish every submit that is already done, so the next claim
            // fills the window in one store call instead of one per slot.
            while let Some(Some(done)) = inflight.next().now_or_never() {
                self.finish(done).await;
            }
            // Any free slot is claimed for at once (see the module docs):
            // waiting for more would leave the SMSC's responses unacknowledged.
            let free = window.saturating_sub(inflight.len());
            if free == 0 || !ready {
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
                let m = match self.unsealed(m) {
                    Ok(m) => m,
                    Err(outcome) => {
                        self.send_outcome(outcome).await;
                        continue;
                    }
                };
                if let Some(limiter) = &self.limiter
                    && let Some(extra) = NonZeroU32::new(parts_to_send(&m, &name) - 1)
                {
                    // Each part is one submit to the carrier; the cap counts parts.
                    // More parts than the burst can never be granted at once:
                    // those wait for their permits one by one.
                    if limiter.until_n_ready(extra).await.is_err() {
                        for _ in 0..extra.get() {
                            limiter.until_ready().await;
                        }
                    }
                    // That wait may have outlasted the message's validity.
                    if m.expires_at <= now_micros() {
                        self.send_outcome(Outcome::Expired { id: m.id }).await;
                        continue;
                    }
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
                                Err(SubmitError::Temporary("no answer from the carrier".into())
                                    .into())
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

    /// Moves the queue of this (down) connector along each message's route;
    /// see the module docs. Returns how many messages moved.
    async fn sweep_down_queue(&self, name: &str) -> usize {
        let mut held = Vec::new();
        let mut moved = 0usize;
        let reason = format!(
            "connector {name} not ready for more than {}",
            humantime::format_duration(self.settings.failover_after)
        );
        while held.len() < SWEEP_HOLD_MAX
            && !self.shutdown.is_cancelled()
            && !self.connector.is_ready()
        {
            let claimed = match self.store.claim(name, MAX_CLAIM).await {
                Ok(c) if c.is_empty() => break,
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(connector = %name, error = %e, "failover sweep: claim failed");
                    break;
                }
            };
            let now = now_micros();
            for m in claimed {
                let outcome = if m.expires_at <= now {
                    Outcome::Expired { id: m.id }
                } else if (m.route_index as usize) + 1 < m.route.len() {
                    moved += 1;
                    tracing::debug!(message_id = %m.id, class = %m.class, connector = %name, "failing over: connector down");
                    Outcome::Failover {
                        id: m.id,
                        error: reason.clone(),
                    }
                } else {
                    held.push(m.id);
                    continue;
                };
                self.send_outcome(outcome).await;
            }
        }
        let kept = held.len();
        for id in held {
            self.send_outcome(Outcome::Released { id }).await;
        }
        if moved > 0 {
            tracing::warn!(connector = %name, moved, kept, "connector down: queued messages failed over to their next connector");
        } else {
            tracing::debug!(connector = %name, kept, "connector down: nothing to fail over");
        }
        moved
    }

    /// The message as the carrier must see it: a sealed text opened into
    /// `body` (this copy lives only for the submit). A seal this node
    /// cannot open fails the message rather than sending the mask.
    fn unsealed(&self, mut m: Message) -> Result<Message, Outcome> {
        let Some(sealed) = m.sealed_body.take() else {
            return Ok(m);
        };
        let opened = match &self.sealer {
            Some(sealer) => sealer.open(m.id, &sealed).map_err(|e| e.to_string()),
            None => Err("no seal key is configured on this node".to_string()),
        };
        match opened {
            Ok(text) => {
                m.body = text;
                Ok(m)
            }
            Err(error) => {
                tracing::error!(message_id = %m.id, %error, "sealed message cannot be opened");
                Err(Outcome::Failed { id: m.id, error })
            }
        }
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
            Err(failure) => {
                let kind = match failure.error {
                    SubmitError::Temporary(_) => "temporary",
                    SubmitError::Throttled => "throttled",
                    SubmitError::Permanent(_) => "permanent",
                    SubmitError::Expired => "expired",
                };
                self.metrics.submit_error(self.connector.name(), kind);
                tracing::info!(
                    message_id = %m.id,
                    connector = %self.connector.name(),
                    error = %failure.error,
                    parts_missing = failure.partial.as_ref().map(PartialSubmit::missing),
                    "submit failed"
                );
                self.after_failure(&m, failure)
            }
        };
        self.send_outcome(outcome).await;
    }

    /// Decides what a failed submit leads to.
    ///
    /// A throttled submit was refused before the carrier took it: it is
    /// retried after the usual backoff but does not count toward
    /// `max_attempts`, so however long a throttling storm lasts, only the
    /// message's validity ends its tries (it then expires, never sent).
    ///
    /// Parts of a long message the carrier took (`failure.partial`) are kept
    /// for the retry on this connector; a failover drops them.
    fn after_failure(&self, m: &Message, failure: SubmitFailure) -> Outcome {
        let SubmitFailure {
            error: err,
            partial,
        } = failure;
        match err {
            // Never sent, and never to be sent: not worth another connector.
            SubmitError::Expired => Outcome::Expired { id: m.id },
            SubmitError::Permanent(reason) => Outcome::Failover {
                id: m.id,
                error: reason,
            },
            SubmitError::Throttled => Outcome::Retry {
                id: m.id,
                not_before: retry_at(backoff(&self.settings, m.attempts, m.id.0)),
                error: err.to_string(),
                counts_attempt: false,
                partial,
            },
            SubmitError::Temporary(_) => {
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
                Outcome::Retry {
                    id: m.id,
                    not_before: retry_at(backoff(&self.settings, m.attempts, m.id.0)),
                    error: err.to_string(),
                    counts_attempt: true,
                    partial,
                }
            }
        }
    }
}

/// How many `submit_sm` sending `m` through `connector` takes: its missing
/// parts when an earlier try there got some through, else every segment.
fn parts_to_send(m: &Message, connector: &str) -> u32 {
    match &m.partial {
        Some(p) if p.connector == connector => u32::try_from(p.missing()).unwrap_or(u32::MAX),
        _ => m.segments,
    }
    .max(1)
}

/// When a retry after `delay` from now is due.
fn retry_at(delay: Duration) -> Micros {
    now_micros() + i64::try_from(delay.as_micros()).unwrap_or(i64::MAX / 2)
}

/// When a not-ready connector is due a failover sweep.
#[derive(Debug, Default)]
struct DownClock {
    /// When it was first seen not ready.
    since: Option<tokio::time::Instant>,
    /// No sweep before this.
    next_sweep: Option<tokio::time::Instant>,
}

impl DownClock {
    /// Records "not ready now"; true when a sweep should run.
    fn sweep_due(&mut self, failover_after: Duration) -> bool {
        let now = tokio::time::Instant::now();
        let since = *self.since.get_or_insert(now);
        now.duration_since(since) >= failover_after && self.next_sweep.is_none_or(|t| now >= t)
    }

    /// Schedules the next sweep: soon while messages keep moving (more may
    /// arrive), otherwise after another `failover_after`.
    fn swept(&mut self, moved: usize, failover_after: Duration) {
        let wait = if moved > 0 {
            SWEEP_AGAIN
        } else {
            failover_after
        };
        self.next_sweep = Some(tokio::time::Instant::now() + wait);
    }
}

/// Exponential backoff from `retry_base`, capped at `retry_max`, with ±20 %
/// jitter derived from the message id so retries of a burst spread out.
pub fn backoff(settings: &DispatchConfig, attempts: u32, salt: u128) -> Duration {
    let exp = settings
        .retry_base
        .saturating_mul(2u32.saturating_pow(attempts.min(20)));
    let capped = exp.min(settings.retry_max);
    #[allow(clippy::cast_precision_loss)]
    let unit = ((salt ^ (salt >> 64)) as u64 % 1000) as f64 / 1000.0;
    capped.mul_f64(0.8 + 0.4 * unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> DispatchConfig {
        DispatchConfig {
            max_attempts: 5,
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(1),
            submit_timeout: Duration::from_secs(1),
            failover_after: Duration::from_secs(30),
        }
    }

    #[test]
    fn a_down_connector_is_swept_only_after_failover_after() {
        let mut clock = DownClock::default();
        assert!(!clock.sweep_due(Duration::from_secs(30)));
        assert!(clock.sweep_due(Duration::ZERO));
        clock.swept(0, Duration::from_secs(30));
        assert!(!clock.sweep_due(Duration::ZERO));
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

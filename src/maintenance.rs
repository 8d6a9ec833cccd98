//! Store maintenance: the periodic pass that moves due retries back to
//! their queues, expires messages past their validity and purges what
//! `[retention]` no longer keeps (idempotency keys, unmatched receipts,
//! finished messages, inbound messages).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::model::now_micros;
use crate::store::{MessageStore, OtpStore, Retention};

/// Runs store maintenance (retries due, expiries, purges) every `every`.
pub async fn run_maintenance(
    store: Arc<dyn MessageStore>,
    retention: Retention,
    every: Duration,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match store.maintain(now_micros(), retention).await {
            Ok(report) => {
                if report.promoted > 0 || !report.expired.is_empty() {
                    tracing::debug!(
                        promoted = report.promoted,
                        expired = report.expired.len(),
                        "maintenance"
                    );
                }
                crate::recorder::publish(report.expired, &metrics);
            }
            Err(e) => tracing::warn!(error = %e, "maintenance failed"),
        }
    }
}

/// Purges ended OTPs, old budget windows and lapsed blocks every `every`
/// (the embedded store; Redis expires them by key TTLs).
pub async fn purge_otps(store: Arc<dyn OtpStore>, every: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match store.purge_otps(now_micros()).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(purged = n, "OTP maintenance"),
            Err(e) => tracing::warn!(error = %e, "OTP maintenance failed"),
        }
    }
}

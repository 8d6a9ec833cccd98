//! Webhook delivery: message status callbacks (`callback_url`) and inbound
//! messages, signed `X-Herald-Signature: sha256=<hex HMAC-SHA256 of the body>`.
//!
//! Jobs are queued in the store by the same write that makes a message final
//! (or stores an inbound message), so a crash never loses one. This worker
//! claims due jobs with a lease, POSTs them concurrently, and records the
//! result: delivered, or retried with exponential backoff until `max_age`.
//! It runs apart from the dispatcher and never slows it down.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use hmac::{KeyInit, Mac};
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

use crate::api::messages::MessageView;
use crate::config::WebhooksConfig;
use crate::metrics::Metrics;
use crate::model::{Micros, now_micros};
use crate::store::{Store, WebhookEvent, WebhookJob, WebhookResult};

/// Header carrying the signature.
pub const SIGNATURE_HEADER: &str = "x-herald-signature";
/// How long to sleep when nothing is due.
const IDLE: Duration = Duration::from_millis(100);

/// `sha256=<hex>` of `body` under `secret`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| {
            // HMAC takes keys of any length; this branch cannot be reached.
            <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(b"").expect("empty key")
        });
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks a signature header against `body` in constant time.
pub fn verify(secret: &str, body: &[u8], header: &str) -> bool {
    let Some(hex_sig) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let Ok(mut mac) = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// Delivery policy.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub concurrency: usize,
    pub timeout: Duration,
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub max_age: Duration,
    /// Signs inbound webhooks.
    pub inbound_secret: Option<String>,
}

impl WebhookSettings {
    pub fn from_config(c: &WebhooksConfig, inbound_secret: Option<String>) -> Self {
        WebhookSettings {
            concurrency: c.concurrency,
            timeout: c.timeout,
            retry_base: c.retry_base,
            retry_max: c.retry_max,
            max_age: c.max_age,
            inbound_secret,
        }
    }

    fn backoff(&self, attempts: u32) -> Duration {
        self.retry_base
            .saturating_mul(2u32.saturating_pow(attempts.min(20)))
            .min(self.retry_max)
    }
}

/// Runs deliveries until `shutdown`.
pub async fn run(
    store: Arc<dyn Store>,
    settings: WebhookSettings,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let client = match reqwest::Client::builder()
        .timeout(settings.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "webhook client cannot be built; webhooks disabled");
            return;
        }
    };
    let worker = Worker {
        store,
        settings,
        metrics,
        client,
        secrets: tokio::sync::Mutex::new(HashMap::new()),
    };
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let worked = if worker.store.webhook_depth() == 0 {
            false
        } else {
            worker.round().await
        };
        if !worked {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(IDLE) => {}
            }
        }
    }
}

struct Worker {
    store: Arc<dyn Store>,
    settings: WebhookSettings,
    metrics: Arc<Metrics>,
    client: reqwest::Client,
    /// API key name → webhook secret.
    secrets: tokio::sync::Mutex<HashMap<String, Option<String>>>,
}

impl Worker {
    /// Delivers one claimed round; `false` when nothing was due.
    async fn round(&self) -> bool {
        let lease = self.settings.timeout * 2 + Duration::from_secs(5);
        let jobs = match self
            .store
            .claim_webhooks(now_micros(), self.settings.concurrency * 4, lease)
            .await
        {
            Ok(jobs) => jobs,
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim webhooks");
                return false;
            }
        };
        if jobs.is_empty() {
            return false;
        }
        let results: Vec<(WebhookJob, WebhookResult)> = futures_util::stream::iter(jobs)
            .map(|job| async move {
                let result = self.deliver(&job).await;
                (job, result)
            })
            .buffer_unordered(self.settings.concurrency)
            .collect()
            .await;
        if let Err(e) = self.store.finish_webhooks(results).await {
            // The claims lapse and the jobs are tried again: at-least-once.
            tracing::warn!(error = %e, "cannot record webhook results");
        }
        true
    }

    async fn deliver(&self, job: &WebhookJob) -> WebhookResult {
        let (body, secret, event) = match self.payload(job).await {
            Ok(p) => p,
            Err(reason) => {
                tracing::warn!(job = %job.id, %reason, "webhook dropped");
                self.metrics.webhook("dropped");
                return WebhookResult::Done;
            }
        };
        let mut request = self
            .client
            .post(&job.url)
            .header("content-type", "application/json")
            .header("x-herald-event", event)
            .header("x-herald-delivery", job.id.to_string());
        if let Some(secret) = &secret {
            request = request.header(SIGNATURE_HEADER, sign(secret, &body));
        }
        let error = match request.body(body).send().await {
            Ok(r) if r.status().is_success() => {
                self.metrics.webhook("delivered");
                return WebhookResult::Done;
            }
            Ok(r) => format!("answered {}", r.status()),
            Err(e) => format!("request failed: {e}"),
        };
        let now = now_micros();
        let age = Duration::from_micros(u64::try_from(now - job.created_at).unwrap_or(0));
        if age >= self.settings.max_age {
            tracing::warn!(job = %job.id, url = %job.url, %error, attempts = job.attempts + 1, "webhook given up");
            self.metrics.webhook("given_up");
            return WebhookResult::Done;
        }
        self.metrics.webhook("retried");
        let delay = self.settings.backoff(job.attempts);
        tracing::info!(job = %job.id, url = %job.url, %error, retry_in = ?delay, "webhook failed");
        WebhookResult::Retry {
            next_at: now + Micros::try_from(delay.as_micros()).unwrap_or(i64::MAX / 2),
            error,
        }
    }

    /// The body, signing secret and event name of a job.
    async fn payload(
        &self,
        job: &WebhookJob,
    ) -> Result<(Vec<u8>, Option<String>, &'static str), String> {
        match &job.event {
            WebhookEvent::MessageStatus { message_id, owner } => {
                let m = self
                    .store
                    .message(*message_id)
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or("message no longer exists")?;
                let body = serde_json::to_vec(&MessageView::from_message(&m))
                    .map_err(|e| e.to_string())?;
                Ok((body, self.secret_of(owner).await, "message.status"))
            }
            WebhookEvent::Inbound { record } => {
                let body = serde_json::to_vec(&crate::api::inbound::InboundView::from(record))
                    .map_err(|e| e.to_string())?;
                Ok((body, self.settings.inbound_secret.clone(), "inbound"))
            }
        }
    }

    async fn secret_of(&self, owner: &str) -> Option<String> {
        let mut secrets = self.secrets.lock().await;
        if let Some(s) = secrets.get(owner) {
            return s.clone();
        }
        if let Ok(keys) = self.store.api_keys().await {
            for k in keys {
                secrets.insert(k.name, k.webhook_secret);
            }
        }
        secrets.get(owner).cloned().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_reject_tampering() {
        let sig = sign("whsec_1", b"{\"a\":1}");
        assert!(sig.starts_with("sha256="));
        assert_eq!(sig.len(), 7 + 64);
        assert!(verify("whsec_1", b"{\"a\":1}", &sig));
        assert!(!verify("whsec_1", b"{\"a\":2}", &sig));
        assert!(!verify("whsec_2", b"{\"a\":1}", &sig));
        assert!(!verify("whsec_1", b"{\"a\":1}", "sha256=zz"));
    }

    #[test]
    fn signature_matches_a_known_vector() {
        // RFC 4231 test case 2.
        let sig = sign("Jefe", b"what do ya want for nothing?");
        assert_eq!(
            sig,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}

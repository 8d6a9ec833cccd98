//! Webhook delivery: message status callbacks (`callback_url`) and inbound
//! messages, signed in the Standard Webhooks convention ([`signature`]).
//!
//! Jobs are queued in the store by the same write that makes a message final
//! (or stores an inbound message), so a crash never loses one. This worker
//! claims due jobs with a lease and delivers each as soon as it is claimed,
//! up to `webhooks.concurrency` at once and `webhooks.per_destination` per
//! destination (scheme, host and port): a slow or tarpitting receiver holds
//! only its own slots, and its surplus jobs are put back for a moment
//! (without counting as an attempt) instead of waiting in line before other
//! receivers' jobs. Each result is recorded as it comes: delivered, or
//! retried with exponential backoff until `max_age`. The worker runs apart
//! from the dispatcher and never slows it down.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use tokio_util::sync::CancellationToken;

use crate::config::{Secret, WebhooksConfig};
use crate::metrics::Metrics;
use crate::model::{Micros, now_micros};
use crate::store::{Store, WebhookEvent, WebhookJob, WebhookResult};
use crate::view::{InboundView, MessageView};

pub mod destination;
mod send;
pub mod signature;

pub use destination::{DestinationPolicy, Forbidden};
pub use send::{SendError, Sender, TlsSetupError};
pub use signature::SigningKey;

/// How long to sleep when nothing is due.
const IDLE: Duration = Duration::from_millis(100);
/// A job claimed while its destination has no free slot goes back to the
/// queue for this long (its claim is not held: other destinations' jobs
/// come first).
const BUSY_DESTINATION_DELAY: Duration = Duration::from_millis(250);
/// On shutdown, deliveries under way get this long to finish; the claims
/// of those still running lapse and they are sent again later.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// How long looked-up API key webhook secrets are used before they are read
/// again: a key revoked and created anew under the same name signs with its
/// new secret within this.
pub const SECRET_TTL: Duration = Duration::from_secs(60);
/// An owner missing from the cache (a key just created) rereads the keys, at
/// most this often.
const SECRET_MISS_RETRY: Duration = Duration::from_secs(1);

/// Retry `attempts + 1` waits this long: `retry_base` doubling per
/// attempt, capped at `retry_max`.
fn backoff(config: &WebhooksConfig, attempts: u32) -> Duration {
    config
        .retry_base
        .saturating_mul(2u32.saturating_pow(attempts.min(20)))
        .min(config.retry_max)
}

/// Runs deliveries until `shutdown`.
/// Inbound webhooks are signed with `inbound_secret` (`inbound.webhook_secret`).
pub async fn run(
    store: Arc<dyn Store>,
    config: WebhooksConfig,
    inbound_secret: Option<Secret>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    // Config validation has checked the allowlist; an unusable one (only
    // possible for a config built in code) allows nothing inside.
    let policy = DestinationPolicy::new(&config.allow_destinations).unwrap_or_else(|e| {
        tracing::error!(error = %e, "webhooks.allow_destinations unusable; no inside address allowed");
        DestinationPolicy::default()
    });
    let sender = match Sender::new(config.tls_ca.as_deref(), config.timeout, policy) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "webhook sender cannot be built; webhooks disabled");
            return;
        }
    };
    let worker = Worker::new(store, config, inbound_secret, metrics, sender);
    worker.serve(&shutdown).await;
}

/// Where a job goes, as far as per-destination slots are concerned:
/// scheme, host and port of its URL (the URL itself when unparseable).
fn destination_of(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => format!(
            "{}://{}:{}",
            u.scheme(),
            u.host_str().unwrap_or_default(),
            u.port_or_known_default().unwrap_or(0)
        ),
        Err(_) => url.to_string(),
    }
}

struct Worker {
    store: Arc<dyn Store>,
    config: WebhooksConfig,
    inbound_secret: Option<Secret>,
    /// How long API key secrets are cached ([`SECRET_TTL`]; tests shorten it).
    secret_ttl: Duration,
    metrics: Arc<Metrics>,
    sender: Sender,
    /// API key name → webhook secret, read from the store at most every
    /// [`SECRET_TTL`].
    secrets: Mutex<Secrets>,
}

#[derive(Default)]
struct Secrets {
    loaded_at: Option<tokio::time::Instant>,
    by_owner: HashMap<String, Option<String>>,
}

/// Why a job has no payload.
enum PayloadError {
    /// Nothing left to send (e.g. the message is gone): drop the job.
    Gone(String),
    /// Not now (e.g. the store is unavailable): try again later.
    Unavailable(String),
    /// It would have to go unsigned: refuse it.
    Unsigned(&'static str),
}

impl Worker {
    fn new(
        store: Arc<dyn Store>,
        config: WebhooksConfig,
        inbound_secret: Option<Secret>,
        metrics: Arc<Metrics>,
        sender: Sender,
    ) -> Self {
        Worker {
            store,
            config,
            inbound_secret,
            secret_ttl: SECRET_TTL,
            metrics,
            sender,
            secrets: Mutex::new(Secrets::default()),
        }
    }

    /// Claims and delivers until `shutdown`.
    async fn serve(&self, shutdown: &CancellationToken) {
        let mut in_flight = FuturesUnordered::new();
        let mut per_destination: HashMap<String, usize> = HashMap::new();
        loop {
            let free = self.config.concurrency.saturating_sub(in_flight.len());
            let mut started = 0;
            let mut more_due = false;
            if free > 0 && self.store.webhook_depth() > 0 {
                let jobs = self.claim(free).await;
                more_due = jobs.len() == free;
                let mut busy = Vec::new();
                for job in jobs {
                    let destination = destination_of(&job.url);
                    let slots = per_destination.entry(destination.clone()).or_default();
                    if *slots >= self.config.per_destination {
                        busy.push(job);
                        continue;
                    }
                    *slots += 1;
                    started += 1;
                    in_flight.push(async move {
                        let result = self.deliver(&job).await;
                        (destination, job, result)
                    });
                }
                self.put_back(busy).await;
            }
            // Claim again at once while jobs are due and slots are free;
            // otherwise wait for a delivery to finish or new work.
            let pause = if started > 0 && more_due {
                Duration::ZERO
            } else {
                IDLE
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(first) = in_flight.next(), if !in_flight.is_empty() => {
                    let mut done = vec![first];
                    while let Some(Some(next)) = in_flight.next().now_or_never() {
                        done.push(next);
                    }
                    self.finish(done, &mut per_destination).await;
                }
                () = tokio::time::sleep(pause) => {}
            }
        }
        // Let deliveries under way finish briefly; the rest lapse and are
        // claimed again later (at-least-once).
        let mut done = Vec::new();
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while let Some(d) = in_flight.next().await {
                done.push(d);
            }
        })
        .await;
        self.finish(done, &mut per_destination).await;
    }

    /// Claims up to `limit` due jobs (none when the store cannot say).
    async fn claim(&self, limit: usize) -> Vec<WebhookJob> {
        let lease = self.config.timeout * 2 + Duration::from_secs(5);
        match self.store.claim_webhooks(now_micros(), limit, lease).await {
            Ok(jobs) => jobs,
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim webhooks");
                Vec::new()
            }
        }
    }

    /// Jobs whose destination has no free slot go back to the queue for a
    /// moment, without counting as an attempt.
    async fn put_back(&self, jobs: Vec<WebhookJob>) {
        if jobs.is_empty() {
            return;
        }
        let next_at = now_micros()
            + Micros::try_from(BUSY_DESTINATION_DELAY.as_micros()).unwrap_or(i64::MAX / 2);
        let results = jobs
            .into_iter()
            .map(|job| (job, WebhookResult::Postpone { next_at }))
            .collect();
        if let Err(e) = self.store.finish_webhooks(results).await {
            // Their claims lapse and they are claimed again.
            tracing::warn!(error = %e, "cannot put back webhooks");
        }
    }

    /// Records finished deliveries and frees their destinations' slots.
    async fn finish(
        &self,
        done: Vec<(String, WebhookJob, WebhookResult)>,
        per_destination: &mut HashMap<String, usize>,
    ) {
        if done.is_empty() {
            return;
        }
        let mut results = Vec::with_capacity(done.len());
        for (destination, job, result) in done {
            if let Some(slots) = per_destination.get_mut(&destination) {
                *slots = slots.saturating_sub(1);
                if *slots == 0 {
                    per_destination.remove(&destination);
                }
            }
            results.push((job, result));
        }
        if let Err(e) = self.store.finish_webhooks(results).await {
            // The claims lapse and the jobs are tried again: at-least-once.
            tracing::warn!(error = %e, "cannot record webhook results");
        }
    }

    async fn deliver(&self, job: &WebhookJob) -> WebhookResult {
        let (body, key, event) = match self.payload(job).await {
            Ok(p) => p,
            Err(PayloadError::Gone(reason)) => {
                tracing::warn!(job = %job.id, %reason, "webhook dropped");
                self.metrics.webhook("dropped");
                return WebhookResult::Done;
            }
            Err(PayloadError::Unsigned(key)) => {
                tracing::error!(job = %job.id, url = %loggable_url(&job.url), "webhook dropped: it would go unsigned; set {key}");
                self.metrics.webhook("dropped");
                return WebhookResult::Done;
            }
            Err(PayloadError::Unavailable(error)) => {
                return self.retry_or_give_up(job, format!("not ready to send: {error}"));
            }
        };
        let id = job.id.to_string();
        let timestamp = jiff::Timestamp::now().as_second();
        let mut headers = vec![
            ("content-type", "application/json".to_string()),
            ("x-herald-event", event.to_string()),
            (signature::ID_HEADER, id.clone()),
            (signature::TIMESTAMP_HEADER, timestamp.to_string()),
        ];
        if let Some(key) = &key {
            headers.push((signature::SIGNATURE_HEADER, key.sign(&id, timestamp, &body)));
        }
        let error = match self.sender.post(&job.url, &headers, body).await {
            Ok(status) if status.is_success() => {
                self.metrics.webhook("delivered");
                return WebhookResult::Done;
            }
            Ok(status) => format!("answered {status}"),
            Err(SendError::Forbidden(e)) => {
                tracing::warn!(job = %job.id, url = %loggable_url(&job.url), error = %e, "webhook refused");
                self.metrics.webhook("refused_destination");
                return WebhookResult::Done;
            }
            Err(e) if e.is_permanent() => {
                tracing::warn!(job = %job.id, url = %loggable_url(&job.url), error = %e, "webhook dropped");
                self.metrics.webhook("dropped");
                return WebhookResult::Done;
            }
            Err(e) => format!("request failed: {e}"),
        };
        self.retry_or_give_up(job, error)
    }

    /// A failed attempt: retried with backoff, or given up past `max_age`.
    fn retry_or_give_up(&self, job: &WebhookJob, error: String) -> WebhookResult {
        let now = now_micros();
        let age = Duration::from_micros(u64::try_from(now - job.created_at).unwrap_or(0));
        if age >= self.config.max_age {
            tracing::warn!(job = %job.id, url = %loggable_url(&job.url), %error, attempts = job.attempts + 1, "webhook given up");
            self.metrics.webhook("given_up");
            return WebhookResult::Done;
        }
        self.metrics.webhook("retried");
        let delay = backoff(&self.config, job.attempts);
        tracing::info!(job = %job.id, url = %loggable_url(&job.url), %error, retry_in = ?delay, "webhook failed");
        WebhookResult::Retry {
            next_at: now + Micros::try_from(delay.as_micros()).unwrap_or(i64::MAX / 2),
            error,
        }
    }

    /// The body, signing secret and event name of a job.
    async fn payload(
        &self,
        job: &WebhookJob,
    ) -> Result<(Vec<u8>, Option<SigningKey>, &'static str), PayloadError> {
        let encode = |e: serde_json::Error| PayloadError::Gone(e.to_string());
        match &job.event {
            WebhookEvent::MessageStatus { message_id, owner } => {
                let m = self
                    .store
                    .message(*message_id)
                    .await
                    .map_err(|e| PayloadError::Unavailable(e.to_string()))?
                    .ok_or_else(|| PayloadError::Gone("message no longer exists".into()))?;
                let key = match self.secret_of(owner).await? {
                    None => None,
                    Some(secret) => Some(SigningKey::from_secret(&secret).map_err(|e| {
                        PayloadError::Gone(format!("webhook secret of key {owner:?} {e}"))
                    })?),
                };
                let body = serde_json::to_vec(&MessageView::from_message(&m)).map_err(encode)?;
                Ok((body, key, "message.status"))
            }
            WebhookEvent::Inbound { record } => {
                // Config validation requires the secret with a webhook_url;
                // this also covers URLs named by an on_inbound hook.
                // Config validation also checked the secret's form.
                let key = self
                    .inbound_secret
                    .as_ref()
                    .and_then(|s| SigningKey::from_secret(s.expose()).ok())
                    .ok_or(PayloadError::Unsigned("inbound.webhook_secret"))?;
                let body = serde_json::to_vec(&InboundView::from(record)).map_err(encode)?;
                Ok((body, Some(key), "inbound"))
            }
        }
    }

    /// The webhook secret of the API key with id (or, for messages stored
    /// before keys owned them by id, the name) `owner` (`None` for a key
    /// without one, or no such key), from a cache re-read every
    /// [`SECRET_TTL`] (and on a miss, at most every second). When several
    /// keys had that name, the live one wins over revoked ones, the newest
    /// over older ones.
    async fn secret_of(&self, owner: &str) -> Result<Option<String>, PayloadError> {
        {
            let secrets = lock(&self.secrets);
            let age = secrets.loaded_at.map(|t| t.elapsed());
            let ttl = self.secret_ttl;
            match secrets.by_owner.get(owner) {
                Some(secret) if age.is_some_and(|a| a < ttl) => return Ok(secret.clone()),
                // A key created since the last read is looked up at once,
                // but unknown owners do not reread the keys for every job.
                None if age.is_some_and(|a| a < ttl.min(SECRET_MISS_RETRY)) => return Ok(None),
                _ => {}
            }
        }
        let mut keys = self
            .store
            .api_keys()
            .await
            .map_err(|e| PayloadError::Unavailable(format!("API keys unreadable: {e}")))?;
        // Later entries win: revoked before live, older before newer.
        keys.sort_by_key(|k| (k.revoked_at.is_none(), k.created_at));
        // Messages are owned by key id; those stored before that by name.
        // Ids go in last, so no name can stand in for a key's id.
        let mut by_owner: HashMap<String, Option<String>> = keys
            .iter()
            .map(|k| (k.name.clone(), k.webhook_secret.clone()))
            .collect();
        by_owner.extend(keys.into_iter().map(|k| (k.id, k.webhook_secret)));
        let secret = by_owner.get(owner).cloned().flatten();
        let mut secrets = lock(&self.secrets);
        secrets.by_owner = by_owner;
        secrets.loaded_at = Some(tokio::time::Instant::now());
        Ok(secret)
    }
}

fn lock(m: &Mutex<Secrets>) -> std::sync::MutexGuard<'_, Secrets> {
    // Each critical section replaces or reads the map whole: safe after a panic.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `url` as it may appear in a log: scheme, host, port and path only. A
/// query string or user-info often carries a token, and logs travel
/// further than the config that holds them.
pub fn loggable_url(url: &str) -> String {
    let Ok(uri) = url.parse::<hyper::Uri>() else {
        return "(unparseable URL)".into();
    };
    let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host()) else {
        return "(unparseable URL)".into();
    };
    let port = uri.port_u16().map(|p| format!(":{p}")).unwrap_or_default();
    format!("{scheme}://{host}{port}{}", uri.path())
}

#[cfg(test)]
mod tests {
    #[test]
    fn logged_urls_keep_neither_query_nor_user_info() {
        assert_eq!(
            super::loggable_url("https://user:pw@hooks.example.com:8443/cb?token=s3cret#x"),
            "https://hooks.example.com:8443/cb"
        );
        assert_eq!(super::loggable_url("http://h/p"), "http://h/p");
        assert_eq!(super::loggable_url("not a url"), "(unparseable URL)");
    }

    use super::*;

    fn key(name: &str, id: &str, secret: &str, created_at: Micros) -> crate::store::ApiKeyRecord {
        crate::store::ApiKeyRecord {
            id: id.into(),
            name: name.into(),
            scopes: vec!["send".into()],
            hash: "unused".into(),
            created_at,
            revoked_at: None,
            webhook_secret: Some(secret.into()),
            senders: Vec::new(),
        }
    }

    // Paused time: the cache's clock is tokio's, so the waits below cost
    // nothing and cannot be stretched by a loaded machine.
    #[tokio::test(start_paused = true)]
    async fn key_secrets_are_reread_after_the_cache_ttl() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> = Arc::new(
            crate::store::EmbeddedStore::open(&dir.path().join("h.db"), 8 << 20).expect("open"),
        );
        let ttl = Duration::from_secs(2);
        let mut worker = Worker::new(
            store.clone(),
            WebhooksConfig::default(),
            None,
            Arc::new(Metrics::new()),
            Sender::new(None, Duration::from_secs(1), DestinationPolicy::default())
                .expect("sender"),
        );
        worker.secret_ttl = ttl;
        let secret = async |owner: &str| worker.secret_of(owner).await.ok().flatten();
        store
            .create_api_key(key("shop", "k1", "whsec_old", 1))
            .await
            .expect("create");
        assert_eq!(secret("shop").await.as_deref(), Some("whsec_old"));
        // A key created after the cache was filled is found long before the
        // cache expires...
        tokio::time::sleep(SECRET_MISS_RETRY + Duration::from_millis(100)).await;
        store
            .create_api_key(key("news", "k2", "whsec_news", 2))
            .await
            .expect("create");
        assert_eq!(secret("news").await.as_deref(), Some("whsec_news"));
        // ...and a key revoked and created again under the same name signs
        // with its new secret once the cache has expired.
        assert!(store.revoke_api_key("shop", 3).await.expect("revoke"));
        store
            .create_api_key(key("shop", "k3", "whsec_new", 4))
            .await
            .expect("create");
        assert_eq!(secret("shop").await.as_deref(), Some("whsec_old"), "cached");
        tokio::time::sleep(ttl).await;
        assert_eq!(secret("shop").await.as_deref(), Some("whsec_new"));
        store.close().await;
    }
}

//! Inbound (mobile-originated) messages: the operator's `on_inbound` hook,
//! STOP/START keywords (marketing opt-out), storage, inbound webhooks and
//! automatic replies.
//!
//! Order per message: `on_inbound` may drop it, name a webhook for it, or
//! ask for a reply; STOP/START keywords opt the sender out/in (even when the
//! hook drops the message); then it is stored (with its webhook queued in the
//! same write); replies go through normal admission as transactional
//! messages, limits and routing included.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::admission::{Admitter, Outgoing};
use crate::auth::{Principal, Scope};
use crate::config::InboundConfig;
use crate::connector::InboundMessage;
use crate::metrics::Metrics;
use crate::model::InboundRecord;
use crate::model::{Class, MessageId, now_micros};
use crate::script::Scripts;
use crate::store::{InboundStore, StoreError};

/// Principal that automatic replies are sent as.
pub const REPLY_PRINCIPAL: &str = "inbound-reply";

/// `opt_out`, `opt_in` or nothing: whether `body` is one of the configured
/// STOP/START keywords (compared trimmed, any case).
pub fn keyword_action(config: &InboundConfig, body: &str) -> Option<&'static str> {
    let word = body.trim();
    let is = |list: &[String]| list.iter().any(|k| k.eq_ignore_ascii_case(word));
    if is(&config.stop_keywords) {
        Some("opt_out")
    } else if is(&config.start_keywords) {
        Some("opt_in")
    } else {
        None
    }
}

/// Handles inbound messages for the receipt recorder.
#[derive(Default)]
pub struct InboundHandler {
    config: InboundConfig,
    /// The operator's `on_inbound` hook, when running in a gateway.
    scripts: Option<Arc<Scripts>>,
    /// Admits automatic replies, when running in a gateway.
    replies: Option<Arc<Admitter>>,
}

impl InboundHandler {
    /// Keywords, storage and webhooks only.
    pub fn new(config: InboundConfig) -> Self {
        InboundHandler {
            config,
            scripts: None,
            replies: None,
        }
    }

    /// Also runs `on_inbound` from `scripts` and admits the replies it asks
    /// for through `admitter`.
    #[must_use]
    pub fn with_scripts(mut self, scripts: Arc<Scripts>, admitter: Arc<Admitter>) -> Self {
        self.scripts = Some(scripts);
        self.replies = Some(admitter);
        self
    }

    /// Handles a batch of inbound messages. Returns, per message in order,
    /// whether its effects are durable (stored with its webhook, or for a
    /// message the hook dropped, its opt-out keyword applied): only those may
    /// be acknowledged to the carrier.
    pub async fn handle(
        &self,
        store: &dyn InboundStore,
        metrics: &Metrics,
        mos: Vec<InboundMessage>,
    ) -> Vec<bool> {
        let mut stored = vec![false; mos.len()];
        let mut by_webhook: BTreeMap<Option<String>, (Vec<usize>, Vec<InboundRecord>)> =
            BTreeMap::new();
        let mut replies = Vec::new();
        for (index, mo) in mos.into_iter().enumerate() {
            let decision = self
                .scripts
                .as_ref()
                .map(|scripts| scripts.on_inbound(&mo))
                .unwrap_or_default();
            let action = keyword_action(&self.config, &mo.body);
            if decision.drop {
                // Opting out is the sender's right: a script cannot swallow it.
                stored[index] = apply_keyword(store, &mo.from, action).await;
                metrics.inbound("dropped");
                tracing::info!(connector = %mo.connector, "inbound message dropped by on_inbound");
                continue;
            }
            metrics.inbound(action.unwrap_or("message"));
            tracing::info!(connector = %mo.connector, action = ?action, "inbound message");
            if let Some(reply) = decision.reply {
                replies.push((mo.from.clone(), reply));
            }
            let mut webhook = decision.webhook.or_else(|| self.config.webhook_url.clone());
            // Without `inbound.webhook_secret` no inbound webhook is queued,
            // not even one an `on_inbound` hook names: Herald never POSTs
            // unsigned.
            if webhook.is_some() && self.config.webhook_secret.is_none() {
                // Config validation ties inbound.webhook_url to the secret;
                // this catches URLs named by on_inbound.
                tracing::error!(
                    connector = %mo.connector,
                    url = ?webhook,
                    "inbound webhook not queued: it would go unsigned; set inbound.webhook_secret"
                );
                metrics.webhook("refused_unsigned");
                webhook = None;
            }
            let (indices, records) = by_webhook.entry(webhook).or_default();
            indices.push(index);
            records.push(InboundRecord {
                id: MessageId::generate(),
                connector: mo.connector,
                from: mo.from,
                to: mo.to,
                body: mo.body,
                received_at: now_micros(),
                action: action.map(str::to_string),
            });
        }
        for (webhook, (indices, records)) in by_webhook {
            let ok = store_inbound(store, records, webhook).await;
            for index in indices {
                stored[index] = ok;
            }
        }
        if let Some(admitter) = &self.replies {
            for (to, body) in replies {
                send_reply(admitter, to, body).await;
            }
        }
        stored
    }
}

/// Records an opt-out or opt-in for a message that is otherwise dropped;
/// false when it could not be recorded (the carrier is then asked to resend).
async fn apply_keyword(store: &dyn InboundStore, from: &str, action: Option<&str>) -> bool {
    let result = match action {
        Some("opt_out") => store.opt_out(from, now_micros()).await,
        Some("opt_in") => store.opt_in(from).await.map(|_| ()),
        _ => return true,
    };
    match result {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(error = %e, "opt-out keyword could not be recorded");
            false
        }
    }
}

/// Sends an automatic reply as a transactional message, admitted like any
/// other (limits and routing included) under the [`REPLY_PRINCIPAL`].
async fn send_reply(admitter: &Admitter, to: String, body: String) {
    let who = Principal::internal(REPLY_PRINCIPAL, &[Scope::Send]);
    let mut reply = Outgoing::text(to, body, Class::Transactional);
    reply.tags = vec!["auto-reply".to_string()];
    match admitter.admit_one(&who, reply).await {
        Ok(_) => tracing::info!("automatic reply queued"),
        Err(e) => tracing::warn!(error = %e, "automatic reply refused"),
    }
}

/// Stores inbound messages, retrying while the store is unavailable; false
/// when the store is closed and they were not stored.
async fn store_inbound(
    store: &dyn InboundStore,
    records: Vec<InboundRecord>,
    webhook: Option<String>,
) -> bool {
    let mut delay = Duration::from_millis(100);
    loop {
        match store.record_inbound(records.clone(), webhook.clone()).await {
            Ok(()) => return true,
            Err(StoreError::Closed) => {
                tracing::warn!(
                    count = records.len(),
                    "store closed; inbound messages not stored (left to the carrier to resend)"
                );
                return false;
            }
            Err(e) => {
                tracing::warn!(error = %e, "storing inbound messages failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Most stored inbound messages one page request reads while looking for
/// the caller's own (a page may come back short, with `next_after` set).
const MOST_SCANNED: usize = 10_000;

/// A page of the inbound messages `who` may see, after `after` in arrival
/// order, and the cursor for the next page (`None` on the last).
///
/// Who sees what: an inbound message belongs to whoever may send as the
/// number or short code it was sent to ([`crate::senders::may_read_inbound`]),
/// so replies reach the tenant that sent from that number and no other.
///
/// # Errors
/// The store's.
pub async fn page_for(
    store: &dyn InboundStore,
    who: &Principal,
    after: Option<MessageId>,
    limit: usize,
) -> Result<(Vec<InboundRecord>, Option<MessageId>), StoreError> {
    let batch = (limit + 1).clamp(100, 1000);
    let mut cursor = after;
    let mut items = Vec::new();
    let mut scanned = 0;
    loop {
        let records = store.inbound(cursor, batch).await?;
        let last_batch = records.len() < batch;
        for r in records {
            scanned += 1;
            cursor = Some(r.id);
            if crate::senders::may_read_inbound(who, &r.to) {
                if items.len() == limit {
                    // One more exists: the page ends at the previous item.
                    let next = items.last().map(|i: &InboundRecord| i.id);
                    return Ok((items, next));
                }
                items.push(r);
            }
        }
        if last_batch {
            return Ok((items, None));
        }
        if scanned >= MOST_SCANNED {
            return Ok((items, cursor));
        }
    }
}

//! The SMPP 3.4 carrier connector (`kind = "smpp"`), on rusmppc.
//!
//! A connector keeps `binds` sessions to one SMSC, each owned by its own task
//! that connects, binds, keeps the link alive and reconnects with jittered
//! exponential backoff. [`SmppConnector::submit`] picks a bound session
//! round-robin and sends the message's parts on it, each `submit_sm` holding
//! one window permit until its response (rusmppc pipelines any number of
//! requests on a session, so the window is ours to enforce: a long message
//! never puts more than the window outstanding). Receipts and inbound
//! messages come back as [`ConnectorEvent`]s on the gateway's channel.
//!
//! Fault behaviour, in one place:
//! - throttling (ESME_RTHROTTLED, ESME_RMSGQFUL): the submit returns
//!   [`SubmitError::Throttled`] and the session pauses submits for
//!   `throttle_pause`, so a storm turns into back-pressure instead of a flood;
//! - a lost link: in-flight submits fail as temporary (the dispatcher retries
//!   them: duplicates at most one window), the session reconnects;
//! - a long message whose parts partly failed: the parts the carrier took are
//!   returned in [`SubmitFailure::partial`] and kept with the message, so the
//!   retry sends only the missing parts, under the same concatenation
//!   reference (see [`crate::model::PartialSubmit`]);
//! - bind refused: retried forever with backoff; the connector is not ready
//!   meanwhile, and after `dispatch.failover_after` the dispatcher moves its
//!   queue to the next connector of each message's route;
//! - permanent statuses ([`status`]) fail the message over at once;
//! - bind state errors (ESME_RINVBNDSTS, ESME_RALYBND): the message is
//!   retried and the session drops the bind and binds again.
//!
//! Layout, one job per file:
//! - `transport`: TCP/TLS connect and the rusmppc client.
//! - `session`: one bind's task: bind, inbound PDUs, reconnect.
//! - `bind`: a bind's shared state (client, window, throttle pause).
//! - `backoff`: reconnect delays with jitter.
//! - `submit`: message → `submit_sm` PDUs (encoding, UDH/SAR, addresses).
//! - `status`: `command_status` → retry / throttle / failover.
//! - `deliver`: `deliver_sm` → receipt or inbound part.
//! - `inbound`: inbound decoding and concatenated-message reassembly.

mod backoff;
mod bind;
mod deliver;
mod inbound;
mod session;
pub mod status;
mod submit;
mod transport;

#[cfg(test)]
mod tests;

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use rusmpp::pdus::{SubmitSm, SubmitSmResp};
use rusmppc::Client;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

pub use crate::config::{SmppConfig, TlsSettings};
pub use submit::PrepareError;
pub use transport::TlsSetupError;

use self::bind::{BindSlot, Role};
use self::session::Session;
use self::status::Verdict;
use self::transport::Transport;
use super::{Connector, EventSender, SubmitAck, SubmitError, SubmitFailure};
use crate::config::BindMode;
use crate::model::{Message, Micros, PartialSubmit, now_micros};

/// Longest wait for the bind tasks to unbind on shutdown.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Why an SMPP connector cannot start.
#[derive(Debug, thiserror::Error)]
pub enum SmppError {
    #[error("connector {name}: {source}")]
    Tls { name: String, source: TlsSetupError },
}

/// An SMPP carrier; see the module docs.
pub struct SmppConnector {
    settings: Arc<SmppConfig>,
    /// Binds that submit, in round-robin order.
    submitters: Vec<Arc<BindSlot>>,
    next_bind: AtomicUsize,
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl std::fmt::Debug for SmppConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmppConnector")
            .field("name", &self.settings.name)
            .field("binds", &self.submitters.len())
            .finish_non_exhaustive()
    }
}

impl SmppConnector {
    /// Starts the bind tasks and returns at once; binds come up in the
    /// background ([`Connector::is_ready`] says when one is). Receipts and
    /// inbound messages go to `events`.
    ///
    /// # Errors
    /// [`SmppError`] when the TLS configuration is unusable.
    pub fn start(settings: SmppConfig, events: EventSender) -> Result<Arc<Self>, SmppError> {
        let transport = Arc::new(Transport::new(&settings).map_err(|source| SmppError::Tls {
            name: settings.name.clone(),
            source,
        })?);
        let settings = Arc::new(settings);
        let role = match settings.bind {
            BindMode::Transceiver => Role::Transceiver,
            BindMode::Transmitter => Role::Transmitter,
        };
        let mut slots: Vec<Arc<BindSlot>> = (0..settings.binds)
            .map(|i| Arc::new(BindSlot::new(i, role, settings.window)))
            .collect();
        if role == Role::Transmitter {
            slots.push(Arc::new(BindSlot::new(settings.binds, Role::Receiver, 1)));
        }
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        let inbound = Arc::new(Mutex::new(inbound::Reassembler::default()));
        for slot in &slots {
            let span = tracing::info_span!(
                "smpp_bind",
                connector = %settings.name,
                bind = slot.index,
                role = slot.role.as_str(),
                smsc = %settings.address(),
            );
            let session = Session {
                slot: slot.clone(),
                settings: settings.clone(),
                transport: transport.clone(),
                events: events.clone(),
                inbound: inbound.clone(),
                stop: stop.clone(),
            };
            tasks.spawn(session.run().instrument(span));
        }
        tasks.close();
        Ok(Arc::new(SmppConnector {
            submitters: slots.into_iter().filter(|s| s.role.submits()).collect(),
            settings,
            next_bind: AtomicUsize::new(0),
            stop,
            tasks,
        }))
    }

    /// The settings in use.
    pub fn settings(&self) -> &SmppConfig {
        &self.settings
    }

    /// How many submitting binds are up.
    pub fn binds_up(&self) -> usize {
        self.submitters.iter().filter(|s| s.is_bound()).count()
    }

    /// The next bound bind round-robin, preferring one with a free window
    /// slot and no throttle pause.
    fn pick(&self) -> Option<Arc<BindSlot>> {
        let n = self.submitters.len();
        let start = self.next_bind.fetch_add(1, Ordering::Relaxed);
        let mut fallback = None;
        for i in 0..n {
            let slot = &self.submitters[(start + i) % n];
            if !slot.is_bound() {
                continue;
            }
            if slot.window.available_permits() > 0 && !slot.is_paused() {
                return Some(slot.clone());
            }
            fallback.get_or_insert(slot);
        }
        fallback.cloned()
    }

    /// What a failed `submit_sm` on session `generation` of `slot` means for
    /// the message (and for the bind).
    fn failure(
        &self,
        slot: &BindSlot,
        generation: u64,
        error: rusmppc::error::Error,
    ) -> SubmitError {
        use rusmppc::error::Error as E;
        match error {
            E::UnexpectedResponse { response } => {
                let status = response.status();
                let text = status::describe(status);
                match status::classify(status) {
                    Verdict::Throttled => {
                        tracing::debug!(bind = slot.index, status = %text, "throttled; pausing bind");
                        slot.pause(self.settings.throttle_pause);
                        SubmitError::Throttled
                    }
                    Verdict::Temporary => {
                        SubmitError::Temporary(format!("carrier answered {text}"))
                    }
                    Verdict::Rebind => {
                        if slot.request_rebind(generation) {
                            tracing::warn!(bind = slot.index, status = %text, "the SMSC reports a bind state error; dropping the bind to bind again");
                        }
                        SubmitError::Temporary(format!("carrier answered {text}; rebinding"))
                    }
                    Verdict::Permanent => {
                        SubmitError::Permanent(format!("carrier answered {text}"))
                    }
                }
            }
            E::ResponseTimeout { timeout, .. } => {
                SubmitError::Temporary(format!("no submit_sm_resp within {timeout:?}"))
            }
            other => SubmitError::Temporary(format!("link failed: {other}")),
        }
    }

    /// Sends the parts of a long message still without a carrier id, in
    /// order on one bind, each holding its own window slot: never more
    /// `submit_sm` outstanding than the window, however long the message.
    /// After the first failure no further part is sent (the carrier is
    /// throttling, refusing or gone), nor any once the message's validity
    /// has ended (`expires_at`); parts already in flight are awaited.
    /// Fills `ids` with what the carrier took; returns the worst failure.
    async fn send_parts(
        &self,
        (client, generation): (&Client, u64),
        slot: &BindSlot,
        parts: Vec<(usize, SubmitSm)>,
        ids: &mut [Option<String>],
        expires_at: Micros,
    ) -> Option<SubmitError> {
        let mut queue = parts.into_iter().peekable();
        let mut inflight = FuturesUnordered::new();
        let mut worst: Option<SubmitError> = None;
        loop {
            let more = worst.is_none() && queue.peek().is_some();
            if !more && inflight.is_empty() {
                return worst;
            }
            tokio::select! {
                biased;
                Some((i, result)) = inflight.next(), if !inflight.is_empty() => match part_result(result) {
                    Ok(resp) => {
                        if let Some(id) = ids.get_mut(i) {
                            *id = Some(resp.message_id().as_str().to_string());
                        }
                    }
                    Err(error) => {
                        let error = self.failure(slot, generation, error);
                        worst = Some(match worst.take() {
                            None => error,
                            Some(previous) => worse(previous, error),
                        });
                    }
                },
                permit = free_slot(slot, &self.stop), if more => {
                    let (Some(permit), Some((i, pdu))) = (permit, queue.next()) else {
                        worst = Some(SubmitError::Temporary("connector stopped".into()));
                        continue;
                    };
                    if expired(expires_at) {
                        worst = Some(SubmitError::Expired);
                        continue;
                    }
                    inflight.push(async move {
                        let result = client.submit_sm(pdu).await;
                        drop(permit);
                        (i, result)
                    });
                }
            }
        }
    }

    /// What to keep of a failed try: the parts the carrier took, if any.
    fn partial(&self, reference: u16, ids: Vec<Option<String>>) -> Option<PartialSubmit> {
        ids.iter().any(Option::is_some).then(|| PartialSubmit {
            connector: self.settings.name.clone(),
            reference,
            smsc_ids: ids,
        })
    }

    /// The PDUs of `msg`, its concatenation reference and the carrier ids of
    /// parts an earlier try on this connector got through (same reference,
    /// so the handset joins old and new parts).
    fn prepare(&self, msg: &Message) -> Result<Prepared, SubmitError> {
        let permanent = |e: PrepareError| SubmitError::Permanent(e.to_string());
        if let Some(p) = msg
            .partial
            .as_ref()
            .filter(|p| p.connector == self.settings.name)
        {
            let pdus = submit::submit_pdus(msg, &self.settings, p.reference).map_err(permanent)?;
            if pdus.len() == p.smsc_ids.len() {
                return Ok((pdus, p.reference, p.smsc_ids.clone()));
            }
            // Split differently now (e.g. the config changed): start over.
        }
        let reference = concat_reference(msg);
        let pdus = submit::submit_pdus(msg, &self.settings, reference).map_err(permanent)?;
        let ids = vec![None; pdus.len()];
        Ok((pdus, reference, ids))
    }

    /// A one-part message: one window slot, one `submit_sm`, unless the
    /// wait for the slot outlasted the message's validity.
    async fn submit_one(
        &self,
        slot: &BindSlot,
        pdu: SubmitSm,
        expires_at: Micros,
    ) -> Result<SubmitAck, SubmitError> {
        let Some(_permit) = free_slot(slot, &self.stop).await else {
            return Err(SubmitError::Temporary("connector stopped".into()));
        };
        if expired(expires_at) {
            return Err(SubmitError::Expired);
        }
        let (client, generation) = slot
            .client()
            .ok_or_else(|| SubmitError::Temporary("SMPP bind went down".into()))?;
        match client.submit_sm(pdu).await {
            Ok(resp) => Ok(SubmitAck {
                smsc_ids: vec![resp.message_id().as_str().to_string()],
            }),
            Err(error) => Err(self.failure(slot, generation, error)),
        }
    }
}

/// The concatenation reference of `msg`: from the random low bits of its id,
/// so every try of the message (after a lost link, a timeout, a restart)
/// sends its parts under the same reference and the handset can join or drop
/// repeated parts instead of showing two broken messages.
fn concat_reference(msg: &Message) -> u16 {
    // Truncation intended: the low 16 bits of a ULID are random.
    msg.id.0 as u16
}

/// Names the type of a part's answer (the in-flight set's item type is only
/// known further down).
fn part_result(
    result: Result<SubmitSmResp, rusmppc::error::Error>,
) -> Result<SubmitSmResp, rusmppc::error::Error> {
    result
}

/// Whether a message valid until `expires_at` must no longer be written:
/// checked right before each `submit_sm`, after any wait for a slot.
fn expired(expires_at: Micros) -> bool {
    expires_at <= now_micros()
}

/// A window slot on `slot` once no throttle pause runs; `None` if stopped.
async fn free_slot(slot: &BindSlot, stop: &CancellationToken) -> Option<OwnedSemaphorePermit> {
    let permit = slot.window.clone().acquire_owned().await.ok()?;
    slot.wait_out_pause(stop).await;
    (!stop.is_cancelled()).then_some(permit)
}

/// A message's PDUs, its concatenation reference, and the carrier id of each
/// part already taken (`None`: still to send).
type Prepared = (Vec<SubmitSm>, u16, Vec<Option<String>>);

/// The failure that decides a multi-part message: expired beats permanent
/// beats throttled beats temporary.
fn worse(a: SubmitError, b: SubmitError) -> SubmitError {
    let rank = |e: &SubmitError| match e {
        SubmitError::Expired => 3,
        SubmitError::Permanent(_) => 2,
        SubmitError::Throttled => 1,
        SubmitError::Temporary(_) => 0,
    };
    if rank(&b) > rank(&a) { b } else { a }
}

#[async_trait]
impl Connector for SmppConnector {
    fn name(&self) -> &str {
        &self.settings.name
    }

    fn window(&self) -> usize {
        self.settings.window * self.submitters.len().max(1)
    }

    fn tps(&self) -> Option<NonZeroU32> {
        NonZeroU32::new(self.settings.tps)
    }

    fn is_ready(&self) -> bool {
        !self.stop.is_cancelled() && self.submitters.iter().any(|s| s.is_bound())
    }

    async fn submit(&self, msg: &Message) -> Result<SubmitAck, SubmitFailure> {
        let (mut pdus, reference, mut ids) = self.prepare(msg)?;
        let slot = self
            .pick()
            .ok_or_else(|| SubmitError::Temporary("no SMPP bind is up".into()))?;
        let result = if pdus.len() == 1
            && let Some(pdu) = pdus.pop()
        {
            self.submit_one(&slot, pdu, msg.expires_at)
                .await
                .map_err(SubmitFailure::from)
        } else {
            let (client, generation) = slot
                .client()
                .ok_or_else(|| SubmitError::Temporary("SMPP bind went down".into()))?;
            let todo: Vec<(usize, SubmitSm)> = pdus
                .into_iter()
                .enumerate()
                .filter(|(i, _)| ids.get(*i).is_some_and(Option::is_none))
                .collect();
            let worst = self
                .send_parts((&client, generation), &slot, todo, &mut ids, msg.expires_at)
                .await;
            match worst {
                None if ids.iter().all(Option::is_some) => Ok(SubmitAck {
                    smsc_ids: ids.into_iter().flatten().collect(),
                }),
                worst => Err(SubmitFailure {
                    error: worst
                        .unwrap_or_else(|| SubmitError::Temporary("parts left unsent".into())),
                    partial: self.partial(reference, ids),
                }),
            }
        };
        match &result {
            Ok(ack) => {
                tracing::debug!(message_id = %msg.id, bind = slot.index, smsc_ids = ?ack.smsc_ids, "submitted")
            }
            Err(failure) => {
                tracing::debug!(
                    message_id = %msg.id,
                    bind = slot.index,
                    error = %failure.error,
                    parts_taken = ?failure.partial.as_ref().map(|p| p.smsc_ids.len() - p.missing()),
                    "submit failed"
                )
            }
        }
        result
    }

    async fn shutdown(&self) {
        self.stop.cancel();
        if tokio::time::timeout(SHUTDOWN_TIMEOUT, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(connector = %self.settings.name, "binds did not stop in time");
        }
    }
}

impl Drop for SmppConnector {
    fn drop(&mut self) {
        // Bind tasks hold no reference to the connector: stop them with it.
        self.stop.cancel();
    }
}

//! The SMPP 3.4 carrier connector (`kind = "smpp"`), on rusmppc.
//!
//! A connector keeps `binds` sessions to one SMSC, each owned by its own task
//! that connects, binds, keeps the link alive and reconnects with jittered
//! exponential backoff. [`SmppConnector::submit`] picks a bound session
//! round-robin, takes window permits on it (rusmppc pipelines any number of
//! requests on a session, so the window is ours to enforce), and sends the
//! message's parts. Receipts and inbound messages come back as
//! [`ConnectorEvent`]s on the gateway's channel.
//!
//! Fault behaviour, in one place:
//! - throttling (ESME_RTHROTTLED, ESME_RMSGQFUL): the submit returns
//!   [`SubmitError::Throttled`] and the session pauses submits for
//!   `throttle_pause`, so a storm turns into back-pressure instead of a flood;
//! - a lost link: in-flight submits fail as temporary (the dispatcher retries
//!   them: duplicates at most one window), the session reconnects;
//! - bind refused: retried forever with backoff; the connector is not ready
//!   meanwhile, and after `dispatch.failover_after` the dispatcher moves its
//!   queue to the next connector of each message's route;
//! - permanent statuses ([`status`]) fail the message over at once.
//!
//! Layout, one job per file:
//! - `settings`: config → [`SmppSettings`] with defaults applied.
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
mod settings;
pub mod status;
mod submit;
mod transport;

#[cfg(test)]
mod tests;

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::join_all;
use rusmppc::Client;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

pub use settings::{SmppSettings, TlsSettings};
pub use submit::PrepareError;
pub use transport::TlsSetupError;

use self::bind::{BindSlot, Role};
use self::session::Session;
use self::status::Verdict;
use self::transport::Transport;
use super::{Connector, EventSender, SubmitAck, SubmitError};
use crate::config::BindMode;
use crate::model::Message;

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
    settings: Arc<SmppSettings>,
    /// Binds that submit, in round-robin order.
    submitters: Vec<Arc<BindSlot>>,
    next_bind: AtomicUsize,
    /// Concatenation reference of the next long message.
    next_reference: AtomicU16,
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
    pub fn start(settings: SmppSettings, events: EventSender) -> Result<Arc<Self>, SmppError> {
        let transport = Arc::new(Transport::new(&settings).map_err(|source| SmppError::Tls {
            name: settings.name.clone(),
            source,
        })?);
        let settings = Arc::new(settings);
        let role = match settings.bind_mode {
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
        let first_reference = getrandom::u32().map_or(0, |r| r as u16);
        Ok(Arc::new(SmppConnector {
            submitters: slots.into_iter().filter(|s| s.role.submits()).collect(),
            settings,
            next_bind: AtomicUsize::new(0),
            next_reference: AtomicU16::new(first_reference),
            stop,
            tasks,
        }))
    }

    /// The settings in use.
    pub fn settings(&self) -> &SmppSettings {
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

    /// What a failed `submit_sm` means for the message (and for the bind).
    fn failure(&self, slot: &BindSlot, error: rusmppc::error::Error) -> SubmitError {
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

    async fn send(
        &self,
        client: &Client,
        slot: &BindSlot,
        pdus: Vec<rusmpp::pdus::SubmitSm>,
    ) -> Result<SubmitAck, SubmitError> {
        let results = match <[_; 1]>::try_from(pdus) {
            Ok([pdu]) => vec![client.submit_sm(pdu).await],
            // Parts go out back to back on one bind: rusmppc queues them in
            // order, and SMSCs reassemble best when they arrive together.
            Err(parts) => join_all(parts.into_iter().map(|p| client.submit_sm(p))).await,
        };
        let mut smsc_ids = Vec::with_capacity(results.len());
        let mut worst: Option<SubmitError> = None;
        for result in results {
            match result {
                Ok(resp) => smsc_ids.push(resp.message_id().as_str().to_string()),
                Err(error) => {
                    let error = self.failure(slot, error);
                    worst = Some(match worst {
                        None => error,
                        Some(previous) => worse(previous, error),
                    });
                }
            }
        }
        match worst {
            None => Ok(SubmitAck { smsc_ids }),
            Some(error) => Err(error),
        }
    }
}

/// The failure that decides a multi-part message: permanent beats
/// throttled beats temporary.
fn worse(a: SubmitError, b: SubmitError) -> SubmitError {
    let rank = |e: &SubmitError| match e {
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

    async fn submit(&self, msg: &Message) -> Result<SubmitAck, SubmitError> {
        let reference = self.next_reference.fetch_add(1, Ordering::Relaxed);
        let pdus = submit::submit_pdus(msg, &self.settings, reference)
            .map_err(|e| SubmitError::Permanent(e.to_string()))?;
        let slot = self
            .pick()
            .ok_or_else(|| SubmitError::Temporary("no SMPP bind is up".into()))?;
        // A long message holds one window slot per part (up to the window).
        let needed = u32::try_from(pdus.len().min(self.settings.window)).unwrap_or(1);
        let _permits = slot
            .window
            .acquire_many(needed)
            .await
            .map_err(|_| SubmitError::Temporary("connector stopped".into()))?;
        slot.wait_out_pause(&self.stop).await;
        let client = slot
            .client()
            .ok_or_else(|| SubmitError::Temporary("SMPP bind went down".into()))?;
        let result = self.send(&client, &slot, pdus).await;
        match &result {
            Ok(ack) => {
                tracing::debug!(message_id = %msg.id, bind = slot.index, smsc_ids = ?ack.smsc_ids, "submitted")
            }
            Err(error) => {
                tracing::debug!(message_id = %msg.id, bind = slot.index, %error, "submit failed")
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

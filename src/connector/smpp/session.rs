//! The task that owns one bind: connect, bind (SMPP 3.4, as transceiver,
//! transmitter or receiver), serve inbound PDUs until the link fails, then
//! reconnect after an exponential, jittered delay — until the connector stops,
//! when it unbinds politely.
//!
//! Inbound `deliver_sm` become [`ConnectorEvent`]s; each is answered with
//! `deliver_sm_resp` only after its event was handed to the gateway, so a
//! receipt the gateway never saw is resent by the SMSC rather than lost.
//! Keep-alive `enquire_link` (both ways) is rusmppc's job, configured by
//! the transport.

use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::{FutureExt, StreamExt};
use rusmpp::{
    Command, CommandId, CommandStatus, Pdu,
    pdus::{BindReceiver, BindTransceiver, BindTransmitter, DeliverSmResp},
    types::COctetString,
    values::{InterfaceVersion, Npi, Ton},
};
use rusmppc::{Client, Event};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::backoff::Backoff;
use super::bind::{BindSlot, Role};
use super::deliver::{self, Delivery};
use super::inbound::{Joined, Reassembler};
use super::settings::SmppSettings;
use super::status;
use super::transport::{ConnectError, Events, Transport};
use crate::connector::{ConnectorEvent, EventSender, InboundMessage};
use crate::model::now_micros;
use crate::store::Receipt;

/// A bind that stayed up this long counts as healthy: the next reconnect
/// starts again from `reconnect_min`.
const STABLE: Duration = Duration::from_secs(10);
/// How often unfinished concatenated inbound messages are checked for expiry.
const INBOUND_SWEEP: Duration = Duration::from_secs(5);
/// Longest wait for `unbind_resp` on shutdown.
const UNBIND_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a bind attempt failed.
#[derive(Debug, thiserror::Error)]
enum BindError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("bind refused: {0}")]
    Refused(String),
    #[error("bind failed: {0}")]
    Failed(#[from] rusmppc::error::Error),
    #[error("invalid bind field: {0}")]
    Field(&'static str),
}

/// Why a bound session ended.
enum End {
    /// The connector is stopping.
    Stopped,
    /// The link failed or the SMSC unbound.
    Lost(String),
    /// A submit was answered with a bind state error.
    Rebind,
}

/// Everything one bind task needs.
pub struct Session {
    pub slot: Arc<BindSlot>,
    pub settings: Arc<SmppSettings>,
    pub transport: Arc<Transport>,
    pub events: EventSender,
    pub inbound: Arc<Mutex<Reassembler>>,
    pub stop: CancellationToken,
}

impl Session {
    /// Keeps the bind up until the connector stops.
    pub async fn run(self) {
        let mut backoff = Backoff::new(self.settings.reconnect_min, self.settings.reconnect_max);
        while !self.stop.is_cancelled() {
            let attempt = tokio::select! {
                () = self.stop.cancelled() => break,
                attempt = self.bind() => attempt,
            };
            match attempt {
                Ok((client, events)) => {
                    let since = Instant::now();
                    info!(failures = backoff.failures(), "bound");
                    let rebind = self.slot.set_client(Some(client.clone()));
                    let end = self.serve(&client, events, &rebind).await;
                    self.slot.set_client(None);
                    match end {
                        End::Stopped => {
                            unbind(&client).await;
                            break;
                        }
                        End::Lost(reason) => {
                            warn!(reason = %reason, up_for = ?since.elapsed(), "bind lost; reconnecting");
                            let _ = client.close().await;
                        }
                        End::Rebind => {
                            // The SMSC no longer sees us as bound: start afresh
                            // (unbind may well be refused; the connection goes
                            // either way).
                            unbind(&client).await;
                        }
                    }
                    if since.elapsed() >= STABLE {
                        backoff.reset();
                    }
                }
                Err(error) => {
                    // Refusals are the operator's business (credentials, IP
                    // allow-lists): loud after a few, but never give up.
                    if backoff.failures() >= 3 {
                        warn!(%error, failures = backoff.failures() + 1, "bind attempt failed");
                    } else {
                        info!(%error, "bind attempt failed");
                    }
                }
            }
            let delay = backoff.next_delay();
            debug!(?delay, "next bind attempt");
            tokio::select! {
                () = self.stop.cancelled() => break,
                () = tokio::time::sleep(delay) => {}
            }
        }
        self.slot.set_client(None);
        debug!("bind task stopped");
    }

    /// Connects and binds; the client is closed again when the bind fails.
    async fn bind(&self) -> Result<(Client, Events), BindError> {
        let (client, events) = self.transport.open(&self.settings).await?;
        match self.send_bind(&client).await {
            Ok(()) => Ok((client, events)),
            Err(error) => {
                let _ = client.close().await;
                Err(error)
            }
        }
    }

    async fn send_bind(&self, client: &Client) -> Result<(), BindError> {
        let s = &self.settings;
        let system_id =
            COctetString::from_str(&s.system_id).map_err(|_| BindError::Field("system_id"))?;
        let password =
            COctetString::from_str(&s.password).map_err(|_| BindError::Field("password"))?;
        let system_type =
            COctetString::from_str(&s.system_type).map_err(|_| BindError::Field("system_type"))?;
        let version = InterfaceVersion::Smpp3_4;
        let result = match self.slot.role {
            Role::Transceiver => client
                .bind_transceiver(
                    BindTransceiver::builder()
                        .system_id(system_id)
                        .password(password)
                        .system_type(system_type)
                        .interface_version(version)
                        .addr_ton(Ton::Unknown)
                        .addr_npi(Npi::Unknown)
                        .address_range(COctetString::empty())
                        .build(),
                )
                .await
                .map(drop),
            Role::Transmitter => client
                .bind_transmitter(
                    BindTransmitter::builder()
                        .system_id(system_id)
                        .password(password)
                        .system_type(system_type)
                        .interface_version(version)
                        .addr_ton(Ton::Unknown)
                        .addr_npi(Npi::Unknown)
                        .address_range(COctetString::empty())
                        .build(),
                )
                .await
                .map(drop),
            Role::Receiver => client
                .bind_receiver(
                    BindReceiver::builder()
                        .system_id(system_id)
                        .password(password)
                        .system_type(system_type)
                        .interface_version(version)
                        .addr_ton(Ton::Unknown)
                        .addr_npi(Npi::Unknown)
                        .address_range(COctetString::empty())
                        .build(),
                )
                .await
                .map(drop),
        };
        match result {
            Ok(()) => Ok(()),
            Err(rusmppc::error::Error::UnexpectedResponse { response }) => {
                Err(BindError::Refused(status::describe(response.status())))
            }
            Err(other) => Err(BindError::Failed(other)),
        }
    }

    /// Handles inbound PDUs until the link ends or the connector stops.
    async fn serve(&self, client: &Client, mut events: Events, rebind: &CancellationToken) -> End {
        let mut sweep = tokio::time::interval(INBOUND_SWEEP);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_error = None;
        loop {
            tokio::select! {
                biased;
                () = self.stop.cancelled() => return End::Stopped,
                () = rebind.cancelled() => return End::Rebind,
                event = events.next() => match event {
                    None => {
                        return End::Lost(last_error.unwrap_or_else(|| "connection closed".into()));
                    }
                    Some(Event::Error(error)) => last_error = Some(error.to_string()),
                    Some(Event::Incoming(command)) => {
                        if let Some(end) = self.on_command(client, command).await {
                            return end;
                        }
                    }
                },
                _ = sweep.tick() => {
                    let expired = lock(&self.inbound).expire(Instant::now());
                    for joined in expired {
                        // The handover only fails when the gateway is stopping.
                        let _ = self.emit_inbound(joined).await;
                    }
                }
            }
        }
    }

    /// One inbound command; `Some` ends the session.
    async fn on_command(&self, client: &Client, command: Command) -> Option<End> {
        let sequence_number = command.sequence_number();
        match command.id() {
            CommandId::DeliverSm => {
                let Some(Pdu::DeliverSm(pdu)) = command.pdu() else {
                    // rusmppc decoded the header but no body: tell the SMSC.
                    nack(client, sequence_number, CommandStatus::EsmeRinvcmdlen);
                    return None;
                };
                let handed_over = match deliver::read(pdu) {
                    Delivery::Receipt(r) => {
                        debug!(smsc_id = %r.smsc_id, state = ?r.state, "receipt");
                        let receipt = Receipt {
                            connector: self.settings.name.clone(),
                            smsc_id: r.smsc_id,
                            state: r.state,
                            error_code: r.error_code,
                            at: now_micros(),
                        };
                        self.events
                            .send(ConnectorEvent::Receipt(receipt))
                            .await
                            .is_ok()
                    }
                    Delivery::NotFinal => true,
                    Delivery::Unreadable(why) => {
                        warn!(why, "unreadable receipt acknowledged and dropped");
                        true
                    }
                    Delivery::Inbound(part) => {
                        let joined = lock(&self.inbound).add(part, Instant::now());
                        let mut ok = true;
                        for j in joined {
                            ok &= self.emit_inbound(j).await;
                        }
                        ok
                    }
                };
                if handed_over {
                    respond(client, sequence_number);
                } else {
                    debug!("gateway stopping; deliver_sm left unanswered for the SMSC to resend");
                }
                None
            }
            CommandId::Unbind => {
                let _ = client.unbind_resp(sequence_number).now_or_never();
                Some(End::Lost("the SMSC unbound".into()))
            }
            id if id.is_response() => {
                // A response whose request already timed out, or a stray nack.
                debug!(?id, sequence_number, status = ?command.status(), "unmatched response");
                None
            }
            id => {
                debug!(?id, "unsupported operation from the SMSC");
                nack(client, sequence_number, CommandStatus::EsmeRinvcmdid);
                None
            }
        }
    }

    /// Hands a joined inbound message to the gateway; false if it is stopping.
    async fn emit_inbound(&self, joined: Joined) -> bool {
        if !joined.complete {
            warn!(from = %joined.from, "inbound message incomplete after waiting for its parts; delivering what arrived");
        }
        debug!(from = %joined.from, to = %joined.to, "inbound message");
        self.events
            .send(ConnectorEvent::Inbound(InboundMessage {
                connector: self.settings.name.clone(),
                from: joined.from,
                to: joined.to,
                body: joined.text,
            }))
            .await
            .is_ok()
    }
}

fn lock(r: &Mutex<Reassembler>) -> std::sync::MutexGuard<'_, Reassembler> {
    // Each call is one add or expire over a plain map; safe after a panic.
    r.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Queues `deliver_sm_resp` without waiting for it to be written: rusmppc
/// hands the request to its connection task on the first poll, and the write
/// acknowledgement is of no use here. Waiting would serialise receipts
/// behind one another's socket writes.
fn respond(client: &Client, sequence_number: u32) {
    if let Some(Err(error)) = client
        .deliver_sm_resp(sequence_number, DeliverSmResp::default())
        .now_or_never()
    {
        debug!(%error, "deliver_sm_resp not sent");
    }
}

/// Answers an operation we do not take with `generic_nack` (same queuing as [`respond`]).
fn nack(client: &Client, sequence_number: u32, status: CommandStatus) {
    let _ = client
        .status(status)
        .generic_nack(sequence_number)
        .now_or_never();
}

/// Unbinds (bounded) and closes the connection.
async fn unbind(client: &Client) {
    match tokio::time::timeout(UNBIND_TIMEOUT, client.unbind()).await {
        Ok(Ok(())) => info!("unbound"),
        Ok(Err(error)) => debug!(%error, "unbind failed"),
        Err(_) => debug!("no unbind_resp in time"),
    }
    let _ = client.close().await;
}

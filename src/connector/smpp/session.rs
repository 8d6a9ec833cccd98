//! The task that owns one bind: connect, bind (SMPP 3.4, as transceiver,
//! transmitter or receiver), serve inbound PDUs until the link fails, then
//! reconnect after an exponential, jittered delay — until the connector stops,
//! when it unbinds politely.
//!
//! Two delay schedules: while the SMSC cannot be reached (or drops the link)
//! retries start at `reconnect_min` and stay within `reconnect_max` (short by
//! default), so submits resume within about that long once it is back; a bind
//! the SMSC refuses backs off from `reconnect_max` up to [`REFUSED_MAX`], as
//! asking again at once will not change its answer.
//!
//! Inbound `deliver_sm` become [`ConnectorEvent`]s; each is answered with
//! `deliver_sm_resp` only once the gateway reports (through the event's
//! [`Ack`]) that the receipt or inbound message is committed to the store,
//! or with `ESME_RX_T_APPN` when it could not be stored, so the SMSC resends
//! it rather than it being lost. Acks are awaited concurrently, so the
//! gateway's batched store writes answer many `deliver_sm` at once. A part
//! of a concatenated inbound message that does not complete it is answered
//! at once (its parts are joined in memory; holding the answer could stall
//! SMSCs that wait for it before sending the next part).
//! Keep-alive `enquire_link` (both ways) is rusmppc's job, configured by
//! the transport.

use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use rusmpp::{
    Command, CommandId, CommandStatus, Pdu,
    pdus::{BindReceiver, BindTransceiver, BindTransmitter, DeliverSmResp},
    types::COctetString,
    values::{InterfaceVersion, Npi, Ton},
};
use rusmppc::{Client, Event};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::backoff::Backoff;
use super::bind::{BindSlot, Role};
use super::deliver::{self, Delivery};
use super::inbound::{Joined, Reassembler};
use super::status;
use super::transport::{ConnectError, Events, Transport};
use crate::config::SmppConfig;
use crate::connector::{Ack, ConnectorEvent, EventSender, InboundMessage};
use crate::model::Receipt;
use crate::model::now_micros;

/// A bind that stayed up this long counts as healthy: the next reconnect
/// starts again from `reconnect_min`.
const STABLE: Duration = Duration::from_secs(10);
/// How often unfinished concatenated inbound messages are checked for expiry.
const INBOUND_SWEEP: Duration = Duration::from_secs(5);
/// Longest wait for `unbind_resp` on shutdown.
const UNBIND_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait between binds the SMSC refuses (credentials, an address it
/// does not allow): some SMSCs lock an account that keeps trying.
const REFUSED_MAX: Duration = Duration::from_secs(30);

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
    pub settings: Arc<SmppConfig>,
    pub transport: Arc<Transport>,
    pub events: EventSender,
    pub inbound: Arc<Mutex<Reassembler>>,
    pub stop: CancellationToken,
}

impl Session {
    /// Keeps the bind up until the connector stops.
    pub async fn run(self) {
        let (min, max) = (self.settings.reconnect_min, self.settings.reconnect_max);
        let mut backoff = Backoff::new(min, max);
        let mut refused = Backoff::new(max, REFUSED_MAX.max(max));
        while !self.stop.is_cancelled() {
            let attempt = tokio::select! {
                () = self.stop.cancelled() => break,
                attempt = self.bind() => attempt,
            };
            let delay = match attempt {
                Ok((client, events)) => {
                    let since = Instant::now();
                    info!(failures = backoff.failures() + refused.failures(), "bound");
                    refused.reset();
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
                    backoff.next_delay()
                }
                Err(error) => {
                    // Refusals are the operator's business (credentials, IP
                    // allow-lists): loud after a few, but never give up.
                    let failures = backoff.failures() + refused.failures();
                    if failures >= 3 {
                        warn!(%error, failures = failures + 1, "bind attempt failed");
                    } else {
                        info!(%error, "bind attempt failed");
                    }
                    if matches!(error, BindError::Refused(_)) {
                        refused.next_delay()
                    } else {
                        backoff.next_delay()
                    }
                }
            };
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
        let password = COctetString::from_str(s.password.expose())
            .map_err(|_| BindError::Field("password"))?;
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
    /// `deliver_sm` still waiting for the store when it ends stay
    /// unanswered: the SMSC sends them again.
    async fn serve(&self, client: &Client, mut events: Events, rebind: &CancellationToken) -> End {
        let mut sweep = tokio::time::interval(INBOUND_SWEEP);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_error = None;
        let mut storing = FuturesUnordered::new();
        loop {
            tokio::select! {
                biased;
                () = self.stop.cancelled() => return End::Stopped,
                () = rebind.cancelled() => return End::Rebind,
                Some((sequence_number, stored)) = storing.next(), if !storing.is_empty() => {
                    if stored {
                        respond(client, sequence_number);
                    } else {
                        refuse(client, sequence_number);
                    }
                }
                event = events.next() => match event {
                    None => {
                        return End::Lost(last_error.unwrap_or_else(|| "connection closed".into()));
                    }
                    Some(Event::Error(error)) => last_error = Some(error.to_string()),
                    Some(Event::Incoming(command)) => {
                        if let Some(end) = self.on_command(client, command, &mut storing).await {
                            return end;
                        }
                    }
                },
                _ = sweep.tick() => {
                    let expired = lock(&self.inbound).expire(Instant::now());
                    for joined in expired {
                        // Its parts were answered already; the handover only
                        // fails when the gateway is stopping.
                        let _ = self.emit_inbound(joined, Ack::none()).await;
                    }
                }
            }
        }
    }

    /// One inbound command; `Some` ends the session. A `deliver_sm` whose
    /// answer waits for the store joins `storing`.
    async fn on_command(
        &self,
        client: &Client,
        command: Command,
        storing: &mut FuturesUnordered<Storing>,
    ) -> Option<End> {
        let sequence_number = command.sequence_number();
        match command.id() {
            CommandId::DeliverSm => {
                let Some(Pdu::DeliverSm(pdu)) = command.pdu() else {
                    // rusmppc decoded the header but no body: tell the SMSC.
                    nack(client, sequence_number, CommandStatus::EsmeRinvcmdlen);
                    return None;
                };
                let answer = match deliver::read(pdu) {
                    Delivery::Receipt(r) => {
                        debug!(smsc_id = %r.smsc_id, state = ?r.state, "receipt");
                        let receipt = Receipt {
                            connector: self.settings.name.clone(),
                            smsc_id: r.smsc_id,
                            state: r.state,
                            error_code: r.error_code,
                            at: now_micros(),
                        };
                        let (ack, stored) = Ack::channel();
                        match self
                            .events
                            .send(ConnectorEvent::Receipt(receipt, ack))
                            .await
                        {
                            Ok(()) => Answer::WhenStored(stored),
                            Err(_) => Answer::Never,
                        }
                    }
                    Delivery::NotFinal => Answer::Now,
                    Delivery::Unreadable(why) => {
                        warn!(why, "unreadable receipt acknowledged and dropped");
                        Answer::Now
                    }
                    Delivery::Inbound(part) => {
                        let added = lock(&self.inbound).add(part, Instant::now());
                        let mut open = true;
                        for evicted in added.evicted {
                            open &= self.emit_inbound(evicted, Ack::none()).await;
                        }
                        match added.done {
                            Some(joined) if open => {
                                let (ack, stored) = Ack::channel();
                                if self.emit_inbound(joined, ack).await {
                                    Answer::WhenStored(stored)
                                } else {
                                    Answer::Never
                                }
                            }
                            Some(_) => Answer::Never,
                            // A part still waiting for the others.
                            None if open => Answer::Now,
                            None => Answer::Never,
                        }
                    }
                };
                match answer {
                    Answer::Now => respond(client, sequence_number),
                    Answer::WhenStored(stored) => storing.push(Storing {
                        sequence_number,
                        stored,
                    }),
                    Answer::Never => {
                        debug!(
                            "gateway stopping; deliver_sm left unanswered for the SMSC to resend"
                        );
                    }
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
    async fn emit_inbound(&self, joined: Joined, ack: Ack) -> bool {
        if !joined.complete {
            warn!(from = %joined.from, "inbound message incomplete after waiting for its parts; delivering what arrived");
        }
        debug!(from = %joined.from, to = %joined.to, "inbound message");
        self.events
            .send(ConnectorEvent::Inbound(
                InboundMessage {
                    connector: self.settings.name.clone(),
                    from: joined.from,
                    to: joined.to,
                    body: joined.text,
                },
                ack,
            ))
            .await
            .is_ok()
    }
}

/// When a `deliver_sm` gets its `deliver_sm_resp`.
enum Answer {
    /// Nothing to store: at once.
    Now,
    /// Once the gateway has stored its event.
    WhenStored(oneshot::Receiver<bool>),
    /// Not at all: the gateway is stopping, the SMSC will resend it.
    Never,
}

/// A `deliver_sm` waiting for the store: resolves to its sequence number
/// and whether its event was stored (a dropped ack means not).
pub struct Storing {
    sequence_number: u32,
    stored: oneshot::Receiver<bool>,
}

impl Future for Storing {
    type Output = (u32, bool);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let sequence_number = self.sequence_number;
        Pin::new(&mut self.stored)
            .poll(cx)
            .map(|stored| (sequence_number, stored.unwrap_or(false)))
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

/// Answers a `deliver_sm` whose receipt or message could not be stored with
/// `ESME_RX_T_APPN` ("temporary application error"): the SMSC sends it again
/// later (same queuing as [`respond`]).
fn refuse(client: &Client, sequence_number: u32) {
    warn!(
        sequence_number,
        "receipt or inbound message not stored; deliver_sm refused with ESME_RX_T_APPN for the SMSC to resend"
    );
    if let Some(Err(error)) = client
        .status(CommandStatus::EsmeRxTAppn)
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

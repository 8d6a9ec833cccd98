//! One task per TCP connection: the bind state machine and every PDU it answers.
//!
//! The socket is split so reading, writing and the outbound queue (receipts, MO) can be
//! polled in one `select!` without locks. Responses are `feed`-ed into the write buffer
//! and flushed only when there is nothing left to read, so a pipelining client gets its
//! responses in a few large writes instead of one syscall per PDU — except with
//! [`SimConfig::nagle`](super::SimConfig::nagle), where each PDU is written on its own,
//! as most SMSC stacks do. Accepted receipts are
//! handed to the scheduler at the same moment, one lock per batch.
//!
//! A written receipt is remembered until its `deliver_sm_resp` arrives; one answered with
//! an error status is delivered again a second later. If the session ends first
//! (reset, unbind), the receipt goes back to the registry and reaches the next
//! receiver-capable bind of the same system_id, as a real SMSC retries unacknowledged
//! receipts.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::SystemTime,
};

use futures_util::{SinkExt, StreamExt};
use rusmpp::{
    Command, CommandId, CommandStatus, Pdu,
    pdus::{BindReceiverResp, BindTransceiverResp, BindTransmitterResp, SubmitSm, SubmitSmResp},
    tokio_codec::{CommandCodec, EncodeError},
    types::COctetString,
    values::InterfaceVersion,
};
use tokio::{
    net::{
        TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
    sync::mpsc,
};
use tokio_util::{
    codec::{FramedRead, FramedWrite},
    sync::CancellationToken,
};
use tracing::{debug, info, warn};

use super::{
    codec::{FrameError, Inbound, SimCodec},
    receipt::Receipt,
    registry::Outbound,
    server::Shared,
    stats::{BindKind, SessionCounters, bump},
    submit::{self, Origin},
    throttle::ThrottleView,
};

/// system_id the simulator announces in bind responses (NUL-terminated C string).
const SMSC_SYSTEM_ID: &[u8] = b"HERALD_SIM\0";

/// Receipts accepted but not yet handed to the scheduler are flushed at this many even if
/// the client never pauses.
const RECEIPT_BATCH: usize = 256;

/// Receipts written but not yet answered with `deliver_sm_resp`, kept per session to be
/// delivered again if the session ends first. Beyond this many the oldest is forgotten,
/// so an ESME that never answers cannot grow the simulator without bound.
const UNACKED_LIMIT: usize = 65_536;

/// Read buffer size; large enough for a few hundred pipelined `submit_sm`.
const READ_CAPACITY: usize = 64 * 1024;
/// Responses buffered before `feed` starts writing even though input is still pending.
const WRITE_BOUNDARY: usize = 64 * 1024;

type Reader = FramedRead<OwnedReadHalf, SimCodec>;
type Writer = FramedWrite<OwnedWriteHalf, CommandCodec>;

/// Flushes the write buffer. (The codec encodes both `Command` and `&Command`, so the
/// sink's item type has to be named.)
fn flush(writer: &mut Writer) -> futures_util::sink::Flush<'_, Writer, Command> {
    SinkExt::<Command>::flush(writer)
}

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
enum End {
    #[error("peer closed the connection")]
    PeerClosed,
    #[error("unbound")]
    Unbound,
    #[error("dropped by the simulator")]
    Dropped,
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("write failed: {0}")]
    Write(#[from] EncodeError),
}

/// What woke the session loop.
enum Event {
    In(Option<Result<Inbound, FrameError>>),
    Out(Option<Outbound>),
    Flushed(Result<(), EncodeError>),
    Cancelled,
}

/// Per-connection state.
pub(super) struct Session {
    shared: Arc<Shared>,
    id: u64,
    cancel: CancellationToken,
    rx: mpsc::UnboundedReceiver<Outbound>,
    counters: Arc<SessionCounters>,
    bind: Option<(BindKind, Arc<str>)>,
    throttle: ThrottleView,
    next_sequence: u32,
    /// Receipts accepted since the last hand-over to the scheduler.
    receipts: Vec<Receipt>,
    /// Receipts written and awaiting their `deliver_sm_resp`, by sequence number. Like a
    /// real SMSC, the simulator delivers them again (to the next bind) if the session
    /// ends before the ESME acknowledged them.
    unacked: BTreeMap<u32, Receipt>,
}

impl Session {
    pub(super) fn new(
        shared: Arc<Shared>,
        id: u64,
        cancel: CancellationToken,
        rx: mpsc::UnboundedReceiver<Outbound>,
        counters: Arc<SessionCounters>,
    ) -> Self {
        Self {
            shared,
            id,
            cancel,
            rx,
            counters,
            bind: None,
            throttle: ThrottleView::default(),
            next_sequence: 0,
            receipts: Vec::new(),
            unacked: BTreeMap::new(),
        }
    }
}

/// Serves one connection until it closes, then deregisters it.
pub(super) async fn run(mut session: Session, stream: TcpStream) {
    let (read, write) = stream.into_split();
    let mut reader = FramedRead::with_capacity(read, SimCodec::new(), READ_CAPACITY);
    let mut writer = FramedWrite::new(write, CommandCodec::new());
    writer.set_backpressure_boundary(WRITE_BOUNDARY);
    let end = session.serve(&mut reader, &mut writer).await;
    match &end {
        End::PeerClosed | End::Unbound | End::Dropped => debug!(reason = %end, "session ended"),
        End::Frame(_) | End::Write(_) => warn!(reason = %end, "session ended"),
    }
    // drop_connections stands in for a carrier-side network failure: reset the
    // connection instead of closing it politely. Shutdown still closes with a FIN.
    if matches!(end, End::Dropped) && !session.shared.cancel.is_cancelled() {
        reset(reader, writer);
    }
    session.finish();
}

/// Closes the socket with an RST (zero linger, no FIN first).
fn reset(reader: Reader, writer: Writer) {
    // Reuniting avoids the write half's shutdown(), which would send a FIN.
    if let Ok(stream) = reader.into_inner().reunite(writer.into_inner()) {
        if let Err(error) = stream.set_zero_linger() {
            debug!(%error, "could not set zero linger; closing normally");
        }
    }
}

impl Session {
    async fn serve(&mut self, reader: &mut Reader, writer: &mut Writer) -> End {
        let cancelled = self.cancel.clone().cancelled_owned();
        tokio::pin!(cancelled);
        let mut dirty = false;
        let mut rx_open = true;
        loop {
            let event = tokio::select! {
                biased;
                () = &mut cancelled => Event::Cancelled,
                inbound = reader.next() => Event::In(inbound),
                outbound = self.rx.recv(), if rx_open => Event::Out(outbound),
                flushed = flush(writer), if dirty => Event::Flushed(flushed),
            };
            let step = match event {
                Event::Cancelled => return End::Dropped,
                Event::In(None) => return End::PeerClosed,
                Event::In(Some(Ok(Inbound::Command(command)))) => {
                    self.on_command(command, writer).await
                }
                Event::In(Some(Ok(Inbound::Garbled {
                    sequence_number,
                    status,
                }))) => {
                    debug!(sequence_number, ?status, "garbled PDU");
                    self.generic_nack(writer, status, sequence_number).await
                }
                Event::In(Some(Err(error))) => {
                    if let FrameError::Length {
                        sequence_number, ..
                    } = &error
                    {
                        let status = CommandStatus::EsmeRinvcmdlen;
                        // Best effort: the connection is closing either way.
                        if self
                            .generic_nack(writer, status, *sequence_number)
                            .await
                            .is_ok()
                        {
                            let _ = flush(writer).await;
                        }
                    }
                    return End::Frame(error);
                }
                Event::Out(None) => {
                    rx_open = false;
                    Ok(Step::Continue)
                }
                Event::Out(Some(outbound)) => self.on_outbound(outbound, writer).await,
                Event::Flushed(result) => {
                    if let Err(error) = result {
                        return End::Write(error);
                    }
                    dirty = false;
                    self.schedule_receipts();
                    continue;
                }
            };
            match step {
                Ok(Step::Continue) if self.shared.config.nagle => {
                    if let Err(error) = flush(writer).await {
                        return End::Write(error);
                    }
                    self.schedule_receipts();
                }
                Ok(Step::Continue) => dirty = true,
                Ok(Step::Close(end)) => {
                    // Let the last response (unbind_resp) reach the peer before closing.
                    let _ = flush(writer).await;
                    return end;
                }
                Err(error) => return End::Write(error),
            }
            if self.receipts.len() >= RECEIPT_BATCH {
                self.schedule_receipts();
            }
        }
    }

    fn schedule_receipts(&mut self) {
        if !self.receipts.is_empty() {
            self.shared.scheduler.schedule(self.receipts.drain(..));
        }
    }

    /// Deregisters the session and re-routes receipts it had not written yet.
    fn finish(mut self) {
        self.schedule_receipts();
        self.shared.registry().remove(self.id);
        self.rx.close();
        // Written but unanswered receipts first: they are the oldest.
        let mut leftovers: Vec<Receipt> = std::mem::take(&mut self.unacked).into_values().collect();
        while let Ok(outbound) = self.rx.try_recv() {
            // An undelivered MO is dropped here; its injector sees SessionClosed.
            if let Outbound::Receipt(receipt) = outbound {
                leftovers.push(receipt);
            }
        }
        if !leftovers.is_empty() {
            let mut registry = self.shared.registry();
            for receipt in leftovers {
                registry.dispatch(receipt);
            }
        }
        self.shared
            .counters
            .connections_open
            .fetch_sub(1, Ordering::Relaxed);
    }

    fn next_sequence(&mut self) -> u32 {
        // Sequence numbers run 1..=0x7FFF_FFFF (SMPP 3.4 §5.1.4).
        self.next_sequence = self.next_sequence % 0x7FFF_FFFF + 1;
        self.next_sequence
    }

    async fn send(&mut self, writer: &mut Writer, command: Command) -> Result<Step, EncodeError> {
        writer.feed(command).await?;
        Ok(Step::Continue)
    }

    async fn generic_nack(
        &mut self,
        writer: &mut Writer,
        status: CommandStatus,
        sequence_number: u32,
    ) -> Result<Step, EncodeError> {
        bump(&self.shared.counters.generic_nacks);
        let nack = Command::new(status, sequence_number, Pdu::GenericNack);
        self.send(writer, nack).await
    }

    async fn on_command(
        &mut self,
        command: Command,
        writer: &mut Writer,
    ) -> Result<Step, EncodeError> {
        let (id, status, sequence_number, pdu) = command.into_parts().raw();
        let reply = |status, pdu: Pdu| Command::new(status, sequence_number, pdu);
        let response = match pdu {
            Some(Pdu::SubmitSm(submit)) => self.on_submit(sequence_number, submit),
            Some(Pdu::BindTransmitter(bind)) => {
                let status = self.on_bind(
                    BindKind::Transmitter,
                    bind.system_id.as_str(),
                    bind.password.as_str(),
                );
                reply(
                    status,
                    BindTransmitterResp::new(smsc_system_id(), Some(InterfaceVersion::Smpp3_4))
                        .into(),
                )
            }
            Some(Pdu::BindReceiver(bind)) => {
                let status = self.on_bind(
                    BindKind::Receiver,
                    bind.system_id.as_str(),
                    bind.password.as_str(),
                );
                reply(
                    status,
                    BindReceiverResp::new(smsc_system_id(), Some(InterfaceVersion::Smpp3_4)).into(),
                )
            }
            Some(Pdu::BindTransceiver(bind)) => {
                let status = self.on_bind(
                    BindKind::Transceiver,
                    bind.system_id.as_str(),
                    bind.password.as_str(),
                );
                reply(
                    status,
                    BindTransceiverResp::new(smsc_system_id(), Some(InterfaceVersion::Smpp3_4))
                        .into(),
                )
            }
            Some(Pdu::EnquireLink) => reply(CommandStatus::EsmeRok, Pdu::EnquireLinkResp),
            Some(Pdu::Unbind) if self.bind.is_none() => {
                reply(CommandStatus::EsmeRinvbndsts, Pdu::UnbindResp)
            }
            Some(Pdu::Unbind) => {
                info!("unbind");
                self.send(writer, reply(CommandStatus::EsmeRok, Pdu::UnbindResp))
                    .await?;
                return Ok(Step::Close(End::Unbound));
            }
            Some(Pdu::UnbindResp) => return Ok(Step::Close(End::Unbound)),
            Some(Pdu::Other { .. }) => {
                return self
                    .generic_nack(writer, CommandStatus::EsmeRinvcmdid, sequence_number)
                    .await;
            }
            // Responses to our deliver_sm, enquire_link answers and nacks need no reply.
            _ if id == CommandId::DeliverSmResp => {
                bump(&self.shared.counters.deliver_sm_resps);
                let receipt = self.unacked.remove(&sequence_number);
                if status != CommandStatus::EsmeRok {
                    bump(&self.shared.counters.deliver_sm_refused);
                    // The ESME could not take it (e.g. its store is down): like a real
                    // SMSC, deliver a receipt again later. (Injected MOs are not kept.)
                    if let Some(receipt) = receipt {
                        debug!(?status, "receipt refused; delivering it again later");
                        self.shared.resend.schedule([receipt]);
                    }
                }
                return Ok(Step::Continue);
            }
            _ if id.is_response() => return Ok(Step::Continue),
            None if matches!(id, CommandId::Other(_)) => {
                return self
                    .generic_nack(writer, CommandStatus::EsmeRinvcmdid, sequence_number)
                    .await;
            }
            // A request without its body, or one this simulator does not implement.
            None => {
                return self
                    .generic_nack(writer, CommandStatus::EsmeRinvcmdlen, sequence_number)
                    .await;
            }
            Some(_) => {
                return self
                    .generic_nack(writer, CommandStatus::EsmeRinvcmdid, sequence_number)
                    .await;
            }
        };
        self.send(writer, response).await
    }

    /// Checks a bind and, if it succeeds, registers it. Returns the response status.
    fn on_bind(&mut self, kind: BindKind, system_id: &str, password: &str) -> CommandStatus {
        let config = &self.shared.config;
        let status = if self.bind.is_some() {
            CommandStatus::EsmeRalybnd
        } else if self.shared.refuse_binds.load(Ordering::Relaxed) {
            CommandStatus::EsmeRbindfail
        } else if config
            .system_id
            .as_deref()
            .is_some_and(|want| want != system_id)
        {
            CommandStatus::EsmeRinvsysid
        } else if config
            .password
            .as_deref()
            .is_some_and(|want| want != password)
        {
            CommandStatus::EsmeRinvpaswd
        } else {
            CommandStatus::EsmeRok
        };
        if status != CommandStatus::EsmeRok {
            bump(&self.shared.counters.bind_failures);
            info!(?kind, system_id, ?status, "bind refused");
            return status;
        }
        let system_id: Arc<str> = Arc::from(system_id);
        tracing::Span::current().record("system_id", &*system_id);
        info!(?kind, "bound");
        bump(&self.shared.counters.binds);
        self.shared
            .registry()
            .bound(self.id, kind, system_id.clone());
        self.bind = Some((kind, system_id));
        CommandStatus::EsmeRok
    }

    fn on_submit(&mut self, sequence_number: u32, submit: SubmitSm) -> Command {
        let refuse = |counter: &AtomicU64, status| {
            bump(counter);
            Command::new(status, sequence_number, SubmitSmResp::default())
        };
        let counters = &self.shared.counters;
        let system_id = match &self.bind {
            Some((kind, system_id)) if kind.can_submit() => system_id.clone(),
            _ => return refuse(&counters.rejected, CommandStatus::EsmeRinvbndsts),
        };
        if self.shared.reject_submits.load(Ordering::Relaxed) {
            return refuse(&counters.rejected, CommandStatus::EsmeRinvdstadr);
        }
        if let Some(status) = self.shared.script.next_error() {
            return refuse(&counters.scripted, status);
        }
        if !self.shared.throttle.allow(&mut self.throttle) {
            bump(&self.counters.throttled);
            return refuse(&counters.throttled, CommandStatus::EsmeRthrottled);
        }

        let origin = Origin {
            session_id: self.id,
            system_id,
            counters: &self.counters,
        };
        let accepted = submit::accept(&self.shared, origin, submit);
        if let Some(receipt) = accepted.receipt {
            self.receipts.push(receipt);
        }
        let resp = SubmitSmResp::builder()
            .message_id(accepted.message_id)
            .build();
        Command::new(CommandStatus::EsmeRok, sequence_number, resp)
    }

    async fn on_outbound(
        &mut self,
        outbound: Outbound,
        writer: &mut Writer,
    ) -> Result<Step, EncodeError> {
        let sequence_number = self.next_sequence();
        match outbound {
            Outbound::Receipt(receipt) => {
                let pdu = receipt.to_deliver_sm(SystemTime::now());
                writer
                    .feed(Command::new(CommandStatus::EsmeRok, sequence_number, pdu))
                    .await?;
                bump(&self.shared.counters.receipts_sent);
                bump(&self.counters.receipts_sent);
                self.unacked.insert(sequence_number, receipt);
                if self.unacked.len() > UNACKED_LIMIT {
                    self.unacked.pop_first();
                }
            }
            Outbound::Mo { pdu, written } => {
                writer
                    .feed(Command::new(CommandStatus::EsmeRok, sequence_number, pdu))
                    .await?;
                // Flush now: the injector is waiting for the PDU to be on the wire.
                flush(writer).await?;
                bump(&self.shared.counters.mo_sent);
                bump(&self.counters.mo_sent);
                let _ = written.send(());
            }
        }
        Ok(Step::Continue)
    }
}

/// What the loop does after a PDU.
enum Step {
    Continue,
    Close(End),
}

fn smsc_system_id() -> COctetString<1, 16> {
    COctetString::from_static_slice(SMSC_SYSTEM_ID).unwrap_or_else(|_| COctetString::empty())
}

//! Tests of the simulator over real TCP on 127.0.0.1, driven by `rusmppc` (an independent
//! SMPP client) or, for malformed input, by rusmpp's codec on a raw socket.
//!
//! Every await is bounded by [`within`], so a broken simulator fails a test instead of
//! hanging the suite.

mod binds;
mod control;
mod faults;
mod mo;
mod receipts;
mod submit;
mod units;

use std::{str::FromStr, time::Duration};

use futures_util::{SinkExt, Stream, StreamExt};
use rusmpp::{
    Command, CommandStatus, Pdu,
    pdus::{BindReceiver, BindTransceiver, BindTransmitter, DeliverSm, DeliverSmResp, SubmitSm},
    tlvs::TlvValue,
    tokio_codec::CommandCodec,
    types::{COctetString, OctetString},
    values::{DataCoding, EsmClass, MessageState, RegisteredDelivery},
};
use rusmppc::{Client, ConnectionBuilder, Event};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Framed;

use super::{SimConfig, SmscSim};
pub(super) use crate::testing::{eventually, within};

/// Upper bound for any single step of a test.
pub(super) const STEP: Duration = Duration::from_secs(5);

pub(super) async fn start(config: SimConfig) -> SmscSim {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    SmscSim::start(listener, config).await
}

/// A config with a short receipt delay, suitable for most tests.
pub(super) fn quick() -> SimConfig {
    SimConfig {
        dlr_delay: Duration::from_millis(20),
        ..SimConfig::default()
    }
}

/// An ESME: a rusmppc client and its event stream.
pub(super) struct Esme {
    pub client: Client,
    pub events: Box<dyn Stream<Item = Event> + Unpin + Send>,
}

pub(super) async fn connect(sim: &SmscSim) -> Esme {
    let stream = within(STEP, "connect", TcpStream::connect(sim.local_addr()))
        .await
        .expect("connect to the simulator");
    let (client, events) = ConnectionBuilder::new()
        .no_enquire_link_interval()
        .response_timeout(STEP)
        .connected(stream);
    Esme {
        client,
        events: Box::new(events),
    }
}

pub(super) fn cstr<const MIN: usize, const MAX: usize>(s: &str) -> COctetString<MIN, MAX> {
    COctetString::from_str(s).expect("valid COctetString")
}

pub(super) fn transceiver(system_id: &str, password: &str) -> BindTransceiver {
    BindTransceiver::builder()
        .system_id(cstr(system_id))
        .password(cstr(password))
        .system_type(COctetString::empty())
        .address_range(COctetString::empty())
        .build()
}

pub(super) fn transmitter(system_id: &str, password: &str) -> BindTransmitter {
    BindTransmitter::builder()
        .system_id(cstr(system_id))
        .password(cstr(password))
        .system_type(COctetString::empty())
        .address_range(COctetString::empty())
        .build()
}

pub(super) fn receiver(system_id: &str, password: &str) -> BindReceiver {
    BindReceiver::builder()
        .system_id(cstr(system_id))
        .password(cstr(password))
        .system_type(COctetString::empty())
        .address_range(COctetString::empty())
        .build()
}

/// Connects and binds as a transceiver with `system_id`.
pub(super) async fn bound_transceiver(sim: &SmscSim, system_id: &str) -> Esme {
    let esme = connect(sim).await;
    within(
        STEP,
        "bind_transceiver",
        esme.client.bind_transceiver(transceiver(system_id, "pw")),
    )
    .await
    .expect("bind_transceiver accepted");
    esme
}

/// A GSM text `submit_sm` from 12345 to `to`.
pub(super) fn submit(to: &str, text: &str, registered_delivery: u8) -> SubmitSm {
    SubmitSm::builder()
        .source_addr(cstr("12345"))
        .destination_addr(cstr(to))
        .esm_class(EsmClass::from(0u8))
        .registered_delivery(RegisteredDelivery::from(registered_delivery))
        .data_coding(DataCoding::McSpecific)
        .short_message(OctetString::from_str(text).expect("short text"))
        .build()
}

/// Submits and returns the message id, failing the test on an error status.
pub(super) async fn submit_ok(esme: &Esme, sm: SubmitSm) -> String {
    within(STEP, "submit_sm", esme.client.submit_sm(sm))
        .await
        .expect("submit_sm accepted")
        .message_id()
        .as_str()
        .to_owned()
}

/// The status of a request the simulator answered with an error.
pub(super) fn error_status<T: std::fmt::Debug>(
    result: Result<T, rusmppc::error::Error>,
) -> CommandStatus {
    match result {
        Err(rusmppc::error::Error::UnexpectedResponse { response }) => response.status(),
        other => panic!("expected an error response, got {other:?}"),
    }
}

/// Waits for the next `deliver_sm`, answers it, and returns it.
pub(super) async fn next_deliver_sm(esme: &mut Esme) -> DeliverSm {
    let (sequence_number, deliver) = within(STEP, "deliver_sm", async {
        loop {
            match esme.events.next().await {
                Some(Event::Incoming(command)) => {
                    if let Some(Pdu::DeliverSm(deliver)) = command.pdu() {
                        return (command.sequence_number(), deliver.clone());
                    }
                }
                Some(Event::Error(_)) => {}
                None => panic!("connection closed while waiting for deliver_sm"),
            }
        }
    })
    .await;
    // The simulator tolerates a missing deliver_sm_resp, so a failure here is not fatal.
    let _ = within(
        STEP,
        "deliver_sm_resp",
        esme.client
            .deliver_sm_resp(sequence_number, DeliverSmResp::default()),
    )
    .await;
    deliver
}

/// Asserts that no `deliver_sm` arrives within `wait`.
pub(super) async fn no_deliver_sm(esme: &mut Esme, wait: Duration) {
    let got = tokio::time::timeout(wait, async {
        loop {
            match esme.events.next().await {
                Some(Event::Incoming(command))
                    if matches!(command.pdu(), Some(Pdu::DeliverSm(_))) =>
                {
                    return command;
                }
                Some(_) => {}
                None => std::future::pending::<()>().await,
            }
        }
    })
    .await;
    assert!(got.is_err(), "unexpected deliver_sm: {got:?}");
}

pub(super) fn receipted_message_id(deliver: &DeliverSm) -> Option<String> {
    deliver.tlvs().iter().find_map(|tlv| match tlv.value() {
        Some(TlvValue::ReceiptedMessageId(id)) => Some(id.as_str().to_owned()),
        _ => None,
    })
}

pub(super) fn message_state(deliver: &DeliverSm) -> Option<MessageState> {
    deliver.tlvs().iter().find_map(|tlv| match tlv.value() {
        Some(TlvValue::MessageState(state)) => Some(*state),
        _ => None,
    })
}

pub(super) fn text(deliver: &DeliverSm) -> String {
    String::from_utf8_lossy(deliver.short_message().as_ref()).into_owned()
}

/// An ESME speaking through rusmpp's codec on a raw socket, for malformed input.
pub(super) type Raw = Framed<TcpStream, CommandCodec>;

pub(super) async fn raw(sim: &SmscSim) -> Raw {
    let stream = within(STEP, "raw connect", TcpStream::connect(sim.local_addr()))
        .await
        .expect("connect to the simulator");
    Framed::new(stream, CommandCodec::new())
}

pub(super) async fn raw_send(raw: &mut Raw, command: Command) {
    within(STEP, "raw send", raw.send(command))
        .await
        .expect("raw send");
}

/// Next command from a raw connection; `None` once the simulator closed it.
pub(super) async fn raw_next(raw: &mut Raw) -> Option<Command> {
    match within(STEP, "raw read", raw.next()).await {
        Some(Ok(command)) => Some(command),
        Some(Err(_)) | None => None,
    }
}

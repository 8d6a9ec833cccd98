//! The connector over real TCP on 127.0.0.1: against the in-process SMSC
//! simulator for the normal paths, and against tiny scripted SMSCs (rusmpp's
//! codec on a raw socket) for what the simulator cannot do on purpose, such
//! as never answering. Every wait is bounded, so a regression fails instead
//! of hanging.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rusmpp::{
    Command, CommandStatus, Pdu,
    pdus::{BindTransceiverResp, SubmitSmResp},
    tokio_codec::CommandCodec,
    types::COctetString,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::codec::Framed;

use super::{SmppConfig, SmppConnector};
use crate::config::Config;
use crate::connector::{Connector, ConnectorEvent, SubmitError};
use crate::model::ReceiptState;
use crate::model::{Class, Message};
use crate::smsc_sim::{BindKind, SimConfig, SmscSim};
use crate::testing::{eventually, within};

const STEP: Duration = Duration::from_secs(5);

async fn sim(config: SimConfig) -> SmscSim {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    SmscSim::start(listener, config).await
}

fn quick() -> SimConfig {
    SimConfig {
        dlr_delay: Duration::from_millis(20),
        ..SimConfig::default()
    }
}

/// A connector on 127.0.0.1:`port` with quick timings; `extra` TOML lines
/// add keys or replace these defaults.
fn settings(port: u16, extra: &str) -> SmppConfig {
    let defaults = [
        "window = 8",
        "reconnect_min = \"20ms\"",
        "reconnect_max = \"100ms\"",
        "response_timeout = \"2s\"",
        "throttle_pause = \"200ms\"",
    ];
    let key = |line: &str| {
        line.split('=')
            .next()
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    let overridden: Vec<String> = extra.lines().map(key).collect();
    let kept: Vec<&str> = defaults
        .into_iter()
        .filter(|d| !overridden.contains(&key(d)))
        .collect();
    let text = format!(
        "[[connectors]]\nname = \"carrier\"\nkind = \"smpp\"\nhost = \"127.0.0.1\"\nport = {port}\n\
         system_id = \"herald\"\npassword = \"pw\"\n{}\n{extra}",
        kept.join("\n")
    );
    let config = Config::from_toml(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    config.connectors[0]
        .as_smpp()
        .expect("an smpp connector")
        .clone()
}

struct Rig {
    connector: Arc<SmppConnector>,
    events: mpsc::Receiver<ConnectorEvent>,
}

async fn connect(port: u16, extra: &str) -> Rig {
    let (tx, events) = mpsc::channel(1024);
    let connector = SmppConnector::start(settings(port, extra), tx).expect("start");
    let c = connector.clone();
    eventually(STEP, "a bind comes up", || c.is_ready()).await;
    Rig { connector, events }
}

fn message(body: &str) -> Message {
    let mut m = crate::test_support::message("+447700900123");
    m.body = body.to_string();
    m.from = Some("Herald".into());
    m
}

impl Rig {
    async fn next_event(&mut self) -> ConnectorEvent {
        within(STEP, "connector event", self.events.recv())
            .await
            .expect("event channel open")
    }

    /// The next receipt, acknowledged as stored.
    async fn next_receipt(&mut self) -> crate::model::Receipt {
        loop {
            if let ConnectorEvent::Receipt(r, ack) = self.next_event().await {
                ack.finish(true);
                return r;
            }
        }
    }
}

#[tokio::test]
async fn a_message_is_submitted_and_its_receipt_reported_with_the_carrier_id() {
    let smsc = sim(quick()).await;
    let mut rig = connect(smsc.local_addr().port(), "").await;
    let ack = within(
        STEP,
        "submit",
        rig.connector.submit(&message("Hello from Herald")),
    )
    .await
    .expect("accepted");
    assert_eq!(ack.smsc_ids.len(), 1);
    let seen = smsc.submitted();
    assert_eq!(seen.len(), 1);
    let sm = &seen[0];
    assert_eq!(sm.message_id, ack.smsc_ids[0]);
    assert_eq!(sm.system_id, "herald");
    assert_eq!(sm.destination_addr, "447700900123");
    assert_eq!(sm.source_addr, "Herald");
    assert_eq!(
        (sm.data_coding, sm.esm_class, sm.registered_delivery),
        (0, 0, 1)
    );
    assert_eq!(sm.short_message, b"Hello from Herald");
    let receipt = rig.next_receipt().await;
    assert_eq!(receipt.connector, "carrier");
    assert_eq!(receipt.smsc_id, ack.smsc_ids[0]);
    assert_eq!(receipt.state, ReceiptState::Delivered);
    assert_eq!(receipt.error_code, None);
    eventually(STEP, "deliver_sm_resp reaches the SMSC", || {
        smsc.stats().deliver_sm_resps == 1
    })
    .await;
    rig.connector.shutdown().await;
    smsc.shutdown().await;
}

#[tokio::test]
async fn a_receipt_is_answered_only_once_the_gateway_has_stored_it() {
    let smsc = sim(quick()).await;
    let mut rig = connect(smsc.local_addr().port(), "").await;
    let ack = within(STEP, "submit", rig.connector.submit(&message("hi")))
        .await
        .expect("accepted");
    let ConnectorEvent::Receipt(receipt, stored) = rig.next_event().await else {
        panic!("receipt expected");
    };
    assert_eq!(receipt.smsc_id, ack.smsc_ids[0]);
    // Not stored yet: the SMSC has no answer.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(smsc.stats().deliver_sm_resps, 0);
    // The store failed: the SMSC is told to try again later, and does.
    stored.finish(false);
    eventually(STEP, "ESME_RX_T_APPN reaches the SMSC", || {
        smsc.stats().deliver_sm_refused == 1
    })
    .await;
    let again = rig.next_receipt().await;
    assert_eq!(again.smsc_id, ack.smsc_ids[0]);
    eventually(STEP, "the second delivery is acknowledged", || {
        smsc.stats().deliver_sm_resps == 2
    })
    .await;
    assert_eq!(smsc.stats().deliver_sm_refused, 1);
    rig.connector.shutdown().await;
    smsc.shutdown().await;
}

#[tokio::test]
async fn an_inbound_message_is_answered_only_once_the_gateway_has_stored_it() {
    let smsc = sim(quick()).await;
    let mut rig = connect(smsc.local_addr().port(), "").await;
    for (n, stored) in [(1, false), (2, true)] {
        within(
            STEP,
            "inject",
            smsc.inject_mo("+447700900555", "12345", "STOP"),
        )
        .await
        .expect("injected");
        let ConnectorEvent::Inbound(mo, ack) = rig.next_event().await else {
            panic!("inbound expected");
        };
        assert_eq!(mo.body, "STOP");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            smsc.stats().deliver_sm_resps,
            n - 1,
            "answered before it was stored"
        );
        ack.finish(stored);
        eventually(STEP, "the answer reaches the SMSC", || {
            smsc.stats().deliver_sm_resps == n
        })
        .await;
    }
    assert_eq!(
        smsc.stats().deliver_sm_refused,
        1,
        "only the unstored one is refused"
    );
    rig.connector.shutdown().await;
    smsc.shutdown().await;
}

#[tokio::test]
async fn binds_as_smpp_3_4_transceiver_with_the_configured_credentials() {
    let smsc = sim(SimConfig {
        system_id: Some("herald".into()),
        password: Some("pw".into()),
        ..quick()
    })
    .await;
    let rig = connect(smsc.local_addr().port(), "").await;
    let sessions = smsc.stats().sessions;
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].bind, Some(BindKind::Transceiver));
    rig.connector.shutdown().await;
    smsc.shutdown().await;
}

#[tokio::test]
async fn a_long_message_goes_out_as_udh_parts_sharing_one_reference() {
    let smsc = sim(quick()).await;
    let mut rig = connect(smsc.local_addr().port(), "").await;
    let body = "0123456789".repeat(40);
    let ack = within(STEP, "submit", rig.connector.submit(&message(&body)))
        .await
        .expect("accepted");
    assert_eq!(ack.smsc_ids.len(), 3);
    let seen = smsc.submitted();
    assert_eq!(seen.len(), 3);
    let reference = seen[0].short_message[3];
    let mut text = Vec::new();
    for (i, sm) in seen.iter().enumerate() {
        assert_eq!(sm.esm_class & 0x40, 0x40, "UDHI set");
        assert_eq!(
            &sm.short_message[..6],
            &[0x05, 0x00, 0x03, reference, 3, i as u8 + 1]
        );
        text.extend_from_slice(&sm.short_message[6..]);
        assert_eq!(sm.message_id, ack.smsc_ids[i]);
    }
    assert_eq!(text, body.as_bytes());
    assert_eq!(smsc.stats().parts, 3);
    for _ in 0..3 {
        assert!(ack.smsc_ids.contains(&rig.next_receipt().await.smsc_id));
    }
    rig.connector.shutdown().await;
    smsc.shutdown().await;
}

#[tokio::test]
async fn a_partly_throttled_long_message_resends_only_its_missing_parts_under_one_reference() {
    let smsc = sim(quick()).await;
    let mut rig = connect(smsc.local_addr().port(), "").await;
    // Part 1 is taken, part 2 throttled; part 3 may be in flight already.
    smsc.script_submits([CommandStatus::EsmeRok, CommandStatus::EsmeRthrottled]);
    let mut msg = message(&"0123456789".repeat(40));
    let failure = within(STEP, "first try", rig.connector.submit(&msg))
        .await
        .expect_err("part 2 was throttled");
    assert_eq!(failure.error, SubmitError::Throttled);
    let partial = failure.partial.expect("part 1 was taken");
    assert_eq!(partial.connector, "carrier");
    assert_eq!(partial.smsc_ids.len(), 3);
    assert!(partial.smsc_ids[0].is_some() && partial.smsc_ids[1].is_none());
    msg.partial = Some(partial.clone());
    let ack = within(STEP, "retry", rig.connector.submit(&msg))
        .await
        .expect("the rest is taken");
    assert_eq!(ack.smsc_ids.len(), 3);
    for (taken, id) in partial.smsc_ids.iter().zip(&ack.smsc_ids) {
        if let Some(taken) = taken {
            assert_eq!(taken, id, "a part taken on the first try keeps its id");
        }
    }
    // Each part reached the SMSC exactly once, all under one reference.
    let seen = smsc.submitted();
    assert_eq!(seen.len(), 3, "{seen:?}");
    let reference = seen[0].short_message[3];
    let mut seqs: Vec<u8> = seen.iter().map(|sm| sm.short_message[5]).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, vec![1, 2, 3]);
    for sm in &seen {
        assert_eq!(&sm.short_message[..5], &[0x05, 0x00, 0x03, reference, 3]);
        let part = usize::from(sm.short_message[5]) - 1;
        assert_eq!(sm.message_id, ack.smsc_ids[part]);
    }
    for _ in 0..3 {
        assert!(ack.smsc_ids.contains(&rig.next_receipt().await.smsc_id));
    }
    rig.connector.shutdown().await;
    smsc.shutdown().await;
}

#[tokio::test]
async fn sar_mode_marks_parts_with_tlvs_instead_of_a_udh() {
    let smsc = sim(quick()).await;
    let rig = connect(smsc.local_addr().port(), "split = \"sar\"\n").await;
    let body = "x".repeat(200);
    within(STEP, "submit", rig.connector.submit(&message(&body)))
        .await
        .expect("accepted");
    let seen = smsc.submitted();
    assert_eq!(seen.len(), 2);
    for (i, sm) in seen.iter().enumerate() {
        assert_eq!(sm.esm_class, 0);
        assert_eq!(sm.sar_total_segments, Some(2));
        assert_eq!(sm.sar_segment_seqnum, Some(i as u8 + 1));
        assert_eq!(sm.sar_msg_ref_num, seen[0].sar_msg_ref_num);
    }
    rig.connector.shutdown().await;
    smsc.shutdown().await;
}

#[tokio::test]
async fn text_outside_gsm_goes_as_ucs2() {
    let smsc = sim(quick()).await;
    let rig = connect(smsc.local_addr().port(), "").await;
    within(STEP, "submit", rig.connector.submit(&message("Привет 👋")))
        .await
        .expect("accepted");
    let sm = &smsc.submitted()[0];
    assert_eq!(sm.data_coding, 8);
    let expected: Vec<u8> = "Привет 👋"
        .encode_utf16()
        .flat_map(u16::to_be_bytes)
        .collect();
    assert_eq!(sm.short_message, expected);
    rig.connector.shutdown().await;
    smsc.shutdown().await;
}

#[tokio::test]
async fn failed_deliveries_come_back_as_undeliverable_with_the_error_code() {
    let smsc = sim(SimConfig {
        fail_rate: 1.0,
        ..quick()
    })
    .await;
    let mut rig = connect(smsc.local_addr().port(), "").await;
    within(STEP, "submit", rig.connector.submit(&message("doomed")))
        .await
        .expect("accepted");
    let receipt = rig.next_receipt().await;
    assert_eq!(receipt.state, ReceiptState::Undeliverable);
    assert_eq!(receipt.error_code.as_deref(), Some("001"));
    rig.connector.shutdown().await;
    smsc.shutdown().await;
}

#[tokio::test]
async fn inbound_messages_are_reported_with_sender_and_text() {
    let smsc = sim(quick()).await;
    let mut rig = connect(smsc.local_addr().port(), "").await;
    within(
        STEP,
        "inject",
        smsc.inject_mo("+447700900555", "12345", "STOP ça"),
    )
    .await
    .expect("injected");
    let ConnectorEvent::Inbound(mo, ack) = rig.next_event().await else {
        panic!("inbound expected");
    };
    ack.finish(true);
    assert_eq!(mo.connector, "carrier");
    assert_eq!(mo.from, "+447700900555");
    assert_eq!(mo.to, "12345");
    assert_eq!(mo.body, "STOP ça");
    rig.connector.shutdown().await;
    smsc.shutdown().await;
}

#[tokio::test]
async fn a_transmitter_connector_gets_receipts_on_its_receiver_bind() {
    let smsc = sim(quick()).await;
    let mut rig = connect(
        smsc.local_addr().port(),
        "bind = \"transmitter\"\nbinds = 2\n",
    )
    .await;
    let c = rig.connector.clone();
    eventually(STEP, "both transmitters bound", || c.binds_up() == 2).await;
    eventually(STEP, "three sessions", || smsc.stats().sessions.len() == 3).await;
    let kinds: Vec<_> = smsc.stats().sessions.iter().map(|s| s.bind).collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == Some(BindKind::Transmitter))
            .count(),
        2
    );
    assert!(kinds.contains(&Some(BindKind::Receiver)));
    let ack = within(STEP, "submit", rig.connector.submit(&message("hi")))
        .await
        .expect("accepted");
    assert_eq!(rig.next_receipt().await.smsc_id, ack.smsc_ids[0]);
    rig.connector.shutdown().await;
    smsc.shutdown().await;
}

#[tokio::test]
async fn submits_spread_over_every_bind() {
    let smsc = sim(quick()).await;
    let rig = connect(smsc.local_addr().port(), "binds = 3\n").await;
    let c = rig.connector.clone();
    eventually(STEP, "three binds", || c.binds_up() == 3).await;
    assert_eq!(rig.connector.window(), 24);
    for i in 0..9 {
        within(
            STEP,
            "submit",
            rig.connector.submit(&message(&format!("m{i}"))),
        )
        .await
        .expect("accepted");
    }
    let per_session: Vec<u64> = smsc.stats().sessions.iter().map(|s| s.submits).collect();
    assert_eq!(per_session, vec![3, 3, 3]);
    rig.connector.shutdown().await;
    smsc.shutdown().await;
}

#[tokio::test]
async fn a_refused_bind_is_retried_until_the_smsc_accepts_it() {
    let smsc = sim(quick()).await;
    smsc.set_refuse_binds(true);
    let (tx, _events) = mpsc::channel(16);
    let connector =
        SmppConnector::start(settings(smsc.local_addr().port(), ""), tx).expect("start");
    eventually(STEP, "several refused binds", || {
        smsc.stats().bind_failures >= 3
    })
    .await;
    assert!(!connector.is_ready());
    let refused = within(STEP, "submit while down", connector.submit(&message("x"))).await;
    assert!(
        matches!(
            refused.as_ref().map_err(|f| &f.error),
            Err(SubmitError::Temporary(_))
        ),
        "{refused:?}"
    );
    smsc.set_refuse_binds(false);
    let c = connector.clone();
    eventually(STEP, "bound after the SMSC relents", || c.is_ready()).await;
    connector.shutdown().await;
    smsc.shutdown().await;
}

#[tokio::test]
async fn a_throttled_submit_is_reported_and_pauses_the_bind() {
    let smsc = sim(quick()).await;
    let rig = connect(smsc.local_addr().port(), "").await;
    smsc.set_throttle_tps(1);
    let mut throttled = 0;
    for _ in 0..4 {
        match within(STEP, "submit", rig.connector.submit(&message("x")))
            .await
            .map_err(|f| f.error)
        {
            Err(SubmitError::Throttled) => throttled += 1,
            Ok(_) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert!(throttled >= 1, "the SMSC's throttle was never hit");
    let slot = rig.connector.submitters[0].clone();
    smsc.set_throttle_tps(0);
    // While paused, a submit waits for the pause to end instead of hammering.
    if slot.is_paused() {
        let started = tokio::time::Instant::now();
        within(
            STEP,
            "submit after pause",
            rig.connector.submit(&message("y")),
        )
        .await
        .expect("accepted after the pause");
        assert!(started.elapsed() >= Duration::from_millis(50));
    }
    rig.connector.shutdown().await;
    smsc.shutdown().await;
}

#[tokio::test]
async fn a_dropped_link_is_rebound_and_the_connector_submits_again() {
    let smsc = sim(quick()).await;
    let rig = connect(smsc.local_addr().port(), "").await;
    smsc.drop_connections();
    eventually(STEP, "a second connection", || {
        smsc.stats().connections_total >= 2
    })
    .await;
    let c = rig.connector.clone();
    eventually(STEP, "bound again", || c.is_ready()).await;
    within(
        STEP,
        "submit after reconnect",
        rig.connector.submit(&message("again")),
    )
    .await
    .expect("accepted");
    rig.connector.shutdown().await;
    smsc.shutdown().await;
}

#[tokio::test]
async fn a_bind_state_error_drops_the_bind_and_binds_again() {
    let smsc = sim(quick()).await;
    let rig = connect(smsc.local_addr().port(), "").await;
    for (round, status) in [CommandStatus::EsmeRinvbndsts, CommandStatus::EsmeRalybnd]
        .into_iter()
        .enumerate()
    {
        smsc.script_submits([status]);
        let failure = within(STEP, "submit", rig.connector.submit(&message("x")))
            .await
            .expect_err("scripted to fail");
        match &failure.error {
            SubmitError::Temporary(text) => assert!(text.contains("rebinding"), "{text}"),
            other => panic!("expected a temporary failure, got {other:?}"),
        }
        let binds = round as u64 + 2;
        eventually(STEP, "a new connection and bind", || {
            let stats = smsc.stats();
            stats.connections_total == binds && stats.binds == binds && stats.connections == 1
        })
        .await;
        let c = rig.connector.clone();
        eventually(STEP, "ready again", || c.is_ready()).await;
        within(
            STEP,
            "submit on the new bind",
            rig.connector.submit(&message("y")),
        )
        .await
        .expect("accepted");
    }
    rig.connector.shutdown().await;
    smsc.shutdown().await;
}

#[tokio::test]
async fn shutdown_unbinds_and_closes_every_session() {
    let smsc = sim(quick()).await;
    let rig = connect(smsc.local_addr().port(), "binds = 2\n").await;
    let c = rig.connector.clone();
    eventually(STEP, "two binds", || c.binds_up() == 2).await;
    within(STEP, "shutdown", rig.connector.shutdown()).await;
    assert!(!rig.connector.is_ready());
    eventually(STEP, "sessions closed", || smsc.stats().connections == 0).await;
    smsc.shutdown().await;
}

#[tokio::test]
async fn a_malformed_destination_fails_permanently_without_a_pdu() {
    let smsc = sim(quick()).await;
    let rig = connect(smsc.local_addr().port(), "").await;
    let mut m = message("x");
    m.to = "+".into();
    let result = within(STEP, "submit", rig.connector.submit(&m)).await;
    assert!(
        matches!(
            result.as_ref().map_err(|f| &f.error),
            Err(SubmitError::Permanent(_))
        ),
        "{result:?}"
    );
    assert!(smsc.submitted().is_empty());
    rig.connector.shutdown().await;
    smsc.shutdown().await;
}

/// A scripted SMSC: accepts one bind, answers enquire_link, counts PDUs and
/// answers submit_sm only when `answer` says so.
struct Scripted {
    port: u16,
    submits: Arc<AtomicUsize>,
    enquire_links: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

async fn scripted(answer_submits: Option<CommandStatus>) -> Scripted {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let submits = Arc::new(AtomicUsize::new(0));
    let enquire_links = Arc::new(AtomicUsize::new(0));
    let (s, e) = (submits.clone(), enquire_links.clone());
    let task = tokio::spawn(async move {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        serve_scripted(stream, answer_submits, &s, &e).await;
    });
    Scripted {
        port,
        submits,
        enquire_links,
        task,
    }
}

async fn serve_scripted(
    stream: TcpStream,
    answer_submits: Option<CommandStatus>,
    submits: &AtomicUsize,
    enquire_links: &AtomicUsize,
) {
    let mut framed = Framed::new(stream, CommandCodec::new());
    while let Some(Ok(command)) = framed.next().await {
        let seq = command.sequence_number();
        let reply = match command.pdu() {
            Some(Pdu::BindTransceiver(_)) => Some(Command::new(
                CommandStatus::EsmeRok,
                seq,
                BindTransceiverResp::new(COctetString::empty(), None),
            )),
            Some(Pdu::EnquireLink) => {
                enquire_links.fetch_add(1, Ordering::Relaxed);
                Some(Command::new(
                    CommandStatus::EsmeRok,
                    seq,
                    Pdu::EnquireLinkResp,
                ))
            }
            Some(Pdu::SubmitSm(_)) => {
                submits.fetch_add(1, Ordering::Relaxed);
                answer_submits.map(|status| {
                    Command::new(
                        status,
                        seq,
                        SubmitSmResp::builder()
                            .message_id(COctetString::from_str("abc").expect("id"))
                            .build(),
                    )
                })
            }
            _ => None,
        };
        if let Some(reply) = reply
            && framed.send(reply).await.is_err()
        {
            return;
        }
    }
}

#[tokio::test]
async fn no_more_than_the_window_is_outstanding_on_a_bind() {
    let smsc = scripted(None).await;
    let rig = connect(smsc.port, "window = 4\nresponse_timeout = \"3s\"\n").await;
    let mut pending = Vec::new();
    for i in 0..10 {
        let c = rig.connector.clone();
        pending.push(tokio::spawn(async move {
            c.submit(&message(&format!("m{i}"))).await
        }));
    }
    let submits = smsc.submits.clone();
    eventually(STEP, "the window fills", || {
        submits.load(Ordering::Relaxed) == 4
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(smsc.submits.load(Ordering::Relaxed), 4, "window exceeded");
    rig.connector.shutdown().await;
    for p in pending {
        p.abort();
    }
    smsc.task.abort();
}

#[tokio::test]
async fn a_long_message_never_has_more_parts_outstanding_than_the_window() {
    let smsc = scripted(None).await;
    let rig = connect(smsc.port, "window = 2\nresponse_timeout = \"1s\"\n").await;
    let c = rig.connector.clone();
    let pending = tokio::spawn(async move { c.submit(&message(&"x".repeat(400))).await });
    let submits = smsc.submits.clone();
    eventually(STEP, "the window fills", || {
        submits.load(Ordering::Relaxed) == 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        smsc.submits.load(Ordering::Relaxed),
        2,
        "3 parts, window 2: the third waits"
    );
    let result = within(STEP, "the unanswered parts time out", pending)
        .await
        .expect("task");
    let failure = result.expect_err("nothing was answered");
    assert!(
        matches!(failure.error, SubmitError::Temporary(_)),
        "{failure:?}"
    );
    assert_eq!(failure.partial, None, "no part was taken");
    assert_eq!(
        smsc.submits.load(Ordering::Relaxed),
        2,
        "after a failure the rest is not sent"
    );
    rig.connector.shutdown().await;
    smsc.task.abort();
}

#[tokio::test]
async fn an_unanswered_submit_times_out_as_temporary() {
    let smsc = scripted(None).await;
    let rig = connect(smsc.port, "response_timeout = \"300ms\"\n").await;
    let result = within(STEP, "submit", rig.connector.submit(&message("x"))).await;
    assert!(
        matches!(
            result.as_ref().map_err(|f| &f.error),
            Err(SubmitError::Temporary(_))
        ),
        "{result:?}"
    );
    rig.connector.shutdown().await;
    smsc.task.abort();
}

#[tokio::test]
async fn permanent_statuses_fail_permanently() {
    let smsc = scripted(Some(CommandStatus::EsmeRinvdstadr)).await;
    let rig = connect(smsc.port, "").await;
    let result = within(STEP, "submit", rig.connector.submit(&message("x"))).await;
    match result.map_err(|f| f.error) {
        Err(SubmitError::Permanent(text)) => assert!(text.contains("0x0000000B"), "{text}"),
        other => panic!("expected permanent, got {other:?}"),
    }
    rig.connector.shutdown().await;
    smsc.task.abort();
}

#[tokio::test]
async fn an_idle_bind_sends_enquire_link_keep_alives() {
    let smsc = scripted(None).await;
    let rig = connect(smsc.port, "enquire_link_interval = \"1s\"\n").await;
    let links = smsc.enquire_links.clone();
    within(STEP, "two keep-alives", async {
        while links.load(Ordering::Relaxed) < 2 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(rig.connector.is_ready());
    rig.connector.shutdown().await;
    smsc.task.abort();
}

/// A TLS front (test CA, `localhost`) for the simulator.
async fn tls_front(backend: std::net::SocketAddr) -> (u16, tokio::task::JoinHandle<()>) {
    use tokio_rustls::rustls::{
        self, ServerConfig,
        pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    };
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls");
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("server.pem"))
        .expect("server.pem")
        .collect::<Result<_, _>>()
        .expect("certs");
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).expect("server.key");
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = TcpStream::connect(backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    (port, task)
}

#[tokio::test]
async fn tls_connects_to_an_smsc_with_a_private_ca() {
    let smsc = sim(quick()).await;
    let (port, front) = tls_front(smsc.local_addr()).await;
    let ca = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls/ca.pem");
    let mut rig = connect(
        port,
        &format!(
            "tls = true\ntls_server_name = \"localhost\"\ntls_ca = \"{}\"\n",
            ca.display()
        ),
    )
    .await;
    let ack = within(
        STEP,
        "submit over TLS",
        rig.connector.submit(&message("secret")),
    )
    .await
    .expect("accepted");
    assert_eq!(rig.next_receipt().await.smsc_id, ack.smsc_ids[0]);
    rig.connector.shutdown().await;
    front.abort();
    smsc.shutdown().await;
}

#[tokio::test]
async fn tls_refuses_a_certificate_from_an_unknown_ca() {
    let smsc = sim(quick()).await;
    let (port, front) = tls_front(smsc.local_addr()).await;
    let (tx, _events) = mpsc::channel(16);
    let connector = SmppConnector::start(
        settings(port, "tls = true\ntls_server_name = \"localhost\"\n"),
        tx,
    )
    .expect("start");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!connector.is_ready());
    assert_eq!(smsc.stats().binds, 0);
    connector.shutdown().await;
    front.abort();
    smsc.shutdown().await;
}

#[test]
fn emergencies_are_sent_with_priority() {
    let mut m = message("x");
    m.class = Class::Emergency;
    let pdus = super::submit::submit_pdus(&m, &settings(1, ""), 1).expect("pdus");
    assert_eq!(u8::from(pdus[0].priority_flag), 1);
}

/// Counts the write calls the SMPP connection makes on its socket.
struct CountingWrites {
    inner: TcpStream,
    writes: Arc<AtomicUsize>,
}

impl tokio::io::AsyncRead for CountingWrites {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for CountingWrites {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The vendored rusmppc's second patch (vendor/rusmppc/PATCHED.md): submits
/// queued together are encoded together and flushed with one write, not one
/// write (and TCP segment) per PDU.
#[tokio::test]
async fn smpp_queued_submits_leave_in_a_few_writes_not_one_per_pdu() {
    const SUBMITS: usize = 32;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let received = Arc::new(AtomicUsize::new(0));
    let smsc_received = received.clone();
    let smsc = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        let mut framed = Framed::new(stream, CommandCodec::new());
        while let Some(Ok(command)) = framed.next().await {
            if let Some(Pdu::SubmitSm(_)) = command.pdu() {
                smsc_received.fetch_add(1, Ordering::SeqCst);
                let resp = Command::builder()
                    .status(CommandStatus::EsmeRok)
                    .sequence_number(command.sequence_number())
                    .pdu(SubmitSmResp::default());
                framed.send(resp).await.expect("send submit_sm_resp");
            }
        }
    });

    let writes = Arc::new(AtomicUsize::new(0));
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let (client, _events) = rusmppc::ConnectionBuilder::new()
        .no_enquire_link_interval()
        .response_timeout(STEP)
        .connected(CountingWrites {
            inner: stream,
            writes: writes.clone(),
        });

    // Every submit is queued before the connection task runs.
    let responses = within(
        STEP,
        "32 submit_sm_resp",
        futures_util::future::join_all(
            (0..SUBMITS).map(|_| client.submit_sm(rusmpp::pdus::SubmitSm::default())),
        ),
    )
    .await;
    for response in responses {
        response.expect("every submit_sm gets its submit_sm_resp");
    }
    assert_eq!(
        received.load(Ordering::SeqCst),
        SUBMITS,
        "every PDU arrived intact"
    );
    let writes = writes.load(Ordering::SeqCst);
    assert!(
        writes <= 4,
        "{SUBMITS} submit_sm took {writes} writes, expected at most 4"
    );
    let _ = within(STEP, "close", client.close()).await;
    smsc.abort();
}

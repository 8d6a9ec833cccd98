//! Fault injection and malformed input: nothing a peer sends may take the server down.

use rusmpp::{CommandId, CommandStatus};
use tokio::io::AsyncWriteExt;

use super::*;

/// A 16-byte SMPP header followed by `body`, with a `command_length` of `length`.
fn pdu_bytes(length: u32, command_id: u32, sequence_number: u32, body: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&length.to_be_bytes());
    bytes.extend_from_slice(&command_id.to_be_bytes());
    bytes.extend_from_slice(&0u32.to_be_bytes());
    bytes.extend_from_slice(&sequence_number.to_be_bytes());
    bytes.extend_from_slice(body);
    bytes
}

async fn write_raw(raw: &mut Raw, bytes: &[u8]) {
    within(STEP, "raw write", raw.get_mut().write_all(bytes))
        .await
        .expect("raw write");
}

async fn raw_bind(raw: &mut Raw) {
    raw_send(
        raw,
        Command::new(CommandStatus::EsmeRok, 1, transceiver("acme", "pw")),
    )
    .await;
    let resp = raw_next(raw).await.expect("bind_resp");
    assert_eq!(resp.id(), CommandId::BindTransceiverResp);
    assert_eq!(resp.status(), CommandStatus::EsmeRok);
}

#[tokio::test]
async fn drop_connections_closes_every_client_and_new_ones_still_bind() {
    let sim = start(quick()).await;
    let a = bound_transceiver(&sim, "acme").await;
    let b = connect(&sim).await;
    // A connection still in the listen backlog is not the simulator's to drop yet.
    eventually(STEP, "both connections accepted", || {
        sim.stats().connections == 2
    })
    .await;

    sim.drop_connections();

    within(STEP, "a closed", a.client.closed()).await;
    within(STEP, "b closed", b.client.closed()).await;
    eventually(STEP, "no connections left", || sim.stats().connections == 0).await;
    let again = bound_transceiver(&sim, "acme").await;
    submit_ok(&again, submit("4915", "after the storm", 0)).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn a_garbled_pdu_gets_a_generic_nack_and_the_connection_carries_on() {
    let sim = start(quick()).await;
    let mut raw = raw(&sim).await;
    raw_bind(&mut raw).await;

    // submit_sm whose body is five bytes of a never-terminated service_type.
    write_raw(&mut raw, &pdu_bytes(21, 0x0000_0004, 7, b"AAAAA")).await;
    let nack = raw_next(&mut raw).await.expect("generic_nack");
    assert_eq!(nack.id(), CommandId::GenericNack);
    assert_eq!(nack.sequence_number(), 7);
    assert_ne!(nack.status(), CommandStatus::EsmeRok);

    raw_send(
        &mut raw,
        Command::new(CommandStatus::EsmeRok, 8, Pdu::EnquireLink),
    )
    .await;
    let resp = raw_next(&mut raw).await.expect("enquire_link_resp");
    assert_eq!(resp.id(), CommandId::EnquireLinkResp);
    assert_eq!(resp.sequence_number(), 8);
    assert_eq!(sim.stats().generic_nacks, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn an_unknown_command_id_gets_generic_nack_esme_rinvcmdid() {
    let sim = start(quick()).await;
    let mut raw = raw(&sim).await;
    raw_bind(&mut raw).await;

    write_raw(&mut raw, &pdu_bytes(16, 0x0000_0999, 3, &[])).await;
    write_raw(&mut raw, &pdu_bytes(20, 0x0000_0998, 4, b"junk")).await;

    for sequence_number in [3, 4] {
        let nack = raw_next(&mut raw).await.expect("generic_nack");
        assert_eq!(nack.id(), CommandId::GenericNack);
        assert_eq!(nack.status(), CommandStatus::EsmeRinvcmdid);
        assert_eq!(nack.sequence_number(), sequence_number);
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn an_impossible_command_length_closes_only_that_connection() {
    let sim = start(quick()).await;
    let healthy = bound_transceiver(&sim, "acme").await;
    let mut raw = raw(&sim).await;

    write_raw(&mut raw, &pdu_bytes(8, 0x0000_0015, 5, &[])).await;

    let nack = raw_next(&mut raw)
        .await
        .expect("generic_nack before closing");
    assert_eq!(nack.id(), CommandId::GenericNack);
    assert_eq!(nack.status(), CommandStatus::EsmeRinvcmdlen);
    assert!(
        raw_next(&mut raw).await.is_none(),
        "connection should be closed"
    );
    submit_ok(&healthy, submit("4915", "still here", 0)).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn random_garbage_never_affects_other_sessions() {
    let sim = start(quick()).await;
    let healthy = bound_transceiver(&sim, "acme").await;

    for seed in 0u32..20 {
        let mut raw = raw(&sim).await;
        // Deterministic noise; about half starts with a plausible length.
        let mut bytes: Vec<u8> = (0..200u32)
            .map(|i| {
                (i.wrapping_mul(2_654_435_761)
                    .wrapping_add(seed.wrapping_mul(40_503))
                    >> 13) as u8
            })
            .collect();
        if seed % 2 == 0 {
            bytes[..4].copy_from_slice(&40u32.to_be_bytes());
        }
        write_raw(&mut raw, &bytes).await;
        drop(raw);
        submit_ok(&healthy, submit("4915", "unaffected", 0)).await;
    }
    eventually(STEP, "garbage connections cleaned up", || {
        sim.stats().connections == 1
    })
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_sessions_and_stops_listening() {
    let sim = start(quick()).await;
    let esme = bound_transceiver(&sim, "acme").await;
    let addr = sim.local_addr();

    within(STEP, "shutdown", sim.shutdown()).await;

    within(STEP, "client closed", esme.client.closed()).await;
    let refused = within(STEP, "connect after shutdown", TcpStream::connect(addr)).await;
    assert!(refused.is_err(), "listener still accepting");
}

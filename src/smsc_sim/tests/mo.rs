//! Mobile-originated injection.

use super::*;
use crate::smsc_sim::SimError;

#[tokio::test]
async fn inject_mo_reaches_a_transceiver_as_gsm_text() {
    let sim = start(quick()).await;
    let mut esme = bound_transceiver(&sim, "acme").await;

    within(
        STEP,
        "inject",
        sim.inject_mo("491700000009", "12345", "STOP"),
    )
    .await
    .expect("sent");
    let deliver = next_deliver_sm(&mut esme).await;

    assert_eq!(u8::from(deliver.esm_class), 0);
    assert_eq!(u8::from(deliver.data_coding), 0);
    assert_eq!(deliver.source_addr.as_str(), "491700000009");
    assert_eq!(deliver.destination_addr.as_str(), "12345");
    assert_eq!(deliver.short_message().as_ref(), b"STOP");
    assert_eq!(sim.stats().mo_sent, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn inject_mo_falls_back_to_ucs2_for_text_gsm_cannot_carry() {
    let sim = start(quick()).await;
    let mut esme = bound_transceiver(&sim, "acme").await;

    within(
        STEP,
        "inject",
        sim.inject_mo("491700000009", "12345", "Привет"),
    )
    .await
    .expect("sent");
    let deliver = next_deliver_sm(&mut esme).await;

    assert_eq!(u8::from(deliver.data_coding), 0x08);
    let units: Vec<u16> = deliver
        .short_message()
        .as_ref()
        .chunks_exact(2)
        .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
        .collect();
    assert_eq!(String::from_utf16(&units).ok().as_deref(), Some("Привет"));
    sim.shutdown().await;
}

#[tokio::test]
async fn inject_mo_reaches_a_receiver_but_never_a_transmitter() {
    let sim = start(quick()).await;
    let mut tx = connect(&sim).await;
    within(
        STEP,
        "bind tx",
        tx.client.bind_transmitter(transmitter("acme", "pw")),
    )
    .await
    .expect("tx");
    let mut rx = connect(&sim).await;
    within(
        STEP,
        "bind rx",
        rx.client.bind_receiver(receiver("acme", "pw")),
    )
    .await
    .expect("rx");

    within(STEP, "inject", sim.inject_mo("4917", "12345", "hello"))
        .await
        .expect("sent");

    assert_eq!(
        next_deliver_sm(&mut rx).await.short_message().as_ref(),
        b"hello"
    );
    no_deliver_sm(&mut tx, std::time::Duration::from_millis(100)).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn inject_mo_without_a_receiver_fails_with_no_receiver() {
    let sim = start(quick()).await;
    let tx = connect(&sim).await;
    within(
        STEP,
        "bind tx",
        tx.client.bind_transmitter(transmitter("acme", "pw")),
    )
    .await
    .expect("tx");

    let result = within(STEP, "inject", sim.inject_mo("4917", "12345", "hello")).await;

    assert!(matches!(result, Err(SimError::NoReceiver)), "{result:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn inject_mo_rejects_addresses_that_are_not_smpp_addresses() {
    let sim = start(quick()).await;
    let _esme = bound_transceiver(&sim, "acme").await;

    let result = within(STEP, "inject", sim.inject_mo("", "12345", "hello")).await;
    assert!(
        matches!(result, Err(SimError::InvalidAddress(_))),
        "{result:?}"
    );
    let result = within(
        STEP,
        "inject",
        sim.inject_mo("123456789012345678901", "12345", "hi"),
    )
    .await;
    assert!(
        matches!(result, Err(SimError::InvalidAddress(_))),
        "{result:?}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn long_mo_text_travels_in_message_payload() {
    let sim = start(quick()).await;
    let mut esme = bound_transceiver(&sim, "acme").await;
    let long = "x".repeat(400);

    within(STEP, "inject", sim.inject_mo("4917", "12345", &long))
        .await
        .expect("sent");
    let deliver = next_deliver_sm(&mut esme).await;

    assert!(deliver.short_message().as_ref().is_empty());
    let payload = deliver.tlvs().iter().find_map(|tlv| match tlv.value() {
        Some(TlvValue::MessagePayload(payload)) => Some(payload.value.clone().into_vec()),
        _ => None,
    });
    assert_eq!(payload, Some(long.into_bytes()));
    sim.shutdown().await;
}

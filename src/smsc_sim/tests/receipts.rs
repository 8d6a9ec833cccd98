//! Delivery receipts: timing, content, failure rate, routing and parking.

use std::time::{Duration, Instant};

use super::*;

/// Splits receipt text into its `key:value` fields (keys may contain a space, e.g.
/// "submit date").
fn field<'a>(text: &'a str, key: &str) -> &'a str {
    let start = text
        .find(&format!("{key}:"))
        .unwrap_or_else(|| panic!("no {key} in {text:?}"))
        + key.len()
        + 1;
    let rest = &text[start..];
    if key == "text" {
        return rest;
    }
    rest.split(' ').next().unwrap_or_default()
}

#[tokio::test]
async fn receipt_is_sent_after_the_configured_delay() {
    let delay = Duration::from_millis(300);
    let sim = start(SimConfig {
        dlr_delay: delay,
        ..SimConfig::default()
    })
    .await;
    let mut esme = bound_transceiver(&sim, "acme").await;

    let submitted_at = Instant::now();
    let id = submit_ok(
        &esme,
        submit("491700000001", "Hello from Herald, this is long", 1),
    )
    .await;
    let deliver = next_deliver_sm(&mut esme).await;
    let elapsed = submitted_at.elapsed();

    assert!(
        elapsed >= delay - Duration::from_millis(5),
        "receipt after {elapsed:?}"
    );
    assert!(
        elapsed < delay + Duration::from_secs(2),
        "receipt after {elapsed:?}"
    );
    assert_eq!(u8::from(deliver.esm_class), 0x04, "SMSC delivery receipt");
    assert_eq!(deliver.source_addr.as_str(), "491700000001");
    assert_eq!(deliver.destination_addr.as_str(), "12345");
    assert_eq!(receipted_message_id(&deliver).as_deref(), Some(id.as_str()));
    assert_eq!(message_state(&deliver), Some(MessageState::Delivered));
    let text = text(&deliver);
    assert!(
        text.starts_with(&format!("id:{id} sub:001 dlvrd:001 submit date:")),
        "{text}"
    );
    assert_eq!(field(&text, "stat"), "DELIVRD");
    assert_eq!(field(&text, "err"), "000");
    assert_eq!(field(&text, "text"), "Hello from Herald, t");
    for date in [field(&text, "submit date"), field(&text, "done date")] {
        assert_eq!(date.len(), 10, "YYMMDDhhmm: {date}");
        assert!(
            date.bytes().all(|b| b.is_ascii_digit()),
            "YYMMDDhhmm: {date}"
        );
    }
    eventually(STEP, "receipt counted", || sim.stats().receipts_sent == 1).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn fail_rate_one_makes_every_receipt_undeliverable() {
    let sim = start(SimConfig {
        fail_rate: 1.0,
        ..quick()
    })
    .await;
    let mut esme = bound_transceiver(&sim, "acme").await;

    let id = submit_ok(&esme, submit("4915", "doomed", 1)).await;
    let deliver = next_deliver_sm(&mut esme).await;

    let text = text(&deliver);
    assert_eq!(receipted_message_id(&deliver).as_deref(), Some(id.as_str()));
    assert_eq!(message_state(&deliver), Some(MessageState::Undeliverable));
    assert_eq!(field(&text, "stat"), "UNDELIV");
    assert_eq!(field(&text, "dlvrd"), "000");
    assert_ne!(field(&text, "err"), "000");
    sim.shutdown().await;
}

#[tokio::test]
async fn no_receipt_is_sent_when_registered_delivery_does_not_ask_for_one() {
    let sim = start(quick()).await;
    let mut esme = bound_transceiver(&sim, "acme").await;

    submit_ok(&esme, submit("4915", "no receipt please", 0)).await;
    // registered_delivery 2 = failure only; this message is delivered.
    submit_ok(&esme, submit("4915", "only if it fails", 2)).await;

    no_deliver_sm(&mut esme, Duration::from_millis(200)).await;
    assert_eq!(sim.stats().receipts_sent, 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn receipts_arrive_in_submission_order() {
    let sim = start(quick()).await;
    let mut esme = bound_transceiver(&sim, "acme").await;

    let mut ids = Vec::new();
    for n in 0..10 {
        ids.push(submit_ok(&esme, submit("4915", &format!("m{n}"), 1)).await);
    }
    let mut receipted = Vec::new();
    for _ in 0..10 {
        receipted.push(receipted_message_id(&next_deliver_sm(&mut esme).await).unwrap_or_default());
    }

    assert_eq!(receipted, ids);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_transmitter_receipt_goes_to_a_receiver_bound_with_the_same_system_id() {
    let sim = start(quick()).await;
    let tx = connect(&sim).await;
    within(
        STEP,
        "bind tx",
        tx.client.bind_transmitter(transmitter("acme", "pw")),
    )
    .await
    .expect("tx");
    let mut other = connect(&sim).await;
    within(
        STEP,
        "bind other",
        other.client.bind_receiver(receiver("someone-else", "pw")),
    )
    .await
    .expect("rx");
    let mut rx = connect(&sim).await;
    within(
        STEP,
        "bind rx",
        rx.client.bind_receiver(receiver("acme", "pw")),
    )
    .await
    .expect("rx");

    let id = submit_ok(&tx, submit("4915", "split bind", 1)).await;

    let deliver = next_deliver_sm(&mut rx).await;
    assert_eq!(receipted_message_id(&deliver).as_deref(), Some(id.as_str()));
    no_deliver_sm(&mut other, Duration::from_millis(100)).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn receipts_for_a_gone_session_are_delivered_when_its_system_id_binds_again() {
    let sim = start(SimConfig {
        dlr_delay: Duration::from_millis(100),
        ..SimConfig::default()
    })
    .await;
    let first = bound_transceiver(&sim, "acme").await;
    let id = submit_ok(&first, submit("4915", "while you were away", 1)).await;
    within(STEP, "close", first.client.close())
        .await
        .expect("close");
    within(STEP, "closed", first.client.closed()).await;

    eventually(STEP, "receipt parked", || sim.stats().receipts_pending == 1).await;
    let mut second = bound_transceiver(&sim, "acme").await;

    let deliver = next_deliver_sm(&mut second).await;
    assert_eq!(receipted_message_id(&deliver).as_deref(), Some(id.as_str()));
    assert_eq!(sim.stats().receipts_pending, 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn parked_receipts_beyond_the_limit_drop_the_oldest() {
    let sim = start(SimConfig {
        pending_receipt_limit: 2,
        ..quick()
    })
    .await;
    let tx = connect(&sim).await;
    within(
        STEP,
        "bind tx",
        tx.client.bind_transmitter(transmitter("acme", "pw")),
    )
    .await
    .expect("tx");
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(submit_ok(&tx, submit("4915", &format!("m{n}"), 1)).await);
    }

    eventually(STEP, "receipts parked", || {
        let stats = sim.stats();
        stats.receipts_pending == 2 && stats.receipts_dropped == 1
    })
    .await;
    let mut rx = connect(&sim).await;
    within(
        STEP,
        "bind rx",
        rx.client.bind_receiver(receiver("acme", "pw")),
    )
    .await
    .expect("rx");

    let a = receipted_message_id(&next_deliver_sm(&mut rx).await);
    let b = receipted_message_id(&next_deliver_sm(&mut rx).await);
    assert_eq!([a, b], [Some(ids[1].clone()), Some(ids[2].clone())]);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_receipt_left_unanswered_is_delivered_again_after_the_session_ends() {
    let sim = start(quick()).await;
    let mut first = bound_transceiver(&sim, "acme").await;
    let id = submit_ok(&first, submit("4915", "ack me", 1)).await;
    // Read the receipt but never answer it, then go away.
    within(STEP, "receipt", async {
        loop {
            match first.events.next().await {
                Some(Event::Incoming(command))
                    if matches!(command.pdu(), Some(Pdu::DeliverSm(_))) =>
                {
                    return;
                }
                Some(_) => {}
                None => panic!("closed before the receipt"),
            }
        }
    })
    .await;
    within(STEP, "close", first.client.close())
        .await
        .expect("close");
    within(STEP, "closed", first.client.closed()).await;
    eventually(STEP, "receipt parked again", || {
        sim.stats().receipts_pending == 1
    })
    .await;

    let mut second = bound_transceiver(&sim, "acme").await;
    let deliver = next_deliver_sm(&mut second).await;
    assert_eq!(receipted_message_id(&deliver).as_deref(), Some(id.as_str()));
    // Answered this time: nothing is parked when this session ends.
    eventually(STEP, "deliver_sm_resp counted", || {
        sim.stats().deliver_sm_resps == 1
    })
    .await;
    within(STEP, "close", second.client.close())
        .await
        .expect("close");
    within(STEP, "closed", second.client.closed()).await;
    eventually(STEP, "session gone", || sim.stats().connections == 0).await;
    assert_eq!(sim.stats().receipts_pending, 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_receipt_refused_with_an_error_status_is_delivered_again() {
    let sim = start(quick()).await;
    let mut esme = bound_transceiver(&sim, "acme").await;
    let id = submit_ok(&esme, submit("4915", "store me", 1)).await;
    let sequence_number = within(STEP, "receipt", async {
        loop {
            match esme.events.next().await {
                Some(Event::Incoming(command))
                    if matches!(command.pdu(), Some(Pdu::DeliverSm(_))) =>
                {
                    return command.sequence_number();
                }
                Some(_) => {}
                None => panic!("closed before the receipt"),
            }
        }
    })
    .await;
    // "Cannot store it now": ESME_RX_T_APPN.
    within(
        STEP,
        "refuse",
        esme.client
            .status(rusmpp::CommandStatus::EsmeRxTAppn)
            .deliver_sm_resp(sequence_number, DeliverSmResp::default()),
    )
    .await
    .expect("deliver_sm_resp sent");
    eventually(STEP, "refusal counted", || {
        sim.stats().deliver_sm_refused == 1
    })
    .await;
    let again = next_deliver_sm(&mut esme).await;
    assert_eq!(receipted_message_id(&again).as_deref(), Some(id.as_str()));
    eventually(STEP, "both answers counted", || {
        sim.stats().deliver_sm_resps == 2
    })
    .await;
    assert_eq!(sim.stats().receipts_sent, 2);
    sim.shutdown().await;
}

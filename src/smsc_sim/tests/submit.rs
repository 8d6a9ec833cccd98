//! submit_sm: message ids, what is recorded and counted, throttling.

use std::collections::HashSet;

use rusmpp::{CommandStatus, tlvs::MessageSubmissionRequestTlvValue};

use super::*;

#[tokio::test]
async fn submit_sm_is_answered_with_a_unique_message_id() {
    let sim = start(quick()).await;
    let esme = bound_transceiver(&sim, "acme").await;

    let mut ids = Vec::new();
    for n in 0..20 {
        ids.push(submit_ok(&esme, submit("491700000001", &format!("message {n}"), 0)).await);
    }

    let distinct: HashSet<_> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "ids repeat: {ids:?}");
    assert!(ids.iter().all(|id| !id.is_empty() && id.len() <= 64));
    sim.shutdown().await;
}

#[tokio::test]
async fn every_accepted_submit_sm_is_recorded_in_order_with_its_fields() {
    let sim = start(quick()).await;
    let esme = bound_transceiver(&sim, "acme").await;

    let first = submit_ok(&esme, submit("491700000001", "first", 1)).await;
    let second = submit_ok(&esme, submit("491700000002", "second", 0)).await;

    let submitted = sim.submitted();
    assert_eq!(submitted.len(), 2);
    assert_eq!(submitted[0].message_id, first);
    assert_eq!(submitted[0].system_id, "acme");
    assert_eq!(submitted[0].source_addr, "12345");
    assert_eq!(submitted[0].destination_addr, "491700000001");
    assert_eq!(submitted[0].short_message, b"first");
    assert_eq!(submitted[0].registered_delivery, 1);
    assert_eq!(submitted[0].data_coding, 0);
    assert_eq!(submitted[0].esm_class, 0);
    assert_eq!(submitted[1].message_id, second);
    assert_eq!(submitted[1].registered_delivery, 0);
    let stats = sim.stats();
    assert_eq!(stats.submits, 2);
    assert_eq!(stats.bytes, 11);
    assert_eq!(stats.sessions[0].submits, 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn sar_segments_and_message_payload_are_recorded_and_counted_as_parts() {
    let sim = start(quick()).await;
    let esme = bound_transceiver(&sim, "acme").await;
    let mut part = submit("4915", "part one of two", 0);
    part.push_tlv(MessageSubmissionRequestTlvValue::SarMsgRefNum(42));
    part.push_tlv(MessageSubmissionRequestTlvValue::SarTotalSegments(2));
    part.push_tlv(MessageSubmissionRequestTlvValue::SarSegmentSeqnum(1));
    let mut udh_part = submit("4915", "", 0).with_udhi_indicator();
    udh_part.set_short_message(
        OctetString::from_static_slice(&[5, 0, 3, 9, 2, 2, b'h', b'i']).expect("udh"),
    );
    let mut long = submit("4915", "", 0);
    long.push_tlv(MessageSubmissionRequestTlvValue::MessagePayload(
        rusmpp::values::MessagePayload::new(rusmpp::types::AnyOctetString::from_static_slice(
            &[b'x'; 300],
        )),
    ));

    submit_ok(&esme, part).await;
    submit_ok(&esme, udh_part).await;
    submit_ok(&esme, long).await;

    let submitted = sim.submitted();
    assert_eq!(submitted[0].sar_msg_ref_num, Some(42));
    assert_eq!(submitted[0].sar_total_segments, Some(2));
    assert_eq!(submitted[0].sar_segment_seqnum, Some(1));
    assert_eq!(submitted[1].esm_class & 0x40, 0x40);
    assert_eq!(
        submitted[2].message_payload.as_deref().map(<[u8]>::len),
        Some(300)
    );
    let stats = sim.stats();
    assert_eq!(
        stats.parts, 2,
        "SAR and UDH segments count, the payload does not"
    );
    assert_eq!(stats.bytes, 15 + 8 + 300);
    sim.shutdown().await;
}

#[tokio::test]
async fn recording_can_be_switched_off() {
    let sim = start(SimConfig {
        record: false,
        ..quick()
    })
    .await;
    let esme = bound_transceiver(&sim, "acme").await;

    submit_ok(&esme, submit("4915", "hi", 0)).await;

    assert!(sim.submitted().is_empty());
    assert_eq!(sim.stats().submits, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn throttling_returns_esme_rthrottled_beyond_the_rate() {
    let sim = start(SimConfig {
        throttle_tps: 5,
        ..quick()
    })
    .await;
    let esme = bound_transceiver(&sim, "acme").await;

    let mut accepted = 0;
    let mut throttled = 0;
    let started = std::time::Instant::now();
    for _ in 0..20 {
        match within(
            STEP,
            "submit",
            esme.client.submit_sm(submit("4915", "hi", 0)),
        )
        .await
        {
            Ok(_) => accepted += 1,
            result => {
                assert_eq!(error_status(result), CommandStatus::EsmeRthrottled);
                throttled += 1;
            }
        }
    }

    // The burst of 5 gets through, plus one more per 200 ms the loop took (normally none:
    // 20 round trips on loopback take a few milliseconds).
    let replenished = (started.elapsed().as_secs_f64() * 5.0).ceil() as usize;
    assert!(
        (5..=5 + replenished).contains(&accepted),
        "accepted {accepted}, replenished at most {replenished}"
    );
    assert!(throttled > 0);
    assert_eq!(sim.stats().throttled, throttled);
    assert_eq!(sim.stats().sessions[0].throttled, throttled);
    assert_eq!(sim.submitted().len(), accepted);
    sim.shutdown().await;
}

#[tokio::test]
async fn throttle_tps_can_be_changed_at_run_time() {
    let sim = start(quick()).await;
    let esme = bound_transceiver(&sim, "acme").await;
    submit_ok(&esme, submit("4915", "free", 0)).await;

    sim.set_throttle_tps(1);
    submit_ok(&esme, submit("4915", "one", 0)).await;
    let result = within(
        STEP,
        "submit",
        esme.client.submit_sm(submit("4915", "two", 0)),
    )
    .await;
    assert_eq!(error_status(result), CommandStatus::EsmeRthrottled);

    sim.set_throttle_tps(0);
    for _ in 0..10 {
        submit_ok(&esme, submit("4915", "unlimited", 0)).await;
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn scripted_statuses_answer_the_next_submits_in_order() {
    let sim = start(quick()).await;
    let esme = bound_transceiver(&sim, "acme").await;
    sim.script_submits([
        CommandStatus::EsmeRok,
        CommandStatus::EsmeRinvbndsts,
        CommandStatus::EsmeRthrottled,
    ]);
    submit_ok(&esme, submit("4915", "one", 1)).await;
    let second = esme.client.submit_sm(submit("4915", "two", 1)).await;
    assert_eq!(error_status(second), CommandStatus::EsmeRinvbndsts);
    let third = esme.client.submit_sm(submit("4915", "three", 1)).await;
    assert_eq!(error_status(third), CommandStatus::EsmeRthrottled);
    submit_ok(&esme, submit("4915", "four", 1)).await;
    let stats = sim.stats();
    assert_eq!((stats.submits, stats.scripted), (2, 2));
    let texts: Vec<Vec<u8>> = sim
        .submitted()
        .into_iter()
        .map(|s| s.short_message)
        .collect();
    assert_eq!(texts, vec![b"one".to_vec(), b"four".to_vec()]);
    sim.shutdown().await;
}

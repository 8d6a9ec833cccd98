//! Pure helpers: receipt text, outcome selection, message id format, UDH inspection and
//! the framing guard.

use std::time::{Duration, SystemTime};

use rusmpp::CommandStatus;
use tokio_util::{
    bytes::{Bytes, BytesMut},
    codec::Decoder,
};

use crate::smsc_sim::{
    codec::{Inbound, SimCodec},
    receipt::{Outcome, Receipt, snippet},
    submit::{format_hex, has_concat_udh},
};

use super::cstr;

fn receipt(outcome: Outcome, body: &'static [u8]) -> Receipt {
    Receipt {
        message_id: 0xbeef,
        origin: 1,
        system_id: "acme".into(),
        handset: cstr("491700000001"),
        handset_ton: Default::default(),
        handset_npi: Default::default(),
        sender: cstr("12345"),
        sender_ton: Default::default(),
        sender_npi: Default::default(),
        // 2024-03-05 06:07:08 UTC
        submitted_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_709_618_828),
        outcome,
        data_coding: 0,
        esm_class: 0,
        body: Bytes::from_static(body),
    }
}

#[test]
fn receipt_text_follows_the_appendix_b_format() {
    let done = SystemTime::UNIX_EPOCH + Duration::from_secs(1_709_618_888);
    assert_eq!(
        receipt(Outcome::Delivered, b"Hello world, how are you today?").text(done),
        "id:beef sub:001 dlvrd:001 submit date:2403050607 done date:2403050608 stat:DELIVRD err:000 text:Hello world, how are"
    );
    assert_eq!(
        receipt(Outcome::Undeliverable, b"x").text(done),
        "id:beef sub:001 dlvrd:000 submit date:2403050607 done date:2403050608 stat:UNDELIV err:001 text:x"
    );
}

#[test]
fn receipt_deliver_sm_is_an_smsc_delivery_receipt() {
    let deliver = receipt(Outcome::Undeliverable, b"x").to_deliver_sm(SystemTime::now());
    assert_eq!(u8::from(deliver.esm_class), 0x04);
    assert_eq!(deliver.source_addr.as_str(), "491700000001");
    assert_eq!(deliver.destination_addr.as_str(), "12345");
    assert_eq!(
        super::receipted_message_id(&deliver).as_deref(),
        Some("beef")
    );
    assert_eq!(
        super::message_state(&deliver),
        Some(rusmpp::values::MessageState::Undeliverable)
    );
}

#[test]
fn receipt_snippet_skips_udh_decodes_ucs2_and_masks_unprintables() {
    assert_eq!(snippet(0, 0x40, &[5, 0, 3, 1, 2, 1, b'h', b'i']), "hi");
    assert_eq!(snippet(8, 0, &[0x04, 0x1f, 0x00, b'!']), "?!");
    assert_eq!(snippet(0, 0, b"a\nb\x01"), "a?b?");
    assert_eq!(snippet(0, 0x40, &[200]), "");
}

#[test]
fn outcome_follows_the_fail_rate_deterministically() {
    let failed = |rate| {
        (0..10_000u64)
            .filter(|&id| Outcome::for_message(id, rate) == Outcome::Undeliverable)
            .count()
    };
    assert_eq!(failed(0.0), 0);
    assert_eq!(failed(1.0), 10_000);
    let some = failed(0.3);
    assert!(
        (2_700..=3_300).contains(&some),
        "{some} of 10000 failed at 0.3"
    );
    assert_eq!(failed(0.3), some, "same ids fail every time");
}

#[test]
fn registered_delivery_selects_which_outcomes_get_a_receipt() {
    use Outcome::{Delivered, Undeliverable};
    assert!(!Delivered.requested_by(0) && !Undeliverable.requested_by(0));
    assert!(Delivered.requested_by(1) && Undeliverable.requested_by(1));
    assert!(!Delivered.requested_by(2) && Undeliverable.requested_by(2));
    assert!(Delivered.requested_by(3) && !Undeliverable.requested_by(3));
    assert!(Delivered.requested_by(0x11), "upper bits do not matter");
}

#[test]
fn message_ids_are_lowercase_hex_c_strings() {
    let mut buf = [0u8; 17];
    assert_eq!(format_hex(0, &mut buf), b"0\0");
    assert_eq!(format_hex(0xabc123, &mut buf), b"abc123\0");
    assert_eq!(format_hex(u64::MAX, &mut buf), b"ffffffffffffffff\0");
}

#[test]
fn concatenation_udh_is_recognised_only_with_udhi() {
    assert!(has_concat_udh(0x40, &[5, 0, 3, 1, 2, 1, b'x']));
    assert!(has_concat_udh(0x40, &[6, 8, 4, 0, 1, 2, 1]));
    assert!(
        has_concat_udh(0x40, &[8, 0x24, 1, 0, 0, 3, 1, 2, 1]),
        "after another IE"
    );
    assert!(!has_concat_udh(0x00, &[5, 0, 3, 1, 2, 1]));
    assert!(!has_concat_udh(0x40, &[3, 0x24, 1, 0]));
    assert!(!has_concat_udh(0x40, &[]));
}

fn header(length: u32, command_id: u32, sequence_number: u32) -> Vec<u8> {
    [length, command_id, 0, sequence_number]
        .iter()
        .flat_map(|word| word.to_be_bytes())
        .collect()
}

#[test]
fn the_framing_guard_waits_for_a_whole_pdu() {
    let mut codec = SimCodec::new();
    let mut buf = BytesMut::from(&header(16, 0x15, 9)[..10]);
    assert!(matches!(codec.decode(&mut buf), Ok(None)));
    buf.extend_from_slice(&header(16, 0x15, 9)[10..]);
    match codec.decode(&mut buf) {
        Ok(Some(Inbound::Command(command))) => assert_eq!(command.sequence_number(), 9),
        other => panic!("expected enquire_link, got {other:?}"),
    }
    assert!(buf.is_empty());
}

#[test]
fn the_framing_guard_skips_a_garbled_body_and_keeps_the_next_pdu() {
    let mut codec = SimCodec::new();
    let mut bytes = header(21, 0x04, 7);
    bytes.extend_from_slice(b"AAAAA");
    bytes.extend_from_slice(&header(16, 0x15, 8));
    let mut buf = BytesMut::from(&bytes[..]);

    match codec.decode(&mut buf) {
        Ok(Some(Inbound::Garbled {
            sequence_number,
            status,
        })) => {
            assert_eq!(sequence_number, 7);
            assert_ne!(status, CommandStatus::EsmeRok);
        }
        other => panic!("expected garbled, got {other:?}"),
    }
    match codec.decode(&mut buf) {
        Ok(Some(Inbound::Command(command))) => assert_eq!(command.sequence_number(), 8),
        other => panic!("expected enquire_link, got {other:?}"),
    }
}

#[test]
fn the_framing_guard_rejects_impossible_lengths() {
    let mut codec = SimCodec::new();
    assert!(
        codec
            .decode(&mut BytesMut::from(&header(15, 0x15, 1)[..]))
            .is_err()
    );
    assert!(
        codec
            .decode(&mut BytesMut::from(&header(u32::MAX, 0x15, 1)[..]))
            .is_err()
    );
}

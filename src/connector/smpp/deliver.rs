//! Reading a `deliver_sm`: a delivery receipt (final state of one submitted
//! part) or a piece of a mobile-originated message.
//!
//! Receipts are recognised by the esm_class message type "MC delivery
//! receipt" (0x04), or by carrying both `receipted_message_id` and
//! `message_state` (some SMSCs forget the type bits). The carrier's id comes
//! from the `receipted_message_id` TLV, else from `id:` in the receipt text
//! (SMPP 3.4 Appendix B: `id:… sub:… dlvrd:… submit date:… done date:…
//! stat:DELIVRD err:000 text:…`); the state from the `message_state` TLV,
//! else from `stat:`. ENROUTE, ACCEPTD and SCHEDULED are not final and are
//! only acknowledged.

use rusmpp::{pdus::DeliverSm, tlvs::TlvValue, values::MessageState};

use super::inbound::{self, MoPart};
use crate::model::ReceiptState;

/// esm_class message-type bits (2–5).
const ESM_TYPE_MASK: u8 = 0x3C;
/// esm_class message type: MC delivery receipt.
const ESM_TYPE_RECEIPT: u8 = 0x04;
/// esm_class message type: intermediate delivery notification.
const ESM_TYPE_INTERMEDIATE: u8 = 0x20;

/// A final receipt for one part, before it is tagged with the connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedReceipt {
    pub smsc_id: String,
    pub state: ReceiptState,
    /// The carrier's error code for failures (`err:` or network_error_code).
    pub error_code: Option<String>,
}

/// What one `deliver_sm` is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Receipt(ParsedReceipt),
    /// A receipt or notification of a non-final state; acknowledged, no event.
    NotFinal,
    /// A receipt that names no message: acknowledged (the SMSC would resend
    /// it forever otherwise) and logged.
    Unreadable(&'static str),
    /// An inbound message (or one part of a concatenated one).
    Inbound(MoPart),
}

/// Classifies and parses a `deliver_sm`.
pub fn read(pdu: &DeliverSm) -> Delivery {
    let esm = u8::from(pdu.esm_class);
    let mut receipted_id = None;
    let mut state_tlv = None;
    let mut network_error = None;
    let mut payload = None;
    for tlv in pdu.tlvs() {
        match tlv.value() {
            Some(TlvValue::ReceiptedMessageId(id)) => receipted_id = Some(id.as_str().to_string()),
            Some(TlvValue::MessageState(s)) => state_tlv = Some(*s),
            Some(TlvValue::NetworkErrorCode(code)) => network_error = Some(code.error_code),
            Some(TlvValue::MessagePayload(p)) => payload = Some(p.value.as_ref()),
            _ => {}
        }
    }
    let kind = esm & ESM_TYPE_MASK;
    let is_receipt =
        kind == ESM_TYPE_RECEIPT || (receipted_id.is_some() && state_tlv.is_some() && kind == 0);
    if kind == ESM_TYPE_INTERMEDIATE {
        return Delivery::NotFinal;
    }
    if !is_receipt {
        if kind != 0 {
            // SME delivery / manual acknowledgements: nothing for us.
            return Delivery::NotFinal;
        }
        return Delivery::Inbound(inbound::part(pdu, payload));
    }
    let body = match pdu.short_message().as_ref() {
        [] => payload.unwrap_or_default(),
        b => b,
    };
    let text = ReceiptText::parse(body);
    let Some(smsc_id) = receipted_id
        .filter(|id| !id.is_empty())
        .or_else(|| text.id.map(str::to_string))
    else {
        return Delivery::Unreadable("receipt without receipted_message_id or id:");
    };
    let state = match state_tlv.map(from_message_state) {
        Some(state) => state,
        None => match text.stat.map(from_stat) {
            Some(state) => state,
            None => return Delivery::Unreadable("receipt without message_state or stat:"),
        },
    };
    let Some(state) = state else {
        return Delivery::NotFinal;
    };
    let error_code = if state.is_delivered() {
        None
    } else {
        text.err
            .map(str::to_string)
            .or_else(|| network_error.map(|code| format!("{code:03}")))
    };
    Delivery::Receipt(ParsedReceipt {
        smsc_id,
        state,
        error_code,
    })
}

/// A final state from the `message_state` TLV; `None` for non-final states.
fn from_message_state(state: MessageState) -> Option<ReceiptState> {
    match state {
        MessageState::Delivered => Some(ReceiptState::Delivered),
        MessageState::Expired => Some(ReceiptState::Expired),
        MessageState::Deleted => Some(ReceiptState::Deleted),
        MessageState::Undeliverable => Some(ReceiptState::Undeliverable),
        MessageState::Rejected => Some(ReceiptState::Rejected),
        MessageState::Scheduled | MessageState::Enroute | MessageState::Accepted => None,
        MessageState::Unknown | MessageState::Skipped | MessageState::Other(_) => {
            Some(ReceiptState::Unknown)
        }
    }
}

/// A final state from `stat:`; `None` for non-final states.
fn from_stat(stat: &str) -> Option<ReceiptState> {
    Some(match stat.to_ascii_uppercase().as_str() {
        "DELIVRD" | "DELIVERED" => ReceiptState::Delivered,
        "UNDELIV" | "UNDELIVERABLE" => ReceiptState::Undeliverable,
        "EXPIRED" => ReceiptState::Expired,
        "REJECTD" | "REJECTED" => ReceiptState::Rejected,
        "DELETED" => ReceiptState::Deleted,
        "ENROUTE" | "ACCEPTD" | "SCHEDULED" => return None,
        _ => ReceiptState::Unknown,
    })
}

/// The fields of a receipt text that matter here.
#[derive(Debug, Default, PartialEq, Eq)]
struct ReceiptText<'a> {
    id: Option<&'a str>,
    stat: Option<&'a str>,
    err: Option<&'a str>,
}

impl<'a> ReceiptText<'a> {
    /// Finds `id:`, `stat:` and `err:` (any case) as whole words; values end
    /// at whitespace. The `text:` field ends the scan, since it is free text
    /// that may itself contain "id:".
    fn parse(body: &'a [u8]) -> ReceiptText<'a> {
        let mut out = ReceiptText::default();
        let Ok(text) = std::str::from_utf8(ascii_prefix(body)) else {
            return out;
        };
        for word in text.split_ascii_whitespace() {
            let Some((key, value)) = word.split_once(':') else {
                continue;
            };
            match key.to_ascii_lowercase().as_str() {
                "id" if out.id.is_none() && !value.is_empty() => out.id = Some(value),
                "stat" if out.stat.is_none() => out.stat = Some(value),
                "err" if out.err.is_none() => out.err = Some(value),
                "text" => break,
                _ => {}
            }
        }
        out
    }
}

/// The leading ASCII of a receipt body (what follows may be any bytes).
fn ascii_prefix(body: &[u8]) -> &[u8] {
    let end = body
        .iter()
        .position(|b| !b.is_ascii())
        .unwrap_or(body.len());
    &body[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusmpp::{
        tlvs::MessageDeliveryRequestTlvValue,
        types::{COctetString, OctetString},
        values::EsmClass,
    };

    fn receipt(text: &str, tlvs: Vec<MessageDeliveryRequestTlvValue>) -> DeliverSm {
        DeliverSm::builder()
            .source_addr(COctetString::from_string("447700900123".into()).expect("addr"))
            .destination_addr(COctetString::from_string("Herald".into()).expect("addr"))
            .esm_class(EsmClass::from(0x04))
            .short_message(OctetString::from_string(text.to_string()).expect("text"))
            .tlvs(tlvs)
            .build()
    }

    const TEXT: &str = "id:1a2b3c sub:001 dlvrd:001 submit date:2511251633 done date:2511251633 stat:DELIVRD err:000 text:Hello id:zzz";

    #[test]
    fn a_receipt_text_alone_gives_id_and_state() {
        let d = read(&receipt(TEXT, vec![]));
        assert_eq!(
            d,
            Delivery::Receipt(ParsedReceipt {
                smsc_id: "1a2b3c".into(),
                state: ReceiptState::Delivered,
                error_code: None
            })
        );
    }

    #[test]
    fn tlvs_win_over_the_text() {
        let d = read(&receipt(
            TEXT,
            vec![
                MessageDeliveryRequestTlvValue::ReceiptedMessageId(
                    COctetString::from_string("tlv-id".into()).expect("id"),
                ),
                MessageDeliveryRequestTlvValue::MessageState(MessageState::Undeliverable),
            ],
        ));
        let Delivery::Receipt(r) = d else {
            panic!("receipt expected: {d:?}");
        };
        assert_eq!(r.smsc_id, "tlv-id");
        assert_eq!(r.state, ReceiptState::Undeliverable);
        assert_eq!(r.error_code.as_deref(), Some("000"));
    }

    #[test]
    fn every_final_stat_word_maps_to_its_state() {
        for (stat, state) in [
            ("DELIVRD", ReceiptState::Delivered),
            ("UNDELIV", ReceiptState::Undeliverable),
            ("EXPIRED", ReceiptState::Expired),
            ("REJECTD", ReceiptState::Rejected),
            ("DELETED", ReceiptState::Deleted),
            ("UNKNOWN", ReceiptState::Unknown),
        ] {
            let d = read(&receipt(&format!("id:7 stat:{stat} err:042"), vec![]));
            let Delivery::Receipt(r) = d else {
                panic!("receipt expected for {stat}");
            };
            assert_eq!(r.state, state, "{stat}");
            assert_eq!(r.error_code.is_some(), state != ReceiptState::Delivered);
        }
    }

    #[test]
    fn enroute_and_accepted_are_not_final() {
        assert_eq!(
            read(&receipt("id:7 stat:ENROUTE", vec![])),
            Delivery::NotFinal
        );
        assert_eq!(
            read(&receipt("id:7 stat:ACCEPTD", vec![])),
            Delivery::NotFinal
        );
    }

    #[test]
    fn a_receipt_without_an_id_is_unreadable() {
        assert!(matches!(
            read(&receipt("stat:DELIVRD", vec![])),
            Delivery::Unreadable(_)
        ));
    }

    #[test]
    fn esm_class_0_is_an_inbound_message() {
        let pdu = DeliverSm::builder()
            .source_addr_ton(rusmpp::values::Ton::International)
            .source_addr(COctetString::from_string("447700900123".into()).expect("addr"))
            .destination_addr(COctetString::from_string("12345".into()).expect("addr"))
            .esm_class(EsmClass::from(0))
            .short_message(OctetString::from_string("STOP".into()).expect("text"))
            .build();
        let Delivery::Inbound(part) = read(&pdu) else {
            panic!("inbound expected");
        };
        assert_eq!(part.text, "STOP");
        assert_eq!(part.from, "+447700900123");
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;
    use rusmpp::types::{COctetString, OctetString};
    use rusmpp::values::EsmClass;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any receipt body is read: a receipt or unreadable, never a panic.
        #[test]
        fn any_receipt_text_is_read(body in proptest::collection::vec(any::<u8>(), 0..255)) {
            let Ok(short) = OctetString::from_vec(body) else { return Ok(()); };
            let pdu = DeliverSm::builder()
                .source_addr(COctetString::from_string("447700900123".into()).expect("addr"))
                .destination_addr(COctetString::from_string("Herald".into()).expect("addr"))
                .esm_class(EsmClass::from(0x04))
                .short_message(short)
                .build();
            let _ = read(&pdu);
        }

        /// Receipt-shaped text with any id and stat: a well-formed id is
        /// read back as sent.
        #[test]
        fn receipt_ids_round_trip(id in "[0-9A-Za-z]{1,40}", stat in "[A-Z]{0,8}", junk in "[ -~]{0,40}") {
            let text = format!("id:{id} sub:001 dlvrd:001 submit date:2511251633 done date:2511251633 stat:{stat} err:000 text:{junk}");
            let pdu = DeliverSm::builder()
                .source_addr(COctetString::from_string("447700900123".into()).expect("addr"))
                .destination_addr(COctetString::from_string("Herald".into()).expect("addr"))
                .esm_class(EsmClass::from(0x04))
                .short_message(OctetString::from_string(text).expect("text"))
                .build();
            if let Delivery::Receipt(r) = read(&pdu) {
                prop_assert_eq!(r.smsc_id, id);
            }
        }
    }
}

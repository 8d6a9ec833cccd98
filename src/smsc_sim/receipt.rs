//! Delivery receipts: what is kept per accepted message, the receipt text and the
//! receipt `deliver_sm`.
//!
//! The text follows the de-facto format of SMPP 3.4 Appendix B, which is what Herald's
//! receipt parser (and every carrier) expects:
//! `id:<id> sub:001 dlvrd:001 submit date:YYMMDDhhmm done date:YYMMDDhhmm stat:DELIVRD err:000 text:<20 chars>`.

use std::{fmt::Write as _, sync::Arc, time::SystemTime};

use rusmpp::{
    pdus::DeliverSm,
    tlvs::MessageDeliveryRequestTlvValue,
    types::{COctetString, OctetString},
    values::{DataCoding, EsmClass, MessageState, Npi, Ton},
};
use tokio_util::bytes::Bytes;

/// esm_class of a receipt: message type "MC delivery receipt".
pub(super) const ESM_CLASS_DELIVERY_RECEIPT: u8 = 0x04;

/// Error code put in `err:` of failed receipts (any non-zero value will do for Herald).
pub(super) const FAILURE_ERROR_CODE: u16 = 1;

/// Final state a receipt reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    Delivered,
    Undeliverable,
}

impl Outcome {
    /// Decides a message's fate from its id: a fixed hash of the id compared with
    /// `fail_rate`, so reruns fail the same ids and no RNG is needed.
    pub(super) fn for_message(message_id: u64, fail_rate: f64) -> Self {
        if fail_rate <= 0.0 {
            return Outcome::Delivered;
        }
        if fail_rate >= 1.0 {
            return Outcome::Undeliverable;
        }
        // splitmix64 finaliser: spreads consecutive ids evenly over u64.
        let mut z = message_id.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let unit = (z >> 11) as f64 / (1u64 << 53) as f64;
        if unit < fail_rate {
            Outcome::Undeliverable
        } else {
            Outcome::Delivered
        }
    }

    fn stat(self) -> &'static str {
        match self {
            Outcome::Delivered => "DELIVRD",
            Outcome::Undeliverable => "UNDELIV",
        }
    }

    fn message_state(self) -> MessageState {
        match self {
            Outcome::Delivered => MessageState::Delivered,
            Outcome::Undeliverable => MessageState::Undeliverable,
        }
    }

    /// Whether `registered_delivery` (its low two bits) asks for a receipt of this outcome.
    /// 1 = success and failure, 2 = failure only, 3 = success only (SMPP 5.0 meaning,
    /// harmless for 3.4 clients, which only use 1).
    pub(super) fn requested_by(self, registered_delivery: u8) -> bool {
        match registered_delivery & 0b11 {
            1 => true,
            2 => self == Outcome::Undeliverable,
            3 => self == Outcome::Delivered,
            _ => false,
        }
    }
}

/// Everything needed to write one receipt later. Address and body fields are `Bytes`
/// clones of the decoded `submit_sm`, so building this copies nothing.
#[derive(Debug, Clone)]
pub(super) struct Receipt {
    pub message_id: u64,
    /// Session the `submit_sm` arrived on; preferred for delivery if it can receive.
    pub origin: u64,
    /// system_id of that session; receipts only go to binds with the same system_id.
    pub system_id: Arc<str>,
    /// The submit's destination: the receipt's source.
    pub handset: COctetString<1, 21>,
    pub handset_ton: Ton,
    pub handset_npi: Npi,
    /// The submit's source: the receipt's destination.
    pub sender: COctetString<1, 21>,
    pub sender_ton: Ton,
    pub sender_npi: Npi,
    pub submitted_at: SystemTime,
    pub outcome: Outcome,
    /// Original data_coding, esm_class and body, only for the `text:` field.
    pub data_coding: u8,
    pub esm_class: u8,
    pub body: Bytes,
}

/// Formats a message id the way `submit_sm_resp` and receipts show it.
pub(super) fn format_message_id(id: u64) -> String {
    format!("{id:x}")
}

fn smpp_date(time: SystemTime) -> String {
    match jiff::Timestamp::try_from(time) {
        Ok(ts) => ts.strftime("%y%m%d%H%M").to_string(),
        Err(_) => "0001010000".to_owned(),
    }
}

/// First 20 characters of the original text, printable ASCII only (others become '?'),
/// skipping a UDH and decoding UCS-2 so the snippet is readable.
pub(super) fn snippet(data_coding: u8, esm_class: u8, body: &[u8]) -> String {
    const LEN: usize = 20;
    let udhi = esm_class & 0x40 != 0;
    let text = match (udhi, body.first()) {
        (true, Some(&udhl)) => body.get(usize::from(udhl) + 1..).unwrap_or_default(),
        _ => body,
    };
    let printable = |c: char| {
        if c.is_ascii_graphic() || c == ' ' {
            c
        } else {
            '?'
        }
    };
    if data_coding == 0x08 {
        let units = text
            .chunks_exact(2)
            .map(|pair| u16::from_be_bytes([pair[0], pair[1]]));
        char::decode_utf16(units)
            .take(LEN)
            .map(|c| printable(c.unwrap_or('?')))
            .collect()
    } else {
        text.iter()
            .take(LEN)
            .map(|&b| printable(char::from(b)))
            .collect()
    }
}

impl Receipt {
    /// The receipt's `short_message` text, with `done` as the done date.
    pub(super) fn text(&self, done: SystemTime) -> String {
        let (dlvrd, err) = match self.outcome {
            Outcome::Delivered => (1, 0),
            Outcome::Undeliverable => (0, FAILURE_ERROR_CODE),
        };
        let mut text = String::with_capacity(160);
        // Writing to a String cannot fail.
        let _ = write!(
            text,
            "id:{} sub:001 dlvrd:{dlvrd:03} submit date:{} done date:{} stat:{} err:{err:03} text:{}",
            format_message_id(self.message_id),
            smpp_date(self.submitted_at),
            smpp_date(done),
            self.outcome.stat(),
            snippet(self.data_coding, self.esm_class, &self.body),
        );
        text
    }

    /// The receipt `deliver_sm`: esm_class "MC delivery receipt" (0x04), text as above,
    /// `receipted_message_id` and `message_state` TLVs.
    pub(super) fn to_deliver_sm(&self, done: SystemTime) -> DeliverSm {
        let text = self.text(done);
        // Never longer than 255 bytes: the id is ≤ 16 hex digits and the snippet 20 chars.
        let short_message = OctetString::from_vec(text.into_bytes()).unwrap_or_default();
        let receipted_id = COctetString::from_string(format_message_id(self.message_id))
            .unwrap_or_else(|_| COctetString::empty());
        DeliverSm::builder()
            .source_addr_ton(self.handset_ton)
            .source_addr_npi(self.handset_npi)
            .source_addr(self.handset.clone())
            .dest_addr_ton(self.sender_ton)
            .dest_addr_npi(self.sender_npi)
            .destination_addr(self.sender.clone())
            // From the raw byte: rusmpp's EsmClass::default() is 0x08, not 0.
            .esm_class(EsmClass::from(ESM_CLASS_DELIVERY_RECEIPT))
            .data_coding(DataCoding::McSpecific)
            .short_message(short_message)
            .tlvs(vec![
                MessageDeliveryRequestTlvValue::ReceiptedMessageId(receipted_id),
                MessageDeliveryRequestTlvValue::MessageState(self.outcome.message_state()),
            ])
            .build()
    }
}

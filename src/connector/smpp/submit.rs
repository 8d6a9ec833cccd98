//! A [`Message`] as the `submit_sm` PDUs a carrier receives: addresses with
//! their TON/NPI, GSM 03.38 (`data_coding` 0) or UCS-2 (`data_coding` 8)
//! payloads from [`crate::text::split`], and for long messages either a
//! concatenation UDH (8-bit reference, `esm_class` UDHI 0x40) or the SAR TLVs.
//!
//! Every field the carrier sees is set explicitly (rusmpp's defaults are
//! SMPP 5.0's, e.g. `esm_class` 0x08), and every part asks for a delivery
//! receipt (`registered_delivery` 1) because the store matches receipts per
//! part. Every part carries the message's expiry as its `validity_period`,
//! so the carrier stops trying to deliver when Herald would have: an OTP or
//! alert that arrives after its validity only misleads.

use rusmpp::{
    pdus::SubmitSm,
    tlvs::MessageSubmissionRequestTlvValue,
    types::{COctetString, EmptyOrFullCOctetString, OctetString},
    values::{DataCoding, EsmClass, Npi, PriorityFlag, RegisteredDelivery, Ton},
};

use crate::config::SmppConfig;
use crate::config::SplitMode;
use crate::model::{Class, Message, Micros};
use crate::text::{self, Encoding, TextError};

/// esm_class: default message mode and type, no GSM features.
const ESM_DEFAULT: u8 = 0x00;
/// esm_class: UDH indicator (GSM feature bit 6).
pub const ESM_UDHI: u8 = 0x40;
/// registered_delivery: an SMSC receipt on final success or failure.
const RECEIPT_ON_FINAL: u8 = 0x01;

/// Why a message cannot be turned into PDUs for this carrier. Resending it
/// cannot help, so the connector reports it as permanent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrepareError {
    #[error("destination {0:?} is not a valid SMPP address (1 to 20 ASCII characters)")]
    Destination(String),
    #[error("sender {0:?} is not a valid SMPP address (1 to 20 ASCII characters)")]
    Source(String),
    #[error("body {0}")]
    Text(#[from] TextError),
}

/// Type of number and numbering plan of an address.
type Numbering = (Ton, Npi);

/// The destination as SMPP wants it: E.164 without '+', international/ISDN.
fn destination(to: &str) -> Result<(Numbering, COctetString<1, 21>), PrepareError> {
    let (numbering, digits) = match to.strip_prefix('+') {
        Some(digits) => ((Ton::International, Npi::Isdn), digits),
        None => ((Ton::Unknown, Npi::Isdn), to),
    };
    let bad = || PrepareError::Destination(to.to_string());
    if digits.is_empty() || digits.len() > 20 || !digits.is_ascii() {
        return Err(bad());
    }
    let addr = COctetString::from_string(digits.to_string()).map_err(|_| bad())?;
    Ok((numbering, addr))
}

/// The sender: `+digits` is international, other digits are a short code or
/// national number, anything else is an alphanumeric sender id. The config
/// may force TON/NPI for carriers with their own conventions.
fn source(from: &str, s: &SmppConfig) -> Result<(Numbering, COctetString<1, 21>), PrepareError> {
    let (numbering, addr) = if let Some(digits) = from
        .strip_prefix('+')
        .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
    {
        ((Ton::International, Npi::Isdn), digits)
    } else if from.is_empty() {
        ((Ton::Unknown, Npi::Unknown), from)
    } else if from.bytes().all(|b| b.is_ascii_digit()) {
        ((Ton::Unknown, Npi::Isdn), from)
    } else {
        ((Ton::Alphanumeric, Npi::Unknown), from)
    };
    let bad = || PrepareError::Source(from.to_string());
    if addr.len() > 20 || !addr.is_ascii() {
        return Err(bad());
    }
    let ton = s.source_ton.map_or(numbering.0, Ton::from);
    let npi = s.source_npi.map_or(numbering.1, Npi::from);
    let addr = COctetString::from_string(addr.to_string()).map_err(|_| bad())?;
    Ok(((ton, npi), addr))
}

/// `at` in SMPP 3.4 absolute time format (§7.1.1), `YYMMDDhhmmsstnnp`, in
/// UTC (`nn` = 00 quarter hours, `p` = `+`). Absolute rather than relative
/// because the PDUs are built before the submit waits for a window slot: a
/// relative period would grow stale while it waits, an absolute time stays
/// the message's own expiry. Tenths are truncated so the carrier never keeps
/// a message past `at`. A time SMPP cannot express (before 2000 or after
/// 2099) leaves the field empty: the carrier's default validity.
pub fn smpp_absolute_time(at: Micros) -> EmptyOrFullCOctetString<17> {
    let Ok(ts) = jiff::Timestamp::from_microsecond(at) else {
        return EmptyOrFullCOctetString::empty();
    };
    let utc = ts.to_zoned_datetime(jiff::tz::TimeZone::UTC);
    if !(2000..=2099).contains(&utc.year()) {
        return EmptyOrFullCOctetString::empty();
    }
    let tenths = utc.subsec_nanosecond() / 100_000_000;
    let text = format!("{}{tenths}00+\0", utc.strftime("%y%m%d%H%M%S"));
    EmptyOrFullCOctetString::from_vec(text.into_bytes())
        .unwrap_or_else(|_| EmptyOrFullCOctetString::empty())
}

/// The concatenation user data header: IEI 0x00 (8-bit reference), length 3.
pub fn concat_udh(reference: u8, total: u8, seq: u8) -> [u8; 6] {
    [0x05, 0x00, 0x03, reference, total, seq]
}

/// The `submit_sm` PDUs of `msg`, one per segment, in order. `reference`
/// ties the parts of one message together (its low byte in a UDH).
///
/// # Errors
/// [`PrepareError`] when an address or the body cannot be sent at all.
pub fn submit_pdus(
    msg: &Message,
    s: &SmppConfig,
    reference: u16,
) -> Result<Vec<SubmitSm>, PrepareError> {
    let ((dest_ton, dest_npi), destination_addr) = destination(&msg.to)?;
    let from = msg.from.as_deref().unwrap_or(&s.source_addr);
    let ((source_ton, source_npi), source_addr) = source(from, s)?;
    let split = text::split(&msg.body)?;
    let data_coding = match split.encoding {
        Encoding::Gsm7 => DataCoding::McSpecific,
        Encoding::Ucs2 => DataCoding::Ucs2,
    };
    // GSM 03.40 priority: the handset shows it first; only emergencies earn it.
    let priority = PriorityFlag::from(u8::from(msg.class == Class::Emergency));
    let total = split.parts.len();
    // `split` caps parts at 255, so these conversions cannot fail.
    let total_u8 = u8::try_from(total).unwrap_or(u8::MAX);
    let base = SubmitSm::builder()
        .source_addr_ton(source_ton)
        .source_addr_npi(source_npi)
        .source_addr(source_addr)
        .dest_addr_ton(dest_ton)
        .dest_addr_npi(dest_npi)
        .destination_addr(destination_addr)
        .protocol_id(0)
        .priority_flag(priority)
        .registered_delivery(RegisteredDelivery::from(RECEIPT_ON_FINAL))
        .validity_period(smpp_absolute_time(msg.expires_at))
        .data_coding(data_coding);
    let mut pdus = Vec::with_capacity(total);
    for (i, payload) in split.parts.into_iter().enumerate() {
        let seq = u8::try_from(i + 1).unwrap_or(u8::MAX);
        let builder = base.clone();
        let pdu = if total == 1 {
            builder
                .esm_class(EsmClass::from(ESM_DEFAULT))
                .short_message(octets(payload))
                .build()
        } else {
            match s.split {
                SplitMode::Udh => {
                    let mut body = Vec::with_capacity(6 + payload.len());
                    body.extend_from_slice(&concat_udh(reference as u8, total_u8, seq));
                    body.extend_from_slice(&payload);
                    builder
                        .esm_class(EsmClass::from(ESM_UDHI))
                        .short_message(octets(body))
                        .build()
                }
                SplitMode::Sar => builder
                    .esm_class(EsmClass::from(ESM_DEFAULT))
                    .short_message(octets(payload))
                    .tlvs(vec![
                        MessageSubmissionRequestTlvValue::SarMsgRefNum(reference),
                        MessageSubmissionRequestTlvValue::SarTotalSegments(total_u8),
                        MessageSubmissionRequestTlvValue::SarSegmentSeqnum(seq),
                    ])
                    .build(),
            }
        };
        pdus.push(pdu);
    }
    Ok(pdus)
}

/// Wraps a payload; `split` keeps each part (plus a 6-octet UDH) far below
/// the 255-octet limit, so the fallback is unreachable in practice.
fn octets(bytes: Vec<u8>) -> OctetString<0, 255> {
    OctetString::from_vec(bytes).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn settings(split: &str) -> SmppConfig {
        let c = Config::from_toml(&format!(
            "[[connectors]]\nname = \"c\"\nkind = \"smpp\"\nhost = \"h\"\nsystem_id = \"x\"\nsplit = \"{split}\"\nsource_addr = \"Herald\"\n"
        ))
        .expect("valid");
        c.connectors[0]
            .as_smpp()
            .expect("an smpp connector")
            .clone()
    }

    fn msg(body: &str) -> Message {
        let mut m = crate::test_support::message("+447700900123");
        m.body = body.to_string();
        m
    }

    #[test]
    fn a_short_gsm_message_is_one_pdu_with_data_coding_0_and_a_receipt_request() {
        let pdus = submit_pdus(&msg("Hello @ £"), &settings("udh"), 7).expect("pdus");
        assert_eq!(pdus.len(), 1);
        let p = &pdus[0];
        assert_eq!(u8::from(p.data_coding), 0x00);
        assert_eq!(u8::from(p.esm_class), 0x00);
        assert_eq!(u8::from(p.registered_delivery), 0x01);
        assert_eq!(p.destination_addr.as_str(), "447700900123");
        assert_eq!(p.dest_addr_ton, Ton::International);
        assert_eq!(p.source_addr.as_str(), "Herald");
        assert_eq!(p.source_addr_ton, Ton::Alphanumeric);
        // GSM 03.38 unpacked: '@' is 0x00, '£' is 0x01.
        assert_eq!(p.short_message().as_ref(), b"Hello \x00 \x01");
    }

    #[test]
    fn a_ucs2_message_uses_data_coding_8_and_utf16be() {
        let pdus = submit_pdus(&msg("Привет"), &settings("udh"), 7).expect("pdus");
        assert_eq!(u8::from(pdus[0].data_coding), 0x08);
        assert_eq!(&pdus[0].short_message().as_ref()[..2], &[0x04, 0x1F]);
    }

    #[test]
    fn long_messages_carry_one_udh_reference_across_parts() {
        let body = "a".repeat(400);
        let pdus = submit_pdus(&msg(&body), &settings("udh"), 0x1234).expect("pdus");
        assert_eq!(pdus.len(), 3);
        for (i, p) in pdus.iter().enumerate() {
            assert_eq!(u8::from(p.esm_class), ESM_UDHI);
            let sm = p.short_message().as_ref();
            assert_eq!(&sm[..6], &concat_udh(0x34, 3, i as u8 + 1));
            assert!(p.tlvs().is_empty());
        }
        let text: usize = pdus.iter().map(|p| p.short_message().len() - 6).sum();
        assert_eq!(text, 400);
    }

    #[test]
    fn sar_mode_uses_tlvs_and_no_udh() {
        let body = "a".repeat(200);
        let pdus = submit_pdus(&msg(&body), &settings("sar"), 0x1234).expect("pdus");
        assert_eq!(pdus.len(), 2);
        for p in &pdus {
            assert_eq!(u8::from(p.esm_class), 0);
            assert_eq!(p.tlvs().len(), 3);
            assert_eq!(p.short_message().as_ref()[0], b'a');
        }
    }

    #[test]
    fn sender_forms_pick_their_numbering() {
        let s = settings("udh");
        let ((ton, npi), addr) = source("+447700900999", &s).expect("ok");
        assert_eq!(
            (ton, npi, addr.as_str()),
            (Ton::International, Npi::Isdn, "447700900999")
        );
        let ((ton, _), _) = source("12345", &s).expect("ok");
        assert_eq!(ton, Ton::Unknown);
        assert!(source("this sender is far too long", &s).is_err());
    }

    #[test]
    fn validity_period_is_the_expiry_in_smpp_absolute_time() {
        // 2026-12-05T08:10:30.250Z
        let at = jiff::Timestamp::from_second(1_796_458_230)
            .expect("ts")
            .as_microsecond()
            + 250_000;
        assert_eq!(smpp_absolute_time(at).as_str(), "261205081030200+");
        let mut m = msg("x");
        m.expires_at = at;
        for split in ["udh", "sar"] {
            let m = Message {
                body: "a".repeat(200),
                ..m.clone()
            };
            for p in submit_pdus(&m, &settings(split), 1).expect("pdus") {
                assert_eq!(p.validity_period.as_str(), "261205081030200+");
            }
        }
        let one = submit_pdus(&m, &settings("udh"), 1).expect("pdus");
        assert_eq!(one[0].validity_period.as_str(), "261205081030200+");
        // Outside SMPP's two-digit years: the carrier's default.
        assert!(smpp_absolute_time(0).is_empty());
    }

    #[test]
    fn only_emergencies_are_flagged_priority() {
        let mut m = msg("x");
        m.class = Class::Emergency;
        let pdus = submit_pdus(&m, &settings("udh"), 1).expect("pdus");
        assert_eq!(u8::from(pdus[0].priority_flag), 1);
    }
}

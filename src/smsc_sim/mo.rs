//! Mobile-originated messages: text in, `deliver_sm` (esm_class 0) out.
//!
//! Text goes out as GSM 7-bit (unpacked, data_coding 0) when the default alphabet can
//! carry it, else as UCS-2 (data_coding 8), both via rusmpp-extra's encoders. Anything
//! longer than a `short_message` travels in `message_payload`, as SMPP allows for
//! `deliver_sm`.

use rusmpp::{
    extra::encoding::{gsm7bit::Gsm7BitUnpacked, ucs2::Ucs2},
    pdus::DeliverSm,
    tlvs::MessageDeliveryRequestTlvValue,
    types::{AnyOctetString, COctetString, OctetString},
    values::{DataCoding, EsmClass, MessagePayload, Npi, Ton},
};

use super::SimError;

/// Longest body sent in `short_message`; longer ones go in `message_payload`.
const MAX_SHORT_MESSAGE: usize = 254;
/// `message_payload` is a TLV, whose length field is 16 bits.
const MAX_PAYLOAD: usize = u16::MAX as usize;

fn address(addr: &str) -> Result<COctetString<1, 21>, SimError> {
    if addr.is_empty() {
        return Err(SimError::InvalidAddress(addr.to_owned()));
    }
    COctetString::from_string(addr.to_owned())
        .map_err(|_| SimError::InvalidAddress(addr.to_owned()))
}

/// Encodes `text`, preferring GSM 7-bit.
fn encode(text: &str) -> Result<(Vec<u8>, DataCoding), SimError> {
    if let Ok(septets) = Gsm7BitUnpacked::new().encode_to_vec(text) {
        return Ok((septets, DataCoding::McSpecific));
    }
    Ucs2::new()
        .encode_to_vec(text)
        .map(|units| (units, DataCoding::Ucs2))
        .map_err(|error| SimError::Unencodable(error.to_string()))
}

/// Builds the MO `deliver_sm` from `from` (the handset) to `to` (the service number).
pub(super) fn deliver_sm(from: &str, to: &str, text: &str) -> Result<DeliverSm, SimError> {
    let source = address(from)?;
    let destination = address(to)?;
    let (body, data_coding) = encode(text)?;
    let builder = DeliverSm::builder()
        .source_addr_ton(Ton::International)
        .source_addr_npi(Npi::Isdn)
        .source_addr(source)
        .dest_addr_ton(Ton::Unknown)
        .dest_addr_npi(Npi::Unknown)
        .destination_addr(destination)
        // From the raw byte: rusmpp's EsmClass::default() is 0x08, not 0.
        .esm_class(EsmClass::from(0u8))
        .data_coding(data_coding);
    let pdu = if body.len() <= MAX_SHORT_MESSAGE {
        let short_message = OctetString::from_vec(body)
            .map_err(|error| SimError::Unencodable(error.to_string()))?;
        builder.short_message(short_message).build()
    } else if body.len() <= MAX_PAYLOAD {
        builder
            .short_message(OctetString::empty())
            .push_tlv(MessageDeliveryRequestTlvValue::MessagePayload(
                MessagePayload::new(AnyOctetString::from_vec(body)),
            ))
            .build()
    } else {
        return Err(SimError::Unencodable(format!(
            "{} bytes encoded, at most {MAX_PAYLOAD} fit",
            body.len()
        )));
    };
    Ok(pdu)
}

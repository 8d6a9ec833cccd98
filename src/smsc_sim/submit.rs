//! What accepting a `submit_sm` produces: a message id, counters, a log entry and, if
//! asked for, a receipt to schedule. Bind state and throttling are checked by the session
//! before it gets here.

use std::{
    sync::{
        Arc, LazyLock,
        atomic::{AtomicU64, Ordering},
    },
    time::SystemTime,
};

use rusmpp::{pdus::SubmitSm, tlvs::TlvValue, types::COctetString};
use tokio_util::bytes::Bytes;

use super::{
    receipt::{Outcome, Receipt, format_message_id},
    server::Shared,
    stats::{SessionCounters, SubmittedMessage, add, bump},
};

/// The session a `submit_sm` arrived on.
pub(super) struct Origin<'a> {
    pub session_id: u64,
    pub system_id: Arc<str>,
    pub counters: &'a SessionCounters,
}

/// Outcome of [`accept`].
pub(super) struct Accepted {
    /// For `submit_sm_resp`.
    pub message_id: COctetString<1, 65>,
    /// To be scheduled, if `registered_delivery` asks for one.
    pub receipt: Option<Receipt>,
}

/// Accepts `submit`: assigns its id, counts it, records it and prepares its receipt.
pub(super) fn accept(shared: &Shared, origin: Origin<'_>, submit: SubmitSm) -> Accepted {
    let message_id = next_message_id();
    let esm_class = u8::from(submit.esm_class);
    let registered_delivery = u8::from(submit.registered_delivery);
    let short_message: Bytes = submit.short_message().clone().into();
    let (mut payload, mut sar_ref, mut sar_total, mut sar_seq) = (None, None, None, None);
    for tlv in submit.tlvs() {
        match tlv.value() {
            Some(TlvValue::MessagePayload(p)) => payload = Some(p.value.clone().into_bytes()),
            Some(TlvValue::SarMsgRefNum(n)) => sar_ref = Some(*n),
            Some(TlvValue::SarTotalSegments(n)) => sar_total = Some(*n),
            Some(TlvValue::SarSegmentSeqnum(n)) => sar_seq = Some(*n),
            _ => {}
        }
    }
    let bytes = (short_message.len() + payload.as_ref().map_or(0, Bytes::len)) as u64;
    let is_part =
        sar_total.is_some_and(|total| total > 1) || has_concat_udh(esm_class, &short_message);

    bump(&shared.counters.submits);
    bump(&origin.counters.submits);
    add(&shared.counters.bytes, bytes);
    add(&origin.counters.bytes, bytes);
    if is_part {
        bump(&shared.counters.parts);
        bump(&origin.counters.parts);
    }
    let now = SystemTime::now();
    if shared.recorder.enabled() {
        shared.recorder.push(SubmittedMessage {
            message_id: format_message_id(message_id),
            session_id: origin.session_id,
            system_id: origin.system_id.to_string(),
            source_addr: submit.source_addr.as_str().to_owned(),
            destination_addr: submit.destination_addr.as_str().to_owned(),
            data_coding: u8::from(submit.data_coding),
            esm_class,
            registered_delivery,
            short_message: short_message.to_vec(),
            message_payload: payload.as_ref().map(|p| p.to_vec()),
            sar_msg_ref_num: sar_ref,
            sar_total_segments: sar_total,
            sar_segment_seqnum: sar_seq,
            validity_period: submit.validity_period.as_str().to_owned(),
            received_at: now,
        });
    }
    let outcome = Outcome::for_message(message_id, shared.config.fail_rate);
    let receipt = if outcome.requested_by(registered_delivery) {
        let body = if short_message.is_empty() {
            payload.unwrap_or_default()
        } else {
            short_message
        };
        Some(Receipt {
            message_id,
            origin: origin.session_id,
            system_id: origin.system_id,
            handset: submit.destination_addr,
            handset_ton: submit.dest_addr_ton,
            handset_npi: submit.dest_addr_npi,
            sender: submit.source_addr,
            sender_ton: submit.source_addr_ton,
            sender_npi: submit.source_addr_npi,
            submitted_at: now,
            outcome,
            data_coding: u8::from(submit.data_coding),
            esm_class,
            body,
        })
    } else {
        None
    };
    Accepted {
        message_id: message_id_octets(message_id),
        receipt,
    }
}

/// Message ids are unique per process: a counter seeded from the clock (seconds << 20,
/// room for a million ids a second), so a restarted simulator does not reissue the ids of
/// its previous run to a gateway that still remembers them.
static NEXT_MESSAGE_ID: LazyLock<AtomicU64> = LazyLock::new(|| {
    let seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(1, |since| since.as_secs() << 20);
    AtomicU64::new(seed.max(1))
});

fn next_message_id() -> u64 {
    NEXT_MESSAGE_ID.fetch_add(1, Ordering::Relaxed)
}

/// The message id as a `COctetString`, built with a single allocation.
fn message_id_octets(id: u64) -> COctetString<1, 65> {
    let mut buf = [0u8; 17];
    let hex = format_hex(id, &mut buf);
    COctetString::from_bytes(Bytes::copy_from_slice(hex)).unwrap_or_else(|_| COctetString::empty())
}

/// Writes `id` as lowercase hex plus a NUL into `buf`; returns the used tail.
pub(super) fn format_hex(mut id: u64, buf: &mut [u8; 17]) -> &[u8] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut start = 16;
    buf[16] = 0;
    loop {
        start -= 1;
        buf[start] = DIGITS[(id & 0xf) as usize];
        id >>= 4;
        if id == 0 {
            break;
        }
    }
    &buf[start..]
}

/// Whether a `short_message` with UDHI set carries a concatenation element (IEI 0 or 8).
pub(super) fn has_concat_udh(esm_class: u8, short_message: &[u8]) -> bool {
    if esm_class & 0x40 == 0 {
        return false;
    }
    let Some((&udhl, rest)) = short_message.split_first() else {
        return false;
    };
    let mut ies = rest.get(..usize::from(udhl)).unwrap_or_default();
    while let [iei, len, tail @ ..] = ies {
        if *iei == 0x00 || *iei == 0x08 {
            return true;
        }
        ies = tail.get(usize::from(*len)..).unwrap_or_default();
    }
    false
}

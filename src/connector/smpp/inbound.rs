//! Inbound (mobile-originated) messages: decoding a `deliver_sm` body by its
//! `data_coding`, and joining the parts of a concatenated message (UDH with
//! an 8- or 16-bit reference, or SAR TLVs) back into one text.
//!
//! Parts may arrive on any bind of the connector and in any order, so the
//! [`Reassembler`] is shared by the connector's binds. It is bounded: at most
//! [`MAX_PENDING`] unfinished messages, each kept at most [`PART_TIMEOUT`];
//! whatever is evicted is still delivered, with the missing parts left out,
//! rather than dropped silently.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use rusmpp::{
    extra::encoding::gsm7bit::Gsm7BitUnpacked, pdus::DeliverSm, tlvs::TlvValue, values::Ton,
};

/// Unfinished concatenated messages kept at once.
pub const MAX_PENDING: usize = 1024;
/// How long the first part of a concatenated message waits for the rest.
pub const PART_TIMEOUT: Duration = Duration::from_secs(60);

/// esm_class UDH indicator.
const ESM_UDHI: u8 = 0x40;
/// GSM escape septet.
const GSM_ESCAPE: u8 = 0x1B;

/// Where one part belongs in a concatenated message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Concat {
    pub reference: u16,
    pub total: u8,
    /// 1-based.
    pub seq: u8,
}

/// One inbound `deliver_sm`, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoPart {
    /// The handset, `+` and digits when the SMSC says it is international.
    pub from: String,
    /// The number or short code it was sent to.
    pub to: String,
    pub text: String,
    /// Set when this is one part of a longer message.
    pub concat: Option<Concat>,
}

/// Decodes an inbound `deliver_sm`. `payload` is its `message_payload` TLV,
/// used when `short_message` is empty.
pub fn part(pdu: &DeliverSm, payload: Option<&[u8]>) -> MoPart {
    let short = pdu.short_message().as_ref();
    let mut body = if short.is_empty() {
        payload.unwrap_or_default()
    } else {
        short
    };
    let mut concat = None;
    if u8::from(pdu.esm_class) & ESM_UDHI != 0
        && let Some((&udhl, rest)) = body.split_first()
    {
        let udh = rest.get(..usize::from(udhl)).unwrap_or(rest);
        concat = udh_concat(udh);
        body = rest.get(usize::from(udhl)..).unwrap_or_default();
    }
    if concat.is_none() {
        concat = sar_concat(pdu);
    }
    let from = address(pdu.source_addr.as_str(), pdu.source_addr_ton);
    MoPart {
        from,
        to: pdu.destination_addr.as_str().to_string(),
        text: decode(u8::from(pdu.data_coding), body),
        concat: concat.filter(|c| c.total > 1 && (1..=c.total).contains(&c.seq)),
    }
}

/// `+digits` for international numbers, the address as sent otherwise.
fn address(addr: &str, ton: Ton) -> String {
    if ton == Ton::International
        && !addr.starts_with('+')
        && !addr.is_empty()
        && addr.bytes().all(|b| b.is_ascii_digit())
    {
        format!("+{addr}")
    } else {
        addr.to_string()
    }
}

/// The concatenation element of a UDH: IEI 0x00 (8-bit ref) or 0x08 (16-bit).
fn udh_concat(mut ies: &[u8]) -> Option<Concat> {
    while let [iei, len, rest @ ..] = ies {
        let data = rest.get(..usize::from(*len))?;
        match (iei, data) {
            (0x00, [reference, total, seq]) => {
                return Some(Concat {
                    reference: u16::from(*reference),
                    total: *total,
                    seq: *seq,
                });
            }
            (0x08, [hi, lo, total, seq]) => {
                return Some(Concat {
                    reference: u16::from_be_bytes([*hi, *lo]),
                    total: *total,
                    seq: *seq,
                });
            }
            _ => {}
        }
        ies = &rest[usize::from(*len)..];
    }
    None
}

fn sar_concat(pdu: &DeliverSm) -> Option<Concat> {
    let (mut reference, mut total, mut seq) = (None, None, None);
    for tlv in pdu.tlvs() {
        match tlv.value() {
            Some(TlvValue::SarMsgRefNum(n)) => reference = Some(*n),
            Some(TlvValue::SarTotalSegments(n)) => total = Some(*n),
            Some(TlvValue::SarSegmentSeqnum(n)) => seq = Some(*n),
            _ => {}
        }
    }
    Some(Concat {
        reference: reference?,
        total: total?,
        seq: seq?,
    })
}

/// The alphabet a `data_coding` value selects (SMPP 3.4 §5.2.19 for 0x00–0x0F,
/// GSM 03.38 data coding groups above).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Alphabet {
    Gsm,
    Ascii,
    Latin1,
    Ucs2,
}

fn alphabet(dcs: u8) -> Alphabet {
    match dcs {
        0x00 => Alphabet::Gsm,
        0x01 => Alphabet::Ascii,
        0x08 => Alphabet::Ucs2,
        0x02..=0x0F => Alphabet::Latin1,
        // General data coding: bits 3–2 select the alphabet.
        0x10..=0x3F => match (dcs >> 2) & 0x03 {
            0 => Alphabet::Gsm,
            2 => Alphabet::Ucs2,
            _ => Alphabet::Latin1,
        },
        0xE0..=0xEF => Alphabet::Ucs2,
        0xF0..=0xFF if dcs & 0x04 != 0 => Alphabet::Latin1,
        _ => Alphabet::Gsm,
    }
}

/// Decodes a body; undecodable units become U+FFFD, never an error (an
/// inbound message is always worth keeping).
pub fn decode(dcs: u8, body: &[u8]) -> String {
    match alphabet(dcs) {
        Alphabet::Gsm => decode_gsm(body),
        Alphabet::Ascii => body
            .iter()
            .map(|&b| {
                if b.is_ascii() {
                    char::from(b)
                } else {
                    '\u{FFFD}'
                }
            })
            .collect(),
        Alphabet::Latin1 => body.iter().map(|&b| char::from(b)).collect(),
        Alphabet::Ucs2 => {
            let units = body
                .chunks_exact(2)
                .map(|pair| u16::from_be_bytes([pair[0], pair[1]]));
            char::decode_utf16(units)
                .map(|c| c.unwrap_or('\u{FFFD}'))
                .collect()
        }
    }
}

/// GSM 03.38 unpacked septets (one per octet, escapes included) to text.
fn decode_gsm(septets: &[u8]) -> String {
    let table = &*GSM_DECODE;
    let mut out = String::with_capacity(septets.len());
    let mut iter = septets.iter();
    while let Some(&s) = iter.next() {
        if s == GSM_ESCAPE {
            match iter.next() {
                Some(&e) => out.push(
                    table
                        .extended
                        .get(usize::from(e))
                        .copied()
                        .flatten()
                        .unwrap_or('\u{FFFD}'),
                ),
                None => break,
            }
        } else {
            out.push(
                table
                    .basic
                    .get(usize::from(s))
                    .copied()
                    .flatten()
                    .unwrap_or('\u{FFFD}'),
            );
        }
    }
    out
}

/// GSM septet → character tables, derived once from rusmpp's encoder so the
/// alphabet is defined in one place (as `crate::text` does for encoding).
struct GsmDecode {
    basic: [Option<char>; 128],
    extended: [Option<char>; 128],
}

static GSM_DECODE: LazyLock<GsmDecode> = LazyLock::new(|| {
    let codec = Gsm7BitUnpacked::new();
    let mut table = GsmDecode {
        basic: [None; 128],
        extended: [None; 128],
    };
    let mut utf8 = [0; 4];
    for ch in (0..=0xFFFF).filter_map(char::from_u32) {
        let Ok(septets) = codec.encode_to_vec(ch.encode_utf8(&mut utf8)) else {
            continue;
        };
        let slot = match septets.as_slice() {
            [s] => table.basic.get_mut(usize::from(*s)),
            [GSM_ESCAPE, e] => table.extended.get_mut(usize::from(*e)),
            _ => None,
        };
        // First come, first kept: the encoder may accept look-alikes.
        if let Some(slot) = slot
            && slot.is_none()
        {
            *slot = Some(ch);
        }
    }
    table
});

/// A joined inbound message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    pub from: String,
    pub to: String,
    pub text: String,
    /// False when parts were missing when it was given up on.
    pub complete: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    from: String,
    to: String,
    reference: u16,
    total: u8,
}

#[derive(Debug)]
struct Pending {
    parts: Vec<Option<String>>,
    received: usize,
    first_seen: Instant,
}

/// What adding one part produced.
#[derive(Debug, Default)]
pub struct Added {
    /// The message this part completed (a single-part message at once).
    pub done: Option<Joined>,
    /// Unfinished messages given up on to make room or for their age.
    pub evicted: Vec<Joined>,
}

impl Added {
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.done.is_none() && self.evicted.is_empty()
    }
}

/// Joins concatenated inbound parts; see the module docs.
#[derive(Debug, Default)]
pub struct Reassembler {
    pending: HashMap<Key, Pending>,
}

impl Reassembler {
    /// Adds one part. Returns the message when it is whole (a single-part
    /// message at once), plus anything evicted to make room or expired.
    pub fn add(&mut self, part: MoPart, now: Instant) -> Added {
        let Some(concat) = part.concat else {
            return Added {
                done: Some(Joined {
                    from: part.from,
                    to: part.to,
                    text: part.text,
                    complete: true,
                }),
                evicted: Vec::new(),
            };
        };
        let mut out = Added {
            done: None,
            evicted: self.expire(now),
        };
        let key = Key {
            from: part.from,
            to: part.to,
            reference: concat.reference,
            total: concat.total,
        };
        if !self.pending.contains_key(&key) && self.pending.len() >= MAX_PENDING {
            out.evicted.extend(self.evict_oldest());
        }
        let entry = self.pending.entry(key.clone()).or_insert_with(|| Pending {
            parts: vec![None; usize::from(concat.total)],
            received: 0,
            first_seen: now,
        });
        if let Some(slot) = entry.parts.get_mut(usize::from(concat.seq) - 1) {
            if slot.is_none() {
                entry.received += 1;
            }
            *slot = Some(part.text);
        }
        if entry.received == entry.parts.len()
            && let Some(done) = self.pending.remove(&key)
        {
            out.done = Some(join(key, done));
        }
        out
    }

    /// Gives up on messages whose first part is older than [`PART_TIMEOUT`].
    pub fn expire(&mut self, now: Instant) -> Vec<Joined> {
        let stale: Vec<Key> = self
            .pending
            .iter()
            .filter(|(_, p)| now.duration_since(p.first_seen) >= PART_TIMEOUT)
            .map(|(k, _)| k.clone())
            .collect();
        stale
            .into_iter()
            .filter_map(|k| self.pending.remove(&k).map(|p| join(k, p)))
            .collect()
    }

    fn evict_oldest(&mut self) -> Option<Joined> {
        let key = self
            .pending
            .iter()
            .min_by_key(|(_, p)| p.first_seen)
            .map(|(k, _)| k.clone())?;
        self.pending.remove(&key).map(|p| join(key, p))
    }

    /// Unfinished messages held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.pending.len()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

fn join(key: Key, pending: Pending) -> Joined {
    let complete = pending.received == pending.parts.len();
    Joined {
        from: key.from,
        to: key.to,
        text: pending.parts.into_iter().flatten().collect(),
        complete,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(text: &str, reference: u16, total: u8, seq: u8) -> MoPart {
        MoPart {
            from: "+447700900123".into(),
            to: "12345".into(),
            text: text.into(),
            concat: Some(Concat {
                reference,
                total,
                seq,
            }),
        }
    }

    #[test]
    fn gsm_septets_decode_including_extension_characters() {
        assert_eq!(decode(0, b"Hi \x00\x01 \x1b\x65"), "Hi @£ €");
    }

    #[test]
    fn ucs2_decodes_surrogate_pairs() {
        assert_eq!(decode(8, &[0x04, 0x1F, 0xD8, 0x3D, 0xDE, 0x00]), "П😀");
    }

    #[test]
    fn latin1_and_data_coding_groups_decode() {
        assert_eq!(decode(3, &[0xE9]), "é");
        assert_eq!(decode(0x18, &[0x00, 0x41]), "A");
        assert_eq!(decode(0xF0, b"\x00"), "@");
    }

    #[test]
    fn parts_in_any_order_join_into_one_message() {
        let mut r = Reassembler::default();
        let now = Instant::now();
        assert!(r.add(part("world", 9, 2, 2), now).is_empty());
        let out = r.add(part("hello ", 9, 2, 1), now);
        assert!(out.evicted.is_empty());
        let done = out.done.expect("joined");
        assert_eq!(done.text, "hello world");
        assert!(done.complete);
        assert!(r.is_empty());
    }

    #[test]
    fn a_repeated_part_counts_once() {
        let mut r = Reassembler::default();
        let now = Instant::now();
        assert!(r.add(part("a", 1, 2, 1), now).is_empty());
        assert!(r.add(part("a", 1, 2, 1), now).is_empty());
        let done = r.add(part("b", 1, 2, 2), now).done.expect("joined");
        assert_eq!(done.text, "ab");
    }

    #[test]
    fn unfinished_messages_are_given_up_after_the_timeout_with_what_arrived() {
        let mut r = Reassembler::default();
        let now = Instant::now();
        assert!(r.add(part("first ", 3, 3, 1), now).is_empty());
        assert!(r.expire(now + Duration::from_secs(1)).is_empty());
        let out = r.expire(now + PART_TIMEOUT);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].text, "first ");
        assert!(!out[0].complete);
    }

    #[test]
    fn the_pending_set_is_bounded() {
        let mut r = Reassembler::default();
        let now = Instant::now();
        for i in 0..MAX_PENDING as u16 {
            assert!(r.add(part("x", i, 2, 1), now).is_empty());
        }
        let out = r.add(part("y", 60_000, 2, 1), now);
        assert!(out.done.is_none());
        assert_eq!(out.evicted.len(), 1);
        assert!(!out.evicted[0].complete);
        assert_eq!(r.len(), MAX_PENDING);
    }

    #[test]
    fn udh_concat_elements_are_found_among_others() {
        let udh = [0x0A, 0x01, 0x00, 0x08, 0x04, 0x12, 0x34, 0x03, 0x02];
        assert_eq!(
            udh_concat(&udh),
            Some(Concat {
                reference: 0x1234,
                total: 3,
                seq: 2
            })
        );
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;
    use rusmpp::pdus::DeliverSm;
    use rusmpp::types::{COctetString, OctetString};
    use rusmpp::values::EsmClass;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Whatever bytes and header flags an SMSC sends, a part is read.
        #[test]
        fn any_deliver_sm_body_is_read(body in proptest::collection::vec(any::<u8>(), 0..255), esm in any::<u8>(), dcs in any::<u8>()) {
            let Ok(short) = OctetString::from_vec(body) else { return Ok(()); };
            let pdu = DeliverSm::builder()
                .source_addr(COctetString::from_string("447700900123".into()).expect("addr"))
                .destination_addr(COctetString::from_string("12345".into()).expect("addr"))
                .esm_class(EsmClass::from(esm))
                .data_coding(dcs.into())
                .short_message(short)
                .build();
            let _ = part(&pdu, None);
        }

        /// Any text, split as Herald sends it, decodes back to itself.
        #[test]
        fn split_parts_decode_back(body in any::<String>().prop_filter("at most 10 parts", |b| crate::text::analyse(b).segments <= 10)) {
            let split = crate::text::split(&body).expect("split");
            let dcs = match split.encoding {
                crate::text::Encoding::Gsm7 => 0,
                crate::text::Encoding::Ucs2 => 8,
            };
            let joined: String = split.parts.iter().map(|p| decode(dcs, p)).collect();
            prop_assert_eq!(joined, body);
        }

        /// Parts in any order, each at most once, join into the message.
        #[test]
        fn parts_in_any_order_join(texts in proptest::collection::vec("[a-z]{0,20}", 1..8), seed in any::<u64>(), reference in any::<u16>()) {
            let total = texts.len() as u8;
            let mut order: Vec<usize> = (0..texts.len()).collect();
            // A seeded shuffle: the order is part of the case.
            let mut x = seed | 1;
            for i in (1..order.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                order.swap(i, (x % (i as u64 + 1)) as usize);
            }
            let mut r = Reassembler::default();
            let now = Instant::now();
            let mut done = None;
            for i in order {
                let added = r.add(MoPart {
                    from: "+447700900123".into(),
                    to: "12345".into(),
                    text: texts[i].clone(),
                    concat: Some(Concat { reference, total, seq: i as u8 + 1 }),
                }, now);
                if let Some(j) = added.done { done = Some(j); }
            }
            let joined = done.expect("joined");
            prop_assert!(joined.complete);
            prop_assert_eq!(joined.text, texts.concat());
        }
    }
}

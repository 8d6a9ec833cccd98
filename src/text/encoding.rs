//! Choosing GSM 7-bit or UCS-2 for a message body, counting its SMS segments and cutting it
//! into per-segment payloads.
//!
//! The GSM 03.38 alphabet comes from rusmpp-extra, the codec the carrier connectors use, so a
//! body we call GSM is one they can encode. That table lacks 03.38's form feed (escape + 0x0A),
//! so a body containing one goes out as UCS-2. Segment sizes assume the usual concatenation header
//! (6-octet UDH with an 8-bit reference), which leaves 153 septets or 67 UTF-16 units per part.

use std::sync::LazyLock;

use rusmpp::extra::concatenation::MAX_PARTS;
use rusmpp::extra::encoding::gsm7bit::Gsm7BitUnpacked;

/// GSM escape septet: it and the following septet form one extension-table character.
const GSM_ESCAPE: u8 = 0x1B;
/// A body of at most this many septets travels as a single SMS.
const GSM_SINGLE: usize = 160;
/// Septets per segment of a concatenated message.
const GSM_PART: usize = 153;
/// A body of at most this many UTF-16 units travels as a single SMS.
const UCS2_SINGLE: usize = 70;
/// UTF-16 units per segment of a concatenated message.
const UCS2_PART: usize = 67;

/// How a body is encoded on the air interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// GSM 03.38 default alphabet plus its extension table, 7 bits per septet.
    Gsm7,
    /// UTF-16 big-endian; characters outside the BMP take a surrogate pair.
    Ucs2,
}

impl Encoding {
    /// The name used in the API and in metrics labels; same as the serde form.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Gsm7 => "gsm7",
            Self::Ucs2 => "ucs2",
        }
    }

    /// Units that fit a lone SMS and units per part of a concatenated one.
    const fn capacity(self) -> (usize, usize) {
        match self {
            Self::Gsm7 => (GSM_SINGLE, GSM_PART),
            Self::Ucs2 => (UCS2_SINGLE, UCS2_PART),
        }
    }
}

/// What a body costs to send, without encoding it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodedText {
    /// The encoding [`split`] will use.
    pub encoding: Encoding,
    /// SMS segments the body occupies; always equals `split(body)?.parts.len()`.
    pub segments: u32,
    /// GSM septets (extension characters count 2) or UTF-16 code units (non-BMP count 2).
    pub units: u32,
}

/// A body cut into the payloads a connector puts in `short_message`, one per segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitText {
    /// How the payload bytes are encoded.
    pub encoding: Encoding,
    /// GSM: unpacked septets, one per byte, escapes included (rusmpp's `Gsm7BitUnpacked`).
    /// UCS-2: UTF-16BE. A single-segment body has exactly one part (possibly empty).
    pub parts: Vec<Vec<u8>>,
}

/// Why a body cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// The concatenation header numbers parts with one octet.
    #[error("is too long: it needs {segments} SMS segments and at most {max} can be joined", max = MAX_PARTS)]
    TooManySegments {
        /// Segments the body would need.
        segments: u32,
    },
}

/// Encoding, segment count and unit count of `body`.
///
/// One pass over the characters with a table lookup each, and no allocation; a body that
/// turns out not to be GSM is counted again as UTF-16.
pub fn analyse(body: &str) -> EncodedText {
    let gsm = &*GSM_WIDTHS;
    let mut count = Counter::new(Encoding::Gsm7);
    for ch in body.chars() {
        match gsm.width(ch) {
            Some(width) => count.add(width),
            None => return count_ucs2(body),
        }
    }
    count.finish()
}

/// Cuts `body` into per-segment payloads, never separating an escape pair or a surrogate pair.
pub fn split(body: &str) -> Result<SplitText, TextError> {
    let analysed = analyse(body);
    // Checked before encoding so an oversized body costs no more than its analysis.
    if analysed.segments as usize > MAX_PARTS {
        return Err(TextError::TooManySegments {
            segments: analysed.segments,
        });
    }
    // rusmpp decides GSM-ness independently of `analyse`; the tests hold the two to agreement.
    let (encoding, parts) = match Gsm7BitUnpacked::new().encode_to_vec(body) {
        Ok(septets) => {
            let parts = cut(&septets, Encoding::Gsm7, |septet| septet == GSM_ESCAPE);
            (
                Encoding::Gsm7,
                parts.into_iter().map(<[u8]>::to_vec).collect(),
            )
        }
        Err(_) => {
            let units: Vec<u16> = body.encode_utf16().collect();
            let parts = cut(&units, Encoding::Ucs2, is_high_surrogate);
            let bytes = |part: &[u16]| part.iter().flat_map(|unit| unit.to_be_bytes()).collect();
            (Encoding::Ucs2, parts.into_iter().map(bytes).collect())
        }
    };
    Ok(SplitText { encoding, parts })
}

/// `analyse` for a body already known not to be GSM.
fn count_ucs2(body: &str) -> EncodedText {
    let mut count = Counter::new(Encoding::Ucs2);
    for ch in body.chars() {
        count.add(ch.len_utf16() as u32);
    }
    count.finish()
}

/// Running totals for `analyse`, packing greedily exactly as [`cut`] does: a character that
/// does not fit in the current part starts the next one.
struct Counter {
    encoding: Encoding,
    part: usize,
    units: u32,
    parts: u32,
    used: usize,
}

impl Counter {
    const fn new(encoding: Encoding) -> Self {
        Self {
            encoding,
            part: encoding.capacity().1,
            units: 0,
            parts: 1,
            used: 0,
        }
    }

    fn add(&mut self, width: u32) {
        let width_units = width as usize;
        if self.used + width_units > self.part {
            self.parts = self.parts.saturating_add(1);
            self.used = 0;
        }
        self.used += width_units;
        // Saturates only for bodies past 4 GiB, far beyond any request limit.
        self.units = self.units.saturating_add(width);
    }

    fn finish(self) -> EncodedText {
        let (single, _) = self.encoding.capacity();
        let segments = if self.units as usize <= single {
            1
        } else {
            self.parts
        };
        EncodedText {
            encoding: self.encoding,
            segments,
            units: self.units,
        }
    }
}

/// Slices `units` into segment payloads: whole if it fits a lone SMS, otherwise full parts that
/// end one unit early rather than separate a unit for which `starts_pair` holds from its partner.
fn cut<T: Copy>(units: &[T], encoding: Encoding, starts_pair: impl Fn(T) -> bool) -> Vec<&[T]> {
    let (single, part) = encoding.capacity();
    if units.len() <= single {
        return vec![units];
    }
    let mut parts = Vec::with_capacity(units.len().div_ceil(part - 1));
    let mut rest = units;
    while !rest.is_empty() {
        let mut end = rest.len().min(part);
        if end < rest.len() && starts_pair(rest[end - 1]) {
            end -= 1;
        }
        let (head, tail) = rest.split_at(end);
        parts.push(head);
        rest = tail;
    }
    parts
}

/// A high surrogate is always the first unit of a pair, so a part may not end with one.
fn is_high_surrogate(unit: u16) -> bool {
    (0xD800..0xDC00).contains(&unit)
}

/// Septet widths by code point, derived once from rusmpp's codec so the GSM alphabet is defined
/// in exactly one place while `analyse` stays allocation-free.
static GSM_WIDTHS: LazyLock<GsmWidths> = LazyLock::new(GsmWidths::from_rusmpp);

/// Index = code point, value = septets (1 basic, 2 escape + extension, 0 not GSM). It ends at the
/// highest GSM character (U+20AC '€'), so it is about 8 KiB.
struct GsmWidths(Box<[u8]>);

impl GsmWidths {
    /// Asks the codec about every BMP character (GSM 03.38 has none outside it): about 65k tiny
    /// encodes, ~4 ms once per process.
    fn from_rusmpp() -> Self {
        let codec = Gsm7BitUnpacked::new();
        let mut widths = Vec::new();
        let mut utf8 = [0; 4];
        for ch in (0..=0xFFFF).filter_map(char::from_u32) {
            if let Ok(septets) = codec.encode_to_vec(ch.encode_utf8(&mut utf8)) {
                let index = ch as usize;
                if widths.len() <= index {
                    widths.resize(index + 1, 0);
                }
                widths[index] = septets.len() as u8;
            }
        }
        Self(widths.into_boxed_slice())
    }

    fn width(&self, ch: char) -> Option<u32> {
        match self.0.get(ch as usize) {
            Some(&width) if width > 0 => Some(u32::from(width)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gsm(text: &str, segments: u32, units: u32) {
        assert_eq!(
            analyse(text),
            EncodedText {
                encoding: Encoding::Gsm7,
                segments,
                units
            },
            "{text:?}"
        );
    }

    fn ucs2(text: &str, segments: u32, units: u32) {
        assert_eq!(
            analyse(text),
            EncodedText {
                encoding: Encoding::Ucs2,
                segments,
                units
            },
            "{text:?}"
        );
    }

    fn parts(text: &str) -> Vec<Vec<u8>> {
        split(text).expect("test bodies fit in 255 segments").parts
    }

    fn utf16_units(part: &[u8]) -> Vec<u16> {
        part.chunks_exact(2)
            .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
            .collect()
    }

    #[test]
    fn empty_body_is_one_empty_gsm_segment() {
        gsm("", 1, 0);
        assert_eq!(
            split(""),
            Ok(SplitText {
                encoding: Encoding::Gsm7,
                parts: vec![vec![]]
            })
        );
    }

    #[test]
    fn gsm_160_chars_fit_one_segment() {
        gsm(&"a".repeat(160), 1, 160);
        assert_eq!(parts(&"a".repeat(160)), vec![vec![0x61; 160]]);
    }

    #[test]
    fn gsm_161_chars_take_two_segments() {
        gsm(&"a".repeat(161), 2, 161);
        let lengths: Vec<_> = parts(&"a".repeat(161)).iter().map(Vec::len).collect();
        assert_eq!(lengths, [153, 8]);
    }

    #[test]
    fn gsm_306_chars_fill_exactly_two_segments() {
        gsm(&"a".repeat(306), 2, 306);
    }

    #[test]
    fn gsm_307_chars_take_three_segments() {
        gsm(&"a".repeat(307), 3, 307);
    }

    #[test]
    fn extension_characters_count_two_septets() {
        for ch in ['€', '[', ']', '{', '}', '~', '\\', '^', '|'] {
            gsm(&ch.to_string(), 1, 2);
        }
        assert_eq!(parts("€"), vec![vec![GSM_ESCAPE, 0x65]]);
    }

    #[test]
    fn form_feed_is_not_in_rusmpp_gsm_table_so_it_forces_ucs2() {
        // 03.38 lists form feed as extension 0x1B 0x0A, but rusmpp's codec cannot encode it, so
        // a body containing one must go out as UCS-2 for the connector to be able to send it.
        ucs2("page\u{c}break", 1, 10);
    }

    #[test]
    fn gsm_159_plain_and_a_euro_make_161_septets_in_two_segments() {
        gsm(&format!("{}€", "a".repeat(159)), 2, 161);
    }

    #[test]
    fn escape_pair_on_the_153_boundary_moves_to_the_next_segment() {
        let body = format!("{}€{}", "a".repeat(152), "b".repeat(20));
        gsm(&body, 2, 174);
        let parts = parts(&body);
        assert_eq!(parts[0].len(), 152);
        assert_eq!(parts[1][..2], [GSM_ESCAPE, 0x65]);
        assert_eq!(parts[1].len(), 22);
    }

    #[test]
    fn escape_pair_ending_exactly_at_153_stays_in_the_segment() {
        let body = format!("{}€{}", "a".repeat(151), "b".repeat(20));
        let parts = parts(&body);
        assert_eq!(parts[0].len(), 153);
        assert_eq!(parts[0][151..], [GSM_ESCAPE, 0x65]);
    }

    #[test]
    fn ucs2_70_units_fit_one_segment() {
        ucs2(&"я".repeat(70), 1, 70);
        assert_eq!(parts(&"я".repeat(70)).len(), 1);
    }

    #[test]
    fn ucs2_71_units_take_two_segments() {
        ucs2(&"я".repeat(71), 2, 71);
        let lengths: Vec<_> = parts(&"я".repeat(71)).iter().map(Vec::len).collect();
        assert_eq!(lengths, [134, 8]);
    }

    #[test]
    fn ucs2_134_units_fill_exactly_two_segments() {
        ucs2(&"я".repeat(134), 2, 134);
    }

    #[test]
    fn ucs2_135_units_take_three_segments() {
        ucs2(&"я".repeat(135), 3, 135);
    }

    #[test]
    fn thirty_five_emoji_are_70_units_in_one_segment() {
        ucs2(&"😀".repeat(35), 1, 70);
    }

    #[test]
    fn thirty_six_emoji_take_two_segments() {
        ucs2(&"😀".repeat(36), 2, 72);
    }

    #[test]
    fn surrogate_pair_straddling_67_moves_to_the_next_segment() {
        let body = format!("{}😀{}", "я".repeat(66), "я".repeat(10));
        ucs2(&body, 2, 78);
        let parts = parts(&body);
        assert_eq!(parts[0].len(), 132);
        assert_eq!(utf16_units(&parts[1])[..2], [0xD83D, 0xDE00]);
        assert_eq!(parts[1].len(), 24);
    }

    #[test]
    fn ucs2_parts_are_utf16_big_endian_and_reassemble_to_the_body() {
        let body = format!("Привет 👋 {}", "ж🙂".repeat(40));
        let units: Vec<u16> = parts(&body).iter().flat_map(|p| utf16_units(p)).collect();
        assert_eq!(
            String::from_utf16(&units).ok().as_deref(),
            Some(body.as_str())
        );
        assert_eq!(parts("я"), vec![vec![0x04, 0x4F]]);
    }

    #[test]
    fn accented_letters_in_the_gsm_table_stay_gsm() {
        gsm("héllo", 1, 5);
        gsm("Ç", 1, 1);
        gsm("ü", 1, 1);
    }

    #[test]
    fn accented_letters_outside_the_gsm_table_force_ucs2() {
        ucs2("ç", 1, 1);
        ucs2("û", 1, 1);
        ucs2("héllo û", 1, 7);
    }

    #[test]
    fn greek_capitals_at_and_pound_are_gsm() {
        gsm("ΔΩ@£", 1, 4);
        assert_eq!(parts("@£Δ"), vec![vec![0x00, 0x01, 0x10]]);
    }

    #[test]
    fn latin_lookalike_greek_capitals_force_ucs2() {
        // U+0391 GREEK CAPITAL ALPHA looks like 'A' but has no GSM code.
        ucs2("\u{391}", 1, 1);
    }

    #[test]
    fn nul_and_control_characters_force_ucs2_but_newlines_are_gsm() {
        ucs2("a\0b", 1, 3);
        ucs2("tab\there", 1, 8);
        gsm("line\r\nline", 1, 10);
    }

    #[test]
    fn more_than_255_segments_is_an_error() {
        let max = "a".repeat(255 * 153);
        gsm(&max, 255, 255 * 153);
        assert_eq!(parts(&max).len(), 255);
        let over = "a".repeat(255 * 153 + 1);
        assert_eq!(
            split(&over),
            Err(TextError::TooManySegments { segments: 256 })
        );
    }

    #[test]
    fn encoding_serialises_as_its_lowercase_name() {
        for encoding in [Encoding::Gsm7, Encoding::Ucs2] {
            let json = serde_json::to_string(&encoding).expect("serialise");
            assert_eq!(json, format!("\"{}\"", encoding.as_str()));
            assert_eq!(serde_json::from_str::<Encoding>(&json).ok(), Some(encoding));
        }
    }

    #[test]
    fn gsm_parts_are_exactly_rusmpps_unpacked_septets() {
        let body = format!("{}{{x}}€|", "Hello £ Δ ".repeat(30));
        let joined: Vec<u8> = parts(&body).concat();
        assert_eq!(
            Gsm7BitUnpacked::new().encode_to_vec(&body).ok(),
            Some(joined)
        );
    }

    /// Deterministic pseudo-random bodies over a mix of 1-septet, 2-septet, BMP and non-BMP
    /// characters, weighted so many stay GSM and lengths cross every segment boundary.
    fn generated_bodies() -> impl Iterator<Item = String> {
        const GSM_CHARS: &[char] = &['a', 'Z', '0', ' ', '@', '£', 'Δ', 'é', '\n'];
        const EXTENSION: &[char] = &['€', '[', '~', '|', '^'];
        const OTHER: &[char] = &['ç', 'я', '中', '😀', '👋'];
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move |bound: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % bound
        };
        (0..3000).map(move |i| {
            let len = next(480);
            let allow_other = i % 3 == 0;
            (0..len)
                .map(|_| match next(if allow_other { 20 } else { 16 }) {
                    0..=11 => GSM_CHARS[next(GSM_CHARS.len() as u64) as usize],
                    12..=15 => EXTENSION[next(EXTENSION.len() as u64) as usize],
                    _ => OTHER[next(OTHER.len() as u64) as usize],
                })
                .collect()
        })
    }

    #[test]
    fn analysed_segments_always_equal_split_parts() {
        let (mut seen, mut pairs_pushed_over) = ([0u32; 2], 0);
        for body in generated_bodies() {
            let analysed = analyse(&body);
            let split = split(&body).expect("generated bodies are short");
            assert_eq!(analysed.encoding, split.encoding, "{body:?}");
            assert_eq!(analysed.segments as usize, split.parts.len(), "{body:?}");
            seen[analysed.encoding as usize] += 1;
            let (_, part) = analysed.encoding.capacity();
            if analysed.segments as usize > (analysed.units as usize).div_ceil(part) {
                pairs_pushed_over += 1;
            }
        }
        assert!(
            seen.iter().all(|&n| n > 500),
            "both encodings exercised: {seen:?}"
        );
        assert!(
            pairs_pushed_over >= 10,
            "boundary pairs exercised: {pairs_pushed_over}"
        );
    }

    #[test]
    fn split_parts_respect_capacity_and_never_break_a_pair() {
        for body in generated_bodies() {
            let split = split(&body).expect("generated bodies are short");
            let (single, part) = split.encoding.capacity();
            let limit = if split.parts.len() == 1 { single } else { part };
            for payload in &split.parts {
                match split.encoding {
                    Encoding::Gsm7 => {
                        assert!(payload.len() <= limit);
                        assert_ne!(payload.last(), Some(&GSM_ESCAPE), "{body:?}");
                    }
                    Encoding::Ucs2 => {
                        let units = utf16_units(payload);
                        assert!(units.len() <= limit);
                        assert!(String::from_utf16(&units).is_ok(), "{body:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn gsm_table_holds_rusmpps_127_basic_and_9_extension_characters() {
        let count = |width| GSM_WIDTHS.0.iter().filter(|&&w| w == width).count();
        assert_eq!((count(1), count(2)), (127, 9));
        assert_eq!(GSM_WIDTHS.width('€'), Some(2));
        assert_eq!(GSM_WIDTHS.width('😀'), None);
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any text: analysis and splitting agree on encoding and parts,
        /// and no part is over a segment's size.
        #[test]
        fn any_text_splits_as_analysed(body in any::<String>()) {
            let analysed = analyse(&body);
            match split(&body) {
                Err(TextError::TooManySegments { segments }) => {
                    prop_assert_eq!(segments, analysed.segments);
                }
                Ok(parts) => {
                    prop_assert_eq!(parts.encoding, analysed.encoding);
                    prop_assert_eq!(parts.parts.len() as u32, analysed.segments.max(1));
                    for part in &parts.parts {
                        prop_assert!(part.len() <= 160);
                    }
                }
            }
        }

        /// GSM-heavy text (escapes included) stays GSM.
        #[test]
        fn gsm_text_is_gsm(body in "[a-zA-Z0-9 @£$¥èéùì\\n€\\[\\]{}~^|]{0,400}") {
            prop_assert_eq!(analyse(&body).encoding, Encoding::Gsm7);
        }
    }
}

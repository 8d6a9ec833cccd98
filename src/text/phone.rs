//! Recipient numbers: parsing caller input into normalised E.164 MSISDNs.
//!
//! Validation is phonenumber's (libphonenumber metadata). Its cost is dominated by the regex
//! cache phonenumber shares across the process: every pattern use locks one mutex and hashes the
//! pattern's text, so a valid number costs 10-30 µs and calls from all threads serialise on that
//! lock. Malformed input is turned away by cheap checks before phonenumber sees it.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::sync::Once;

use phonenumber::Type;
use phonenumber::metadata::{DATABASE, Metadata};

/// A country whose national number formats are accepted when no `+` is given.
pub type Region = phonenumber::country::Id;

/// Longest input looked at; phonenumber's parser is far costlier than this check.
const MAX_INPUT_LEN: usize = 32;
/// Above the ~5,700 patterns in phonenumber's metadata (validation touches under 2,000).
const REGEX_CACHE_CAPACITY: usize = 8192;

/// A valid phone number in E.164 form (`+447911123456`): what queues store and carriers get.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(into = "String", try_from = "String")]
pub struct Msisdn(String);

/// Why input is not an acceptable recipient. Messages follow the field name in API errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    /// Longer than any formatting of a real number; rejected unparsed.
    #[error("is too long: at most {MAX_INPUT_LEN} characters")]
    TooLong,
    /// Not strict E.164 where that is required, or normalises to fewer than 8 digits.
    #[error("must be an E.164 number: '+' followed by 8 to 15 digits")]
    NotE164,
    /// Unparseable, carries an extension, or is not in an assigned range.
    #[error("is not a valid phone number")]
    Invalid,
}

/// Parses a recipient and normalises it to E.164.
///
/// Without `default_region` only strict E.164 is accepted (`+`, a non-zero digit, 8 to 15
/// digits in all, nothing else); with one, national formats of that region are too
/// (`07911 123456` for GB). Either way the number must be valid per libphonenumber metadata:
/// an assigned range for its country, not merely the right length. Like libphonenumber, a
/// trunk prefix written after the country code is dropped (`+4407911…` becomes `+447911…`).
/// phonenumber quirk: in countries whose trunk prefix is 8 (Russia, Kazakhstan, Belarus,
/// Lithuania) it strips the 8 of toll-free `8xx` numbers too, so those are rejected.
pub fn parse_msisdn(input: &str, default_region: Option<Region>) -> Result<Msisdn, PhoneError> {
    if input.len() > MAX_INPUT_LEN {
        return Err(PhoneError::TooLong);
    }
    if default_region.is_none() && !is_e164(input) {
        return Err(PhoneError::NotE164);
    }
    size_regex_cache();
    let number = phonenumber::parse(default_region, input).map_err(|_| PhoneError::Invalid)?;
    if number.extension().is_some() || !number.is_valid() {
        return Err(PhoneError::Invalid);
    }
    // What phonenumber's E.164 formatter writes, without the regex work it does for other modes.
    let e164 = format!("+{}{}", number.code().value(), number.national());
    // A valid number can still be shorter than 8 digits (e.g. some Pacific islands); keep the
    // invariant that every Msisdn would pass the strict form.
    if !is_e164(&e164) {
        return Err(PhoneError::NotE164);
    }
    Ok(Msisdn(e164))
}

/// Calling code of a number already in E.164 form (as stored on a
/// message), without validating it again: for routing scripts, which see
/// numbers admission already parsed. `None` when `e164` is not `+` and 8 to
/// 15 digits.
pub fn e164_country_code(e164: &str) -> Option<u16> {
    is_e164(e164).then(|| split_code(e164).0)
}

/// Numbers whose region each thread remembers (see [`e164_region`]).
const REGION_MEMO: usize = 8;

thread_local! {
    static RECENT_REGIONS: RefCell<VecDeque<(String, Option<&'static str>)>> =
        const { RefCell::new(VecDeque::new()) };
}

/// ISO region of a number already in E.164 form, like [`Msisdn::region`];
/// `None` when `e164` is not E.164 or its code is non-geographic (+800).
///
/// Remembers the last few numbers asked about on this thread: a script
/// usually asks twice per message (quiet hours in `on_submit`, then
/// `route`), and a calling code shared by several regions (+1, +44) is
/// resolved with phonenumber's regexes.
pub fn e164_region(e164: &str) -> Option<&'static str> {
    if !is_e164(e164) {
        return None;
    }
    let known = RECENT_REGIONS.with(|memo| {
        memo.borrow()
            .iter()
            .find(|(number, _)| number == e164)
            .map(|(_, region)| *region)
    });
    if let Some(region) = known {
        return region;
    }
    size_regex_cache();
    let (code, national) = split_code(e164);
    let region = region_of(code, national);
    RECENT_REGIONS.with(|memo| {
        let mut memo = memo.borrow_mut();
        if memo.len() >= REGION_MEMO {
            memo.pop_front();
        }
        memo.push_back((e164.to_string(), region));
    });
    region
}

/// Grows phonenumber's shared regex cache so it holds every pattern.
///
/// It ships as a 100-entry LRU, fewer patterns than a handful of countries use, so mixed
/// international traffic evicts and recompiles regexes on nearly every call: measured ~5 ms per
/// number across 30 countries, against ~30 µs once the cache holds them all. Patterns are
/// compiled on first use, so memory grows with the countries actually seen: about 0.5 MB each,
/// ~130 MB if traffic reaches all 246 regions.
fn size_regex_cache() {
    static SIZED: Once = Once::new();
    SIZED.call_once(|| {
        // A poisoned lock means phonenumber already panicked holding it; nothing to tune then.
        if let Ok(mut cache) = DATABASE.cache().lock() {
            cache.set_capacity(REGEX_CACHE_CAPACITY);
        }
    });
}

/// Strict E.164 shape: `+`, first digit non-zero, 8 to 15 ASCII digits.
fn is_e164(input: &str) -> bool {
    match input.as_bytes() {
        [b'+', digits @ ..] => {
            (8..=15).contains(&digits.len())
                && digits[0] != b'0'
                && digits.iter().all(u8::is_ascii_digit)
        }
        _ => false,
    }
}

impl Msisdn {
    /// The number as `+` and digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The number as an owned `+` and digits string.
    pub fn into_string(self) -> String {
        self.0
    }

    /// ITU calling code (44 for `+447911123456`, 1 for all of NANP).
    pub fn country_code(&self) -> u16 {
        split_code(&self.0).0
    }

    /// The calling code and the first `digits` digits of the national
    /// number: the unit OTP budgets and conversion blocking count in
    /// (`"44791"` for `+447911123456` with 3 digits).
    pub fn prefix(&self, digits: usize) -> String {
        let (code, national) = split_code(&self.0);
        let lead = national
            .get(..digits.min(national.len()))
            .unwrap_or(national);
        format!("{code}{lead}")
    }

    /// ISO 3166 alpha-2 region ("GB", "US", "CA"), or `None` for non-geographic codes such as
    /// +800. Codes shared by several regions (+1, +44, +7, +39) are resolved by number range.
    pub fn region(&self) -> Option<&'static str> {
        let (code, national) = split_code(&self.0);
        region_of(code, national)
    }
}

/// Calling code and national significant number of an E.164 number.
fn split_code(e164: &str) -> (u16, &str) {
    let digits = e164.get(1..).unwrap_or_default();
    // Calling codes are prefix-free, so the first 1-3 digit prefix the metadata knows is it;
    // every Msisdn has one, so the fallback is only for unvalidated input.
    (1..=3)
        .filter_map(|len| Some((digits.get(..len)?.parse().ok()?, digits.get(len..)?)))
        .find(|(code, _)| DATABASE.region(code).is_some())
        .unwrap_or((0, digits))
}

/// The region of calling code `code` that `national` belongs to.
fn region_of(code: u16, national: &str) -> Option<&'static str> {
    let regions = DATABASE.region(&code)?;
    let id = match regions.as_slice() {
        [only] => only,
        shared => shared.iter().find(|id| {
            DATABASE
                .by_id(**id)
                .is_some_and(|meta| claims(meta, national))
        })?,
    };
    // "001" is libphonenumber's pseudo-region for non-geographic entities.
    (*id != "001").then_some(*id)
}

/// Whether `national` belongs to `meta`'s region, as phonenumber decides among regions sharing
/// a calling code: by leading digits where the region has them, else by matching a number type.
///
/// phonenumber's own `PhoneNumber::metadata` does this on the number with leading zeros dropped,
/// which loses Italian fixed lines (+39 0…); this keeps them, as its `is_valid` does.
fn claims(meta: &Metadata, national: &str) -> bool {
    if let Some(leading) = meta.leading_digits() {
        return leading.find(national).is_some_and(|m| m.start() == 0);
    }
    const TYPES: [Type; 10] = [
        Type::Mobile,
        Type::FixedLine,
        Type::TollFree,
        Type::PremiumRate,
        Type::SharedCost,
        Type::PersonalNumber,
        Type::Voip,
        Type::Pager,
        Type::Uan,
        Type::Voicemail,
    ];
    let descriptors = meta.descriptors();
    descriptors.general().is_match(national)
        && TYPES
            .iter()
            .any(|&kind| descriptors.get(kind).is_some_and(|d| d.is_match(national)))
}

/// US area codes whose whole 555 exchange phonenumber accepts; the tests check each one.
const TEST_AREA_CODES: [u16; 100] = [
    201, 202, 203, 205, 206, 207, 208, 209, 210, 212, 213, 214, 215, 216, 217, 218, 219, 220, 223,
    224, 225, 227, 228, 229, 231, 234, 235, 239, 240, 248, 251, 252, 253, 254, 256, 260, 262, 267,
    269, 270, 272, 276, 279, 281, 283, 301, 302, 303, 304, 305, 307, 308, 309, 310, 312, 313, 314,
    315, 316, 317, 318, 319, 320, 321, 323, 324, 325, 326, 327, 329, 330, 331, 332, 334, 336, 337,
    339, 341, 346, 347, 350, 351, 352, 353, 360, 361, 363, 364, 369, 380, 385, 386, 401, 402, 404,
    405, 406, 407, 408, 409,
];

/// The `n`th of 1,000,000 distinct valid numbers for tests, benchmarks and load generation
/// (`n` is taken modulo 1,000,000).
///
/// They are `+1 <area> 555 <line>` over 100 US area codes and all 10,000 lines of the 555
/// exchange. `n < 10_000` gives `555-0100`..`555-0199`, which NANPA reserves for fiction in
/// every area code. The rest of 555 is set aside for directory and information services
/// (555-1212 is directory assistance), not subscriber phones, so it reaches no one either, but
/// it is not formally fictional: point load generators at simulated carriers only.
///
/// Other ranges reserved for fiction that phonenumber accepts (all tested):
/// - US/Canada: `+1 <any area code> 555 0100`..`0199`.
/// - UK (Ofcom drama numbers): `+44 20 7946 0000`..`0999`, `+44 113 496 0000`..`0999` (likewise
///   114, 116, 117, 118, 121, 131, 141, 151, 161), `+44 191 498 0000`..`0999`,
///   `+44 28 9649 6000`..`6999`, `+44 29 2018 0000`..`0999`. phonenumber rejects the drama
///   mobile range `+44 7700 900000`..`900999`, as well as `+44 115 496` and `+44 1632 960`.
/// - Australia (ACMA): `+61 2|3|7|8 5550 0000`..`9999` and `+61 2|3|7|8 7010 0000`..`9999`.
///
/// Together these hold roughly 130,000 numbers, too few for a million, hence the 555 exchange.
pub fn test_number(n: u32) -> Msisdn {
    let n = n % 1_000_000;
    let area = TEST_AREA_CODES[(n % 100) as usize];
    // Lines start at 0100 so the first 10,000 numbers are the fictional 555-01xx block.
    let line = (n / 100 + 100) % 10_000;
    Msisdn(format!("+1{area}555{line:04}"))
}

impl fmt::Display for Msisdn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<Msisdn> for String {
    fn from(msisdn: Msisdn) -> Self {
        msisdn.0
    }
}

/// Deserialising validates exactly like `parse_msisdn(s, None)`, so a `Msisdn` read from a
/// request or from storage upholds the same invariant as a parsed one (at the same cost).
impl TryFrom<String> for Msisdn {
    type Error = PhoneError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        parse_msisdn(&value, None)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use phonenumber::country;

    use super::*;

    fn e164(input: &str) -> Result<String, PhoneError> {
        parse_msisdn(input, None).map(Msisdn::into_string)
    }

    fn national(input: &str, region: Region) -> Result<String, PhoneError> {
        parse_msisdn(input, Some(region)).map(Msisdn::into_string)
    }

    #[test]
    fn strict_e164_is_accepted_unchanged() {
        for number in [
            "+447400123456",
            "+12015550123",
            "+33612345678",
            "+390236618300",
        ] {
            assert_eq!(e164(number).as_deref(), Ok(number));
        }
    }

    #[test]
    fn anything_but_plus_and_digits_is_not_e164_without_a_region() {
        for input in [
            "447400123456",
            "+44 7400 123456",
            "+44-7400-123456",
            "07400 123456",
            "+44740012345a",
            "tel:+447400123456",
            "",
            "+",
        ] {
            assert_eq!(e164(input), Err(PhoneError::NotE164), "{input:?}");
        }
    }

    #[test]
    fn e164_needs_a_nonzero_first_digit_and_8_to_15_digits() {
        assert_eq!(e164("+0447400123456"), Err(PhoneError::NotE164));
        assert_eq!(e164("+6834002"), Err(PhoneError::NotE164));
        assert_eq!(e164("+1234567890123456"), Err(PhoneError::NotE164));
    }

    #[test]
    fn input_over_32_chars_is_rejected_before_parsing() {
        let long = format!("07400 123456{}", " ".repeat(21));
        assert_eq!(national(&long, country::GB), Err(PhoneError::TooLong));
        assert_eq!(
            national(&long[..32], country::GB).as_deref(),
            Ok("+447400123456")
        );
    }

    #[test]
    fn well_formed_but_unassigned_numbers_are_invalid() {
        for input in [
            "+15555550100",
            "+99912345678",
            "+44740012345",
            "+4474001234567",
            "+447700900123",
        ] {
            assert_eq!(e164(input), Err(PhoneError::Invalid), "{input:?}");
        }
    }

    #[test]
    fn national_formats_are_normalised_with_a_default_region() {
        assert_eq!(
            national("07400 123456", country::GB).as_deref(),
            Ok("+447400123456")
        );
        assert_eq!(
            national("(201) 555-0123", country::US).as_deref(),
            Ok("+12015550123")
        );
        assert_eq!(
            national("+44 7400 123456", country::US).as_deref(),
            Ok("+447400123456")
        );
        assert_eq!(
            national("07400 12345", country::GB),
            Err(PhoneError::Invalid)
        );
    }

    #[test]
    fn extensions_are_rejected() {
        assert_eq!(
            national("07400 123456 ext 12", country::GB),
            Err(PhoneError::Invalid)
        );
    }

    #[test]
    fn valid_numbers_shorter_than_e164_allows_are_rejected_even_with_a_region() {
        // Niue's 4-digit numbers are valid but +6834002 would fail the strict form.
        assert_eq!(national("4002", country::NU), Err(PhoneError::NotE164));
    }

    #[test]
    fn a_trunk_zero_after_the_country_code_is_dropped() {
        assert_eq!(e164("+4407400123456").as_deref(), Ok("+447400123456"));
    }

    #[test]
    fn toll_free_numbers_after_a_trunk_prefix_8_are_rejected_by_phonenumber() {
        // A phonenumber quirk, documented on parse_msisdn; this fails once it is fixed.
        for number in ["+78001234567", "+37080012345"] {
            assert_eq!(e164(number), Err(PhoneError::Invalid), "{number}");
        }
    }

    #[test]
    fn error_messages_read_after_a_field_name() {
        assert_eq!(
            PhoneError::NotE164.to_string(),
            "must be an E.164 number: '+' followed by 8 to 15 digits"
        );
        assert_eq!(
            PhoneError::Invalid.to_string(),
            "is not a valid phone number"
        );
        assert_eq!(
            PhoneError::TooLong.to_string(),
            "is too long: at most 32 characters"
        );
    }

    #[test]
    fn country_code_and_region_come_from_the_metadata() {
        let cases = [
            ("+447400123456", 44, Some("GB")),
            ("+447911123456", 44, Some("GG")),
            ("+12015550123", 1, Some("US")),
            ("+14165550100", 1, Some("CA")),
            ("+390236618300", 39, Some("IT")),
            ("+79161234567", 7, Some("RU")),
            ("+77011234567", 7, Some("KZ")),
            ("+353861234567", 353, Some("IE")),
            ("+80012345678", 800, None),
        ];
        for (input, code, region) in cases {
            let msisdn = parse_msisdn(input, None).expect(input);
            assert_eq!(
                (msisdn.country_code(), msisdn.region()),
                (code, region),
                "{input}"
            );
        }
        // The script helpers' forms agree, asked in any order and more
        // times than the per-thread memo holds.
        for round in 0..3 {
            for (input, code, region) in cases.iter().cycle().skip(round).take(2 * cases.len()) {
                assert_eq!(e164_country_code(input), Some(*code), "{input}");
                assert_eq!(e164_region(input), *region, "{input}");
            }
        }
        for not_e164 in ["447400123456", "+0447400123456", "+44", ""] {
            assert_eq!(e164_country_code(not_e164), None, "{not_e164}");
            assert_eq!(e164_region(not_e164), None, "{not_e164}");
        }
    }

    #[test]
    fn msisdn_displays_and_serialises_as_its_e164_string() {
        let msisdn = test_number(0);
        assert_eq!(msisdn.to_string(), msisdn.as_str());
        let json = serde_json::to_string(&msisdn).expect("serialise");
        assert_eq!(json, format!("\"{msisdn}\""));
        assert_eq!(serde_json::from_str::<Msisdn>(&json).ok(), Some(msisdn));
    }

    #[test]
    fn deserialising_validates_like_strict_parsing() {
        for json in [
            "\"+44 7400 123456\"",
            "\"+447700900123\"",
            "\"07400123456\"",
        ] {
            assert!(serde_json::from_str::<Msisdn>(json).is_err(), "{json}");
        }
    }

    #[test]
    fn parsing_sizes_phonenumbers_regex_cache_for_every_pattern() {
        parse_msisdn("+447400123456", None).expect("valid");
        let cache = DATABASE.cache();
        let capacity = cache.lock().map(|lru| lru.capacity()).ok();
        assert_eq!(capacity, Some(REGEX_CACHE_CAPACITY));
    }

    #[test]
    fn test_numbers_are_a_million_distinct_555_numbers() {
        let digits: HashSet<u64> = (0..1_000_000)
            .map(|n| {
                let number = test_number(n).into_string();
                assert_eq!(number[5..8], *"555", "{number}");
                number[1..].parse().expect("digits")
            })
            .collect();
        assert_eq!(digits.len(), 1_000_000);
        assert_eq!(test_number(1_000_000), test_number(0));
    }

    #[test]
    fn the_first_ten_thousand_test_numbers_are_fictional_555_01xx() {
        for n in (0..10_000).step_by(37) {
            assert_eq!(test_number(n).as_str()[8..10], *"01", "{}", test_number(n));
        }
    }

    #[test]
    fn test_numbers_validate_in_every_area_code() {
        for area in TEST_AREA_CODES {
            for line in ["0000", "0100", "0199", "5555", "9999"] {
                let number = format!("+1{area}555{line}");
                assert_eq!(e164(&number).as_deref(), Ok(number.as_str()));
            }
        }
        for n in (0..1_000_000).step_by(9_973) {
            let msisdn = test_number(n);
            assert_eq!(parse_msisdn(msisdn.as_str(), None).as_ref(), Ok(&msisdn));
            assert_eq!(msisdn.region(), Some("US"));
        }
    }

    #[test]
    fn documented_fictional_ranges_validate() {
        let ranges = [
            ("+1201555", "0100", "0199"),
            ("+1989555", "0100", "0199"),
            ("+44207946", "0000", "0999"),
            ("+44191498", "0000", "0999"),
            ("+44289649", "6000", "6999"),
            ("+44292018", "0000", "0999"),
            ("+6125550", "0000", "9999"),
            ("+6187010", "0000", "9999"),
        ];
        let uk_drama_areas = [
            "113", "114", "116", "117", "118", "121", "131", "141", "151", "161",
        ];
        let uk = uk_drama_areas.map(|area| (format!("+44{area}496"), "0000", "0999"));
        let all = ranges
            .map(|(p, a, b)| (p.to_string(), a, b))
            .into_iter()
            .chain(uk);
        for (prefix, first, last) in all {
            for line in [first, last] {
                let number = format!("{prefix}{line}");
                assert_eq!(e164(&number).as_deref(), Ok(number.as_str()));
            }
        }
        for state in ['2', '3', '7', '8'] {
            for block in ["5550", "7010"] {
                let number = format!("+61{state}{block}1234");
                assert_eq!(e164(&number).as_deref(), Ok(number.as_str()));
            }
        }
    }

    #[test]
    fn documented_traps_are_not_valid() {
        for number in [
            "+447700900000",
            "+447700900999",
            "+441154960000",
            "+441632960000",
        ] {
            assert_eq!(e164(number), Err(PhoneError::Invalid), "{number}");
        }
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        /// Any input is answered, never a panic; an accepted number is
        /// `+` and digits and is accepted again as itself.
        #[test]
        fn any_input_parses_or_is_refused(input in any::<String>()) {
            if let Ok(n) = parse_msisdn(&input, None) {
                prop_assert!(n.as_str().starts_with('+'));
                prop_assert!(n.as_str()[1..].bytes().all(|b| b.is_ascii_digit()));
                prop_assert_eq!(parse_msisdn(n.as_str(), None).map(Msisdn::into_string), Ok(n.into_string()));
            }
        }

        /// Plausible numbers, with and without a default region.
        #[test]
        fn number_like_input_round_trips(input in "\\+?[0-9 ()-]{1,20}") {
            for region in [None, "GB".parse().ok()] {
                if let Ok(n) = parse_msisdn(&input, region) {
                    prop_assert_eq!(parse_msisdn(n.as_str(), None).map(Msisdn::into_string), Ok(n.into_string()));
                }
            }
        }
    }
}

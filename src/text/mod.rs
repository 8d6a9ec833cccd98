//! Message text and recipient numbers: everything about what an SMS body costs and how it is
//! cut up (GSM 03.38 vs UCS-2, segments, per-segment payloads) and about turning caller input
//! into normalised E.164 numbers.

mod encoding;
mod phone;

pub use encoding::{EncodedText, Encoding, SplitText, TextError, analyse, split};
pub use phone::{
    Msisdn, NumberPolicy, PhoneError, Region, e164_country_code, e164_region, parse_msisdn,
    parse_msisdn_with, test_number,
};

//! `[otp]`: codes, their lifetime, and the SMS-pumping defence.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::code::{MAX_LENGTH, MIN_LENGTH};

/// `[otp]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtpConfig {
    /// `app_name` in the `otp` template when a request names none.
    pub app_name: String,
    /// Digits of a code when a request does not say (4..10).
    pub length: u8,
    /// Lifetime of a code when a request does not say.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// Longest lifetime a request may ask for.
    #[serde(with = "humantime_serde")]
    pub max_ttl: Duration,
    /// Wrong codes before an OTP is `max_attempts`.
    pub max_attempts: u32,
    /// Threads hashing and verifying codes (a pool of their own).
    pub verify_threads: usize,
    /// Key file sealing an OTP's SMS text until it is submitted; created
    /// (mode 0600) when missing. Default: `seal.key` next to the database.
    /// Nodes sharing a Redis store must share this file.
    pub seal_key_file: Option<PathBuf>,
    /// ISO 3166 country codes OTPs may be sent to; empty: all.
    pub allowed_countries: Vec<String>,
    /// Digits after the country code that make a number's prefix, the unit
    /// of the prefix budget and of conversion blocking.
    pub prefix_digits: u8,
    /// OTPs per prefix per hour (0: no budget).
    pub prefix_per_hour: u32,
    /// OTPs per application per hour (0: no cap).
    pub app_per_hour: u32,
    /// A prefix whose verified/issued ratio over the last hour falls below
    /// this (with at least `block_min_issued` issued) is blocked (0: never).
    pub block_below_ratio: f64,
    pub block_min_issued: u32,
    /// How long such a block lasts.
    #[serde(with = "humantime_serde")]
    pub block_for: Duration,
}

impl Default for OtpConfig {
    fn default() -> Self {
        OtpConfig {
            app_name: "Herald".into(),
            length: 6,
            ttl: Duration::from_secs(600),
            max_ttl: Duration::from_secs(3600),
            max_attempts: 5,
            verify_threads: 2,
            seal_key_file: None,
            allowed_countries: Vec::new(),
            prefix_digits: 3,
            prefix_per_hour: 1000,
            app_per_hour: 10_000,
            block_below_ratio: 0.35,
            block_min_issued: 20,
            block_for: Duration::from_secs(12 * 3600),
        }
    }
}

impl OtpConfig {
    /// Checks what serde cannot; the error names the key.
    ///
    /// # Errors
    /// `(key, problem)` of the first bad value.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !(MIN_LENGTH..=MAX_LENGTH).contains(&self.length) {
            return Err((
                "otp.length",
                format!("must be between {MIN_LENGTH} and {MAX_LENGTH}"),
            ));
        }
        if self.ttl.is_zero() || self.ttl > self.max_ttl {
            return Err(("otp.ttl", "must be above 0 and at most otp.max_ttl".into()));
        }
        if self.max_attempts == 0 || self.max_attempts > 100 {
            return Err(("otp.max_attempts", "must be between 1 and 100".into()));
        }
        if self.verify_threads == 0 || self.verify_threads > 64 {
            return Err(("otp.verify_threads", "must be between 1 and 64".into()));
        }
        if self.prefix_digits > 10 {
            return Err(("otp.prefix_digits", "must be at most 10".into()));
        }
        if !(0.0..=1.0).contains(&self.block_below_ratio) {
            return Err(("otp.block_below_ratio", "must be between 0 and 1".into()));
        }
        for c in &self.allowed_countries {
            if c.parse::<phonenumber::country::Id>().is_err() {
                return Err((
                    "otp.allowed_countries",
                    format!("'{c}' is not an ISO 3166 country code such as \"GB\""),
                ));
            }
        }
        Ok(())
    }
}

//! Webhook signatures in the Standard Webhooks convention, which svix and
//! the `standardwebhooks` libraries verify:
//!
//! - `webhook-id`: the delivery's id, the same on every retry (receivers
//!   de-duplicate on it);
//! - `webhook-timestamp`: Unix seconds when this attempt was signed
//!   (receivers refuse old ones, so a captured request cannot be replayed
//!   later);
//! - `webhook-signature`: `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.
//!
//! A secret is `whsec_` followed by base64; the HMAC key is the base64
//! decoding of what follows `whsec_` (not the text itself).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{KeyInit, Mac};
use sha2::Sha256;

/// The delivery's id (the same on every retry).
pub const ID_HEADER: &str = "webhook-id";
/// Unix seconds when the attempt was signed.
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
/// `v1,<base64 signature>`.
pub const SIGNATURE_HEADER: &str = "webhook-signature";
/// Prefix of every signing secret.
pub const SECRET_PREFIX: &str = "whsec_";
/// Fewest key bytes a secret may decode to.
pub const MIN_KEY_BYTES: usize = 16;

/// Why a secret cannot sign.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "must be `whsec_` followed by the base64 of at least {MIN_KEY_BYTES} random bytes \
     (e.g. `echo whsec_$(openssl rand -base64 32)`)"
)]
pub struct BadSecret;

/// The HMAC key of a `whsec_…` secret.
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

impl SigningKey {
    /// Decodes `secret`.
    ///
    /// # Errors
    /// [`BadSecret`] when it lacks the prefix, is not base64 or is too short.
    pub fn from_secret(secret: &str) -> Result<SigningKey, BadSecret> {
        let encoded = secret.strip_prefix(SECRET_PREFIX).ok_or(BadSecret)?;
        let key = STANDARD.decode(encoded).map_err(|_| BadSecret)?;
        if key.len() < MIN_KEY_BYTES {
            return Err(BadSecret);
        }
        Ok(SigningKey(key))
    }

    fn mac(&self, id: &str, timestamp: &str, body: &[u8]) -> hmac::Hmac<Sha256> {
        let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// The `webhook-signature` value for this delivery.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let tag = self.mac(id, &timestamp.to_string(), body).finalize();
        format!("v1,{}", STANDARD.encode(tag.into_bytes()))
    }

    /// Whether any `v1` signature in `header` (space-separated) signs
    /// `id.timestamp.body`; compared in constant time.
    pub fn verify(&self, id: &str, timestamp: &str, body: &[u8], header: &str) -> bool {
        header.split(' ').any(|candidate| {
            let Some(encoded) = candidate.strip_prefix("v1,") else {
                return false;
            };
            let Ok(tag) = STANDARD.decode(encoded) else {
                return false;
            };
            self.mac(id, timestamp, body).verify_slice(&tag).is_ok()
        })
    }
}

/// A new random secret: `whsec_` and the base64 of 24 random bytes.
///
/// # Errors
/// When the OS RNG is unavailable.
pub fn new_secret() -> Result<String, String> {
    let mut key = [0u8; 24];
    getrandom::fill(&mut key).map_err(|e| e.to_string())?;
    Ok(format!("{SECRET_PREFIX}{}", STANDARD.encode(key)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification.
    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TS: i64 = 1_614_265_330;
    const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SPEC_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn signs_the_specification_example() {
        let key = SigningKey::from_secret(SPEC_SECRET).expect("key");
        assert_eq!(key.sign(SPEC_ID, SPEC_TS, SPEC_BODY), SPEC_SIGNATURE);
        assert!(key.verify(SPEC_ID, "1614265330", SPEC_BODY, SPEC_SIGNATURE));
        assert!(key.verify(
            SPEC_ID,
            "1614265330",
            SPEC_BODY,
            &format!("v1,bm9wZQ== {SPEC_SIGNATURE}")
        ));
        assert!(!key.verify(SPEC_ID, "1614265331", SPEC_BODY, SPEC_SIGNATURE));
        assert!(!key.verify("msg_other", "1614265330", SPEC_BODY, SPEC_SIGNATURE));
        assert!(!key.verify(SPEC_ID, "1614265330", b"{}", SPEC_SIGNATURE));
    }

    #[test]
    fn secrets_need_the_prefix_and_enough_base64() {
        assert!(SigningKey::from_secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(SigningKey::from_secret("whsec_not base64!").is_err());
        assert!(
            SigningKey::from_secret("whsec_c2hvcnQ=").is_err(),
            "5 bytes"
        );
        let fresh = new_secret().expect("rng");
        assert!(SigningKey::from_secret(&fresh).is_ok(), "{fresh}");
        // Keys created before secrets were base64 (48 hex digits) decode too.
        assert!(SigningKey::from_secret(&format!("whsec_{}", "ab12".repeat(12))).is_ok());
    }
}

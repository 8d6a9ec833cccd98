//! The OTP role of a store: one-time passwords (only a hash of each code),
//! the pending OTP of each application and recipient, hourly budgets of the
//! SMS-pumping defence and the prefixes it blocked.
//!
//! Every operation that decides something is atomic in the store, so two
//! nodes verifying one OTP at the same moment give exactly one approval and
//! count every wrong attempt.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::model::{MessageId, Micros};

/// How long an OTP that ended is kept for `GET /v1/otp/{id}`.
pub const OTP_KEEP: Micros = 24 * 3_600_000_000;
/// Length of one budget window.
pub const BUDGET_WINDOW: Micros = 3_600_000_000;

/// Where an OTP stands. `Pending` past its expiry reads as `Expired`
/// ([`OtpRecord::status_at`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OtpStatus {
    Pending,
    Approved,
    Expired,
    MaxAttempts,
    Canceled,
}

impl OtpStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OtpStatus::Pending => "pending",
            OtpStatus::Approved => "approved",
            OtpStatus::Expired => "expired",
            OtpStatus::MaxAttempts => "max_attempts",
            OtpStatus::Canceled => "canceled",
        }
    }
}

/// One OTP as stored: never the code, only its argon2id hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OtpRecord {
    pub id: String,
    /// The application (API key name) that issued it.
    pub owner: String,
    /// E.164 recipient.
    pub to: String,
    /// The number prefix its conversion is counted under.
    pub prefix: String,
    pub hash: String,
    pub status: OtpStatus,
    /// Wrong codes so far.
    pub attempts: u32,
    pub max_attempts: u32,
    pub created_at: Micros,
    pub expires_at: Micros,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done_at: Option<Micros>,
    /// The SMS that carries the code.
    pub message_id: MessageId,
}

impl OtpRecord {
    /// The status as of `now`: a pending OTP past its expiry is expired.
    pub fn status_at(&self, now: Micros) -> OtpStatus {
        if self.status == OtpStatus::Pending && now >= self.expires_at {
            OtpStatus::Expired
        } else {
            self.status
        }
    }

    /// Wrong codes still allowed.
    pub fn attempts_remaining(&self, now: Micros) -> u32 {
        if self.status_at(now) == OtpStatus::Pending {
            self.max_attempts.saturating_sub(self.attempts)
        } else {
            0
        }
    }

    /// The key of the pending index: one pending OTP per application and
    /// recipient.
    pub fn pending_key(owner: &str, to: &str) -> String {
        format!("{owner}\n{to}")
    }

    /// Applies one verification attempt (`matched`: the code was right) at
    /// `now`; returns whether this attempt approved it. The one rule both
    /// stores run.
    pub fn apply_attempt(&mut self, matched: bool, now: Micros) -> bool {
        match self.status_at(now) {
            OtpStatus::Pending => {}
            OtpStatus::Expired => {
                self.status = OtpStatus::Expired;
                self.done_at.get_or_insert(now);
                return false;
            }
            _ => return false,
        }
        if matched {
            self.status = OtpStatus::Approved;
            self.done_at = Some(now);
            return true;
        }
        self.attempts += 1;
        if self.attempts >= self.max_attempts {
            self.status = OtpStatus::MaxAttempts;
            self.done_at = Some(now);
        }
        false
    }
}

/// The outcome of [`OtpStore::attempt_otp`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The OTP after the attempt.
    pub otp: OtpRecord,
    /// This attempt approved it (at most one attempt ever does).
    pub approved: bool,
}

/// One hourly budget: at most `limit` per window (0: counted, not limited).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    pub key: String,
    pub limit: u32,
}

/// The window `now` falls in.
pub fn budget_window(now: Micros) -> i64 {
    now.div_euclid(BUDGET_WINDOW)
}

#[async_trait]
pub trait OtpStore: Send + Sync + 'static {
    /// Stores `otp` as the pending OTP of its owner and recipient. A pending
    /// OTP it replaces is canceled (its code stops working); its id is
    /// returned.
    async fn put_otp(&self, otp: OtpRecord) -> Result<Option<String>, StoreError>;

    async fn otp(&self, id: &str) -> Result<Option<OtpRecord>, StoreError>;

    /// The pending OTP of `owner` for `to`, if any (possibly past expiry;
    /// the Redis store may forget the entry once the OTP expired).
    async fn pending_otp(&self, owner: &str, to: &str) -> Result<Option<OtpRecord>, StoreError>;

    /// One verification attempt, atomically ([`OtpRecord::apply_attempt`]).
    /// `None`: no such OTP.
    async fn attempt_otp(
        &self,
        id: &str,
        matched: bool,
        now: Micros,
    ) -> Result<Option<Attempt>, StoreError>;

    /// Cancels a pending OTP; an ended one is returned unchanged. `None`:
    /// no such OTP.
    async fn cancel_otp(&self, id: &str, now: Micros) -> Result<Option<OtpRecord>, StoreError>;

    /// Takes one from every budget of the current window if all have room
    /// (a limit of 0 always has); otherwise takes nothing and returns the
    /// index of the first full one.
    async fn take_budgets(
        &self,
        budgets: &[Budget],
        now: Micros,
    ) -> Result<Option<usize>, StoreError>;

    /// Forgets every window of `keys` (e.g. a prefix's conversion history
    /// when an operator lifts its block).
    async fn reset_budgets(&self, keys: &[String]) -> Result<(), StoreError>;

    /// The counts of `keys` in the current and the previous window, summed.
    async fn budget_counts(&self, keys: &[String], now: Micros) -> Result<Vec<u64>, StoreError>;

    /// Blocks `prefix` until `until`.
    async fn block_prefix(&self, prefix: &str, until: Micros) -> Result<(), StoreError>;

    /// Prefixes blocked at `now`, with the end of each block.
    async fn blocked_prefixes(&self, now: Micros) -> Result<Vec<(String, Micros)>, StoreError>;

    /// Lifts a block; `false` when `prefix` was not blocked.
    async fn unblock_prefix(&self, prefix: &str) -> Result<bool, StoreError>;

    /// Removes OTPs that ended (or expired) more than [`OTP_KEEP`] ago,
    /// budget windows older than the previous one and lapsed blocks.
    /// Returns how many OTPs went. (Redis expires these by key TTLs.)
    async fn purge_otps(&self, now: Micros) -> Result<usize, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn otp() -> OtpRecord {
        OtpRecord {
            id: "o1".into(),
            owner: "shop".into(),
            to: "+447700900001".into(),
            prefix: "44770".into(),
            hash: "h".into(),
            status: OtpStatus::Pending,
            attempts: 0,
            max_attempts: 3,
            created_at: 0,
            expires_at: 100,
            done_at: None,
            message_id: MessageId(1),
        }
    }

    #[test]
    fn attempts_run_down_to_max_attempts_and_an_ended_otp_never_approves() {
        let mut o = otp();
        assert!(!o.apply_attempt(false, 1));
        assert!(!o.apply_attempt(false, 2));
        assert_eq!(o.attempts_remaining(2), 1);
        assert!(!o.apply_attempt(false, 3));
        assert_eq!(o.status, OtpStatus::MaxAttempts);
        assert!(!o.apply_attempt(true, 4), "exhausted never verifies");
        assert_eq!(o.attempts, 3);
    }

    #[test]
    fn one_approval_then_never_again_and_expiry_wins() {
        let mut o = otp();
        assert!(o.apply_attempt(true, 5));
        assert!(!o.apply_attempt(true, 6), "approved never verifies again");
        let mut late = otp();
        assert!(!late.apply_attempt(true, 100));
        assert_eq!(late.status, OtpStatus::Expired);
        assert_eq!(late.done_at, Some(100));
    }
}

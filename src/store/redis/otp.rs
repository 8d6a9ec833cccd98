//! The OTP role of the Redis store. Every decision (putting an OTP in place
//! of the pending one, an attempt, a cancel, taking budgets) is one Lua
//! script (`lua/otp_*.lua` after the OTP prelude `lua/otp.lua`), so two
//! nodes verifying one OTP at the same moment give exactly one approval.
//!
//! Nothing needs purging: an OTP key expires `OTP_KEEP` after its expiry or
//! end (whichever is later), a pending index entry at the OTP's expiry and a
//! budget counter two windows after its window starts. Blocked prefixes are
//! one sorted set scored by the end of each block; `purge_otps` drops the
//! lapsed ones. Key TTLs run on Redis's clock, the callers' `now` on theirs.

use std::collections::HashMap;

use ::redis::AsyncCommands;
use async_trait::async_trait;

use super::decode::{self, array, corrupt, int, text};
use super::{RedisStore, json, unavailable};
use crate::model::Micros;
use crate::store::StoreError;
use crate::store::otp::{
    Attempt, BUDGET_WINDOW, Budget, OTP_KEEP, OtpRecord, OtpStatus, OtpStore, budget_window,
};

/// Blocked prefix → end of its block (the score).
const BLOCKED: &str = "otp_blocked";

fn status(s: &str) -> Result<OtpStatus, StoreError> {
    Ok(match s {
        "pending" => OtpStatus::Pending,
        "approved" => OtpStatus::Approved,
        "expired" => OtpStatus::Expired,
        "max_attempts" => OtpStatus::MaxAttempts,
        "canceled" => OtpStatus::Canceled,
        other => return Err(corrupt(format_args!("unknown OTP status {other:?}"))),
    })
}

/// An OTP from its stored hash: the record as put, with what changed since
/// (status, attempts, end) from the short fields the scripts write.
fn record(h: &HashMap<String, String>) -> Result<OtpRecord, StoreError> {
    let j = h
        .get("j")
        .ok_or_else(|| corrupt("OTP record without data"))?;
    let mut otp: OtpRecord = serde_json::from_str(j).map_err(corrupt)?;
    if let Some(st) = h.get("st") {
        otp.status = status(st)?;
    }
    if let Some(at) = h.get("at") {
        otp.attempts = at
            .parse()
            .map_err(|_| corrupt(format_args!("OTP attempts {at:?}")))?;
    }
    if let Some(da) = h.get("da") {
        otp.done_at = Some(
            da.parse()
                .map_err(|_| corrupt(format_args!("OTP end {da:?}")))?,
        );
    }
    Ok(otp)
}

/// An OTP from a script's `HGETALL` reply; `None` for nil (no such OTP).
fn reply_record(v: ::redis::Value) -> Result<Option<OtpRecord>, StoreError> {
    if matches!(v, ::redis::Value::Nil | ::redis::Value::Boolean(false)) {
        return Ok(None);
    }
    let h = decode::hash(v)?;
    if h.is_empty() {
        return Ok(None);
    }
    record(&h).map(Some)
}

/// Milliseconds since the epoch for `PEXPIREAT`.
fn millis(t: Micros) -> Micros {
    t.div_euclid(1000)
}

#[async_trait]
impl OtpStore for RedisStore {
    async fn put_otp(&self, otp: OtpRecord) -> Result<Option<String>, StoreError> {
        let s = &self.shared;
        // The replaced OTP ends when this one is created.
        let mut inv = s.invocation(&s.scripts.otp_put, otp.created_at);
        inv.arg(OTP_KEEP)
            .arg(&otp.id)
            .arg(json(&otp)?)
            .arg(OtpRecord::pending_key(&otp.owner, &otp.to))
            .arg(otp.status.as_str())
            .arg(otp.attempts)
            .arg(otp.max_attempts)
            .arg(otp.expires_at)
            .arg(otp.done_at.map(|t| t.to_string()).unwrap_or_default());
        text(s.invoke(&inv).await?)
    }

    async fn otp(&self, id: &str) -> Result<Option<OtpRecord>, StoreError> {
        let mut conn = self.shared.conn()?;
        let fields: HashMap<String, String> = conn
            .hgetall(self.shared.key(&format!("otp:{id}")))
            .await
            .map_err(unavailable)?;
        if fields.is_empty() {
            return Ok(None);
        }
        record(&fields).map(Some)
    }

    /// The index entry lapses at the OTP's expiry, so past it Redis may
    /// answer `None` where the embedded store still names the expired OTP.
    async fn pending_otp(&self, owner: &str, to: &str) -> Result<Option<OtpRecord>, StoreError> {
        let mut conn = self.shared.conn()?;
        let key = format!("otp_pending:{}", OtpRecord::pending_key(owner, to));
        let id: Option<String> = conn.get(self.shared.key(&key)).await.map_err(unavailable)?;
        match id {
            Some(id) => self.otp(&id).await,
            None => Ok(None),
        }
    }

    async fn attempt_otp(
        &self,
        id: &str,
        matched: bool,
        now: Micros,
    ) -> Result<Option<Attempt>, StoreError> {
        let s = &self.shared;
        let mut inv = s.invocation(&s.scripts.otp_attempt, now);
        inv.arg(OTP_KEEP)
            .arg(id)
            .arg(if matched { "1" } else { "0" });
        let reply = s.invoke(&inv).await?;
        if matches!(reply, ::redis::Value::Nil | ::redis::Value::Boolean(false)) {
            return Ok(None);
        }
        let mut parts = array(reply)?.into_iter();
        let (Some(approved), Some(otp)) = (parts.next(), parts.next()) else {
            return Err(corrupt("OTP attempt reply"));
        };
        let approved = int(&approved)? == 1;
        let otp = reply_record(otp)?.ok_or_else(|| corrupt("OTP attempt reply"))?;
        Ok(Some(Attempt { otp, approved }))
    }

    async fn cancel_otp(&self, id: &str, now: Micros) -> Result<Option<OtpRecord>, StoreError> {
        let s = &self.shared;
        let mut inv = s.invocation(&s.scripts.otp_cancel, now);
        inv.arg(OTP_KEEP).arg(id);
        reply_record(s.invoke(&inv).await?)
    }

    async fn take_budgets(
        &self,
        budgets: &[Budget],
        now: Micros,
    ) -> Result<Option<usize>, StoreError> {
        if budgets.is_empty() {
            return Ok(None);
        }
        let s = &self.shared;
        let window = budget_window(now);
        // Kept through the next window, where `budget_counts` still reads it
        // as the previous one.
        let expire_at = millis((window + 2).saturating_mul(BUDGET_WINDOW));
        let mut inv = s.invocation(&s.scripts.otp_budgets, now);
        inv.arg(OTP_KEEP)
            .arg(window)
            .arg(budgets.len())
            .arg(expire_at);
        for b in budgets {
            inv.arg(&b.key).arg(b.limit);
        }
        let full = int(&s.invoke(&inv).await?)?;
        if full < 0 {
            return Ok(None);
        }
        usize::try_from(full)
            .ok()
            .filter(|&i| i < budgets.len())
            .map(Some)
            .ok_or_else(|| corrupt("budget reply"))
    }

    async fn reset_budgets(&self, keys: &[String]) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        // Windows older than the previous one have expired by their TTL;
        // the next one cannot have started counting yet.
        let window = budget_window(crate::model::now_micros());
        let mut names = Vec::with_capacity(keys.len() * 3);
        for k in keys {
            for w in [window - 1, window, window + 1] {
                names.push(self.shared.key(&format!("otp_budget:{w}:{k}")));
            }
        }
        let mut conn = self.shared.conn()?;
        ::redis::cmd("DEL")
            .arg(&names)
            .query_async::<()>(&mut conn)
            .await
            .map_err(unavailable)
    }

    async fn budget_counts(&self, keys: &[String], now: Micros) -> Result<Vec<u64>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let window = budget_window(now);
        let mut names = Vec::with_capacity(keys.len() * 2);
        for k in keys {
            for w in [window - 1, window] {
                names.push(self.shared.key(&format!("otp_budget:{w}:{k}")));
            }
        }
        let mut conn = self.shared.conn()?;
        let counts: Vec<Option<u64>> = ::redis::cmd("MGET")
            .arg(&names)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        if counts.len() != names.len() {
            return Err(corrupt("budget counts reply"));
        }
        Ok(counts
            .chunks(2)
            .map(|pair| pair.iter().flatten().sum())
            .collect())
    }

    async fn block_prefix(&self, prefix: &str, until: Micros) -> Result<(), StoreError> {
        let mut conn = self.shared.conn()?;
        conn.zadd::<_, _, _, ()>(self.shared.key(BLOCKED), prefix, until)
            .await
            .map_err(unavailable)
    }

    async fn blocked_prefixes(&self, now: Micros) -> Result<Vec<(String, Micros)>, StoreError> {
        let mut conn = self.shared.conn()?;
        let entries: Vec<(String, String)> = conn
            .zrangebyscore_withscores(self.shared.key(BLOCKED), format!("({now}"), "+inf")
            .await
            .map_err(unavailable)?;
        entries
            .into_iter()
            .map(|(prefix, until)| {
                // Scores are doubles; a microsecond time below 2^53 is
                // exact and prints without an exponent.
                let until = until
                    .parse::<Micros>()
                    .map_err(|_| corrupt(format_args!("block end {until:?}")))?;
                Ok((prefix, until))
            })
            .collect()
    }

    async fn unblock_prefix(&self, prefix: &str) -> Result<bool, StoreError> {
        let mut conn = self.shared.conn()?;
        let removed: i64 = conn
            .zrem(self.shared.key(BLOCKED), prefix)
            .await
            .map_err(unavailable)?;
        Ok(removed > 0)
    }

    /// Drops lapsed blocks and returns 0: OTP records, their index entries
    /// and budget counters expire by their key TTLs, so there is nothing
    /// else to remove (or count).
    async fn purge_otps(&self, now: Micros) -> Result<usize, StoreError> {
        let mut conn = self.shared.conn()?;
        conn.zrembyscore::<_, _, _, ()>(self.shared.key(BLOCKED), "-inf", now)
            .await
            .map_err(unavailable)?;
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_reads_back() {
        for st in [
            OtpStatus::Pending,
            OtpStatus::Approved,
            OtpStatus::Expired,
            OtpStatus::MaxAttempts,
            OtpStatus::Canceled,
        ] {
            assert_eq!(status(st.as_str()).ok(), Some(st));
        }
        assert!(status("nope").is_err());
    }
}

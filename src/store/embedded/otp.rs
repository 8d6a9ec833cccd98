//! The OTP role of the embedded store: OTP records, the pending index,
//! hourly budget counters and blocked prefixes. Every decision runs inside
//! one write transaction of the shared group-committed writer, so it is
//! atomic against every other writer.

use async_trait::async_trait;
use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::{EmbeddedStore, Writer, io};
use crate::model::Micros;
use crate::store::StoreError;
use crate::store::otp::{Attempt, Budget, OTP_KEEP, OtpRecord, OtpStatus, OtpStore, budget_window};

/// OTP id → record (JSON).
const OTPS: TableDefinition<&str, &[u8]> = TableDefinition::new("otps");
/// "owner\nto" → id of the pending OTP.
const OTP_PENDING: TableDefinition<&str, &str> = TableDefinition::new("otp_pending");
/// (budget key, window) → count.
const OTP_BUDGETS: TableDefinition<(&str, i64), u64> = TableDefinition::new("otp_budgets");
/// Blocked prefix → end of the block.
const OTP_BLOCKED: TableDefinition<&str, i64> = TableDefinition::new("otp_blocked");

/// Creates the role's tables, so readers never meet a missing one.
pub(super) fn create_tables(tx: &WriteTransaction) -> Result<(), StoreError> {
    tx.open_table(OTPS).map_err(io)?;
    tx.open_table(OTP_PENDING).map_err(io)?;
    tx.open_table(OTP_BUDGETS).map_err(io)?;
    tx.open_table(OTP_BLOCKED).map_err(io)?;
    Ok(())
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn load(w: &Writer<'_>, id: &str) -> Result<Option<OtpRecord>, StoreError> {
    let table = w.tx.open_table(OTPS).map_err(io)?;
    let bytes = table.get(id).map_err(io)?.map(|v| v.value().to_vec());
    bytes
        .map(|b| serde_json::from_slice(&b).map_err(corrupt))
        .transpose()
}

fn save(w: &Writer<'_>, otp: &OtpRecord) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(otp).map_err(corrupt)?;
    let mut table = w.tx.open_table(OTPS).map_err(io)?;
    table
        .insert(otp.id.as_str(), bytes.as_slice())
        .map_err(io)?;
    if otp.status != OtpStatus::Pending {
        clear_pending(w, otp)?;
    }
    Ok(())
}

/// Drops the pending index entry of `otp` if it still names it.
fn clear_pending(w: &Writer<'_>, otp: &OtpRecord) -> Result<(), StoreError> {
    let key = OtpRecord::pending_key(&otp.owner, &otp.to);
    let mut pending = w.tx.open_table(OTP_PENDING).map_err(io)?;
    let names_it = pending
        .get(key.as_str())
        .map_err(io)?
        .is_some_and(|v| v.value() == otp.id);
    if names_it {
        pending.remove(key.as_str()).map_err(io)?;
    }
    Ok(())
}

fn put(w: &Writer<'_>, otp: &OtpRecord) -> Result<Option<String>, StoreError> {
    let key = OtpRecord::pending_key(&otp.owner, &otp.to);
    let previous =
        w.tx.open_table(OTP_PENDING)
            .map_err(io)?
            .get(key.as_str())
            .map_err(io)?
            .map(|v| v.value().to_string());
    let mut replaced = None;
    if let Some(old_id) = previous
        && let Some(mut old) = load(w, &old_id)?
        && old.status == OtpStatus::Pending
    {
        old.status = OtpStatus::Canceled;
        old.done_at = Some(otp.created_at);
        save(w, &old)?;
        replaced = Some(old_id);
    }
    save(w, otp)?;
    w.tx.open_table(OTP_PENDING)
        .map_err(io)?
        .insert(key.as_str(), otp.id.as_str())
        .map_err(io)?;
    Ok(replaced)
}

fn attempt(
    w: &Writer<'_>,
    id: &str,
    matched: bool,
    now: Micros,
) -> Result<Option<Attempt>, StoreError> {
    let Some(mut otp) = load(w, id)? else {
        return Ok(None);
    };
    let before = otp.clone();
    let approved = otp.apply_attempt(matched, now);
    if otp != before {
        save(w, &otp)?;
    }
    Ok(Some(Attempt { otp, approved }))
}

fn cancel(w: &Writer<'_>, id: &str, now: Micros) -> Result<Option<OtpRecord>, StoreError> {
    let Some(mut otp) = load(w, id)? else {
        return Ok(None);
    };
    match otp.status_at(now) {
        OtpStatus::Pending => {
            otp.status = OtpStatus::Canceled;
            otp.done_at = Some(now);
            save(w, &otp)?;
        }
        OtpStatus::Expired if otp.status == OtpStatus::Pending => {
            otp.status = OtpStatus::Expired;
            otp.done_at = Some(now);
            save(w, &otp)?;
        }
        _ => {}
    }
    Ok(Some(otp))
}

fn take(w: &Writer<'_>, budgets: &[Budget], now: Micros) -> Result<Option<usize>, StoreError> {
    let window = budget_window(now);
    let mut table = w.tx.open_table(OTP_BUDGETS).map_err(io)?;
    let count = |table: &redb::Table<(&str, i64), u64>, key: &str| -> Result<u64, StoreError> {
        Ok(table
            .get((key, window))
            .map_err(io)?
            .map_or(0, |v| v.value()))
    };
    for (i, b) in budgets.iter().enumerate() {
        if b.limit > 0 && count(&table, &b.key)? >= u64::from(b.limit) {
            return Ok(Some(i));
        }
    }
    // Read again for each: a key listed twice takes two, as in Redis.
    for b in budgets {
        let n = count(&table, &b.key)?;
        table.insert((b.key.as_str(), window), n + 1).map_err(io)?;
    }
    Ok(None)
}

fn purge(w: &Writer<'_>, now: Micros) -> Result<usize, StoreError> {
    let mut gone = Vec::new();
    {
        let table = w.tx.open_table(OTPS).map_err(io)?;
        for row in table.iter().map_err(io)? {
            let (k, v) = row.map_err(io)?;
            let otp: OtpRecord = serde_json::from_slice(v.value()).map_err(corrupt)?;
            let ended = otp.done_at.unwrap_or(otp.expires_at);
            if ended.saturating_add(OTP_KEEP) < now {
                gone.push((k.value().to_string(), otp));
            }
        }
    }
    let mut table = w.tx.open_table(OTPS).map_err(io)?;
    for (id, otp) in &gone {
        table.remove(id.as_str()).map_err(io)?;
        clear_pending(w, otp)?;
    }
    let oldest_kept = budget_window(now) - 1;
    let mut budgets = w.tx.open_table(OTP_BUDGETS).map_err(io)?;
    let mut stale = Vec::new();
    for row in budgets.iter().map_err(io)? {
        let (k, _) = row.map_err(io)?;
        let (key, window) = k.value();
        if window < oldest_kept {
            stale.push((key.to_string(), window));
        }
    }
    for (key, window) in stale {
        budgets.remove((key.as_str(), window)).map_err(io)?;
    }
    let mut blocked = w.tx.open_table(OTP_BLOCKED).map_err(io)?;
    blocked.retain(|_, until| until > now).map_err(io)?;
    Ok(gone.len())
}

#[async_trait]
impl OtpStore for EmbeddedStore {
    async fn put_otp(&self, otp: OtpRecord) -> Result<Option<String>, StoreError> {
        self.write(1, move |w, _| put(w, &otp)).await
    }

    async fn otp(&self, id: &str) -> Result<Option<OtpRecord>, StoreError> {
        let tx = self.read()?;
        let table = tx.open_table(OTPS).map_err(io)?;
        let bytes = table.get(id).map_err(io)?.map(|v| v.value().to_vec());
        bytes
            .map(|b| serde_json::from_slice(&b).map_err(corrupt))
            .transpose()
    }

    async fn pending_otp(&self, owner: &str, to: &str) -> Result<Option<OtpRecord>, StoreError> {
        let id = {
            let tx = self.read()?;
            let pending = tx.open_table(OTP_PENDING).map_err(io)?;
            pending
                .get(OtpRecord::pending_key(owner, to).as_str())
                .map_err(io)?
                .map(|v| v.value().to_string())
        };
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
        let id = id.to_string();
        self.write(1, move |w, _| attempt(w, &id, matched, now))
            .await
    }

    async fn cancel_otp(&self, id: &str, now: Micros) -> Result<Option<OtpRecord>, StoreError> {
        let id = id.to_string();
        self.write(1, move |w, _| cancel(w, &id, now)).await
    }

    async fn take_budgets(
        &self,
        budgets: &[Budget],
        now: Micros,
    ) -> Result<Option<usize>, StoreError> {
        let budgets = budgets.to_vec();
        self.write(1, move |w, _| take(w, &budgets, now)).await
    }

    async fn reset_budgets(&self, keys: &[String]) -> Result<(), StoreError> {
        let keys = keys.to_vec();
        self.write(1, move |w, _| {
            let mut table = w.tx.open_table(OTP_BUDGETS).map_err(io)?;
            for key in &keys {
                let windows: Vec<i64> = table
                    .range((key.as_str(), i64::MIN)..=(key.as_str(), i64::MAX))
                    .map_err(io)?
                    .map(|row| row.map(|(k, _)| k.value().1).map_err(io))
                    .collect::<Result<_, _>>()?;
                for window in windows {
                    table.remove((key.as_str(), window)).map_err(io)?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn budget_counts(&self, keys: &[String], now: Micros) -> Result<Vec<u64>, StoreError> {
        let window = budget_window(now);
        let tx = self.read()?;
        let table = tx.open_table(OTP_BUDGETS).map_err(io)?;
        keys.iter()
            .map(|k| {
                let mut sum = 0;
                for w in [window - 1, window] {
                    sum += table
                        .get((k.as_str(), w))
                        .map_err(io)?
                        .map_or(0, |v| v.value());
                }
                Ok(sum)
            })
            .collect()
    }

    async fn block_prefix(&self, prefix: &str, until: Micros) -> Result<(), StoreError> {
        let prefix = prefix.to_string();
        self.write(1, move |w, _| {
            w.tx.open_table(OTP_BLOCKED)
                .map_err(io)?
                .insert(prefix.as_str(), until)
                .map_err(io)?;
            Ok(())
        })
        .await
    }

    async fn blocked_prefixes(&self, now: Micros) -> Result<Vec<(String, Micros)>, StoreError> {
        let tx = self.read()?;
        let table = tx.open_table(OTP_BLOCKED).map_err(io)?;
        let mut out = Vec::new();
        for row in table.iter().map_err(io)? {
            let (k, v) = row.map_err(io)?;
            if v.value() > now {
                out.push((k.value().to_string(), v.value()));
            }
        }
        Ok(out)
    }

    async fn unblock_prefix(&self, prefix: &str) -> Result<bool, StoreError> {
        let prefix = prefix.to_string();
        self.write(1, move |w, _| {
            Ok(w.tx
                .open_table(OTP_BLOCKED)
                .map_err(io)?
                .remove(prefix.as_str())
                .map_err(io)?
                .is_some())
        })
        .await
    }

    async fn purge_otps(&self, now: Micros) -> Result<usize, StoreError> {
        self.write(1, move |w, _| purge(w, now)).await
    }
}

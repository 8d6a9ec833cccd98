//! The operator role of the Redis store: one hash of account records
//! (name → JSON), one key per session (`session:{token hash}`, expiring at
//! the session's absolute end) and a set of session hashes per operator, so
//! disabling an account ends its sessions on every node.

use ::redis::AsyncCommands;
use async_trait::async_trait;

use super::decode::corrupt;
use super::{RedisStore, unavailable};
use crate::model::Micros;
use crate::store::StoreError;
use crate::store::operator::{OperatorRecord, OperatorStore, SessionRecord};

/// Operator name → record (JSON).
const OPERATORS: &str = "operators";

/// Replaces a field only when it exists: an update never recreates an
/// account that is gone.
const UPDATE: &str = r"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return 1
end
return 0
";

impl RedisStore {
    fn session_key(&self, token_hash: &str) -> String {
        self.shared.key(&format!("session:{token_hash}"))
    }

    fn sessions_of_key(&self, operator: &str) -> String {
        self.shared.key(&format!("operator_sessions:{operator}"))
    }
}

fn decode<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| corrupt(format_args!("operator record: {e}")))
}

fn encode<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(corrupt)
}

#[async_trait]
impl OperatorStore for RedisStore {
    async fn create_operator(&self, operator: OperatorRecord) -> Result<bool, StoreError> {
        let mut conn = self.shared.conn()?;
        let json = encode(&operator)?;
        conn.hset_nx(self.shared.key(OPERATORS), &operator.name, json)
            .await
            .map_err(unavailable)
    }

    async fn operator(&self, name: &str) -> Result<Option<OperatorRecord>, StoreError> {
        let mut conn = self.shared.conn()?;
        let value: Option<String> = conn
            .hget(self.shared.key(OPERATORS), name)
            .await
            .map_err(unavailable)?;
        value.as_deref().map(decode).transpose()
    }

    async fn operators(&self) -> Result<Vec<OperatorRecord>, StoreError> {
        let mut conn = self.shared.conn()?;
        let all: Vec<(String, String)> = conn
            .hgetall(self.shared.key(OPERATORS))
            .await
            .map_err(unavailable)?;
        let mut out = all
            .iter()
            .map(|(_, v)| decode::<OperatorRecord>(v))
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn update_operator(&self, operator: OperatorRecord) -> Result<bool, StoreError> {
        let mut conn = self.shared.conn()?;
        let json = encode(&operator)?;
        let updated: i64 = ::redis::Script::new(UPDATE)
            .key(self.shared.key(OPERATORS))
            .arg(&operator.name)
            .arg(json)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(updated == 1)
    }

    async fn disable_operator(&self, name: &str, at: Micros) -> Result<bool, StoreError> {
        let Some(mut op) = self.operator(name).await? else {
            return Ok(false);
        };
        op.disabled_at.get_or_insert(at);
        if !self.update_operator(op).await? {
            return Ok(false);
        }
        let mut conn = self.shared.conn()?;
        let set = self.sessions_of_key(name);
        let hashes: Vec<String> = conn.smembers(&set).await.map_err(unavailable)?;
        let mut pipe = ::redis::pipe();
        pipe.atomic();
        for h in &hashes {
            pipe.del(self.session_key(h)).ignore();
        }
        pipe.del(&set).ignore();
        pipe.query_async::<()>(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(true)
    }

    async fn create_session(&self, session: SessionRecord) -> Result<(), StoreError> {
        let mut conn = self.shared.conn()?;
        let key = self.session_key(&session.token_hash);
        let set = self.sessions_of_key(&session.operator);
        let json = encode(&session)?;
        let expire_ms = session.expires_at / 1000;
        ::redis::pipe()
            .atomic()
            .set(&key, json)
            .ignore()
            .cmd("PEXPIREAT")
            .arg(&key)
            .arg(expire_ms)
            .ignore()
            .sadd(&set, &session.token_hash)
            .ignore()
            .query_async::<()>(&mut conn)
            .await
            .map_err(unavailable)
    }

    async fn session(&self, token_hash: &str) -> Result<Option<SessionRecord>, StoreError> {
        let mut conn = self.shared.conn()?;
        let value: Option<String> = conn
            .get(self.session_key(token_hash))
            .await
            .map_err(unavailable)?;
        value.as_deref().map(decode).transpose()
    }

    async fn touch_session(&self, token_hash: &str, at: Micros) -> Result<(), StoreError> {
        let Some(mut session) = self.session(token_hash).await? else {
            return Ok(());
        };
        session.last_seen = session.last_seen.max(at);
        let mut conn = self.shared.conn()?;
        // KEEPTTL: the absolute end stays where it was; XX: a session
        // deleted meanwhile (logout) is not brought back.
        ::redis::cmd("SET")
            .arg(self.session_key(token_hash))
            .arg(encode(&session)?)
            .arg("KEEPTTL")
            .arg("XX")
            .query_async::<()>(&mut conn)
            .await
            .map_err(unavailable)
    }

    async fn delete_session(&self, token_hash: &str) -> Result<bool, StoreError> {
        let session = self.session(token_hash).await?;
        let mut conn = self.shared.conn()?;
        let removed: u64 = conn
            .del(self.session_key(token_hash))
            .await
            .map_err(unavailable)?;
        if let Some(s) = session {
            conn.srem::<_, _, ()>(self.sessions_of_key(&s.operator), token_hash)
                .await
                .map_err(unavailable)?;
        }
        Ok(removed > 0)
    }
}

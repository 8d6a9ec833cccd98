//! The start-up check that Redis keeps what a node acknowledges.
//!
//! A 202 means "stored"; on Redis that holds only with the append-only file,
//! and across a Redis or host crash only when it is fsynced on every write.
//! A node therefore reads `appendonly` and `appendfsync` before it serves and
//! refuses a Redis weaker than `[store] redis_durability` asks for. Managed
//! Redis services often disable `CONFIG`: then the persistence is unknown,
//! which counts as possibly lossy unless the operator accepts loss.

use ::redis::aio::ConnectionManager;
use std::collections::HashMap;

use crate::config::RedisDurability;

use super::super::StoreError;

/// What `CONFIG GET` showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Persistence {
    /// `appendonly` and `appendfsync` as Redis reported them.
    Known { aof: bool, fsync: String },
    /// `CONFIG GET` was refused or answered nothing useful (the reason).
    Unknown(String),
}

impl std::fmt::Display for Persistence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Persistence::Known { aof: false, .. } => f.write_str("appendonly no"),
            Persistence::Known { aof: true, fsync } => {
                write!(f, "appendonly yes, appendfsync {fsync}")
            }
            Persistence::Unknown(why) => write!(f, "unknown persistence (CONFIG GET: {why})"),
        }
    }
}

/// Reads the persistence settings of the Redis behind `conn`.
pub async fn observe(conn: &ConnectionManager) -> Persistence {
    let mut conn = conn.clone();
    let reply: Result<HashMap<String, String>, _> = ::redis::cmd("CONFIG")
        .arg("GET")
        .arg("appendonly")
        .arg("appendfsync")
        .query_async(&mut conn)
        .await;
    match reply {
        Err(e) => Persistence::Unknown(e.to_string()),
        Ok(map) => match (map.get("appendonly"), map.get("appendfsync")) {
            (Some(aof), Some(fsync)) => Persistence::Known {
                aof: aof.eq_ignore_ascii_case("yes"),
                fsync: fsync.to_ascii_lowercase(),
            },
            _ => Persistence::Unknown("no appendonly/appendfsync in the reply".into()),
        },
    }
}

/// Whether `seen` satisfies `wanted`; the error says what is missing and
/// how to fix it or accept it.
pub fn judge(wanted: RedisDurability, seen: &Persistence) -> Result<(), StoreError> {
    let enough = match (wanted, seen) {
        (RedisDurability::AcceptLoss, _) => true,
        (_, Persistence::Unknown(_)) | (_, Persistence::Known { aof: false, .. }) => false,
        (RedisDurability::Always, Persistence::Known { fsync, .. }) => fsync == "always",
        (RedisDurability::Everysec, Persistence::Known { fsync, .. }) => {
            fsync == "always" || fsync == "everysec"
        }
    };
    if enough {
        return Ok(());
    }
    let (needs, setting) = match wanted {
        RedisDurability::Always => ("appendonly yes and appendfsync always", "always"),
        _ => (
            "appendonly yes and appendfsync everysec or always",
            "everysec",
        ),
    };
    Err(StoreError::NotDurable(format!(
        "redis has {seen}, so acknowledged messages could be lost; \
         [store] redis_durability = \"{setting}\" needs {needs} \
         (set them in redis.conf, or set redis_durability = \"accept_loss\" to run anyway)"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(aof: bool, fsync: &str) -> Persistence {
        Persistence::Known {
            aof,
            fsync: fsync.into(),
        }
    }

    #[test]
    fn each_setting_accepts_exactly_what_it_promises() {
        use RedisDurability::*;
        let unknown = Persistence::Unknown("ERR unknown command".into());
        let cases = [
            (Always, known(true, "always"), true),
            (Always, known(true, "everysec"), false),
            (Always, known(false, "always"), false),
            (Always, unknown.clone(), false),
            (Everysec, known(true, "always"), true),
            (Everysec, known(true, "everysec"), true),
            (Everysec, known(true, "no"), false),
            (Everysec, known(false, "everysec"), false),
            (Everysec, unknown.clone(), false),
            (AcceptLoss, known(false, "no"), true),
            (AcceptLoss, unknown, true),
        ];
        for (wanted, seen, ok) in cases {
            assert_eq!(judge(wanted, &seen).is_ok(), ok, "{wanted:?} with {seen}");
        }
    }

    #[test]
    fn the_refusal_names_what_redis_has_and_the_way_out() {
        let err = judge(RedisDurability::Always, &known(false, "everysec")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("appendonly no"), "{text}");
        assert!(text.contains("appendfsync always"), "{text}");
        assert!(text.contains("accept_loss"), "{text}");
    }
}

//! Turning script replies back into Herald's types.
//!
//! A message lives in Redis as a hash: `j` holds the JSON of the message as
//! admitted, and short fields hold what changes afterwards (status, route
//! position, carrier ids, receipts, timestamps, parts of a long message taken
//! so far), so scripts update a message without decoding JSON. [`message`] puts the two back together.

use std::collections::HashMap;

use ::redis::Value;

use crate::model::{Message, Micros, Status};
use crate::store::StoreError;

pub(super) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

/// The elements of an array reply.
pub(super) fn array(v: Value) -> Result<Vec<Value>, StoreError> {
    match v {
        Value::Array(items) | Value::Set(items) => Ok(items),
        Value::Nil => Ok(Vec::new()),
        other => Err(corrupt(format_args!("expected an array, got {other:?}"))),
    }
}

/// An integer reply (Redis may send numbers as text).
pub(super) fn int(v: &Value) -> Result<i64, StoreError> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::BulkString(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| corrupt("expected an integer")),
        Value::SimpleString(s) => s.parse().map_err(|_| corrupt("expected an integer")),
        other => Err(corrupt(format_args!("expected an integer, got {other:?}"))),
    }
}

/// A text reply; `None` for nil (Lua `false`).
pub(super) fn text(v: Value) -> Result<Option<String>, StoreError> {
    match v {
        Value::Nil | Value::Boolean(false) => Ok(None),
        Value::BulkString(b) => String::from_utf8(b)
            .map(Some)
            .map_err(|_| corrupt("text is not UTF-8")),
        Value::SimpleString(s) => Ok(Some(s)),
        Value::Okay => Ok(Some("OK".into())),
        Value::Int(i) => Ok(Some(i.to_string())),
        other => Err(corrupt(format_args!("expected text, got {other:?}"))),
    }
}

/// A flat `HGETALL` reply as a map.
pub(super) fn hash(v: Value) -> Result<HashMap<String, String>, StoreError> {
    let items = array(v)?;
    let mut map = HashMap::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        if let (Some(k), Some(v)) = (text(k)?, text(v)?) {
            map.insert(k, v);
        }
    }
    Ok(map)
}

fn field<T: std::str::FromStr>(h: &HashMap<String, String>, name: &str) -> Option<T> {
    h.get(name).and_then(|v| v.parse().ok())
}

/// A message from its stored hash.
pub(super) fn message(h: &HashMap<String, String>) -> Result<Message, StoreError> {
    let json = h
        .get("j")
        .ok_or_else(|| corrupt("message record without data"))?;
    let mut m: Message = serde_json::from_str(json).map_err(corrupt)?;
    if let Some(seq) = field::<u64>(h, "sq") {
        m.seq = seq;
    }
    if let Some(st) = h.get("st") {
        m.status = st
            .parse::<Status>()
            .map_err(|()| corrupt(format_args!("unknown status {st:?}")))?;
    }
    if let Some(ri) = field::<u32>(h, "ri") {
        m.route_index = ri;
    }
    if let Some(cn) = h.get("cn") {
        m.connector = Some(cn.clone());
    }
    if let Some(sid) = h.get("sid") {
        m.smsc_message_ids = sid
            .split('\n')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
    }
    if let Some(pd) = field::<u32>(h, "pd") {
        m.parts_delivered = pd;
    }
    if let Some(pf) = field::<u32>(h, "pf") {
        m.parts_failed = pf;
    }
    if let Some(sb) = h.get("sb") {
        m.sealed_body = Some(sb.clone());
    }
    if let Some(er) = h.get("er") {
        m.error = Some(er.clone());
    }
    if let Some(sa) = field::<Micros>(h, "sa") {
        m.submitted_at = Some(sa);
    }
    if let Some(da) = field::<Micros>(h, "da") {
        m.done_at = Some(da);
    }
    if let Some(at) = field::<u32>(h, "at") {
        m.attempts = at;
    }
    m.partial = match h.get("pt") {
        Some(pt) => Some(serde_json::from_str(pt).map_err(corrupt)?),
        None => None,
    };
    Ok(m)
}

/// Messages from an array of stored hashes.
pub(super) fn messages(v: Value) -> Result<Vec<Message>, StoreError> {
    array(v)?
        .into_iter()
        .map(|item| message(&hash(item)?))
        .collect()
}

//! The optional hooks in `scripts/` and what their return values mean.
//!
//! `fn on_submit(msg)` runs before routing, on every message:
//!
//! | the script | decision |
//! |---|---|
//! | returns `()` | accept unchanged |
//! | returns `msg` after changing `msg.body`, `msg.from` or `msg.tags` | accept, rewritten |
//! | sets `msg.not_before = <Unix seconds>` and returns `msg` | accept, not sent before then (quiet hours) |
//! | calls `reject("reason")` | refused: 422 `rejected_by_route` |
//!
//! `to`, `class`, `encoding` and `segments` are read-only (encoding and
//! segments are recomputed from a new body). On a script error the message
//! is accepted unchanged: the hook must not take the gateway down with it.
//!
//! `fn on_inbound(mo)` gets `mo` with `from, to, body, connector, keyword`
//! (`keyword`: the body's first word, upper-cased) and returns `()` (default
//! handling), a webhook URL string, or a map with any of `webhook` (URL),
//! `reply` (text to answer the sender with) and `drop` (`true`: ignore it).
//!
//! `fn cap_area(area_desc)` maps a CAP `<areaDesc>` to recipient groups: a
//! group name, an array of names, or `()` for none.

use rhai::{Dynamic, ImmutableString, Map};

use super::value::{ScriptMessage, as_string, as_strings, describe, str_value};
use crate::connector::InboundMessage;
use crate::model::Micros;

/// What `on_submit` decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitDecision {
    /// Go on (the message may have been rewritten in place); hold it until
    /// `not_before` when set.
    Accept { not_before: Option<Micros> },
    /// Refuse the message with this reason.
    Reject(String),
}

/// The fields `on_submit` may change.
const WRITABLE: [&str; 4] = ["body", "from", "tags", "not_before"];

/// Whether read-only field `key` of the returned map still holds `msg`'s
/// value; `None` for a key the message map does not have.
fn read_only_unchanged(msg: &ScriptMessage, key: &str, v: &Dynamic) -> Option<bool> {
    let is = |s: &str| {
        v.read_lock::<ImmutableString>()
            .is_some_and(|x| x.as_str() == s)
    };
    Some(match key {
        "to" => is(&msg.to),
        "class" => is(msg.class.as_str()),
        "encoding" => is(msg.encoding.as_str()),
        "segments" => v.as_int().is_ok_and(|n| n == i64::from(msg.segments)),
        _ => return None,
    })
}

/// Applies what `on_submit` returned to `msg`; nothing changes on error.
pub(crate) fn apply_submit(
    value: &Dynamic,
    msg: &mut ScriptMessage,
    now: Micros,
) -> Result<Option<Micros>, String> {
    if value.is_unit() {
        return Ok(None);
    }
    let Some(map) = value.read_lock::<Map>() else {
        return Err(format!(
            "on_submit must return msg or (), not {}",
            describe(value)
        ));
    };
    for (key, v) in map.iter() {
        if WRITABLE.contains(&key.as_str()) {
            continue;
        }
        match read_only_unchanged(msg, key, v) {
            Some(true) => {}
            Some(false) => {
                return Err(format!(
                    "on_submit changed `msg.{key}`, which is read-only (it may change {})",
                    WRITABLE.join(", ")
                ));
            }
            None => {
                return Err(format!(
                    "on_submit set `msg.{key}`, which Herald does not know (it may change {})",
                    WRITABLE.join(", ")
                ));
            }
        }
    }
    let mut next = msg.clone();
    if let Some(body) = map.get("body") {
        let body = as_string(body, "msg.body")?;
        if body.is_empty() {
            return Err("on_submit set an empty msg.body".into());
        }
        if body != next.body {
            next.set_body(body);
        }
    }
    if let Some(from) = map.get("from") {
        next.from = if from.is_unit() {
            None
        } else {
            Some(as_string(from, "msg.from")?)
        };
    }
    if let Some(tags) = map.get("tags") {
        next.tags = if tags.is_unit() {
            Vec::new()
        } else {
            as_strings(tags, "msg.tags")?
        };
    }
    let not_before = match map.get("not_before") {
        None => None,
        Some(v) if v.is_unit() => None,
        Some(v) => {
            let secs = v.as_int().map_err(|_| {
                format!(
                    "msg.not_before must be Unix seconds (an integer), not {}",
                    describe(v)
                )
            })?;
            let at = secs
                .checked_mul(1_000_000)
                .ok_or_else(|| format!("msg.not_before {secs} is out of range"))?;
            (at > now).then_some(at)
        }
    };
    *msg = next;
    Ok(not_before)
}

/// What `on_inbound` decided for a mobile-originated message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InboundDecision {
    /// POST the message to this http(s) URL.
    pub webhook: Option<String>,
    /// Answer the sender with this text.
    pub reply: Option<String>,
    /// Ignore the message (no webhook, no reply, no default handling).
    pub drop: bool,
}

/// Longest automatic reply.
const MAX_REPLY: usize = 1_600;

/// The map `on_inbound` receives.
pub(crate) fn inbound_map(mo: &InboundMessage) -> Map {
    let keyword = mo
        .body
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_uppercase();
    let mut m = Map::new();
    m.insert("from".into(), str_value(&mo.from));
    m.insert("to".into(), str_value(&mo.to));
    m.insert("body".into(), str_value(&mo.body));
    m.insert("connector".into(), str_value(&mo.connector));
    m.insert(
        "keyword".into(),
        Dynamic::from(ImmutableString::from(keyword)),
    );
    m
}

/// Reads what `on_inbound` returned.
pub(crate) fn inbound_decision(value: &Dynamic) -> Result<InboundDecision, String> {
    if value.is_unit() {
        return Ok(InboundDecision::default());
    }
    if value.is_string() {
        return Ok(InboundDecision {
            webhook: Some(webhook_url(&as_string(value, "the webhook")?)?),
            ..InboundDecision::default()
        });
    }
    let Some(map) = value.read_lock::<Map>() else {
        return Err(format!(
            "on_inbound must return (), a webhook URL or a map of webhook/reply/drop, not {}",
            describe(value)
        ));
    };
    let mut d = InboundDecision::default();
    for (key, v) in map.iter() {
        match key.as_str() {
            "webhook" if !v.is_unit() => d.webhook = Some(webhook_url(&as_string(v, "webhook")?)?),
            "reply" if !v.is_unit() => {
                let reply = as_string(v, "reply")?;
                if reply.is_empty() || reply.chars().count() > MAX_REPLY {
                    return Err(format!("reply must be 1 to {MAX_REPLY} characters"));
                }
                d.reply = Some(reply);
            }
            "drop" => {
                d.drop = v
                    .as_bool()
                    .map_err(|_| format!("drop must be true or false, not {}", describe(v)))?;
            }
            "webhook" | "reply" => {}
            other => {
                return Err(format!(
                    "on_inbound returned key `{other}`; it may return webhook, reply and drop"
                ));
            }
        }
    }
    Ok(d)
}

fn webhook_url(url: &str) -> Result<String, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("webhook \"{url}\": {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!("webhook \"{url}\" is not an http(s) URL"));
    }
    Ok(url.to_string())
}

/// Most groups one area maps to.
const MAX_GROUPS: usize = 100;

/// Reads what `cap_area` returned: group names, deduplicated.
pub(crate) fn groups(value: &Dynamic) -> Result<Vec<String>, String> {
    if value.is_unit() {
        return Ok(Vec::new());
    }
    let names = as_strings(value, "cap_area's result")?;
    if names.len() > MAX_GROUPS {
        return Err(format!(
            "cap_area returned {} groups; at most {MAX_GROUPS}",
            names.len()
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for name in names {
        if !crate::group::valid_name(&name) {
            return Err(format!("\"{name}\" is not a group name"));
        }
        if !out.contains(&name) {
            out.push(name);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Class;

    fn msg() -> ScriptMessage {
        ScriptMessage::new("+447911123456", Class::Marketing, "hello", None, vec![])
    }

    #[test]
    fn on_submit_may_rewrite_body_from_tags_and_defer() {
        let mut m = msg();
        let mut map = m.submit_map();
        map.insert("body".into(), str_value("héllo €"));
        map.insert("from".into(), str_value("Shop"));
        map.insert("tags".into(), Dynamic::from_array(vec![str_value("x")]));
        map.insert("not_before".into(), Dynamic::from_int(2_000));
        let at = apply_submit(&Dynamic::from_map(map), &mut m, 1_000_000_000).expect("ok");
        assert_eq!(at, Some(2_000_000_000));
        assert_eq!(m.body, "héllo €");
        assert_eq!(m.from.as_deref(), Some("Shop"));
        assert_eq!(m.tags, vec!["x".to_string()]);
    }

    #[test]
    fn on_submit_may_not_change_the_recipient() {
        let mut m = msg();
        let mut map = m.submit_map();
        map.insert("to".into(), str_value("+15550100"));
        let err = apply_submit(&Dynamic::from_map(map), &mut m, 0).unwrap_err();
        assert!(err.contains("msg.to"), "{err}");
        assert_eq!(m, msg(), "nothing applied on error");

        // Every read-only field, changed (even to the same text as another
        // type), and a key Herald does not know.
        for (key, value, what) in [
            ("class", str_value("emergency"), "read-only"),
            ("encoding", str_value("ucs2"), "read-only"),
            ("segments", Dynamic::from_int(2), "read-only"),
            ("segments", str_value("1"), "read-only"),
            ("colour", str_value("red"), "does not know"),
        ] {
            let mut map = m.submit_map();
            map.insert(key.into(), value);
            let err = apply_submit(&Dynamic::from_map(map), &mut m, 0).unwrap_err();
            assert!(
                err.contains(&format!("msg.{key}")) && err.contains(what),
                "{err}"
            );
        }
        // Returned unchanged: accepted as it is.
        let unchanged = Dynamic::from_map(m.submit_map());
        assert_eq!(apply_submit(&unchanged, &mut m, 0), Ok(None));
        assert_eq!(m, msg());
    }

    #[test]
    fn a_past_not_before_is_no_deferral() {
        let mut m = msg();
        let mut map = m.submit_map();
        map.insert("not_before".into(), Dynamic::from_int(1));
        assert_eq!(
            apply_submit(&Dynamic::from_map(map), &mut m, 5_000_000),
            Ok(None)
        );
    }

    #[test]
    fn inbound_decisions_are_urls_or_maps() {
        let d = inbound_decision(&str_value("https://example.com/stop")).expect("url");
        assert_eq!(d.webhook.as_deref(), Some("https://example.com/stop"));
        let mut map = Map::new();
        map.insert("reply".into(), str_value("Thanks"));
        map.insert("drop".into(), Dynamic::from_bool(false));
        let d = inbound_decision(&Dynamic::from_map(map)).expect("map");
        assert_eq!(d.reply.as_deref(), Some("Thanks"));
        assert!(inbound_decision(&str_value("ftp://x")).is_err());
    }

    #[test]
    fn cap_area_returns_valid_group_names() {
        assert_eq!(groups(&Dynamic::UNIT), Ok(vec![]));
        assert_eq!(groups(&str_value("north")), Ok(vec!["north".to_string()]));
        assert!(groups(&str_value("no spaces")).is_err());
    }
}

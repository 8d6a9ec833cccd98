//! Plain data in and out of scripts: the message a hook sees, JSON template
//! variables as Rhai values, and reading the maps hooks return.

use std::sync::LazyLock;

use rhai::{Array, Dynamic, ImmutableString, Map};

use crate::model::{Class, Encoding};

/// A message as `route(msg)` and `on_submit(msg)` see it .
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptMessage {
    /// E.164, e.g. `+447911123456`.
    pub to: String,
    pub class: Class,
    pub body: String,
    pub encoding: Encoding,
    pub segments: u32,
    pub from: Option<String>,
    pub tags: Vec<String>,
}

impl ScriptMessage {
    /// A message whose encoding and segments are computed from `body`.
    pub fn new(
        to: impl Into<String>,
        class: Class,
        body: impl Into<String>,
        from: Option<String>,
        tags: Vec<String>,
    ) -> Self {
        let body = body.into();
        let encoded = crate::text::analyse(&body);
        ScriptMessage {
            to: to.into(),
            class,
            body,
            encoding: encoded.encoding,
            segments: encoded.segments,
            from,
            tags,
        }
    }

    /// Replaces the body, recomputing encoding and segments.
    pub fn set_body(&mut self, body: String) {
        let encoded = crate::text::analyse(&body);
        self.body = body;
        self.encoding = encoded.encoding;
        self.segments = encoded.segments;
    }

    /// The Rhai object map: `to, class, body, encoding, segments, from, tags`
    /// (`from` is `()` when unset).
    pub(crate) fn to_map(&self) -> Map {
        self.map_with(false)
    }

    /// [`ScriptMessage::to_map`] with `not_before: ()` too (what `on_submit`
    /// gets).
    pub(crate) fn submit_map(&self) -> Map {
        self.map_with(true)
    }

    /// Every message pays for this map on every hook call, so it is a clone
    /// of a map with the keys already in place whose values are then filled
    /// in key order: no key is searched for or allocated.
    fn map_with(&self, not_before: bool) -> Map {
        let mut map = if not_before {
            SUBMIT_PROTOTYPE.clone()
        } else {
            PROTOTYPE.clone()
        };
        let values = [
            str_value(&self.body),
            Dynamic::from(class_name(self.class)),
            Dynamic::from(encoding_name(self.encoding)),
            self.from.as_deref().map_or(Dynamic::UNIT, str_value),
        ]
        .into_iter()
        .chain(not_before.then_some(Dynamic::UNIT))
        .chain([
            Dynamic::from_int(self.segments.into()),
            Dynamic::from_array(self.tags.iter().map(|t| str_value(t)).collect()),
            str_value(&self.to),
        ]);
        for (slot, value) in map.values_mut().zip(values) {
            *slot = value;
        }
        map
    }
}

/// The keys of a message map, in the map's (sorted) order.
const KEYS: [&str; 7] = [
    "body", "class", "encoding", "from", "segments", "tags", "to",
];

static PROTOTYPE: LazyLock<Map> = LazyLock::new(|| prototype(&KEYS));
static SUBMIT_PROTOTYPE: LazyLock<Map> = LazyLock::new(|| {
    let mut keys = KEYS.to_vec();
    keys.push("not_before");
    keys.sort_unstable();
    prototype(&keys)
});

fn prototype(keys: &[&str]) -> Map {
    keys.iter().map(|k| ((*k).into(), Dynamic::UNIT)).collect()
}

/// Class names as shared Rhai strings: no allocation per message.
fn class_name(class: Class) -> ImmutableString {
    static NAMES: LazyLock<[ImmutableString; 4]> =
        LazyLock::new(|| Class::ALL.map(|c| ImmutableString::from(c.as_str())));
    NAMES[class as usize].clone()
}

/// Encoding names as shared Rhai strings.
fn encoding_name(encoding: Encoding) -> ImmutableString {
    static GSM7: LazyLock<ImmutableString> =
        LazyLock::new(|| ImmutableString::from(Encoding::Gsm7.as_str()));
    static UCS2: LazyLock<ImmutableString> =
        LazyLock::new(|| ImmutableString::from(Encoding::Ucs2.as_str()));
    match encoding {
        Encoding::Gsm7 => GSM7.clone(),
        Encoding::Ucs2 => UCS2.clone(),
    }
}

pub(crate) fn str_value(s: &str) -> Dynamic {
    Dynamic::from(ImmutableString::from(s))
}

/// Deepest JSON nesting converted; deeper values become `()`. serde_json
/// already refuses more than 128 levels; templates need a handful.
const MAX_JSON_DEPTH: usize = 32;

/// A JSON value as a Rhai value: numbers become integers when they fit,
/// objects become maps, `null` becomes `()`.
pub(crate) fn json_to_dynamic(v: &serde_json::Value) -> Dynamic {
    json_at(v, 0)
}

fn json_at(v: &serde_json::Value, depth: usize) -> Dynamic {
    use serde_json::Value;
    if depth > MAX_JSON_DEPTH {
        return Dynamic::UNIT;
    }
    match v {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => Dynamic::from_bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Dynamic::from_int(i),
            None => Dynamic::from_float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => str_value(s),
        Value::Array(items) => Dynamic::from_array(
            items
                .iter()
                .map(|i| json_at(i, depth + 1))
                .collect::<Array>(),
        ),
        Value::Object(map) => Dynamic::from_map(
            map.iter()
                .map(|(k, v)| (k.as_str().into(), json_at(v, depth + 1)))
                .collect::<Map>(),
        ),
    }
}

/// A short description of a returned value for error messages.
pub(crate) fn describe(v: &Dynamic) -> String {
    if v.is_unit() {
        "()".to_string()
    } else if let Some(s) = v.read_lock::<ImmutableString>() {
        let shown: String = s.chars().take(40).collect();
        format!("the string \"{shown}\"")
    } else {
        format!("a value of type {}", v.type_name())
    }
}

/// A string, or an error naming what it was instead.
pub(crate) fn as_string(v: &Dynamic, what: &str) -> Result<String, String> {
    v.read_lock::<ImmutableString>()
        .map(|s| s.to_string())
        .ok_or_else(|| format!("{what} must be a string, not {}", describe(v)))
}

/// An array of strings (or one string), or an error naming the problem.
pub(crate) fn as_strings(v: &Dynamic, what: &str) -> Result<Vec<String>, String> {
    if let Some(s) = v.read_lock::<ImmutableString>() {
        return Ok(vec![s.to_string()]);
    }
    let Some(items) = v.read_lock::<Array>() else {
        return Err(format!(
            "{what} must be a string or an array of strings, not {}",
            describe(v)
        ));
    };
    items
        .iter()
        .map(|item| as_string(item, &format!("each of {what}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_numbers_become_integers_when_they_fit() {
        let v = json_to_dynamic(&serde_json::json!({"n": 6, "x": 1.5, "s": "a", "z": null}));
        let m = v.read_lock::<Map>().expect("map");
        assert_eq!(m["n"].as_int(), Ok(6));
        assert_eq!(m["x"].as_float(), Ok(1.5));
        assert_eq!(m["s"].clone().into_string().as_deref(), Ok("a"));
        assert!(m["z"].is_unit());
    }

    #[test]
    fn message_maps_carry_the_spec_fields() {
        let msg = ScriptMessage::new("+447911123456", Class::Otp, "hi", None, vec!["a".into()]);
        let m = msg.to_map();
        for key in [
            "to", "class", "body", "encoding", "segments", "from", "tags",
        ] {
            assert!(m.contains_key(key), "{key}");
        }
        assert!(m["from"].is_unit());
        assert_eq!(m["segments"].as_int(), Ok(1));
    }

    #[test]
    fn message_maps_hold_each_value_under_its_own_key() {
        let msg = ScriptMessage::new(
            "+447911123456",
            Class::Marketing,
            "✓ done",
            Some("Herald".into()),
            vec!["a".into(), "b".into()],
        );
        let s = |m: &Map, k: &str| m[k].to_string();
        for (m, extra) in [(msg.to_map(), false), (msg.submit_map(), true)] {
            assert_eq!(m.len(), KEYS.len() + usize::from(extra));
            assert_eq!(s(&m, "to"), "+447911123456");
            assert_eq!(s(&m, "class"), "marketing");
            assert_eq!(s(&m, "body"), "✓ done");
            assert_eq!(s(&m, "encoding"), "ucs2");
            assert_eq!(m["segments"].as_int(), Ok(1));
            assert_eq!(s(&m, "from"), "Herald");
            assert_eq!(s(&m, "tags"), r#"["a", "b"]"#);
            assert_eq!(m.get("not_before").is_some_and(Dynamic::is_unit), extra);
        }
    }
}

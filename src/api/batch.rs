//! `POST /v1/messages/batch` bodies: a bounded parser and an in-flight budget.
//!
//! The parser walks the `messages` array one item at a time (a serde
//! sequence visitor over borrowed raw JSON), turning each item into a
//! [`SendRequest`] or its error, and stops at item [`MAX_BATCH`] + 1 with
//! 413: a body of millions of tiny items never becomes millions of values.
//! An item larger than `http.max_body_bytes` (the limit of one
//! `POST /v1/messages`) is refused by index, unparsed.
//!
//! The budget bounds the bytes of batch bodies being read and admitted at
//! once (`http.max_batch_bytes_in_flight`). A batch is charged its
//! `Content-Length` (a body without one is charged `http.max_batch_body_bytes`)
//! *before* its body is read; when the budget cannot cover it, the request is
//! answered 503 `unavailable` with `Retry-After: 1` at once, its body unread.
//! Shedding rather than queueing keeps a caller's timeout its own and a
//! burst of large batches from holding connections and memory while waiting.

use std::cell::Cell;
use std::fmt;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, header};
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::AppState;
use super::error::{ApiError, body_rejection, check_object, json_error, require_json};
use super::request::SendRequest;

/// Most messages in one batch.
pub const MAX_BATCH: usize = 10_000;

/// Budget units are KiB: a `u32` of permits covers 4 TiB.
const UNIT: usize = 1024;

/// One batch item: the request, or why it cannot be one.
pub type Item = Result<SendRequest, ApiError>;

/// Parses a batch body `{"messages": [...]}`.
///
/// # Errors
/// 400 for invalid JSON, 413 past [`MAX_BATCH`] items, 422 for a body that
/// is not a batch (wrong type, unknown or missing field, no items).
/// Problems of single items are returned in their place, not as errors.
pub fn parse_batch(bytes: &[u8], max_item_bytes: usize) -> Result<Vec<Item>, ApiError> {
    check_object(bytes)?;
    let too_many = Cell::new(false);
    let in_messages = Cell::new(false);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = BatchSeed {
        too_many: &too_many,
        in_messages: &in_messages,
        max_item_bytes,
    }
    .deserialize(&mut de)
    .and_then(|items| de.end().map(|()| items));
    match parsed {
        Ok(items) if items.is_empty() => Err(ApiError::invalid(
            "invalid_field",
            "`messages` must hold at least one message",
        )),
        Ok(items) => Ok(items),
        Err(_) if too_many.get() => Err(ApiError::TooLarge(format!(
            "a batch holds at most {MAX_BATCH} messages; this one has more"
        ))),
        Err(e) => Err(match e.classify() {
            serde_json::error::Category::Data => {
                let msg = super::error::strip_position(&e.to_string());
                if in_messages.get() {
                    ApiError::invalid("invalid_field", format!("`messages`: {msg}"))
                } else {
                    ApiError::invalid("invalid_request", msg)
                }
            }
            _ => ApiError::Malformed(format!("body is not valid JSON: {e}")),
        }),
    }
}

/// One item from its raw JSON text.
fn item(raw: &RawValue, max_item_bytes: usize) -> Item {
    let text = raw.get();
    if text.len() > max_item_bytes {
        return Err(ApiError::TooLarge(format!(
            "this message is {} bytes of JSON; one message may have at most {max_item_bytes}",
            text.len()
        )));
    }
    let mut de = serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize::<_, SendRequest>(&mut de).map_err(|e| json_error(&e))
}

/// The top-level object: exactly one field, `messages`.
struct BatchSeed<'a> {
    too_many: &'a Cell<bool>,
    in_messages: &'a Cell<bool>,
    max_item_bytes: usize,
}

impl<'de> DeserializeSeed<'de> for BatchSeed<'_> {
    type Value = Vec<Item>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Vec<Item>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for BatchSeed<'_> {
    type Value = Vec<Item>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object with a `messages` array")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<Item>, A::Error> {
        let mut messages = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key != "messages" {
                return Err(de::Error::unknown_field(&key, &["messages"]));
            }
            if messages.is_some() {
                return Err(de::Error::duplicate_field("messages"));
            }
            self.in_messages.set(true);
            messages = Some(map.next_value_seed(ItemsSeed {
                too_many: self.too_many,
                max_item_bytes: self.max_item_bytes,
            })?);
            self.in_messages.set(false);
        }
        messages.ok_or_else(|| de::Error::missing_field("messages"))
    }
}

/// The `messages` array, bounded.
struct ItemsSeed<'a> {
    too_many: &'a Cell<bool>,
    max_item_bytes: usize,
}

impl<'de> DeserializeSeed<'de> for ItemsSeed<'_> {
    type Value = Vec<Item>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Vec<Item>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ItemsSeed<'_> {
    type Value = Vec<Item>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of messages")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Item>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MAX_BATCH));
        while let Some(raw) = seq.next_element::<&'de RawValue>()? {
            if items.len() == MAX_BATCH {
                self.too_many.set(true);
                return Err(de::Error::custom(format_args!(
                    "more than {MAX_BATCH} messages"
                )));
            }
            items.push(item(raw, self.max_item_bytes));
        }
        Ok(items)
    }
}

/// Bytes of batch bodies admitted at once; see the module docs.
pub struct BatchBudget {
    permits: Arc<Semaphore>,
    /// Largest batch body (`http.max_batch_body_bytes`).
    max_body: usize,
}

impl BatchBudget {
    /// A budget of `total` bytes for bodies of at most `max_body` bytes.
    pub fn new(total: usize, max_body: usize) -> Self {
        let units = u32::try_from(total.div_ceil(UNIT)).unwrap_or(u32::MAX);
        BatchBudget {
            permits: Arc::new(Semaphore::new(units as usize)),
            max_body,
        }
    }

    /// Reserves room for the body announced by `headers`, or refuses at once.
    ///
    /// # Errors
    /// 413 when `Content-Length` is over the body limit; 503 when the budget
    /// is spent by batches in flight.
    pub fn try_reserve(&self, headers: &HeaderMap) -> Result<OwnedSemaphorePermit, ApiError> {
        let announced = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let bytes = match announced {
            Some(n) if n > self.max_body as u64 => {
                return Err(ApiError::TooLarge("request body is too large".into()));
            }
            // Fits in usize: it is at most max_body.
            Some(n) => usize::try_from(n).unwrap_or(self.max_body),
            None => self.max_body,
        };
        let units = u32::try_from(bytes.div_ceil(UNIT).max(1)).unwrap_or(u32::MAX);
        self.permits
            .clone()
            .try_acquire_many_owned(units)
            .map_err(|_| ApiError::Busy {
                retry_after: 1,
                message: "too many large batches are being admitted right now; retry shortly"
                    .into(),
            })
    }
}

/// A batch body, read once the budget covers it. The reservation is held
/// until the handler is done with the batch.
pub struct BatchBody {
    pub bytes: Bytes,
    _reserved: OwnedSemaphorePermit,
}

impl FromRequest<AppState> for BatchBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        require_json(req.headers())?;
        let reserved = state.batch_budget.try_reserve(req.headers())?;
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(body_rejection)?;
        Ok(BatchBody {
            bytes,
            _reserved: reserved,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderValue, StatusCode};

    fn item_json(n: usize) -> String {
        format!(r#"{{"to":"+447700900{:03}","body":"m"}}"#, n % 1000)
    }

    #[test]
    fn items_keep_their_errors_by_index() {
        let body = format!(
            r#"{{"messages":[{},{{"to":1}},0,{{"to":"+447700900001","body":"x","colour":"red"}}]}}"#,
            item_json(0)
        );
        let items = parse_batch(body.as_bytes(), 65_536).expect("batch");
        assert_eq!(items.len(), 4);
        assert!(items[0].is_ok());
        let codes: Vec<String> = items[1..]
            .iter()
            .map(|i| {
                i.as_ref()
                    .map_err(ApiError::code)
                    .err()
                    .unwrap_or("ok")
                    .to_string()
            })
            .collect();
        assert_eq!(codes, ["invalid_field", "invalid_request", "invalid_field"]);
        let colour = items[3]
            .as_ref()
            .err()
            .map(ToString::to_string)
            .unwrap_or_default();
        assert!(
            colour.contains("colour") && !colour.contains("line 1"),
            "{colour}"
        );
    }

    #[test]
    fn the_item_after_the_limit_stops_parsing_with_413() {
        let items: Vec<String> = (0..=MAX_BATCH).map(item_json).collect();
        let body = format!(r#"{{"messages":[{}]}}"#, items.join(","));
        let e = parse_batch(body.as_bytes(), 65_536).expect_err("too many");
        assert_eq!(e.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let ok: Vec<String> = (0..MAX_BATCH).map(item_json).collect();
        let body = format!(r#"{{"messages":[{}]}}"#, ok.join(","));
        assert_eq!(
            parse_batch(body.as_bytes(), 65_536).map(|v| v.len()).ok(),
            Some(MAX_BATCH)
        );
    }

    #[test]
    fn a_flood_of_zeros_is_413_even_with_broken_json_after_the_limit() {
        let mut body = String::from(r#"{"messages":["#);
        body.push_str(&"0,".repeat(MAX_BATCH + 1));
        body.push_str("this is not json");
        let e = parse_batch(body.as_bytes(), 65_536).expect_err("too many");
        assert_eq!(e.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn the_shape_is_checked() {
        for (body, status) in [
            (r#"{"messages":{}}"#, StatusCode::UNPROCESSABLE_ENTITY),
            (r#"{"messages":[]}"#, StatusCode::UNPROCESSABLE_ENTITY),
            (r#"{}"#, StatusCode::UNPROCESSABLE_ENTITY),
            (r#"{"messages":[],"x":1}"#, StatusCode::UNPROCESSABLE_ENTITY),
            (r#"{"messages":[{"to":}]}"#, StatusCode::BAD_REQUEST),
            (r#"{"messages":[0]} trailing"#, StatusCode::BAD_REQUEST),
            ("[]", StatusCode::UNPROCESSABLE_ENTITY),
            ("", StatusCode::BAD_REQUEST),
        ] {
            let e = parse_batch(body.as_bytes(), 65_536).expect_err(body);
            assert_eq!(e.status(), status, "{body}: {e}");
        }
        let e = parse_batch(br#"{"messages":{}}"#, 65_536).expect_err("map");
        assert!(e.to_string().contains("`messages`"), "{e}");
    }

    #[test]
    fn an_item_over_the_single_message_limit_is_refused_by_index() {
        let big = format!(r#"{{"to":"+447700900001","body":"{}"}}"#, "a".repeat(2000));
        let body = format!(r#"{{"messages":[{},{big}]}}"#, item_json(0));
        let items = parse_batch(body.as_bytes(), 1024).expect("batch");
        assert!(items[0].is_ok());
        assert_eq!(
            items[1].as_ref().err().map(ApiError::status),
            Some(StatusCode::PAYLOAD_TOO_LARGE)
        );
    }

    #[test]
    fn the_budget_sheds_what_it_cannot_cover_and_refills() {
        let budget = BatchBudget::new(10 * 1024, 8 * 1024);
        let len = |n: usize| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
            h
        };
        let first = budget.try_reserve(&len(6 * 1024)).expect("fits");
        let e = budget.try_reserve(&len(6 * 1024)).expect_err("over budget");
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            budget.try_reserve(&len(1024)).is_ok(),
            "small ones still fit"
        );
        drop(first);
        assert!(budget.try_reserve(&len(6 * 1024)).is_ok());
        let e = budget
            .try_reserve(&len(9 * 1024))
            .expect_err("over the limit");
        assert_eq!(e.status(), StatusCode::PAYLOAD_TOO_LARGE);
        // Without a length, the largest body is reserved.
        let unknown = budget.try_reserve(&HeaderMap::new()).expect("fits alone");
        assert!(budget.try_reserve(&len(4 * 1024)).is_err());
        drop(unknown);
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any bytes get an answer: items or an error, never a panic.
        #[test]
        fn any_bytes_are_answered(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_batch(&bytes, 1024);
        }

        /// Batch-shaped JSON with arbitrary items: every item is answered
        /// in its place.
        #[test]
        fn every_item_is_answered_in_place(items in proptest::collection::vec(prop_oneof![
            Just(serde_json::json!({"to": "+447400123456", "body": "hi"})),
            Just(serde_json::json!({"to": 5})),
            Just(serde_json::json!("text")),
            Just(serde_json::json!({"to": "+447400123456", "body": "x", "extra": 1})),
            any::<String>().prop_map(|s| serde_json::json!({"to": s, "body": s})),
        ], 1..20)) {
            let body = serde_json::to_vec(&serde_json::json!({ "messages": items })).expect("json");
            let parsed = parse_batch(&body, 4096).expect("a batch");
            prop_assert_eq!(parsed.len(), items.len());
        }
    }
}

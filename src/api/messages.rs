//! `/v1/messages`: send one, send a batch, read one.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::batch::{BatchBody, parse_batch};
use super::error::{ApiError, ApiJson, ErrorBody, ErrorDetail};
use super::request::SendRequest;
use crate::auth::{Principal, Scope};
use crate::model::{Message, MessageId, now_micros};
use crate::store::Admission;
use crate::view::MessageView;

pub use super::batch::MAX_BATCH;

/// A message was accepted (or an idempotent replay of an earlier one).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Accepted {
    pub id: String,
    /// `queued` when new; the current status on an idempotent replay.
    pub status: String,
    pub class: String,
    /// `gsm7` or `ucs2`.
    pub encoding: String,
    pub segments: u32,
}

impl Accepted {
    fn from_message(m: &Message) -> Self {
        Accepted {
            id: m.id.to_string(),
            status: m.visible_status(now_micros()).as_str().to_string(),
            class: m.class.as_str().to_string(),
            encoding: m.encoding.as_str().to_string(),
            segments: m.segments,
        }
    }
}

/// `POST /v1/messages/batch` body (its schema; [`parse_batch`] reads it).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// 1 to 10,000 messages, each like `POST /v1/messages`.
    #[schema(value_type = Vec<SendRequest>, min_items = 1, max_items = 10000)]
    pub messages: Vec<serde_json::Value>,
}

/// One accepted batch item.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BatchAccepted {
    pub index: usize,
    #[serde(flatten)]
    pub message: Accepted,
}

/// One refused batch item.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BatchRejected {
    pub index: usize,
    pub error: ErrorDetail,
}

/// `POST /v1/messages/batch` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BatchResponse {
    pub accepted: Vec<BatchAccepted>,
    pub rejected: Vec<BatchRejected>,
}

/// Send one message.
#[utoipa::path(
    post, path = "/v1/messages", tag = "messages",
    request_body = SendRequest,
    responses(
        (status = 202, description = "Stored and queued", body = Accepted),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or bad API key", body = ErrorBody),
        (status = 403, description = "Scope missing", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid field", body = ErrorBody),
        (status = 429, description = "Recipient rate limit", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn send(
    State(app): State<AppState>,
    who: Principal,
    ApiJson(req): ApiJson<SendRequest>,
) -> Result<Response, ApiError> {
    who.require(Scope::Send)?;
    app.ensure_accepting()?;
    let admitted = app.admitter.admit_one(&who, req.into_outgoing()?).await?;
    let mut headers = HeaderMap::new();
    if matches!(admitted, Admission::Existing(_)) {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    let m = admitted
        .message()
        .ok_or_else(|| ApiError::Internal("admission without a message".into()))?;
    tracing::debug!(message_id = %m.id, class = %m.class, "accepted");
    Ok((
        StatusCode::ACCEPTED,
        headers,
        Json(Accepted::from_message(m)),
    )
        .into_response())
}

/// Send up to 10,000 messages in one request.
#[utoipa::path(
    post, path = "/v1/messages/batch", tag = "messages",
    request_body = BatchRequest,
    responses(
        (status = 202, description = "Valid items stored; invalid ones listed by index", body = BatchResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or bad API key", body = ErrorBody),
        (status = 403, description = "Scope missing", body = ErrorBody),
        (status = 413, description = "More than 10,000 items or body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Not a batch", body = ErrorBody),
        (status = 503, description = "Store unavailable, or too many batch bytes in flight (with Retry-After)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn send_batch(
    State(app): State<AppState>,
    who: Principal,
    body: BatchBody,
) -> Result<(StatusCode, Json<BatchResponse>), ApiError> {
    who.require(Scope::Send)?;
    app.ensure_accepting()?;
    let items = parse_batch(&body.bytes, app.config.http.max_body_bytes)?;
    // Items that do not even parse keep their error in place; the rest are
    // admitted together (one store write).
    let mut results: Vec<Option<Result<Admission, ApiError>>> = Vec::with_capacity(items.len());
    let mut valid = Vec::with_capacity(items.len());
    let mut valid_index = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        match item.and_then(|req| req.into_outgoing().map_err(ApiError::from)) {
            Ok(out) => {
                valid.push(out);
                valid_index.push(index);
                results.push(None);
            }
            Err(e) => results.push(Some(Err(e))),
        }
    }
    if !valid.is_empty() {
        let admitted = app.admitter.admit_batch(&who, valid).await?;
        for (index, a) in valid_index.into_iter().zip(admitted) {
            results[index] = Some(a.map_err(ApiError::from));
        }
    }
    let mut response = BatchResponse {
        accepted: Vec::new(),
        rejected: Vec::new(),
    };
    for (index, result) in results.into_iter().enumerate() {
        let Some(result) = result else {
            continue;
        };
        match result {
            Ok(a) => match a.message() {
                Some(m) => response.accepted.push(BatchAccepted {
                    index,
                    message: Accepted::from_message(m),
                }),
                None => response.rejected.push(BatchRejected {
                    index,
                    error: ApiError::Internal("admission without a message".into()).detail(),
                }),
            },
            Err(e) => response.rejected.push(BatchRejected {
                index,
                error: e.detail(),
            }),
        }
    }
    Ok((StatusCode::ACCEPTED, Json(response)))
}

/// Read a message and its delivery progress.
#[utoipa::path(
    get, path = "/v1/messages/{id}", tag = "messages",
    params(("id" = String, Path, description = "Message id")),
    responses(
        (status = 200, description = "The message", body = MessageView),
        (status = 401, description = "Missing or bad API key", body = ErrorBody),
        (status = 403, description = "Scope missing", body = ErrorBody),
        (status = 404, description = "No such message", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(app): State<AppState>,
    who: Principal,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<MessageView>, ApiError> {
    who.require(Scope::Send)?;
    // An id that does not even decode (e.g. `%FF`) names no message.
    let Ok(Path(id)) = id else {
        return Err(ApiError::NotFound("no message with that id".into()));
    };
    let not_found = || ApiError::NotFound(format!("no message with id '{id}'"));
    let parsed: MessageId = id.parse().map_err(|()| not_found())?;
    let m = app.store.message(parsed).await?.ok_or_else(not_found)?;
    if m.owner != who.owner && !who.scopes.allows(Scope::Admin) {
        return Err(not_found());
    }
    Ok(Json(MessageView::from_message(&m)))
}

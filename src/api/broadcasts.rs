//! `/v1/broadcasts` (scope `broadcast`): create, approve, reject, cancel,
//! read, list, and follow a broadcast as Server-Sent Events. Every rule
//! lives in [`crate::broadcast`]; this module translates.

use std::convert::Infallible;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::error::ApiJson;
use super::error::{ApiError, ErrorBody};
use super::request::content_of;
use crate::auth::{Principal, Scope};
use crate::broadcast::{Actor, BroadcastError, BroadcastRequest, BroadcastView};
use crate::model::Class;
use crate::store::broadcast::Mode;

/// Largest page of the history.
pub const MAX_PAGE: usize = 500;

/// `POST /v1/broadcasts` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    /// Shown in the history and the console; not sent.
    pub title: String,
    /// The text; or `template` + `vars`.
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub template: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub vars: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    pub locale: Option<String>,
    /// `emergency` (default) or `marketing`.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "emergency")]
    pub class: Option<Class>,
    /// Numbers, E.164; up to 10,000 (use groups for more).
    #[serde(default)]
    pub recipients: Vec<String>,
    /// Group names; members count once however often they appear.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Required: `exercise` (the exercise group only, prefixed text) or
    /// `live`. There is no default.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "exercise")]
    pub mode: Option<Mode>,
    /// Default `true`: a second principal must approve before anything is
    /// sent.
    #[serde(default)]
    pub requires_approval: Option<bool>,
}

/// `approve` / `reject` body (optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    #[serde(default)]
    pub comment: Option<String>,
}

/// `GET /v1/broadcasts` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BroadcastList {
    pub broadcasts: Vec<BroadcastView>,
    /// Pass as `before` for the next (older) page; `null` on the last.
    pub next_before: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// The last id of the previous page.
    pub before: Option<String>,
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
}

impl From<BroadcastError> for ApiError {
    fn from(e: BroadcastError) -> Self {
        match e {
            BroadcastError::Invalid(f) => ApiError::Invalid(f),
            BroadcastError::NotFound(id) => ApiError::NotFound(format!("no broadcast {id}")),
            BroadcastError::SelfApproval => ApiError::ForbiddenAs {
                code: "self_approval",
                message: "a broadcast must be approved by someone other than its creator".into(),
            },
            BroadcastError::WrongState(s) => {
                ApiError::Conflict(format!("the broadcast is {s}: not possible now"))
            }
            BroadcastError::Store(e) => e.into(),
        }
    }
}

/// The optional `{comment}` of an approve or reject (an empty body is
/// fine).
fn comment_of(body: &[u8]) -> Result<Option<String>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let parsed: DecisionBody = serde_json::from_slice(body)
        .map_err(|e| ApiError::Malformed(format!("not a decision body: {e}")))?;
    Ok(parsed.comment)
}

fn id_of(id: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    id.map(|Path(id)| id)
        .map_err(|_| ApiError::NotFound("no such broadcast".into()))
}

/// Create a broadcast.
#[utoipa::path(
    post, path = "/v1/broadcasts", tag = "broadcasts",
    request_body = CreateBody,
    responses(
        (status = 201, description = "Created: pending approval, or sending", body = BroadcastView),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or bad API key", body = ErrorBody),
        (status = 403, description = "Scope `broadcast` missing", body = ErrorBody),
        (status = 422, description = "Invalid field, missing `mode`, unknown group, empty audience", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(app): State<AppState>,
    who: Principal,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<Response, ApiError> {
    who.require(Scope::Broadcast)?;
    app.ensure_accepting()?;
    let req = BroadcastRequest {
        title: body.title,
        content: content_of(body.body, body.template, body.vars, body.locale)?,
        class: body.class.unwrap_or(Class::Emergency),
        recipients: body.recipients,
        groups: body.groups,
        mode: body.mode,
        requires_approval: body.requires_approval.unwrap_or(true),
        cap: None,
    };
    let view = app.broadcasts.create(&Actor::of_key(&who), req).await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// Approve a broadcast (not its creator).
#[utoipa::path(
    post, path = "/v1/broadcasts/{id}/approve", tag = "broadcasts",
    params(("id" = String, Path, description = "Broadcast id")),
    request_body(content = Option<DecisionBody>, description = "Optional `{comment}`"),
    responses(
        (status = 200, description = "Approved: sending", body = BroadcastView),
        (status = 401, description = "Missing or bad API key", body = ErrorBody),
        (status = 403, description = "Scope missing, or the creator approving their own", body = ErrorBody),
        (status = 404, description = "No such broadcast", body = ErrorBody),
        (status = 409, description = "Not pending approval", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn approve(
    State(app): State<AppState>,
    who: Principal,
    id: Result<Path<String>, PathRejection>,
    body: axum::body::Bytes,
) -> Result<Json<BroadcastView>, ApiError> {
    who.require(Scope::Broadcast)?;
    let id = id_of(id)?;
    let comment = comment_of(&body)?;
    Ok(Json(
        app.broadcasts
            .approve(&Actor::of_key(&who), &id, comment)
            .await?,
    ))
}

/// Reject a broadcast pending approval.
#[utoipa::path(
    post, path = "/v1/broadcasts/{id}/reject", tag = "broadcasts",
    params(("id" = String, Path, description = "Broadcast id")),
    request_body(content = Option<DecisionBody>, description = "Optional `{comment}`"),
    responses(
        (status = 200, description = "Rejected: nothing is sent", body = BroadcastView),
        (status = 401, description = "Missing or bad API key", body = ErrorBody),
        (status = 403, description = "Scope `broadcast` missing", body = ErrorBody),
        (status = 404, description = "No such broadcast", body = ErrorBody),
        (status = 409, description = "Not pending approval", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn reject(
    State(app): State<AppState>,
    who: Principal,
    id: Result<Path<String>, PathRejection>,
    body: axum::body::Bytes,
) -> Result<Json<BroadcastView>, ApiError> {
    who.require(Scope::Broadcast)?;
    let id = id_of(id)?;
    let comment = comment_of(&body)?;
    Ok(Json(
        app.broadcasts
            .reject(&Actor::of_key(&who), &id, comment)
            .await?,
    ))
}

/// Cancel a broadcast: every message not yet submitted becomes `canceled`.
#[utoipa::path(
    post, path = "/v1/broadcasts/{id}/cancel", tag = "broadcasts",
    params(("id" = String, Path, description = "Broadcast id")),
    responses(
        (status = 200, description = "Canceled", body = BroadcastView),
        (status = 401, description = "Missing or bad API key", body = ErrorBody),
        (status = 403, description = "Scope `broadcast` missing", body = ErrorBody),
        (status = 404, description = "No such broadcast", body = ErrorBody),
        (status = 409, description = "Already completed, canceled or rejected", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn cancel(
    State(app): State<AppState>,
    who: Principal,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<BroadcastView>, ApiError> {
    who.require(Scope::Broadcast)?;
    let id = id_of(id)?;
    Ok(Json(
        app.broadcasts.cancel(&Actor::of_key(&who), &id).await?,
    ))
}

/// A broadcast with its counters.
#[utoipa::path(
    get, path = "/v1/broadcasts/{id}", tag = "broadcasts",
    params(("id" = String, Path, description = "Broadcast id")),
    responses(
        (status = 200, description = "The broadcast; total = queued + submitted + delivered + failed + expired + canceled + refused", body = BroadcastView),
        (status = 401, description = "Missing or bad API key", body = ErrorBody),
        (status = 403, description = "Scope `broadcast` missing", body = ErrorBody),
        (status = 404, description = "No such broadcast", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(app): State<AppState>,
    who: Principal,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<BroadcastView>, ApiError> {
    who.require(Scope::Broadcast)?;
    let id = id_of(id)?;
    Ok(Json(app.broadcasts.get(&id).await?))
}

/// Broadcast history, newest first.
#[utoipa::path(
    get, path = "/v1/broadcasts", tag = "broadcasts",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of broadcasts", body = BroadcastList),
        (status = 401, description = "Missing or bad API key", body = ErrorBody),
        (status = 403, description = "Scope `broadcast` missing", body = ErrorBody),
        (status = 422, description = "Bad paging parameters", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(app): State<AppState>,
    who: Principal,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<BroadcastList>, ApiError> {
    who.require(Scope::Broadcast)?;
    let Query(q) = query.map_err(|e| ApiError::invalid("invalid_query", e.body_text()))?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid(
            "invalid_query",
            format!("`limit` must be between 1 and {MAX_PAGE}"),
        ));
    }
    let broadcasts = app.broadcasts.list(q.before.as_deref(), limit).await?;
    let next_before = if broadcasts.len() == limit {
        broadcasts.last().map(|b| b.id.clone())
    } else {
        None
    };
    Ok(Json(BroadcastList {
        broadcasts,
        next_before,
    }))
}

/// `POST /v1/broadcasts/cap` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CapResponse {
    /// `created` (an Alert, or an Update: a new broadcast), `duplicate`
    /// (this alert was taken before), `canceled` (a Cancel) or `not_sent`
    /// (status Test, System or Draft).
    pub action: String,
    pub broadcast: Option<BroadcastView>,
    /// Broadcasts an Update superseded or a Cancel canceled.
    pub canceled: Vec<BroadcastView>,
    pub reason: Option<String>,
}

/// Take a CAP 1.2 alert (`application/cap+xml`).
#[utoipa::path(
    post, path = "/v1/broadcasts/cap", tag = "broadcasts",
    request_body(content = String, description = "A CAP 1.2 `<alert>` (namespace urn:oasis:names:tc:emergency:cap:1.2); no DTD", content_type = "application/cap+xml"),
    responses(
        (status = 201, description = "Alert or Update: a broadcast created (an Update also cancels what it references)", body = CapResponse),
        (status = 200, description = "Cancel applied, a repeated alert, or Test/System/Draft (nothing sent)", body = CapResponse),
        (status = 400, description = "Not well-formed XML (`malformed_xml`) or a DTD/entity (`dtd_not_allowed`)", body = ErrorBody),
        (status = 401, description = "Missing or bad API key", body = ErrorBody),
        (status = 403, description = "Scope `broadcast` missing", body = ErrorBody),
        (status = 404, description = "`<references>` names no broadcast", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not XML", body = ErrorBody),
        (status = 422, description = "Not valid CAP 1.2 (the message names the element), or no area maps to a group", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn cap(
    State(app): State<AppState>,
    who: Principal,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    who.require(Scope::Broadcast)?;
    app.ensure_accepting()?;
    let kind = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if !matches!(
        kind.as_str(),
        "application/cap+xml" | "application/xml" | "text/xml"
    ) {
        return Err(ApiError::UnsupportedMediaType(
            "send a CAP 1.2 alert as application/cap+xml".into(),
        ));
    }
    let alert = crate::cap::parse(&body).map_err(|e| match &e {
        crate::cap::CapError::Invalid { element, message } => {
            ApiError::invalid("invalid_cap", format!("<{element}>: {message}"))
        }
        _ => ApiError::BadRequest {
            code: e.code(),
            message: e.to_string(),
        },
    })?;
    let requires_approval = app.broadcasts.config().cap_requires_approval;
    let outcome = app
        .broadcasts
        .take_cap(&Actor::of_key(&who), &alert, requires_approval)
        .await?;
    tracing::info!(
        sender = %alert.sender,
        identifier = %alert.identifier,
        msg_type = %alert.msg_type,
        status = %alert.status,
        "CAP alert taken"
    );
    use crate::broadcast::cap::CapOutcome;
    let (code, response) = match outcome {
        CapOutcome::Created {
            broadcast,
            superseded,
        } => (
            StatusCode::CREATED,
            CapResponse {
                action: "created".into(),
                broadcast: Some(broadcast),
                canceled: superseded,
                reason: None,
            },
        ),
        CapOutcome::Duplicate(b) => (
            StatusCode::OK,
            CapResponse {
                action: "duplicate".into(),
                broadcast: Some(b),
                canceled: Vec::new(),
                reason: Some("this alert (sender, identifier) was taken before".into()),
            },
        ),
        CapOutcome::Canceled(list) => (
            StatusCode::OK,
            CapResponse {
                action: "canceled".into(),
                broadcast: None,
                canceled: list,
                reason: None,
            },
        ),
        CapOutcome::NotSent { reason } => (
            StatusCode::OK,
            CapResponse {
                action: "not_sent".into(),
                broadcast: None,
                canceled: Vec::new(),
                reason: Some(reason),
            },
        ),
    };
    Ok((code, Json(response)).into_response())
}

/// Progress as Server-Sent Events: a `progress` event with the broadcast
/// (as `GET /v1/broadcasts/{id}`) every half second, and a `final` event
/// when it is completed, canceled or rejected; then the stream ends.
#[utoipa::path(
    get, path = "/v1/broadcasts/{id}/events", tag = "broadcasts",
    params(("id" = String, Path, description = "Broadcast id")),
    responses(
        (status = 200, description = "text/event-stream of `progress` events and one `final` event", content_type = "text/event-stream", body = BroadcastView),
        (status = 401, description = "Missing or bad API key", body = ErrorBody),
        (status = 403, description = "Scope `broadcast` missing", body = ErrorBody),
        (status = 404, description = "No such broadcast", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn events(
    State(app): State<AppState>,
    who: Principal,
    id: Result<Path<String>, PathRejection>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    who.require(Scope::Broadcast)?;
    let id = id_of(id)?;
    // 404 before the stream starts.
    app.broadcasts.get(&id).await?;
    Ok(Sse::new(progress_events(&app, &id)).keep_alive(KeepAlive::default()))
}

/// The SSE events of [`crate::broadcast::Broadcasts::progress`] (shared
/// with the console).
pub fn progress_events(
    app: &AppState,
    id: &str,
) -> impl Stream<Item = Result<Event, Infallible>> + Send + use<> {
    app.broadcasts.progress(id).map(|item| {
        Ok(match item {
            Ok(view) => {
                let kind = if view.is_final() { "final" } else { "progress" };
                Event::default()
                    .event(kind)
                    .json_data(&view)
                    .unwrap_or_else(|_| Event::default().event("error").data("encoding"))
            }
            Err(e) => Event::default()
                .event("error")
                .data(ApiError::from(e).to_string()),
        })
    })
}

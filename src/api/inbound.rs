//! `GET /v1/inbound`: inbound (mobile-originated) messages, paged in
//! arrival order; a key sees those sent to its own sender ids (see
//! `inbound::page_for`).

use axum::Json;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::error::{ApiError, ErrorBody};
use crate::auth::{Principal, Scope};
use crate::model::MessageId;
use crate::view::InboundView;

/// Most items per page.
pub const MAX_PAGE: usize = 1000;

/// Paging parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InboundQuery {
    /// Return messages after this id (the previous page's `next_after`).
    pub after: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// One page.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InboundPage {
    pub items: Vec<InboundView>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<String>,
}

/// List inbound messages.
#[utoipa::path(
    get, path = "/v1/inbound", tag = "inbound",
    params(InboundQuery),
    responses(
        (status = 200, description = "A page of inbound messages", body = InboundPage),
        (status = 401, description = "Missing or bad API key", body = ErrorBody),
        (status = 403, description = "Scope missing", body = ErrorBody),
        (status = 422, description = "Bad paging parameters", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(app): State<AppState>,
    who: Principal,
    query: Result<Query<InboundQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<InboundPage>, ApiError> {
    who.require(Scope::Send)?;
    let Query(q) = query.map_err(|e| ApiError::invalid("invalid_query", e.body_text()))?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid(
            "invalid_query",
            format!("`limit` must be between 1 and {MAX_PAGE}"),
        ));
    }
    let after = match q.after.as_deref() {
        None | Some("") => None,
        Some(a) => Some(a.parse::<MessageId>().map_err(|()| {
            ApiError::invalid("invalid_query", "`after` is not an inbound message id")
        })?),
    };
    let (records, next) = crate::inbound::page_for(&*app.store, &who, after, limit).await?;
    let items: Vec<InboundView> = records.iter().map(InboundView::from).collect();
    let next_after = next.map(|id| id.to_string());
    Ok(Json(InboundPage { items, next_after }))
}

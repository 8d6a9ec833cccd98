//! `GET /v1/audit` (scope `admin`): the audit log, newest first, and the
//! helpers handlers use to record what they did.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::error::{ApiError, ErrorBody};
use crate::audit::{AuditAction, AuditEntry, AuditOutcome, key_principal};
use crate::auth::{Principal, Scope};
use crate::model::{MessageId, format_micros};

/// Most entries per page.
pub const MAX_PAGE: usize = 500;
/// Entries per page when `limit` is not given.
pub const DEFAULT_PAGE: usize = 100;

/// Paging parameters. Both are read as text and checked here, so a bad
/// value is a 422 naming its field.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Entries older than this id (the previous page's `next_before`).
    #[param(value_type = Option<String>)]
    pub before: Option<String>,
    /// Page size, 1 to 500 (default 100).
    #[param(value_type = Option<usize>, minimum = 1, maximum = 500)]
    pub limit: Option<String>,
}

/// One audit entry.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditEntryView {
    /// A ULID; entries sort by it in the order they were recorded.
    pub id: String,
    /// When, RFC 3339.
    pub at: String,
    /// Who: `key:<API key name>` or `operator:<name>`.
    pub principal: String,
    pub action: AuditAction,
    /// What, e.g. `group:north`.
    pub target: String,
    /// `ok`, or `refused` (it did not take effect; see `code`).
    pub outcome: String,
    /// The error code the caller was answered with, when refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub detail: Option<String>,
}

impl From<AuditEntry> for AuditEntryView {
    fn from(e: AuditEntry) -> Self {
        AuditEntryView {
            id: e.id.to_string(),
            at: format_micros(e.at),
            principal: e.principal,
            action: e.action,
            target: e.target,
            outcome: e.outcome.as_str().to_string(),
            code: e.outcome.code().map(str::to_string),
            detail: e.detail,
        }
    }
}

/// One page, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    pub entries: Vec<AuditEntryView>,
    /// Pass as `before` for the next (older) page; `null` on the last.
    pub next_before: Option<String>,
}

fn page_size(limit: Option<&str>) -> Result<usize, ApiError> {
    let Some(text) = limit else {
        return Ok(DEFAULT_PAGE);
    };
    text.parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_PAGE).contains(n))
        .ok_or_else(|| {
            ApiError::invalid(
                "invalid_query",
                format!("`limit` must be a whole number from 1 to {MAX_PAGE}"),
            )
        })
}

fn before_id(before: Option<&str>) -> Result<Option<MessageId>, ApiError> {
    match before {
        None | Some("") => Ok(None),
        Some(b) => b
            .parse::<MessageId>()
            .map(Some)
            .map_err(|()| ApiError::invalid("invalid_query", "`before` is not an audit entry id")),
    }
}

/// The audit log, newest first.
#[utoipa::path(
    get, path = "/v1/audit", tag = "audit",
    params(AuditQuery),
    responses(
        (status = 200, description = "A page of entries, newest first", body = AuditPage),
        (status = 401, description = "Missing or bad API key", body = ErrorBody),
        (status = 403, description = "Scope `admin` missing", body = ErrorBody),
        (status = 422, description = "Bad `before` or `limit` (named in the message)", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(app): State<AppState>,
    who: Principal,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<AuditPage>, ApiError> {
    who.require(Scope::Admin)?;
    let Query(q) = query.map_err(|e| ApiError::invalid("invalid_query", e.body_text()))?;
    let limit = page_size(q.limit.as_deref())?;
    let before = before_id(q.before.as_deref())?;
    let mut entries = app.store.audit(before, limit + 1).await?;
    let next_before = if entries.len() > limit {
        entries.truncate(limit);
        entries.last().map(|e| e.id.to_string())
    } else {
        None
    };
    Ok(Json(AuditPage {
        entries: entries.into_iter().map(AuditEntryView::from).collect(),
        next_before,
    }))
}

/// How a handler's result reads in the log: `Ok`, or refused with the
/// code of the error the caller is answered with.
pub(super) fn outcome_of<T>(result: &Result<T, ApiError>) -> AuditOutcome {
    match result {
        Ok(_) => AuditOutcome::Ok,
        Err(e) => AuditOutcome::refused(e.code()),
    }
}

/// Records what `who` did to `target`, how it ended, and any `detail`.
pub(super) async fn record<T>(
    app: &AppState,
    who: &Principal,
    action: AuditAction,
    target: String,
    result: &Result<T, ApiError>,
    detail: Option<String>,
) {
    let mut entry = AuditEntry::new(key_principal(&who.name), action, target, outcome_of(result));
    entry.detail = detail;
    app.audit.record(entry).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_bounded_and_named() {
        assert_eq!(page_size(None).ok(), Some(DEFAULT_PAGE));
        assert_eq!(page_size(Some("1")).ok(), Some(1));
        assert_eq!(page_size(Some("500")).ok(), Some(500));
        for bad in ["0", "501", "-1", "ten", ""] {
            let e = page_size(Some(bad)).expect_err(bad);
            assert!(e.to_string().contains("`limit`"), "{bad}: {e}");
        }
    }

    #[test]
    fn before_must_be_an_id() {
        assert_eq!(before_id(None).ok(), Some(None));
        assert!(before_id(Some("01ARZ3NDEKTSV4RRFFQ69G5FAV")).is_ok());
        let e = before_id(Some("nope")).expect_err("bad id");
        assert!(e.to_string().contains("`before`"), "{e}");
    }
}

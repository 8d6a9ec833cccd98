//! `/v1/groups`: named recipient lists for broadcasts (scope `broadcast`).
//! Uploads are JSON `{members: [...]}` or CSV (one number per line, an
//! optional `msisdn` header); a CSV body is parsed as it streams in.
//! Every replace and delete by an authenticated key is recorded in the
//! audit log, refusals included.

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::audit::record;
use super::error::{ApiError, ErrorBody};
use crate::audit::AuditAction;
use crate::auth::{Principal, Scope};
use crate::group::{self, MemberList, UploadError};
use crate::model::{format_micros, now_micros};
use crate::store::GroupSummary;

/// Largest page of members.
pub const MAX_PAGE: usize = 10_000;

/// `PUT /v1/groups/{name}` JSON body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupBody {
    /// E.164 numbers; duplicates count once. Up to 1,000,000 (for large
    /// lists prefer `text/csv`, which is parsed as it arrives).
    pub members: Vec<String>,
}

/// A group without its members.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct GroupView {
    pub name: String,
    pub count: u64,
    pub updated_at: String,
}

impl From<GroupSummary> for GroupView {
    fn from(g: GroupSummary) -> Self {
        GroupView {
            name: g.name,
            count: g.count,
            updated_at: format_micros(g.updated_at),
        }
    }
}

/// A group with a page of its members.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct GroupPage {
    pub name: String,
    pub count: u64,
    pub updated_at: String,
    pub members: Vec<String>,
    /// Pass as `after` for the next page; `null` on the last.
    pub next_after: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MembersQuery {
    /// The last member of the previous page.
    pub after: Option<String>,
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<usize>,
}

fn group_name(name: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    match name {
        Ok(Path(name)) if group::valid_name(&name) => Ok(name),
        _ => Err(ApiError::invalid(
            "invalid_group_name",
            "a group name is 1 to 64 of A-Z, a-z, 0-9, '-', '_' and '.'",
        )),
    }
}

/// The audit target of a request on group `name`: the name as sent, even
/// when it is not a valid one (the entry is cut to a bounded length).
fn group_target(name: &Result<Path<String>, PathRejection>) -> String {
    match name {
        Ok(Path(name)) => format!("group:{name}"),
        Err(_) => "group:".to_string(),
    }
}

fn upload_error(e: UploadError) -> ApiError {
    match e {
        UploadError::TooMany => ApiError::TooLarge(e.to_string()),
        UploadError::Invalid { count, invalid } => {
            let listed: Vec<String> = invalid
                .iter()
                .take(20)
                .map(|(at, why)| format!("{at}: {why}"))
                .collect();
            ApiError::invalid(
                "invalid_members",
                format!(
                    "{count} {} not valid numbers (nothing was stored): {}{}",
                    if count == 1 {
                        "member is"
                    } else {
                        "members are"
                    },
                    listed.join("; "),
                    if count > listed.len() { "; …" } else { "" }
                ),
            )
        }
    }
}

/// Reads a CSV body line by line as it streams in, at most `limit` bytes.
async fn read_csv(body: Body, limit: usize, list: &mut MemberList) -> Result<(), ApiError> {
    let mut stream = body.into_data_stream();
    let mut pending: Vec<u8> = Vec::new();
    let mut line = 0usize;
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::Malformed(format!("cannot read the body: {e}")))?;
        total += chunk.len();
        if total > limit {
            return Err(ApiError::TooLarge(format!(
                "the body is larger than {limit} bytes"
            )));
        }
        pending.extend_from_slice(&chunk);
        let mut start = 0;
        while let Some(nl) = pending[start..].iter().position(|b| *b == b'\n') {
            line += 1;
            let text = String::from_utf8_lossy(&pending[start..start + nl]);
            list.push_csv_line(line, text.trim_end_matches('\r'));
            start += nl + 1;
        }
        pending.drain(..start);
    }
    if !pending.is_empty() {
        line += 1;
        list.push_csv_line(
            line,
            String::from_utf8_lossy(&pending).trim_end_matches('\r'),
        );
    }
    Ok(())
}

/// Create or replace a group, all or nothing.
#[utoipa::path(
    put, path = "/v1/groups/{name}", tag = "groups",
    params(("name" = String, Path, description = "1 to 64 of A-Z a-z 0-9 - _ .")),
    request_body(content = GroupBody, description = "JSON `{members}`, or `text/csv`: one number per line, optional `msisdn` header", content_type = "application/json"),
    responses(
        (status = 200, description = "The group as stored", body = GroupView),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 401, description = "Missing or bad API key", body = ErrorBody),
        (status = 403, description = "Scope `broadcast` missing", body = ErrorBody),
        (status = 413, description = "More than 1,000,000 members or body too large", body = ErrorBody),
        (status = 415, description = "Neither JSON nor CSV", body = ErrorBody),
        (status = 422, description = "Bad name, or invalid members (listed by line or index)", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn put(
    State(app): State<AppState>,
    who: Principal,
    name: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<GroupView>, ApiError> {
    let target = group_target(&name);
    let result = replace(&app, &who, name, &headers, body).await;
    let count = result.as_ref().ok().map(|g| format!("{} members", g.count));
    record(
        &app,
        &who,
        AuditAction::GroupReplace,
        target,
        &result,
        count,
    )
    .await;
    result
}

async fn replace(
    app: &AppState,
    who: &Principal,
    name: Result<Path<String>, PathRejection>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Json<GroupView>, ApiError> {
    who.require(Scope::Broadcast)?;
    let name = group_name(name)?;
    let limit = app.config.http.max_batch_body_bytes;
    let kind = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let mut list = MemberList::new(app.config.default_region());
    match kind.as_str() {
        "text/csv" | "text/plain" => read_csv(body, limit, &mut list).await?,
        "application/json" => {
            let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
                ApiError::TooLarge(format!("the body is larger than {limit} bytes"))
            })?;
            let parsed: GroupBody = serde_json::from_slice(&bytes)
                .map_err(|e| ApiError::Malformed(format!("not a group body: {e}")))?;
            drop(bytes);
            for (i, m) in parsed.members.into_iter().enumerate() {
                list.push(i, &m);
            }
        }
        _ => {
            return Err(ApiError::UnsupportedMediaType(
                "send application/json {\"members\": [...]} or text/csv".into(),
            ));
        }
    }
    let members = list.finish().map_err(upload_error)?;
    let stored = app
        .store
        .replace_group(&name, members, now_micros())
        .await?;
    tracing::info!(group = %name, count = stored.count, principal = %who.name, "group replaced");
    Ok(Json(stored.into()))
}

/// Every group with its member count.
#[utoipa::path(
    get, path = "/v1/groups", tag = "groups",
    responses(
        (status = 200, description = "Groups by name", body = Vec<GroupView>),
        (status = 401, description = "Missing or bad API key", body = ErrorBody),
        (status = 403, description = "Scope `broadcast` missing", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(app): State<AppState>,
    who: Principal,
) -> Result<Json<Vec<GroupView>>, ApiError> {
    who.require(Scope::Broadcast)?;
    let groups = app.store.groups().await?;
    Ok(Json(groups.into_iter().map(GroupView::from).collect()))
}

/// A group: its count and a page of members.
#[utoipa::path(
    get, path = "/v1/groups/{name}", tag = "groups",
    params(("name" = String, Path, description = "Group name"), MembersQuery),
    responses(
        (status = 200, description = "The group and a page of members", body = GroupPage),
        (status = 401, description = "Missing or bad API key", body = ErrorBody),
        (status = 403, description = "Scope `broadcast` missing", body = ErrorBody),
        (status = 404, description = "No such group", body = ErrorBody),
        (status = 422, description = "Bad name or paging parameters", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(app): State<AppState>,
    who: Principal,
    name: Result<Path<String>, PathRejection>,
    query: Result<Query<MembersQuery>, QueryRejection>,
) -> Result<Json<GroupPage>, ApiError> {
    who.require(Scope::Broadcast)?;
    let name = group_name(name)?;
    let Query(q) = query.map_err(|e| ApiError::invalid("invalid_query", e.body_text()))?;
    let limit = q.limit.unwrap_or(1000);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid(
            "invalid_query",
            format!("`limit` must be between 1 and {MAX_PAGE}"),
        ));
    }
    let summary = app
        .store
        .group(&name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no group named '{name}'")))?;
    let after = q.after.filter(|a| !a.is_empty());
    let mut members = app
        .store
        .group_members(&name, after.as_deref(), limit + 1)
        .await?;
    let next_after = if members.len() > limit {
        members.truncate(limit);
        members.last().cloned()
    } else {
        None
    };
    Ok(Json(GroupPage {
        name: summary.name,
        count: summary.count,
        updated_at: format_micros(summary.updated_at),
        members,
        next_after,
    }))
}

/// Delete a group.
#[utoipa::path(
    delete, path = "/v1/groups/{name}", tag = "groups",
    params(("name" = String, Path, description = "Group name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing or bad API key", body = ErrorBody),
        (status = 403, description = "Scope `broadcast` missing", body = ErrorBody),
        (status = 404, description = "No such group", body = ErrorBody),
        (status = 422, description = "Bad name", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn delete(
    State(app): State<AppState>,
    who: Principal,
    name: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let target = group_target(&name);
    let result = remove(&app, &who, name).await;
    record(&app, &who, AuditAction::GroupDelete, target, &result, None).await;
    result
}

async fn remove(
    app: &AppState,
    who: &Principal,
    name: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    who.require(Scope::Broadcast)?;
    let name = group_name(name)?;
    if app.store.delete_group(&name).await? {
        tracing::info!(group = %name, principal = %who.name, "group deleted");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("no group named '{name}'")))
    }
}

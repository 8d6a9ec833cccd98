//! The groups page: recipient lists with their counts, a CSV upload that
//! replaces a group through the same domain code as `PUT /v1/groups/{name}`
//! ([`crate::group::MemberList`] and the group store), and members paged.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::page::{Chrome, Failure, render};
use super::session::{Posted, SignedIn};
use crate::api::AppState;
use crate::audit::{AuditAction, AuditEntry, AuditOutcome};
use crate::group::{self, MemberList, UploadError};
use crate::model::{format_micros, now_micros};

/// Members per page.
const PAGE: usize = 100;

pub struct GroupRow {
    pub name: String,
    pub count: u64,
    pub updated: String,
}

#[derive(Template)]
#[template(path = "groups.html")]
struct GroupsPage {
    chrome: Option<Chrome>,
    csrf: String,
    groups: Vec<GroupRow>,
    notice: Option<String>,
    error: Option<String>,
}

async fn page(
    app: &AppState,
    who: &SignedIn,
    status: StatusCode,
    notice: Option<String>,
    error: Option<String>,
) -> Result<Response, Failure> {
    let groups = app
        .store
        .groups()
        .await?
        .into_iter()
        .map(|g| GroupRow {
            name: g.name,
            count: g.count,
            updated: format_micros(g.updated_at),
        })
        .collect();
    Ok(render(
        status,
        &GroupsPage {
            chrome: Some(Chrome::new(who, "groups")),
            csrf: who.csrf().to_string(),
            groups,
            notice,
            error,
        },
    ))
}

/// `GET /console/groups`.
pub async fn list(State(app): State<AppState>, who: SignedIn) -> Result<Response, Failure> {
    page(&app, &who, StatusCode::OK, None, None).await
}

/// Parses CSV text into members, line by line, as the API does.
///
/// # Errors
/// Why the list is refused (nothing is stored).
pub fn members_from_csv(
    text: &str,
    region: Option<crate::text::Region>,
) -> Result<Vec<String>, UploadError> {
    let mut list = MemberList::new(region);
    for (i, line) in text.lines().enumerate() {
        list.push_csv_line(i + 1, line.trim_end_matches('\r'));
    }
    list.finish()
}

/// Why an upload was refused, for a person.
pub fn describe_upload_error(e: &UploadError) -> String {
    match e {
        UploadError::TooMany => e.to_string(),
        UploadError::Invalid { count, invalid } => {
            let listed: Vec<String> = invalid
                .iter()
                .take(10)
                .map(|(line, why)| format!("line {line}: {why}"))
                .collect();
            format!(
                "Nothing was stored: {count} {} not a valid phone number ({}{}).",
                if *count == 1 { "line is" } else { "lines are" },
                listed.join("; "),
                if *count > listed.len() { "; …" } else { "" }
            )
        }
    }
}

/// `POST /console/groups`: create or replace a group from a CSV file.
pub async fn upload(State(app): State<AppState>, posted: Posted) -> Result<Response, Failure> {
    let Posted { who, fields } = posted;
    let name = fields.text("name").to_string();
    if !group::valid_name(&name) {
        return page(
            &app,
            &who,
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
            Some("A group name is 1 to 64 letters, digits, '-', '_' or '.'.".into()),
        )
        .await;
    }
    let csv = fields
        .0
        .iter()
        .find(|(k, _)| k == "file")
        .map_or("", |(_, v)| v.as_str());
    let members = match members_from_csv(csv, app.config.default_region()) {
        Ok(m) => m,
        Err(e) => {
            let code = match e {
                UploadError::TooMany => "too_large",
                UploadError::Invalid { .. } => "invalid_members",
            };
            app.audit
                .record(AuditEntry::new(
                    who.actor_id(),
                    AuditAction::GroupReplace,
                    format!("group:{name}"),
                    AuditOutcome::refused(code),
                ))
                .await;
            return page(
                &app,
                &who,
                StatusCode::UNPROCESSABLE_ENTITY,
                None,
                Some(describe_upload_error(&e)),
            )
            .await;
        }
    };
    let stored = app
        .store
        .replace_group(&name, members, now_micros())
        .await?;
    tracing::info!(group = %name, count = stored.count, operator = %who.name(), "group replaced from the console");
    app.audit
        .record(
            AuditEntry::new(
                who.actor_id(),
                AuditAction::GroupReplace,
                format!("group:{name}"),
                AuditOutcome::Ok,
            )
            .with_detail(format!("{} members", stored.count)),
        )
        .await;
    page(
        &app,
        &who,
        StatusCode::OK,
        Some(format!(
            "Group {} now has {} members.",
            stored.name, stored.count
        )),
        None,
    )
    .await
}

#[derive(Template)]
#[template(path = "group.html")]
struct GroupPage {
    chrome: Option<Chrome>,
    name: String,
    count: u64,
    updated: String,
    members: Vec<String>,
    first: usize,
    next_after: Option<String>,
    next_first: usize,
    page_size: usize,
}

#[derive(Debug, Deserialize)]
pub struct MembersQuery {
    after: Option<String>,
    from: Option<usize>,
}

/// `GET /console/groups/{name}`: a page of members.
pub async fn show(
    State(app): State<AppState>,
    who: SignedIn,
    Path(name): Path<String>,
    Query(q): Query<MembersQuery>,
) -> Result<Response, Failure> {
    let missing = || Failure::NotFound(format!("There is no group named '{name}'."));
    if !group::valid_name(&name) {
        return Err(missing());
    }
    let Some(summary) = app.store.group(&name).await? else {
        return Err(missing());
    };
    let members = app
        .store
        .group_members(&name, q.after.as_deref(), PAGE)
        .await?;
    let first = q.from.unwrap_or(1).max(1);
    let next_after = (members.len() == PAGE)
        .then(|| members.last().map(|m| m.replace('+', "%2B")))
        .flatten();
    Ok(render(
        StatusCode::OK,
        &GroupPage {
            chrome: Some(Chrome::new(&who, "groups")),
            name: summary.name,
            count: summary.count,
            updated: format_micros(summary.updated_at),
            next_first: first + members.len(),
            members,
            first,
            next_after,
            page_size: PAGE,
        },
    ))
}

//! The audit page (admins): the append-only audit log the broadcast
//! service, the API and the console write — who did what to what, when,
//! and whether it took effect — newest first, paged. Also the console's own
//! entries: sign-ins and group uploads.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::page::{Chrome, Failure, render};
use super::session::SignedIn;
use crate::api::AppState;
use crate::audit::{AuditAction, AuditEntry};
use crate::model::{MessageId, format_micros};

/// Entries per page.
const PAGE: usize = 100;

/// An action as the log spells it (`broadcast_approve`).
fn action_name(action: AuditAction) -> String {
    serde_json::to_value(action)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{action:?}"))
}

/// `2026-12-05T12:28:33.971476Z` as `2026-12-05 12:28:33`: to the second
/// is enough for people, and the table stays narrow.
fn short_time(rfc3339: &str) -> String {
    rfc3339
        .split('.')
        .next()
        .unwrap_or(rfc3339)
        .trim_end_matches('Z')
        .replacen('T', " ", 1)
}

/// One line of the page.
pub struct Line {
    pub at: String,
    pub who: String,
    pub what: String,
    pub target: String,
    /// The console page of the target, when it has one.
    pub link: Option<String>,
    pub outcome: String,
    pub detail: String,
}

impl Line {
    fn of(e: AuditEntry) -> Line {
        let link = if let Some(id) = e.target.strip_prefix("broadcast:") {
            Some(format!("/console/broadcasts/{id}"))
        } else {
            e.target
                .strip_prefix("group:")
                .filter(|g| crate::group::valid_name(g))
                .map(|g| format!("/console/groups/{g}"))
        };
        Line {
            at: short_time(&format_micros(e.at)),
            who: e.principal,
            what: action_name(e.action),
            target: e.target,
            link,
            outcome: match e.outcome.code() {
                None => "ok".to_string(),
                Some(code) => format!("refused: {code}"),
            },
            detail: e.detail.unwrap_or_default(),
        }
    }
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    chrome: Option<Chrome>,
    lines: Vec<Line>,
    next_before: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    before: Option<String>,
}

/// `GET /console/audit`.
pub async fn list(
    State(app): State<AppState>,
    who: SignedIn,
    Query(q): Query<AuditQuery>,
) -> Result<Response, Failure> {
    who.require_admin()?;
    let before = match q.before.as_deref() {
        None | Some("") => None,
        Some(b) => Some(
            b.parse::<MessageId>()
                .map_err(|()| Failure::BadRequest("That is not a page of the audit log.".into()))?,
        ),
    };
    let mut entries = app.store.audit(before, PAGE + 1).await?;
    let next_before = if entries.len() > PAGE {
        entries.truncate(PAGE);
        entries.last().map(|e| e.id.to_string())
    } else {
        None
    };
    Ok(render(
        StatusCode::OK,
        &AuditPage {
            chrome: Some(Chrome::new(&who, "audit")),
            lines: entries.into_iter().map(Line::of).collect(),
            next_before,
        },
    ))
}

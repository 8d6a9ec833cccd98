//! Broadcast pages: compose with a live preview, the confirmation step of
//! a live send, approvals, progress over SSE, cancel and history. Every
//! rule (validation, the exercise group, the two-person rule, states) is
//! the broadcast service's ([`crate::broadcast::Broadcasts`]); these pages
//! only gather input and show answers.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::groups::{describe_upload_error, members_from_csv};
use super::page::{Chrome, Failure, render};
use super::session::{Fields, Posted, SignedIn};
use crate::admission::Content;
use crate::api::AppState;
use crate::broadcast::{Actor, BroadcastError, BroadcastRequest, BroadcastView, Preview};
use crate::model::Class;
use crate::store::broadcast::Mode;

/// Broadcasts per history page.
const PAGE: usize = 50;

impl From<BroadcastError> for Failure {
    fn from(e: BroadcastError) -> Self {
        match e {
            BroadcastError::Invalid(f) => Failure::Invalid(f.message),
            BroadcastError::NotFound(_) => Failure::NotFound("There is no such broadcast.".into()),
            BroadcastError::SelfApproval => Failure::Forbidden(
                "You created this broadcast, so someone else must approve or reject it.".into(),
            ),
            BroadcastError::WrongState(s) => {
                Failure::Conflict(format!("This is not possible now: the broadcast is {s}."))
            }
            BroadcastError::Store(e) => e.into(),
        }
    }
}

/// The compose form as sent (and as re-shown when something is missing).
#[derive(Debug, Clone, Default)]
pub struct Draft {
    pub title: String,
    pub body: String,
    pub template: String,
    pub locale: String,
    /// `name=value` per line.
    pub vars: String,
    pub class: String,
    /// Pasted numbers (and those of an uploaded CSV), one per line.
    pub numbers: String,
    pub groups: Vec<String>,
    /// "", `exercise` or `live`: never preselected.
    pub mode: String,
    pub requires_approval: bool,
}

impl Draft {
    /// A draft from posted fields; a CSV upload's numbers join the pasted
    /// ones (so the form can show them again).
    ///
    /// # Errors
    /// A CSV with invalid lines.
    fn from_fields(f: &Fields, app: &AppState) -> Result<Draft, String> {
        let mut numbers = f.text("numbers").to_string();
        let csv =
            f.0.iter()
                .find(|(k, _)| k == "csv")
                .map_or("", |(_, v)| v.as_str());
        if !csv.trim().is_empty() {
            let members = members_from_csv(csv, app.config.default_region())
                .map_err(|e| format!("The CSV file was not used. {}", describe_upload_error(&e)))?;
            for m in members {
                if !numbers.is_empty() && !numbers.ends_with('\n') {
                    numbers.push('\n');
                }
                numbers.push_str(&m);
            }
        }
        Ok(Draft {
            title: f.text("title").to_string(),
            body: f
                .0
                .iter()
                .find(|(k, _)| k == "body")
                .map_or("", |(_, v)| v.as_str())
                .trim()
                .to_string(),
            template: f.text("template").to_string(),
            locale: f.text("locale").to_string(),
            vars: f.text("vars").to_string(),
            class: f.text("class").to_string(),
            numbers,
            groups: f.all("group").into_iter().map(str::to_string).collect(),
            mode: f.text("mode").to_string(),
            requires_approval: f.get("requires_approval").is_some(),
        })
    }

    fn numbers(&self) -> Vec<String> {
        self.numbers
            .split(['\n', ',', ';'])
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .collect()
    }

    fn mode(&self) -> Option<Mode> {
        match self.mode.as_str() {
            "exercise" => Some(Mode::Exercise),
            "live" => Some(Mode::Live),
            _ => None,
        }
    }

    /// The service request this draft asks for.
    ///
    /// # Errors
    /// A field the form itself can judge (template variables, class).
    fn request(&self) -> Result<BroadcastRequest, String> {
        let content = if self.template.is_empty() {
            Content::Text(self.body.clone())
        } else {
            if !self.body.is_empty() {
                return Err("Write a text or choose a template, not both.".into());
            }
            let mut vars = serde_json::Map::new();
            for (i, line) in self.vars.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() {
                    continue;
                }
                let Some((k, v)) = line.split_once('=') else {
                    return Err(format!(
                        "Template variables: line {} is not name=value.",
                        i + 1
                    ));
                };
                vars.insert(
                    k.trim().to_string(),
                    serde_json::Value::String(v.trim().to_string()),
                );
            }
            Content::Template {
                name: self.template.clone(),
                vars,
                locale: (!self.locale.is_empty()).then(|| self.locale.clone()),
            }
        };
        let class = match self.class.as_str() {
            "" | "emergency" => Class::Emergency,
            "marketing" => Class::Marketing,
            other => return Err(format!("Unknown class '{other}'.")),
        };
        Ok(BroadcastRequest {
            title: self.title.clone(),
            content,
            class,
            recipients: self.numbers(),
            groups: self.groups.clone(),
            mode: self.mode(),
            requires_approval: self.requires_approval,
            cap: None,
        })
    }
}

/// A group to choose on the compose page.
pub struct GroupChoice {
    pub name: String,
    pub count: u64,
    pub checked: bool,
    pub exercise: bool,
}

#[derive(Template)]
#[template(path = "compose.html")]
struct ComposePage {
    chrome: Option<Chrome>,
    csrf: String,
    draft: Draft,
    groups: Vec<GroupChoice>,
    exercise_group: String,
    preview: PreviewPart,
    error: Option<String>,
}

/// The preview box: what would be sent, or why it cannot be.
#[derive(Template, Default)]
#[template(path = "preview.html")]
pub struct PreviewPart {
    pub shown: bool,
    pub text: String,
    pub encoding: String,
    pub segments: u32,
    pub recipients: u64,
    /// `recipients` with thousands separators, as people read it.
    pub recipients_label: String,
    pub mode: String,
    pub problem: Option<String>,
}

impl PreviewPart {
    fn of(p: &Preview) -> PreviewPart {
        PreviewPart {
            shown: true,
            text: p.text.clone(),
            encoding: encoding_label(p.encoding.as_str()),
            segments: p.segments,
            recipients: p.recipients,
            recipients_label: thousands(p.recipients),
            mode: p.mode.map_or("", Mode::as_str).to_string(),
            problem: None,
        }
    }

    fn problem(text: String) -> PreviewPart {
        PreviewPart {
            shown: true,
            problem: Some(text),
            ..PreviewPart::default()
        }
    }
}

/// `12345` as `12,345`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// An encoding as people read it.
fn encoding_label(encoding: &str) -> String {
    match encoding {
        "gsm7" => "GSM 7-bit".to_string(),
        "ucs2" => "UCS-2 (Unicode)".to_string(),
        other => other.to_string(),
    }
}

/// The preview of a draft: the service's analysis, or the first thing
/// that is missing.
async fn preview_of(app: &AppState, draft: &Draft) -> Result<Preview, String> {
    let mut req = draft.request()?;
    // A preview without a chosen mode shows the live text; the choice is
    // still required to send.
    if req.mode.is_none() {
        req.mode = Some(Mode::Live);
    }
    app.broadcasts.preview(&req).await.map_err(|e| match e {
        BroadcastError::Invalid(f) => f.message,
        other => Failure::from(other).to_string(),
    })
}

async fn compose_page(
    app: &AppState,
    who: &SignedIn,
    status: StatusCode,
    draft: Draft,
    preview: PreviewPart,
    error: Option<String>,
) -> Result<Response, Failure> {
    let exercise_group = app.broadcasts.config().exercise_group.clone();
    let groups = app
        .store
        .groups()
        .await?
        .into_iter()
        .map(|g| GroupChoice {
            checked: draft.groups.contains(&g.name),
            exercise: g.name == exercise_group,
            name: g.name,
            count: g.count,
        })
        .collect();
    Ok(render(
        status,
        &ComposePage {
            chrome: Some(Chrome::new(who, "compose")),
            csrf: who.csrf().to_string(),
            draft,
            groups,
            exercise_group,
            preview,
            error,
        },
    ))
}

/// `GET /console/compose`.
pub async fn compose(State(app): State<AppState>, who: SignedIn) -> Result<Response, Failure> {
    let draft = Draft {
        requires_approval: true,
        ..Draft::default()
    };
    compose_page(
        &app,
        &who,
        StatusCode::OK,
        draft,
        PreviewPart::default(),
        None,
    )
    .await
}

/// `POST /console/compose/preview`: the preview box alone, for the page's
/// script to swap in as the operator types.
pub async fn preview(State(app): State<AppState>, posted: Posted) -> Response {
    let part = match Draft::from_fields(&posted.fields, &app) {
        Ok(draft) => match preview_of(&app, &draft).await {
            Ok(p) => PreviewPart::of(&p),
            Err(problem) => PreviewPart::problem(problem),
        },
        Err(problem) => PreviewPart::problem(problem),
    };
    render(StatusCode::OK, &part)
}

#[derive(Template)]
#[template(path = "confirm.html")]
struct ConfirmPage {
    chrome: Option<Chrome>,
    csrf: String,
    draft: Draft,
    preview: PreviewPart,
    error: Option<String>,
}

/// `POST /console/compose`: preview again (no script), or go on: an
/// exercise is created at once, a live send goes to the confirmation step.
pub async fn submit(State(app): State<AppState>, posted: Posted) -> Result<Response, Failure> {
    let Posted { who, fields } = posted;
    let draft = match Draft::from_fields(&fields, &app) {
        Ok(d) => d,
        Err(problem) => {
            let draft = Draft::from_fields(
                &Fields(fields.0.into_iter().filter(|(k, _)| k != "csv").collect()),
                &app,
            )
            .unwrap_or_default();
            return compose_page(
                &app,
                &who,
                StatusCode::UNPROCESSABLE_ENTITY,
                draft,
                PreviewPart::default(),
                Some(problem),
            )
            .await;
        }
    };
    let preview = match preview_of(&app, &draft).await {
        Ok(p) => p,
        Err(problem) => {
            return compose_page(
                &app,
                &who,
                StatusCode::UNPROCESSABLE_ENTITY,
                draft,
                PreviewPart::problem(problem.clone()),
                Some(problem),
            )
            .await;
        }
    };
    if fields.get("action") == Some("preview") {
        return compose_page(
            &app,
            &who,
            StatusCode::OK,
            draft,
            PreviewPart::of(&preview),
            None,
        )
        .await;
    }
    match draft.mode() {
        None => {
            compose_page(
                &app,
                &who,
                StatusCode::UNPROCESSABLE_ENTITY,
                draft,
                PreviewPart::of(&preview),
                Some("Choose Exercise or Live: there is no default.".into()),
            )
            .await
        }
        Some(Mode::Exercise) => create(&app, &who, &draft).await,
        Some(Mode::Live) => {
            let preview = match preview_of(&app, &draft).await {
                Ok(p) => PreviewPart::of(&p),
                Err(problem) => PreviewPart::problem(problem),
            };
            Ok(render(
                StatusCode::OK,
                &ConfirmPage {
                    chrome: Some(Chrome::new(&who, "compose")),
                    csrf: who.csrf().to_string(),
                    draft,
                    preview,
                    error: None,
                },
            ))
        }
    }
}

/// `POST /console/compose/confirm`: a live send, only when the operator
/// typed the recipient count the confirmation page showed — counted again
/// now, so a group replaced meanwhile is noticed.
pub async fn confirm(State(app): State<AppState>, posted: Posted) -> Result<Response, Failure> {
    let Posted { who, fields } = posted;
    let draft = Draft::from_fields(&fields, &app).map_err(Failure::Invalid)?;
    if draft.mode() != Some(Mode::Live) {
        return Err(Failure::BadRequest(
            "Only a live send is confirmed here.".into(),
        ));
    }
    let preview = preview_of(&app, &draft).await.map_err(Failure::Invalid)?;
    let typed: String = fields
        .text("typed_count")
        .chars()
        .filter(|c| !matches!(c, ',' | '.' | ' ' | '\u{a0}'))
        .collect();
    if typed != preview.recipients.to_string() {
        return Ok(render(
            StatusCode::UNPROCESSABLE_ENTITY,
            &ConfirmPage {
                chrome: Some(Chrome::new(&who, "compose")),
                csrf: who.csrf().to_string(),
                draft,
                preview: PreviewPart::of(&preview),
                error: Some(format!(
                    "Nothing was sent. To send, type the number of recipients exactly: {}.",
                    thousands(preview.recipients)
                )),
            },
        ));
    }
    create(&app, &who, &draft).await
}

async fn create(app: &AppState, who: &SignedIn, draft: &Draft) -> Result<Response, Failure> {
    let req = draft.request().map_err(Failure::Invalid)?;
    let view = app
        .broadcasts
        .create(&Actor::operator(who.name()), req)
        .await?;
    tracing::info!(broadcast = %view.id, operator = %who.name(), mode = %view.mode, "broadcast created from the console");
    Ok(Redirect::to(&format!("/console/broadcasts/{}", view.id)).into_response())
}

/// A broadcast as the pages show it.
pub struct Row {
    pub view: BroadcastView,
    /// Settled share of the audience, 0 to 100.
    pub percent: u64,
    pub exercise: bool,
    pub mine: bool,
    pub encoding: String,
}

impl Row {
    fn of(view: BroadcastView, who: &SignedIn) -> Row {
        let done = view.total.saturating_sub(view.queued);
        let percent = (done * 100)
            .checked_div(view.total)
            .unwrap_or(if view.is_final() { 100 } else { 0 });
        Row {
            encoding: encoding_label(&view.encoding),
            exercise: view.mode == "exercise",
            mine: view.created_by == who.actor_id(),
            percent,
            view,
        }
    }
}

#[derive(Template)]
#[template(path = "broadcasts.html")]
struct ListPage {
    chrome: Option<Chrome>,
    heading: &'static str,
    rows: Vec<Row>,
    next_before: Option<String>,
    empty: &'static str,
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    before: Option<String>,
}

/// `GET /console/broadcasts`: the history, newest first.
pub async fn list(
    State(app): State<AppState>,
    who: SignedIn,
    Query(q): Query<ListQuery>,
) -> Result<Response, Failure> {
    let views = app.broadcasts.list(q.before.as_deref(), PAGE).await?;
    let next_before = (views.len() == PAGE)
        .then(|| views.last().map(|v| v.id.clone()))
        .flatten();
    let rows = views.into_iter().map(|v| Row::of(v, &who)).collect();
    Ok(render(
        StatusCode::OK,
        &ListPage {
            chrome: Some(Chrome::new(&who, "broadcasts")),
            heading: "Broadcasts",
            rows,
            next_before,
            empty: "No broadcasts yet.",
        },
    ))
}

/// `GET /console/approvals`: broadcasts waiting for a second person.
pub async fn approvals(State(app): State<AppState>, who: SignedIn) -> Result<Response, Failure> {
    who.require_approver()?;
    let mut rows = Vec::new();
    let mut before: Option<String> = None;
    // Pending broadcasts are recent: a few pages of history hold them.
    for _ in 0..10 {
        let views = app.broadcasts.list(before.as_deref(), 200).await?;
        let last = views.last().map(|v| v.id.clone());
        let full = views.len() == 200;
        rows.extend(
            views
                .into_iter()
                .filter(|v| v.status == "pending_approval")
                .map(|v| Row::of(v, &who)),
        );
        if !full {
            break;
        }
        before = last;
    }
    Ok(render(
        StatusCode::OK,
        &ListPage {
            chrome: Some(Chrome::new(&who, "approvals")),
            heading: "Waiting for approval",
            rows,
            next_before: None,
            empty: "Nothing is waiting for approval.",
        },
    ))
}

#[derive(Template)]
#[template(path = "broadcast.html")]
struct DetailPage {
    chrome: Option<Chrome>,
    csrf: String,
    row: Row,
    may_decide: bool,
    notice: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct DetailQuery {
    notice: Option<String>,
}

/// `GET /console/broadcasts/{id}`: status, counters and progress; approve
/// or reject for an approver who did not create it; cancel.
pub async fn show(
    State(app): State<AppState>,
    who: SignedIn,
    Path(id): Path<String>,
    Query(q): Query<DetailQuery>,
) -> Result<Response, Failure> {
    let view = app.broadcasts.get(&id).await?;
    let row = Row::of(view, &who);
    let may_decide = row.view.status == "pending_approval" && who.role().may_approve() && !row.mine;
    let notice = match q.notice.as_deref() {
        Some("approved") => Some("Approved by you: it is sent as shown below.".to_string()),
        Some("rejected") => Some("Rejected by you: nothing will be sent.".to_string()),
        Some("canceled") => Some("Canceled: nothing more will be sent.".to_string()),
        _ => None,
    };
    Ok(render(
        StatusCode::OK,
        &DetailPage {
            chrome: Some(Chrome::new(&who, "broadcasts")),
            csrf: who.csrf().to_string(),
            may_decide,
            row,
            notice,
        },
    ))
}

fn comment(fields: &Fields) -> Option<String> {
    fields
        .get("comment")
        .filter(|c| !c.is_empty())
        .map(str::to_string)
}

/// `POST /console/broadcasts/{id}/approve`.
pub async fn approve(
    State(app): State<AppState>,
    Path(id): Path<String>,
    posted: Posted,
) -> Result<Response, Failure> {
    posted.who.require_approver()?;
    let view = app
        .broadcasts
        .approve(
            &Actor::operator(posted.who.name()),
            &id,
            comment(&posted.fields),
        )
        .await?;
    Ok(Redirect::to(&format!("/console/broadcasts/{}?notice=approved", view.id)).into_response())
}

/// `POST /console/broadcasts/{id}/reject`.
pub async fn reject(
    State(app): State<AppState>,
    Path(id): Path<String>,
    posted: Posted,
) -> Result<Response, Failure> {
    posted.who.require_approver()?;
    let view = app
        .broadcasts
        .reject(
            &Actor::operator(posted.who.name()),
            &id,
            comment(&posted.fields),
        )
        .await?;
    Ok(Redirect::to(&format!("/console/broadcasts/{}?notice=rejected", view.id)).into_response())
}

#[derive(Template)]
#[template(path = "cancel.html")]
struct CancelPage {
    chrome: Option<Chrome>,
    csrf: String,
    row: Row,
}

/// `GET /console/broadcasts/{id}/cancel`: are you sure?
pub async fn cancel_form(
    State(app): State<AppState>,
    who: SignedIn,
    Path(id): Path<String>,
) -> Result<Response, Failure> {
    let view = app.broadcasts.get(&id).await?;
    Ok(render(
        StatusCode::OK,
        &CancelPage {
            chrome: Some(Chrome::new(&who, "broadcasts")),
            csrf: who.csrf().to_string(),
            row: Row::of(view, &who),
        },
    ))
}

/// `POST /console/broadcasts/{id}/cancel`.
pub async fn cancel(
    State(app): State<AppState>,
    Path(id): Path<String>,
    posted: Posted,
) -> Result<Response, Failure> {
    let view = app
        .broadcasts
        .cancel(&Actor::operator(posted.who.name()), &id)
        .await?;
    Ok(Redirect::to(&format!("/console/broadcasts/{}?notice=canceled", view.id)).into_response())
}

/// Most progress events between two looks at the session of an open
/// progress page (about a minute); sooner when the idle timeout is short.
const SESSION_CHECK_MOST: usize = 120;

/// `GET /console/broadcasts/{id}/events`: the progress as Server-Sent
/// Events, for the signed-in console (the same stream as the API's).
///
/// Watching a broadcast is activity: about once a minute the stream
/// restarts the session's idle clock — so an operator following a long
/// send is not signed out under it — and ends when the session has ended
/// (sign-out, a disabled account, its absolute expiry).
pub async fn events(
    State(app): State<AppState>,
    who: SignedIn,
    Path(id): Path<String>,
) -> Result<Response, Failure> {
    use futures_util::StreamExt;
    use std::sync::atomic::{AtomicUsize, Ordering};
    // 404 before the stream starts.
    app.broadcasts.get(&id).await?;
    let store = app.store.clone();
    let hash = who.0.record.token_hash.clone();
    let expires_at = who.0.record.expires_at;
    let name = who.name().to_string();
    let sent = std::sync::Arc::new(AtomicUsize::new(0));
    // A third of the idle timeout, in progress events.
    let every = usize::try_from(
        app.config.console.idle_timeout.as_millis()
            / 3
            / crate::broadcast::PROGRESS_EVERY.as_millis().max(1),
    )
    .unwrap_or(SESSION_CHECK_MOST)
    .clamp(1, SESSION_CHECK_MOST);
    let stream = crate::api::broadcasts::progress_events(&app, &id).take_while(move |_| {
        let (store, hash, name, sent) = (store.clone(), hash.clone(), name.clone(), sent.clone());
        async move {
            if sent.fetch_add(1, Ordering::Relaxed) % every + 1 < every {
                return true;
            }
            let now = crate::model::now_micros();
            if now >= expires_at {
                return false;
            }
            let live = matches!(store.session(&hash).await, Ok(Some(_)))
                && matches!(
                    store.operator(&name).await,
                    Ok(Some(op)) if op.disabled_at.is_none()
                );
            live && store.touch_session(&hash, now).await.is_ok()
        }
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::thousands;

    #[test]
    fn counts_read_with_thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(10_000), "10,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}

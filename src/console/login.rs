//! Signing in and out.

use askama::Template;
use axum::extract::{Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::page::{Chrome, Failure, render};
use super::session::{self, Posted, read_fields};
use crate::api::AppState;
use crate::audit::{AuditAction, AuditEntry, AuditOutcome};
use crate::model::now_micros;
use crate::operator::{self, LoginError};

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    chrome: Option<Chrome>,
    name: String,
    notice: Option<String>,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    ended: Option<String>,
    out: Option<String>,
}

/// `GET /console/login`.
pub async fn form(Query(q): Query<LoginQuery>) -> Response {
    let notice = if q.out.is_some() {
        Some("You are signed out.".to_string())
    } else if q.ended.is_some() {
        Some("Your session has ended. Please sign in again.".to_string())
    } else {
        None
    };
    render(
        StatusCode::OK,
        &LoginPage {
            chrome: None,
            name: String::new(),
            notice,
            error: None,
        },
    )
}

/// `POST /console/login`: a session cookie and on to the console, or the
/// form again with why not.
pub async fn submit(State(app): State<AppState>, req: Request) -> Result<Response, Failure> {
    let fields = read_fields(req, &app).await?;
    let name = fields.text("name").to_string();
    let password = fields
        .0
        .iter()
        .find(|(k, _)| k == "password")
        .map_or("", |(_, v)| v.as_str());
    let policy = app.config.console.policy();
    let now = now_micros();
    let refused = |status: StatusCode, error: String| {
        render(
            status,
            &LoginPage {
                chrome: None,
                name: name.clone(),
                notice: None,
                error: Some(error),
            },
        )
    };
    // Who the log names: the account tried (never the password).
    let principal = if operator::valid_name(&name) {
        format!("operator:{name}")
    } else {
        "operator:(not a valid name)".to_string()
    };
    let failed = |code: &str| {
        AuditEntry::new(
            principal.clone(),
            AuditAction::OperatorLoginFailed,
            principal.clone(),
            AuditOutcome::refused(code),
        )
    };
    let op = match operator::login(&*app.store, &name, password, &policy, now).await {
        Ok(op) => op,
        Err(e @ LoginError::Invalid) => {
            app.audit.record(failed("wrong_name_or_password")).await;
            return Ok(refused(StatusCode::UNAUTHORIZED, e.to_string()));
        }
        Err(e @ LoginError::Locked { .. }) => {
            app.audit.record(failed("locked")).await;
            return Ok(refused(StatusCode::TOO_MANY_REQUESTS, e.to_string()));
        }
        Err(LoginError::Store(e)) => return Err(e.into()),
    };
    app.audit
        .record(AuditEntry::new(
            principal.clone(),
            AuditAction::OperatorLogin,
            principal,
            AuditOutcome::Ok,
        ))
        .await;
    let (token, _) = operator::start_session(&*app.store, op, &policy, now).await?;
    tracing::info!(operator = %name, "console sign-in");
    let secure = app.config.console.secure(app.config.http.listen);
    let mut response = Redirect::to("/console").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session::set_cookie(&token, secure));
    Ok(response)
}

/// `POST /console/logout`: the session ends on the server, the cookie goes.
pub async fn logout(State(app): State<AppState>, posted: Posted) -> Result<Response, Failure> {
    app.store
        .delete_session(&posted.who.0.record.token_hash)
        .await?;
    tracing::info!(operator = %posted.who.name(), "console sign-out");
    let mut response = Redirect::to("/console/login?out=1").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session::clear_cookie());
    Ok(response)
}

//! The emergency broadcast console at `/console`: server-rendered pages
//! for operators (login, groups, compose, approval, progress), an edge
//! layer like [`crate::api`] that calls the same domain code.
//!
//! Not part of `/v1` nor of its OpenAPI document: these are pages for
//! people, signed in with a session cookie ([`session`]), every form
//! carrying the session's CSRF token, every answer HTML ([`page`]).

pub mod assets;
pub mod audit;
pub mod broadcasts;
pub mod config;
pub mod groups;
pub mod login;
pub mod page;
pub mod session;

use askama::Template;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};

use crate::api::AppState;
use page::{Chrome, Failure, render};
use session::SignedIn;

/// `router` with the console nested under `/console`.
pub fn attach(router: Router, app: AppState) -> Router {
    router
        .route(
            "/console/",
            get(|| async { axum::response::Redirect::permanent("/console") }),
        )
        .nest("/console", self::router(app))
}

/// The console's routes (relative to `/console`).
pub fn router(app: AppState) -> Router {
    let uploads = app.config.http.max_batch_body_bytes;
    Router::new()
        .route("/", get(home))
        .route("/login", get(login::form).post(login::submit))
        .route("/logout", post(login::logout))
        .route(
            "/compose",
            get(broadcasts::compose).post(broadcasts::submit),
        )
        .route("/compose/preview", post(broadcasts::preview))
        .route("/compose/confirm", post(broadcasts::confirm))
        .route("/broadcasts", get(broadcasts::list))
        .route("/broadcasts/{id}", get(broadcasts::show))
        .route("/broadcasts/{id}/approve", post(broadcasts::approve))
        .route("/broadcasts/{id}/reject", post(broadcasts::reject))
        .route(
            "/broadcasts/{id}/cancel",
            get(broadcasts::cancel_form).post(broadcasts::cancel),
        )
        .route("/broadcasts/{id}/events", get(broadcasts::events))
        .route("/approvals", get(broadcasts::approvals))
        .route("/audit", get(audit::list))
        .route("/groups", get(groups::list).post(groups::upload))
        .route("/groups/{name}", get(groups::show))
        .route("/assets/{file}", get(assets::get))
        .fallback(page::not_found)
        .method_not_allowed_fallback(page::method_not_allowed)
        .layer(DefaultBodyLimit::max(uploads))
        .layer(axum::middleware::map_response(page::security_headers))
        .with_state(app)
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    chrome: Option<Chrome>,
    name: String,
    may_approve: bool,
}

/// `GET /console`.
async fn home(State(_app): State<AppState>, who: SignedIn) -> Result<Response, Failure> {
    Ok(render(
        StatusCode::OK,
        &HomePage {
            may_approve: who.role().may_approve(),
            name: who.name().to_string(),
            chrome: Some(Chrome::new(&who, "home")),
        },
    ))
}

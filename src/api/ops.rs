//! Operations endpoints: liveness, readiness, Prometheus metrics, OpenAPI.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;

/// Health or readiness answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` or `unavailable`.
    pub status: &'static str,
    /// What was checked, and what failed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    /// Degraded but serving: e.g. script files that fail to compile
    /// (`file:line:col: message`; their previous version, if any, serves).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Up", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok",
        problems: Vec::new(),
        warnings: Vec::new(),
    })
}

/// The store answers, at least one connector can take submits, and no
/// supervised task (dispatcher, recorder, webhook worker, maintenance) is
/// down after a panic.
///
/// Scripts that fail to compile are reported as warnings: the gateway serves on
/// (with their previous version or the default route), so they do not make
/// the node unready.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "Not ready, with the reasons", body = Health),
    ))]
pub async fn readyz(State(app): State<AppState>) -> impl IntoResponse {
    let mut problems = Vec::new();
    if let Err(e) = app.store.ping().await {
        problems.push(format!("store: {e}"));
    }
    if !app.connectors.iter().any(|c| c.is_ready()) {
        problems.push("no connector is ready".to_string());
    }
    problems.extend(app.tasks.problems());
    if !app.is_accepting() {
        problems.push("shutting down".to_string());
    }
    let status = if problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Health {
            status: if problems.is_empty() {
                "ok"
            } else {
                "unavailable"
            },
            problems,
            warnings: app.scripts.problems(),
        }),
    )
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    let text = app
        .metrics
        .render(app.store.queue_depths(), app.store.retry_depth());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}

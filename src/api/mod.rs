//! The HTTP edge: routes, shared state, and the layers every request passes
//! (request id and span, body limit, concurrency cap, timeout, panic guard).

pub mod auth;
pub mod error;
pub mod inbound;
pub mod messages;
pub mod openapi;
pub mod ops;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower::limit::ConcurrencyLimitLayer;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::admission::Admitter;
use crate::config::Config;
use crate::connector::Connector;
use crate::metrics::Metrics;
use crate::script::Scripts;
use crate::store::Store;
use auth::Authenticator;
use error::ApiError;

/// Everything handlers need, built once at start-up.
pub struct App {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    pub auth: Authenticator,
    pub admitter: Admitter,
    pub connectors: Vec<Arc<dyn Connector>>,
    /// Routing, hooks and templates (also `on_inbound` and `cap_area`).
    pub scripts: Arc<Scripts>,
    accepting: AtomicBool,
}

/// Axum state: the app behind an `Arc`.
pub type AppState = Arc<App>;

impl App {
    pub fn new(
        config: Arc<Config>,
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        connectors: Vec<Arc<dyn Connector>>,
        scripts: Arc<Scripts>,
    ) -> App {
        App {
            auth: Authenticator::new(store.clone()),
            admitter: Admitter::new(
                &config,
                store.clone(),
                metrics.clone(),
                scripts.clone(),
                crate::connector::health_of(&connectors),
            ),
            config,
            store,
            metrics,
            connectors,
            scripts,
            accepting: AtomicBool::new(true),
        }
    }

    /// Stops new admissions (shutdown); reads keep working.
    pub fn stop_accepting(&self) {
        self.accepting.store(false, Ordering::SeqCst);
    }

    pub fn is_accepting(&self) -> bool {
        self.accepting.load(Ordering::SeqCst)
    }

    /// 503 once shutdown began.
    ///
    /// # Errors
    /// [`ApiError::Unavailable`] while shutting down.
    pub fn ensure_accepting(&self) -> Result<(), ApiError> {
        if self.is_accepting() {
            Ok(())
        } else {
            Err(ApiError::Unavailable(
                "this node is shutting down; retry on another".into(),
            ))
        }
    }
}

/// The full router with its layers.
pub fn router(app: AppState) -> Router {
    let http = &app.config.http;
    let batch = Router::new()
        .route("/v1/messages/batch", post(messages::send_batch))
        .layer(DefaultBodyLimit::max(http.max_batch_body_bytes));
    let api = Router::new()
        .route("/v1/messages", post(messages::send))
        .route("/v1/messages/{id}", get(messages::get))
        .route("/v1/inbound", get(inbound::list))
        .layer(DefaultBodyLimit::max(http.max_body_bytes));
    Router::new()
        .merge(api)
        .merge(batch)
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            http.request_timeout,
        ))
        .layer(ConcurrencyLimitLayer::new(http.max_concurrent_requests))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                let id = req
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                tracing::debug_span!(
                    "request",
                    method = %req.method(),
                    path = %req.uri().path(),
                    request_id = %id,
                    principal = tracing::field::Empty,
                )
            }),
        )
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(app)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint".into())
}

async fn method_not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        axum::Json(error::ErrorBody {
            error: error::ErrorDetail {
                code: "method_not_allowed".into(),
                message: "this endpoint does not take that method".into(),
            },
        }),
    )
        .into_response()
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    ApiError::Internal("handler panicked".into()).into_response()
}

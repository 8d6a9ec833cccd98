//! The HTTP edge: routes, shared state, and the layers every request passes
//! (request id and span, body limit, concurrency cap, timeout, panic guard).
//!
//! The router is built from one table, [`routes`], whose every entry is a
//! handler with its `#[utoipa::path]` annotation: the path and method served
//! are the ones documented, and `tests/it/openapi.rs` checks that each entry
//! is in the OpenAPI document and that each is live.

pub mod audit;
pub mod auth;
pub mod batch;
pub mod broadcasts;
pub mod error;
pub mod groups;
pub mod inbound;
pub mod messages;
pub mod openapi;
pub mod ops;
pub mod otp;
pub mod request;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::handler::Handler;
use axum::http::{Request, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter};
use tower::limit::ConcurrencyLimitLayer;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::openapi::path::HttpMethod;

use crate::admission::Admitter;
use crate::auth::Authenticator;
use crate::config::Config;
use crate::connector::Connector;
use crate::metrics::Metrics;
use crate::otp::OtpService;
use crate::script::Scripts;
use crate::seal::Sealer;
use crate::store::Store;
use crate::supervise::Supervisor;
use batch::BatchBudget;
use error::ApiError;

/// Everything handlers need, built once at start-up.
pub struct App {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    pub auth: Authenticator,
    pub admitter: Arc<Admitter>,
    /// One-time passwords.
    pub otp: Arc<OtpService>,
    /// Broadcasts (the API and the console share it).
    pub broadcasts: Arc<crate::broadcast::Broadcasts>,
    pub connectors: Vec<Arc<dyn Connector>>,
    /// Routing, hooks and templates.
    pub scripts: Arc<Scripts>,
    /// Bytes of batch bodies admitted at once (`http.max_batch_bytes_in_flight`).
    pub batch_budget: BatchBudget,
    /// The gateway's long-running tasks; `/readyz` reports those down.
    pub tasks: Supervisor,
    /// The append-only log of who did what.
    pub audit: crate::audit::Audit,
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
        sealer: Arc<Sealer>,
        tasks: Supervisor,
    ) -> App {
        let admitter = Arc::new(
            Admitter::new(
                &config,
                store.clone(),
                metrics.clone(),
                scripts.clone(),
                crate::connector::health_of(&connectors),
            )
            .with_sealer(sealer.clone()),
        );
        let otp = Arc::new(OtpService::new(
            config.otp.clone(),
            config.default_region(),
            store.clone(),
            store.clone(),
            admitter.clone(),
            metrics.clone(),
            sealer.derive_key("otp code hashes"),
        ));
        let audit = crate::audit::Audit::new(store.clone(), metrics.clone());
        let broadcasts = Arc::new(crate::broadcast::Broadcasts::new(
            store.clone(),
            store.clone(),
            admitter.clone(),
            scripts.clone(),
            audit.clone(),
            config.broadcasts.clone(),
        ));
        App {
            auth: Authenticator::new(store.clone(), metrics.clone()),
            broadcasts,
            audit,
            batch_budget: BatchBudget::new(
                config.http.max_batch_bytes_in_flight,
                config.http.max_batch_body_bytes,
            ),
            admitter,
            otp,
            config,
            store,
            metrics,
            connectors,
            scripts,
            tasks,
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

/// Which body limit a route reads its body under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLimit {
    /// `http.max_body_bytes`.
    Single,
    /// `http.max_batch_body_bytes`.
    Batch,
}

/// One entry of the route table: a handler at the path and methods of its
/// OpenAPI annotation.
pub struct Route {
    pub path: String,
    pub methods: Vec<HttpMethod>,
    pub body: BodyLimit,
    handler: MethodRouter<AppState>,
}

impl Route {
    /// `handler` served where its annotation `P` (the `__path_*` type
    /// `#[utoipa::path]` generates) says.
    fn new<P, H, T>(handler: H, body: BodyLimit) -> Route
    where
        P: utoipa::Path,
        H: Handler<T, AppState>,
        T: 'static,
    {
        let methods = P::methods();
        let filter = methods
            .iter()
            .map(method_filter)
            .reduce(MethodFilter::or)
            // An annotation always names a method; GET is never reached.
            .unwrap_or(MethodFilter::GET);
        Route {
            path: P::path(),
            methods,
            body,
            handler: axum::routing::on(filter, handler),
        }
    }

    /// The methods in lower case, as OpenAPI path items key them.
    pub fn method_names(&self) -> Vec<&'static str> {
        self.methods.iter().map(method_name).collect()
    }
}

fn method_filter(m: &HttpMethod) -> MethodFilter {
    match m {
        HttpMethod::Get => MethodFilter::GET,
        HttpMethod::Post => MethodFilter::POST,
        HttpMethod::Put => MethodFilter::PUT,
        HttpMethod::Delete => MethodFilter::DELETE,
        HttpMethod::Options => MethodFilter::OPTIONS,
        HttpMethod::Head => MethodFilter::HEAD,
        HttpMethod::Patch => MethodFilter::PATCH,
        HttpMethod::Trace => MethodFilter::TRACE,
    }
}

fn method_name(m: &HttpMethod) -> &'static str {
    match m {
        HttpMethod::Get => "get",
        HttpMethod::Post => "post",
        HttpMethod::Put => "put",
        HttpMethod::Delete => "delete",
        HttpMethod::Options => "options",
        HttpMethod::Head => "head",
        HttpMethod::Patch => "patch",
        HttpMethod::Trace => "trace",
    }
}

/// Every route Herald serves. [`router`] serves exactly these; add a route
/// here (never with `Router::route` directly) so it is documented.
pub fn routes() -> Vec<Route> {
    use BodyLimit::{Batch, Single};
    vec![
        Route::new::<messages::__path_send, _, _>(messages::send, Single),
        Route::new::<messages::__path_send_batch, _, _>(messages::send_batch, Batch),
        Route::new::<messages::__path_get, _, _>(messages::get, Single),
        Route::new::<inbound::__path_list, _, _>(inbound::list, Single),
        Route::new::<otp::__path_issue, _, _>(otp::issue, Single),
        Route::new::<otp::__path_verify, _, _>(otp::verify, Single),
        Route::new::<otp::__path_get, _, _>(otp::get, Single),
        Route::new::<otp::__path_cancel, _, _>(otp::cancel, Single),
        Route::new::<otp::__path_blocked, _, _>(otp::blocked, Single),
        Route::new::<otp::__path_unblock, _, _>(otp::unblock, Single),
        // Uploads may be large: read as they stream, bounded by the batch limit.
        Route::new::<groups::__path_put, _, _>(groups::put, Batch),
        Route::new::<groups::__path_list, _, _>(groups::list, Single),
        Route::new::<groups::__path_get, _, _>(groups::get, Single),
        Route::new::<groups::__path_delete, _, _>(groups::delete, Single),
        Route::new::<broadcasts::__path_create, _, _>(broadcasts::create, Single),
        Route::new::<broadcasts::__path_cap, _, _>(broadcasts::cap, Single),
        Route::new::<broadcasts::__path_list, _, _>(broadcasts::list, Single),
        Route::new::<broadcasts::__path_get, _, _>(broadcasts::get, Single),
        Route::new::<broadcasts::__path_approve, _, _>(broadcasts::approve, Single),
        Route::new::<broadcasts::__path_reject, _, _>(broadcasts::reject, Single),
        Route::new::<broadcasts::__path_cancel, _, _>(broadcasts::cancel, Single),
        Route::new::<broadcasts::__path_events, _, _>(broadcasts::events, Single),
        Route::new::<audit::__path_list, _, _>(audit::list, Single),
        Route::new::<ops::__path_healthz, _, _>(ops::healthz, Single),
        Route::new::<ops::__path_readyz, _, _>(ops::readyz, Single),
        Route::new::<ops::__path_metrics, _, _>(ops::metrics, Single),
        Route::new::<openapi::__path_openapi, _, _>(openapi::openapi, Single),
    ]
}

/// The full router with its layers.
pub fn router(app: AppState) -> Router {
    let http = &app.config.http;
    let mut router = Router::new();
    for route in routes() {
        let limit = match route.body {
            BodyLimit::Single => http.max_body_bytes,
            BodyLimit::Batch => http.max_batch_body_bytes,
        };
        router = router.route(
            &route.path,
            route.handler.layer(DefaultBodyLimit::max(limit)),
        );
    }
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            http.request_timeout,
            time_limit,
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

/// `http.request_timeout`: a request still running then is dropped and
/// answered 503 in the JSON error shape.
async fn time_limit(
    State(limit): State<Duration>,
    req: axum::extract::Request,
    next: Next,
) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(limit = ?limit, "request timed out");
            ApiError::Unavailable(format!(
                "the request took longer than {}; retry shortly",
                humantime::format_duration(limit)
            ))
            .into_response()
        }
    }
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

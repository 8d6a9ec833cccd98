//! Optional HTTP control endpoint, for driving an out-of-process simulator.
//!
//! Same controls as [`SimHandle`], as JSON over HTTP:
//! - `POST /mo` `{"from": "...", "to": "...", "text": "..."}` injects an MO message;
//! - `POST /drop` closes every SMPP connection;
//! - `POST /refuse-binds` `{"refuse": true}` makes binds fail with `ESME_RBINDFAIL`;
//! - `POST /throttle` `{"tps": 100}` changes the rate limit (0 = off);
//! - `POST /reject-submits` `{"reject": true}` answers every `submit_sm` with
//!   `ESME_RINVDSTADR` (a permanent error) until turned off;
//! - `GET /stats` returns [`SimStats`](super::SimStats);
//! - `GET /submitted?to=NUMBER` returns the texts of the accepted
//!   `submit_sm` to that destination, oldest first (with `--record`).

use axum::{
    Json, Router,
    extract::{Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Deserialize;
use serde_json::json;

use super::{SimError, server::SimHandle};

/// Body of `POST /mo`.
#[derive(Debug, Deserialize)]
pub struct MoRequest {
    pub from: String,
    pub to: String,
    pub text: String,
}

/// Body of `POST /refuse-binds`.
#[derive(Debug, Deserialize)]
pub struct RefuseBindsRequest {
    pub refuse: bool,
}

/// Body of `POST /reject-submits`.
#[derive(Debug, Deserialize)]
pub struct RejectSubmitsRequest {
    pub reject: bool,
}

/// Body of `POST /throttle`.
#[derive(Debug, Deserialize)]
pub struct ThrottleRequest {
    pub tps: u32,
}

/// The control API as an axum router; serve it with `axum::serve`.
pub fn router(sim: SimHandle) -> Router {
    Router::new()
        .route("/mo", post(inject_mo))
        .route("/drop", post(drop_connections))
        .route("/refuse-binds", post(refuse_binds))
        .route("/throttle", post(throttle))
        .route("/reject-submits", post(reject_submits))
        .route("/stats", get(stats))
        .route("/submitted", get(submitted))
        .with_state(sim)
}

fn error_response(error: &SimError) -> Response {
    let status = match error {
        SimError::InvalidAddress(_) | SimError::Unencodable(_) => StatusCode::BAD_REQUEST,
        SimError::NoReceiver | SimError::SessionClosed => StatusCode::CONFLICT,
        SimError::ShutDown => StatusCode::SERVICE_UNAVAILABLE,
    };
    (status, Json(json!({ "error": error.to_string() }))).into_response()
}

async fn inject_mo(State(sim): State<SimHandle>, Json(request): Json<MoRequest>) -> Response {
    match sim
        .inject_mo(&request.from, &request.to, &request.text)
        .await
    {
        Ok(()) => Json(json!({ "sent": true })).into_response(),
        Err(error) => error_response(&error),
    }
}

async fn drop_connections(State(sim): State<SimHandle>) -> Json<serde_json::Value> {
    let dropped = sim.stats().connections;
    sim.drop_connections();
    Json(json!({ "dropped": dropped }))
}

async fn refuse_binds(
    State(sim): State<SimHandle>,
    Json(request): Json<RefuseBindsRequest>,
) -> Json<serde_json::Value> {
    sim.set_refuse_binds(request.refuse);
    Json(json!({ "refuse": request.refuse }))
}

async fn throttle(
    State(sim): State<SimHandle>,
    Json(request): Json<ThrottleRequest>,
) -> Json<serde_json::Value> {
    sim.set_throttle_tps(request.tps);
    Json(json!({ "tps": request.tps }))
}

async fn reject_submits(
    State(sim): State<SimHandle>,
    Json(request): Json<RejectSubmitsRequest>,
) -> Json<serde_json::Value> {
    sim.set_reject_submits(request.reject);
    Json(json!({ "reject": request.reject }))
}

async fn stats(State(sim): State<SimHandle>) -> Json<super::SimStats> {
    Json(sim.stats())
}

/// Query of `GET /submitted`.
#[derive(Debug, Deserialize)]
pub struct SubmittedQuery {
    /// `destination_addr` as sent (digits, without `+`).
    pub to: String,
}

/// Texts sent to one destination: UCS-2 (data_coding 8) decoded, anything
/// else read as one character per byte (GSM 03.38 unpacked is ASCII for
/// letters and digits).
async fn submitted(
    State(sim): State<SimHandle>,
    Query(query): Query<SubmittedQuery>,
) -> Json<Vec<String>> {
    let to = query.to.trim_start_matches('+');
    Json(
        sim.submitted_to(to)
            .into_iter()
            .map(|s| {
                let body = s.message_payload.as_deref().unwrap_or(&s.short_message);
                if s.data_coding == 8 {
                    let units = body
                        .chunks_exact(2)
                        .map(|pair| u16::from_be_bytes([pair[0], pair[1]]));
                    char::decode_utf16(units)
                        .map(|c| c.unwrap_or('\u{FFFD}'))
                        .collect()
                } else {
                    body.iter().map(|&b| char::from(b)).collect()
                }
            })
            .collect(),
    )
}

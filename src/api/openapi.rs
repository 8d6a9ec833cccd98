//! The OpenAPI document, generated from the handlers' annotations.
//! `tests/it/openapi.rs` keeps `docs/openapi.json` equal to it.

use axum::Json;
use axum::response::IntoResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{audit, broadcasts, groups, inbound, messages, ops, otp};

#[derive(OpenApi)]
#[openapi(
    info(title = "Herald", description = "SMS gateway for the messages that must not wait."),
    paths(
        messages::send,
        messages::send_batch,
        messages::get,
        inbound::list,
        otp::issue,
        otp::verify,
        otp::get,
        otp::cancel,
        otp::blocked,
        otp::unblock,
        groups::put,
        groups::list,
        groups::get,
        groups::delete,
        broadcasts::create,
        broadcasts::cap,
        broadcasts::list,
        broadcasts::get,
        broadcasts::approve,
        broadcasts::reject,
        broadcasts::cancel,
        broadcasts::events,
        audit::list,
        ops::healthz,
        ops::readyz,
        ops::metrics,
        openapi,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "messages", description = "Send messages and follow their delivery"),
        (name = "inbound", description = "Messages from handsets"),
        (name = "groups", description = "Recipient lists for broadcasts"),
        (name = "broadcasts", description = "Broadcasts: two-person approval, exercise vs live, cancel, progress"),
        (name = "audit", description = "Who did what, when, with what outcome"),
        (name = "otp", description = "One-time passwords: issue, verify, SMS-pumping defence"),
        (name = "operations", description = "Health, readiness, metrics"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = doc.components.as_mut() {
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

/// The document as pretty JSON, as committed in `docs/openapi.json`.
pub fn pretty_json() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// This API's OpenAPI 3.1 document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI document", content_type = "application/json")))]
pub async fn openapi() -> impl IntoResponse {
    Json(ApiDoc::openapi())
}

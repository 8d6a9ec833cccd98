//! `/v1/otp`: issue a code, verify it, read or cancel an OTP, and (admin)
//! the prefixes the pumping defence blocked. The rules live in `otp`.

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ApiJson, ErrorBody};
use crate::auth::{Principal, Scope};
use crate::model::{format_micros, now_micros};
use crate::otp::{IssueRequest, OtpState, Target};
use crate::store::OtpRecord;

/// `POST /v1/otp` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OtpRequest {
    /// E.164 recipient.
    pub to: String,
    /// Template rendering the SMS (`code`, `app_name`, `ttl_minutes`); default `otp`.
    #[serde(default)]
    pub template: Option<String>,
    /// e.g. `es-MX`; falls back to `es`, then the default template.
    #[serde(default)]
    pub locale: Option<String>,
    /// Digits, 4 to 10; default 6.
    #[serde(default)]
    #[schema(minimum = 4, maximum = 10)]
    pub length: Option<u8>,
    /// Lifetime of the code; default 600.
    #[serde(default)]
    #[schema(minimum = 1)]
    pub ttl_seconds: Option<u64>,
    /// Shown in the SMS; default `[otp] app_name`.
    #[serde(default)]
    pub app_name: Option<String>,
}

/// `POST /v1/otp/verify` body: `id` or `to`, and the code.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    #[serde(default)]
    pub id: Option<String>,
    /// Verify the caller's pending OTP for this number.
    #[serde(default)]
    pub to: Option<String>,
    pub code: String,
}

/// An OTP as the API shows it: never the code.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OtpView {
    pub id: String,
    pub to: String,
    /// `pending`, `approved`, `expired`, `max_attempts` or `canceled`.
    pub status: String,
    pub expires_at: String,
    pub attempts_remaining: u32,
    /// The SMS carrying the code: `queued`, `submitted`, `delivered` or
    /// `failed` (`GET` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<String>,
    /// The id of that SMS (`GET` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
}

impl OtpView {
    fn of(otp: &OtpRecord) -> Self {
        let now = now_micros();
        OtpView {
            id: otp.id.clone(),
            to: otp.to.clone(),
            status: otp.status_at(now).as_str().to_string(),
            expires_at: format_micros(otp.expires_at),
            attempts_remaining: otp.attempts_remaining(now),
            delivery: None,
            message_id: None,
        }
    }

    fn of_state(state: &OtpState) -> Self {
        OtpView {
            status: state.status.as_str().to_string(),
            attempts_remaining: state.attempts_remaining,
            delivery: Some(state.delivery.to_string()),
            message_id: Some(state.otp.message_id.to_string()),
            ..OtpView::of(&state.otp)
        }
    }
}

/// `POST /v1/otp/verify` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VerifyResponse {
    /// `null` when verifying by number found no OTP.
    pub id: Option<String>,
    pub valid: bool,
    pub status: String,
    pub attempts_remaining: u32,
}

/// A blocked number prefix.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BlockedPrefix {
    /// Calling code and leading national digits, e.g. `44791`.
    pub prefix: String,
    pub until: String,
}

/// The id in the path; one that does not even decode names no OTP.
fn otp_id(id: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    id.map(|Path(id)| id)
        .map_err(|_| ApiError::NotFound("no such OTP".into()))
}

/// Send a one-time code by SMS.
#[utoipa::path(
    post, path = "/v1/otp", tag = "otp",
    request_body = OtpRequest,
    responses(
        (status = 201, description = "Code sent (a pending OTP of this key for `to` is replaced)", body = OtpView),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or bad API key", body = ErrorBody),
        (status = 403, description = "Scope `otp` missing", body = ErrorBody),
        (status = 422, description = "Invalid field, or `country_not_allowed`", body = ErrorBody),
        (status = 429, description = "`rate_limited` (recipient), `app_budget_exhausted`, `prefix_budget_exhausted` or `prefix_blocked`, with Retry-After", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn issue(
    State(app): State<AppState>,
    who: Principal,
    ApiJson(req): ApiJson<OtpRequest>,
) -> Result<(StatusCode, Json<OtpView>), ApiError> {
    who.require(Scope::Otp)?;
    app.ensure_accepting()?;
    let otp = app
        .otp
        .issue(
            &who,
            IssueRequest {
                to: req.to,
                template: req.template,
                locale: req.locale,
                length: req.length,
                ttl: req.ttl_seconds.map(Duration::from_secs),
                app_name: req.app_name,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(OtpView::of(&otp))))
}

/// Check a code. Right once: `valid: true` and `approved`; wrong: the
/// attempts left count down to `max_attempts`.
#[utoipa::path(
    post, path = "/v1/otp/verify", tag = "otp",
    request_body = VerifyRequest,
    responses(
        (status = 200, description = "The verdict", body = VerifyResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or bad API key", body = ErrorBody),
        (status = 403, description = "Scope `otp` missing", body = ErrorBody),
        (status = 404, description = "No OTP with that id", body = ErrorBody),
        (status = 422, description = "Invalid field", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn verify(
    State(app): State<AppState>,
    who: Principal,
    ApiJson(req): ApiJson<VerifyRequest>,
) -> Result<Json<VerifyResponse>, ApiError> {
    who.require(Scope::Otp)?;
    let target = match (req.id, req.to) {
        (Some(id), None) => Target::Id(id),
        (None, Some(to)) => Target::To(to),
        _ => {
            return Err(ApiError::invalid(
                "invalid_target",
                "give exactly one of `id` and `to`",
            ));
        }
    };
    let verdict = app.otp.verify(&who, target, &req.code).await?;
    Ok(Json(VerifyResponse {
        id: verdict.otp.map(|o| o.id),
        valid: verdict.valid,
        status: verdict.status.as_str().to_string(),
        attempts_remaining: verdict.attempts_remaining,
    }))
}

/// An OTP's status, attempts left, expiry and the delivery of its SMS.
#[utoipa::path(
    get, path = "/v1/otp/{id}", tag = "otp",
    params(("id" = String, Path, description = "OTP id")),
    responses(
        (status = 200, description = "The OTP", body = OtpView),
        (status = 401, description = "Missing or bad API key", body = ErrorBody),
        (status = 403, description = "Scope `otp` missing", body = ErrorBody),
        (status = 404, description = "No such OTP", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(app): State<AppState>,
    who: Principal,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<OtpView>, ApiError> {
    who.require(Scope::Otp)?;
    let id = otp_id(id)?;
    let state = app.otp.get(&who, &id).await?;
    Ok(Json(OtpView::of_state(&state)))
}

/// Cancel a pending OTP: its code stops working.
#[utoipa::path(
    post, path = "/v1/otp/{id}/cancel", tag = "otp",
    params(("id" = String, Path, description = "OTP id")),
    responses(
        (status = 200, description = "The OTP after canceling (an ended one is returned as it is)", body = OtpView),
        (status = 401, description = "Missing or bad API key", body = ErrorBody),
        (status = 403, description = "Scope `otp` missing", body = ErrorBody),
        (status = 404, description = "No such OTP", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn cancel(
    State(app): State<AppState>,
    who: Principal,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<OtpView>, ApiError> {
    who.require(Scope::Otp)?;
    let id = otp_id(id)?;
    let otp = app.otp.cancel(&who, &id).await?;
    Ok(Json(OtpView::of(&otp)))
}

/// Number prefixes the SMS-pumping defence blocked (scope `admin`).
#[utoipa::path(
    get, path = "/v1/otp/blocked", tag = "otp",
    responses(
        (status = 200, description = "Blocked prefixes", body = Vec<BlockedPrefix>),
        (status = 401, description = "Missing or bad API key", body = ErrorBody),
        (status = 403, description = "Scope `admin` missing", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn blocked(
    State(app): State<AppState>,
    who: Principal,
) -> Result<Json<Vec<BlockedPrefix>>, ApiError> {
    who.require(Scope::Admin)?;
    let list = app.otp.blocked().await?;
    Ok(Json(
        list.into_iter()
            .map(|(prefix, until)| BlockedPrefix {
                prefix,
                until: format_micros(until),
            })
            .collect(),
    ))
}

/// Lift the block of a prefix (scope `admin`).
#[utoipa::path(
    delete, path = "/v1/otp/blocked/{prefix}", tag = "otp",
    params(("prefix" = String, Path, description = "The blocked prefix, e.g. 44791")),
    responses(
        (status = 204, description = "Unblocked"),
        (status = 401, description = "Missing or bad API key", body = ErrorBody),
        (status = 403, description = "Scope `admin` missing", body = ErrorBody),
        (status = 404, description = "That prefix is not blocked", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn unblock(
    State(app): State<AppState>,
    who: Principal,
    prefix: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    who.require(Scope::Admin)?;
    let Ok(Path(prefix)) = prefix else {
        return Err(ApiError::NotFound("that prefix is not blocked".into()));
    };
    if app.otp.unblock(&prefix).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("that prefix is not blocked".into()))
    }
}

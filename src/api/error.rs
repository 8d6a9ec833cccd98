//! The one mapping from failures to HTTP: every error leaves as
//! `{"error": {"code", "message"}}` with its status, and [`ApiJson`] makes
//! body rejections use that shape too (400 malformed, 413 too large, 415,
//! 422 naming the field).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::ToSchema;

use crate::admission::AdmissionError;
use crate::auth::{AuthError, MissingScope};
use crate::error::FieldError;
use crate::otp::OtpError;
use crate::store::StoreError;

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong, for programs (`code`) and people (`message`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable snake_case code.
    pub code: String,
    /// Human text; for 422 it names the field.
    pub message: String,
}

/// Every error an API handler can return.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Malformed(String),
    /// 400 with its own code (e.g. `malformed_xml`).
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("missing or invalid API key")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    /// 403 with its own code (e.g. `self_approval`).
    #[error("{message}")]
    ForbiddenAs { code: &'static str, message: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{}", .0.message)]
    Invalid(FieldError),
    #[error("{message}")]
    RateLimited {
        /// `rate_limited`, or the OTP defence's budget that is used up.
        code: &'static str,
        retry_after: u64,
        message: String,
    },
    #[error("{0}")]
    Unavailable(String),
    /// 503 with `Retry-After`: a bounded resource is in use right now.
    #[error("{message}")]
    Busy { retry_after: u64, message: String },
    /// A bug: logged with its cause, answered with an opaque 500.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Malformed(_) | ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::ForbiddenAs { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) | ApiError::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &str {
        match self {
            ApiError::Malformed(_) => "malformed_request",
            ApiError::BadRequest { code, .. } => code,
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::ForbiddenAs { code, .. } => code,
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::TooLarge(_) => "too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::Invalid(f) => f.code,
            ApiError::RateLimited { code, .. } => code,
            ApiError::Unavailable(_) | ApiError::Busy { .. } => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    /// The error as it appears in a response body (and in batch rejections).
    pub fn detail(&self) -> ErrorDetail {
        ErrorDetail {
            code: self.code().to_string(),
            message: self.to_string(),
        }
    }

    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Invalid(FieldError::new(code, message))
    }
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        ApiError::Invalid(e)
    }
}

impl From<MissingScope> for ApiError {
    fn from(e: MissingScope) -> Self {
        ApiError::Forbidden(e.to_string())
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Unauthorized => ApiError::Unauthorized,
            AuthError::Store(e) => e.into(),
            AuthError::ShuttingDown => ApiError::Unavailable("shutting down".into()),
            AuthError::Internal(cause) => ApiError::Internal(cause),
        }
    }
}

impl From<AdmissionError> for ApiError {
    fn from(e: AdmissionError) -> Self {
        match e {
            AdmissionError::Invalid(f) => ApiError::Invalid(f),
            AdmissionError::Forbidden(reason) => ApiError::Forbidden(reason),
            AdmissionError::RateLimited {
                retry_after,
                message,
            } => ApiError::RateLimited {
                code: "rate_limited",
                retry_after,
                message,
            },
            AdmissionError::Store(e) => e.into(),
        }
    }
}

impl From<OtpError> for ApiError {
    fn from(e: OtpError) -> Self {
        match e {
            OtpError::Invalid(f) => ApiError::Invalid(f),
            OtpError::Forbidden(reason) => ApiError::Forbidden(reason),
            OtpError::NotFound => ApiError::NotFound("no such OTP".into()),
            OtpError::Limited {
                code,
                retry_after,
                message,
            } => ApiError::RateLimited {
                code,
                retry_after,
                message,
            },
            OtpError::Unavailable(cause) => {
                tracing::error!(%cause, "OTP store or verification pool unavailable");
                ApiError::Unavailable("OTPs are unavailable right now; retry shortly".into())
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store unavailable");
        ApiError::Unavailable("the message store is unavailable; retry shortly".into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(cause) = &self {
            tracing::error!(%cause, "internal error");
        }
        let status = self.status();
        let mut headers = HeaderMap::new();
        match &self {
            ApiError::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::RateLimited { retry_after, .. } | ApiError::Busy { retry_after, .. } => {
                if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
                    headers.insert(header::RETRY_AFTER, v);
                }
            }
            _ => {}
        }
        let body = ErrorBody {
            error: self.detail(),
        };
        (status, headers, axum::Json(body)).into_response()
    }
}

/// A JSON body extractor whose every rejection is an [`ApiError`].
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        require_json(req.headers())?;
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(body_rejection)?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// 415 unless the request says its body is JSON.
///
/// # Errors
/// [`ApiError::UnsupportedMediaType`].
pub fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    if is_json(headers) {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(
            "expected Content-Type: application/json".into(),
        ))
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| {
            let mime = mime.trim();
            mime.eq_ignore_ascii_case("application/json")
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
}

/// Maps a failure to read the body (too large, aborted) to an [`ApiError`].
pub fn body_rejection(r: BytesRejection) -> ApiError {
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::TooLarge("request body is too large".into())
    } else {
        ApiError::Malformed(format!("could not read the request body: {r}"))
    }
}

/// Parses JSON, telling syntax errors (400) from field errors (422 naming the field).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    check_object(bytes)?;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize::<_, T>(&mut de).map_err(|e| json_error(&e))?;
    de.end()
        .map_err(|e| ApiError::Malformed(format!("body is not valid JSON: {e}")))?;
    Ok(value)
}

/// A body must be a JSON object: empty or invalid is 400, other JSON 422.
///
/// # Errors
/// As above.
pub fn check_object(bytes: &[u8]) -> Result<(), ApiError> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => Ok(()),
        None => Err(ApiError::Malformed("the request body is empty".into())),
        Some(_) if serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_err() => {
            Err(ApiError::Malformed("body is not valid JSON".into()))
        }
        Some(_) => Err(ApiError::invalid(
            "invalid_request",
            "the request body must be a JSON object",
        )),
    }
}

/// Describes a JSON error for a caller.
pub fn json_error(e: &serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let inner = e.inner();
    match inner.classify() {
        serde_json::error::Category::Data => {
            let path = e.path().to_string();
            let msg = strip_position(&inner.to_string());
            if path == "." || path.is_empty() {
                ApiError::invalid("invalid_request", msg)
            } else {
                ApiError::invalid("invalid_field", format!("`{path}`: {msg}"))
            }
        }
        _ => ApiError::Malformed(format!("body is not valid JSON: {inner}")),
    }
}

/// serde_json appends " at line 1 column 42"; the field path says more.
pub(crate) fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        to: String,
        n: Option<u32>,
    }

    #[test]
    fn syntax_errors_are_400() {
        let e = parse_json::<Sample>(b"{\"to\":").unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn type_errors_are_422_naming_the_field() {
        let e = parse_json::<Sample>(br#"{"to":"x","n":"seven"}"#).unwrap_err();
        assert_eq!(e.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(e.to_string().contains("`n`"), "{e}");
    }

    #[test]
    fn missing_and_unknown_fields_are_422() {
        let e = parse_json::<Sample>(br#"{}"#).unwrap_err();
        assert_eq!(e.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(e.to_string().contains("`to`"), "{e}");
        let e = parse_json::<Sample>(br#"{"to":"x","bdy":1}"#).unwrap_err();
        assert!(e.to_string().contains("bdy"), "{e}");
    }

    #[test]
    fn trailing_garbage_is_400() {
        let e = parse_json::<Sample>(br#"{"to":"x"} xx"#).unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
    }
}

//! The Bearer extractor: an `Authorization: Bearer <token>` header becomes
//! the [`Principal`] a handler acts as (see [`crate::auth`]).

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use super::AppState;
use super::error::ApiError;
use crate::auth::Principal;

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, rest) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
            .ok_or(ApiError::Unauthorized)?;
        if token.len() > 200 {
            return Err(ApiError::Unauthorized);
        }
        let principal = state.auth.authenticate(token).await?;
        tracing::Span::current().record("principal", principal.name.as_str());
        Ok(principal)
    }
}

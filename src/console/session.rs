//! Who is using the console: the session cookie, the signed-in operator
//! extractor, and the posted-form extractor that refuses any POST without
//! the session's CSRF token.

use axum::extract::{FromRequest, FromRequestParts, Multipart, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};

use super::page::Failure;
use crate::api::AppState;
use crate::model::now_micros;
use crate::operator::{self, Session};
use crate::store::OperatorRole;

/// The session cookie. Scoped to `/console`: the API never sees it.
pub const COOKIE: &str = "herald_console";

/// The session token in the request's cookie, if any.
pub fn token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_string())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `Set-Cookie` for a new session: `HttpOnly` (no script reads it),
/// `SameSite=Strict` (no other site's page sends it), `Path=/console`, and
/// `Secure` when configured. No `Max-Age`: it ends with the browser, and
/// the server ends it earlier (idle and absolute expiry).
pub fn set_cookie(token: &str, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/console{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("herald_console=; Path=/console"))
}

/// `Set-Cookie` that removes the session cookie.
pub fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static("herald_console=; HttpOnly; SameSite=Strict; Path=/console; Max-Age=0")
}

/// A signed-in operator, from a live session. Pages that take it send
/// everyone else to the login page.
pub struct SignedIn(pub Session);

impl SignedIn {
    pub fn name(&self) -> &str {
        &self.0.operator.name
    }

    pub fn role(&self) -> OperatorRole {
        self.0.operator.role
    }

    pub fn csrf(&self) -> &str {
        &self.0.record.csrf
    }

    /// The actor id broadcasts record and the two-person rule compares.
    pub fn actor_id(&self) -> String {
        format!("operator:{}", self.name())
    }

    /// 403 unless the operator may approve.
    ///
    /// # Errors
    /// A forbidden page.
    pub fn require_approver(&self) -> Result<(), Failure> {
        if self.role().may_approve() {
            Ok(())
        } else {
            Err(Failure::Forbidden(
                "Approving broadcasts needs the approver or admin role.".into(),
            ))
        }
    }

    /// 403 unless the operator is an admin.
    ///
    /// # Errors
    /// A forbidden page.
    pub fn require_admin(&self) -> Result<(), Failure> {
        if self.role().may_audit() {
            Ok(())
        } else {
            Err(Failure::Forbidden("The audit log is for admins.".into()))
        }
    }
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Failure> {
        let Some(token) = token(&parts.headers) else {
            return Err(Failure::SignIn { ended: false });
        };
        let policy = app.config.console.policy();
        match operator::resume(&*app.store, &token, &policy, now_micros()).await {
            Ok(Some(session)) => Ok(SignedIn(session)),
            // A cookie whose session is gone: it ended (expiry, logout
            // elsewhere, a disabled account).
            Ok(None) => Err(Failure::SignIn { ended: true }),
            Err(e) => Err(Failure::Unavailable(e.to_string())),
        }
    }
}

/// The fields of a posted form (URL-encoded or multipart), in order. Forms
/// are read as name/value pairs rather than into structs so that repeated
/// fields (checkboxes) and missing ones are the handler's to judge, with a
/// clear page rather than a bare rejection.
#[derive(Debug, Default, Clone)]
pub struct Fields(pub Vec<(String, String)>);

impl Fields {
    /// The first value of `name`, trimmed.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
    }

    /// The first value of `name`, or "".
    pub fn text(&self, name: &str) -> &str {
        self.get(name).unwrap_or("")
    }

    /// Every non-empty value of `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, v)| k == name && !v.trim().is_empty())
            .map(|(_, v)| v.trim())
            .collect()
    }
}

/// A POST from a signed-in operator that carries the session's CSRF token
/// in its `csrf` field; anything else is refused with a 403 page before the
/// handler runs.
pub struct Posted {
    pub who: SignedIn,
    pub fields: Fields,
}

/// The fields of a POST body, URL-encoded or multipart (file contents as
/// text).
///
/// # Errors
/// A bad-request page for a body that is neither.
pub async fn read_fields(req: Request, app: &AppState) -> Result<Fields, Failure> {
    let kind = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if kind.starts_with("multipart/form-data") {
        let mut multipart = Multipart::from_request(req, app)
            .await
            .map_err(|e| Failure::BadRequest(format!("The form could not be read: {e}")))?;
        let mut fields = Vec::new();
        while let Some(field) = multipart
            .next_field()
            .await
            .map_err(|e| Failure::BadRequest(format!("The form could not be read: {e}")))?
        {
            let name = field.name().unwrap_or("").to_string();
            let bytes = field
                .bytes()
                .await
                .map_err(|e| Failure::BadRequest(format!("The upload could not be read: {e}")))?;
            fields.push((name, String::from_utf8_lossy(&bytes).into_owned()));
        }
        Ok(Fields(fields))
    } else {
        let axum::Form(pairs) = axum::Form::<Vec<(String, String)>>::from_request(req, app)
            .await
            .map_err(|e| Failure::BadRequest(format!("The form could not be read: {e}")))?;
        Ok(Fields(pairs))
    }
}

impl FromRequest<AppState> for Posted {
    type Rejection = Failure;

    async fn from_request(req: Request, app: &AppState) -> Result<Self, Failure> {
        let (mut parts, body) = req.into_parts();
        let who = SignedIn::from_request_parts(&mut parts, app).await?;
        let fields = read_fields(Request::from_parts(parts, body), app).await?;
        let sent = fields.get("csrf").unwrap_or("");
        if sent.is_empty() || !operator::same_token(sent, who.csrf()) {
            tracing::warn!(operator = %who.name(), "console POST without a valid CSRF token refused");
            return Err(Failure::Csrf);
        }
        Ok(Posted { who, fields })
    }
}

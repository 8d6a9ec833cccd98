//! Rendering: every console answer is an HTML page (errors too), with the
//! headers that keep it out of frames, caches and other origins' reach.

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use super::session::SignedIn;

/// What every signed-in page shows around its content: who is signed in,
/// the navigation their role allows, and the CSRF token for the logout form.
#[derive(Debug, Clone)]
pub struct Chrome {
    pub name: String,
    pub role: &'static str,
    pub csrf: String,
    pub may_approve: bool,
    pub may_audit: bool,
    /// The navigation entry of this page.
    pub section: &'static str,
}

impl Chrome {
    pub fn new(who: &SignedIn, section: &'static str) -> Chrome {
        Chrome {
            name: who.name().to_string(),
            role: who.role().as_str(),
            csrf: who.csrf().to_string(),
            may_approve: who.role().may_approve(),
            may_audit: who.role().may_audit(),
            section,
        }
    }
}

/// Renders `page` as a 200 (or `status`) HTML answer.
pub fn render<T: Template>(status: StatusCode, page: &T) -> Response {
    match page.render() {
        Ok(body) => html(status, body),
        Err(e) => Failure::Internal(format!("the page could not be rendered: {e}")).into_response(),
    }
}

/// A rendered page.
pub fn html(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

/// Headers on every console answer: no caching of operator pages, no
/// framing (clickjacking), scripts and styles only from the console itself.
pub async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    chrome: Option<Chrome>,
    status: u16,
    heading: &'a str,
    message: &'a str,
}

/// Why a console request did not get its page: each becomes an HTML page
/// with its status (or, for a missing session, a redirect to the login).
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// No live session: to the login page (`ended`: a session timed out or
    /// was ended elsewhere, which the login page says).
    #[error("sign in first")]
    SignIn { ended: bool },
    /// A POST without the session's CSRF token.
    #[error("form refused: missing or wrong CSRF token")]
    Csrf,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl From<crate::store::StoreError> for Failure {
    fn from(e: crate::store::StoreError) -> Self {
        Failure::Unavailable(format!(
            "The store is not answering: {e}. Try again shortly."
        ))
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let (status, heading, message) = match &self {
            Failure::SignIn { ended } => {
                let to = if *ended {
                    "/console/login?ended=1"
                } else {
                    "/console/login"
                };
                return Redirect::to(to).into_response();
            }
            Failure::Csrf => (
                StatusCode::FORBIDDEN,
                "Form refused",
                "This form did not carry the security token of your session, so nothing was done. \
                 Go back, reload the page and try again.",
            ),
            Failure::Forbidden(m) => (StatusCode::FORBIDDEN, "Not allowed", m.as_str()),
            Failure::NotFound(m) => (StatusCode::NOT_FOUND, "Not found", m.as_str()),
            Failure::BadRequest(m) => (StatusCode::BAD_REQUEST, "Bad request", m.as_str()),
            Failure::Conflict(m) => (StatusCode::CONFLICT, "Not possible now", m.as_str()),
            Failure::Invalid(m) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "Please check the form",
                m.as_str(),
            ),
            Failure::Unavailable(m) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Temporarily unavailable",
                m.as_str(),
            ),
            Failure::Internal(m) => {
                tracing::error!(error = %m, "console page failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "The console could not show this page. Nothing was sent.",
                )
            }
        };
        let page = ErrorPage {
            chrome: None,
            status: status.as_u16(),
            heading,
            message,
        };
        match page.render() {
            Ok(body) => html(status, body),
            Err(_) => (status, message.to_string()).into_response(),
        }
    }
}

/// The console's 405: a page, like every other answer.
pub async fn method_not_allowed() -> Response {
    let page = ErrorPage {
        chrome: None,
        status: 405,
        heading: "Not possible here",
        message: "This console address does not take that kind of request.",
    };
    render(StatusCode::METHOD_NOT_ALLOWED, &page)
}

/// The console's 404 for paths it does not serve.
pub async fn not_found() -> Failure {
    Failure::NotFound("There is no console page at this address.".into())
}

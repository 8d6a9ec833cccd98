//! The console's stylesheet and script, compiled into the binary: no
//! front-end build step, no CDN, nothing to deploy beside `herald`.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::page::Failure;

const CSS: &str = include_str!("../../console/assets/console.css");
const JS: &str = include_str!("../../console/assets/console.js");

/// `GET /console/assets/{file}`.
pub async fn get(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "console.css" => (CSS, "text/css; charset=utf-8"),
        "console.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return Failure::NotFound("There is no such console file.".into()).into_response(),
    };
    let mut response = (StatusCode::OK, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    response
}

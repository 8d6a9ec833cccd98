//! Domain errors shared by the modules that check what callers send
//! (admission, and every feature built on it). The HTTP layer maps them to
//! responses in one place (`api::error`).

/// A problem with one field of a request: the caller's mistake, answered
/// 422 with a stable `code` and a message that names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FieldError {
    pub code: &'static str,
    pub message: String,
}

impl FieldError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        FieldError {
            code,
            message: message.into(),
        }
    }
}

//! The body of `POST /v1/messages` (and of each batch item) and what it
//! becomes: the domain [`Outgoing`] that admission takes.

use serde::Deserialize;
use utoipa::ToSchema;

use crate::admission::{Content, Outgoing};
use crate::error::FieldError;
use crate::model::Class;

/// `POST /v1/messages` body (also one item of a batch).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    /// Recipient, E.164 (`+` and digits).
    pub to: String,
    /// Text to send; or use `template` + `vars`.
    #[serde(default)]
    pub body: Option<String>,
    /// Template name (`templates/NAME.rhai`).
    #[serde(default)]
    pub template: Option<String>,
    /// Template variables.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub vars: Option<serde_json::Map<String, serde_json::Value>>,
    /// Message class; default `transactional`.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "transactional")]
    pub class: Option<Class>,
    /// Sender id: up to 11 letters/digits, or a number of up to 15 digits.
    #[serde(default)]
    pub from: Option<String>,
    /// Same key within 24 h returns the first message and creates nothing.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// Receives the message object on each final status.
    #[serde(default)]
    pub callback_url: Option<String>,
    /// Template locale, e.g. `es-MX`.
    #[serde(default)]
    pub locale: Option<String>,
    /// How long Herald may keep trying, at least 1 second and at most
    /// `messages.max_validity`; default per class.
    #[serde(default)]
    #[schema(minimum = 1)]
    pub validity_seconds: Option<u64>,
    /// Free-form labels, visible to routing scripts.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
}

impl SendRequest {
    /// The domain message this request asks for.
    ///
    /// # Errors
    /// `body` and `template` both or neither given, or `vars`/`locale`
    /// without a template.
    pub fn into_outgoing(self) -> Result<Outgoing, FieldError> {
        let content = content_of(self.body, self.template, self.vars, self.locale)?;
        Ok(Outgoing {
            to: self.to,
            content,
            class: self.class.unwrap_or(Class::Transactional),
            from: self.from,
            idempotency_key: self.idempotency_key,
            callback_url: self.callback_url,
            validity: self.validity_seconds.map(std::time::Duration::from_secs),
            tags: self.tags.unwrap_or_default(),
        })
    }
}

/// The text of a request: `body`, or `template` with its `vars` and
/// `locale` (shared by messages and broadcasts).
///
/// # Errors
/// `body` and `template` both or neither given, or `vars`/`locale`
/// without a template.
pub fn content_of(
    body: Option<String>,
    template: Option<String>,
    vars: Option<serde_json::Map<String, serde_json::Value>>,
    locale: Option<String>,
) -> Result<Content, FieldError> {
    match (body, template) {
        (Some(_), Some(_)) => Err(FieldError::new(
            "invalid_field",
            "`body` and `template` are exclusive: send one",
        )),
        (body, None) => {
            if vars.is_some() || locale.is_some() {
                let field = if vars.is_some() { "vars" } else { "locale" };
                return Err(FieldError::new(
                    "invalid_field",
                    format!("`{field}` is only allowed with `template`"),
                ));
            }
            Ok(Content::Text(body.ok_or_else(|| {
                FieldError::new(
                    "invalid_body",
                    "`body` is required (or `template` with `vars`)",
                )
            })?))
        }
        (None, Some(name)) => Ok(Content::Template {
            name,
            vars: vars.unwrap_or_default(),
            locale,
        }),
    }
}

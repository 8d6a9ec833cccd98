//! Admission: a send request becomes a durably stored, queued message, or a
//! precise 4xx. Everything a caller can get wrong is caught here, before
//! anything is stored.
//!
//! Order: validate the fields, render the template (when one is named), run
//! the operator's `on_submit` hook (rewrite, defer or reject), then `route`
//! (the connectors in failover order, ready ones first), then the store
//! applies the recipient limit and opt-outs in the same write.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::auth::{Principal, Scope};
use crate::config::{Config, LimitsConfig, ValidityConfig};
use crate::connector::Health;
use crate::error::FieldError;
use crate::limits::retry_after_seconds;
use crate::metrics::Metrics;
use crate::model::{Class, Message, MessageId, Micros, Status, format_micros, now_micros};
use crate::script::{self, RouteDecision, ScriptMessage, Scripts, SubmitDecision, TemplateError};
use crate::seal::Sealer;
use crate::store::{Admission, MessageStore, NewMessage, StoreError};
use crate::text;
use crate::webhook::DestinationPolicy;

/// Longest idempotency key.
const MAX_IDEMPOTENCY_KEY: usize = 255;
/// Longest callback URL.
const MAX_CALLBACK_URL: usize = 2048;
/// Most tags per message, and longest tag.
const MAX_TAGS: usize = 10;
const MAX_TAG_LEN: usize = 64;

/// A message to admit, as a domain value: what the API's send request
/// becomes once parsed, and what internal senders (inbound auto-replies,
/// OTP, CAP) build directly.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Recipient as given (E.164, or national with a default region).
    pub to: String,
    pub content: Content,
    pub class: Class,
    /// Sender id; the route's default when `None`.
    pub from: Option<String>,
    /// Same key (per owner) within the idempotency TTL returns the first message.
    pub idempotency_key: Option<String>,
    /// Receives the message object on each final status.
    pub callback_url: Option<String>,
    /// How long Herald may keep trying; the class default when `None`.
    pub validity: Option<Duration>,
    /// Free-form labels, visible to routing scripts.
    pub tags: Vec<String>,
}

impl Outgoing {
    /// A plain text message of `class` with no options.
    pub fn text(to: String, body: String, class: Class) -> Outgoing {
        Outgoing {
            to,
            content: Content::Text(body),
            class,
            from: None,
            idempotency_key: None,
            callback_url: None,
            validity: None,
            tags: Vec::new(),
        }
    }
}

/// The text of a message: given, or rendered from a template.
#[derive(Debug, Clone)]
pub enum Content {
    Text(String),
    Template {
        name: String,
        vars: serde_json::Map<String, serde_json::Value>,
        /// e.g. `es-MX`; falls back to `es`, then the default.
        locale: Option<String>,
    },
    /// A template with one secret variable (an OTP's code). The stored body,
    /// and everything that reads it (API, webhooks, scripts), shows the
    /// secret masked; the clear text is only kept sealed until the message
    /// is submitted (see `seal`).
    Sealed {
        name: String,
        vars: serde_json::Map<String, serde_json::Value>,
        locale: Option<String>,
        /// The variable holding the secret, and its value.
        secret_var: &'static str,
        secret: String,
    },
}

/// A text rendered for sending: what is stored and shown, and the clear
/// text to seal when that differs.
struct Rendered {
    shown: String,
    sealed: Option<String>,
}

/// Why a message was not admitted. Nothing was stored.
#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    /// A field is wrong (the message names it).
    #[error(transparent)]
    Invalid(#[from] FieldError),
    /// The principal may not send this (e.g. class `emergency` without the
    /// `broadcast` scope).
    #[error("{0}")]
    Forbidden(String),
    /// The recipient's limit for the class is used up.
    #[error("{message}")]
    RateLimited {
        /// Whole seconds until a send would be allowed.
        retry_after: u64,
        message: String,
    },
    /// The store could not take it; the caller may retry.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AdmissionError {
    /// The stable code counted in `herald_rejected_total`.
    fn code(&self) -> &'static str {
        match self {
            AdmissionError::Invalid(f) => f.code,
            AdmissionError::Forbidden(_) => "forbidden",
            AdmissionError::RateLimited { .. } => "rate_limited",
            AdmissionError::Store(_) => "other",
        }
    }
}

/// Turns requests into stored messages.
pub struct Admitter {
    store: Arc<dyn MessageStore>,
    metrics: Arc<Metrics>,
    max_segments: u32,
    default_region: Option<text::Region>,
    number_policy: text::NumberPolicy,
    validity: ValidityConfig,
    max_validity: Duration,
    default_route: Vec<String>,
    limits: LimitsConfig,
    scripts: Arc<Scripts>,
    /// Connector readiness: routes list ready connectors first.
    health: Health,
    /// Seals secret text ([`Content::Sealed`]); without it such content is
    /// refused.
    sealer: Option<Arc<Sealer>>,
    /// Where callbacks may go: literal inside addresses are refused here.
    destinations: DestinationPolicy,
    /// Sender ids only `broadcast` keys may use.
    reserved_senders: crate::senders::SenderPatterns,
}

impl Admitter {
    pub fn new(
        config: &Config,
        store: Arc<dyn MessageStore>,
        metrics: Arc<Metrics>,
        scripts: Arc<Scripts>,
        health: Health,
    ) -> Self {
        Admitter {
            store,
            metrics,
            max_segments: config.messages.max_segments,
            default_region: config.default_region(),
            number_policy: config.messages.number_policy,
            validity: config.messages.validity.clone(),
            max_validity: config.messages.max_validity,
            default_route: config.default_route(),
            limits: config.limits,
            scripts,
            health,
            sealer: None,
            // Config validation has checked the allowlist.
            destinations: DestinationPolicy::new(&config.webhooks.allow_destinations)
                .unwrap_or_default(),
            reserved_senders: config.reserved_senders(),
        }
    }

    /// This admitter sealing secret text with `sealer`.
    #[must_use]
    pub fn with_sealer(mut self, sealer: Arc<Sealer>) -> Self {
        self.sealer = Some(sealer);
        self
    }

    /// Validates one request into a message ready to store.
    ///
    /// # Errors
    /// The first problem found, naming the field.
    pub fn prepare(&self, who: &Principal, req: Outgoing) -> Result<NewMessage, AdmissionError> {
        let class = req.class;
        if class == Class::Emergency && !who.has(Scope::Broadcast) {
            return Err(AdmissionError::Forbidden(
                "emergency messages need an API key with the 'broadcast' scope".into(),
            ));
        }
        if class == Class::Otp && !who.has(Scope::Otp) {
            return Err(AdmissionError::Forbidden(
                "otp messages need an API key with the 'otp' scope".into(),
            ));
        }
        let to = text::parse_msisdn_with(&req.to, self.default_region, self.number_policy)
            .map_err(|e| FieldError::new("invalid_to", format!("`to` {e}")))?;
        // One snapshot for the template and both hooks: a reload mid-request
        // never mixes versions.
        let scripts = self.scripts.current();
        let Rendered {
            shown: body,
            sealed,
        } = self.body_of(&scripts, req.content)?;
        // Sealed text: the masked copy is what is stored, whatever on_submit does.
        let masked = sealed.as_ref().map(|_| body.clone());
        let encoded = text::analyse(sealed.as_deref().unwrap_or(&body));
        self.check_length(&encoded, "`body`")?;
        let from = req.from.map(validate_sender).transpose()?;
        if let Some(from) = &from {
            crate::senders::check(who, from, &self.reserved_senders)?;
        }
        let idempotency_key = req
            .idempotency_key
            .map(validate_idempotency_key)
            .transpose()?;
        let callback_url = req
            .callback_url
            .map(|url| validate_callback_url(url, &self.destinations))
            .transpose()?;
        let tags = validate_tags(req.tags)?;
        let validity = match req.validity {
            None => self.validity.for_class(class),
            Some(v) => {
                if v.is_zero() || v > self.max_validity {
                    return Err(FieldError::new(
                        "invalid_validity",
                        format!(
                            "`validity_seconds` must be between 1 and {}",
                            self.max_validity.as_secs()
                        ),
                    )
                    .into());
                }
                v
            }
        };
        let mut msg = ScriptMessage {
            to: to.into_string(),
            class,
            body,
            encoding: encoded.encoding,
            segments: encoded.segments,
            from,
            tags,
        };
        let not_before = self.run_on_submit(&scripts, &mut msg)?;
        if let Some(masked) = masked {
            // The clear text is sealed as rendered: a rewrite of the masked
            // copy could only lose the secret.
            msg.body = masked;
            msg.encoding = encoded.encoding;
            msg.segments = encoded.segments;
        }
        let route = match scripts.route(&msg) {
            RouteDecision::Default => self.default_route.clone(),
            RouteDecision::Connectors(names) => names,
            RouteDecision::Reject(reason) => {
                return Err(FieldError::new(
                    "rejected_by_route",
                    format!("rejected by the routing script: {reason}"),
                )
                .into());
            }
        };
        let now = now_micros();
        let expires_at =
            now.saturating_add(i64::try_from(validity.as_micros()).unwrap_or(i64::MAX));
        if let Some(at) = not_before
            && at >= expires_at
        {
            return Err(FieldError::new(
                "rejected_by_route",
                format!(
                    "on_submit deferred the message to {}, after its validity ends ({}); \
                     ask for a longer `validity_seconds`",
                    format_micros(at),
                    format_micros(expires_at)
                ),
            )
            .into());
        }
        let id = MessageId::generate();
        let sealed_body = match sealed {
            None => None,
            Some(clear) => {
                let sealer = self.sealer.as_ref().ok_or_else(|| {
                    StoreError::Io("no seal key: secret text cannot be stored".into())
                })?;
                Some(
                    sealer
                        .seal(id, &clear)
                        .map_err(|e| StoreError::Io(e.to_string()))?,
                )
            }
        };
        let message = Message {
            id,
            to: msg.to,
            from: msg.from,
            body: msg.body,
            class,
            encoding: msg.encoding,
            segments: msg.segments,
            status: Status::Queued,
            route: script::order_by_health(route, &*self.health),
            route_index: 0,
            connector: None,
            smsc_message_ids: Vec::new(),
            parts_delivered: 0,
            parts_failed: 0,
            error: None,
            created_at: now,
            submitted_at: None,
            done_at: None,
            expires_at,
            attempts: 0,
            seq: 0,
            callback_url,
            owner: who.owner.clone(),
            idempotency_key: idempotency_key.clone(),
            tags: msg.tags,
            // Only a deferral into the future holds the message.
            not_before: not_before.filter(|at| *at > now),
            partial: None,
            sealed_body,
            broadcast: None,
        };
        let limit = self.limits.for_class(class);
        Ok(NewMessage {
            idempotency: idempotency_key.map(|k| (who.owner.clone(), k)),
            limit,
            // One application cannot use up another's OTPs for a number.
            limit_scope: (class == Class::Otp).then(|| who.owner.clone()),
            refuse_if_opted_out: class == Class::Marketing,
            not_before,
            message,
        })
    }

    /// Renders `content` once and checks its length: the text a broadcast
    /// sends to every recipient. Secret (sealed) text cannot be broadcast.
    ///
    /// # Errors
    /// An empty body, a template that fails, a text too long.
    pub fn render(&self, content: Content) -> Result<(String, text::EncodedText), FieldError> {
        if matches!(content, Content::Sealed { .. }) {
            return Err(FieldError::new(
                "invalid_body",
                "secret text cannot be broadcast",
            ));
        }
        let scripts = self.scripts.current();
        let Rendered { shown, .. } = self.body_of(&scripts, content)?;
        let encoded = text::analyse(&shown);
        self.check_length(&encoded, "`body`")?;
        Ok((shown, encoded))
    }

    /// The connectors the routing script picks for `msg` (the default
    /// route when it picks none), ready ones first.
    ///
    /// # Errors
    /// The script rejected the message.
    pub fn route_for(&self, msg: &ScriptMessage) -> Result<Vec<String>, FieldError> {
        let route = match self.scripts.route(msg) {
            RouteDecision::Default => self.default_route.clone(),
            RouteDecision::Connectors(names) => names,
            RouteDecision::Reject(reason) => {
                return Err(FieldError::new(
                    "rejected_by_route",
                    format!("rejected by the routing script: {reason}"),
                ));
            }
        };
        Ok(script::order_by_health(route, &*self.health))
    }

    /// A recipient as E.164, under the configured region and number policy.
    ///
    /// # Errors
    /// Why it is not a number we send to.
    pub fn parse_number(&self, raw: &str) -> Result<String, String> {
        text::parse_msisdn_with(raw, self.default_region, self.number_policy)
            .map(text::Msisdn::into_string)
            .map_err(|e| e.to_string())
    }

    /// How long a message of `class` may wait to be submitted.
    pub fn validity_of(&self, class: Class) -> Duration {
        self.validity.for_class(class)
    }

    /// The text to send: given, or the template rendered with its
    /// variables in its locale.
    fn body_of(
        &self,
        scripts: &script::Current<'_>,
        content: Content,
    ) -> Result<Rendered, FieldError> {
        let (name, mut vars, locale, secret) = match content {
            Content::Text(b) if b.is_empty() => {
                return Err(FieldError::new("invalid_body", "`body` must not be empty"));
            }
            Content::Text(b) => {
                return Ok(Rendered {
                    shown: b,
                    sealed: None,
                });
            }
            Content::Template { name, vars, locale } => (name, vars, locale, None),
            Content::Sealed {
                name,
                vars,
                locale,
                secret_var,
                secret,
            } => (name, vars, locale, Some((secret_var, secret))),
        };
        if let Some(l) = &locale
            && !valid_locale(l)
        {
            return Err(FieldError::new(
                "invalid_locale",
                "`locale` must be a language tag such as \"es\" or \"es-MX\"",
            ));
        }
        let render = |vars: &serde_json::Map<String, serde_json::Value>| {
            let text = scripts
                .render(&name, locale.as_deref(), vars)
                .map_err(|e| template_error(&name, e))?;
            if text.is_empty() {
                return Err(FieldError::new(
                    "template_error",
                    format!("`template`: '{name}' rendered an empty body"),
                ));
            }
            Ok(text)
        };
        let Some((secret_var, secret)) = secret else {
            return Ok(Rendered {
                shown: render(&vars)?,
                sealed: None,
            });
        };
        vars.insert(secret_var.into(), "*".repeat(secret.chars().count()).into());
        let shown = render(&vars)?;
        vars.insert(secret_var.into(), secret.into());
        let clear = render(&vars)?;
        if clear == shown {
            return Err(FieldError::new(
                "template_error",
                format!("`template`: '{name}' does not show `{secret_var}`"),
            ));
        }
        Ok(Rendered {
            shown,
            sealed: Some(clear),
        })
    }

    fn check_length(&self, encoded: &text::EncodedText, what: &str) -> Result<(), FieldError> {
        if encoded.segments > self.max_segments {
            return Err(FieldError::new(
                "body_too_long",
                format!(
                    "{what} needs {} segments ({} as {}); at most {} are allowed",
                    encoded.segments,
                    encoded.units,
                    encoded.encoding.as_str(),
                    self.max_segments
                ),
            ));
        }
        Ok(())
    }

    /// Runs `on_submit`: rewrites `msg` and returns its deferral, or refuses
    /// the message. A rewrite that would not pass admission is a script
    /// error: the message goes on unchanged.
    fn run_on_submit(
        &self,
        scripts: &script::Current<'_>,
        msg: &mut ScriptMessage,
    ) -> Result<Option<Micros>, FieldError> {
        let check = |m: &ScriptMessage| -> Result<(), String> {
            if let Some(from) = &m.from {
                validate_sender(from.clone()).map_err(|e| e.message)?;
            }
            validate_tags(m.tags.clone()).map_err(|e| e.message)?;
            self.check_length(&text::analyse(&m.body), "the rewritten body")
                .map_err(|e| e.message)
        };
        match scripts.on_submit(msg, &check) {
            SubmitDecision::Accept { not_before } => Ok(not_before),
            SubmitDecision::Reject(reason) => Err(FieldError::new(
                "rejected_by_route",
                format!("rejected by on_submit: {reason}"),
            )),
        }
    }

    /// Admits one message: stored and queued (or an idempotent replay),
    /// or the reason it is refused.
    ///
    /// # Errors
    /// The caller's mistakes, a used-up limit, or the store being down.
    pub async fn admit_one(
        &self,
        who: &Principal,
        req: Outgoing,
    ) -> Result<Admission, AdmissionError> {
        let started = Instant::now();
        let item = match self.prepare(who, req) {
            Ok(item) => item,
            Err(e) => {
                self.metrics.rejected(e.code());
                return Err(e);
            }
        };
        let class = item.message.class;
        let admitted = self
            .store
            .admit(vec![item])
            .await?
            .pop()
            .ok_or_else(|| StoreError::Io("the store answered no admission".into()))?;
        let result = self.settle(admitted, class);
        self.metrics
            .admission_latency(started.elapsed().as_secs_f64());
        result
    }

    /// Admits a batch: every valid item is stored in one write; invalid
    /// items are answered in their place and do not affect the others.
    ///
    /// # Errors
    /// The store being down (nothing of the batch is stored).
    pub async fn admit_batch(
        &self,
        who: &Principal,
        items: Vec<Outgoing>,
    ) -> Result<Vec<Result<Admission, AdmissionError>>, AdmissionError> {
        let started = Instant::now();
        let mut results: Vec<Option<Result<Admission, AdmissionError>>> =
            Vec::with_capacity(items.len());
        let mut valid = Vec::with_capacity(items.len());
        let mut valid_index = Vec::with_capacity(items.len());
        for (index, item) in items.into_iter().enumerate() {
            // Preparing runs the operator's scripts: a big batch is tens of
            // milliseconds of it, which would hold this runtime thread from
            // the dispatcher and receipts all that time.
            if index % PREPARE_BETWEEN_YIELDS == PREPARE_BETWEEN_YIELDS - 1 {
                tokio::task::yield_now().await;
            }
            match self.prepare(who, item) {
                Ok(m) => {
                    valid_index.push(index);
                    valid.push(m);
                    results.push(None);
                }
                Err(e) => {
                    self.metrics.rejected(e.code());
                    results.push(Some(Err(e)));
                }
            }
        }
        if !valid.is_empty() {
            let classes: Vec<Class> = valid.iter().map(|m| m.message.class).collect();
            let admitted = self.store.admit(valid).await?;
            for ((index, a), class) in valid_index.into_iter().zip(admitted).zip(classes) {
                results[index] = Some(self.settle(a, class));
            }
        }
        self.metrics
            .admission_latency(started.elapsed().as_secs_f64());
        Ok(results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(
                        StoreError::Io("the store answered fewer admissions than asked".into())
                            .into(),
                    )
                })
            })
            .collect())
    }

    /// Counts a store answer and turns refusals into their errors.
    fn settle(&self, admitted: Admission, class: Class) -> Result<Admission, AdmissionError> {
        match admitted {
            Admission::Created(_) => {
                self.metrics.accepted(class, 1);
                Ok(admitted)
            }
            Admission::Existing(_) => Ok(admitted),
            Admission::RateLimited { retry_after } => {
                self.metrics.rate_limited(class);
                let secs = retry_after_seconds(retry_after);
                Err(AdmissionError::RateLimited {
                    retry_after: secs,
                    message: format!(
                        "`to` has reached its {} limit; retry in {secs} s",
                        class.as_str()
                    ),
                })
            }
            Admission::OptedOut => {
                self.metrics.rejected("opted_out");
                Err(FieldError::new(
                    "opted_out",
                    "`to` has opted out of marketing messages (replied STOP)",
                )
                .into())
            }
        }
    }
}

/// Batch items prepared between two yields to the runtime.
const PREPARE_BETWEEN_YIELDS: usize = 64;

/// A BCP 47-ish language tag: letters, digits, `-` or `_`, at most 35.
fn valid_locale(locale: &str) -> bool {
    !locale.is_empty()
        && locale.len() <= 35
        && locale
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The 422 for a template that cannot render.
fn template_error(name: &str, e: TemplateError) -> FieldError {
    match e {
        TemplateError::Unknown { .. } => FieldError::new(
            "unknown_template",
            format!("`template`: no template named '{name}' is loaded"),
        ),
        TemplateError::NoLocale { locale: None, .. } => FieldError::new(
            "unknown_template",
            format!("`template`: '{name}' has no default version ({name}.rhai); give a `locale`"),
        ),
        TemplateError::NoLocale {
            locale: Some(locale),
            ..
        } => FieldError::new(
            "unknown_template",
            format!("`locale`: template '{name}' has no locale '{locale}' and no default"),
        ),
        TemplateError::MissingVariable { variable, .. } => FieldError::new(
            "missing_variable",
            format!("`vars`: template '{name}' needs variable '{variable}'"),
        ),
        TemplateError::Failed { error, .. } => FieldError::new(
            "template_error",
            format!("`template`: '{name}' failed: {}", error.message),
        ),
        TemplateError::NotText { produced, .. } => FieldError::new(
            "template_error",
            format!("`template`: '{name}' produced {produced}, not text"),
        ),
    }
}

fn validate_sender(from: String) -> Result<String, FieldError> {
    let numeric = from.strip_prefix('+').unwrap_or(&from);
    let ok_numeric =
        !numeric.is_empty() && numeric.len() <= 15 && numeric.bytes().all(|b| b.is_ascii_digit());
    let ok_alpha = !from.is_empty()
        && from.len() <= 11
        && from
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == ' ' || c == '-' || c == '.')
        && from.chars().any(|c| c.is_ascii_alphabetic());
    if ok_numeric || ok_alpha {
        Ok(from)
    } else {
        Err(FieldError::new(
            "invalid_from",
            "`from` must be up to 11 letters and digits, or a number of up to 15 digits",
        ))
    }
}

fn validate_idempotency_key(key: String) -> Result<String, FieldError> {
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY || key.chars().any(|c| c.is_control()) {
        return Err(FieldError::new(
            "invalid_idempotency_key",
            format!("`idempotency_key` must be 1 to {MAX_IDEMPOTENCY_KEY} printable characters"),
        ));
    }
    Ok(key)
}

fn validate_callback_url(url: String, policy: &DestinationPolicy) -> Result<String, FieldError> {
    let bad = || {
        FieldError::new(
            "invalid_callback_url",
            format!(
                "`callback_url` must be an http(s) URL of at most {MAX_CALLBACK_URL} characters"
            ),
        )
    };
    if url.len() > MAX_CALLBACK_URL {
        return Err(bad());
    }
    let parsed = reqwest::Url::parse(&url).map_err(|_| bad())?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(bad());
    }
    policy
        .check_literal(&parsed)
        .map_err(|e| FieldError::new("forbidden_callback_url", format!("`callback_url`: {e}")))?;
    Ok(url)
}

fn validate_tags(tags: Vec<String>) -> Result<Vec<String>, FieldError> {
    if tags.len() > MAX_TAGS
        || tags
            .iter()
            .any(|t| t.is_empty() || t.len() > MAX_TAG_LEN || t.chars().any(char::is_control))
    {
        return Err(FieldError::new(
            "invalid_tags",
            format!("`tags` holds at most {MAX_TAGS} tags of 1 to {MAX_TAG_LEN} characters"),
        ));
    }
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn senders_are_alphanumeric_or_numeric() {
        assert!(validate_sender("Herald".into()).is_ok());
        assert!(validate_sender("+447700900123".into()).is_ok());
        assert!(validate_sender("TooLongSender1".into()).is_err());
        assert!(validate_sender("12345".into()).is_ok());
        assert!(validate_sender("".into()).is_err());
        assert!(validate_sender("bad!".into()).is_err());
    }

    #[test]
    fn callback_urls_must_be_http() {
        let p = DestinationPolicy::default();
        assert!(validate_callback_url("https://example.com/hook".into(), &p).is_ok());
        assert!(validate_callback_url("ftp://example.com".into(), &p).is_err());
        assert!(validate_callback_url("not a url".into(), &p).is_err());
    }

    #[test]
    fn callback_urls_to_literal_inside_addresses_are_refused() {
        let p = DestinationPolicy::default();
        for url in [
            "http://127.0.0.1:8080/hook",
            "http://169.254.169.254/latest/meta-data",
            "https://[::1]/hook",
            "http://[::ffff:10.0.0.1]/hook",
        ] {
            let e = validate_callback_url(url.into(), &p).expect_err(url);
            assert_eq!(e.code, "forbidden_callback_url");
            assert!(e.message.contains("`callback_url`"), "{}", e.message);
        }
        let allowed = DestinationPolicy::new(&["127.0.0.1".into()]).expect("policy");
        assert!(validate_callback_url("http://127.0.0.1:8080/hook".into(), &allowed).is_ok());
    }

    #[test]
    fn idempotency_keys_are_bounded() {
        assert!(validate_idempotency_key("k-1".into()).is_ok());
        assert!(validate_idempotency_key(String::new()).is_err());
        assert!(validate_idempotency_key("x".repeat(256)).is_err());
        assert!(validate_idempotency_key("a\nb".into()).is_err());
    }
}

//! One-time passwords: issue a code by SMS, verify it once.
//!
//! A code is drawn from the OS CSPRNG ([`code::Code`]), sent through
//! admission as an `otp`-class message whose stored text shows it masked
//! (the clear text is sealed until submit, see `seal`), and kept only as an
//! argon2id hash. Verification hashes on a pool of its own and applies the
//! attempt atomically in the store, so concurrent verifies on any number of
//! nodes approve at most once and count every wrong code.
//!
//! In front of issuing sits the SMS-pumping (toll-fraud) defence: allowed
//! countries, an hourly budget per number prefix and per application, and
//! conversion blocking — a prefix whose codes are mostly never verified is
//! being pumped, and is blocked for a while.

pub mod code;
pub mod config;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::admission::{AdmissionError, Admitter, Content, Outgoing};
use crate::auth::{Principal, Scope};
use crate::error::FieldError;
use crate::metrics::Metrics;
use crate::model::{Class, Micros, Status, now_micros};
use crate::store::otp::{BUDGET_WINDOW, Budget, budget_window};
use crate::store::{Admission, MessageStore, OtpRecord, OtpStatus, OtpStore, StoreError};
use crate::text;

pub use code::{Code, CodeHasher};
pub use config::OtpConfig;

const MICROS_PER_SEC: Micros = 1_000_000;
/// Longest template name and app name a request may give.
const MAX_NAME_LEN: usize = 64;

/// Why an OTP request was refused. Nothing was sent.
#[derive(Debug, thiserror::Error)]
pub enum OtpError {
    /// A field is wrong (the message names it).
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error("{0}")]
    Forbidden(String),
    /// No such OTP for this caller.
    #[error("no such OTP")]
    NotFound,
    /// The recipient's OTP limit is used up (`rate_limited`), or a budget
    /// of the pumping defence (`code`); retry after `retry_after` seconds.
    #[error("{message}")]
    Limited {
        code: &'static str,
        retry_after: u64,
        message: String,
    },
    /// The store or the verification pool failed; the caller may retry.
    #[error("{0}")]
    Unavailable(String),
}

impl From<StoreError> for OtpError {
    fn from(e: StoreError) -> Self {
        OtpError::Unavailable(e.to_string())
    }
}

/// A request for a code.
#[derive(Debug, Clone, Default)]
pub struct IssueRequest {
    pub to: String,
    /// Template name; `otp` when `None`.
    pub template: Option<String>,
    pub locale: Option<String>,
    pub length: Option<u8>,
    pub ttl: Option<Duration>,
    /// `app_name` in the template; `[otp] app_name` when `None`.
    pub app_name: Option<String>,
}

/// Which OTP a verification is for.
#[derive(Debug, Clone)]
pub enum Target {
    Id(String),
    /// The pending OTP of the caller for this number.
    To(String),
}

/// The answer to a verification.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// `None` when verifying by number found no OTP (answered like a code
    /// that no longer verifies).
    pub otp: Option<OtpRecord>,
    pub valid: bool,
    pub status: OtpStatus,
    pub attempts_remaining: u32,
}

/// An OTP with the delivery status of its SMS.
#[derive(Debug, Clone)]
pub struct OtpState {
    pub otp: OtpRecord,
    /// `queued`, `submitted`, `delivered` or `failed`.
    pub delivery: &'static str,
    pub status: OtpStatus,
    pub attempts_remaining: u32,
}

/// Issues and verifies OTPs.
pub struct OtpService {
    store: Arc<dyn OtpStore>,
    messages: Arc<dyn MessageStore>,
    admitter: Arc<Admitter>,
    hasher: CodeHasher,
    config: OtpConfig,
    default_region: Option<text::Region>,
    metrics: Arc<Metrics>,
    /// A hash of a code no one has, verified when a number has no OTP so
    /// that such an answer costs the same as a wrong code.
    decoy_hash: tokio::sync::OnceCell<String>,
}

impl OtpService {
    /// `secret` keys the code hashes (argon2's secret input).
    pub fn new(
        config: OtpConfig,
        default_region: Option<text::Region>,
        store: Arc<dyn OtpStore>,
        messages: Arc<dyn MessageStore>,
        admitter: Arc<Admitter>,
        metrics: Arc<Metrics>,
        secret: Vec<u8>,
    ) -> OtpService {
        OtpService {
            hasher: CodeHasher::new(config.verify_threads, secret),
            store,
            messages,
            admitter,
            config,
            default_region,
            metrics,
            decoy_hash: tokio::sync::OnceCell::new(),
        }
    }

    /// Sends a new code to `req.to`, replacing the caller's pending OTP for
    /// that number.
    ///
    /// # Errors
    /// Invalid fields, the pumping defence, the recipient's OTP limit, or
    /// the store being down.
    pub async fn issue(&self, who: &Principal, req: IssueRequest) -> Result<OtpRecord, OtpError> {
        require_otp_scope(who)?;
        let length = req.length.unwrap_or(self.config.length);
        if !(code::MIN_LENGTH..=code::MAX_LENGTH).contains(&length) {
            return Err(FieldError::new(
                "invalid_length",
                format!(
                    "`length` must be between {} and {}",
                    code::MIN_LENGTH,
                    code::MAX_LENGTH
                ),
            )
            .into());
        }
        let ttl = req.ttl.unwrap_or(self.config.ttl);
        if ttl.as_secs() == 0 || ttl > self.config.max_ttl {
            return Err(FieldError::new(
                "invalid_ttl",
                format!(
                    "`ttl_seconds` must be between 1 and {}",
                    self.config.max_ttl.as_secs()
                ),
            )
            .into());
        }
        let template = req.template.unwrap_or_else(|| "otp".into());
        if template.is_empty() || template.len() > MAX_NAME_LEN {
            return Err(FieldError::new(
                "invalid_template",
                format!("`template` must be 1 to {MAX_NAME_LEN} characters"),
            )
            .into());
        }
        let app_name = req.app_name.unwrap_or_else(|| self.config.app_name.clone());
        if app_name.is_empty() || app_name.chars().count() > MAX_NAME_LEN {
            return Err(FieldError::new(
                "invalid_app_name",
                format!("`app_name` must be 1 to {MAX_NAME_LEN} characters"),
            )
            .into());
        }
        let to = text::parse_msisdn(&req.to, self.default_region)
            .map_err(|e| FieldError::new("invalid_to", format!("`to` {e}")))?;
        let now = now_micros();
        let prefix = to.prefix(usize::from(self.config.prefix_digits));
        self.defend(who, &to, &prefix, now).await?;

        let code = Code::generate(length)
            .map_err(|e| OtpError::Unavailable(format!("no randomness: {e}")))?;
        let hash = self
            .hasher
            .hash(code.clone())
            .await
            .map_err(OtpError::Unavailable)?;
        let mut vars = serde_json::Map::new();
        vars.insert("app_name".into(), app_name.into());
        vars.insert("ttl_minutes".into(), ttl.as_secs().div_ceil(60).into());
        let outgoing = Outgoing {
            content: Content::Sealed {
                name: template,
                vars,
                locale: req.locale,
                secret_var: "code",
                secret: code.expose().to_string(),
            },
            validity: Some(ttl),
            ..Outgoing::text(to.as_str().to_string(), String::new(), Class::Otp)
        };
        let message = match self.admitter.admit_one(who, outgoing).await {
            Ok(Admission::Created(m) | Admission::Existing(m)) => m,
            Ok(Admission::RateLimited { .. } | Admission::OptedOut) => {
                return Err(OtpError::Unavailable("unexpected admission answer".into()));
            }
            Err(AdmissionError::Invalid(f)) => return Err(f.into()),
            Err(AdmissionError::Forbidden(m)) => return Err(OtpError::Forbidden(m)),
            Err(AdmissionError::RateLimited {
                retry_after,
                message,
            }) => {
                return Err(OtpError::Limited {
                    code: "rate_limited",
                    retry_after,
                    message,
                });
            }
            Err(AdmissionError::Store(e)) => return Err(e.into()),
        };
        let ttl_micros = Micros::try_from(ttl.as_micros()).unwrap_or(Micros::MAX);
        let otp = OtpRecord {
            id: ulid::Ulid::generate().to_string(),
            owner: who.owner.clone(),
            to: to.into_string(),
            prefix: prefix.clone(),
            hash,
            status: OtpStatus::Pending,
            attempts: 0,
            max_attempts: self.config.max_attempts,
            created_at: now,
            expires_at: now.saturating_add(ttl_micros),
            done_at: None,
            message_id: message.id,
        };
        // Conversion counts only codes that were really sent. The two
        // writes are independent: one round trip, not two.
        let issued = [counter(&issued_key(&prefix))];
        let (replaced, counted) = tokio::join!(
            self.store.put_otp(otp.clone()),
            self.store.take_budgets(&issued, now)
        );
        if replaced?.is_some() {
            self.metrics.otp("replaced");
        }
        counted?;
        self.metrics.otp("issued");
        Ok(otp)
    }

    /// The pumping defence, cheapest refusals first. Takes from the
    /// budgets only when every check passes.
    async fn defend(
        &self,
        who: &Principal,
        to: &text::Msisdn,
        prefix: &str,
        now: Micros,
    ) -> Result<(), OtpError> {
        if !self.config.allowed_countries.is_empty() {
            let region = to.region().unwrap_or("");
            if !self
                .config
                .allowed_countries
                .iter()
                .any(|c| c.eq_ignore_ascii_case(region))
            {
                self.metrics.otp_refused("country_not_allowed");
                return Err(FieldError::new(
                    "country_not_allowed",
                    "`to` is in a country OTPs are not sent to",
                )
                .into());
            }
        }
        if let Some(until) = self.blocked_until(prefix, now).await? {
            self.metrics.otp_refused("prefix_blocked");
            return Err(OtpError::Limited {
                code: "prefix_blocked",
                retry_after: seconds_until(until, now),
                message: format!(
                    "OTPs to numbers starting +{prefix} are blocked: too few of their codes were verified"
                ),
            });
        }
        let budgets = [
            Budget {
                key: format!("app:{}", who.owner),
                limit: self.config.app_per_hour,
            },
            Budget {
                key: format!("prefix:{prefix}"),
                limit: self.config.prefix_per_hour,
            },
        ];
        if let Some(full) = self.store.take_budgets(&budgets, now).await? {
            let window_end = (budget_window(now) + 1) * BUDGET_WINDOW;
            let (code, message) = if full == 0 {
                (
                    "app_budget_exhausted",
                    "this application has used its OTP budget for the hour".to_string(),
                )
            } else {
                (
                    "prefix_budget_exhausted",
                    format!("numbers starting +{prefix} have used their OTP budget for the hour"),
                )
            };
            self.metrics.otp_refused(code);
            return Err(OtpError::Limited {
                code,
                retry_after: seconds_until(window_end, now),
                message,
            });
        }
        Ok(())
    }

    /// When `prefix` is blocked, until when; blocks it first if its
    /// conversion has collapsed.
    async fn blocked_until(&self, prefix: &str, now: Micros) -> Result<Option<Micros>, OtpError> {
        let judged = self.config.block_below_ratio > 0.0 && self.config.block_min_issued > 0;
        let keys = [issued_key(prefix), verified_key(prefix)];
        // Both reads at once: one round trip on the issue path.
        let (blocked, counts) = tokio::join!(self.store.blocked_prefixes(now), async {
            if judged {
                self.store.budget_counts(&keys, now).await
            } else {
                Ok(Vec::new())
            }
        });
        if let Some((_, until)) = blocked?.into_iter().find(|(p, _)| p == prefix) {
            return Ok(Some(until));
        }
        if !judged {
            return Ok(None);
        }
        let counts = counts?;
        let issued = counts.first().copied().unwrap_or(0);
        let verified = counts.get(1).copied().unwrap_or(0);
        #[allow(clippy::cast_precision_loss)]
        let collapsed = issued >= u64::from(self.config.block_min_issued)
            && (verified as f64) < (issued as f64) * self.config.block_below_ratio;
        if !collapsed {
            return Ok(None);
        }
        let block = Micros::try_from(self.config.block_for.as_micros()).unwrap_or(Micros::MAX);
        let until = now.saturating_add(block);
        self.store.block_prefix(prefix, until).await?;
        self.metrics.otp("prefix_blocked");
        tracing::warn!(
            prefix,
            issued,
            verified,
            "OTP prefix blocked: its codes are mostly never verified (SMS pumping?)"
        );
        Ok(Some(until))
    }

    /// Checks `code` against the OTP named by `target`.
    ///
    /// # Errors
    /// An unknown id (404), a malformed code or number, or the store down.
    pub async fn verify(
        &self,
        who: &Principal,
        target: Target,
        code: &str,
    ) -> Result<Verdict, OtpError> {
        require_otp_scope(who)?;
        let started = Instant::now();
        if !(usize::from(code::MIN_LENGTH)..=usize::from(code::MAX_LENGTH)).contains(&code.len())
            || !code.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(FieldError::new(
                "invalid_code",
                format!(
                    "`code` must be {} to {} digits",
                    code::MIN_LENGTH,
                    code::MAX_LENGTH
                ),
            )
            .into());
        }
        let found = match target {
            Target::Id(id) => Some(self.owned(who, &id).await?),
            Target::To(to) => {
                let to = text::parse_msisdn(&to, self.default_region)
                    .map_err(|e| FieldError::new("invalid_to", format!("`to` {e}")))?;
                self.store.pending_otp(&who.owner, to.as_str()).await?
            }
        };
        let now = now_micros();
        let verdict = match found {
            None => {
                // No OTP for this number: the same work as a wrong code.
                let decoy = self
                    .decoy_hash
                    .get_or_try_init(|| async {
                        let code = Code::generate(code::MAX_LENGTH).map_err(|e| e.to_string())?;
                        self.hasher.hash(code).await
                    })
                    .await
                    .map_err(|e| OtpError::Unavailable(e.clone()))?;
                let _ = self
                    .hasher
                    .verify(Code::given(code), decoy.clone())
                    .await
                    .map_err(OtpError::Unavailable)?;
                self.metrics.otp("wrong_code");
                Verdict {
                    otp: None,
                    valid: false,
                    status: OtpStatus::Expired,
                    attempts_remaining: 0,
                }
            }
            Some(otp) if otp.status_at(now) != OtpStatus::Pending => {
                // Ended: nothing to check, nothing counted (an expiry is
                // recorded as such).
                let otp = if otp.status == OtpStatus::Pending {
                    self.store
                        .attempt_otp(&otp.id, false, now)
                        .await?
                        .map_or(otp, |a| a.otp)
                } else {
                    otp
                };
                Verdict {
                    valid: false,
                    status: otp.status_at(now),
                    attempts_remaining: 0,
                    otp: Some(otp),
                }
            }
            Some(otp) => {
                let matched = self
                    .hasher
                    .verify(Code::given(code), otp.hash.clone())
                    .await
                    .map_err(OtpError::Unavailable)?;
                let now = now_micros();
                let Some(attempt) = self.store.attempt_otp(&otp.id, matched, now).await? else {
                    return Err(OtpError::NotFound);
                };
                let after = attempt.otp;
                if attempt.approved {
                    self.metrics.otp("approved");
                    self.store
                        .take_budgets(&[counter(&verified_key(&after.prefix))], now)
                        .await?;
                } else if after.status == OtpStatus::MaxAttempts && otp.status == OtpStatus::Pending
                {
                    self.metrics.otp("max_attempts");
                } else {
                    self.metrics.otp("wrong_code");
                }
                Verdict {
                    valid: attempt.approved,
                    status: after.status_at(now),
                    attempts_remaining: after.attempts_remaining(now),
                    otp: Some(after),
                }
            }
        };
        self.metrics
            .otp_verify_latency(started.elapsed().as_secs_f64());
        Ok(verdict)
    }

    /// An OTP of the caller (any OTP for `admin`), with its SMS's delivery.
    ///
    /// # Errors
    /// Unknown id (or another application's), or the store down.
    pub async fn get(&self, who: &Principal, id: &str) -> Result<OtpState, OtpError> {
        require_otp_scope(who)?;
        let otp = self.owned(who, id).await?;
        let delivery = match self.messages.message(otp.message_id).await? {
            Some(m) => match m.status {
                Status::Queued => "queued",
                Status::Submitted => "submitted",
                Status::Delivered => "delivered",
                _ => "failed",
            },
            None => "failed",
        };
        let now = now_micros();
        Ok(OtpState {
            status: otp.status_at(now),
            attempts_remaining: otp.attempts_remaining(now),
            delivery,
            otp,
        })
    }

    /// Cancels a pending OTP (its code stops working); an ended one is
    /// answered as it is.
    ///
    /// # Errors
    /// Unknown id, or the store down.
    pub async fn cancel(&self, who: &Principal, id: &str) -> Result<OtpRecord, OtpError> {
        require_otp_scope(who)?;
        let otp = self.owned(who, id).await?;
        let now = now_micros();
        let after = self
            .store
            .cancel_otp(&otp.id, now)
            .await?
            .ok_or(OtpError::NotFound)?;
        if otp.status_at(now) == OtpStatus::Pending && after.status == OtpStatus::Canceled {
            self.metrics.otp("canceled");
        }
        Ok(after)
    }

    /// Prefixes blocked now, with the end of each block.
    ///
    /// # Errors
    /// The store down.
    pub async fn blocked(&self) -> Result<Vec<(String, Micros)>, OtpError> {
        Ok(self.store.blocked_prefixes(now_micros()).await?)
    }

    /// Lifts the block of `prefix` and forgets its conversion history, so
    /// it is not blocked again at once; `false` when it was not blocked.
    ///
    /// # Errors
    /// The store down.
    pub async fn unblock(&self, prefix: &str) -> Result<bool, OtpError> {
        let lifted = unblock_prefix(&*self.store, prefix).await?;
        if lifted {
            self.metrics.otp("prefix_unblocked");
        }
        Ok(lifted)
    }

    async fn owned(&self, who: &Principal, id: &str) -> Result<OtpRecord, OtpError> {
        if id.is_empty() || id.len() > 64 {
            return Err(OtpError::NotFound);
        }
        match self.store.otp(id).await? {
            Some(otp) if otp.owner == who.owner || who.has(Scope::Admin) => Ok(otp),
            _ => Err(OtpError::NotFound),
        }
    }
}

/// Lifts the block of `prefix` and forgets its conversion history, so it
/// is not blocked again by the same figures; `false` when it was not
/// blocked. (Used by the API and by `herald otp unblock`.)
///
/// # Errors
/// The store down.
pub async fn unblock_prefix(store: &dyn OtpStore, prefix: &str) -> Result<bool, StoreError> {
    if !store.unblock_prefix(prefix).await? {
        return Ok(false);
    }
    store
        .reset_budgets(&[issued_key(prefix), verified_key(prefix)])
        .await?;
    Ok(true)
}

fn require_otp_scope(who: &Principal) -> Result<(), OtpError> {
    if who.has(Scope::Otp) {
        Ok(())
    } else {
        Err(OtpError::Forbidden(
            "OTPs need an API key with the 'otp' scope".into(),
        ))
    }
}

fn issued_key(prefix: &str) -> String {
    format!("issued:{prefix}")
}

fn verified_key(prefix: &str) -> String {
    format!("verified:{prefix}")
}

/// A budget that only counts.
fn counter(key: &str) -> Budget {
    Budget {
        key: key.to_string(),
        limit: 0,
    }
}

fn seconds_until(at: Micros, now: Micros) -> u64 {
    u64::try_from((at - now).max(0).saturating_add(MICROS_PER_SEC - 1) / MICROS_PER_SEC)
        .unwrap_or(u64::MAX)
        .max(1)
}

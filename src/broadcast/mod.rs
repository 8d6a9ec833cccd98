//! Broadcasts: one text to a whole audience (groups and numbers), with
//! two-person approval, exercise vs live, cancel and exact progress.
//!
//! A drill must never reach the public and nobody may approve their own
//! alert: `mode` has no default, an exercise goes only to the configured
//! exercise group with the exercise prefix on its text whatever audience
//! was named, and approval by the creator is refused by the store in the
//! same write that checks the status.
//!
//! Creating, approving or canceling costs the same for ten recipients or a
//! million: the audience is fixed by reference (see
//! [`crate::store::BroadcastStore`]) and [`fanout`] turns recipients into
//! queued messages only as fast as the carriers take them, so a cancel
//! finds at most a buffer of queued messages to stop.
//!
//! The HTTP API and the console both call [`Broadcasts`]; neither
//! reimplements a rule.

pub mod cap;
pub mod config;
pub mod fanout;

pub use config::BroadcastsConfig;

use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::admission::{Admitter, Content};
use crate::audit::{Audit, AuditAction, AuditEntry, AuditOutcome};
use crate::auth::Principal;
use crate::error::FieldError;
use crate::model::{Class, Encoding, MessageId, now_micros};
use crate::script::ScriptMessage;
use crate::store::broadcast::{
    BroadcastRecord, BroadcastState, BroadcastStatus, CapOrigin, CreateRefused, Decided, Decision,
    Mode,
};
use crate::store::{BroadcastStore, StoreError};

/// Longest title.
pub const MAX_TITLE: usize = 200;
/// Most numbers named directly in one request (larger audiences are
/// groups).
pub const MAX_RECIPIENTS: usize = 10_000;
/// Most groups in one audience.
pub const MAX_GROUPS: usize = 100;
/// Longest approval or rejection comment.
pub const MAX_COMMENT: usize = 1000;
/// How often a progress stream reports.
pub const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// Who acts on a broadcast. The two-person rule compares `id`s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// `key:<key id>` for an API key, `operator:<name>` for a console
    /// operator: two different keys are two principals.
    pub id: String,
    /// Owner of the messages it creates.
    pub owner: String,
}

impl Actor {
    /// The actor behind an API key.
    pub fn of_key(who: &Principal) -> Actor {
        Actor {
            id: format!("key:{}", who.name),
            owner: who.owner.clone(),
        }
    }

    /// A console operator.
    pub fn operator(name: &str) -> Actor {
        Actor {
            id: format!("operator:{name}"),
            owner: format!("operator:{name}"),
        }
    }
}

/// A broadcast to create, as the API and the console hand it over.
#[derive(Debug, Clone)]
pub struct BroadcastRequest {
    pub title: String,
    pub content: Content,
    pub class: Class,
    /// Numbers named directly.
    pub recipients: Vec<String>,
    pub groups: Vec<String>,
    /// Required: live is never a default.
    pub mode: Option<Mode>,
    pub requires_approval: bool,
    /// The CAP alert it comes from.
    pub cap: Option<CapOrigin>,
}

/// What a broadcast would send, before it is created.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Preview {
    /// The final text (exercise prefix included).
    pub text: String,
    pub encoding: Encoding,
    pub segments: u32,
    /// Recipients, counting each number once when only one source is
    /// named; otherwise at most this many (overlaps count once when sent).
    pub recipients: u64,
    pub mode: Option<Mode>,
}

/// A broadcast as every reader sees it; the counters always add up:
/// `total = queued + submitted + delivered + failed + expired + canceled +
/// refused`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BroadcastView {
    pub id: String,
    pub title: String,
    pub text: String,
    pub class: String,
    /// `live` or `exercise`.
    pub mode: String,
    /// `pending_approval`, `sending`, `completed`, `canceled` or `rejected`.
    pub status: String,
    pub encoding: String,
    pub segments: u32,
    pub groups: Vec<String>,
    pub recipients: usize,
    pub total: u64,
    pub queued: u64,
    pub submitted: u64,
    pub delivered: u64,
    pub failed: u64,
    pub expired: u64,
    pub canceled: u64,
    pub refused: u64,
    pub created_by: String,
    pub created_at: String,
    pub decided_by: Option<String>,
    pub decided_at: Option<String>,
    pub comment: Option<String>,
    pub canceled_by: Option<String>,
    pub done_at: Option<String>,
    /// The CAP alert it came from: `sender`, `identifier`, `sent`.
    pub cap: Option<CapOriginView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CapOriginView {
    pub sender: String,
    pub identifier: String,
    pub sent: String,
}

impl BroadcastView {
    pub fn of(state: &BroadcastState) -> BroadcastView {
        let r = &state.record;
        let c = &state.counts;
        let unfanned = r.unfanned();
        let (waiting, stopped) = match r.status {
            BroadcastStatus::PendingApproval | BroadcastStatus::Sending => (unfanned, 0),
            BroadcastStatus::Canceled | BroadcastStatus::Rejected => (0, unfanned),
            BroadcastStatus::Completed => (0, 0),
        };
        let fmt = crate::model::format_micros;
        BroadcastView {
            id: r.id.to_string(),
            title: r.title.clone(),
            text: r.text.clone(),
            class: r.class.as_str().into(),
            mode: r.mode.as_str().into(),
            status: r.status.as_str().into(),
            encoding: r.encoding.as_str().into(),
            segments: r.segments,
            groups: r.groups.clone(),
            recipients: r.recipients.len(),
            total: r.total,
            queued: c.queued + waiting,
            submitted: c.submitted,
            delivered: c.delivered,
            failed: c.failed,
            expired: c.expired,
            canceled: c.canceled + stopped,
            refused: r.refused,
            created_by: r.created_by.clone(),
            created_at: fmt(r.created_at),
            decided_by: r.decided_by.clone(),
            decided_at: r.decided_at.map(fmt),
            comment: r.comment.clone(),
            canceled_by: r.canceled_by.clone(),
            done_at: r.done_at.map(fmt),
            cap: r.cap.as_ref().map(|c| CapOriginView {
                sender: c.sender.clone(),
                identifier: c.identifier.clone(),
                sent: c.sent.clone(),
            }),
        }
    }

    /// Whether the view can still change status.
    pub fn is_final(&self) -> bool {
        matches!(self.status.as_str(), "completed" | "canceled" | "rejected")
    }
}

/// Why a broadcast operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum BroadcastError {
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error("no broadcast {0}")]
    NotFound(String),
    /// The creator tried to approve (or reject) their own broadcast.
    #[error("a broadcast must be approved by someone other than its creator")]
    SelfApproval,
    #[error("the broadcast is {0}")]
    WrongState(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl BroadcastError {
    /// The stable code of the refusal (as the API answers it).
    pub fn code(&self) -> &'static str {
        match self {
            BroadcastError::Invalid(f) => f.code,
            BroadcastError::NotFound(_) => "not_found",
            BroadcastError::SelfApproval => "self_approval",
            BroadcastError::WrongState(_) => "conflict",
            BroadcastError::Store(_) => "unavailable",
        }
    }
}

/// The broadcast service: validation, the rules, and the store.
pub struct Broadcasts {
    store: Arc<dyn BroadcastStore>,
    groups: Arc<dyn crate::store::GroupStore>,
    admitter: Arc<Admitter>,
    /// `cap_area` maps CAP areas to groups.
    scripts: Arc<crate::script::Scripts>,
    /// Every create, decision, cancel and CAP intake, refused ones too.
    audit: Audit,
    config: BroadcastsConfig,
    /// Wakes the fan-out when a broadcast starts sending.
    wake: Arc<Notify>,
}

impl Broadcasts {
    pub fn new(
        store: Arc<dyn BroadcastStore>,
        groups: Arc<dyn crate::store::GroupStore>,
        admitter: Arc<Admitter>,
        scripts: Arc<crate::script::Scripts>,
        audit: Audit,
        config: BroadcastsConfig,
    ) -> Broadcasts {
        Broadcasts {
            store,
            groups,
            admitter,
            scripts,
            audit,
            config,
            wake: Arc::new(Notify::new()),
        }
    }

    /// What the fan-out waits on.
    pub fn wake_handle(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    pub fn config(&self) -> &BroadcastsConfig {
        &self.config
    }

    /// Checks a request and renders its text; nothing is stored.
    fn check(&self, req: &BroadcastRequest) -> Result<Checked, BroadcastError> {
        let title = req.title.trim();
        if title.is_empty() || title.chars().count() > MAX_TITLE {
            return Err(invalid(
                "invalid_title",
                format!("`title` must be 1 to {MAX_TITLE} characters"),
            ));
        }
        if !matches!(req.class, Class::Emergency | Class::Marketing) {
            return Err(invalid(
                "invalid_class",
                "`class` of a broadcast is \"emergency\" or \"marketing\"",
            ));
        }
        let Some(mode) = req.mode else {
            return Err(invalid(
                "invalid_mode",
                "`mode` is required: \"exercise\" (only the exercise group) or \"live\" (the public)",
            ));
        };
        if req.recipients.len() > MAX_RECIPIENTS {
            return Err(invalid(
                "invalid_recipients",
                format!(
                    "`recipients` holds at most {MAX_RECIPIENTS} numbers; use a group for more"
                ),
            ));
        }
        if req.groups.len() > MAX_GROUPS {
            return Err(invalid(
                "invalid_groups",
                format!("`groups` holds at most {MAX_GROUPS} names"),
            ));
        }
        let mut recipients = Vec::with_capacity(req.recipients.len());
        for (i, raw) in req.recipients.iter().enumerate() {
            let n = self
                .admitter
                .parse_number(raw)
                .map_err(|e| invalid("invalid_recipients", format!("`recipients[{i}]` {e}")))?;
            recipients.push(n);
        }
        recipients.sort_unstable();
        recipients.dedup();
        let mut groups = Vec::with_capacity(req.groups.len());
        for (i, g) in req.groups.iter().enumerate() {
            if !crate::group::valid_name(g) {
                return Err(invalid(
                    "invalid_groups",
                    format!("`groups[{i}]` is not a group name"),
                ));
            }
            if !groups.contains(g) {
                groups.push(g.clone());
            }
        }
        if groups.is_empty() && recipients.is_empty() {
            return Err(invalid(
                "empty_audience",
                "name `groups` and/or `recipients`: the audience is empty",
            ));
        }
        let (mut text, _) = self.admitter.render(req.content.clone())?;
        if mode == Mode::Exercise {
            // Whatever audience was named, a drill reaches the exercise
            // group only, and says so.
            groups = vec![self.config.exercise_group.clone()];
            recipients = Vec::new();
            text = format!("{}{text}", self.config.exercise_prefix);
        }
        let encoded = crate::text::analyse(&text);
        Ok(Checked {
            title: title.to_string(),
            mode,
            encoding: encoded.encoding,
            segments: encoded.segments,
            text,
            groups,
            recipients,
        })
    }

    /// The final text, its encoding and segments, and the audience size.
    ///
    /// # Errors
    /// What [`Broadcasts::create`] would refuse the request for.
    pub async fn preview(&self, req: &BroadcastRequest) -> Result<Preview, BroadcastError> {
        let c = self.check(req)?;
        let mut recipients = c.recipients.len() as u64;
        for g in &c.groups {
            match self.groups.group(g).await? {
                Some(s) => recipients += s.count,
                None => return Err(unknown_group(g, &self.config)),
            }
        }
        Ok(Preview {
            text: c.text,
            encoding: c.encoding,
            segments: c.segments,
            recipients,
            mode: Some(c.mode),
        })
    }

    /// Creates a broadcast: pending approval, or sending at once when
    /// `requires_approval` is off.
    ///
    /// # Errors
    /// An invalid request (naming the field), an unknown group, the store.
    pub async fn create(
        &self,
        actor: &Actor,
        req: BroadcastRequest,
    ) -> Result<BroadcastView, BroadcastError> {
        let result = self.create_unaudited(actor, req).await;
        let (target, detail) = match &result {
            Ok(v) => (
                format!("broadcast:{}", v.id),
                Some(format!("{} {} to {} recipients", v.mode, v.class, v.total)),
            ),
            Err(_) => ("broadcast:new".to_string(), None),
        };
        self.audit(actor, AuditAction::BroadcastCreate, target, &result, detail)
            .await;
        result
    }

    async fn create_unaudited(
        &self,
        actor: &Actor,
        req: BroadcastRequest,
    ) -> Result<BroadcastView, BroadcastError> {
        let c = self.check(&req)?;
        let probe = ScriptMessage {
            to: c
                .recipients
                .first()
                .cloned()
                .unwrap_or_else(|| String::from("+0")),
            class: req.class,
            body: c.text.clone(),
            encoding: c.encoding,
            segments: c.segments,
            from: None,
            tags: vec!["broadcast".into()],
        };
        let route = self.admitter.route_for(&probe)?;
        if route.is_empty() {
            return Err(invalid("rejected_by_route", "no connector to send through"));
        }
        let validity = self.admitter.validity_of(req.class);
        let status = if req.requires_approval {
            BroadcastStatus::PendingApproval
        } else {
            BroadcastStatus::Sending
        };
        let record = BroadcastRecord {
            id: MessageId::generate(),
            title: c.title,
            text: c.text,
            encoding: c.encoding,
            segments: c.segments,
            class: req.class,
            mode: c.mode,
            status,
            owner: actor.owner.clone(),
            created_by: actor.id.clone(),
            created_at: now_micros(),
            decided_by: None,
            decided_at: None,
            comment: None,
            canceled_by: None,
            done_at: None,
            groups: c.groups,
            recipients: c.recipients,
            route,
            from: None,
            validity_micros: i64::try_from(validity.as_micros()).unwrap_or(i64::MAX),
            cap: req.cap,
            total: 0,
            cursor: None,
            fanned: 0,
            refused: 0,
            lists: Vec::new(),
        };
        match self.store.create_broadcast(record).await? {
            Ok(state) => {
                tracing::info!(
                    broadcast = %state.record.id,
                    mode = state.record.mode.as_str(),
                    class = %state.record.class,
                    total = state.record.total,
                    by = %actor.id,
                    "broadcast created"
                );
                if state.record.status == BroadcastStatus::Sending {
                    self.wake.notify_one();
                }
                Ok(BroadcastView::of(&state))
            }
            Err(CreateRefused::UnknownGroup(g)) => Err(unknown_group(&g, &self.config)),
        }
    }

    /// Approves a broadcast pending approval; it starts sending.
    ///
    /// # Errors
    /// [`BroadcastError::SelfApproval`] for its creator, `WrongState`,
    /// `NotFound`.
    pub async fn approve(
        &self,
        actor: &Actor,
        id: &str,
        comment: Option<String>,
    ) -> Result<BroadcastView, BroadcastError> {
        let comment = check_comment(comment)?;
        let id = parse_id(id)?;
        let view = self
            .decide(
                actor,
                id,
                Decision::Approve {
                    by: actor.id.clone(),
                    at: now_micros(),
                    comment,
                },
            )
            .await?;
        self.wake.notify_one();
        tracing::info!(broadcast = %id, by = %actor.id, "broadcast approved");
        Ok(view)
    }

    /// Rejects a broadcast pending approval; nothing is sent.
    ///
    /// # Errors
    /// `WrongState`, `NotFound`.
    pub async fn reject(
        &self,
        actor: &Actor,
        id: &str,
        comment: Option<String>,
    ) -> Result<BroadcastView, BroadcastError> {
        let comment = check_comment(comment)?;
        let id = parse_id(id)?;
        let view = self
            .decide(
                actor,
                id,
                Decision::Reject {
                    by: actor.id.clone(),
                    at: now_micros(),
                    comment,
                },
            )
            .await?;
        tracing::info!(broadcast = %id, by = %actor.id, "broadcast rejected");
        Ok(view)
    }

    /// Cancels a broadcast: every message not yet handed to a carrier
    /// becomes `canceled` now.
    ///
    /// # Errors
    /// `WrongState` (already final), `NotFound`.
    pub async fn cancel(&self, actor: &Actor, id: &str) -> Result<BroadcastView, BroadcastError> {
        let id = parse_id(id)?;
        let view = self
            .decide(
                actor,
                id,
                Decision::Cancel {
                    by: actor.id.clone(),
                    at: now_micros(),
                },
            )
            .await?;
        tracing::warn!(broadcast = %id, by = %actor.id, canceled = view.canceled, "broadcast canceled");
        Ok(view)
    }

    /// Records `result` of `action` by `actor` in the audit log.
    pub(crate) async fn audit<T>(
        &self,
        actor: &Actor,
        action: AuditAction,
        target: String,
        result: &Result<T, BroadcastError>,
        detail: Option<String>,
    ) {
        let outcome = match result {
            Ok(_) => AuditOutcome::Ok,
            Err(e) => AuditOutcome::refused(e.code()),
        };
        let mut entry = AuditEntry::new(actor.id.clone(), action, target, outcome);
        if let Some(d) = detail {
            entry = entry.with_detail(d);
        }
        self.audit.record(entry).await;
    }

    async fn decide(
        &self,
        actor: &Actor,
        id: MessageId,
        decision: Decision,
    ) -> Result<BroadcastView, BroadcastError> {
        let (action, comment) = match &decision {
            Decision::Approve { comment, .. } => (AuditAction::BroadcastApprove, comment.clone()),
            Decision::Reject { comment, .. } => (AuditAction::BroadcastReject, comment.clone()),
            Decision::Cancel { .. } | Decision::Complete { .. } => {
                (AuditAction::BroadcastCancel, None)
            }
        };
        let result = self.decide_unaudited(id, decision).await;
        self.audit(actor, action, format!("broadcast:{id}"), &result, comment)
            .await;
        result
    }

    async fn decide_unaudited(
        &self,
        id: MessageId,
        decision: Decision,
    ) -> Result<BroadcastView, BroadcastError> {
        match self.store.decide_broadcast(id, decision).await? {
            Decided::Done(state) => Ok(BroadcastView::of(&state)),
            Decided::NotFound => Err(BroadcastError::NotFound(id.to_string())),
            Decided::WrongState(s) => Err(BroadcastError::WrongState(s.as_str())),
            Decided::SelfApproval => Err(BroadcastError::SelfApproval),
            Decided::NotYet => Err(BroadcastError::WrongState("still sending")),
        }
    }

    /// One broadcast.
    ///
    /// # Errors
    /// `NotFound` (also for a malformed id), the store.
    pub async fn get(&self, id: &str) -> Result<BroadcastView, BroadcastError> {
        let id = parse_id(id)?;
        self.store
            .broadcast(id)
            .await?
            .map(|s| BroadcastView::of(&s))
            .ok_or_else(|| BroadcastError::NotFound(id.to_string()))
    }

    /// Broadcasts created before `before`, newest first.
    ///
    /// # Errors
    /// A malformed `before`, the store.
    pub async fn list(
        &self,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<BroadcastView>, BroadcastError> {
        let before = before
            .map(|b| {
                b.parse::<MessageId>()
                    .map_err(|()| invalid("invalid_query", "`before` is not a broadcast id"))
            })
            .transpose()?;
        Ok(self
            .store
            .broadcasts(before, limit)
            .await?
            .iter()
            .map(BroadcastView::of)
            .collect())
    }

    /// The broadcast made from the CAP alert `(sender, identifier)`.
    ///
    /// # Errors
    /// The store.
    pub async fn by_cap(
        &self,
        sender: &str,
        identifier: &str,
    ) -> Result<Option<String>, BroadcastError> {
        Ok(self
            .store
            .broadcast_by_cap(sender, identifier)
            .await?
            .map(|id| id.to_string()))
    }

    /// The broadcast every [`PROGRESS_EVERY`] until it reaches a final
    /// status (that view is the last item), or an error.
    pub fn progress(
        self: &Arc<Self>,
        id: &str,
    ) -> impl Stream<Item = Result<BroadcastView, BroadcastError>> + Send + use<> {
        let this = self.clone();
        let id = id.to_string();
        futures_util::stream::unfold(Some(true), move |state| {
            let (this, id) = (this.clone(), id.clone());
            async move {
                let first = state?;
                if !first {
                    tokio::time::sleep(PROGRESS_EVERY).await;
                }
                match this.get(&id).await {
                    Ok(view) => {
                        let next = (!view.is_final()).then_some(false);
                        Some((Ok(view), next))
                    }
                    Err(e) => Some((Err(e), None)),
                }
            }
        })
    }
}

struct Checked {
    title: String,
    mode: Mode,
    text: String,
    encoding: Encoding,
    segments: u32,
    groups: Vec<String>,
    recipients: Vec<String>,
}

fn invalid(code: &'static str, message: impl Into<String>) -> BroadcastError {
    BroadcastError::Invalid(FieldError::new(code, message))
}

fn unknown_group(name: &str, config: &BroadcastsConfig) -> BroadcastError {
    if name == config.exercise_group {
        invalid(
            "unknown_group",
            format!(
                "the exercise group '{name}' ([broadcasts] exercise_group) does not exist; \
                 upload it with PUT /v1/groups/{name} before sending an exercise"
            ),
        )
    } else {
        invalid(
            "unknown_group",
            format!("`groups`: no group named '{name}'"),
        )
    }
}

fn parse_id(id: &str) -> Result<MessageId, BroadcastError> {
    id.parse()
        .map_err(|()| BroadcastError::NotFound(id.chars().take(40).collect()))
}

fn check_comment(comment: Option<String>) -> Result<Option<String>, BroadcastError> {
    match comment {
        Some(c) if c.chars().count() > MAX_COMMENT => Err(invalid(
            "invalid_comment",
            format!("`comment` must be at most {MAX_COMMENT} characters"),
        )),
        Some(c) if c.trim().is_empty() => Ok(None),
        other => Ok(other),
    }
}

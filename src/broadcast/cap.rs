//! CAP 1.2 intake: what a parsed alert ([`crate::cap`]) does to broadcasts.
//!
//! - `Alert`: a broadcast to the groups `cap_area` maps each `<area>` to;
//!   status `Actual` is live, `Exercise` an exercise (the exercise group
//!   only), `Test`, `System` and `Draft` send nothing at all.
//! - `Update`: the broadcasts its `<references>` name are canceled and the
//!   update becomes a new broadcast, as an alert would.
//! - `Cancel`: the referenced broadcasts are canceled.
//! - The same alert (sender and identifier) delivered twice creates one
//!   broadcast: the second delivery answers with the first.

use crate::admission::Content;
use crate::audit::AuditAction;
use crate::cap::{Alert, MsgType, Status};
use crate::error::FieldError;
use crate::model::Class;
use crate::store::broadcast::{CapOrigin, Mode};

use super::{Actor, BroadcastError, BroadcastRequest, BroadcastView, Broadcasts, MAX_TITLE};

/// What an alert did.
#[derive(Debug, Clone, PartialEq)]
pub enum CapOutcome {
    /// A new broadcast (an `Alert`, or an `Update` with what it superseded).
    Created {
        broadcast: BroadcastView,
        superseded: Vec<BroadcastView>,
    },
    /// The alert was seen before: its broadcast.
    Duplicate(BroadcastView),
    /// A `Cancel`: the broadcasts it canceled (already final ones as they
    /// are).
    Canceled(Vec<BroadcastView>),
    /// `Test`, `System` or `Draft`: recorded, nothing sent.
    NotSent { reason: String },
}

fn invalid_element(element: &str, message: impl Into<String>) -> BroadcastError {
    BroadcastError::Invalid(FieldError::new(
        "invalid_cap",
        format!("<{element}>: {}", message.into()),
    ))
}

impl Broadcasts {
    /// Acts on a CAP alert for `actor`.
    ///
    /// # Errors
    /// `Invalid` naming the element (no area maps to a group, references
    /// missing, a message type Herald does not act on), `NotFound` for a
    /// reference to no broadcast, the store.
    pub async fn take_cap(
        &self,
        actor: &Actor,
        alert: &Alert,
        requires_approval: bool,
    ) -> Result<CapOutcome, BroadcastError> {
        let result = self
            .take_cap_unaudited(actor, alert, requires_approval)
            .await;
        let did = match &result {
            Ok(CapOutcome::Created { broadcast, .. }) => format!("created {}", broadcast.id),
            Ok(CapOutcome::Duplicate(b)) => format!("duplicate of {}", b.id),
            Ok(CapOutcome::Canceled(list)) => format!("canceled {}", list.len()),
            Ok(CapOutcome::NotSent { .. }) => "not sent".to_string(),
            Err(e) => e.to_string(),
        };
        self.audit(
            actor,
            AuditAction::CapIntake,
            format!("cap:{},{}", alert.sender, alert.identifier),
            &result,
            Some(format!("{} {}: {did}", alert.msg_type, alert.status)),
        )
        .await;
        result
    }

    async fn take_cap_unaudited(
        &self,
        actor: &Actor,
        alert: &Alert,
        requires_approval: bool,
    ) -> Result<CapOutcome, BroadcastError> {
        if matches!(alert.msg_type, MsgType::Ack | MsgType::Error) {
            return Err(invalid_element(
                "msgType",
                format!(
                    "{} messages are acknowledgements, not alerts: nothing to do",
                    alert.msg_type
                ),
            ));
        }
        if let Some(id) = self.by_cap(&alert.sender, &alert.identifier).await? {
            return Ok(CapOutcome::Duplicate(self.get(&id).await?));
        }
        let referenced = match alert.msg_type {
            MsgType::Update | MsgType::Cancel => self.referenced(alert).await?,
            _ => Vec::new(),
        };
        if alert.msg_type == MsgType::Cancel {
            let mut out = Vec::with_capacity(referenced.len());
            for id in referenced {
                out.push(self.cancel_unless_final(actor, &id).await?);
            }
            return Ok(CapOutcome::Canceled(out));
        }
        let mode = match alert.status {
            Status::Actual => Mode::Live,
            Status::Exercise => Mode::Exercise,
            Status::Test | Status::System | Status::Draft => {
                return Ok(CapOutcome::NotSent {
                    reason: format!(
                        "status {}: never sent to the public nor to the exercise group",
                        alert.status
                    ),
                });
            }
        };
        let groups = self.groups_of(alert)?;
        let info = alert
            .infos
            .first()
            .ok_or_else(|| invalid_element("info", "an alert needs an <info> to send"))?;
        let title: String = info
            .headline
            .clone()
            .filter(|h| !h.trim().is_empty())
            .unwrap_or_else(|| info.event.clone())
            .chars()
            .take(MAX_TITLE)
            .collect();
        // The whole text when it fits the segment limit, else shorter forms.
        let headline = info.headline.clone().unwrap_or_else(|| info.event.clone());
        let mut texts = vec![info.text()];
        if let Some(instruction) = &info.instruction {
            texts.push(format!("{headline}\n{instruction}"));
        }
        texts.push(headline);
        let mut last_error = None;
        let mut created = None;
        for text in texts {
            let req = BroadcastRequest {
                title: title.clone(),
                content: Content::Text(text),
                class: Class::Emergency,
                recipients: Vec::new(),
                groups: groups.clone(),
                mode: Some(mode),
                requires_approval,
                cap: Some(CapOrigin {
                    sender: alert.sender.clone(),
                    identifier: alert.identifier.clone(),
                    sent: alert.sent.clone(),
                }),
            };
            match self.create(actor, req).await {
                Ok(view) => {
                    created = Some(view);
                    break;
                }
                Err(BroadcastError::Invalid(f)) if f.code == "body_too_long" => {
                    last_error = Some(BroadcastError::Invalid(f));
                }
                Err(e) => return Err(e),
            }
        }
        let Some(broadcast) = created else {
            return Err(last_error.unwrap_or_else(|| invalid_element("info", "nothing to send")));
        };
        let mut superseded = Vec::with_capacity(referenced.len());
        for id in referenced {
            superseded.push(self.cancel_unless_final(actor, &id).await?);
        }
        Ok(CapOutcome::Created {
            broadcast,
            superseded,
        })
    }

    /// The broadcasts an Update or Cancel refers to; every reference must
    /// name one.
    async fn referenced(&self, alert: &Alert) -> Result<Vec<String>, BroadcastError> {
        if alert.references.is_empty() {
            return Err(invalid_element(
                "references",
                format!("an {} must name the alert it refers to", alert.msg_type),
            ));
        }
        let mut ids = Vec::with_capacity(alert.references.len());
        for r in &alert.references {
            match self.by_cap(&r.sender, &r.identifier).await? {
                Some(id) => ids.push(id),
                None => {
                    return Err(BroadcastError::NotFound(format!(
                        "for the CAP alert {},{} named in <references>",
                        r.sender, r.identifier
                    )));
                }
            }
        }
        Ok(ids)
    }

    async fn cancel_unless_final(
        &self,
        actor: &Actor,
        id: &str,
    ) -> Result<BroadcastView, BroadcastError> {
        match self.cancel(actor, id).await {
            Err(BroadcastError::WrongState(_)) => self.get(id).await,
            other => other,
        }
    }

    /// The groups `cap_area` maps the alert's areas to, each once.
    fn groups_of(&self, alert: &Alert) -> Result<Vec<String>, BroadcastError> {
        let mut groups: Vec<String> = Vec::new();
        let mut areas = 0;
        for info in &alert.infos {
            for area in &info.areas {
                areas += 1;
                for g in self.scripts.cap_area(&area.area_desc) {
                    if !groups.contains(&g) {
                        groups.push(g);
                    }
                }
            }
        }
        if groups.is_empty() {
            return Err(invalid_element(
                "info/area/areaDesc",
                if areas == 0 {
                    "the alert names no <area>: nobody to send to".to_string()
                } else {
                    format!(
                        "none of its {areas} areas maps to a recipient group \
                         (the cap_area script hook decides)"
                    )
                },
            ));
        }
        Ok(groups)
    }
}

//! Notifications: when a Decision needs people (approval required, escalated), or went
//! wrong (execution failed, expired), or optionally finished, tell them through the
//! configured channels: the operator's log, webhooks shaped for Slack, Teams or as generic
//! JSON, and e-mail over SMTP.
//!
//! Sending is off the reconcile path: the reconciler hands notifications to a queue and
//! moves on. Each channel gets its own task with retries and exponential backoff, so a
//! dead channel delays neither the Decision nor the other channels, and every attempt's
//! outcome is an audit line (`notification_sent`, `notification_failed`).

mod config;
mod message;
mod send;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::audit::{AuditLog, DecisionRef};
use crate::events::DecisionEvent;
use crate::events::ExecutionEvent;

pub use self::config::{
    Channel, ChannelKind, Config, Retry, Rule, SecretKey, SecretRef, Smtp, SmtpTls, WebhookFormat,
};
pub use self::message::{email, payload};
use self::send::Sender;

/// What can set a notification off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Trigger {
    ApprovalRequired,
    Escalated,
    ExecutionFailed,
    Expired,
    ExecutionCompleted,
}

impl Trigger {
    pub fn of(event: &DecisionEvent) -> Option<Trigger> {
        match event {
            DecisionEvent::ApprovalRequested { .. } => Some(Trigger::ApprovalRequired),
            DecisionEvent::Escalated { .. } => Some(Trigger::Escalated),
            DecisionEvent::Expired { .. } => Some(Trigger::Expired),
            DecisionEvent::Execution(
                ExecutionEvent::Failed { .. } | ExecutionEvent::RollbackFailed { .. },
            ) => Some(Trigger::ExecutionFailed),
            DecisionEvent::Execution(ExecutionEvent::Completed { .. }) => {
                Some(Trigger::ExecutionCompleted)
            }
            _ => None,
        }
    }

    fn title(self) -> &'static str {
        match self {
            Trigger::ApprovalRequired => "Approval required",
            Trigger::Escalated => "Escalated: approval required",
            Trigger::ExecutionFailed => "Execution failed",
            Trigger::Expired => "Expired without an answer",
            Trigger::ExecutionCompleted => "Execution completed",
        }
    }
}

/// One notification: what happened to which Decision.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Notification {
    pub id: String,
    pub trigger: Trigger,
    pub decision: DecisionRef,
    pub action_type: String,
    pub description: String,
    pub criticality: String,
    pub phase: String,
    pub approvals: String,
    pub message: String,
    /// The plan the Decision pinned: what an approver would approve.
    pub plan: Option<crate::api::decision::PinnedPlan>,
}

/// Hands notifications to the sender; never blocks.
#[derive(Clone)]
pub struct Notifier {
    queue: mpsc::UnboundedSender<Notification>,
}

impl Notifier {
    /// Starts the sender, which sends until the notifier is dropped.
    pub fn start(
        config: Config,
        client: kube::Client,
        secrets_namespace: String,
        audit: Arc<AuditLog>,
    ) -> Notifier {
        let (queue, mut rx) = mpsc::unbounded_channel::<Notification>();
        let sender = Arc::new(Sender::new(config, client, secrets_namespace, audit));
        tokio::spawn(async move {
            while let Some(n) = rx.recv().await {
                for channel in sender.config.channels_for(n.trigger) {
                    let sender = sender.clone();
                    let channel = channel.clone();
                    let n = n.clone();
                    tokio::spawn(async move { sender.deliver(&channel, &n).await });
                }
            }
        });
        Notifier { queue }
    }

    /// Queues the notifications that `events` call for.
    pub fn notify(
        &self,
        decision: &crate::api::Decision,
        status: &crate::api::DecisionStatus,
        events: &[DecisionEvent],
    ) {
        for event in events {
            let Some(trigger) = Trigger::of(event) else {
                continue;
            };
            let n = Notification {
                id: uuid::Uuid::new_v4().to_string(),
                trigger,
                decision: DecisionRef {
                    namespace: decision.metadata.namespace.clone().unwrap_or_default(),
                    name: decision.metadata.name.clone().unwrap_or_default(),
                    uid: decision.metadata.uid.clone().unwrap_or_default(),
                },
                action_type: decision.spec.action_type.clone(),
                description: decision.spec.description.clone(),
                // What the policies saw: the plan may raise it.
                criticality: status
                    .evaluation
                    .as_ref()
                    .and_then(|e| e.criticality)
                    .unwrap_or(decision.spec.criticality)
                    .to_string(),
                phase: status.phase.map(|p| p.to_string()).unwrap_or_default(),
                approvals: status.approval_progress.clone().unwrap_or_default(),
                message: event.note(),
                plan: status.plan.clone(),
            };
            let _ = self.queue.send(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triggers_come_from_the_events_that_need_people() {
        let expired = DecisionEvent::Expired {
            expires_at: chrono::Utc::now(),
        };
        assert_eq!(Trigger::of(&expired), Some(Trigger::Expired));
        let failed = DecisionEvent::Execution(ExecutionEvent::Failed {
            message: "x".into(),
        });
        assert_eq!(Trigger::of(&failed), Some(Trigger::ExecutionFailed));
        assert_eq!(
            Trigger::of(&DecisionEvent::Requested {
                requested_by: None,
                on_behalf_of: None,
            }),
            None
        );
    }
}

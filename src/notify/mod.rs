//! Notifications: when a Decision needs people (approval required, escalated), or went
//! wrong (execution failed, expired), or optionally finished, tell them through the
//! configured channels: the operator's log, webhooks shaped for Slack, Teams or as generic
//! JSON, Slack's Web API, and e-mail over SMTP.
//!
//! People who were asked are not left guessing: the channels that announced a request
//! also hear its follow-ups (reminders before it expires, and who approved or rejected it
//! and why), and a message posted through Slack's Web API is edited once the Decision is
//! decided, so that it no longer invites an answer.
//!
//! Sending is off the reconcile path: the reconciler hands notifications to a queue and
//! moves on. Each channel gets its own task with retries and exponential backoff, so a
//! dead channel delays neither the Decision nor the other channels, and every attempt's
//! outcome is an audit line (`notification_sent`, `notification_failed`).

mod config;
mod message;
mod send;
mod slack;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::api::decision::{ChatMessage, Outcome};
use crate::api::{DecisionPhase, DecisionStatus};
use crate::audit::{AuditLog, DecisionRef};
use crate::events::DecisionEvent;
use crate::events::ExecutionEvent;

pub use self::config::{
    Channel, ChannelKind, Config, Reminder, Retry, Rule, SecretKey, SecretRef, Smtp, SmtpTls,
    WebhookFormat,
};
pub use self::message::{email, payload};
use self::send::Sender;
pub use self::slack::{post_body, update_body};

/// What can set a notification off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Trigger {
    ApprovalRequired,
    Escalated,
    ExecutionFailed,
    Expired,
    ExecutionCompleted,
    /// People approved it: the approval that reached the quorum.
    Approved,
    /// Someone rejected it.
    Rejected,
    /// It still waits for an answer and its expiry draws near.
    Reminder,
}

impl Trigger {
    pub fn of(event: &DecisionEvent) -> Option<Trigger> {
        match event {
            DecisionEvent::ApprovalRequested { .. } => Some(Trigger::ApprovalRequired),
            DecisionEvent::Escalated { .. } => Some(Trigger::Escalated),
            DecisionEvent::Expired { .. } => Some(Trigger::Expired),
            DecisionEvent::ApprovalGranted {
                approvals,
                required,
                ..
            } if approvals >= required => Some(Trigger::Approved),
            DecisionEvent::ApprovalRejected { .. } => Some(Trigger::Rejected),
            DecisionEvent::Reminded { .. } => Some(Trigger::Reminder),
            DecisionEvent::Execution(
                ExecutionEvent::Failed { .. } | ExecutionEvent::RollbackFailed { .. },
            ) => Some(Trigger::ExecutionFailed),
            DecisionEvent::Execution(ExecutionEvent::Completed { .. }) => {
                Some(Trigger::ExecutionCompleted)
            }
            _ => None,
        }
    }

    /// Whether it follows up a request that was announced: such triggers also reach the
    /// channels that announced it (see [`Config::channels_for`]).
    pub fn is_follow_up(self) -> bool {
        matches!(
            self,
            Trigger::Approved | Trigger::Rejected | Trigger::Reminder
        )
    }

    /// Whether it asks people for an answer.
    pub fn asks(self) -> bool {
        matches!(self, Trigger::ApprovalRequired | Trigger::Escalated)
    }

    /// What a message about a Decision in `phase` that no longer waits says it came to.
    pub fn settled(phase: DecisionPhase) -> Option<Trigger> {
        match phase {
            DecisionPhase::Pending | DecisionPhase::Escalated => None,
            DecisionPhase::Approved | DecisionPhase::Executing => Some(Trigger::Approved),
            DecisionPhase::Rejected => Some(Trigger::Rejected),
            DecisionPhase::Expired => Some(Trigger::Expired),
            DecisionPhase::Succeeded => Some(Trigger::ExecutionCompleted),
            DecisionPhase::Failed | DecisionPhase::RollingBack | DecisionPhase::RolledBack => {
                Some(Trigger::ExecutionFailed)
            }
        }
    }

    fn title(self) -> &'static str {
        match self {
            Trigger::ApprovalRequired => "Approval required",
            Trigger::Escalated => "Escalated: approval required",
            Trigger::ExecutionFailed => "Execution failed",
            Trigger::Expired => "Expired without an answer",
            Trigger::ExecutionCompleted => "Execution completed",
            Trigger::Approved => "Approved",
            Trigger::Rejected => "Rejected",
            Trigger::Reminder => "Reminder: approval still required",
        }
    }
}

/// Whether `event` moves a Decision that may have been announced to where its message
/// should show the outcome: decided, or its plan finished.
fn settles(event: &DecisionEvent) -> bool {
    matches!(
        event,
        DecisionEvent::ApprovalGranted { .. }
            | DecisionEvent::ApprovalRejected { .. }
            | DecisionEvent::AutoApproved { .. }
            | DecisionEvent::AutoRejected { .. }
            | DecisionEvent::Expired { .. }
            | DecisionEvent::Execution(
                ExecutionEvent::Completed { .. }
                    | ExecutionEvent::Failed { .. }
                    | ExecutionEvent::RollbackFailed { .. }
                    | ExecutionEvent::RolledBack
            )
    )
}

/// Who decided and why, from the status: the approvers with their reasons, or the
/// rejecter and the reason. None while nobody has.
pub fn decided_by(status: &DecisionStatus) -> Option<String> {
    if let Some(r) = &status.rejection {
        return Some(if r.reason.is_empty() {
            format!("rejected by {}", r.rejected_by)
        } else {
            format!("rejected by {}: {}", r.rejected_by, r.reason)
        });
    }
    let approvals: Vec<String> = status
        .approvals
        .iter()
        .filter(|a| crate::answers::counts(a, status))
        .map(|a| match &a.reason {
            Some(reason) if !reason.is_empty() => format!("{} ({reason})", a.approver),
            _ => a.approver.clone(),
        })
        .collect();
    if approvals.is_empty() {
        return None;
    }
    Some(format!("approved by {}", approvals.join(", ")))
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
    /// The Decision's digest: what an approval confirms (its uid, request and plan).
    pub digest: Option<String>,
    /// The plan the Decision pinned: what an approver would approve.
    pub plan: Option<crate::api::decision::PinnedPlan>,
    /// How the Decision's need for approval was announced, if it was: its follow-ups go
    /// where that went.
    pub asked: Option<Trigger>,
    /// The chat messages that announced it, by channel name (`status.chatMessages`).
    #[serde(skip)]
    pub chat: BTreeMap<String, ChatMessage>,
}

/// What the sender is asked to do.
enum Work {
    /// Send a notification to the channels that hear its trigger.
    Send(Notification),
    /// Edit the messages that announced the Decision to show where it stands now.
    Update(Notification),
}

/// Hands notifications to the sender; never blocks.
#[derive(Clone)]
pub struct Notifier {
    queue: mpsc::UnboundedSender<Work>,
}

impl Notifier {
    /// Starts the sender, which sends until the notifier is dropped.
    pub fn start(
        config: Config,
        client: kube::Client,
        secrets_namespace: String,
        audit: Arc<AuditLog>,
    ) -> Notifier {
        let (queue, mut rx) = mpsc::unbounded_channel::<Work>();
        let sender = Arc::new(Sender::new(config, client, secrets_namespace, audit));
        tokio::spawn(async move {
            while let Some(work) = rx.recv().await {
                match work {
                    Work::Send(n) => {
                        for channel in sender.config.channels_for(n.trigger, n.asked) {
                            let sender = sender.clone();
                            let channel = channel.clone();
                            let n = n.clone();
                            tokio::spawn(async move { sender.deliver(&channel, &n, None).await });
                        }
                    }
                    Work::Update(n) => {
                        for (channel, message) in sender.messages_of(&n) {
                            let sender = sender.clone();
                            let n = n.clone();
                            tokio::spawn(async move {
                                sender.deliver(&channel, &n, Some(&message)).await
                            });
                        }
                    }
                }
            }
        });
        Notifier { queue }
    }

    /// Queues the notifications and message updates that `events` call for.
    pub fn notify(
        &self,
        decision: &crate::api::Decision,
        status: &DecisionStatus,
        events: &[DecisionEvent],
    ) {
        for work in work_for(decision, status, events) {
            let _ = self.queue.send(work);
        }
    }
}

/// What `events` call for: a notification for each event that sets one off, and an
/// update of the announcing messages for each that settles the Decision.
fn work_for(
    decision: &crate::api::Decision,
    status: &DecisionStatus,
    events: &[DecisionEvent],
) -> Vec<Work> {
    let decided = decided_by(status);
    let mut work = Vec::new();
    for event in events {
        if let Some(settled) = status.phase.and_then(Trigger::settled)
            && settles(event)
        {
            let mut n = notification(decision, status, settled, event);
            n.message = match (&decided, settled) {
                (Some(who), Trigger::Approved | Trigger::Rejected) => who.clone(),
                (Some(who), _) => format!("{who}; {}", event.note()),
                (None, _) => event.note(),
            };
            work.push(Work::Update(n));
        }
        if let Some(trigger) = Trigger::of(event) {
            let mut n = notification(decision, status, trigger, event);
            if matches!(trigger, Trigger::Approved | Trigger::Rejected)
                && let Some(who) = &decided
            {
                n.message = who.clone();
            }
            work.push(Work::Send(n));
        }
    }
    work
}

fn notification(
    decision: &crate::api::Decision,
    status: &DecisionStatus,
    trigger: Trigger,
    event: &DecisionEvent,
) -> Notification {
    Notification {
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
        digest: status.digest.clone(),
        plan: status.plan.clone(),
        asked: status.evaluation.as_ref().and_then(|e| match e.outcome {
            Outcome::RequireApproval => Some(Trigger::ApprovalRequired),
            Outcome::Escalate => Some(Trigger::Escalated),
            Outcome::AutoApprove | Outcome::AutoReject => None,
        }),
        chat: status.chat_messages.clone(),
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
        let granted = |approvals| DecisionEvent::ApprovalGranted {
            approver: "bob".into(),
            reason: None,
            approvals,
            required: 2,
            given: "bob".into(),
            groups: None,
            impersonator: None,
            verified: true,
            service_account: false,
        };
        assert_eq!(Trigger::of(&granted(1)), None, "not decided yet");
        assert_eq!(Trigger::of(&granted(2)), Some(Trigger::Approved));
        assert_eq!(
            Trigger::of(&DecisionEvent::ApprovalRejected {
                rejected_by: "carol".into(),
                reason: "no".into(),
                verified: true,
            }),
            Some(Trigger::Rejected)
        );
        assert_eq!(
            Trigger::of(&DecisionEvent::AutoApproved {
                by: "policy:p/r".into(),
                message: "ok".into(),
            }),
            None,
            "nobody was asked, so nobody waits to hear"
        );
        assert_eq!(
            Trigger::of(&DecisionEvent::Reminded {
                before: "15m".into(),
                expires_at: chrono::Utc::now(),
            }),
            Some(Trigger::Reminder)
        );
    }

    #[test]
    fn an_approval_by_people_edits_the_announcing_message_and_tells_who_approved() {
        use crate::api::decision::{Approval, Criticality, Evaluation};
        let mut d = crate::api::Decision::new(
            "deploy",
            crate::api::DecisionSpec::example("deploy", Criticality::High),
        );
        d.metadata.namespace = Some("ops".into());
        d.metadata.uid = Some("u-1".into());
        let status = DecisionStatus {
            phase: Some(DecisionPhase::Approved),
            evaluation: Some(Evaluation {
                policy: Some("gate".into()),
                rule: Some("ask".into()),
                outcome: Outcome::RequireApproval,
                message: String::new(),
                required_approvals: 1,
                approvers: Default::default(),
                policy_set: String::new(),
                criticality: None,
                approval_valid_for: None,
            }),
            approvals: vec![Approval {
                approver: "bob".into(),
                reason: Some("tested in staging".into()),
                at: chrono::Utc::now(),
                verified: Some(true),
                ..Default::default()
            }],
            chat_messages: [(
                "leads".to_owned(),
                ChatMessage {
                    channel: "C123".into(),
                    ts: "1.2".into(),
                },
            )]
            .into(),
            ..Default::default()
        };
        let granted = DecisionEvent::ApprovalGranted {
            approver: "bob".into(),
            reason: Some("tested in staging".into()),
            approvals: 1,
            required: 1,
            given: "bob".into(),
            groups: None,
            impersonator: None,
            verified: true,
            service_account: false,
        };
        let work = work_for(&d, &status, &[granted]);
        let [Work::Update(update), Work::Send(sent)] = &work[..] else {
            panic!("an update and a notification");
        };
        for n in [update, sent] {
            assert_eq!(n.trigger, Trigger::Approved);
            assert_eq!(n.message, "approved by bob (tested in staging)");
            assert_eq!(n.asked, Some(Trigger::ApprovalRequired));
        }
        assert_eq!(update.chat["leads"].ts, "1.2");
        let body = update_body(&update.chat["leads"], update);
        assert_eq!(
            (&body["channel"], &body["ts"]),
            (&"C123".into(), &"1.2".into())
        );
        assert!(
            body.to_string()
                .contains("approved by bob (tested in staging)")
        );

        // An event that changes nothing people wait for edits nothing.
        let mut waiting = status.clone();
        waiting.phase = Some(DecisionPhase::Pending);
        let asked = DecisionEvent::ApprovalRequested {
            required: 1,
            approvers: Default::default(),
        };
        let work = work_for(&d, &waiting, &[asked]);
        assert!(matches!(&work[..], [Work::Send(n)] if n.trigger == Trigger::ApprovalRequired));
    }

    #[test]
    fn who_decided_is_said_with_the_reasons() {
        let at = chrono::Utc::now();
        let approval = |who: &str, reason: Option<&str>| crate::api::decision::Approval {
            approver: who.into(),
            reason: reason.map(Into::into),
            at,
            verified: Some(true),
            ..Default::default()
        };
        let mut status = DecisionStatus::default();
        assert_eq!(decided_by(&status), None);
        status.approvals = vec![
            approval("bob", Some("tested in staging")),
            approval("alice", None),
        ];
        status.approvals.push(crate::api::decision::Approval {
            lapsed_at: Some(at),
            ..approval("dave", None)
        });
        assert_eq!(
            decided_by(&status).unwrap(),
            "approved by bob (tested in staging), alice"
        );
        status.rejection = Some(crate::api::decision::Rejection {
            rejected_by: "carol".into(),
            reason: "not during the freeze".into(),
            at,
            verified: Some(true),
        });
        assert_eq!(
            decided_by(&status).unwrap(),
            "rejected by carol: not during the freeze"
        );
        assert_eq!(Trigger::settled(DecisionPhase::Pending), None);
        assert_eq!(
            Trigger::settled(DecisionPhase::Executing),
            Some(Trigger::Approved)
        );
        assert_eq!(
            Trigger::settled(DecisionPhase::RolledBack),
            Some(Trigger::ExecutionFailed)
        );
    }
}

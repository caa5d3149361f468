//! The audit line of each event: the event's words, and the facts a reader filters on.

use crate::api::Decision;
use crate::api::decision::Outcome;
use crate::events::DecisionEvent;

use super::{DecisionRef, Record};

impl Record {
    /// The audit log's record of `event` on `decision`.
    pub fn of(event: &DecisionEvent, decision: &Decision) -> Record {
        let (approver, outcome, reason) = match event {
            DecisionEvent::Requested { .. } => (None, "requested", None),
            DecisionEvent::PolicyEvaluated { evaluation, .. } => (
                None,
                match evaluation.outcome {
                    Outcome::AutoApprove => "auto_approve",
                    Outcome::RequireApproval => "require_approval",
                    Outcome::AutoReject => "auto_reject",
                    Outcome::Escalate => "escalate",
                },
                Some(evaluation.message.clone()),
            ),
            DecisionEvent::ApprovalRequested { .. } => (None, "pending", None),
            DecisionEvent::Escalated { .. } => (None, "escalated", None),
            DecisionEvent::AutoApproved { message, .. } => {
                (None, "approved", Some(message.clone()))
            }
            DecisionEvent::AutoRejected { message, .. } => {
                (None, "rejected", Some(message.clone()))
            }
            DecisionEvent::ApprovalGranted {
                approver, reason, ..
            } => (Some(approver.clone()), "approved", reason.clone()),
            DecisionEvent::ApprovalRejected {
                rejected_by,
                reason,
                ..
            } => (Some(rejected_by.clone()), "rejected", Some(reason.clone())),
            DecisionEvent::ApprovalDiscounted { approver, why } => {
                (Some(approver.clone()), "discounted", Some(why.clone()))
            }
            DecisionEvent::Deleted { .. } => (None, "deleted", None),
            DecisionEvent::Expired { .. } => (None, "expired", None),
            DecisionEvent::Reminded { .. } => (None, "reminded", None),
            DecisionEvent::AnswerIgnored { user, why, .. } => {
                (Some(user.clone()), "ignored", Some(why.clone()))
            }
            DecisionEvent::WaitingForPlan { message, .. } => {
                (None, "waiting", Some(message.clone()))
            }
            DecisionEvent::ApprovalLapsed { .. } => (None, "lapsed", None),
            DecisionEvent::Execution(e) => (None, e.event_type(), e.result()),
        };
        let details = match event {
            DecisionEvent::PolicyEvaluated {
                evaluation,
                risk,
                reevaluation,
            } => Some(serde_json::json!({
                "policy": evaluation.policy,
                "rule": evaluation.rule,
                "required_approvals": evaluation.required_approvals,
                "approvers": evaluation.approvers,
                "risk": risk,
                "reevaluation": reevaluation,
            })),
            DecisionEvent::Requested {
                on_behalf_of: Some(on_behalf_of),
                ..
            } => Some(serde_json::json!({ "on_behalf_of": on_behalf_of })),
            DecisionEvent::ApprovalGranted {
                approvals,
                required,
                verified,
                service_account,
                groups,
                impersonator,
                ..
            } => {
                let mut details = serde_json::json!({
                    "approvals": approvals,
                    "required": required,
                    "verified": verified,
                    "service_account": service_account,
                });
                if let Some(groups) = groups {
                    details["groups"] = serde_json::json!(groups);
                }
                if let Some(impersonator) = impersonator {
                    details["impersonator"] = serde_json::json!(impersonator);
                }
                Some(details)
            }
            // The last state of a deleted Decision: what it asked and what became of it.
            DecisionEvent::Deleted { by } => Some(serde_json::json!({
                "deleted_by": by,
                "spec": decision.spec,
                "status": decision.status,
            })),
            DecisionEvent::ApprovalRejected { verified, .. } => {
                Some(serde_json::json!({ "verified": verified }))
            }
            DecisionEvent::Expired { expires_at } => {
                Some(serde_json::json!({ "expires_at": expires_at }))
            }
            DecisionEvent::Reminded { before, expires_at } => {
                Some(serde_json::json!({ "before": before, "expires_at": expires_at }))
            }
            _ => None,
        };
        let (step, mode) = match event {
            DecisionEvent::Execution(e) => (
                e.step().map(str::to_owned),
                decision
                    .status
                    .as_ref()
                    .and_then(|s| s.execution.as_ref())
                    .map(|x| x.mode.as_str().to_owned()),
            ),
            _ => (None, None),
        };
        Record {
            step,
            mode,
            event_type: event.event_type().to_owned(),
            actor: event.actor(),
            decision: Some(DecisionRef {
                namespace: decision.metadata.namespace.clone().unwrap_or_default(),
                name: decision.metadata.name.clone().unwrap_or_default(),
                uid: decision.metadata.uid.clone().unwrap_or_default(),
            }),
            action_type: Some(decision.spec.action_type.clone()),
            plan: decision.spec.plan_ref.as_ref().map(|p| p.name.clone()),
            approver,
            outcome: Some(outcome.to_owned()),
            reason,
            message: event.note(),
            details,
            discriminator: event.discriminator(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::decision::Criticality;
    use crate::api::{Approvers, DecisionSpec};

    fn decision() -> Decision {
        let mut d = Decision::new("ship", DecisionSpec::example("deploy", Criticality::High));
        d.metadata.namespace = Some("prod".into());
        d.metadata.uid = Some("u-1".into());
        d
    }

    #[test]
    fn an_approval_says_who_how_many_and_whether_it_was_verified() {
        let record = Record::of(
            &DecisionEvent::ApprovalGranted {
                approver: "alice".into(),
                reason: Some("looks right".into()),
                approvals: 1,
                required: 2,
                given: "alice".into(),
                groups: None,
                impersonator: None,
                verified: false,
                service_account: false,
            },
            &decision(),
        );
        assert_eq!(record.event_type, "approval_granted");
        assert_eq!(record.approver.as_deref(), Some("alice"));
        assert_eq!(record.outcome.as_deref(), Some("approved"));
        assert_eq!(record.reason.as_deref(), Some("looks right"));
        let details = record.details.unwrap();
        assert_eq!(details["verified"], false);
        assert_eq!(details["approvals"], 1);
        assert_eq!(details["required"], 2);
        let at = record.decision.unwrap();
        assert_eq!(
            (at.namespace.as_str(), at.name.as_str(), at.uid.as_str()),
            ("prod", "ship", "u-1")
        );
        assert_eq!(record.action_type.as_deref(), Some("deploy"));
    }

    #[test]
    fn a_request_on_behalf_of_someone_names_them() {
        let record = Record::of(
            &DecisionEvent::Requested {
                requested_by: Some("system:serviceaccount:agents:bot".into()),
                on_behalf_of: Some("alice".into()),
            },
            &decision(),
        );
        assert_eq!(record.actor, "system:serviceaccount:agents:bot");
        assert_eq!(record.details.unwrap()["on_behalf_of"], "alice");
        let waiting = Record::of(
            &DecisionEvent::ApprovalRequested {
                required: 1,
                approvers: Approvers::default(),
            },
            &decision(),
        );
        assert_eq!(waiting.outcome.as_deref(), Some("pending"));
        assert_eq!(waiting.details, None);
    }
}

//! When an approval holds: noted when the Decision is approved, and lapsed when the plan
//! has not started within the rule's `approvalValidFor`.

use chrono::{DateTime, Utc};

use super::expiry_after;
use crate::api::decision::Outcome;
use crate::api::{Decision, DecisionPhase, DecisionStatus};
use crate::events::DecisionEvent;

/// An approval of a Decision whose plan has not started, past `approvalValidFor`, no longer
/// holds: it goes back to waiting for approval (as it waited before), and says why.
pub(super) fn lapse(
    status: &mut DecisionStatus,
    now: DateTime<Utc>,
    events: &mut Vec<DecisionEvent>,
) {
    let (Some(approved_at), Some(valid_until)) = (status.approved_at, status.approval_valid_until)
    else {
        return;
    };
    if status.phase != Some(DecisionPhase::Approved)
        || status.execution.is_some()
        || now < valid_until
    {
        return;
    }
    let mut approvers = Vec::new();
    for a in status
        .approvals
        .iter_mut()
        .filter(|a| a.lapsed_at.is_none())
    {
        a.lapsed_at = Some(now);
        approvers.push(a.approver.clone());
    }
    status.phase = Some(match status.evaluation.as_ref().map(|e| e.outcome) {
        Some(Outcome::Escalate) => DecisionPhase::Escalated,
        _ => DecisionPhase::Pending,
    });
    status.approved_at = None;
    status.approval_valid_until = None;
    events.push(DecisionEvent::ApprovalLapsed {
        approved_at,
        valid_until,
        approvers,
    });
}

/// Records when the Decision became approved and, under `approvalValidFor`, until when an
/// approval by people holds. Only a plan can come too late: a pure gate's approval is
/// what others act on, and it never lapses.
pub(super) fn note_approval(decision: &Decision, status: &mut DecisionStatus, now: DateTime<Utc>) {
    if status.phase != Some(DecisionPhase::Approved) || status.approved_at.is_some() {
        return;
    }
    status.approved_at = Some(now);
    if decision.spec.plan_ref.is_none() {
        return;
    }
    let by_people = status
        .evaluation
        .as_ref()
        .is_some_and(|e| matches!(e.outcome, Outcome::RequireApproval | Outcome::Escalate));
    let valid_for = status
        .evaluation
        .as_ref()
        .and_then(|e| e.approval_valid_for.as_ref())
        .and_then(|d| d.parse().ok());
    if let Some(valid_for) = valid_for.filter(|_| by_people) {
        status.approval_valid_until = Some(expiry_after(now, valid_for));
    }
}

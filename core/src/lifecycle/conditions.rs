//! The Decision's conditions: `Approved`, and `AnswersVerified` while it waits for people.

use chrono::{DateTime, Utc};

use super::approvals::{counted_approvals, required};
use super::{CONDITION_ANSWERS_VERIFIED, CONDITION_APPROVED};
use crate::admission::Answers;
use crate::api::common::set_condition;
use crate::api::decision::Outcome;
use crate::api::{Condition, ConditionStatus, DecisionPhase, DecisionStatus};

/// Whether the Decision waits for people: for an answer, or for a rollback's approval.
pub(super) fn awaits_people(status: &DecisionStatus) -> bool {
    status.phase.is_some_and(DecisionPhase::is_awaiting_answer)
        || status
            .execution
            .as_ref()
            .and_then(|x| x.rollback.as_ref())
            .is_some_and(|r| r.phase == crate::api::decision::RollbackPhase::AwaitingApproval)
}

pub(super) fn set_verified_condition(
    status: &mut DecisionStatus,
    answers: &Answers,
    generation: Option<i64>,
    now: DateTime<Utc>,
) {
    let (value, reason, message) = match answers {
        Answers::Verified => (
            ConditionStatus::True,
            "PoliciesInForce",
            "the admission policies that verify answers are in force: answers count".to_owned(),
        ),
        Answers::Unverified(why) => (
            ConditionStatus::False,
            "PoliciesNotInForce",
            format!("approvals do not count until the admission policies are in force: {why}"),
        ),
        Answers::CountedUnverified(why) => (
            ConditionStatus::False,
            "CountedUnverified",
            format!(
                "answers count without verification (--count-unverified-answers) and are marked verified: false: {why}"
            ),
        ),
    };
    let mut condition = Condition::new(CONDITION_ANSWERS_VERIFIED, value, reason, message);
    condition.observed_generation = generation;
    set_condition(&mut status.conditions, condition, now);
}

pub(super) fn set_approved_condition(
    status: &mut DecisionStatus,
    generation: Option<i64>,
    now: DateTime<Utc>,
) {
    let Some(phase) = status.phase else { return };
    let auto = matches!(
        status.evaluation.as_ref().map(|e| e.outcome),
        Some(Outcome::AutoApprove | Outcome::AutoReject)
    );
    let lapsed = status.approvals.iter().filter_map(|a| a.lapsed_at).max();
    let (state, reason, message) = match phase {
        DecisionPhase::Pending | DecisionPhase::Escalated if lapsed.is_some() => (
            ConditionStatus::Unknown,
            "ApprovalLapsed",
            format!(
                "the approval lapsed at {}: the plan had not started within approvalValidFor; approve again ({} of {} so far, waiting until {})",
                lapsed.map(|t| t.to_rfc3339()).unwrap_or_default(),
                counted_approvals(status),
                required(status),
                status
                    .expires_at
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default()
            ),
        ),
        DecisionPhase::Pending | DecisionPhase::Escalated => (
            ConditionStatus::Unknown,
            if phase == DecisionPhase::Escalated {
                "Escalated"
            } else {
                "AwaitingApproval"
            },
            format!(
                "{} approval(s) of {} so far; waiting until {}",
                counted_approvals(status),
                required(status),
                status
                    .expires_at
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default()
            ),
        ),
        DecisionPhase::Rejected => (
            ConditionStatus::False,
            if auto { "AutoRejected" } else { "Rejected" },
            status
                .rejection
                .as_ref()
                .map(|r| format!("rejected by {}: {}", r.rejected_by, r.reason))
                .unwrap_or_default(),
        ),
        DecisionPhase::Expired => (
            ConditionStatus::False,
            "Expired",
            "nobody answered in time".to_owned(),
        ),
        _ => (
            ConditionStatus::True,
            if auto { "AutoApproved" } else { "Approved" },
            if auto {
                status
                    .evaluation
                    .as_ref()
                    .map(|e| e.message.clone())
                    .unwrap_or_default()
            } else {
                let names: Vec<&str> = status
                    .approvals
                    .iter()
                    .filter(|a| crate::answers::counts(a, status))
                    .map(|a| a.approver.as_str())
                    .collect();
                format!("approved by {}", names.join(", "))
            },
        ),
    };
    set_condition(
        &mut status.conditions,
        Condition::new(CONDITION_APPROVED, state, reason, message).generation(generation),
        now,
    );
}

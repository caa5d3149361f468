//! People's answers to a waiting Decision: a rejection vetoes, approvals count towards
//! the rule's quorum when they are verified, allowed and for the pinned content, and
//! answers to a Decision that no longer waits are recorded as ignored.

use chrono::{DateTime, Utc};

use crate::admission::Answers;
use crate::answers::{UNVERIFIED, annotation, ignore, ignored, may_answer};
use crate::api::annotations;
use crate::api::decision::{Approval, Outcome, Rejection};
use crate::api::{Approvers, Decision, DecisionPhase, DecisionStatus};
use crate::events::DecisionEvent;

/// Reads `rejected-by` and `approved-by` on a Decision that waits for an answer.
pub(super) fn take_answers(
    decision: &Decision,
    status: &mut DecisionStatus,
    answers: &Answers,
    now: DateTime<Utc>,
    events: &mut Vec<DecisionEvent>,
) {
    if let Some(expires_at) = status.expires_at
        && now >= expires_at
    {
        status.phase = Some(DecisionPhase::Expired);
        events.push(DecisionEvent::Expired { expires_at });
        ignore_late_answers(decision, status, now, events);
        return;
    }

    // A rejection vetoes, whatever approvals came before it.
    if let Some(user) = annotation(decision, annotations::REJECTED_BY) {
        match may_answer(&user, status, false) {
            Ok(()) => {
                let reason = annotation(decision, annotations::REJECTION_REASON)
                    .unwrap_or_else(|| "no reason given".to_owned());
                status.phase = Some(DecisionPhase::Rejected);
                status.rejection = Some(Rejection {
                    rejected_by: user.clone(),
                    reason: reason.clone(),
                    at: now,
                    verified: Some(answers.is_verified()),
                });
                events.push(DecisionEvent::ApprovalRejected {
                    rejected_by: user,
                    reason,
                    verified: answers.is_verified(),
                });
                return;
            }
            Err(why) => ignore(status, events, ignored(user, "rejection", why, now)),
        }
    }

    if let Some(user) = annotation(decision, annotations::APPROVED_BY)
        && is_new_approval(decision, status, &user)
    {
        let digest = annotation(decision, annotations::APPROVAL_DIGEST);
        let stamp = annotation(decision, annotations::APPROVED_AT);
        let verified = match answers {
            Answers::Unverified(why) => Err(format!(
                "{UNVERIFIED}: {why}. Nobody checked who wrote this approval, so it never counts; approve again with kubectl decision approve once the policies are in force"
            )),
            _ => Ok(()),
        };
        match verified
            .and_then(|()| may_answer(&user, status, true))
            .and_then(|()| saw_the_pin(digest.as_deref(), status))
        {
            Ok(()) => {
                let reason = annotation(decision, annotations::APPROVAL_REASON);
                let service_account = Approvers::service_account_of(&user).is_some();
                // Approving again after a lapse replaces the lapsed approval.
                status.approvals.retain(|a| a.approver != user);
                status.approvals.push(Approval {
                    approver: user.clone(),
                    reason: reason.clone(),
                    at: now,
                    digest,
                    stamp: stamp.clone(),
                    lapsed_at: None,
                    verified: Some(answers.is_verified()),
                    service_account,
                });
                let approvals = counted_approvals(status);
                let required = required(status);
                events.push(DecisionEvent::ApprovalGranted {
                    approver: user,
                    reason,
                    approvals,
                    required,
                    stamp,
                    verified: answers.is_verified(),
                    service_account,
                });
                if quorum_reached(status) {
                    status.phase = Some(DecisionPhase::Approved);
                }
            }
            Err(why) => {
                let mut answer = ignored(user, "approval", why, now);
                answer.digest = digest;
                answer.stamp = stamp;
                answer.unverified = matches!(answers, Answers::Unverified(_));
                ignore(status, events, answer)
            }
        }
    }
}

/// Whether the `approved-by` on the Decision is an approval not yet recorded: its approver
/// has none, or only a lapsed one given with other annotations (approving again).
fn is_new_approval(decision: &Decision, status: &DecisionStatus, user: &str) -> bool {
    let stamp = annotation(decision, annotations::APPROVED_AT);
    let digest = annotation(decision, annotations::APPROVAL_DIGEST);
    // An approval written while nobody verified answers never counts: only a new one does.
    if status.ignored_answers.iter().any(|i| {
        i.unverified
            && i.answer == "approval"
            && i.user == user
            && (&i.stamp, &i.digest) == (&stamp, &digest)
    }) {
        return false;
    }
    match status.approvals.iter().find(|a| a.approver == user) {
        None => true,
        Some(a) if a.lapsed_at.is_none() => false,
        Some(lapsed) => {
            let now = (
                annotation(decision, annotations::APPROVED_AT),
                annotation(decision, annotations::APPROVAL_DIGEST),
                annotation(decision, annotations::APPROVAL_REASON),
            );
            now != (
                lapsed.stamp.clone(),
                lapsed.digest.clone(),
                lapsed.reason.clone(),
            )
        }
    }
}

/// Answers given to a Decision that no longer waits for one are recorded as ignored.
pub(super) fn ignore_late_answers(
    decision: &Decision,
    status: &mut DecisionStatus,
    now: DateTime<Utc>,
    events: &mut Vec<DecisionEvent>,
) {
    let Some(phase) = status.phase else { return };
    let why = match (phase, status.expires_at) {
        (DecisionPhase::Expired, Some(at)) => {
            format!("the Decision expired at {}", at.to_rfc3339())
        }
        _ => format!("the Decision is already {phase}"),
    };
    if let Some(user) = annotation(decision, annotations::APPROVED_BY)
        && !status.approvals.iter().any(|a| a.approver == user)
    {
        let mut answer = ignored(user, "approval", why.clone(), now);
        answer.digest = annotation(decision, annotations::APPROVAL_DIGEST);
        ignore(status, events, answer);
    }
    if let Some(user) = annotation(decision, annotations::REJECTED_BY)
        && status
            .rejection
            .as_ref()
            .is_none_or(|r| r.rejected_by != user)
    {
        ignore(status, events, ignored(user, "rejection", why, now));
    }
}

/// An approval that says which plan content it approves must name the pinned one. One
/// that says nothing approves the pinned content.
fn saw_the_pin(digest: Option<&str>, status: &DecisionStatus) -> Result<(), String> {
    let Some(given) = digest else {
        return Ok(());
    };
    match &status.plan {
        Some(pinned) if crate::pin::confirms(given, &pinned.digest) => Ok(()),
        Some(pinned) => Err(format!(
            "it approves plan content {given}, but the Decision pins {} ({}); look again with kubectl decision show",
            crate::pin::short(&pinned.digest),
            pinned.name
        )),
        None => Err(format!(
            "it approves plan content {given}, but the Decision runs no plan"
        )),
    }
}

pub(super) fn required(status: &DecisionStatus) -> u32 {
    status
        .evaluation
        .as_ref()
        .map_or(1, |e| e.required_approvals)
}

/// Approvals that count under the current evaluation: distinct approvers, still allowed.
pub(super) fn counted_approvals(status: &DecisionStatus) -> u32 {
    let mut seen = std::collections::BTreeSet::new();
    status
        .approvals
        .iter()
        .filter(|a| a.lapsed_at.is_none())
        .filter(|a| may_answer(&a.approver, status, true).is_ok())
        .filter(|a| seen.insert(a.approver.as_str()))
        .count() as u32
}

pub(super) fn quorum_reached(status: &DecisionStatus) -> bool {
    counted_approvals(status) >= required(status).max(1)
}

pub(super) fn progress(status: &DecisionStatus) -> String {
    match status.evaluation.as_ref().map(|e| e.outcome) {
        Some(Outcome::AutoApprove | Outcome::AutoReject) => "auto".to_owned(),
        _ => format!("{}/{}", counted_approvals(status), required(status)),
    }
}

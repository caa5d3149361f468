//! People's answers to a waiting Decision: a rejection vetoes, approvals count towards
//! the rule's quorum when they are verified, allowed and for the pinned content, and
//! answers to a Decision that no longer waits are recorded as ignored.

use chrono::{DateTime, Utc};

use crate::admission::Answers;
use crate::answers::{
    APPROVAL, Given, Groups, UNVERIFIED, annotation, approver_groups, counts, ignore, ignored,
    may_answer,
};
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
        match may_answer(&user, Groups::Unchecked, status, false) {
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

    let Some(given) = Given::of(&APPROVAL, decision) else {
        return;
    };
    if !is_new_approval(&given, status) {
        return;
    }
    let user = given.by.clone();
    let digest = given
        .get(&APPROVAL, annotations::APPROVAL_DIGEST)
        .map(str::to_owned);
    let uid = given
        .get(&APPROVAL, annotations::APPROVAL_UID)
        .map(str::to_owned);
    let stamp = given
        .get(&APPROVAL, annotations::APPROVED_AT)
        .map(str::to_owned);
    // The groups the API server saw, stamped with the approval by the admission policy.
    let groups = approver_groups(decision);
    let verified = match answers {
        Answers::Unverified(why) => Err(format!(
            "{UNVERIFIED}: {why}. Nobody checked who wrote this approval, so it never counts; approve again with kubectl decision approve once the policies are in force"
        )),
        _ => Ok(()),
    };
    let checked = match (&groups, answers) {
        (Some(groups), _) => Groups::Known(groups),
        (None, Answers::CountedUnverified(_)) => Groups::Unchecked,
        (None, _) => Groups::Unrecorded,
    };
    match verified
        .and_then(|()| may_answer(&user, checked, status, true))
        .and_then(|()| binds(decision, status, uid.as_deref(), digest.as_deref()))
    {
        Ok(()) => {
            let reason = annotation(decision, annotations::APPROVAL_REASON);
            let impersonator = annotation(decision, annotations::APPROVER_IMPERSONATOR);
            let service_account = Approvers::service_account_of(&user).is_some();
            // Approving again (after a lapse, or where it stopped counting) replaces the
            // earlier approval.
            status.approvals.retain(|a| a.approver != user);
            status.approvals.push(Approval {
                approver: user.clone(),
                reason: reason.clone(),
                at: now,
                digest,
                uid,
                stamp,
                groups: groups.clone(),
                impersonator: impersonator.clone(),
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
                given: given.key(),
                groups,
                impersonator,
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

/// What identifies a recorded approval, in the order of [`APPROVAL`]'s identity
/// annotations: `approved-at`, `approval-digest`, `approval-uid`.
fn recorded_identity(approval: &Approval) -> Vec<Option<String>> {
    vec![
        approval.stamp.clone(),
        approval.digest.clone(),
        approval.uid.clone(),
    ]
}

/// Whether the approval on the Decision is one not yet recorded: its approver has none
/// that holds (none at all, or one that lapsed or no longer counts) and this one is given
/// anew, with other identity annotations than the recorded one. A changed reason is
/// never an approval.
fn is_new_approval(given: &Given, status: &DecisionStatus) -> bool {
    let user = given.by.as_str();
    let stamp = given.get(&APPROVAL, annotations::APPROVED_AT);
    let digest = given.get(&APPROVAL, annotations::APPROVAL_DIGEST);
    // An approval written while nobody verified answers never counts: only a new one does.
    if status.ignored_answers.iter().any(|i| {
        i.unverified
            && i.answer == "approval"
            && i.user == user
            && (i.stamp.as_deref(), i.digest.as_deref()) == (stamp, digest)
    }) {
        return false;
    }
    match status.approvals.iter().find(|a| a.approver == user) {
        None => true,
        Some(a) if counts(a, status) => false,
        Some(earlier) => recorded_identity(earlier) != given.identity,
    }
}

/// The approvers whose approvals count now.
pub(super) fn counting(status: &DecisionStatus) -> Vec<String> {
    status
        .approvals
        .iter()
        .filter(|a| counts(a, status))
        .map(|a| a.approver.clone())
        .collect()
}

/// Says which of the approvals that counted (`before`) no longer do, and why: the rule
/// that decides now does not admit their approvers.
pub(super) fn discount(
    status: &DecisionStatus,
    before: &[String],
    events: &mut Vec<DecisionEvent>,
) {
    for approval in status
        .approvals
        .iter()
        .filter(|a| before.contains(&a.approver) && a.lapsed_at.is_none())
    {
        if let Err(why) = may_answer(&approval.approver, Groups::of(approval), status, true) {
            events.push(DecisionEvent::ApprovalDiscounted {
                approver: approval.approver.clone(),
                why,
            });
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

/// An approval binds to the Decision itself: one that names a uid must name this
/// Decision's, and one that names a digest must name its digest (`status.digest`: its uid,
/// its request and its pinned plan). One that names neither approves what the Decision
/// is when it is counted.
fn binds(
    decision: &Decision,
    status: &DecisionStatus,
    uid: Option<&str>,
    digest: Option<&str>,
) -> Result<(), String> {
    let actual = decision.metadata.uid.as_deref().unwrap_or_default();
    if let Some(uid) = uid
        && uid != actual
    {
        return Err(format!(
            "it approves the Decision with uid {uid}, but {} is now the Decision with uid {actual}: it was deleted and created again under the same name after the approver looked; look again with kubectl decision show",
            decision.metadata.name.as_deref().unwrap_or_default()
        ));
    }
    let Some(given) = digest else {
        return Ok(());
    };
    let Some(own) = status.digest.as_deref() else {
        return Err(format!(
            "it approves {given}, but the Decision has no digest yet"
        ));
    };
    if crate::pin::confirms(given, own) {
        return Ok(());
    }
    if let Some(plan) = status
        .plan
        .as_ref()
        .filter(|p| crate::pin::confirms(given, &p.digest))
    {
        return Err(format!(
            "it names the digest of the plan {} alone ({}); an approval confirms the Decision's digest {}, which also covers what is asked and which Decision asks it (kubectl decision show)",
            plan.name,
            crate::pin::short(&plan.digest),
            crate::pin::short(own)
        ));
    }
    Err(format!(
        "it approves {given}, but this Decision's digest is {}: what it asks, its plan or the Decision itself is not what the approver reviewed; look again with kubectl decision show",
        crate::pin::short(own)
    ))
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
        .filter(|a| counts(a, status))
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

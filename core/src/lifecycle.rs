//! The Decision lifecycle as pure functions of the Decision, the namespace's policies and
//! the time: no client, no clock. The reconciler reads, calls [`advance`], writes the
//! status it returns, and records and publishes the [events](crate::events).
//!
//! ```text
//! (new) ──evaluate──▶ Pending ─┬─ approvals reach the quorum ─▶ Approved
//!    │                Escalated┼─ rejected-by ───────────────▶ Rejected
//!    │                         └─ expiresAt passes ───────────▶ Expired
//!    ├─ rule says AutoApprove ─────────────────────────────────▶ Approved
//!    └─ rule says AutoReject ──────────────────────────────────▶ Rejected
//! ```
//! Nothing leaves Approved, Rejected or Expired here; execution takes Approved further.

use chrono::{DateTime, Utc};

use crate::admission::Answers;
use crate::answers::{UNVERIFIED, annotation, ignore, ignored, may_answer};
use crate::api::annotations;
use crate::api::common::set_condition;
use crate::api::common::to_chrono;
use crate::api::decision::{Approval, Evaluation, Outcome, Rejection, RiskAssessment};
use crate::api::{
    Approvers, Condition, ConditionStatus, Decision, DecisionPhase, DecisionSpec, DecisionStatus,
    ExecutionPlan,
};
use crate::events::DecisionEvent;
use crate::policy::{self, Expressions, Policy, Subject};
use crate::risk;

/// The condition that says whether a Decision has been approved.
pub const CONDITION_APPROVED: &str = "Approved";

/// What [`advance`] needs.
pub struct Input<'a> {
    pub decision: &'a Decision,
    /// The ApprovalPolicies of the Decision's namespace, in any order.
    pub policies: &'a [Policy<'a>],
    pub now: DateTime<Utc>,
    /// The expiry when neither the Decision nor its rule says.
    pub default_expiry: std::time::Duration,
    /// The ExecutionPlan the Decision names, as it is now (None when it names none or the
    /// plan does not exist).
    pub plan: Option<&'a ExecutionPlan>,
    /// Whether the admission policies that verify people's answers are in force.
    pub answers: &'a Answers,
    /// The rule expressions compiled so far.
    pub expressions: &'a Expressions,
}

/// What [`advance`] decided.
#[derive(Clone, Debug, PartialEq)]
pub struct Advance {
    pub status: DecisionStatus,
    /// What happened, in order. Empty when nothing did.
    pub events: Vec<DecisionEvent>,
    /// When to look again without any change: the expiry of a waiting Decision.
    pub wake_at: Option<DateTime<Utc>>,
}

/// When a Decision created at `created` expires: saturating, so that no duration (an
/// operator flag, an object stored before the schema bounded it) can overflow.
fn expiry_after(created: DateTime<Utc>, expiry: std::time::Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(expiry)
        .ok()
        .and_then(|d| created.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Moves a Decision as far as it can go now.
pub fn advance(input: &Input<'_>) -> Advance {
    let decision = input.decision;
    let now = input.now;
    let mut status = decision.status.clone().unwrap_or_default();
    let mut events = Vec::new();
    let subject_risk;
    lapse(&mut status, now, &mut events);

    match status.phase {
        None => {
            // A Decision that names a plan is evaluated with the plan pinned, so nobody is
            // asked before the plan exists.
            let pinned = match (&decision.spec.plan_ref, input.plan) {
                (None, _) => None,
                (Some(_), Some(plan)) if plan.spec.unreadable.is_none() => {
                    Some(crate::pin::pin(plan, now))
                }
                (Some(plan_ref), plan) => {
                    let unreadable = plan.and_then(|p| p.spec.unreadable.as_deref());
                    return wait_for_plan(input, status, &plan_ref.name, unreadable);
                }
            };
            let requested_by = annotation(decision, annotations::REQUESTED_BY);
            events.push(DecisionEvent::Requested {
                requested_by: requested_by.clone(),
                on_behalf_of: decision.spec.on_behalf_of.clone(),
            });
            status.requested_by = requested_by;
            status.on_behalf_of = decision.spec.on_behalf_of.clone();
            status.plan = pinned;
            subject_risk = risk::assess(&decision.spec);
            let spec = effective_spec(decision, &status);
            let mut verdict = policy::evaluate(
                &subject(decision, &spec, &subject_risk),
                input.policies,
                input.expressions,
            );
            verdict.evaluation.criticality = Some(spec.criticality);
            if let Some(why) = status
                .plan
                .as_ref()
                .and_then(|p| crate::pin::refuses(p, &decision.spec.action_type))
            {
                verdict.evaluation = Evaluation {
                    policy: None,
                    rule: None,
                    outcome: Outcome::AutoReject,
                    message: why,
                    required_approvals: 0,
                    approvers: Approvers::default(),
                    ..verdict.evaluation
                };
            }
            let expiry = decision
                .spec
                .expires_after
                .as_ref()
                .and_then(|d| d.parse().ok())
                .or(verdict.expires_after)
                .unwrap_or(input.default_expiry);
            let created = created_at(decision).unwrap_or(now);
            status.expires_at = Some(expiry_after(created, expiry));
            status.risk = Some(subject_risk.clone());
            apply_verdict(
                &mut status,
                verdict.evaluation,
                subject_risk,
                false,
                now,
                &mut events,
            );
        }
        Some(phase) if phase.is_awaiting_answer() => {
            let current = status.evaluation.as_ref().map(|e| e.policy_set.as_str());
            if current != Some(policy::fingerprint(input.policies).as_str()) {
                subject_risk = status
                    .risk
                    .clone()
                    .unwrap_or_else(|| risk::assess(&decision.spec));
                let spec = effective_spec(decision, &status);
                let mut verdict = policy::evaluate(
                    &subject(decision, &spec, &subject_risk),
                    input.policies,
                    input.expressions,
                );
                verdict.evaluation.criticality = Some(spec.criticality);
                if status
                    .evaluation
                    .as_ref()
                    .is_some_and(|e| same_decision(e, &verdict.evaluation))
                {
                    // Only the fingerprint moved: nothing to tell anyone.
                    if let Some(e) = status.evaluation.as_mut() {
                        e.policy_set = verdict.evaluation.policy_set;
                    }
                } else {
                    apply_verdict(
                        &mut status,
                        verdict.evaluation,
                        subject_risk,
                        true,
                        now,
                        &mut events,
                    );
                }
            }
        }
        Some(_) => {}
    }

    if status.phase.is_some_and(DecisionPhase::is_awaiting_answer) {
        take_answers(decision, &mut status, input.answers, now, &mut events);
    } else {
        ignore_late_answers(decision, &mut status, now, &mut events);
    }

    note_approval(decision, &mut status, now);
    status.approval_progress = Some(progress(&status));
    status.observed_generation = decision.metadata.generation;
    set_approved_condition(&mut status, decision.metadata.generation, now);
    if awaits_people(&status) {
        set_verified_condition(
            &mut status,
            input.answers,
            decision.metadata.generation,
            now,
        );
    }
    let wake_at = match status.phase {
        Some(p) if p.is_awaiting_answer() => status.expires_at,
        // An approval that may lapse is looked at again when it would.
        Some(DecisionPhase::Approved) if status.execution.is_none() => status.approval_valid_until,
        _ => None,
    };
    Advance {
        status,
        events,
        wake_at,
    }
}

fn subject<'a>(
    decision: &'a Decision,
    spec: &'a DecisionSpec,
    risk: &'a RiskAssessment,
) -> Subject<'a> {
    Subject {
        name: decision.metadata.name.as_deref().unwrap_or_default(),
        namespace: decision.metadata.namespace.as_deref().unwrap_or_default(),
        spec,
        risk,
    }
}

/// The request as policies see it: at least as critical as the pinned plan says.
fn effective_spec(decision: &Decision, status: &DecisionStatus) -> DecisionSpec {
    let mut spec = decision.spec.clone();
    if let Some(floor) = status.plan.as_ref().and_then(|p| p.criticality) {
        spec.criticality = crate::pin::higher(spec.criticality, floor);
    }
    spec
}

/// A Decision whose plan does not exist yet (or cannot be read): not evaluated, nobody
/// asked, until the plan can be pinned; it still expires on time.
fn wait_for_plan(
    input: &Input<'_>,
    mut status: DecisionStatus,
    plan: &str,
    unreadable: Option<&str>,
) -> Advance {
    let decision = input.decision;
    let now = input.now;
    let expiry = decision
        .spec
        .expires_after
        .as_ref()
        .and_then(|d| d.parse().ok())
        .unwrap_or(input.default_expiry);
    let created = created_at(decision).unwrap_or(now);
    let expires_at = *status
        .expires_at
        .get_or_insert_with(|| expiry_after(created, expiry));
    let mut events = Vec::new();
    if now >= expires_at {
        status.phase = Some(DecisionPhase::Expired);
        events.push(DecisionEvent::Expired { expires_at });
        status.approval_progress = Some(progress(&status));
        status.observed_generation = decision.metadata.generation;
        set_approved_condition(&mut status, decision.metadata.generation, now);
        return Advance {
            status,
            events,
            wake_at: None,
        };
    }
    let message = match unreadable {
        None => format!(
            "the ExecutionPlan {plan} does not exist yet; nobody is asked to approve before it can be pinned"
        ),
        Some(why) => format!(
            "the ExecutionPlan {plan} cannot be read ({why}); nobody is asked to approve before it can be pinned"
        ),
    };
    let waiting = crate::api::common::find_condition(&status.conditions, CONDITION_APPROVED)
        .is_some_and(|c| c.reason == "WaitingForPlan" && c.message == message);
    if !waiting {
        events.push(DecisionEvent::WaitingForPlan {
            plan: plan.to_owned(),
            message: message.clone(),
        });
        set_condition(
            &mut status.conditions,
            Condition::new(
                CONDITION_APPROVED,
                ConditionStatus::Unknown,
                "WaitingForPlan",
                message,
            )
            .generation(decision.metadata.generation),
            now,
        );
    }
    status.observed_generation = decision.metadata.generation;
    Advance {
        status,
        events,
        wake_at: Some(expires_at),
    }
}

fn same_decision(a: &Evaluation, b: &Evaluation) -> bool {
    a.policy == b.policy
        && a.rule == b.rule
        && a.outcome == b.outcome
        && a.required_approvals == b.required_approvals
        && a.approvers == b.approvers
}

/// Puts a policy verdict into effect on a Decision that has not been answered.
fn apply_verdict(
    status: &mut DecisionStatus,
    evaluation: Evaluation,
    risk: RiskAssessment,
    reevaluation: bool,
    now: DateTime<Utc>,
    events: &mut Vec<DecisionEvent>,
) {
    events.push(DecisionEvent::PolicyEvaluated {
        evaluation: evaluation.clone(),
        risk,
        reevaluation,
    });
    let by = match (&evaluation.policy, &evaluation.rule) {
        (Some(p), Some(r)) => format!("policy:{p}/{r}"),
        _ => "decision-gate".to_owned(),
    };
    match evaluation.outcome {
        Outcome::AutoApprove => {
            status.phase = Some(DecisionPhase::Approved);
            events.push(DecisionEvent::AutoApproved {
                by,
                message: evaluation.message.clone(),
            });
        }
        Outcome::AutoReject => {
            status.phase = Some(DecisionPhase::Rejected);
            status.rejection = Some(Rejection {
                rejected_by: by.clone(),
                reason: evaluation.message.clone(),
                at: now,
                verified: None,
            });
            events.push(DecisionEvent::AutoRejected {
                by,
                message: evaluation.message.clone(),
            });
        }
        Outcome::RequireApproval => {
            status.phase = Some(DecisionPhase::Pending);
            events.push(DecisionEvent::ApprovalRequested {
                required: evaluation.required_approvals,
                approvers: evaluation.approvers.clone(),
            });
        }
        Outcome::Escalate => {
            status.phase = Some(DecisionPhase::Escalated);
            events.push(DecisionEvent::Escalated {
                required: evaluation.required_approvals,
                approvers: evaluation.approvers.clone(),
            });
        }
    }
    status.evaluation = Some(evaluation);
    // A re-evaluation may have lowered the bar below the approvals already given.
    if status.phase.is_some_and(DecisionPhase::is_awaiting_answer) && quorum_reached(status) {
        status.phase = Some(DecisionPhase::Approved);
    }
}

/// Reads `rejected-by` and `approved-by` on a Decision that waits for an answer.
fn take_answers(
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

/// Whether the Decision waits for people: for an answer, or for a rollback's approval.
fn awaits_people(status: &DecisionStatus) -> bool {
    status.phase.is_some_and(DecisionPhase::is_awaiting_answer)
        || status
            .execution
            .as_ref()
            .and_then(|x| x.rollback.as_ref())
            .is_some_and(|r| r.phase == crate::api::decision::RollbackPhase::AwaitingApproval)
}

/// The condition that says whether people's answers are verified, and so count.
pub const CONDITION_ANSWERS_VERIFIED: &str = "AnswersVerified";

fn set_verified_condition(
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

/// An approval of a Decision whose plan has not started, past `approvalValidFor`, no longer
/// holds: it goes back to waiting for approval (as it waited before), and says why.
fn lapse(status: &mut DecisionStatus, now: DateTime<Utc>, events: &mut Vec<DecisionEvent>) {
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
fn note_approval(decision: &Decision, status: &mut DecisionStatus, now: DateTime<Utc>) {
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

/// Answers given to a Decision that no longer waits for one are recorded as ignored.
fn ignore_late_answers(
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

fn required(status: &DecisionStatus) -> u32 {
    status
        .evaluation
        .as_ref()
        .map_or(1, |e| e.required_approvals)
}

/// Approvals that count under the current evaluation: distinct approvers, still allowed.
fn counted_approvals(status: &DecisionStatus) -> u32 {
    let mut seen = std::collections::BTreeSet::new();
    status
        .approvals
        .iter()
        .filter(|a| a.lapsed_at.is_none())
        .filter(|a| may_answer(&a.approver, status, true).is_ok())
        .filter(|a| seen.insert(a.approver.as_str()))
        .count() as u32
}

fn quorum_reached(status: &DecisionStatus) -> bool {
    counted_approvals(status) >= required(status).max(1)
}

fn progress(status: &DecisionStatus) -> String {
    match status.evaluation.as_ref().map(|e| e.outcome) {
        Some(Outcome::AutoApprove | Outcome::AutoReject) => "auto".to_owned(),
        _ => format!("{}/{}", counted_approvals(status), required(status)),
    }
}

fn set_approved_condition(
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

fn created_at(decision: &Decision) -> Option<DateTime<Utc>> {
    decision
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| to_chrono(&t.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::approval_policy::{ApprovalPolicySpec, PolicyRule, RuleMatch};
    use crate::api::decision::Criticality;
    use crate::api::{ApprovalPolicy, DecisionSpec};
    use chrono::TimeZone;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    const DAY: std::time::Duration = std::time::Duration::from_secs(86400);

    fn created() -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000, 0).unwrap()
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        created() + chrono::Duration::seconds(seconds)
    }

    fn decision(criticality: Criticality) -> Decision {
        let mut d = Decision::new(
            "deploy",
            DecisionSpec {
                description: "Deploy 2.0".into(),
                expires_after: Some("1h".into()),
                ..DecisionSpec::example("deploy", criticality)
            },
        );
        d.metadata.namespace = Some("ops".into());
        d.metadata.generation = Some(1);
        d.metadata.creation_timestamp = Some(Time(
            k8s_openapi::jiff::Timestamp::from_second(created().timestamp()).unwrap(),
        ));
        d
    }

    fn policy(outcome: Outcome, required: Option<u32>, users: &[&str]) -> ApprovalPolicy {
        ApprovalPolicy::new(
            "p",
            ApprovalPolicySpec {
                priority: 100,
                rules: vec![PolicyRule {
                    name: "r".into(),
                    match_: RuleMatch::default(),
                    outcome,
                    approvers: (!users.is_empty()).then(|| Approvers {
                        users: users.iter().map(|u| u.to_string()).collect(),
                        ..Default::default()
                    }),
                    required_approvals: required,
                    expires_after: None,
                    approval_valid_for: None,
                }],
                expires_after: None,
                unreadable: None,
            },
        )
    }

    fn views(policies: &[ApprovalPolicy]) -> Vec<Policy<'_>> {
        policies.iter().map(Policy::of).collect()
    }

    /// Runs one step and keeps the result on the Decision, as the reconciler does.
    fn step(d: &mut Decision, policies: &[ApprovalPolicy], now: DateTime<Utc>) -> Advance {
        let views = views(policies);
        let advance = advance(&Input {
            decision: d,
            policies: &views,
            now,
            default_expiry: DAY,
            plan: None,
            answers: &Answers::Verified,
            expressions: &Expressions::default(),
        });
        d.status = Some(advance.status.clone());
        advance
    }

    fn annotate(d: &mut Decision, pairs: &[(&str, &str)]) {
        let annotations = d.metadata.annotations.get_or_insert_with(Default::default);
        for (k, v) in pairs {
            annotations.insert(k.to_string(), v.to_string());
        }
    }

    fn phase(d: &Decision) -> DecisionPhase {
        d.status.as_ref().unwrap().phase.unwrap()
    }

    fn types(a: &Advance) -> Vec<&'static str> {
        a.events.iter().map(DecisionEvent::event_type).collect()
    }

    fn with_plan(plan: &str) -> Decision {
        let mut d = decision(Criticality::Normal);
        d.spec.plan_ref = Some(crate::api::decision::PlanRef { name: plan.into() });
        d
    }

    fn execution_plan(action_types: &[&str], criticality: Option<Criticality>) -> ExecutionPlan {
        let mut plan: ExecutionPlan = serde_json::from_value(serde_json::json!({
            "apiVersion": "decisiongate.io/v1alpha1",
            "kind": "ExecutionPlan",
            "metadata": {"name": "ship", "namespace": "ops", "uid": "plan-1", "generation": 1},
            "spec": {"actionTypes": action_types, "mode": "Real", "steps": [
                {"name": "roll-out", "template": {"spec": {"restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "api:2.0", "args": ["deploy"]}]}}},
            ]},
        }))
        .unwrap();
        plan.spec.criticality = criticality;
        plan
    }

    /// One step with the plan as it is now.
    fn step_with(
        d: &mut Decision,
        policies: &[ApprovalPolicy],
        plan: Option<&ExecutionPlan>,
        now: DateTime<Utc>,
    ) -> Advance {
        let views = views(policies);
        let advance = advance(&Input {
            decision: d,
            policies: &views,
            now,
            default_expiry: DAY,
            plan,
            answers: &Answers::Verified,
            expressions: &Expressions::default(),
        });
        d.status = Some(advance.status.clone());
        advance
    }

    #[test]
    fn the_plan_is_pinned_when_the_decision_is_evaluated() {
        let plan = execution_plan(&["deploy"], None);
        let mut d = with_plan("ship");
        step_with(
            &mut d,
            &[policy(Outcome::RequireApproval, None, &[])],
            Some(&plan),
            at(1),
        );
        let status = d.status.clone().unwrap();
        assert_eq!(status.phase, Some(DecisionPhase::Pending));
        let pinned = status.plan.as_ref().expect("pinned");
        assert_eq!(
            (pinned.name.as_str(), pinned.uid.as_str(), pinned.generation),
            ("ship", "plan-1", 1)
        );
        assert_eq!(pinned.digest, crate::pin::digest(&plan.spec));
        assert_eq!(pinned.steps[0].images, ["api:2.0"]);
        // Edited afterwards: the pin stays as it was.
        let mut edited = plan.clone();
        edited.spec.steps[0].template["spec"]["containers"][0]["image"] = "evil:1".into();
        edited.metadata.generation = Some(2);
        step_with(
            &mut d,
            &[policy(Outcome::RequireApproval, None, &[])],
            Some(&edited),
            at(2),
        );
        assert_eq!(
            d.status.as_ref().unwrap().plan.as_ref().unwrap().digest,
            pinned.digest
        );
    }

    #[test]
    fn a_plan_that_does_not_exist_yet_is_waited_for_and_nobody_is_asked() {
        let mut d = with_plan("ship");
        let policies = [policy(Outcome::RequireApproval, None, &[])];
        let a = step_with(&mut d, &policies, None, at(1));
        assert_eq!(types(&a), ["waiting_for_plan"]);
        let status = d.status.clone().unwrap();
        assert_eq!(status.phase, None);
        assert!(status.evaluation.is_none() && status.plan.is_none());
        let c = crate::api::common::find_condition(&status.conditions, CONDITION_APPROVED).unwrap();
        assert_eq!(c.reason, "WaitingForPlan");
        assert!(
            c.message.contains("ExecutionPlan ship does not exist yet"),
            "{}",
            c.message
        );
        assert_eq!(a.wake_at, status.expires_at, "it still expires on time");
        // Said once.
        assert!(step_with(&mut d, &policies, None, at(2)).events.is_empty());
        // The plan appears: pinned, evaluated, approvers asked.
        let plan = execution_plan(&["deploy"], None);
        let a = step_with(&mut d, &policies, Some(&plan), at(3));
        assert_eq!(
            types(&a),
            [
                "decision_requested",
                "policy_evaluated",
                "approval_requested"
            ]
        );
        assert!(d.status.as_ref().unwrap().plan.is_some());
        // Or never does: it expires like any other.
        let mut late = with_plan("ship");
        step_with(&mut late, &policies, None, at(1));
        let a = step_with(&mut late, &policies, None, at(3601));
        assert_eq!(types(&a), ["expired"]);
        assert_eq!(phase(&late), DecisionPhase::Expired);
    }

    #[test]
    fn a_plan_made_for_another_action_is_refused_before_anyone_is_asked() {
        let plan = execution_plan(&["delete_data"], None);
        let mut d = with_plan("ship");
        let a = step_with(
            &mut d,
            &[policy(Outcome::AutoApprove, None, &[])],
            Some(&plan),
            at(1),
        );
        assert_eq!(phase(&d), DecisionPhase::Rejected);
        assert!(types(&a).contains(&"auto_rejected"), "{:?}", types(&a));
        let rejection = d.status.as_ref().unwrap().rejection.clone().unwrap();
        assert_eq!(
            rejection.reason,
            "the ExecutionPlan ship carries out delete_data, not deploy"
        );
    }

    #[test]
    fn a_critical_plan_is_never_approved_automatically() {
        let plan = execution_plan(&["deploy"], Some(Criticality::Critical));
        let mut d = with_plan("ship");
        step_with(
            &mut d,
            &[policy(Outcome::AutoApprove, None, &[])],
            Some(&plan),
            at(1),
        );
        assert_eq!(phase(&d), DecisionPhase::Pending);
        let evaluation = d.status.as_ref().unwrap().evaluation.clone().unwrap();
        assert_eq!(evaluation.criticality, Some(Criticality::Critical));
        assert_eq!(evaluation.outcome, Outcome::RequireApproval);
        // A policy change re-evaluates with the plan's floor still in force.
        let mut changed = policy(Outcome::AutoApprove, None, &[]);
        changed.metadata.generation = Some(7);
        step_with(&mut d, &[changed], Some(&plan), at(2));
        assert_eq!(phase(&d), DecisionPhase::Pending);
    }

    #[test]
    fn an_approval_counts_only_for_the_pinned_content() {
        let plan = execution_plan(&["deploy"], None);
        let policies = [policy(Outcome::RequireApproval, Some(2), &[])];
        let mut d = with_plan("ship");
        step_with(&mut d, &policies, Some(&plan), at(1));
        let pinned = d.status.as_ref().unwrap().plan.clone().unwrap();
        annotate(
            &mut d,
            &[
                ("approved-by", "alice"),
                ("approval-digest", "sha256:0123456789abcdef"),
            ],
        );
        let a = step_with(&mut d, &policies, Some(&plan), at(2));
        assert_eq!(types(&a), ["answer_ignored"]);
        let ignored = &d.status.as_ref().unwrap().ignored_answers[0];
        assert!(
            ignored.reason.contains("but the Decision pins sha256:"),
            "{}",
            ignored.reason
        );
        // Looked again and approved what is pinned (its short form is enough).
        annotate(
            &mut d,
            &[("approval-digest", crate::pin::short(&pinned.digest))],
        );
        let a = step_with(&mut d, &policies, Some(&plan), at(3));
        assert_eq!(types(&a), ["approval_granted"]);
        let approval = &d.status.as_ref().unwrap().approvals[0];
        assert_eq!(
            approval.digest.as_deref(),
            Some(crate::pin::short(&pinned.digest))
        );
        // A bare approval approves the pinned content.
        annotate(&mut d, &[("approved-by", "bob")]);
        d.metadata
            .annotations
            .as_mut()
            .unwrap()
            .remove("approval-digest");
        step_with(&mut d, &policies, Some(&plan), at(4));
        assert_eq!(phase(&d), DecisionPhase::Approved);
    }

    #[test]
    fn an_approval_not_used_in_time_lapses_and_is_given_again() {
        let mut rule = policy(Outcome::RequireApproval, Some(1), &[]);
        rule.spec.rules[0].approval_valid_for = Some("10m".into());
        let policies = [rule];
        let plan = execution_plan(&["deploy"], None);
        let mut d = with_plan("ship");
        step_with(&mut d, &policies, Some(&plan), at(1));
        annotate(&mut d, &[("approved-by", "alice"), ("approved-at", "t1")]);
        let a = step_with(&mut d, &policies, Some(&plan), at(60));
        assert_eq!(phase(&d), DecisionPhase::Approved);
        let status = d.status.clone().unwrap();
        assert_eq!(status.approved_at, Some(at(60)));
        assert_eq!(status.approval_valid_until, Some(at(660)));
        assert_eq!(
            a.wake_at,
            Some(at(660)),
            "looked at again when it would lapse"
        );

        // The plan has not started (a change window, say) when the ten minutes run out.
        let a = step_with(&mut d, &policies, Some(&plan), at(660));
        assert_eq!(types(&a), ["approval_lapsed"]);
        assert_eq!(phase(&d), DecisionPhase::Pending);
        let status = d.status.clone().unwrap();
        assert_eq!(status.approvals[0].lapsed_at, Some(at(660)));
        assert_eq!(status.approval_progress.as_deref(), Some("0/1"));
        let c = crate::api::common::find_condition(&status.conditions, CONDITION_APPROVED).unwrap();
        assert_eq!(c.reason, "ApprovalLapsed");
        assert!(c.message.contains("approve again"), "{}", c.message);

        // The same annotations again are the same, lapsed approval: it does not count.
        assert!(
            step_with(&mut d, &policies, Some(&plan), at(700))
                .events
                .is_empty()
        );
        assert_eq!(phase(&d), DecisionPhase::Pending);
        // Approving again (a new approved-at) counts, and the clock starts again.
        annotate(&mut d, &[("approved-at", "t2")]);
        let a = step_with(&mut d, &policies, Some(&plan), at(720));
        assert_eq!(types(&a), ["approval_granted"]);
        let status = d.status.clone().unwrap();
        assert_eq!(status.phase, Some(DecisionPhase::Approved));
        assert_eq!(status.approvals.len(), 1);
        assert_eq!(status.approval_valid_until, Some(at(1320)));
    }

    #[test]
    fn a_pure_gate_approval_never_lapses() {
        let mut rule = policy(Outcome::RequireApproval, Some(1), &[]);
        rule.spec.rules[0].approval_valid_for = Some("10m".into());
        let mut d = decision(Criticality::High);
        step(&mut d, &[rule.clone()], at(1));
        annotate(&mut d, &[("approved-by", "alice")]);
        step(&mut d, &[rule.clone()], at(2));
        assert_eq!(phase(&d), DecisionPhase::Approved);
        assert_eq!(d.status.as_ref().unwrap().approved_at, Some(at(2)));
        assert_eq!(d.status.as_ref().unwrap().approval_valid_until, None);
        step(&mut d, &[rule], at(100_000));
        assert_eq!(phase(&d), DecisionPhase::Approved);
    }

    #[test]
    fn an_automatic_approval_has_no_time_limit() {
        let mut rule = policy(Outcome::AutoApprove, None, &[]);
        rule.spec.rules[0].approval_valid_for = Some("10m".into());
        let mut d = with_plan("ship");
        let plan = execution_plan(&["deploy"], None);
        step_with(&mut d, &[rule.clone()], Some(&plan), at(1));
        assert_eq!(phase(&d), DecisionPhase::Approved);
        assert_eq!(d.status.as_ref().unwrap().approval_valid_until, None);
        step_with(&mut d, &[rule], Some(&plan), at(100_000));
        assert_eq!(phase(&d), DecisionPhase::Approved);
    }

    #[test]
    fn a_new_decision_is_evaluated_and_waits_until_its_expiry() {
        let mut d = decision(Criticality::High);
        let a = step(&mut d, &[], at(2));
        assert_eq!(phase(&d), DecisionPhase::Pending);
        assert_eq!(
            types(&a),
            [
                "decision_requested",
                "policy_evaluated",
                "approval_requested"
            ]
        );
        let status = d.status.as_ref().unwrap();
        assert_eq!(status.expires_at, Some(at(3600)));
        assert_eq!(a.wake_at, Some(at(3600)));
        assert_eq!(status.approval_progress.as_deref(), Some("0/1"));
        assert!(status.risk.is_some());
        let approved = &status.conditions[0];
        assert_eq!(
            (approved.status, approved.reason.as_str()),
            (ConditionStatus::Unknown, "AwaitingApproval")
        );

        // Nothing new: nothing happens.
        let again = step(&mut d, &[], at(5));
        assert!(again.events.is_empty());
        assert_eq!(again.status.conditions[0].last_transition_time, at(2));
    }

    #[test]
    fn the_expiry_comes_from_the_decision_then_the_rule_then_the_default() {
        let mut d = decision(Criticality::High);
        d.spec.expires_after = None;
        step(&mut d, &[], at(0));
        assert_eq!(d.status.as_ref().unwrap().expires_at, Some(at(86400)));

        let mut d = decision(Criticality::High);
        d.spec.expires_after = None;
        let mut p = policy(Outcome::RequireApproval, None, &[]);
        p.spec.rules[0].expires_after = Some("10m".into());
        step(&mut d, &[p], at(0));
        assert_eq!(d.status.as_ref().unwrap().expires_at, Some(at(600)));
    }

    #[test]
    fn two_distinct_approvers_make_a_quorum_of_two() {
        let p = [policy(Outcome::RequireApproval, Some(2), &[])];
        let mut d = decision(Criticality::High);
        step(&mut d, &p, at(0));

        annotate(
            &mut d,
            &[
                ("approved-by", "alice"),
                ("approval-reason", "tested in staging"),
            ],
        );
        let a = step(&mut d, &p, at(10));
        assert_eq!(types(&a), ["approval_granted"]);
        assert_eq!(phase(&d), DecisionPhase::Pending);
        let status = d.status.as_ref().unwrap();
        assert_eq!(status.approval_progress.as_deref(), Some("1/2"));
        assert_eq!(status.approvals[0].approver, "alice");
        assert_eq!(
            status.approvals[0].reason.as_deref(),
            Some("tested in staging")
        );
        assert_eq!(status.approvals[0].at, at(10));

        // alice again: still one approval.
        let a = step(&mut d, &p, at(20));
        assert!(a.events.is_empty());
        assert_eq!(
            d.status.as_ref().unwrap().approval_progress.as_deref(),
            Some("1/2")
        );

        annotate(&mut d, &[("approved-by", "bob")]);
        let a = step(&mut d, &p, at(30));
        assert_eq!(types(&a), ["approval_granted"]);
        assert_eq!(phase(&d), DecisionPhase::Approved);
        assert_eq!(a.wake_at, None);
        let status = d.status.as_ref().unwrap();
        assert_eq!(status.approval_progress.as_deref(), Some("2/2"));
        assert_eq!(status.conditions[0].status, ConditionStatus::True);
        assert_eq!(status.conditions[0].message, "approved by alice, bob");
    }

    #[test]
    fn one_rejection_vetoes_even_after_approvals() {
        let p = [policy(Outcome::RequireApproval, Some(2), &[])];
        let mut d = decision(Criticality::High);
        step(&mut d, &p, at(0));
        annotate(&mut d, &[("approved-by", "alice")]);
        step(&mut d, &p, at(1));
        annotate(
            &mut d,
            &[
                ("rejected-by", "carol"),
                ("rejection-reason", "freeze week"),
            ],
        );
        let a = step(&mut d, &p, at(2));
        assert_eq!(types(&a), ["approval_rejected"]);
        assert_eq!(phase(&d), DecisionPhase::Rejected);
        let rejection = d.status.as_ref().unwrap().rejection.clone().unwrap();
        assert_eq!(
            (rejection.rejected_by.as_str(), rejection.reason.as_str()),
            ("carol", "freeze week")
        );
        assert_eq!(d.status.as_ref().unwrap().conditions[0].reason, "Rejected");
    }

    #[test]
    fn expiry_is_its_own_outcome_and_a_late_approval_changes_nothing() {
        let mut d = decision(Criticality::High);
        step(&mut d, &[], at(0));
        let a = step(&mut d, &[], at(3600));
        assert_eq!(types(&a), ["expired"]);
        assert_eq!(phase(&d), DecisionPhase::Expired);
        assert!(
            d.status.as_ref().unwrap().rejection.is_none(),
            "expiry is not a rejection"
        );
        assert_eq!(d.status.as_ref().unwrap().conditions[0].reason, "Expired");

        annotate(&mut d, &[("approved-by", "alice")]);
        let a = step(&mut d, &[], at(3700));
        assert_eq!(types(&a), ["answer_ignored"]);
        assert_eq!(phase(&d), DecisionPhase::Expired);
        assert!(d.status.as_ref().unwrap().approvals.is_empty());
        // Recorded once, not at every look.
        assert!(step(&mut d, &[], at(3800)).events.is_empty());
    }

    #[test]
    fn only_named_users_may_approve_and_never_the_requester() {
        let p = [policy(Outcome::RequireApproval, Some(1), &["alice", "bob"])];
        let mut d = decision(Criticality::High);
        annotate(&mut d, &[(annotations::REQUESTED_BY, "bob")]);
        step(&mut d, &p, at(0));
        assert_eq!(
            d.status.as_ref().unwrap().requested_by.as_deref(),
            Some("bob")
        );

        annotate(&mut d, &[("approved-by", "carol")]);
        let a = step(&mut d, &p, at(1));
        assert_eq!(types(&a), ["answer_ignored"]);
        assert!(
            a.events[0].note().contains("not among the approvers"),
            "{}",
            a.events[0].note()
        );

        annotate(&mut d, &[("approved-by", "bob")]);
        let a = step(&mut d, &p, at(2));
        assert!(
            a.events[0].note().contains("requested the Decision"),
            "{}",
            a.events[0].note()
        );
        assert_eq!(phase(&d), DecisionPhase::Pending);

        annotate(&mut d, &[("approved-by", "alice")]);
        step(&mut d, &p, at(3));
        assert_eq!(phase(&d), DecisionPhase::Approved);
        assert_eq!(d.status.as_ref().unwrap().ignored_answers.len(), 2);
    }

    /// One step under a given verdict on the admission policies.
    fn step_under(
        d: &mut Decision,
        policies: &[ApprovalPolicy],
        answers: &Answers,
        now: DateTime<Utc>,
    ) -> Advance {
        let views = views(policies);
        let advance = advance(&Input {
            decision: d,
            policies: &views,
            now,
            default_expiry: DAY,
            plan: None,
            answers,
            expressions: &Expressions::default(),
        });
        d.status = Some(advance.status.clone());
        advance
    }

    fn verified_condition(d: &Decision) -> Condition {
        crate::api::common::find_condition(
            &d.status.as_ref().unwrap().conditions,
            CONDITION_ANSWERS_VERIFIED,
        )
        .cloned()
        .unwrap()
    }

    #[test]
    fn an_approval_written_while_nobody_verifies_answers_never_counts() {
        let p = [policy(Outcome::RequireApproval, Some(1), &[])];
        let gone = Answers::Unverified("the binding decision-gate-answers is gone".into());
        let mut d = decision(Criticality::Critical);
        step_under(&mut d, &p, &gone, at(0));
        let condition = verified_condition(&d);
        assert_eq!(condition.status, ConditionStatus::False);
        assert_eq!(condition.reason, "PoliciesNotInForce");
        assert!(
            condition.message.contains("decision-gate-answers"),
            "{condition:?}"
        );

        // A forged approval: recorded as ignored, never counted.
        annotate(&mut d, &[("approved-by", "alice")]);
        let a = step_under(&mut d, &p, &gone, at(1));
        assert_eq!(types(&a), ["answer_ignored"]);
        assert!(
            a.events[0].note().contains(UNVERIFIED),
            "{}",
            a.events[0].note()
        );
        assert_eq!(phase(&d), DecisionPhase::Pending);
        let ignored = &d.status.as_ref().unwrap().ignored_answers[0];
        assert!(ignored.unverified && ignored.user == "alice");

        // The policies are back: the same annotation still does not count ...
        let a = step_under(&mut d, &p, &Answers::Verified, at(2));
        assert!(a.events.is_empty(), "{:?}", a.events);
        assert_eq!(phase(&d), DecisionPhase::Pending);
        assert_eq!(verified_condition(&d).status, ConditionStatus::True);
        // ... and a new approval does.
        annotate(&mut d, &[("approved-at", "2027-01-15T10:00:00Z")]);
        let a = step_under(&mut d, &p, &Answers::Verified, at(3));
        assert_eq!(types(&a), ["approval_granted"]);
        assert_eq!(phase(&d), DecisionPhase::Approved);
        assert_eq!(d.status.as_ref().unwrap().approvals[0].verified, Some(true));
    }

    #[test]
    fn a_rejection_stops_a_decision_even_unverified_and_says_so() {
        let p = [policy(Outcome::RequireApproval, Some(1), &[])];
        let gone = Answers::Unverified("no policies".into());
        let mut d = decision(Criticality::High);
        step_under(&mut d, &p, &gone, at(0));
        annotate(&mut d, &[("rejected-by", "carol")]);
        let a = step_under(&mut d, &p, &gone, at(1));
        assert_eq!(phase(&d), DecisionPhase::Rejected);
        assert!(
            a.events[0].note().contains("(unverified)"),
            "{}",
            a.events[0].note()
        );
        let rejection = d.status.as_ref().unwrap().rejection.clone().unwrap();
        assert_eq!(rejection.verified, Some(false));
    }

    #[test]
    fn answers_counted_without_policies_are_marked_unverified() {
        let p = [policy(Outcome::RequireApproval, Some(1), &[])];
        let anyway = Answers::CountedUnverified("no policies".into());
        let mut d = decision(Criticality::High);
        step_under(&mut d, &p, &anyway, at(0));
        assert_eq!(verified_condition(&d).reason, "CountedUnverified");
        annotate(&mut d, &[("approved-by", "alice")]);
        let a = step_under(&mut d, &p, &anyway, at(1));
        assert_eq!(phase(&d), DecisionPhase::Approved);
        assert_eq!(
            d.status.as_ref().unwrap().approvals[0].verified,
            Some(false)
        );
        assert!(
            matches!(
                a.events[0],
                DecisionEvent::ApprovalGranted {
                    verified: false,
                    ..
                }
            ),
            "{:?}",
            a.events[0]
        );
    }

    fn policy_naming(approvers: Approvers) -> ApprovalPolicy {
        let mut p = policy(Outcome::RequireApproval, Some(1), &[]);
        p.spec.rules[0].approvers = Some(approvers);
        p
    }

    #[test]
    fn a_service_account_answers_only_where_a_rule_names_it() {
        let bot = "system:serviceaccount:agents:release-bot";
        let p = [policy_naming(Approvers {
            groups: vec!["system:serviceaccounts".into()],
            ..Default::default()
        })];
        let mut d = decision(Criticality::High);
        step(&mut d, &p, at(0));
        annotate(&mut d, &[("approved-by", bot)]);
        let a = step(&mut d, &p, at(1));
        assert_eq!(types(&a), ["answer_ignored"]);
        assert!(
            a.events[0]
                .note()
                .contains("approvers.serviceAccounts (agents/release-bot)"),
            "{}",
            a.events[0].note()
        );
        assert_eq!(phase(&d), DecisionPhase::Pending);

        let p = [policy_naming(Approvers {
            service_accounts: vec!["agents/release-bot".into()],
            ..Default::default()
        })];
        let mut d = decision(Criticality::High);
        step(&mut d, &p, at(0));
        annotate(&mut d, &[("approved-by", bot)]);
        let a = step(&mut d, &p, at(1));
        assert_eq!(phase(&d), DecisionPhase::Approved);
        assert!(d.status.as_ref().unwrap().approvals[0].service_account);
        assert!(
            a.events[0].note().contains("ServiceAccount"),
            "{}",
            a.events[0].note()
        );
        // A rule that names a ServiceAccount does not thereby admit other ones.
        assert!(
            may_answer(
                "system:serviceaccount:agents:other",
                d.status.as_ref().unwrap(),
                false
            )
            .is_err()
        );
    }

    #[test]
    fn the_person_an_agent_acts_for_cannot_approve() {
        let p = [policy(Outcome::RequireApproval, Some(1), &[])];
        let mut d = decision(Criticality::High);
        d.spec.on_behalf_of = Some("alice".into());
        annotate(
            &mut d,
            &[(
                annotations::REQUESTED_BY,
                "system:serviceaccount:agents:bot",
            )],
        );
        let a = step(&mut d, &p, at(0));
        let status = d.status.as_ref().unwrap();
        assert_eq!(status.on_behalf_of.as_deref(), Some("alice"));
        assert!(
            a.events[0].note().contains("on behalf of alice"),
            "{}",
            a.events[0].note()
        );
        assert!(
            matches!(
                &a.events[0],
                DecisionEvent::Requested { on_behalf_of: Some(who), .. } if who == "alice"
            ),
            "{:?}",
            a.events[0]
        );

        annotate(&mut d, &[("approved-by", "alice")]);
        let a = step(&mut d, &p, at(1));
        assert!(
            a.events[0].note().contains("on behalf of alice"),
            "{}",
            a.events[0].note()
        );
        assert_eq!(phase(&d), DecisionPhase::Pending);
        annotate(&mut d, &[("approved-by", "bob")]);
        step(&mut d, &p, at(2));
        assert_eq!(phase(&d), DecisionPhase::Approved);
    }

    #[test]
    fn policies_decide_automatically_within_the_invariants() {
        let mut d = decision(Criticality::Normal);
        let a = step(&mut d, &[policy(Outcome::AutoApprove, None, &[])], at(0));
        assert_eq!(phase(&d), DecisionPhase::Approved);
        assert_eq!(
            types(&a),
            ["decision_requested", "policy_evaluated", "auto_approved"]
        );
        assert_eq!(
            d.status.as_ref().unwrap().approval_progress.as_deref(),
            Some("auto")
        );

        let mut d = decision(Criticality::Critical);
        step(&mut d, &[policy(Outcome::AutoApprove, None, &[])], at(0));
        assert_eq!(phase(&d), DecisionPhase::Pending);

        let mut d = decision(Criticality::Info);
        step(&mut d, &[], at(0));
        assert_eq!(phase(&d), DecisionPhase::Approved);

        let mut d = decision(Criticality::Normal);
        let a = step(&mut d, &[policy(Outcome::AutoReject, None, &[])], at(0));
        assert_eq!(phase(&d), DecisionPhase::Rejected);
        assert_eq!(a.events.last().unwrap().event_type(), "auto_rejected");
        assert_eq!(
            d.status
                .as_ref()
                .unwrap()
                .rejection
                .as_ref()
                .unwrap()
                .rejected_by,
            "policy:p/r"
        );

        let mut d = decision(Criticality::Normal);
        step(&mut d, &[policy(Outcome::Escalate, Some(2), &[])], at(0));
        assert_eq!(phase(&d), DecisionPhase::Escalated);
        assert_eq!(d.status.as_ref().unwrap().conditions[0].reason, "Escalated");
    }

    #[test]
    fn a_policy_change_reevaluates_a_waiting_decision() {
        let mut p = vec![policy(Outcome::RequireApproval, Some(2), &[])];
        let mut d = decision(Criticality::Normal);
        step(&mut d, &p, at(0));
        annotate(&mut d, &[("approved-by", "alice")]);
        step(&mut d, &p, at(1));

        // The bar is lowered to one approval: alice's suffices.
        p[0].spec.rules[0].required_approvals = Some(1);
        p[0].metadata.generation = Some(2);
        let a = step(&mut d, &p, at(2));
        assert_eq!(types(&a), ["policy_evaluated", "approval_requested"]);
        assert_eq!(phase(&d), DecisionPhase::Approved);

        // A decided Decision is not re-evaluated.
        p[0].spec.rules[0].outcome = Outcome::AutoReject;
        p[0].metadata.generation = Some(3);
        assert!(step(&mut d, &p, at(3)).events.is_empty());
        assert_eq!(phase(&d), DecisionPhase::Approved);
    }

    #[test]
    fn a_new_policy_generation_with_the_same_verdict_is_silent() {
        let mut p = vec![policy(Outcome::RequireApproval, Some(1), &[])];
        let mut d = decision(Criticality::Normal);
        step(&mut d, &p, at(0));
        p[0].spec.priority = 5;
        p[0].metadata.generation = Some(2);
        assert!(step(&mut d, &p, at(1)).events.is_empty());
        let fingerprint = policy::fingerprint(&views(&p));
        assert_eq!(
            d.status
                .as_ref()
                .unwrap()
                .evaluation
                .as_ref()
                .unwrap()
                .policy_set,
            fingerprint
        );
    }

    mod invariants {
        use super::*;
        use proptest::prelude::*;

        #[derive(Clone, Debug)]
        enum Act {
            Approve(&'static str),
            Reject(&'static str),
            Wait(i64),
        }

        fn act() -> impl Strategy<Value = Act> {
            let user = prop_oneof![Just("alice"), Just("bob"), Just("carol"), Just("dave")];
            prop_oneof![
                user.clone().prop_map(Act::Approve),
                user.prop_map(Act::Reject),
                (1i64..2000).prop_map(Act::Wait),
            ]
        }

        fn outcome() -> impl Strategy<Value = Outcome> {
            prop_oneof![
                Just(Outcome::AutoApprove),
                Just(Outcome::RequireApproval),
                Just(Outcome::AutoReject),
                Just(Outcome::Escalate)
            ]
        }

        proptest! {
            /// Whatever people do and whenever, a Decision is approved only by its policy or
            /// by enough distinct allowed approvers before it expired; a decided Decision
            /// never changes phase; the requester never counts.
            #[test]
            fn no_path_reaches_approval_without_a_valid_approval(
                acts in proptest::collection::vec(act(), 0..12),
                outcome in outcome(),
                required in 1u32..4,
                named in any::<bool>(),
                critical in any::<bool>(),
            ) {
                let users: &[&str] = if named { &["alice", "bob", "carol"] } else { &[] };
                let p = [policy(outcome, Some(required), users)];
                let mut d = decision(if critical { Criticality::Critical } else { Criticality::Normal });
                annotate(&mut d, &[(annotations::REQUESTED_BY, "bob")]);
                let mut now = 0;
                step(&mut d, &p, at(now));
                let mut decided: Option<DecisionPhase> = None;
                for act in acts {
                    match act {
                        Act::Approve(u) => annotate(&mut d, &[("approved-by", u)]),
                        Act::Reject(u) => annotate(&mut d, &[("rejected-by", u)]),
                        Act::Wait(s) => now += s,
                    }
                    step(&mut d, &p, at(now));
                    let status = d.status.as_ref().unwrap();
                    let current = status.phase.unwrap();
                    if let Some(before) = decided {
                        prop_assert_eq!(current, before, "a decided Decision changed phase");
                    }
                    if !current.is_awaiting_answer() {
                        decided = Some(current);
                    }
                    prop_assert!(status.approvals.iter().all(|a| a.approver != "bob"));
                    if current == DecisionPhase::Approved {
                        let auto = status.evaluation.as_ref().unwrap().outcome == Outcome::AutoApprove;
                        prop_assert!(!(auto && critical), "a Critical Decision was auto-approved");
                        if !auto {
                            let mut approvers: Vec<&str> = status.approvals.iter().map(|a| a.approver.as_str()).collect();
                            approvers.dedup();
                            prop_assert!(approvers.len() as u32 >= required);
                            prop_assert!(status.approvals.iter().all(|a| a.at < status.expires_at.unwrap()));
                        }
                    }
                    if current == DecisionPhase::Expired {
                        prop_assert!(status.rejection.is_none());
                    }
                }
            }
        }
    }
}

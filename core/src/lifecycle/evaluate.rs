//! Evaluation: a new Decision evaluated against the namespace's policies (once its plan
//! can be pinned), a waiting one evaluated again when they change, and the verdict put
//! into effect.

use chrono::{DateTime, Utc};

use super::approvals::{counting, discount, progress, quorum_reached};
use super::conditions::set_approved_condition;
use super::{Advance, CONDITION_APPROVED, Input, JobsCheck, created_at, expiry_after};
use crate::answers::annotation;
use crate::api::annotations;
use crate::api::common::set_condition;
use crate::api::decision::{Evaluation, Outcome, PinnedPlan, Rejection, RiskAssessment};
use crate::api::{
    Approvers, Condition, ConditionStatus, Decision, DecisionPhase, DecisionSpec, DecisionStatus,
};
use crate::events::DecisionEvent;
use crate::policy::{self, Subject};
use crate::risk;

/// Evaluates a new Decision (with its plan pinned, if it names one): who asked, its
/// risk, its expiry and what the policies decide.
pub(super) fn first(
    input: &Input<'_>,
    status: &mut DecisionStatus,
    pinned: Option<PinnedPlan>,
    events: &mut Vec<DecisionEvent>,
) {
    let decision = input.decision;
    let now = input.now;
    let requested_by = annotation(decision, annotations::REQUESTED_BY);
    events.push(DecisionEvent::Requested {
        requested_by: requested_by.clone(),
        on_behalf_of: decision.spec.on_behalf_of.clone(),
    });
    status.requested_by = requested_by;
    status.on_behalf_of = decision.spec.on_behalf_of.clone();
    status.plan = pinned;
    let subject_risk = risk::assess(&decision.spec);
    let spec = effective_spec(decision, status);
    let mut verdict = policy::evaluate(
        &subject(decision, &spec, &subject_risk),
        input.policies,
        input.expressions,
    );
    verdict.evaluation.criticality = Some(spec.criticality);
    if let Some(why) = status.plan.as_ref().and_then(|p| {
        crate::pin::refuses(p, &decision.spec.action_type).or_else(|| never_runs(p, input.jobs))
    }) {
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
    apply_verdict(status, verdict.evaluation, subject_risk, false, now, events);
}

/// Evaluates a Decision that waits for an answer again when the policies changed.
pub(super) fn again(
    input: &Input<'_>,
    status: &mut DecisionStatus,
    events: &mut Vec<DecisionEvent>,
) {
    let decision = input.decision;
    let current = status.evaluation.as_ref().map(|e| e.policy_set.as_str());
    if current == Some(policy::fingerprint(input.policies).as_str()) {
        return;
    }
    let subject_risk = status
        .risk
        .clone()
        .unwrap_or_else(|| risk::assess(&decision.spec));
    let spec = effective_spec(decision, status);
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
        // Approvals are checked again under the rule that decides now.
        let counted = counting(status);
        apply_verdict(
            status,
            verdict.evaluation,
            subject_risk,
            true,
            input.now,
            events,
        );
        discount(status, &counted, events);
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

/// Why the pinned plan can never run for this Decision, when the API server found one of
/// its Jobs, as built for it, invalid.
fn never_runs(plan: &PinnedPlan, jobs: Option<&JobsCheck>) -> Option<String> {
    match jobs {
        Some(JobsCheck::Invalid { job, message }) => Some(format!(
            "the {job} of the ExecutionPlan {} could never run for this Decision: the API server refuses its Job: {message}",
            plan.name
        )),
        _ => None,
    }
}

/// A Decision whose plan does not exist yet, cannot be read, or whose Jobs the API server
/// refuses for now: not evaluated, nobody asked, until the plan can be pinned; the
/// condition says why (`reason`, `message`). It still expires on time, and is looked at
/// again at `recheck` if that comes first.
pub(super) fn wait_for_plan(
    input: &Input<'_>,
    mut status: DecisionStatus,
    plan: &str,
    (reason, message): (&str, String),
    recheck: Option<DateTime<Utc>>,
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
    let waiting = crate::api::common::find_condition(&status.conditions, CONDITION_APPROVED)
        .is_some_and(|c| c.reason == reason && c.message == message);
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
                reason,
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
        wake_at: Some(recheck.map_or(expires_at, |at| at.min(expires_at))),
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

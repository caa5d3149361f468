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

mod approvals;
mod conditions;
mod evaluate;
mod lapse;

use chrono::{DateTime, Utc};

use crate::admission::Answers;
use crate::api::common::to_chrono;
use crate::api::{Decision, DecisionPhase, DecisionStatus, ExecutionPlan};
use crate::events::DecisionEvent;
use crate::policy::{Expressions, Policy};

/// The condition that says whether a Decision has been approved.
pub const CONDITION_APPROVED: &str = "Approved";

/// The condition that says whether people's answers are verified, and so count.
pub const CONDITION_ANSWERS_VERIFIED: &str = "AnswersVerified";

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
    /// What the API server said of the Jobs the plan would create for this Decision, asked
    /// before it is first evaluated; None when not asked (it is not new, it names no plan,
    /// or its plan creates no Jobs).
    pub jobs: Option<&'a JobsCheck>,
}

/// The API server's verdict on the Jobs a new Decision's plan would create for it
/// ([`crate::execution::precheck`]), given to a server-side dry run of each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobsCheck {
    /// Every Job was admitted.
    Admitted,
    /// A Job is invalid as built for this Decision (the API server found it malformed or
    /// too large): it can never run, since neither the Decision nor its pinned plan may
    /// change. The Decision is rejected before anyone is asked.
    Invalid {
        /// Which Job: `step migrate-db`, `rollback of step migrate-db`.
        job: String,
        /// The API server's words.
        message: String,
    },
    /// A Job is refused for now (forbidden, over a quota, turned down by an admission
    /// webhook): the Decision waits, nobody asked, and the Jobs are checked again.
    Refused { job: String, message: String },
}

/// How often the Jobs of a Decision whose Jobs were refused for now are checked again.
pub const JOBS_RECHECK: std::time::Duration = std::time::Duration::from_secs(30);

/// What [`advance`] decided.
#[derive(Clone, Debug, PartialEq)]
pub struct Advance {
    pub status: DecisionStatus,
    /// What happened, in order. Empty when nothing did.
    pub events: Vec<DecisionEvent>,
    /// When to look again without any change: the expiry of a waiting Decision.
    pub wake_at: Option<DateTime<Utc>>,
}

/// Moves a Decision as far as it can go now.
pub fn advance(input: &Input<'_>) -> Advance {
    let decision = input.decision;
    let now = input.now;
    let mut status = decision.status.clone().unwrap_or_default();
    let mut events = Vec::new();
    lapse::lapse(&mut status, now, &mut events);

    match status.phase {
        None => {
            // A Decision that names a plan is evaluated with the plan pinned, so nobody is
            // asked before the plan exists.
            let pinned = match (&decision.spec.plan_ref, input.plan) {
                (None, _) => None,
                (Some(plan_ref), Some(plan)) if plan.spec.unreadable.is_none() => {
                    if let Some(JobsCheck::Refused { job, message }) = input.jobs {
                        let message = format!(
                            "the API server refuses the Job of the {job} of the ExecutionPlan {} for now ({message}); nobody is asked to approve before it admits it",
                            plan_ref.name
                        );
                        return evaluate::wait_for_plan(
                            input,
                            status,
                            &plan_ref.name,
                            ("JobsRefused", message),
                            Some(now + JOBS_RECHECK),
                        );
                    }
                    Some(crate::pin::pin(plan, now))
                }
                (Some(plan_ref), plan) => {
                    let name = &plan_ref.name;
                    let message = match plan.and_then(|p| p.spec.unreadable.as_deref()) {
                        None => format!(
                            "the ExecutionPlan {name} does not exist yet; nobody is asked to approve before it can be pinned"
                        ),
                        Some(why) => format!(
                            "the ExecutionPlan {name} cannot be read ({why}); nobody is asked to approve before it can be pinned"
                        ),
                    };
                    return evaluate::wait_for_plan(
                        input,
                        status,
                        name,
                        ("WaitingForPlan", message),
                        None,
                    );
                }
            };
            evaluate::first(input, &mut status, pinned, &mut events);
        }
        Some(phase) if phase.is_awaiting_answer() => {
            evaluate::again(input, &mut status, &mut events);
        }
        Some(_) => {}
    }
    // What an approval binds to, once the plan is pinned (Decisions evaluated before
    // digests existed get theirs here).
    if status.phase.is_some() && status.digest.is_none() {
        status.digest = Some(crate::pin::decision_digest(
            decision.metadata.uid.as_deref().unwrap_or_default(),
            &decision.spec,
            status.plan.as_ref().map(|p| p.digest.as_str()),
        ));
    }

    if status.phase.is_some_and(DecisionPhase::is_awaiting_answer) {
        approvals::take_answers(decision, &mut status, input.answers, now, &mut events);
    } else {
        approvals::ignore_late_answers(decision, &mut status, now, &mut events);
    }

    lapse::note_approval(decision, &mut status, now);
    status.approval_progress = Some(approvals::progress(&status));
    status.observed_generation = decision.metadata.generation;
    conditions::set_approved_condition(&mut status, decision.metadata.generation, now);
    if conditions::awaits_people(&status) {
        conditions::set_verified_condition(
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

/// When a Decision created at `created` expires: saturating, so that no duration (an
/// operator flag, an object stored before the schema bounded it) can overflow.
fn expiry_after(created: DateTime<Utc>, expiry: std::time::Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(expiry)
        .ok()
        .and_then(|d| created.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

fn created_at(decision: &Decision) -> Option<DateTime<Utc>> {
    decision
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| to_chrono(&t.0))
}

#[cfg(test)]
mod tests;

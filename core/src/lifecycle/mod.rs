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
                (Some(_), Some(plan)) if plan.spec.unreadable.is_none() => {
                    Some(crate::pin::pin(plan, now))
                }
                (Some(plan_ref), plan) => {
                    let unreadable = plan.and_then(|p| p.spec.unreadable.as_deref());
                    return evaluate::wait_for_plan(input, status, &plan_ref.name, unreadable);
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

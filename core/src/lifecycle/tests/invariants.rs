//! The lifecycle's invariants, over any sequence of answers and waits.

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

/// What must hold after every step: a decided Decision keeps its phase, the requester
/// (bob) never counts, and an approved one was approved by its policy (never a Critical
/// one) or by at least `required` distinct approvers, each allowed by the rule, before
/// the Decision expired.
fn holds(
    status: &DecisionStatus,
    decided: &mut Option<DecisionPhase>,
    required: u32,
    users: &[&str],
    critical: bool,
) -> Result<(), TestCaseError> {
    let current = status.phase.unwrap();
    if let Some(before) = *decided {
        prop_assert_eq!(current, before, "a decided Decision changed phase");
    }
    if !current.is_awaiting_answer() {
        *decided = Some(current);
    }
    prop_assert!(status.approvals.iter().all(|a| a.approver != "bob"));
    if current == DecisionPhase::Approved {
        let auto = status.evaluation.as_ref().unwrap().outcome == Outcome::AutoApprove;
        prop_assert!(!(auto && critical), "a Critical Decision was auto-approved");
        if !auto {
            let mut approvers: Vec<&str> = status
                .approvals
                .iter()
                .map(|a| a.approver.as_str())
                .collect();
            approvers.sort_unstable();
            approvers.dedup();
            prop_assert!(
                approvers.len() as u32 >= required,
                "approved by {:?}",
                approvers
            );
            if !users.is_empty() {
                prop_assert!(
                    approvers.iter().all(|a| users.contains(a)),
                    "approved by {:?}",
                    approvers
                );
            }
            prop_assert!(
                status
                    .approvals
                    .iter()
                    .all(|a| a.at < status.expires_at.unwrap())
            );
        }
    }
    if current == DecisionPhase::Expired {
        prop_assert!(status.rejection.is_none());
    }
    Ok(())
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
        holds(d.status.as_ref().unwrap(), &mut decided, required, users, critical)?;
        for act in acts {
            match act {
                Act::Approve(u) => annotate(&mut d, &[("approved-by", u)]),
                Act::Reject(u) => annotate(&mut d, &[("rejected-by", u)]),
                Act::Wait(s) => now += s,
            }
            step(&mut d, &p, at(now));
            holds(d.status.as_ref().unwrap(), &mut decided, required, users, critical)?;
        }
    }
}

//! Answers while the admission policies that verify them are not in force.

use super::*;

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

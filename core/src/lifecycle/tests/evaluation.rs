//! Evaluation: what a new Decision becomes, its expiry, automatic outcomes within the
//! invariants, and evaluating again when the policies change.

use super::*;

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

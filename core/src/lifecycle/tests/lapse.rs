//! An approval not used in time lapses, and only where a plan waits to start.

use super::*;

/// A rule whose approvals hold ten minutes, a plan, and a Decision to run it, evaluated.
fn waiting_ten_minutes_of_approval() -> ([ApprovalPolicy; 1], ExecutionPlan, Decision) {
    let mut rule = policy(Outcome::RequireApproval, Some(1), &[]);
    rule.spec.rules[0].approval_valid_for = Some("10m".into());
    let policies = [rule];
    let plan = execution_plan(&["deploy"], None);
    let mut d = with_plan("ship");
    step_with(&mut d, &policies, Some(&plan), at(1));
    (policies, plan, d)
}

#[test]
fn an_approval_not_used_in_time_lapses_and_is_given_again() {
    let (policies, plan, mut d) = waiting_ten_minutes_of_approval();
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
fn a_changed_reason_never_revives_or_renews_an_approval() {
    let (policies, plan, mut d) = waiting_ten_minutes_of_approval();
    annotate(
        &mut d,
        &[
            ("approved-by", "bob"),
            ("approved-at", "t1"),
            ("approval-reason", "window"),
        ],
    );
    step_with(&mut d, &policies, Some(&plan), at(60));
    assert_eq!(phase(&d), DecisionPhase::Approved);

    // Edited while it holds: it is not given again, so its clock does not start again.
    annotate(&mut d, &[("approval-reason", "still fine")]);
    let a = step_with(&mut d, &policies, Some(&plan), at(120));
    assert!(a.events.is_empty(), "{:?}", a.events);
    assert_eq!(
        d.status.as_ref().unwrap().approval_valid_until,
        Some(at(660))
    );
    step_with(&mut d, &policies, Some(&plan), at(660));
    assert_eq!(phase(&d), DecisionPhase::Pending, "it lapsed");

    // Edited after it lapsed: still lapsed, and bob's record keeps what bob said.
    annotate(&mut d, &[("approval-reason", "revived by someone else")]);
    let a = step_with(&mut d, &policies, Some(&plan), at(700));
    assert!(a.events.is_empty(), "{:?}", a.events);
    let status = d.status.clone().unwrap();
    assert_eq!(status.phase, Some(DecisionPhase::Pending));
    assert_eq!(status.approvals[0].reason.as_deref(), Some("window"));
    assert_eq!(status.approvals[0].lapsed_at, Some(at(660)));
}

#[test]
fn each_giving_of_an_approval_has_its_own_audit_line() {
    let (policies, plan, mut d) = waiting_ten_minutes_of_approval();
    annotate(&mut d, &[("approved-by", "bob"), ("approved-at", "t1")]);
    let first = step_with(&mut d, &policies, Some(&plan), at(2));
    step_with(&mut d, &policies, Some(&plan), at(700));
    assert_eq!(phase(&d), DecisionPhase::Pending, "it lapsed");
    // The same stamp with a digest is another giving, as for the admission policy.
    let digest = d.status.as_ref().unwrap().digest.clone().unwrap();
    annotate(&mut d, &[("approval-digest", &digest)]);
    let second = step_with(&mut d, &policies, Some(&plan), at(701));
    assert_eq!(types(&second), ["approval_granted"]);
    assert_ne!(
        first.events[0].discriminator(),
        second.events[0].discriminator(),
        "two givings are two audit lines"
    );
}

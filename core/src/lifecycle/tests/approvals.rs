//! People's answers: the quorum, the veto, expiry, and who may answer.

use super::*;

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
            Groups::Unchecked,
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

fn groups_rule(groups: &[&str]) -> ApprovalPolicy {
    let mut p = policy_naming(Approvers {
        groups: groups.iter().map(|g| g.to_string()).collect(),
        ..Default::default()
    });
    p.spec.rules[0].required_approvals = Some(2);
    p
}

/// `user` approves as the chart's admission policy lets them: with their groups stamped.
fn approve_in_groups(d: &mut Decision, user: &str, groups: &[&str], stamp: &str) {
    annotate(
        d,
        &[
            ("approved-by", user),
            ("approved-at", stamp),
            (
                "decisiongate.io/approver-groups",
                &serde_json::to_string(groups).unwrap(),
            ),
        ],
    );
}

#[test]
fn approvals_are_checked_again_by_group_when_the_rule_changes() {
    let sre = [groups_rule(&["sre"])];
    let mut d = decision(Criticality::High);
    step(&mut d, &sre, at(1));
    approve_in_groups(&mut d, "carol", &["sre", "system:authenticated"], "t1");
    step(&mut d, &sre, at(2));
    let status = d.status.clone().unwrap();
    assert_eq!(status.approval_progress.as_deref(), Some("1/2"));
    assert_eq!(
        status.approvals[0].groups.as_deref(),
        Some(&["sre".to_owned(), "system:authenticated".to_owned()][..])
    );

    // The admin changes the rule: two from group approvers. carol's approval stops
    // counting, and the audit says so.
    let mut changed = groups_rule(&["approvers"]);
    changed.metadata.generation = Some(2);
    let approvers = [changed];
    let a = step(&mut d, &approvers, at(3));
    assert_eq!(
        types(&a),
        [
            "policy_evaluated",
            "approval_requested",
            "approval_discounted"
        ]
    );
    assert!(
        a.events[2]
            .note()
            .contains("carol is not among the approvers of rule r (users: none; groups: approvers); their groups when they answered: sre, system:authenticated"),
        "{}",
        a.events[2].note()
    );
    assert_eq!(
        d.status.as_ref().unwrap().approval_progress.as_deref(),
        Some("0/2")
    );
    // alice alone does not complete it.
    approve_in_groups(&mut d, "alice", &["approvers"], "t2");
    step(&mut d, &approvers, at(4));
    assert_eq!(phase(&d), DecisionPhase::Pending);
    assert_eq!(
        d.status.as_ref().unwrap().approval_progress.as_deref(),
        Some("1/2")
    );
    // Back to sre: carol's counts again, alice's does not.
    let mut back = groups_rule(&["sre"]);
    back.metadata.generation = Some(3);
    let a = step(&mut d, &[back], at(5));
    assert!(types(&a).contains(&"approval_discounted"));
    assert_eq!(
        d.status.as_ref().unwrap().approval_progress.as_deref(),
        Some("1/2")
    );
}

#[test]
fn an_approval_whose_groups_were_not_recorded_does_not_count_where_groups_decide() {
    let approvers = [groups_rule(&["approvers"])];
    let mut d = decision(Criticality::High);
    step(&mut d, &approvers, at(1));
    annotate(&mut d, &[("approved-by", "alice")]);
    let a = step(&mut d, &approvers, at(2));
    assert_eq!(types(&a), ["answer_ignored"]);
    let why = &d.status.as_ref().unwrap().ignored_answers[0].reason;
    assert!(why.contains("were not recorded"), "{why}");
    // Counted without verification, groups are not checked: the approval says it is
    // unverified.
    let mut d = decision(Criticality::High);
    step(&mut d, &approvers, at(1));
    annotate(&mut d, &[("approved-by", "alice")]);
    let a = step_under(
        &mut d,
        &approvers,
        &Answers::CountedUnverified("no policies".into()),
        at(2),
    );
    assert_eq!(types(&a), ["approval_granted"]);
    // A rule that names the user admits them whatever their groups.
    let mut by_name = groups_rule(&["approvers"]);
    by_name.spec.rules[0]
        .approvers
        .as_mut()
        .unwrap()
        .users
        .push("dave".into());
    let by_name = [by_name];
    let mut d = decision(Criticality::High);
    step(&mut d, &by_name, at(1));
    approve_in_groups(&mut d, "dave", &[], "t1");
    step(&mut d, &by_name, at(2));
    assert_eq!(
        d.status.as_ref().unwrap().approval_progress.as_deref(),
        Some("1/2")
    );
}

#[test]
fn an_impersonated_approval_names_who_gave_it() {
    let p = [policy(Outcome::RequireApproval, Some(1), &[])];
    let mut d = decision(Criticality::High);
    step(&mut d, &p, at(1));
    annotate(
        &mut d,
        &[
            ("approved-by", "bob"),
            (
                "decisiongate.io/approver-impersonator",
                "system:serviceaccount:decision-gate-system:decision-gate",
            ),
        ],
    );
    let a = step(&mut d, &p, at(2));
    assert_eq!(
        d.status.as_ref().unwrap().approvals[0]
            .impersonator
            .as_deref(),
        Some("system:serviceaccount:decision-gate-system:decision-gate")
    );
    assert!(
        a.events[0]
            .note()
            .contains("approved by bob, given through system:serviceaccount:decision-gate-system:decision-gate"),
        "{}",
        a.events[0].note()
    );
}

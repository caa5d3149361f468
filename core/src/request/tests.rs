use chrono::TimeZone;

use super::*;
use crate::api::common::Approvers;
use crate::api::decision::{DecisionStatus, Evaluation, Outcome};

fn asked(plan: Option<&str>) -> Decision {
    let mut d = Request {
        name: Some("ship".to_owned()),
        action_type: "deploy".to_owned(),
        description: "Ship 2.0".to_owned(),
        plan: plan.map(str::to_owned),
        ..Request::default()
    }
    .decision();
    d.metadata.namespace = Some("prod".to_owned());
    d
}

fn at(d: &mut Decision, phase: DecisionPhase) {
    d.status.get_or_insert_with(DecisionStatus::default).phase = Some(phase);
}

fn approval(who: &str, reason: Option<&str>) -> Approval {
    Approval {
        approver: who.to_owned(),
        reason: reason.map(str::to_owned),
        at: Utc.with_ymd_and_hms(2026, 12, 3, 10, 0, 0).unwrap(),
        verified: Some(true),
        ..Default::default()
    }
}

#[test]
fn a_request_becomes_a_decision_that_defaults_to_high_and_names_itself_from_its_action() {
    let d = Request {
        action_type: "delete_data".to_owned(),
        description: "Drop the staging tables".to_owned(),
        context: [("table".to_owned(), serde_json::json!("orders"))].into(),
        plan: Some("drop-tables".to_owned()),
        on_behalf_of: Some("alice".to_owned()),
        ..Request::default()
    }
    .decision();
    assert_eq!(d.metadata.name, None);
    assert_eq!(d.metadata.generate_name.as_deref(), Some("delete-data-"));
    assert_eq!(d.spec.criticality, Criticality::High);
    assert_eq!(d.spec.plan_ref.unwrap().name, "drop-tables");
    assert_eq!(d.spec.on_behalf_of.as_deref(), Some("alice"));
    assert_eq!(d.spec.context.unwrap()["table"], "orders");
    assert_eq!(d.metadata.labels, None);
}

#[test]
fn a_name_stem_is_always_a_valid_prefix() {
    assert_eq!(name_stem("budget.spend_v2"), "budget-spend-v2");
    assert_eq!(name_stem("___"), "decision");
    assert_eq!(name_stem(&"x".repeat(90)).len(), 40);
}

#[test]
fn a_pure_gate_is_settled_at_approved_but_a_plan_only_when_it_has_run() {
    let mut gate = asked(None);
    let mut planned = asked(Some("p"));
    assert_eq!(Verdict::of(&gate), None);
    for (phase, gate_verdict, plan_verdict) in [
        (DecisionPhase::Pending, None, None),
        (DecisionPhase::Escalated, None, None),
        (DecisionPhase::Approved, Some(Verdict::Approved), None),
        (DecisionPhase::Executing, None, None),
        (DecisionPhase::RollingBack, None, None),
        (
            DecisionPhase::Succeeded,
            Some(Verdict::Succeeded),
            Some(Verdict::Succeeded),
        ),
        (
            DecisionPhase::Rejected,
            Some(Verdict::Rejected),
            Some(Verdict::Rejected),
        ),
        (
            DecisionPhase::Failed,
            Some(Verdict::Failed),
            Some(Verdict::Failed),
        ),
        (
            DecisionPhase::RolledBack,
            Some(Verdict::RolledBack),
            Some(Verdict::RolledBack),
        ),
        (
            DecisionPhase::Expired,
            Some(Verdict::Expired),
            Some(Verdict::Expired),
        ),
    ] {
        at(&mut gate, phase);
        at(&mut planned, phase);
        assert_eq!(Verdict::of(&gate), gate_verdict, "{phase}");
        assert_eq!(Verdict::of(&planned), plan_verdict, "{phase}");
    }
}

#[test]
fn exit_codes_tell_go_no_go_expired_and_timed_out_apart() {
    let codes: Vec<(Verdict, u8)> = [
        Verdict::Approved,
        Verdict::Succeeded,
        Verdict::Rejected,
        Verdict::Failed,
        Verdict::RolledBack,
        Verdict::Expired,
    ]
    .into_iter()
    .map(|v| (v, v.exit_code()))
    .collect();
    for (v, code) in codes {
        assert_eq!(code == 0, v.allows(), "{v}");
        assert_ne!(code, TIMED_OUT, "{v}");
        assert_eq!(code == 2, v == Verdict::Expired, "{v}");
    }
}

#[test]
fn a_waiting_report_says_who_may_approve_and_by_when() {
    let mut d = asked(None);
    assert_eq!(Report::of(&d).phase, "Requested");
    assert!(Report::of(&d).summary.contains("not evaluated"));
    let status = d.status.get_or_insert_with(DecisionStatus::default);
    status.phase = Some(DecisionPhase::Pending);
    status.approval_progress = Some("0/2".to_owned());
    status.expires_at = Some(Utc.with_ymd_and_hms(2026, 12, 4, 10, 0, 0).unwrap());
    status.evaluation = Some(Evaluation {
        policy: Some("prod".to_owned()),
        rule: Some("two-people".to_owned()),
        outcome: Outcome::RequireApproval,
        message: "Two approvers from sre.".to_owned(),
        required_approvals: 2,
        approvers: Approvers {
            groups: vec!["sre".to_owned()],
            ..Approvers::default()
        },
        policy_set: String::new(),
        criticality: None,
        approval_valid_for: None,
    });
    let r = Report::of(&d);
    assert_eq!(r.phase, "Pending");
    assert_eq!(r.verdict, None);
    assert_eq!(r.rule.as_deref(), Some("prod/two-people"));
    assert_eq!(r.required_approvals, Some(2));
    assert_eq!(r.may_approve.unwrap().groups, ["sre"]);
    assert!(r.expires_at.is_some());
    assert_eq!(
        r.summary,
        "ship is Pending (approvals 0/2, until 2026-12-04T10:00:00+00:00). Two approvers from sre."
    );
}

#[test]
fn a_settled_report_names_who_decided_and_why() {
    let mut d = asked(None);
    at(&mut d, DecisionPhase::Approved);
    let status = d.status.as_mut().unwrap();
    status.approvals = vec![
        approval("alice", Some("looks right")),
        approval("bob", None),
    ];
    let r = Report::of(&d);
    assert_eq!(r.verdict, Some(Verdict::Approved));
    assert_eq!(r.may_approve, None);
    assert_eq!(
        r.summary,
        "ship is approved by alice and bob (\"looks right\"): go ahead."
    );

    let mut d = asked(None);
    at(&mut d, DecisionPhase::Rejected);
    d.status.as_mut().unwrap().rejection = Some(Rejection {
        rejected_by: "carol".to_owned(),
        reason: "not during the freeze".to_owned(),
        at: Utc.with_ymd_and_hms(2026, 12, 3, 10, 0, 0).unwrap(),
        verified: Some(true),
    });
    assert_eq!(
        Report::of(&d).summary,
        "ship was rejected by carol: not during the freeze"
    );

    let mut d = asked(None);
    at(&mut d, DecisionPhase::Expired);
    assert!(Report::of(&d).summary.starts_with("ship expired"));
}

#[test]
fn an_approved_plan_on_its_way_says_so_not_when_it_expires() {
    let mut d = asked(Some("p"));
    at(&mut d, DecisionPhase::Executing);
    let status = d.status.as_mut().unwrap();
    status.approvals = vec![approval("alice", None)];
    status.expires_at = Some(Utc.with_ymd_and_hms(2026, 12, 4, 10, 0, 0).unwrap());
    let r = Report::of(&d);
    assert_eq!(r.expires_at, None);
    assert_eq!(
        r.summary,
        "ship is approved by alice; its plan runs next or is running."
    );
    at(&mut d, DecisionPhase::RollingBack);
    assert!(Report::of(&d).summary.contains("being rolled back"));
}

//! A Decision that names a plan: pinned when evaluated, waited for while it does not
//! exist, refused when made for another action, and approved only for its content.

use super::*;

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
fn an_approval_counts_only_for_the_decision_it_names() {
    let plan = execution_plan(&["deploy"], None);
    let policies = [policy(Outcome::RequireApproval, Some(2), &[])];
    let mut d = with_plan("ship");
    d.metadata.uid = Some("uid-1".into());
    step_with(&mut d, &policies, Some(&plan), at(1));
    let status = d.status.clone().unwrap();
    let pinned = status.plan.clone().unwrap();
    let digest = status
        .digest
        .clone()
        .expect("an evaluated Decision has a digest");
    assert_eq!(
        digest,
        crate::pin::decision_digest("uid-1", &d.spec, Some(&pinned.digest)),
        "it binds the uid, the request and the pinned plan"
    );
    let ignored_for =
        |d: &Decision, n: usize| d.status.as_ref().unwrap().ignored_answers[n].reason.clone();

    // Another content.
    annotate(
        &mut d,
        &[
            ("approved-by", "alice"),
            ("approval-digest", "sha256:0123456789abcdef"),
            ("approved-at", "1"),
        ],
    );
    let a = step_with(&mut d, &policies, Some(&plan), at(2));
    assert_eq!(types(&a), ["answer_ignored"]);
    let why = ignored_for(&d, 0);
    assert!(
        why.contains("but this Decision's digest is sha256:"),
        "{why}"
    );

    // The plan's digest alone is not enough: the request could differ.
    annotate(
        &mut d,
        &[("approval-digest", &pinned.digest), ("approved-at", "2")],
    );
    let a = step_with(&mut d, &policies, Some(&plan), at(3));
    assert_eq!(types(&a), ["answer_ignored"]);
    let why = ignored_for(&d, 1);
    assert!(
        why.contains("names the digest of the plan ship alone"),
        "{why}"
    );

    // Another Decision of the same name.
    annotate(
        &mut d,
        &[
            ("approval-digest", &digest),
            ("approval-uid", "uid-0"),
            ("approved-at", "3"),
        ],
    );
    let a = step_with(&mut d, &policies, Some(&plan), at(4));
    assert_eq!(types(&a), ["answer_ignored"]);
    let why = ignored_for(&d, 2);
    assert!(
        why.contains(
            "approves the Decision with uid uid-0, but deploy is now the Decision with uid uid-1"
        ),
        "{why}"
    );

    // Looked again and approved this Decision (the digest's short form is enough).
    annotate(
        &mut d,
        &[
            ("approval-digest", crate::pin::short(&digest)),
            ("approval-uid", "uid-1"),
            ("approved-at", "4"),
        ],
    );
    let a = step_with(&mut d, &policies, Some(&plan), at(5));
    assert_eq!(types(&a), ["approval_granted"]);
    let approval = &d.status.as_ref().unwrap().approvals[0];
    assert_eq!(approval.digest.as_deref(), Some(crate::pin::short(&digest)));
    assert_eq!(approval.uid.as_deref(), Some("uid-1"));
    // A bare approval approves the Decision as it is.
    for key in ["approval-digest", "approval-uid", "approved-at"] {
        d.metadata.annotations.as_mut().unwrap().remove(key);
    }
    annotate(&mut d, &[("approved-by", "bob")]);
    step_with(&mut d, &policies, Some(&plan), at(6));
    assert_eq!(phase(&d), DecisionPhase::Approved);
}

#[test]
fn a_decision_whose_jobs_the_api_server_finds_invalid_is_rejected_before_anyone_is_asked() {
    let plan = execution_plan(&["deploy"], None);
    let mut d = with_plan("ship");
    let invalid = JobsCheck::Invalid {
        job: "step migrate".into(),
        message: "Job.batch \"x\" is invalid: metadata.labels: Invalid value".into(),
    };
    let a = step_checked(
        &mut d,
        &[policy(Outcome::AutoApprove, None, &[])],
        Some(&plan),
        Some(&invalid),
        at(1),
    );
    assert!(
        !types(&a).contains(&"approval_requested"),
        "{:?}",
        types(&a)
    );
    let status = d.status.clone().unwrap();
    assert_eq!(status.phase, Some(DecisionPhase::Rejected));
    let rejection = status.rejection.unwrap();
    assert_eq!(rejection.rejected_by, "decision-gate");
    for words in [
        "step migrate",
        "ExecutionPlan ship",
        "could never run",
        "metadata.labels",
    ] {
        assert!(rejection.reason.contains(words), "{}", rejection.reason);
    }
    assert!(
        status.plan.is_some(),
        "what could not run is pinned, for the record"
    );
}

#[test]
fn a_decision_whose_jobs_are_refused_for_now_waits_and_is_checked_again() {
    let plan = execution_plan(&["deploy"], None);
    let mut d = with_plan("ship");
    let policies = [policy(Outcome::RequireApproval, None, &[])];
    let refused = JobsCheck::Refused {
        job: "step migrate".into(),
        message: "jobs.batch is forbidden: exceeded quota: jobs".into(),
    };
    let a = step_checked(&mut d, &policies, Some(&plan), Some(&refused), at(1));
    assert_eq!(types(&a), ["waiting_for_plan"]);
    assert_eq!(a.wake_at, Some(at(1) + chrono::Duration::seconds(30)));
    let status = d.status.clone().unwrap();
    assert_eq!(status.phase, None, "nobody is asked");
    let c = crate::api::common::find_condition(&status.conditions, CONDITION_APPROVED).unwrap();
    assert_eq!(c.reason, "JobsRefused");
    assert!(c.message.contains("exceeded quota"), "{}", c.message);
    // Said once.
    let again = step_checked(&mut d, &policies, Some(&plan), Some(&refused), at(20));
    assert!(again.events.is_empty());
    // Admitted: evaluated, and approvers are asked.
    let a = step_checked(
        &mut d,
        &policies,
        Some(&plan),
        Some(&JobsCheck::Admitted),
        at(40),
    );
    assert!(types(&a).contains(&"approval_requested"), "{:?}", types(&a));
    assert_eq!(d.status.unwrap().phase, Some(DecisionPhase::Pending));
}

//! What may start: only an approved Decision's plan, as pinned, checked, after
//! `notBefore`, and unchanged while it runs.

use super::*;

#[test]
fn only_approved_decisions_with_a_plan_run() {
    for phase in [
        DecisionPhase::Pending,
        DecisionPhase::Escalated,
        DecisionPhase::Rejected,
        DecisionPhase::Expired,
    ] {
        let mut w = World::new(plan(
            ExecutionMode::Real,
            RollbackStrategy::None,
            vec![step("a", false)],
        ));
        w.decision.status.as_mut().unwrap().phase = Some(phase);
        w.settle();
        assert!(w.created.is_empty(), "{phase:?}");
        assert!(w.status().execution.is_none(), "{phase:?}");
    }
    let mut w = World::new(plan(
        ExecutionMode::Real,
        RollbackStrategy::None,
        vec![step("a", false)],
    ));
    w.decision.spec.plan_ref = None;
    w.settle();
    assert!(w.created.is_empty());
}

#[test]
fn a_missing_or_invalid_plan_is_waited_for_and_said_once() {
    let decision = approved();
    let status = decision.status.clone().unwrap();
    let empty = BTreeMap::new();
    let input = Input {
        decision: &decision,
        status: &status,
        plan: None,
        jobs: &empty,
        dry_runs: &BTreeMap::new(),
        now: t0(),
        allow_real: true,
        answers: &crate::admission::Answers::Verified,
    };
    let first = advance(&input);
    assert_eq!(first.events.len(), 1);
    let executed =
        crate::api::common::find_condition(&first.status.conditions, CONDITION_EXECUTED).unwrap();
    assert_eq!(executed.reason, "PlanNotFound");
    let again = advance(&Input {
        status: &first.status,
        ..input
    });
    assert!(again.events.is_empty());
    assert_eq!(again.status.phase, Some(DecisionPhase::Approved));

    let spec = plan(
        ExecutionMode::Real,
        RollbackStrategy::None,
        vec![step("a", false)],
    );
    let pinned = pinned_status(&status, &spec);
    for (check, reason) in [
        (PlanCheck::Invalid("step a: bad"), "PlanInvalid"),
        (PlanCheck::Unchecked, "PlanNotChecked"),
    ] {
        let waiting = advance(&Input {
            status: &pinned,
            plan: Some(PlanView {
                name: "p",
                uid: "plan-uid",
                generation: 1,
                spec: &spec,
                check,
            }),
            ..input
        });
        let executed =
            crate::api::common::find_condition(&waiting.status.conditions, CONDITION_EXECUTED)
                .unwrap();
        assert_eq!(executed.reason, reason);
        assert!(waiting.action.is_none());
        assert_eq!(waiting.status.phase, Some(DecisionPhase::Approved));
    }
    // A dry run does not wait: it reports the API server's verdict itself.
    let dry = plan(
        ExecutionMode::DryRun,
        RollbackStrategy::None,
        vec![step("a", false)],
    );
    let pinned = pinned_status(&status, &dry);
    let running = advance(&Input {
        status: &pinned,
        plan: Some(PlanView {
            name: "p",
            uid: "plan-uid",
            generation: 1,
            spec: &dry,
            check: PlanCheck::Invalid("step a: bad"),
        }),
        ..input
    });
    assert!(matches!(running.action, Some(JobAction::DryRun { .. })));
}

#[test]
fn a_plan_changed_mid_run_fails_the_execution() {
    let mut w = World::new(plan(
        ExecutionMode::Real,
        RollbackStrategy::None,
        vec![step("a", false), step("b", false)],
    ));
    w.settle();
    w.generation = 2;
    w.finish("ship-a-1", true);
    assert_eq!(w.phase(), DecisionPhase::Failed);
    assert_eq!(w.created, ["ship-a-1"]);
}

#[test]
fn only_the_pinned_plan_ever_starts() {
    let original = plan(
        ExecutionMode::Real,
        RollbackStrategy::None,
        vec![step("a", false)],
    );
    // Edited between the request and the approval.
    let mut w = World::new(original.clone());
    w.plan.steps[0].template["spec"]["containers"] =
        serde_json::json!([{"name": "main", "image": "drop-database:latest"}]);
    w.generation = 2;
    w.settle();
    assert_eq!(w.phase(), DecisionPhase::Failed);
    assert!(w.created.is_empty(), "{:?}", w.created);
    assert!(w.status().execution.is_none());
    let c = crate::api::common::find_condition(&w.status().conditions, CONDITION_EXECUTED).unwrap();
    assert_eq!(c.reason, "PlanChanged");
    assert!(
        c.message.contains("request a new Decision"),
        "{}",
        c.message
    );
    assert_eq!(w.events, ["execution_failed"]);
    w.settle();
    assert_eq!(w.events, ["execution_failed"], "said once");

    // Never pinned (evaluated by an older operator): what was approved is unknown.
    let mut w = World::new(original);
    w.decision.status.as_mut().unwrap().plan = None;
    w.settle();
    let c = crate::api::common::find_condition(&w.status().conditions, CONDITION_EXECUTED).unwrap();
    assert_eq!(
        (w.phase(), c.reason.as_str()),
        (DecisionPhase::Failed, "PlanNotPinned")
    );
    assert!(w.created.is_empty());
}

#[test]
fn nothing_starts_before_not_before() {
    let mut w = World::new(plan(
        ExecutionMode::Real,
        RollbackStrategy::None,
        vec![step("a", false)],
    ));
    let opens = t0() + chrono::Duration::minutes(30);
    w.decision.spec.not_before = Some(opens);
    w.settle();
    assert_eq!(w.phase(), DecisionPhase::Approved);
    assert!(w.created.is_empty());
    assert_eq!(w.wake_at, Some(opens));
    let c = crate::api::common::find_condition(&w.status().conditions, CONDITION_EXECUTED).unwrap();
    assert_eq!(c.reason, "NotBefore");
    assert!(c.message.contains("may start at"), "{}", c.message);
    w.settle();
    assert_eq!(w.events, ["execution_waiting"], "said once");
    w.now = opens;
    w.settle();
    assert_eq!(w.created, ["ship-a-1"]);
}

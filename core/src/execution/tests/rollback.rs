//! Rollback after a failure: automatic, manual on approval, or none.

use super::*;

#[test]
fn automatic_rollback_undoes_the_succeeded_steps_last_first() {
    let mut w = World::new(plan(
        ExecutionMode::Real,
        RollbackStrategy::Automatic,
        vec![step("a", true), step("b", true), step("c", true)],
    ));
    w.settle();
    w.finish("ship-a-1", true);
    w.finish("ship-b-1", true);
    w.finish("ship-c-1", false);
    assert_eq!(w.phase(), DecisionPhase::RollingBack);
    assert_eq!(w.created.last().unwrap(), "ship-b-rollback");
    w.finish("ship-b-rollback", true);
    assert_eq!(w.created.last().unwrap(), "ship-a-rollback");
    w.finish("ship-a-rollback", true);
    assert_eq!(w.phase(), DecisionPhase::RolledBack);
    assert_eq!(
        w.steps(),
        [
            ("a".into(), StepPhase::RolledBack),
            ("b".into(), StepPhase::RolledBack),
            ("c".into(), StepPhase::Failed)
        ]
    );
    let rollback = w.status().execution.clone().unwrap().rollback.unwrap();
    assert_eq!(rollback.phase, RollbackPhase::Succeeded);
    let order: Vec<&str> = rollback.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(order, ["b", "a"]);
    assert!(rollback.steps.iter().all(|s| s.exit_code == Some(0)));
    assert!(
        w.events.ends_with(&[
            "step_failed:c".to_owned(),
            "execution_failed".to_owned(),
            "rollback_started".to_owned(),
            "step_rolled_back:b".to_owned(),
            "step_rolled_back:a".to_owned(),
            "rolled_back".to_owned()
        ]),
        "{:?}",
        w.events
    );
}

#[test]
fn a_failing_rollback_leaves_the_decision_failed() {
    let mut w = World::new(plan(
        ExecutionMode::Real,
        RollbackStrategy::Automatic,
        vec![step("a", true), step("b", true)],
    ));
    w.settle();
    w.finish("ship-a-1", true);
    w.finish("ship-b-1", false);
    w.finish("ship-a-rollback", false);
    assert_eq!(w.phase(), DecisionPhase::Failed);
    let execution = w.status().execution.clone().unwrap();
    assert_eq!(execution.steps[1].phase, StepPhase::Failed);
    assert_eq!(execution.steps[1].exit_code, Some(1));
    let rollback = execution.rollback.unwrap();
    assert_eq!(rollback.phase, RollbackPhase::Failed);
    assert_eq!(rollback.steps[0].phase, StepPhase::Failed);
    assert_eq!(rollback.steps[0].exit_code, Some(1));
    assert_eq!(w.events.last().unwrap(), "rollback_failed:a");
}

/// A plan whose second step failed and whose Manual rollback waits for approval.
fn awaiting_a_manual_rollback() -> World {
    let mut w = World::new(plan(
        ExecutionMode::Real,
        RollbackStrategy::Manual,
        vec![step("a", true), step("b", false)],
    ));
    w.settle();
    w.finish("ship-a-1", true);
    w.finish("ship-b-1", false);
    assert_eq!(w.phase(), DecisionPhase::Failed);
    w
}

#[test]
fn manual_rollback_waits_for_an_approver() {
    let mut w = awaiting_a_manual_rollback();
    let executed = crate::api::common::find_condition(&w.status().conditions, CONDITION_EXECUTED)
        .unwrap()
        .clone();
    assert_eq!(executed.reason, "RollbackAwaitingApproval");
    assert!(
        executed.message.contains("rollback-approved-by"),
        "{}",
        executed.message
    );
    let created = w.created.len();
    w.settle();
    assert_eq!(w.created.len(), created, "nothing runs without approval");

    w.decision.metadata.annotations =
        Some([("rollback-approved-by".to_owned(), "alice".to_owned())].into());
    w.settle();
    assert_eq!(w.phase(), DecisionPhase::RollingBack);
    assert_eq!(w.created.last().unwrap(), "ship-a-rollback");
    w.finish("ship-a-rollback", true);
    assert_eq!(w.phase(), DecisionPhase::RolledBack);
    let rollback = w.status().execution.clone().unwrap().rollback.unwrap();
    assert_eq!(rollback.approved_by.as_deref(), Some("alice"));
}

#[test]
fn a_rollback_approval_nobody_verified_never_runs_anything() {
    let mut w = awaiting_a_manual_rollback();
    let created = w.created.len();
    w.decision.metadata.annotations =
        Some([("rollback-approved-by".to_owned(), "alice".to_owned())].into());
    w.answers = crate::admission::Answers::Unverified("the binding is gone".into());
    w.settle();
    assert_eq!(w.phase(), DecisionPhase::Failed);
    assert_eq!(
        w.created.len(),
        created,
        "nothing runs on an unverified word"
    );
    assert!(
        w.status()
            .ignored_answers
            .iter()
            .any(|i| i.unverified && i.user == "alice")
    );

    // The policies are back: the same annotation still does not count.
    w.answers = crate::admission::Answers::Verified;
    w.settle();
    assert_eq!(w.phase(), DecisionPhase::Failed);
    assert_eq!(w.created.len(), created);
    // A new approval does.
    w.decision.metadata.annotations.as_mut().unwrap().insert(
        "rollback-approved-at".to_owned(),
        "2027-01-15T10:00:00Z".to_owned(),
    );
    w.settle();
    assert_eq!(w.phase(), DecisionPhase::RollingBack);
    assert_eq!(w.created.last().unwrap(), "ship-a-rollback");
}

#[test]
fn strategy_none_stops_at_failed() {
    let mut w = World::new(plan(
        ExecutionMode::Real,
        RollbackStrategy::None,
        vec![step("a", true), step("b", true)],
    ));
    w.settle();
    w.finish("ship-a-1", true);
    w.finish("ship-b-1", false);
    assert_eq!(w.phase(), DecisionPhase::Failed);
    assert_eq!(
        w.status()
            .execution
            .clone()
            .unwrap()
            .rollback
            .unwrap()
            .phase,
        RollbackPhase::NotRun
    );
    assert_eq!(w.created, ["ship-a-1", "ship-b-1"]);
}

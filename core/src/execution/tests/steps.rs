//! Steps in each mode: in order, retried under new names, dry run, simulated, and never
//! repeated or lost across a restart.

use super::*;

#[test]
fn real_steps_run_in_order_each_after_the_last_succeeded() {
    let mut w = World::new(plan(
        ExecutionMode::Real,
        RollbackStrategy::Automatic,
        vec![step("a", true), step("b", true), step("c", false)],
    ));
    w.settle();
    assert_eq!(w.phase(), DecisionPhase::Executing);
    assert_eq!(w.created, ["ship-a-1"]);
    w.finish("ship-a-1", true);
    assert_eq!(w.created, ["ship-a-1", "ship-b-1"]);
    w.finish("ship-b-1", true);
    w.finish("ship-c-1", true);
    assert_eq!(w.phase(), DecisionPhase::Succeeded);
    let e = w.status().execution.clone().unwrap();
    assert_eq!(e.mode, ExecutionMode::Real);
    assert!(
        e.steps
            .iter()
            .all(|s| s.phase == StepPhase::Succeeded && s.attempts == 1)
    );
    assert_eq!(e.steps[1].result.as_deref(), Some("ship-b-1 done"));
    assert_eq!(e.steps[1].exit_code, Some(0));
    assert_eq!(e.steps[0].duration_seconds, Some(3.0));
    assert_eq!(
        w.events,
        [
            "execution_started",
            "step_started:a",
            "step_executed:a",
            "step_started:b",
            "step_executed:b",
            "step_started:c",
            "step_executed:c",
            "execution_completed"
        ]
    );
    let executed =
        crate::api::common::find_condition(&w.status().conditions, CONDITION_EXECUTED).unwrap();
    assert_eq!(executed.status, ConditionStatus::True);
}

#[test]
fn retries_run_new_attempts_under_new_names() {
    let mut s = step("flaky", false);
    s.retries = 2;
    let mut w = World::new(plan(ExecutionMode::Real, RollbackStrategy::None, vec![s]));
    w.settle();
    w.finish("ship-flaky-1", false);
    w.finish("ship-flaky-2", false);
    w.finish("ship-flaky-3", true);
    assert_eq!(w.phase(), DecisionPhase::Succeeded);
    assert_eq!(w.created, ["ship-flaky-1", "ship-flaky-2", "ship-flaky-3"]);
    assert_eq!(w.status().execution.clone().unwrap().steps[0].attempts, 3);

    let mut s = step("broken", false);
    s.retries = 1;
    let mut w = World::new(plan(ExecutionMode::Real, RollbackStrategy::None, vec![s]));
    w.settle();
    w.finish("ship-broken-1", false);
    w.finish("ship-broken-2", false);
    assert_eq!(w.phase(), DecisionPhase::Failed);
    assert_eq!(w.created.len(), 2);
    let broken = &w.status().execution.as_ref().unwrap().steps[0];
    assert_eq!(broken.phase, StepPhase::Failed);
    assert_eq!(broken.exit_code, Some(1));
}

#[test]
fn dry_run_marks_every_step_and_creates_nothing() {
    let mut w = World::new(plan(
        ExecutionMode::DryRun,
        RollbackStrategy::Automatic,
        vec![step("a", true), step("b", true)],
    ));
    w.settle();
    assert!(w.created.is_empty());
    assert_eq!(w.phase(), DecisionPhase::Succeeded);
    assert_eq!(
        w.steps(),
        [
            ("a".into(), StepPhase::WouldExecute),
            ("b".into(), StepPhase::WouldExecute)
        ]
    );
    assert_eq!(
        w.events,
        [
            "execution_started",
            "step_would_execute:a",
            "step_would_execute:b",
            "execution_completed"
        ]
    );
    assert_eq!(
        w.status().execution.clone().unwrap().mode,
        ExecutionMode::DryRun
    );

    let mut w = World::new(plan(
        ExecutionMode::DryRun,
        RollbackStrategy::Automatic,
        vec![step("a", true), step("b", true)],
    ));
    w.refuse_dry_run = Some("b");
    w.settle();
    assert_eq!(w.phase(), DecisionPhase::Failed);
    let e = w.status().execution.clone().unwrap();
    assert!(
        e.steps[1]
            .message
            .as_deref()
            .unwrap()
            .contains("Required value")
    );
    assert_eq!(
        e.rollback.unwrap().phase,
        RollbackPhase::NotRun,
        "nothing ran, nothing to undo"
    );
}

#[test]
fn real_runs_as_dry_run_where_real_execution_is_not_allowed() {
    let mut w = World::new(plan(
        ExecutionMode::Real,
        RollbackStrategy::Automatic,
        vec![step("a", true)],
    ));
    w.allow_real = false;
    w.settle();
    assert!(w.created.is_empty());
    let e = w.status().execution.clone().unwrap();
    assert_eq!(e.mode, ExecutionMode::DryRun);
    assert!(
        e.mode_reason
            .unwrap()
            .contains("--allow-real-execution=false")
    );
    assert_eq!(w.phase(), DecisionPhase::Succeeded);
}

#[test]
fn simulated_steps_take_their_time_and_create_nothing() {
    let mut w = World::new(plan(
        ExecutionMode::Simulated,
        RollbackStrategy::Automatic,
        vec![step("a", false), step("b", false)],
    ));
    w.settle();
    assert_eq!(w.wake_at, Some(t0() + chrono::Duration::seconds(2)));
    w.now = t0() + chrono::Duration::seconds(2);
    w.settle();
    assert_eq!(w.wake_at, Some(t0() + chrono::Duration::seconds(4)));
    w.now = t0() + chrono::Duration::seconds(4);
    w.settle();
    assert_eq!(w.phase(), DecisionPhase::Succeeded);
    assert!(w.created.is_empty());
    let e = w.status().execution.clone().unwrap();
    assert_eq!(e.steps[1].duration_seconds, Some(2.0));
}

#[test]
fn a_restart_neither_repeats_nor_loses_a_step() {
    let mut w = World::new(plan(
        ExecutionMode::Real,
        RollbackStrategy::None,
        vec![step("a", false), step("b", false)],
    ));
    w.settle();
    // The operator died after recording the intent for b's Job but before creating it…
    w.finish("ship-a-1", true);
    let mut intent = w.decision.clone();
    let s = &mut intent
        .status
        .as_mut()
        .unwrap()
        .execution
        .as_mut()
        .unwrap()
        .steps[1];
    s.phase = StepPhase::Pending;
    assert_eq!(s.job_name.as_deref(), Some("ship-b-1"));
    w.decision = intent.clone();
    w.jobs.remove("ship-b-1");
    w.created.retain(|n| n != "ship-b-1");
    w.settle();
    // …so the Job is created now, once.
    assert_eq!(w.created, ["ship-a-1", "ship-b-1"]);

    // The operator died after creating the Job but before recording it: no second Job.
    w.decision = intent;
    w.settle();
    assert_eq!(w.created, ["ship-a-1", "ship-b-1"]);
    assert_eq!(w.steps()[1].1, StepPhase::Running);
    w.finish("ship-b-1", true);
    assert_eq!(w.phase(), DecisionPhase::Succeeded);
}

#[test]
fn a_job_deleted_while_running_fails_its_step() {
    let mut w = World::new(plan(
        ExecutionMode::Real,
        RollbackStrategy::None,
        vec![step("a", false)],
    ));
    w.settle();
    w.jobs.insert("ship-a-1".into(), JobState::Missing);
    w.settle();
    assert_eq!(w.phase(), DecisionPhase::Failed);
    assert_eq!(w.created, ["ship-a-1"]);
    // No container was seen to end.
    assert_eq!(
        w.status().execution.as_ref().unwrap().steps[0].exit_code,
        None
    );
}

#[test]
fn job_names_are_deterministic_and_short_enough() {
    assert_eq!(job_name("ship", "migrate-db", "1"), "ship-migrate-db-1");
    let long = job_name(&"d".repeat(200), "migrate-db", "rollback");
    assert!(long.len() <= 63, "{long}");
    assert_eq!(long, job_name(&"d".repeat(200), "migrate-db", "rollback"));
    assert_ne!(long, job_name(&"d".repeat(200), "migrate-db", "1"));
}

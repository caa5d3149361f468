//! Statuses that cannot be continued end Failed, with the reason, and run nothing.

use super::*;

/// Statuses the operator never writes, as a person with `/status` rights could: each
/// ends Failed with a reason, and nothing is created.
#[test]
fn an_inconsistent_status_fails_the_decision_and_runs_nothing() {
    let mut executing = approved();
    executing.status.as_mut().unwrap().phase = Some(DecisionPhase::Executing);
    let mut rolling_back = approved();
    rolling_back.status = Some(DecisionStatus {
        phase: Some(DecisionPhase::RollingBack),
        execution: Some(ExecutionStatus {
            mode: ExecutionMode::Real,
            mode_reason: None,
            plan_generation: Some(1),
            started_at: Some(t0()),
            finished_at: None,
            steps: vec![pending("a")],
            rollback: None,
        }),
        ..Default::default()
    });
    let mut twice = rolling_back.clone();
    {
        let status = twice.status.as_mut().unwrap();
        status.phase = Some(DecisionPhase::Executing);
        status.execution.as_mut().unwrap().steps = vec![pending("a"), pending("a")];
    }
    let mut no_plan = executing.clone();
    no_plan.spec.plan_ref = None;
    let mut no_job = twice.clone();
    {
        let exec = no_job.status.as_mut().unwrap().execution.as_mut().unwrap();
        let mut running = pending("a");
        running.phase = StepPhase::Running;
        running.attempts = 1;
        exec.steps = vec![running];
    }
    let cases = [
        (executing, "no execution is recorded"),
        (rolling_back, "no rollback is recorded"),
        (twice, "step a is recorded twice"),
        (no_plan, "names no plan"),
        (no_job, "step a is Running but records no Job"),
    ];
    for (mut decision, why) in cases {
        let mut w = World::new(plan(
            ExecutionMode::Real,
            RollbackStrategy::Automatic,
            vec![step("a", true)],
        ));
        decision.metadata.uid = Some("uid-1".into());
        w.decision = decision;
        w.settle();
        assert_eq!(w.phase(), DecisionPhase::Failed, "{why}");
        assert!(w.created.is_empty(), "{why}: {:?}", w.created);
        let c =
            crate::api::common::find_condition(&w.status().conditions, CONDITION_EXECUTED).unwrap();
        assert_eq!(c.reason, "InconsistentStatus");
        assert!(c.message.contains(why), "{}", c.message);
        assert_eq!(w.events, ["execution_failed"], "{why}");
        // Once failed, it stays so: a second look changes nothing.
        w.settle();
        assert_eq!(w.events, ["execution_failed"], "{why}");
    }
}

#[test]
fn a_status_that_cannot_be_read_becomes_failed_with_the_reason() {
    let (status, events) = status_unreadable("expected a timestamp at line 1", t0());
    assert_eq!(status.phase, Some(DecisionPhase::Failed));
    let c = crate::api::common::find_condition(&status.conditions, CONDITION_EXECUTED).unwrap();
    assert_eq!(c.reason, "StatusUnreadable");
    assert!(c.message.contains("expected a timestamp"), "{}", c.message);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_type(), "execution_failed");
}

//! Statuses that cannot be continued: one that cannot be read, and one whose phase and
//! records do not fit together. Either ends Failed, and nothing more runs.

use chrono::{DateTime, Utc};

use super::{CONDITION_EXECUTED, Run};
use crate::api::common::set_condition;
use crate::api::decision::{RollbackPhase, StepPhase};
use crate::api::{
    Condition, ConditionStatus, Decision, DecisionPhase, DecisionStatus, ExecutionMode,
};
use crate::events::{DecisionEvent, ExecutionEvent};

/// What a Decision whose stored status cannot be read at all becomes: Failed, saying why.
/// Nothing is run for it: what already ran is unknown.
pub fn status_unreadable(why: &str, now: DateTime<Utc>) -> (DecisionStatus, Vec<DecisionEvent>) {
    let message = format!("the stored status cannot be read, so nothing more is done: {why}");
    let mut status = DecisionStatus {
        phase: Some(DecisionPhase::Failed),
        ..Default::default()
    };
    set_condition(
        &mut status.conditions,
        Condition::new(
            CONDITION_EXECUTED,
            ConditionStatus::False,
            "StatusUnreadable",
            message.clone(),
        ),
        now,
    );
    (
        status,
        vec![DecisionEvent::Execution(ExecutionEvent::Failed { message })],
    )
}

/// Why a status cannot be continued, if it cannot: a phase that needs an execution (or a
/// rollback) record without one, or step records that do not match each other.
pub fn inconsistency(decision: &Decision, status: &DecisionStatus) -> Option<String> {
    let phase = status.phase?;
    let exec = status.execution.as_ref();
    match phase {
        DecisionPhase::Executing | DecisionPhase::RollingBack
            if decision.spec.plan_ref.is_none() =>
        {
            return Some(format!(
                "the phase is {phase} but the Decision names no plan"
            ));
        }
        DecisionPhase::Executing | DecisionPhase::RollingBack if exec.is_none() => {
            return Some(format!("the phase is {phase} but no execution is recorded"));
        }
        DecisionPhase::RollingBack if exec.is_some_and(|e| e.rollback.is_none()) => {
            return Some("the phase is RollingBack but no rollback is recorded".to_owned());
        }
        _ => {}
    }
    let exec = exec?;
    // A Failed Decision is only looked at again when a rollback awaits approval.
    let awaiting_rollback = exec
        .rollback
        .as_ref()
        .is_some_and(|r| r.phase == RollbackPhase::AwaitingApproval);
    if phase == DecisionPhase::Failed && !awaiting_rollback {
        return None;
    }
    let mut names = std::collections::BTreeSet::new();
    if let Some(dup) = exec.steps.iter().find(|s| !names.insert(s.name.as_str())) {
        return Some(format!("step {} is recorded twice", dup.name));
    }
    // A real step runs as a Job; one said to be running without its Job's name cannot be
    // followed, and starting another could run the step twice.
    let running_blind = exec
        .steps
        .iter()
        .find(|s| s.phase == StepPhase::Running && s.job_name.is_none());
    if let (ExecutionMode::Real, Some(step)) = (exec.mode, running_blind) {
        return Some(format!("step {} is Running but records no Job", step.name));
    }
    None
}

impl Run<'_, '_> {
    /// Ends a Decision whose status cannot be continued (written by hand, or by something
    /// other than the operator): Failed, saying why, and nothing more is run. Failing
    /// closed is the one safe answer when it is unknown what already ran.
    pub(super) fn fail_inconsistent(&mut self, why: String) {
        let message = format!("the status is inconsistent and execution stopped: {why}");
        self.status.phase = Some(DecisionPhase::Failed);
        if let Some(exec) = self.status.execution.as_mut() {
            exec.finished_at.get_or_insert(self.input.now);
            if let Some(rollback) = exec.rollback.as_mut() {
                rollback.phase = RollbackPhase::Failed;
            }
        }
        self.emit(ExecutionEvent::Failed {
            message: message.clone(),
        });
        self.set_condition(ConditionStatus::False, "InconsistentStatus", message);
    }
}

//! Running an approved Decision's ExecutionPlan, as pure functions of the Decision, the
//! plan and what was observed of its Jobs: which step runs next, in which mode, what to
//! undo and in what order. The reconciler performs the one Job action returned, observes
//! the result and asks again.
//!
//! Exactly once: a step's attempt has one deterministic Job name. The name is written to
//! the status (phase Pending) before the Job is created, and the step becomes Running only
//! once the Job exists. After a crash, a Pending step whose Job is missing is created (it
//! never ran); a Running step whose Job is missing failed; a Job is never created twice.

mod consistency;
pub mod precheck;
mod rollback;
mod start;
mod steps;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::admission::Answers;
use crate::api::common::set_condition;
use crate::api::decision::{ExecutionStatus, StepPhase, StepStatus};
use crate::api::execution_plan::ExecutionPlanSpec;
use crate::api::{Condition, ConditionStatus, Decision, DecisionPhase, DecisionStatus};
use crate::events::{DecisionEvent, ExecutionEvent};

pub use consistency::{inconsistency, status_unreadable};

/// The condition that says how the execution went.
pub const CONDITION_EXECUTED: &str = "Executed";

/// The plan as the executor sees it.
#[derive(Clone, Copy, Debug)]
pub struct PlanView<'a> {
    pub name: &'a str,
    pub uid: &'a str,
    pub generation: i64,
    pub spec: &'a ExecutionPlanSpec,
    /// What the plan's dry-run check found, for the plan's current generation.
    pub check: PlanCheck<'a>,
}

/// The outcome of the plan controller's check of the plan's current generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlanCheck<'a> {
    /// The API server admitted every Job of the plan.
    Ready,
    /// The API server refused a Job; the message says which and why.
    Invalid(&'a str),
    /// Not checked yet (a new or changed plan).
    Unchecked,
}

/// What was observed of one Job.
#[derive(Clone, Debug, PartialEq)]
pub enum JobState {
    Missing,
    Running,
    Succeeded {
        result: Option<String>,
        /// Its container's exit code, when one was seen.
        exit_code: Option<i32>,
        finished_at: Option<DateTime<Utc>>,
    },
    Failed {
        message: String,
        /// Its container's exit code, when one was seen.
        exit_code: Option<i32>,
        finished_at: Option<DateTime<Utc>>,
    },
}

/// Something the reconciler must do before asking again.
#[derive(Clone, Debug, PartialEq)]
pub enum JobAction {
    /// Create this Job (a Job of that name that this Decision owns counts as created).
    Create { name: String, job: Value },
    /// Submit this Job with a server-side dry run and report the verdict.
    DryRun { name: String, job: Value },
}

/// What the executor needs.
pub struct Input<'a> {
    pub decision: &'a Decision,
    /// The status as it stands now (after the approval lifecycle).
    pub status: &'a DecisionStatus,
    /// The plan named in `spec.planRef`, when it exists.
    pub plan: Option<PlanView<'a>>,
    /// Observations of the Jobs named in the status, by Job name.
    pub jobs: &'a BTreeMap<String, JobState>,
    /// Verdicts of dry runs made in this reconcile, by Job name.
    pub dry_runs: &'a BTreeMap<String, Result<(), String>>,
    pub now: DateTime<Utc>,
    /// Whether Real plans may run for real on this cluster.
    pub allow_real: bool,
    /// Whether the admission policies that verify people's answers are in force.
    pub answers: &'a Answers,
}

/// What the executor decided.
#[derive(Clone, Debug, PartialEq)]
pub struct Advance {
    pub status: DecisionStatus,
    pub events: Vec<DecisionEvent>,
    pub action: Option<JobAction>,
    /// When to look again without any change (a Simulated step's end).
    pub wake_at: Option<DateTime<Utc>>,
}

/// The deterministic name of a step's Job: `<decision>-<step>-<suffix>`, shortened with a
/// hash when it would pass the 63 characters a Job name may have.
pub fn job_name(decision: &str, step: &str, suffix: &str) -> String {
    let full = format!("{decision}-{step}-{suffix}");
    if full.len() <= 63 {
        return full;
    }
    crate::bounded::hashed(&full, 63, 4)
}

/// Whether the execution machinery has anything to do with this Decision.
/// A Decision that is executing always does, plan or not: without one its status is
/// inconsistent, and the executor ends it.
pub fn applies(decision: &Decision, status: &DecisionStatus) -> bool {
    match status.phase {
        Some(DecisionPhase::Executing | DecisionPhase::RollingBack) => true,
        Some(DecisionPhase::Approved | DecisionPhase::Failed) => decision.spec.plan_ref.is_some(),
        _ => false,
    }
}

/// Moves the execution as far as it can go without performing a Job action.
pub fn advance(input: &Input<'_>) -> Advance {
    let mut run = Run {
        input,
        status: input.status.clone(),
        events: Vec::new(),
        action: None,
        wake_at: None,
    };
    if applies(input.decision, &run.status) {
        run.go();
    }
    Advance {
        status: run.status,
        events: run.events,
        action: run.action,
        wake_at: run.wake_at,
    }
}

struct Run<'a, 'b> {
    input: &'b Input<'a>,
    status: DecisionStatus,
    events: Vec<DecisionEvent>,
    action: Option<JobAction>,
    wake_at: Option<DateTime<Utc>>,
}

impl Run<'_, '_> {
    fn emit(&mut self, event: ExecutionEvent) {
        self.events.push(DecisionEvent::Execution(event));
    }

    fn go(&mut self) {
        if let Some(why) = inconsistency(self.input.decision, &self.status) {
            return self.fail_inconsistent(why);
        }
        match self.status.phase {
            Some(DecisionPhase::Approved) if self.status.execution.is_none() => self.start(),
            Some(DecisionPhase::Executing) => self.run_steps(),
            Some(DecisionPhase::RollingBack) => self.run_rollback(),
            Some(DecisionPhase::Failed) => self.maybe_approve_rollback(),
            _ => {}
        }
    }

    fn decision_name(&self) -> &str {
        self.input
            .decision
            .metadata
            .name
            .as_deref()
            .unwrap_or_default()
    }

    fn exec(&mut self) -> &mut ExecutionStatus {
        self.status.execution.as_mut().expect("execution started")
    }

    fn set_condition(&mut self, state: ConditionStatus, reason: &str, message: String) {
        let generation = self.input.decision.metadata.generation;
        set_condition(
            &mut self.status.conditions,
            Condition::new(CONDITION_EXECUTED, state, reason, message).generation(generation),
            self.input.now,
        );
    }
}

fn pending(name: &str) -> StepStatus {
    StepStatus {
        name: name.to_owned(),
        job_name: None,
        phase: StepPhase::Pending,
        started_at: None,
        finished_at: None,
        duration_seconds: None,
        attempts: 0,
        message: None,
        exit_code: None,
        result: None,
    }
}

fn finish(
    s: &mut StepStatus,
    phase: StepPhase,
    at: DateTime<Utc>,
    message: Option<String>,
    exit_code: Option<i32>,
    result: Option<String>,
) {
    s.phase = phase;
    s.finished_at = Some(at);
    s.duration_seconds = s
        .started_at
        .map(|start| ((at - start).num_milliseconds().max(0) as f64) / 1000.0);
    s.message = message;
    s.exit_code = exit_code;
    s.result = result.filter(|r| !r.is_empty());
}

#[cfg(test)]
mod tests;

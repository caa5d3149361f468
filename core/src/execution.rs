//! Running an approved Decision's ExecutionPlan, as pure functions of the Decision, the
//! plan and what was observed of its Jobs: which step runs next, in which mode, what to
//! undo and in what order. The reconciler performs the one Job action returned, observes
//! the result and asks again.
//!
//! Exactly once: a step's attempt has one deterministic Job name. The name is written to
//! the status (phase Pending) before the Job is created, and the step becomes Running only
//! once the Job exists. After a crash, a Pending step whose Job is missing is created (it
//! never ran); a Running step whose Job is missing failed; a Job is never created twice.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::admission::Answers;
use crate::answers::{self, UNVERIFIED, annotation, may_answer};
use crate::api::annotations;
use crate::api::common::set_condition;
use crate::api::decision::{ExecutionStatus, RollbackPhase, RollbackStatus, StepPhase, StepStatus};
use crate::api::execution_plan::{ExecutionPlanSpec, RollbackStrategy, Step};
use crate::api::{
    Condition, ConditionStatus, Decision, DecisionPhase, DecisionStatus, ExecutionMode,
};
use crate::events::{DecisionEvent, ExecutionEvent};
use crate::jobs::{self, StepJob};

/// The condition that says how the execution went.
pub const CONDITION_EXECUTED: &str = "Executed";

/// How long a Simulated step takes when the plan does not say.
const DEFAULT_SIMULATED_SECONDS: u32 = 1;

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
        finished_at: Option<DateTime<Utc>>,
    },
    Failed {
        message: String,
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
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(full.as_bytes());
    let hash: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    let mut head: String = full.chars().take(63 - 9).collect();
    while head.ends_with(['-', '.']) {
        head.pop();
    }
    format!("{head}-{hash}")
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

    fn start(&mut self) {
        let plan = match self.input.plan {
            None => {
                let name = &self
                    .input
                    .decision
                    .spec
                    .plan_ref
                    .as_ref()
                    .expect("applies() checked")
                    .name;
                return self.wait(
                    format!("the ExecutionPlan {name} does not exist in this namespace"),
                    "PlanNotFound",
                );
            }
            Some(plan) => plan,
        };
        // Only what was approved runs: the plan as it was pinned when the Decision was
        // requested, or nothing.
        let changed = match &self.status.plan {
            None => Some((
                "PlanNotPinned",
                format!(
                    "the ExecutionPlan {} was not pinned when this Decision was evaluated, so what was approved is unknown; request a new Decision",
                    plan.name
                ),
            )),
            Some(pinned) => crate::pin::changed_from(pinned, plan.uid, plan.spec)
                .map(|why| ("PlanChanged", why)),
        };
        if let Some((reason, why)) = changed {
            return self.refuse_to_start(reason, why);
        }
        // A change window: nothing starts before the Decision's notBefore.
        if let Some(not_before) = self.input.decision.spec.not_before
            && self.input.now < not_before
        {
            self.wake_at = Some(not_before);
            return self.wait(
                format!(
                    "approved; the plan may start at {} (notBefore)",
                    not_before.to_rfc3339()
                ),
                "NotBefore",
            );
        }
        let (mode, mode_reason) = match plan.spec.mode {
            ExecutionMode::Real if !self.input.allow_real => (
                ExecutionMode::DryRun,
                Some("the plan asks for Real, but real execution is not allowed on this cluster (--allow-real-execution=false), so it runs as DryRun".to_owned()),
            ),
            mode => (mode, None),
        };
        // Nothing runs for real before the API server has admitted every step: a plan
        // whose third step is broken must not run its first two. A dry run needs no such
        // wait; it reports the server's verdict itself.
        if mode == ExecutionMode::Real {
            match plan.check {
                PlanCheck::Ready => {}
                PlanCheck::Invalid(why) => {
                    return self.wait(
                        format!("the ExecutionPlan {} is Invalid: {why}", plan.name),
                        "PlanInvalid",
                    );
                }
                PlanCheck::Unchecked => {
                    return self.wait(
                        format!(
                            "the ExecutionPlan {} has not been checked against the API server yet",
                            plan.name
                        ),
                        "PlanNotChecked",
                    );
                }
            }
        }
        self.status.execution = Some(ExecutionStatus {
            mode,
            mode_reason: mode_reason.clone(),
            plan_generation: Some(plan.generation),
            started_at: Some(self.input.now),
            finished_at: None,
            steps: plan.spec.steps.iter().map(|s| pending(&s.name)).collect(),
            rollback: None,
        });
        self.status.phase = Some(DecisionPhase::Executing);
        self.emit(ExecutionEvent::Started {
            mode,
            note: mode_reason,
        });
        self.set_condition(
            ConditionStatus::Unknown,
            "Executing",
            "the plan is running".to_owned(),
        );
        self.run_steps();
    }

    /// Ends a Decision whose status cannot be continued (written by hand, or by something
    /// other than the operator): Failed, saying why, and nothing more is run. Failing
    /// closed is the one safe answer when it is unknown what already ran.
    fn fail_inconsistent(&mut self, why: String) {
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

    /// Ends an approved Decision without running anything: Failed, with the reason.
    fn refuse_to_start(&mut self, reason: &str, why: String) {
        self.status.phase = Some(DecisionPhase::Failed);
        self.emit(ExecutionEvent::Failed {
            message: why.clone(),
        });
        self.set_condition(ConditionStatus::False, reason, why);
    }

    /// Records on the status why execution cannot start yet, once.
    fn wait(&mut self, why: String, reason: &str) {
        let unchanged =
            crate::api::common::find_condition(&self.status.conditions, CONDITION_EXECUTED)
                .is_some_and(|c| c.reason == reason && c.message == why);
        if !unchanged {
            self.emit(ExecutionEvent::Waiting { why: why.clone() });
            self.set_condition(ConditionStatus::False, reason, why);
        }
    }

    fn exec(&mut self) -> &mut ExecutionStatus {
        self.status.execution.as_mut().expect("execution started")
    }

    fn run_steps(&mut self) {
        let Some(plan) = self.input.plan else {
            return self.fail_execution("the ExecutionPlan was deleted while it ran".to_owned());
        };
        let planned = self
            .status
            .execution
            .as_ref()
            .and_then(|e| e.plan_generation);
        if planned.is_some_and(|g| g != plan.generation) {
            return self.fail_execution(format!(
                    "the ExecutionPlan {} changed while it ran (generation {} became {}); the remaining steps were not run",
                    plan.name,
                    planned.unwrap_or_default(),
                    plan.generation
                ),
            );
        }
        let mode = self.exec().mode;
        loop {
            let Some(index) = self.exec().steps.iter().position(|s| !step_done(s.phase)) else {
                return self.complete(mode);
            };
            let Some(step) = plan
                .spec
                .steps
                .iter()
                .find(|s| s.name == self.exec().steps[index].name)
            else {
                let name = self.exec().steps[index].name.clone();
                return self.fail_execution(format!("step {name} is no longer in the plan"));
            };
            let progressed = match mode {
                ExecutionMode::DryRun => self.dry_run_step(index, step, plan),
                ExecutionMode::Simulated => self.simulate_step(index, step),
                ExecutionMode::Real => self.real_step(index, step, plan),
            };
            match progressed {
                StepOutcome::Done => continue,
                StepOutcome::Blocked => return,
                StepOutcome::Failed(message) => return self.fail_execution(message),
            }
        }
    }

    fn step_job(
        &self,
        step: &str,
        purpose: &str,
        name: String,
        template: &Value,
        timeout: Option<u32>,
        plan: PlanView<'_>,
    ) -> Value {
        let decision = self.input.decision;
        let context = decision
            .spec
            .context
            .as_ref()
            .map(|c| serde_json::to_value(c).unwrap_or_default())
            .unwrap_or_else(|| serde_json::json!({}));
        let mode = self
            .status
            .execution
            .as_ref()
            .map(|e| e.mode)
            .unwrap_or_default();
        let mut job = jobs::build(&StepJob {
            name,
            generate_name: false,
            namespace: decision.metadata.namespace.as_deref().unwrap_or_default(),
            decision: self.decision_name(),
            plan: plan.name,
            step,
            purpose,
            mode,
            context: &context,
            template,
            timeout_seconds: timeout,
        });
        job["metadata"]["ownerReferences"] = serde_json::json!([{
            "apiVersion": "decisiongate.io/v1alpha1",
            "kind": "Decision",
            "name": self.decision_name(),
            "uid": decision.metadata.uid.clone().unwrap_or_default(),
            "controller": true,
            "blockOwnerDeletion": true,
        }]);
        job
    }

    fn dry_run_step(&mut self, index: usize, step: &Step, plan: PlanView<'_>) -> StepOutcome {
        let name = job_name(self.decision_name(), &step.name, "dry-run");
        match self.input.dry_runs.get(&name) {
            None => {
                let job = self.step_job(
                    &step.name,
                    "step",
                    name.clone(),
                    &step.template,
                    step.timeout_seconds,
                    plan,
                );
                self.action = Some(JobAction::DryRun { name, job });
                StepOutcome::Blocked
            }
            Some(Ok(())) => {
                let now = self.input.now;
                let s = &mut self.exec().steps[index];
                s.phase = StepPhase::WouldExecute;
                s.attempts = 1;
                s.started_at = Some(now);
                s.finished_at = Some(now);
                s.duration_seconds = Some(0.0);
                s.message = Some("WOULD EXECUTE: the API server admitted the Job in a dry run; nothing was created".to_owned());
                self.emit(ExecutionEvent::StepWouldExecute {
                    step: step.name.clone(),
                });
                StepOutcome::Done
            }
            Some(Err(why)) => {
                let now = self.input.now;
                let s = &mut self.exec().steps[index];
                s.phase = StepPhase::Failed;
                s.attempts = 1;
                s.started_at = Some(now);
                s.finished_at = Some(now);
                s.message = Some(format!("the API server refused the step's Job: {why}"));
                self.emit(ExecutionEvent::StepFailed {
                    step: step.name.clone(),
                    attempt: 1,
                    message: format!("the API server refused the step's Job: {why}"),
                    retrying: false,
                });
                StepOutcome::Failed(format!(
                    "the dry run of step {} was refused: {why}",
                    step.name
                ))
            }
        }
    }

    fn simulate_step(&mut self, index: usize, step: &Step) -> StepOutcome {
        let now = self.input.now;
        let seconds = step
            .simulated_duration_seconds
            .unwrap_or(DEFAULT_SIMULATED_SECONDS);
        let s = &mut self.exec().steps[index];
        if s.phase == StepPhase::Pending {
            s.phase = StepPhase::Running;
            s.attempts = 1;
            s.started_at = Some(now);
            s.message = Some(format!("simulating: takes {seconds}s, creates nothing"));
            self.emit(ExecutionEvent::StepStarted {
                step: step.name.clone(),
                attempt: 1,
                job: None,
            });
        }
        let s = &mut self.exec().steps[index];
        let ends = s.started_at.unwrap_or(now) + chrono::Duration::seconds(i64::from(seconds));
        if now < ends {
            self.wake_at = Some(ends);
            return StepOutcome::Blocked;
        }
        finish(
            s,
            StepPhase::Succeeded,
            ends,
            Some(format!("simulated: took {seconds}s, created nothing")),
            None,
        );
        self.emit(ExecutionEvent::StepExecuted {
            step: step.name.clone(),
            attempt: 1,
            result: None,
        });
        StepOutcome::Done
    }

    fn real_step(&mut self, index: usize, step: &Step, plan: PlanView<'_>) -> StepOutcome {
        let now = self.input.now;
        let decision = self.decision_name().to_owned();
        let current = self.exec().steps[index].clone();
        match (current.phase, current.job_name.as_deref()) {
            (StepPhase::Pending, None) => {
                let attempt = current.attempts.saturating_add(1);
                let name = job_name(&decision, &step.name, &attempt.to_string());
                let s = &mut self.exec().steps[index];
                s.attempts = attempt;
                s.job_name = Some(name.clone());
                let job = self.step_job(
                    &step.name,
                    "step",
                    name.clone(),
                    &step.template,
                    step.timeout_seconds,
                    plan,
                );
                self.action = Some(JobAction::Create { name, job });
                StepOutcome::Blocked
            }
            (StepPhase::Pending, Some(name)) => match self.input.jobs.get(name) {
                None | Some(JobState::Missing) => {
                    let job = self.step_job(
                        &step.name,
                        "step",
                        name.to_owned(),
                        &step.template,
                        step.timeout_seconds,
                        plan,
                    );
                    self.action = Some(JobAction::Create {
                        name: name.to_owned(),
                        job,
                    });
                    StepOutcome::Blocked
                }
                Some(_) => {
                    let s = &mut self.exec().steps[index];
                    s.phase = StepPhase::Running;
                    s.started_at.get_or_insert(now);
                    s.message = Some(format!("running as Job {name}"));
                    self.emit(ExecutionEvent::StepStarted {
                        step: step.name.clone(),
                        attempt: current.attempts,
                        job: Some(name.to_owned()),
                    });
                    self.real_step(index, step, plan)
                }
            },
            (StepPhase::Running, Some(name)) => match self
                .input
                .jobs
                .get(name)
                .cloned()
                .unwrap_or(JobState::Missing)
            {
                JobState::Running => StepOutcome::Blocked,
                JobState::Succeeded {
                    result,
                    finished_at,
                } => {
                    let s = &mut self.exec().steps[index];
                    finish(
                        s,
                        StepPhase::Succeeded,
                        finished_at.unwrap_or(now),
                        Some(format!("Job {name} succeeded")),
                        result.clone(),
                    );
                    self.emit(ExecutionEvent::StepExecuted {
                        step: step.name.clone(),
                        attempt: current.attempts,
                        result,
                    });
                    StepOutcome::Done
                }
                failure => {
                    let (message, finished_at) = match failure {
                        JobState::Failed {
                            message,
                            finished_at,
                        } => (message, finished_at.unwrap_or(now)),
                        _ => (
                            format!("its Job {name} was deleted before it finished"),
                            now,
                        ),
                    };
                    let retrying = current.attempts <= step.retries;
                    self.emit(ExecutionEvent::StepFailed {
                        step: step.name.clone(),
                        attempt: current.attempts,
                        message: message.clone(),
                        retrying,
                    });
                    let s = &mut self.exec().steps[index];
                    if retrying {
                        s.phase = StepPhase::Pending;
                        s.job_name = None;
                        s.message = Some(format!(
                            "attempt {} failed: {message}; retrying",
                            current.attempts
                        ));
                        self.real_step(index, step, plan)
                    } else {
                        finish(
                            s,
                            StepPhase::Failed,
                            finished_at,
                            Some(message.clone()),
                            None,
                        );
                        StepOutcome::Failed(format!(
                            "step {} failed after {} attempt(s): {message}",
                            step.name, current.attempts
                        ))
                    }
                }
            },
            _ => StepOutcome::Blocked,
        }
    }

    fn complete(&mut self, mode: ExecutionMode) {
        let now = self.input.now;
        self.exec().finished_at = Some(now);
        self.status.phase = Some(DecisionPhase::Succeeded);
        self.emit(ExecutionEvent::Completed { mode });
        let message = match mode {
            ExecutionMode::DryRun => {
                "dry run: every step would execute; nothing was run".to_owned()
            }
            _ => "every step succeeded".to_owned(),
        };
        self.set_condition(
            ConditionStatus::True,
            if mode == ExecutionMode::DryRun {
                "DryRunSucceeded"
            } else {
                "Succeeded"
            },
            message,
        );
    }

    /// A step failed (or the plan went away): skip what is left and undo what the strategy says.
    fn fail_execution(&mut self, message: String) {
        let now = self.input.now;
        let plan = self.input.plan;
        let strategy = plan
            .map(|p| p.spec.rollback_strategy)
            .unwrap_or(RollbackStrategy::None);
        let exec = self.exec();
        for s in exec
            .steps
            .iter_mut()
            .filter(|s| matches!(s.phase, StepPhase::Pending | StepPhase::Running))
        {
            s.phase = StepPhase::Skipped;
            s.message = Some("not run: an earlier step failed".to_owned());
        }
        exec.finished_at = Some(now);
        let mode = exec.mode;
        // What ran and can be undone, last first.
        let undo: Vec<String> = if mode == ExecutionMode::Real {
            exec.steps
                .iter()
                .rev()
                .filter(|s| s.phase == StepPhase::Succeeded)
                .filter(|s| {
                    plan.and_then(|p| p.spec.steps.iter().find(|ps| ps.name == s.name))
                        .is_some_and(|ps| ps.rollback.is_some())
                })
                .map(|s| s.name.clone())
                .collect()
        } else {
            Vec::new()
        };
        self.emit(ExecutionEvent::Failed {
            message: message.clone(),
        });
        let rollback_steps: Vec<StepStatus> = undo.iter().map(|n| pending(n)).collect();
        let (phase, rollback_phase) = match strategy {
            _ if undo.is_empty() => (DecisionPhase::Failed, RollbackPhase::NotRun),
            RollbackStrategy::None => (DecisionPhase::Failed, RollbackPhase::NotRun),
            RollbackStrategy::Manual => (DecisionPhase::Failed, RollbackPhase::AwaitingApproval),
            RollbackStrategy::Automatic => (DecisionPhase::RollingBack, RollbackPhase::Running),
        };
        self.exec().rollback = Some(RollbackStatus {
            strategy,
            phase: rollback_phase,
            approved_by: None,
            steps: if rollback_phase == RollbackPhase::NotRun {
                Vec::new()
            } else {
                rollback_steps
            },
        });
        self.status.phase = Some(phase);
        match rollback_phase {
            RollbackPhase::AwaitingApproval => {
                self.emit(ExecutionEvent::RollbackAwaitingApproval {
                    steps: undo.clone(),
                });
                self.set_condition(
                    ConditionStatus::False,
                    "RollbackAwaitingApproval",
                    format!("{message}; a rollback of {} awaits approval: annotate rollback-approved-by=<you>", undo.join(", ")),
                );
            }
            RollbackPhase::Running => {
                self.emit(ExecutionEvent::RollbackStarted { steps: undo });
                self.set_condition(
                    ConditionStatus::False,
                    "RollingBack",
                    format!("{message}; rolling back"),
                );
                self.run_rollback();
            }
            _ => {
                let why = match strategy {
                    RollbackStrategy::None => "the plan's rollbackStrategy is None",
                    _ => "nothing that ran has a rollback action",
                };
                self.set_condition(
                    ConditionStatus::False,
                    "Failed",
                    format!("{message}; no rollback: {why}"),
                );
            }
        }
    }

    fn maybe_approve_rollback(&mut self) {
        let awaiting = self
            .status
            .execution
            .as_ref()
            .and_then(|e| e.rollback.as_ref())
            .is_some_and(|r| r.phase == RollbackPhase::AwaitingApproval);
        if !awaiting {
            return;
        }
        let decision = self.input.decision;
        let Some(user) = annotation(decision, annotations::ROLLBACK_APPROVED_BY) else {
            return;
        };
        let stamp = annotation(decision, annotations::ROLLBACK_APPROVED_AT);
        // A rollback approval written while nobody verified answers never counts, as an
        // approval does not: only a new one (another rollback-approved-at) does.
        if let Answers::Unverified(why) = self.input.answers {
            let mut answer = answers::ignored(
                user,
                "rollback-approval",
                format!(
                    "{}: {why}. Nobody checked who wrote this rollback approval, so it never counts; approve again with a new rollback-approved-at once the policies are in force",
                    UNVERIFIED
                ),
                self.input.now,
            );
            answer.stamp = stamp;
            answer.unverified = true;
            answers::ignore(&mut self.status, &mut self.events, answer);
            return;
        }
        if self.status.ignored_answers.iter().any(|i| {
            i.unverified && i.answer == "rollback-approval" && i.user == user && i.stamp == stamp
        }) {
            return;
        }
        if let Err(why) = may_answer(&user, &self.status, true) {
            if !self
                .status
                .ignored_answers
                .iter()
                .any(|i| i.user == user && i.answer == "rollback-approval")
            {
                let answer = answers::ignored(user, "rollback-approval", why, self.input.now);
                answers::ignore(&mut self.status, &mut self.events, answer);
            }
            return;
        }
        let rollback = self.exec().rollback.as_mut().expect("checked above");
        rollback.phase = RollbackPhase::Running;
        rollback.approved_by = Some(user.clone());
        self.status.phase = Some(DecisionPhase::RollingBack);
        self.emit(ExecutionEvent::RollbackApproved { by: user });
        self.set_condition(
            ConditionStatus::False,
            "RollingBack",
            "rolling back, as approved".to_owned(),
        );
        self.run_rollback();
    }

    fn run_rollback(&mut self) {
        let Some(plan) = self.input.plan else {
            return self.rollback_failed(
                String::new(),
                "the ExecutionPlan was deleted, so its rollback actions are unknown".to_owned(),
            );
        };
        let now = self.input.now;
        let decision = self.decision_name().to_owned();
        loop {
            let rollback = self.exec().rollback.as_ref().expect("a rollback runs");
            let Some(index) = rollback
                .steps
                .iter()
                .position(|s| !matches!(s.phase, StepPhase::Succeeded))
            else {
                return self.rolled_back();
            };
            let current = rollback.steps[index].clone();
            let Some(action) = plan
                .spec
                .steps
                .iter()
                .find(|s| s.name == current.name)
                .and_then(|s| s.rollback.as_ref())
            else {
                return self.rollback_failed(
                    current.name.clone(),
                    "its rollback action is no longer in the plan".to_owned(),
                );
            };
            let name = current
                .job_name
                .clone()
                .unwrap_or_else(|| job_name(&decision, &current.name, "rollback"));
            match (current.phase, self.input.jobs.get(&name).cloned()) {
                (StepPhase::Pending, None | Some(JobState::Missing)) => {
                    let s = &mut self
                        .exec()
                        .rollback
                        .as_mut()
                        .expect("a rollback runs")
                        .steps[index];
                    s.job_name = Some(name.clone());
                    s.attempts = 1;
                    let job = self.step_job(
                        &current.name,
                        "rollback",
                        name.clone(),
                        &action.template,
                        action.timeout_seconds,
                        plan,
                    );
                    self.action = Some(JobAction::Create { name, job });
                    return;
                }
                (StepPhase::Pending, Some(_)) => {
                    let s = &mut self
                        .exec()
                        .rollback
                        .as_mut()
                        .expect("a rollback runs")
                        .steps[index];
                    s.phase = StepPhase::Running;
                    s.started_at.get_or_insert(now);
                    s.message = Some(format!("running as Job {name}"));
                }
                (StepPhase::Running, Some(JobState::Running)) => return,
                (
                    StepPhase::Running,
                    Some(JobState::Succeeded {
                        result,
                        finished_at,
                    }),
                ) => {
                    let s = &mut self
                        .exec()
                        .rollback
                        .as_mut()
                        .expect("a rollback runs")
                        .steps[index];
                    finish(
                        s,
                        StepPhase::Succeeded,
                        finished_at.unwrap_or(now),
                        Some(format!("Job {name} succeeded")),
                        result.clone(),
                    );
                    if let Some(original) = self
                        .exec()
                        .steps
                        .iter_mut()
                        .find(|s| s.name == current.name)
                    {
                        original.phase = StepPhase::RolledBack;
                    }
                    self.emit(ExecutionEvent::StepRolledBack {
                        step: current.name.clone(),
                        result,
                    });
                }
                (StepPhase::Running, other) => {
                    let message = match other {
                        Some(JobState::Failed { message, .. }) => message,
                        _ => format!("its Job {name} was deleted before it finished"),
                    };
                    let s = &mut self
                        .exec()
                        .rollback
                        .as_mut()
                        .expect("a rollback runs")
                        .steps[index];
                    finish(s, StepPhase::Failed, now, Some(message.clone()), None);
                    return self.rollback_failed(current.name.clone(), message);
                }
                _ => return,
            }
        }
    }

    fn rolled_back(&mut self) {
        let rollback = self.exec().rollback.as_mut().expect("a rollback runs");
        rollback.phase = RollbackPhase::Succeeded;
        let undone: Vec<String> = rollback.steps.iter().map(|s| s.name.clone()).collect();
        self.status.phase = Some(DecisionPhase::RolledBack);
        self.emit(ExecutionEvent::RolledBack);
        self.set_condition(
            ConditionStatus::False,
            "RolledBack",
            format!("a step failed and {} were rolled back", undone.join(", ")),
        );
    }

    fn rollback_failed(&mut self, step: String, message: String) {
        if let Some(rollback) = self.exec().rollback.as_mut() {
            rollback.phase = RollbackPhase::Failed;
        }
        self.status.phase = Some(DecisionPhase::Failed);
        self.emit(ExecutionEvent::RollbackFailed {
            step: step.clone(),
            message: message.clone(),
        });
        self.set_condition(
            ConditionStatus::False,
            "RollbackFailed",
            format!("the rollback of step {step} failed: {message}; the system may be half changed and needs a person"),
        );
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

enum StepOutcome {
    Done,
    Blocked,
    Failed(String),
}

fn step_done(phase: StepPhase) -> bool {
    matches!(phase, StepPhase::Succeeded | StepPhase::WouldExecute)
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
        result: None,
    }
}

fn finish(
    s: &mut StepStatus,
    phase: StepPhase,
    at: DateTime<Utc>,
    message: Option<String>,
    result: Option<String>,
) {
    s.phase = phase;
    s.finished_at = Some(at);
    s.duration_seconds = s
        .started_at
        .map(|start| ((at - start).num_milliseconds().max(0) as f64) / 1000.0);
    s.message = message;
    s.result = result.filter(|r| !r.is_empty());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::DecisionSpec;
    use crate::api::decision::{Criticality, PlanRef};
    use crate::api::execution_plan::RollbackAction;
    use chrono::TimeZone;
    use serde_json::json;

    fn t0() -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000, 0).unwrap()
    }

    fn step(name: &str, rollback: bool) -> Step {
        let template = json!({"spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}});
        Step {
            name: name.into(),
            template: template.clone(),
            timeout_seconds: Some(60),
            retries: 0,
            rollback: rollback.then_some(RollbackAction {
                template,
                timeout_seconds: None,
            }),
            simulated_duration_seconds: Some(2),
        }
    }

    fn plan(
        mode: ExecutionMode,
        strategy: RollbackStrategy,
        steps: Vec<Step>,
    ) -> ExecutionPlanSpec {
        ExecutionPlanSpec {
            action_types: vec!["deploy".into()],
            criticality: None,
            mode,
            rollback_strategy: strategy,
            steps,
            unreadable: None,
        }
    }

    fn approved() -> Decision {
        let mut d = Decision::new(
            "ship",
            DecisionSpec {
                description: "ship it".into(),
                context: Some([("version".to_owned(), json!("2.0"))].into()),
                plan_ref: Some(PlanRef { name: "p".into() }),
                ..DecisionSpec::example("deploy", Criticality::High)
            },
        );
        d.metadata.namespace = Some("ops".into());
        d.metadata.uid = Some("uid-1".into());
        d.status = Some(DecisionStatus {
            phase: Some(DecisionPhase::Approved),
            ..Default::default()
        });
        d
    }

    /// `status`, pinned to the plan `spec` (uid `plan-uid`).
    fn pinned_status(status: &DecisionStatus, spec: &ExecutionPlanSpec) -> DecisionStatus {
        let mut plan = crate::api::ExecutionPlan::new("p", spec.clone());
        plan.metadata.uid = Some("plan-uid".into());
        DecisionStatus {
            plan: Some(crate::pin::pin(&plan, t0())),
            ..status.clone()
        }
    }

    /// A stand-in for the cluster: Jobs are created on request and finish as the test says.
    struct World {
        decision: Decision,
        plan: ExecutionPlanSpec,
        generation: i64,
        jobs: BTreeMap<String, JobState>,
        created: Vec<String>,
        dry_runs: BTreeMap<String, Result<(), String>>,
        refuse_dry_run: Option<&'static str>,
        events: Vec<String>,
        now: DateTime<Utc>,
        allow_real: bool,
        wake_at: Option<DateTime<Utc>>,
        answers: crate::admission::Answers,
    }

    impl World {
        fn new(plan: ExecutionPlanSpec) -> Self {
            let mut decision = approved();
            decision.status = decision.status.map(|s| pinned_status(&s, &plan));
            World {
                decision,
                plan,
                generation: 1,
                jobs: BTreeMap::new(),
                created: Vec::new(),
                dry_runs: BTreeMap::new(),
                refuse_dry_run: None,
                events: Vec::new(),
                now: t0(),
                allow_real: true,
                wake_at: None,
                answers: crate::admission::Answers::Verified,
            }
        }

        /// Reconciles until the executor waits for the world.
        fn settle(&mut self) {
            for _ in 0..50 {
                let view = PlanView {
                    name: "p",
                    uid: "plan-uid",
                    generation: self.generation,
                    spec: &self.plan,
                    check: PlanCheck::Ready,
                };
                let status = self.decision.status.clone().unwrap();
                let advance = advance(&Input {
                    decision: &self.decision,
                    status: &status,
                    plan: Some(view),
                    jobs: &self.jobs,
                    dry_runs: &self.dry_runs,
                    now: self.now,
                    allow_real: self.allow_real,
                    answers: &self.answers,
                });
                self.events.extend(advance.events.iter().map(|e| match e {
                    DecisionEvent::Execution(x) => match x.step() {
                        Some(step) => format!("{}:{step}", x.event_type()),
                        None => x.event_type().to_owned(),
                    },
                    other => other.event_type().to_owned(),
                }));
                self.decision.status = Some(advance.status);
                self.wake_at = advance.wake_at;
                match advance.action {
                    None => return,
                    Some(JobAction::Create { name, job }) => {
                        assert_eq!(job["metadata"]["name"], name.as_str());
                        assert_eq!(job["metadata"]["ownerReferences"][0]["uid"], "uid-1");
                        assert!(!self.created.contains(&name), "Job {name} created twice");
                        self.created.push(name.clone());
                        self.jobs.insert(name, JobState::Running);
                    }
                    Some(JobAction::DryRun { name, job }) => {
                        let step = job["metadata"]["labels"]["decisiongate.io/step"]
                            .as_str()
                            .unwrap()
                            .to_owned();
                        let verdict = match self.refuse_dry_run {
                            Some(bad) if bad == step => {
                                Err("spec.template.spec.containers[0].image: Required value"
                                    .to_owned())
                            }
                            _ => Ok(()),
                        };
                        self.dry_runs.insert(name, verdict);
                    }
                }
            }
            panic!("the executor did not settle");
        }

        fn finish(&mut self, job: &str, ok: bool) {
            self.now += chrono::Duration::seconds(3);
            let state = if ok {
                JobState::Succeeded {
                    result: Some(format!("{job} done")),
                    finished_at: Some(self.now),
                }
            } else {
                JobState::Failed {
                    message: "exit code 1".into(),
                    finished_at: Some(self.now),
                }
            };
            assert!(
                self.jobs.contains_key(job),
                "{job} was never created; created: {:?}",
                self.created
            );
            self.jobs.insert(job.to_owned(), state);
            self.settle();
        }

        fn status(&self) -> &DecisionStatus {
            self.decision.status.as_ref().unwrap()
        }

        fn phase(&self) -> DecisionPhase {
            self.status().phase.unwrap()
        }

        fn steps(&self) -> Vec<(String, StepPhase)> {
            let e = self.status().execution.as_ref().unwrap();
            e.steps.iter().map(|s| (s.name.clone(), s.phase)).collect()
        }
    }

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
        let rollback = w.status().execution.clone().unwrap().rollback.unwrap();
        assert_eq!(rollback.phase, RollbackPhase::Failed);
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
        let executed =
            crate::api::common::find_condition(&w.status().conditions, CONDITION_EXECUTED)
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
            let c = crate::api::common::find_condition(&w.status().conditions, CONDITION_EXECUTED)
                .unwrap();
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
    }

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
            crate::api::common::find_condition(&first.status.conditions, CONDITION_EXECUTED)
                .unwrap();
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
        let c =
            crate::api::common::find_condition(&w.status().conditions, CONDITION_EXECUTED).unwrap();
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
        let c =
            crate::api::common::find_condition(&w.status().conditions, CONDITION_EXECUTED).unwrap();
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
        let c =
            crate::api::common::find_condition(&w.status().conditions, CONDITION_EXECUTED).unwrap();
        assert_eq!(c.reason, "NotBefore");
        assert!(c.message.contains("may start at"), "{}", c.message);
        w.settle();
        assert_eq!(w.events, ["execution_waiting"], "said once");
        w.now = opens;
        w.settle();
        assert_eq!(w.created, ["ship-a-1"]);
    }

    #[test]
    fn job_names_are_deterministic_and_short_enough() {
        assert_eq!(job_name("ship", "migrate-db", "1"), "ship-migrate-db-1");
        let long = job_name(&"d".repeat(200), "migrate-db", "rollback");
        assert!(long.len() <= 63, "{long}");
        assert_eq!(long, job_name(&"d".repeat(200), "migrate-db", "rollback"));
        assert_ne!(long, job_name(&"d".repeat(200), "migrate-db", "1"));
    }

    mod invariants {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Whatever the Jobs do, no Job is ever created twice, and the execution ends.
            #[test]
            fn every_job_is_created_at_most_once(
                outcomes in proptest::collection::vec(any::<bool>(), 1..20),
                retries in 0u32..3,
                strategy in prop_oneof![Just(RollbackStrategy::Automatic), Just(RollbackStrategy::Manual), Just(RollbackStrategy::None)],
                restarts in proptest::collection::vec(any::<bool>(), 20),
            ) {
                let mut steps = vec![step("a", true), step("b", true), step("c", true)];
                for s in &mut steps { s.retries = retries; }
                let mut w = World::new(plan(ExecutionMode::Real, strategy, steps));
                w.decision.metadata.annotations = Some([("rollback-approved-by".to_owned(), "alice".to_owned())].into());
                w.settle();
                for (i, ok) in outcomes.into_iter().enumerate() {
                    let running: Vec<String> = w.jobs.iter().filter(|(_, s)| **s == JobState::Running).map(|(n, _)| n.clone()).collect();
                    let Some(job) = running.first() else { break };
                    if restarts[i % restarts.len()] {
                        w.settle(); // a reconcile from scratch changes nothing
                    }
                    w.finish(job, ok);
                }
                let ends = [DecisionPhase::Executing, DecisionPhase::RollingBack, DecisionPhase::Succeeded, DecisionPhase::Failed, DecisionPhase::RolledBack];
                prop_assert!(ends.contains(&w.phase()));
            }
        }
    }
}

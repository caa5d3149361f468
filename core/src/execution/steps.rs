//! Running the steps one after another, in the execution's mode: a dry run asks the API
//! server, a simulation takes its time, and a Real step runs as a Job, exactly once per
//! attempt.

use serde_json::Value;

use super::{JobAction, JobState, PlanView, Run, finish, job_name};
use crate::api::decision::StepPhase;
use crate::api::execution_plan::Step;
use crate::api::{ConditionStatus, DecisionPhase, ExecutionMode};
use crate::events::ExecutionEvent;
use crate::jobs::{self, StepJob};

/// Which Job of a plan to build for a Decision.
pub(crate) struct JobOf<'a> {
    pub plan: &'a str,
    pub step: &'a str,
    /// `step` or `rollback`.
    pub purpose: &'a str,
    pub name: String,
    pub template: &'a Value,
    pub timeout: Option<u32>,
    pub mode: ExecutionMode,
}

/// A step's (or a rollback's) Job exactly as it runs for `decision`: its context in the
/// environment, its names in labels and annotations, owned by the Decision.
pub(crate) fn decision_job(decision: &crate::api::Decision, job: &JobOf<'_>) -> Value {
    let context = decision
        .spec
        .context
        .as_ref()
        .map(|c| serde_json::to_value(c).unwrap_or_default())
        .unwrap_or_else(|| serde_json::json!({}));
    let mut built = jobs::build(&StepJob {
        name: job.name.clone(),
        generate_name: false,
        namespace: decision.metadata.namespace.as_deref().unwrap_or_default(),
        decision: decision.metadata.name.as_deref().unwrap_or_default(),
        decision_uid: decision.metadata.uid.as_deref(),
        plan: job.plan,
        step: job.step,
        purpose: job.purpose,
        mode: job.mode,
        context: &context,
        template: job.template,
        timeout_seconds: job.timeout,
    });
    // The Decision owns its Jobs: deleting it deletes them, and their changes wake it.
    let owner = kube_core::Resource::controller_owner_ref(decision, &()).map(|owner| {
        k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            block_owner_deletion: Some(true),
            ..owner
        }
    });
    built["metadata"]["ownerReferences"] =
        serde_json::to_value(Vec::from_iter(owner)).unwrap_or_default();
    built
}

/// How long a Simulated step takes when the plan does not say.
const DEFAULT_SIMULATED_SECONDS: u32 = 1;

impl Run<'_, '_> {
    pub(super) fn run_steps(&mut self) {
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
            ));
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

    pub(super) fn step_job(
        &self,
        step: &str,
        purpose: &str,
        name: String,
        template: &Value,
        timeout: Option<u32>,
        plan: PlanView<'_>,
    ) -> Value {
        let mode = self
            .status
            .execution
            .as_ref()
            .map(|e| e.mode)
            .unwrap_or_default();
        decision_job(
            self.input.decision,
            &JobOf {
                plan: plan.name,
                step,
                purpose,
                name,
                template,
                timeout,
                mode,
            },
        )
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
                    exit_code,
                    finished_at,
                } => {
                    let s = &mut self.exec().steps[index];
                    finish(
                        s,
                        StepPhase::Succeeded,
                        finished_at.unwrap_or(now),
                        Some(format!("Job {name} succeeded")),
                        exit_code,
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
                    let (message, exit_code, finished_at) = match failure {
                        JobState::Failed {
                            message,
                            exit_code,
                            finished_at,
                        } => (message, exit_code, finished_at.unwrap_or(now)),
                        _ => (
                            format!("its Job {name} was deleted before it finished"),
                            None,
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
                            exit_code,
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
}

enum StepOutcome {
    Done,
    Blocked,
    Failed(String),
}

fn step_done(phase: StepPhase) -> bool {
    matches!(phase, StepPhase::Succeeded | StepPhase::WouldExecute)
}

//! After a failure: what is skipped, what is undone and in which order (last first), a
//! Manual rollback's approval, and the compensating Jobs.

use super::{JobAction, JobState, Run, finish, job_name, pending};
use crate::admission::Answers;
use crate::answers::{self, UNVERIFIED, annotation, may_answer};
use crate::api::annotations;
use crate::api::decision::{RollbackPhase, RollbackStatus, StepPhase, StepStatus};
use crate::api::execution_plan::RollbackStrategy;
use crate::api::{ConditionStatus, DecisionPhase, ExecutionMode};
use crate::events::ExecutionEvent;

impl Run<'_, '_> {
    /// A step failed (or the plan went away): skip what is left and undo what the strategy says.
    pub(super) fn fail_execution(&mut self, message: String) {
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

    pub(super) fn maybe_approve_rollback(&mut self) {
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
        if let Err(why) = may_answer(&user, answers::Groups::Unchecked, &self.status, true) {
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

    pub(super) fn run_rollback(&mut self) {
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
                        exit_code,
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
                        exit_code,
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
                    let (message, exit_code) = match other {
                        Some(JobState::Failed {
                            message, exit_code, ..
                        }) => (message, exit_code),
                        _ => (
                            format!("its Job {name} was deleted before it finished"),
                            None,
                        ),
                    };
                    let s = &mut self
                        .exec()
                        .rollback
                        .as_mut()
                        .expect("a rollback runs")
                        .steps[index];
                    finish(
                        s,
                        StepPhase::Failed,
                        now,
                        Some(message.clone()),
                        exit_code,
                        None,
                    );
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
}

//! Starting an approved Decision's plan: only the plan as pinned, not before `notBefore`,
//! and a Real plan only once the API server admitted every step; otherwise it waits, and
//! says why once.

use super::{CONDITION_EXECUTED, PlanCheck, Run, pending};
use crate::api::decision::ExecutionStatus;
use crate::api::{ConditionStatus, DecisionPhase, ExecutionMode};
use crate::events::ExecutionEvent;

impl Run<'_, '_> {
    pub(super) fn start(&mut self) {
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
}

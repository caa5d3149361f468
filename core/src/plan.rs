//! What an ExecutionPlan's status says, from the API server's verdict on each step's Job.

use chrono::{DateTime, Utc};

use crate::api::common::set_condition;
use crate::api::execution_plan::PlanPhase;
use crate::api::{Condition, ConditionStatus, ExecutionPlan, ExecutionPlanStatus};

pub const CONDITION_READY: &str = "Ready";

/// The API server's verdict on one Job of the plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobCheck {
    /// The step the Job belongs to.
    pub step: String,
    /// Whether it is the step's compensating action rather than the step itself.
    pub rollback: bool,
    /// `Err` holds the API server's own message.
    pub verdict: Result<(), String>,
}

impl JobCheck {
    /// `step migrate-db` or `rollback of step migrate-db`.
    pub fn what(&self) -> String {
        if self.rollback {
            format!("rollback of step {}", self.step)
        } else {
            format!("step {}", self.step)
        }
    }
}

/// The status of a plan whose Jobs were checked at `now`. The first refusal decides the
/// message; every refusal is listed.
pub fn status_after_check(
    plan: &ExecutionPlan,
    checks: &[JobCheck],
    now: DateTime<Utc>,
) -> ExecutionPlanStatus {
    let mut status = plan.status.clone().unwrap_or_default();
    let refusals: Vec<String> = checks
        .iter()
        .filter_map(|c| {
            c.verdict
                .as_ref()
                .err()
                .map(|why| format!("{}: {why}", c.what()))
        })
        .collect();
    let condition = if let Some(why) = &plan.spec.unreadable {
        status.phase = Some(PlanPhase::Invalid);
        Condition::new(
            CONDITION_READY,
            ConditionStatus::False,
            "Unreadable",
            format!("the plan cannot be read, so nothing runs it: {why}"),
        )
    } else if refusals.is_empty() {
        status.phase = Some(PlanPhase::Ready);
        Condition::new(CONDITION_READY, ConditionStatus::True, "Validated", {
            let rollbacks = checks.iter().filter(|c| c.rollback).count();
            format!(
                "the API server admitted all {} Jobs ({} steps, {rollbacks} rollback actions) in a server-side dry run",
                checks.len(),
                checks.len() - rollbacks
            )
        })
    } else {
        status.phase = Some(PlanPhase::Invalid);
        Condition::new(
            CONDITION_READY,
            ConditionStatus::False,
            "Invalid",
            format!("the API server refused {}", refusals.join("; ")),
        )
    };
    set_condition(
        &mut status.conditions,
        condition.generation(plan.metadata.generation),
        now,
    );
    status.step_count = Some(plan.spec.steps.len() as u32);
    status.checked_at = Some(now);
    status.observed_generation = plan.metadata.generation;
    status
}

/// Whether the plan's last check still stands: same generation, checked within `max_age`.
pub fn check_is_current(
    plan: &ExecutionPlan,
    now: DateTime<Utc>,
    max_age: chrono::Duration,
) -> bool {
    let Some(status) = &plan.status else {
        return false;
    };
    // A plan that became unreadable keeps its generation; it is current once it says so.
    if plan.spec.unreadable.is_some() && status.phase != Some(PlanPhase::Invalid) {
        return false;
    }
    status.observed_generation == plan.metadata.generation
        && status.checked_at.is_some_and(|at| now - at < max_age)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ExecutionPlanSpec;
    use crate::api::execution_plan::{ExecutionMode, RollbackStrategy, Step};
    use chrono::TimeZone;

    fn plan() -> ExecutionPlan {
        let step = |name: &str| Step {
            name: name.into(),
            template: serde_json::json!({"spec": {}}),
            timeout_seconds: None,
            retries: 0,
            rollback: None,
            simulated_duration_seconds: None,
        };
        let mut p = ExecutionPlan::new(
            "deploy",
            ExecutionPlanSpec {
                action_types: vec!["deploy".into()],
                criticality: None,
                mode: ExecutionMode::DryRun,
                rollback_strategy: RollbackStrategy::Automatic,
                steps: vec![step("migrate-db"), step("roll-out")],
                unreadable: None,
            },
        );
        p.metadata.generation = Some(3);
        p
    }

    fn now() -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000, 0).unwrap()
    }

    #[test]
    fn a_plan_whose_jobs_are_all_admitted_is_ready() {
        let checks = vec![
            JobCheck {
                step: "migrate-db".into(),
                rollback: false,
                verdict: Ok(()),
            },
            JobCheck {
                step: "migrate-db".into(),
                rollback: true,
                verdict: Ok(()),
            },
        ];
        let status = status_after_check(&plan(), &checks, now());
        assert_eq!(status.phase, Some(PlanPhase::Ready));
        assert_eq!(status.conditions[0].status, ConditionStatus::True);
        assert_eq!(status.step_count, Some(2));
        assert!(
            status.conditions[0]
                .message
                .contains("all 2 Jobs (1 steps, 1 rollback actions)"),
            "{}",
            status.conditions[0].message
        );
        assert_eq!(status.observed_generation, Some(3));
    }

    #[test]
    fn a_refusal_makes_the_plan_invalid_with_the_servers_reason() {
        let checks = vec![
            JobCheck {
                step: "migrate-db".into(),
                rollback: false,
                verdict: Ok(()),
            },
            JobCheck {
                step: "roll-out".into(),
                rollback: false,
                verdict: Err("spec.template.spec.containers: Required value".into()),
            },
        ];
        let status = status_after_check(&plan(), &checks, now());
        assert_eq!(status.phase, Some(PlanPhase::Invalid));
        let ready = &status.conditions[0];
        assert_eq!(ready.status, ConditionStatus::False);
        assert_eq!(ready.reason, "Invalid");
        assert!(
            ready
                .message
                .contains("step roll-out: spec.template.spec.containers: Required value"),
            "{}",
            ready.message
        );
    }

    #[test]
    fn a_plan_that_cannot_be_read_is_invalid_once_and_stays_so() {
        let mut p = plan();
        p.status = Some(status_after_check(&p, &[], now()));
        assert_eq!(p.status.as_ref().unwrap().phase, Some(PlanPhase::Ready));
        // The same generation, now unreadable: the earlier check no longer stands.
        p.spec.unreadable = Some("unknown variant `Sometimes`".into());
        let hour = chrono::Duration::hours(1);
        assert!(!check_is_current(&p, now(), hour));
        let status = status_after_check(&p, &[], now());
        assert_eq!(status.phase, Some(PlanPhase::Invalid));
        assert_eq!(status.conditions[0].reason, "Unreadable");
        assert!(status.conditions[0].message.contains("Sometimes"));
        p.status = Some(status);
        assert!(
            check_is_current(&p, now(), hour),
            "written once, not again and again"
        );
    }

    #[test]
    fn a_check_goes_stale_with_a_new_generation_or_age() {
        let mut p = plan();
        p.status = Some(status_after_check(&p, &[], now()));
        let hour = chrono::Duration::hours(1);
        assert!(check_is_current(
            &p,
            now() + chrono::Duration::minutes(5),
            hour
        ));
        assert!(!check_is_current(
            &p,
            now() + chrono::Duration::hours(2),
            hour
        ));
        p.metadata.generation = Some(4);
        assert!(!check_is_current(&p, now(), hour));
    }
}

//! Before anyone is asked: the Jobs a new Decision's plan would create for it, built
//! exactly as they would run (its name, its labels, its context in the environment), for
//! the API server to judge with a server-side dry run. A Decision whose Jobs the API server
//! refuses is never put to approvers only to fail once approved.

use serde_json::Value;

use super::job_name;
use super::steps::{JobOf, decision_job};
use crate::api::{Decision, ExecutionMode, ExecutionPlan};

/// One Job to ask the API server about.
#[derive(Clone, Debug, PartialEq)]
pub struct JobToCheck {
    /// Which of the plan's Jobs it is, in words: `step migrate-db`, `rollback of step
    /// migrate-db`.
    pub what: String,
    pub job: Value,
}

/// The Jobs `plan` would create for `decision`: every step's and every rollback action's,
/// as they run in the mode the plan would run in (`allow_real` says whether Real runs as
/// Real or as DryRun). A Simulated plan creates none, and a plan made for another action
/// type is not asked about: the Decision is rejected for that before anyone is asked.
pub fn jobs_to_check(
    decision: &Decision,
    plan: &ExecutionPlan,
    allow_real: bool,
) -> Vec<JobToCheck> {
    if !plan.spec.action_types.contains(&decision.spec.action_type) {
        return Vec::new();
    }
    let mode = match plan.spec.mode {
        ExecutionMode::Simulated => return Vec::new(),
        ExecutionMode::Real if allow_real => ExecutionMode::Real,
        _ => ExecutionMode::DryRun,
    };
    let decision_name = decision.metadata.name.as_deref().unwrap_or_default();
    let plan_name = plan.metadata.name.as_deref().unwrap_or_default();
    let step_suffix = if mode == ExecutionMode::Real {
        "1"
    } else {
        "dry-run"
    };
    let mut out = Vec::new();
    for step in &plan.spec.steps {
        out.push(JobToCheck {
            what: format!("step {}", step.name),
            job: decision_job(
                decision,
                &JobOf {
                    plan: plan_name,
                    step: &step.name,
                    purpose: "step",
                    name: job_name(decision_name, &step.name, step_suffix),
                    template: &step.template,
                    timeout: step.timeout_seconds,
                    mode,
                },
            ),
        });
        if let Some(rollback) = &step.rollback {
            out.push(JobToCheck {
                what: format!("rollback of step {}", step.name),
                job: decision_job(
                    decision,
                    &JobOf {
                        plan: plan_name,
                        step: &step.name,
                        purpose: "rollback",
                        name: job_name(decision_name, &step.name, "rollback"),
                        template: &rollback.template,
                        timeout: rollback.timeout_seconds,
                        mode,
                    },
                ),
            });
        }
    }
    out
}

/// The most bytes one environment variable (`NAME=value`) may hold where a container is
/// started on Linux (`MAX_ARG_STRLEN`, 32 pages of 4 KiB): a larger one fails the
/// container's start.
pub const ENV_STRING_MAX: usize = 32 * 4096;

/// The most bytes of JSON a step's Job may have: the API server stores objects of at most
/// 1.5 MiB, and the Job's pod carries the same template again with its status.
pub const JOB_BYTES_MAX: usize = 1024 * 1024;

/// What no API server is asked about, since it cannot be: a Job too large to be stored, or
/// a context too large for the environment variable the steps receive it in. `None` when
/// every Job is within those limits; otherwise the Job and why, in words.
pub fn beyond_limits(decision: &Decision, jobs: &[JobToCheck]) -> Option<(String, String)> {
    let context = decision
        .spec
        .context
        .as_ref()
        .and_then(|c| serde_json::to_string(c).ok())
        .unwrap_or_else(|| "{}".to_owned());
    let variable = crate::jobs::names::ENV_CONTEXT.len() + 1 + context.len();
    if variable >= ENV_STRING_MAX
        && let Some(first) = jobs.first()
    {
        return Some((
            first.what.clone(),
            format!(
                "the Decision's context is {} bytes as JSON, and the steps receive it in the environment variable {}, which holds less than {ENV_STRING_MAX} bytes where containers start; make the context smaller",
                context.len(),
                crate::jobs::names::ENV_CONTEXT
            ),
        ));
    }
    jobs.iter().find_map(|j| {
        let size = serde_json::to_vec(&j.job).map_or(0, |b| b.len());
        (size > JOB_BYTES_MAX).then(|| {
            (
                j.what.clone(),
                format!(
                    "its Job would be {size} bytes, more than the {JOB_BYTES_MAX} a Job may be here (the context is handed to every container)"
                ),
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::execution_plan::{ExecutionPlanSpec, RollbackAction, RollbackStrategy, Step};
    use crate::api::{DecisionSpec, decision::Criticality, decision::PlanRef};
    use serde_json::json;

    fn plan(mode: ExecutionMode) -> ExecutionPlan {
        let template = json!({"spec": {"restartPolicy": "Never", "containers": [{"name": "m", "image": "busybox"}]}});
        let mut plan = ExecutionPlan::new(
            &"p".repeat(200),
            ExecutionPlanSpec {
                action_types: vec!["deploy".into()],
                criticality: None,
                mode,
                rollback_strategy: RollbackStrategy::Automatic,
                steps: vec![
                    Step {
                        name: "migrate".into(),
                        template: template.clone(),
                        timeout_seconds: None,
                        retries: 0,
                        rollback: Some(RollbackAction {
                            template: template.clone(),
                            timeout_seconds: Some(60),
                        }),
                        simulated_duration_seconds: None,
                    },
                    Step {
                        name: "roll-out".into(),
                        template,
                        timeout_seconds: Some(30),
                        retries: 2,
                        rollback: None,
                        simulated_duration_seconds: None,
                    },
                ],
                unreadable: None,
            },
        );
        plan.metadata.namespace = Some("ops".into());
        plan
    }

    fn decision(context: serde_json::Value) -> Decision {
        let mut d = Decision::new(
            &"d".repeat(253),
            DecisionSpec {
                context: serde_json::from_value(context).unwrap(),
                plan_ref: Some(PlanRef {
                    name: "p".repeat(200),
                }),
                ..DecisionSpec::example("deploy", Criticality::High)
            },
        );
        d.metadata.namespace = Some("ops".into());
        d.metadata.uid = Some("3f1c2b9e-0000-4000-8000-000000000001".into());
        d
    }

    #[test]
    fn every_step_and_rollback_is_checked_as_it_would_run() {
        let d = decision(json!({"service": "api"}));
        let jobs = jobs_to_check(&d, &plan(ExecutionMode::Real), true);
        let what: Vec<&str> = jobs.iter().map(|j| j.what.as_str()).collect();
        assert_eq!(
            what,
            ["step migrate", "rollback of step migrate", "step roll-out"]
        );
        for j in &jobs {
            let metadata = &j.job["metadata"];
            assert!(metadata["name"].as_str().unwrap().len() <= 63);
            for value in metadata["labels"].as_object().unwrap().values() {
                assert!(
                    crate::jobs::is_label_value(value.as_str().unwrap()),
                    "{value}"
                );
            }
            assert_eq!(
                metadata["annotations"]["decisiongate.io/decision"],
                "d".repeat(253)
            );
            assert_eq!(metadata["ownerReferences"][0]["kind"], "Decision");
        }
        // Where real execution is not allowed, a Real plan runs (and is checked) as DryRun.
        let dry = jobs_to_check(&d, &plan(ExecutionMode::Real), false);
        assert_eq!(dry.len(), 3);
        let env = dry[0].job["spec"]["template"]["spec"]["containers"][0]["env"].to_string();
        assert!(env.contains("DryRun"), "{env}");
        assert!(jobs_to_check(&d, &plan(ExecutionMode::Simulated), true).is_empty());
        let mut elsewhere = plan(ExecutionMode::Real);
        elsewhere.spec.action_types = vec!["delete_data".into()];
        assert!(jobs_to_check(&d, &elsewhere, true).is_empty());
        assert_eq!(beyond_limits(&d, &jobs), None);
    }

    #[test]
    fn a_context_too_large_for_the_environment_can_never_run() {
        let d = decision(json!({"blob": "x".repeat(ENV_STRING_MAX)}));
        let jobs = jobs_to_check(&d, &plan(ExecutionMode::DryRun), true);
        let (what, why) = beyond_limits(&d, &jobs).expect("refused");
        assert_eq!(what, "step migrate");
        assert!(why.contains("DECISION_GATE_CONTEXT"), "{why}");
        // Just under the limit is fine.
        let fits = ENV_STRING_MAX - "DECISION_GATE_CONTEXT=".len() - r#"{"blob":""}"#.len() - 1;
        let d = decision(json!({"blob": "x".repeat(fits)}));
        let jobs = jobs_to_check(&d, &plan(ExecutionMode::DryRun), true);
        assert_eq!(beyond_limits(&d, &jobs), None);
    }

    #[test]
    fn a_job_too_large_to_store_can_never_run() {
        let d = decision(json!({"service": "api"}));
        let mut big = plan(ExecutionMode::Real);
        big.spec.steps[1].template["metadata"] =
            json!({"annotations": {"note": "y".repeat(JOB_BYTES_MAX)}});
        let jobs = jobs_to_check(&d, &big, true);
        let (what, why) = beyond_limits(&d, &jobs).expect("refused");
        assert_eq!(what, "step roll-out");
        assert!(why.contains("bytes"), "{why}");
    }
}

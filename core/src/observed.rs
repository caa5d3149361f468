//! What the operator reads off the cluster, in the executor's terms: a step Job's
//! outcome from its status and its pods, and whether a plan's check is current. The
//! reconciler fetches the objects; everything they are taken to mean is decided here.

use k8s_openapi::api::batch::v1::{Job, JobCondition};
use k8s_openapi::api::core::v1::Pod;

use crate::api::ExecutionPlan;
use crate::api::common::to_chrono;
use crate::api::decision::StepPhase;
use crate::api::execution_plan::PlanPhase;
use crate::api::{DecisionStatus, ExecutionPlanStatus};
use crate::execution::{JobState, PlanCheck};

/// What a Job's status says about it.
#[derive(Clone, Debug, PartialEq)]
pub enum JobOutcome {
    /// Not finished yet (or not started).
    Running,
    /// Its `Complete` condition is true.
    Succeeded {
        finished_at: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Its `Failed` condition is true: why, in the Job controller's words.
    Failed {
        reason: String,
        message: String,
        finished_at: Option<chrono::DateTime<chrono::Utc>>,
    },
}

impl JobOutcome {
    /// Reads a Job's status. A Job that says both, complete and failed, is taken as
    /// complete: its work was done.
    pub fn of(job: &Job) -> JobOutcome {
        let status = job.status.as_ref();
        let conditions: &[JobCondition] = status
            .and_then(|s| s.conditions.as_deref())
            .unwrap_or_default();
        let holds = |type_: &str| {
            conditions
                .iter()
                .find(|c| c.type_ == type_ && c.status == "True")
        };
        if let Some(done) = holds("Complete") {
            let finished_at = status
                .and_then(|s| s.completion_time.as_ref())
                .or(done.last_transition_time.as_ref())
                .map(|t| to_chrono(&t.0));
            return JobOutcome::Succeeded { finished_at };
        }
        if let Some(failed) = holds("Failed") {
            return JobOutcome::Failed {
                reason: failed.reason.clone().unwrap_or_else(|| "Failed".to_owned()),
                message: failed
                    .message
                    .clone()
                    .unwrap_or_else(|| "the Job failed".to_owned()),
                finished_at: failed
                    .last_transition_time
                    .as_ref()
                    .map(|t| to_chrono(&t.0)),
            };
        }
        JobOutcome::Running
    }

    /// Whether the Job is done, so that what its container said is worth reading.
    pub fn is_finished(&self) -> bool {
        !matches!(self, JobOutcome::Running)
    }

    /// The step's view of the Job, with what its container said (see
    /// [`termination_message`]) as the result of a step that succeeded, and appended to
    /// the message of one that failed.
    pub fn into_state(self, said: Option<String>) -> JobState {
        match self {
            JobOutcome::Running => JobState::Running,
            JobOutcome::Succeeded { finished_at } => JobState::Succeeded {
                result: said,
                finished_at,
            },
            JobOutcome::Failed {
                reason,
                message,
                finished_at,
            } => {
                let mut message = format!("{reason}: {message}");
                if let Some(said) = said {
                    message.push_str(&format!("; the container said: {said}"));
                }
                JobState::Failed {
                    message,
                    finished_at,
                }
            }
        }
    }
}

/// The first non-empty termination message among the containers of a Job's pods, trimmed.
pub fn termination_message(pods: &[Pod]) -> Option<String> {
    pods.iter()
        .flat_map(|p| {
            p.status
                .iter()
                .flat_map(|s| s.container_statuses.iter().flatten())
        })
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.message.clone())
        .map(|m| m.trim().to_owned())
        .find(|m| !m.is_empty())
}

/// The label that selects a Job's pods.
pub fn job_pods_selector(job: &str) -> String {
    format!("batch.kubernetes.io/job-name={job}")
}

/// The Jobs whose outcome the executor needs: those the status names for steps (and
/// rollback steps) that are not finished.
pub fn jobs_to_observe(status: &DecisionStatus) -> Vec<String> {
    let Some(execution) = &status.execution else {
        return Vec::new();
    };
    let rollback = execution.rollback.iter().flat_map(|r| r.steps.iter());
    execution
        .steps
        .iter()
        .chain(rollback)
        .filter(|step| matches!(step.phase, StepPhase::Pending | StepPhase::Running))
        .filter_map(|step| step.job_name.clone())
        .collect()
}

/// What the plan controller found for the plan's current generation: a check of an
/// earlier generation is no check of this one.
pub fn plan_check(plan: &ExecutionPlan) -> PlanCheck<'_> {
    let Some(status): Option<&ExecutionPlanStatus> = plan.status.as_ref() else {
        return PlanCheck::Unchecked;
    };
    if status.observed_generation != plan.metadata.generation {
        return PlanCheck::Unchecked;
    }
    match status.phase {
        Some(PlanPhase::Ready) => PlanCheck::Ready,
        Some(PlanPhase::Invalid) => PlanCheck::Invalid(
            status
                .conditions
                .first()
                .map(|c| c.message.as_str())
                .unwrap_or("the API server refused a step"),
        ),
        None => PlanCheck::Unchecked,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(status: serde_json::Value) -> Job {
        serde_json::from_value(json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "ship-migrate-1", "namespace": "ops"},
            "status": status,
        }))
        .unwrap()
    }

    fn at(rfc3339: &str) -> Option<chrono::DateTime<chrono::Utc>> {
        Some(rfc3339.parse().unwrap())
    }

    #[test]
    fn a_job_without_a_finishing_condition_is_running() {
        assert_eq!(JobOutcome::of(&job(json!({}))), JobOutcome::Running);
        assert_eq!(JobOutcome::of(&job(json!(null))), JobOutcome::Running);
        let suspended = job(json!({"active": 1, "conditions": [
            {"type": "Suspended", "status": "True"},
            {"type": "Complete", "status": "False"},
            {"type": "Failed", "status": "Unknown"},
        ]}));
        assert_eq!(JobOutcome::of(&suspended), JobOutcome::Running);
        assert!(!JobOutcome::Running.is_finished());
        assert_eq!(JobOutcome::Running.into_state(None), JobState::Running);
    }

    #[test]
    fn a_complete_job_succeeded_at_its_completion_time() {
        let done = job(json!({
            "completionTime": "2027-01-15T08:00:05Z",
            "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": "2027-01-15T08:00:07Z"}],
        }));
        let outcome = JobOutcome::of(&done);
        assert_eq!(
            outcome,
            JobOutcome::Succeeded {
                finished_at: at("2027-01-15T08:00:05Z")
            }
        );
        assert!(outcome.is_finished());
        assert_eq!(
            outcome.into_state(Some("migrated 12 tables".into())),
            JobState::Succeeded {
                result: Some("migrated 12 tables".into()),
                finished_at: at("2027-01-15T08:00:05Z"),
            }
        );
        // Without a completion time, the condition's transition says when.
        let done = job(json!({"conditions": [
            {"type": "Complete", "status": "True", "lastTransitionTime": "2027-01-15T08:00:07Z"},
        ]}));
        assert_eq!(
            JobOutcome::of(&done).into_state(None),
            JobState::Succeeded {
                result: None,
                finished_at: at("2027-01-15T08:00:07Z")
            }
        );
    }

    #[test]
    fn a_failed_job_says_why_with_what_its_container_said() {
        let failed = job(json!({"conditions": [{
            "type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
            "message": "Job has reached the specified backoff limit",
            "lastTransitionTime": "2027-01-15T08:01:00Z",
        }]}));
        assert_eq!(
            JobOutcome::of(&failed).into_state(Some("table users is locked".into())),
            JobState::Failed {
                message: "BackoffLimitExceeded: Job has reached the specified backoff limit; the container said: table users is locked".into(),
                finished_at: at("2027-01-15T08:01:00Z"),
            }
        );
        let bare = job(json!({"conditions": [{"type": "Failed", "status": "True"}]}));
        assert_eq!(
            JobOutcome::of(&bare).into_state(None),
            JobState::Failed {
                message: "Failed: the Job failed".into(),
                finished_at: None
            }
        );
    }

    #[test]
    fn a_job_both_complete_and_failed_did_its_work() {
        let both = job(json!({"conditions": [
            {"type": "Failed", "status": "True", "reason": "DeadlineExceeded"},
            {"type": "Complete", "status": "True"},
        ]}));
        assert!(matches!(
            JobOutcome::of(&both),
            JobOutcome::Succeeded { .. }
        ));
    }

    fn pod(messages: &[Option<&str>]) -> Pod {
        let statuses: Vec<serde_json::Value> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let terminated = match m {
                    Some(m) => json!({"exitCode": 0, "message": m}),
                    None => json!({"exitCode": 0}),
                };
                json!({"name": format!("c{i}"), "image": "busybox", "imageID": "", "ready": false,
                       "restartCount": 0, "state": {"terminated": terminated}})
            })
            .collect();
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "status": {"containerStatuses": statuses},
        }))
        .unwrap()
    }

    #[test]
    fn the_first_message_a_container_left_is_the_result() {
        assert_eq!(termination_message(&[]), None);
        let running: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "status": {"containerStatuses": [{"name": "c", "image": "i", "imageID": "", "ready": true,
                "restartCount": 0, "state": {"running": {}}}]},
        }))
        .unwrap();
        assert_eq!(termination_message(&[running]), None);
        assert_eq!(
            termination_message(&[pod(&[None, Some("  \n")]), pod(&[Some(" done: 3 rows\n")])]),
            Some("done: 3 rows".into())
        );
        assert_eq!(
            job_pods_selector("ship-migrate-1"),
            "batch.kubernetes.io/job-name=ship-migrate-1"
        );
    }

    #[test]
    fn only_unfinished_steps_with_a_job_are_observed() {
        let status: DecisionStatus = serde_json::from_value(json!({
            "phase": "Executing",
            "execution": {
                "mode": "Real",
                "steps": [
                    {"name": "a", "phase": "Succeeded", "jobName": "d-a-1"},
                    {"name": "b", "phase": "Running", "jobName": "d-b-1"},
                    {"name": "c", "phase": "Pending", "jobName": "d-c-1"},
                    {"name": "d", "phase": "Pending"},
                ],
                "rollback": {"strategy": "Automatic", "phase": "Running", "steps": [
                    {"name": "a", "phase": "Running", "jobName": "d-a-rollback"},
                    {"name": "b", "phase": "Failed", "jobName": "d-b-rollback"},
                ]},
            },
        }))
        .unwrap();
        assert_eq!(jobs_to_observe(&status), ["d-b-1", "d-c-1", "d-a-rollback"]);
        assert!(jobs_to_observe(&DecisionStatus::default()).is_empty());
    }

    fn plan(generation: i64, status: serde_json::Value) -> ExecutionPlan {
        serde_json::from_value(json!({
            "apiVersion": "decisiongate.io/v1alpha1", "kind": "ExecutionPlan",
            "metadata": {"name": "p", "namespace": "ops", "generation": generation},
            "spec": {"actionTypes": ["deploy"], "steps": []},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn a_plan_check_counts_for_the_generation_it_checked() {
        assert_eq!(plan_check(&plan(2, json!(null))), PlanCheck::Unchecked);
        assert_eq!(
            plan_check(&plan(2, json!({"phase": "Ready", "observedGeneration": 2}))),
            PlanCheck::Ready
        );
        assert_eq!(
            plan_check(&plan(3, json!({"phase": "Ready", "observedGeneration": 2}))),
            PlanCheck::Unchecked
        );
        assert_eq!(
            plan_check(&plan(2, json!({"observedGeneration": 2}))),
            PlanCheck::Unchecked
        );
        let refused = plan(
            2,
            json!({"phase": "Invalid", "observedGeneration": 2, "conditions": [{
                "type": "Ready", "status": "False", "reason": "Refused",
                "message": "step migrate: spec.template.spec.containers: Required value",
                "lastTransitionTime": "2027-01-15T08:00:00Z",
            }]}),
        );
        assert_eq!(
            plan_check(&refused),
            PlanCheck::Invalid("step migrate: spec.template.spec.containers: Required value")
        );
        assert_eq!(
            plan_check(&plan(
                2,
                json!({"phase": "Invalid", "observedGeneration": 2})
            )),
            PlanCheck::Invalid("the API server refused a step")
        );
    }
}

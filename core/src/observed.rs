//! What the operator reads off the cluster, in the executor's terms: a step Job's
//! outcome from its status and its pods, and whether a plan's check is current. The
//! reconciler fetches the objects; everything they are taken to mean is decided here.

use k8s_openapi::api::batch::v1::{Job, JobCondition};
use k8s_openapi::api::core::v1::{ContainerStateTerminated, Pod};

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

    /// The step's view of the Job, with how its container ended (see [`container_end`]):
    /// its exit code, and what it said as the result of a step that succeeded or appended
    /// to the message of one that failed.
    pub fn into_state(self, end: Option<ContainerEnd>) -> JobState {
        let exit_code = end.as_ref().map(|e| e.exit_code);
        match self {
            JobOutcome::Running => JobState::Running,
            JobOutcome::Succeeded { finished_at } => JobState::Succeeded {
                result: end.and_then(|e| e.message),
                exit_code,
                finished_at,
            },
            JobOutcome::Failed {
                reason,
                message,
                finished_at,
            } => {
                let mut message = format!("{reason}: {message}");
                if let Some(end) = end {
                    message.push_str(&format!("; the container exited {}", end.exit_code));
                    if let Some(said) = end.message {
                        message.push_str(&format!(" and said: {said}"));
                    }
                }
                JobState::Failed {
                    message,
                    exit_code,
                    finished_at,
                }
            }
        }
    }
}

/// How a Job's container ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerEnd {
    pub exit_code: i32,
    /// Its termination message, trimmed; None when it left none.
    pub message: Option<String>,
}

/// How the containers of a Job's pods ended, in one: the one that ended last among those
/// that exited non-zero, else the one that ended last. Its message is its own termination
/// message, else the first any container left. None while no container has ended.
pub fn container_end(pods: &[Pod]) -> Option<ContainerEnd> {
    let ended: Vec<&ContainerStateTerminated> = pods
        .iter()
        .flat_map(|p| {
            p.status
                .iter()
                .flat_map(|s| s.container_statuses.iter().flatten())
        })
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref())
        .collect();
    let last = |failed: bool| {
        ended
            .iter()
            .copied()
            .filter(|t| !failed || t.exit_code != 0)
            .max_by_key(|t| t.finished_at.as_ref().map(|at| at.0))
    };
    let chosen = last(true).or_else(|| last(false))?;
    let said = |t: &ContainerStateTerminated| {
        t.message
            .as_deref()
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(str::to_owned)
    };
    Some(ContainerEnd {
        exit_code: chosen.exit_code,
        message: said(chosen).or_else(|| ended.iter().find_map(|t| said(t))),
    })
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
            outcome.into_state(Some(ContainerEnd {
                exit_code: 0,
                message: Some("migrated 12 tables".into()),
            })),
            JobState::Succeeded {
                result: Some("migrated 12 tables".into()),
                exit_code: Some(0),
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
                exit_code: None,
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
            JobOutcome::of(&failed).into_state(Some(ContainerEnd {
                exit_code: 3,
                message: Some("table users is locked".into()),
            })),
            JobState::Failed {
                message: "BackoffLimitExceeded: Job has reached the specified backoff limit; the container exited 3 and said: table users is locked".into(),
                exit_code: Some(3),
                finished_at: at("2027-01-15T08:01:00Z"),
            }
        );
        assert_eq!(
            JobOutcome::of(&failed).into_state(Some(ContainerEnd {
                exit_code: 3,
                message: None,
            })),
            JobState::Failed {
                message: "BackoffLimitExceeded: Job has reached the specified backoff limit; the container exited 3".into(),
                exit_code: Some(3),
                finished_at: at("2027-01-15T08:01:00Z"),
            }
        );
        let bare = job(json!({"conditions": [{"type": "Failed", "status": "True"}]}));
        assert_eq!(
            JobOutcome::of(&bare).into_state(None),
            JobState::Failed {
                message: "Failed: the Job failed".into(),
                exit_code: None,
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

    /// A pod whose containers ended: (exit code, when, termination message) each.
    fn pod(ends: &[(i32, Option<&str>, Option<&str>)]) -> Pod {
        let statuses: Vec<serde_json::Value> = ends
            .iter()
            .enumerate()
            .map(|(i, (code, finished, message))| {
                let mut terminated = json!({"exitCode": code});
                if let Some(finished) = finished {
                    terminated["finishedAt"] = json!(finished);
                }
                if let Some(message) = message {
                    terminated["message"] = json!(message);
                }
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

    fn end(exit_code: i32, message: Option<&str>) -> Option<ContainerEnd> {
        Some(ContainerEnd {
            exit_code,
            message: message.map(str::to_owned),
        })
    }

    #[test]
    fn no_container_ended_while_none_terminated() {
        assert_eq!(container_end(&[]), None);
        let running: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "status": {"containerStatuses": [{"name": "c", "image": "i", "imageID": "", "ready": true,
                "restartCount": 0, "state": {"running": {}}}]},
        }))
        .unwrap();
        assert_eq!(container_end(&[running]), None);
        assert_eq!(
            job_pods_selector("ship-migrate-1"),
            "batch.kubernetes.io/job-name=ship-migrate-1"
        );
    }

    #[test]
    fn the_first_message_a_container_left_is_the_result() {
        assert_eq!(
            container_end(&[
                pod(&[(0, None, None), (0, None, Some("  \n"))]),
                pod(&[(0, None, Some(" done: 3 rows\n"))]),
            ]),
            end(0, Some("done: 3 rows"))
        );
        assert_eq!(container_end(&[pod(&[(0, None, None)])]), end(0, None));
    }

    #[test]
    fn a_container_that_exited_non_zero_says_how_it_ended() {
        // It ended before the one that exited 0, and still it is the one.
        assert_eq!(
            container_end(&[pod(&[
                (2, Some("2027-01-15T08:00:01Z"), Some("disk full")),
                (0, Some("2027-01-15T08:00:09Z"), Some("fine")),
            ])]),
            end(2, Some("disk full"))
        );
        // Among those that exited non-zero, the one that ended last.
        assert_eq!(
            container_end(&[
                pod(&[(1, Some("2027-01-15T08:00:05Z"), Some("first try"))]),
                pod(&[(
                    3,
                    Some("2027-01-15T08:01:05Z"),
                    Some("table users is locked")
                )]),
                pod(&[(0, Some("2027-01-15T08:02:05Z"), None)]),
            ]),
            end(3, Some("table users is locked"))
        );
    }

    #[test]
    fn without_a_failure_the_container_that_ended_last_says_how_it_ended() {
        assert_eq!(
            container_end(&[
                pod(&[(0, Some("2027-01-15T08:00:09Z"), Some("second"))]),
                pod(&[(0, Some("2027-01-15T08:00:01Z"), Some("first"))]),
            ]),
            end(0, Some("second"))
        );
    }

    #[test]
    fn a_container_that_said_nothing_borrows_the_first_message_left() {
        assert_eq!(
            container_end(&[
                pod(&[(0, Some("2027-01-15T08:00:01Z"), Some("copied 3 files"))]),
                pod(&[(137, Some("2027-01-15T08:00:09Z"), Some(" "))]),
            ]),
            end(137, Some("copied 3 files"))
        );
        assert_eq!(
            container_end(&[pod(&[(137, None, None)]), pod(&[(0, None, None)])]),
            end(137, None)
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

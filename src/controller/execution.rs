//! Carrying out an approved Decision's plan: observe its Jobs, ask the pure executor what
//! to do, write the audit and the status, perform the one Job action, and ask again.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use tracing::info;

use super::cluster::ApiFailure;
use super::watch::Lenient;
use super::{Context, commit, submit_job};
use crate::api::common::to_chrono;
use crate::api::decision::StepPhase;
use crate::api::execution_plan::PlanPhase;
use crate::api::{Decision, DecisionStatus, ExecutionPlan};
use crate::error::{Error, Result};
use crate::execution::{self, JobAction, JobState, PlanCheck, PlanView};

/// The most Job actions one reconcile performs before it yields to others.
const ACTIONS_PER_RECONCILE: usize = 64;

/// Runs the execution of `decision` as far as it goes now; returns when to look again.
pub async fn run(decision: &mut Decision, ctx: &Context) -> Result<Option<DateTime<Utc>>> {
    let namespace = decision.namespace().unwrap_or_default();
    let plan_name = decision
        .spec
        .plan_ref
        .as_ref()
        .map(|p| p.name.clone())
        .unwrap_or_default();
    // Read leniently: a plan whose status is unreadable is still a plan (it counts as
    // not yet checked), never an error that stops its Decision for good.
    let plans: Api<Lenient<ExecutionPlan>> = Api::namespaced(ctx.client.clone(), &namespace);
    let plan = match decision.spec.plan_ref {
        None => None,
        Some(_) => match plans.get_opt(&plan_name).await? {
            None => None,
            Some(read) => Some(read.into_inner().map_err(|bad| {
                Error::Unreadable(format!(
                    "the ExecutionPlan {plan_name} cannot be read: {}",
                    bad.why
                ))
            })?),
        },
    };
    let view = plan.as_ref().map(|p| PlanView {
        name: &plan_name,
        uid: p.metadata.uid.as_deref().unwrap_or_default(),
        generation: p.metadata.generation.unwrap_or_default(),
        spec: &p.spec,
        check: plan_check(p),
    });

    let status = decision.status.clone().unwrap_or_default();
    let mut jobs = observe(ctx, &namespace, &status).await?;
    let mut dry_runs = BTreeMap::new();
    let answers = ctx.answers();
    for _ in 0..ACTIONS_PER_RECONCILE {
        let status = decision.status.clone().unwrap_or_default();
        let advance = execution::advance(&execution::Input {
            decision,
            status: &status,
            plan: view,
            jobs: &jobs,
            dry_runs: &dry_runs,
            now: Utc::now(),
            allow_real: ctx.settings.allow_real_execution,
            answers: &answers,
        });
        if decision.status.as_ref() != Some(&advance.status) || !advance.events.is_empty() {
            let before = decision.clone();
            decision.status = Some(advance.status.clone());
            commit(ctx, &before, decision, &advance.events, "Execute").await?;
        }
        let Some(action) = advance.action else {
            return Ok(advance.wake_at);
        };
        match action {
            JobAction::Create { name, job } => {
                let state = create(ctx, &namespace, decision, &name, &job).await?;
                jobs.insert(name, state);
            }
            JobAction::DryRun { name, job } => {
                let verdict = match submit_job(&ctx.client, &namespace, &job, true).await {
                    Ok(_) => Ok(()),
                    // A 409 (AlreadyExists) is a Job of the dry run's name in the way: it
                    // would be there at every retry, and a real run would meet it too.
                    Err(kube::Error::Api(s)) if matches!(ApiFailure::of_code(s.code), f if f.is_verdict() || f == ApiFailure::Conflict) => {
                        Err(s.message)
                    }
                    Err(e) => return Err(e.into()),
                };
                dry_runs.insert(name, verdict);
            }
        }
    }
    Ok(Some(Utc::now()))
}

/// What the plan controller found for the plan's current generation.
fn plan_check(plan: &ExecutionPlan) -> PlanCheck<'_> {
    let Some(status) = plan.status.as_ref() else {
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

/// Creates a step's Job. One that already exists and belongs to this Decision counts as
/// created (a retried reconcile); one that belongs to something else fails the step.
async fn create(
    ctx: &Context,
    namespace: &str,
    decision: &Decision,
    name: &str,
    job: &serde_json::Value,
) -> Result<JobState> {
    match submit_job(&ctx.client, namespace, job, false).await {
        Ok(_) => {
            info!(job = name, namespace, "created a step Job");
            Ok(JobState::Running)
        }
        // A 409 on a create is AlreadyExists: a Job of this name is there, from an earlier
        // reconcile (it counts as created) or from something else.
        Err(kube::Error::Api(s)) if ApiFailure::of_code(s.code) == ApiFailure::Conflict => {
            let existing: Api<Job> = Api::namespaced(ctx.client.clone(), namespace);
            let found = existing.get(name).await?;
            let ours = found
                .owner_references()
                .iter()
                .any(|o| Some(&o.uid) == decision.metadata.uid.as_ref());
            if ours {
                job_state(ctx, namespace, &found).await
            } else {
                Ok(JobState::Failed {
                    message: format!(
                        "a Job named {name} already exists and does not belong to this Decision"
                    ),
                    finished_at: None,
                })
            }
        }
        Err(kube::Error::Api(s)) if ApiFailure::of_code(s.code).is_verdict() => {
            Ok(JobState::Failed {
                message: format!("the API server refused the Job: {}", s.message),
                finished_at: None,
            })
        }
        Err(e) => Err(Error::Kube(e)),
    }
}

/// Reads the Jobs the status names for steps that are not finished.
async fn observe(
    ctx: &Context,
    namespace: &str,
    status: &DecisionStatus,
) -> Result<BTreeMap<String, JobState>> {
    let mut names: Vec<String> = Vec::new();
    if let Some(execution) = &status.execution {
        let rollback = execution.rollback.iter().flat_map(|r| r.steps.iter());
        for step in execution.steps.iter().chain(rollback) {
            if matches!(step.phase, StepPhase::Pending | StepPhase::Running)
                && let Some(name) = &step.job_name
            {
                names.push(name.clone());
            }
        }
    }
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), namespace);
    let mut seen = BTreeMap::new();
    for name in names {
        let state = match api.get_opt(&name).await? {
            Some(job) => job_state(ctx, namespace, &job).await?,
            None => JobState::Missing,
        };
        seen.insert(name, state);
    }
    Ok(seen)
}

/// A Job's outcome, with its container's termination message as the step's result.
async fn job_state(ctx: &Context, namespace: &str, job: &Job) -> Result<JobState> {
    let status = job.status.clone().unwrap_or_default();
    let finished = |type_: &str| {
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == type_ && c.status == "True")
            .cloned()
    };
    if let Some(done) = finished("Complete") {
        let finished_at = status
            .completion_time
            .as_ref()
            .or(done.last_transition_time.as_ref())
            .map(|t| to_chrono(&t.0));
        return Ok(JobState::Succeeded {
            result: termination_message(ctx, namespace, &job.name_any()).await?,
            finished_at,
        });
    }
    if let Some(failed) = finished("Failed") {
        let said = termination_message(ctx, namespace, &job.name_any()).await?;
        let mut message = format!(
            "{}: {}",
            failed.reason.as_deref().unwrap_or("Failed"),
            failed.message.as_deref().unwrap_or("the Job failed")
        );
        if let Some(said) = said {
            message.push_str(&format!("; the container said: {said}"));
        }
        return Ok(JobState::Failed {
            message,
            finished_at: failed
                .last_transition_time
                .as_ref()
                .map(|t| to_chrono(&t.0)),
        });
    }
    Ok(JobState::Running)
}

async fn termination_message(ctx: &Context, namespace: &str, job: &str) -> Result<Option<String>> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let list = pods
        .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}")))
        .await?;
    let message = list
        .items
        .iter()
        .flat_map(|p| {
            p.status
                .iter()
                .flat_map(|s| s.container_statuses.iter().flatten())
        })
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.message.clone())
        .map(|m| m.trim().to_owned())
        .find(|m| !m.is_empty());
    Ok(message)
}

//! Carrying out an approved Decision's plan: observe its Jobs, ask the pure executor what
//! to do, write the audit and the status, perform the one Job action, and ask again.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::runtime::reflector;
use kube::{Api, ResourceExt};
use tracing::info;

use super::cluster::ApiFailure;
use super::watch::Lenient;
use super::{Context, commit, submit_job};
use crate::api::{Decision, DecisionStatus, ExecutionPlan};
use crate::error::{Error, Result};
use crate::events::DecisionEvent;
use crate::execution::{self, JobAction, JobState, PlanView};
use crate::observed::{self, JobOutcome};

/// The most Job actions one reconcile performs before it yields to others.
const ACTIONS_PER_RECONCILE: usize = 64;

/// A transition the reconcile has computed but not yet made count: the Decision as it is
/// stored, and the events that lead from it to the status the reconcile holds.
pub struct Unsaved {
    pub stored: Decision,
    pub events: Vec<DecisionEvent>,
}

/// The plan a Decision names, as the executor reads it.
struct Plan {
    plan: Option<ExecutionPlan>,
    /// Read from the API server by this reconcile, not taken from the cache.
    fresh: bool,
}

impl Plan {
    fn view<'a>(&'a self, name: &'a str) -> Option<PlanView<'a>> {
        self.plan.as_ref().map(|p| PlanView {
            name,
            uid: p.metadata.uid.as_deref().unwrap_or_default(),
            generation: p.metadata.generation.unwrap_or_default(),
            spec: &p.spec,
            check: observed::plan_check(p),
        })
    }

    /// The plan's identity and generation: the same pair means the same spec.
    fn version(&self) -> Option<(Option<String>, Option<i64>)> {
        self.plan
            .as_ref()
            .map(|p| (p.metadata.uid.clone(), p.metadata.generation))
    }
}

/// Runs the execution of `decision` as far as it goes now; returns when to look again.
///
/// `unsaved` is the transition the Decision's reconcile computed before (an approval,
/// say): it is made to count together with the execution's first step, in one audit
/// append and one status write. Whatever happens, it is made to count before this returns.
pub async fn run(
    decision: &mut Decision,
    unsaved: Unsaved,
    ctx: &Context,
) -> Result<Option<DateTime<Utc>>> {
    let mut unsaved = Some(unsaved);
    let outcome = execute(decision, &mut unsaved, ctx).await;
    if let Some(Unsaved { stored, events }) = unsaved {
        commit(ctx, &stored, decision, &events).await?;
    }
    outcome
}

async fn execute(
    decision: &mut Decision,
    unsaved: &mut Option<Unsaved>,
    ctx: &Context,
) -> Result<Option<DateTime<Utc>>> {
    let namespace = decision.namespace().unwrap_or_default();
    let plan_name = decision
        .spec
        .plan_ref
        .as_ref()
        .map(|p| p.name.clone())
        .unwrap_or_default();
    // The cache's copy decides what to write; before any Job action the plan is read
    // afresh, so that nothing runs from a copy the cache has not yet seen change.
    let cached = decision.spec.plan_ref.as_ref().and_then(|_| {
        ctx.plans
            .get(&reflector::ObjectRef::new(&plan_name).within(&namespace))
    });
    let mut plan = match cached {
        Some(cached) => Plan {
            plan: Some((*cached).clone()),
            fresh: false,
        },
        None => Plan {
            plan: read_plan(ctx, decision, &namespace, &plan_name).await?,
            fresh: true,
        },
    };

    let status = decision.status.clone().unwrap_or_default();
    let mut jobs = observe(ctx, &namespace, &status).await?;
    let mut dry_runs = BTreeMap::new();
    let answers = ctx.answers();
    for _ in 0..ACTIONS_PER_RECONCILE {
        let status = decision.status.clone().unwrap_or_default();
        let advance = execution::advance(&execution::Input {
            decision,
            status: &status,
            plan: plan.view(&plan_name),
            jobs: &jobs,
            dry_runs: &dry_runs,
            now: Utc::now(),
            allow_real: ctx.settings.allow_real_execution,
            answers: &answers,
        });
        let (stored, mut events) = match unsaved.take() {
            Some(Unsaved { stored, events }) => (stored, events),
            None => (decision.clone(), Vec::new()),
        };
        events.extend(advance.events);
        decision.status = Some(advance.status);
        if stored.status != decision.status || !events.is_empty() {
            commit(ctx, &stored, decision, &events).await?;
        }
        let Some(action) = advance.action else {
            return Ok(advance.wake_at);
        };
        if !plan.fresh {
            let seen = plan.version();
            plan = Plan {
                plan: read_plan(ctx, decision, &namespace, &plan_name).await?,
                fresh: true,
            };
            if plan.version() != seen {
                // The plan changed under the cache: decide again from what it is now.
                continue;
            }
        }
        match action {
            JobAction::Create { name, job } => {
                let state = create(ctx, &namespace, decision, &name, &job).await?;
                jobs.insert(name, state);
            }
            JobAction::DryRun { name, job } => {
                let verdict = match submit_job(&ctx.client, &namespace, &job, true).await {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(s)) => match ApiFailure::of_code(s.code) {
                        ApiFailure::Refused | ApiFailure::NotFound => Err(s.message),
                        // AlreadyExists: a Job of the dry run's name is in the way. It would
                        // be there at every retry, and a real run would meet it too.
                        ApiFailure::Conflict => Err(s.message),
                        _ => return Err(Error::Kube(kube::Error::Api(s))),
                    },
                    Err(e) => return Err(e.into()),
                };
                dry_runs.insert(name, verdict);
            }
        }
    }
    Ok(Some(Utc::now()))
}

/// Reads the plan from the API server. Leniently: a plan whose status is unreadable is
/// still a plan (it counts as not yet checked), never an error that stops its Decision
/// for good.
async fn read_plan(
    ctx: &Context,
    decision: &Decision,
    namespace: &str,
    name: &str,
) -> Result<Option<ExecutionPlan>> {
    if decision.spec.plan_ref.is_none() {
        return Ok(None);
    }
    let plans: Api<Lenient<ExecutionPlan>> = Api::namespaced(ctx.client.clone(), namespace);
    match plans.get_opt(name).await? {
        None => Ok(None),
        Some(read) => read.into_inner().map(Some).map_err(|bad| {
            Error::Unreadable(format!(
                "the ExecutionPlan {name} cannot be read: {}",
                bad.why
            ))
        }),
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
                    exit_code: None,
                    finished_at: None,
                })
            }
        }
        Err(kube::Error::Api(s)) if ApiFailure::of_code(s.code).is_verdict() => {
            Ok(JobState::Failed {
                message: format!("the API server refused the Job: {}", s.message),
                exit_code: None,
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
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), namespace);
    let mut seen = BTreeMap::new();
    for name in observed::jobs_to_observe(status) {
        let state = match api.get_opt(&name).await? {
            Some(job) => job_state(ctx, namespace, &job).await?,
            None => JobState::Missing,
        };
        seen.insert(name, state);
    }
    Ok(seen)
}

/// A Job's outcome, with how its container ended (exit code, termination message) once
/// it finished.
async fn job_state(ctx: &Context, namespace: &str, job: &Job) -> Result<JobState> {
    let outcome = JobOutcome::of(job);
    let end = if outcome.is_finished() {
        let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
        let selector = observed::job_pods_selector(&job.name_any());
        let list = pods.list(&ListParams::default().labels(&selector)).await?;
        observed::container_end(&list.items)
    } else {
        None
    };
    Ok(outcome.into_state(end))
}

#[cfg(test)]
mod tests;

//! The Decision reconciler.

use std::future::Future;
use std::sync::Arc;

use chrono::Utc;
use futures::{StreamExt, TryStreamExt};
use kube::ResourceExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};

use super::cached::CachedDecision;
use super::watch::{self, Changes, Watched};
use super::{Context, commit, drive, finalizer};
use crate::api::{ApprovalPolicy, Decision, DecisionPhase, ExecutionPlan};
use crate::controller;
use crate::error::{ApiFailure, Result};
use crate::events::DecisionEvent;
use crate::execution;
use crate::lifecycle;
use crate::policy::Policy;
use crate::reminders;
use k8s_openapi::api::batch::v1::Job;

const KIND: &str = "Decision";

pub async fn run(
    ctx: Arc<Context>,
    policy_changes: Changes<ApprovalPolicy>,
    plan_changes: Changes<ExecutionPlan>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let (decisions, writer) = reflector::store::<CachedDecision>();
    let progress = ctx.progress.clone();
    let changes = watch::watch::<Decision>(
        &ctx.client,
        ctx.settings.namespace.as_deref(),
        // Listed consistently (from etcd or a cache proven current), never from a possibly
        // stale watch cache: a Decision answered a moment ago must not look unanswered.
        watcher::Config::default(),
    )
    // The cache holds Decisions packed; a reconcile unpacks its own.
    .map_ok(packed)
    .reflect(writer)
    .applied_objects()
    // The operator's own status write coming back is not reconciled again: the store
    // has it, and the reconcile that wrote it went on from it.
    .try_filter({
        let ctx = ctx.clone();
        move |decision| {
            let echo = ctx.echoes.is_echo(decision);
            if echo {
                ctx.metrics.echoes_skipped.inc();
            }
            std::future::ready(!echo)
        }
    })
    .inspect(move |_| progress.queued(KIND, std::time::Instant::now()));
    let controller = Controller::for_stream(changes, decisions.clone());
    let waiting_for_plan = decisions.clone();
    let counted = decisions.clone();
    let metrics = ctx.metrics.clone();
    let counter = tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            tick.tick().await;
            metrics.count_phases(counted.state().iter().map(|d| d.phase));
        }
    });
    let jobs = ctx.api::<Job>().clone();
    let controller = controller
        // The step Jobs a Decision owns wake it when they finish.
        .owns(
            jobs,
            watcher::Config::default().labels("app.kubernetes.io/managed-by=decision-gate"),
        )
        // A plan that appears is pinned by the Decisions that wait for it; one that is
        // fixed starts the approved Decisions that wait for it.
        .watches_stream(plan_changes, move |plan: ExecutionPlan| {
            let namespace = plan.namespace();
            let name = plan.name_any();
            waiting_for_plan
                .state()
                .into_iter()
                .filter(|d| d.namespace() == namespace)
                .filter(|d| d.plan.as_deref() == Some(name.as_str()) && !d.executing)
                .map(|d| ObjectRef::from(d.as_ref()))
                .collect::<Vec<_>>()
        })
        // A policy change re-evaluates the Decisions of its namespace that still wait.
        .watches_stream(policy_changes, move |policy: ApprovalPolicy| {
            let namespace = policy.namespace();
            decisions
                .state()
                .into_iter()
                .filter(|d| d.namespace() == namespace)
                .filter(|d| d.phase.is_none_or(DecisionPhase::is_awaiting_answer))
                .map(|d| ObjectRef::from(d.as_ref()))
                .collect::<Vec<_>>()
        });
    // Whether answers count changed: every Decision says so again.
    let controller = controller.reconcile_all_on(super::admission::changes(ctx.answers.clone()));
    drive(controller, KIND, reconcile, ctx, shutdown).await;
    counter.abort();
}

async fn reconcile(cached: Arc<CachedDecision>, ctx: Arc<Context>) -> Result<Action> {
    let decision = cached.unpack()?;
    if decision.metadata.deletion_timestamp.is_some() {
        finalizer::release(&decision, &ctx).await?;
        return Ok(Action::await_change());
    }
    finalizer::ensure(&decision, &ctx).await?;
    if let Some(why) = decision.status_unreadable() {
        let (status, events) = execution::status_unreadable(why, Utc::now());
        let mut failed = decision.clone();
        failed.status = Some(status);
        commit(&ctx, &decision, &failed, &events).await?;
        return Ok(Action::await_change());
    }
    let namespace = decision.namespace();
    let policies: Vec<Arc<ApprovalPolicy>> = ctx
        .policies
        .state()
        .into_iter()
        .filter(|p| p.namespace() == namespace)
        .collect();
    let views: Vec<Policy<'_>> = policies.iter().map(|p| Policy::of(p)).collect();
    let plan = decision.spec.plan_ref.as_ref().and_then(|r| {
        ctx.plans.get(
            &reflector::ObjectRef::new(&r.name).within(namespace.as_deref().unwrap_or_default()),
        )
    });
    // Before a new Decision is evaluated, the API server judges the Jobs its plan would
    // create for it, so that nobody approves what could never run.
    let jobs = match plan.as_deref() {
        Some(plan)
            if decision.status.as_ref().and_then(|s| s.phase).is_none()
                && plan.spec.unreadable.is_none() =>
        {
            Some(check_jobs(&decision, plan, &ctx).await?)
        }
        _ => None,
    };
    let now = Utc::now();
    let mut advance = lifecycle::advance(&lifecycle::Input {
        decision: &decision,
        policies: &views,
        now,
        default_expiry: ctx.settings.default_expiry,
        plan: plan.as_deref(),
        answers: &ctx.answers(),
        expressions: &ctx.expressions,
        jobs: jobs.as_ref(),
    });
    let announced = advance.events.iter().any(|e| {
        matches!(
            e,
            DecisionEvent::ApprovalRequested { .. } | DecisionEvent::Escalated { .. }
        )
    });
    let reminded = reminders::remind(&ctx.reminders(), &mut advance.status, announced, now);
    advance.events.extend(reminded.events);

    let mut current = decision.clone();
    current.status = Some(advance.status.clone());
    let mut wake_at = earliest(advance.wake_at, reminded.wake_at);
    if execution::applies(&current, &advance.status) {
        // An approval and the start of its plan count together: one audit append and one
        // status write before the first Job is created.
        let unsaved = controller::execution::Unsaved {
            stored: decision,
            events: advance.events,
        };
        let executor = controller::execution::run(&mut current, unsaved, &ctx).await?;
        // The earlier of the two: an approval may lapse while the plan waits to start.
        wake_at = earliest(wake_at, executor);
    } else {
        commit(&ctx, &decision, &current, &advance.events).await?;
    }
    Ok(match wake_at {
        Some(at) => Action::requeue((at - Utc::now()).to_std().unwrap_or_default()),
        None => Action::await_change(),
    })
}

/// Asks the API server, with a server-side dry run, about each Job `plan` would create for
/// a new `decision`: the first it refuses decides. A refusal of the Job itself (malformed,
/// too large) is lasting, since neither the Decision nor its pinned plan may change; any
/// other (forbidden, over a quota, an admission webhook's verdict) may pass.
async fn check_jobs(
    decision: &Decision,
    plan: &ExecutionPlan,
    ctx: &Context,
) -> Result<lifecycle::JobsCheck> {
    use crate::execution::precheck;
    use lifecycle::JobsCheck;
    let namespace = decision.namespace().unwrap_or_default();
    let jobs = precheck::jobs_to_check(decision, plan, ctx.settings.allow_real_execution);
    if let Some((job, message)) = precheck::beyond_limits(decision, &jobs) {
        return Ok(JobsCheck::Invalid { job, message });
    }
    for precheck::JobToCheck { what, job } in jobs {
        match controller::cluster::submit_job(&ctx.client, &namespace, &job, true).await {
            Ok(_) => {}
            // A Job of that name exists: what it is, is the executor's to find out.
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(kube::Error::Api(s)) if ApiFailure::of_code(s.code).is_verdict() => {
                let message = s.message;
                return Ok(if matches!(s.code, 400 | 413 | 422) {
                    JobsCheck::Invalid { job: what, message }
                } else {
                    JobsCheck::Refused { job: what, message }
                });
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(JobsCheck::Admitted)
}

/// A watch event with its Decision packed for the cache.
fn packed(event: watcher::Event<Decision>) -> watcher::Event<CachedDecision> {
    use watcher::Event;
    match event {
        Event::Apply(d) => Event::Apply(CachedDecision::pack(d)),
        Event::Delete(d) => Event::Delete(CachedDecision::pack(d)),
        Event::InitApply(d) => Event::InitApply(CachedDecision::pack(d)),
        Event::Init => Event::Init,
        Event::InitDone => Event::InitDone,
    }
}

fn earliest(
    a: Option<chrono::DateTime<Utc>>,
    b: Option<chrono::DateTime<Utc>>,
) -> Option<chrono::DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests;

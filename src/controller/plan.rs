//! The ExecutionPlan reconciler: submits every step's Job (and rollback Job) to the API
//! server with a server-side dry run, and reports the verdict on the plan's status.

use std::future::Future;
use std::sync::Arc;

use chrono::Utc;
use futures::StreamExt;
use kube::ResourceExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::Store;
use tracing::info;

use super::cluster::ApiFailure;
use super::watch::{Changes, Watched};
use super::{Context, apply_status, drive, replace_status, submit_job};
use crate::api::ExecutionPlan;
use crate::api::execution_plan::PlanPhase;
use crate::error::{Error, Result};
use crate::jobs::{self, StepJob};
use crate::plan::{self, JobCheck};

const KIND: &str = "ExecutionPlan";

/// How often a plan is checked again although it did not change: what the API server
/// admits can change with admission policies, quotas and Kubernetes upgrades.
const RECHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

pub async fn run(
    ctx: Arc<Context>,
    store: Store<ExecutionPlan>,
    changes: Changes<ExecutionPlan>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let progress = ctx.progress.clone();
    let changes = changes.inspect(move |_| progress.queued(KIND, std::time::Instant::now()));
    let controller = Controller::for_stream(changes, store);
    drive(controller, KIND, reconcile, ctx, shutdown).await;
}

async fn reconcile(obj: Arc<ExecutionPlan>, ctx: Arc<Context>) -> Result<Action> {
    let now = Utc::now();
    let max_age = chrono::Duration::from_std(RECHECK_EVERY).expect("a small duration");
    if plan::check_is_current(&obj, now, max_age) {
        return Ok(Action::requeue(RECHECK_EVERY));
    }
    let namespace = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let context = serde_json::json!({});
    let mut checks = Vec::new();
    for step in &obj.spec.steps {
        let mut candidates = vec![(false, &step.template, step.timeout_seconds)];
        if let Some(rollback) = &step.rollback {
            candidates.push((true, &rollback.template, rollback.timeout_seconds));
        }
        for (rollback, template, timeout_seconds) in candidates {
            let job = jobs::build(&StepJob {
                name: check_name_prefix(&name, &step.name),
                generate_name: true,
                namespace: &namespace,
                decision: "plan-check",
                decision_uid: None,
                plan: &name,
                step: &step.name,
                purpose: if rollback { "rollback" } else { "step" },
                mode: obj.spec.mode,
                context: &context,
                template,
                timeout_seconds,
            });
            let verdict = match submit_job(&ctx.client, &namespace, &job, true).await {
                Ok(_) => Ok(()),
                // The verdict on the Job itself: invalid, forbidden by an admission
                // policy, or for a namespace that is not there.
                Err(kube::Error::Api(s)) if ApiFailure::of_code(s.code).is_verdict() => {
                    Err(s.message)
                }
                // Anything else is a failure to ask, retried. A 409 (AlreadyExists) is a
                // generated name that met an existing Job's: the next check generates another.
                Err(e) => return Err(Error::Kube(e)),
            };
            checks.push(JobCheck {
                step: step.name.clone(),
                rollback,
                verdict,
            });
        }
    }
    let previous = obj.status.as_ref().and_then(|s| s.phase);
    let status = plan::status_after_check(&obj, &checks, now);
    let written = if obj.status_unreadable().is_some() {
        // Server-side apply would leave the unreadable fields in place.
        replace_status(obj.as_ref(), &ctx.client, &status).await
    } else {
        apply_status(obj.as_ref(), &ctx.client, &status).await
    };
    ctx.status_write(KIND, written)?;

    if status.phase != previous {
        let message = status
            .conditions
            .first()
            .map(|c| c.message.clone())
            .unwrap_or_default();
        info!(%name, %namespace, phase = status.phase.map(|p| format!("{p:?}")).unwrap_or_default(), %message, "plan checked");
        let (type_, reason) = match status.phase {
            Some(PlanPhase::Invalid) => (EventType::Warning, "Invalid"),
            _ => (EventType::Normal, "Validated"),
        };
        ctx.publish(obj.as_ref(), type_, reason, "Validate", message);
    }
    Ok(Action::requeue(RECHECK_EVERY))
}

/// The prefix of a checked Job's generated name: short enough for the five random
/// characters the API server adds, and a valid name.
fn check_name_prefix(plan: &str, step: &str) -> String {
    crate::bounded::prefix(&format!("{plan}-{step}"), 50)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::testing::{
        self, JOBS, object_path, patch, post, reasons, reconciled, scripted,
    };
    use serde_json::json;

    fn status_path() -> String {
        format!("{}/status", object_path("executionplans", "deploy"))
    }

    /// The dry run of the step `migrate` of the plan `deploy`.
    fn dry_run() -> testing::Expect {
        post(JOBS)
            .query("dryRun=All")
            .query("fieldValidation=Strict")
            .query("fieldManager=decision-gate")
            .body(|job| {
                assert_eq!(job["metadata"]["generateName"], "deploy-migrate-");
                assert_eq!(job["metadata"]["labels"]["decisiongate.io/step"], "migrate");
                assert_eq!(
                    job["spec"]["template"]["spec"]["containers"][0]["image"],
                    "busybox"
                );
            })
    }

    #[tokio::test]
    async fn a_plan_the_api_server_refuses_says_why() {
        let refusal = "Job.batch \"deploy-migrate-x7k2p\" is invalid: spec.template.spec.containers[0].image: Required value";
        let (client, server) = scripted(vec![
            dry_run().fail(422, "Invalid", refusal),
            patch(&status_path())
                .query("fieldManager=decision-gate")
                .body(move |body| {
                    let status = &body["status"];
                    assert_eq!(status["phase"], "Invalid");
                    assert_eq!(status["observedGeneration"], 1);
                    let ready = &status["conditions"][0];
                    assert_eq!(ready["status"], "False");
                    assert_eq!(ready["reason"], "Invalid");
                    let message = ready["message"].as_str().unwrap();
                    assert!(message.starts_with("the API server refused "), "{message}");
                    assert!(message.contains("migrate"), "{message}");
                    assert!(message.ends_with(refusal), "{message}");
                }),
        ]);
        let plan = testing::plan("deploy", "Real", &["migrate"]);
        let dir = tempfile::tempdir().unwrap();
        let ctx = Context::for_tests(client, dir.path());
        let (action, events) = reconciled(ctx, server, |ctx| reconcile(Arc::new(plan), ctx)).await;
        assert_eq!(action.unwrap(), Action::requeue(RECHECK_EVERY));
        assert_eq!(reasons(&events), ["Invalid"]);
        assert_eq!(events[0].type_.as_deref(), Some("Warning"));
    }

    #[tokio::test]
    async fn a_plan_the_api_server_admits_is_ready() {
        let (client, server) = scripted(vec![
            dry_run().answer(201, json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "deploy-migrate-x7k2p"}})),
            patch(&status_path()).body(|body| {
                assert_eq!(body["status"]["phase"], "Ready");
                assert_eq!(body["status"]["stepCount"], 1);
                assert_eq!(body["status"]["conditions"][0]["status"], "True");
            }),
        ]);
        let plan = testing::plan("deploy", "Real", &["migrate"]);
        let dir = tempfile::tempdir().unwrap();
        let ctx = Context::for_tests(client, dir.path());
        let (action, events) = reconciled(ctx, server, |ctx| reconcile(Arc::new(plan), ctx)).await;
        assert_eq!(action.unwrap(), Action::requeue(RECHECK_EVERY));
        assert_eq!(reasons(&events), ["Validated"]);
    }

    #[tokio::test]
    async fn a_check_the_api_server_could_not_answer_is_retried_and_nothing_is_written() {
        for (code, reason, category) in [
            (503, "ServiceUnavailable", "Unavailable"),
            (429, "TooManyRequests", "Throttled"),
            // The name generated for the check met an existing Job's.
            (409, "AlreadyExists", "Conflict"),
        ] {
            let (client, server) = scripted(vec![dry_run().fail(code, reason, "try again")]);
            let plan = testing::plan("deploy", "Real", &["migrate"]);
            let dir = tempfile::tempdir().unwrap();
            let ctx = Context::for_tests(client, dir.path());
            let (action, events) =
                reconciled(ctx, server, |ctx| reconcile(Arc::new(plan), ctx)).await;
            assert_eq!(action.unwrap_err().category(), category);
            assert!(events.is_empty());
        }
    }

    #[tokio::test]
    async fn a_plan_checked_for_its_generation_lately_is_not_checked_again() {
        let mut plan = testing::plan("deploy", "Real", &["migrate"]);
        plan.status = Some(crate::api::ExecutionPlanStatus {
            phase: Some(PlanPhase::Ready),
            observed_generation: Some(1),
            checked_at: Some(Utc::now()),
            ..Default::default()
        });
        let (client, server) = scripted(vec![]);
        let dir = tempfile::tempdir().unwrap();
        let ctx = Context::for_tests(client, dir.path());
        let (action, events) = reconciled(ctx, server, |ctx| reconcile(Arc::new(plan), ctx)).await;
        assert_eq!(action.unwrap(), Action::requeue(RECHECK_EVERY));
        assert!(events.is_empty());
    }

    #[test]
    fn check_names_stay_short_and_valid() {
        let prefix = check_name_prefix(&"p".repeat(60), "step");
        assert!(prefix.len() <= 50);
        assert_eq!(
            check_name_prefix("deploy", "migrate-db"),
            "deploy-migrate-db"
        );
        let cut = check_name_prefix(&format!("{}-x", "a".repeat(49)), "s");
        assert!(!cut.ends_with('-'), "{cut}");
    }
}

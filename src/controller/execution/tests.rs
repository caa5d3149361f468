//! Carrying out a plan against a scripted API server: each step's Job is created once,
//! and what the Job says becomes the step's outcome.

use chrono::Utc;
use serde_json::{Value, json};

use super::{Unsaved, run};
use crate::admission::Answers;
use crate::api::{Decision, DecisionPhase, ExecutionPlan};
use crate::controller::Context;
use crate::controller::testing::{
    self, ApiServer, Expect, JOBS, NS, get, object_path, patch, post, reasons, reconciled, scripted,
};
use crate::lifecycle;
use crate::policy::Policy;

/// The name of the Job of the first attempt at the step `migrate`.
const JOB: &str = "ship-migrate-1";

/// The plan `deploy` of `mode` with the one step `migrate`, checked and Ready.
fn checked_plan(mode: &str) -> ExecutionPlan {
    let mut plan = testing::plan("deploy", mode, &["migrate"]);
    plan.status = Some(crate::api::ExecutionPlanStatus {
        phase: Some(crate::api::execution_plan::PlanPhase::Ready),
        observed_generation: Some(1),
        checked_at: Some(Utc::now()),
        ..Default::default()
    });
    plan
}

/// The Decision `ship`, approved by policy with the plan pinned.
fn approved(plan: &ExecutionPlan) -> Decision {
    let policy = testing::policy("gate", json!([{"name": "all", "outcome": "AutoApprove"}]));
    let mut decision = testing::decision("ship", "Normal", Some("deploy"));
    let advance = lifecycle::advance(&lifecycle::Input {
        decision: &decision,
        policies: &[Policy::of(&policy)],
        now: Utc::now(),
        default_expiry: std::time::Duration::from_secs(3600),
        plan: Some(plan),
        answers: &Answers::Verified,
        expressions: &Default::default(),
        jobs: None,
    });
    assert_eq!(advance.status.phase, Some(DecisionPhase::Approved));
    decision.status = Some(advance.status);
    decision
}

fn read_plan(plan: &ExecutionPlan) -> Expect {
    get(&object_path("executionplans", "deploy")).answer(200, serde_json::to_value(plan).unwrap())
}

fn write_status(check: impl FnOnce(&Value) + Send + 'static) -> Expect {
    patch(&format!("{}/status", object_path("decisions", "ship")))
        .query("fieldManager=decision-gate")
        .body(move |body| check(&body["status"]))
}

/// The status write that starts the execution: the step waits for its Job.
fn started() -> Expect {
    write_status(|status| {
        assert_eq!(status["phase"], "Executing");
        assert_eq!(status["execution"]["mode"], "Real");
        assert_eq!(status["execution"]["steps"][0]["jobName"], JOB);
    })
}

/// The real creation of the step's Job, owned by the Decision.
fn create_job() -> Expect {
    post(JOBS)
        .query("fieldValidation=Strict")
        .query("fieldManager=decision-gate")
        .query_lacks("dryRun=All")
        .body(|job| {
            assert_eq!(job["metadata"]["name"], JOB);
            assert_eq!(job["metadata"]["ownerReferences"][0]["uid"], "ship-uid");
            assert_eq!(job["metadata"]["labels"]["decisiongate.io/step"], "migrate");
        })
}

fn job(owner: &str, status: Value) -> Value {
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {
            "name": JOB, "namespace": NS,
            "ownerReferences": [{"apiVersion": "decisiongate.io/v1alpha1", "kind": "Decision",
                                 "name": "ship", "uid": owner, "controller": true}],
        },
        "status": status,
    })
}

fn read_job() -> Expect {
    get(&format!("{JOBS}/{JOB}"))
}

fn already_exists() -> Expect {
    create_job().fail(
        409,
        "AlreadyExists",
        &format!("jobs.batch \"{JOB}\" already exists"),
    )
}

fn step(status: &Value) -> &Value {
    &status["execution"]["steps"][0]
}

/// Runs the executor for `decision` with nothing else unsaved.
async fn run_alone(
    decision: &mut Decision,
    ctx: &Context,
) -> crate::error::Result<Option<chrono::DateTime<Utc>>> {
    let unsaved = Unsaved {
        stored: decision.clone(),
        events: Vec::new(),
    };
    run(decision, unsaved, ctx).await
}

/// Runs the executor once for `decision` against the scripted server, then verifies the
/// script: the outcome and the Events created.
async fn executed(
    decision: &mut Decision,
    client: kube::Client,
    server: ApiServer,
) -> (
    crate::error::Result<Option<chrono::DateTime<Utc>>>,
    Vec<k8s_openapi::api::events::v1::Event>,
) {
    executed_with_cache(decision, Vec::new(), client, server).await
}

/// [`executed`], with `cached` in the cache of ExecutionPlans.
async fn executed_with_cache(
    decision: &mut Decision,
    cached: Vec<ExecutionPlan>,
    client: kube::Client,
    server: ApiServer,
) -> (
    crate::error::Result<Option<chrono::DateTime<Utc>>>,
    Vec<k8s_openapi::api::events::v1::Event>,
) {
    let dir = tempfile::tempdir().unwrap();
    let ctx = Context::for_tests(client, dir.path()).with_plans(cached);
    reconciled(
        ctx,
        server,
        |ctx| async move { run_alone(decision, &ctx).await },
    )
    .await
}

#[tokio::test]
async fn an_approved_plan_creates_its_step_job_once_and_waits_for_it() {
    let plan = checked_plan("Real");
    let mut decision = approved(&plan);
    let (client, server) = scripted(vec![
        read_plan(&plan),
        started(),
        create_job().answer(201, job("ship-uid", json!({}))),
        write_status(|status| {
            assert_eq!(status["phase"], "Executing");
            assert_eq!(step(status)["phase"], "Running");
        }),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let ctx = Context::for_tests(client, dir.path());
    let (wake_at, events) = reconciled(ctx, server, |ctx| async move {
        let wake_at = run_alone(&mut decision, &ctx).await;
        (wake_at, decision)
    })
    .await;
    let (wake_at, decision) = wake_at;
    // A Job's change wakes the Decision; nothing else needs to.
    assert_eq!(wake_at.unwrap(), None);
    assert_eq!(reasons(&events), ["ExecutionStarted", "StepStarted"]);

    // Looked at again, the Job is read, not created a second time.
    let mut decision = decision;
    let (client, server) = scripted(vec![
        read_plan(&plan),
        read_job().answer(200, job("ship-uid", json!({"active": 1}))),
    ]);
    let ctx = Context::for_tests(client, dir.path());
    let (wake_at, events) = reconciled(ctx, server, |ctx| async move {
        run_alone(&mut decision, &ctx).await
    })
    .await;
    assert_eq!(wake_at.unwrap(), None);
    assert!(events.is_empty());
}

#[tokio::test]
async fn a_plan_changed_where_the_cache_has_not_seen_it_runs_nothing() {
    let plan = checked_plan("Real");
    let mut decision = approved(&plan);
    // What the API server holds by the time the Job would be created: a new image.
    let mut edited = plan.clone();
    edited.metadata.generation = Some(2);
    edited.spec.steps[0].template["spec"]["containers"][0]["image"] = json!("evil:latest");
    let (client, server) = scripted(vec![
        // Decided from the cache's copy, which is what was pinned.
        started(),
        // Read afresh before the Job: it changed, so no Job is created.
        read_plan(&edited),
        write_status(|status| {
            assert_eq!(status["phase"], "Failed");
            assert_eq!(step(status)["phase"], "Skipped");
            let message = status["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == "Executed")
                .unwrap()["message"]
                .as_str()
                .unwrap()
                .to_owned();
            assert!(message.contains("changed while it ran"), "{message}");
        }),
    ]);
    let (wake_at, events) = executed_with_cache(&mut decision, vec![plan], client, server).await;
    assert_eq!(wake_at.unwrap(), None);
    assert_eq!(reasons(&events), ["ExecutionStarted", "ExecutionFailed"]);
}

#[tokio::test]
async fn a_plan_the_cache_holds_is_read_afresh_once_and_its_job_created() {
    let plan = checked_plan("Real");
    let mut decision = approved(&plan);
    let (client, server) = scripted(vec![
        started(),
        read_plan(&plan),
        create_job().answer(201, job("ship-uid", json!({}))),
        write_status(|status| assert_eq!(step(status)["phase"], "Running")),
    ]);
    let (wake_at, events) = executed_with_cache(&mut decision, vec![plan], client, server).await;
    assert_eq!(wake_at.unwrap(), None);
    assert_eq!(reasons(&events), ["ExecutionStarted", "StepStarted"]);
}

#[tokio::test]
async fn a_job_that_already_exists_and_is_ours_counts_as_created_and_its_outcome_is_read() {
    let plan = checked_plan("Real");
    let mut decision = approved(&plan);
    let pods = json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [{
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("{JOB}-abcde")},
        "status": {"containerStatuses": [{"name": "main", "image": "busybox", "imageID": "",
            "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "message": "migrated 12 tables\n"}}}]},
    }]});
    let (client, server) = scripted(vec![
        read_plan(&plan),
        started(),
        already_exists(),
        read_job().answer(
            200,
            job(
                "ship-uid",
                json!({"completionTime": "2027-01-15T08:00:05Z", "conditions": [
                    {"type": "Complete", "status": "True", "lastTransitionTime": "2027-01-15T08:00:05Z"},
                ]}),
            ),
        ),
        get(&format!("/api/v1/namespaces/{NS}/pods"))
            .query("labelSelector=batch.kubernetes.io%2Fjob-name%3Dship-migrate-1")
            .answer(200, pods),
        write_status(|status| {
            assert_eq!(status["phase"], "Succeeded");
            assert_eq!(step(status)["phase"], "Succeeded");
            assert_eq!(step(status)["result"], "migrated 12 tables");
            assert_eq!(step(status)["finishedAt"], "2027-01-15T08:00:05Z");
        }),
    ]);
    let (wake_at, events) = executed(&mut decision, client, server).await;
    assert_eq!(wake_at.unwrap(), None);
    assert_eq!(
        reasons(&events),
        [
            "ExecutionStarted",
            "StepStarted",
            "StepExecuted",
            "ExecutionCompleted"
        ]
    );
}

#[tokio::test]
async fn a_job_of_the_same_name_that_is_not_ours_fails_the_step() {
    let plan = checked_plan("Real");
    let mut decision = approved(&plan);
    let (client, server) = scripted(vec![
        read_plan(&plan),
        started(),
        already_exists(),
        read_job().answer(200, job("someone-else", json!({}))),
        write_status(|status| {
            assert_eq!(status["phase"], "Failed");
            assert_eq!(step(status)["phase"], "Failed");
            assert_eq!(
                step(status)["message"],
                format!("a Job named {JOB} already exists and does not belong to this Decision")
            );
        }),
    ]);
    let (wake_at, events) = executed(&mut decision, client, server).await;
    wake_at.unwrap();
    assert!(
        reasons(&events).contains(&"StepFailed"),
        "{:?}",
        reasons(&events)
    );
}

#[tokio::test]
async fn a_job_the_api_server_refuses_fails_the_step_and_one_it_cannot_answer_is_retried() {
    let plan = checked_plan("Real");
    let mut decision = approved(&plan);
    let (client, server) = scripted(vec![
        read_plan(&plan),
        started(),
        create_job().fail(
            403,
            "Forbidden",
            "jobs.batch \"ship-migrate-1\" is forbidden: exceeded quota: jobs",
        ),
        write_status(|status| {
            assert_eq!(step(status)["phase"], "Failed");
            let message = step(status)["message"].as_str().unwrap().to_owned();
            assert!(message.contains("the API server refused the Job: jobs.batch \"ship-migrate-1\" is forbidden: exceeded quota"), "{message}");
        }),
    ]);
    let (wake_at, _) = executed(&mut decision, client, server).await;
    wake_at.unwrap();

    let mut decision = approved(&plan);
    let (client, server) = scripted(vec![
        read_plan(&plan),
        started(),
        create_job().fail(503, "ServiceUnavailable", "etcd is not answering"),
    ]);
    let (wake_at, events) = executed(&mut decision, client, server).await;
    assert_eq!(wake_at.unwrap_err().category(), "Unavailable");
    assert_eq!(reasons(&events), ["ExecutionStarted"]);
}

#[tokio::test]
async fn a_dry_run_whose_job_name_is_taken_reports_the_step_refused() {
    let plan = checked_plan("DryRun");
    let mut decision = approved(&plan);
    let (client, server) = scripted(vec![
        read_plan(&plan),
        write_status(|status| assert_eq!(status["phase"], "Executing")),
        post(JOBS)
            .query("dryRun=All")
            .body(|job| assert_eq!(job["metadata"]["name"], "ship-migrate-dry-run"))
            .fail(
                409,
                "AlreadyExists",
                "jobs.batch \"ship-migrate-dry-run\" already exists",
            ),
        write_status(|status| {
            assert_eq!(status["phase"], "Failed");
            assert_eq!(
                step(status)["message"],
                "the API server refused the step's Job: jobs.batch \"ship-migrate-dry-run\" already exists"
            );
        }),
    ]);
    let (wake_at, _) = executed(&mut decision, client, server).await;
    wake_at.unwrap();
}

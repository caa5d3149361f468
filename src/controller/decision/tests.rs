//! The Decision reconciler against a scripted API server.

use std::sync::Arc;

use chrono::Utc;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use serde_json::{Value, json};

use super::reconcile;
use crate::admission::Answers;
use crate::api::{ApprovalPolicy, Decision};
use crate::controller::Context;
use crate::controller::cached::CachedDecision;
use crate::controller::testing::{self, object_path, patch, put, reasons, reconciled, scripted};
use crate::lifecycle;
use crate::policy::Policy;

fn status_path() -> String {
    format!("{}/status", object_path("decisions", "ship"))
}

/// A policy that asks alice.
fn ask_alice() -> ApprovalPolicy {
    testing::policy(
        "gate",
        json!([{"name": "people", "outcome": "RequireApproval", "approvers": {"users": ["alice"]}}]),
    )
}

/// The condition of `type_` in a status as written.
fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == type_))
        .unwrap_or_else(|| panic!("no condition {type_} in {status}"))
}

fn audit_lines(dir: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn a_new_decision_is_evaluated_written_pending_and_announced() {
    let (client, server) = scripted(vec![
        patch(&status_path())
            .query("fieldManager=decision-gate")
            .query("force=true")
            .body(|body| {
                assert_eq!(body["kind"], "Decision");
                let status = &body["status"];
                assert_eq!(status["phase"], "Pending");
                assert_eq!(status["evaluation"]["policy"], "gate");
                assert_eq!(status["evaluation"]["rule"], "people");
                assert_eq!(status["evaluation"]["outcome"], "RequireApproval");
                assert_eq!(status["observedGeneration"], 1);
                assert!(status["expiresAt"].is_string(), "{status}");
                assert_eq!(condition(status, "Approved")["status"], "Unknown");
                assert_eq!(condition(status, "AnswersVerified")["status"], "True");
            }),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let ctx = Context::for_tests(client, dir.path()).with_policies(vec![ask_alice()]);
    let decision = testing::decision("ship", "High", None);
    let (action, events) = reconciled(ctx, server, |ctx| {
        reconcile(Arc::new(CachedDecision::pack(decision)), ctx)
    })
    .await;
    // It is looked at again when it would expire.
    assert_ne!(action.unwrap(), Action::await_change());
    assert_eq!(
        reasons(&events),
        ["Requested", "PolicyEvaluated", "ApprovalRequested"]
    );
    let regarding = events[0].regarding.as_ref().unwrap();
    assert_eq!(regarding.name.as_deref(), Some("ship"));
    assert_eq!(regarding.uid.as_deref(), Some("ship-uid"));
    // Each transition announced is on disk first.
    assert_eq!(audit_lines(dir.path()).len(), events.len());
}

/// `decision` as it stands once evaluated against `policies` with answers verified.
fn evaluated(mut decision: Decision, policies: &[ApprovalPolicy]) -> Decision {
    let views: Vec<Policy<'_>> = policies.iter().map(Policy::of).collect();
    let advance = lifecycle::advance(&lifecycle::Input {
        decision: &decision,
        policies: &views,
        now: Utc::now(),
        default_expiry: std::time::Duration::from_secs(3600),
        plan: None,
        answers: &Answers::Verified,
        expressions: &Default::default(),
        jobs: None,
    });
    decision.status = Some(advance.status);
    decision
}

#[tokio::test]
async fn an_approval_given_while_answers_are_unverified_does_not_count() {
    let policies = vec![ask_alice()];
    let mut decision = evaluated(testing::decision("ship", "High", None), &policies);
    decision
        .annotations_mut()
        .insert("approved-by".into(), "alice".into());
    let why = "the ValidatingAdmissionPolicy decision-gate-answers is not installed";
    let (client, server) = scripted(vec![patch(&status_path()).body(move |body| {
        let status = &body["status"];
        assert_eq!(status["phase"], "Pending");
        assert!(
            status["approvals"].as_array().is_none_or(Vec::is_empty),
            "{status}"
        );
        let ignored = &status["ignoredAnswers"][0];
        assert_eq!(ignored["user"], "alice");
        assert_eq!(ignored["answer"], "approval");
        assert_eq!(ignored["unverified"], true);
        let verified = condition(status, "AnswersVerified");
        assert_eq!(verified["status"], "False");
        assert_eq!(verified["reason"], "PoliciesNotInForce");
        assert!(
            verified["message"].as_str().unwrap().ends_with(why),
            "{verified}"
        );
    })]);
    let dir = tempfile::tempdir().unwrap();
    let ctx = Context::for_tests(client, dir.path())
        .with_policies(policies)
        .with_answers(Answers::Unverified(why.into()));
    let (action, events) = reconciled(ctx, server, |ctx| {
        reconcile(Arc::new(CachedDecision::pack(decision)), ctx)
    })
    .await;
    assert_ne!(action.unwrap(), Action::await_change());
    assert_eq!(reasons(&events), ["AnswerIgnored"]);
    assert_eq!(events[0].type_.as_deref(), Some("Warning"));
}

#[tokio::test]
async fn a_decision_with_nothing_new_is_not_written_again() {
    let policies = vec![ask_alice()];
    let decision = evaluated(testing::decision("ship", "High", None), &policies);
    let (client, server) = scripted(vec![]);
    let dir = tempfile::tempdir().unwrap();
    let ctx = Context::for_tests(client, dir.path()).with_policies(policies);
    let (action, events) = reconciled(ctx, server, |ctx| {
        reconcile(Arc::new(CachedDecision::pack(decision)), ctx)
    })
    .await;
    action.unwrap();
    assert!(events.is_empty());
    assert!(audit_lines(dir.path()).is_empty());
}

#[tokio::test]
async fn a_decision_whose_status_cannot_be_read_fails_and_its_status_is_replaced_whole() {
    use crate::controller::watch::Watched;
    let mut decision = testing::decision("ship", "High", None);
    decision.mark_status_unreadable("the status cannot be read: invalid type".into());
    let (client, server) = scripted(vec![
        put(&status_path())
            .query("fieldManager=decision-gate")
            .body(|body| {
                // Conditional on the version read, so that a status written meanwhile stays.
                assert_eq!(body["metadata"]["resourceVersion"], "7");
                assert_eq!(body["status"]["phase"], "Failed");
            }),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let ctx = Context::for_tests(client, dir.path());
    let (action, events) = reconciled(ctx, server, |ctx| {
        reconcile(Arc::new(CachedDecision::pack(decision)), ctx)
    })
    .await;
    assert_eq!(action.unwrap(), Action::await_change());
    assert_eq!(reasons(&events).len(), 1, "{:?}", reasons(&events));
    assert_eq!(audit_lines(dir.path()).len(), 1);
}

#[tokio::test]
async fn a_decision_its_policy_approves_starts_its_plan_in_the_same_reconcile() {
    let mut plan = testing::plan("deploy", "Real", &["migrate"]);
    plan.status = Some(crate::api::ExecutionPlanStatus {
        phase: Some(crate::api::execution_plan::PlanPhase::Ready),
        observed_generation: Some(1),
        checked_at: Some(Utc::now()),
        ..Default::default()
    });
    let policy = testing::policy("gate", json!([{"name": "all", "outcome": "AutoApprove"}]));
    // The API server first judges the Job as it would run (a dry run); the approval and
    // the plan's start are then one status write; the plan is read afresh before its Job
    // is created.
    let (client, server) = scripted(vec![
        testing::post(testing::JOBS)
            .body(|job| {
                assert_eq!(job["metadata"]["name"], "ship-migrate-1");
                assert_eq!(
                    job["metadata"]["labels"]["decisiongate.io/decision"],
                    "ship"
                );
            })
            .answer(
                201,
                json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {}}),
            ),
        patch(&status_path()).body(|body| {
            assert_eq!(body["status"]["phase"], "Executing");
            assert_eq!(body["status"]["plan"]["name"], "deploy");
            assert_eq!(
                body["status"]["execution"]["steps"][0]["jobName"],
                "ship-migrate-1"
            );
        }),
        testing::get(&object_path("executionplans", "deploy"))
            .answer(200, serde_json::to_value(&plan).unwrap()),
        testing::post(testing::JOBS)
            .body(|job| assert_eq!(job["metadata"]["name"], "ship-migrate-1"))
            .answer(
                201,
                json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {}}),
            ),
        patch(&status_path()).body(|body| {
            assert_eq!(body["status"]["execution"]["steps"][0]["phase"], "Running");
        }),
    ]);
    let (action, events) = reconcile_ship(client, server, policy, plan).await;
    // The Job's change wakes it next.
    assert_eq!(action.unwrap(), Action::await_change());
    assert_eq!(
        reasons(&events),
        [
            "Requested",
            "PolicyEvaluated",
            "AutoApproved",
            "ExecutionStarted",
            "StepStarted"
        ]
    );
}

#[tokio::test]
async fn a_decision_without_the_finalizer_gets_it_before_anything_else() {
    let mut decision = testing::decision("ship", "High", None);
    decision.metadata.finalizers = Some(vec!["example.com/keep".into()]);
    let (client, server) = scripted(vec![
        patch(&object_path("decisions", "ship"))
            .query("fieldManager=decision-gate")
            .body(|body| {
                assert_eq!(
                    body["metadata"]["finalizers"],
                    json!(["example.com/keep", "decisiongate.io/audit"])
                );
                // Only on the version read: a finalizer added meanwhile is not lost.
                assert_eq!(body["metadata"]["resourceVersion"], "7");
            }),
        patch(&status_path()).body(|body| assert_eq!(body["status"]["phase"], "Pending")),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let ctx = Context::for_tests(client, dir.path()).with_policies(vec![ask_alice()]);
    let (action, _) = reconciled(ctx, server, |ctx| {
        reconcile(Arc::new(CachedDecision::pack(decision)), ctx)
    })
    .await;
    action.unwrap();
}

#[tokio::test]
async fn a_deleted_decision_is_audited_with_its_last_state_then_let_go() {
    let policies = vec![ask_alice()];
    let mut decision = evaluated(testing::decision("ship", "High", None), &policies);
    decision.metadata.deletion_timestamp = decision.metadata.creation_timestamp.clone();
    decision.metadata.finalizers = Some(vec![
        "decisiongate.io/audit".into(),
        "example.com/keep".into(),
    ]);
    let (client, server) = scripted(vec![patch(&object_path("decisions", "ship")).body(
        |body| {
            assert_eq!(body["metadata"]["finalizers"], json!(["example.com/keep"]));
            assert_eq!(body["metadata"]["resourceVersion"], "7");
        },
    )]);
    let dir = tempfile::tempdir().unwrap();
    let ctx = Context::for_tests(client, dir.path()).with_policies(policies);
    let (action, events) = reconciled(ctx, server, |ctx| {
        reconcile(Arc::new(CachedDecision::pack(decision)), ctx)
    })
    .await;
    assert_eq!(action.unwrap(), Action::await_change());
    assert_eq!(reasons(&events), ["Deleted"]);
    let lines = audit_lines(dir.path());
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["event_type"], "decision_deleted");
    assert_eq!(lines[0]["details"]["status"]["phase"], "Pending");
    assert_eq!(lines[0]["details"]["spec"]["actionType"], "deploy");
}

#[tokio::test]
async fn a_decision_whose_job_the_api_server_refuses_is_rejected_before_anyone_is_asked() {
    let plan = testing::plan("deploy", "Real", &["migrate"]);
    let policy = testing::policy(
        "gate",
        json!([{"name": "all", "outcome": "RequireApproval"}]),
    );
    let (client, server) = scripted(vec![
        testing::post(testing::JOBS).answer(
            422,
            json!({
                "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 422,
                "reason": "Invalid",
                "message": "Job.batch \"ship-migrate-1\" is invalid: spec.template.spec.containers[0].image: Required value",
            }),
        ),
        patch(&status_path()).body(|body| {
            assert_eq!(body["status"]["phase"], "Rejected");
            let reason = body["status"]["rejection"]["reason"].as_str().unwrap();
            assert!(reason.contains("step migrate"), "{reason}");
            assert!(reason.contains("containers[0].image: Required value"), "{reason}");
        }),
    ]);
    let (action, events) = reconcile_ship(client, server, policy, plan).await;
    action.unwrap();
    assert!(
        !reasons(&events).contains(&"ApprovalRequested"),
        "{:?}",
        reasons(&events)
    );
}

/// Reconciles a new Normal Decision `ship` that names the plan `deploy`, under `policy`.
async fn reconcile_ship(
    client: kube::Client,
    server: testing::ApiServer,
    policy: ApprovalPolicy,
    plan: crate::api::ExecutionPlan,
) -> (
    crate::error::Result<Action>,
    Vec<k8s_openapi::api::events::v1::Event>,
) {
    let dir = tempfile::tempdir().unwrap();
    let ctx = Context::for_tests(client, dir.path())
        .with_policies(vec![policy])
        .with_plans(vec![plan]);
    let decision = testing::decision("ship", "Normal", Some("deploy"));
    reconciled(ctx, server, |ctx| {
        reconcile(Arc::new(CachedDecision::pack(decision)), ctx)
    })
    .await
}

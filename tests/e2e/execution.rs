//! An approved Decision's plan runs once, step by step, as Jobs (or as a dry run, or
//! simulated), rolls back as its strategy says, and survives the operator being killed.

use decision_gate::api::decision::{RollbackPhase, StepPhase};
use decision_gate::api::{Decision, DecisionPhase, ExecutionMode};
use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::api::ListParams;

use crate::support::*;

/// A step whose pod behaves as kwok's test labels and annotations say.
fn step(name: &str, labels: &str, annotations: &str, rollback: bool, extra: &str) -> String {
    let template = |labels: &str, annotations: &str| {
        format!(
            "{{metadata: {{labels: {{{labels}}}, annotations: {{{annotations}}}}}, spec: {{restartPolicy: Never, containers: [{{name: main, image: busybox}}]}}}}"
        )
    };
    let rollback = if rollback {
        format!(
            ", rollback: {{template: {}}}",
            template(
                "",
                &format!(r#""decisiongate.io/test-result": "undid {name}""#)
            )
        )
    } else {
        String::new()
    };
    format!(
        "{{name: {name}, template: {}{rollback}{extra}}}",
        template(labels, annotations)
    )
}

fn ok_step(name: &str) -> String {
    step(
        name,
        "",
        &format!(
            r#""decisiongate.io/test-result": "{name} done", "decisiongate.io/test-delay": 1s"#
        ),
        true,
        "",
    )
}

fn plan(name: &str, mode: &str, strategy: &str, steps: &[String]) -> String {
    format!(
        "apiVersion: decisiongate.io/v1alpha1\nkind: ExecutionPlan\nmetadata: {{name: {name}}}\nspec: {{actionTypes: [ship], mode: {mode}, rollbackStrategy: {strategy}, steps: [{}]}}\n",
        steps.join(", ")
    )
}

fn decision(name: &str, plan: &str, criticality: &str) -> String {
    format!(
        "apiVersion: decisiongate.io/v1alpha1\nkind: Decision\nmetadata: {{name: {name}}}\nspec: {{actionType: ship, description: Ship it, criticality: {criticality}, context: {{version: 2.0.0}}, planRef: {{name: {plan}}}}}\n"
    )
}

async fn ends(api: &Api<Decision>, name: &str, want: DecisionPhase) -> Decision {
    let what = format!("{want:?}");
    wait_for(api, name, &what, move |d: Option<&Decision>| {
        phase(d) == Some(want)
    })
    .await
}

async fn jobs_of(namespace: &str, decision: &str) -> Vec<Job> {
    let api: Api<Job> = Api::namespaced(admin().await, namespace);
    let mut jobs = api
        .list(&ListParams::default().labels(&format!("decisiongate.io/decision={decision}")))
        .await
        .unwrap()
        .items;
    jobs.sort_by_key(|j| j.metadata.creation_timestamp.clone().map(|t| t.0));
    jobs
}

fn seconds(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> i64 {
    t.0.as_second()
}

#[tokio::test]
async fn a_real_plan_runs_its_steps_in_order() {
    let ns = TestNamespace::new("real").await;
    let _operator = Operator::start_allowing_real(&ns.name).await;
    let n = ns.name.as_str();
    apply(n, AUTO_APPROVE_SHIPPING).success();
    apply(
        n,
        &plan(
            "three",
            "Real",
            "Automatic",
            &[ok_step("migrate"), ok_step("roll-out"), ok_step("smoke")],
        ),
    )
    .success();
    apply(n, &decision("ship-v2", "three", "Normal")).success();
    let api: Api<Decision> = Api::namespaced(admin().await, n);
    let d = ends(&api, "ship-v2", DecisionPhase::Succeeded).await;

    let execution = d.status.unwrap().execution.unwrap();
    assert_eq!(execution.mode, ExecutionMode::Real);
    let names: Vec<&str> = execution.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["migrate", "roll-out", "smoke"]);
    for s in &execution.steps {
        assert_eq!(s.phase, StepPhase::Succeeded, "{s:?}");
        assert_eq!(s.attempts, 1);
        assert_eq!(
            s.result.as_deref(),
            Some(format!("{} done", s.name).as_str())
        );
        assert!(s.started_at.is_some() && s.finished_at.is_some());
        // Kubernetes records a Job's completion to the second, so a 1s step may read a
        // little under 1s; what matters is that the duration is there and plausible.
        let took = s.duration_seconds.unwrap();
        assert!((0.0..30.0).contains(&took), "{s:?}");
        assert_eq!(
            s.job_name.as_deref(),
            Some(format!("ship-v2-{}-1", s.name).as_str())
        );
    }

    // Each Job was created only after the one before it had completed.
    let jobs = jobs_of(n, "ship-v2").await;
    assert_eq!(jobs.len(), 3);
    for pair in jobs.windows(2) {
        let completed = pair[0]
            .status
            .as_ref()
            .unwrap()
            .completion_time
            .as_ref()
            .unwrap();
        let created = pair[1].metadata.creation_timestamp.as_ref().unwrap();
        assert!(
            seconds(created) >= seconds(completed),
            "{} created before {} completed",
            pair[1].metadata.name.as_deref().unwrap(),
            pair[0].metadata.name.as_deref().unwrap()
        );
    }
    // Owned by the Decision, labelled, and told about it.
    let job = &jobs[0];
    assert_eq!(
        job.metadata.owner_references.as_ref().unwrap()[0].kind,
        "Decision"
    );
    let labels = job.metadata.labels.as_ref().unwrap();
    assert_eq!(labels["decisiongate.io/plan"], "three");
    assert_eq!(labels["decisiongate.io/step"], "migrate");
    let env = job
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .env
        .clone()
        .unwrap();
    let var = |k: &str| {
        env.iter()
            .find(|e| e.name == k)
            .and_then(|e| e.value.clone())
            .unwrap_or_default()
    };
    assert_eq!(var("DECISION_GATE_DECISION"), "ship-v2");
    assert_eq!(var("DECISION_GATE_NAMESPACE"), n);
    assert_eq!(var("DECISION_GATE_CONTEXT"), r#"{"version":"2.0.0"}"#);
    assert_eq!(var("DECISION_GATE_MODE"), "Real");

    // The audit log traces it.
    let log = std::fs::read_to_string(Operator::audit_log(n)).unwrap();
    let types: Vec<String> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["decision"]["name"] == "ship-v2")
        .map(|e| e["event_type"].as_str().unwrap().to_owned())
        .filter(|t| t.starts_with("step_") || t.starts_with("execution_"))
        // The Decision may be approved while the plan is still under its dry-run check:
        // the wait for it is said once, and is no step.
        .filter(|t| t != "execution_waiting")
        .collect();
    assert_eq!(
        types,
        [
            "execution_started",
            "step_started",
            "step_executed",
            "step_started",
            "step_executed",
            "step_started",
            "step_executed",
            "execution_completed"
        ]
    );
}

#[tokio::test]
async fn a_failed_step_is_rolled_back_as_the_strategy_says() {
    let ns = TestNamespace::new("rollback").await;
    grant_answering(&ns.name);
    let _operator = Operator::start_allowing_real(&ns.name).await;
    let n = ns.name.as_str();
    apply(n, AUTO_APPROVE_SHIPPING).success();
    let fails = step(
        "verify",
        r#""decisiongate.io/test-outcome": fail"#,
        r#""decisiongate.io/test-result": "health check failed""#,
        true,
        "",
    );
    for strategy in ["Automatic", "Manual", "None"] {
        let name = strategy.to_lowercase();
        apply(
            n,
            &plan(
                &name,
                "Real",
                strategy,
                &[ok_step("first"), ok_step("second"), fails.clone()],
            ),
        )
        .success();
        apply(n, &decision(&format!("ship-{name}"), &name, "Normal")).success();
    }
    let api: Api<Decision> = Api::namespaced(admin().await, n);

    // Automatic: the rollbacks of second and first run, in that order.
    let d = ends(&api, "ship-automatic", DecisionPhase::RolledBack).await;
    let execution = d.status.unwrap().execution.unwrap();
    let failed = execution.steps.iter().find(|s| s.name == "verify").unwrap();
    assert_eq!(failed.phase, StepPhase::Failed);
    assert!(
        failed
            .message
            .as_deref()
            .unwrap()
            .contains("health check failed"),
        "{failed:?}"
    );
    let rollback = execution.rollback.unwrap();
    assert_eq!(rollback.phase, RollbackPhase::Succeeded);
    let undone: Vec<&str> = rollback.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(undone, ["second", "first"]);
    assert_eq!(rollback.steps[0].result.as_deref(), Some("undid second"));
    let jobs: Vec<String> = jobs_of(n, "ship-automatic")
        .await
        .into_iter()
        .map(|j| j.metadata.name.unwrap())
        .collect();
    assert_eq!(
        jobs[3..],
        [
            "ship-automatic-second-rollback".to_owned(),
            "ship-automatic-first-rollback".to_owned()
        ]
    );

    // Manual: Failed until someone approves the rollback.
    let d = ends(&api, "ship-manual", DecisionPhase::Failed).await;
    let status = d.status.unwrap();
    let executed = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Executed")
        .unwrap();
    assert_eq!(executed.reason, "RollbackAwaitingApproval");
    assert_eq!(
        status.execution.unwrap().rollback.unwrap().phase,
        RollbackPhase::AwaitingApproval
    );
    assert_eq!(
        jobs_of(n, "ship-manual").await.len(),
        3,
        "no rollback Job before approval"
    );
    annotate_as(
        "alice",
        n,
        "ship-manual",
        &[
            "rollback-approved-by=alice",
            "rollback-approved-at=2027-01-15T10:00:00Z",
        ],
    );
    let d = ends(&api, "ship-manual", DecisionPhase::RolledBack).await;
    assert_eq!(
        d.status
            .unwrap()
            .execution
            .unwrap()
            .rollback
            .unwrap()
            .approved_by
            .as_deref(),
        Some("alice")
    );

    // None: Failed, nothing undone.
    let d = ends(&api, "ship-none", DecisionPhase::Failed).await;
    assert_eq!(
        d.status.unwrap().execution.unwrap().rollback.unwrap().phase,
        RollbackPhase::NotRun
    );
    assert_eq!(jobs_of(n, "ship-none").await.len(), 3);
}

#[tokio::test]
async fn dry_runs_and_simulations_create_nothing() {
    let ns = TestNamespace::new("dry-run").await;
    // Real execution is not allowed on this operator: Real plans run as DryRun.
    let _operator = Operator::start(&ns.name).await;
    let n = ns.name.as_str();
    apply(n, AUTO_APPROVE_SHIPPING).success();
    apply(
        n,
        &plan("dry", "DryRun", "Automatic", &[ok_step("a"), ok_step("b")]),
    )
    .success();
    apply(n, &plan("real", "Real", "Automatic", &[ok_step("a")])).success();
    let no_image =
        "{name: broken, template: {spec: {restartPolicy: Never, containers: [{name: main}]}}}"
            .to_owned();
    apply(
        n,
        &plan("refused", "DryRun", "Automatic", &[ok_step("a"), no_image]),
    )
    .success();
    apply(
        n,
        &plan(
            "simulated",
            "Simulated",
            "Automatic",
            &[
                step("a", "", "", false, ", simulatedDurationSeconds: 2"),
                step("b", "", "", false, ", simulatedDurationSeconds: 1"),
            ],
        ),
    )
    .success();
    for (d, p) in [
        ("d-dry", "dry"),
        ("d-real", "real"),
        ("d-refused", "refused"),
        ("d-simulated", "simulated"),
    ] {
        apply(n, &decision(d, p, "Normal")).success();
    }
    let api: Api<Decision> = Api::namespaced(admin().await, n);

    let d = ends(&api, "d-dry", DecisionPhase::Succeeded).await;
    let execution = d.status.unwrap().execution.unwrap();
    assert_eq!(execution.mode, ExecutionMode::DryRun);
    assert!(
        execution
            .steps
            .iter()
            .all(|s| s.phase == StepPhase::WouldExecute)
    );

    let d = ends(&api, "d-real", DecisionPhase::Succeeded).await;
    let execution = d.status.unwrap().execution.unwrap();
    assert_eq!(execution.mode, ExecutionMode::DryRun);
    assert!(
        execution
            .mode_reason
            .unwrap()
            .contains("real execution is not allowed")
    );

    // A step the API server refuses is found before anyone is asked: the Decision is
    // rejected, and nothing ran.
    let d = ends(&api, "d-refused", DecisionPhase::Rejected).await;
    let status = d.status.unwrap();
    assert!(status.execution.is_none());
    let reason = status.rejection.unwrap().reason;
    assert!(reason.contains("step broken"), "{reason}");
    assert!(
        reason.contains("spec.template.spec.containers[0].image: Required value"),
        "{reason}"
    );

    let d = ends(&api, "d-simulated", DecisionPhase::Succeeded).await;
    let execution = d.status.unwrap().execution.unwrap();
    assert_eq!(execution.mode, ExecutionMode::Simulated);
    let took = execution.finished_at.unwrap() - execution.started_at.unwrap();
    assert!(took >= chrono::Duration::seconds(3), "took {took}");

    let audit = std::fs::read_to_string(Operator::audit_log(n)).unwrap();
    assert!(
        audit.contains("WOULD EXECUTE step a"),
        "the audit says what would execute"
    );
    assert!(
        audit.contains(
            "rejected by decision-gate: the step broken of the ExecutionPlan refused could never run for this Decision"
        ),
        "the audit says why d-refused was rejected before anyone was asked"
    );
    let all: Api<Job> = Api::namespaced(admin().await, n);
    assert!(
        all.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "a dry run or a simulation created a Job"
    );
}

#[tokio::test]
async fn a_killed_operator_neither_repeats_nor_loses_a_step() {
    let ns = TestNamespace::new("sigkill").await;
    let n = ns.name.as_str();
    apply(n, AUTO_APPROVE_SHIPPING).success();
    let slow = |name: &str| {
        step(
            name,
            "",
            &format!(
                r#""decisiongate.io/test-delay": 3s, "decisiongate.io/test-result": "{name} done""#
            ),
            false,
            "",
        )
    };
    apply(
        n,
        &plan(
            "slow",
            "Real",
            "Automatic",
            &[slow("one"), slow("two"), slow("three")],
        ),
    )
    .success();
    let api: Api<Decision> = Api::namespaced(admin().await, n);
    {
        let operator = Operator::start_allowing_real(n).await;
        apply(n, &decision("ship-slow", "slow", "Normal")).success();
        wait_for(
            &api,
            "ship-slow",
            "running its second step",
            |d: Option<&Decision>| {
                d.and_then(|d| d.status.as_ref())
                    .and_then(|s| s.execution.as_ref())
                    .is_some_and(|e| e.steps[1].phase == StepPhase::Running)
            },
        )
        .await;
        operator.signal("KILL");
    }
    let _operator = Operator::start_allowing_real(n).await;
    let d = ends(&api, "ship-slow", DecisionPhase::Succeeded).await;
    let execution = d.status.unwrap().execution.unwrap();
    assert!(
        execution
            .steps
            .iter()
            .all(|s| s.attempts == 1 && s.phase == StepPhase::Succeeded)
    );
    let jobs: Vec<String> = jobs_of(n, "ship-slow")
        .await
        .into_iter()
        .map(|j| j.metadata.name.unwrap())
        .collect();
    assert_eq!(
        jobs,
        ["ship-slow-one-1", "ship-slow-two-1", "ship-slow-three-1"]
    );
    let out =
        decision_gate(&["audit", "verify", Operator::audit_log(n).to_str().unwrap()]).success();
    assert!(out.starts_with("ok"), "{out}");
}

#[tokio::test]
async fn a_step_that_never_finishes_fails_at_its_timeout_after_its_retries() {
    let ns = TestNamespace::new("timeout").await;
    let _operator = Operator::start_allowing_real(&ns.name).await;
    let n = ns.name.as_str();
    apply(n, AUTO_APPROVE_SHIPPING).success();
    let hang = step(
        "wait-forever",
        r#""decisiongate.io/test-outcome": hang"#,
        "",
        false,
        ", timeoutSeconds: 2, retries: 1",
    );
    apply(n, &plan("stuck", "Real", "None", &[hang])).success();
    apply(n, &decision("ship-stuck", "stuck", "Normal")).success();
    let api: Api<Decision> = Api::namespaced(admin().await, n);
    let d = ends(&api, "ship-stuck", DecisionPhase::Failed).await;
    let step = d.status.unwrap().execution.unwrap().steps[0].clone();
    assert_eq!(step.attempts, 2);
    assert!(
        step.message
            .as_deref()
            .unwrap()
            .contains("DeadlineExceeded"),
        "{step:?}"
    );
    let jobs: Vec<String> = jobs_of(n, "ship-stuck")
        .await
        .into_iter()
        .map(|j| j.metadata.name.unwrap())
        .collect();
    assert_eq!(
        jobs,
        ["ship-stuck-wait-forever-1", "ship-stuck-wait-forever-2"]
    );
}

#[tokio::test]
async fn only_approved_decisions_run_and_deleting_one_removes_its_jobs() {
    let ns = TestNamespace::new("not-approved").await;
    let _operator = Operator::start_allowing_real(&ns.name).await;
    let n = ns.name.as_str();
    apply(n, "apiVersion: decisiongate.io/v1alpha1\nkind: ApprovalPolicy\nmetadata: {name: gate}\nspec: {rules: [{name: refuse, match: {criticalities: [High]}, outcome: AutoReject}, {name: ship, match: {criticalities: [Normal]}, outcome: AutoApprove}]}\n").success();
    let hang = step(
        "hold",
        r#""decisiongate.io/test-outcome": hang"#,
        "",
        false,
        "",
    );
    apply(n, &plan("held", "Real", "None", &[hang])).success();
    apply(n, &decision("rejected", "held", "High")).success();
    apply(n, &decision("pending", "held", "Critical")).success();
    apply(
        n,
        &decision("expired", "held", "Critical").replace("planRef", "expiresAfter: 2s, planRef"),
    )
    .success();
    apply(n, &decision("approved", "held", "Normal")).success();
    let api: Api<Decision> = Api::namespaced(admin().await, n);
    ends(&api, "rejected", DecisionPhase::Rejected).await;
    ends(&api, "pending", DecisionPhase::Pending).await;
    ends(&api, "expired", DecisionPhase::Expired).await;
    wait_for(&api, "approved", "running", |d: Option<&Decision>| {
        d.and_then(|d| d.status.as_ref())
            .and_then(|s| s.execution.as_ref())
            .is_some_and(|e| e.steps[0].phase == StepPhase::Running)
    })
    .await;
    // By now the approved one's Job exists; the others have none.
    for name in ["rejected", "pending", "expired"] {
        assert!(jobs_of(n, name).await.is_empty(), "{name} created a Job");
    }
    assert_eq!(jobs_of(n, "approved").await.len(), 1);

    kubectl_admin(&["delete", "decision", "approved", "-n", n]).success();
    let jobs: Api<Job> = Api::namespaced(admin().await, n);
    wait_gone(&jobs, "approved-hold-1").await;
}

//! The operator as a process: it starts, marks new Decisions Pending, checks plans with the
//! API server's own dry run, checks policies, serves its endpoints and stops on SIGTERM.

use decision_gate::api::approval_policy::PolicyPhase;
use decision_gate::api::execution_plan::PlanPhase;
use decision_gate::api::{ApprovalPolicy, ConditionStatus, Decision, DecisionPhase, ExecutionPlan};
use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::api::ListParams;

use crate::support::*;

fn phase_of(d: Option<&Decision>) -> Option<DecisionPhase> {
    d.and_then(|d| d.status.as_ref()).and_then(|s| s.phase)
}

#[tokio::test]
async fn a_new_decision_becomes_pending_with_its_expiry() {
    let ns = TestNamespace::new("pending").await;
    let _operator = Operator::start(&ns.name).await;
    apply(
        &ns.name,
        "apiVersion: decisiongate.io/v1alpha1\nkind: Decision\nmetadata: {name: deploy}\nspec: {actionType: deploy, description: Deploy 2.0, criticality: Critical, expiresAfter: 30m}\n",
    )
    .success();
    apply(
        &ns.name,
        "apiVersion: decisiongate.io/v1alpha1\nkind: Decision\nmetadata: {name: report}\nspec: {actionType: report_generation, description: Monthly report, criticality: Normal}\n",
    )
    .success();

    let api: Api<Decision> = Api::namespaced(admin().await, &ns.name);
    let deploy = wait_for(&api, "deploy", "Pending", |d: Option<&Decision>| {
        phase_of(d).is_some()
    })
    .await;
    let status = deploy.status.clone().unwrap();
    assert_eq!(status.phase, Some(DecisionPhase::Pending));
    assert_eq!(status.observed_generation, Some(1));
    let created = deploy.metadata.creation_timestamp.unwrap().0.as_second();
    assert_eq!(status.expires_at.unwrap().timestamp(), created + 30 * 60);
    let approved = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Approved")
        .expect("an Approved condition");
    assert_eq!(approved.status, ConditionStatus::Unknown);
    assert_eq!(approved.reason, "AwaitingApproval");

    // Without its own expiresAfter, the operator's default (24h) applies.
    let report = wait_for(&api, "report", "Pending", |d: Option<&Decision>| {
        phase_of(d).is_some()
    })
    .await;
    let created = report.metadata.creation_timestamp.unwrap().0.as_second();
    assert_eq!(
        report.status.unwrap().expires_at.unwrap().timestamp(),
        created + 24 * 3600
    );

    // kubectl shows the phase, and the Event tells the story.
    let table = kubectl_admin(&["get", "dec", "deploy", "-n", &ns.name]).success();
    assert!(table.lines().nth(1).unwrap().contains("Pending"), "{table}");
    wait_until("the Pending event", || {
        kubectl_admin(&["events", "-n", &ns.name, "--for", "decision/deploy"])
            .success()
            .contains("waiting for 1 approval(s)")
    })
    .await;
}

const GOOD_STEP: &str = "{name: migrate-db, template: {spec: {restartPolicy: Never, containers: [{name: migrate, image: busybox}]}}}";

fn plan(name: &str, steps: &str) -> String {
    format!(
        "apiVersion: decisiongate.io/v1alpha1\nkind: ExecutionPlan\nmetadata: {{name: {name}}}\nspec: {{actionTypes: [ship], mode: Real, steps: {steps}}}\n"
    )
}

fn plan_phase(p: Option<&ExecutionPlan>) -> Option<PlanPhase> {
    p.and_then(|p| p.status.as_ref()).and_then(|s| s.phase)
}

fn ready_message(p: &ExecutionPlan) -> String {
    let status = p.status.as_ref().unwrap();
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .expect("a Ready condition");
    ready.message.clone()
}

#[tokio::test]
async fn plans_are_checked_by_the_api_servers_dry_run() {
    let ns = TestNamespace::new("plans").await;
    let _operator = Operator::start(&ns.name).await;
    let client = admin().await;
    let api: Api<ExecutionPlan> = Api::namespaced(client.clone(), &ns.name);

    let example =
        std::fs::read_to_string(repo_root().join("examples/executionplan-deploy.yaml")).unwrap();
    apply(&ns.name, &example).success();
    apply(&ns.name, &plan("good", &format!("[{GOOD_STEP}]"))).success();
    // A container without an image, and a misspelt field in a rollback template.
    apply(
        &ns.name,
        &plan(
            "no-image",
            &format!("[{GOOD_STEP}, {{name: roll-out, template: {{spec: {{restartPolicy: Never, containers: [{{name: main}}]}}}}}}]"),
        ),
    )
    .success();
    apply(
        &ns.name,
        &plan(
            "typo",
            "[{name: s, template: {spec: {restartPolicy: Never, containers: [{name: m, image: busybox}]}}, rollback: {template: {spec: {restartPolicy: Never, contianers: [{name: m, image: busybox}]}}}}]",
        ),
    )
    .success();

    let checked = |p: Option<&ExecutionPlan>| plan_phase(p).is_some();
    for name in ["deploy-api-gateway", "good"] {
        let p = wait_for(&api, name, "checked", checked).await;
        assert_eq!(
            plan_phase(Some(&p)),
            Some(PlanPhase::Ready),
            "{name}: {}",
            ready_message(&p)
        );
    }
    let example = api.get("deploy-api-gateway").await.unwrap();
    assert_eq!(example.status.as_ref().unwrap().step_count, Some(3));
    assert!(
        ready_message(&example).contains("all 5 Jobs (3 steps, 2 rollback actions)"),
        "{}",
        ready_message(&example)
    );

    let no_image = wait_for(&api, "no-image", "checked", checked).await;
    assert_eq!(plan_phase(Some(&no_image)), Some(PlanPhase::Invalid));
    let message = ready_message(&no_image);
    assert!(message.contains("step roll-out"), "{message}");
    assert!(
        message.contains("spec.template.spec.containers[0].image: Required value"),
        "{message}"
    );
    assert!(!message.contains("step migrate-db"), "{message}");

    let typo = wait_for(&api, "typo", "checked", checked).await;
    assert_eq!(plan_phase(Some(&typo)), Some(PlanPhase::Invalid));
    let message = ready_message(&typo);
    assert!(message.contains("rollback of step s"), "{message}");
    assert!(
        message.contains(r#"unknown field "spec.template.spec.contianers""#),
        "{message}"
    );
    assert!(
        kubectl_admin(&["events", "-n", &ns.name, "--for", "executionplan/typo"])
            .success()
            .contains("Invalid")
    );

    // A fix is checked again at once.
    kubectl_admin(&[
        "patch",
        "plan",
        "no-image",
        "-n",
        &ns.name,
        "--type",
        "json",
        "-p",
        r#"[{"op":"add","path":"/spec/steps/1/template/spec/containers/0/image","value":"busybox"}]"#,
    ])
    .success();
    wait_for(
        &api,
        "no-image",
        "Ready after the fix",
        |p: Option<&ExecutionPlan>| {
            plan_phase(p) == Some(PlanPhase::Ready)
                && p.and_then(|p| p.status.as_ref())
                    .and_then(|s| s.observed_generation)
                    == Some(2)
        },
    )
    .await;

    // Dry runs store nothing.
    let jobs: Api<Job> = Api::namespaced(client, &ns.name);
    assert!(
        jobs.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn a_policy_with_a_broken_expression_is_invalid() {
    let ns = TestNamespace::new("policies").await;
    let _operator = Operator::start(&ns.name).await;
    let api: Api<ApprovalPolicy> = Api::namespaced(admin().await, &ns.name);
    let examples = repo_root().join("examples");
    for file in ["approvalpolicy-defaults.yaml", "approvalpolicy-budget.yaml"] {
        apply(
            &ns.name,
            &std::fs::read_to_string(examples.join(file)).unwrap(),
        )
        .success();
    }
    apply(
        &ns.name,
        "apiVersion: decisiongate.io/v1alpha1\nkind: ApprovalPolicy\nmetadata: {name: broken}\nspec: {rules: [{name: fine, outcome: AutoApprove, match: {actionTypes: [email]}}, {name: half-written, outcome: AutoApprove, match: {expression: 'decision.context.amount <'}}]}\n",
    )
    .success();

    let phase =
        |p: Option<&ApprovalPolicy>| p.and_then(|p| p.status.as_ref()).and_then(|s| s.phase);
    for name in ["defaults", "budget-and-cleanup"] {
        let p = wait_for(&api, name, "checked", move |p: Option<&ApprovalPolicy>| {
            phase(p).is_some()
        })
        .await;
        assert_eq!(
            phase(Some(&p)),
            Some(PolicyPhase::Ready),
            "{name}: {:?}",
            p.status
        );
    }
    let broken = wait_for(
        &api,
        "broken",
        "checked",
        move |p: Option<&ApprovalPolicy>| phase(p).is_some(),
    )
    .await;
    let status = broken.status.unwrap();
    assert_eq!(status.phase, Some(PolicyPhase::Invalid));
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, ConditionStatus::False);
    assert!(
        ready.message.contains(r#"rule "half-written""#),
        "{}",
        ready.message
    );
    assert!(
        ready.message.contains("does not compile"),
        "{}",
        ready.message
    );
}

#[tokio::test]
async fn the_operator_serves_health_and_metrics_and_stops_on_sigterm() {
    let ns = TestNamespace::new("lifecycle").await;
    let mut operator = Operator::start(&ns.name).await;
    assert_eq!(operator.get("/healthz").await.unwrap().0, 200);
    assert_eq!(operator.get("/readyz").await.unwrap().0, 200);

    apply(
        &ns.name,
        "apiVersion: decisiongate.io/v1alpha1\nkind: Decision\nmetadata: {name: d}\nspec: {actionType: restart_service, description: Restart cache, criticality: High}\n",
    )
    .success();
    let api: Api<Decision> = Api::namespaced(admin().await, &ns.name);
    wait_for(&api, "d", "Pending", |d: Option<&Decision>| {
        phase_of(d).is_some()
    })
    .await;
    let (code, metrics) = operator.get("/metrics").await.unwrap();
    assert_eq!(code, 200);
    assert!(
        metrics.contains(r#"decision_gate_reconciliations_total{kind="Decision"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("decision_gate_reconcile_duration_seconds_bucket"),
        "{metrics}"
    );

    operator.signal("TERM");
    let status = operator.wait_exit().await;
    assert!(
        status.success(),
        "exit status {status:?}; log:\n{}",
        operator.logs()
    );
    assert!(
        operator.logs().contains("SIGTERM received"),
        "{}",
        operator.logs()
    );
}

#[tokio::test]
async fn the_operator_explains_why_it_cannot_start() {
    let ns = TestNamespace::new("refuse-start").await;
    // dave may not read Decisions: the operator says so and exits, instead of crash-looping
    // with a stack of watch errors.
    let mut operator = Operator::spawn(&ns.name, &user_kubeconfig("dave"), &[]);
    let status = operator.wait_exit().await;
    assert!(!status.success());
    let log = operator.logs();
    assert!(
        log.contains("the operator may not list decisions.decisiongate.io"),
        "{log}"
    );
    assert!(log.contains("check its RBAC"), "{log}");
}

/// The value of a metric line that starts with `series`, if the text has one.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn two_operators_elect_one_leader_and_hand_over_when_it_dies() {
    let ns = TestNamespace::new("leader").await;
    let n = ns.name.as_str();
    apply(n, "apiVersion: decisiongate.io/v1alpha1\nkind: ApprovalPolicy\nmetadata: {name: ship-it}\nspec: {rules: [{name: ship, match: {actionTypes: [ship]}, outcome: AutoApprove}]}\n").success();
    apply(n, "apiVersion: decisiongate.io/v1alpha1\nkind: ExecutionPlan\nmetadata: {name: one}\nspec: {actionTypes: [ship], mode: Real, steps: [{name: only, template: {metadata: {annotations: {decisiongate.io/test-delay: 1s}}, spec: {restartPolicy: Never, containers: [{name: main, image: busybox}]}}}]}\n").success();
    let ship = |name: &str| {
        format!(
            "apiVersion: decisiongate.io/v1alpha1\nkind: Decision\nmetadata: {{name: {name}}}\nspec: {{actionType: ship, description: Ship, criticality: Normal, planRef: {{name: one}}}}\n"
        )
    };
    // The first takes the Lease; the second, started while it leads, waits.
    let leader = Operator::start_allowing_real(n).await;
    let standby = Operator::spawn(n, &ensure_installed().await, &["--allow-real-execution"]);
    let role = |body: String| body.trim().trim_start_matches("ok: ").to_owned();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(200));
    loop {
        tick.tick().await;
        let answered = standby.get("/readyz").await.unwrap_or_default();
        if answered.0 == 200 {
            assert_eq!(role(answered.1), "standby", "two leaders");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the second operator was never ready as a standby:\n{}",
            standby.logs()
        );
    }
    assert_eq!(role(leader.get("/readyz").await.unwrap().1), "leader");
    assert_eq!(role(standby.get("/readyz").await.unwrap().1), "standby");

    let api: Api<Decision> = Api::namespaced(admin().await, n);
    apply(n, &ship("before")).success();
    wait_for(&api, "before", "Succeeded", |d: Option<&Decision>| {
        phase_of(d) == Some(DecisionPhase::Succeeded)
    })
    .await;

    // The leader's metrics tell what happened.
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while metric(&text, r#"decision_gate_decisions{phase="Succeeded"}"#) != Some(1.0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the phase gauge never counted the Decision:\n{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await; // poll interval of this bounded wait
        text = leader.get("/metrics").await.unwrap().1;
    }
    assert_eq!(metric(&text, "decision_gate_leader"), Some(1.0), "{text}");
    assert!(
        metric(&text, "decision_gate_time_to_decision_seconds_count").unwrap_or(0.0) >= 1.0,
        "{text}"
    );
    assert!(
        metric(&text, "decision_gate_approval_to_execution_seconds_count").unwrap_or(0.0) >= 1.0,
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            r#"decision_gate_step_duration_seconds_count{mode="Real",outcome="succeeded"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        metric(&text, "decision_gate_audit_appends_total").unwrap_or(0.0) >= 6.0,
        "{text}"
    );
    let standby_text = standby.get("/metrics").await.unwrap().1;
    assert_eq!(
        metric(&standby_text, "decision_gate_leader"),
        Some(0.0),
        "{standby_text}"
    );

    // The leader dies without a word; the standby takes over within the Lease's duration.
    leader.signal("KILL");
    drop(leader);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while role(standby.get("/readyz").await.unwrap().1) != "leader" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the standby never took over:\n{}",
            standby.logs()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await; // poll interval of this bounded wait
    }
    apply(n, &ship("after")).success();
    wait_for(&api, "after", "Succeeded", |d: Option<&Decision>| {
        phase_of(d) == Some(DecisionPhase::Succeeded)
    })
    .await;

    // One Job per Decision, one line per event, one unbroken chain.
    let jobs: Api<Job> = Api::namespaced(admin().await, n);
    let names: Vec<String> = jobs
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|j| j.metadata.name.unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    let log = Operator::audit_log(n);
    let lines = std::fs::read_to_string(&log).unwrap();
    let ids: Vec<String> = lines
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["entry_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let unique: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "duplicate audit lines");
    let out = decision_gate(&["audit", "verify", log.to_str().unwrap()]).success();
    assert!(out.starts_with("ok"), "{out}");
}

//! Scripts and CI ask with `kubectl decision request --wait` and branch on its exit status:
//! 0 approved (or the plan succeeded), 1 rejected or failed, 2 expired, 3 timed out, 4 not
//! asked at all.

use std::path::Path;
use std::process::Stdio;

use decision_gate::api::{Decision, DecisionPhase};
use kube::Api;
use tokio::process::{Child, Command};

use crate::support::*;

/// `kubectl decision request` as the ServiceAccount whose kubeconfig this is, in the
/// background.
fn request(kubeconfig: &Path, namespace: &str, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_kubectl-decision"))
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["-n", namespace, "request"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Waits for the command to end: its exit status, standard output and error.
async fn ended(child: Child) -> (i32, String, String) {
    let out = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .expect("kubectl decision request did not end in time")
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn request_wait_ends_with_an_exit_status_for_each_outcome() {
    let ns = TestNamespace::new("requests").await;
    let n = ns.name.as_str();
    grant_answering(n);
    kubectl_admin(&["create", "serviceaccount", "ci", "-n", n]).success();
    bind_service_account(n, "decision-gate-requester", "ci");
    let ci = service_account_kubeconfig(n, "ci");
    // Shipping runs a Real plan with a failing step; everything else waits for people.
    apply(n, AUTO_APPROVE_SHIPPING).success();
    apply(
        n,
        "apiVersion: decisiongate.io/v1alpha1\nkind: ExecutionPlan\nmetadata: {name: breaks}\nspec: {actionTypes: [ship], mode: Real, rollbackStrategy: None, steps: [{name: verify, template: {metadata: {labels: {\"decisiongate.io/test-outcome\": fail}}, spec: {restartPolicy: Never, containers: [{name: main, image: busybox}]}}}]}\n",
    )
    .success();
    let _operator = Operator::start_allowing_real(n).await;
    let api: Api<Decision> = Api::namespaced(admin().await, n);
    let asked = |name: &str| {
        vec![
            "deploy".to_owned(),
            "-d".to_owned(),
            format!("Deploy {name}"),
            "--name".to_owned(),
            name.to_owned(),
            "--set".to_owned(),
            "version=2.0.0".to_owned(),
            "--wait".to_owned(),
            "--timeout".to_owned(),
            "50s".to_owned(),
        ]
    };

    // Approved by alice: 0, and -o json prints the Decision as it ended.
    let mut approve = asked("approve-me");
    approve.extend(["-o".to_owned(), "json".to_owned()]);
    let waiting = request(&ci, n, &args(&approve));
    reaches(&api, "approve-me", DecisionPhase::Pending).await;
    annotate_as("alice", n, "approve-me", &["approved-by=alice"]);
    let (code, stdout, stderr) = ended(waiting).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    let d: Decision = serde_json::from_str(&stdout).expect("-o json prints the Decision");
    let status = d.status.unwrap();
    assert_eq!(status.phase, Some(DecisionPhase::Approved));
    assert_eq!(status.approvals[0].approver, "alice");
    assert_eq!(
        status.requested_by.as_deref(),
        Some(format!("system:serviceaccount:{n}:ci").as_str())
    );
    assert!(stderr.contains("decision/approve-me requested"), "{stderr}");

    // Rejected by bob: 1, and the reason is said.
    let waiting = request(&ci, n, &args(&asked("reject-me")));
    reaches(&api, "reject-me", DecisionPhase::Pending).await;
    annotate_as(
        "bob",
        n,
        "reject-me",
        &["rejected-by=bob", "rejection-reason=not during the freeze"],
    );
    let (code, stdout, stderr) = ended(waiting).await;
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stdout.contains("Rejected: reject-me was rejected by bob: not during the freeze"),
        "{stdout}"
    );

    // Nobody answers within its expiry: 2.
    let mut expire = asked("expire-me");
    expire.extend(["--expires-after".to_owned(), "3s".to_owned()]);
    let (code, stdout, stderr) = ended(request(&ci, n, &args(&expire))).await;
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stdout.starts_with("Expired:"), "{stdout}");

    // The wait runs out first: 3, saying where it stands.
    let mut impatient = asked("wait-briefly");
    impatient.truncate(impatient.len() - 1);
    impatient.push("2s".to_owned());
    let (code, stdout, stderr) = ended(request(&ci, n, &args(&impatient))).await;
    assert_eq!(code, 3, "{stdout}{stderr}");
    assert!(stderr.contains("timed out after 2s"), "{stderr}");
    assert!(stdout.starts_with("Pending:"), "{stdout}");

    // Approved at once by a policy, then its plan fails: 1.
    let (code, stdout, stderr) = ended(request(
        &ci,
        n,
        &[
            "ship",
            "-d",
            "Ship it",
            "-c",
            "Normal",
            "--plan",
            "breaks",
            "--wait",
            "--timeout",
            "50s",
        ],
    ))
    .await;
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stdout.starts_with("Failed:"), "{stdout}");

    // Not allowed to ask here at all: 4, in plain words.
    let elsewhere = TestNamespace::new("requests-elsewhere").await;
    let (code, stdout, stderr) =
        ended(request(&ci, &elsewhere.name, &args(&asked("nowhere")))).await;
    assert_eq!(code, 4, "{stdout}{stderr}");
    assert!(stderr.contains("not allowed"), "{stderr}");
    assert!(stderr.contains("decision-gate-requester"), "{stderr}");
}

#[tokio::test]
async fn the_agents_examples_apply_and_their_plans_pass_the_operators_checks() {
    use decision_gate::api::ExecutionPlan;
    use decision_gate::api::execution_plan::PlanPhase;

    let ns = TestNamespace::new("agent-examples").await;
    let n = ns.name.as_str();
    let dir = repo_root().join("examples/agents");
    let rbac = std::fs::read_to_string(dir.join("rbac.yaml"))
        .unwrap()
        .replace("namespace: agents", &format!("namespace: {n}"));
    apply(n, &rbac).success();
    let plans = std::fs::read_to_string(dir.join("plans.yaml")).unwrap();
    let out = apply(n, &plans).success();
    let _operator = Operator::start(n).await;
    let api: Api<ExecutionPlan> = Api::namespaced(admin().await, n);
    for name in [
        "send-email",
        "schedule-meeting",
        "write-report-file",
        "call-http-api",
        "run-maintenance-script",
    ] {
        assert!(
            out.contains(&format!("executionplan.decisiongate.io/{name} created")),
            "{out}"
        );
        let plan = wait_for(&api, name, "checked", |p: Option<&ExecutionPlan>| {
            p.and_then(|p| p.status.as_ref())
                .and_then(|s| s.phase)
                .is_some()
        })
        .await;
        assert_eq!(
            plan.status.as_ref().and_then(|s| s.phase),
            Some(PlanPhase::Ready),
            "{name}: {:#?}",
            plan.status
        );
    }

    // The agent's account may ask, and nothing more.
    let agent = service_account_kubeconfig(n, "coding-agent");
    let (code, stdout, stderr) = ended(request(
        &agent,
        n,
        &[
            "send_email",
            "-d",
            "Send the quarterly report",
            "--plan",
            "send-email",
        ],
    ))
    .await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    let can_approve = kubectl(
        &agent,
        &[
            "auth",
            "can-i",
            "approve",
            "decisions.decisiongate.io",
            "-n",
            n,
        ],
        None,
    );
    assert_eq!(can_approve.stdout.trim(), "no");
}

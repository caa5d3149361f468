//! End-to-end tests that no other test may run beside (`make test` runs them after the
//! rest): an operator that watches every namespace, started and stopped again and again,
//! and restarts of the API server and etcd while the operator carries out a plan.

#[allow(dead_code)]
#[path = "../e2e/support/mod.rs"]
mod support;

use std::time::Duration;

use decision_gate::api::decision::StepPhase;
use decision_gate::api::{Decision, DecisionPhase};
use kube::Api;

use support::*;

/// One test at a time, however the harness is run: each one disturbs the whole cluster.
static ALONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const ROUNDS: usize = 20;

/// How long the control plane and the operator get to finish a plan after a restart.
const RECOVERY: Duration = Duration::from_secs(300);

/// How long the operator may take to exit after SIGTERM.
const EXIT_LIMIT: Duration = Duration::from_secs(10);

fn decision(name: &str) -> String {
    format!(
        "apiVersion: decisiongate.io/v1alpha1\nkind: Decision\nmetadata: {{name: {name}}}\nspec: {{actionType: deploy, description: Deploy {name}, criticality: High}}\n"
    )
}

const POLICY: &str = "apiVersion: decisiongate.io/v1alpha1\nkind: ApprovalPolicy\nmetadata: {name: everything}\nspec: {rules: [{name: all, match: {}, outcome: RequireApproval}]}\n";

/// Waits for the process to exit, at most `limit`; None if it is still running.
async fn exit_within(operator: &mut Operator, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tick.tick().await;
        if let Some(status) = operator.try_exit() {
            return Some(status);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
    }
}

/// Starts an operator that watches every namespace (so that its first lists are as big as
/// the cluster), gives it a new namespace with a policy and three Decisions, waits for all
/// three to be Pending, and stops it with SIGTERM — twenty times. The objects come at
/// different moments of the start-up: before the operator serves, while it fills its
/// caches, and once it is ready, because a start-up race shows only at one of them.
#[tokio::test]
async fn starts_and_stops_cleanly_round_after_round() {
    let _alone = ALONE.lock().await;
    // As the chart's ServiceAccount: the admission policies let only it write a status.
    let operator_config = ensure_installed().await;
    let client = admin().await;
    let mut failures = Vec::new();
    for round in 0..ROUNDS {
        let name = unique_name(&format!("startstop-{round}"));
        let mut operator = Operator::spawn(ALL_NAMESPACES, &operator_config, &[]);
        match round % 3 {
            0 => {}
            1 => {
                wait_until("the operator to serve /healthz", || {
                    std::net::TcpStream::connect(("127.0.0.1", operator.http_port)).is_ok()
                })
                .await
            }
            _ => operator.wait_ready().await,
        }
        let ns = TestNamespace::create(name.clone()).await;
        apply(&ns.name, POLICY).success();
        for d in ["first", "second", "third"] {
            apply(&ns.name, &decision(d)).success();
        }
        let api: Api<Decision> = Api::namespaced(client.clone(), &ns.name);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let pending = loop {
            tick.tick().await;
            let list = api.list(&Default::default()).await.unwrap();
            let pending = list
                .items
                .iter()
                .filter(|d| phase(Some(d)) == Some(DecisionPhase::Pending))
                .count();
            if pending == 3 || tokio::time::Instant::now() >= deadline {
                break pending;
            }
        };
        if pending != 3 {
            failures.push(format!(
                "round {round}: {pending} of 3 Decisions were evaluated within 30s"
            ));
        }
        operator.signal("TERM");
        match exit_within(&mut operator, EXIT_LIMIT).await {
            Some(status) if status.success() => {}
            Some(status) => failures.push(format!(
                "round {round}: the operator exited with {status} after SIGTERM; log:\n{}",
                operator.logs()
            )),
            None => failures.push(format!(
                "round {round}: the operator was still running {EXIT_LIMIT:?} after SIGTERM; log:\n{}",
                operator.logs()
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn restart(component: &str) {
    let out = std::process::Command::new(repo_root().join("hack/cluster.sh"))
        .args(["restart", component])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "restarting {component} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn running_step(d: Option<&Decision>, index: usize) -> bool {
    d.and_then(|d| d.status.as_ref())
        .and_then(|s| s.execution.as_ref())
        .is_some_and(|e| {
            e.steps
                .get(index)
                .is_some_and(|s| s.phase == StepPhase::Running)
        })
}

/// The API server restarted in the middle of one execution, etcd in the middle of the
/// next: the operator rides both out without a restart of its own, and every step runs
/// exactly once.
#[tokio::test]
async fn the_operator_rides_out_restarts_of_the_api_server_and_etcd() {
    let _alone = ALONE.lock().await;
    let ns = TestNamespace::new("restarts").await;
    let n = ns.name.as_str();
    let kubeconfig = ensure_installed().await;
    ship_in_three_steps(n, "3s");
    // A Lease that outlasts the outage: losing it would rightly stop the operator.
    let mut operator = Operator::spawn(
        n,
        &kubeconfig,
        &["--allow-real-execution", "--lease-duration", "60s"],
    )
    .ready()
    .await;
    let shipment = |name: &str| {
        format!(
            "apiVersion: decisiongate.io/v1alpha1\nkind: Decision\nmetadata: {{name: {name}}}\nspec: {{actionType: ship, description: Ship it, criticality: Normal, planRef: {{name: three}}}}\n"
        )
    };

    for (name, component) in [
        ("during-apiserver", "kube-apiserver"),
        ("during-etcd", "etcd"),
    ] {
        apply(n, &shipment(name)).success();
        let api: Api<Decision> = Api::namespaced(admin().await, n);
        wait_for(
            &api,
            name,
            "running its second step",
            |d: Option<&Decision>| running_step(d, 1),
        )
        .await;
        restart(component);
        wait_admits_decisions().await;
        let api: Api<Decision> = Api::namespaced(admin().await, n);
        // The rest of the control plane recovers too, at its own pace: the job
        // controller's cache can lag the restarted API server for a minute or more.
        let finished = |d: Option<&Decision>| {
            matches!(
                phase(d),
                Some(DecisionPhase::Succeeded | DecisionPhase::Failed | DecisionPhase::RolledBack)
            )
        };
        let done = tokio::time::timeout(
            RECOVERY,
            kube::runtime::wait::await_condition(api.clone(), name, finished),
        )
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{name} did not finish within {RECOVERY:?} of the {component} restart; the operator's log:\n{}",
                operator.logs()
            )
        })
        .unwrap()
        .expect("the Decision still exists");
        assert_eq!(
            phase(Some(&done)),
            Some(DecisionPhase::Succeeded),
            "{done:#?}"
        );
        let steps = done.status.unwrap().execution.unwrap().steps;
        assert!(steps.iter().all(|s| s.attempts == 1), "{steps:?}");
        assert!(
            operator.try_exit().is_none(),
            "the operator exited after the {component} restart; its log:\n{}",
            operator.logs()
        );
    }
    let out =
        decision_gate(&["audit", "verify", Operator::audit_log(n).to_str().unwrap()]).success();
    assert!(out.starts_with("ok"), "{out}");
}

/// Puts the ApprovalPolicy CRD back as the operator describes it, however the test ends.
struct PolicyCrdRestored;

impl PolicyCrdRestored {
    fn restore(&self) {
        let crd = repo_root().join("crds/approvalpolicies.decisiongate.io.yaml");
        kubectl_admin(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            crd.to_str().unwrap(),
        ])
        .success();
    }
}

impl Drop for PolicyCrdRestored {
    fn drop(&mut self) {
        self.restore();
    }
}

/// A policy stored under an older, looser CRD no longer fits the operator's types. It must
/// not vanish (its rules might have rejected what comes next): the namespace fails closed
/// until it is fixed or deleted, and its status says why. Deleting it lets the others
/// decide again.
#[tokio::test]
async fn a_policy_the_operator_cannot_read_fails_closed_until_it_is_gone() {
    let _alone = ALONE.lock().await;
    ensure_installed().await;
    let ns = TestNamespace::create(unique_name("unreadable")).await;
    let n = ns.name.as_str();

    // The older CRD: durations in minutes had no upper bound, so this value was stored.
    let crd =
        std::fs::read_to_string(repo_root().join("crds/approvalpolicies.decisiongate.io.yaml"))
            .unwrap();
    let loose: String = crd
        .lines()
        .filter(|l| l.trim() != "maximum: 525600.0")
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(loose, crd, "the CRD bounds minDurationMinutes");
    let restored = PolicyCrdRestored;
    kubectl(
        &admin_kubeconfig(),
        &["apply", "--server-side", "--force-conflicts", "-f", "-"],
        Some(&loose),
    )
    .success();
    let old = "apiVersion: decisiongate.io/v1alpha1\nkind: ApprovalPolicy\nmetadata: {name: aaa-old}\nspec: {priority: 1, rules: [{name: endless, match: {minDurationMinutes: 5000000000}, outcome: AutoReject}]}\n";
    wait_until("the looser CRD to admit the old policy", || {
        apply(n, old).ok
    })
    .await;
    restored.restore();
    apply(n, "apiVersion: decisiongate.io/v1alpha1\nkind: ApprovalPolicy\nmetadata: {name: relaxed}\nspec: {rules: [{name: all, match: {}, outcome: AutoApprove}]}\n").success();

    let _operator = Operator::start(n).await;
    apply(n, &decision("ship")).success();
    let api: Api<Decision> = Api::namespaced(admin().await, n);
    let d = reaches(&api, "ship", DecisionPhase::Pending).await;
    let evaluation = d.status.unwrap().evaluation.unwrap();
    assert_eq!(evaluation.policy.as_deref(), Some("aaa-old"));
    assert!(
        evaluation.message.contains("the policy cannot be read"),
        "{}",
        evaluation.message
    );
    wait_until("the old policy to be reported Invalid", || {
        let status = kubectl_admin(&[
            "get",
            "apol",
            "aaa-old",
            "-n",
            n,
            "-o",
            "jsonpath={.status.phase}: {.status.conditions[0].message}",
        ])
        .success();
        status.starts_with("Invalid: ") && status.contains("cannot be read")
    })
    .await;

    kubectl_admin(&["delete", "apol", "aaa-old", "-n", n]).success();
    let d = reaches(&api, "ship", DecisionPhase::Approved).await;
    assert_eq!(
        d.status.unwrap().evaluation.unwrap().policy.as_deref(),
        Some("relaxed")
    );
}

/// Puts a binding of the chart's admission policies back as it was, however the test ends.
struct BindingRestored {
    manifest: String,
}

impl BindingRestored {
    /// Takes note of the binding as it is now, minus what only the API server sets.
    fn of(name: &str) -> Self {
        let json = kubectl_admin(&[
            "get",
            "validatingadmissionpolicybinding",
            name,
            "-o",
            "json",
        ])
        .success();
        let mut binding: serde_json::Value = serde_json::from_str(&json).unwrap();
        let metadata = binding["metadata"].as_object_mut().unwrap();
        for key in [
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "generation",
            "managedFields",
        ] {
            metadata.remove(key);
        }
        BindingRestored {
            manifest: binding.to_string(),
        }
    }

    fn restore(&self) {
        kubectl(
            &admin_kubeconfig(),
            &["apply", "-f", "-"],
            Some(&self.manifest),
        )
        .success();
    }
}

impl Drop for BindingRestored {
    fn drop(&mut self) {
        self.restore();
    }
}

fn answers_verified(d: Option<&Decision>) -> Option<(String, String)> {
    let status = d?.status.as_ref()?;
    let c = status
        .conditions
        .iter()
        .find(|c| c.type_ == "AnswersVerified")?;
    Some((format!("{:?}", c.status), c.message.clone()))
}

/// Without the answers policy bound, anyone who may patch a Decision could write
/// `approved-by`. Such an approval is not counted, the Decision and /readyz say why, and
/// it never counts later; once the policy is bound again, real approvals do.
#[tokio::test]
async fn approvals_count_only_while_the_admission_policies_are_in_force() {
    let _alone = ALONE.lock().await;
    ensure_installed().await;
    let ns = TestNamespace::create(unique_name("unbound")).await;
    let n = ns.name.as_str();
    grant_answering(n);
    apply(n, "apiVersion: decisiongate.io/v1alpha1\nkind: ApprovalPolicy\nmetadata: {name: two}\nspec: {rules: [{name: all, match: {}, outcome: RequireApproval, requiredApprovals: 2}]}\n").success();
    let operator = Operator::start(n).await;
    apply(n, &decision("ship")).success();
    let api: Api<Decision> = Api::namespaced(admin().await, n);
    let d = reaches(&api, "ship", DecisionPhase::Pending).await;
    assert_eq!(answers_verified(Some(&d)).unwrap().0, "True");

    let binding = BindingRestored::of("decision-gate-answers");
    kubectl_admin(&[
        "delete",
        "validatingadmissionpolicybinding",
        "decision-gate-answers",
    ])
    .success();
    let d = wait_for(
        &api,
        "ship",
        "AnswersVerified=False",
        |d: Option<&Decision>| answers_verified(d).is_some_and(|(s, _)| s == "False"),
    )
    .await;
    let (_, message) = answers_verified(Some(&d)).unwrap();
    assert!(
        message.contains("ValidatingAdmissionPolicy decision-gate-answers is not bound"),
        "{message}"
    );
    let (code, body) = operator.get("/readyz").await.unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains("decision-gate-answers is not bound"),
        "{body}"
    );

    // Nothing stops the admin from writing approvals in anyone's name now.
    // (The API server's own admission lets go of the binding a moment later.)
    for forged in ["alice", "bob"] {
        wait_until("the API server to let the admin write an approval", || {
            kubectl_admin(&[
                "annotate",
                "--overwrite",
                "-n",
                n,
                "decision",
                "ship",
                &format!("approved-by={forged}"),
            ])
            .ok
        })
        .await;
        wait_for(
            &api,
            "ship",
            "the forged approval ignored",
            |d: Option<&Decision>| {
                d.and_then(|d| d.status.as_ref()).is_some_and(|s| {
                    s.ignored_answers
                        .iter()
                        .any(|i| i.user == forged && i.unverified)
                })
            },
        )
        .await;
    }
    let d = api.get("ship").await.unwrap();
    let status = d.status.unwrap();
    assert_eq!(status.phase, Some(DecisionPhase::Pending));
    assert!(status.approvals.is_empty(), "{:?}", status.approvals);
    let (_, metrics) = operator.get("/metrics").await.unwrap();
    assert!(
        metrics.contains("decision_gate_answers_verified 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"decision_gate_unverified_answers_total{outcome="held"} 2"#),
        "{metrics}"
    );

    binding.restore();
    wait_for(
        &api,
        "ship",
        "AnswersVerified=True",
        |d: Option<&Decision>| answers_verified(d).is_some_and(|(s, _)| s == "True"),
    )
    .await;
    operator.wait_ready().await;
    // The forged approvals are still on the Decision, and still do not count.
    let status = api.get("ship").await.unwrap().status.unwrap();
    assert_eq!(status.phase, Some(DecisionPhase::Pending));
    assert_eq!(status.approval_progress.as_deref(), Some("0/2"));

    // Real approvals, verified by the policy, do.
    let refused = annotate_refused_as("carol", n, "ship", "approved-by=alice");
    assert!(refused.contains("may only name you"), "{refused}");
    plugin("alice", &["approve", "ship", "-n", n]).success();
    plugin("bob", &["approve", "ship", "-n", n]).success();
    let d = reaches(&api, "ship", DecisionPhase::Approved).await;
    let approvals = d.status.unwrap().approvals;
    assert_eq!(approvals.len(), 2, "{approvals:?}");
    assert!(approvals.iter().all(|a| a.verified == Some(true)));
}

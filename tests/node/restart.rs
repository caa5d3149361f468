//! The operator pod deleted with no grace in the middle of a plan: the Deployment's next
//! pod takes over, each step's container runs exactly once, and the audit log on the claim
//! holds both pods' lines in one unbroken chain.

use chrono::{DateTime, Utc};
use decision_gate::api::decision::StepPhase;
use decision_gate::api::{Decision, DecisionPhase};
use kube::Api;
use serde_json::json;

use crate::install::*;
use crate::plans::*;
use crate::support::*;

/// A kubeconfig of a ServiceAccount of `namespace` that may read the whole audit log (the
/// auditor role, cluster-wide, bound until the returned guard is dropped).
pub fn auditor(namespace: &str) -> (std::path::PathBuf, Deleted) {
    apply(
        namespace,
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: auditor}\n",
    )
    .success();
    let binding = format!("{namespace}-auditor");
    apply(
        namespace,
        &format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {{name: {binding}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: decision-gate-auditor}}\nsubjects: [{{kind: ServiceAccount, name: auditor, namespace: {namespace}}}]\n"
        ),
    )
    .success();
    (
        service_account_kubeconfig(namespace, "auditor"),
        Deleted(format!("clusterrolebinding/{binding}")),
    )
}

#[tokio::test]
async fn the_operator_pod_deleted_mid_plan_is_replaced_and_every_step_runs_once() {
    let ns = NodeNamespace::new("node-restart").await;
    let log = node_volume(&ns.name);
    let step = |name: &str| {
        json!({
            "name": name,
            "timeoutSeconds": 120,
            "template": on_node(name, "echo $DECISION_GATE_STEP >> /log/runs; sleep 3; echo \"$DECISION_GATE_STEP done\" > /dev/termination-log", &log),
        })
    };
    apply(&ns.name, AUTO_APPROVE_SHIPPING).success();
    apply(
        &ns.name,
        &plan(
            "three",
            "None",
            vec![step("one"), step("two"), step("three")],
        ),
    )
    .success();
    apply(&ns.name, &ship("v5", "three", json!({}))).success();

    let api: Api<Decision> = Api::namespaced(admin().await, &ns.name);
    wait_for(
        &api,
        "v5",
        "running its first step",
        |d: Option<&Decision>| {
            d.and_then(|d| d.status.as_ref())
                .and_then(|s| s.execution.as_ref())
                .is_some_and(|e| {
                    e.steps
                        .first()
                        .is_some_and(|s| s.phase == StepPhase::Running)
                })
        },
    )
    .await;

    let first = operator_pod().await;
    let first_name = first.metadata.name.clone().unwrap();
    let killed_at = Utc::now();
    kubectl_admin(&[
        "delete",
        "pod",
        &first_name,
        "-n",
        RELEASE_NAMESPACE,
        "--grace-period=0",
        "--force",
    ])
    .success();
    let second = loop {
        let pod = operator_pod().await;
        if pod.metadata.name.as_deref() != Some(&first_name) {
            break pod;
        }
    };
    let second_started = second.metadata.creation_timestamp.clone().unwrap().0;
    let d = reaches_on_node(&api, "v5", DecisionPhase::Succeeded).await;

    // Counted from what the containers wrote: each step ran once, in order.
    assert_eq!(runs(&log), ["one", "two", "three"]);
    let results: Vec<Option<String>> = d
        .status
        .unwrap()
        .execution
        .unwrap()
        .steps
        .into_iter()
        .map(|s| s.result)
        .collect();
    assert_eq!(
        results,
        [
            Some("one done".to_owned()),
            Some("two done".to_owned()),
            Some("three done".to_owned())
        ]
    );

    // Through the operator's Service: the history of this Decision, and the whole log.
    let (kubeconfig, _bound) = auditor(&ns.name);
    let account = format!("system:serviceaccount:{}:auditor", ns.name);
    wait_can(
        &account,
        RELEASE_NAMESPACE,
        &["get", "decisions.decisiongate.io", "--subresource", "audit"],
    )
    .await;
    let who = format!("{}/v5", ns.name);
    let history = plugin_with(&kubeconfig, &["history", "--decision", &who]).success();
    for seen in ["step_started", "step_executed", "execution_completed"] {
        assert!(history.contains(seen), "history has no {seen}: {history}");
    }
    let export = repo_root().join(format!("target/e2e-logs/{}-audit.jsonl", ns.name));
    plugin_with(
        &kubeconfig,
        &["audit", "export", "-o", export.to_str().unwrap()],
    )
    .success();
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&export)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|e: &serde_json::Value| e["decision"]["namespace"] == ns.name.as_str())
        .collect();
    let at = |e: &serde_json::Value| {
        e["timestamp"]
            .as_str()
            .unwrap()
            .parse::<DateTime<Utc>>()
            .unwrap()
    };
    let second_started: DateTime<Utc> = second_started.to_string().parse().unwrap();
    assert!(
        lines
            .iter()
            .any(|e| at(e) < killed_at && e["event_type"] == "step_started"),
        "no line of the first pod ({first_name}) before it was deleted at {killed_at}: {lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|e| at(e) > second_started && e["event_type"] == "execution_completed"),
        "no line of the second pod after it started at {second_started}: {lines:#?}"
    );
    // One chain across both pods: the operator checks it, and so does the CLI on the copy
    // and on the claim's own file on the node.
    plugin_with(&kubeconfig, &["audit", "verify"]).success();
    decision_gate(&["audit", "verify", export.to_str().unwrap()]).success();
    let on_claim = node_volume("decision-gate-audit").join("audit.jsonl");
    decision_gate(&["audit", "verify", on_claim.to_str().unwrap()]).success();
}

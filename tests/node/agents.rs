//! The kinds of step an AI agent asks for most, as examples/agents/plans.yaml writes them,
//! run for real on the real node against receivers there: an e-mail to an SMTP server, a
//! calendar event and a call to an HTTP API, a report file on a volume, and a maintenance
//! script that restarts a Deployment. A last step fails, so that every compensating action
//! runs too, last first: the correction e-mail, the cancelled event, the undone call, the
//! file restored and the restart undone.

use std::sync::{Arc, Mutex};

use decision_gate::api::decision::StepPhase;
use decision_gate::api::{Decision, DecisionPhase};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use serde_json::{Value, json};

use crate::install::*;
use crate::plans::*;
use crate::support::*;

/// The example plans' steps (with their rollbacks), as written, by step name: each
/// container's image replaced by the local one of the same kind, and each pod aimed at the
/// real node.
fn example_steps() -> Vec<(String, Value)> {
    let text = std::fs::read_to_string(repo_root().join("examples/agents/plans.yaml")).unwrap();
    let mut steps = Vec::new();
    for document in text.split("\n---\n") {
        let plan: Value = yaml_serde::from_str(document).unwrap();
        for step in plan["spec"]["steps"].as_array().unwrap() {
            let mut step = step.clone();
            for path in ["/template/spec", "/rollback/template/spec"] {
                let Some(spec) = step.pointer_mut(path) else {
                    continue;
                };
                spec["nodeSelector"] = json!({"decisiongate.io/node": "real"});
                spec["tolerations"] = json!([{"key": "decisiongate.io/real-node", "operator": "Exists", "effect": "NoSchedule"}]);
                for container in spec["containers"].as_array_mut().unwrap() {
                    let written = container["image"].as_str().unwrap();
                    container["image"] = if written.starts_with("python:") {
                        image("python")
                    } else if written.starts_with("registry.k8s.io/kubectl:") {
                        image("kubectl")
                    } else {
                        panic!("no local image stands in for {written}")
                    }
                    .into();
                }
            }
            steps.push((step["name"].as_str().unwrap().to_owned(), step));
        }
    }
    steps
}

/// The node's address, where the receivers listen and its pods reach them.
async fn node_ip() -> String {
    let nodes: Api<Node> = Api::all(admin().await);
    let node = nodes.get(NODE).await.unwrap();
    node.status
        .unwrap()
        .addresses
        .unwrap()
        .into_iter()
        .find(|a| a.type_ == "InternalIP")
        .unwrap()
        .address
}

#[tokio::test]
async fn the_agents_example_steps_and_their_rollbacks_run_for_real() {
    let ns = NodeNamespace::new("node-agents").await;
    let n = ns.name.as_str();
    let ip = node_ip().await;

    // The receivers: SMTP, and HTTP for the calendar and the API (each request recorded).
    let (mailbox, smtp_port) = start_smtp(&ip);
    let requests: Arc<Mutex<Vec<String>>> = Arc::default();
    let http_port = {
        let requests = requests.clone();
        serve_http_on(&ip, move |head, _body| {
            let line = head.lines().next().unwrap_or_default().to_owned();
            let key = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("idempotency-key: ")
                        .map(str::to_owned)
                })
                .unwrap_or_default();
            let bearer = head
                .lines()
                .any(|l| l.eq_ignore_ascii_case("authorization: Bearer calendar-token"));
            requests
                .lock()
                .unwrap()
                .push(format!("{line} key={key} bearer={bearer}"));
            ("200 OK", Some(json!({"ok": true})))
        })
        .await
    };
    let secret = |name: &str, data: Value| {
        apply(
            n,
            &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data}).to_string(),
        )
        .success();
    };
    secret(
        "agent-smtp",
        json!({"SMTP_HOST": ip, "SMTP_PORT": smtp_port.to_string(), "SMTP_FROM": "agent@example.com"}),
    );
    secret(
        "agent-calendar",
        json!({"CALENDAR_URL": format!("http://{ip}:{http_port}"), "CALENDAR_TOKEN": "calendar-token"}),
    );

    // The reports volume, a directory of the node, with last week's report in it.
    let reports = node_volume(&format!("{n}-reports"));
    let _volume = Deleted(format!("persistentvolume/{n}-reports"));
    std::fs::write(reports.join("summary.txt"), "last week").unwrap();
    apply(
        n,
        &json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": format!("{n}-reports")},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "local-real-node",
                "persistentVolumeReclaimPolicy": "Retain",
                "claimRef": {"namespace": n, "name": "agent-reports"},
                "local": {"path": reports.display().to_string()},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "decisiongate.io/node", "operator": "In", "values": ["real"]}]}]}}}})
        .to_string(),
    )
    .success();
    apply(
        n,
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: agent-reports}\nspec: {accessModes: [ReadWriteOnce], storageClassName: local-real-node, resources: {requests: {storage: 1Gi}}}\n",
    )
    .success();

    // The maintenance script's Deployment, on the node, and the account that may restart it.
    apply(
        n,
        &json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "nodeSelector": {"decisiongate.io/node": "real"},
                    "tolerations": [{"key": "decisiongate.io/real-node", "operator": "Exists", "effect": "NoSchedule"}],
                    "containers": [{"name": "web", "image": image("busybox"), "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]}]}}}})
        .to_string(),
    )
    .success();
    apply(
        n,
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: maintenance}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: maintenance}\nrules:\n- {apiGroups: [apps], resources: [deployments], verbs: [get, list, watch, patch]}\n- {apiGroups: [apps], resources: [replicasets], verbs: [get, list, watch]}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: maintenance}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: maintenance}\nsubjects: [{kind: ServiceAccount, name: maintenance}]\n",
    )
    .success();
    let deployments: Api<Deployment> = Api::namespaced(admin().await, n);
    let revision = |d: &Deployment| {
        d.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("deployment.kubernetes.io/revision").cloned())
    };
    wait_for(
        &deployments,
        "web",
        "available at revision 1",
        |d: Option<&Deployment>| {
            d.is_some_and(|d| {
                revision(d).as_deref() == Some("1")
                    && d.status.as_ref().and_then(|s| s.available_replicas) == Some(1)
            })
        },
    )
    .await;

    // One plan of the examples' steps as written, then a step that fails.
    let examples = example_steps();
    let mut steps: Vec<Value> = ["send", "create-event", "write", "call", "run"]
        .iter()
        .map(|name| {
            examples
                .iter()
                .find(|(n, _)| n == name)
                .unwrap_or_else(|| panic!("examples/agents/plans.yaml has no step {name}"))
                .1
                .clone()
        })
        .collect();
    let log = node_volume(n);
    steps.push(json!({"name": "verify", "template": on_node("verify", "echo 'the change did not take' > /dev/termination-log; exit 1", &log)}));
    apply(n, AUTO_APPROVE_SHIPPING).success();
    apply(n, &plan("agent-steps", "Automatic", steps)).success();
    apply(
        n,
        &ship(
            "weekly",
            "agent-steps",
            json!({
                "to": "team@example.com", "subject": "Weekly report", "body": "The numbers are in.",
                "title": "Review", "start": "2027-01-15T09:00:00Z", "end": "2027-01-15T09:30:00Z",
                "file": "summary.txt", "content": "this week",
                "url": format!("http://{ip}:{http_port}/orders"), "undoUrl": format!("http://{ip}:{http_port}/orders/weekly"),
                "deployment": "web",
            }),
        ),
    )
    .success();

    let api: Api<Decision> = Api::namespaced(admin().await, n);
    let d = reaches_on_node(&api, "weekly", DecisionPhase::RolledBack).await;
    let execution = d.status.unwrap().execution.unwrap();
    let results: Vec<(&str, StepPhase, Option<&str>)> = execution
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s.phase, s.result.as_deref()))
        .collect();
    let api_result = format!("http://{ip}:{http_port}/orders: HTTP 200");
    assert_eq!(
        results,
        [
            (
                "send",
                StepPhase::RolledBack,
                Some("sent to team@example.com")
            ),
            (
                "create-event",
                StepPhase::RolledBack,
                Some("event weekly created")
            ),
            (
                "write",
                StepPhase::RolledBack,
                Some("wrote /reports/summary.txt (9 bytes)")
            ),
            ("call", StepPhase::RolledBack, Some(api_result.as_str())),
            ("run", StepPhase::RolledBack, Some("restarted web")),
            ("verify", StepPhase::Failed, None),
        ],
        "{execution:#?}"
    );
    let undone: Vec<(&str, StepPhase)> = execution
        .rollback
        .as_ref()
        .unwrap()
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s.phase))
        .collect();
    assert_eq!(
        undone,
        [
            ("run", StepPhase::Succeeded),
            ("call", StepPhase::Succeeded),
            ("write", StepPhase::Succeeded),
            ("create-event", StepPhase::Succeeded),
            ("send", StepPhase::Succeeded),
        ]
    );

    // What the receivers saw: each action, then its undoing, in that order.
    let messages = mailbox.messages.lock().unwrap().clone();
    assert_eq!(messages.len(), 2, "{messages:#?}");
    assert!(
        messages[0].contains("Subject: Weekly report")
            && messages[0].contains("The numbers are in."),
        "{}",
        messages[0]
    );
    assert!(
        messages[1].contains("Subject: Correction: Weekly report"),
        "{}",
        messages[1]
    );
    let requests = requests.lock().unwrap().clone();
    assert_eq!(
        requests,
        [
            "POST /events HTTP/1.1 key= bearer=true",
            "POST /orders HTTP/1.1 key=weekly bearer=false",
            "DELETE /orders/weekly HTTP/1.1 key=undo-weekly bearer=false",
            "DELETE /events/weekly HTTP/1.1 key= bearer=true",
        ]
    );
    // The report as it was, and no backup left behind.
    assert_eq!(
        std::fs::read_to_string(reports.join("summary.txt")).unwrap(),
        "last week"
    );
    let left: Vec<String> = std::fs::read_dir(&reports)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["summary.txt"]);
    // Restarted (revision 2), then undone (revision 3, the first template again).
    let web = deployments.get("web").await.unwrap();
    assert_eq!(revision(&web).as_deref(), Some("3"));
    let restarted = web
        .spec
        .unwrap()
        .template
        .metadata
        .and_then(|m| m.annotations)
        .is_some_and(|a| a.contains_key("kubectl.kubernetes.io/restartedAt"));
    assert!(!restarted, "the restart was not undone");
}

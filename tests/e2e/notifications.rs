//! Notifications reach real receivers: an HTTP server that records what it is sent (and
//! can fail on purpose), and a real SMTP server. A dead receiver delays nothing, and every
//! attempt is in the audit log.

use std::net::TcpListener as StdListener;
use std::sync::{Arc, Mutex};

use decision_gate::api::{Decision, DecisionPhase};
use kube::Api;
use serde_json::Value;

use crate::support::*;

/// An HTTP receiver: records (path, JSON body); `/flaky` answers 500 to its first two
/// requests.
#[derive(Clone, Default)]
struct Receiver {
    seen: Arc<Mutex<Vec<(String, Value)>>>,
    flaky_calls: Arc<Mutex<u32>>,
}

impl Receiver {
    async fn start() -> (Receiver, u16) {
        let receiver = Receiver::default();
        let r = receiver.clone();
        let port = serve_http(move |head, body| {
            let path = request_path(head);
            let status = if path == "/flaky" {
                let mut calls = r.flaky_calls.lock().unwrap();
                *calls += 1;
                if *calls <= 2 {
                    "500 Internal Server Error"
                } else {
                    "200 OK"
                }
            } else {
                "200 OK"
            };
            r.seen
                .lock()
                .unwrap()
                .push((path, serde_json::from_str(body).unwrap_or(Value::Null)));
            (status, None)
        })
        .await;
        (receiver, port)
    }

    fn at(&self, path: &str) -> Vec<Value> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, b)| b.clone())
            .collect()
    }
}

fn audit_entries(namespace: &str) -> Vec<Value> {
    Operator::audit_entries(namespace)
}

#[tokio::test]
async fn every_trigger_reaches_webhooks_and_email_and_failures_are_retried_and_audited() {
    let ns = TestNamespace::new("notify").await;
    let n = ns.name.as_str();
    let (receiver, port) = Receiver::start().await;
    let (mailbox, smtp_port) = start_smtp("127.0.0.1");
    let dead_port = StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // The generic hook's URL is a secret, read by the operator with the chart's rights.
    ensure_installed().await;
    replace_release_secret(
        TEST_HOOKS_SECRET,
        &format!("generic=http://127.0.0.1:{port}/generic"),
    );

    let config = format!(
        "channels:
- {{name: slack, type: webhook, format: slack, url: 'http://127.0.0.1:{port}/slack'}}
- {{name: teams, type: webhook, format: teams, url: 'http://127.0.0.1:{port}/teams'}}
- {{name: generic, type: webhook, format: generic, urlFrom: {{secretKeyRef: {{name: {TEST_HOOKS_SECRET}, key: generic}}}}}}
- {{name: mail, type: email, smtp: {{host: 127.0.0.1, port: {smtp_port}, tls: none}}, from: gate@example.com, to: [approvers@example.com]}}
- {{name: flaky, type: webhook, url: 'http://127.0.0.1:{port}/flaky'}}
- {{name: dead, type: webhook, url: 'http://127.0.0.1:{dead_port}/dead'}}
- {{name: log, type: log}}
rules:
- {{triggers: [ApprovalRequired, Escalated, ExecutionFailed, Expired, ExecutionCompleted], channels: [slack, teams, generic, mail, log]}}
- {{triggers: [Escalated], channels: [flaky, dead]}}
retry: {{attempts: 3, initialBackoff: 500ms, maxBackoff: 2s}}
"
    );
    let file = repo_root()
        .join("target/e2e-logs")
        .join(format!("{n}-notifications.yaml"));
    std::fs::write(&file, config).unwrap();
    let kubeconfig = ensure_installed().await;
    let operator = Operator::spawn(
        n,
        &kubeconfig,
        &[
            "--allow-real-execution",
            "--notifications-config",
            file.to_str().unwrap(),
        ],
    );
    let _ = operator.get("/readyz").await;

    apply(n, "apiVersion: decisiongate.io/v1alpha1\nkind: ApprovalPolicy\nmetadata: {name: gate}\nspec: {rules: [{name: escalate, match: {actionTypes: [escalate]}, outcome: Escalate}, {name: ship, match: {actionTypes: [ship]}, outcome: AutoApprove}, {name: ask, outcome: RequireApproval}]}\n").success();
    apply(n, "apiVersion: decisiongate.io/v1alpha1\nkind: ExecutionPlan\nmetadata: {name: breaks}\nspec: {actionTypes: [ship], mode: Real, rollbackStrategy: None, steps: [{name: boom, template: {metadata: {labels: {decisiongate.io/test-outcome: fail}}, spec: {restartPolicy: Never, containers: [{name: main, image: busybox}]}}}]}\n---\napiVersion: decisiongate.io/v1alpha1\nkind: ExecutionPlan\nmetadata: {name: fine}\nspec: {actionTypes: [ship, escalate], mode: DryRun, steps: [{name: ok, template: {spec: {restartPolicy: Never, containers: [{name: main, image: busybox}]}}}]}\n").success();
    let decision = |name: &str, spec: &str| {
        format!(
            "apiVersion: decisiongate.io/v1alpha1\nkind: Decision\nmetadata: {{name: {name}}}\nspec: {spec}\n"
        )
    };
    apply(
        n,
        &decision(
            "needs-ok",
            "{actionType: restart_service, description: Restart, criticality: High}",
        ),
    )
    .success();
    apply(
        n,
        &decision(
            "escalate-me",
            "{actionType: escalate, description: Big change, criticality: High, planRef: {name: fine}}",
        ),
    )
    .success();
    apply(n, &decision("short", "{actionType: restart_service, description: Hurry, criticality: High, expiresAfter: 2s}")).success();
    apply(n, &decision("breaks", "{actionType: ship, description: Ship broken, criticality: Normal, planRef: {name: breaks}}")).success();
    apply(n, &decision("ships", "{actionType: ship, description: Ship fine, criticality: Normal, planRef: {name: fine}}")).success();

    let api: Api<Decision> = Api::namespaced(admin().await, n);
    let phase = |d: Option<&Decision>| d.and_then(|d| d.status.as_ref()).and_then(|s| s.phase);
    // The dead receiver delays nothing: the escalation is recorded at once.
    let escalated = wait_for(
        &api,
        "escalate-me",
        "Escalated",
        move |d: Option<&Decision>| phase(d) == Some(DecisionPhase::Escalated),
    )
    .await;
    let escalated_at = escalated.status.unwrap().conditions[0].last_transition_time;
    wait_for(&api, "short", "Expired", move |d: Option<&Decision>| {
        phase(d) == Some(DecisionPhase::Expired)
    })
    .await;
    wait_for(&api, "breaks", "Failed", move |d: Option<&Decision>| {
        phase(d) == Some(DecisionPhase::Failed)
    })
    .await;
    wait_for(&api, "ships", "Succeeded", move |d: Option<&Decision>| {
        phase(d) == Some(DecisionPhase::Succeeded)
    })
    .await;

    let titles = [
        ("ApprovalRequired", "Approval required"),
        ("Escalated", "Escalated: approval required"),
        ("Expired", "Expired without an answer"),
        ("ExecutionFailed", "Execution failed"),
        ("ExecutionCompleted", "Execution completed"),
    ];
    wait_until("every trigger on every channel", || {
        titles.iter().all(|(trigger, title)| {
            receiver.at("/slack").iter().any(|b| {
                b["text"].as_str().is_some_and(|t| t.starts_with(title)) && b["blocks"].is_array()
            }) && receiver
                .at("/teams")
                .iter()
                .any(|b| b["@type"] == "MessageCard" && b["title"] == *title)
                && receiver
                    .at("/generic")
                    .iter()
                    .any(|b| b["trigger"] == *trigger && b["decision"]["namespace"] == n)
                && mailbox
                    .messages
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|m| m.contains(&format!("Subject: [decision-gate] {title}")))
        })
    })
    .await;

    // Approvers are shown what they would approve: the Decision's digest, and the pinned
    // plan with its own.
    let (decision_digest, digest) = escalated_digests(&api).await;
    let generic = receiver.at("/generic");
    let sent = generic
        .iter()
        .find(|b| b["trigger"] == "Escalated")
        .expect("the escalation reached the generic receiver");
    assert_eq!(sent["digest"], decision_digest.as_str());
    assert_eq!(sent["plan"]["digest"], digest.as_str());
    assert_eq!(sent["plan"]["steps"][0]["name"], "ok");
    let slack = receiver.at("/slack");
    assert!(
        slack.iter().any(|b| b
            .to_string()
            .contains(&format!("Plan fine (DryRun), digest {digest}"))
            && b.to_string().contains(&decision_digest)),
        "{slack:?}"
    );

    // The flaky receiver got the escalation on the third attempt; the dead one never did.
    wait_until("the retries to end", || {
        let entries = audit_entries(n);
        let flaky_sent = entries
            .iter()
            .any(|e| e["event_type"] == "notification_sent" && e["details"]["channel"] == "flaky");
        let dead_gave_up = entries.iter().any(|e| {
            e["event_type"] == "notification_failed"
                && e["details"]["channel"] == "dead"
                && e["decision_outcome"] == "gave_up"
        });
        flaky_sent && dead_gave_up
    })
    .await;
    assert_eq!(receiver.at("/flaky").len(), 3);
    let entries = audit_entries(n);
    let attempts = |channel: &str| -> Vec<(String, u64)> {
        entries
            .iter()
            .filter(|e| e["details"]["channel"] == channel)
            .map(|e| {
                (
                    e["event_type"].as_str().unwrap().to_owned(),
                    e["details"]["attempt"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(
        attempts("flaky"),
        [
            ("notification_failed".to_owned(), 1),
            ("notification_failed".to_owned(), 2),
            ("notification_sent".to_owned(), 3)
        ]
    );
    assert_eq!(
        attempts("dead")
            .iter()
            .filter(|(t, _)| t == "notification_failed")
            .count(),
        3
    );
    let gave_up_at: chrono::DateTime<chrono::Utc> = entries
        .iter()
        .find(|e| e["details"]["channel"] == "dead" && e["decision_outcome"] == "gave_up")
        .and_then(|e| e["timestamp"].as_str())
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        escalated_at < gave_up_at,
        "the Decision waited for the dead receiver"
    );
    let out =
        decision_gate(&["audit", "verify", Operator::audit_log(n).to_str().unwrap()]).success();
    assert!(out.starts_with("ok"), "{out}");
}

/// The escalated Decision's digest and its pinned plan's.
async fn escalated_digests(api: &Api<Decision>) -> (String, String) {
    let status = api.get("escalate-me").await.unwrap().status.unwrap();
    (
        status.digest.expect("evaluated"),
        status.plan.expect("pinned").digest,
    )
}

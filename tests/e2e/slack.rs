//! Approving from Slack: the operator serves Slack's interaction endpoint, and the test
//! posts what Slack would (signed with the app's secret, by the test's own HMAC). A click
//! is answered as the mapped Kubernetes user, with exactly the impersonation rights the
//! chart renders; forged, stale and replayed requests, unmapped Slack users and mapped
//! people without `approve` change nothing, are told why, and are each an audit line.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use decision_gate::api::annotations::APPROVED_BY;
use decision_gate::api::{Decision, DecisionPhase};
use hmac::{Hmac, Mac};
use kube::Api;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::support::*;

const SECRET: &str = "e2e-signing-secret-4f1c";
const TEAM: &str = "T-E2E";

/// Where the operator's replies to clicks arrive (each click's `response_url` is
/// `/reply/<id>`).
#[derive(Clone, Default)]
struct Replies(Arc<Mutex<HashMap<String, Vec<Value>>>>);

impl Replies {
    async fn start() -> (Replies, u16) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let replies = Replies::default();
        let app = axum::Router::new()
            .route(
                "/reply/{id}",
                axum::routing::post(
                    |State(r): State<Replies>,
                     Path(id): Path<String>,
                     axum::Json(body): axum::Json<Value>| async move {
                        r.0.lock().unwrap().entry(id).or_default().push(body);
                    },
                ),
            )
            .with_state(replies.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (replies, port)
    }

    /// Waits for the reply to click `id` and returns its text.
    async fn of(&self, id: &str) -> String {
        wait_until(&format!("the reply to click {id}"), || {
            self.0.lock().unwrap().contains_key(id)
        })
        .await;
        let replies = self.0.lock().unwrap();
        let reply = &replies[id][0];
        assert_eq!(reply["response_type"], "ephemeral", "{reply}");
        reply["text"].as_str().unwrap().to_owned()
    }
}

/// What Slack signs: `v0=` and the hex HMAC-SHA256 of `v0:<timestamp>:<body>`.
fn sign(secret: &str, timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("v0:{timestamp}:{body}").as_bytes());
    let bytes = mac.finalize().into_bytes();
    format!(
        "v0={}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

/// The form body of a click on one of a notification's buttons.
fn click(slack_user: &str, action_id: &str, value: &Value, response_url: &str) -> String {
    let payload = json!({
        "type": "block_actions",
        "user": {"id": slack_user, "username": slack_user.to_lowercase(), "team_id": TEAM},
        "team": {"id": TEAM, "domain": "e2e"},
        "actions": [{"type": "button", "action_id": action_id, "value": value.to_string()}],
        "response_url": response_url,
    });
    form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &payload.to_string())
        .finish()
}

struct Endpoint {
    url: String,
    http: reqwest::Client,
}

impl Endpoint {
    /// Posts `body` with the given timestamp and signature: (status, body).
    async fn post(&self, body: &str, timestamp: i64, signature: &str) -> (u16, String) {
        let response = self
            .http
            .post(&self.url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-slack-request-timestamp", timestamp.to_string())
            .header("x-slack-signature", signature)
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }
}

/// The chart's Slack objects (user mapping, the Role that reads it, the impersonation
/// ClusterRole and their bindings to the chart's ServiceAccount), rendered by helm under a
/// release name of their own and applied, so that a reinstall of the suite's release
/// leaves them alone; deleted again when dropped.
struct ChartSlackObjects {
    manifest: String,
    configmap: String,
}

impl ChartSlackObjects {
    fn apply(release: &str) -> ChartSlackObjects {
        let manifest = helm_template(
            release,
            RELEASE_NAMESPACE,
            &[
                "--show-only",
                "templates/slack.yaml",
                "--set",
                "serviceAccount.name=decision-gate",
                "--set",
                "slack.enabled=true",
                "--set",
                "slack.signingSecret.secretName=unused-here",
                "--set",
                "slack.users[0].slackUser=U-BOB",
                "--set",
                "slack.users[0].user=bob",
                "--set",
                "slack.users[0].groups[0]=approvers",
                "--set",
                "slack.users[1].slackUser=U-DAVE",
                "--set",
                "slack.users[1].user=dave",
            ],
        );
        assert!(manifest.contains("verbs: [impersonate]"), "{manifest}");
        apply(RELEASE_NAMESPACE, &manifest).success();
        ChartSlackObjects {
            manifest,
            configmap: format!("{release}-decision-gate-slack-users"),
        }
    }
}

impl Drop for ChartSlackObjects {
    fn drop(&mut self) {
        let _ = kubectl(
            &admin_kubeconfig(),
            &[
                "delete",
                "-n",
                RELEASE_NAMESPACE,
                "--ignore-not-found",
                "--wait=false",
                "-f",
                "-",
            ],
            Some(&self.manifest),
        );
    }
}

fn slack_audit(namespace: &str) -> Vec<Value> {
    Operator::audited(namespace, "slack_interaction")
}

#[tokio::test]
async fn a_slack_click_answers_as_the_mapped_person_and_nothing_else_answers() {
    let ns = TestNamespace::new("slack").await;
    let n = ns.name.as_str();
    grant_answering(n);
    let kubeconfig = ensure_installed().await;
    let chart = ChartSlackObjects::apply(&unique_name("slack"));
    let account = format!("system:serviceaccount:{RELEASE_NAMESPACE}:decision-gate");
    wait_until("the chart's impersonation rights to be in force", || {
        ["users/bob", "users/dave", "groups/approvers"]
            .iter()
            .all(|what| {
                kubectl_admin(&["auth", "can-i", "impersonate", what, "--as", &account])
                    .stdout
                    .trim()
                    == "yes"
            })
    })
    .await;
    // Nobody else: not carol, not the admins.
    for what in ["users/carol", "groups/sre", "groups/system:masters"] {
        assert_eq!(
            kubectl_admin(&["auth", "can-i", "impersonate", what, "--as", &account])
                .stdout
                .trim(),
            "no",
            "{what}"
        );
    }

    let secret_file = repo_root()
        .join("target/e2e-logs")
        .join(format!("{n}-slack-signing-secret"));
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let slack_port = free_port();
    let slack_address = format!("127.0.0.1:{slack_port}");
    let operator = Operator::spawn(
        n,
        &kubeconfig,
        &[
            "--slack-address",
            &slack_address,
            "--slack-signing-secret-file",
            secret_file.to_str().unwrap(),
            "--slack-users-configmap",
            &chart.configmap,
        ],
    )
    .ready()
    .await;
    let endpoint = Endpoint {
        url: format!("http://{slack_address}/slack/interactions"),
        http: reqwest::Client::new(),
    };
    let (replies, reply_port) = Replies::start().await;
    let reply_url = |id: &str| format!("http://127.0.0.1:{reply_port}/reply/{id}");

    apply(n, "apiVersion: decisiongate.io/v1alpha1\nkind: ApprovalPolicy\nmetadata: {name: gate}\nspec: {rules: [{name: people-decide, outcome: RequireApproval, approvers: {groups: [approvers]}}]}\n").success();
    apply(n, "apiVersion: decisiongate.io/v1alpha1\nkind: ExecutionPlan\nmetadata: {name: roll-out}\nspec: {actionTypes: [deploy], mode: DryRun, steps: [{name: roll, template: {spec: {restartPolicy: Never, containers: [{name: main, image: busybox}]}}}]}\n").success();
    apply(
        n,
        &decision(
            "deploy",
            "{actionType: deploy, description: Deploy v2, criticality: High, planRef: {name: roll-out}}",
        ),
    )
    .success();
    let api: Api<Decision> = Api::namespaced(admin().await, n);
    let waiting = reaches(&api, "deploy", DecisionPhase::Pending).await;
    let status = waiting.status.clone().unwrap();
    let digest = status
        .digest
        .clone()
        .expect("an evaluated Decision has a digest");
    // What the notification's buttons carry.
    let target = json!({
        "namespace": n,
        "name": "deploy",
        "uid": waiting.metadata.uid.clone().unwrap(),
        "digest": digest,
    });
    let decision_name = format!("{n}/deploy");
    let now = || chrono::Utc::now().timestamp();

    // A forged signature: refused, nothing done.
    let body = click(
        "U-BOB",
        "decision-gate.approve",
        &target,
        &reply_url("forged"),
    );
    let at = now();
    let (status_code, text) = endpoint
        .post(&body, at, &sign("not-the-secret", at, &body))
        .await;
    assert_eq!(status_code, 401, "{text}");
    assert!(text.contains("bad signature"), "{text}");

    // Signed, but from ten minutes ago: refused as stale.
    let body = click(
        "U-BOB",
        "decision-gate.approve",
        &target,
        &reply_url("stale"),
    );
    let old = now() - 600;
    let (status_code, text) = endpoint.post(&body, old, &sign(SECRET, old, &body)).await;
    assert_eq!(status_code, 401, "{text}");
    assert!(text.contains("stale"), "{text}");

    // A Slack user nobody mapped.
    let body = click("U-EVE", "decision-gate.approve", &target, &reply_url("eve"));
    let at = now();
    let (status_code, text) = endpoint.post(&body, at, &sign(SECRET, at, &body)).await;
    assert_eq!(status_code, 200, "{text}");
    let reply = replies.of("eve").await;
    assert!(
        reply.contains("not mapped to a Kubernetes user") && reply.contains("U-EVE"),
        "{reply}"
    );

    // dave is mapped, but may not approve: the API server refuses him as it would his
    // kubectl.
    let body = click(
        "U-DAVE",
        "decision-gate.approve",
        &target,
        &reply_url("dave"),
    );
    let at = now();
    let (status_code, text) = endpoint.post(&body, at, &sign(SECRET, at, &body)).await;
    assert_eq!(status_code, 200, "{text}");
    assert!(text.contains("as dave"), "{text}");
    let reply = replies.of("dave").await;
    assert!(
        reply.starts_with(&format!("Refused: dave may not approve {decision_name}")),
        "{reply}"
    );
    assert!(reply.contains("forbidden"), "{reply}");
    let untouched = api.get("deploy").await.unwrap();
    let s = untouched.status.unwrap();
    assert_eq!(s.phase, Some(DecisionPhase::Pending));
    assert!(s.approvals.is_empty(), "{:?}", s.approvals);

    // bob, mapped to bob in approvers: approves as bob, bound to the plan shown.
    let body = click("U-BOB", "decision-gate.approve", &target, &reply_url("bob"));
    let at = now();
    let signature = sign(SECRET, at, &body);
    let (status_code, text) = endpoint.post(&body, at, &signature).await;
    assert_eq!(status_code, 200, "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["response_type"],
        "ephemeral"
    );
    let reply = replies.of("bob").await;
    assert!(
        reply.starts_with(&format!("Approved {decision_name} as bob")),
        "{reply}"
    );
    let approved = wait_for(&api, "deploy", "approved by bob", |d: Option<&Decision>| {
        d.and_then(|d| d.status.as_ref())
            .is_some_and(|s| s.approvals.iter().any(|a| a.approver == "bob"))
    })
    .await;
    let s = approved.status.unwrap();
    assert_eq!(s.approvals.len(), 1, "{:?}", s.approvals);
    assert!(
        s.approvals[0]
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("from Slack by @u-bob (U-BOB)")),
        "{:?}",
        s.approvals[0]
    );
    assert_eq!(
        approved.metadata.annotations.as_ref().unwrap()[APPROVED_BY],
        "bob"
    );
    // Given through the operator, which the API server let name itself as bob's
    // impersonator: the record says so.
    assert_eq!(
        s.approvals[0].impersonator.as_deref(),
        Some(account.as_str())
    );
    assert_eq!(s.approvals[0].digest.as_deref(), Some(digest.as_str()));

    // The same request again: a replay, refused before anything is done.
    let (status_code, text) = endpoint.post(&body, at, &signature).await;
    assert_eq!(status_code, 401, "{text}");
    assert!(text.contains("replayed"), "{text}");

    // A fresh click on the old message, once the Decision is answered: nothing to do.
    let body = click("U-BOB", "decision-gate.reject", &target, &reply_url("late"));
    let at = now();
    let (status_code, text) = endpoint.post(&body, at, &sign(SECRET, at, &body)).await;
    assert_eq!(status_code, 200, "{text}");
    let reply = replies.of("late").await;
    assert!(
        reply.contains(&format!(
            "{decision_name} is no longer waiting for an answer"
        )),
        "{reply}"
    );
    assert!(
        api.get("deploy")
            .await
            .unwrap()
            .status
            .unwrap()
            .rejection
            .is_none()
    );

    // Every attempt is one audit line, naming who and what came of it.
    let lines = slack_audit(n);
    let outcomes: Vec<&str> = lines
        .iter()
        .map(|e| e["decision_outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        [
            "bad_signature",
            "stale",
            "unmapped",
            "refused",
            "approved",
            "replay",
            "not_waiting"
        ],
        "{lines:#?}"
    );
    for unverified in [&lines[0], &lines[1], &lines[5]] {
        assert_eq!(unverified["details"]["verified"], false);
        assert_eq!(unverified["actor"], "slack:unverified");
    }
    assert_eq!(lines[0]["details"]["claimed"]["slack_user"], "U-BOB");
    assert_eq!(lines[2]["details"]["slack_user"], "U-EVE");
    assert_eq!(lines[2]["details"]["slack_team"], TEAM);
    assert!(lines[2].get("approver").is_none(), "{}", lines[2]);
    for (line, slack_user, user) in [(&lines[3], "U-DAVE", "dave"), (&lines[4], "U-BOB", "bob")] {
        assert_eq!(line["details"]["slack_user"], slack_user);
        assert_eq!(line["details"]["slack_team"], TEAM);
        assert_eq!(line["details"]["kubernetes_user"], user);
        assert_eq!(line["approver"], user);
        assert_eq!(line["decision"]["name"], "deploy");
        assert_eq!(line["actor"], format!("slack:{TEAM}/{slack_user}"));
    }
    // And the only approval the operator recorded is bob's.
    let granted: Vec<Value> = std::fs::read_to_string(Operator::audit_log(n))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["event_type"] == "approval_granted")
        .collect();
    assert_eq!(granted.len(), 1, "{granted:#?}");
    assert_eq!(granted[0]["approver"], "bob");
    assert_eq!(granted[0]["details"]["impersonator"], account.as_str());
    assert!(
        granted[0]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("given through {account}")),
        "{}",
        granted[0]
    );

    // Reject from Slack: recorded as bob's rejection, with the reason naming the click.
    apply(
        n,
        &decision(
            "hotfix",
            "{actionType: deploy, description: Hotfix v2.0.1, criticality: High, planRef: {name: roll-out}}",
        ),
    )
    .success();
    let waiting = reaches(&api, "hotfix", DecisionPhase::Pending).await;
    let target = json!({
        "namespace": n,
        "name": "hotfix",
        "uid": waiting.metadata.uid.clone().unwrap(),
        "digest": waiting.status.unwrap().digest,
    });
    let body = click("U-BOB", "decision-gate.reject", &target, &reply_url("no"));
    let at = now();
    let (status_code, text) = endpoint.post(&body, at, &sign(SECRET, at, &body)).await;
    assert_eq!(status_code, 200, "{text}");
    let reply = replies.of("no").await;
    assert!(
        reply.starts_with(&format!("Rejected {n}/hotfix as bob")),
        "{reply}"
    );
    let rejected = reaches(&api, "hotfix", DecisionPhase::Rejected).await;
    let rejection = rejected.status.unwrap().rejection.unwrap();
    assert_eq!(rejection.rejected_by, "bob");
    assert_eq!(
        rejection.reason,
        format!("rejected from Slack by @u-bob (U-BOB) (workspace {TEAM})")
    );
    let last = slack_audit(n).pop().unwrap();
    assert_eq!(last["decision_outcome"], "rejected", "{last}");
    assert_eq!(last["details"]["kubernetes_user"], "bob");
    drop(operator);
}

//! People who were asked hear how it goes on: a reminder before the Decision expires (once,
//! even across a restart of the operator), who decided and why, and the Slack message that
//! asked them edited to show the outcome. A local HTTP server stands in for Slack's Web API.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use decision_gate::api::{Decision, DecisionPhase};
use kube::Api;
use serde_json::{Value, json};

use crate::support::*;

/// One request the stand-in received.
#[derive(Clone, Debug)]
struct Call {
    path: String,
    authorization: String,
    body: Value,
    at: Instant,
}

/// Slack's Web API as far as the operator uses it: `chat.postMessage` answers with the
/// conversation and a new `ts`, `chat.update` with the message it edited. Anything else
/// posted to it (a generic webhook) is recorded and answered with `ok`.
#[derive(Clone, Default)]
struct SlackApi {
    calls: Arc<Mutex<Vec<Call>>>,
}

impl SlackApi {
    async fn start() -> (SlackApi, u16) {
        let api = SlackApi::default();
        let served = api.clone();
        let port = serve_http(move |head, body| {
            let path = request_path(head);
            let authorization = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("authorization")
                        .then(|| value.trim().to_owned())
                })
                .unwrap_or_default();
            let body: Value = serde_json::from_str(body).unwrap_or(Value::Null);
            let mut calls = served.calls.lock().unwrap();
            calls.push(Call {
                path: path.clone(),
                authorization,
                body: body.clone(),
                at: Instant::now(),
            });
            let posts = calls.iter().filter(|c| c.path == path).count();
            let answer = match path.as_str() {
                "/api/chat.postMessage" => json!({
                    "ok": true,
                    "channel": body["channel"],
                    "ts": format!("1700000000.{posts:06}"),
                }),
                "/api/chat.update" => {
                    json!({"ok": true, "channel": body["channel"], "ts": body["ts"]})
                }
                _ => json!({"ok": true}),
            };
            ("200 OK", Some(answer))
        })
        .await;
        (api, port)
    }

    fn calls(&self, path: &str) -> Vec<Call> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.path == path)
            .cloned()
            .collect()
    }
}

fn text(call: &Call) -> String {
    call.body["text"].as_str().unwrap_or_default().to_owned()
}

fn audit_entries(namespace: &str) -> Vec<Value> {
    Operator::audit_entries(namespace)
}

/// How many Decision reconciles the operator has finished.
async fn decision_reconciles(operator: &Operator) -> f64 {
    let (_, metrics) = operator.get("/metrics").await.unwrap_or_default();
    metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("decision_gate_reconcile_duration_seconds_count{kind=\"Decision\"} ")
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn people_asked_in_slack_are_reminded_once_told_who_approved_and_the_message_is_edited() {
    let ns = TestNamespace::new("followups").await;
    let n = ns.name.as_str();
    grant_answering(n);
    let kubeconfig = ensure_installed().await;
    let (slack, port) = SlackApi::start().await;
    // The bot token is a secret, read by the operator with the chart's rights.
    replace_release_secret(TEST_SLACK_SECRET, "token=xoxb-test-token");
    // The rule names only the request: the reminder and the outcome follow it by default.
    let config = format!(
        "channels:
- {{name: leads, type: slack, channel: C0LEADS, tokenFrom: {{secretKeyRef: {{name: {TEST_SLACK_SECRET}, key: token}}}}, apiUrl: 'http://127.0.0.1:{port}/api'}}
- {{name: hook, type: webhook, format: generic, url: 'http://127.0.0.1:{port}/hook'}}
rules:
- {{triggers: [ApprovalRequired, Escalated], channels: [leads, hook]}}
reminders: [{{before: 26s}}]
retry: {{attempts: 3, initialBackoff: 200ms, maxBackoff: 1s}}
"
    );
    let file = repo_root()
        .join("target/e2e-logs")
        .join(format!("{n}-notifications.yaml"));
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, config).unwrap();
    let args = ["--notifications-config", file.to_str().unwrap()];
    let operator = Operator::spawn(n, &kubeconfig, &args).ready().await;

    apply(n, "apiVersion: decisiongate.io/v1alpha1\nkind: ApprovalPolicy\nmetadata: {name: gate}\nspec: {rules: [{name: ask, outcome: RequireApproval}]}\n").success();
    let created = Instant::now();
    // It expires 30s after it is created; the reminder falls due 4s after.
    apply(
        n,
        &decision(
            "restart-cache",
            "{actionType: restart_service, description: Restart the cache, criticality: High, expiresAfter: 30s}",
        ),
    )
    .success();
    let api: Api<Decision> = Api::namespaced(admin().await, n);
    let phase = |d: Option<&Decision>| d.and_then(|d| d.status.as_ref()).and_then(|s| s.phase);
    wait_for(
        &api,
        "restart-cache",
        "Pending",
        move |d: Option<&Decision>| phase(d) == Some(DecisionPhase::Pending),
    )
    .await;

    // The request is posted with chat.postMessage, with the bot token, and remembered.
    wait_until("the request to be posted", || {
        !slack.calls("/api/chat.postMessage").is_empty()
    })
    .await;
    let request = slack.calls("/api/chat.postMessage")[0].clone();
    assert_eq!(request.authorization, "Bearer xoxb-test-token");
    assert_eq!(request.body["channel"], "C0LEADS");
    assert!(
        text(&request).starts_with(&format!("Approval required: {n}/restart-cache")),
        "{:?}",
        request.body
    );
    assert!(request.body["blocks"].is_array() && request.body.get("thread_ts").is_none());
    let ts = "1700000000.000001";
    let remembered = wait_for(
        &api,
        "restart-cache",
        "remembering its message",
        |d: Option<&Decision>| {
            d.and_then(|d| d.status.as_ref())
                .is_some_and(|s| s.chat_messages.contains_key("leads"))
        },
    )
    .await;
    let message = &remembered.status.unwrap().chat_messages["leads"];
    assert_eq!(
        (message.channel.as_str(), message.ts.as_str()),
        ("C0LEADS", ts)
    );

    // The reminder comes when the expiry draws near, by itself, in the request's thread.
    let reminders = || {
        slack
            .calls("/api/chat.postMessage")
            .into_iter()
            .filter(|c| text(c).starts_with("Reminder"))
            .collect::<Vec<_>>()
    };
    wait_until("the reminder", || !reminders().is_empty()).await;
    let reminder = reminders()[0].clone();
    assert!(
        reminder.at.duration_since(created) >= std::time::Duration::from_secs(3),
        "the reminder came {:?} after the request, before its time",
        reminder.at.duration_since(created)
    );
    assert_eq!(reminder.body["thread_ts"], ts);
    assert_eq!(reminder.body["channel"], "C0LEADS");
    wait_until("the reminder on the webhook", || {
        slack
            .calls("/hook")
            .iter()
            .any(|c| c.body["trigger"] == "Reminder")
    })
    .await;
    let d = api.get("restart-cache").await.unwrap();
    let sent = &d.status.as_ref().unwrap().reminders_sent;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].before, "26s");

    // A new operator takes over; it reconciles the waiting Decision and reminds nobody again.
    drop(operator);
    let operator = Operator::spawn(n, &kubeconfig, &args).ready().await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(200));
    loop {
        tick.tick().await;
        if decision_reconciles(&operator).await >= 1.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new operator never reconciled the Decision"
        );
    }

    // bob approves, as `kubectl decision approve` does.
    let out = plugin(
        "bob",
        &[
            "approve",
            "restart-cache",
            "-n",
            n,
            "-r",
            "the cache is stale",
        ],
    )
    .success();
    assert!(out.contains("it is now Approved"), "{out}");

    // The message that asked is edited: it says who approved and why, and asks nothing.
    wait_until("the message to be edited", || {
        !slack.calls("/api/chat.update").is_empty()
    })
    .await;
    let update = slack.calls("/api/chat.update")[0].clone();
    assert_eq!(update.authorization, "Bearer xoxb-test-token");
    assert_eq!(
        (&update.body["channel"], &update.body["ts"]),
        (&json!("C0LEADS"), &json!(ts))
    );
    assert!(text(&update).starts_with("Approved: "), "{:?}", update.body);
    assert!(
        update
            .body
            .to_string()
            .contains("approved by bob (the cache is stale)"),
        "{:?}",
        update.body
    );
    assert!(
        update.body["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["type"] != "actions"),
        "{:?}",
        update.body
    );

    // The outcome reaches the channels that were asked: bob, and his reason.
    wait_until("the outcome in the thread and on the webhook", || {
        let in_thread = slack.calls("/api/chat.postMessage").iter().any(|c| {
            text(c).starts_with("Approved")
                && c.body["thread_ts"] == ts
                && c.body
                    .to_string()
                    .contains("approved by bob (the cache is stale)")
        });
        let on_hook = slack.calls("/hook").iter().any(|c| {
            c.body["trigger"] == "Approved"
                && c.body["message"] == "approved by bob (the cache is stale)"
        });
        in_thread && on_hook
    })
    .await;

    // Once each: one request, one reminder, one outcome, one edit, across both operators.
    let posts = slack.calls("/api/chat.postMessage");
    assert_eq!(posts.len(), 3, "{posts:#?}");
    assert_eq!(reminders().len(), 1);
    assert_eq!(
        slack
            .calls("/hook")
            .iter()
            .filter(|c| c.body["trigger"] == "Reminder")
            .count(),
        1
    );
    assert_eq!(slack.calls("/api/chat.update").len(), 1);

    // Every send and edit is in the audit log.
    wait_until("the audit lines", || {
        let entries = audit_entries(n);
        let of = |event: &str| {
            entries
                .iter()
                .filter(|e| e["event_type"] == event && e["details"]["channel"] == "leads")
                .count()
        };
        of("notification_sent") == 3 && of("notification_updated") == 1
    })
    .await;
    let entries = audit_entries(n);
    assert_eq!(
        entries
            .iter()
            .filter(|e| e["event_type"] == "reminded")
            .count(),
        1
    );
    let out =
        decision_gate(&["audit", "verify", Operator::audit_log(n).to_str().unwrap()]).success();
    assert!(out.starts_with("ok"), "{out}");
    drop(operator);
}

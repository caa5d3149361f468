//! Decisions reach the right outcome for the right reason, by policy or by people
//! annotating as themselves, and every step is in the audit log and the Events.

use decision_gate::api::decision::Outcome;
use decision_gate::api::{Decision, DecisionPhase};
use kube::Api;

use crate::support::*;

async fn settled(api: &Api<Decision>, name: &str) -> Decision {
    wait_for(api, name, "evaluated", |d: Option<&Decision>| {
        phase(d).is_some()
    })
    .await
}

fn policy(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: decisiongate.io/v1alpha1\nkind: ApprovalPolicy\nmetadata: {{name: {name}}}\nspec: {spec}\n"
    )
}

fn example(file: &str) -> String {
    std::fs::read_to_string(repo_root().join("examples").join(file)).unwrap()
}

/// The rule that decided, and the outcome.
fn verdict(d: &Decision) -> (String, Outcome) {
    let e = d.status.as_ref().unwrap().evaluation.clone().unwrap();
    (e.rule.unwrap_or_default(), e.outcome)
}

#[tokio::test]
async fn each_default_rule_decides_the_decision_made_to_hit_it() {
    let ns = TestNamespace::new("defaults").await;
    let _operator = Operator::start(&ns.name).await;
    apply(&ns.name, &example("approvalpolicy-defaults.yaml")).success();
    apply(&ns.name, &example("approvalpolicy-budget.yaml")).success();
    // The deployment names this plan: it is pinned when the Decision is evaluated.
    apply(&ns.name, &example("executionplan-deploy.yaml")).success();
    apply(&ns.name, &example("decisions.yaml")).success();
    apply(&ns.name, &decision("quarterly-report", "{actionType: report_generation, description: Q3 report, criticality: Normal, estimatedDurationMinutes: 20, source: users/jane}")).success();
    apply(&ns.name, &decision("purge-tenant", "{actionType: delete_data, description: Purge a tenant, criticality: High, source: agents/cleaner}")).success();
    // A rule that would approve everything of its kind: a Critical one still waits.
    apply(&ns.name, &policy("fast-lane", "{priority: 10, rules: [{name: hotfixes, match: {actionTypes: [hotfix]}, outcome: AutoApprove}]}")).success();
    apply(
        &ns.name,
        &decision(
            "critical-hotfix",
            "{actionType: hotfix, description: Patch prod, criticality: Critical}",
        ),
    )
    .success();
    apply(
        &ns.name,
        &decision(
            "normal-hotfix",
            "{actionType: hotfix, description: Patch staging, criticality: Normal}",
        ),
    )
    .success();

    let api: Api<Decision> = Api::namespaced(admin().await, &ns.name);
    let expected = [
        (
            "deploy-api-gateway-2-0",
            "critical-escalates",
            Outcome::Escalate,
            DecisionPhase::Escalated,
        ),
        (
            "delete-old-user-events",
            "critical-escalates",
            Outcome::Escalate,
            DecisionPhase::Escalated,
        ),
        (
            "quarterly-churn-analysis",
            "long-running",
            Outcome::RequireApproval,
            DecisionPhase::Pending,
        ),
        (
            "purge-tenant",
            "high-risk",
            Outcome::RequireApproval,
            DecisionPhase::Pending,
        ),
        (
            "quarterly-report",
            "analysis-and-reports",
            Outcome::RequireApproval,
            DecisionPhase::Pending,
        ),
        (
            "weekly-status-email",
            "short-email",
            Outcome::AutoApprove,
            DecisionPhase::Approved,
        ),
        (
            "follow-up-with-vendor",
            "low-risk-follow-up",
            Outcome::AutoApprove,
            DecisionPhase::Approved,
        ),
        (
            "buy-api-credits",
            "small-budget",
            Outcome::AutoApprove,
            DecisionPhase::Approved,
        ),
        (
            "clean-old-logs",
            "routine-cleanup",
            Outcome::AutoApprove,
            DecisionPhase::Approved,
        ),
        (
            "critical-hotfix",
            "hotfixes",
            Outcome::RequireApproval,
            DecisionPhase::Pending,
        ),
        (
            "normal-hotfix",
            "hotfixes",
            Outcome::AutoApprove,
            DecisionPhase::Approved,
        ),
    ];
    for (name, rule, outcome, want) in expected {
        let d = settled(&api, name).await;
        assert_eq!(
            verdict(&d),
            (rule.to_owned(), outcome),
            "{name}: {:?}",
            d.status
        );
        assert_eq!(phase(Some(&d)), Some(want), "{name}");
        let risk = d.status.as_ref().unwrap().risk.clone().unwrap();
        assert!(!risk.reasons.is_empty(), "{name}: the risk says why");
    }
    let hotfix = api.get("critical-hotfix").await.unwrap();
    let message = hotfix.status.unwrap().evaluation.unwrap().message;
    assert!(
        message.contains("never approved automatically"),
        "{message}"
    );

    // Info needs no confirmation, whatever the rules.
    let info = settled(&api, "nightly-status-update").await;
    assert_eq!(phase(Some(&info)), Some(DecisionPhase::Approved));

    // kubectl shows it all at a glance.
    let table = kubectl_admin(&["get", "dec", "-n", &ns.name]).success();
    let row = table
        .lines()
        .find(|l| l.starts_with("deploy-api-gateway-2-0"))
        .unwrap();
    assert!(
        row.contains("Critical") && row.contains("Escalated") && row.contains("0/2"),
        "{row}"
    );
    let row = table
        .lines()
        .find(|l| l.starts_with("weekly-status-email"))
        .unwrap();
    assert!(row.contains("Approved") && row.contains("auto"), "{row}");
}

#[tokio::test]
async fn people_approve_and_reject_by_annotation() {
    let ns = TestNamespace::new("answers").await;
    grant_answering(&ns.name);
    let _operator = Operator::start(&ns.name).await;
    let n = ns.name.as_str();
    apply(n, &policy("gate", "{rules: [{name: two-keys, match: {actionTypes: [deploy]}, outcome: RequireApproval, requiredApprovals: 2}, {name: one-key, outcome: RequireApproval}]}")).success();
    apply(
        n,
        &decision(
            "restart-cache",
            "{actionType: restart_service, description: Restart the cache, criticality: High}",
        ),
    )
    .success();
    apply(
        n,
        &decision(
            "deploy-v2",
            "{actionType: deploy, description: Deploy v2, criticality: High}",
        ),
    )
    .success();
    apply(
        n,
        &decision(
            "deploy-v3",
            "{actionType: deploy, description: Deploy v3, criticality: High}",
        ),
    )
    .success();
    let api: Api<Decision> = Api::namespaced(admin().await, n);

    // One approver suffices: alice, as herself.
    reaches(&api, "restart-cache", DecisionPhase::Pending).await;
    annotate_as(
        "alice",
        n,
        "restart-cache",
        &["approved-by=alice", "approval-reason=cache is stale"],
    );
    let d = reaches(&api, "restart-cache", DecisionPhase::Approved).await;
    let status = d.status.unwrap();
    assert_eq!(status.approvals.len(), 1);
    assert_eq!(status.approvals[0].approver, "alice");
    assert_eq!(
        status.approvals[0].reason.as_deref(),
        Some("cache is stale")
    );
    let age = chrono::Utc::now() - status.approvals[0].at;
    assert!(
        age < chrono::Duration::seconds(60),
        "approval time {}",
        status.approvals[0].at
    );
    assert_eq!(status.approval_progress.as_deref(), Some("1/1"));

    // Two approvers: alice → 1/2, alice again → still 1/2, bob → Approved.
    reaches(&api, "deploy-v2", DecisionPhase::Pending).await;
    annotate_as("alice", n, "deploy-v2", &["approved-by=alice"]);
    wait_for(&api, "deploy-v2", "1/2", |d: Option<&Decision>| {
        d.and_then(|d| d.status.as_ref())
            .and_then(|s| s.approval_progress.clone())
            .as_deref()
            == Some("1/2")
    })
    .await;
    annotate_as(
        "alice",
        n,
        "deploy-v2",
        &["approved-by=alice", "approval-reason=once more"],
    );
    annotate_as("bob", n, "deploy-v2", &["approved-by=bob"]);
    let d = reaches(&api, "deploy-v2", DecisionPhase::Approved).await;
    let status = d.status.unwrap();
    let approvers: Vec<&str> = status
        .approvals
        .iter()
        .map(|a| a.approver.as_str())
        .collect();
    assert_eq!(approvers, ["alice", "bob"]);
    assert_eq!(status.approval_progress.as_deref(), Some("2/2"));

    // A rejection vetoes a Decision that already has an approval.
    reaches(&api, "deploy-v3", DecisionPhase::Pending).await;
    annotate_as("alice", n, "deploy-v3", &["approved-by=alice"]);
    wait_for(&api, "deploy-v3", "1/2", |d: Option<&Decision>| {
        d.and_then(|d| d.status.as_ref())
            .is_some_and(|s| s.approvals.len() == 1)
    })
    .await;
    annotate_as(
        "carol",
        n,
        "deploy-v3",
        &["rejected-by=carol", "rejection-reason=change freeze"],
    );
    let d = reaches(&api, "deploy-v3", DecisionPhase::Rejected).await;
    let rejection = d.status.unwrap().rejection.unwrap();
    assert_eq!(rejection.rejected_by, "carol");
    assert_eq!(rejection.reason, "change freeze");

    // The Events tell the story.
    let events = kubectl_admin(&["events", "-n", n, "--for", "decision/deploy-v2"]).success();
    for reason in [
        "Requested",
        "PolicyEvaluated",
        "ApprovalRequested",
        "ApprovalGranted",
    ] {
        assert!(events.contains(reason), "no {reason} event:\n{events}");
    }
    assert!(events.contains("approved by bob (2/2)"), "{events}");

    // The audit log holds each Decision's story in order, once.
    let log = Operator::audit_log(n);
    let story = |name: &str| -> Vec<String> {
        std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|e| e["decision"]["name"] == name)
            .map(|e| match e["approver"].as_str() {
                Some(who) => format!("{}:{who}", e["event_type"].as_str().unwrap()),
                None => e["event_type"].as_str().unwrap().to_owned(),
            })
            .collect()
    };
    assert_eq!(
        story("deploy-v2"),
        [
            "decision_requested",
            "policy_evaluated",
            "approval_requested",
            "approval_granted:alice",
            "approval_granted:bob"
        ]
    );
    assert_eq!(
        story("deploy-v3"),
        [
            "decision_requested",
            "policy_evaluated",
            "approval_requested",
            "approval_granted:alice",
            "approval_rejected:carol"
        ]
    );
    let verified = decision_gate(&["audit", "verify", log.to_str().unwrap()]).success();
    assert!(verified.starts_with("ok: "), "{verified}");
}

#[tokio::test]
async fn an_unanswered_decision_expires_and_stays_expired() {
    let ns = TestNamespace::new("expiry").await;
    grant_answering(&ns.name);
    let _operator = Operator::start(&ns.name).await;
    apply(&ns.name, &decision("short-lived", "{actionType: deploy, description: Deploy now or never, criticality: High, expiresAfter: 5s}")).success();
    let api: Api<Decision> = Api::namespaced(admin().await, &ns.name);
    reaches(&api, "short-lived", DecisionPhase::Pending).await;
    let d = reaches(&api, "short-lived", DecisionPhase::Expired).await;
    let status = d.status.unwrap();
    assert!(status.rejection.is_none(), "expiry is not a rejection");
    let expired_at = status.expires_at.unwrap();
    assert!(chrono::Utc::now() >= expired_at);

    // A late approval is refused at the door, and the Decision stays Expired.
    let refusal = kubectl(
        &user_kubeconfig("alice"),
        &[
            "annotate",
            "-n",
            &ns.name,
            "decision",
            "short-lived",
            "approved-by=alice",
        ],
        None,
    )
    .refused();
    assert!(
        refusal.contains("is Expired and can no longer be approved"),
        "{refusal}"
    );
    let status = api.get("short-lived").await.unwrap().status.unwrap();
    assert_eq!(status.phase, Some(DecisionPhase::Expired));
    assert!(status.approvals.is_empty());
}

#[tokio::test]
async fn policy_changes_reevaluate_waiting_decisions_and_broken_policies_fail_closed() {
    let ns = TestNamespace::new("reevaluate").await;
    let _operator = Operator::start(&ns.name).await;
    let n = ns.name.as_str();
    // A broken policy tried first meant to reject everything; it is Invalid, and what it
    // would have said being unknown, nothing after it approves automatically.
    apply(n, &policy("aaa-broken", "{priority: 1, rules: [{name: reject-all, match: {expression: 'decision.context.amount <'}, outcome: AutoReject}]}")).success();
    apply(
        n,
        &policy(
            "tuning",
            "{rules: [{name: careful, match: {actionTypes: [tune]}, outcome: AutoApprove}]}",
        ),
    )
    .success();
    apply(
        n,
        &decision(
            "tune-gc",
            "{actionType: tune, description: Tune the GC, criticality: Normal}",
        ),
    )
    .success();
    let api: Api<Decision> = Api::namespaced(admin().await, n);
    let d = reaches(&api, "tune-gc", DecisionPhase::Pending).await;
    let evaluation = d.status.unwrap().evaluation.unwrap();
    assert_eq!(evaluation.policy.as_deref(), Some("aaa-broken"));
    assert_eq!(evaluation.outcome, Outcome::RequireApproval);
    assert!(
        evaluation.message.contains("cannot be applied"),
        "{}",
        evaluation.message
    );
    let state = kubectl_admin(&[
        "get",
        "apol",
        "aaa-broken",
        "-n",
        n,
        "-o",
        "jsonpath={.status.phase}",
    ])
    .success();
    assert_eq!(state, "Invalid");

    // Gone, it no longer holds the namespace back; the Decision is evaluated again.
    kubectl_admin(&[
        "patch",
        "apol",
        "tuning",
        "-n",
        n,
        "--type",
        "json",
        "-p",
        r#"[{"op":"replace","path":"/spec/rules/0/outcome","value":"RequireApproval"}]"#,
    ])
    .success();
    kubectl_admin(&["delete", "apol", "aaa-broken", "-n", n]).success();
    wait_for(
        &api,
        "tune-gc",
        "evaluated by the tuning policy",
        |d: Option<&Decision>| {
            d.and_then(|d| d.status.as_ref())
                .and_then(|s| s.evaluation.as_ref())
                .and_then(|e| e.rule.as_deref())
                == Some("careful")
        },
    )
    .await;

    kubectl_admin(&[
        "patch",
        "apol",
        "tuning",
        "-n",
        n,
        "--type",
        "json",
        "-p",
        r#"[{"op":"replace","path":"/spec/rules/0/outcome","value":"AutoApprove"}]"#,
    ])
    .success();
    let d = reaches(&api, "tune-gc", DecisionPhase::Approved).await;
    assert_eq!(verdict(&d), ("careful".to_owned(), Outcome::AutoApprove));
    wait_until("the Reevaluated event", || {
        let events = kubectl_admin(&["events", "-n", n, "--for", "decision/tune-gc"]).success();
        events.contains("Reevaluated") && events.contains("the policies changed")
    })
    .await;
}

#[tokio::test]
async fn the_audit_chain_survives_restarts_and_exposes_tampering() {
    let ns = TestNamespace::new("audit").await;
    let n = ns.name.as_str();
    apply(
        n,
        &policy("gate", "{rules: [{name: any, outcome: RequireApproval}]}"),
    )
    .success();
    let api: Api<Decision> = Api::namespaced(admin().await, n);
    {
        let _operator = Operator::start(n).await;
        apply(
            n,
            &decision(
                "first",
                "{actionType: deploy, description: First, criticality: High}",
            ),
        )
        .success();
        reaches(&api, "first", DecisionPhase::Pending).await;
    }
    // Restarted: the chain continues where it stopped.
    let _operator = Operator::start(n).await;
    apply(
        n,
        &decision(
            "second",
            "{actionType: deploy, description: Second, criticality: High}",
        ),
    )
    .success();
    reaches(&api, "second", DecisionPhase::Pending).await;

    let log = Operator::audit_log(n);
    let out = decision_gate(&["audit", "verify", log.to_str().unwrap()]).success();
    assert!(out.starts_with("ok: 6 entries"), "{out}");
    let lines: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let seqs: Vec<u64> = lines
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs, [0, 1, 2, 3, 4, 5]);

    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.jsonl");
    // One byte flipped in line 4.
    let mut edited = lines.clone();
    assert!(edited[3].contains(r#""name":"second""#), "{}", edited[3]);
    edited[3] = edited[3].replacen(r#""name":"second""#, r#""name":"secund""#, 1);
    std::fs::write(
        &copy,
        edited.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
    let err = decision_gate(&["audit", "verify", copy.to_str().unwrap()]).refused();
    assert!(err.contains("copy.jsonl:4:"), "{err}");
    // Line 2 deleted.
    let mut shortened = lines.clone();
    shortened.remove(1);
    std::fs::write(
        &copy,
        shortened
            .iter()
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
    )
    .unwrap();
    let err = decision_gate(&["audit", "verify", copy.to_str().unwrap()]).refused();
    assert!(err.contains("copy.jsonl:2:"), "{err}");

    // The approvals view is a filter of the same log.
    let shown = decision_gate(&[
        "audit",
        "show",
        "--view",
        "approvals",
        "--decision",
        &format!("{n}/second"),
        log.to_str().unwrap(),
    ])
    .success();
    assert_eq!(shown.lines().count(), 3, "{shown}");
}

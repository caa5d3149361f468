use chrono::TimeZone;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::*;
use crate::api::DecisionStatus;
use crate::api::decision::{Approval, Rejection};

fn bash(command: &str) -> ToolCall {
    ToolCall {
        tool_name: "Bash".to_owned(),
        tool_input: serde_json::json!({"command": command, "description": "does a thing"}),
        cwd: Some("/src/app".to_owned()),
        session_id: None,
    }
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 3, 12, 0, 0).unwrap()
}

fn minutes_ago(m: i64) -> DateTime<Utc> {
    now() - chrono::Duration::minutes(m)
}

fn asked(name: &str, created: DateTime<Utc>, phase: Option<DecisionPhase>) -> Decision {
    let rules = Rules::parse(DEFAULT_CONFIG).unwrap();
    let call = bash("kubectl delete ns prod");
    let mut d = call
        .request(rules.matching(&call).unwrap(), None)
        .decision();
    d.metadata.name = Some(name.to_owned());
    d.metadata.namespace = Some("default".to_owned());
    d.metadata.creation_timestamp = Some(Time(
        k8s_openapi::jiff::Timestamp::from_second(created.timestamp()).unwrap(),
    ));
    d.status = Some(DecisionStatus {
        phase,
        ..DecisionStatus::default()
    });
    d
}

fn approved(mut d: Decision, at: DateTime<Utc>) -> Decision {
    let s = d.status.as_mut().unwrap();
    s.phase = Some(DecisionPhase::Approved);
    s.approved_at = Some(at);
    s.approvals = vec![Approval {
        approver: "alice".to_owned(),
        reason: None,
        at,
        verified: Some(true),
        ..Default::default()
    }];
    d
}

const FIFTEEN_MINUTES: std::time::Duration = std::time::Duration::from_secs(900);

#[test]
fn the_default_rules_catch_the_dangerous_commands_and_pass_the_rest() {
    let rules = Rules::parse(DEFAULT_CONFIG).unwrap();
    for (command, rule) in [
        (
            "kubectl delete deployment api -n prod",
            Some("kubectl-delete"),
        ),
        (
            "kubectl --context prod drain node-1 ",
            Some("kubectl-delete"),
        ),
        (
            "cd infra && terraform apply -auto-approve",
            Some("terraform-apply"),
        ),
        ("terraform destroy", Some("terraform-apply")),
        ("git push --force origin main", Some("git-force-push")),
        ("git push -f", Some("git-force-push")),
        ("git push origin main", None),
        ("kubectl get pods", None),
        ("terraform plan", None),
        ("ls -la", None),
    ] {
        assert_eq!(
            rules.matching(&bash(command)).map(|r| r.name.as_str()),
            rule,
            "{command}"
        );
    }
    let write = ToolCall {
        tool_name: "Write".to_owned(),
        tool_input: serde_json::json!({"file_path": "/tmp/kubectl delete x", "content": ""}),
        cwd: None,
        session_id: None,
    };
    assert!(rules.matching(&write).is_none(), "rules name the Bash tool");
}

#[test]
fn a_configuration_with_a_bad_expression_or_field_says_where() {
    let bad = Rules::parse("rules:\n- {name: r, pattern: '(', actionType: x}\n")
        .err()
        .unwrap();
    assert!(bad.starts_with("rule r: pattern:"), "{bad}");
    let unknown = Rules::parse("rules:\n- {name: r, pattern: x, actionType: x, critical: High}\n")
        .err()
        .unwrap();
    assert!(unknown.contains("critical"), "{unknown}");
    let window = Rules::parse("approvalValidFor: soon\nrules: []\n")
        .err()
        .unwrap();
    assert!(window.starts_with("approvalValidFor:"), "{window}");
}

#[test]
fn tools_are_matched_by_whole_name_and_other_tools_by_their_arguments() {
    let rules = Rules::parse(
        "rules:\n- {name: payments, tool: 'mcp__stripe__.*', pattern: '\"amount\":\\s*[0-9]{4,}', actionType: budget_spend, criticality: Critical}\n",
    )
    .unwrap();
    let call = |tool: &str, amount: u32| ToolCall {
        tool_name: tool.to_owned(),
        tool_input: serde_json::json!({"amount": amount}),
        cwd: None,
        session_id: None,
    };
    assert!(rules.matching(&call("mcp__stripe__refund", 5000)).is_some());
    assert!(rules.matching(&call("mcp__stripe__refund", 50)).is_none());
    assert!(
        rules
            .matching(&call("xmcp__stripe__refund", 5000))
            .is_none()
    );
}

#[test]
fn the_digest_ignores_the_agents_words_but_not_the_command_or_where_it_runs() {
    let a = bash("kubectl delete ns prod");
    let mut b = a.clone();
    b.tool_input["description"] = serde_json::json!("deletes prod, carefully");
    b.tool_input["timeout"] = serde_json::json!(60000);
    assert_eq!(a.digest(), b.digest());
    assert_ne!(a.digest(), bash("kubectl delete ns staging").digest());
    let mut elsewhere = a.clone();
    elsewhere.cwd = Some("/src/other".to_owned());
    assert_ne!(a.digest(), elsewhere.digest());
    assert_eq!(a.digest().len(), 64);
}

#[test]
fn the_request_names_the_call_and_carries_its_digest() {
    let rules = Rules::parse(DEFAULT_CONFIG).unwrap();
    let call = bash("kubectl delete ns prod");
    let r = call.request(rules.matching(&call).unwrap(), Some("agents/claude"));
    assert_eq!(r.action_type, "kubectl_delete");
    assert_eq!(r.criticality, Some(Criticality::High));
    assert_eq!(
        r.description,
        "An agent wants to use Bash: kubectl delete ns prod"
    );
    assert_eq!(r.source.as_deref(), Some("agents/claude"));
    assert_eq!(r.labels[TOOL_CALL], label(&call.digest()));
    assert_eq!(r.labels[REQUESTED_THROUGH], "hook");
    assert_eq!(r.context["toolCallDigest"], call.digest());
    assert_eq!(r.context["input"]["command"], "kubectl delete ns prod");
    let long = bash(&format!("kubectl delete {}", "x".repeat(400)));
    let r = long.request(rules.matching(&long).unwrap(), None);
    assert!(r.description.ends_with('…'), "{}", r.description);
}

#[test]
fn nothing_asked_means_ask_and_a_waiting_decision_denies_naming_itself() {
    assert_eq!(judge(&[], now(), FIFTEEN_MINUTES), Judgement::Ask);
    let waiting = asked(
        "kubectl-delete-abc",
        minutes_ago(1),
        Some(DecisionPhase::Pending),
    );
    match judge(&[waiting], now(), FIFTEEN_MINUTES) {
        Judgement::Deny(why) => {
            assert!(
                why.contains("Decision kubectl-delete-abc in namespace default"),
                "{why}"
            );
            assert!(
                why.contains("kubectl decision approve kubectl-delete-abc -n default"),
                "{why}"
            );
        }
        other => panic!("{other:?}"),
    }
    let unevaluated = asked("new", minutes_ago(0), None);
    assert!(matches!(
        judge(&[unevaluated], now(), FIFTEEN_MINUTES),
        Judgement::Deny(_)
    ));
}

#[test]
fn an_approval_lets_the_call_through_only_while_it_is_recent() {
    let fresh = approved(asked("a", minutes_ago(10), None), minutes_ago(5));
    match judge(std::slice::from_ref(&fresh), now(), FIFTEEN_MINUTES) {
        Judgement::Allow(why) => assert!(why.contains("approved by alice as Decision a"), "{why}"),
        other => panic!("{other:?}"),
    }
    let stale = approved(asked("a", minutes_ago(60), None), minutes_ago(30));
    assert_eq!(judge(&[stale], now(), FIFTEEN_MINUTES), Judgement::Ask);
}

#[test]
fn the_newest_decision_decides_and_expired_ones_say_nothing() {
    let old_approval = approved(asked("old", minutes_ago(14), None), minutes_ago(10));
    let mut rejected = asked("newer", minutes_ago(5), Some(DecisionPhase::Rejected));
    rejected.status.as_mut().unwrap().rejection = Some(Rejection {
        rejected_by: "bob".to_owned(),
        reason: "not on a Friday".to_owned(),
        at: minutes_ago(2),
        verified: Some(true),
    });
    match judge(&[old_approval.clone(), rejected], now(), FIFTEEN_MINUTES) {
        Judgement::Deny(why) => assert!(why.contains("rejected by bob: not on a Friday"), "{why}"),
        other => panic!("{other:?}"),
    }
    let expired = asked("newest", minutes_ago(1), Some(DecisionPhase::Expired));
    assert!(matches!(
        judge(&[expired.clone(), old_approval], now(), FIFTEEN_MINUTES),
        Judgement::Allow(_)
    ));
    assert_eq!(judge(&[expired], now(), FIFTEEN_MINUTES), Judgement::Ask);
}

#[test]
fn a_plan_still_running_holds_the_call() {
    let mut d = approved(asked("p", minutes_ago(3), None), minutes_ago(2));
    d.spec.plan_ref = Some(crate::api::decision::PlanRef {
        name: "delete-namespace".to_owned(),
    });
    d.status.as_mut().unwrap().phase = Some(DecisionPhase::Executing);
    match judge(&[d], now(), FIFTEEN_MINUTES) {
        Judgement::Deny(why) => assert!(why.contains("plan is running"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_example_rules_parse_and_name_their_namespace() {
    let rules = Rules::parse(include_str!("../../../../examples/agents/hook.yaml")).unwrap();
    assert_eq!(rules.config.namespace.as_deref(), Some("agents"));
    assert_eq!(rules.approval_valid_for, FIFTEEN_MINUTES);
    let payment = ToolCall {
        tool_name: "mcp__payments__refund".to_owned(),
        tool_input: serde_json::json!({"amount": 10}),
        cwd: None,
        session_id: None,
    };
    assert_eq!(
        rules.matching(&payment).map(|r| r.action_type.as_str()),
        Some("budget_spend")
    );
}

// What the plugin prints, from Decisions made and evaluated in memory.

use chrono::TimeZone;

use super::*;
use crate::api::decision::Criticality;
use crate::api::{ApprovalPolicy, DecisionSpec};
use crate::policy::Policy;

fn now() -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000, 0).unwrap()
}

fn decision(name: &str, action: &str) -> Decision {
    let mut d = Decision::new(
        name,
        DecisionSpec {
            description: "Deploy 2.0".into(),
            ..DecisionSpec::example(action, Criticality::High)
        },
    );
    d.metadata.namespace = Some("ops".into());
    d.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::from_second(1_800_000_000 - 300).unwrap(),
    ));
    d
}

#[test]
fn only_a_bearer_token_is_passed_on_and_a_certificate_is_told_what_to_do() {
    assert_eq!(
        forwardable_token(Some("Bearer abc.def"), false),
        Ok("abc.def".into())
    );
    assert_eq!(
        forwardable_token(Some("Bearer abc"), true),
        Ok("abc".into())
    );
    let cert = forwardable_token(None, true).unwrap_err();
    assert!(
        cert.contains("client certificate") && cert.contains("TokenReview"),
        "{cert}"
    );
    assert!(cert.contains("decision-gate-auditor"), "{cert}");
    assert!(
        forwardable_token(None, false)
            .unwrap_err()
            .contains("no credentials")
    );
    assert!(
        forwardable_token(Some("Basic YTpi"), false)
            .unwrap_err()
            .contains("username and password")
    );
    assert!(forwardable_token(Some("Bearer "), false).is_err());
}

#[test]
fn refusals_are_said_plainly() {
    let message = "decisions.decisiongate.io \"d\" is forbidden: ValidatingAdmissionPolicy 'decision-gate-answers' with binding 'decision-gate-answers' denied request: carol is not among the approvers";
    assert_eq!(
        refusal(message),
        "refused by the admission policy decision-gate-answers: carol is not among the approvers"
    );
    assert_eq!(refusal("no"), "refused: no");
}

#[test]
fn ages_read_like_kubectl() {
    let t = |s| Some(now() - chrono::Duration::seconds(s));
    assert_eq!(age(t(45), now()), "45s");
    assert_eq!(age(t(600), now()), "10m");
    assert_eq!(age(t(3 * 3600), now()), "3h");
    assert_eq!(age(t(5 * 86400), now()), "5d");
}

#[test]
fn the_list_is_a_table_with_the_reason() {
    let policy: ApprovalPolicy = yaml_serde::from_str(
        "apiVersion: decisiongate.io/v1alpha1\nkind: ApprovalPolicy\nmetadata: {name: p}\nspec: {rules: [{name: r, outcome: RequireApproval, requiredApprovals: 2}]}",
    )
    .unwrap();
    let mut d = decision("deploy-api", "deploy");
    evaluated(&mut d, &policy);
    let table = list_table(&[d.clone()], true, now());
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("NAMESPACE   NAME"), "{table}");
    assert!(
        lines[1].contains("ops") && lines[1].contains("deploy-api"),
        "{table}"
    );
    assert!(
        lines[1].contains("0/2")
            && lines[1].contains("5m")
            && lines[1].ends_with("p/r: RequireApproval"),
        "{table}"
    );

    let shown = show(&d, None, now());
    assert!(
        shown.contains("Decision ops/deploy-api  (Pending, 5m old)"),
        "{shown}"
    );
    assert!(shown.contains("decided by:   policy p, rule r"), "{shown}");
    assert!(shown.contains("needs:        2 approval(s)"), "{shown}");
    assert!(shown.contains("Risk: "), "{shown}");

    let explained = explain(&d, &[policy]);
    assert!(explained.contains("p/r: matches"), "{explained}");
    assert!(
        explained.contains("=> decided by policy p, rule r: RequireApproval"),
        "{explained}"
    );
}

fn evaluated(d: &mut Decision, policy: &ApprovalPolicy) {
    let views = [Policy::of(policy)];
    let advance = crate::lifecycle::advance(&crate::lifecycle::Input {
        decision: d,
        policies: &views,
        now: now(),
        default_expiry: std::time::Duration::from_secs(3600),
        plan: None,
        answers: &crate::admission::Answers::Verified,
        expressions: &Default::default(),
        jobs: None,
    });
    d.status = Some(advance.status);
}

#[test]
fn without_the_right_to_list_policies_explain_says_what_the_status_records() {
    use crate::error::{describe_kube, testing};
    let policy: ApprovalPolicy = yaml_serde::from_str(
        "apiVersion: decisiongate.io/v1alpha1\nkind: ApprovalPolicy\nmetadata: {name: gate}\nspec: {rules: [{name: two-keys, outcome: RequireApproval, requiredApprovals: 2, approvers: {groups: [approvers], users: [alice]}}]}",
    )
    .unwrap();
    let mut d = decision("deploy-api", "deploy");
    evaluated(&mut d, &policy);
    let forbidden = "approvalpolicies.decisiongate.io is forbidden: User \"dave\" cannot list resource \"approvalpolicies\" in API group \"decisiongate.io\" in the namespace \"ops\"";
    let refused = testing::refusal(403, "Forbidden", forbidden);
    let told = explain_recorded(&d, &describe_kube(&refused));
    testing::assert_told(&told, forbidden);
    let risk = d.status.as_ref().unwrap().risk.clone().unwrap();
    for needle in [
        format!("Risk {} (score {}): {}", risk.level, risk.score, risk.reasons.join("; ")),
        "=> decided by policy gate, rule two-keys: RequireApproval.".to_owned(),
        "needs 2 approval(s), from users alice; groups approvers".to_owned(),
        "takes `list` on approvalpolicies.decisiongate.io in namespace ops, which you do not have; the API server answered 403 Forbidden: ".to_owned(),
    ] {
        assert!(told.contains(&needle), "no {needle:?} in:\n{told}");
    }
    assert!(!risk.reasons.is_empty());
    // The evaluation's own words come along.
    let message = &d
        .status
        .as_ref()
        .unwrap()
        .evaluation
        .as_ref()
        .unwrap()
        .message;
    assert!(told.contains(message.as_str()), "{told}");

    // Not evaluated yet: said so, with whatever the API server said.
    let fresh = decision("fresh", "deploy");
    let unevaluated = testing::refusal(422, "Invalid", "the list is invalid: limit: Invalid value");
    let told = explain_recorded(&fresh, &describe_kube(&unevaluated));
    assert!(told.contains("=> not evaluated yet"), "{told}");
    testing::assert_told(&told, "the list is invalid: limit: Invalid value");

    // A rule that names no one leaves it to RBAC, and says so.
    let anyone: ApprovalPolicy = yaml_serde::from_str(
        "apiVersion: decisiongate.io/v1alpha1\nkind: ApprovalPolicy\nmetadata: {name: gate}\nspec: {rules: [{name: one, outcome: RequireApproval}]}",
    )
    .unwrap();
    let mut d = decision("deploy-api", "deploy");
    evaluated(&mut d, &anyone);
    let told = explain_recorded(&d, &describe_kube(&refused));
    assert!(
        told.contains("from anyone allowed to approve Decisions in namespace ops"),
        "{told}"
    );
}

#[test]
fn a_refusal_quoted_by_explain_cannot_steer_the_terminal() {
    let d = decision("deploy-api", "deploy");
    let told = explain_recorded(
        &d,
        "the API server answered 403 Forbidden: \u{1b}]0;owned\u{7}",
    );
    assert!(!told.contains('\u{1b}'), "{told:?}");
}

#[test]
fn a_plan_with_a_newline_in_a_command_is_not_taken_for_a_changed_one() {
    let plan: crate::api::ExecutionPlan = serde_json::from_value(serde_json::json!({
        "apiVersion": "decisiongate.io/v1alpha1",
        "kind": "ExecutionPlan",
        "metadata": {"name": "deploy", "namespace": "ops", "uid": "plan-uid"},
        "spec": {"actionTypes": ["deploy"], "mode": "Real", "steps": [{"name": "migrate",
            "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "m",
                "image": "busybox", "command": ["sh", "-c", "echo one\necho two"]}]}}}]},
    }))
    .unwrap();
    let mut d = decision("deploy-api", "deploy");
    d.spec.plan_ref = Some(crate::api::decision::PlanRef {
        name: "deploy".into(),
    });
    d.status = Some(crate::api::DecisionStatus {
        plan: Some(crate::pin::pin(&plan, now())),
        ..Default::default()
    });
    let shown = show(&printable_object(&d), Some(&plan), now());
    assert!(!shown.contains("changed after"), "{shown}");
    // The pinned command is shown escaped.
    assert!(shown.contains(r"echo one\necho two"), "{shown}");
    // A plan whose text really differs is reported.
    let mut other = plan.clone();
    other.spec.steps[0].name = "migrate-again".into();
    assert!(show(&d, Some(&other), now()).contains("changed after"));
}

#[test]
fn a_step_line_says_an_exit_code_other_than_0() {
    let step = |json: serde_json::Value| -> crate::api::decision::StepStatus {
        serde_json::from_value(json).unwrap()
    };
    assert_eq!(
        step_line(&step(serde_json::json!({
            "name": "migrate-db", "phase": "Succeeded", "attempts": 1, "durationSeconds": 2.7,
            "exitCode": 0, "result": "migrated the schema",
        }))),
        "migrate-db           Succeeded in 2.7s — migrated the schema"
    );
    assert_eq!(
        step_line(&step(serde_json::json!({
            "name": "migrate-db", "phase": "Failed", "attempts": 2, "durationSeconds": 3.1,
            "exitCode": 3, "message": "BackoffLimitExceeded: Job has reached the specified backoff limit; the container exited 3",
        }))),
        "migrate-db           Failed in 3.1s after 2 attempts (exit 3) — BackoffLimitExceeded: Job has reached the specified backoff limit; the container exited 3"
    );
    // Without a container that ended (a deleted Job, a dry run), no code.
    assert_eq!(
        step_line(&step(serde_json::json!({
            "name": "deploy", "phase": "Failed", "attempts": 1, "durationSeconds": 0.5,
            "message": "its Job ship-deploy-1 was deleted before it finished",
        }))),
        "deploy               Failed in 0.5s — its Job ship-deploy-1 was deleted before it finished"
    );
}

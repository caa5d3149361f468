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
    let views = [Policy {
        name: "p",
        generation: 1,
        spec: &policy.spec,
    }];
    let advance = crate::lifecycle::advance(&crate::lifecycle::Input {
        decision: &d,
        policies: &views,
        now: now(),
        default_expiry: std::time::Duration::from_secs(3600),
        plan: None,
        answers: &crate::admission::Answers::Verified,
        expressions: &Default::default(),
    });
    d.status = Some(advance.status);
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

//! What the policy tests share: rules, policies (the examples among them), requests and
//! one evaluation.

mod checks;
mod evaluation;
mod expressions;
mod invariants;

use super::*;
use crate::api::RiskLevel;
use crate::api::approval_policy::{PolicyRule, RuleMatch};
use crate::api::decision::{Outcome, Priority};
use crate::api::{ApprovalPolicy, ApprovalPolicySpec, DecisionSpec};

fn rule(name: &str, expression: Option<&str>) -> PolicyRule {
    PolicyRule {
        name: name.into(),
        match_: RuleMatch {
            expression: expression.map(Into::into),
            ..Default::default()
        },
        outcome: Outcome::AutoApprove,
        approvers: None,
        required_approvals: None,
        expires_after: None,
        approval_valid_for: None,
    }
}

fn spec(rules: Vec<PolicyRule>) -> ApprovalPolicySpec {
    ApprovalPolicySpec {
        priority: 100,
        rules,
        expires_after: None,
        unreadable: None,
    }
}

fn example_policy(file: &str) -> ApprovalPolicy {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(file);
    yaml_serde::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn request(action: &str, criticality: Criticality) -> DecisionSpec {
    DecisionSpec::example(action, criticality)
}

fn decide(spec: &DecisionSpec, policies: &[&ApprovalPolicy]) -> Verdict {
    let risk = crate::risk::assess(spec);
    let views: Vec<Policy<'_>> = policies
        .iter()
        .map(|p| Policy {
            name: p.metadata.name.as_deref().unwrap(),
            generation: 1,
            spec: &p.spec,
        })
        .collect();
    evaluate(
        &Subject {
            name: "d",
            namespace: "ns",
            spec,
            risk: &risk,
        },
        &views,
        &Expressions::default(),
    )
}

fn decided_by(v: &Verdict) -> (Option<&str>, Outcome) {
    (v.evaluation.rule.as_deref(), v.evaluation.outcome)
}

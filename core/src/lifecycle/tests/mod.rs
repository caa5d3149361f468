//! What the lifecycle tests share: a Decision, a one-rule policy, and one reconcile step
//! that keeps its result on the Decision, as the reconciler does.

mod approvals;
mod evaluation;
mod invariants;
mod lapse;
mod plans;
mod verification;

use super::*;
use crate::answers::{Groups, UNVERIFIED, may_answer};
use crate::api::annotations;
use crate::api::approval_policy::{ApprovalPolicySpec, PolicyRule, RuleMatch};
use crate::api::decision::{Criticality, Outcome};
use crate::api::{ApprovalPolicy, DecisionSpec};
use crate::api::{Approvers, Condition, ConditionStatus};
use crate::policy;
use chrono::TimeZone;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

const DAY: std::time::Duration = std::time::Duration::from_secs(86400);

fn created() -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000, 0).unwrap()
}

fn at(seconds: i64) -> DateTime<Utc> {
    created() + chrono::Duration::seconds(seconds)
}

fn decision(criticality: Criticality) -> Decision {
    let mut d = Decision::new(
        "deploy",
        DecisionSpec {
            description: "Deploy 2.0".into(),
            expires_after: Some("1h".into()),
            ..DecisionSpec::example("deploy", criticality)
        },
    );
    d.metadata.namespace = Some("ops".into());
    d.metadata.generation = Some(1);
    d.metadata.creation_timestamp = Some(Time(
        k8s_openapi::jiff::Timestamp::from_second(created().timestamp()).unwrap(),
    ));
    d
}

fn policy(outcome: Outcome, required: Option<u32>, users: &[&str]) -> ApprovalPolicy {
    ApprovalPolicy::new(
        "p",
        ApprovalPolicySpec {
            priority: 100,
            rules: vec![PolicyRule {
                name: "r".into(),
                match_: RuleMatch::default(),
                outcome,
                approvers: (!users.is_empty()).then(|| Approvers {
                    users: users.iter().map(|u| u.to_string()).collect(),
                    ..Default::default()
                }),
                required_approvals: required,
                expires_after: None,
                approval_valid_for: None,
            }],
            expires_after: None,
            unreadable: None,
        },
    )
}

fn views(policies: &[ApprovalPolicy]) -> Vec<Policy<'_>> {
    policies.iter().map(Policy::of).collect()
}

/// Runs one step and keeps the result on the Decision, as the reconciler does.
fn step(d: &mut Decision, policies: &[ApprovalPolicy], now: DateTime<Utc>) -> Advance {
    let views = views(policies);
    let advance = advance(&Input {
        decision: d,
        policies: &views,
        now,
        default_expiry: DAY,
        plan: None,
        answers: &Answers::Verified,
        expressions: &Expressions::default(),
        jobs: None,
    });
    d.status = Some(advance.status.clone());
    advance
}

/// One step under a given verdict on the admission policies.
fn step_under(
    d: &mut Decision,
    policies: &[ApprovalPolicy],
    answers: &Answers,
    now: DateTime<Utc>,
) -> Advance {
    let views = views(policies);
    let advance = advance(&Input {
        decision: d,
        policies: &views,
        now,
        default_expiry: DAY,
        plan: None,
        answers,
        expressions: &Expressions::default(),
        jobs: None,
    });
    d.status = Some(advance.status.clone());
    advance
}

/// One step with the plan as it is now.
fn step_with(
    d: &mut Decision,
    policies: &[ApprovalPolicy],
    plan: Option<&ExecutionPlan>,
    now: DateTime<Utc>,
) -> Advance {
    step_checked(d, policies, plan, None, now)
}

/// One step with the plan as it is now and the API server's verdict on its Jobs.
fn step_checked(
    d: &mut Decision,
    policies: &[ApprovalPolicy],
    plan: Option<&ExecutionPlan>,
    jobs: Option<&JobsCheck>,
    now: DateTime<Utc>,
) -> Advance {
    let views = views(policies);
    let advance = advance(&Input {
        decision: d,
        policies: &views,
        now,
        default_expiry: DAY,
        plan,
        answers: &Answers::Verified,
        expressions: &Expressions::default(),
        jobs,
    });
    d.status = Some(advance.status.clone());
    advance
}

fn annotate(d: &mut Decision, pairs: &[(&str, &str)]) {
    let annotations = d.metadata.annotations.get_or_insert_with(Default::default);
    for (k, v) in pairs {
        annotations.insert(k.to_string(), v.to_string());
    }
}

fn phase(d: &Decision) -> DecisionPhase {
    d.status.as_ref().unwrap().phase.unwrap()
}

fn types(a: &Advance) -> Vec<&'static str> {
    a.events.iter().map(DecisionEvent::event_type).collect()
}

fn with_plan(plan: &str) -> Decision {
    let mut d = decision(Criticality::Normal);
    d.spec.plan_ref = Some(crate::api::decision::PlanRef { name: plan.into() });
    d
}

fn execution_plan(action_types: &[&str], criticality: Option<Criticality>) -> ExecutionPlan {
    let mut plan: ExecutionPlan = serde_json::from_value(serde_json::json!({
        "apiVersion": "decisiongate.io/v1alpha1",
        "kind": "ExecutionPlan",
        "metadata": {"name": "ship", "namespace": "ops", "uid": "plan-1", "generation": 1},
        "spec": {"actionTypes": action_types, "mode": "Real", "steps": [
            {"name": "roll-out", "template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "c", "image": "api:2.0", "args": ["deploy"]}]}}},
        ]},
    }))
    .unwrap();
    plan.spec.criticality = criticality;
    plan
}

fn verified_condition(d: &Decision) -> Condition {
    crate::api::common::find_condition(
        &d.status.as_ref().unwrap().conditions,
        CONDITION_ANSWERS_VERIFIED,
    )
    .cloned()
    .unwrap()
}

fn policy_naming(approvers: Approvers) -> ApprovalPolicy {
    let mut p = policy(Outcome::RequireApproval, Some(1), &[]);
    p.spec.rules[0].approvers = Some(approvers);
    p
}

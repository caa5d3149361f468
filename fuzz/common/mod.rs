//! Builds Decisions, policies, plans and statuses from fuzz input. Names and enum values
//! come from short lists, so that the fuzzer spends its time on the logic rather than on
//! text that no deserializer accepts; numbers, times and expressions are free.
#![allow(dead_code)]

use arbitrary::Arbitrary;
use chrono::{DateTime, TimeZone, Utc};
use decision_gate::api::{ApprovalPolicy, Decision, DecisionStatus, ExecutionPlan, ExecutionPlanSpec};
use serde_json::{Value, json};

pub const USERS: [&str; 4] = ["alice", "bob", "carol", "agent"];
const ACTIONS: [&str; 5] = ["deploy", "delete_data", "email", "budget_spend", "follow_up"];
const CRITICALITIES: [&str; 4] = ["Critical", "High", "Normal", "Info"];
const PRIORITIES: [&str; 4] = ["Low", "Medium", "High", "Urgent"];
const RISKS: [&str; 4] = ["Low", "Medium", "High", "Critical"];
const OUTCOMES: [&str; 4] = ["AutoApprove", "RequireApproval", "AutoReject", "Escalate"];
const PHASES: [&str; 10] = [
    "Pending", "Escalated", "Approved", "Rejected", "Expired", "Executing", "Succeeded", "Failed",
    "RollingBack", "RolledBack",
];
const STEP_PHASES: [&str; 7] = [
    "Pending", "Running", "Succeeded", "Failed", "WouldExecute", "Skipped", "RolledBack",
];
const ROLLBACK_PHASES: [&str; 5] = ["AwaitingApproval", "Running", "Succeeded", "Failed", "NotRun"];
const MODES: [&str; 3] = ["DryRun", "Real", "Simulated"];
const STRATEGIES: [&str; 3] = ["Automatic", "Manual", "None"];
pub const STEPS: [&str; 4] = ["a", "b", "c", "migrate-db"];
/// Pieces of CEL that expressions are assembled from, with any text between them.
const CEL: [&str; 16] = [
    "decision", ".context", ".amount", ".actionType", ".risk.score", " < ", " == ", " && ",
    " || ", "!", "(", ")", "1000", "'deploy'", " in ", "[1, 2]",
];

fn pick<'a>(list: &[&'a str], i: u8) -> &'a str {
    list[i as usize % list.len()]
}

/// A time within a few years of 2027, to the second.
pub fn time(offset: i32) -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + i64::from(offset), 0).unwrap()
}

#[derive(Arbitrary, Debug)]
pub enum Expression {
    Text(String),
    Pieces(Vec<(u8, Option<String>)>),
}

impl Expression {
    fn text(&self) -> String {
        match self {
            Expression::Text(t) => t.clone(),
            Expression::Pieces(parts) => parts
                .iter()
                .map(|(i, extra)| format!("{}{}", pick(&CEL, *i), extra.as_deref().unwrap_or("")))
                .collect(),
        }
    }
}

#[derive(Arbitrary, Debug)]
pub struct Request {
    action: u8,
    criticality: u8,
    priority: Option<u8>,
    minutes: Option<u32>,
    source: Option<String>,
    amount: Option<i64>,
    expires_after: Option<String>,
    plan: bool,
    requested_by: Option<u8>,
    answers: Vec<(u8, u8)>,
    created: i32,
}

impl Request {
    pub fn decision(&self, status: Option<Value>) -> Option<Decision> {
        let mut annotations = serde_json::Map::new();
        if let Some(by) = self.requested_by {
            annotations.insert("decisiongate.io/requested-by".into(), json!(pick(&USERS, by)));
        }
        for (kind, user) in &self.answers {
            let key = ["approved-by", "rejected-by", "rollback-approved-by", "rejection-reason"]
                [*kind as usize % 4];
            annotations.insert(key.into(), json!(pick(&USERS, *user)));
        }
        let mut spec = json!({
            "actionType": pick(&ACTIONS, self.action),
            "description": "fuzzed",
            "criticality": pick(&CRITICALITIES, self.criticality),
            "context": {"amount": self.amount},
        });
        if let Some(p) = self.priority {
            spec["priority"] = json!(pick(&PRIORITIES, p));
        }
        if let Some(m) = self.minutes {
            spec["estimatedDurationMinutes"] = json!(m);
        }
        if let Some(s) = &self.source {
            spec["source"] = json!(s);
        }
        if let Some(e) = &self.expires_after {
            spec["expiresAfter"] = json!(e);
        }
        if self.plan {
            spec["planRef"] = json!({"name": "plan"});
        }
        let mut value = json!({
            "apiVersion": "decisiongate.io/v1alpha1",
            "kind": "Decision",
            "metadata": {
                "name": "d", "namespace": "ns", "uid": "u-1", "generation": 1,
                "creationTimestamp": time(self.created).to_rfc3339(),
                "annotations": annotations,
            },
            "spec": spec,
        });
        if let Some(status) = status {
            value["status"] = status;
        }
        serde_json::from_value(value).ok()
    }
}

#[derive(Arbitrary, Debug)]
pub struct Rule {
    outcome: u8,
    criticalities: Vec<u8>,
    actions: Vec<u8>,
    priorities: Vec<u8>,
    sources: Vec<String>,
    min_risk: Option<u8>,
    max_risk: Option<u8>,
    min_minutes: Option<u32>,
    max_minutes: Option<u32>,
    expression: Option<Expression>,
    required: Option<u32>,
    approvers: Vec<u8>,
    expires_after: Option<String>,
}

#[derive(Arbitrary, Debug)]
pub struct PolicyInput {
    name: u8,
    priority: i32,
    rules: Vec<Rule>,
    expires_after: Option<String>,
    /// Stands for a stored policy the operator could not read.
    unreadable: bool,
}

impl PolicyInput {
    pub fn policy(&self) -> Option<ApprovalPolicy> {
        let rules: Vec<Value> = self
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut m = json!({
                    "criticalities": r.criticalities.iter().map(|c| pick(&CRITICALITIES, *c)).collect::<Vec<_>>(),
                    "actionTypes": r.actions.iter().map(|a| pick(&ACTIONS, *a)).collect::<Vec<_>>(),
                    "priorities": r.priorities.iter().map(|p| pick(&PRIORITIES, *p)).collect::<Vec<_>>(),
                    "sources": r.sources,
                });
                if let Some(x) = r.min_risk {
                    m["minRisk"] = json!(pick(&RISKS, x));
                }
                if let Some(x) = r.max_risk {
                    m["maxRisk"] = json!(pick(&RISKS, x));
                }
                if let Some(x) = r.min_minutes {
                    m["minDurationMinutes"] = json!(x);
                }
                if let Some(x) = r.max_minutes {
                    m["maxDurationMinutes"] = json!(x);
                }
                if let Some(e) = &r.expression {
                    m["expression"] = json!(e.text());
                }
                let mut rule = json!({
                    "name": format!("rule-{i}"),
                    "match": m,
                    "outcome": pick(&OUTCOMES, r.outcome),
                    "approvers": {"users": r.approvers.iter().map(|u| pick(&USERS, *u)).collect::<Vec<_>>()},
                });
                if let Some(n) = r.required {
                    rule["requiredApprovals"] = json!(n);
                }
                if let Some(e) = &r.expires_after {
                    rule["expiresAfter"] = json!(e);
                }
                rule
            })
            .collect();
        let mut spec = json!({"priority": self.priority, "rules": rules});
        if let Some(e) = &self.expires_after {
            spec["expiresAfter"] = json!(e);
        }
        serde_json::from_value(json!({
            "apiVersion": "decisiongate.io/v1alpha1",
            "kind": "ApprovalPolicy",
            "metadata": {"name": format!("policy-{}", self.name % 4), "namespace": "ns", "generation": 1},
            "spec": spec,
        }))
        .ok()
        .map(|mut policy: ApprovalPolicy| {
            if self.unreadable {
                policy.spec.unreadable = Some("fuzzed".into());
            }
            policy
        })
    }
}

#[derive(Arbitrary, Debug)]
pub struct StepRecord {
    name: u8,
    job: Option<u8>,
    phase: u8,
    started: Option<i32>,
    finished: Option<i32>,
    attempts: u32,
}

impl StepRecord {
    fn value(&self) -> Value {
        json!({
            "name": pick(&STEPS, self.name),
            "jobName": self.job.map(|j| format!("d-{}-{j}", pick(&STEPS, self.name))),
            "phase": pick(&STEP_PHASES, self.phase),
            "startedAt": self.started.map(|t| time(t).to_rfc3339()),
            "finishedAt": self.finished.map(|t| time(t).to_rfc3339()),
            "attempts": self.attempts,
        })
    }
}

#[derive(Arbitrary, Debug)]
pub struct StatusInput {
    phase: Option<u8>,
    requested_by: Option<u8>,
    approvals: Vec<(u8, i32)>,
    rejection: Option<(u8, i32)>,
    expires_at: Option<i32>,
    evaluation: Option<(u8, u32, Vec<u8>)>,
    execution: Option<ExecutionInput>,
}

#[derive(Arbitrary, Debug)]
pub struct ExecutionInput {
    mode: u8,
    generation: Option<i64>,
    started: Option<i32>,
    steps: Vec<StepRecord>,
    rollback: Option<(u8, u8, Vec<StepRecord>)>,
}

impl StatusInput {
    pub fn value(&self) -> Value {
        let mut status = json!({
            "approvals": self.approvals.iter().map(|(u, t)| json!({"approver": pick(&USERS, *u), "at": time(*t).to_rfc3339()})).collect::<Vec<_>>(),
        });
        if let Some(p) = self.phase {
            status["phase"] = json!(pick(&PHASES, p));
        }
        if let Some(u) = self.requested_by {
            status["requestedBy"] = json!(pick(&USERS, u));
        }
        if let Some((u, t)) = self.rejection {
            status["rejection"] = json!({"rejectedBy": pick(&USERS, u), "reason": "no", "at": time(t).to_rfc3339()});
        }
        if let Some(t) = self.expires_at {
            status["expiresAt"] = json!(time(t).to_rfc3339());
        }
        if let Some((outcome, required, approvers)) = &self.evaluation {
            status["evaluation"] = json!({
                "outcome": pick(&OUTCOMES, *outcome),
                "message": "fuzzed",
                "requiredApprovals": required,
                "approvers": {"users": approvers.iter().map(|u| pick(&USERS, *u)).collect::<Vec<_>>()},
                "policySet": "",
            });
        }
        if let Some(e) = &self.execution {
            let mut exec = json!({
                "mode": pick(&MODES, e.mode),
                "planGeneration": e.generation,
                "startedAt": e.started.map(|t| time(t).to_rfc3339()),
                "steps": e.steps.iter().map(StepRecord::value).collect::<Vec<_>>(),
            });
            if let Some((strategy, phase, steps)) = &e.rollback {
                exec["rollback"] = json!({
                    "strategy": pick(&STRATEGIES, *strategy),
                    "phase": pick(&ROLLBACK_PHASES, *phase),
                    "steps": steps.iter().map(StepRecord::value).collect::<Vec<_>>(),
                });
            }
            status["execution"] = exec;
        }
        status
    }

    pub fn status(&self) -> Option<DecisionStatus> {
        serde_json::from_value(self.value()).ok()
    }
}

#[derive(Arbitrary, Debug)]
pub struct PlanInput {
    action_types: Vec<u8>,
    criticality: Option<u8>,
    mode: u8,
    strategy: u8,
    steps: Vec<(u8, bool, u32, Option<u32>, Option<u32>)>,
}

impl PlanInput {
    /// The plan as the cluster holds it: named `plan`, uid `plan-uid`.
    pub fn plan(&self, generation: i64) -> Option<ExecutionPlan> {
        let mut plan = ExecutionPlan::new("plan", self.spec()?);
        plan.metadata.namespace = Some("ns".into());
        plan.metadata.uid = Some("plan-uid".into());
        plan.metadata.generation = Some(generation);
        Some(plan)
    }

    pub fn spec(&self) -> Option<ExecutionPlanSpec> {
        let template = json!({"spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}});
        let steps: Vec<Value> = self
            .steps
            .iter()
            .map(|(name, rollback, retries, timeout, simulated)| {
                let mut step = json!({
                    "name": pick(&STEPS, *name),
                    "template": template,
                    "retries": retries,
                    "timeoutSeconds": timeout,
                    "simulatedDurationSeconds": simulated,
                });
                if *rollback {
                    step["rollback"] = json!({"template": template});
                }
                step
            })
            .collect();
        let mut spec = json!({
            "actionTypes": self.action_types.iter().map(|a| pick(&ACTIONS, *a)).collect::<Vec<_>>(),
            "mode": pick(&MODES, self.mode),
            "rollbackStrategy": pick(&STRATEGIES, self.strategy),
            "steps": steps,
        });
        if let Some(c) = self.criticality {
            spec["criticality"] = json!(pick(&CRITICALITIES, c));
        }
        serde_json::from_value(spec)
        .ok()
    }
}

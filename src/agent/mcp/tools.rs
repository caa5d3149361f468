//! What the MCP tools take and give back, without a cluster: their arguments (with the
//! JSON schemas and descriptions an LLM reads), the [`Request`] an argument list makes, and
//! the shape of every answer.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::annotations::REQUESTED_BY;
use crate::api::decision::{Criticality, Priority, StepPhase};
use crate::api::{Decision, DecisionPhase, ExecutionPlan, duration};
use crate::request::{REQUESTED_THROUGH, Report, Request};

/// The value of the [`REQUESTED_THROUGH`] label on Decisions this server creates.
pub const THROUGH_MCP: &str = "mcp";

/// How long `wait_for_decision` waits when not told.
pub const DEFAULT_WAIT_SECONDS: u64 = 600;

/// The longest `wait_for_decision` waits in one call; an agent calls again to wait longer.
pub const MAX_WAIT_SECONDS: u64 = 1800;

#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestApproval {
    /// The kind of action you want to take, in lower case with '_', '-' or '.': for example
    /// deploy, delete_data, budget_spend, restart_service, send_email. Approval policies
    /// decide by it, and a plan runs only for the action types it lists (see list_plans).
    pub action_type: String,
    /// What will happen, in plain words for the person who approves it: what, where, why,
    /// and what could go wrong. Up to 4096 characters.
    pub description: String,
    /// How critical the action is. Critical is never approved automatically; High (the
    /// default) needs a person unless a policy allows it; Normal may be approved
    /// automatically; Info needs no confirmation. Do not understate it.
    #[serde(default)]
    pub criticality: Option<Criticality>,
    /// How urgent it is: Low, Medium, High or Urgent. Feeds the risk score.
    #[serde(default)]
    pub priority: Option<Priority>,
    /// Facts the approver and the plan's steps need, as a JSON object (for example
    /// {"service": "api-gateway", "version": "2.0.0"}). Steps receive it as JSON in
    /// DECISION_GATE_CONTEXT; policies may test it.
    #[serde(default)]
    pub context: Option<BTreeMap<String, serde_json::Value>>,
    /// The ExecutionPlan (in the same namespace) that carries the action out once it is
    /// approved; see list_plans. Without one the Decision is only a gate: once approved,
    /// you carry out the action yourself.
    #[serde(default)]
    pub plan: Option<String>,
    /// The person you act for, if a person asked you to do this. That person cannot
    /// approve the request.
    #[serde(default)]
    pub on_behalf_of: Option<String>,
    /// How long the request may wait for an answer before it expires, such as 30m, 4h or
    /// 1h30m (at least 1s). Default: the matching policy's, else the operator's (24h).
    #[serde(default)]
    pub expires_after: Option<String>,
    /// The system or agent asking, such as agents/release-bot. Feeds the risk score; who
    /// you are is recorded from your credentials whatever this says.
    #[serde(default)]
    pub source: Option<String>,
    /// How long the action will take, in minutes. Long actions may need approval.
    #[serde(default)]
    pub estimated_duration_minutes: Option<u32>,
    /// A name for the Decision (lower-case letters, digits, '-' and '.'). Default: made
    /// from the action type with a random suffix. A name already taken is refused.
    #[serde(default)]
    pub name: Option<String>,
    /// The Kubernetes namespace to ask in. Default: the server's namespace.
    #[serde(default)]
    pub namespace: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WaitForDecision {
    /// The Decision's name, as request_approval returned it.
    pub name: String,
    /// How long to wait for the answer, in seconds (default 600, at most 1800). When the
    /// time runs out the Decision is still waiting: call again to wait longer.
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
    /// The Decision's namespace. Default: the server's namespace.
    #[serde(default)]
    pub namespace: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GetDecision {
    /// The Decision's name.
    pub name: String,
    /// The Decision's namespace. Default: the server's namespace.
    #[serde(default)]
    pub namespace: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListDecisions {
    /// Only the Decisions that still wait for an answer or are still running.
    #[serde(default)]
    pub unsettled_only: bool,
    /// The namespace. Default: the server's namespace.
    #[serde(default)]
    pub namespace: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListPlans {
    /// The namespace. Default: the server's namespace.
    #[serde(default)]
    pub namespace: Option<String>,
}

impl RequestApproval {
    /// The request these arguments make, or why they cannot make one. The API server
    /// checks the rest (names, lengths, action type shape) and says so in its refusal.
    pub fn request(&self) -> Result<Request, String> {
        let expires_after = match self.expires_after.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) => {
                let d = duration::Duration(text.to_owned());
                d.parse()
                    .map_err(|e| format!("expiresAfter: {e} (for example 30m, 4h or 1h30m)"))?;
                Some(d)
            }
        };
        let mut labels = BTreeMap::new();
        labels.insert(REQUESTED_THROUGH.to_owned(), THROUGH_MCP.to_owned());
        Ok(Request {
            name: self.name.clone().filter(|n| !n.trim().is_empty()),
            action_type: self.action_type.trim().to_owned(),
            description: self.description.trim().to_owned(),
            criticality: self.criticality,
            priority: self.priority,
            estimated_duration_minutes: self.estimated_duration_minutes,
            source: self.source.clone().filter(|s| !s.trim().is_empty()),
            context: self.context.clone().unwrap_or_default(),
            plan: self.plan.clone().filter(|p| !p.trim().is_empty()),
            on_behalf_of: self.on_behalf_of.clone().filter(|p| !p.trim().is_empty()),
            expires_after,
            not_before: None,
            labels,
        })
    }
}

/// The seconds a wait lasts: the default when not given, never more than the cap, at least
/// one.
pub fn wait_seconds(asked: Option<u64>) -> u64 {
    asked
        .unwrap_or(DEFAULT_WAIT_SECONDS)
        .clamp(1, MAX_WAIT_SECONDS)
}

/// Two sentences as one text: the first ended with a full stop when it lacks one.
pub fn sentences(first: &str, second: &str) -> String {
    let first = first.trim_end();
    if first.ends_with(['.', '!', '?']) {
        format!("{first} {second}")
    } else {
        format!("{first}. {second}")
    }
}

/// A progress notification's message: what changed for a Decision being waited for, in
/// one line (who must answer, which step runs), or its summary once settled.
pub fn progress_message(d: &Decision) -> String {
    let name = d.metadata.name.as_deref().unwrap_or("the Decision");
    let Some(status) = d.status.as_ref() else {
        return format!("{name} is requested; the operator has not evaluated it yet");
    };
    let Some(phase) = status.phase else {
        return format!("{name} is requested; the operator has not evaluated it yet");
    };
    match phase {
        DecisionPhase::Pending | DecisionPhase::Escalated => {
            format!(
                "{name} is {phase}: waiting for people to answer{}",
                crate::request::standing(status)
            )
        }
        DecisionPhase::Approved if d.spec.plan_ref.is_some() => {
            format!("{name} is approved; its plan is about to run")
        }
        DecisionPhase::Executing | DecisionPhase::RollingBack => {
            let execution = status.execution.as_ref();
            let (verb, steps) = match phase {
                DecisionPhase::RollingBack => (
                    "rolling back",
                    execution
                        .and_then(|e| e.rollback.as_ref())
                        .map(|r| r.steps.as_slice())
                        .unwrap_or_default(),
                ),
                _ => (
                    "running its plan",
                    execution.map(|e| e.steps.as_slice()).unwrap_or_default(),
                ),
            };
            let total = match phase {
                DecisionPhase::Executing => status
                    .plan
                    .as_ref()
                    .map_or(steps.len(), |p| p.steps.len().max(steps.len())),
                _ => steps.len(),
            };
            let current = steps
                .iter()
                .enumerate()
                .rev()
                .find(|(_, s)| s.phase != StepPhase::Pending);
            match current {
                Some((i, s)) => format!(
                    "{name} is {verb}: step {} of {total} ({}) {}",
                    i + 1,
                    s.name,
                    s.phase.as_str()
                ),
                None => format!("{name} is {verb}"),
            }
        }
        _ => Report::of(d).summary,
    }
}

/// What the agent should do next, given where its Decision stands.
pub fn next_step(report: &Report) -> String {
    match report.verdict {
        Some(v) if v.allows() => "You may go ahead.".to_owned(),
        Some(_) => "Do not go ahead.".to_owned(),
        None => format!(
            "Do not go ahead yet: call wait_for_decision with name {} to wait for the answer.",
            report.name
        ),
    }
}

/// The answer of `wait_for_decision`: the report, and whether the wait ran out first.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Waited {
    /// True when the time ran out before the Decision was settled; it still waits.
    pub timed_out: bool,
    pub waited_seconds: u64,
    #[serde(flatten)]
    pub report: Report,
}

impl Waited {
    pub fn text(&self) -> String {
        if self.timed_out {
            format!(
                "Still waiting after {}s: {} Call wait_for_decision again to keep waiting; do not go ahead yet.",
                self.waited_seconds, self.report.summary
            )
        } else {
            sentences(&self.report.summary, &next_step(&self.report))
        }
    }
}

/// Who made a Decision: the status the operator records, else the annotation admission
/// stamps at creation (before the operator has seen it).
pub fn requester(d: &Decision) -> Option<&str> {
    d.status
        .as_ref()
        .and_then(|s| s.requested_by.as_deref())
        .or_else(|| {
            d.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(REQUESTED_BY))
                .map(String::as_str)
        })
}

/// The caller's own Decisions, newest first, as reports.
pub fn own_decisions(items: Vec<Decision>, user: &str, unsettled_only: bool) -> Vec<Report> {
    let mut mine: Vec<Decision> = items
        .into_iter()
        .filter(|d| requester(d) == Some(user))
        .filter(|d| !unsettled_only || crate::request::Verdict::of(d).is_none())
        .collect();
    let created = |d: &Decision| d.metadata.creation_timestamp.as_ref().map(|t| t.0);
    mine.sort_by(|a, b| {
        created(b)
            .cmp(&created(a))
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
    mine.iter().map(Report::of).collect()
}

/// The answer of `list_decisions`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OwnDecisions {
    pub namespace: String,
    /// Who the API server says you are: the requester these Decisions record.
    pub requester: String,
    pub decisions: Vec<Report>,
}

impl OwnDecisions {
    pub fn text(&self) -> String {
        if self.decisions.is_empty() {
            return format!(
                "No Decisions of {} in namespace {}.",
                self.requester, self.namespace
            );
        }
        let mut text = format!(
            "{} Decision(s) of {} in namespace {}:",
            self.decisions.len(),
            self.requester,
            self.namespace
        );
        for r in &self.decisions {
            text.push_str(&format!("\n- {} ({}): {}", r.name, r.phase, r.summary));
        }
        text
    }
}

/// One ExecutionPlan, as an agent choosing one needs it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanSummary {
    pub name: String,
    /// The action types it carries out: a request naming it must have one of them.
    pub action_types: Vec<String>,
    /// DryRun, Real or Simulated.
    pub mode: String,
    /// The least criticality of a request that runs it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub criticality: Option<Criticality>,
    pub steps: Vec<PlanStep>,
    /// Ready (every step admitted by the API server), Invalid, or Unchecked.
    pub phase: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checked_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanStep {
    pub name: String,
    pub images: Vec<String>,
}

impl PlanSummary {
    pub fn of(plan: &ExecutionPlan) -> PlanSummary {
        let status = plan.status.clone().unwrap_or_default();
        PlanSummary {
            name: plan.metadata.name.clone().unwrap_or_default(),
            action_types: plan.spec.action_types.clone(),
            mode: format!("{:?}", plan.spec.mode),
            criticality: plan.spec.criticality,
            steps: plan
                .spec
                .steps
                .iter()
                .map(|s| PlanStep {
                    name: s.name.clone(),
                    images: images(&s.template),
                })
                .collect(),
            phase: status
                .phase
                .map_or_else(|| "Unchecked".to_owned(), |p| format!("{p:?}")),
            checked_at: status.checked_at,
        }
    }
}

/// The images of a pod template's containers (init containers first).
fn images(template: &serde_json::Value) -> Vec<String> {
    ["initContainers", "containers"]
        .iter()
        .filter_map(|key| template.pointer(&format!("/spec/{key}"))?.as_array())
        .flatten()
        .filter_map(|c| c.get("image")?.as_str().map(str::to_owned))
        .collect()
}

/// The answer of `list_plans`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plans {
    pub namespace: String,
    pub plans: Vec<PlanSummary>,
}

impl Plans {
    pub fn of(namespace: &str, items: &[ExecutionPlan]) -> Plans {
        let mut plans: Vec<PlanSummary> = items.iter().map(PlanSummary::of).collect();
        plans.sort_by(|a, b| a.name.cmp(&b.name));
        Plans {
            namespace: namespace.to_owned(),
            plans,
        }
    }

    pub fn text(&self) -> String {
        if self.plans.is_empty() {
            return format!(
                "No ExecutionPlans in namespace {}: a request there can only be a gate (no plan).",
                self.namespace
            );
        }
        let mut text = format!("ExecutionPlans in namespace {}:", self.namespace);
        for p in &self.plans {
            let steps: Vec<&str> = p.steps.iter().map(|s| s.name.as_str()).collect();
            text.push_str(&format!(
                "\n- {} ({}, {}): for {}; steps {}",
                p.name,
                p.mode,
                p.phase,
                p.action_types.join(", "),
                steps.join(" → ")
            ));
        }
        text
    }
}

//! The requester's side of a Decision, as agents and scripts see it: what they ask for
//! (a [`Request`], made into a Decision), when the answer is in (a [`Verdict`]), and what to
//! tell them about it (a [`Report`]). The MCP server, the tool-call hook and
//! `kubectl decision request` share these, so that an agent and a script read one outcome
//! the same way.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use kube_core::ObjectMeta;
use serde::{Deserialize, Serialize};

use crate::api::common::Approvers;
use crate::api::decision::{
    Approval, Criticality, Decision, DecisionPhase, DecisionSpec, ExecutionStatus, PlanRef,
    Priority, Rejection, RiskAssessment,
};
use crate::api::duration::Duration;

/// The label a Decision made by an agent's tool carries: which front end asked.
pub const REQUESTED_THROUGH: &str = "decisiongate.io/requested-through";

/// What an agent or a script asks for. Who asks is not part of it: the API server records
/// the requester from the credentials the request is made with.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Request {
    /// The Decision's name; when unset, the API server makes one from the action type.
    pub name: Option<String>,
    pub action_type: String,
    pub description: String,
    pub criticality: Option<Criticality>,
    pub priority: Option<Priority>,
    pub estimated_duration_minutes: Option<u32>,
    pub source: Option<String>,
    pub context: BTreeMap<String, serde_json::Value>,
    pub plan: Option<String>,
    pub on_behalf_of: Option<String>,
    pub expires_after: Option<Duration>,
    pub not_before: Option<DateTime<Utc>>,
    pub labels: BTreeMap<String, String>,
}

impl Request {
    /// The Decision to create. Criticality defaults to High: a request that does not say
    /// how critical it is needs a person's confirmation unless a policy allows it.
    pub fn decision(&self) -> Decision {
        let generate_name = self
            .name
            .is_none()
            .then(|| format!("{}-", name_stem(&self.action_type)));
        Decision {
            metadata: ObjectMeta {
                name: self.name.clone(),
                generate_name,
                labels: (!self.labels.is_empty()).then(|| self.labels.clone()),
                ..ObjectMeta::default()
            },
            spec: DecisionSpec {
                action_type: self.action_type.clone(),
                description: self.description.clone(),
                criticality: self.criticality.unwrap_or(Criticality::High),
                priority: self.priority,
                estimated_duration_minutes: self.estimated_duration_minutes,
                source: self.source.clone(),
                context: (!self.context.is_empty()).then(|| self.context.clone()),
                plan_ref: self.plan.clone().map(|name| PlanRef { name }),
                expires_after: self.expires_after.clone(),
                not_before: self.not_before,
                on_behalf_of: self.on_behalf_of.clone(),
            },
            status: None,
        }
    }
}

/// A name prefix from an action type: lower case, `_` and `.` made `-`, at most 40
/// characters, so that `generateName` gives a valid object name.
fn name_stem(action_type: &str) -> String {
    let stem: String = action_type
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '-',
        })
        .take(40)
        .collect();
    let stem = stem.trim_matches('-');
    if stem.is_empty() {
        "decision".to_owned()
    } else {
        stem.to_owned()
    }
}

/// How a request ended, once it has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// Approved, and there is no plan to run: the requester may go ahead.
    Approved,
    /// Approved, and its plan ran to the end (or would have, in DryRun).
    Succeeded,
    /// An approver or a policy said no.
    Rejected,
    /// Approved, but its plan failed (and was not rolled back).
    Failed,
    /// Approved, its plan failed, and the compensating steps ran.
    RolledBack,
    /// Nobody answered in time.
    Expired,
}

impl Verdict {
    /// The verdict of a Decision, once there is one. A Decision with a plan is settled when
    /// the plan has run, not when it is approved.
    pub fn of(d: &Decision) -> Option<Verdict> {
        let phase = d.status.as_ref()?.phase?;
        match phase {
            DecisionPhase::Approved if d.spec.plan_ref.is_none() => Some(Verdict::Approved),
            DecisionPhase::Succeeded => Some(Verdict::Succeeded),
            DecisionPhase::Rejected => Some(Verdict::Rejected),
            DecisionPhase::Failed => Some(Verdict::Failed),
            DecisionPhase::RolledBack => Some(Verdict::RolledBack),
            DecisionPhase::Expired => Some(Verdict::Expired),
            DecisionPhase::Approved
            | DecisionPhase::Pending
            | DecisionPhase::Escalated
            | DecisionPhase::Executing
            | DecisionPhase::RollingBack => None,
        }
    }

    /// Whether the requester may go ahead with the action.
    pub fn allows(self) -> bool {
        matches!(self, Verdict::Approved | Verdict::Succeeded)
    }

    /// The exit status a waiting command ends with: 0 approved (or succeeded), 1 rejected
    /// or failed, 2 expired. ([`TIMED_OUT`] is 3.)
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Approved | Verdict::Succeeded => 0,
            Verdict::Rejected | Verdict::Failed | Verdict::RolledBack => 1,
            Verdict::Expired => 2,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Approved => "Approved",
            Verdict::Succeeded => "Succeeded",
            Verdict::Rejected => "Rejected",
            Verdict::Failed => "Failed",
            Verdict::RolledBack => "RolledBack",
            Verdict::Expired => "Expired",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The exit status of a waiting command whose wait ran out before a verdict.
pub const TIMED_OUT: u8 = 3;

/// Whether the operator has evaluated the Decision (it gives it a phase when it does).
pub fn evaluated(d: &Decision) -> bool {
    d.status.as_ref().is_some_and(|s| s.phase.is_some())
}

/// What a requester is told about their Decision: where it stands, why, who may still
/// answer, who did, and what ran.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub name: String,
    pub namespace: String,
    /// The phase, or `Requested` while the operator has not evaluated it yet.
    pub phase: String,
    /// Set once the request is settled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// One or two sentences that say it all.
    pub summary: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk: Option<RiskAssessment>,
    /// `policy/rule` that decided, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_approvals: Option<u32>,
    /// Who may approve, while it waits (empty lists: anyone allowed to approve Decisions in
    /// the namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub may_approve: Option<Approvers>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<Approval>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejection: Option<Rejection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// What approvers confirm: the Decision's digest (its uid, request and pinned plan).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The pinned plan: `name@digest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    /// The execution trace, once the plan ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution: Option<ExecutionStatus>,
}

impl Report {
    pub fn of(d: &Decision) -> Report {
        let status = d.status.clone().unwrap_or_default();
        let verdict = Verdict::of(d);
        let name = d.metadata.name.clone().unwrap_or_default();
        let waiting = status.phase.is_none_or(DecisionPhase::is_awaiting_answer);
        let rule = status
            .evaluation
            .as_ref()
            .and_then(|e| match (&e.policy, &e.rule) {
                (Some(p), Some(r)) => Some(format!("{p}/{r}")),
                _ => None,
            });
        let approvals = status
            .approvals
            .iter()
            .filter(|a| crate::answers::counts(a, &status))
            .cloned()
            .collect();
        Report {
            summary: summary(d, verdict, rule.as_deref()),
            namespace: d.metadata.namespace.clone().unwrap_or_default(),
            phase: status
                .phase
                .map_or_else(|| "Requested".to_owned(), |p| p.as_str().to_owned()),
            verdict,
            digest: status.digest.clone(),
            requested_by: status.requested_by,
            on_behalf_of: status.on_behalf_of,
            risk: status.risk,
            required_approvals: status.evaluation.as_ref().map(|e| e.required_approvals),
            may_approve: status
                .evaluation
                .as_ref()
                .filter(|_| waiting)
                .map(|e| e.approvers.clone()),
            rule,
            approvals,
            rejection: status.rejection,
            expires_at: status.expires_at.filter(|_| waiting),
            plan: status.plan.map(|p| format!("{}@{}", p.name, p.digest)),
            execution: status.execution,
            name,
        }
    }
}

fn summary(d: &Decision, verdict: Option<Verdict>, rule: Option<&str>) -> String {
    let name = d.metadata.name.as_deref().unwrap_or("the Decision");
    let Some(status) = d.status.as_ref().filter(|s| s.phase.is_some()) else {
        return format!("{name} is requested; the operator has not evaluated it yet.");
    };
    let approvers = || {
        let people: Vec<&str> = status
            .approvals
            .iter()
            .filter(|a| crate::answers::counts(a, status))
            .map(|a| a.approver.as_str())
            .collect();
        if people.is_empty() {
            match rule {
                Some(rule) => format!("the policy rule {rule}"),
                None => "a policy".to_owned(),
            }
        } else {
            people.join(" and ")
        }
    };
    let reasons = || {
        let said: Vec<&str> = status
            .approvals
            .iter()
            .filter_map(|a| a.reason.as_deref())
            .collect();
        if said.is_empty() {
            String::new()
        } else {
            format!(" (\"{}\")", said.join("\"; \""))
        }
    };
    let failed_step = || {
        status
            .execution
            .as_ref()
            .and_then(|e| {
                e.steps
                    .iter()
                    .find(|s| s.phase == crate::api::decision::StepPhase::Failed)
            })
            .map(|s| {
                let why = s.message.as_deref().unwrap_or("no message");
                format!(" Step {} failed: {why}.", s.name)
            })
            .unwrap_or_default()
    };
    match verdict {
        Some(Verdict::Approved) => {
            format!(
                "{name} is approved by {}{}: go ahead.",
                approvers(),
                reasons()
            )
        }
        Some(Verdict::Succeeded) => {
            let mode = status
                .execution
                .as_ref()
                .map(|e| e.mode.as_str())
                .unwrap_or("its");
            format!(
                "{name} was approved by {}{} and its plan ran to the end ({mode} mode).",
                approvers(),
                reasons()
            )
        }
        Some(Verdict::Rejected) => match &status.rejection {
            Some(r) => format!("{name} was rejected by {}: {}", r.rejected_by, r.reason),
            None => format!("{name} was rejected."),
        },
        Some(Verdict::Failed) => {
            format!("{name} was approved, but its plan failed.{}", failed_step())
        }
        Some(Verdict::RolledBack) => format!(
            "{name} was approved, but its plan failed and was rolled back.{}",
            failed_step()
        ),
        Some(Verdict::Expired) => {
            format!(
                "{name} expired: nobody answered in time. Do not go ahead; ask again if it still matters."
            )
        }
        None if !status.phase.is_some_and(DecisionPhase::is_awaiting_answer) => {
            let running = status.execution.as_ref().and_then(|e| {
                let at = e.steps.iter().position(|s| {
                    s.phase != crate::api::decision::StepPhase::Succeeded
                        && s.phase != crate::api::decision::StepPhase::WouldExecute
                })?;
                Some(format!(
                    ", at step {} of {} ({})",
                    at + 1,
                    e.steps.len(),
                    e.steps[at].name
                ))
            });
            match status.phase {
                Some(DecisionPhase::RollingBack) => {
                    format!("{name} was approved, but its plan failed; it is being rolled back.")
                }
                _ => format!(
                    "{name} is approved by {}; its plan runs next or is running{}.",
                    approvers(),
                    running.unwrap_or_default()
                ),
            }
        }
        None => {
            let phase = status.phase.map(|p| p.as_str()).unwrap_or("Requested");
            let why = status
                .evaluation
                .as_ref()
                .map(|e| format!(" {}", e.message))
                .unwrap_or_default();
            format!("{name} is {phase}{}.{why}", standing(status))
        }
    }
}

/// Where a Decision waiting for people stands, to follow its name: the approvals so far and
/// until when it waits, such as ` (approvals 0/2, until 2026-12-04T10:00:00+00:00)`; empty
/// when the status says neither.
pub fn standing(status: &crate::api::DecisionStatus) -> String {
    let parts: Vec<String> = [
        status
            .approval_progress
            .as_deref()
            .map(|p| format!("approvals {p}")),
        status
            .expires_at
            .map(|t| format!("until {}", t.to_rfc3339())),
    ]
    .into_iter()
    .flatten()
    .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

#[cfg(test)]
mod tests;

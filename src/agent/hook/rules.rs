//! What the tool-call hook decides, without a cluster: which rule a tool call matches, the
//! call's digest, the Decision to ask for, and what the Decisions already asked for the same
//! call allow.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use regex::Regex;
use serde::Deserialize;

use crate::api::Decision;
use crate::api::decision::{Criticality, DecisionPhase};
use crate::api::duration::Duration;
use crate::pin::sha256_hex;
use crate::request::{REQUESTED_THROUGH, Request, Verdict};

/// The label that ties a Decision to the tool call it asks for: the first 32 hex characters
/// of the call's digest.
pub const TOOL_CALL: &str = "decisiongate.io/tool-call";

/// The rules used when no configuration file is given.
pub const DEFAULT_CONFIG: &str = r#"# Commands that change shared systems wait for a person's approval.
rules:
- name: kubectl-delete
  tool: Bash
  pattern: '\bkubectl\b.*\s(delete|drain)\s'
  actionType: kubectl_delete
  criticality: High
- name: terraform-apply
  tool: Bash
  pattern: '\bterraform\b.*\s(apply|destroy)\b'
  actionType: infrastructure_change
  criticality: High
- name: git-force-push
  tool: Bash
  pattern: '\bgit\b.*\spush\b.*\s(--force|-f|--force-with-lease)\b'
  actionType: git_force_push
  criticality: High
"#;

/// The hook's configuration file.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// The namespace the Decisions are asked in (default: the kubeconfig context's).
    #[serde(default)]
    pub namespace: Option<String>,
    /// How long after its approval a Decision lets the same call through again (default
    /// 15m). After that the call is asked for anew.
    #[serde(default)]
    pub approval_valid_for: Option<Duration>,
    /// The Decisions' `spec.source` (default `agents/coding-agent`).
    #[serde(default)]
    pub source: Option<String>,
    /// Checked in order; the first that matches decides. A call that matches none passes.
    pub rules: Vec<Rule>,
}

/// Which tool calls need approval, and how to ask for them.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    /// The tool's name as the agent calls it (`Bash`, `Write`, `mcp__server__tool`); a
    /// regular expression matched against the whole name. Default: every tool.
    #[serde(default)]
    pub tool: Option<String>,
    /// A regular expression searched in the call: the command for `Bash`, the file path for
    /// `Write` and `Edit`, the arguments as JSON for any other tool.
    pub pattern: String,
    pub action_type: String,
    #[serde(default)]
    pub criticality: Option<Criticality>,
    /// An ExecutionPlan to run once approved.
    #[serde(default)]
    pub plan: Option<String>,
    #[serde(default)]
    pub expires_after: Option<Duration>,
}

/// A configuration whose expressions compiled.
pub struct Rules {
    pub config: Config,
    compiled: Vec<(Option<Regex>, Regex)>,
    pub approval_valid_for: std::time::Duration,
}

impl Rules {
    pub fn parse(text: &str) -> Result<Rules, String> {
        let config: Config = yaml_serde::from_str(text).map_err(|e| e.to_string())?;
        let compiled = config
            .rules
            .iter()
            .map(|r| {
                let tool = r
                    .tool
                    .as_deref()
                    .map(|t| Regex::new(&format!("^(?:{t})$")))
                    .transpose()
                    .map_err(|e| format!("rule {}: tool: {e}", r.name))?;
                let pattern =
                    Regex::new(&r.pattern).map_err(|e| format!("rule {}: pattern: {e}", r.name))?;
                Ok((tool, pattern))
            })
            .collect::<Result<_, String>>()?;
        let approval_valid_for = match &config.approval_valid_for {
            Some(d) => d.parse().map_err(|e| format!("approvalValidFor: {e}"))?,
            None => std::time::Duration::from_secs(15 * 60),
        };
        for rule in &config.rules {
            if let Some(d) = &rule.expires_after {
                d.parse()
                    .map_err(|e| format!("rule {}: expiresAfter: {e}", rule.name))?;
            }
        }
        Ok(Rules {
            config,
            compiled,
            approval_valid_for,
        })
    }

    /// The first rule that matches the call.
    pub fn matching(&self, call: &ToolCall) -> Option<&Rule> {
        let subject = call.subject();
        self.config
            .rules
            .iter()
            .zip(&self.compiled)
            .find(|(_, (tool, pattern))| {
                tool.as_ref().is_none_or(|t| t.is_match(&call.tool_name))
                    && pattern.is_match(&subject)
            })
            .map(|(rule, _)| rule)
    }
}

/// What the agent sends before it uses a tool (Claude Code's `PreToolUse` input; other
/// fields are ignored).
#[derive(Clone, Debug, Deserialize)]
pub struct ToolCall {
    pub tool_name: String,
    #[serde(default)]
    pub tool_input: serde_json::Value,
    #[serde(default)]
    pub cwd: Option<String>,
    #[serde(default)]
    pub session_id: Option<String>,
}

impl ToolCall {
    /// What the rules read: the command, the file, or the arguments as JSON.
    pub fn subject(&self) -> String {
        let field = |name: &str| self.tool_input.get(name).and_then(|v| v.as_str());
        match self.tool_name.as_str() {
            "Bash" => field("command").map(str::to_owned),
            "Write" | "Edit" | "MultiEdit" | "NotebookEdit" => field("file_path")
                .or(field("notebook_path"))
                .map(str::to_owned),
            _ => None,
        }
        .unwrap_or_else(|| serde_json::to_string(&self.tool_input).unwrap_or_default())
    }

    /// The call's identity: the tool, where it runs and the whole of its arguments but for
    /// the words the agent adds about it, which change from one try to the next.
    pub fn digest(&self) -> String {
        let mut input = self.tool_input.clone();
        if let Some(map) = input.as_object_mut() {
            map.remove("description");
            map.remove("timeout");
        }
        let text =
            serde_json::to_string(&(&self.tool_name, self.cwd.as_deref().unwrap_or(""), &input))
                .unwrap_or_default();
        sha256_hex(&text)
    }

    /// The Decision to ask for this call under `rule`.
    pub fn request(&self, rule: &Rule, source: Option<&str>) -> Request {
        let digest = self.digest();
        let subject = self.subject();
        let shown: String = subject.chars().take(300).collect();
        let ellipsis = if shown.len() < subject.len() {
            "…"
        } else {
            ""
        };
        let mut context = BTreeMap::new();
        context.insert("tool".to_owned(), serde_json::json!(self.tool_name));
        context.insert("input".to_owned(), self.tool_input.clone());
        if let Some(cwd) = &self.cwd {
            context.insert("cwd".to_owned(), serde_json::json!(cwd));
        }
        context.insert("rule".to_owned(), serde_json::json!(rule.name));
        context.insert("toolCallDigest".to_owned(), serde_json::json!(digest));
        Request {
            action_type: rule.action_type.clone(),
            description: format!(
                "An agent wants to use {}: {shown}{ellipsis}",
                self.tool_name
            ),
            criticality: rule.criticality,
            source: Some(source.unwrap_or("agents/coding-agent").to_owned()),
            context,
            plan: rule.plan.clone(),
            expires_after: rule.expires_after.clone(),
            labels: [
                (REQUESTED_THROUGH.to_owned(), "hook".to_owned()),
                (TOOL_CALL.to_owned(), label(&digest)),
            ]
            .into(),
            ..Request::default()
        }
    }
}

/// The label value for a digest.
pub fn label(digest: &str) -> String {
    digest.chars().take(32).collect()
}

/// What the Decisions already asked for a call say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Judgement {
    /// Approved, recently enough: the call may go ahead.
    Allow(String),
    /// Asked and not answered yet, or refused: the call waits or stops.
    Deny(String),
    /// Nothing current: ask again.
    Ask,
}

/// Judges a call by the Decisions asked for it (by the same requester), newest first
/// whatever their order: the newest one that still says something decides.
pub fn judge(asked: &[Decision], now: DateTime<Utc>, valid_for: std::time::Duration) -> Judgement {
    let valid_for = chrono::Duration::from_std(valid_for).unwrap_or(chrono::Duration::MAX);
    let mut newest_first: Vec<&Decision> = asked.iter().collect();
    newest_first.sort_by_key(|d| {
        std::cmp::Reverse(
            d.metadata
                .creation_timestamp
                .as_ref()
                .map(|t| crate::api::common::to_chrono(&t.0)),
        )
    });
    for d in newest_first {
        let name = d.metadata.name.as_deref().unwrap_or("?");
        let namespace = d.metadata.namespace.as_deref().unwrap_or("?");
        let status = d.status.clone().unwrap_or_default();
        let recent = |t: Option<DateTime<Utc>>| t.is_some_and(|t| now - t <= valid_for);
        match (status.phase, Verdict::of(d)) {
            (None | Some(DecisionPhase::Pending | DecisionPhase::Escalated), _) => {
                return Judgement::Deny(waiting(name, namespace, &status));
            }
            (
                Some(
                    DecisionPhase::Approved | DecisionPhase::Executing | DecisionPhase::RollingBack,
                ),
                None,
            ) => {
                return Judgement::Deny(format!(
                    "decision-gate: Decision {name} in namespace {namespace} is approved and its plan is running ({}); try again once it has finished.",
                    status.phase.map(|p| p.as_str()).unwrap_or("")
                ));
            }
            (_, Some(v))
                if v.allows()
                    && recent(
                        status
                            .execution
                            .as_ref()
                            .and_then(|e| e.finished_at)
                            .max(status.approved_at),
                    ) =>
            {
                let by: Vec<&str> = status
                    .approvals
                    .iter()
                    .map(|a| a.approver.as_str())
                    .collect();
                let by = if by.is_empty() {
                    "a policy".to_owned()
                } else {
                    by.join(" and ")
                };
                return Judgement::Allow(format!(
                    "decision-gate: approved by {by} as Decision {name} in namespace {namespace}."
                ));
            }
            (_, Some(Verdict::Rejected)) if recent(status.rejection.as_ref().map(|r| r.at)) => {
                let (who, why) = status
                    .rejection
                    .as_ref()
                    .map(|r| (r.rejected_by.as_str(), r.reason.as_str()))
                    .unwrap_or_default();
                return Judgement::Deny(format!(
                    "decision-gate: Decision {name} in namespace {namespace} was rejected by {who}: {why}. Do not run this; ask the person why, or change the approach."
                ));
            }
            // Expired, failed, or approved or rejected too long ago: it says nothing now.
            _ => continue,
        }
    }
    Judgement::Ask
}

/// The denial for a call whose Decision waits for people.
pub fn waiting(name: &str, namespace: &str, status: &crate::api::DecisionStatus) -> String {
    format!(
        "decision-gate: this call needs a person's approval. It waits as Decision {name} in namespace {namespace}{}. An approver runs: kubectl decision approve {name} -n {namespace}. Once it is approved, make exactly the same call again; do not try another way around.",
        crate::request::standing(status)
    )
}

#[cfg(test)]
mod tests;

//! `decision-gate hook`: a pre-tool-use hook for coding agents (Claude Code's `PreToolUse`
//! protocol: the call as JSON on standard input, the verdict as JSON on standard output).
//!
//! A call that matches a rule is asked for as a Decision and denied with a message that
//! names it; once people approve it, the same call (by its digest) is allowed. Anything
//! that goes wrong on the way denies: the hook fails closed. A call that matches no rule
//! passes untouched (no output).

pub mod rules;

use std::time::Duration;

use kube::api::ListParams;
use kube::{Api, Client};
use serde::Serialize;

use self::rules::{Judgement, Rules, TOOL_CALL, ToolCall, judge, label};
use crate::agent;
use crate::api::Decision;
use crate::request::evaluated;

/// How long the hook waits for the operator to evaluate a new Decision: long enough for a
/// policy that approves or rejects at once to answer the call now.
const EVALUATION_WAIT: Duration = Duration::from_secs(5);

/// What the hook answers, as Claude Code reads it.
#[derive(Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Answer {
    hook_specific_output: PreToolUse,
}

#[derive(Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
struct PreToolUse {
    hook_event_name: &'static str,
    permission_decision: &'static str,
    permission_decision_reason: String,
}

impl Answer {
    pub fn allow(reason: String) -> Answer {
        Answer::of("allow", reason)
    }

    pub fn deny(reason: String) -> Answer {
        Answer::of("deny", reason)
    }

    fn of(decision: &'static str, reason: String) -> Answer {
        Answer {
            hook_specific_output: PreToolUse {
                hook_event_name: "PreToolUse",
                permission_decision: decision,
                permission_decision_reason: reason,
            },
        }
    }

    pub fn is_allow(&self) -> bool {
        self.hook_specific_output.permission_decision == "allow"
    }
}

/// Where the hook's Decisions go and with which credentials.
pub struct Target {
    pub client: Client,
    pub namespace: String,
}

/// Answers one tool call: None when no rule matches (the call passes untouched).
/// `connect` is called only for a call that needs the cluster.
pub async fn answer<F, Fut>(rules: &Rules, input: &str, connect: F) -> Option<Answer>
where
    F: FnOnce(Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<Target, String>>,
{
    let call: ToolCall = match serde_json::from_str(input) {
        Ok(call) => call,
        Err(e) => {
            return Some(Answer::deny(format!(
                "decision-gate: the hook could not read the tool call ({e}); denied, since it cannot tell whether the call needs approval"
            )));
        }
    };
    let rule = rules.matching(&call)?;
    let refused = |why: String| {
        Answer::deny(format!(
            "decision-gate: this call needs approval (rule {}), and the approval could not be checked: {why}. Denied until it can be.",
            rule.name
        ))
    };
    let target = match connect(rules.config.namespace.clone()).await {
        Ok(target) => target,
        Err(why) => return Some(refused(why)),
    };
    Some(match decide(rules, &call, rule, &target).await {
        Ok(answer) => answer,
        Err(why) => refused(why),
    })
}

async fn decide(
    rules: &Rules,
    call: &ToolCall,
    rule: &rules::Rule,
    target: &Target,
) -> Result<Answer, String> {
    let api: Api<Decision> = Api::namespaced(target.client.clone(), &target.namespace);
    let digest = call.digest();
    let me = agent::whoami(&target.client).await?;
    let asked: Vec<Decision> = api
        .list(&ListParams::default().labels(&format!("{TOOL_CALL}={}", label(&digest))))
        .await
        .map_err(|e| agent::refusal(&e))?
        .items
        .into_iter()
        .filter(|d| {
            let status = d.status.as_ref();
            let same_call = d
                .spec
                .context
                .as_ref()
                .and_then(|c| c.get("toolCallDigest"))
                .is_some_and(|v| v == digest.as_str());
            // Only what this identity asked counts: the API server recorded the requester.
            same_call
                && status
                    .and_then(|s| s.requested_by.as_deref())
                    .is_none_or(|by| by == me)
        })
        .collect();
    match judge(&asked, chrono::Utc::now(), rules.approval_valid_for) {
        Judgement::Allow(why) => return Ok(Answer::allow(why)),
        Judgement::Deny(why) => return Ok(Answer::deny(why)),
        Judgement::Ask => {}
    }
    let request = call.request(rule, rules.config.source.as_deref());
    let created = agent::submit(&api, &request).await?;
    let name = created.metadata.name.clone().unwrap_or_default();
    let seen = agent::watch_until(&api, &name, EVALUATION_WAIT, evaluated, |_| {})
        .await
        .unwrap_or(created);
    Ok(
        match judge(
            std::slice::from_ref(&seen),
            chrono::Utc::now(),
            rules.approval_valid_for,
        ) {
            Judgement::Allow(why) => Answer::allow(why),
            Judgement::Deny(why) => Answer::deny(why),
            // Settled at once without allowing (an expiry of seconds, a failure): say so.
            Judgement::Ask => Answer::deny(format!(
                "decision-gate: Decision {name} in namespace {}: {}",
                target.namespace,
                crate::request::Report::of(&seen).summary
            )),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_call_no_rule_matches_passes_without_touching_the_cluster() {
        let rules = Rules::parse(rules::DEFAULT_CONFIG).unwrap();
        let input = r#"{"tool_name": "Bash", "tool_input": {"command": "ls"}}"#;
        let answer = answer(&rules, input, |_| async {
            panic!("the cluster was contacted for a harmless call")
        })
        .await;
        assert_eq!(answer, None);
    }

    #[tokio::test]
    async fn an_unreadable_call_and_an_unreachable_cluster_deny() {
        let rules = Rules::parse(rules::DEFAULT_CONFIG).unwrap();
        let unreadable = answer(&rules, "not json", |_| async {
            Err("unreachable".to_owned())
        })
        .await
        .unwrap();
        assert!(!unreadable.is_allow());
        let input = r#"{"tool_name": "Bash", "tool_input": {"command": "kubectl delete ns prod"}}"#;
        let answer = answer(&rules, input, |_| async {
            Err("cannot reach the cluster: connection refused".to_owned())
        })
        .await
        .unwrap();
        assert!(!answer.is_allow());
        let json = serde_json::to_value(&answer).unwrap();
        assert_eq!(json["hookSpecificOutput"]["hookEventName"], "PreToolUse");
        assert_eq!(json["hookSpecificOutput"]["permissionDecision"], "deny");
        let why = json["hookSpecificOutput"]["permissionDecisionReason"]
            .as_str()
            .unwrap();
        assert!(why.contains("rule kubectl-delete"), "{why}");
        assert!(why.contains("connection refused"), "{why}");
    }
}

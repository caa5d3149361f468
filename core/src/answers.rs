//! People's answers: reading them from a Decision's annotations, who may give them, and
//! how an answer that does not count is recorded. The approval lifecycle and the
//! rollback gate of execution both answer through here, by the same rules.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use kube_core::ResourceExt;

use crate::api::decision::IgnoredAnswer;
use crate::api::{Approvers, Decision, DecisionStatus};
use crate::events::DecisionEvent;

/// At most this many ignored answers are kept in the status; the audit log keeps all.
const IGNORED_ANSWERS_KEPT: usize = 20;

/// How the reason of an approval that did not count because nobody verified it begins.
pub const UNVERIFIED: &str = "answers are not verified";

/// An answer of `user` that does not count, and why.
pub fn ignored(user: String, answer: &str, why: String, now: DateTime<Utc>) -> IgnoredAnswer {
    IgnoredAnswer {
        user,
        answer: answer.to_owned(),
        reason: why,
        at: now,
        digest: None,
        stamp: None,
        unverified: false,
    }
}

/// Records an answer that did not count, once (the same answer ignored for the same
/// reason is not recorded again).
pub fn ignore(status: &mut DecisionStatus, events: &mut Vec<DecisionEvent>, answer: IgnoredAnswer) {
    if status.ignored_answers.iter().any(|i| {
        IgnoredAnswer {
            at: answer.at,
            ..i.clone()
        } == answer
    }) {
        return;
    }
    let event = DecisionEvent::AnswerIgnored {
        user: answer.user.clone(),
        answer: match answer.answer.as_str() {
            "approval" => "approval",
            "rejection" => "rejection",
            _ => "rollback-approval",
        },
        why: answer.reason.clone(),
        stamp: answer.stamp.clone(),
    };
    status.ignored_answers.push(answer);
    if status.ignored_answers.len() > IGNORED_ANSWERS_KEPT {
        // The oldest goes, but never one that stops an unverified approval from counting.
        let oldest = status
            .ignored_answers
            .iter()
            .position(|i| !i.unverified)
            .unwrap_or(0);
        status.ignored_answers.remove(oldest);
    }
    events.push(event);
}

/// Whether `user` may answer. The operator checks what it can see: the requester never
/// approves their own Decision, and a rule that names only users admits only them.
/// Group membership is only known to the API server; the chart's admission policy
/// enforces it before the annotation is ever stored.
pub fn may_answer(user: &str, status: &DecisionStatus, approving: bool) -> Result<(), String> {
    if approving && status.requested_by.as_deref() == Some(user) {
        return Err(format!(
            "{user} requested the Decision and cannot approve it"
        ));
    }
    if approving && status.on_behalf_of.as_deref() == Some(user) {
        return Err(format!(
            "the Decision was requested on behalf of {user} (spec.onBehalfOf), who cannot approve it"
        ));
    }
    if let Some(account) = Approvers::service_account_of(user) {
        let named = status
            .evaluation
            .as_ref()
            .is_some_and(|e| e.approvers.service_accounts.contains(&account));
        return if named {
            Ok(())
        } else {
            Err(format!(
                "{user} is a ServiceAccount, and an agent's answer counts only where the rule names it in approvers.serviceAccounts ({account})"
            ))
        };
    }
    if let Some(evaluation) = &status.evaluation {
        let approvers = &evaluation.approvers;
        if !approvers.users.is_empty()
            && approvers.groups.is_empty()
            && !approvers.users.iter().any(|u| u == user)
        {
            return Err(format!(
                "{user} is not among the approvers named by rule {}: {}",
                evaluation.rule.as_deref().unwrap_or("-"),
                approvers.users.join(", ")
            ));
        }
    }
    Ok(())
}

/// An annotation's value, trimmed; absent when unset or blank.
pub fn annotation(decision: &Decision, key: &str) -> Option<String> {
    let annotations: &BTreeMap<String, String> = decision.annotations();
    annotations
        .get(key)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

//! People's answers: what an answer is (the annotations that carry it, and what makes it
//! a new one), reading them from a Decision, who may give them (`may_answer`), and how an
//! answer that does not count is recorded. The approval lifecycle and the rollback gate
//! of execution both answer through here, by the same rules, and the chart's admission
//! policies check by the same definitions ([`cel`]).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use kube_core::ResourceExt;

use crate::api::decision::IgnoredAnswer;
use crate::api::{Approvers, Decision, DecisionStatus, annotations};
use crate::events::DecisionEvent;

/// One kind of answer, as annotations carry it.
///
/// An answer is *given* when its author annotation (`by`) is set or changed, or when one of
/// its `identity` annotations changes beside it: that is the one definition of a new
/// answer, for the operator (which counts it) and for the admission policies (which check
/// who gives it). A change of a `details` annotation, such as the reason, never gives an
/// answer. Every annotation of an answer is its author's: nobody else may change it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kind {
    /// `approval`, `rejection` or `rollback-approval`.
    pub answer: &'static str,
    /// The annotation that names who answered, such as `approved-by`.
    pub by: &'static str,
    /// The annotations that tell one giving of the answer from another.
    pub identity: &'static [&'static str],
    /// The annotations that only describe it: the reason, and what the API server said of
    /// its author when it was given (stamped by the admission policies).
    pub details: &'static [&'static str],
}

impl Kind {
    /// Every annotation of the answer: its author, its identity, its details.
    pub fn annotations(&self) -> impl Iterator<Item = &'static str> + '_ {
        std::iter::once(self.by)
            .chain(self.identity.iter().copied())
            .chain(self.details.iter().copied())
    }
}

/// An approval: `approved-by`, given anew with a new `approved-at`, `approval-digest` or
/// `approval-uid` (what `kubectl decision approve` writes).
pub const APPROVAL: Kind = Kind {
    answer: "approval",
    by: annotations::APPROVED_BY,
    identity: &[
        annotations::APPROVED_AT,
        annotations::APPROVAL_DIGEST,
        annotations::APPROVAL_UID,
    ],
    details: &[
        annotations::APPROVAL_REASON,
        annotations::APPROVER_GROUPS,
        annotations::APPROVER_IMPERSONATOR,
    ],
};

/// A rejection: `rejected-by`, with its reason.
pub const REJECTION: Kind = Kind {
    answer: "rejection",
    by: annotations::REJECTED_BY,
    identity: &[],
    details: &[annotations::REJECTION_REASON],
};

/// The approval of a Manual rollback: `rollback-approved-by`, given anew with a new
/// `rollback-approved-at`.
pub const ROLLBACK_APPROVAL: Kind = Kind {
    answer: "rollback-approval",
    by: annotations::ROLLBACK_APPROVED_BY,
    identity: &[annotations::ROLLBACK_APPROVED_AT],
    details: &[],
};

/// Every kind of answer.
pub const KINDS: [Kind; 3] = [APPROVAL, REJECTION, ROLLBACK_APPROVAL];

/// An answer as the Decision carries it now: its author and its identity, in the order of
/// [`Kind::identity`] (each trimmed; `None` when unset or blank).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Given {
    pub by: String,
    pub identity: Vec<Option<String>>,
}

impl Given {
    /// The answer of `kind` the Decision carries, if any.
    pub fn of(kind: &Kind, decision: &Decision) -> Option<Given> {
        Some(Given {
            by: annotation(decision, kind.by)?,
            identity: kind
                .identity
                .iter()
                .map(|k| annotation(decision, k))
                .collect(),
        })
    }

    /// The identity annotation `key` (one of the kind's).
    pub fn get(&self, kind: &Kind, key: &str) -> Option<&str> {
        let at = kind.identity.iter().position(|k| *k == key)?;
        self.identity[at].as_deref()
    }

    /// One text that differs between any two givings: the author, then each identity
    /// annotation. It tells audit lines of two givings apart.
    pub fn key(&self) -> String {
        let mut key = self.by.clone();
        for part in &self.identity {
            key.push('@');
            key.push_str(part.as_deref().unwrap_or(""));
        }
        key
    }
}

/// The CEL the chart's admission policies use, made from the same [`KINDS`]. A test of the
/// chart holds its text to these, so the operator and the API server never disagree on
/// what a new answer is or whose annotations are whose.
pub mod cel {
    use super::{KINDS, Kind};

    fn list(keys: impl Iterator<Item = &'static str>) -> String {
        let quoted: Vec<String> = keys.map(|k| format!("'{k}'")).collect();
        format!("[{}]", quoted.join(", "))
    }

    fn changed(kind: &Kind) -> Option<String> {
        (!kind.identity.is_empty()).then(|| {
            format!(
                "(k == '{}' && {}.exists(d, variables.before[?d] != variables.now[?d]))",
                kind.by,
                list(kind.identity.iter().copied())
            )
        })
    }

    /// The author annotations this request gives an answer with (variable `set`): set
    /// where they were not, changed, or beside a changed identity annotation.
    pub fn new_answers() -> String {
        let mut given = vec![
            "!(k in variables.before)".to_owned(),
            "variables.before[k] != variables.now[k]".to_owned(),
        ];
        given.extend(KINDS.iter().filter_map(changed));
        format!(
            "{}.filter(k, k in variables.now && ({}))",
            list(KINDS.iter().map(|k| k.by)),
            given.join(" || ")
        )
    }

    /// The answers whose annotations this request changes although it is not their
    /// author's (variable `foreign`): each as the list of its annotations, its author
    /// annotation first. The author is who the answer names before or after the request.
    pub fn foreign_edits() -> String {
        let groups: Vec<String> = KINDS.iter().map(|k| list(k.annotations())).collect();
        format!(
            "[{}].filter(g, !g.all(k, variables.before[?k] == variables.now[?k]) && variables.before[?g[0]].orValue('') != variables.user && variables.now[?g[0]].orValue('') != variables.user)",
            groups.join(", ")
        )
    }
}

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

/// What the operator knows of the groups of someone who answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Groups<'a> {
    /// As the API server authenticated them when the answer was given (stamped by the
    /// chart's admission policy): checked against the rule's groups.
    Known(&'a [String]),
    /// Not recorded, and not needed: the admission policy checked them when the answer was
    /// given and the answer is not checked again (a rejection, a rollback approval), or
    /// nobody verified the answer at all and it is marked so.
    Unchecked,
    /// Not recorded for an approval that must hold under the current rule: it cannot
    /// count where the rule admits people by group.
    Unrecorded,
}

impl Groups<'_> {
    /// The groups of an approval, as recorded with it.
    pub fn of(approval: &crate::api::decision::Approval) -> Groups<'_> {
        match (&approval.groups, approval.verified) {
            (Some(groups), _) => Groups::Known(groups),
            (None, Some(false)) => Groups::Unchecked,
            (None, _) => Groups::Unrecorded,
        }
    }
}

/// Whether `user` (of `groups`) may answer. The requester never approves their own
/// Decision, nor does the person it is asked on behalf of; a ServiceAccount answers only
/// where the rule names it; a person only where the rule admits everyone, names them, or
/// names one of their groups. The chart's admission policy checks the same before an
/// answer is stored; the operator checks again, and checks approvals again whenever the
/// policies change.
pub fn may_answer(
    user: &str,
    groups: Groups<'_>,
    status: &DecisionStatus,
    approving: bool,
) -> Result<(), String> {
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
    let Some(evaluation) = &status.evaluation else {
        return Ok(());
    };
    let approvers = &evaluation.approvers;
    if (approvers.users.is_empty() && approvers.groups.is_empty())
        || approvers.users.iter().any(|u| u == user)
    {
        return Ok(());
    }
    let rule = evaluation.rule.as_deref().unwrap_or("-");
    let named = describe_approvers(approvers);
    match groups {
        Groups::Unchecked if !approvers.groups.is_empty() => Ok(()),
        Groups::Known(groups) if groups.iter().any(|g| approvers.groups.contains(g)) => Ok(()),
        Groups::Known(groups) if !approvers.groups.is_empty() => Err(format!(
            "{user} is not among the approvers of rule {rule} ({named}); their groups when they answered: {}",
            if groups.is_empty() {
                "none".to_owned()
            } else {
                groups.join(", ")
            }
        )),
        Groups::Unrecorded if !approvers.groups.is_empty() => Err(format!(
            "the groups {user} had when answering were not recorded, so the answer cannot be checked against rule {rule} ({named}); answer again"
        )),
        _ => Err(format!(
            "{user} is not among the approvers named by rule {rule}: {}",
            approvers.users.join(", ")
        )),
    }
}

/// Whether a recorded approval counts now: it has not lapsed, and the rule that decides
/// now admits its approver (by name, or by the groups recorded with it).
pub fn counts(approval: &crate::api::decision::Approval, status: &DecisionStatus) -> bool {
    approval.lapsed_at.is_none()
        && may_answer(&approval.approver, Groups::of(approval), status, true).is_ok()
}

/// "users: a, b; groups: c" (or "none" for either).
fn describe_approvers(approvers: &Approvers) -> String {
    let or_none = |v: &[String]| {
        if v.is_empty() {
            "none".to_owned()
        } else {
            v.join(", ")
        }
    };
    format!(
        "users: {}; groups: {}",
        or_none(&approvers.users),
        or_none(&approvers.groups)
    )
}

/// The groups stamped with the approval the Decision carries (a JSON list of names);
/// `None` when there is no stamp or it cannot be read.
pub fn approver_groups(decision: &Decision) -> Option<Vec<String>> {
    let stamped = decision.annotations().get(annotations::APPROVER_GROUPS)?;
    serde_json::from_str(stamped).ok()
}

/// An annotation's value, trimmed; absent when unset or blank.
pub fn annotation(decision: &Decision, key: &str) -> Option<String> {
    let annotations: &BTreeMap<String, String> = decision.annotations();
    annotations
        .get(key)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_approval_is_identified_by_its_author_and_identity_annotations_only() {
        assert_eq!(
            APPROVAL.identity,
            [
                annotations::APPROVED_AT,
                annotations::APPROVAL_DIGEST,
                annotations::APPROVAL_UID
            ],
            "the order recorded approvals are compared in"
        );
        assert!(!APPROVAL.identity.contains(&annotations::APPROVAL_REASON));
        let mut d = Decision::new(
            "d",
            crate::api::DecisionSpec::example("deploy", crate::api::decision::Criticality::High),
        );
        assert_eq!(Given::of(&APPROVAL, &d), None);
        d.metadata.annotations = Some(
            [
                ("approved-by", " bob "),
                ("approved-at", "t1"),
                ("approval-reason", "x"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        );
        let given = Given::of(&APPROVAL, &d).unwrap();
        assert_eq!(given.by, "bob");
        assert_eq!(given.get(&APPROVAL, annotations::APPROVED_AT), Some("t1"));
        assert_eq!(given.key(), "bob@t1@@");
    }

    #[test]
    fn the_admission_policies_use_the_same_definitions() {
        let chart = include_str!("../../charts/decision-gate/templates/admission.yaml");
        let variable = |name: &str, expression: &str| {
            format!("  - name: {name}\n    expression: \"{expression}\"\n")
        };
        // The validating policy and the mutating one that stamps approvers alike.
        assert_eq!(
            chart.matches(&variable("set", &cel::new_answers())).count(),
            2,
            "the chart's new answers differ from the operator's:\n{}",
            cel::new_answers()
        );
        assert!(
            chart.contains(&variable("foreign", &cel::foreign_edits())),
            "the chart's answers' annotations differ from the operator's:\n{}",
            cel::foreign_edits()
        );
        for kind in KINDS {
            for key in kind
                .annotations()
                .filter(|k| k.starts_with("decisiongate.io/"))
            {
                let path = format!("/metadata/annotations/{}", key.replace('/', "~1"));
                assert!(chart.contains(&path), "{key} is not stamped by the chart");
            }
        }
    }
}

//! `kubectl decision explain`: the policies evaluated again, rule by rule; or, for a reader
//! who may not list them, what the Decision's status records of its evaluation.

use std::fmt::Write;

use kube::Resource;

use crate::api::decision::{Evaluation, Outcome, RiskAssessment};
use crate::api::{ApprovalPolicy, Decision};
use crate::policy::{self, Policy, Subject};

/// Which policy and rule decide the Decision now, and why every earlier rule did not.
pub fn explain(d: &Decision, policies: &[ApprovalPolicy]) -> String {
    let risk = risk_of(d);
    let views: Vec<Policy<'_>> = policies.iter().map(Policy::of).collect();
    let subject = Subject {
        name: d.metadata.name.as_deref().unwrap_or_default(),
        namespace: d.metadata.namespace.as_deref().unwrap_or_default(),
        spec: &d.spec,
        risk: &risk,
    };
    let verdict = policy::evaluate(&subject, &views, &policy::Expressions::default());
    let mut o = risk_line(&risk);
    for (policy, why) in &verdict.skipped {
        let _ = writeln!(o, "skipped policy {policy}: {why}");
    }
    for t in &verdict.trace {
        if t.matched {
            let _ = writeln!(o, "{}/{}: matches", t.policy, t.rule);
        } else {
            let _ = writeln!(o, "{}/{}: does not match: {}", t.policy, t.rule, t.why);
        }
    }
    let e = &verdict.evaluation;
    o.push_str(&decided_line(e));
    if let Some(stored) = d.status.as_ref().and_then(|s| s.evaluation.as_ref())
        && (stored.policy != e.policy || stored.rule != e.rule || stored.outcome != e.outcome)
    {
        let _ = writeln!(
            o,
            "   (the Decision was evaluated as {} by {}; the policies have changed since)",
            stored.outcome,
            stored.rule.as_deref().unwrap_or("no rule")
        );
    }
    o
}

/// What the Decision's status records of its evaluation (the rule that decided, whom it
/// asks and the risk), for a reader the API server does not let list the namespace's
/// ApprovalPolicies; `refused` is the API server's refusal of that list, in its own words.
pub fn explain_recorded(d: &Decision, refused: &str) -> String {
    let namespace = d.metadata.namespace.as_deref().unwrap_or_default();
    let mut o = risk_line(&risk_of(d));
    match d.status.as_ref().and_then(|s| s.evaluation.as_ref()) {
        Some(e) => {
            o.push_str(&decided_line(e));
            if matches!(e.outcome, Outcome::RequireApproval | Outcome::Escalate) {
                let who = super::approvers(&e.approvers);
                let who = if who.is_empty() {
                    format!("anyone allowed to approve Decisions in namespace {namespace}")
                } else {
                    who
                };
                let _ = writeln!(
                    o,
                    "   needs {} approval(s), from {who}",
                    e.required_approvals
                );
            }
            let _ = writeln!(
                o,
                "   (as the operator recorded it in the Decision's status)"
            );
        }
        None => {
            let _ = writeln!(
                o,
                "=> not evaluated yet: the Decision's status records no evaluation"
            );
        }
    }
    let _ = writeln!(
        o,
        "Why each earlier rule did not match is not shown: that takes `list` on {}.{} in namespace {namespace}, which you do not have; {}",
        ApprovalPolicy::plural(&()),
        ApprovalPolicy::group(&()),
        super::printable(refused)
    );
    o
}

/// The risk the Decision's status records, or else what it would be assessed as.
fn risk_of(d: &Decision) -> RiskAssessment {
    d.status
        .as_ref()
        .and_then(|s| s.risk.clone())
        .unwrap_or_else(|| crate::risk::assess(&d.spec))
}

fn risk_line(risk: &RiskAssessment) -> String {
    format!(
        "Risk {} (score {}): {}\n",
        risk.level,
        risk.score,
        risk.reasons.join("; ")
    )
}

/// "=> decided by policy P, rule R: OUTCOME. MESSAGE", or the outcome when no rule matched.
fn decided_line(e: &Evaluation) -> String {
    match (&e.policy, &e.rule) {
        (Some(p), Some(r)) => format!(
            "=> decided by policy {p}, rule {r}: {}. {}\n",
            e.outcome, e.message
        ),
        _ => format!("=> {}: {}\n", e.outcome, e.message),
    }
}

//! `kubectl decision explain`: the policies evaluated again, rule by rule.

use std::fmt::Write;

use crate::api::{ApprovalPolicy, Decision};
use crate::policy::{self, Policy, Subject};

/// Which policy and rule decide the Decision now, and why every earlier rule did not.
pub fn explain(d: &Decision, policies: &[ApprovalPolicy]) -> String {
    let risk = d
        .status
        .as_ref()
        .and_then(|s| s.risk.clone())
        .unwrap_or_else(|| crate::risk::assess(&d.spec));
    let views: Vec<Policy<'_>> = policies.iter().map(Policy::of).collect();
    let subject = Subject {
        name: d.metadata.name.as_deref().unwrap_or_default(),
        namespace: d.metadata.namespace.as_deref().unwrap_or_default(),
        spec: &d.spec,
        risk: &risk,
    };
    let verdict = policy::evaluate(&subject, &views, &policy::Expressions::default());
    let mut o = String::new();
    let _ = writeln!(
        o,
        "Risk {} (score {}): {}",
        risk.level,
        risk.score,
        risk.reasons.join("; ")
    );
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
    match (&e.policy, &e.rule) {
        (Some(p), Some(r)) => {
            let _ = writeln!(
                o,
                "=> decided by policy {p}, rule {r}: {}. {}",
                e.outcome, e.message
            );
        }
        _ => {
            let _ = writeln!(o, "=> {}: {}", e.outcome, e.message);
        }
    }
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

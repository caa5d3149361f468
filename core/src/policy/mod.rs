//! ApprovalPolicy evaluation: which rule decides a Decision, and why every earlier rule
//! did not. Also the checks the API server's schema cannot make (expressions compile, risk
//! ranges are not empty). A policy that fails them, or that could not be read, is never
//! half-applied: evaluation stops there and requires approval (fail closed), since what
//! it would have decided is unknown.

mod checks;
mod expressions;
mod rules;

use crate::api::approval_policy::PolicyRule;
use crate::api::decision::{Criticality, DecisionSpec, Evaluation, Outcome, RiskAssessment};
use crate::api::{ApprovalPolicySpec, Approvers};

use rules::{Miss, matches};

pub use checks::{RuleProblem, check};
pub use expressions::{
    Expressions, MAX_EXPRESSION_BYTES, MAX_ITERATED_BYTES, MAX_OPERATIONS, STACK_SIZE,
};

/// The variable a rule's expression reads the Decision from.
pub const DECISION_VARIABLE: &str = "decision";

/// A policy as the evaluator sees it.
#[derive(Clone, Copy, Debug)]
pub struct Policy<'a> {
    pub name: &'a str,
    /// Changes with every change of the spec; part of the policy-set fingerprint.
    pub generation: i64,
    pub spec: &'a ApprovalPolicySpec,
}

impl<'a> Policy<'a> {
    /// The evaluator's view of an ApprovalPolicy object.
    pub fn of(policy: &'a crate::api::ApprovalPolicy) -> Policy<'a> {
        Policy {
            name: policy.metadata.name.as_deref().unwrap_or_default(),
            generation: policy.metadata.generation.unwrap_or_default(),
            spec: &policy.spec,
        }
    }
}

/// The Decision as rules see it.
#[derive(Clone, Copy, Debug)]
pub struct Subject<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub spec: &'a DecisionSpec,
    pub risk: &'a RiskAssessment,
}

/// One rule tried, and whether and why it matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleTrace {
    pub policy: String,
    pub rule: String,
    pub matched: bool,
    /// For a rule that did not match, the first condition that failed.
    pub why: String,
}

/// What the policies decided, with the trace that explains it.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub evaluation: Evaluation,
    /// The rule's `expiresAfter`, else its policy's.
    pub expires_after: Option<std::time::Duration>,
    /// Every rule tried, in order, up to and including the one that decided.
    pub trace: Vec<RuleTrace>,
    /// The policy that could not be applied (invalid or unreadable), with the reason;
    /// evaluation stopped there.
    pub skipped: Vec<(String, String)>,
}

/// Sorts policies into the order they are tried: lowest priority first, then by name.
pub fn in_order<'a>(policies: &[Policy<'a>]) -> Vec<Policy<'a>> {
    let mut sorted = policies.to_vec();
    sorted.sort_by(|a, b| (a.spec.priority, a.name).cmp(&(b.spec.priority, b.name)));
    sorted
}

/// A fingerprint of a set of policies: their names and generations.
pub fn fingerprint(policies: &[Policy<'_>]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for p in in_order(policies) {
        hasher.update(format!("{}@{};", p.name, p.generation));
    }
    let digest = hasher.finalize();
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Evaluates the policies against a Decision: first matching rule of the first policy
/// that has one decides; no match requires approval, and so does reaching a policy that
/// cannot be applied (its rules might have rejected). The invariants then apply: a
/// Critical Decision is never approved automatically, an Info Decision needs no
/// confirmation (a rule may still reject it). Expressions are compiled through
/// `expressions`.
pub fn evaluate(
    subject: &Subject<'_>,
    policies: &[Policy<'_>],
    expressions: &Expressions,
) -> Verdict {
    let mut trace = Vec::new();
    let mut skipped = Vec::new();
    let mut decided: Option<(&Policy<'_>, &PolicyRule)> = None;
    let ordered = in_order(policies);
    let input = expressions::Given::default();
    'policies: for policy in &ordered {
        let problems = expressions.check(policy.spec);
        if !problems.is_empty() {
            let listed: Vec<String> = problems.iter().map(ToString::to_string).collect();
            skipped.push((policy.name.to_owned(), listed.join("; ")));
            break;
        }
        for rule in &policy.spec.rules {
            let outcome = matches(&rule.match_, subject, &input, expressions);
            let (matched, why, stop) = match outcome {
                Ok(()) => (true, String::new(), false),
                Err(Miss::No(why)) => (false, why, false),
                Err(Miss::Stop(why)) => (false, why, true),
            };
            if stop {
                skipped.push((policy.name.to_owned(), format!("rule {}: {why}", rule.name)));
            }
            trace.push(RuleTrace {
                policy: policy.name.to_owned(),
                rule: rule.name.clone(),
                matched,
                why,
            });
            if matched {
                decided = Some((policy, rule));
                break 'policies;
            }
            if stop {
                break 'policies;
            }
        }
    }

    let (mut evaluation, expires_after) = match decided {
        Some((policy, rule)) => {
            let evaluation = Evaluation {
                policy: Some(policy.name.to_owned()),
                rule: Some(rule.name.clone()),
                outcome: rule.outcome,
                message: format!("rule {}/{} matched", policy.name, rule.name),
                required_approvals: rule.required_approvals.unwrap_or(1),
                approvers: rule.approvers.clone().unwrap_or_default(),
                policy_set: fingerprint(policies),
                criticality: None,
                approval_valid_for: rule.approval_valid_for.clone(),
            };
            let expires_after = rule
                .expires_after
                .as_ref()
                .or(policy.spec.expires_after.as_ref())
                .and_then(|d| d.parse().ok());
            (evaluation, expires_after)
        }
        None => (
            Evaluation {
                policy: skipped.first().map(|(name, _)| name.clone()),
                rule: None,
                outcome: Outcome::RequireApproval,
                message: match skipped.first() {
                    Some((name, why)) => format!(
                        "the ApprovalPolicy {name} cannot be applied ({why}), so approval is required"
                    ),
                    None if ordered.is_empty() => {
                        "no ApprovalPolicy in the namespace, so approval is required".to_owned()
                    }
                    None => "no rule matched, so approval is required".to_owned(),
                },
                required_approvals: 1,
                approvers: Approvers::default(),
                policy_set: fingerprint(policies),
                criticality: None,
                approval_valid_for: None,
            },
            None,
        ),
    };
    apply_invariants(subject.spec.criticality, &mut evaluation);
    Verdict {
        evaluation,
        expires_after,
        trace,
        skipped,
    }
}

/// The gate's two invariants, whatever a rule says.
fn apply_invariants(criticality: Criticality, evaluation: &mut Evaluation) {
    match (criticality, evaluation.outcome) {
        (Criticality::Critical, Outcome::AutoApprove) => {
            evaluation.outcome = Outcome::RequireApproval;
            evaluation.message.push_str(
                " and said AutoApprove, but a Critical Decision is never approved automatically: approval is required",
            );
        }
        (Criticality::Info, Outcome::RequireApproval | Outcome::Escalate) => {
            evaluation.outcome = Outcome::AutoApprove;
            evaluation.required_approvals = 0;
            evaluation.message.push_str(
                "; an Info Decision is informational and needs no confirmation, so it is approved",
            );
        }
        _ => {
            let said = match evaluation.outcome {
                Outcome::AutoApprove => ": approved automatically",
                Outcome::AutoReject => ": rejected automatically",
                Outcome::RequireApproval => "",
                Outcome::Escalate => ": escalated",
            };
            evaluation.message.push_str(said);
        }
    }
    if matches!(
        evaluation.outcome,
        Outcome::AutoApprove | Outcome::AutoReject
    ) {
        evaluation.required_approvals = 0;
    }
}

#[cfg(test)]
mod tests;

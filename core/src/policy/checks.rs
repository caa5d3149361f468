//! The checks the API server's schema cannot make: expressions compile, risk ranges are
//! not empty, the policy could be read at all.

use super::expressions::compile;
use crate::api::ApprovalPolicySpec;

/// A rule that cannot be applied, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleProblem {
    pub rule: String,
    pub problem: String,
}

impl std::fmt::Display for RuleProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.rule.is_empty() {
            f.write_str(&self.problem)
        } else {
            write!(f, "rule {:?}: {}", self.rule, self.problem)
        }
    }
}

/// Every problem of the policy's rules; empty when the policy can be applied.
pub fn check(spec: &ApprovalPolicySpec) -> Vec<RuleProblem> {
    problems(spec, |expression| compile(expression).map(drop))
}

/// [`check`], with each expression compiled by `compile`.
pub(super) fn problems(
    spec: &ApprovalPolicySpec,
    compile: impl Fn(&str) -> Result<(), String>,
) -> Vec<RuleProblem> {
    if let Some(why) = &spec.unreadable {
        return vec![RuleProblem {
            rule: String::new(),
            problem: format!("the policy cannot be read: {why}"),
        }];
    }
    let mut problems = Vec::new();
    for rule in &spec.rules {
        let mut report = |problem: String| {
            problems.push(RuleProblem {
                rule: rule.name.clone(),
                problem,
            })
        };
        if let (Some(min), Some(max)) = (rule.match_.min_risk, rule.match_.max_risk)
            && min > max
        {
            report(format!(
                "minRisk {min} is above maxRisk {max}, so the rule could never match"
            ));
        }
        if let Some(expression) = rule.match_.expression.as_deref()
            && let Err(problem) = compile(expression)
        {
            report(problem);
        }
    }
    problems
}

//! ApprovalPolicy checks that the API server's schema cannot make: the rules' CEL
//! expressions compile and use only the variables a Decision provides.

use crate::api::ApprovalPolicySpec;

/// The variable a rule's expression reads the Decision from.
pub const DECISION_VARIABLE: &str = "decision";

/// A rule that cannot be applied, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleProblem {
    pub rule: String,
    pub problem: String,
}

impl std::fmt::Display for RuleProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rule {:?}: {}", self.rule, self.problem)
    }
}

/// Every problem of the policy's rules; empty when the policy can be applied.
pub fn check(spec: &ApprovalPolicySpec) -> Vec<RuleProblem> {
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
                "minRisk {min:?} is above maxRisk {max:?}, so the rule could never match"
            ));
        }
        if let Some(expression) = rule.match_.expression.as_deref()
            && let Err(problem) = check_expression(expression)
        {
            report(problem);
        }
    }
    problems
}

/// Compiles a rule expression; the error says what is wrong in words.
pub fn check_expression(expression: &str) -> Result<cel::Program, String> {
    let program = cel::Program::compile(expression)
        .map_err(|e| format!("the expression {expression:?} does not compile: {e}"))?;
    let unknown: Vec<String> = program
        .references()
        .variables()
        .into_iter()
        .filter(|v| *v != DECISION_VARIABLE)
        .map(str::to_owned)
        .collect();
    if !unknown.is_empty() {
        return Err(format!(
            "the expression {expression:?} uses unknown variable(s) {}; only `{DECISION_VARIABLE}` is defined",
            unknown.join(", ")
        ));
    }
    Ok(program)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::approval_policy::{PolicyRule, RuleMatch};
    use crate::api::decision::Outcome;

    fn rule(name: &str, expression: Option<&str>) -> PolicyRule {
        PolicyRule {
            name: name.into(),
            match_: RuleMatch {
                expression: expression.map(Into::into),
                ..Default::default()
            },
            outcome: Outcome::AutoApprove,
            approvers: None,
            required_approvals: None,
            expires_after: None,
        }
    }

    fn spec(rules: Vec<PolicyRule>) -> ApprovalPolicySpec {
        ApprovalPolicySpec {
            priority: 100,
            rules,
            expires_after: None,
        }
    }

    #[test]
    fn good_expressions_pass() {
        let policy = spec(vec![
            rule("small-budget", Some("decision.context.amount < 1000")),
            rule("no-expression", None),
            rule(
                "release-bot",
                Some("decision.source == 'agents/release-bot' && has(decision.context.version)"),
            ),
        ]);
        assert_eq!(check(&policy), vec![]);
    }

    #[test]
    fn a_broken_expression_names_its_rule() {
        let policy = spec(vec![
            rule("fine", Some("decision.context.amount < 1000")),
            rule("broken", Some("decision.context.amount <")),
        ]);
        let problems = check(&policy);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].rule, "broken");
        assert!(
            problems[0].problem.contains("does not compile"),
            "{}",
            problems[0]
        );
    }

    #[test]
    fn a_risk_range_that_is_empty_is_a_problem() {
        let mut impossible = rule("never", None);
        impossible.match_.min_risk = Some(crate::api::RiskLevel::High);
        impossible.match_.max_risk = Some(crate::api::RiskLevel::Low);
        let problems = check(&spec(vec![impossible]));
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].problem.contains("could never match"),
            "{}",
            problems[0]
        );
    }

    #[test]
    fn an_unknown_variable_is_a_problem() {
        let problems = check(&spec(vec![rule(
            "typo",
            Some("decison.context.amount < 1000"),
        )]));
        assert_eq!(problems.len(), 1);
        assert!(problems[0].problem.contains("decison"), "{}", problems[0]);
    }
}

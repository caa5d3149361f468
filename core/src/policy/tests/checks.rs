//! The checks a policy must pass before it is applied.

use super::*;

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

//! Rule expressions: compiled once, bounded in depth, and deciding over the context.

use std::sync::Arc;

use super::*;
use crate::policy::expressions::{compile, eval_expression, operations};

#[test]
fn an_expression_is_compiled_once_and_the_cache_is_bounded() {
    fn shared<T: Send + Sync>(_: &T) {}
    let expressions = Expressions::new(2);
    shared(&expressions);
    let small = "decision.context.amount < 1000";
    let first = expressions.program(small).unwrap();
    assert!(Arc::ptr_eq(&first, &expressions.program(small).unwrap()));
    // A broken one is remembered with its reason.
    let broken = expressions
        .program("decision.context.amount <")
        .unwrap_err();
    assert_eq!(
        expressions.program("decision.context.amount <").err(),
        Some(broken)
    );
    assert_eq!(expressions.cache().len(), 2);
    // Past its capacity it starts again.
    expressions.program("decision.context.amount > 5").unwrap();
    assert_eq!(expressions.cache().len(), 1);
    let again = expressions.program(small).unwrap();
    assert!(!Arc::ptr_eq(&first, &again), "compiled anew");
    assert_eq!(expressions.cache().len(), 2);
}

#[test]
fn a_policy_checked_through_the_cache_has_the_same_problems() {
    let policy = spec(vec![
        rule("fine", Some("decision.context.amount < 1000")),
        rule("broken", Some("decision.context.amount <")),
    ]);
    let expressions = Expressions::default();
    assert_eq!(expressions.check(&policy), check(&policy));
    assert_eq!(expressions.check(&policy), check(&policy), "from the cache");
}

#[test]
fn an_expression_over_the_context_decides() {
    let budget = example_policy("approvalpolicy-budget.yaml");
    let defaults = example_policy("approvalpolicy-defaults.yaml");
    let mut small = request("budget_spend", Criticality::Normal);
    small.context = Some([("amount".to_owned(), serde_json::json!(500))].into());
    let v = decide(&small, &[&defaults, &budget]);
    assert_eq!(decided_by(&v), (Some("small-budget"), Outcome::AutoApprove));
    assert_eq!(v.evaluation.policy.as_deref(), Some("budget-and-cleanup"));

    let mut large = small.clone();
    large.context = Some([("amount".to_owned(), serde_json::json!(5000))].into());
    let v = decide(&large, &[&defaults, &budget]);
    assert_eq!(
        decided_by(&v),
        (Some("large-budget"), Outcome::RequireApproval)
    );
    assert_eq!(
        v.expires_after,
        Some(std::time::Duration::from_secs(4 * 3600))
    );
    assert!(v.trace[0].why.contains("is false"), "{:?}", v.trace);

    // A context without the field: the expression errs, the rule does not match.
    let v = decide(&request("budget_spend", Criticality::Normal), &[&budget]);
    assert_eq!(
        decided_by(&v),
        (Some("large-budget"), Outcome::RequireApproval)
    );
    assert!(
        v.trace[0].why.contains("could not be evaluated"),
        "{:?}",
        v.trace
    );
}

/// Expressions that would recurse past any stack (a long chain, deep brackets) are
/// refused with a reason, and the deepest allowed ones compile and run within the
/// operator's thread stack, even in a debug build.
#[test]
fn an_expression_too_deep_for_the_stack_is_refused_and_one_at_the_limit_runs() {
    let chain = |terms: usize| format!("1{} == {terms}", "+1".repeat(terms - 1));
    let nest = |levels: usize| format!("{}true{}", "(".repeat(levels), ")".repeat(levels));
    for too_deep in [chain(2047), nest(2000), chain(MAX_OPERATIONS)] {
        let why = compile(&too_deep).unwrap_err();
        assert!(why.contains("too complex"), "{why}");
    }
    // The parser refuses nesting past 96 levels itself, with an error, not a crash.
    let at_limit = [
        (chain(MAX_OPERATIONS - 2), true),
        (nest(90), true),
        (nest(MAX_OPERATIONS), false),
    ];
    for (expression, runs) in at_limit {
        assert!(operations(&expression) <= MAX_OPERATIONS, "{expression}");
        let ran = std::thread::Builder::new()
            .stack_size(STACK_SIZE)
            .spawn(move || {
                let spec = request("deploy", Criticality::Normal);
                let risk = crate::risk::assess(&spec);
                let subject = Subject {
                    spec: &spec,
                    name: "d",
                    namespace: "ns",
                    risk: &risk,
                };
                let expressions = Expressions::default();
                eval_expression(&expression, &subject, &Default::default(), &expressions)
            })
            .unwrap()
            .join()
            .expect("no stack overflow");
        if runs {
            assert_eq!(ran, Ok(true));
        } else {
            assert!(ran.unwrap_err().contains("Recursion limit"));
        }
    }
}

//! Rule expressions: compiled once, bounded in depth, and deciding over the context.

use std::sync::Arc;

use super::*;
use crate::policy::expressions::{Unevaluated, compile, eval_expression, operations};

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
    let chain = |terms: usize| format!("1{} == 1", "*1".repeat(terms - 1));
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
            assert!(
                matches!(&ran, Err(Unevaluated::Failed(e)) if e.contains("Recursion limit")),
                "{ran:?}"
            );
        }
    }
}

/// The names an iteration binds are its own: a rule may ask whether any or every element of
/// a list in the context qualifies, and the answer decides.
#[test]
fn an_expression_iterates_over_a_list_in_the_context() {
    let with_tags = |tags: serde_json::Value| {
        let mut spec = request("deploy", Criticality::Normal);
        spec.context = Some([("tags".to_owned(), tags)].into());
        spec
    };
    let asks = [
        (
            "decision.context.tags.exists(t, t == 'prod')",
            serde_json::json!(["prod", "eu"]),
            serde_json::json!(["dev", "eu"]),
        ),
        (
            "decision.context.tags.all(t, t.startsWith('e'))",
            serde_json::json!(["eu", "emea"]),
            serde_json::json!(["eu", "us"]),
        ),
        (
            "decision.context.tags.exists_one(t, t == 'eu')",
            serde_json::json!(["eu", "x"]),
            serde_json::json!(["eu", "eu"]),
        ),
        (
            "decision.context.tags.filter(t, t.endsWith('u')).size() == 1",
            serde_json::json!(["eu", "x"]),
            serde_json::json!(["eu", "mu"]),
        ),
        // The list iterated over may be an iteration itself: it runs once, not per element.
        (
            "decision.context.tags.filter(t, t != 'x').exists(u, u == 'eu')",
            serde_json::json!(["eu", "x"]),
            serde_json::json!(["x", "y"]),
        ),
        // Beside has(), with a list literal in the body.
        (
            "has(decision.context.tags) && decision.context.tags.exists(t, t in ['prod'])",
            serde_json::json!(["prod", "a"]),
            serde_json::json!(["a", "b"]),
        ),
        // An iteration's name may shadow `decision` within its body.
        (
            "decision.context.tags.exists(decision, decision == 'eu')",
            serde_json::json!(["eu", "a"]),
            serde_json::json!(["a", "b"]),
        ),
        // Elements that are maps, read through the iteration's variable.
        (
            "decision.context.tags.exists(t, t.env == 'prod' && t.replicas > 2)",
            serde_json::json!([{"env": "dev", "replicas": 9}, {"env": "prod", "replicas": 3}]),
            serde_json::json!([{"env": "dev", "replicas": 9}, {"env": "prod", "replicas": 1}]),
        ),
    ];
    for (expression, yes, no) in asks {
        assert_eq!(compile(expression).err(), None, "{expression}");
        let policy = ApprovalPolicy::new("p", spec(vec![rule("tags", Some(expression))]));
        let v = decide(&with_tags(yes.clone()), &[&policy]);
        assert_eq!(
            decided_by(&v),
            (Some("tags"), Outcome::AutoApprove),
            "{expression} over {yes:?}: {:?}",
            v.trace
        );
        let v = decide(&with_tags(no.clone()), &[&policy]);
        assert_eq!(
            decided_by(&v),
            (None, Outcome::RequireApproval),
            "{expression} over {no:?}"
        );
        assert!(
            v.trace[0].why.contains("is false"),
            "{expression}: {:?}",
            v.trace
        );
    }
}

/// What an iteration binds is not known outside it, and iterations that multiply or grow
/// with what they compute are refused, each with a reason a person can act on.
#[test]
fn an_iteration_is_scoped_and_bounded() {
    let nine_joins = format!(
        "size(decision.context.l{}) == 0",
        " + decision.context.l".repeat(9)
    );
    let seventeen_reads = format!("size([{}]) == 0", ["decision.context.l"; 17].join(", "));
    let refused = [
        (
            "decision.context.tags.exists(t, t == 'a') && t == 'b'",
            "uses unknown variable(s) t",
        ),
        (
            "decision.context.tags.exists(t, x == t)",
            "uses unknown variable(s) x",
        ),
        (
            "decision.context.tags.all(t, [1].exists(u, u == t))",
            "iterates inside the iteration over `t`",
        ),
        (
            "decision.context.tags.exists(t, [1, 2].all(n, n > 0))",
            "iterates inside the iteration over `t`",
        ),
        (
            "decision.context.tags.map(t, t + t).size() > 1",
            "uses map (over `t`)",
        ),
        (
            "decision.context.tags.map(t, t != 'a', t + 'x').size() > 1",
            "uses map (over `t`)",
        ),
        (
            "decision.context.tags.exists(t, t + '-' + t + '-' + t == 'a-a-a')",
            "adds with + 4 times in the iteration over `t`, and at most 2 are allowed",
        ),
        (
            "decision.context.tags.exists(t, t.matches('^prod-'))",
            "calls matches in the iteration over `t`: the pattern would be compiled for every element",
        ),
        (
            "decision.name.matches(decision.context.pattern)",
            "calls matches with a pattern that is not written in the rule",
        ),
        (
            "decision.context.tags.all(t, matches(t, decision.name))",
            "calls matches with a pattern that is not written in the rule",
        ),
        (
            "(decision.context.l + decision.context.l).exists(x, x == 1)",
            "iterates (over `x`) over a list joined with +",
        ),
        (
            "decision.context.l.exists(x, x == decision.context.m)",
            "reads `decision` in the iteration over `x`: comparing every element with a value the Decision brings",
        ),
        (
            "decision.context.l.exists(x, size([decision.context.m]) == 0)",
            "reads `decision` in the iteration over `x`",
        ),
        (
            "decision.context.tags.exists(t, t == decision.name)",
            "reads `decision` in the iteration over `t`",
        ),
        (
            "decision.context.big in decision.context.ints",
            "tests a value with `in` against a list or map the Decision brings",
        ),
        (
            "decision.context.env in ['prod', decision.context.other]",
            "tests a value with `in` against a list or map the Decision brings",
        ),
        (
            "decision.context.a.all(x, x > 0) && decision.context.b.all(x, x > 0) && decision.context.c.all(x, x > 0)",
            "iterates 3 times, and at most 2 iterations are allowed in one expression",
        ),
        (
            nine_joins.as_str(),
            "adds with + 9 times, and at most 8 are allowed",
        ),
        (
            seventeen_reads.as_str(),
            "reads `decision` 17 times, and at most 16 are allowed",
        ),
    ];
    for (expression, why) in refused {
        let problem = compile(expression).unwrap_err();
        assert!(problem.contains(why), "{expression}: {problem}");
        assert!(
            problem.contains(expression),
            "names the expression: {problem}"
        );
    }
    // A map that only collects the elements it visits is a filter, and allowed; so are two
    // joins per element, two iterations one after the other, a pattern written in the rule
    // outside an iteration, `in` against what the rule writes or with a literal on its
    // left, and the most joins and reads allowed.
    for allowed in [
        "decision.context.tags.map(t, t).size() > 1",
        "decision.name.matches('^prod-[a-z]+$') && decision.context.tags.exists(t, t.startsWith('prod-'))",
        "decision.context.tags.exists(t, t + '-' + t == 'a-a')",
        "decision.context.tags.filter(t, t != '').exists_one(t, t == 'a')",
        "decision.context.l.exists(x, x in [1, 2] || x == 'a') && decision.context.env in ['prod', 'staging']",
        "'amount' in decision.context && 'prod' in decision.context.tags && decision.context.env in {'prod': true}",
        &format!(
            "size(decision.context.l{}) > 0",
            " + decision.context.l".repeat(8)
        ),
        &format!("size([{}]) > 0", ["decision.context.l"; 16].join(", ")),
    ] {
        assert_eq!(compile(allowed).err(), None, "{allowed}");
    }
}

/// The example's routine clean-up passes on its own only when every path it names is a log.
#[test]
fn the_example_cleanup_rule_reads_every_path() {
    let budget = example_policy("approvalpolicy-budget.yaml");
    let cleanup = |paths: Option<serde_json::Value>| {
        let mut spec = request("cleanup", Criticality::Normal);
        let mut context: std::collections::BTreeMap<String, serde_json::Value> =
            [("days_old".to_owned(), serde_json::json!(45))].into();
        if let Some(paths) = paths {
            context.insert("paths".to_owned(), paths);
        }
        spec.context = Some(context.into_iter().collect());
        decided_by(&decide(&spec, &[&budget])).0.map(str::to_owned)
    };
    let routine = Some("routine-cleanup".to_owned());
    assert_eq!(cleanup(None), routine);
    assert_eq!(
        cleanup(Some(serde_json::json!(["/var/log/a", "/var/log/b"]))),
        routine
    );
    assert_eq!(
        cleanup(Some(serde_json::json!(["/var/log/a", "/var/lib/db"]))),
        None
    );
}

/// An iterating expression reads a Decision of at most [`MAX_ITERATED_BYTES`], any other
/// expression one of at most [`MAX_EXPRESSION_BYTES`]: past that, evaluation stops at its
/// rule and approval is required, since the rule might have rejected; a larger context
/// does not slip past it.
#[test]
fn a_decision_too_large_to_iterate_over_stops_evaluation_at_that_rule() {
    let policy = ApprovalPolicy::new(
        "guard",
        spec(vec![
            PolicyRule {
                outcome: Outcome::AutoReject,
                ..rule(
                    "no-prod",
                    Some("decision.context.paths.exists(p, p.startsWith('/prod/'))"),
                )
            },
            rule("plain", Some("size(decision.context.padding) >= 0")),
        ]),
    );
    let deploy = |paths: serde_json::Value, padding: usize| {
        let mut spec = request("deploy", Criticality::Normal);
        spec.context = Some(
            [
                ("paths".to_owned(), paths),
                ("padding".to_owned(), "x".repeat(padding).into()),
            ]
            .into(),
        );
        decide(&spec, &[&policy])
    };
    let v = deploy(serde_json::json!(["/tmp/a", "/prod/db"]), 0);
    assert_eq!(decided_by(&v), (Some("no-prod"), Outcome::AutoReject));
    let v = deploy(serde_json::json!(["/tmp/a"]), 1000);
    assert_eq!(decided_by(&v), (Some("plain"), Outcome::AutoApprove));
    assert!(v.skipped.is_empty());

    let v = deploy(serde_json::json!(["/prod/db"]), MAX_ITERATED_BYTES);
    assert_eq!(decided_by(&v), (None, Outcome::RequireApproval));
    assert_eq!(v.skipped.len(), 1);
    assert!(
        v.skipped[0].1.starts_with("rule no-prod: the expression")
            && v.skipped[0].1.contains(&format!(
                "iterates, and this Decision takes {} KiB",
                MAX_ITERATED_BYTES / 1024 + 1
            ))
            && v.skipped[0]
                .1
                .contains(&format!("more than the {} KiB", MAX_ITERATED_BYTES / 1024)),
        "{:?}",
        v.skipped
    );
    assert!(
        v.evaluation.message.contains("cannot be applied"),
        "{}",
        v.evaluation.message
    );
    assert_eq!(v.trace.len(), 1, "nothing after it is tried");

    // A rule whose other conditions do not hold never reads the Decision.
    let mut other = request("email", Criticality::Normal);
    other.context = Some([("padding".to_owned(), "x".repeat(MAX_ITERATED_BYTES).into())].into());
    let narrowed = ApprovalPolicy::new(
        "guard",
        spec(vec![
            PolicyRule {
                match_: RuleMatch {
                    action_types: vec!["deploy".into()],
                    ..policy.spec.rules[0].match_.clone()
                },
                ..policy.spec.rules[0].clone()
            },
            policy.spec.rules[1].clone(),
        ]),
    );
    let v = decide(&other, &[&narrowed]);
    assert_eq!(decided_by(&v), (Some("plain"), Outcome::AutoApprove));

    // Any expression reads a Decision of at most MAX_EXPRESSION_BYTES.
    other.context = Some(
        [(
            "padding".to_owned(),
            "x".repeat(MAX_EXPRESSION_BYTES).into(),
        )]
        .into(),
    );
    let v = decide(&other, &[&narrowed]);
    assert_eq!(decided_by(&v), (None, Outcome::RequireApproval));
    assert!(
        v.skipped[0].1.starts_with("rule plain: the expression")
            && v.skipped[0].1.contains(&format!(
                "reads the Decision, and this Decision takes {} KiB as expressions read it, more than the {} KiB an expression may read",
                MAX_EXPRESSION_BYTES / 1024 + 1,
                MAX_EXPRESSION_BYTES / 1024
            )),
        "{:?}",
        v.skipped
    );
}

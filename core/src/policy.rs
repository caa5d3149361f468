//! ApprovalPolicy evaluation: which rule decides a Decision, and why every earlier rule
//! did not. Also the checks the API server's schema cannot make (expressions compile, risk
//! ranges are not empty). A policy that fails them, or that could not be read, is never
//! half-applied: evaluation stops there and requires approval (fail closed), since what
//! it would have decided is unknown.

use crate::api::ApprovalPolicySpec;

use crate::api::approval_policy::{PolicyRule, RuleMatch};
use crate::api::decision::{Criticality, DecisionSpec, Evaluation, Outcome, RiskAssessment};
use crate::api::{Approvers, RiskLevel};

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
        if self.rule.is_empty() {
            f.write_str(&self.problem)
        } else {
            write!(f, "rule {:?}: {}", self.rule, self.problem)
        }
    }
}

/// Every problem of the policy's rules; empty when the policy can be applied.
pub fn check(spec: &ApprovalPolicySpec) -> Vec<RuleProblem> {
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

/// Compiles a rule expression (once per thread); the error says what is wrong in words.
pub fn check_expression(expression: &str) -> Result<std::rc::Rc<cel::Program>, String> {
    // Compiling is most of an evaluation's cost and every Decision of a namespace meets the
    // same few expressions, so each thread keeps what it compiled (bounded: a policy
    // edit brings new text, and the cache starts again past a thousand).
    thread_local! {
        static COMPILED: std::cell::RefCell<std::collections::HashMap<String, Result<std::rc::Rc<cel::Program>, String>>> =
            Default::default();
    }
    if let Some(hit) = COMPILED.with(|c| c.borrow().get(expression).cloned()) {
        return hit;
    }
    let compiled = compile(expression).map(std::rc::Rc::new);
    COMPILED.with(|c| {
        let mut cache = c.borrow_mut();
        if cache.len() >= 1000 {
            cache.clear();
        }
        cache.insert(expression.to_owned(), compiled.clone());
    });
    compiled
}

/// The stack a thread that evaluates rules needs. Evaluating a rule's CEL expression
/// recurses once per level of its tree; [`MAX_OPERATIONS`] bounds the depth, and this
/// leaves room for that depth even in a debug build. Only the pages used are ever mapped.
pub const STACK_SIZE: usize = 32 << 20;

/// The most operator characters (and `in` keywords) an expression may hold. Parsing and
/// evaluating CEL recurse once per level of the expression's tree, and a tree is never
/// deeper than its count of these, so the bound keeps every expression within the stack
/// of [`STACK_SIZE`]. Real rules use a few dozen at most.
pub const MAX_OPERATIONS: usize = 128;

/// Counts what can deepen an expression's tree, inside string literals too: an
/// over-count only makes the limit stricter, never lets a deep expression through.
pub fn operations(expression: &str) -> usize {
    let symbols = expression
        .chars()
        .filter(|c| "([{.!?+-*/%<>=&|".contains(*c))
        .count();
    symbols + expression.matches("in").count()
}

fn compile(expression: &str) -> Result<cel::Program, String> {
    let count = operations(expression);
    if count > MAX_OPERATIONS {
        return Err(format!(
            "the expression is too complex: it has {count} operators, brackets and dots, and at most {MAX_OPERATIONS} are allowed; split it across rules"
        ));
    }
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
/// confirmation (a rule may still reject it).
pub fn evaluate(subject: &Subject<'_>, policies: &[Policy<'_>]) -> Verdict {
    let mut trace = Vec::new();
    let mut skipped = Vec::new();
    let mut decided: Option<(&Policy<'_>, &PolicyRule)> = None;
    let ordered = in_order(policies);
    let input = std::cell::OnceCell::new();
    'policies: for policy in &ordered {
        let problems = check(policy.spec);
        if !problems.is_empty() {
            let listed: Vec<String> = problems.iter().map(ToString::to_string).collect();
            skipped.push((policy.name.to_owned(), listed.join("; ")));
            break;
        }
        for rule in &policy.spec.rules {
            let outcome = matches(&rule.match_, subject, &input);
            trace.push(RuleTrace {
                policy: policy.name.to_owned(),
                rule: rule.name.clone(),
                matched: outcome.is_ok(),
                why: outcome.as_ref().err().cloned().unwrap_or_default(),
            });
            if outcome.is_ok() {
                decided = Some((policy, rule));
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

/// Whether every condition of a match holds; the error names the first that does not.
pub fn rule_matches(m: &RuleMatch, subject: &Subject<'_>) -> Result<(), String> {
    matches(m, subject, &std::cell::OnceCell::new())
}

/// [`rule_matches`], with the Decision as expressions see it made at most once.
fn matches(
    m: &RuleMatch,
    subject: &Subject<'_>,
    input: &std::cell::OnceCell<Result<cel::Value, String>>,
) -> Result<(), String> {
    let spec = subject.spec;
    if !m.action_types.is_empty() && !m.action_types.contains(&spec.action_type) {
        return Err(format!(
            "actionType {} is not one of {}",
            spec.action_type,
            m.action_types.join(", ")
        ));
    }
    if !m.criticalities.is_empty() && !m.criticalities.contains(&spec.criticality) {
        return Err(format!(
            "criticality {:?} is not one of {:?}",
            spec.criticality, m.criticalities
        ));
    }
    if !m.plans.is_empty() {
        match &spec.plan_ref {
            Some(plan) if m.plans.contains(&plan.name) => {}
            Some(plan) => {
                return Err(format!(
                    "plan {} is not one of {}",
                    plan.name,
                    m.plans.join(", ")
                ));
            }
            None => return Err("the Decision names no plan".to_owned()),
        }
    }
    if !m.priorities.is_empty() {
        match spec.priority {
            Some(p) if m.priorities.contains(&p) => {}
            Some(p) => return Err(format!("priority {p:?} is not one of {:?}", m.priorities)),
            None => return Err("the Decision has no priority".to_owned()),
        }
    }
    if !m.sources.is_empty() {
        let source = spec.source.as_deref().unwrap_or("");
        if !m
            .sources
            .iter()
            .any(|pattern| source_matches(pattern, source))
        {
            return Err(format!(
                "source {:?} matches none of {}",
                source,
                m.sources.join(", ")
            ));
        }
    }
    let level = subject.risk.level;
    if let Some(min) = m.min_risk
        && level < min
    {
        return Err(format!("risk {level:?} is below minRisk {min:?}"));
    }
    if let Some(max) = m.max_risk
        && level > max
    {
        return Err(format!("risk {level:?} is above maxRisk {max:?}"));
    }
    if m.min_duration_minutes.is_some() || m.max_duration_minutes.is_some() {
        let Some(minutes) = spec.estimated_duration_minutes else {
            return Err("the Decision has no estimatedDurationMinutes".to_owned());
        };
        if let Some(min) = m.min_duration_minutes
            && minutes < min
        {
            return Err(format!(
                "estimated {minutes} minutes is under minDurationMinutes {min}"
            ));
        }
        if let Some(max) = m.max_duration_minutes
            && minutes > max
        {
            return Err(format!(
                "estimated {minutes} minutes is over maxDurationMinutes {max}"
            ));
        }
    }
    if let Some(expression) = &m.expression {
        match eval_expression(expression, subject, input) {
            Ok(true) => {}
            Ok(false) => return Err(format!("the expression {expression:?} is false")),
            Err(e) => {
                return Err(format!(
                    "the expression {expression:?} {e}, so it does not match"
                ));
            }
        }
    }
    Ok(())
}

fn source_matches(pattern: &str, source: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => source.starts_with(prefix),
        None => pattern == source,
    }
}

/// The value a rule's expression sees as `decision`: the spec, its name and namespace, and
/// the assessed risk.
pub fn expression_input(subject: &Subject<'_>) -> serde_json::Value {
    let mut value = serde_json::to_value(subject.spec).unwrap_or_default();
    if let Some(map) = value.as_object_mut() {
        map.entry("context")
            .or_insert_with(|| serde_json::json!({}));
        map.insert("name".into(), subject.name.into());
        map.insert("namespace".into(), subject.namespace.into());
        map.insert(
            "risk".into(),
            serde_json::json!({ "level": risk_name(subject.risk.level), "score": subject.risk.score }),
        );
    }
    value
}

fn risk_name(level: RiskLevel) -> &'static str {
    match level {
        RiskLevel::Low => "Low",
        RiskLevel::Medium => "Medium",
        RiskLevel::High => "High",
        RiskLevel::Critical => "Critical",
    }
}

fn eval_expression(
    expression: &str,
    subject: &Subject<'_>,
    input: &std::cell::OnceCell<Result<cel::Value, String>>,
) -> Result<bool, String> {
    let program = check_expression(expression)?;
    let decision = input
        .get_or_init(|| {
            cel::to_value(expression_input(subject))
                .map_err(|e| format!("could not be given the Decision: {e}"))
        })
        .clone()?;
    let mut context = cel::Context::default();
    context.add_variable_from_value(DECISION_VARIABLE, decision);
    match program.execute(&context) {
        Ok(cel::Value::Bool(b)) => Ok(b),
        Ok(other) => Err(format!("gave {other:?} instead of true or false")),
        Err(e) => Err(format!("could not be evaluated ({e})")),
    }
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
            approval_valid_for: None,
        }
    }

    fn spec(rules: Vec<PolicyRule>) -> ApprovalPolicySpec {
        ApprovalPolicySpec {
            priority: 100,
            rules,
            expires_after: None,
            unreadable: None,
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

    // ---- evaluation ----

    use crate::api::decision::Priority;
    use crate::api::{ApprovalPolicy, DecisionSpec};

    fn example_policy(file: &str) -> ApprovalPolicy {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples")
            .join(file);
        yaml_serde::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn request(action: &str, criticality: Criticality) -> DecisionSpec {
        DecisionSpec::example(action, criticality)
    }

    fn decide(spec: &DecisionSpec, policies: &[&ApprovalPolicy]) -> Verdict {
        let risk = crate::risk::assess(spec);
        let views: Vec<Policy<'_>> = policies
            .iter()
            .map(|p| Policy {
                name: p.metadata.name.as_deref().unwrap(),
                generation: 1,
                spec: &p.spec,
            })
            .collect();
        evaluate(
            &Subject {
                name: "d",
                namespace: "ns",
                spec,
                risk: &risk,
            },
            &views,
        )
    }

    fn decided_by(v: &Verdict) -> (Option<&str>, Outcome) {
        (v.evaluation.rule.as_deref(), v.evaluation.outcome)
    }

    #[test]
    fn each_default_rule_decides_the_decision_made_to_hit_it() {
        let defaults = example_policy("approvalpolicy-defaults.yaml");
        let p = [&defaults];

        let mut deploy = request("deploy", Criticality::Critical);
        deploy.source = Some("agents/release-bot".into());
        let v = decide(&deploy, &p);
        assert_eq!(
            decided_by(&v),
            (Some("critical-escalates"), Outcome::Escalate)
        );
        assert_eq!(v.evaluation.required_approvals, 2);
        assert_eq!(v.evaluation.approvers.groups, ["approvers"]);

        let mut long = request("backup", Criticality::Normal);
        long.estimated_duration_minutes = Some(180);
        assert_eq!(
            decided_by(&decide(&long, &p)),
            (Some("long-running"), Outcome::RequireApproval)
        );

        let mut risky = request("delete_data", Criticality::High);
        risky.source = Some("agents/cleaner".into());
        let v = decide(&risky, &p);
        assert_eq!(
            decided_by(&v),
            (Some("high-risk"), Outcome::RequireApproval)
        );

        for action in ["data_analysis", "report_generation"] {
            let mut short = request(action, Criticality::Normal);
            short.estimated_duration_minutes = Some(20);
            short.source = Some("users/jane".into());
            assert_eq!(
                decided_by(&decide(&short, &p)),
                (Some("analysis-and-reports"), Outcome::RequireApproval),
                "{action}"
            );
        }

        let mut email = request("email", Criticality::Normal);
        email.estimated_duration_minutes = Some(5);
        let v = decide(&email, &p);
        assert_eq!(decided_by(&v), (Some("short-email"), Outcome::AutoApprove));
        assert_eq!(v.evaluation.required_approvals, 0);
        email.estimated_duration_minutes = Some(45);
        assert_eq!(
            decided_by(&decide(&email, &p)),
            (None, Outcome::RequireApproval)
        );

        let follow_up = request("follow_up", Criticality::Normal);
        assert_eq!(crate::risk::assess(&follow_up).level, RiskLevel::Low);
        assert_eq!(
            decided_by(&decide(&follow_up, &p)),
            (Some("low-risk-follow-up"), Outcome::AutoApprove)
        );
        let mut medium = request("follow_up", Criticality::Normal);
        medium.priority = Some(Priority::Medium);
        medium.source = Some("agents/assistant".into());
        assert_eq!(crate::risk::assess(&medium).level, RiskLevel::Medium);
        assert_eq!(
            decided_by(&decide(&medium, &p)),
            (None, Outcome::RequireApproval)
        );
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
            let why = check_expression(&too_deep).unwrap_err();
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
                    eval_expression(&expression, &subject, &Default::default())
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

    #[test]
    fn policies_are_tried_by_priority_then_name() {
        let mut a = example_policy("approvalpolicy-budget.yaml");
        a.metadata.name = Some("b-second".into());
        a.spec.priority = 10;
        a.spec.rules.truncate(1);
        a.spec.rules[0].outcome = Outcome::AutoReject;
        let mut b = a.clone();
        b.metadata.name = Some("a-first".into());
        b.spec.rules[0].outcome = Outcome::Escalate;
        let mut c = a.clone();
        c.metadata.name = Some("before-all".into());
        c.spec.priority = 5;
        c.spec.rules[0].match_.action_types = vec!["other".into()];
        let mut small = request("budget_spend", Criticality::Normal);
        small.context = Some([("amount".to_owned(), serde_json::json!(1))].into());
        let v = decide(&small, &[&a, &b, &c]);
        assert_eq!(v.evaluation.policy.as_deref(), Some("a-first"));
        let tried: Vec<&str> = v.trace.iter().map(|t| t.policy.as_str()).collect();
        assert_eq!(tried, ["before-all", "a-first"]);
    }

    #[test]
    fn critical_is_never_auto_approved_and_says_why() {
        let mut everything = example_policy("approvalpolicy-budget.yaml");
        everything.spec.rules = vec![rule("approve-all", None)];
        let v = decide(&request("deploy", Criticality::Critical), &[&everything]);
        assert_eq!(v.evaluation.outcome, Outcome::RequireApproval);
        assert_eq!(v.evaluation.required_approvals, 1);
        assert!(
            v.evaluation
                .message
                .contains("never approved automatically"),
            "{}",
            v.evaluation.message
        );
    }

    #[test]
    fn info_needs_no_confirmation_but_can_be_rejected() {
        let v = decide(&request("status_update", Criticality::Info), &[]);
        assert_eq!(v.evaluation.outcome, Outcome::AutoApprove);
        assert!(v.evaluation.message.contains("needs no confirmation"));

        let mut block = example_policy("approvalpolicy-budget.yaml");
        block.spec.rules = vec![rule("block", None)];
        block.spec.rules[0].outcome = Outcome::AutoReject;
        let v = decide(&request("status_update", Criticality::Info), &[&block]);
        assert_eq!(v.evaluation.outcome, Outcome::AutoReject);
    }

    #[test]
    fn a_rule_can_match_on_the_plan() {
        let mut only_rollouts = rule("rollouts", None);
        only_rollouts.match_.plans = vec!["roll-out".into()];
        let spec = spec(vec![only_rollouts]);
        let m = &spec.rules[0].match_;
        let risk = crate::risk::assess(&request("deploy", Criticality::Normal));
        let mut d = request("deploy", Criticality::Normal);
        let subject = |d: &DecisionSpec| {
            rule_matches(
                m,
                &Subject {
                    name: "d",
                    namespace: "ns",
                    spec: &d.clone(),
                    risk: &risk,
                },
            )
        };
        assert_eq!(subject(&d), Err("the Decision names no plan".to_owned()));
        d.plan_ref = Some(crate::api::decision::PlanRef {
            name: "drop-db".into(),
        });
        assert_eq!(
            subject(&d),
            Err("plan drop-db is not one of roll-out".to_owned())
        );
        d.plan_ref = Some(crate::api::decision::PlanRef {
            name: "roll-out".into(),
        });
        assert_eq!(subject(&d), Ok(()));
    }

    #[test]
    fn no_match_and_no_policy_fail_closed() {
        let v = decide(&request("deploy", Criticality::Normal), &[]);
        assert_eq!(decided_by(&v), (None, Outcome::RequireApproval));
        assert!(v.evaluation.message.contains("no ApprovalPolicy"));
    }

    #[test]
    fn a_policy_that_cannot_be_applied_requires_approval_where_it_stands() {
        let defaults = example_policy("approvalpolicy-defaults.yaml");
        let mut email = request("email", Criticality::Normal);
        email.estimated_duration_minutes = Some(5);
        assert_eq!(
            decided_by(&decide(&email, &[&defaults])),
            (Some("short-email"), Outcome::AutoApprove)
        );

        // Tried first and broken: what it would have said is unknown, so nothing after it
        // may approve automatically.
        let mut broken = example_policy("approvalpolicy-budget.yaml");
        broken.metadata.name = Some("aaa-broken".into());
        broken.spec.priority = 1;
        broken.spec.rules = vec![rule("reject-all", Some("decision.context.amount <"))];
        let v = decide(&email, &[&broken, &defaults]);
        assert_eq!(v.evaluation.outcome, Outcome::RequireApproval);
        assert_eq!(v.evaluation.policy.as_deref(), Some("aaa-broken"));
        assert!(
            v.evaluation.message.contains("cannot be applied"),
            "{}",
            v.evaluation.message
        );
        assert_eq!(v.skipped.len(), 1);
        assert_eq!(v.skipped[0].0, "aaa-broken");

        // One that could not be read at all fails closed the same way.
        let mut unreadable = example_policy("approvalpolicy-budget.yaml");
        unreadable.metadata.name = Some("lost".into());
        unreadable.spec.unreadable = Some("unknown variant `Sometimes`".into());
        let v = decide(&email, &[&unreadable, &defaults]);
        assert_eq!(v.evaluation.outcome, Outcome::RequireApproval);
        assert!(
            v.evaluation
                .message
                .contains("the policy cannot be read: unknown variant"),
            "{}",
            v.evaluation.message
        );

        // Tried after the rule that decides, it changes nothing.
        broken.spec.priority = 100_000;
        let v = decide(&email, &[&broken, &defaults]);
        assert_eq!(decided_by(&v), (Some("short-email"), Outcome::AutoApprove));
        assert!(v.skipped.is_empty());
    }

    #[test]
    fn the_fingerprint_follows_names_and_generations() {
        let spec = spec(vec![rule("r", None)]);
        let one = [Policy {
            name: "a",
            generation: 1,
            spec: &spec,
        }];
        let two = [Policy {
            name: "a",
            generation: 2,
            spec: &spec,
        }];
        assert_eq!(fingerprint(&one), fingerprint(&one));
        assert_ne!(fingerprint(&one), fingerprint(&two));
        assert_ne!(fingerprint(&one), fingerprint(&[]));
    }

    mod invariants {
        use super::*;
        use proptest::prelude::*;

        fn any_criticality() -> impl Strategy<Value = Criticality> {
            prop_oneof![
                Just(Criticality::Critical),
                Just(Criticality::High),
                Just(Criticality::Normal),
                Just(Criticality::Info)
            ]
        }

        fn any_outcome() -> impl Strategy<Value = Outcome> {
            prop_oneof![
                Just(Outcome::AutoApprove),
                Just(Outcome::RequireApproval),
                Just(Outcome::AutoReject),
                Just(Outcome::Escalate)
            ]
        }

        proptest! {
            #[test]
            fn the_gates_invariants_hold_whatever_the_rules_say(
                criticality in any_criticality(),
                outcomes in proptest::collection::vec(any_outcome(), 0..4),
                match_criticality in proptest::option::of(any_criticality()),
                minutes in proptest::option::of(0u32..600),
                amount in 0i64..5000,
            ) {
                let rules: Vec<PolicyRule> = outcomes.iter().enumerate().map(|(i, outcome)| {
                    let mut r = rule(&format!("r{i}"), (i % 2 == 1).then_some("decision.context.amount < 2500"));
                    r.outcome = *outcome;
                    if let Some(c) = match_criticality.filter(|_| i == 0) {
                        r.match_.criticalities = vec![c];
                    }
                    r
                }).collect();
                let mut policy = example_policy("approvalpolicy-budget.yaml");
                policy.spec.rules = rules.clone();
                let mut spec = request("deploy", criticality);
                spec.estimated_duration_minutes = minutes;
                spec.context = Some([("amount".to_owned(), serde_json::json!(amount))].into());
                let policies: Vec<&ApprovalPolicy> = if rules.is_empty() { vec![] } else { vec![&policy] };
                let v = decide(&spec, &policies);
                match criticality {
                    Criticality::Critical => prop_assert_ne!(v.evaluation.outcome, Outcome::AutoApprove),
                    Criticality::Info => prop_assert!(matches!(v.evaluation.outcome, Outcome::AutoApprove | Outcome::AutoReject)),
                    _ => {}
                }
                if v.evaluation.rule.is_none() && criticality != Criticality::Info {
                    prop_assert_eq!(v.evaluation.outcome, Outcome::RequireApproval);
                }
                if matches!(v.evaluation.outcome, Outcome::RequireApproval | Outcome::Escalate) {
                    prop_assert!(v.evaluation.required_approvals >= 1);
                }
            }
        }
    }
}

//! Rule expressions in CEL: compiled once into a cache the caller owns, bounded in depth
//! so that any of them runs within a known stack, and evaluated over the Decision.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::checks::{RuleProblem, problems};
use super::{DECISION_VARIABLE, Subject};
use crate::api::ApprovalPolicySpec;

/// The rule expressions compiled so far, for every evaluation that is handed them.
/// Compiling is most of an evaluation's cost and every Decision of a namespace meets the
/// same few expressions, so each is compiled once, its error too. Bounded: a policy edit
/// brings new text, and past `capacity` expressions the cache starts again. Shared
/// between threads: the operator keeps one for all its reconciles.
pub struct Expressions {
    capacity: usize,
    compiled: Mutex<HashMap<String, Compiled>>,
}

/// A compiled expression, or why it does not compile.
type Compiled = Result<Arc<Program>, String>;

/// A rule's expression, compiled.
#[derive(Debug)]
pub struct Program {
    cel: cel::Program,
    /// Whether it iterates (`all`, `exists`, ...): its cost then grows with the size of
    /// the Decision it reads, which is bounded by [`MAX_ITERATED_BYTES`].
    iterates: bool,
}

/// The most a Decision may weigh, as an iterating expression reads it (its spec, name,
/// namespace and risk as JSON), for the expression to be evaluated. An iteration's body
/// runs once per element, and the interpreter's work per element is many times a plain
/// read's; at 32 KiB the costliest body measured stays within milliseconds (`make bench`),
/// and a request's context rarely holds a tenth of it.
pub const MAX_ITERATED_BYTES: usize = 32 * 1024;

/// The most a Decision may weigh for any expression to be evaluated: each read copies what
/// it reads, and a chain of list joins copies what it joined so far, so an expression at
/// its bounds of reads and joins holds several copies of the Decision at once.
pub const MAX_EXPRESSION_BYTES: usize = 128 * 1024;

/// The Decision as an evaluation's expressions see it, made at most once per evaluation.
#[derive(Default)]
pub(super) struct Given {
    value: std::cell::OnceCell<Result<cel::Value, String>>,
    json: std::cell::OnceCell<serde_json::Value>,
    bytes: std::cell::OnceCell<usize>,
}

impl Given {
    fn json(&self, subject: &Subject<'_>) -> &serde_json::Value {
        self.json.get_or_init(|| expression_input(subject))
    }

    fn value(&self, subject: &Subject<'_>) -> Result<cel::Value, String> {
        self.value
            .get_or_init(|| {
                cel::to_value(self.json(subject).clone())
                    .map_err(|e| format!("could not be given the Decision: {e}"))
            })
            .clone()
    }

    fn bytes(&self, subject: &Subject<'_>) -> usize {
        *self
            .bytes
            .get_or_init(|| serde_json::to_vec(self.json(subject)).map_or(usize::MAX, |v| v.len()))
    }
}

/// Why an expression gave no answer.
#[derive(Debug, PartialEq)]
pub(super) enum Unevaluated {
    /// It failed on this Decision (a missing key, say), in words.
    Failed(String),
    /// The Decision is larger than the expression may read (less when it iterates).
    TooLarge(String),
}

impl Expressions {
    /// How many expressions [`Expressions::default`] keeps.
    pub const CAPACITY: usize = 1000;

    /// An empty cache that keeps at most `capacity` expressions.
    pub fn new(capacity: usize) -> Expressions {
        Expressions {
            capacity,
            compiled: Mutex::default(),
        }
    }

    /// The expression compiled, from the cache when it was compiled before; the error
    /// says what is wrong in words.
    pub fn program(&self, expression: &str) -> Compiled {
        if let Some(hit) = self.cache().get(expression) {
            return hit.clone();
        }
        // Compiled without the lock held: another thread compiling the same text at the
        // same time only does the work twice.
        let compiled =
            compile(expression).map(|(cel, iterates)| Arc::new(Program { cel, iterates }));
        let mut cache = self.cache();
        if cache.len() >= self.capacity {
            cache.clear();
        }
        cache.insert(expression.to_owned(), compiled.clone());
        compiled
    }

    /// [`check`](super::check), with the expressions compiled through the cache.
    pub fn check(&self, spec: &ApprovalPolicySpec) -> Vec<RuleProblem> {
        problems(spec, |expression| self.program(expression).map(drop))
    }

    pub(super) fn cache(&self) -> MutexGuard<'_, HashMap<String, Compiled>> {
        // Nothing panics while the lock is held; a poisoned cache is still a sound one.
        self.compiled.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for Expressions {
    fn default() -> Expressions {
        Expressions::new(Expressions::CAPACITY)
    }
}

impl std::fmt::Debug for Expressions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Expressions")
            .field("capacity", &self.capacity)
            .field("compiled", &self.cache().len())
            .finish()
    }
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
pub(super) fn operations(expression: &str) -> usize {
    let symbols = expression
        .chars()
        .filter(|c| "([{.!?+-*/%<>=&|".contains(*c))
        .count();
    symbols + expression.matches("in").count()
}

/// Compiles an expression, and says whether it iterates.
pub(super) fn compile(expression: &str) -> Result<(cel::Program, bool), String> {
    let count = operations(expression);
    if count > MAX_OPERATIONS {
        return Err(format!(
            "the expression is too complex: it has {count} operators, brackets and dots, and at most {MAX_OPERATIONS} are allowed; split it across rules"
        ));
    }
    let program = cel::Program::compile(expression)
        .map_err(|e| format!("the expression {expression:?} does not compile: {e}"))?;
    let mut reads = Reads::default();
    reads.scan(program.expression(), &mut Vec::new(), None);
    reads.totals();
    if let Some(problem) = reads.problem {
        return Err(format!("the expression {expression:?} {problem}"));
    }
    let unknown: Vec<&str> = reads
        .free
        .iter()
        .map(String::as_str)
        .filter(|v| *v != DECISION_VARIABLE)
        .collect();
    if !unknown.is_empty() {
        return Err(format!(
            "the expression {expression:?} uses unknown variable(s) {}; only `{DECISION_VARIABLE}` is defined",
            unknown.join(", ")
        ));
    }
    Ok((program, reads.iterations > 0))
}

/// What an expression reads, found by walking it with its macros expanded: the variables
/// that none of its iterations (`all`, `exists`, `exists_one`, `filter`, `map`) bind, and
/// the first thing it holds beyond the bounds on its cost.
///
/// CEL here has no runtime cost limit and cannot be interrupted, and a requester chooses
/// what an expression reads, so what costs more than linear time in the Decision is
/// counted here: joins with `+`, reads of the Decision (each copies what it reads),
/// iterations, and what an iteration's body does once per element. An iteration inside
/// another one's body multiplies, and `map` grows with whatever it computes per element;
/// both are refused. A rule is a yes or no; `exists`, `all`, `exists_one` and `filter`
/// say it.
#[derive(Default)]
struct Reads {
    free: std::collections::BTreeSet<String>,
    problem: Option<String>,
    /// The iterations it holds.
    iterations: usize,
    /// The `+` it holds, and those in the body of the iteration being read.
    additions: usize,
    additions_per_element: usize,
    /// Its reads of the Decision.
    reads: usize,
}

/// The most `+` an iteration's body may hold.
const MAX_ADDITIONS_PER_ELEMENT: usize = 2;
/// The most `+` an expression may hold: joining lists copies them, and a chain of joins
/// copies what it has joined so far at each step.
const MAX_ADDITIONS: usize = 8;
/// The most reads of the Decision an expression may hold: each copies what it reads.
const MAX_READS: usize = 16;
/// The most iterations an expression may hold, one after the other.
const MAX_ITERATIONS: usize = 2;

impl Reads {
    /// `bound` holds the names the enclosing iterations bind; `looping` is the variable of
    /// the iteration whose body this is, if any.
    fn scan(&mut self, expr: &cel::IdedExpr, bound: &mut Vec<String>, looping: Option<&str>) {
        use cel::common::ast::{EntryExpr, Expr};
        match &expr.expr {
            Expr::Unspecified | Expr::Literal(_) => {}
            // The names a macro's expansion makes up start with '@'.
            Expr::Ident(name) => {
                if !name.starts_with('@') && !bound.contains(name) {
                    self.free.insert(name.clone());
                }
                if name == DECISION_VARIABLE && !bound.contains(name) {
                    self.reads += 1;
                    if let Some(outer) = looping {
                        self.refuse(format!(
                            "reads `{DECISION_VARIABLE}` in the iteration over `{outer}`: comparing every element with a value the Decision brings takes time that grows with the product of the two (the comparison may copy both); compare the elements with values written in the rule, such as `{outer}.startsWith('/var/log/')`"
                        ));
                    }
                }
            }
            Expr::Select(select) => self.scan(&select.operand, bound, looping),
            Expr::Call(call) => {
                self.call(call, looping);
                if let Some(target) = &call.target {
                    self.scan(target, bound, looping);
                }
                for arg in &call.args {
                    self.scan(arg, bound, looping);
                }
            }
            Expr::List(list) => {
                for element in &list.elements {
                    self.scan(element, bound, looping);
                }
            }
            Expr::Map(cel::common::ast::MapExpr { entries })
            | Expr::Struct(cel::common::ast::StructExpr { entries, .. }) => {
                for entry in entries {
                    match &entry.expr {
                        EntryExpr::StructField(field) => self.scan(&field.value, bound, looping),
                        EntryExpr::MapEntry(entry) => {
                            self.scan(&entry.key, bound, looping);
                            self.scan(&entry.value, bound, looping);
                        }
                    }
                }
            }
            Expr::Comprehension(iteration) => {
                self.iterations += 1;
                if let Some(outer) = looping {
                    self.refuse(format!(
                        "iterates inside the iteration over `{outer}` (an all, exists, exists_one, filter or map within another's condition): that takes time that grows with the product of the two lists; iterate once per rule"
                    ));
                }
                if collects_computed(iteration) {
                    self.refuse(format!(
                        "uses map (over `{}`): its result grows with what it computes per element; a rule says yes or no, which all, exists, exists_one and filter do",
                        iteration.iter_var
                    ));
                }
                // The list iterated over and the accumulator's start are read outside the
                // iteration; its condition and step see its variables and accumulator; its
                // result sees the accumulator alone.
                let joined_before = self.additions;
                self.scan(&iteration.iter_range, bound, looping);
                if self.additions > joined_before {
                    self.refuse(format!(
                        "iterates (over `{}`) over a list joined with +: that multiplies what the iteration does per element; iterate over each list on its own",
                        iteration.iter_var
                    ));
                }
                self.scan(&iteration.accu_init, bound, looping);
                let outside = bound.len();
                bound.push(iteration.accu_var.clone());
                bound.push(iteration.iter_var.clone());
                bound.extend(iteration.iter_var2.clone());
                let inside = Some(iteration.iter_var.as_str());
                self.additions_per_element = 0;
                self.scan(&iteration.loop_cond, bound, inside);
                self.scan(&iteration.loop_step, bound, inside);
                if self.additions_per_element > MAX_ADDITIONS_PER_ELEMENT {
                    self.refuse(format!(
                        "adds with + {} times in the iteration over `{}`, and at most {MAX_ADDITIONS_PER_ELEMENT} are allowed: joining strings or lists copies them again for every element; join them once, outside the iteration",
                        self.additions_per_element, iteration.iter_var
                    ));
                }
                bound.truncate(outside + 1);
                self.scan(&iteration.result, bound, looping);
                bound.truncate(outside);
            }
        }
    }

    /// What a call costs. Joining strings or lists copies them, and a chain of joins copies
    /// what it has joined so far at each step. `matches` compiles its pattern at every call:
    /// the pattern must be written in the rule (small, and the policy author's, not one the
    /// Decision brings), and it may not run once per element (a pattern with a Unicode class
    /// takes milliseconds to compile).
    fn call(&mut self, call: &cel::common::ast::CallExpr, looping: Option<&str>) {
        use cel::common::ast::{Expr, operators};
        // The accumulator's own steps (`@result + [x]`, `@result + 1`) cost nothing.
        let accumulates = matches!(call.args.first().map(|a| &a.expr), Some(Expr::Ident(name)) if name.starts_with('@'));
        if call.func_name == operators::ADD && !accumulates {
            self.additions += 1;
            if looping.is_some() {
                self.additions_per_element += 1;
            }
        }
        if call.func_name == operators::IN
            && let [needle, haystack] = call.args.as_slice()
            && !matches!(needle.expr, Expr::Literal(_))
        {
            let mut inside = Reads::default();
            inside.scan(haystack, &mut Vec::new(), None);
            if inside.reads > 0 {
                self.refuse(
                    "tests a value with `in` against a list or map the Decision brings: the requester would choose both sides, and the test may copy the value for every element; test against values written in the rule, such as `in ['prod', 'staging']`, or a literal key, such as `'amount' in decision.context`".to_owned(),
                );
            }
        }
        if call.func_name == "matches" {
            if !matches!(call.args.last().map(|a| &a.expr), Some(Expr::Literal(_))) {
                self.refuse(
                    "calls matches with a pattern that is not written in the rule: a pattern the Decision brings may take long to compile and to run; write it as a literal, such as '^prod-'".to_owned(),
                );
            }
            if let Some(outer) = looping {
                self.refuse(format!(
                    "calls matches in the iteration over `{outer}`: the pattern would be compiled for every element; use startsWith, endsWith or contains there, or match outside the iteration"
                ));
            }
        }
    }

    /// Refuses what the whole expression holds beyond its bounds.
    fn totals(&mut self) {
        if self.iterations > MAX_ITERATIONS {
            self.refuse(format!(
                "iterates {} times, and at most {MAX_ITERATIONS} iterations are allowed in one expression; split it across rules",
                self.iterations
            ));
        }
        if self.additions > MAX_ADDITIONS {
            self.refuse(format!(
                "adds with + {} times, and at most {MAX_ADDITIONS} are allowed: joining lists copies them; split it across rules",
                self.additions
            ));
        }
        if self.reads > MAX_READS {
            self.refuse(format!(
                "reads `{DECISION_VARIABLE}` {} times, and at most {MAX_READS} are allowed: each read copies what it reads; split it across rules",
                self.reads
            ));
        }
    }

    fn refuse(&mut self, problem: String) {
        self.problem.get_or_insert(problem);
    }
}

/// Whether an iteration builds a list of values it computes (`map`), rather than of the
/// elements it visits (`filter`): its step appends to the accumulator something other than
/// the iteration's own variable.
fn collects_computed(iteration: &cel::common::ast::ComprehensionExpr) -> bool {
    use cel::common::ast::Expr;
    fn appends_computed(expr: &cel::IdedExpr, accumulator: &str, variable: &str) -> bool {
        let Expr::Call(call) = &expr.expr else {
            return false;
        };
        let appended = match call.args.as_slice() {
            [first, second] if call.func_name == cel::common::ast::operators::ADD => {
                match (&first.expr, &second.expr) {
                    (Expr::Ident(accu), Expr::List(list)) if accu == accumulator => Some(list),
                    _ => None,
                }
            }
            _ => None,
        };
        match appended {
            Some(list) => list
                .elements
                .iter()
                .any(|e| !matches!(&e.expr, Expr::Ident(name) if name == variable)),
            None => call
                .args
                .iter()
                .any(|arg| appends_computed(arg, accumulator, variable)),
        }
    }
    appends_computed(
        &iteration.loop_step,
        &iteration.accu_var,
        &iteration.iter_var,
    )
}

/// The value a rule's expression sees as `decision`: the spec, its name and namespace, and
/// the assessed risk.
fn expression_input(subject: &Subject<'_>) -> serde_json::Value {
    let mut value = serde_json::to_value(subject.spec).unwrap_or_default();
    if let Some(map) = value.as_object_mut() {
        map.entry("context")
            .or_insert_with(|| serde_json::json!({}));
        map.insert("name".into(), subject.name.into());
        map.insert("namespace".into(), subject.namespace.into());
        map.insert(
            "risk".into(),
            serde_json::json!({ "level": subject.risk.level.as_str(), "score": subject.risk.score }),
        );
    }
    value
}

/// CEL's standard functions and macros, built once: building them is hundreds of
/// allocations, and every evaluation would otherwise pay for it.
static STANDARD: std::sync::LazyLock<Arc<cel::Env>> =
    std::sync::LazyLock::new(|| Arc::new(cel::Env::stdlib()));

pub(super) fn eval_expression(
    expression: &str,
    subject: &Subject<'_>,
    input: &Given,
    expressions: &Expressions,
) -> Result<bool, Unevaluated> {
    let program = expressions
        .program(expression)
        .map_err(Unevaluated::Failed)?;
    let (bound, does, what) = if program.iterates {
        (MAX_ITERATED_BYTES, "iterates", "an iterating expression")
    } else {
        (MAX_EXPRESSION_BYTES, "reads the Decision", "an expression")
    };
    let bytes = input.bytes(subject);
    if bytes > bound {
        return Err(Unevaluated::TooLarge(format!(
            "{does}, and this Decision takes {} KiB as expressions read it, more than the {} KiB {what} may read",
            bytes.div_ceil(1024),
            bound / 1024
        )));
    }
    let decision = input.value(subject).map_err(Unevaluated::Failed)?;
    let mut context = cel::Context::with_env(STANDARD.clone());
    context.add_variable_from_value(DECISION_VARIABLE, decision);
    match program.cel.execute(&context) {
        Ok(cel::Value::Bool(b)) => Ok(b),
        Ok(other) => Err(Unevaluated::Failed(format!(
            "gave {other:?} instead of true or false"
        ))),
        Err(e) => Err(Unevaluated::Failed(format!("could not be evaluated ({e})"))),
    }
}

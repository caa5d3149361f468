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
type Compiled = Result<Arc<cel::Program>, String>;

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
        let compiled = compile(expression).map(Arc::new);
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

pub(super) fn compile(expression: &str) -> Result<cel::Program, String> {
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
    input: &std::cell::OnceCell<Result<cel::Value, String>>,
    expressions: &Expressions,
) -> Result<bool, String> {
    let program = expressions.program(expression)?;
    let decision = input
        .get_or_init(|| {
            cel::to_value(expression_input(subject))
                .map_err(|e| format!("could not be given the Decision: {e}"))
        })
        .clone()?;
    let mut context = cel::Context::with_env(STANDARD.clone());
    context.add_variable_from_value(DECISION_VARIABLE, decision);
    match program.execute(&context) {
        Ok(cel::Value::Bool(b)) => Ok(b),
        Ok(other) => Err(format!("gave {other:?} instead of true or false")),
        Err(e) => Err(format!("could not be evaluated ({e})")),
    }
}

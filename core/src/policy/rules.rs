//! Whether one rule's match holds for a Decision, and if not, the first condition that
//! fails, in words.

use super::expressions::{Given, Unevaluated, eval_expression};
use super::{Expressions, Subject};
use crate::api::approval_policy::RuleMatch;

/// Why a rule does not decide.
#[derive(Debug, PartialEq)]
pub(super) enum Miss {
    /// A condition does not hold, named in words: the next rule is tried.
    No(String),
    /// The rule cannot be tried on this Decision: evaluation stops, and approval is
    /// required, as the rule might have rejected.
    Stop(String),
}

/// Whether every condition of a match holds; the error names the first that does not.
/// `input` holds the Decision as expressions see it, made at most once per evaluation.
pub(super) fn matches(
    m: &RuleMatch,
    subject: &Subject<'_>,
    input: &Given,
    expressions: &Expressions,
) -> Result<(), Miss> {
    conditions(m, subject).map_err(Miss::No)?;
    if let Some(expression) = &m.expression {
        match eval_expression(expression, subject, input, expressions) {
            Ok(true) => {}
            Ok(false) => {
                return Err(Miss::No(format!("the expression {expression:?} is false")));
            }
            Err(Unevaluated::Failed(e)) => {
                return Err(Miss::No(format!(
                    "the expression {expression:?} {e}, so it does not match"
                )));
            }
            Err(Unevaluated::TooLarge(e)) => {
                return Err(Miss::Stop(format!("the expression {expression:?} {e}")));
            }
        }
    }
    Ok(())
}

/// The conditions of a match but its expression.
fn conditions(m: &RuleMatch, subject: &Subject<'_>) -> Result<(), String> {
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
            "criticality {} is not one of {}",
            spec.criticality,
            listed(&m.criticalities)
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
            Some(p) => {
                return Err(format!(
                    "priority {p} is not one of {}",
                    listed(&m.priorities)
                ));
            }
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
        return Err(format!("risk {level} is below minRisk {min}"));
    }
    if let Some(max) = m.max_risk
        && level > max
    {
        return Err(format!("risk {level} is above maxRisk {max}"));
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
    Ok(())
}

/// Values as a rule lists them: `[High, Critical]`.
fn listed<T: std::fmt::Display>(values: &[T]) -> String {
    let names: Vec<String> = values.iter().map(ToString::to_string).collect();
    format!("[{}]", names.join(", "))
}

fn source_matches(pattern: &str, source: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => source.starts_with(prefix),
        None => pattern == source,
    }
}

//! The names the API's enums go by in text: `as_str()` and `Display` give exactly the
//! serialized (wire) name, so that what people read, what the audit log and the metrics
//! record, and what the API server stores are one spelling, never a `Debug` rendering.

use super::approval_policy::PolicyPhase;
use super::common::{ConditionStatus, RiskLevel};
use super::decision::{Criticality, DecisionPhase, Outcome, Priority, RollbackPhase, StepPhase};
use super::execution_plan::{ExecutionMode, PlanPhase, RollbackStrategy};

/// Gives a unit enum `ALL`, `as_str()` and `Display`. The match is exhaustive, so a new
/// variant does not compile until it is listed here.
macro_rules! wire_names {
    ($($kind:ident { $($variant:ident),+ $(,)? })+) => {$(
        impl $kind {
            /// Every value, in the order of the declaration.
            pub const ALL: &'static [$kind] = &[$($kind::$variant),+];

            /// The name on the wire, as the API server stores it.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($kind::$variant => stringify!($variant)),+
                }
            }
        }

        impl std::fmt::Display for $kind {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )+};
}

wire_names! {
    DecisionPhase {
        Pending, Escalated, Approved, Rejected, Expired,
        Executing, Succeeded, Failed, RollingBack, RolledBack,
    }
    Criticality { Critical, High, Normal, Info }
    Priority { Low, Medium, High, Urgent }
    Outcome { AutoApprove, RequireApproval, AutoReject, Escalate }
    StepPhase { Pending, Running, Succeeded, Failed, WouldExecute, Skipped, RolledBack }
    RollbackPhase { AwaitingApproval, Running, Succeeded, Failed, NotRun }
    ExecutionMode { DryRun, Real, Simulated }
    RollbackStrategy { Automatic, Manual, None }
    PlanPhase { Ready, Invalid }
    PolicyPhase { Ready, Invalid }
    RiskLevel { Low, Medium, High, Critical }
    ConditionStatus { True, False, Unknown }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;
    use serde::de::DeserializeOwned;

    /// Each value's name is its serialization and reads back as the value, `Display`
    /// says the same, and `ALL` holds every value the schema allows.
    fn named_as_on_the_wire<T>(all: &[T], name: fn(T) -> &'static str)
    where
        T: Copy + PartialEq + std::fmt::Debug + std::fmt::Display,
        T: Serialize + DeserializeOwned + schemars::JsonSchema,
    {
        for &value in all {
            assert_eq!(
                serde_json::to_value(value).unwrap(),
                serde_json::Value::from(name(value)),
                "{value:?}"
            );
            assert_eq!(
                serde_json::from_value::<T>(name(value).into()).unwrap(),
                value
            );
            assert_eq!(value.to_string(), name(value));
        }
        let schema = schemars::schema_for!(T);
        let allowed: Vec<&str> = schema
            .get("enum")
            .and_then(|e| e.as_array())
            .expect("a string enum")
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        let named: Vec<&str> = all.iter().map(|&v| name(v)).collect();
        assert_eq!(named, allowed);
    }

    #[test]
    fn decision_phases_are_named_as_on_the_wire() {
        named_as_on_the_wire(DecisionPhase::ALL, DecisionPhase::as_str);
    }

    #[test]
    fn criticalities_are_named_as_on_the_wire() {
        named_as_on_the_wire(Criticality::ALL, Criticality::as_str);
    }

    #[test]
    fn priorities_are_named_as_on_the_wire() {
        named_as_on_the_wire(Priority::ALL, Priority::as_str);
    }

    #[test]
    fn outcomes_are_named_as_on_the_wire() {
        named_as_on_the_wire(Outcome::ALL, Outcome::as_str);
    }

    #[test]
    fn step_phases_are_named_as_on_the_wire() {
        named_as_on_the_wire(StepPhase::ALL, StepPhase::as_str);
    }

    #[test]
    fn rollback_phases_are_named_as_on_the_wire() {
        named_as_on_the_wire(RollbackPhase::ALL, RollbackPhase::as_str);
    }

    #[test]
    fn execution_modes_are_named_as_on_the_wire() {
        named_as_on_the_wire(ExecutionMode::ALL, ExecutionMode::as_str);
    }

    #[test]
    fn rollback_strategies_are_named_as_on_the_wire() {
        named_as_on_the_wire(RollbackStrategy::ALL, RollbackStrategy::as_str);
    }

    #[test]
    fn plan_phases_are_named_as_on_the_wire() {
        named_as_on_the_wire(PlanPhase::ALL, PlanPhase::as_str);
    }

    #[test]
    fn policy_phases_are_named_as_on_the_wire() {
        named_as_on_the_wire(PolicyPhase::ALL, PolicyPhase::as_str);
    }

    #[test]
    fn risk_levels_are_named_as_on_the_wire() {
        named_as_on_the_wire(RiskLevel::ALL, RiskLevel::as_str);
    }

    #[test]
    fn condition_statuses_are_named_as_on_the_wire() {
        named_as_on_the_wire(ConditionStatus::ALL, ConditionStatus::as_str);
    }
}

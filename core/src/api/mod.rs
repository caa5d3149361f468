//! The API of decisiongate.io/v1alpha1: Decision, ApprovalPolicy and ExecutionPlan.

pub mod approval_policy;
pub mod common;
pub mod decision;
pub mod duration;
pub mod execution_plan;
mod names;

pub use approval_policy::{ApprovalPolicy, ApprovalPolicySpec, ApprovalPolicyStatus};
pub use common::{Approvers, Condition, ConditionStatus, RiskLevel};
pub use decision::{Decision, DecisionPhase, DecisionSpec, DecisionStatus};
pub use duration::Duration;
pub use execution_plan::{ExecutionMode, ExecutionPlan, ExecutionPlanSpec, ExecutionPlanStatus};

/// The API group of every kind.
pub const GROUP: &str = "decisiongate.io";

/// Annotations people set on a Decision to answer it, exactly as they type them.
pub mod annotations {
    /// `approved-by=<user>`: approve the Decision.
    pub const APPROVED_BY: &str = "approved-by";
    /// `approval-reason=<text>`: why, optional.
    pub const APPROVAL_REASON: &str = "approval-reason";
    /// `approval-digest=<digest>`: the pinned plan digest the approver was shown. With
    /// it, an approval counts only for exactly that content.
    pub const APPROVAL_DIGEST: &str = "approval-digest";
    /// `approved-at=<time>`: when the approver approved, as their client says; a new value
    /// approves again after an approval lapsed (`kubectl decision approve` sets it).
    pub const APPROVED_AT: &str = "approved-at";
    /// `rejected-by=<user>`: veto the Decision.
    pub const REJECTED_BY: &str = "rejected-by";
    /// `rejection-reason=<text>`: why, expected with every rejection.
    pub const REJECTION_REASON: &str = "rejection-reason";
    /// `rollback-approved-by=<user>`: start a Manual rollback.
    pub const ROLLBACK_APPROVED_BY: &str = "rollback-approved-by";
    /// `rollback-approved-at=<time>`: when, as the approver's client says; a new value
    /// approves the rollback again (after one written while answers were not verified).
    pub const ROLLBACK_APPROVED_AT: &str = "rollback-approved-at";
    /// Who created the Decision, stamped from the API server's authenticated identity
    /// by the chart's admission policy; never taken from a client.
    pub const REQUESTED_BY: &str = "decisiongate.io/requested-by";
}

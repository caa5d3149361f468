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
    /// `approval-digest=<digest>`: the Decision's digest (`status.digest`) the approver was
    /// shown, which covers its uid, its request and its pinned plan. With it, an approval
    /// counts only for exactly that Decision and content.
    pub const APPROVAL_DIGEST: &str = "approval-digest";
    /// `approval-uid=<uid>`: the uid of the Decision the approver was shown. With it, an
    /// approval never counts for another Decision created under the same name.
    pub const APPROVAL_UID: &str = "approval-uid";
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
    /// The groups of the person who gave the approval, as the API server authenticated
    /// them (a JSON list), stamped by the chart's admission policy with each new approval.
    pub const APPROVER_GROUPS: &str = "decisiongate.io/approver-groups";
    /// Who gave the approval on the approver's behalf by impersonating them, as the API
    /// server reports it (the user extra [`IMPERSONATOR_EXTRA`]); empty when nobody did.
    /// Stamped by the chart's admission policy with each new approval.
    pub const APPROVER_IMPERSONATOR: &str = "decisiongate.io/approver-impersonator";
    /// The user extra an impersonating client (the operator's Slack bridge) sets to its
    /// own name; the API server admits it only where RBAC lets the client impersonate
    /// that value, and the admission policy copies it to [`APPROVER_IMPERSONATOR`].
    pub const IMPERSONATOR_EXTRA: &str = "decisiongate.io/impersonator";
    /// Who asked the API server to delete the Decision, as it authenticated them: written
    /// by the operator's deletion witness (an admission webhook) as the deletion is
    /// admitted, and by nobody else.
    pub const DELETED_BY: &str = "decisiongate.io/deleted-by";
    /// When the deletion witness saw that deletion (RFC 3339).
    pub const DELETED_AT: &str = "decisiongate.io/deleted-at";
}

/// The finalizer that keeps a deleted Decision until the operator has written its last
/// state to the audit log.
pub const FINALIZER: &str = "decisiongate.io/audit";

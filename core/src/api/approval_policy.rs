//! `ApprovalPolicy`: the rules that decide whether a Decision needs a human, and whom.

use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Approvers, Condition, RiskLevel};
use super::decision::{Criticality, Outcome, Priority};
use super::duration::Duration;

/// The rules of the policy and the order in which it is tried.
// Every `printcolumn(...)` repeats the same keys, which clippy mistakes for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    crates(kube_core = "::kube_core"),
    group = "decisiongate.io",
    version = "v1alpha1",
    kind = "ApprovalPolicy",
    doc = "Rules that decide what happens to the Decisions of a namespace: approve automatically, require approval (from whom, how many), reject, or escalate. Policies are tried in (priority, name) order, rules in the order listed, and the first match decides; no match means approval is required. A Critical Decision is never approved automatically and an Info Decision needs no confirmation, whatever a rule says.",
    plural = "approvalpolicies",
    shortname = "apol",
    category = "decisiongate",
    namespaced,
    status = "ApprovalPolicyStatus",
    printcolumn(name = "Priority", type_ = "integer", json_path = ".spec.priority"),
    printcolumn(name = "Rules", type_ = "integer", json_path = ".status.ruleCount"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalPolicySpec {
    /// The order in which the namespace's policies are tried: lower first, then by name.
    #[serde(default = "default_priority")]
    #[schemars(range(min = -100000, max = 100000))]
    pub priority: i32,

    /// The rules, tried in the order listed; the first match decides. Names must be unique.
    #[schemars(length(max = 100))]
    #[schemars(extend("x-kubernetes-validations" = [
        {
            "rule": "size(self) >= 1",
            "message": "an ApprovalPolicy needs at least one rule",
        },
        {
            "rule": "self.all(r, self.exists_one(s, s.name == r.name))",
            "message": "rule names must be unique within a policy",
        },
    ]))]
    pub rules: Vec<PolicyRule>,

    /// How long Decisions decided by this policy wait for an answer, unless the rule or
    /// the Decision says otherwise, such as `4h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_after: Option<Duration>,

    /// Set (never stored) when the stored object could not be read: why. Such a policy
    /// is kept, empty, so that it fails closed rather than vanish.
    #[serde(skip)]
    pub unreadable: Option<String>,
}

fn default_priority() -> i32 {
    100
}

/// One rule: a condition on the Decision and what to do when it holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!has(self.requiredApprovals) || !has(self.approvers) || has(self.approvers.groups) || !has(self.approvers.users) || self.requiredApprovals <= size(self.approvers.users)",
    "message": "requiredApprovals is more than the number of users in approvers.users and no group is named, so the rule could never be satisfied",
}]))]
pub struct PolicyRule {
    /// The rule's name, reported in the Decision's status when it decides.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,

    /// The conditions, all of which must hold for the rule to match. An empty match
    /// matches every Decision.
    #[serde(default, rename = "match")]
    pub match_: RuleMatch,

    /// What happens to a matching Decision: AutoApprove, RequireApproval, AutoReject or
    /// Escalate.
    pub outcome: Outcome,

    /// Who may approve matching Decisions. When unset, anyone allowed to approve
    /// Decisions in the namespace may.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvers: Option<Approvers>,

    /// How many distinct approvers must approve (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 16))]
    pub required_approvals: Option<u32>,

    /// How long matching Decisions wait for an answer, unless the Decision says otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_after: Option<Duration>,

    /// How long an approval by people stays good before the plan starts, such as `1h`. A
    /// Decision approved but not started by then (its `notBefore` has not come, its plan
    /// is not checked yet) goes back to waiting for approval, and says why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_valid_for: Option<Duration>,
}

/// Conditions on a Decision. Every condition that is set must hold.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!has(self.minDurationMinutes) || !has(self.maxDurationMinutes) || self.minDurationMinutes <= self.maxDurationMinutes",
    "message": "minDurationMinutes is greater than maxDurationMinutes, so the rule could never match",
}]))]
pub struct RuleMatch {
    /// The Decision's `actionType` is one of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 63)))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.all(t, t.matches('^[a-z0-9]([a-z0-9_.-]*[a-z0-9])?$'))",
        "message": "action types are lower-case letters, digits, '_', '-' or '.', starting and ending with a letter or digit, such as deploy or delete_data (a Decision's actionType is never anything else)",
    }]))]
    pub action_types: Vec<String>,

    /// The Decision's criticality is one of these (the higher of its own and its plan's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 4))]
    pub criticalities: Vec<Criticality>,

    /// The Decision's `planRef` names one of these ExecutionPlans (at most 32).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(min = 1, max = 253)))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.all(p, p.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$'))",
        "message": "each entry must be the name of an ExecutionPlan: lower-case letters, digits, '-' and '.', starting and ending with a letter or digit, such as deploy-api",
    }]))]
    pub plans: Vec<String>,

    /// The Decision's priority is one of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 4))]
    pub priorities: Vec<Priority>,

    /// The Decision's source is one of these; a trailing `*` matches any suffix, as in
    /// `agents/*`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 253)))]
    pub sources: Vec<String>,

    /// The assessed risk is at least this: Low, Medium, High or Critical.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_risk: Option<RiskLevel>,

    /// The assessed risk is at most this: Low, Medium, High or Critical.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_risk: Option<RiskLevel>,

    /// The estimated duration is at least this many minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 525600))]
    pub min_duration_minutes: Option<u32>,

    /// The estimated duration is at most this many minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 525600))]
    pub max_duration_minutes: Option<u32>,

    /// A CEL expression over `decision` (its spec: `decision.actionType`,
    /// `decision.context.amount`, ...) that must be true, such as
    /// `decision.context.amount < 1000`. It may iterate over a list with `all`, `exists`,
    /// `exists_one` and `filter` (`decision.context.paths.all(p, p.startsWith('/tmp/'))`).
    /// Bounds on its cost: at most 8 `+`, 16 reads of `decision` and two iterations, none
    /// nested, no `map`; an iteration's body reads only its element and values written in
    /// the rule, with at most two `+` and no `matches`; `in` tests against values written
    /// in the rule, or with a literal on its left; `matches` patterns written in the rule;
    /// a Decision of at most 128 KiB, 32 KiB when it iterates (a larger one requires
    /// approval). A policy whose expression does not compile or exceeds a bound is marked
    /// Invalid and not applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub expression: Option<String>,
}

/// Whether a policy can be applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum PolicyPhase {
    // Every rule is usable; the policy is applied.
    Ready,
    // A rule is unusable (for example, its expression does not compile); the policy is
    // not applied until it is fixed.
    Invalid,
}

/// What the operator found when it checked the policy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalPolicyStatus {
    /// Ready or Invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<PolicyPhase>,

    /// How many rules the policy has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_count: Option<u32>,

    /// The `Ready` condition says whether the policy is applied, and if not, which rule
    /// is unusable and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// The `.metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Set (never stored) when the stored status could not be read: why.
    #[serde(skip)]
    pub unreadable: Option<String>,
}

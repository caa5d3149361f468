//! `Decision`: a request for a critical action, waiting for a human (or a policy) to decide.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Approvers, Condition, RiskLevel};
use super::duration::Duration;
use super::execution_plan::{ExecutionMode, RollbackStrategy};

/// What is asked. Immutable once created: an approval binds to exactly this.
// Every `printcolumn(...)` repeats the same keys, which clippy mistakes for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    crates(kube_core = "::kube_core"),
    group = "decisiongate.io",
    version = "v1alpha1",
    kind = "Decision",
    doc = "A request for a critical action, such as a production deployment or a data deletion. Approvers answer with the annotations approved-by and rejected-by; the operator evaluates the namespace's ApprovalPolicies, records who decided and why, and runs the named ExecutionPlan once approved.",
    plural = "decisions",
    shortname = "dec",
    category = "decisiongate",
    namespaced,
    status = "DecisionStatus",
    derive = "PartialEq",
    printcolumn(name = "Action", type_ = "string", json_path = ".spec.actionType"),
    printcolumn(
        name = "Criticality",
        type_ = "string",
        json_path = ".spec.criticality"
    ),
    printcolumn(name = "Risk", type_ = "string", json_path = ".status.risk.level"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Approvals",
        type_ = "string",
        json_path = ".status.approvalProgress"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Plan",
        type_ = "string",
        json_path = ".spec.planRef.name",
        priority = "1"
    ),
    printcolumn(
        name = "Digest",
        type_ = "string",
        json_path = ".status.digest",
        priority = "1"
    ),
    printcolumn(
        name = "Images",
        type_ = "string",
        json_path = ".status.plan.steps[*].images[*]",
        priority = "1"
    ),
    printcolumn(
        name = "Description",
        type_ = "string",
        json_path = ".spec.description",
        priority = "1"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self == oldSelf",
    "message": "spec is immutable: an approval binds to exactly what was asked, so create a new Decision instead",
}]))]
pub struct DecisionSpec {
    /// What kind of action is requested, such as `deploy`, `delete_data`, `budget_spend`,
    /// `restart_service` or `send_email`. Policies match on it. Lower-case letters, digits,
    /// `_`, `-` and `.`.
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.matches('^[a-z0-9]([a-z0-9_.-]*[a-z0-9])?$')",
        "message": "must be lower-case letters, digits, '_', '-' or '.', starting and ending with a letter or digit, such as deploy or budget_spend",
    }]))]
    #[schemars(length(min = 1, max = 63))]
    pub action_type: String,

    /// What will happen, in words an approver understands.
    #[schemars(length(min = 1, max = 4096))]
    pub description: String,

    /// How critical the action is. Critical: never auto-approved, always needs a human.
    /// High: needs confirmation unless a policy allows it. Normal: may be auto-approved.
    /// Info: informational, needs no confirmation.
    pub criticality: Criticality,

    /// How urgent the request is: Low, Medium, High or Urgent. Feeds the risk score.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,

    /// How long the action is expected to take, in minutes. Feeds duration rules and the
    /// risk score.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 525600))]
    pub estimated_duration_minutes: Option<u32>,

    /// The system that asks, such as `agents/release-bot` or `ci/github-actions`. Policies
    /// can match on it and it feeds the risk score.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub source: Option<String>,

    /// Free-form details of the request, such as `{service: api-gateway, version: 2.0.0}`.
    /// Policy expressions read it as `decision.context`; execution steps receive it as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    pub context: Option<BTreeMap<String, serde_json::Value>>,

    /// The ExecutionPlan, in the same namespace, to run once the Decision is approved.
    /// Without it the Decision is a pure gate: it ends at Approved, Rejected or Expired and
    /// other systems watch it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_ref: Option<PlanRef>,

    /// How long the Decision may wait for an answer before it expires, such as `30m` or
    /// `24h`. When unset, the matching policy rule's value applies, else the operator's
    /// default (24h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_after: Option<Duration>,

    /// The earliest moment the plan may start, such as `2026-12-24T22:00:00Z` (a change
    /// window opening). An approved Decision waits until then; its `Executed` condition
    /// says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<DateTime<Utc>>,

    /// The person an agent acts for, as the API server knows their user name (such as
    /// `alice@example.com`). They may not approve the Decision, no more than the requester.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub on_behalf_of: Option<String>,
}

fn free_form_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "maxProperties": 128,
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

impl DecisionSpec {
    /// The least a request can say: its action type and criticality, every optional field
    /// unset (the description is a placeholder).
    pub fn example(action_type: &str, criticality: Criticality) -> DecisionSpec {
        DecisionSpec {
            action_type: action_type.to_owned(),
            description: "example".to_owned(),
            criticality,
            priority: None,
            estimated_duration_minutes: None,
            source: None,
            context: None,
            plan_ref: None,
            expires_after: None,
            not_before: None,
            on_behalf_of: None,
        }
    }
}

/// How critical an action is (the decision types of a strict confirmation gate).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Criticality {
    // Never auto-approved.
    Critical,
    // Needs confirmation unless a rule allows it.
    High,
    // May be auto-approved.
    Normal,
    // Needs no confirmation.
    Info,
}

/// How urgent a request is.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub enum Priority {
    Low,
    Medium,
    High,
    Urgent,
}

/// A reference to an ExecutionPlan in the Decision's namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PlanRef {
    /// The ExecutionPlan's name.
    #[schemars(length(min = 1, max = 253))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",
        "message": "must be the name of an ExecutionPlan: lower-case letters, digits, '-' and '.', starting and ending with a letter or digit, such as deploy-api",
    }]))]
    pub name: String,
}

/// Where a Decision stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum DecisionPhase {
    // Waiting for approval.
    Pending,
    // Waiting for approval from the escalation approvers.
    Escalated,
    // Approved; runs its plan next, if it has one.
    Approved,
    // Vetoed by an approver or a policy.
    Rejected,
    // Nobody answered in time.
    Expired,
    // Its plan is running.
    Executing,
    // Its plan ran to the end (or would have, in DryRun).
    Succeeded,
    // Its plan failed.
    Failed,
    // Compensating steps are running.
    RollingBack,
    // Compensating steps ran to the end.
    RolledBack,
}

impl DecisionPhase {
    /// Whether the Decision can still be approved or rejected.
    pub fn is_awaiting_answer(self) -> bool {
        matches!(self, DecisionPhase::Pending | DecisionPhase::Escalated)
    }
}

/// What the operator has observed and decided about a Decision.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DecisionStatus {
    /// Where the Decision stands: Pending, Escalated, Approved, Rejected, Expired,
    /// Executing, Succeeded, Failed, RollingBack or RolledBack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<DecisionPhase>,

    /// Who created the Decision, as the API server authenticated them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,

    /// The person the requester acts for (`spec.onBehalfOf`); they may not approve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<String>,

    /// The assessed risk, with the reasons that produced it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk: Option<RiskAssessment>,

    /// Which policy and rule decided, and what they require.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation: Option<Evaluation>,

    /// The ExecutionPlan pinned when the Decision was evaluated: what approvers approve
    /// and the only form in which it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<PinnedPlan>,

    /// `sha256:` and the hex SHA-256 of exactly what is approved: this Decision's uid, its
    /// spec (action, description, criticality, context, plan reference, ...) and the pinned
    /// plan's digest. Approvers confirm it with the `approval-digest` annotation
    /// (`kubectl decision approve` does); an approval that names another digest does not
    /// count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,

    /// The approvals received so far, one per distinct approver.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<Approval>,

    /// Approvals received out of approvals required, such as `1/2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_progress: Option<String>,

    /// The rejection that vetoed the Decision, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejection: Option<Rejection>,

    /// Answers (approvals or rejections) that did not count, and why: the requester
    /// approving their own Decision, someone outside the rule's approvers, an answer
    /// after the Decision was decided or expired.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored_answers: Vec<IgnoredAnswer>,

    /// When the Decision expires if nobody answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,

    /// When it was approved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_at: Option<DateTime<Utc>>,

    /// Until when the approval holds if the plan has not started by then (the rule's
    /// `approvalValidFor`); past it, the Decision waits for approval again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_valid_until: Option<DateTime<Utc>>,

    /// The trace of the plan's execution, step by step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution: Option<ExecutionStatus>,

    /// The reminders sent while the Decision waited for an answer, one per configured
    /// reminder (`reminders[].before` of the notification configuration): a reminder
    /// recorded here is never sent again, across restarts of the operator.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub reminders_sent: Vec<ReminderSent>,

    /// The chat messages that announced the Decision, by the name of the notification
    /// channel that posted them: the message edited to show the outcome once it is decided.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 32))]
    pub chat_messages: BTreeMap<String, ChatMessage>,

    /// Standard conditions: `Approved` and, once a plan runs, `Executed`.
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

/// A risk score and the reasons for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RiskAssessment {
    /// Low, Medium, High or Critical.
    pub level: RiskLevel,
    /// The score the level was read from; higher is riskier.
    pub score: u32,
    /// What contributed to the score, in words.
    #[serde(default)]
    pub reasons: Vec<String>,
}

/// What a policy rule can decide.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Outcome {
    AutoApprove,
    RequireApproval,
    AutoReject,
    Escalate,
}

/// The result of evaluating the namespace's ApprovalPolicies against a Decision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Evaluation {
    /// The ApprovalPolicy whose rule decided; empty when no rule matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// The rule that decided; empty when no rule matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// AutoApprove, RequireApproval, AutoReject or Escalate.
    pub outcome: Outcome,
    /// Why, in words.
    #[serde(default)]
    pub message: String,
    /// How many distinct approvers must approve.
    pub required_approvals: u32,
    /// Who may approve; empty means anyone allowed to approve Decisions in the namespace.
    #[serde(default, skip_serializing_if = "Approvers::is_empty")]
    pub approvers: Approvers,
    /// A fingerprint of the namespace's policies this evaluation used. When the policies
    /// change, a Decision still waiting for an answer is evaluated again.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub policy_set: String,
    /// The criticality the policies saw: the higher of the Decision's and its plan's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub criticality: Option<Criticality>,
    /// How long an approval by people stays good before the plan starts (the rule's
    /// `approvalValidFor`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_valid_for: Option<Duration>,
}

/// The ExecutionPlan as it was when the Decision was requested (or when the plan appeared,
/// if it came later): what approvers are shown and what may run. The plan is never run
/// in any other form: if it changes, the Decision ends with `PlanChanged`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PinnedPlan {
    /// The plan's name.
    pub name: String,
    /// The plan's uid: a plan deleted and created again under the same name is another.
    pub uid: String,
    /// The plan's `metadata.generation` when it was pinned.
    pub generation: i64,
    /// `sha256:` and the hex SHA-256 of the plan's spec (canonical JSON). Approvers confirm
    /// it with the `approval-digest` annotation.
    pub digest: String,
    /// When it was pinned.
    pub pinned_at: DateTime<Utc>,
    /// The plan's mode: DryRun, Real or Simulated.
    pub mode: ExecutionMode,
    /// The action types the plan carries out.
    #[serde(default)]
    pub action_types: Vec<String>,
    /// The plan's least criticality, if it sets one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub criticality: Option<Criticality>,
    /// What each step runs, as approvers are shown it.
    #[serde(default)]
    pub steps: Vec<PinnedStep>,
}

/// What one pinned step runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PinnedStep {
    /// The step's name.
    pub name: String,
    /// The images of its containers, in order.
    #[serde(default)]
    pub images: Vec<String>,
    /// The first container's command and arguments, shortened if long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// The ServiceAccount its pod runs as; empty means the namespace's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// Whether it has a compensating action.
    #[serde(default)]
    pub rollback: bool,
}

/// A reminder sent while the Decision waited for an answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReminderSent {
    /// The reminder's `before`: how long before `expiresAt` it was due, such as `15m`.
    /// (Checked where it is configured; the operator alone writes it here.)
    #[schemars(length(max = 32))]
    pub before: String,
    /// When it was sent.
    pub at: DateTime<Utc>,
}

/// A chat message that announced a Decision, as the chat service identifies it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChatMessage {
    /// The conversation it was posted in, such as a Slack channel id (`C0123456789`).
    #[schemars(length(max = 255))]
    pub channel: String,
    /// The message's id in the conversation (Slack's `ts`).
    #[schemars(length(max = 64))]
    pub ts: String,
}

/// One approver's approval.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    /// Who approved.
    pub approver: String,
    /// Why, as they said it (`approval-reason`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the operator recorded the approval.
    pub at: DateTime<Utc>,
    /// The Decision digest the approver confirmed (`approval-digest`), if they gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The Decision uid the approver confirmed (`approval-uid`), if they gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// The `approved-at` the approver's client wrote, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stamp: Option<String>,
    /// The approver's groups as the API server authenticated them when they approved: an
    /// approval is checked against the rule's groups with these whenever the policies
    /// change. Unset when they were not recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
    /// Who gave the approval by impersonating the approver (such as the operator's Slack
    /// bridge), as the API server reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impersonator: Option<String>,
    /// When the approval lapsed (approvalValidFor passed before the plan started); a
    /// lapsed approval no longer counts, and the approver approves again to count.
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "lapsed_at")]
    pub lapsed_at: Option<DateTime<Utc>>,
    /// Whether the chart's admission policies verified the approval when it was given.
    /// `false` only when the operator counts answers without them
    /// (`--count-unverified-answers`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<bool>,
    /// Set when the approver is a ServiceAccount (an agent) that the rule names in
    /// `approvers.serviceAccounts`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub service_account: bool,
}

/// An answer that did not count.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IgnoredAnswer {
    /// Who answered.
    pub user: String,
    /// `approval`, `rejection` or `rollback-approval`.
    pub answer: String,
    /// Why it did not count.
    pub reason: String,
    /// When the operator saw it.
    pub at: DateTime<Utc>,
    /// The `approval-digest` an approval carried, if any: with the user, it says which
    /// answer this was, so that the admission policy knows it has been recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The `approved-at` an approval carried, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stamp: Option<String>,
    /// Set when the answer was given while the admission policies that verify answers
    /// were not in force: nobody checked who wrote it, so it never counts, even once the
    /// policies are back. The approver approves again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unverified: bool,
}

/// The rejection that vetoed a Decision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rejection {
    /// Who rejected; `policy:<name>/<rule>` when a policy rejected automatically.
    pub rejected_by: String,
    /// Why (`rejection-reason`).
    #[serde(default)]
    pub reason: String,
    /// When the operator recorded the rejection.
    pub at: DateTime<Utc>,
    /// `false` when the admission policies that verify answers were not in force: a veto
    /// counts all the same (it can only stop an action), and says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<bool>,
}

/// The trace of a plan's execution.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionStatus {
    /// The mode the plan actually ran in: DryRun, Real or Simulated.
    pub mode: ExecutionMode,
    /// Why the mode differs from the plan's, when it does (for example, real execution is
    /// not allowed on this cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode_reason: Option<String>,
    /// The ExecutionPlan's `.metadata.generation` when the execution started; a plan
    /// that changes while it runs fails the execution rather than run a mix of versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_generation: Option<i64>,
    /// When the first step started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// When the execution ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// One entry per step of the plan, in order.
    #[serde(default)]
    pub steps: Vec<StepStatus>,
    /// The rollback, once one has been decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackStatus>,
}

/// Where one step stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum StepPhase {
    Pending,
    Running,
    Succeeded,
    Failed,
    // DryRun: the API server admitted the step's Job; nothing was created.
    WouldExecute,
    // Not run because an earlier step failed.
    Skipped,
    // Its compensating action ran.
    RolledBack,
}

/// The trace of one step (or one rollback step).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepStatus {
    /// The step's name in the plan.
    pub name: String,
    /// The Job that runs it (Real mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    /// Pending, Running, Succeeded, Failed, WouldExecute, Skipped or RolledBack.
    pub phase: StepPhase,
    /// When the step (its first attempt) started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// When the step reached its final phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Seconds from start to finish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<f64>,
    /// How many times the step has been started.
    #[serde(default)]
    pub attempts: u32,
    /// What happened, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The exit code of the step's container, once it ended (Real mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The step's result: its container's termination message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
}

/// Where a rollback stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum RollbackPhase {
    // Manual strategy: waiting for `rollback-approved-by`.
    AwaitingApproval,
    Running,
    Succeeded,
    Failed,
    // Strategy None, or nothing to undo.
    NotRun,
}

/// The trace of a rollback.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollbackStatus {
    /// Automatic, Manual or None.
    pub strategy: RollbackStrategy,
    /// AwaitingApproval, Running, Succeeded, Failed or NotRun.
    pub phase: RollbackPhase,
    /// Who approved a Manual rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    /// The compensating steps, in the order they run (the reverse of the plan).
    #[serde(default)]
    pub steps: Vec<StepStatus>,
}

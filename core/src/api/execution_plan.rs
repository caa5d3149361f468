//! `ExecutionPlan`: the steps that carry out an approved Decision, each a Kubernetes Job.

use chrono::{DateTime, Utc};
use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::Condition;

/// How to carry out a Decision: the mode, the rollback strategy and the steps.
// Every `printcolumn(...)` repeats the same keys, which clippy mistakes for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    crates(kube_core = "::kube_core"),
    group = "decisiongate.io",
    version = "v1alpha1",
    kind = "ExecutionPlan",
    doc = "The steps that carry out an approved Decision, in order, each as a Kubernetes Job, with an optional compensating action per step for rollback. Decisions name a plan in spec.planRef; the operator checks every step with a server-side dry run and reports the result in the Ready condition.",
    plural = "executionplans",
    shortname = "plan",
    category = "decisiongate",
    namespaced,
    status = "ExecutionPlanStatus",
    printcolumn(name = "Mode", type_ = "string", json_path = ".spec.mode"),
    printcolumn(
        name = "Rollback",
        type_ = "string",
        json_path = ".spec.rollbackStrategy"
    ),
    printcolumn(name = "Steps", type_ = "integer", json_path = ".status.stepCount"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionPlanSpec {
    /// The action types this plan carries out: only a Decision whose `actionType` is one of
    /// these may run it. A Decision that names a plan made for something else is rejected
    /// when it is evaluated, before anyone is asked.
    #[schemars(length(min = 1, max = 64))]
    #[schemars(inner(length(min = 1, max = 63)))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.all(t, t.matches('^[a-z0-9]([a-z0-9_.-]*[a-z0-9])?$'))",
        "message": "action types are lower-case letters, digits, '_', '-' or '.', starting and ending with a letter or digit, such as deploy or delete_data",
    }]))]
    pub action_types: Vec<String>,

    /// The least criticality of any Decision that runs this plan: a Decision that claims
    /// less is evaluated as this. A plan marked Critical is never approved automatically.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub criticality: Option<super::decision::Criticality>,

    /// How the steps run. DryRun (the default): each step's Job is submitted with a
    /// server-side dry run, so the API server validates and admits it but nothing is
    /// created. Real: each step runs as a Job. Simulated: nothing is created; each step
    /// takes its `simulatedDurationSeconds`. A cluster that does not allow real execution
    /// runs Real plans as DryRun.
    #[serde(default)]
    pub mode: ExecutionMode,

    /// What happens when a step fails. Automatic (the default): the rollback actions of
    /// the steps that had succeeded run in reverse order. Manual: the Decision stops at
    /// Failed until someone sets `rollback-approved-by`. None: the Decision stops at Failed.
    #[serde(default)]
    pub rollback_strategy: RollbackStrategy,

    /// The steps, run one after another in the order listed. Names must be unique.
    #[schemars(length(max = 32))]
    #[schemars(extend("x-kubernetes-validations" = [
        {
            "rule": "size(self) >= 1",
            "message": "an ExecutionPlan needs at least one step",
        },
        {
            "rule": "self.all(s, self.exists_one(t, t.name == s.name))",
            "message": "step names must be unique within a plan",
        },
    ]))]
    pub steps: Vec<Step>,

    /// Set (never stored) when the stored object could not be read: why. Such a plan is
    /// kept, empty, and reported Invalid.
    #[serde(skip)]
    pub unreadable: Option<String>,
}

/// How a plan's steps are carried out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ExecutionMode {
    // Server-side dry run of every step: validated, admitted, nothing created.
    #[default]
    DryRun,
    // Every step runs as a Job.
    Real,
    // Nothing is created; each step takes its simulated duration.
    Simulated,
}

/// What happens when a step fails.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum RollbackStrategy {
    #[default]
    Automatic,
    Manual,
    None,
}

/// One step of a plan: a Job's pod template, with its limits and its compensating action.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    /// The step's name: lower-case letters, digits and '-', at most 40 characters. It
    /// becomes part of the Job's name.
    #[schemars(length(min = 1, max = 40))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.matches('^[a-z0-9]([a-z0-9-]*[a-z0-9])?$')",
        "message": "must be lower-case letters, digits and '-', starting and ending with a letter or digit, such as migrate-db",
    }]))]
    pub name: String,

    /// The pod template of the step's Job, exactly as in a Job's `spec.template`
    /// (`metadata` and `spec`; `spec.restartPolicy` must be Never or OnFailure). Each
    /// pod also receives the Decision's name, namespace, context (JSON) and the execution
    /// mode as environment variables. The operator checks it with a server-side dry run.
    #[schemars(schema_with = "pod_template")]
    pub template: serde_json::Value,

    /// How long the step may run before it fails, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 604800))]
    pub timeout_seconds: Option<u32>,

    /// How many times a failed step is run again before the step counts as failed.
    #[serde(default)]
    #[schemars(range(max = 10))]
    pub retries: u32,

    /// The compensating action that undoes this step, run during a rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackAction>,

    /// How long the step takes in Simulated mode, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 3600))]
    pub simulated_duration_seconds: Option<u32>,
}

/// A compensating action: a Job that undoes what its step did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollbackAction {
    /// The pod template of the compensating Job, as in a Job's `spec.template`.
    #[schemars(schema_with = "pod_template")]
    pub template: serde_json::Value,

    /// How long the compensating action may run, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 604800))]
    pub timeout_seconds: Option<u32>,
}

// The full PodTemplateSpec schema would make the CRD enormous and tie it to one
// Kubernetes version; the API server's own validation of the dry-run Job is the check.
// What a Job needs of every template, and the names of objects it refers to, are checked
// here, so that a plan that could never run is refused as it is written.
fn pod_template(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
        "properties": {
            "spec": {
                        "description": "The pod's spec, as in a Pod; the fields below are checked as the plan is written, the rest by the API server's dry run of the Job.",
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": true,
                "properties": {
                    "restartPolicy": {
                        "description": "Never or OnFailure: a Job's pods are not restarted Always.",
                        "type": "string",
                        "x-kubernetes-validations": [{
                            "rule": "self in ['Never', 'OnFailure']",
                            "message": "a Job's pods restart Never or OnFailure",
                        }],
                    },
                    "serviceAccountName": {
                        "description": "The ServiceAccount, in the plan's namespace, the step's pod runs as; empty means the namespace's default.",
                        "type": "string",
                        "maxLength": 253,
                        "x-kubernetes-validations": [{
                            "rule": "self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",
                            "message": "must be the name of a ServiceAccount in the plan's namespace: lower-case letters, digits, '-' and '.', starting and ending with a letter or digit, such as deployer",
                        }],
                    },
                    "serviceAccount": {
                        "description": "The deprecated spelling of serviceAccountName.",
                        "type": "string",
                        "maxLength": 253,
                        "x-kubernetes-validations": [{
                            "rule": "self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",
                            "message": "must be the name of a ServiceAccount in the plan's namespace (serviceAccountName is the field to use)",
                        }],
                    },
                },
            },
        },
    })
}

/// Whether a plan can be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum PlanPhase {
    // Every step's Job was admitted by the API server's dry run.
    Ready,
    // At least one step's Job was refused; see the Ready condition.
    Invalid,
}

/// What the operator found when it checked the plan.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionPlanStatus {
    /// Ready or Invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<PlanPhase>,

    /// How many steps the plan has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_count: Option<u32>,

    /// When the steps were last checked against the API server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_at: Option<DateTime<Utc>>,

    /// The `Ready` condition says whether every step was admitted, and if not, which
    /// step was refused and the API server's reason.
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

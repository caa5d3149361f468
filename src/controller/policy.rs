//! The ApprovalPolicy reconciler: checks each policy and reports whether it is applied.

use std::future::Future;
use std::sync::Arc;

use chrono::Utc;
use futures::StreamExt;
use kube::ResourceExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::Store;
use tracing::info;

use super::watch::{Changes, Watched};
use super::{Context, apply_status, drive, replace_status};
use crate::api::approval_policy::PolicyPhase;
use crate::api::common::set_condition;
use crate::api::{ApprovalPolicy, Condition, ConditionStatus};
use crate::error::Result;
use crate::policy;

const KIND: &str = "ApprovalPolicy";
pub const CONDITION_READY: &str = "Ready";

pub async fn run(
    ctx: Arc<Context>,
    store: Store<ApprovalPolicy>,
    changes: Changes<ApprovalPolicy>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let progress = ctx.progress.clone();
    let changes = changes.inspect(move |_| progress.queued(KIND, std::time::Instant::now()));
    let controller = Controller::for_stream(changes, store);
    drive(controller, KIND, reconcile, ctx, shutdown).await;
}

async fn reconcile(obj: Arc<ApprovalPolicy>, ctx: Arc<Context>) -> Result<Action> {
    let current = obj.status.clone().unwrap_or_default();
    let problems = policy::check(&obj.spec);
    let phase = if problems.is_empty() {
        PolicyPhase::Ready
    } else {
        PolicyPhase::Invalid
    };
    // A policy that became unreadable keeps its generation; its phase still changes.
    if current.observed_generation.is_some()
        && current.observed_generation == obj.metadata.generation
        && current.phase == Some(phase)
    {
        return Ok(Action::await_change());
    }
    let mut status = current.clone();
    let condition = if problems.is_empty() {
        Condition::new(
            CONDITION_READY,
            ConditionStatus::True,
            "Valid",
            "every rule can be applied",
        )
    } else {
        let listed: Vec<String> = problems.iter().map(ToString::to_string).collect();
        Condition::new(
            CONDITION_READY,
            ConditionStatus::False,
            "Invalid",
            format!(
                "Decisions of this namespace that reach this policy require approval until this is fixed: {}",
                listed.join("; ")
            ),
        )
    };
    status.phase = Some(phase);
    status.rule_count = Some(obj.spec.rules.len() as u32);
    status.observed_generation = obj.metadata.generation;
    let message = condition.message.clone();
    set_condition(
        &mut status.conditions,
        condition.generation(obj.metadata.generation),
        Utc::now(),
    );
    let written = if obj.status_unreadable().is_some() {
        // Server-side apply would leave the unreadable fields in place.
        replace_status(obj.as_ref(), &ctx.client, &status).await
    } else {
        apply_status(obj.as_ref(), &ctx.client, &status).await
    };
    ctx.status_write(KIND, written)?;

    if current.phase != Some(phase) {
        info!(name = %obj.name_any(), namespace = obj.namespace().unwrap_or_default(), ?phase, %message, "policy checked");
        let (type_, reason) = match phase {
            PolicyPhase::Ready => (EventType::Normal, "Valid"),
            PolicyPhase::Invalid => (EventType::Warning, "Invalid"),
        };
        ctx.publish(obj.as_ref(), type_, reason, "Validate", message);
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::testing::{self, object_path, patch, reasons, reconciled, scripted};
    use serde_json::json;

    fn status_path(name: &str) -> String {
        format!("{}/status", object_path("approvalpolicies", name))
    }

    #[tokio::test]
    async fn a_valid_policy_is_reported_ready() {
        let policy = testing::policy(
            "gate",
            json!([{"name": "people", "outcome": "RequireApproval", "approvers": {"users": ["alice"]}}]),
        );
        let (client, server) = scripted(vec![
            patch(&status_path("gate"))
                .query("fieldManager=decision-gate")
                .query("force=true")
                .body(|body| {
                    let status = &body["status"];
                    assert_eq!(status["phase"], "Ready");
                    assert_eq!(status["ruleCount"], 1);
                    assert_eq!(status["observedGeneration"], 1);
                    assert_eq!(status["conditions"][0]["type"], "Ready");
                    assert_eq!(status["conditions"][0]["status"], "True");
                }),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let ctx = Context::for_tests(client, dir.path());
        let (action, events) =
            reconciled(ctx, server, |ctx| reconcile(Arc::new(policy), ctx)).await;
        assert_eq!(action.unwrap(), Action::await_change());
        assert_eq!(reasons(&events), ["Valid"]);
        assert_eq!(events[0].type_.as_deref(), Some("Normal"));
    }

    #[tokio::test]
    async fn a_broken_policy_is_reported_invalid_with_why() {
        let policy = testing::policy(
            "gate",
            json!([
                {"name": "odd", "outcome": "AutoApprove", "match": {"expression": "decision.spec +"}},
                {"name": "never", "outcome": "AutoReject", "match": {"minRisk": "High", "maxRisk": "Low"}},
            ]),
        );
        let (client, server) = scripted(vec![patch(&status_path("gate")).body(|body| {
            let status = &body["status"];
            assert_eq!(status["phase"], "Invalid");
            assert_eq!(status["ruleCount"], 2);
            let ready = &status["conditions"][0];
            assert_eq!(ready["status"], "False");
            assert_eq!(ready["reason"], "Invalid");
            let message = ready["message"].as_str().unwrap();
            assert!(message.starts_with("Decisions of this namespace that reach this policy require approval until this is fixed: "), "{message}");
            assert!(message.contains("odd"), "{message}");
            assert!(message.contains("minRisk High is above maxRisk Low"), "{message}");
        })]);
        let dir = tempfile::tempdir().unwrap();
        let ctx = Context::for_tests(client, dir.path());
        let (action, events) =
            reconciled(ctx, server, |ctx| reconcile(Arc::new(policy), ctx)).await;
        assert_eq!(action.unwrap(), Action::await_change());
        assert_eq!(reasons(&events), ["Invalid"]);
        assert_eq!(events[0].type_.as_deref(), Some("Warning"));
    }

    #[tokio::test]
    async fn a_policy_reported_for_its_generation_is_not_written_again() {
        let mut policy =
            testing::policy("gate", json!([{"name": "all", "outcome": "AutoApprove"}]));
        policy.status = Some(crate::api::ApprovalPolicyStatus {
            phase: Some(PolicyPhase::Ready),
            observed_generation: Some(1),
            ..Default::default()
        });
        let (client, server) = scripted(vec![]);
        let dir = tempfile::tempdir().unwrap();
        let ctx = Context::for_tests(client, dir.path());
        let (action, events) =
            reconciled(ctx, server, |ctx| reconcile(Arc::new(policy), ctx)).await;
        assert_eq!(action.unwrap(), Action::await_change());
        assert!(events.is_empty());
    }

    #[tokio::test]
    async fn a_refused_status_write_is_reported_on_readyz_and_retried() {
        let policy = testing::policy("gate", json!([{"name": "all", "outcome": "AutoApprove"}]));
        let (client, server) = scripted(vec![patch(&status_path("gate")).fail(
            403,
            "Forbidden",
            "approvalpolicies.decisiongate.io \"gate\" is forbidden: cannot patch resource \"approvalpolicies/status\"",
        )]);
        let dir = tempfile::tempdir().unwrap();
        let ctx = Context::for_tests(client, dir.path());
        let health = ctx.health.clone();
        health.set_crds(true);
        health.lead(ctx.audit.log().clone());
        health.set_caches(true);
        let (action, events) =
            reconciled(ctx, server, |ctx| reconcile(Arc::new(policy), ctx)).await;
        assert_eq!(action.unwrap_err().category(), "Refused");
        assert!(events.is_empty());
        let (code, text) = testing::readyz(health).await;
        assert_eq!(code, 503, "{text}");
        assert!(
            text.contains("the API server refuses the operator's status writes (ApprovalPolicy): the API server answered 403 Forbidden"),
            "{text}"
        );
    }
}

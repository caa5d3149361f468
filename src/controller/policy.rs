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

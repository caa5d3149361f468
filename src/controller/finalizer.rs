//! The finalizer that keeps a deleted Decision until its deletion is in the audit log:
//! nothing an approver did is erased without a trace, whoever deletes the Decision and
//! whether or not the operator was running at the time. The chart's admission policy puts
//! it on every new Decision; the operator puts it on any Decision without it, and removes
//! it once the deletion is audited with the Decision's last state.

use kube::api::{Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use tracing::info;

use super::{Context, FIELD_MANAGER, audit};
use crate::api::{Decision, FINALIZER};
use crate::audit::Record;
use crate::error::Result;
use crate::events::DecisionEvent;

/// Whether the Decision carries the operator's finalizer.
pub fn holds(decision: &Decision) -> bool {
    decision.finalizers().iter().any(|f| f == FINALIZER)
}

/// Puts the finalizer on a Decision that lacks it (one created before the admission
/// policy put it there, or without the chart's admission policies).
pub async fn ensure(decision: &Decision, ctx: &Context) -> Result<()> {
    if holds(decision) {
        return Ok(());
    }
    let mut finalizers = decision.finalizers().to_vec();
    finalizers.push(FINALIZER.to_owned());
    write(decision, ctx, finalizers).await
}

/// A deleted Decision: its last state goes to the audit log (once), an Event says so, and
/// the finalizer is removed so that the API server can let it go.
pub async fn release(decision: &Decision, ctx: &Context) -> Result<()> {
    if !holds(decision) {
        return Ok(());
    }
    let event = DecisionEvent::Deleted {
        by: crate::witness::deleted_by(decision),
    };
    let written = audit(ctx, vec![Record::of(&event, decision)]).await?;
    if !written.is_empty() {
        info!(name = %decision.name_any(), namespace = decision.namespace().unwrap_or_default(), phase = decision.status.as_ref().and_then(|s| s.phase).map(|p| format!("{p:?}")).unwrap_or_default(), "decision deleted");
        ctx.publish(
            decision,
            EventType::Warning,
            event.reason(),
            "Delete",
            event.note(),
        );
    }
    let finalizers = decision
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    write(decision, ctx, finalizers).await
}

/// Sets the Decision's finalizers, on the condition that it has not changed since it was
/// read (another finalizer added or removed meanwhile is not lost: the write is refused
/// and retried from the new version).
async fn write(decision: &Decision, ctx: &Context, finalizers: Vec<String>) -> Result<()> {
    let patch = serde_json::json!({
        "metadata": {
            "finalizers": finalizers,
            "resourceVersion": decision.resource_version(),
        }
    });
    let path = Decision::url_path(&(), decision.namespace().as_deref());
    let request = kube::core::Request::new(path)
        .patch(
            &decision.name_any(),
            &PatchParams {
                field_manager: Some(FIELD_MANAGER.to_owned()),
                ..Default::default()
            },
            &Patch::Merge(&patch),
        )
        .map_err(kube::Error::BuildRequest)?;
    // What the API server answers is not read: the watch brings the change.
    ctx.client
        .request::<serde::de::IgnoredAny>(request)
        .await
        .map(drop)?;
    Ok(())
}

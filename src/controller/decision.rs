//! The Decision reconciler.

use std::future::Future;
use std::sync::Arc;

use chrono::Utc;
use futures::StreamExt;
use kube::ResourceExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::watcher;
use tracing::{debug, info};

use super::{Context, apply_status, on_error};
use crate::api::Decision;
use crate::error::Result;
use crate::lifecycle;

const KIND: &str = "Decision";

pub async fn run(ctx: Arc<Context>, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    Controller::new(
        ctx.api::<Decision>(),
        watcher::Config::default().any_semantic(),
    )
    .graceful_shutdown_on(shutdown)
    .run(
        reconcile,
        |obj, err, ctx| on_error(KIND, obj.as_ref(), err, &ctx),
        ctx,
    )
    .for_each(|result| async move {
        if let Err(e) = result {
            debug!(error = %e, "Decision controller event");
        }
    })
    .await;
}

async fn reconcile(decision: Arc<Decision>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile_started(KIND);
    let now = Utc::now();
    let Some(status) = lifecycle::next_status(&decision, now, ctx.settings.default_expiry) else {
        return Ok(Action::await_change());
    };
    apply_status(decision.as_ref(), &ctx.client, &status).await?;
    if let (Some(phase), Some(expires_at)) = (status.phase, status.expires_at) {
        info!(name = %decision.name_any(), namespace = ?decision.namespace(), ?phase, %expires_at, "Decision is pending");
        ctx.publish(
            decision.as_ref(),
            EventType::Normal,
            "Pending",
            "Request",
            format!(
                "{} ({:?}) waits for approval until {}",
                decision.spec.action_type,
                decision.spec.criticality,
                expires_at.to_rfc3339()
            ),
        )
        .await;
    }
    Ok(Action::await_change())
}

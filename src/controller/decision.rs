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
    let advance = lifecycle::advance(&lifecycle::Input {
        decision: &decision,
        policies: &[],
        now,
        default_expiry: ctx.settings.default_expiry,
    });
    if decision.status.as_ref() != Some(&advance.status) {
        apply_status(decision.as_ref(), &ctx.client, &advance.status).await?;
    }
    for event in &advance.events {
        info!(name = %decision.name_any(), namespace = ?decision.namespace(), event = event.event_type(), note = %event.note(), "decision event");
        let type_ = if event.is_warning() {
            EventType::Warning
        } else {
            EventType::Normal
        };
        ctx.publish(
            decision.as_ref(),
            type_,
            event.reason(),
            "Decide",
            event.note(),
        )
        .await;
    }
    Ok(match advance.wake_at {
        Some(at) => Action::requeue((at - now).to_std().unwrap_or_default()),
        None => Action::await_change(),
    })
}

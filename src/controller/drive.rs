//! What every controller's reconciles share: a time limit, a caught panic, their metrics,
//! the liveness probe's progress, and one policy for errors.

use std::future::Future;
use std::sync::Arc;

use futures::{FutureExt, StreamExt};
use kube::runtime::Controller;
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tracing::warn;

use super::Context;
use crate::error::{Error, Result};

/// Runs a configured controller until `shutdown`, with what every reconcile shares: its
/// duration metric, a time limit, a panic caught and reported as that object's error (one
/// object never takes the others down), and the progress the liveness probe reads.
pub async fn drive<K, Fut>(
    controller: Controller<K>,
    kind: &'static str,
    mut reconcile: impl FnMut(Arc<K>, Arc<Context>) -> Fut,
    ctx: Arc<Context>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    Fut: Future<Output = Result<kube::runtime::controller::Action>> + Send + 'static,
{
    let progress = ctx.progress.clone();
    controller
        .graceful_shutdown_on(shutdown)
        .run(
            move |obj, ctx| {
                let object = format!(
                    "{}/{}",
                    obj.meta().namespace.as_deref().unwrap_or_default(),
                    obj.meta().name.as_deref().unwrap_or_default()
                );
                let guard = ctx.progress.start(kind, object, std::time::Instant::now());
                let timer = ctx.metrics.reconcile_started(kind);
                let limit = ctx.settings.reconcile_timeout;
                let work = std::panic::AssertUnwindSafe(reconcile(obj, ctx)).catch_unwind();
                async move {
                    let outcome = tokio::time::timeout(limit, work).await;
                    drop((guard, timer));
                    match outcome {
                        Ok(Ok(result)) => result,
                        Ok(Err(panic)) => Err(Error::Panicked(panic_message(panic.as_ref()))),
                        Err(_) => Err(Error::TimedOut(limit)),
                    }
                }
            },
            move |obj, err, ctx| on_error(kind, obj.as_ref(), err, &ctx),
            ctx,
        )
        .for_each(|result| {
            use kube::runtime::controller::Error as Failure;
            // Progress is a reconcile that ended: not a watch error, and not one abandoned
            // at its time limit (a controller whose every reconcile hangs is stalled).
            match &result {
                Ok(_) => progress.served(kind),
                Err(Failure::ReconcilerFailed(e, _)) if !matches!(e, Error::TimedOut(_)) => {
                    progress.served(kind)
                }
                Err(_) => {}
            }
            if let Err(e) = result {
                tracing::debug!(kind, error = %e, "controller event");
            }
            std::future::ready(())
        })
        .await;
}

/// What a caught panic said.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// The error policy shared by the controllers: count, log, retry with a pause.
pub fn on_error<K: ResourceExt>(
    kind: &'static str,
    obj: &K,
    error: &Error,
    ctx: &Context,
) -> kube::runtime::controller::Action {
    ctx.metrics.reconcile_failed(kind, error.category());
    warn!(kind, name = %obj.name_any(), namespace = obj.namespace().unwrap_or_default(), reason = error.category(), %error, "reconcile failed; will retry");
    kube::runtime::controller::Action::requeue(std::time::Duration::from_secs(5))
}

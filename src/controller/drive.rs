//! What every controller's reconciles share: a time limit, a caught panic, their metrics,
//! the liveness probe's progress, and one policy for errors: each failure is counted,
//! logged and retried, and said once as a Warning Event on the object.

use std::future::Future;
use std::sync::Arc;

use std::collections::HashMap;
use std::sync::Mutex;

use futures::{FutureExt, StreamExt};
use kube::Resource;
use kube::runtime::Controller;
use kube::runtime::events::EventType;
use serde::de::DeserializeOwned;
use tracing::warn;

use super::Context;
use crate::error::{Error, Result};

/// How many reconciles of one kind run at once. Enough to keep the API server and the
/// audit log's group commit busy; few enough that a new leader, which finds every object
/// due at once, holds a bounded amount of work in memory rather than one of each.
pub const CONCURRENCY: u16 = 32;

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
        .with_config(kube::runtime::controller::Config::default().concurrency(CONCURRENCY))
        .graceful_shutdown_on(shutdown)
        .run(
            move |obj, ctx| {
                let object = format!(
                    "{}/{}",
                    obj.meta().namespace.as_deref().unwrap_or_default(),
                    obj.meta().name.as_deref().unwrap_or_default()
                );
                let uid = obj.meta().uid.clone().unwrap_or_default();
                let guard = ctx.progress.start(kind, object, std::time::Instant::now());
                let timer = ctx.metrics.reconcile_started(kind);
                let limit = ctx.settings.reconcile_timeout;
                let work = std::panic::AssertUnwindSafe(reconcile(obj, ctx.clone())).catch_unwind();
                async move {
                    let outcome = tokio::time::timeout(limit, work).await;
                    drop((guard, timer));
                    match outcome {
                        Ok(Ok(result)) => {
                            if result.is_ok() {
                                ctx.failures.recovered(&uid);
                            }
                            result
                        }
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

/// The error policy shared by the controllers: count, log, say it on the object when it
/// is news, and retry after a pause.
pub fn on_error<K: Resource<DynamicType = ()>>(
    kind: &'static str,
    obj: &K,
    error: &Error,
    ctx: &Context,
) -> kube::runtime::controller::Action {
    ctx.metrics.reconcile_failed(kind, error.category());
    warn!(kind, name = %obj.meta().name.as_deref().unwrap_or_default(), namespace = obj.meta().namespace.as_deref().unwrap_or_default(), reason = error.category(), %error, "reconcile failed; will retry");
    if ctx.failures.is_news(
        obj.meta().uid.as_deref().unwrap_or_default(),
        error.category(),
        &error.to_string(),
    ) {
        ctx.publish(
            obj,
            EventType::Warning,
            error.category(),
            "Reconcile",
            format!("{error}; retrying"),
        );
    }
    kube::runtime::controller::Action::requeue(std::time::Duration::from_secs(5))
}

/// The failure last said as an Event for each object (by uid). A reconcile retried every
/// few seconds with the same error says so once; a different error, or the same one after
/// a reconcile that succeeded, is said again.
#[derive(Default)]
pub struct Failures(Mutex<HashMap<String, String>>);

/// At most this many objects' failures are remembered; past it, all are forgotten (and
/// each is said once more).
const FAILURES_KEPT: usize = 4096;

impl Failures {
    /// Whether this failure of the object is news, remembering it.
    pub fn is_news(&self, uid: &str, category: &str, message: &str) -> bool {
        let said = format!("{category}: {message}");
        let mut last = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if last.get(uid) == Some(&said) {
            return false;
        }
        if last.len() >= FAILURES_KEPT {
            last.clear();
        }
        last.insert(uid.to_owned(), said);
        true
    }

    /// The object reconciled: its next failure is news.
    pub fn recovered(&self, uid: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::testing::*;

    #[test]
    fn the_same_failure_is_news_once_until_the_object_recovers() {
        let failures = Failures::default();
        assert!(failures.is_news("a", "Refused", "forbidden"));
        assert!(!failures.is_news("a", "Refused", "forbidden"));
        assert!(failures.is_news("b", "Refused", "forbidden"));
        assert!(failures.is_news("a", "Unavailable", "etcd is down"));
        failures.recovered("a");
        assert!(failures.is_news("a", "Unavailable", "etcd is down"));
    }

    #[tokio::test]
    async fn a_failed_reconcile_is_said_once_as_a_warning_event_on_its_object() {
        let dir = tempfile::tempdir().unwrap();
        let (client, server) = scripted(vec![]);
        let ctx = Context::for_tests(client, dir.path());
        let d = decision("ship", "High", None);
        let error = Error::TimedOut(std::time::Duration::from_secs(60));
        for _ in 0..3 {
            on_error("Decision", &d, &error, &ctx);
        }
        drop(ctx);
        let events = server.verify().await;
        assert_eq!(reasons(&events), ["TimedOut"]);
        let event = &events[0];
        assert_eq!(event.type_.as_deref(), Some("Warning"));
        assert_eq!(event.action.as_deref(), Some("Reconcile"));
        assert!(
            event
                .note
                .as_deref()
                .unwrap()
                .starts_with("the reconcile did not finish within 60s"),
            "{event:?}"
        );
        assert_eq!(
            event.regarding.as_ref().and_then(|r| r.name.as_deref()),
            Some("ship")
        );
    }
}

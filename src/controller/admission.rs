//! Watches the admission policies that verify people's answers, and publishes whether
//! they are in force (see [`crate::admission`]).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use k8s_openapi::api::admissionregistration::v1::{
    MutatingAdmissionPolicy, MutatingAdmissionPolicyBinding, ValidatingAdmissionPolicy,
    ValidatingAdmissionPolicyBinding,
};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::admission::{self, Answers, Expected, Seen};
use crate::http::Health;
use crate::metrics::Metrics;

/// The verdict, once every kind has been listed (or could not be): `None` before.
pub type Verdict = watch::Receiver<Option<Answers>>;

/// What one watch reported: that its first list is complete, or an error.
type Report = (usize, Result<bool, String>);

const KINDS: [&str; 4] = [
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "MutatingAdmissionPolicy",
    "MutatingAdmissionPolicyBinding",
];

fn watch_kind<K>(
    client: &Client,
    index: usize,
) -> (Store<K>, impl Stream<Item = Report> + Send + 'static)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync,
    K: 'static,
{
    let (store, writer) = reflector::store();
    let stream = watcher(Api::<K>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .map(move |event| {
            (
                index,
                event
                    .map(|e| matches!(e, watcher::Event::InitDone))
                    .map_err(|e| e.to_string()),
            )
        });
    (store, stream)
}

/// Starts the watch; the verdict changes whenever what the API server holds does.
pub fn start(
    client: &Client,
    expected: Expected,
    count_unverified: bool,
    health: Arc<Health>,
    metrics: Metrics,
) -> (Verdict, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(None);
    let (validating, a) = watch_kind::<ValidatingAdmissionPolicy>(client, 0);
    let (validating_bindings, b) = watch_kind::<ValidatingAdmissionPolicyBinding>(client, 1);
    let (mutating, c) = watch_kind::<MutatingAdmissionPolicy>(client, 2);
    let (mutating_bindings, d) = watch_kind::<MutatingAdmissionPolicyBinding>(client, 3);
    let mut reports = futures::stream::select_all([a.boxed(), b.boxed(), c.boxed(), d.boxed()]);
    let task = tokio::spawn(async move {
        let mut listed = [false; 4];
        let mut errors: [Option<String>; 4] = Default::default();
        // When the policies came back into force in this process's sight.
        let mut in_force_since: Option<DateTime<Utc>> = None;
        let mut was_in_force = true;
        let mut wake: Option<DateTime<Utc>> = None;
        loop {
            let until_wake = wake
                .and_then(|at| (at - Utc::now()).to_std().ok())
                .unwrap_or(std::time::Duration::from_secs(3600));
            tokio::select! {
                report = reports.next() => match report {
                    None => break,
                    Some((index, Ok(done))) => {
                        listed[index] |= done;
                        errors[index] = None;
                    }
                    // A kind listed once keeps its last known state through a watch error.
                    Some((index, Err(e))) => errors[index] = Some(e),
                },
                _ = tokio::time::sleep(until_wake), if wake.is_some() => {}
            }
            // Nothing is said until every kind has been listed or has failed to be.
            if (0..4).any(|i| !listed[i] && errors[i].is_none()) {
                continue;
            }
            let (v, vb, m, mb) = (
                validating.state(),
                validating_bindings.state(),
                mutating.state(),
                mutating_bindings.state(),
            );
            let seen = Seen {
                validating: v.iter().map(AsRef::as_ref).collect(),
                validating_bindings: vb.iter().map(AsRef::as_ref).collect(),
                mutating: m.iter().map(AsRef::as_ref).collect(),
                mutating_bindings: mb.iter().map(AsRef::as_ref).collect(),
                unlisted: (0..4)
                    .filter(|i| !listed[*i])
                    .map(|i| (KINDS[i], errors[i].clone().unwrap_or_default()))
                    .collect(),
            };
            let now = Utc::now();
            let check = admission::check(&expected, &seen);
            match (&check, was_in_force) {
                (Ok(()), false) => in_force_since = Some(now),
                (Err(_), _) => in_force_since = None,
                _ => {}
            }
            was_in_force = check.is_ok();
            let since = in_force_since.max(admission::created_last(&expected, &seen));
            let (check, next) = admission::settled(check, since, now);
            wake = next;
            publish(
                &tx,
                Answers::from_check(check, count_unverified),
                &health,
                &metrics,
            );
        }
    });
    (rx, task)
}

/// Says a new verdict, when it is one.
fn publish(
    tx: &watch::Sender<Option<Answers>>,
    answers: Answers,
    health: &Health,
    metrics: &Metrics,
) {
    tx.send_if_modified(|current| {
        if current.as_ref() == Some(&answers) {
            return false;
        }
        match &answers {
            Answers::Verified => info!("the admission policies that verify answers are in force"),
            Answers::Unverified(why) => {
                warn!(%why, "the admission policies that verify answers are not in force; approvals do not count")
            }
            Answers::CountedUnverified(why) => {
                warn!(%why, "the admission policies that verify answers are not in force; answers count, marked unverified")
            }
        }
        health.set_answers(&answers);
        metrics.answers_verified.set(i64::from(answers.is_verified()));
        *current = Some(answers.clone());
        true
    });
}

/// Resolves once the first verdict is in.
pub async fn settled(verdict: &mut Verdict) -> bool {
    verdict.wait_for(Option::is_some).await.is_ok()
}

/// A stream that yields each time the verdict changes (for re-reconciling every Decision).
pub fn changes(verdict: Verdict) -> impl Stream<Item = ()> + Send + 'static {
    futures::stream::unfold(verdict, |mut verdict| async move {
        verdict.changed().await.ok()?;
        Some(((), verdict))
    })
}

//! Watches that one bad object cannot stop.
//!
//! A list or watch of a kind fails as a whole when one of its objects does not deserialize,
//! and the controller of that kind then waits forever. An object's status can be written
//! by anyone allowed to patch `/status`, and an object stored under an older CRD may no
//! longer fit the types; neither may stop the others. Objects are therefore read
//! leniently: one whose status is unreadable is kept with an empty status that says why
//! (its reconciler reports and repairs it), and one that cannot be read at all is left
//! out with a warning in the log.
//!
//! [`Shared`] keeps one watch per kind for every controller that needs it: a store that is
//! complete before any controller starts, and a stream of changes for each subscriber.

use std::borrow::Cow;
use std::fmt::Debug;
use std::marker::PhantomData;

use futures::{Stream, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use tracing::warn;

use crate::api::{ApprovalPolicy, Decision, ExecutionPlan};

/// A kind the operator watches and whose status it alone writes.
pub trait Watched:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Debug
    + Send
    + Sync
    + 'static
{
    /// Gives an object whose status could not be read an empty status that says why.
    fn mark_status_unreadable(&mut self, why: String);

    /// Why the object's status could not be read, if it could not.
    fn status_unreadable(&self) -> Option<&str>;
}

macro_rules! watched {
    ($kind:ty) => {
        impl Watched for $kind {
            fn mark_status_unreadable(&mut self, why: String) {
                self.status = Some(Default::default());
                if let Some(status) = self.status.as_mut() {
                    status.unreadable = Some(why);
                }
            }

            fn status_unreadable(&self) -> Option<&str> {
                self.status.as_ref()?.unreadable.as_deref()
            }
        }
    };
}
watched!(Decision);
watched!(ApprovalPolicy);
watched!(ExecutionPlan);

/// An object that could not be read at all.
#[derive(Clone, Debug)]
pub struct Unreadable {
    pub namespace: String,
    pub name: String,
    pub why: String,
}

/// An object as read from the API server: the object, or why it could not be read.
#[derive(Clone, Debug)]
pub struct Lenient<K> {
    read: Result<K, String>,
    metadata: ObjectMeta,
}

impl<K: Watched> Lenient<K> {
    /// Reads an object from its JSON: whole, with its status replaced when only that is
    /// unreadable, or not at all. Managed fields are dropped on the way: nothing reads them.
    pub fn read(mut value: serde_json::Value) -> Result<Lenient<K>, serde_json::Error> {
        if let Some(metadata) = value.get_mut("metadata").and_then(|m| m.as_object_mut()) {
            metadata.remove("managedFields");
        }
        let read = match K::deserialize(&value) {
            Ok(obj) => Ok(obj),
            Err(whole) => {
                let had_status = value
                    .as_object_mut()
                    .and_then(|o| o.remove("status"))
                    .is_some();
                match K::deserialize(&value) {
                    Ok(mut obj) if had_status => {
                        obj.mark_status_unreadable(format!("the status cannot be read: {whole}"));
                        Ok(obj)
                    }
                    Ok(_) => Err(whole.to_string()),
                    Err(e) => Err(e.to_string()),
                }
            }
        };
        let metadata = match &read {
            Ok(obj) => obj.meta().clone(),
            Err(_) => {
                ObjectMeta::deserialize(value.get("metadata").unwrap_or(&serde_json::Value::Null))?
            }
        };
        Ok(Lenient { read, metadata })
    }

    /// The object, or which it was and why it was left out.
    pub fn into_inner(self) -> Result<K, Unreadable> {
        self.read.map_err(|why| Unreadable {
            namespace: self.metadata.namespace.unwrap_or_default(),
            name: self.metadata.name.unwrap_or_default(),
            why,
        })
    }
}

impl<'de, K: Watched> Deserialize<'de> for Lenient<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        Lenient::read(value).map_err(serde::de::Error::custom)
    }
}

impl<K: Watched> Resource for Lenient<K> {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        K::kind(&())
    }
    fn group(_: &()) -> Cow<'_, str> {
        K::group(&())
    }
    fn version(_: &()) -> Cow<'_, str> {
        K::version(&())
    }
    fn plural(_: &()) -> Cow<'_, str> {
        K::plural(&())
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// Watches `K` in `namespace` (or everywhere), leniently: objects that cannot be read are
/// logged and left out. Failures of the watch itself back off and retry.
pub fn watch<K: Watched>(
    client: &Client,
    namespace: Option<&str>,
    config: watcher::Config,
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static {
    let api: Api<Lenient<K>> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    watcher(api, config)
        .default_backoff()
        .filter_map(|event| std::future::ready(readable(event)))
}

fn readable<K: Watched>(
    event: Result<watcher::Event<Lenient<K>>, watcher::Error>,
) -> Option<Result<watcher::Event<K>, watcher::Error>> {
    use watcher::Event;
    let keep = |obj: Lenient<K>| match obj.into_inner() {
        Ok(obj) => Some(obj),
        Err(Unreadable {
            namespace,
            name,
            why,
        }) => {
            warn!(
                kind = %<K as Resource>::kind(&()),
                namespace,
                name,
                %why,
                "left out an object that cannot be read; fix or delete it"
            );
            None
        }
    };
    Some(match event {
        Err(e) => Err(e),
        Ok(Event::Init) => Ok(Event::Init),
        Ok(Event::InitDone) => Ok(Event::InitDone),
        Ok(Event::Apply(obj)) => Ok(Event::Apply(keep(obj)?)),
        Ok(Event::InitApply(obj)) => Ok(Event::InitApply(keep(obj)?)),
        Ok(Event::Delete(obj)) => Ok(Event::Delete(keep(obj)?)),
    })
}

/// One watch of a kind, shared: a store, and a stream of changed objects per subscriber.
pub struct Shared<K: Watched> {
    pub store: Store<K>,
    subscribers: Vec<futures::channel::mpsc::UnboundedSender<K>>,
    writer: Option<reflector::store::Writer<K>>,
    _kind: PhantomData<K>,
}

/// The changes one subscriber of a [`Shared`] watch receives, as a controller's trigger.
pub type Changes<K> = futures::stream::Map<
    futures::channel::mpsc::UnboundedReceiver<K>,
    fn(K) -> Result<K, watcher::Error>,
>;

impl<K: Watched> Default for Shared<K>
where
    K: kube::runtime::reflector::Lookup<DynamicType = ()>,
{
    fn default() -> Self {
        let (store, writer) = reflector::store();
        Shared {
            store,
            subscribers: Vec::new(),
            writer: Some(writer),
            _kind: PhantomData,
        }
    }
}

impl<K: Watched> Shared<K>
where
    K: kube::runtime::reflector::Lookup<DynamicType = ()>,
{
    /// A stream of every object the watch adds or changes (after the store has it), from
    /// the first list on. Subscribe before [`Shared::start`].
    pub fn subscribe(&mut self) -> Changes<K> {
        let (tx, rx) = futures::channel::mpsc::unbounded();
        self.subscribers.push(tx);
        rx.map(Ok as fn(K) -> Result<K, watcher::Error>)
    }

    /// Starts the watch in a task of its own, so that no controller's pace (or stop) holds
    /// it up; returns the task, to be aborted at shutdown.
    pub fn start(
        &mut self,
        client: &Client,
        namespace: Option<&str>,
    ) -> tokio::task::JoinHandle<()> {
        let writer = self.writer.take().expect("a shared watch starts once");
        let subscribers = std::mem::take(&mut self.subscribers);
        // The first list is read from etcd, not from an API server's watch cache: a policy
        // just deleted or tightened must not still decide a new Decision.
        let changes = watch::<K>(client, namespace, watcher::Config::default())
            .reflect(writer)
            .touched_objects();
        tokio::spawn(async move {
            let mut changes = std::pin::pin!(changes);
            while let Some(change) = changes.next().await {
                match change {
                    Ok(obj) => {
                        for tx in &subscribers {
                            let _ = tx.unbounded_send(obj.clone());
                        }
                    }
                    Err(e) => {
                        warn!(kind = %<K as Resource>::kind(&()), error = %e, "watch failed; retrying")
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decision(status: serde_json::Value) -> serde_json::Value {
        json!({
            "apiVersion": "decisiongate.io/v1alpha1",
            "kind": "Decision",
            "metadata": {
                "name": "d", "namespace": "team-a", "uid": "u-1",
                "managedFields": [{"manager": "kubectl", "operation": "Update"}],
            },
            "spec": {"actionType": "deploy", "description": "x", "criticality": "High"},
            "status": status,
        })
    }

    #[test]
    fn a_readable_object_is_read_whole_without_managed_fields() {
        let read = Lenient::<Decision>::read(decision(json!({"phase": "Pending"})))
            .unwrap()
            .into_inner()
            .unwrap();
        assert_eq!(
            read.status.as_ref().and_then(|s| s.phase),
            Some(crate::api::DecisionPhase::Pending)
        );
        assert!(read.metadata.managed_fields.is_none());
        assert_eq!(read.status_unreadable(), None);
    }

    #[test]
    fn an_unreadable_status_is_replaced_by_one_that_says_why() {
        let read = Lenient::<Decision>::read(decision(json!({
            "phase": "Executing",
            "execution": {"mode": "Real", "startedAt": "not a time", "steps": []},
        })))
        .unwrap()
        .into_inner()
        .unwrap();
        let why = read.status_unreadable().expect("marked");
        assert!(
            why.contains("input contains invalid characters")
                || why.contains("premature end")
                || why.contains("invalid"),
            "{why}"
        );
        assert_eq!(read.status.as_ref().and_then(|s| s.phase), None);
        assert_eq!(read.spec.action_type, "deploy");
    }

    #[test]
    fn an_object_that_cannot_be_read_is_left_out_with_its_name() {
        let mut value = decision(json!({}));
        value["spec"]["criticality"] = json!("Catastrophic");
        let Unreadable { name, why, .. } = Lenient::<Decision>::read(value)
            .unwrap()
            .into_inner()
            .unwrap_err();
        assert_eq!(name, "d");
        assert!(why.contains("Catastrophic"), "{why}");
    }
}

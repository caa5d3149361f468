//! Watches that one bad object cannot stop.
//!
//! A list or watch of a kind fails as a whole when one of its objects does not deserialize,
//! and the controller of that kind then waits forever. An object's status can be written
//! by anyone allowed to patch `/status`, and an object stored under an older CRD may no
//! longer fit the types; neither may stop the others. Objects are therefore read
//! leniently: one whose status is unreadable is kept with an empty status that says why
//! (its reconciler reports and repairs it). One that cannot be read at all is logged, and
//! what was known of it goes: a policy or plan is kept empty, marked unreadable (a policy
//! then fails closed, a plan is reported Invalid), and a Decision leaves the store rather
//! than be acted on as it was before it changed.
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

    /// Sets the status from its stored JSON.
    fn read_status(&mut self, value: serde_json::Value) -> Result<(), serde_json::Error>;

    /// What stands in the store for an object that could not be read at all, and whether
    /// it stays there (true) or only removes what was known of the object (false).
    /// The status is kept when it can be read, so that the placeholder's reconciler sees
    /// what it wrote before and writes only what changed.
    fn placeholder(
        metadata: ObjectMeta,
        status: Option<serde_json::Value>,
        why: &str,
    ) -> Option<(Self, bool)>;
}

/// The status half of [`Watched`], the same for every kind.
macro_rules! status_access {
    () => {
        fn mark_status_unreadable(&mut self, why: String) {
            self.status = Some(Default::default());
            if let Some(status) = self.status.as_mut() {
                status.unreadable = Some(why);
            }
        }

        fn status_unreadable(&self) -> Option<&str> {
            self.status.as_ref()?.unreadable.as_deref()
        }

        fn read_status(&mut self, value: serde_json::Value) -> Result<(), serde_json::Error> {
            self.status = Some(serde_json::from_value(value)?);
            Ok(())
        }
    };
}

impl Watched for ApprovalPolicy {
    fn placeholder(
        metadata: ObjectMeta,
        status: Option<serde_json::Value>,
        why: &str,
    ) -> Option<(Self, bool)> {
        let spec = crate::api::ApprovalPolicySpec {
            // Its priority is unknown: tried first, it fails closed for the namespace.
            priority: i32::MIN,
            rules: Vec::new(),
            expires_after: None,
            unreadable: Some(why.to_owned()),
        };
        let policy = ApprovalPolicy::new("", spec);
        Some((stand_in(policy, metadata, status), true))
    }
    status_access!();
}

impl Watched for ExecutionPlan {
    fn placeholder(
        metadata: ObjectMeta,
        status: Option<serde_json::Value>,
        why: &str,
    ) -> Option<(Self, bool)> {
        let spec = crate::api::ExecutionPlanSpec {
            action_types: Vec::new(),
            criticality: None,
            mode: Default::default(),
            rollback_strategy: Default::default(),
            steps: Vec::new(),
            unreadable: Some(why.to_owned()),
        };
        let plan = ExecutionPlan::new("", spec);
        Some((stand_in(plan, metadata, status), true))
    }
    status_access!();
}

impl Watched for Decision {
    fn placeholder(
        metadata: ObjectMeta,
        _status: Option<serde_json::Value>,
        _why: &str,
    ) -> Option<(Self, bool)> {
        let spec = serde_json::from_value(serde_json::json!({
            "actionType": "unreadable",
            "description": "unreadable",
            "criticality": "Critical",
        }))
        .ok()?;
        Some((stand_in(Decision::new("", spec), metadata, None), false))
    }
    status_access!();
}

/// `obj` under the metadata of the object it stands in for, with that object's status
/// when it can be read (marked unreadable when it cannot).
fn stand_in<K: Watched>(mut obj: K, metadata: ObjectMeta, status: Option<serde_json::Value>) -> K {
    *obj.meta_mut() = metadata;
    if let Some(status) = status
        && let Err(e) = obj.read_status(status)
    {
        obj.mark_status_unreadable(format!("the status cannot be read: {e}"));
    }
    obj
}

/// An object that could not be read at all.
#[derive(Clone, Debug)]
pub struct Unreadable {
    pub namespace: String,
    pub name: String,
    pub why: String,
    /// Its status as stored.
    pub status: Option<serde_json::Value>,
}

/// The annotation in which `kubectl apply` keeps the whole object as last applied.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// An object as read from the API server: the object, or why it could not be read (and
/// its status as stored).
#[derive(Clone, Debug)]
pub struct Lenient<K> {
    read: Result<K, Broken>,
}

/// What is known of an object that could not be read.
#[derive(Clone, Debug)]
struct Broken {
    why: String,
    status: Option<serde_json::Value>,
    metadata: ObjectMeta,
}

impl<K: Watched> Lenient<K> {
    /// Reads an object from its JSON: whole, with its status replaced when only that is
    /// unreadable, or not at all. What no reconciler reads is dropped on the way, so that
    /// the caches hold only what they use: the managed fields, and the copy of the whole
    /// object `kubectl apply` keeps in an annotation.
    pub fn read(mut value: serde_json::Value) -> Result<Lenient<K>, serde_json::Error> {
        if let Some(metadata) = value.get_mut("metadata").and_then(|m| m.as_object_mut()) {
            metadata.remove("managedFields");
            if let Some(annotations) = metadata
                .get_mut("annotations")
                .and_then(|a| a.as_object_mut())
            {
                annotations.remove(LAST_APPLIED);
            }
        }
        let read = match K::deserialize(&value) {
            Ok(obj) => Ok(obj),
            Err(whole) => {
                let status = value.as_object_mut().and_then(|o| o.remove("status"));
                match K::deserialize(&value) {
                    Ok(mut obj) if status.is_some() => {
                        obj.mark_status_unreadable(format!("the status cannot be read: {whole}"));
                        Ok(obj)
                    }
                    Ok(_) => Err((whole.to_string(), status)),
                    Err(e) => Err((e.to_string(), status)),
                }
            }
        };
        let read = match read {
            Ok(obj) => Ok(obj),
            Err((why, status)) => {
                let metadata = ObjectMeta::deserialize(
                    value.get("metadata").unwrap_or(&serde_json::Value::Null),
                )?;
                Err(Broken {
                    why,
                    status,
                    metadata,
                })
            }
        };
        Ok(Lenient { read })
    }

    /// The object, or which it was and why it could not be read.
    pub fn into_inner(self) -> Result<K, Unreadable> {
        self.read.map_err(|broken| Unreadable {
            namespace: broken.metadata.namespace.unwrap_or_default(),
            name: broken.metadata.name.unwrap_or_default(),
            why: broken.why,
            status: broken.status,
        })
    }
}

impl<'de, K: Watched> Deserialize<'de> for Lenient<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Read as a JSON tree first, whatever the deserializer: a watch line reads its
        // object in place, but a list's items come already buffered by serde (the list
        // has flattened fields), and an object that does not fit its type must still
        // give its name and status.
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
        match &self.read {
            Ok(obj) => obj.meta(),
            Err(broken) => &broken.metadata,
        }
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        match &mut self.read {
            Ok(obj) => obj.meta_mut(),
            Err(broken) => &mut broken.metadata,
        }
    }
}

/// Watches `K` in `namespace` (or everywhere), leniently: objects that cannot be read are
/// logged and stand in the store as their placeholders say. Failures of the watch itself
/// back off and retry.
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
    // An unreadable object: its placeholder, and whether it stays in the store.
    let stand_in = |obj: Lenient<K>| -> Result<K, Option<(K, bool)>> {
        obj.read.map_err(|broken| {
            warn!(
                kind = %<K as Resource>::kind(&()),
                namespace = broken.metadata.namespace.as_deref().unwrap_or_default(),
                name = broken.metadata.name.as_deref().unwrap_or_default(),
                why = %broken.why,
                "an object cannot be read; fix or delete it"
            );
            K::placeholder(broken.metadata, broken.status, &broken.why)
        })
    };
    Some(match event {
        Err(e) => Err(e),
        Ok(Event::Init) => Ok(Event::Init),
        Ok(Event::InitDone) => Ok(Event::InitDone),
        Ok(Event::Apply(obj)) => Ok(match stand_in(obj) {
            Ok(obj) | Err(Some((obj, true))) => Event::Apply(obj),
            Err(Some((obj, false))) => Event::Delete(obj),
            Err(None) => return None,
        }),
        Ok(Event::InitApply(obj)) => Ok(match stand_in(obj) {
            Ok(obj) | Err(Some((obj, true))) => Event::InitApply(obj),
            Err(_) => return None,
        }),
        Ok(Event::Delete(obj)) => Ok(match stand_in(obj) {
            Ok(obj) | Err(Some((obj, _))) => Event::Delete(obj),
            Err(None) => return None,
        }),
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
                "annotations": {
                    "kubectl.kubernetes.io/last-applied-configuration": "{\"spec\": {}}",
                    "approved-by": "alice",
                },
            },
            "spec": {"actionType": "deploy", "description": "x", "criticality": "High"},
            "status": status,
        })
    }

    #[test]
    fn a_readable_object_is_read_whole_without_what_nobody_reads() {
        let read = Lenient::<Decision>::read(decision(json!({"phase": "Pending"})))
            .unwrap()
            .into_inner()
            .unwrap();
        assert_eq!(
            read.status.as_ref().and_then(|s| s.phase),
            Some(crate::api::DecisionPhase::Pending)
        );
        assert!(read.metadata.managed_fields.is_none());
        let annotations = read.metadata.annotations.as_ref().unwrap();
        assert_eq!(annotations.keys().collect::<Vec<_>>(), ["approved-by"]);
        assert_eq!(read.status_unreadable(), None);
    }

    #[test]
    fn objects_are_read_alike_from_watch_lines_in_either_order_and_from_list_pages() {
        let unreadable_status = json!({
            "phase": "Executing",
            "execution": {"mode": "Real", "startedAt": "not a time", "steps": []},
        });
        for value in [
            decision(json!({"phase": "Pending"})),
            decision(unreadable_status),
        ] {
            let object = value.to_string();
            let lines = [
                format!(r#"{{"type":"MODIFIED","object":{object}}}"#),
                format!(r#"{{"object":{object},"type":"MODIFIED"}}"#),
            ];
            let mut read: Vec<Lenient<Decision>> = lines
                .iter()
                .map(|line| match serde_json::from_str(line).unwrap() {
                    kube::core::WatchEvent::Modified(obj) => obj,
                    other => panic!("a MODIFIED event, not {other:?}"),
                })
                .collect();
            let list = format!(
                r#"{{"apiVersion":"decisiongate.io/v1alpha1","kind":"DecisionList","metadata":{{"resourceVersion":"9"}},"items":[{object}]}}"#
            );
            let list: kube::core::ObjectList<Lenient<Decision>> =
                serde_json::from_str(&list).unwrap();
            read.extend(list.items);
            let careful = Lenient::<Decision>::read(value).unwrap();
            for read in read {
                assert_eq!(read.meta(), careful.meta());
                let read = read.into_inner().unwrap();
                assert_eq!(read, careful.clone().into_inner().unwrap());
                assert!(read.metadata.managed_fields.is_none());
                let annotations = read.metadata.annotations.unwrap();
                assert!(!annotations.contains_key(LAST_APPLIED));
            }
        }
        let mut broken = decision(json!({}));
        broken["spec"]["criticality"] = json!("Catastrophic");
        let line = json!({"type": "ADDED", "object": broken}).to_string();
        let event: kube::core::WatchEvent<Lenient<Decision>> = serde_json::from_str(&line).unwrap();
        let kube::core::WatchEvent::Added(read) = event else {
            panic!("an ADDED event");
        };
        assert_eq!(read.meta().name.as_deref(), Some("d"));
        assert!(read.into_inner().unwrap_err().why.contains("Catastrophic"));
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

    fn policy(rules: serde_json::Value, status: serde_json::Value) -> serde_json::Value {
        json!({
            "apiVersion": "decisiongate.io/v1alpha1",
            "kind": "ApprovalPolicy",
            "metadata": {"name": "gate", "namespace": "team-a", "uid": "u-2", "generation": 4},
            "spec": {"rules": rules},
            "status": status,
        })
    }

    fn event<K: Watched>(
        value: serde_json::Value,
        wrap: fn(Lenient<K>) -> watcher::Event<Lenient<K>>,
    ) -> Option<watcher::Event<K>> {
        readable(Ok(wrap(Lenient::read(value).unwrap()))).map(Result::unwrap)
    }

    #[test]
    fn an_unreadable_policy_stays_as_one_that_fails_closed_with_its_status() {
        let broken = policy(
            json!([{"name": "r", "outcome": "Sometimes"}]),
            json!({"phase": "Ready", "observedGeneration": 4}),
        );
        let Some(watcher::Event::Apply(kept)) =
            event::<ApprovalPolicy>(broken, watcher::Event::Apply)
        else {
            panic!("an unreadable policy must stay in the store");
        };
        assert_eq!(kept.metadata.name.as_deref(), Some("gate"));
        assert_eq!(kept.metadata.generation, Some(4));
        assert_eq!(kept.spec.priority, i32::MIN);
        assert!(
            kept.spec
                .unreadable
                .as_deref()
                .unwrap()
                .contains("Sometimes")
        );
        // What the operator wrote before is still seen, so it writes only the change.
        assert_eq!(kept.status.as_ref().unwrap().observed_generation, Some(4));
        let problems = crate::policy::check(&kept.spec);
        assert!(
            problems[0]
                .to_string()
                .starts_with("the policy cannot be read"),
            "{problems:?}"
        );

        let garbled = policy(
            json!([{"name": "r", "outcome": "Sometimes"}]),
            json!({"phase": 7}),
        );
        let Some(watcher::Event::InitApply(kept)) =
            event::<ApprovalPolicy>(garbled, watcher::Event::InitApply)
        else {
            panic!("an unreadable policy must stay in the store");
        };
        assert!(kept.status_unreadable().is_some());
    }

    #[test]
    fn an_unreadable_decision_leaves_the_store() {
        let mut value = decision(json!({"phase": "Approved"}));
        value["spec"]["criticality"] = json!("Catastrophic");
        match event::<Decision>(value.clone(), watcher::Event::Apply) {
            Some(watcher::Event::Delete(gone)) => {
                assert_eq!(gone.metadata.name.as_deref(), Some("d"));
                assert_eq!(gone.metadata.namespace.as_deref(), Some("team-a"));
            }
            other => panic!("expected its removal, got {other:?}"),
        }
        assert!(event::<Decision>(value.clone(), watcher::Event::InitApply).is_none());
        assert!(matches!(
            event::<Decision>(value, watcher::Event::Delete),
            Some(watcher::Event::Delete(_))
        ));
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

//! Kubernetes Events (events.k8s.io/v1), made on the reconcile path and published off it.

use k8s_openapi::api::events::v1::Event;
use kube::runtime::events::EventType;
use kube::{Api, Client, Resource};
use tracing::warn;

/// The `reportingController` of the operator's Events.
pub const REPORTING_CONTROLLER: &str = "decisiongate.io/decision-gate";

/// A new Event on `obj`, reported by `instance`. Each one gets a name of its own: each
/// marks a distinct transition, and folding two approvals into one series would hide the
/// second approver from `kubectl events`.
pub fn event<K>(
    obj: &K,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
    instance: &str,
) -> Event
where
    K: Resource<DynamicType = ()>,
{
    let regarding = obj.object_ref(&());
    let namespace = regarding
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_owned());
    let now = k8s_openapi::jiff::Timestamp::now();
    Event {
        metadata: kube::api::ObjectMeta {
            name: Some(format!(
                "{}.{:x}",
                regarding.name.as_deref().unwrap_or("decision-gate"),
                now.as_nanosecond()
            )),
            namespace: Some(namespace.clone()),
            ..Default::default()
        },
        event_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
            now,
        )),
        type_: Some(match type_ {
            EventType::Normal => "Normal".to_owned(),
            EventType::Warning => "Warning".to_owned(),
        }),
        reason: Some(reason.to_owned()),
        action: Some(action.to_owned()),
        // The API server limits a note to 1kB.
        note: Some(note.chars().take(1000).collect()),
        regarding: Some(regarding),
        reporting_controller: Some(REPORTING_CONTROLLER.to_owned()),
        reporting_instance: Some(instance.to_owned()),
        ..Default::default()
    }
}

/// Publishes Events from a few background lanes. The Events of one object always take
/// the same lane, so they are created in the order they happened.
pub struct EventQueue {
    lanes: Vec<tokio::sync::mpsc::UnboundedSender<Event>>,
}

impl EventQueue {
    pub fn start(client: Client, lanes: usize) -> EventQueue {
        let lanes = (0..lanes.max(1))
            .map(|_| {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
                let client = client.clone();
                tokio::spawn(async move {
                    while let Some(event) = rx.recv().await {
                        let namespace = event.metadata.namespace.clone().unwrap_or_default();
                        let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
                        if let Err(e) = api.create(&kube::api::PostParams::default(), &event).await
                        {
                            warn!(error = %e, reason = event.reason.as_deref().unwrap_or_default(), "could not publish an Event");
                        }
                    }
                });
                tx
            })
            .collect();
        EventQueue { lanes }
    }

    /// Queues `event`; never waits. A failure to publish it is logged, never fatal: the
    /// status and the audit log are the record, Events the courtesy.
    pub fn send(&self, event: Event) {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        event
            .regarding
            .as_ref()
            .and_then(|r| r.uid.as_ref())
            .hash(&mut hasher);
        let lane = (hasher.finish() % self.lanes.len() as u64) as usize;
        let _ = self.lanes[lane].send(event);
    }
}

//! Kubernetes Events (events.k8s.io/v1), made on the reconcile path and published off it.

use k8s_openapi::api::events::v1::Event;
use kube::runtime::events::EventType;
use kube::{Api, Client, Resource};
use tracing::{debug, warn};

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
            name: Some(event_name(
                regarding.name.as_deref().unwrap_or("decision-gate"),
                now.as_nanosecond(),
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
        note: Some(bounded_note(note)),
        regarding: Some(regarding),
        reporting_controller: Some(REPORTING_CONTROLLER.to_owned()),
        reporting_instance: Some(instance.to_owned()),
        ..Default::default()
    }
}

/// An Event's name: the object's name, a dot and the time in hex, within the 253
/// characters a name may have (a long object name is cut, never the time).
fn event_name(object: &str, nanos: i128) -> String {
    let time = format!("{nanos:x}");
    let head = crate::bounded::prefix(object, 253 - 1 - time.len());
    format!("{head}.{time}")
}

/// The most bytes an Event's note may have.
const NOTE_BYTES_MAX: usize = 1024;

/// `note` cut to the 1 KiB the API server allows a note, at a character's boundary.
fn bounded_note(mut note: String) -> String {
    if note.len() > NOTE_BYTES_MAX {
        let mut end = NOTE_BYTES_MAX - '…'.len_utf8();
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
        note.push('…');
    }
    note
}

/// How fast, and how many at once, Events are published: a token bucket shared by the
/// lanes. Events are a courtesy to people reading `kubectl events`; the status and the
/// audit log are the record. A burst of thousands of Decisions must not double the API
/// server's writes, nor hold a backlog of Events in memory.
#[derive(Clone, Copy, Debug)]
pub struct EventBudget {
    /// Events per second, sustained.
    pub per_second: f64,
    /// Events published at once before the rate applies.
    pub burst: u32,
    /// Events waiting to be published at most; past it, new ones are dropped and counted.
    pub queued: usize,
}

impl Default for EventBudget {
    fn default() -> Self {
        EventBudget {
            per_second: 25.0,
            burst: 100,
            queued: 1000,
        }
    }
}

/// A token bucket: `take` says how long to wait before the next Event may go.
struct Bucket {
    tokens: f64,
    at: std::time::Instant,
    budget: EventBudget,
}

impl Bucket {
    fn new(budget: EventBudget) -> Bucket {
        Bucket {
            tokens: f64::from(budget.burst),
            at: std::time::Instant::now(),
            budget,
        }
    }

    /// Takes a token at `now`: how long the taker must wait for it (zero when one is there).
    fn take(&mut self, now: std::time::Instant) -> std::time::Duration {
        let rate = self.budget.per_second.max(0.001);
        let refilled = now.saturating_duration_since(self.at).as_secs_f64() * rate;
        self.tokens = (self.tokens + refilled).min(f64::from(self.budget.burst.max(1)));
        self.at = now;
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            std::time::Duration::ZERO
        } else {
            std::time::Duration::from_secs_f64(-self.tokens / rate)
        }
    }
}

/// Publishes Events from a few background lanes, within an [`EventBudget`]. The Events of
/// one object always take the same lane, so they are created in the order they happened.
pub struct EventQueue {
    lanes: Vec<tokio::sync::mpsc::Sender<Event>>,
    dropped: prometheus_client::metrics::counter::Counter,
}

impl EventQueue {
    pub fn start(
        client: Client,
        lanes: usize,
        budget: EventBudget,
        dropped: prometheus_client::metrics::counter::Counter,
    ) -> EventQueue {
        let lanes = lanes.max(1);
        let bucket = std::sync::Arc::new(std::sync::Mutex::new(Bucket::new(budget)));
        let lanes = (0..lanes)
            .map(|_| {
                let (tx, mut rx) =
                    tokio::sync::mpsc::channel::<Event>((budget.queued / lanes).max(1));
                let client = client.clone();
                let bucket = bucket.clone();
                tokio::spawn(async move {
                    while let Some(event) = rx.recv().await {
                        let wait = bucket
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .take(std::time::Instant::now());
                        if !wait.is_zero() {
                            tokio::time::sleep(wait).await;
                        }
                        let namespace = event.metadata.namespace.clone().unwrap_or_default();
                        let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
                        match api.create(&kube::api::PostParams::default(), &event).await {
                            Ok(_) => {}
                            // A namespace being deleted takes no new objects: its Decisions'
                            // deletions are in the audit log, and nobody would read the Event.
                            Err(kube::Error::Api(s))
                                if s.details.as_ref().is_some_and(|d| {
                                    d.causes.iter().any(|c| c.reason == "NamespaceTerminating")
                                }) =>
                            {
                                debug!(namespace, reason = event.reason.as_deref().unwrap_or_default(), "no Event in a namespace being deleted");
                            }
                            Err(e) => {
                                warn!(error = %e, reason = event.reason.as_deref().unwrap_or_default(), "could not publish an Event");
                            }
                        }
                    }
                });
                tx
            })
            .collect();
        EventQueue { lanes, dropped }
    }

    /// Queues `event`; never waits. An Event that finds its lane full is dropped and
    /// counted; a failure to publish one is logged, never fatal.
    pub fn send(&self, event: Event) {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        event
            .regarding
            .as_ref()
            .and_then(|r| r.uid.as_ref())
            .hash(&mut hasher);
        let lane = (hasher.finish() % self.lanes.len() as u64) as usize;
        if let Err(tokio::sync::mpsc::error::TrySendError::Full(event)) =
            self.lanes[lane].try_send(event)
        {
            self.dropped.inc();
            tracing::debug!(
                reason = event.reason.as_deref().unwrap_or_default(),
                "the Event queue is full; an Event was dropped"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn an_event_of_an_object_with_the_longest_name_has_a_valid_name() {
        let long = format!("{}.{}", "a".repeat(200), "b".repeat(52));
        let name = event_name(&long, 0x1234_5678_9abc_def0);
        assert!(name.len() <= 253, "{}", name.len());
        assert!(name.ends_with(".123456789abcdef0"), "{name}");
        assert_eq!(event_name("ship", 255), "ship.ff");
    }

    #[test]
    fn a_note_is_cut_to_a_kilobyte_at_a_character_boundary() {
        for text in ["é".repeat(1000), "x".repeat(2000), "日本".repeat(400)] {
            let note = bounded_note(text.clone());
            assert!(note.len() <= NOTE_BYTES_MAX, "{}", note.len());
            assert!(note.ends_with('…'));
            assert!(text.starts_with(note.trim_end_matches('…')));
        }
        assert_eq!(bounded_note("short".into()), "short");
    }

    #[tokio::test]
    async fn an_event_that_finds_its_queue_full_is_dropped_and_counted() {
        use crate::controller::testing::{decision, scripted};
        // Nothing is published before this test yields: its runtime has one thread.
        let (client, _server) = scripted(vec![]);
        let dropped = prometheus_client::metrics::counter::Counter::default();
        let budget = EventBudget {
            per_second: 1.0,
            burst: 1,
            queued: 2,
        };
        let queue = EventQueue::start(client, 1, budget, dropped.clone());
        let d = decision("ship", "High", None);
        for reason in ["First", "Second", "Third"] {
            queue.send(event(
                &d,
                EventType::Normal,
                reason,
                "Decide",
                String::new(),
                "i",
            ));
        }
        assert_eq!(dropped.get(), 1);
    }

    #[test]
    fn a_burst_goes_at_once_then_the_rate_applies() {
        let budget = EventBudget {
            per_second: 10.0,
            burst: 3,
            queued: 10,
        };
        let mut bucket = Bucket::new(budget);
        let now = Instant::now();
        let waits: Vec<Duration> = (0..5).map(|_| bucket.take(now)).collect();
        assert_eq!(&waits[..3], &[Duration::ZERO; 3]);
        assert_eq!(waits[3].as_millis(), 100);
        assert_eq!(waits[4].as_millis(), 200);
        // A second later the debt is paid and eight tokens have come back, but never
        // more than the burst.
        let later = now + Duration::from_secs(2);
        let waits: Vec<Duration> = (0..4).map(|_| bucket.take(later)).collect();
        assert_eq!(&waits[..3], &[Duration::ZERO; 3]);
        assert!(waits[3] > Duration::ZERO);
    }
}

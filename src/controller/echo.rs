//! A controller's own status writes, recognised when its watch brings them back.
//!
//! Every status write comes back through the watch as a change of the object. Reconciling
//! it again would only recompute, from the same object, the status just written: twice
//! the work per transition for nothing. Before a write, the object as it will be stored is
//! noted; a change that brings back exactly that object (everything equal but its
//! resourceVersion) is recognised and not reconciled. Anything else that changed with it,
//! or after it, is a different object: an approval, an edit, a deletion, or a status
//! written by someone else all differ, and are reconciled as before.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use kube::Resource;

/// At most this many writes per object are awaited; older ones are forgotten.
const PER_OBJECT: usize = 8;
/// At most this many objects have writes awaited; past it, all are forgotten (their
/// echoes are then reconciled, which is only the work this saves).
const OBJECTS: usize = 4096;

/// The status writes of one kind whose echoes have not come back yet, by object uid.
pub struct Echoes<K> {
    awaited: Mutex<HashMap<String, VecDeque<K>>>,
}

impl<K> Default for Echoes<K> {
    fn default() -> Self {
        Echoes {
            awaited: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Resource + Clone + PartialEq> Echoes<K> {
    /// Notes that `written`, the object as it will be after a write about to be sent, is
    /// expected back from the watch. Call it before the write: the watch may bring the
    /// change back before the write's response arrives.
    pub fn expect(&self, written: &K) {
        let Some(uid) = written.meta().uid.clone() else {
            return;
        };
        let mut copy = written.clone();
        copy.meta_mut().resource_version = None;
        let mut awaited = self.awaited.lock().unwrap_or_else(|p| p.into_inner());
        if awaited.len() >= OBJECTS && !awaited.contains_key(&uid) {
            awaited.clear();
        }
        let queue = awaited.entry(uid).or_default();
        if queue.len() >= PER_OBJECT {
            queue.pop_front();
        }
        queue.push_back(copy);
    }

    /// The write of `written` failed: its echo will not come.
    pub fn forget(&self, written: &K) {
        let Some(uid) = written.meta().uid.as_deref() else {
            return;
        };
        let mut awaited = self.awaited.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(queue) = awaited.get_mut(uid) {
            if let Some(at) = queue.iter().rposition(|w| same_but_version(w, written)) {
                queue.remove(at);
            }
            if queue.is_empty() {
                awaited.remove(uid);
            }
        }
    }

    /// Whether `seen`, as the watch delivered it, is only the echo of a write noted by
    /// [`Echoes::expect`]. An echo is recognised once; the writes noted before it are
    /// forgotten with it (the watch delivers an object's changes in order).
    pub fn is_echo(&self, seen: &mut K) -> bool {
        let Some(uid) = seen.meta().uid.clone() else {
            return false;
        };
        let mut awaited = self.awaited.lock().unwrap_or_else(|p| p.into_inner());
        let Some(queue) = awaited.get_mut(&uid) else {
            return false;
        };
        let version = seen.meta_mut().resource_version.take();
        let found = queue.iter().position(|w| w == &*seen);
        seen.meta_mut().resource_version = version;
        let Some(at) = found else {
            return false;
        };
        queue.drain(..=at);
        if queue.is_empty() {
            awaited.remove(&uid);
        }
        true
    }

    /// How many objects have writes awaited.
    pub fn len(&self) -> usize {
        self.awaited.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn same_but_version<K: Resource + Clone + PartialEq>(noted: &K, other: &K) -> bool {
    let mut other = other.clone();
    other.meta_mut().resource_version = None;
    noted == &other
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Decision, DecisionPhase, DecisionStatus};

    fn decision(version: &str, phase: Option<DecisionPhase>) -> Decision {
        let mut d: Decision = serde_json::from_value(serde_json::json!({
            "apiVersion": "decisiongate.io/v1alpha1", "kind": "Decision",
            "metadata": {"name": "d", "namespace": "team-a", "uid": "u-1",
                         "resourceVersion": version, "generation": 1},
            "spec": {"actionType": "deploy", "description": "x", "criticality": "High"},
        }))
        .unwrap();
        d.status = phase.map(|phase| DecisionStatus {
            phase: Some(phase),
            ..Default::default()
        });
        d
    }

    #[test]
    fn a_write_coming_back_is_recognised_once() {
        let echoes = Echoes::default();
        echoes.expect(&decision("10", Some(DecisionPhase::Pending)));
        let mut back = decision("11", Some(DecisionPhase::Pending));
        assert!(echoes.is_echo(&mut back));
        assert_eq!(back.metadata.resource_version.as_deref(), Some("11"));
        assert!(echoes.is_empty());
        // Seen again (a relist), it is a change like any other.
        assert!(!echoes.is_echo(&mut decision("11", Some(DecisionPhase::Pending))));
    }

    #[test]
    fn a_write_that_came_back_with_anything_else_changed_is_not_an_echo() {
        let echoes = Echoes::default();
        echoes.expect(&decision("10", Some(DecisionPhase::Pending)));

        let mut approved = decision("11", Some(DecisionPhase::Pending));
        approved
            .metadata
            .annotations
            .get_or_insert_default()
            .insert("decisiongate.io/approve".into(), "yes".into());
        assert!(!echoes.is_echo(&mut approved));

        let mut forged = decision("12", Some(DecisionPhase::Approved));
        assert!(!echoes.is_echo(&mut forged));

        let mut edited = decision("13", Some(DecisionPhase::Pending));
        edited.metadata.generation = Some(2);
        assert!(!echoes.is_echo(&mut edited));

        let mut deleting = decision("14", Some(DecisionPhase::Pending));
        deleting.metadata.deletion_timestamp =
            Some(serde_json::from_value(serde_json::json!("2026-12-03T12:00:00Z")).unwrap());
        assert!(!echoes.is_echo(&mut deleting));
        // Still awaited: the write's own echo may come yet.
        assert_eq!(echoes.len(), 1);
    }

    #[test]
    fn writes_in_a_row_are_recognised_in_order() {
        let echoes = Echoes::default();
        echoes.expect(&decision("10", Some(DecisionPhase::Approved)));
        echoes.expect(&decision("11", Some(DecisionPhase::Executing)));
        // The first echo was missed (a relist): the second one forgets it too.
        assert!(echoes.is_echo(&mut decision("13", Some(DecisionPhase::Executing))));
        assert!(echoes.is_empty());
    }

    #[test]
    fn a_failed_write_is_not_awaited() {
        let echoes = Echoes::default();
        let written = decision("10", Some(DecisionPhase::Pending));
        echoes.expect(&written);
        echoes.forget(&written);
        assert!(echoes.is_empty());
        assert!(!echoes.is_echo(&mut decision("11", Some(DecisionPhase::Pending))));
    }

    #[test]
    fn what_is_awaited_is_bounded() {
        let echoes = Echoes::default();
        for i in 0..(OBJECTS + 10) {
            let mut d = decision("1", Some(DecisionPhase::Pending));
            d.metadata.uid = Some(format!("u-{i}"));
            echoes.expect(&d);
        }
        assert!(echoes.len() <= OBJECTS);
        for v in 0..(PER_OBJECT + 3) {
            echoes.expect(&decision(&v.to_string(), Some(DecisionPhase::Pending)));
        }
        let awaited = echoes.awaited.lock().unwrap();
        assert_eq!(awaited["u-1"].len(), PER_OBJECT);
    }
}

//! The operator's own status writes, recognised when the watch brings them back.
//!
//! Every status write comes back through the watch as a change of the Decision.
//! Reconciling it again would only recompute, from the same object, the status just
//! written: twice the work per transition for nothing. Before a write, the Decision as it
//! will be stored is noted (packed, as the cache holds it); a change that brings back
//! exactly that Decision, everything equal but its resourceVersion, is recognised and not
//! reconciled. Anything else that changed with it or after it makes a different object:
//! an approval, an edit, a deletion, or a status written by someone else differ, and are
//! reconciled as before.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use kube::Resource;

use super::cached::{CachedDecision, Packed};
use crate::api::Decision;

/// At most this many writes per Decision are awaited; older ones are forgotten.
const PER_OBJECT: usize = 8;
/// At most this many Decisions have writes awaited; past it, all are forgotten (their
/// echoes are then reconciled, which is only the work this saves).
const OBJECTS: usize = 4096;

/// A write noted by [`Echoes::expect`]: what to forget should the write fail.
pub struct Noted(Option<(String, Packed)>);

/// The status writes whose echoes have not come back yet, by Decision uid.
#[derive(Default)]
pub struct Echoes {
    awaited: Mutex<HashMap<String, VecDeque<Packed>>>,
}

impl Echoes {
    /// Notes that `written`, the Decision as it will be after a write about to be sent,
    /// is expected back from the watch. Call it before the write: the watch may bring
    /// the change back before the write's response arrives.
    pub fn expect(&self, written: &Decision) -> Noted {
        let Some(uid) = written.meta().uid.clone() else {
            return Noted(None);
        };
        let packed = CachedDecision::packed_form(written);
        let mut awaited = self.awaited.lock().unwrap_or_else(|p| p.into_inner());
        if awaited.len() >= OBJECTS && !awaited.contains_key(&uid) {
            awaited.clear();
        }
        let queue = awaited.entry(uid.clone()).or_default();
        if queue.len() >= PER_OBJECT {
            queue.pop_front();
        }
        queue.push_back(packed.clone());
        Noted(Some((uid, packed)))
    }

    /// The noted write failed: its echo will not come.
    pub fn forget(&self, noted: Noted) {
        let Some((uid, packed)) = noted.0 else {
            return;
        };
        let mut awaited = self.awaited.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(queue) = awaited.get_mut(&uid) {
            if let Some(at) = queue.iter().rposition(|w| w == &packed) {
                queue.remove(at);
            }
            if queue.is_empty() {
                awaited.remove(&uid);
            }
        }
    }

    /// Whether `seen`, as the watch delivered it, is only the echo of a write noted by
    /// [`Echoes::expect`]. An echo is recognised once; the writes noted before it are
    /// forgotten with it (the watch delivers a Decision's changes in order).
    pub fn is_echo(&self, seen: &CachedDecision) -> bool {
        let Some(uid) = seen.meta().uid.as_deref() else {
            return false;
        };
        let mut awaited = self.awaited.lock().unwrap_or_else(|p| p.into_inner());
        let Some(queue) = awaited.get_mut(uid) else {
            return false;
        };
        let Some(at) = queue.iter().position(|w| w == seen.packed()) else {
            return false;
        };
        queue.drain(..=at);
        if queue.is_empty() {
            awaited.remove(uid);
        }
        true
    }

    /// How many Decisions have writes awaited.
    pub fn len(&self) -> usize {
        self.awaited.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{DecisionPhase, DecisionStatus};

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

    fn seen(version: &str, phase: Option<DecisionPhase>) -> CachedDecision {
        CachedDecision::pack(decision(version, phase))
    }

    #[test]
    fn a_write_coming_back_is_recognised_once() {
        let echoes = Echoes::default();
        echoes.expect(&decision("10", Some(DecisionPhase::Pending)));
        assert!(echoes.is_echo(&seen("11", Some(DecisionPhase::Pending))));
        assert!(echoes.is_empty());
        // Seen again (a relist), it is a change like any other.
        assert!(!echoes.is_echo(&seen("11", Some(DecisionPhase::Pending))));
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
            .insert("approved-by".into(), "alice".into());
        assert!(!echoes.is_echo(&CachedDecision::pack(approved)));

        assert!(!echoes.is_echo(&seen("12", Some(DecisionPhase::Approved))));

        let mut edited = decision("13", Some(DecisionPhase::Pending));
        edited.metadata.generation = Some(2);
        assert!(!echoes.is_echo(&CachedDecision::pack(edited)));

        let mut deleting = decision("14", Some(DecisionPhase::Pending));
        deleting.metadata.deletion_timestamp =
            Some(serde_json::from_value(serde_json::json!("2026-12-03T12:00:00Z")).unwrap());
        assert!(!echoes.is_echo(&CachedDecision::pack(deleting)));
        // Still awaited: the write's own echo may come yet.
        assert_eq!(echoes.len(), 1);
    }

    #[test]
    fn writes_in_a_row_are_recognised_in_order() {
        let echoes = Echoes::default();
        echoes.expect(&decision("10", Some(DecisionPhase::Approved)));
        echoes.expect(&decision("11", Some(DecisionPhase::Executing)));
        // The first echo was missed (a relist): the second one forgets it too.
        assert!(echoes.is_echo(&seen("13", Some(DecisionPhase::Executing))));
        assert!(echoes.is_empty());
    }

    #[test]
    fn a_failed_write_is_not_awaited() {
        let echoes = Echoes::default();
        let noted = echoes.expect(&decision("10", Some(DecisionPhase::Pending)));
        echoes.forget(noted);
        assert!(echoes.is_empty());
        assert!(!echoes.is_echo(&seen("11", Some(DecisionPhase::Pending))));
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

//! Whether the controllers make progress. The liveness probe asks [`Progress::stalled`]:
//! a replica whose reconciles hang, or whose queued work is never taken up, must not look
//! healthy, so that Kubernetes restarts it. Time is passed in, so the rules are tested
//! without a clock.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The reconciles under way and the work waiting, per controller.
pub struct Progress {
    stall_after: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    in_flight: BTreeMap<u64, Running>,
    /// Per controller: when the oldest change not yet followed by any finished reconcile
    /// arrived.
    waiting_since: HashMap<&'static str, Instant>,
}

/// One reconcile under way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Running {
    pub kind: &'static str,
    /// `namespace/name`.
    pub object: String,
    pub since: Instant,
}

impl Progress {
    /// Work that waits longer than `stall_after` counts as stalled.
    pub fn new(stall_after: Duration) -> Arc<Self> {
        Arc::new(Progress {
            stall_after,
            state: Mutex::new(State::default()),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A change arrived that the `kind` controller will reconcile.
    pub fn queued(&self, kind: &'static str, now: Instant) {
        self.state().waiting_since.entry(kind).or_insert(now);
    }

    /// The `kind` controller finished a reconcile (or found nothing to do for a change):
    /// it is taking work from its queue.
    pub fn served(&self, kind: &'static str) {
        self.state().waiting_since.remove(kind);
    }

    /// Marks a reconcile as under way until the returned guard is dropped.
    pub fn start(self: &Arc<Self>, kind: &'static str, object: String, now: Instant) -> Guard {
        let mut state = self.state();
        let id = state.next_id;
        state.next_id += 1;
        state.in_flight.insert(
            id,
            Running {
                kind,
                object,
                since: now,
            },
        );
        Guard {
            progress: self.clone(),
            id,
        }
    }

    /// The reconciles under way, oldest first.
    pub fn running(&self) -> Vec<Running> {
        let mut running: Vec<Running> = self.state().in_flight.values().cloned().collect();
        running.sort_by_key(|r| r.since);
        running
    }

    /// Why the controllers are stalled, if they are: a reconcile has run, or a change
    /// has waited for any reconcile to finish, for longer than the limit.
    pub fn stalled(&self, now: Instant) -> Option<String> {
        let state = self.state();
        let limit = self.stall_after;
        let late = |since: Instant| now.saturating_duration_since(since) > limit;
        if let Some(r) = state
            .in_flight
            .values()
            .filter(|r| late(r.since))
            .min_by_key(|r| r.since)
        {
            return Some(format!(
                "the reconcile of {} {} has run for {}s (limit {}s)",
                r.kind,
                r.object,
                now.saturating_duration_since(r.since).as_secs(),
                limit.as_secs()
            ));
        }
        let mut waiting: Vec<(&&'static str, &Instant)> = state
            .waiting_since
            .iter()
            .filter(|(_, since)| late(**since))
            .collect();
        waiting.sort();
        waiting.first().map(|(kind, since)| {
            format!(
                "the {kind} controller has taken no work for {}s although changes wait (limit {}s)",
                now.saturating_duration_since(**since).as_secs(),
                limit.as_secs()
            )
        })
    }
}

/// A reconcile under way; dropping it ends it.
pub struct Guard {
    progress: Arc<Progress>,
    id: u64,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.progress.state().in_flight.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_secs(60);

    #[test]
    fn an_idle_operator_is_live() {
        let progress = Progress::new(LIMIT);
        let t0 = Instant::now();
        assert_eq!(progress.stalled(t0 + Duration::from_secs(3600)), None);
    }

    #[test]
    fn a_reconcile_that_never_ends_is_a_stall_and_names_its_object() {
        let progress = Progress::new(LIMIT);
        let t0 = Instant::now();
        let quick = progress.start("Decision", "team-a/quick".into(), t0);
        drop(quick);
        let _hung = progress.start("Decision", "team-a/hung".into(), t0);
        assert_eq!(
            progress.stalled(t0 + LIMIT),
            None,
            "at the limit, not past it"
        );
        let why = progress
            .stalled(t0 + LIMIT + Duration::from_secs(1))
            .unwrap();
        assert!(why.contains("Decision team-a/hung"), "{why}");
        assert_eq!(progress.running().len(), 1);
    }

    #[test]
    fn a_finished_reconcile_leaves_nothing_behind() {
        let progress = Progress::new(LIMIT);
        let t0 = Instant::now();
        {
            let _g = progress.start("ExecutionPlan", "p/x".into(), t0);
            assert_eq!(progress.running().len(), 1);
        }
        assert!(progress.running().is_empty());
        assert_eq!(progress.stalled(t0 + LIMIT * 10), None);
    }

    #[test]
    fn changes_that_nobody_takes_up_are_a_stall() {
        let progress = Progress::new(LIMIT);
        let t0 = Instant::now();
        progress.queued("Decision", t0);
        // Later changes do not move the clock of the oldest one.
        progress.queued("Decision", t0 + Duration::from_secs(50));
        let why = progress
            .stalled(t0 + LIMIT + Duration::from_secs(1))
            .unwrap();
        assert!(why.contains("Decision controller"), "{why}");
    }

    #[test]
    fn work_taken_up_in_time_is_progress() {
        let progress = Progress::new(LIMIT);
        let t0 = Instant::now();
        progress.queued("ApprovalPolicy", t0);
        progress.served("ApprovalPolicy");
        assert_eq!(progress.stalled(t0 + LIMIT * 2), None);
        // One controller's progress says nothing about another's.
        progress.queued("ExecutionPlan", t0);
        progress.served("ApprovalPolicy");
        assert!(progress.stalled(t0 + LIMIT * 2).is_some());
    }

    #[test]
    fn the_running_list_is_oldest_first() {
        let progress = Progress::new(LIMIT);
        let t0 = Instant::now();
        let _b = progress.start("Decision", "ns/b".into(), t0 + Duration::from_secs(5));
        let _a = progress.start("Decision", "ns/a".into(), t0);
        let names: Vec<String> = progress.running().into_iter().map(|r| r.object).collect();
        assert_eq!(names, ["ns/a", "ns/b"]);
    }
}

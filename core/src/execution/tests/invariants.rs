//! The executor's invariants, whatever the Jobs do.

use super::*;
use proptest::prelude::*;

proptest! {
    /// Whatever the Jobs do, no Job is ever created twice, a reconcile from scratch
    /// changes nothing, and the execution ends: Succeeded, Failed or RolledBack, with no
    /// Job left running and no rollback left to run.
    #[test]
    fn every_job_is_created_at_most_once_and_the_execution_ends(
        outcomes in proptest::collection::vec(any::<bool>(), 1..20),
        retries in 0u32..3,
        undoable in proptest::collection::vec(any::<bool>(), 3),
        strategy in prop_oneof![Just(RollbackStrategy::Automatic), Just(RollbackStrategy::Manual), Just(RollbackStrategy::None)],
        restarts in proptest::collection::vec(any::<bool>(), 20),
    ) {
        let mut steps: Vec<Step> = ["a", "b", "c"].iter().zip(&undoable).map(|(name, undo)| step(name, *undo)).collect();
        for s in &mut steps { s.retries = retries; }
        let mut w = World::new(plan(ExecutionMode::Real, strategy, steps));
        // A Manual rollback is approved as soon as it is asked for.
        w.decision.metadata.annotations = Some([("rollback-approved-by".to_owned(), "alice".to_owned())].into());
        w.settle();
        // Each of the three steps runs at most `retries + 1` times and is undone at most
        // once: no execution has more Jobs than that.
        let most = 3 * (retries as usize + 2);
        let mut outcomes = outcomes.into_iter().cycle();
        let mut finished = 0;
        let mut ended = false;
        // Every look either ends a Job or is the reconcile after a status write: twice
        // the Jobs is more looks than any execution needs.
        for _ in 0..2 * most {
            let running: Vec<String> = w.jobs.iter().filter(|(_, s)| **s == JobState::Running).map(|(n, _)| n.clone()).collect();
            let Some(job) = running.first() else {
                // No Job runs: the operator's own status write brings one more reconcile
                // (which approves a Manual rollback), and it stops when that changes nothing.
                let status = w.decision.status.clone();
                w.settle();
                if w.decision.status == status {
                    ended = true;
                    break;
                }
                continue;
            };
            prop_assert!(finished < most, "more than the {} possible Jobs ran: {:?}", most, w.created);
            if restarts[finished % restarts.len()] {
                let (status, created) = (w.decision.status.clone(), w.created.clone());
                w.settle();
                prop_assert_eq!(&w.decision.status, &status, "a reconcile from scratch changed the status");
                prop_assert_eq!(&w.created, &created);
            }
            w.finish(job, outcomes.next().expect("cycled"));
            finished += 1;
        }
        prop_assert!(ended, "still {:?} after {} looks", w.phase(), 2 * most);
        let ends = [DecisionPhase::Succeeded, DecisionPhase::Failed, DecisionPhase::RolledBack];
        prop_assert!(ends.contains(&w.phase()), "it stopped at {:?}", w.phase());
        let rollback = w.status().execution.as_ref().and_then(|e| e.rollback.as_ref());
        prop_assert!(
            rollback.is_none_or(|r| matches!(r.phase, RollbackPhase::Succeeded | RollbackPhase::Failed | RollbackPhase::NotRun)),
            "the rollback stopped at {:?}",
            rollback.map(|r| r.phase)
        );
    }
}

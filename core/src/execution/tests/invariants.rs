//! The executor's invariants, whatever the Jobs do.

use super::*;
use proptest::prelude::*;

proptest! {
    /// Whatever the Jobs do, no Job is ever created twice, and the execution ends.
    #[test]
    fn every_job_is_created_at_most_once(
        outcomes in proptest::collection::vec(any::<bool>(), 1..20),
        retries in 0u32..3,
        strategy in prop_oneof![Just(RollbackStrategy::Automatic), Just(RollbackStrategy::Manual), Just(RollbackStrategy::None)],
        restarts in proptest::collection::vec(any::<bool>(), 20),
    ) {
        let mut steps = vec![step("a", true), step("b", true), step("c", true)];
        for s in &mut steps { s.retries = retries; }
        let mut w = World::new(plan(ExecutionMode::Real, strategy, steps));
        w.decision.metadata.annotations = Some([("rollback-approved-by".to_owned(), "alice".to_owned())].into());
        w.settle();
        for (i, ok) in outcomes.into_iter().enumerate() {
            let running: Vec<String> = w.jobs.iter().filter(|(_, s)| **s == JobState::Running).map(|(n, _)| n.clone()).collect();
            let Some(job) = running.first() else { break };
            if restarts[i % restarts.len()] {
                w.settle(); // a reconcile from scratch changes nothing
            }
            w.finish(job, ok);
        }
        let ends = [DecisionPhase::Executing, DecisionPhase::RollingBack, DecisionPhase::Succeeded, DecisionPhase::Failed, DecisionPhase::RolledBack];
        prop_assert!(ends.contains(&w.phase()));
    }
}

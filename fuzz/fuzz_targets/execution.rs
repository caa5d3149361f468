//! Any status, any plan and any Job outcomes through the executor, reconcile after
//! reconcile: never a panic, never a Job created again once it was seen to exist, and a
//! status that cannot be continued ends Failed instead of running anything, and nothing
//! starts unless the status pins exactly the plan's content.
#![no_main]

#[path = "../common/mod.rs"]
mod common;

use std::collections::{BTreeMap, BTreeSet};

use arbitrary::Arbitrary;
use decision_gate::api::DecisionPhase;
use decision_gate::admission::Answers;
use decision_gate::events::{DecisionEvent, ExecutionEvent};
use decision_gate::execution::{self, JobAction, JobState, PlanCheck, PlanView};
use decision_gate::pin;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    request: common::Request,
    status: common::StatusInput,
    plan: Option<common::PlanInput>,
    generation: i64,
    /// Whether the status pins the plan: not at all, as it is, or as something else.
    pin: u8,
    other: Option<common::PlanInput>,
    check: u8,
    allow_real: bool,
    /// Whether the admission policies that verify answers are in force.
    verified: bool,
    /// What each created Job does, in turn: succeed, fail, stay running or vanish.
    outcomes: Vec<u8>,
    ticks: Vec<u16>,
}

fuzz_target!(|input: Input| {
    let Some(mut decision) = input.request.decision(Some(input.status.value())) else {
        return;
    };
    let spec = input.plan.as_ref().and_then(common::PlanInput::spec);
    if let Some(status) = decision.status.as_mut() {
        let pinned = match input.pin % 3 {
            0 => None,
            1 => input.plan.as_ref(),
            _ => input.other.as_ref(),
        };
        status.plan = pinned
            .and_then(|p| p.plan(input.generation))
            .map(|p| pin::pin(&p, common::time(0)));
    }
    // A Decision that has not started may start only with the plan it pinned.
    let may_start = match (&spec, decision.status.as_ref().and_then(|s| s.plan.as_ref())) {
        (Some(spec), Some(pinned)) => pin::changed_from(pinned, "plan-uid", spec).is_none(),
        _ => false,
    };
    let not_started = decision.status.as_ref().is_some_and(|s| s.execution.is_none());
    let check = match input.check % 3 {
        0 => PlanCheck::Ready,
        1 => PlanCheck::Invalid("refused"),
        _ => PlanCheck::Unchecked,
    };
    let inconsistent = decision
        .status
        .as_ref()
        .and_then(|s| execution::inconsistency(&decision, s))
        .is_some()
        && execution::applies(&decision, decision.status.as_ref().unwrap());
    let mut jobs: BTreeMap<String, JobState> = BTreeMap::new();
    let mut created = BTreeSet::new();
    let mut existed = BTreeSet::new();
    let mut dry_runs = BTreeMap::new();
    let answers = if input.verified {
        Answers::Verified
    } else {
        Answers::Unverified("the policies are gone".to_owned())
    };
    let mut outcomes = input.outcomes.iter().cycle();
    let mut now = common::time(0);
    for (round, tick) in input.ticks.iter().take(64).enumerate() {
        now += chrono::Duration::seconds(i64::from(*tick));
        let status = decision.status.clone().unwrap_or_default();
        let advance = execution::advance(&execution::Input {
            decision: &decision,
            status: &status,
            plan: spec.as_ref().map(|spec| PlanView {
                name: "plan",
                uid: "plan-uid",
                generation: input.generation,
                spec,
                check,
            }),
            jobs: &jobs,
            dry_runs: &dry_runs,
            now,
            allow_real: input.allow_real,
            answers: &answers,
        });
        if !input.verified {
            assert!(
                !advance.events.iter().any(|e| matches!(
                    e,
                    DecisionEvent::Execution(ExecutionEvent::RollbackApproved { .. })
                )),
                "a rollback ran on an unverified approval: {:?}",
                advance.events
            );
        }
        if round == 0 && inconsistent {
            assert_eq!(advance.status.phase, Some(DecisionPhase::Failed));
            assert!(advance.action.is_none(), "an inconsistent status ran something");
        }
        if not_started && !may_start {
            assert!(
                advance.status.execution.is_none(),
                "started a plan it had not pinned as it is"
            );
        }
        decision.status = Some(advance.status);
        match advance.action {
            Some(JobAction::Create { name, .. }) => {
                // Creating again a name that was seen missing is the protocol (the name is
                // recorded before the Job is made; the API server refuses a second one of
                // the same name). Creating a Job that was seen to exist is a second run.
                assert!(
                    !existed.contains(&name),
                    "the Job {name} was created again after it was seen to exist"
                );
                created.insert(name.clone());
                let state = match outcomes.next().map(|o| o % 4) {
                    Some(0) | None => JobState::Succeeded { result: Some("ok".into()), exit_code: Some(0), finished_at: Some(now) },
                    Some(1) => JobState::Failed { message: "failed".into(), exit_code: Some(1), finished_at: Some(now) },
                    Some(2) => JobState::Running,
                    _ => JobState::Missing,
                };
                if state != JobState::Missing {
                    existed.insert(name.clone());
                }
                jobs.insert(name, state);
            }
            Some(JobAction::DryRun { name, .. }) => {
                let verdict = match outcomes.next() {
                    Some(o) if o % 2 == 1 => Err("refused".to_owned()),
                    _ => Ok(()),
                };
                dry_runs.insert(name, verdict);
            }
            None => {}
        }
    }
});

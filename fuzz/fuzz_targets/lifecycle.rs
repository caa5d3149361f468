//! Any Decision, with any status and any answers, moved by the approval lifecycle: never
//! a panic, never approved without the approvals its rule asks for, and repeated looks at
//! the same moment settle.
#![no_main]

#[path = "../common/mod.rs"]
mod common;

use arbitrary::Arbitrary;
use decision_gate::api::DecisionPhase;
use decision_gate::api::decision::Criticality;
use decision_gate::admission::Answers;
use decision_gate::events::DecisionEvent;
use decision_gate::lifecycle;
use decision_gate::policy::{self, Policy};
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

#[derive(Arbitrary, Debug)]
struct Input {
    request: common::Request,
    status: Option<common::StatusInput>,
    policies: Vec<common::PolicyInput>,
    plan: Option<common::PlanInput>,
    now: i32,
    default_expiry_secs: u32,
    /// Whether the admission policies are in force: yes, no, or counted anyway.
    answers: u8,
}

/// One cache for every input, as the operator keeps one for every reconcile.
static EXPRESSIONS: LazyLock<policy::Expressions> = LazyLock::new(Default::default);

fuzz_target!(|input: Input| {
    let status = input.status.as_ref().map(common::StatusInput::value);
    let was_new = status.is_none();
    let Some(mut decision) = input.request.decision(status) else {
        return;
    };
    let policies: Vec<_> = input.policies.iter().filter_map(|p| p.policy()).collect();
    let views: Vec<Policy<'_>> = policies.iter().map(Policy::of).collect();
    let now = common::time(input.now);
    let plan = input.plan.as_ref().and_then(|p| p.plan(1));
    let plan = plan.as_ref().filter(|_| decision.spec.plan_ref.is_some());
    let answers = match input.answers % 3 {
        0 => Answers::Verified,
        1 => Answers::Unverified("the policies are gone".to_owned()),
        _ => Answers::CountedUnverified("the policies are gone".to_owned()),
    };
    let step = |decision: &decision_gate::api::Decision| {
        lifecycle::advance(&lifecycle::Input {
            decision,
            policies: &views,
            now,
            default_expiry: std::time::Duration::from_secs(u64::from(input.default_expiry_secs)),
            plan,
            answers: &answers,
            expressions: &EXPRESSIONS,
            jobs: None,
        })
    };
    let first = step(&decision);
    // Nobody verified who answered: no approval by a person counts.
    if matches!(answers, Answers::Unverified(_)) {
        assert!(
            !first.events.iter().any(|e| matches!(e, DecisionEvent::ApprovalGranted { .. })),
            "an unverified approval counted: {:?}",
            first.events
        );
    }
    let approved_now = first
        .events
        .iter()
        .any(|e| matches!(e, DecisionEvent::AutoApproved { .. } | DecisionEvent::ApprovalGranted { .. }));
    if was_new
        && decision.spec.criticality == Criticality::Critical
        && first.status.phase == Some(DecisionPhase::Approved)
    {
        assert!(
            first.events.iter().any(|e| matches!(e, DecisionEvent::ApprovalGranted { .. })),
            "a Critical Decision was approved without a person: {:?}",
            first.events
        );
    }
    if was_new && decision.spec.plan_ref.is_some() {
        match plan {
            // Nobody is asked before the plan can be pinned.
            None => assert!(
                first.status.evaluation.is_none()
                    && matches!(first.status.phase, None | Some(DecisionPhase::Expired)),
                "evaluated without its plan: {:?}",
                first.status.phase
            ),
            Some(plan) => {
                assert_eq!(
                    first.status.plan.as_ref().map(|p| p.digest.clone()),
                    Some(decision_gate::pin::digest(&plan.spec))
                );
                if !plan.spec.action_types.contains(&decision.spec.action_type) {
                    assert_eq!(first.status.phase, Some(DecisionPhase::Rejected));
                }
                if plan.spec.criticality == Some(Criticality::Critical) {
                    assert!(
                        !first.events.iter().any(|e| matches!(e, DecisionEvent::AutoApproved { .. })),
                        "a Critical plan was approved automatically"
                    );
                }
            }
        }
    }
    if approved_now && first.status.phase == Some(DecisionPhase::Approved) {
        let evaluation = first.status.evaluation.as_ref();
        let required = evaluation.map_or(1, |e| e.required_approvals);
        let automatic = first.events.iter().any(|e| matches!(e, DecisionEvent::AutoApproved { .. }));
        assert!(
            automatic || first.status.approvals.len() as u32 >= required,
            "approved with {} of {required} approvals",
            first.status.approvals.len()
        );
    }
    // Looking again at the same moment settles within a few looks (a creation that
    // arrives already answered takes two: evaluation, then the answer), and then nothing
    // more happens.
    let mut current = first;
    for _ in 0..4 {
        decision.status = Some(current.status.clone());
        let next = step(&decision);
        if next.status == current.status {
            assert!(next.events.is_empty(), "a settled Decision announced {:?}", next.events);
            return;
        }
        current = next;
    }
    panic!("the lifecycle never settled: {:?}", current.status.phase);
});

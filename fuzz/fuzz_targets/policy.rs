//! Any Decision against any policies (with any CEL expression): never a panic, and the
//! gate's invariants hold whatever the rules say.
#![no_main]

#[path = "../common/mod.rs"]
mod common;

use arbitrary::Arbitrary;
use decision_gate::api::decision::{Criticality, Outcome};
use decision_gate::policy::{self, Policy, Subject};
use decision_gate::risk;
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

#[derive(Arbitrary, Debug)]
struct Input {
    request: common::Request,
    policies: Vec<common::PolicyInput>,
}

/// One cache for every input, as the operator keeps one for every reconcile.
static EXPRESSIONS: LazyLock<policy::Expressions> = LazyLock::new(Default::default);

fuzz_target!(|input: Input| {
    let Some(decision) = input.request.decision(None) else {
        return;
    };
    let policies: Vec<_> = input.policies.iter().filter_map(|p| p.policy()).collect();
    let views: Vec<Policy<'_>> = policies.iter().map(Policy::of).collect();
    for p in &policies {
        let _ = policy::check(&p.spec);
    }
    let risk = risk::assess(&decision.spec);
    let subject = Subject {
        name: "d",
        namespace: "ns",
        spec: &decision.spec,
        risk: &risk,
    };
    let verdict = policy::evaluate(&subject, &views, &EXPRESSIONS);
    let outcome = verdict.evaluation.outcome;
    match decision.spec.criticality {
        Criticality::Critical => assert_ne!(outcome, Outcome::AutoApprove),
        Criticality::Info => assert!(matches!(
            outcome,
            Outcome::AutoApprove | Outcome::AutoReject
        )),
        _ => {}
    }
    if verdict.evaluation.rule.is_none() && decision.spec.criticality != Criticality::Info {
        assert_eq!(outcome, Outcome::RequireApproval, "no match fails closed");
    }
    // A policy that cannot be applied stops evaluation where it stands: no rule after it
    // decides, and a rule that decides comes from before every such policy.
    if !verdict.skipped.is_empty() {
        assert!(
            verdict.evaluation.rule.is_none(),
            "a rule decided past a broken policy"
        );
        assert_eq!(verdict.skipped.len(), 1);
    }
    if let Some(decider) = verdict
        .evaluation
        .rule
        .as_ref()
        .and(verdict.evaluation.policy.as_deref())
    {
        for p in policy::in_order(&views) {
            if p.name == decider {
                break;
            }
            assert!(
                policy::check(p.spec).is_empty(),
                "{} is broken yet was passed over",
                p.name
            );
        }
    }
    if let Some(d) = verdict.expires_after {
        assert!(d >= decision_gate::api::duration::MIN && d <= decision_gate::api::duration::MAX);
    }
});

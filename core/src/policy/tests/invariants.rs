//! The gate's invariants, whatever the rules say.

use super::*;
use proptest::prelude::*;

fn any_criticality() -> impl Strategy<Value = Criticality> {
    prop_oneof![
        Just(Criticality::Critical),
        Just(Criticality::High),
        Just(Criticality::Normal),
        Just(Criticality::Info)
    ]
}

fn any_outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        Just(Outcome::AutoApprove),
        Just(Outcome::RequireApproval),
        Just(Outcome::AutoReject),
        Just(Outcome::Escalate)
    ]
}

proptest! {
    #[test]
    fn the_gates_invariants_hold_whatever_the_rules_say(
        criticality in any_criticality(),
        outcomes in proptest::collection::vec(any_outcome(), 0..4),
        match_criticality in proptest::option::of(any_criticality()),
        minutes in proptest::option::of(0u32..600),
        amount in 0i64..5000,
    ) {
        let rules: Vec<PolicyRule> = outcomes.iter().enumerate().map(|(i, outcome)| {
            let mut r = rule(&format!("r{i}"), (i % 2 == 1).then_some("decision.context.amount < 2500"));
            r.outcome = *outcome;
            if let Some(c) = match_criticality.filter(|_| i == 0) {
                r.match_.criticalities = vec![c];
            }
            r
        }).collect();
        let mut policy = example_policy("approvalpolicy-budget.yaml");
        policy.spec.rules = rules.clone();
        let mut spec = request("deploy", criticality);
        spec.estimated_duration_minutes = minutes;
        spec.context = Some([("amount".to_owned(), serde_json::json!(amount))].into());
        let policies: Vec<&ApprovalPolicy> = if rules.is_empty() { vec![] } else { vec![&policy] };
        let v = decide(&spec, &policies);
        match criticality {
            Criticality::Critical => prop_assert_ne!(v.evaluation.outcome, Outcome::AutoApprove),
            Criticality::Info => prop_assert!(matches!(v.evaluation.outcome, Outcome::AutoApprove | Outcome::AutoReject)),
            _ => {}
        }
        if v.evaluation.rule.is_none() && criticality != Criticality::Info {
            prop_assert_eq!(v.evaluation.outcome, Outcome::RequireApproval);
        }
        if matches!(v.evaluation.outcome, Outcome::RequireApproval | Outcome::Escalate) {
            prop_assert!(v.evaluation.required_approvals >= 1);
        }
    }
}

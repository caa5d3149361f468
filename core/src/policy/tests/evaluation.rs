//! Which rule decides: the example policies, the order of policies, the invariants, and
//! failing closed.

use super::*;

#[test]
fn each_default_rule_decides_the_decision_made_to_hit_it() {
    let defaults = example_policy("approvalpolicy-defaults.yaml");
    let p = [&defaults];

    let mut deploy = request("deploy", Criticality::Critical);
    deploy.source = Some("agents/release-bot".into());
    let v = decide(&deploy, &p);
    assert_eq!(
        decided_by(&v),
        (Some("critical-escalates"), Outcome::Escalate)
    );
    assert_eq!(v.evaluation.required_approvals, 2);
    assert_eq!(v.evaluation.approvers.groups, ["approvers"]);

    let mut long = request("backup", Criticality::Normal);
    long.estimated_duration_minutes = Some(180);
    assert_eq!(
        decided_by(&decide(&long, &p)),
        (Some("long-running"), Outcome::RequireApproval)
    );

    let mut risky = request("delete_data", Criticality::High);
    risky.source = Some("agents/cleaner".into());
    let v = decide(&risky, &p);
    assert_eq!(
        decided_by(&v),
        (Some("high-risk"), Outcome::RequireApproval)
    );

    for action in ["data_analysis", "report_generation"] {
        let mut short = request(action, Criticality::Normal);
        short.estimated_duration_minutes = Some(20);
        short.source = Some("users/jane".into());
        assert_eq!(
            decided_by(&decide(&short, &p)),
            (Some("analysis-and-reports"), Outcome::RequireApproval),
            "{action}"
        );
    }

    let mut email = request("email", Criticality::Normal);
    email.estimated_duration_minutes = Some(5);
    let v = decide(&email, &p);
    assert_eq!(decided_by(&v), (Some("short-email"), Outcome::AutoApprove));
    assert_eq!(v.evaluation.required_approvals, 0);
    email.estimated_duration_minutes = Some(45);
    assert_eq!(
        decided_by(&decide(&email, &p)),
        (None, Outcome::RequireApproval)
    );

    let follow_up = request("follow_up", Criticality::Normal);
    assert_eq!(crate::risk::assess(&follow_up).level, RiskLevel::Low);
    assert_eq!(
        decided_by(&decide(&follow_up, &p)),
        (Some("low-risk-follow-up"), Outcome::AutoApprove)
    );
    let mut medium = request("follow_up", Criticality::Normal);
    medium.priority = Some(Priority::Medium);
    medium.source = Some("agents/assistant".into());
    assert_eq!(crate::risk::assess(&medium).level, RiskLevel::Medium);
    assert_eq!(
        decided_by(&decide(&medium, &p)),
        (None, Outcome::RequireApproval)
    );
}

#[test]
fn policies_are_tried_by_priority_then_name() {
    let mut a = example_policy("approvalpolicy-budget.yaml");
    a.metadata.name = Some("b-second".into());
    a.spec.priority = 10;
    a.spec.rules.truncate(1);
    a.spec.rules[0].outcome = Outcome::AutoReject;
    let mut b = a.clone();
    b.metadata.name = Some("a-first".into());
    b.spec.rules[0].outcome = Outcome::Escalate;
    let mut c = a.clone();
    c.metadata.name = Some("before-all".into());
    c.spec.priority = 5;
    c.spec.rules[0].match_.action_types = vec!["other".into()];
    let mut small = request("budget_spend", Criticality::Normal);
    small.context = Some([("amount".to_owned(), serde_json::json!(1))].into());
    let v = decide(&small, &[&a, &b, &c]);
    assert_eq!(v.evaluation.policy.as_deref(), Some("a-first"));
    let tried: Vec<&str> = v.trace.iter().map(|t| t.policy.as_str()).collect();
    assert_eq!(tried, ["before-all", "a-first"]);
}

#[test]
fn critical_is_never_auto_approved_and_says_why() {
    let mut everything = example_policy("approvalpolicy-budget.yaml");
    everything.spec.rules = vec![rule("approve-all", None)];
    let v = decide(&request("deploy", Criticality::Critical), &[&everything]);
    assert_eq!(v.evaluation.outcome, Outcome::RequireApproval);
    assert_eq!(v.evaluation.required_approvals, 1);
    assert!(
        v.evaluation
            .message
            .contains("never approved automatically"),
        "{}",
        v.evaluation.message
    );
}

#[test]
fn info_needs_no_confirmation_but_can_be_rejected() {
    let v = decide(&request("status_update", Criticality::Info), &[]);
    assert_eq!(v.evaluation.outcome, Outcome::AutoApprove);
    assert!(v.evaluation.message.contains("needs no confirmation"));

    let mut block = example_policy("approvalpolicy-budget.yaml");
    block.spec.rules = vec![rule("block", None)];
    block.spec.rules[0].outcome = Outcome::AutoReject;
    let v = decide(&request("status_update", Criticality::Info), &[&block]);
    assert_eq!(v.evaluation.outcome, Outcome::AutoReject);
}

#[test]
fn a_rule_can_match_on_the_plan() {
    let mut only_rollouts = rule("rollouts", None);
    only_rollouts.match_.plans = vec!["roll-out".into()];
    let spec = spec(vec![only_rollouts]);
    let m = &spec.rules[0].match_;
    let risk = crate::risk::assess(&request("deploy", Criticality::Normal));
    let mut d = request("deploy", Criticality::Normal);
    let subject = |d: &DecisionSpec| {
        matches(
            m,
            &Subject {
                name: "d",
                namespace: "ns",
                spec: &d.clone(),
                risk: &risk,
            },
            &Default::default(),
            &Expressions::default(),
        )
    };
    assert_eq!(
        subject(&d),
        Err(Miss::No("the Decision names no plan".to_owned()))
    );
    d.plan_ref = Some(crate::api::decision::PlanRef {
        name: "drop-db".into(),
    });
    assert_eq!(
        subject(&d),
        Err(Miss::No("plan drop-db is not one of roll-out".to_owned()))
    );
    d.plan_ref = Some(crate::api::decision::PlanRef {
        name: "roll-out".into(),
    });
    assert_eq!(subject(&d), Ok(()));
}

#[test]
fn no_match_and_no_policy_fail_closed() {
    let v = decide(&request("deploy", Criticality::Normal), &[]);
    assert_eq!(decided_by(&v), (None, Outcome::RequireApproval));
    assert!(v.evaluation.message.contains("no ApprovalPolicy"));
}

#[test]
fn a_policy_that_cannot_be_applied_requires_approval_where_it_stands() {
    let defaults = example_policy("approvalpolicy-defaults.yaml");
    let mut email = request("email", Criticality::Normal);
    email.estimated_duration_minutes = Some(5);
    assert_eq!(
        decided_by(&decide(&email, &[&defaults])),
        (Some("short-email"), Outcome::AutoApprove)
    );

    // Tried first and broken: what it would have said is unknown, so nothing after it
    // may approve automatically.
    let mut broken = example_policy("approvalpolicy-budget.yaml");
    broken.metadata.name = Some("aaa-broken".into());
    broken.spec.priority = 1;
    broken.spec.rules = vec![rule("reject-all", Some("decision.context.amount <"))];
    let v = decide(&email, &[&broken, &defaults]);
    assert_eq!(v.evaluation.outcome, Outcome::RequireApproval);
    assert_eq!(v.evaluation.policy.as_deref(), Some("aaa-broken"));
    assert!(
        v.evaluation.message.contains("cannot be applied"),
        "{}",
        v.evaluation.message
    );
    assert_eq!(v.skipped.len(), 1);
    assert_eq!(v.skipped[0].0, "aaa-broken");

    // One that could not be read at all fails closed the same way.
    let mut unreadable = example_policy("approvalpolicy-budget.yaml");
    unreadable.metadata.name = Some("lost".into());
    unreadable.spec.unreadable = Some("unknown variant `Sometimes`".into());
    let v = decide(&email, &[&unreadable, &defaults]);
    assert_eq!(v.evaluation.outcome, Outcome::RequireApproval);
    assert!(
        v.evaluation
            .message
            .contains("the policy cannot be read: unknown variant"),
        "{}",
        v.evaluation.message
    );

    // Tried after the rule that decides, it changes nothing.
    broken.spec.priority = 100_000;
    let v = decide(&email, &[&broken, &defaults]);
    assert_eq!(decided_by(&v), (Some("short-email"), Outcome::AutoApprove));
    assert!(v.skipped.is_empty());
}

#[test]
fn the_fingerprint_follows_names_and_generations() {
    let spec = spec(vec![rule("r", None)]);
    let one = [Policy {
        name: "a",
        generation: 1,
        spec: &spec,
    }];
    let two = [Policy {
        name: "a",
        generation: 2,
        spec: &spec,
    }];
    let renamed = [Policy {
        name: "b",
        generation: 1,
        spec: &spec,
    }];
    assert_eq!(fingerprint(&one), fingerprint(&one));
    assert_ne!(fingerprint(&one), fingerprint(&two));
    assert_ne!(fingerprint(&one), fingerprint(&renamed));
    assert_ne!(fingerprint(&one), fingerprint(&[]));
}

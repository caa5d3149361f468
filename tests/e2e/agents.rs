//! Agents run as ServiceAccounts. What an agent may do is ask: its answer counts only
//! where a rule names it, and the person it acts for cannot approve what it asked.

use decision_gate::api::{Decision, DecisionPhase};
use kube::Api;

use crate::support::*;

const POLICY: &str = "apiVersion: decisiongate.io/v1alpha1\nkind: ApprovalPolicy\nmetadata: {name: agents}\nspec: {rules: [\n  {name: restarts-by-bot, match: {actionTypes: [restart_service]}, outcome: RequireApproval, approvers: {serviceAccounts: [NS/bot]}},\n  {name: people, match: {}, outcome: RequireApproval, approvers: {groups: [approvers, system:serviceaccounts]}}]}\n";

#[tokio::test]
async fn a_service_account_that_may_approve_counts_only_where_a_rule_names_it() {
    let ns = TestNamespace::new("agents").await;
    let n = ns.name.as_str();
    let bot = format!("system:serviceaccount:{n}:bot");
    kubectl_admin(&["create", "serviceaccount", "bot", "-n", n]).success();
    // The bot holds the approver role: RBAC alone would let it approve.
    bind_role(n, "decision-gate-approver", "User", &[&bot]);
    apply(n, &POLICY.replace("NS/", &format!("{n}/"))).success();
    let bot_config = service_account_kubeconfig(n, "bot");
    let _operator = Operator::start(n).await;
    let api: Api<Decision> = Api::namespaced(admin().await, n);

    // A rule that admits its group but does not name it: refused, and said why.
    apply(
        n,
        &decision(
            "deploy",
            "{actionType: deploy, description: Deploy 2.0, criticality: High}",
        ),
    )
    .success();
    reaches(&api, "deploy", DecisionPhase::Pending).await;
    let refused = kubectl(
        &bot_config,
        &[
            "annotate",
            "-n",
            n,
            "decision",
            "deploy",
            &format!("approved-by={bot}"),
        ],
        None,
    )
    .refused();
    assert!(
        refused.contains(&format!(
            "{bot} is a ServiceAccount: an agent may answer only where the rule names it in approvers.serviceAccounts ({n}/bot)"
        )),
        "{refused}"
    );

    // A rule that names it: its approval counts, recorded as a ServiceAccount's.
    apply(
        n,
        &decision(
            "restart",
            "{actionType: restart_service, description: Restart the API, criticality: High}",
        ),
    )
    .success();
    reaches(&api, "restart", DecisionPhase::Pending).await;
    kubectl(
        &bot_config,
        &[
            "annotate",
            "-n",
            n,
            "decision",
            "restart",
            &format!("approved-by={bot}"),
        ],
        None,
    )
    .success();
    let d = reaches(&api, "restart", DecisionPhase::Approved).await;
    let approval = &d.status.unwrap().approvals[0];
    assert_eq!(approval.approver, bot);
    assert!(approval.service_account, "{approval:?}");
    let entries = std::fs::read_to_string(Operator::audit_log(n)).unwrap();
    assert!(
        entries.lines().any(|l| l.contains("approval_granted")
            && l.contains(&bot)
            && l.contains(r#""service_account":true"#)),
        "{entries}"
    );
}

#[tokio::test]
async fn the_person_an_agent_acts_for_cannot_approve_its_request() {
    let ns = TestNamespace::new("behalf").await;
    let n = ns.name.as_str();
    grant_answering(n);
    kubectl_admin(&["create", "serviceaccount", "bot", "-n", n]).success();
    bind_role(
        n,
        "decision-gate-requester",
        "User",
        &[&format!("system:serviceaccount:{n}:bot")],
    );
    apply(n, &POLICY.replace("NS/", &format!("{n}/"))).success();
    let _operator = Operator::start(n).await;
    let bot_config = service_account_kubeconfig(n, "bot");
    kubectl(
        &bot_config,
        &["apply", "-n", n, "-f", "-"],
        Some(&decision(
            "for-alice",
            "{actionType: deploy, description: Deploy what alice asked for, criticality: High, onBehalfOf: alice}",
        )),
    )
    .success();
    let api: Api<Decision> = Api::namespaced(admin().await, n);
    let d = reaches(&api, "for-alice", DecisionPhase::Pending).await;
    let status = d.status.unwrap();
    assert_eq!(
        status.requested_by.as_deref(),
        Some(format!("system:serviceaccount:{n}:bot").as_str())
    );
    assert_eq!(status.on_behalf_of.as_deref(), Some("alice"));

    let refused = plugin("alice", &["approve", "for-alice", "-n", n]);
    assert!(!refused.ok, "{}", refused.stdout);
    assert!(
        refused.stderr.contains(
            "this Decision was requested on behalf of alice (spec.onBehalfOf), who cannot approve it"
        ),
        "{}",
        refused.stderr
    );
    plugin("bob", &["approve", "for-alice", "-n", n]).success();
    reaches(&api, "for-alice", DecisionPhase::Approved).await;
    let entries = std::fs::read_to_string(Operator::audit_log(n)).unwrap();
    assert!(
        entries
            .lines()
            .any(|l| l.contains("decision_requested") && l.contains(r#""on_behalf_of":"alice""#)),
        "{entries}"
    );
}

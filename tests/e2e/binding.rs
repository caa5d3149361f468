//! What runs is exactly what people approved: the plan is pinned when the Decision is
//! requested, an approval confirms the pinned content, a plan runs only for the action
//! types it names and at its own criticality, and no answer is lost.

use decision_gate::api::{Decision, DecisionPhase};
use kube::Api;

use crate::support::*;

fn plan(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: decisiongate.io/v1alpha1\nkind: ExecutionPlan\nmetadata: {{name: {name}}}\nspec: {spec}\n"
    )
}

const ASK: &str = "apiVersion: decisiongate.io/v1alpha1\nkind: ApprovalPolicy\nmetadata: {name: ask}\nspec: {rules: [{name: ask, outcome: RequireApproval}]}\n";

const SHIP: &str = "{actionTypes: [ship], mode: Real, rollbackStrategy: None, steps: [{name: roll-out, template: {spec: {restartPolicy: Never, serviceAccountName: deployer, containers: [{name: main, image: 'api:2.0', args: [roll-out, --to, '2.0']}]}}}]}";

fn condition(d: &Decision, type_: &str) -> (String, String) {
    let c = d
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
        .unwrap_or_else(|| panic!("no {type_} condition: {:?}", d.status));
    (c.reason.clone(), c.message.clone())
}

fn jobs_in(namespace: &str) -> String {
    kubectl_admin(&["get", "jobs", "-n", namespace, "-o", "name"]).success()
}

#[tokio::test]
async fn a_plan_edited_after_the_request_never_runs_its_new_steps() {
    let ns = TestNamespace::new("pinned").await;
    let n = ns.name.as_str();
    grant_answering(n);
    let _operator = Operator::start_allowing_real(n).await;
    apply(n, ASK).success();
    apply(n, &plan("ship", SHIP)).success();
    apply(
        n,
        &decision(
            "ship-2-0",
            "{actionType: ship, description: Ship 2.0, criticality: Normal, planRef: {name: ship}}",
        ),
    )
    .success();
    let api: Api<Decision> = Api::namespaced(admin().await, n);
    let d = reaches(&api, "ship-2-0", DecisionPhase::Pending).await;
    let status = d.status.unwrap();
    let digest = status.digest.expect("an evaluated Decision has a digest");
    let pinned = status.plan.expect("the plan is pinned at evaluation");

    // The approver's view shows what will run and the digest they approve.
    let shown = plugin("alice", &["show", "ship-2-0", "-n", n]).success();
    assert!(shown.contains(&format!("Digest {digest}")), "{shown}");
    assert!(shown.contains(&pinned.digest), "{shown}");
    assert!(shown.contains("image:   api:2.0"), "{shown}");
    assert!(shown.contains("runs:    roll-out --to 2.0"), "{shown}");
    assert!(shown.contains("ServiceAccount deployer"), "{shown}");
    let wide = kubectl_admin(&["get", "dec", "ship-2-0", "-n", n, "-o", "wide"]).success();
    assert!(wide.contains("DIGEST") && wide.contains(&digest), "{wide}");
    assert!(
        wide.contains("IMAGES") && wide.contains("api:2.0"),
        "{wide}"
    );

    // Someone edits the plan before anyone answers; the view says so.
    apply(
        n,
        &plan("ship", &SHIP.replace("'api:2.0'", "'drop-everything:1'")),
    )
    .success();
    wait_until("the view to show the change", || {
        plugin("alice", &["show", "ship-2-0", "-n", n])
            .success()
            .contains("changed after this Decision was requested")
    })
    .await;
    // Approved all the same (for what was pinned), it never runs the changed plan.
    annotate_as("alice", n, "ship-2-0", &["approved-by=alice"]);
    let d = reaches(&api, "ship-2-0", DecisionPhase::Failed).await;
    let (reason, message) = condition(&d, "Executed");
    assert_eq!(reason, "PlanChanged");
    assert!(message.contains("request a new Decision"), "{message}");
    assert!(d.status.unwrap().execution.is_none());
    assert_eq!(jobs_in(n), "", "no Job was created");
}

#[tokio::test]
async fn a_plan_runs_only_for_its_action_types_and_never_below_its_criticality() {
    let ns = TestNamespace::new("plan-scope").await;
    let n = ns.name.as_str();
    let _operator = Operator::start(n).await;
    apply(n, "apiVersion: decisiongate.io/v1alpha1\nkind: ApprovalPolicy\nmetadata: {name: lax}\nspec: {rules: [{name: everything-goes, outcome: AutoApprove}]}\n").success();
    apply(n, &plan("drop-db", "{actionTypes: [delete_data], criticality: Critical, mode: DryRun, steps: [{name: drop, template: {spec: {restartPolicy: Never, containers: [{name: main, image: 'psql:16', args: [drop, database]}]}}}]}")).success();
    let api: Api<Decision> = Api::namespaced(admin().await, n);

    // An "email" that names the plan that drops a database is refused, before anyone is asked.
    apply(n, &decision("sneaky", "{actionType: send_email, description: Weekly email, criticality: Normal, planRef: {name: drop-db}}")).success();
    let d = reaches(&api, "sneaky", DecisionPhase::Rejected).await;
    let rejection = d.status.unwrap().rejection.unwrap();
    assert_eq!(
        rejection.reason,
        "the ExecutionPlan drop-db carries out delete_data, not send_email"
    );

    // A real deletion claiming to be Normal is evaluated as Critical: never auto-approved.
    apply(n, &decision("cleanup", "{actionType: delete_data, description: Drop the old database, criticality: Normal, planRef: {name: drop-db}}")).success();
    let d = reaches(&api, "cleanup", DecisionPhase::Pending).await;
    let evaluation = d.status.unwrap().evaluation.unwrap();
    assert_eq!(
        evaluation.criticality,
        Some(decision_gate::api::decision::Criticality::Critical)
    );
    assert!(
        evaluation.message.contains("never approved automatically"),
        "{}",
        evaluation.message
    );

    // A Decision whose plan does not exist yet waits, unevaluated, and is pinned once it does.
    apply(n, &decision("early", "{actionType: delete_data, description: Clean up, criticality: High, planRef: {name: later}}")).success();
    wait_for(
        &api,
        "early",
        "waiting for its plan",
        |d: Option<&Decision>| {
            d.and_then(|d| d.status.as_ref())
                .is_some_and(|s| s.conditions.iter().any(|c| c.reason == "WaitingForPlan"))
        },
    )
    .await;
    assert_eq!(phase(api.get("early").await.ok().as_ref()), None);
    apply(n, &plan("later", "{actionTypes: [delete_data], mode: DryRun, steps: [{name: clean, template: {spec: {restartPolicy: Never, containers: [{name: main, image: busybox}]}}}]}")).success();
    let d = wait_for(
        &api,
        "early",
        "pinned and approved",
        |d: Option<&Decision>| {
            d.and_then(|d| d.status.as_ref()).is_some_and(|s| {
                s.plan.is_some()
                    && s.approvals.is_empty()
                    && s.conditions
                        .iter()
                        .any(|c| c.type_ == "Approved" && c.reason == "AutoApproved")
            })
        },
    )
    .await;
    assert_eq!(d.status.unwrap().plan.unwrap().name, "later");
}

#[tokio::test]
async fn a_stale_digest_is_ignored_and_no_answer_is_lost() {
    let ns = TestNamespace::new("answers").await;
    let n = ns.name.as_str();
    grant_answering(n);
    apply(n, "apiVersion: decisiongate.io/v1alpha1\nkind: ApprovalPolicy\nmetadata: {name: two}\nspec: {rules: [{name: two-people, outcome: RequireApproval, requiredApprovals: 2}]}\n").success();
    apply(
        n,
        &plan("ship", &SHIP.replace("mode: Real", "mode: DryRun")),
    )
    .success();
    apply(
        n,
        &decision(
            "ship-2-0",
            "{actionType: ship, description: Ship 2.0, criticality: High, planRef: {name: ship}}",
        ),
    )
    .success();
    let api: Api<Decision> = Api::namespaced(admin().await, n);
    {
        let _operator = Operator::start(n).await;
        reaches(&api, "ship-2-0", DecisionPhase::Pending).await;
        // alice approves what she saw a while ago: not what is pinned.
        let out = plugin(
            "alice",
            &[
                "approve",
                "ship-2-0",
                "-n",
                n,
                "--digest",
                "sha256:0123456789abcdef",
            ],
        );
        let said = out.refused();
        assert!(
            said.contains("does not count") && said.contains("but this Decision's digest is"),
            "{said}"
        );
        let status = api.get("ship-2-0").await.unwrap().status.unwrap();
        assert!(status.approvals.is_empty());
        assert!(
            status.ignored_answers[0]
                .reason
                .contains("look again with kubectl decision show"),
            "{:?}",
            status.ignored_answers
        );
    }

    // The operator is down between two answers. alice answers again (what is pinned, as
    // the plugin reads it); bob may not replace her answer before it is recorded.
    let out = plugin("alice", &["approve", "ship-2-0", "-n", n]).success();
    assert!(
        out.contains("(plan ship, 1 step(s)); the Decision's digest is sha256:"),
        "{out}"
    );
    let refusal = annotate_refused_as("bob", n, "ship-2-0", "approved-by=bob");
    assert!(
        refusal.contains("the answer approved-by=alice has not been recorded by the operator yet"),
        "{refusal}"
    );
    // Nor slip another digest under her approval: that would be approving in her name.
    let refusal = annotate_refused_as("bob", n, "ship-2-0", "approval-digest=sha256:ffffffffffff");
    assert!(
        refusal
            .contains("you are authenticated as bob, so approved-by may only name you, not alice"),
        "{refusal}"
    );

    let _operator = Operator::start(n).await;
    wait_for(
        &api,
        "ship-2-0",
        "alice's approval recorded",
        |d: Option<&Decision>| {
            d.and_then(|d| d.status.as_ref())
                .is_some_and(|s| s.approvals.iter().any(|a| a.approver == "alice"))
        },
    )
    .await;
    plugin("bob", &["approve", "ship-2-0", "-n", n]).success();
    let d = reaches(&api, "ship-2-0", DecisionPhase::Succeeded).await;
    let status = d.status.unwrap();
    let approvers: Vec<&str> = status
        .approvals
        .iter()
        .map(|a| a.approver.as_str())
        .collect();
    assert_eq!(approvers, ["alice", "bob"], "both answers count");
    // Each confirmed exactly this Decision: its digest and its uid.
    assert!(
        status
            .approvals
            .iter()
            .all(|a| a.digest == status.digest && a.uid == d.metadata.uid)
    );
}

#[tokio::test]
async fn an_approval_lapses_if_the_plan_cannot_start_in_time_and_not_before_holds_the_plan() {
    let ns = TestNamespace::new("timing").await;
    let n = ns.name.as_str();
    grant_answering(n);
    let _operator = Operator::start(n).await;
    apply(n, "apiVersion: decisiongate.io/v1alpha1\nkind: ApprovalPolicy\nmetadata: {name: timing}\nspec: {rules: [{name: restarts, match: {actionTypes: [restart_service]}, outcome: AutoApprove}, {name: briefly, outcome: RequireApproval, approvalValidFor: 3s}]}\n").success();
    apply(
        n,
        &plan(
            "ship",
            &SHIP
                .replace(
                    "actionTypes: [ship]",
                    "actionTypes: [ship, restart_service]",
                )
                .replace("mode: Real", "mode: DryRun"),
        ),
    )
    .success();
    let api: Api<Decision> = Api::namespaced(admin().await, n);
    let at = |seconds: i64| (chrono::Utc::now() + chrono::Duration::seconds(seconds)).to_rfc3339();

    // Approved for three seconds, but the change window opens in an hour: the approval
    // lapses, the Decision waits again and says why, and a new approval counts.
    apply(n, &decision("tonight", &format!("{{actionType: ship, description: Ship tonight, criticality: High, planRef: {{name: ship}}, notBefore: '{}'}}", at(3600)))).success();
    reaches(&api, "tonight", DecisionPhase::Pending).await;
    plugin("alice", &["approve", "tonight", "-n", n]).success();
    let approved = api.get("tonight").await.unwrap();
    let status = approved.status.clone().unwrap();
    assert!(status.approval_valid_until.is_some(), "{status:?}");
    let lapsed = wait_for(
        &api,
        "tonight",
        "the approval to lapse",
        |d: Option<&Decision>| {
            d.and_then(|d| d.status.as_ref()).is_some_and(|s| {
                s.phase == Some(DecisionPhase::Pending)
                    && s.conditions.iter().any(|c| c.reason == "ApprovalLapsed")
            })
        },
    )
    .await;
    let (_, message) = condition(&lapsed, "Approved");
    assert!(message.contains("approve again"), "{message}");
    let shown = plugin("alice", &["show", "tonight", "-n", n]).success();
    assert!(
        shown.contains("lapsed at") && shown.contains("not before:"),
        "{shown}"
    );
    plugin("alice", &["approve", "tonight", "-n", n]).success();
    let again = api.get("tonight").await.unwrap().status.unwrap();
    assert_eq!(again.approvals.len(), 1);
    assert!(again.approvals[0].lapsed_at.is_none(), "{again:?}");
    assert_eq!(again.phase, Some(DecisionPhase::Approved));

    // Approved at once, started only once notBefore has come.
    let opens = chrono::Utc::now() + chrono::Duration::seconds(4);
    apply(n, &decision("soon", &format!("{{actionType: restart_service, description: Restart at the window, criticality: Normal, planRef: {{name: ship}}, notBefore: '{}'}}", opens.to_rfc3339()))).success();
    let waiting = wait_for(
        &api,
        "soon",
        "waiting for notBefore",
        |d: Option<&Decision>| {
            d.and_then(|d| d.status.as_ref())
                .is_some_and(|s| s.conditions.iter().any(|c| c.reason == "NotBefore"))
        },
    )
    .await;
    assert_eq!(phase(Some(&waiting)), Some(DecisionPhase::Approved));
    let done = reaches(&api, "soon", DecisionPhase::Succeeded).await;
    let started = done.status.unwrap().execution.unwrap().started_at.unwrap();
    assert!(started >= opens, "started {started}, window opened {opens}");
}

//! What was approved cannot be revived, swapped or erased by someone who may only patch a
//! Decision: each write such a person may make to what the gate relies on is refused by the
//! chart's admission policies or ignored by the operator, with a reason, and the audit log
//! says what happened.

use decision_gate::api::{Decision, DecisionPhase};
use k8s_openapi::api::batch::v1::Job;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use serde_json::Value;

use crate::support::*;

fn audited(namespace: &str, event_type: &str) -> Vec<Value> {
    Operator::audited(namespace, event_type)
}

/// Where a Decision stands: its phase and its approvals so far.
fn standing(d: &Decision) -> (Option<DecisionPhase>, Option<&str>) {
    let status = d.status.as_ref();
    (
        status.and_then(|s| s.phase),
        status.and_then(|s| s.approval_progress.as_deref()),
    )
}

/// A Role that lets `user` read and patch Decisions, and nothing more: no `approve`, no
/// `delete`.
fn may_only_patch(namespace: &str, user: &str) {
    apply(namespace, &format!("apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: patch-decisions-{user}}}\nrules:\n- {{apiGroups: [decisiongate.io], resources: [decisions], verbs: [get, list, watch, patch]}}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: patch-decisions-{user}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: patch-decisions-{user}}}\nsubjects:\n- {{apiGroup: rbac.authorization.k8s.io, kind: User, name: {user}}}\n")).success();
}

fn jobs(namespace: &str) -> String {
    kubectl_admin(&["get", "jobs", "-n", namespace, "-o", "name"]).success()
}

const SHIP_PLAN: &str = "apiVersion: decisiongate.io/v1alpha1\nkind: ExecutionPlan\nmetadata: {name: ship}\nspec: {actionTypes: [ship], mode: Real, rollbackStrategy: None, steps: [{name: roll-out, template: {spec: {restartPolicy: Never, containers: [{name: main, image: busybox}]}}}]}\n";

fn approvals_of(d: &Decision) -> Vec<(String, Option<String>, bool)> {
    d.status
        .as_ref()
        .map(|s| {
            s.approvals
                .iter()
                .map(|a| (a.approver.clone(), a.reason.clone(), a.lapsed_at.is_some()))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_lapsed_approval_comes_back_only_when_its_approver_gives_it_again() {
    let ns = TestNamespace::new("revive").await;
    let n = ns.name.as_str();
    grant_answering(n);
    may_only_patch(n, "dave");
    let _operator = Operator::start(n).await;
    apply(n, "apiVersion: decisiongate.io/v1alpha1\nkind: ApprovalPolicy\nmetadata: {name: brief}\nspec: {rules: [{name: two-briefly, outcome: RequireApproval, requiredApprovals: 2, approvalValidFor: 3s}]}\n").success();
    apply(n, &SHIP_PLAN.replace("mode: Real", "mode: DryRun")).success();
    // The change window opens in an hour: approvals lapse before the plan may start.
    let opens = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    apply(n, &decision("d1", &format!("{{actionType: ship, description: Ship tonight, criticality: High, planRef: {{name: ship}}, notBefore: '{opens}'}}"))).success();
    let api: Api<Decision> = Api::namespaced(admin().await, n);
    reaches(&api, "d1", DecisionPhase::Pending).await;
    plugin("alice", &["approve", "d1", "-n", n]).success();
    plugin("bob", &["approve", "d1", "-n", n, "-r", "change window"]).success();
    reaches(&api, "d1", DecisionPhase::Approved).await;
    let lapsed = wait_for(
        &api,
        "d1",
        "the approvals to lapse",
        |d: Option<&Decision>| {
            d.and_then(|d| d.status.as_ref()).is_some_and(|s| {
                s.phase == Some(DecisionPhase::Pending)
                    && s.approvals.iter().all(|a| a.lapsed_at.is_some())
            })
        },
    )
    .await;
    assert_eq!(
        lapsed.status.unwrap().approval_progress.as_deref(),
        Some("0/2")
    );

    // dave may patch, but not bob's answer: not its reason, its time, its digest, nor the
    // answer itself.
    for pair in ["approval-reason=revived by dave", "approval-reason-"] {
        let said = annotate_refused_as("dave", n, "d1", pair);
        assert!(
            said.contains(
                "approval-reason belongs to the approval of bob, and only they may change them"
            ),
            "{said}"
        );
    }
    for pair in [
        "approved-at=2027-01-01T00:00:00Z",
        "approval-digest=sha256:0123456789abcdef",
    ] {
        let said = annotate_refused_as("dave", n, "d1", pair);
        assert!(
            said.contains(
                "you are authenticated as dave, so approved-by may only name you, not bob"
            ),
            "{said}"
        );
    }
    let said = annotate_refused_as("dave", n, "d1", "approved-by-");
    assert!(
        said.contains("approved-by belongs to the approval of bob"),
        "{said}"
    );
    // Nor what the API server said of bob.
    let said = annotate_refused_as(
        "dave",
        n,
        "d1",
        "decisiongate.io/approver-groups=[\"approvers\"]",
    );
    assert!(said.contains("nobody writes them"), "{said}");
    // Nor frame someone for a deletion.
    let said = annotate_refused_as("dave", n, "d1", "decisiongate.io/deleted-by=alice");
    assert!(said.contains("only the operator writes them"), "{said}");

    // bob may edit his own reason, but a reason is not an approval: his stays lapsed.
    annotate_as("bob", n, "d1", &["approval-reason=still fine"]);
    // carol's approval is recorded after that edit: by then the operator has seen it.
    plugin("carol", &["approve", "d1", "-n", n]).success();
    let d = api.get("d1").await.unwrap();
    assert_eq!(standing(&d), (Some(DecisionPhase::Pending), Some("1/2")));
    assert!(
        approvals_of(&d).contains(&("bob".to_owned(), Some("change window".to_owned()), true)),
        "{:?}",
        approvals_of(&d)
    );

    // bob approving again counts, and every counted approval has its audit line.
    plugin("bob", &["approve", "d1", "-n", n, "-r", "still fine"]).success();
    reaches(&api, "d1", DecisionPhase::Approved).await;
    let granted: Vec<String> = audited(n, "approval_granted")
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["approver"].as_str().unwrap(),
                e["reason"].as_str().unwrap_or("-")
            )
        })
        .collect();
    assert_eq!(
        granted,
        ["alice -", "bob change window", "carol -", "bob still fine"],
        "{granted:?}"
    );
    assert_eq!(audited(n, "approval_lapsed").len(), 1);
}

#[tokio::test]
async fn patch_never_becomes_delete_and_an_approval_never_counts_for_a_decision_swapped_under_its_name()
 {
    let ns = TestNamespace::new("swap").await;
    let n = ns.name.as_str();
    grant_answering(n);
    bind_role(n, "decision-gate-requester", "User", &["carol"]);
    let witness = DeletionWitness::new(n);
    let mut args: Vec<&str> = witness.args.iter().map(String::as_str).collect();
    args.push("--allow-real-execution");
    let operator = Operator::spawn(n, &ensure_installed().await, &args)
        .ready()
        .await;
    apply(n, "apiVersion: decisiongate.io/v1alpha1\nkind: ApprovalPolicy\nmetadata: {name: one}\nspec: {rules: [{name: one-person, outcome: RequireApproval}]}\n").success();
    apply(n, SHIP_PLAN).success();
    // Approved for tonight's window, so it waits with alice's approval in its status.
    let tonight = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    apply(n, &decision("ship", &format!("{{actionType: ship, description: Ship 2.0, criticality: High, context: {{version: 2.0.0}}, planRef: {{name: ship}}, notBefore: '{tonight}'}}"))).success();
    let api: Api<Decision> = Api::namespaced(admin().await, n);
    let first = reaches(&api, "ship", DecisionPhase::Pending).await;
    let reviewed = first.status.as_ref().unwrap().digest.clone().unwrap();
    let first_uid = first.uid().unwrap();
    assert!(
        first
            .finalizers()
            .contains(&"decisiongate.io/audit".to_owned())
    );
    plugin(
        "alice",
        &["approve", "ship", "-n", n, "--digest", &reviewed],
    )
    .success();
    reaches(&api, "ship", DecisionPhase::Approved).await;

    // carol, an approver, may patch Decisions but not delete them: nor may she have the
    // garbage collector delete one, nor take away what keeps its deletion audited.
    let carol = user_kubeconfig("carol");
    let patch = |p: &str, kind: &str| {
        kubectl(
            &carol,
            &[
                "patch", "decision", "ship", "-n", n, "--type", kind, "-p", p,
            ],
            None,
        )
        .refused()
    };
    let said = patch(
        r#"{"metadata":{"ownerReferences":[{"apiVersion":"v1","kind":"ConfigMap","name":"gone","uid":"00000000-0000-0000-0000-000000000001"}]}}"#,
        "merge",
    );
    assert!(
        said.contains("only the decision-gate operator and cluster administrators may change the ownerReferences of a Decision"),
        "{said}"
    );
    let said = patch(r#"[{"op":"remove","path":"/metadata/finalizers"}]"#, "json");
    assert!(
        said.contains("may change the finalizers of a Decision"),
        "{said}"
    );
    let said = patch(
        r#"{"metadata":{"finalizers":["decisiongate.io/audit","example.com/never"]}}"#,
        "merge",
    );
    assert!(
        said.contains("may change the finalizers of a Decision"),
        "{said}"
    );
    let said = kubectl(&carol, &["delete", "decision", "ship", "-n", n], None).refused();
    assert!(said.contains("cannot delete resource"), "{said}");
    assert_eq!(api.get("ship").await.unwrap().uid().unwrap(), first_uid);

    // An administrator deletes it. The deletion waits for the audit: its last state,
    // alice's approval in it, and who deleted it as the API server told the operator, are
    // on disk before the Decision is gone.
    witness.wait_called(&operator, n, "ship").await;
    kubectl_admin(&["delete", "decision", "ship", "-n", n, "--timeout=60s"]).success();
    let deleted = audited(n, "decision_deleted");
    assert_eq!(deleted.len(), 1, "{deleted:?}");
    assert_eq!(deleted[0]["actor"], "admin");
    assert_eq!(deleted[0]["details"]["deleted_by"], "admin");
    assert_eq!(deleted[0]["decision"]["uid"], first_uid.as_str());
    assert_eq!(deleted[0]["details"]["status"]["phase"], "Approved");
    assert_eq!(
        deleted[0]["details"]["status"]["approvals"][0]["approver"],
        "alice"
    );
    assert_eq!(deleted[0]["details"]["spec"]["context"]["version"], "2.0.0");

    // Asking, she cannot bring along what only the API server says: who deleted, or the
    // groups of an approver.
    for (note, refusal) in [
        (
            "decisiongate.io/deleted-by: alice",
            "only the operator writes them",
        ),
        (
            "decisiongate.io/approver-groups: '[\"approvers\"]'",
            "nobody writes them",
        ),
    ] {
        let forged = decision(
            "forged",
            "{actionType: ship, description: Ship, criticality: High}",
        )
        .replace(
            "metadata: {name: forged}",
            &format!("metadata: {{name: forged, annotations: {{{note}}}}}"),
        );
        let said = kubectl(&carol, &["apply", "-n", n, "-f", "-"], Some(&forged)).refused();
        assert!(said.contains(refusal), "{said}");
    }

    // carol asks again under the same name: the same plan, another context, now.
    kubectl(
        &carol,
        &["apply", "-n", n, "-f", "-"],
        Some(&decision("ship", "{actionType: ship, description: Ship 2.0, criticality: High, context: {version: 9.9.9-untested, dropTables: 'true'}, planRef: {name: ship}}")),
    )
    .success();
    let second = wait_for(
        &api,
        "ship",
        "asked again and waiting",
        |d: Option<&Decision>| {
            d.is_some_and(|d| d.uid().as_deref() != Some(first_uid.as_str()))
                && phase(d) == Some(DecisionPhase::Pending)
        },
    )
    .await;
    let current = second.status.as_ref().unwrap().digest.clone().unwrap();
    assert_ne!(
        current, reviewed,
        "the same plan, another request: another digest"
    );
    assert_eq!(
        second
            .status
            .as_ref()
            .unwrap()
            .plan
            .as_ref()
            .unwrap()
            .digest,
        first.status.as_ref().unwrap().plan.as_ref().unwrap().digest,
        "the plan's own digest is the same"
    );

    // alice confirms the digest she reviewed: it does not count, and she is told why.
    let said = plugin(
        "alice",
        &["approve", "ship", "-n", n, "--digest", &reviewed],
    )
    .refused();
    assert!(
        said.contains("does not count") && said.contains("but this Decision's digest is"),
        "{said}"
    );
    // Nor does an approval that names the uid she saw.
    annotate_as(
        "bob",
        n,
        "ship",
        &[
            "approved-by=bob",
            &format!("approval-uid={first_uid}"),
            "approved-at=2027-01-01T00:00:00Z",
        ],
    );
    let d = wait_for(
        &api,
        "ship",
        "bob's approval ignored",
        |d: Option<&Decision>| {
            d.and_then(|d| d.status.as_ref())
                .is_some_and(|s| s.ignored_answers.iter().any(|i| i.user == "bob"))
        },
    )
    .await;
    let status = d.status.unwrap();
    assert!(status.approvals.is_empty(), "{:?}", status.approvals);
    assert_eq!(status.phase, Some(DecisionPhase::Pending));
    let bobs = status
        .ignored_answers
        .iter()
        .find(|i| i.user == "bob")
        .unwrap();
    assert!(
        bobs.reason
            .contains("deleted and created again under the same name"),
        "{bobs:?}"
    );
    assert_eq!(jobs(n), "", "nothing ran");
    let ignored: Vec<String> = audited(n, "answer_ignored")
        .iter()
        .map(|e| e["approver"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ignored, ["alice", "bob"]);
    // What it asks now, approved as what it is, runs: the gate held, it did not jam.
    plugin("alice", &["approve", "ship", "-n", n]).success();
    reaches(&api, "ship", DecisionPhase::Succeeded).await;
    assert!(jobs(n).contains("ship-roll-out"), "{}", jobs(n));
}

#[tokio::test]
async fn approvals_are_checked_again_when_the_rule_changes_by_group_as_well_as_by_user() {
    let ns = TestNamespace::new("regroup").await;
    let n = ns.name.as_str();
    grant_answering(n);
    let _operator = Operator::start(n).await;
    let rule = |group: &str| {
        format!(
            "apiVersion: decisiongate.io/v1alpha1\nkind: ApprovalPolicy\nmetadata: {{name: gate}}\nspec: {{rules: [{{name: two-of-a-group, outcome: RequireApproval, requiredApprovals: 2, approvers: {{groups: [{group}]}}}}]}}\n"
        )
    };
    apply(n, &rule("sre")).success();
    apply(
        n,
        &decision(
            "deploy",
            "{actionType: deploy, description: Deploy 2.0, criticality: High}",
        ),
    )
    .success();
    let api: Api<Decision> = Api::namespaced(admin().await, n);
    reaches(&api, "deploy", DecisionPhase::Pending).await;
    plugin("carol", &["approve", "deploy", "-n", n]).success();
    let d = api.get("deploy").await.unwrap();
    let carols = &d.status.as_ref().unwrap().approvals[0];
    assert!(
        carols
            .groups
            .as_ref()
            .is_some_and(|g| g.contains(&"sre".to_owned())),
        "the groups the API server saw are recorded: {carols:?}"
    );
    assert_eq!(
        d.annotations()["decisiongate.io/approver-groups"],
        serde_json::to_string(carols.groups.as_ref().unwrap()).unwrap()
    );

    // The admin changes the rule: two from group approvers. carol's approval stops counting.
    apply(n, &rule("approvers")).success();
    wait_for(
        &api,
        "deploy",
        "carol's approval discounted",
        |d: Option<&Decision>| {
            d.and_then(|d| d.status.as_ref())
                .is_some_and(|s| s.approval_progress.as_deref() == Some("0/2"))
        },
    )
    .await;
    let shown = plugin("alice", &["show", "deploy", "-n", n]).success();
    assert!(
        shown.contains("(does not count under the rule that decides now)"),
        "{shown}"
    );
    let discounted = audited(n, "approval_discounted");
    assert_eq!(discounted.len(), 1, "{discounted:?}");
    assert_eq!(discounted[0]["approver"], "carol");
    assert!(
        discounted[0]["reason"]
            .as_str()
            .unwrap()
            .contains("groups: approvers"),
        "{}",
        discounted[0]
    );

    // alice alone does not complete it; bob does.
    plugin("alice", &["approve", "deploy", "-n", n]).success();
    let d = api.get("deploy").await.unwrap();
    assert_eq!(standing(&d), (Some(DecisionPhase::Pending), Some("1/2")));
    plugin("bob", &["approve", "deploy", "-n", n]).success();
    let d = reaches(&api, "deploy", DecisionPhase::Approved).await;
    let condition = d
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Approved")
        .unwrap();
    assert_eq!(condition.message, "approved by alice, bob");
}

#[tokio::test]
async fn what_people_wrote_is_shown_escaped_in_the_terminal() {
    let ns = TestNamespace::new("escapes").await;
    let n = ns.name.as_str();
    grant_answering(n);
    let _operator = Operator::start(n).await;
    apply(n, "apiVersion: decisiongate.io/v1alpha1\nkind: ApprovalPolicy\nmetadata: {name: two}\nspec: {rules: [{name: two-people, outcome: RequireApproval, requiredApprovals: 2}]}\n").success();
    // A description that, printed raw, would go up a line and draw a fake count, and a
    // context key that would reverse what follows it.
    let manifest = serde_json::json!({
        "apiVersion": "decisiongate.io/v1alpha1",
        "kind": "Decision",
        "metadata": {"name": "sneaky"},
        "spec": {
            "actionType": "deploy",
            "description": "Deploy 2.0\n\u{1b}[1A\u{1b}[2KApprovals: 2/2",
            "criticality": "High",
            "context": {"\u{202e}noisrev": "\u{1b}]0;owned\u{7}2.0"},
        },
    });
    apply(n, &manifest.to_string()).success();
    let api: Api<Decision> = Api::namespaced(admin().await, n);
    reaches(&api, "sneaky", DecisionPhase::Pending).await;
    plugin(
        "alice",
        &["approve", "sneaky", "-n", n, "-r", "ok\u{1b}[31m red"],
    )
    .success();

    let shown = plugin("bob", &["show", "sneaky", "-n", n]).success();
    let raw = |text: &str| {
        text.chars()
            .any(|c| c == '\u{1b}' || c == '\u{7}' || c == '\u{202e}')
    };
    assert!(!raw(&shown), "{shown:?}");
    assert!(
        shown.contains(r"Deploy 2.0\n\x1b[1A\x1b[2KApprovals: 2/2"),
        "{shown}"
    );
    assert!(
        shown.contains(r#"\u{202e}noisrev: "\\x1b]0;owned\\x072.0""#),
        "{shown}"
    );
    assert!(shown.contains(r"ok\x1b[31m red"), "{shown}");
    let counts: Vec<&str> = shown
        .lines()
        .filter(|l| l.starts_with("Approvals:"))
        .collect();
    assert_eq!(counts, ["Approvals: 1/2"], "{shown}");
    for args in [
        vec!["list", "-n", n],
        vec!["list", "-n", n, "-o", "json"],
        vec!["list", "-n", n, "-o", "yaml"],
        vec!["explain", "sneaky", "-n", n],
    ] {
        let out = plugin("bob", &args).success();
        assert!(!raw(&out), "{args:?}: {out:?}");
    }
    let json = plugin("bob", &["list", "-n", n, "-o", "json"]).success();
    let items: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        items[0]["spec"]["description"], "Deploy 2.0\n\u{1b}[1A\u{1b}[2KApprovals: 2/2",
        "JSON keeps the same text, escaped"
    );
    let audit =
        decision_gate(&["audit", "show", Operator::audit_log(n).to_str().unwrap()]).success();
    assert!(!raw(&audit), "{audit:?}");
}

#[tokio::test]
async fn an_approval_given_by_impersonation_names_who_gave_it() {
    let ns = TestNamespace::new("impersonated").await;
    let n = ns.name.as_str();
    grant_answering(n);
    let _operator = Operator::start(n).await;
    apply(n, "apiVersion: decisiongate.io/v1alpha1\nkind: ApprovalPolicy\nmetadata: {name: one}\nspec: {rules: [{name: one-person, outcome: RequireApproval}]}\n").success();
    apply(
        n,
        &decision(
            "deploy",
            "{actionType: deploy, description: Deploy 2.0, criticality: High}",
        ),
    )
    .success();
    // A bridge (a chat bot, say) that may act as bob and say so, as itself only.
    let bridge = format!("system:serviceaccount:{n}:bridge");
    service_account_token(n, "bridge");
    let role = format!("{n}-bridge");
    let rbac = format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: {role}}}\nrules:\n- {{apiGroups: [''], resources: [users], resourceNames: [bob], verbs: [impersonate]}}\n- {{apiGroups: [''], resources: [groups], resourceNames: [approvers], verbs: [impersonate]}}\n- {{apiGroups: [authentication.k8s.io], resources: [userextras/decisiongate.io/impersonator], resourceNames: ['{bridge}'], verbs: [impersonate]}}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {{name: {role}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {role}}}\nsubjects:\n- {{kind: ServiceAccount, name: bridge, namespace: {n}}}\n"
    );
    apply(n, &rbac).success();
    let api: Api<Decision> = Api::namespaced(admin().await, n);
    reaches(&api, "deploy", DecisionPhase::Pending).await;
    let as_bob = |impersonator: &str| {
        let kubeconfig = service_account_kubeconfig(n, "bridge");
        let impersonator = impersonator.to_owned();
        async move {
            let options = kube::config::KubeConfigOptions::default();
            let file = kube::config::Kubeconfig::read_from(&kubeconfig).unwrap();
            let mut config = kube::Config::from_custom_kubeconfig(file, &options)
                .await
                .unwrap();
            config.auth_info.impersonate = Some("bob".into());
            config.auth_info.impersonate_groups = Some(vec!["approvers".into()]);
            config.auth_info.impersonate_user_extra = Some(
                [(
                    "decisiongate.io/impersonator".to_owned(),
                    vec![impersonator],
                )]
                .into(),
            );
            kube::Client::try_from(config).unwrap()
        }
    };
    wait_until("the bridge's rights to be in force", || {
        kubectl_admin(&["auth", "can-i", "impersonate", "users/bob", "--as", &bridge])
            .stdout
            .trim()
            == "yes"
    })
    .await;
    let approve = decision_gate::answer::Answer::Approve {
        reason: Some("from chat".into()),
        digest: None,
    };
    let wait = std::time::Duration::from_secs(30);

    // It may not name someone else as the one who approves through it.
    let client = as_bob("system:serviceaccount:kube-system:someone-else").await;
    let refused = decision_gate::answer::give(&client, n, "deploy", &approve, wait)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("impersonate"), "{refused}");

    let client = as_bob(&bridge).await;
    let given = decision_gate::answer::give(&client, n, "deploy", &approve, wait)
        .await
        .unwrap();
    assert_eq!(given.me, "bob");
    let d = reaches(&api, "deploy", DecisionPhase::Approved).await;
    let approval = &d.status.unwrap().approvals[0];
    assert_eq!(approval.approver, "bob");
    assert_eq!(approval.impersonator.as_deref(), Some(bridge.as_str()));
    let granted = audited(n, "approval_granted");
    assert_eq!(granted[0]["details"]["impersonator"], bridge.as_str());
    assert!(
        granted[0]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("approved by bob, given through {bridge}")),
        "{}",
        granted[0]
    );
    let _ = kubectl(
        &admin_kubeconfig(),
        &["delete", "--ignore-not-found", "-f", "-"],
        Some(&rbac),
    );
}

#[tokio::test]
async fn the_requester_cannot_approve_the_rollback_of_what_they_asked() {
    let ns = TestNamespace::new("own-rollback").await;
    let n = ns.name.as_str();
    grant_answering(n);
    bind_role(n, "decision-gate-requester", "User", &["alice"]);
    let _operator = Operator::start_allowing_real(n).await;
    apply(n, AUTO_APPROVE_SHIPPING).success();
    apply(n, "apiVersion: decisiongate.io/v1alpha1\nkind: ExecutionPlan\nmetadata: {name: fails}\nspec: {actionTypes: [ship], mode: Real, rollbackStrategy: Manual, steps: [{name: first, template: {metadata: {annotations: {decisiongate.io/test-result: first done}}, spec: {restartPolicy: Never, containers: [{name: main, image: busybox}]}}, rollback: {template: {spec: {restartPolicy: Never, containers: [{name: main, image: busybox}]}}}}, {name: verify, template: {metadata: {labels: {decisiongate.io/test-outcome: fail}}, spec: {restartPolicy: Never, containers: [{name: main, image: busybox}]}}}]}\n").success();
    kubectl(
        &user_kubeconfig("alice"),
        &["apply", "-n", n, "-f", "-"],
        Some(&decision(
            "mine",
            "{actionType: ship, description: Ship it, criticality: Normal, planRef: {name: fails}}",
        )),
    )
    .success();
    let api: Api<Decision> = Api::namespaced(admin().await, n);
    reaches(&api, "mine", DecisionPhase::Failed).await;
    let said = annotate_refused_as("alice", n, "mine", "rollback-approved-by=alice");
    assert!(
        said.contains("alice requested this Decision and cannot approve it or its rollback"),
        "{said}"
    );
    annotate_as("bob", n, "mine", &["rollback-approved-by=bob"]);
    let d = reaches(&api, "mine", DecisionPhase::RolledBack).await;
    assert_eq!(
        d.status
            .unwrap()
            .execution
            .unwrap()
            .rollback
            .unwrap()
            .approved_by
            .as_deref(),
        Some("bob")
    );
    let rolled: Vec<Job> = Api::<Job>::namespaced(admin().await, n)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert!(
        rolled.iter().any(|j| j.name_any() == "mine-first-rollback"),
        "{rolled:?}"
    );
}

#[tokio::test]
async fn the_audit_log_is_readable_by_the_operator_alone_or_its_group_in_the_chart() {
    use std::os::unix::fs::PermissionsExt;
    let ns = TestNamespace::new("audit-mode").await;
    let n = ns.name.as_str();
    let _operator = Operator::start(n).await;
    apply(
        n,
        &decision(
            "logged",
            "{actionType: deploy, description: Deploy, criticality: Info}",
        ),
    )
    .success();
    let api: Api<Decision> = Api::namespaced(admin().await, n);
    reaches(&api, "logged", DecisionPhase::Approved).await;
    let mode = std::fs::metadata(Operator::audit_log(n))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
    // The chart runs it with a group (fsGroup) that may read the log, never write it.
    let rendered = helm_template(
        "modes",
        RELEASE_NAMESPACE,
        &[
            "--show-only",
            "templates/deployment.yaml",
            "--set",
            "replicaCount=1",
        ],
    );
    assert!(rendered.contains("--audit-group-readable"), "{rendered}");
    let rendered = helm_template(
        "modes",
        RELEASE_NAMESPACE,
        &[
            "--show-only",
            "templates/deployment.yaml",
            "--set",
            "replicaCount=1",
            "--set",
            "podSecurityContext.fsGroup=null",
        ],
    );
    assert!(!rendered.contains("--audit-group-readable"), "{rendered}");
}

#[tokio::test]
async fn a_deletion_by_the_garbage_collector_is_audited_with_who_did_it() {
    let ns = TestNamespace::new("collected").await;
    let n = ns.name.as_str();
    let witness = DeletionWitness::new(n);
    let args: Vec<&str> = witness.args.iter().map(String::as_str).collect();
    let operator = Operator::spawn(n, &ensure_installed().await, &args)
        .ready()
        .await;
    // Whoever creates a Decision may give it an owner: it goes with its owner.
    kubectl_admin(&["create", "configmap", "release-train", "-n", n]).success();
    let owner = kubectl_admin(&[
        "get",
        "configmap",
        "release-train",
        "-n",
        n,
        "-o",
        "jsonpath={.metadata.uid}",
    ])
    .success();
    apply(n, &decision("owned", "{actionType: deploy, description: Deploy, criticality: High}").replace(
        "metadata: {name: owned}",
        &format!("metadata: {{name: owned, ownerReferences: [{{apiVersion: v1, kind: ConfigMap, name: release-train, uid: {owner}}}]}}"),
    ))
    .success();
    let api: Api<Decision> = Api::namespaced(admin().await, n);
    reaches(&api, "owned", DecisionPhase::Pending).await;
    witness.wait_called(&operator, n, "owned").await;
    kubectl_admin(&["delete", "configmap", "release-train", "-n", n]).success();
    wait_until("the Decision to go with its owner", || {
        !kubectl_admin(&["get", "decision", "owned", "-n", n]).ok
    })
    .await;
    let deleted = audited(n, "decision_deleted");
    assert_eq!(deleted.len(), 1, "{deleted:?}");
    assert_eq!(
        deleted[0]["details"]["deleted_by"],
        "system:serviceaccount:kube-system:generic-garbage-collector"
    );
    assert_eq!(deleted[0]["details"]["status"]["phase"], "Pending");
}

//! `kubectl decision` as alice and bob use it against the local control plane.

use decision_gate::api::{Decision, DecisionPhase};
use kube::Api;

use crate::support::*;

#[tokio::test]
async fn people_review_and_answer_with_kubectl_decision() {
    let ns = TestNamespace::new("plugin").await;
    let n = ns.name.as_str();
    grant_answering(n);
    let _operator = Operator::start(n).await;
    apply(n, "apiVersion: decisiongate.io/v1alpha1\nkind: ApprovalPolicy\nmetadata: {name: gate}\nspec: {rules: [{name: mail, match: {actionTypes: [email]}, outcome: AutoApprove}, {name: two-keys, match: {actionTypes: [deploy]}, outcome: RequireApproval, requiredApprovals: 2, approvers: {groups: [approvers]}}, {name: anything-else, outcome: RequireApproval}]}\n").success();
    apply(n, &decision("deploy-v2", "{actionType: deploy, description: Deploy v2, criticality: High, context: {version: 2.0.0}}")).success();
    apply(
        n,
        &decision(
            "restart-cache",
            "{actionType: restart_service, description: Restart the cache, criticality: High}",
        ),
    )
    .success();
    apply(
        n,
        &decision(
            "purge",
            "{actionType: delete_data, description: Purge old rows, criticality: High}",
        ),
    )
    .success();
    apply(
        n,
        &decision(
            "status-mail",
            "{actionType: email, description: Weekly mail, criticality: Normal}",
        ),
    )
    .success();
    let api: Api<Decision> = Api::namespaced(admin().await, n);
    for name in ["deploy-v2", "restart-cache", "purge", "status-mail"] {
        wait_for(&api, name, "evaluated", |d: Option<&Decision>| {
            d.and_then(|d| d.status.as_ref())
                .and_then(|s| s.phase)
                .is_some()
        })
        .await;
    }

    // list: exactly the Decisions that wait, with why.
    let out = plugin("alice", &["list", "-n", n]).success();
    let rows: Vec<&str> = out.lines().collect();
    assert!(
        rows[0].starts_with("NAME") && rows[0].contains("APPROVALS") && rows[0].ends_with("WHY"),
        "{out}"
    );
    let mut names: Vec<&str> = rows[1..]
        .iter()
        .map(|r| r.split_whitespace().next().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["deploy-v2", "purge", "restart-cache"], "{out}");
    assert!(
        out.contains("gate/two-keys: RequireApproval") && out.contains("0/2"),
        "{out}"
    );
    let all = plugin("alice", &["list", "-n", n, "--all"]).success();
    assert!(all.contains("status-mail"), "{all}");
    let json = plugin("alice", &["list", "-n", n, "-o", "json"]).success();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&json)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        3
    );

    // show and explain: what a reviewer needs, and which rule decided why.
    let shown = plugin("bob", &["show", "deploy-v2", "-n", n]).success();
    for needle in [
        "Deploy v2",
        "version: \"2.0.0\"",
        "decided by:   policy gate, rule two-keys",
        "needs:        2 approval(s)",
        "groups approvers",
        "Risk: ",
    ] {
        assert!(shown.contains(needle), "no {needle:?} in:\n{shown}");
    }
    let explained = plugin("bob", &["explain", "deploy-v2", "-n", n]).success();
    assert!(
        explained.contains("gate/mail: does not match: actionType deploy is not one of email"),
        "{explained}"
    );
    assert!(
        explained.contains("=> decided by policy gate, rule two-keys: RequireApproval"),
        "{explained}"
    );

    // approve and reject, as the user the API server says they are.
    let out = plugin(
        "alice",
        &["approve", "restart-cache", "-n", n, "-r", "cache is stale"],
    )
    .success();
    assert_eq!(
        out.trim(),
        format!("approved {n}/restart-cache as alice (1/1); it is now Approved")
    );
    let out = plugin("alice", &["approve", "deploy-v2", "-n", n]).success();
    assert!(out.contains("(1/2); it is now Pending"), "{out}");
    let out = plugin("bob", &["approve", "deploy-v2", "-n", n]).success();
    assert!(out.contains("as bob (2/2); it is now Approved"), "{out}");
    let out = plugin(
        "carol",
        &["reject", "purge", "-n", n, "-r", "we still need those rows"],
    )
    .success();
    assert!(
        out.contains("rejected") && out.contains("it is now Rejected"),
        "{out}"
    );
    let purge = api
        .get("purge")
        .await
        .unwrap()
        .status
        .unwrap()
        .rejection
        .unwrap();
    assert_eq!(
        (purge.rejected_by.as_str(), purge.reason.as_str()),
        ("carol", "we still need those rows")
    );

    // Refusals say why.
    apply(
        n,
        &decision(
            "deploy-v3",
            "{actionType: deploy, description: Deploy v3, criticality: High}",
        ),
    )
    .success();
    wait_for(&api, "deploy-v3", "Pending", |d: Option<&Decision>| {
        d.and_then(|d| d.status.as_ref()).and_then(|s| s.phase) == Some(DecisionPhase::Pending)
    })
    .await;
    let err = plugin("carol", &["approve", "deploy-v3", "-n", n]).refused();
    assert!(
        err.contains("refused by the admission policy decision-gate-answers: carol is not among the approvers of this Decision"),
        "{err}"
    );
    let err = plugin("alice", &["approve", "restart-cache", "-n", n]).refused();
    assert!(
        err.contains("it is Approved, not waiting for an answer"),
        "{err}"
    );
    let err = plugin("alice", &["approve", "no-such-thing", "-n", n]).refused();
    assert!(
        err.contains(&format!("no Decision no-such-thing in namespace {n}")),
        "{err}"
    );
    let err = plugin("dave", &["list", "-n", n]).refused();
    assert!(err.contains("forbidden"), "{err}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kubectl-decision"))
        .args(["--kubeconfig", "/nonexistent/kubeconfig", "list"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("no cluster to talk to"));
}

#[tokio::test]
async fn history_and_the_audit_log_come_through_the_api_server() {
    let ns = TestNamespace::new("history").await;
    let n = ns.name.as_str();
    grant_answering(n);
    bind_role(n, "decision-gate-auditor", "User", &["alice"]);
    let (_operator, _relay) = operator_behind_service(n).await;

    apply(
        n,
        &decision(
            "rotate-keys",
            "{actionType: rotate_keys, description: Rotate the signing keys, criticality: High}",
        ),
    )
    .success();
    let api: Api<Decision> = Api::namespaced(admin().await, n);
    wait_for(&api, "rotate-keys", "Pending", |d: Option<&Decision>| {
        d.and_then(|d| d.status.as_ref()).and_then(|s| s.phase) == Some(DecisionPhase::Pending)
    })
    .await;
    plugin(
        "bob",
        &[
            "approve",
            "rotate-keys",
            "-n",
            n,
            "-r",
            "scheduled rotation",
        ],
    )
    .success();

    let at = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend_from_slice(&["-n", n, "--operator-namespace", n]);
        all.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let args = at(&["history", "--decision", "rotate-keys", "--since", "1h"]);
    let history = plugin(
        "alice",
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .success();
    let events: Vec<&str> = history
        .lines()
        .map(|l| l.split_whitespace().nth(2).unwrap())
        .collect();
    assert_eq!(
        events,
        [
            "decision_requested",
            "policy_evaluated",
            "approval_requested",
            "approval_granted"
        ],
        "{history}"
    );
    assert!(
        history.contains("bob") && history.contains("scheduled rotation"),
        "{history}"
    );

    let args = at(&["audit", "verify"]);
    let verified = plugin(
        "alice",
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .success();
    assert!(verified.starts_with("intact: 4 entries"), "{verified}");

    let copy = repo_root()
        .join("target/e2e-logs")
        .join(format!("{n}-export.jsonl"));
    let args = at(&["audit", "export", "-o", copy.to_str().unwrap()]);
    plugin(
        "alice",
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .success();
    let out = decision_gate(&["audit", "verify", copy.to_str().unwrap()]).success();
    assert!(out.starts_with("ok: 4 entries"), "{out}");

    // Reading the audit log is a right of its own.
    let args = at(&["audit", "verify"]);
    let err = plugin(
        "carol",
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .refused();
    assert!(
        err.contains("forbidden: reading the audit log takes get on services/proxy"),
        "{err}"
    );
}

/// A Role in `namespace` with `verbs` on Decisions and nothing on ApprovalPolicies, bound
/// to `user`; returns once the API server's RBAC grants it.
async fn decisions_only(namespace: &str, user: &str, verbs: &str) {
    let role = format!("decisions-only-{user}");
    apply(
        namespace,
        &format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: {role}}}\nrules:\n- {{apiGroups: [decisiongate.io], resources: [decisions], verbs: [{verbs}]}}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: {role}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: {role}}}\nsubjects:\n- {{apiGroup: rbac.authorization.k8s.io, kind: User, name: {user}}}\n"
        ),
    )
    .success();
    wait_can(user, namespace, &["get", "decisions.decisiongate.io"]).await;
}

#[track_caller]
fn no_dump(said: &str) {
    for dump in ["Status {", "ErrorResponse", "ApiError", "Some("] {
        assert!(!said.contains(dump), "{dump:?} in:\n{said}");
    }
}

#[tokio::test]
async fn who_may_not_read_the_policies_is_told_what_the_status_records_and_refusals_are_sentences()
{
    let ns = TestNamespace::new("plugin-rights").await;
    let n = ns.name.as_str();
    // dave may read and answer Decisions but not read the policies; carol may only read
    // Decisions.
    decisions_only(n, "dave", "get, list, watch, patch, approve").await;
    decisions_only(n, "carol", "get, list, watch").await;
    let _operator = Operator::start(n).await;
    apply(n, "apiVersion: decisiongate.io/v1alpha1\nkind: ApprovalPolicy\nmetadata: {name: gate}\nspec: {rules: [{name: mail, match: {actionTypes: [email]}, outcome: AutoApprove}, {name: two-keys, match: {actionTypes: [deploy]}, outcome: RequireApproval, requiredApprovals: 2, approvers: {users: [dave], groups: [approvers]}}]}\n").success();
    apply(
        n,
        &decision(
            "deploy-v2",
            "{actionType: deploy, description: Deploy v2, criticality: High}",
        ),
    )
    .success();
    let api: Api<Decision> = Api::namespaced(admin().await, n);
    let d = wait_for(&api, "deploy-v2", "Pending", |d: Option<&Decision>| {
        phase(d) == Some(DecisionPhase::Pending)
    })
    .await;
    let status = d.status.unwrap();
    let evaluation = status.evaluation.unwrap();

    // explain without the right to list ApprovalPolicies: what the status records, the
    // right that would show more, and the API server's sentence.
    let explained = plugin("dave", &["explain", "deploy-v2", "-n", n]).success();
    no_dump(&explained);
    for needle in [
        "=> decided by policy gate, rule two-keys: RequireApproval.".to_owned(),
        evaluation.message.clone(),
        "needs 2 approval(s), from users dave; groups approvers".to_owned(),
        format!(
            "Risk {} (score {})",
            status.risk.as_ref().unwrap().level,
            status.risk.as_ref().unwrap().score
        ),
        format!("`list` on approvalpolicies.decisiongate.io in namespace {n}"),
        format!(
            "the API server answered 403 Forbidden: approvalpolicies.decisiongate.io is forbidden: User \"dave\" cannot list resource \"approvalpolicies\" in API group \"decisiongate.io\" in the namespace \"{n}\""
        ),
    ] {
        assert!(
            explained.contains(&needle),
            "no {needle:?} in:\n{explained}"
        );
    }
    // The rule-by-rule replay is not pretended.
    assert!(!explained.contains("does not match"), "{explained}");

    // A write the API server refuses is told in its own sentence.
    let err = plugin("carol", &["approve", "deploy-v2", "-n", n]).refused();
    no_dump(&err);
    assert!(
        err.contains(&format!("decisions.decisiongate.io \"deploy-v2\" is forbidden: User \"carol\" cannot patch resource \"decisions\" in API group \"decisiongate.io\" in the namespace \"{n}\"")),
        "{err}"
    );
    // So is a read, in a namespace where nothing grants her anything (other tests bind
    // roles in namespaces such as default).
    let nowhere = unique_name("nowhere");
    let err = plugin("carol", &["explain", "deploy-v2", "-n", &nowhere]).refused();
    no_dump(&err);
    assert!(
        err.contains("User \"carol\" cannot get resource \"decisions\""),
        "{err}"
    );
    // And a rejection: nothing is written.
    let err = plugin("carol", &["reject", "deploy-v2", "-n", n, "-r", "no"]).refused();
    no_dump(&err);
    assert!(err.contains("cannot patch resource \"decisions\""), "{err}");
    let unchanged = api.get("deploy-v2").await.unwrap();
    assert_eq!(phase(Some(&unchanged)), Some(DecisionPhase::Pending));
}

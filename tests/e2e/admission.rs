//! An approval is only worth something if nobody can fake it: the chart's admission
//! policies refuse every false or unauthorised answer, with a message that says why, and
//! the operator's ServiceAccount gets nothing it does not need.

use decision_gate::api::{Decision, DecisionPhase};
use kube::{Api, ResourceExt};

use crate::support::*;

fn refused_as(user: &str, namespace: &str, args: &[&str]) -> String {
    let mut all = vec!["-n", namespace];
    all.extend_from_slice(args);
    kubectl(&user_kubeconfig(user), &all, None).refused()
}

async fn pending(api: &Api<Decision>, name: &str) {
    wait_for(
        api,
        name,
        "waiting for an answer",
        |d: Option<&Decision>| {
            d.and_then(|d| d.status.as_ref())
                .and_then(|s| s.phase)
                .is_some_and(|p| p.is_awaiting_answer())
        },
    )
    .await;
}

#[tokio::test]
async fn only_true_and_authorised_answers_are_admitted() {
    let ns = TestNamespace::new("admission").await;
    let n = ns.name.as_str();
    grant_answering(n);
    bind_role(n, "decision-gate-requester", "User", &["alice"]);
    // dave may edit Decisions, but holds no "approve".
    apply(n, "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: edit-decisions}\nrules:\n- {apiGroups: [decisiongate.io], resources: [decisions, decisions/status], verbs: [get, patch, update]}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: edit-decisions}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: edit-decisions}\nsubjects:\n- {apiGroup: rbac.authorization.k8s.io, kind: User, name: dave}\n- {apiGroup: rbac.authorization.k8s.io, kind: User, name: alice}\n").success();
    let _operator = Operator::start(n).await;
    apply(n, "apiVersion: decisiongate.io/v1alpha1\nkind: ApprovalPolicy\nmetadata: {name: gate}\nspec: {rules: [{name: approvers-only, match: {actionTypes: [deploy]}, outcome: RequireApproval, approvers: {groups: [approvers]}}, {name: anyone, outcome: RequireApproval}]}\n").success();
    let api: Api<Decision> = Api::namespaced(admin().await, n);

    // The requester is who the API server says, whatever the client claims.
    apply(
        n,
        &decision(
            "claimed",
            "{actionType: restart_service, description: Restart, criticality: High}",
        )
        .replace(
            "metadata: {name: claimed}",
            "metadata: {name: claimed, annotations: {decisiongate.io/requested-by: mallory}}",
        ),
    )
    .success();
    pending(&api, "claimed").await;
    let d = api.get("claimed").await.unwrap();
    assert_eq!(d.annotations()["decisiongate.io/requested-by"], "admin");
    assert_eq!(d.status.unwrap().requested_by.as_deref(), Some("admin"));

    // bob may not speak for alice.
    let err = refused_as(
        "bob",
        n,
        &["annotate", "decision", "claimed", "approved-by=alice"],
    );
    assert!(
        err.contains("you are authenticated as bob, so approved-by may only name you, not alice"),
        "{err}"
    );

    // dave holds no "approve".
    let err = refused_as(
        "dave",
        n,
        &["annotate", "decision", "claimed", "approved-by=dave"],
    );
    assert!(err.contains("dave may not answer Decisions"), "{err}");
    assert!(err.contains("approve"), "{err}");

    // alice may not approve what she asked for.
    kubectl(
        &user_kubeconfig("alice"),
        &["apply", "-n", n, "-f", "-"],
        Some(&decision(
            "alices",
            "{actionType: restart_service, description: Mine, criticality: High}",
        )),
    )
    .success();
    pending(&api, "alices").await;
    let err = refused_as(
        "alice",
        n,
        &["annotate", "decision", "alices", "approved-by=alice"],
    );
    assert!(
        err.contains("alice requested this Decision and cannot approve it"),
        "{err}"
    );

    // carol is not in the group the rule names.
    apply(
        n,
        &decision(
            "deploy",
            "{actionType: deploy, description: Deploy, criticality: High}",
        ),
    )
    .success();
    pending(&api, "deploy").await;
    let err = refused_as(
        "carol",
        n,
        &["annotate", "decision", "deploy", "approved-by=carol"],
    );
    assert!(
        err.contains("carol is not among the approvers of this Decision"),
        "{err}"
    );
    assert!(err.contains("groups: approvers"), "{err}");
    annotate_as("alice", n, "deploy", &["approved-by=alice"]);

    // Nobody creates a Decision that is already answered.
    let err = apply(
        n,
        &decision(
            "pre-approved",
            "{actionType: deploy, description: Sneaky, criticality: High}",
        )
        .replace(
            "metadata: {name: pre-approved}",
            "metadata: {name: pre-approved, annotations: {approved-by: admin}}",
        ),
    )
    .refused();
    assert!(err.contains("cannot be created already answered"), "{err}");

    // An Expired Decision can no longer be approved.
    apply(n, &decision("late", "{actionType: restart_service, description: Too late, criticality: High, expiresAfter: 2s}")).success();
    wait_for(&api, "late", "Expired", |d: Option<&Decision>| {
        d.and_then(|d| d.status.as_ref()).and_then(|s| s.phase) == Some(DecisionPhase::Expired)
    })
    .await;
    let err = refused_as(
        "bob",
        n,
        &["annotate", "decision", "late", "approved-by=bob"],
    );
    assert!(
        err.contains("the Decision is Expired and can no longer be approved or rejected"),
        "{err}"
    );

    // Only the operator writes a status.
    let err = refused_as(
        "alice",
        n,
        &[
            "patch",
            "decision",
            "alices",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"phase":"Approved"}}"#,
        ],
    );
    assert!(err.contains("only the decision-gate operator"), "{err}");
    assert!(err.contains("alice may not"), "{err}");

    // And the requester annotation cannot be rewritten afterwards.
    let err = apply(
        n,
        &decision(
            "claimed",
            "{actionType: restart_service, description: Restart, criticality: High}",
        )
        .replace(
            "metadata: {name: claimed}",
            "metadata: {name: claimed, annotations: {decisiongate.io/requested-by: mallory}}",
        ),
    )
    .refused();
    assert!(
        err.contains("records who asked and cannot be changed"),
        "{err}"
    );
}

#[tokio::test]
async fn the_operator_account_gets_nothing_it_does_not_need() {
    let operator = ensure_installed().await;
    let err = kubectl(&operator, &["get", "secrets", "-n", "kube-system"], None).refused();
    assert!(err.contains("Forbidden"), "{err}");
    let err = kubectl(&operator, &["create", "namespace", "not-mine"], None).refused();
    assert!(err.contains("Forbidden"), "{err}");
    // It reads Decisions and writes their status, but never deletes or rewrites one.
    for verb in ["delete", "update"] {
        let answer = kubectl(
            &operator,
            &[
                "auth",
                "can-i",
                verb,
                "decisions.decisiongate.io",
                "-n",
                "default",
            ],
            None,
        );
        assert!(
            !answer.ok && answer.stdout.trim() == "no",
            "{verb}: {}",
            answer.stdout
        );
    }
    // What it does need, it has.
    kubectl(
        &operator,
        &["auth", "can-i", "create", "jobs.batch", "-n", "default"],
        None,
    )
    .success();
    kubectl(
        &operator,
        &[
            "auth",
            "can-i",
            "patch",
            "decisions.decisiongate.io",
            "--subresource=status",
            "-n",
            "default",
        ],
        None,
    )
    .success();
}

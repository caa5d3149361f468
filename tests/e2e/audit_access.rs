//! Who may read the audit log: the operator serves `/audit/*` only to callers whose token
//! the API server accepts (TokenReview) and whose RBAC allows `get` on `decisions/audit`
//! (SubjectAccessReview), whether they reach its port directly or come through the API
//! server's service proxy with `kubectl decision`.

use decision_gate::api::{Decision, DecisionPhase};
use kube::Api;

use crate::support::*;

/// Creates a Decision and waits until the operator has logged what it asked for.
async fn something_logged(n: &str) {
    apply(
        n,
        &decision(
            "drop-table",
            "{actionType: delete_data, description: Drop the old table, criticality: High}",
        ),
    )
    .success();
    let api: Api<Decision> = Api::namespaced(admin().await, n);
    reaches(&api, "drop-table", DecisionPhase::Pending).await;
}

#[tokio::test]
async fn the_audit_port_refuses_callers_the_api_server_does_not_vouch_for() {
    let ns = TestNamespace::new("audit-access").await;
    let n = ns.name.as_str();
    let nobody = service_account_token(n, "nobody");
    let reader = service_account_token(n, "reader");
    bind_service_account(n, "decision-gate-auditor", "reader");
    // A reader of another namespace's entries may not read this operator's log.
    let other = TestNamespace::new("audit-other").await;
    let elsewhere = service_account_token(&other.name, "reader");
    bind_service_account(&other.name, "decision-gate-auditor", "reader");
    wait_can_read_audit(&format!("system:serviceaccount:{n}:reader"), n).await;
    wait_can_read_audit(
        &format!("system:serviceaccount:{}:reader", other.name),
        &other.name,
    )
    .await;

    let operator = Operator::start(n).await;
    something_logged(n).await;
    let bearer = |token: &str| format!("Bearer {token}");

    // Probes and scrapers still need nothing.
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(operator.get(path).await.unwrap().0, 200, "{path}");
    }

    // No token: refused, saying what it takes.
    for path in ["/audit/export", "/audit/verify", "/audit/entries"] {
        let (status, body) = operator.get(path).await.unwrap();
        assert_eq!(status, 401, "{path}: {body}");
        assert!(body.contains("takes a bearer token"), "{body}");
    }
    let (status, body) = operator
        .get_with(
            "/audit/export",
            &[("Authorization", &bearer("not-a-token-anyone-issued"))],
        )
        .await
        .unwrap();
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("does not accept this bearer token"), "{body}");

    // A workload with a valid token but no auditor binding: refused, by name.
    let (status, body) = operator
        .get_with("/audit/export", &[("Authorization", &bearer(&nobody))])
        .await
        .unwrap();
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains(&format!("\"system:serviceaccount:{n}:nobody\""))
            && body.contains("decision-gate-auditor")
            && body.contains(&format!("in namespace {n}")),
        "{body}"
    );
    let (status, body) = operator
        .get_with("/audit/export", &[("Authorization", &bearer(&elsewhere))])
        .await
        .unwrap();
    assert_eq!(
        status, 403,
        "a binding in another namespace reads nothing here: {body}"
    );

    // The auditor gets the log, byte for byte, with the token in either header.
    let on_disk = std::fs::read_to_string(Operator::audit_log(n)).unwrap();
    assert!(on_disk.contains("decision_requested"), "{on_disk}");
    let (status, body) = operator
        .get_with("/audit/export", &[("Authorization", &bearer(&reader))])
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(
        on_disk.starts_with(&body) && body.contains("decision_requested"),
        "the export is the log's own bytes:\n{body}\n---\n{on_disk}"
    );
    let (status, body) = operator
        .get_with(
            "/audit/verify",
            &[(decision_gate::access::TOKEN_HEADER, &reader)],
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"intact\":true"), "{body}");

    // Two different tokens make no identity.
    let (status, _) = operator
        .get_with(
            "/audit/export",
            &[
                ("Authorization", &bearer(&reader)),
                (decision_gate::access::TOKEN_HEADER, &nobody),
            ],
        )
        .await
        .unwrap();
    assert_eq!(status, 400);
    assert!(
        operator
            .logs()
            .contains(&format!("system:serviceaccount:{n}:reader")),
        "who read the log is in the operator's log"
    );
}

#[tokio::test]
async fn kubectl_decision_reads_the_log_as_the_person_the_api_server_says_you_are() {
    let ns = TestNamespace::new("audit-people").await;
    let n = ns.name.as_str();
    bind_role(n, "decision-gate-auditor", "User", &["alice"]);
    // carol may reach the operator through the API server, but holds no right to read.
    apply(
        n,
        &format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: proxy-only}}\nrules:\n- {{apiGroups: [''], resources: [services/proxy], resourceNames: ['{OPERATOR_SERVICE}:http'], verbs: [get]}}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: proxy-only}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: proxy-only}}\nsubjects:\n- {{apiGroup: rbac.authorization.k8s.io, kind: User, name: carol}}\n"
        ),
    )
    .success();
    wait_can_read_audit("alice", n).await;
    let (_operator, _relay) = operator_behind_service(n).await;
    something_logged(n).await;

    let run = |user: &str, args: &[&str]| {
        let mut all = args.to_vec();
        all.extend_from_slice(&["-n", n, "--operator-namespace", n]);
        plugin(user, &all)
    };
    let copy = repo_root()
        .join("target/e2e-logs")
        .join(format!("{n}-export.jsonl"));
    run("alice", &["audit", "export", "-o", copy.to_str().unwrap()]).success();
    let exported = std::fs::read_to_string(&copy).unwrap();
    let on_disk = std::fs::read_to_string(Operator::audit_log(n)).unwrap();
    assert!(
        on_disk.starts_with(&exported) && exported.contains("decision_requested"),
        "{exported}"
    );
    let history = run("alice", &["history"]).success();
    assert!(
        history.contains("decision_requested") && history.contains(&format!("{n}/drop-table")),
        "{history}"
    );
    let verified = run("alice", &["audit", "verify"]).success();
    assert!(verified.starts_with("intact: "), "{verified}");

    // dave holds nothing: the API server refuses to proxy for him.
    let err = run("dave", &["audit", "export"]).refused();
    assert!(
        err.contains("forbidden: reading the audit log takes get on services/proxy"),
        "{err}"
    );
    let err = run("dave", &["history"]).refused();
    assert!(err.contains("forbidden"), "{err}");
    // carol gets through the API server, and the operator refuses her by name.
    let err = run("carol", &["audit", "export"]).refused();
    assert!(
        err.contains("user \"carol\" (groups sre)")
            && err.contains("decisions/audit")
            && err.contains("decision-gate-auditor"),
        "{err}"
    );

    // A client certificate cannot be passed on; the plugin says so, and what to do.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kubectl-decision"))
        .arg("--kubeconfig")
        .arg(admin_kubeconfig())
        .args(["audit", "export", "--operator-namespace", n])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("client certificate") && err.contains("bearer token"),
        "{err}"
    );
}

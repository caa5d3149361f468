//! The API as users meet it: the CRDs install, the examples apply, `kubectl get` and
//! `kubectl explain` teach it, and bad manifests are refused with a message a person
//! understands.

use crate::support::*;

#[tokio::test]
async fn examples_apply_and_kubectl_shows_the_columns() {
    let ns = TestNamespace::new("examples").await;
    let dir = repo_root().join("examples");
    let out = kubectl_admin(&["apply", "-n", &ns.name, "-f", dir.to_str().unwrap()]).success();
    assert!(
        out.contains("decision.decisiongate.io/deploy-api-gateway-2-0 created"),
        "{out}"
    );
    assert!(
        out.contains("executionplan.decisiongate.io/deploy-api-gateway created"),
        "{out}"
    );
    assert!(
        out.contains("approvalpolicy.decisiongate.io/defaults created"),
        "{out}"
    );

    let table = kubectl_admin(&["get", "dec", "-n", &ns.name]).success();
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "ACTION",
            "CRITICALITY",
            "RISK",
            "PHASE",
            "APPROVALS",
            "AGE"
        ]
    );
    let row = table
        .lines()
        .find(|l| l.starts_with("deploy-api-gateway-2-0"))
        .unwrap_or_else(|| panic!("no row for the example Decision:\n{table}"));
    assert!(row.contains("deploy") && row.contains("Critical"), "{row}");

    // The category and the short names work too.
    let all = kubectl_admin(&["get", "decisiongate", "-n", &ns.name, "-o", "name"]).success();
    assert!(
        all.contains("approvalpolicy.decisiongate.io/budget-and-cleanup"),
        "{all}"
    );
    assert!(
        all.contains("executionplan.decisiongate.io/deploy-api-gateway"),
        "{all}"
    );
    kubectl_admin(&["get", "apol,plan", "-n", &ns.name]).success();
}

#[tokio::test]
async fn kubectl_explain_teaches_the_api() {
    ensure_crds().await;
    // The API server publishes a new CRD's schema a moment after the CRD is established.
    wait_until("the Decision schema to be published", || {
        kubectl_admin(&["explain", "decision.spec.criticality"]).ok
    })
    .await;
    let out = kubectl_admin(&["explain", "decision.spec.criticality"]).success();
    assert!(out.contains("How critical the action is"), "{out}");
    assert!(out.contains("Critical: never auto-approved"), "{out}");

    let out = kubectl_admin(&["explain", "executionplan.spec.mode"]).success();
    assert!(out.contains("server-side"), "{out}");
    let out = kubectl_admin(&["explain", "approvalpolicy.spec.rules.match.expression"]).success();
    assert!(out.contains("CEL expression"), "{out}");
}

/// Applies `manifest` and returns the refusal, failing when it is accepted.
fn refused(namespace: &str, manifest: &str) -> String {
    apply(namespace, manifest).refused()
}

const PLAN_HEAD: &str =
    "apiVersion: decisiongate.io/v1alpha1\nkind: ExecutionPlan\nmetadata: {name: plan}\n";

#[tokio::test]
async fn bad_manifests_are_refused_with_a_clear_message() {
    let ns = TestNamespace::new("refusals").await;
    let n = ns.name.as_str();
    let decision = |spec: &str| {
        format!(
            "apiVersion: decisiongate.io/v1alpha1\nkind: Decision\nmetadata: {{name: d}}\nspec: {spec}\n"
        )
    };

    let err = refused(
        n,
        &decision("{actionType: deploy, description: x, criticality: Severe}"),
    );
    assert!(err.contains(r#"Unsupported value: "Severe""#), "{err}");
    assert!(
        err.contains(r#""Critical", "High", "Normal", "Info""#),
        "{err}"
    );

    let err = refused(n, &decision("{description: x, criticality: High}"));
    assert!(err.contains("spec.actionType: Required value"), "{err}");

    let err = refused(
        n,
        &decision(
            "{actionType: deploy, description: x, criticality: High, expiresAfter: tomorrow}",
        ),
    );
    assert!(err.contains("spec.expiresAfter"), "{err}");
    assert!(err.contains("must be a duration"), "{err}");

    // A duration is bounded, so that no value can overflow the expiry arithmetic.
    for absurd in ["0s", "999ms", "366d", "99999999d", "9999999999h"] {
        let err = refused(
            n,
            &decision(&format!(
                "{{actionType: deploy, description: x, criticality: High, expiresAfter: {absurd}}}"
            )),
        );
        assert!(err.contains("spec.expiresAfter"), "{absurd}: {err}");
        assert!(
            err.contains("at least 1s and at most 365d"),
            "{absurd}: {err}"
        );
    }
    let err = refused(
        n,
        &decision(
            "{actionType: deploy, description: x, criticality: High, expiresAfter: 99999999999d}",
        ),
    );
    assert!(err.contains("must be a duration"), "{err}");
    apply(
        n,
        &decision("{actionType: deploy, description: x, criticality: High, expiresAfter: 365d}")
            .replace("name: d}", "name: a-year}"),
    )
    .success();
    // No operator runs here to audit the deletion and let it go: the admin does.
    kubectl_admin(&["delete", "decision", "a-year", "-n", n, "--wait=false"]).success();
    release_decisions(n);

    let err = refused(
        n,
        &decision("{actionType: Deploy Now, description: x, criticality: High}"),
    );
    assert!(err.contains("spec.actionType"), "{err}");
    assert!(err.contains("lower-case letters"), "{err}");

    let err = refused(
        n,
        &format!("{PLAN_HEAD}spec: {{actionTypes: [deploy], steps: []}}\n"),
    );
    assert!(
        err.contains("an ExecutionPlan needs at least one step"),
        "{err}"
    );

    let step = |name: &str| {
        format!(
            "{{name: {name}, template: {{spec: {{restartPolicy: Never, containers: [{{name: c, image: busybox}}]}}}}}}"
        )
    };
    let err = refused(
        n,
        &format!(
            "{PLAN_HEAD}spec: {{actionTypes: [deploy], steps: [{}, {}]}}\n",
            step("same"),
            step("same")
        ),
    );
    assert!(
        err.contains("step names must be unique within a plan"),
        "{err}"
    );
    // A plan says which action types it carries out, in the form Decisions name them.
    let err = refused(
        n,
        &format!("{PLAN_HEAD}spec: {{steps: [{}]}}\n", step("one")),
    );
    assert!(err.contains("spec.actionTypes: Required value"), "{err}");
    let err = refused(
        n,
        &format!(
            "{PLAN_HEAD}spec: {{actionTypes: [Drop Database], steps: [{}]}}\n",
            step("one")
        ),
    );
    assert!(err.contains("action types are lower-case letters"), "{err}");

    let policy = |rules: &str| {
        format!(
            "apiVersion: decisiongate.io/v1alpha1\nkind: ApprovalPolicy\nmetadata: {{name: p}}\nspec: {{rules: {rules}}}\n"
        )
    };
    let err = refused(
        n,
        &policy(
            "[{name: r, outcome: RequireApproval, match: {minDurationMinutes: 60, maxDurationMinutes: 30}}]",
        ),
    );
    assert!(
        err.contains("minDurationMinutes is greater than maxDurationMinutes"),
        "{err}"
    );
    let err = refused(
        n,
        &policy(
            "[{name: r, outcome: RequireApproval, requiredApprovals: 3, approvers: {users: [alice, bob]}}]",
        ),
    );
    assert!(
        err.contains("requiredApprovals is more than the number of users in approvers.users"),
        "{err}"
    );
    let err = refused(n, &policy("[{name: r, outcome: Maybe}]"));
    assert!(err.contains(r#"Unsupported value: "Maybe""#), "{err}");

    // Nothing of the refused objects was stored.
    let left = kubectl_admin(&["get", "decisiongate", "-n", n, "-o", "name"]).success();
    assert_eq!(left.trim(), "", "refused objects were stored: {left}");
}

#[tokio::test]
async fn a_decisions_spec_cannot_change_after_creation() {
    let ns = TestNamespace::new("immutable").await;
    apply(
        &ns.name,
        "apiVersion: decisiongate.io/v1alpha1\nkind: Decision\nmetadata: {name: d}\nspec: {actionType: deploy, description: Deploy 2.0, criticality: High, context: {version: 2.0.0}}\n",
    )
    .success();

    for patch in [
        r#"{"spec":{"description":"Deploy 3.0"}}"#,
        r#"{"spec":{"context":{"version":"3.0.0"}}}"#,
        r#"{"spec":{"criticality":"Normal"}}"#,
    ] {
        let err = kubectl_admin(&[
            "patch", "dec", "d", "-n", &ns.name, "--type", "merge", "-p", patch,
        ])
        .refused();
        assert!(err.contains("spec is immutable"), "{patch}: {err}");
        assert!(
            err.contains("create a new Decision instead"),
            "{patch}: {err}"
        );
    }
    // Metadata is not part of the request: annotations (how approvers answer) may change.
    kubectl_admin(&["annotate", "dec", "d", "-n", &ns.name, "note=reviewed"]).success();
    let description = kubectl_admin(&[
        "get",
        "dec",
        "d",
        "-n",
        &ns.name,
        "-o",
        "jsonpath={.spec.description}",
    ])
    .success();
    assert_eq!(description, "Deploy 2.0");
}

#[tokio::test]
async fn every_field_that_names_an_object_is_refused_unless_it_is_such_a_name() {
    let ns = TestNamespace::new("names").await;
    let n = ns.name.as_str();
    let manifest = |kind: &str, spec: &str| {
        format!(
            "apiVersion: decisiongate.io/v1alpha1\nkind: {kind}\nmetadata: {{name: x}}\nspec: {spec}\n"
        )
    };
    let step = |spec: &str| {
        manifest(
            "ExecutionPlan",
            &format!("{{actionTypes: [deploy], steps: [{{name: a, template: {{spec: {spec}}}}}]}}"),
        )
    };
    let rule = |rule: &str| {
        manifest(
            "ApprovalPolicy",
            &format!("{{rules: [{{name: r, outcome: RequireApproval, {rule}}}]}}"),
        )
    };
    let cases = [
        (
            manifest(
                "Decision",
                "{actionType: deploy, description: x, criticality: High, planRef: {name: 'Not A Name'}}",
            ),
            "spec.planRef.name",
            "must be the name of an ExecutionPlan",
        ),
        (
            step(
                "{restartPolicy: Never, serviceAccountName: Deployer_1, containers: [{name: m, image: busybox}]}",
            ),
            "spec.steps[0].template.spec.serviceAccountName",
            "must be the name of a ServiceAccount",
        ),
        (
            step("{restartPolicy: Always, containers: [{name: m, image: busybox}]}"),
            "spec.steps[0].template.spec.restartPolicy",
            "Never or OnFailure",
        ),
        (
            manifest(
                "ExecutionPlan",
                "{actionTypes: [deploy], steps: [{name: a, template: {spec: {restartPolicy: Never, containers: [{name: m, image: busybox}]}}, rollback: {template: {spec: {restartPolicy: Never, serviceAccountName: '-x', containers: [{name: m, image: busybox}]}}}}]}",
            ),
            "spec.steps[0].rollback.template.spec.serviceAccountName",
            "must be the name of a ServiceAccount",
        ),
        (
            rule("match: {plans: ['Deploy Plan']}"),
            "spec.rules[0].match.plans",
            "the name of an ExecutionPlan",
        ),
        (
            rule("match: {actionTypes: [Deploy]}"),
            "spec.rules[0].match.actionTypes",
            "lower-case letters",
        ),
        (
            rule(&format!(
                "approvers: {{serviceAccounts: ['{}/bot']}}",
                "n".repeat(64)
            )),
            "spec.rules[0].approvers.serviceAccounts",
            "at most 63",
        ),
        (
            rule("approvers: {serviceAccounts: ['agents/Release_Bot']}"),
            "spec.rules[0].approvers.serviceAccounts",
            "a ServiceAccount as namespace/name",
        ),
    ];
    for (manifest, field, words) in cases {
        let err = refused(n, &manifest);
        assert!(err.contains(field), "{field}: {err}");
        assert!(err.contains(words), "{field}: {err}");
    }
    // Names at their longest are accepted.
    let longest_plan = format!("{}.{}", "p".repeat(126), "q".repeat(126));
    apply(
        n,
        &format!(
            "{}---\n{}",
            manifest(
                "Decision",
                &format!("{{actionType: deploy, description: x, criticality: High, planRef: {{name: {longest_plan}}}}}"),
            ),
            rule(&format!(
                "match: {{plans: [{longest_plan}]}}, approvers: {{serviceAccounts: ['{}/{}']}}",
                "n".repeat(63),
                "s".repeat(253)
            )),
        ),
    )
    .success();
}

//! An operator confined to one namespace (the chart's `operator.watchNamespace`): the API
//! server grants it its work there and nothing namespaced elsewhere, that is enough to run,
//! and another release's guard still keeps it from writing what it does not own.

use decision_gate::api::Decision;
use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::api::ListParams;

use crate::support::*;

/// The chart's ServiceAccount and RBAC for an operator that watches one namespace, rendered
/// under a release name of their own and applied; deleted again when dropped.
struct ConfinedOperatorRbac {
    manifest: String,
    service_account: String,
}

impl ConfinedOperatorRbac {
    fn apply(watched: &str) -> ConfinedOperatorRbac {
        let release = format!("c-{watched}");
        let watch = format!("operator.watchNamespace={watched}");
        let manifest = helm_template(
            &release,
            RELEASE_NAMESPACE,
            &[
                "--show-only",
                "templates/serviceaccount.yaml",
                "--show-only",
                "templates/rbac.yaml",
                "--set",
                &watch,
            ],
        );
        kubectl(&admin_kubeconfig(), &["apply", "-f", "-"], Some(&manifest)).success();
        ConfinedOperatorRbac {
            manifest,
            service_account: format!("{release}-decision-gate"),
        }
    }

    /// Whether the operator's ServiceAccount may `verb` `resource`, in `namespace` or, when
    /// `None`, in every namespace.
    fn may(&self, verb: &str, resource: &str, namespace: Option<&str>) -> bool {
        let who = format!(
            "system:serviceaccount:{RELEASE_NAMESPACE}:{}",
            self.service_account
        );
        let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
        let subresource = format!("--subresource={subresource}");
        let mut args = vec!["auth", "can-i", verb, resource, "--as", &who];
        if subresource != "--subresource=" {
            args.push(&subresource);
        }
        match namespace {
            Some(ns) => args.extend(["-n", ns]),
            None => args.push("--all-namespaces"),
        }
        let answer = kubectl_admin(&args);
        match answer.stdout.trim() {
            "yes" => true,
            "no" => false,
            other => panic!("kubectl auth can-i said {other:?}: {}", answer.stderr),
        }
    }
}

impl Drop for ConfinedOperatorRbac {
    fn drop(&mut self) {
        let _ = kubectl(
            &admin_kubeconfig(),
            &["delete", "--ignore-not-found", "--wait=false", "-f", "-"],
            Some(&self.manifest),
        );
    }
}

#[tokio::test]
async fn an_operator_confined_to_one_namespace_may_act_there_only_and_another_release_guards_it() {
    ensure_installed().await;
    let ns = TestNamespace::new("confined").await;
    let elsewhere = TestNamespace::new("elsewhere").await;
    let n = ns.name.as_str();
    let rbac = ConfinedOperatorRbac::apply(n);

    // What the chart grants: the operator's work in the watched namespace, and only what is
    // cluster-wide by nature beyond it.
    assert!(rbac.may("create", "jobs.batch", Some(n)));
    assert!(rbac.may("patch", "decisions.decisiongate.io/status", Some(n)));
    assert!(!rbac.may("create", "jobs.batch", Some(&elsewhere.name)));
    assert!(!rbac.may("list", "decisions.decisiongate.io", Some(&elsewhere.name)));
    assert!(!rbac.may("list", "decisions.decisiongate.io", None));
    assert!(!rbac.may("create", "jobs.batch", None));
    assert!(rbac.may("create", "tokenreviews.authentication.k8s.io", None));
    assert!(rbac.may(
        "watch",
        "validatingadmissionpolicies.admissionregistration.k8s.io",
        None
    ));

    // With no more than that it leads, fills its caches and evaluates the Decisions there.
    // Its status writes are refused, and by admission, not RBAC: the suite's cluster-wide
    // release guards every namespace, and its policy lets only its own operator write a
    // Decision's status. (Releases that each watch one namespace guard only their own.)
    let kubeconfig = service_account_kubeconfig(RELEASE_NAMESPACE, &rbac.service_account);
    let operator = Operator::spawn(n, &kubeconfig, &["--allow-real-execution"])
        .ready()
        .await;
    ship_in_three_steps(n, "1s");
    apply(
        n,
        &decision(
            "confined-ship",
            "{actionType: ship, description: Ship from a confined operator, criticality: Normal, planRef: {name: three}}",
        ),
    )
    .success();
    let refused = format!(
        "only the decision-gate operator (system:serviceaccount:{RELEASE_NAMESPACE}:decision-gate) writes the status of a Decision; system:serviceaccount:{RELEASE_NAMESPACE}:{} may not",
        rbac.service_account
    );
    wait_until("the confined operator's status write to be judged", || {
        operator.logs().contains(&refused)
    })
    .await;
    let logs = operator.logs();
    assert!(
        !logs.contains("cannot list")
            && !logs.contains("cannot watch")
            && !logs.contains("cannot get"),
        "the confined operator lacks a right it needs to read:\n{logs}"
    );
    let api: Api<Decision> = Api::namespaced(admin().await, n);
    let decision = api.get("confined-ship").await.unwrap();
    assert_eq!(phase(Some(&decision)), None, "nobody else wrote its status");
    let jobs: Api<Job> = Api::namespaced(admin().await, n);
    assert!(
        jobs.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "a Job ran for a Decision whose approval was never recorded"
    );
}

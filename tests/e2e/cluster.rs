//! The local control plane is a real one: authentication and RBAC are enforced, Jobs run
//! to completion or failure through the scheduler and kwok, and the garbage collector
//! removes what an owner leaves behind.

use k8s_openapi::api::batch::v1::Job;
use kube::Api;

use crate::support::*;

#[tokio::test]
async fn rbac_is_enforced() {
    let ns = TestNamespace::new("rbac").await;
    let err = kubectl(
        &user_kubeconfig("dave"),
        &["get", "decisions", "-n", &ns.name],
        None,
    )
    .refused();
    assert!(err.contains("Forbidden"), "{err}");
    assert!(
        err.contains(r#"User "dave" cannot list resource "decisions""#),
        "{err}"
    );

    kubectl_admin(&["get", "decisions", "-n", &ns.name]).success();
    let who = kubectl(
        &user_kubeconfig("alice"),
        &["auth", "whoami", "-o", "jsonpath={.status.userInfo}"],
        None,
    )
    .success();
    assert!(
        who.contains(r#""username":"alice""#) && who.contains("approvers"),
        "{who}"
    );
    let who = kubectl(
        &user_kubeconfig("carol"),
        &["auth", "whoami", "-o", "jsonpath={.status.userInfo}"],
        None,
    )
    .success();
    assert!(
        who.contains(r#""username":"carol""#) && who.contains("sre"),
        "{who}"
    );
}

fn job(name: &str, pod_labels: &str, pod_annotations: &str) -> String {
    format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata: {{name: {name}}}\nspec:\n  backoffLimit: 0\n  template:\n    metadata: {{labels: {{{pod_labels}}}, annotations: {{{pod_annotations}}}}}\n    spec:\n      restartPolicy: Never\n      containers: [{{name: main, image: busybox}}]\n"
    )
}

fn finished(job: Option<&Job>) -> bool {
    job.and_then(|j| j.status.as_ref())
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        })
}

fn condition(job: &Job) -> String {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.status == "True" && (c.type_ == "Complete" || c.type_ == "Failed"))
        })
        .map(|c| c.type_.clone())
        .unwrap_or_default()
}

fn termination_message(namespace: &str, job: &str) -> String {
    kubectl_admin(&[
        "get",
        "pods",
        "-n",
        namespace,
        "-l",
        &format!("job-name={job}"),
        "-o",
        "jsonpath={.items[0].status.containerStatuses[0].state.terminated.message}",
    ])
    .success()
}

#[tokio::test]
async fn jobs_succeed_fail_and_wait_as_labelled() {
    let ns = TestNamespace::new("jobs").await;
    let api: Api<Job> = Api::namespaced(admin().await, &ns.name);
    apply(
        &ns.name,
        &job(
            "works",
            "",
            r#""decisiongate.io/test-result": "deployed 2.0""#,
        ),
    )
    .success();
    apply(
        &ns.name,
        &job("breaks", r#""decisiongate.io/test-outcome": fail"#, ""),
    )
    .success();
    apply(
        &ns.name,
        &job("slow", "", r#""decisiongate.io/test-delay": 3s"#),
    )
    .success();
    apply(
        &ns.name,
        &job("hangs", r#""decisiongate.io/test-outcome": hang"#, ""),
    )
    .success();

    let works = wait_for(&api, "works", "finished", finished).await;
    assert_eq!(condition(&works), "Complete");
    assert_eq!(works.status.unwrap().succeeded, Some(1));
    assert_eq!(termination_message(&ns.name, "works"), "deployed 2.0");

    let breaks = wait_for(&api, "breaks", "finished", finished).await;
    assert_eq!(condition(&breaks), "Failed");
    assert!(termination_message(&ns.name, "breaks").contains("failed"));

    let slow = wait_for(&api, "slow", "finished", finished).await;
    assert_eq!(condition(&slow), "Complete");
    let status = slow.status.unwrap();
    let took =
        status.completion_time.unwrap().0.as_second() - status.start_time.unwrap().0.as_second();
    assert!(took >= 3, "the 3s delay was not honoured: {took}s");

    // By now the others have long finished; the hanging one is still running.
    let hangs = api.get("hangs").await.unwrap();
    assert!(!finished(Some(&hangs)), "{:?}", hangs.status);
    assert_eq!(hangs.status.unwrap().active, Some(1));
}

#[tokio::test]
async fn the_garbage_collector_removes_orphans() {
    let ns = TestNamespace::new("gc").await;
    kubectl_admin(&["create", "configmap", "owner", "-n", &ns.name]).success();
    let uid = kubectl_admin(&[
        "get",
        "configmap",
        "owner",
        "-n",
        &ns.name,
        "-o",
        "jsonpath={.metadata.uid}",
    ])
    .success();
    let owned = format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: owned\n  ownerReferences: [{{apiVersion: v1, kind: ConfigMap, name: owner, uid: {uid}}}]\nspec:\n  template:\n    metadata: {{labels: {{decisiongate.io/test-outcome: hang}}}}\n    spec:\n      restartPolicy: Never\n      containers: [{{name: main, image: busybox}}]\n"
    );
    apply(&ns.name, &owned).success();
    let api: Api<Job> = Api::namespaced(admin().await, &ns.name);
    wait_for(&api, "owned", "running", |j: Option<&Job>| {
        j.and_then(|j| j.status.as_ref()).and_then(|s| s.active) == Some(1)
    })
    .await;

    kubectl_admin(&["delete", "configmap", "owner", "-n", &ns.name]).success();
    wait_gone(&api, "owned").await;
    wait_until("the Job's pod to be deleted", || {
        kubectl_admin(&[
            "get",
            "pods",
            "-n",
            &ns.name,
            "-l",
            "job-name=owned",
            "-o",
            "name",
        ])
        .success()
        .trim()
        .is_empty()
    })
    .await;
}

//! What the tests stand on: the CRDs and the chart installed once, a namespace per test,
//! role bindings, and ServiceAccount tokens and kubeconfigs.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use decision_gate::api::Decision;
use decision_gate::api::annotations::REQUESTED_BY;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::PostParams;
use kube::{Api, ResourceExt};
use tokio::sync::OnceCell;

use super::{
    DEADLINE, RELEASE_NAMESPACE, TEST_HOOKS_SECRET, TEST_SLACK_SECRET, admin, admin_kubeconfig,
    apply, kubectl_admin, repo_root, tool, wait_for, wait_until,
};

static INSTALLED: OnceCell<PathBuf> = OnceCell::const_new();

/// Installs, once per test run, the CRDs from `crds/` and then the chart (RBAC, user
/// roles, admission policies; no operator pod: the tests run the operator themselves),
/// and returns a kubeconfig that authenticates as the chart's ServiceAccount.
pub async fn ensure_installed() -> PathBuf {
    INSTALLED
        .get_or_init(|| async {
            let dir = repo_root().join("crds");
            kubectl_admin(&[
                "apply",
                "--server-side",
                "--force-conflicts",
                "-f",
                dir.to_str().unwrap(),
            ])
            .success();
            kubectl_admin(&[
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                "crd/decisions.decisiongate.io",
                "crd/approvalpolicies.decisiongate.io",
                "crd/executionplans.decisiongate.io",
            ])
            .success();
            let helm = tool("HELM", "helm", "HELM_VERSION", "helm");
            let chart = repo_root().join("charts/decision-gate");
            let out = Command::new(&helm)
                .args(["upgrade", "--install", "decision-gate"])
                .arg(&chart)
                .args([
                    "--namespace",
                    RELEASE_NAMESPACE,
                    "--create-namespace",
                    "--wait",
                    "--timeout",
                    "120s",
                ])
                .args([
                    "--set",
                    "replicaCount=0",
                    "--set",
                    "audit.persistence.enabled=false",
                    // The CRDs are applied above, as `make run` applies them.
                    "--set",
                    "crds.install=false",
                    // The operator runs as a process here; the Deployment has no replica.
                    "--set",
                    "image.repository=localhost/decision-gate",
                ])
                .args([
                    "--set",
                    &format!("notifications.secretNames[0]={TEST_HOOKS_SECRET}"),
                    "--set",
                    &format!("notifications.secretNames[1]={TEST_SLACK_SECRET}"),
                ])
                .arg("--kubeconfig")
                .arg(admin_kubeconfig())
                .output()
                .unwrap_or_else(|e| panic!("cannot run {helm} (set HELM): {e}"));
            assert!(
                out.status.success(),
                "helm install failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            wait_admits_decisions().await;
            operator_kubeconfig()
        })
        .await
        .clone()
}

/// Waits until the API server admits a Decision through the chart's admission policies (a
/// server-side dry run as the admin) and the mutating policy has recorded the requester.
/// That policy comes into force a moment after helm installs it, and it learns a custom
/// resource's schema from the API server's OpenAPI, which it reads every few seconds; until
/// it has, it refuses Decisions with 503 "Resource kind ... not found". A probe admitted
/// without the requester annotation only shows the policy was not in force yet, so the
/// wait goes on until the annotation is there. This is needed after the CRDs are first
/// installed and after the API server restarts.
pub async fn wait_admits_decisions() {
    let api: Api<Decision> = Api::namespaced(admin().await, RELEASE_NAMESPACE);
    let probe: Decision = serde_json::from_value(serde_json::json!({
        "apiVersion": "decisiongate.io/v1alpha1",
        "kind": "Decision",
        "metadata": {"name": "admission-probe"},
        "spec": {"actionType": "probe", "description": "Is the admission chain ready?", "criticality": "Info"},
    }))
    .unwrap();
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        let waiting_for = match api.create(&dry_run, &probe).await {
            Ok(admitted) if admitted.annotations().contains_key(REQUESTED_BY) => return,
            Ok(_) => format!("a Decision was admitted without the {REQUESTED_BY} annotation"),
            Err(kube::Error::Api(status)) if status.code == 503 => status.message,
            Err(e) => panic!("a dry-run Decision was refused: {e}"),
        };
        assert!(
            tokio::time::Instant::now() < deadline,
            "the admission policies are still not in force after {DEADLINE:?}: {waiting_for}"
        );
    }
}

/// Installs the CRDs and the chart (see [`ensure_installed`]).
pub async fn ensure_crds() {
    ensure_installed().await;
}

/// A kubeconfig that authenticates with a token of the chart's ServiceAccount: the
/// operator under test has exactly the rights the chart gives it.
fn operator_kubeconfig() -> PathBuf {
    service_account_kubeconfig(RELEASE_NAMESPACE, "decision-gate")
}

/// A kubeconfig that authenticates with a token of a ServiceAccount (for six hours), as
/// an agent in the cluster would.
pub fn service_account_kubeconfig(namespace: &str, name: &str) -> PathBuf {
    let token = create_token(namespace, name, "6h");
    let server = kubectl_admin(&[
        "config",
        "view",
        "--raw",
        "-o",
        "jsonpath={.clusters[0].cluster.server}",
    ])
    .success();
    let ca = kubectl_admin(&[
        "config",
        "view",
        "--raw",
        "-o",
        "jsonpath={.clusters[0].cluster.certificate-authority-data}",
    ])
    .success();
    let path = repo_root().join(format!("target/e2e-logs/{namespace}.{name}.kubeconfig"));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: local\n  cluster: {{server: {server}, certificate-authority-data: {ca}}}\nusers:\n- name: {name}\n  user: {{token: {}}}\ncontexts:\n- name: {name}\n  context: {{cluster: local, user: {name}}}\ncurrent-context: {name}\n",
            token.trim()
        ),
    )
    .unwrap();
    path
}

/// A namespace for one test, deleted when the test ends (pass or fail).
pub struct TestNamespace {
    pub name: String,
}

impl TestNamespace {
    pub async fn new(prefix: &str) -> Self {
        Self::create(unique_name(prefix)).await
    }

    /// Creates the namespace `name` (see [`unique_name`]).
    pub async fn create(name: String) -> Self {
        ensure_crds().await;
        create_namespace(&name).await;
        TestNamespace { name }
    }
}

/// Creates the namespace `name`, and waits for the default ServiceAccount that pods need
/// (the controller manager creates it).
pub async fn create_namespace(name: &str) {
    kubectl_admin(&["create", "namespace", name]).success();
    let accounts: Api<ServiceAccount> = Api::namespaced(admin().await, name);
    wait_for(
        &accounts,
        "default",
        "created",
        |sa: Option<&ServiceAccount>| sa.is_some(),
    )
    .await;
}

impl Drop for TestNamespace {
    /// Deletes the namespace and lets its Decisions go: the test's operator, which would
    /// audit their deletion and remove its finalizer, is gone by now. They are released
    /// once the namespace's deletion has reached them, so that no operator still running
    /// (one that watches every namespace) puts the finalizer back meanwhile.
    fn drop(&mut self) {
        let _ = kubectl_admin(&["delete", "namespace", &self.name, "--wait=false"]);
        release(&self.name, true);
    }
}

/// Takes the operator's finalizer off every Decision of a namespace, as a cluster
/// administrator may: where no operator runs to audit their deletion and let them go.
pub fn release_decisions(namespace: &str) {
    release(namespace, false);
}

/// Takes the finalizers off the Decisions of a namespace: every one, or (`deleted`) those
/// being deleted, again and again until none is left (for at most [`DEADLINE`]). Patched
/// concurrently, on a runtime of its own (a test's runtime may be the caller), so that a
/// benchmark's thousands of Decisions go in seconds.
fn release(namespace: &str, deleted: bool) {
    let namespace = namespace.to_owned();
    let released = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let api: Api<Decision> = Api::namespaced(admin().await, &namespace);
            let deadline = tokio::time::Instant::now() + DEADLINE;
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            loop {
                tick.tick().await;
                let left = release_once(&api, deleted).await;
                if left == 0 || !deleted || tokio::time::Instant::now() >= deadline {
                    return;
                }
            }
        });
    });
    let _ = released.join();
}

/// One pass of [`release`]: how many Decisions the namespace still holds.
async fn release_once(api: &Api<Decision>, deleted: bool) -> usize {
    use futures::StreamExt;
    use kube::api::{ListParams, Patch, PatchParams};
    let Ok(names) = api.list_metadata(&ListParams::default()).await else {
        return 0;
    };
    let left = names.items.len();
    futures::stream::iter(names.items.into_iter().filter(|d| {
        !d.finalizers().is_empty() && (!deleted || d.metadata.deletion_timestamp.is_some())
    }))
    .for_each_concurrent(16, |d| {
        let api = api.clone();
        async move {
            let patch = serde_json::json!({"metadata": {"finalizers": null}});
            let _ = api
                .patch_metadata(
                    &d.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await;
        }
    })
    .await;
    left
}

/// A name that no other test uses: `prefix` and a random suffix.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{}", random_suffix())
}

fn random_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    format!("{:08x}", h.finish() as u32)
}

/// Lets the test users answer Decisions in a namespace: the chart's approver role for
/// the groups approvers (alice, bob) and sre (carol).
pub fn grant_answering(namespace: &str) {
    bind_role(
        namespace,
        "decision-gate-approver",
        "Group",
        &["approvers", "sre"],
    );
}

/// Binds one of the chart's user ClusterRoles in a namespace.
pub fn bind_role(namespace: &str, role: &str, kind: &str, subjects: &[&str]) {
    let subjects: String = subjects
        .iter()
        .map(|s| format!("- {{apiGroup: rbac.authorization.k8s.io, kind: {kind}, name: {s}}}\n"))
        .collect();
    let name = format!("{role}-{}", kind.to_lowercase());
    apply(
        namespace,
        &format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: {name}, namespace: {namespace}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {role}}}\nsubjects:\n{subjects}"
        ),
    )
    .success();
}

/// A ServiceAccount in `namespace` and a token of it, as a workload on the cluster has.
pub fn service_account_token(namespace: &str, name: &str) -> String {
    apply(
        namespace,
        &format!("apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: {name}}}\n"),
    )
    .success();
    create_token(namespace, name, "10m")
}

/// A token of an existing ServiceAccount, valid for `duration`.
fn create_token(namespace: &str, name: &str, duration: &str) -> String {
    kubectl_admin(&[
        "create",
        "token",
        name,
        "-n",
        namespace,
        "--duration",
        duration,
    ])
    .success()
    .trim()
    .to_owned()
}

/// Binds a ClusterRole in `namespace` to a ServiceAccount of that namespace.
pub fn bind_service_account(namespace: &str, role: &str, account: &str) {
    apply(
        namespace,
        &format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: {role}-{account}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {role}}}\nsubjects:\n- {{kind: ServiceAccount, name: {account}, namespace: {namespace}}}\n"
        ),
    )
    .success();
}

/// Waits until the API server's RBAC lets `user` read the audit log in `namespace`.
pub async fn wait_can_read_audit(user: &str, namespace: &str) {
    wait_can(
        user,
        namespace,
        &["get", "decisions.decisiongate.io", "--subresource", "audit"],
    )
    .await;
}

/// Waits until the API server's RBAC grants `user` what `kubectl auth can-i` is asked
/// (`verb`, resource and flags such as `--subresource`) in `namespace`.
pub async fn wait_can(user: &str, namespace: &str, asked: &[&str]) {
    let mut args = vec!["auth", "can-i"];
    args.extend_from_slice(asked);
    args.extend_from_slice(&["-n", namespace, "--as", user]);
    wait_until(&format!("{user} to be allowed {}", asked.join(" ")), || {
        kubectl_admin(&args).stdout.trim() == "yes"
    })
    .await;
}

/// Puts a Secret with one key in the release namespace, in place of any earlier one: what
/// the operator reads there with the chart's rights (a webhook's URL, a bot's token).
pub fn replace_release_secret(name: &str, literal: &str) {
    kubectl_admin(&[
        "delete",
        "secret",
        name,
        "-n",
        RELEASE_NAMESPACE,
        "--ignore-not-found",
    ])
    .success();
    kubectl_admin(&[
        "create",
        "secret",
        "generic",
        name,
        "-n",
        RELEASE_NAMESPACE,
        &format!("--from-literal={literal}"),
    ])
    .success();
}

//! The chart installed as users install it on the real node (examples/real-node/values.yaml),
//! once per run: the operator's image from the local registry by digest, a local volume of
//! the node for its audit claim, and the operator pod Ready and leading.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use tokio::sync::OnceCell;

use crate::support::*;

/// The release, as the README names it.
pub const RELEASE: &str = "decision-gate";
/// The operator pods' labels.
pub const OPERATOR_PODS: &str =
    "app.kubernetes.io/name=decision-gate,app.kubernetes.io/instance=decision-gate";
/// How long the node may take to pull an image and start a pod, or a plan to run.
pub const NODE_DEADLINE: Duration = Duration::from_secs(180);
/// The real node (hack/node.sh).
pub const NODE: &str = "real-node";

/// The local cluster's directory (.local/cluster), where the admin kubeconfig is.
pub fn cluster_dir() -> PathBuf {
    admin_kubeconfig().parent().unwrap().to_path_buf()
}

/// A directory of the node's own, for volumes the tests make.
pub fn node_volume(name: &str) -> PathBuf {
    let dir = cluster_dir().join("node/volumes").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An image hack/images.sh pushed, by digest.
pub fn image(name: &str) -> String {
    let path = cluster_dir().join("images").join(format!("{name}.ref"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}: push the images to the local registry first (hack/images.sh)",
                path.display()
            )
        })
        .trim()
        .to_owned()
}

static INSTALLED: OnceCell<()> = OnceCell::const_new();

/// Installs (or upgrades to) the chart with the real node's values, once per run, and waits
/// until its operator pod runs on the real node, Ready and leading.
pub async fn installed() {
    INSTALLED
        .get_or_init(|| async {
            let node: Api<k8s_openapi::api::core::v1::Node> = Api::all(admin().await);
            let ready = node.get(NODE).await.unwrap_or_else(|e| {
                panic!("no node {NODE} ({e}): the real node runs only as root (hack/node.sh)")
            });
            let is_ready = ready
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            assert!(is_ready, "the node {NODE} is not Ready: {:?}", ready.status);
            let audit = node_volume("decision-gate-audit");
            apply(
                "default",
                &format!(
                    "apiVersion: v1\nkind: PersistentVolume\nmetadata: {{name: decision-gate-audit}}\nspec:\n  capacity: {{storage: 1Gi}}\n  accessModes: [ReadWriteOnce]\n  storageClassName: local-real-node\n  local: {{path: {}}}\n  nodeAffinity:\n    required:\n      nodeSelectorTerms: [{{matchExpressions: [{{key: decisiongate.io/node, operator: In, values: [real]}}]}}]\n",
                    audit.display()
                ),
            )
            .success();
            let crds = repo_root().join("crds");
            kubectl_admin(&["apply", "--server-side", "--force-conflicts", "-f", crds.to_str().unwrap()]).success();
            let digest = image("decision-gate").split_once('@').unwrap().1.to_owned();
            helm(&[
                "upgrade",
                "--install",
                RELEASE,
                repo_root().join("charts/decision-gate").to_str().unwrap(),
                "--namespace",
                RELEASE_NAMESPACE,
                "--create-namespace",
                "-f",
                repo_root().join("examples/real-node/values.yaml").to_str().unwrap(),
                "--set",
                &format!("image.digest={digest}"),
                "--wait",
                "--timeout",
                "180s",
            ]);
            operator_pod().await;
        })
        .await;
}

/// Runs helm as the admin; fails the test with what it printed unless it succeeds.
pub fn helm(args: &[&str]) -> String {
    let kubeconfig = admin_kubeconfig();
    let out = run_helm(&[args, &["--kubeconfig", kubeconfig.to_str().unwrap()]].concat());
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "helm {args:?} failed: {printed}");
    printed
}

/// The operator's pod once exactly one runs on the real node, Ready, and leads (its
/// /readyz, asked through the API server's service proxy, says so).
pub async fn operator_pod() -> Pod {
    let pods: Api<Pod> = Api::namespaced(admin().await, RELEASE_NAMESPACE);
    let deadline = tokio::time::Instant::now() + NODE_DEADLINE;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        let list = pods
            .list(&ListParams::default().labels(OPERATOR_PODS))
            .await
            .unwrap();
        let live: Vec<&Pod> = list
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        if let [pod] = live.as_slice() {
            let ready = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            let on_node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(NODE);
            if ready && on_node && leads(pod).await {
                return (*pod).clone();
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no operator pod Ready and leading on {NODE} after {NODE_DEADLINE:?}: {:#?}",
            list.items
                .iter()
                .map(|p| (&p.metadata.name, &p.status))
                .collect::<Vec<_>>()
        );
    }
}

/// Whether the pod says it leads, asked through the API server's pod proxy.
async fn leads(pod: &Pod) -> bool {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let path = format!("/api/v1/namespaces/{RELEASE_NAMESPACE}/pods/{name}:8080/proxy/readyz");
    let out = kubectl_admin(&["get", "--raw", &path]);
    out.ok && out.stdout.trim() == "ok: leader"
}

/// A namespace of one test on the real node's operator, deleted when the test ends. (The
/// suite's TestNamespace would install the chart without an operator pod.)
pub struct NodeNamespace {
    pub name: String,
}

impl NodeNamespace {
    pub async fn new(prefix: &str) -> Self {
        installed().await;
        let name = unique_name(prefix);
        create_namespace(&name).await;
        NodeNamespace { name }
    }
}

impl Drop for NodeNamespace {
    fn drop(&mut self) {
        let _ = kubectl_admin(&["delete", "namespace", &self.name, "--wait=false"]);
    }
}

/// A cluster-wide object that goes when the test ends, as its namespace does.
pub struct Deleted(pub String);

impl Drop for Deleted {
    fn drop(&mut self) {
        let _ = kubectl_admin(&["delete", &self.0, "--ignore-not-found", "--wait=false"]);
    }
}

//! The harness of the end-to-end suite: the local control plane's kubeconfigs, kubectl,
//! throw-away namespaces, the operator as a real process, and waits with deadlines.

mod argocd;
mod browser;
mod endpoints;
mod kubectl;
mod namespaces;
mod operator;
mod review_page;
mod wait;
mod walkthrough;

use std::path::PathBuf;
use std::time::Duration;

// Only the GitOps suite drives Argo CD.
#[allow(unused_imports)]
pub use self::argocd::*;
// The cluster benchmark shares this harness and drives no browser.
#[allow(unused_imports)]
pub use self::browser::*;
pub use self::endpoints::*;
pub use self::kubectl::*;
pub use self::namespaces::*;
pub use self::operator::*;
// Only the suites that open the review page use it.
#[allow(unused_imports)]
pub use self::review_page::*;
pub use self::wait::*;
// Only the suites that follow a README section use it.
#[allow(unused_imports)]
pub use self::walkthrough::*;

pub const DEADLINE: Duration = Duration::from_secs(60);

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A tool `make` built: `$ENV` if set, else the pinned build in the cache
/// (~/.cache/decision-gate/bin/<component>-<version>/<binary>, as hack/lib.sh lays it out).
pub fn tool(env: &str, component: &str, version_key: &str, binary: &str) -> String {
    if let Ok(path) = std::env::var(env) {
        return path;
    }
    let built = cache_dir()
        .join("bin")
        .join(format!("{component}-{}", pinned(version_key)))
        .join(binary);
    if built.exists() {
        built.to_string_lossy().into_owned()
    } else {
        binary.to_owned()
    }
}

/// Runs the pinned helm with `args`.
pub fn run_helm(args: &[&str]) -> std::process::Output {
    let helm = tool("HELM", "helm", "HELM_VERSION", "helm");
    std::process::Command::new(&helm)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {helm}: {e}"))
}

/// The chart rendered by `helm template` as `release` in `namespace` for the pinned
/// Kubernetes version, with more arguments (`--show-only`, `--set`). Its image is one
/// nobody pulls: the tests run the operator as a process.
pub fn helm_template(release: &str, namespace: &str, args: &[&str]) -> String {
    let chart = repo_root().join("charts/decision-gate");
    let kube_version = pinned("KUBERNETES_VERSION");
    let mut all = vec![
        "template",
        release,
        chart.to_str().unwrap(),
        "--namespace",
        namespace,
        "--kube-version",
        &kube_version,
        "--set",
        "image.repository=localhost/decision-gate",
    ];
    all.extend_from_slice(args);
    let out = run_helm(&all);
    assert!(
        out.status.success(),
        "helm template {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The values of a KEY=VALUE file the cluster's scripts wrote in its directory, by key;
/// fails the test saying `missing` when there is no such file, and naming the key when the
/// file has no such line.
pub fn cluster_env(file: &str, missing: &str) -> impl Fn(&str) -> String {
    let path = admin_kubeconfig().parent().unwrap().join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} is missing: {missing}", path.display()));
    move |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{} names no {key}", path.display()))
            .to_owned()
    }
}

/// A version pinned in hack/versions.env.
pub fn pinned(version_key: &str) -> String {
    let versions =
        std::fs::read_to_string(repo_root().join("hack/versions.env")).unwrap_or_default();
    versions
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{version_key}=")))
        .unwrap_or_default()
        .to_owned()
}

/// The cache `make` builds into, as hack/lib.sh finds it.
pub fn cache_dir() -> PathBuf {
    std::env::var("DECISION_GATE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            std::env::var("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|_| {
                    PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache")
                })
                .join("decision-gate")
        })
}

/// The namespace the chart is installed into for the suite.
pub const RELEASE_NAMESPACE: &str = "decision-gate-system";

/// The namespace to give [`Operator::spawn`] for an operator that watches every namespace
/// (only where no other test runs beside it).
pub const ALL_NAMESPACES: &str = "";

/// The Secret the notification tests keep a webhook URL in (the chart lets the operator
/// read it and no other).
pub const TEST_HOOKS_SECRET: &str = "decision-gate-test-hooks";

/// The Secret that holds the Slack bot token of the tests' Slack channels.
pub const TEST_SLACK_SECRET: &str = "decision-gate-test-slack";

/// The chart's metrics Service name, the one the auditor role may proxy to.
pub const OPERATOR_SERVICE: &str = "decision-gate-metrics";

/// A Decision's manifest, with its spec in YAML flow style.
pub fn decision(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: decisiongate.io/v1alpha1\nkind: Decision\nmetadata: {{name: {name}}}\nspec: {spec}\n"
    )
}

/// An ApprovalPolicy that approves every Decision whose actionType is `ship`.
pub const AUTO_APPROVE_SHIPPING: &str = "apiVersion: decisiongate.io/v1alpha1\nkind: ApprovalPolicy\nmetadata: {name: ship-it}\nspec: {rules: [{name: ship, match: {actionTypes: [ship]}, outcome: AutoApprove}]}\n";

/// Applies [`AUTO_APPROVE_SHIPPING`] and the Real plan `three`: steps one, two and three,
/// each a pod that takes `delay` and reports "<step> done".
pub fn ship_in_three_steps(namespace: &str, delay: &str) {
    apply(namespace, AUTO_APPROVE_SHIPPING).success();
    let step = |name: &str| {
        format!(
            r#"{{name: {name}, template: {{metadata: {{annotations: {{"decisiongate.io/test-delay": {delay}, "decisiongate.io/test-result": "{name} done"}}}}, spec: {{restartPolicy: Never, containers: [{{name: main, image: busybox}}]}}}}}}"#
        )
    };
    apply(
        namespace,
        &format!(
            "apiVersion: decisiongate.io/v1alpha1\nkind: ExecutionPlan\nmetadata: {{name: three}}\nspec: {{actionTypes: [ship], mode: Real, rollbackStrategy: None, steps: [{}, {}, {}]}}\n",
            step("one"),
            step("two"),
            step("three")
        ),
    )
    .success();
}

//! `make run` (hack/run.sh) on the cluster the suite installed the chart into: it installs
//! again over that install, runs the operator as the chart's ServiceAccount behind the
//! admission policies, stops cleanly on Ctrl-C, and starts again.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use decision_gate::api::{Decision, DecisionPhase};
use kube::Api;

use crate::support::*;

/// How long hack/run.sh may take to install the chart and get the operator ready.
const START_LIMIT: Duration = Duration::from_secs(180);

/// One hack/run.sh at a time: each upgrades the same Helm release.
static ONE_INSTALL_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// hack/run.sh as `make run` runs it, with two differences that keep it beside the rest of
/// the suite: it runs this build's operator (DECISION_GATE_BIN, so that it builds nothing)
/// and watches one namespace (DECISION_GATE_NAMESPACE). Stopped when dropped.
pub struct MakeRun {
    child: Child,
    pub http_port: u16,
    pub log: PathBuf,
    _alone: tokio::sync::MutexGuard<'static, ()>,
}

impl MakeRun {
    /// Starts hack/run.sh after the suite's own install of the chart, and waits until the
    /// operator is ready.
    pub async fn start(namespace: &str) -> Self {
        ensure_installed().await;
        let alone = ONE_INSTALL_AT_A_TIME.lock().await;
        let http_port = free_port();
        let logs = repo_root().join("target/e2e-logs");
        std::fs::create_dir_all(&logs).unwrap();
        let log = logs.join(format!("make-run-{namespace}-{http_port}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(repo_root().join("hack/run.sh"))
            .current_dir(repo_root())
            // As `make run` without a cluster configured: the local control plane, the one
            // the suite runs against.
            .env_remove("KUBECONFIG")
            .env("DECISION_GATE_LOCAL", local_dir())
            .env("DECISION_GATE_BIN", operator_binary())
            .env("DECISION_GATE_NAMESPACE", namespace)
            .env("HTTP_ADDR", format!("127.0.0.1:{http_port}"))
            .env("RUST_LOG", "info,decision_gate=debug")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            // Its own process group, so that what it starts goes with it if the test fails.
            .process_group(0)
            .spawn()
            .expect("hack/run.sh starts");
        let mut run = MakeRun {
            child,
            http_port,
            log,
            _alone: alone,
        };
        run.wait_ready().await;
        run
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn wait_ready(&mut self) {
        let deadline = tokio::time::Instant::now() + START_LIMIT;
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tick.tick().await;
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "hack/run.sh exited with {status}; its output:\n{}",
                    self.logs()
                );
            }
            if let Ok(response) = http_get("127.0.0.1", self.http_port, "/readyz", &[]).await
                && leads_and_is_ready(&response)
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the operator of hack/run.sh was not ready after {START_LIMIT:?}; its output:\n{}",
                self.logs()
            );
        }
    }

    /// Ctrl-C: SIGINT, as a terminal sends it (hack/run.sh has become the operator by then),
    /// and how the process exited.
    pub async fn interrupt(mut self) -> (ExitStatus, String) {
        signal(&format!("{}", self.child.id()), "INT");
        let log = self.log.clone();
        let output = move || std::fs::read_to_string(&log).unwrap_or_default();
        let status = exit_of(
            &mut self.child,
            "the operator of hack/run.sh was still running after Ctrl-C",
            &output,
        )
        .await;
        (status, output())
    }
}

impl Drop for MakeRun {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        terminate(&mut self.child, &group);
    }
}

/// Sends a signal to a process, or to a process group (`-<id>`).
fn signal(target: &str, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg("--")
        .arg(target)
        .status();
}

/// The directory hack/run.sh keeps the local control plane under (its DECISION_GATE_LOCAL):
/// the one whose cluster/admin.kubeconfig the suite uses.
pub fn local_dir() -> PathBuf {
    let kubeconfig = admin_kubeconfig();
    let cluster = kubeconfig.parent().unwrap();
    assert!(
        kubeconfig
            .file_name()
            .is_some_and(|n| n == "admin.kubeconfig")
            && cluster.file_name().is_some_and(|n| n == "cluster"),
        "{} is not a local control plane's admin kubeconfig (<dir>/cluster/admin.kubeconfig), which hack/run.sh needs",
        kubeconfig.display()
    );
    cluster.parent().unwrap().to_path_buf()
}

/// Who a kubeconfig authenticates as, by the API server's word.
pub fn whoami(kubeconfig: &std::path::Path) -> String {
    kubectl(
        kubeconfig,
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
        None,
    )
    .success()
}

const ASK_EVERYONE: &str = "apiVersion: decisiongate.io/v1alpha1\nkind: ApprovalPolicy\nmetadata: {name: ask}\nspec: {rules: [{name: everything, outcome: RequireApproval}]}\n";

/// A Decision the admin requests, which alice approves: the operator (as the chart's
/// ServiceAccount) evaluates it, the admission policies record the requester and refuse
/// a forged approval, and the approval counts.
async fn gate_one(api: &Api<Decision>, namespace: &str, name: &str) {
    apply(
        namespace,
        &decision(
            name,
            "{actionType: restart_service, description: Restart the cache, criticality: High}",
        ),
    )
    .success();
    let pending = reaches(api, name, DecisionPhase::Pending).await;
    assert_eq!(
        pending
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("decisiongate.io/requested-by"))
            .map(String::as_str),
        Some("admin"),
        "the requester is recorded from the API server's identity"
    );
    let refused = annotate_refused_as("bob", namespace, name, "approved-by=alice");
    assert!(
        refused
            .contains("you are authenticated as bob, so approved-by may only name you, not alice"),
        "{refused}"
    );
    annotate_as("alice", namespace, name, &["approved-by=alice"]);
    let approved = reaches(api, name, DecisionPhase::Approved).await;
    let approvers: Vec<_> = approved
        .status
        .unwrap()
        .approvals
        .into_iter()
        .map(|a| a.approver)
        .collect();
    assert_eq!(approvers, ["alice"]);
}

#[tokio::test]
async fn make_run_works_on_the_suites_install_and_twice_in_a_row() {
    let ns = TestNamespace::new("make-run").await;
    let n = ns.name.as_str();
    grant_answering(n);
    apply(n, ASK_EVERYONE).success();
    let api: Api<Decision> = Api::namespaced(admin().await, n);

    let run = MakeRun::start(n).await;
    let operator_kubeconfig = local_dir().join("run/operator.kubeconfig");
    assert_eq!(
        whoami(&operator_kubeconfig),
        "system:serviceaccount:decision-gate-system:decision-gate",
        "make run's operator authenticates as the chart's ServiceAccount"
    );
    gate_one(&api, n, "first-run").await;
    let (status, logs) = run.interrupt().await;
    assert!(
        status.success(),
        "Ctrl-C ended the operator with {status}; its output:\n{logs}"
    );

    let run = MakeRun::start(n).await;
    gate_one(&api, n, "second-run").await;
    let (status, logs) = run.interrupt().await;
    assert!(
        status.success(),
        "Ctrl-C ended the second operator with {status}; its output:\n{logs}"
    );
}

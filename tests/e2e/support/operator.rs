//! The operator as a real process: started, waited on until it leads, signalled and
//! stopped, and reached through the API server's service proxy.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{
    ALL_NAMESPACES, DEADLINE, OPERATOR_SERVICE, RELEASE_NAMESPACE, apply, cluster_env,
    ensure_installed, free_port, http_get, kubectl_admin, repo_root, wait_until,
};

/// Whether a `/readyz` response is that of the leader, ready: it reconciles, and people's
/// answers count.
pub fn leads_and_is_ready((status, body): &(u16, String)) -> bool {
    *status == 200 && body.trim() == "ok: leader"
}

/// The operator, run as its real binary against the local control plane and scoped to
/// one namespace so that tests do not step on each other. Killed when dropped.
pub struct Operator {
    child: Child,
    pub http_port: u16,
    pub http_ip: String,
    pub log: PathBuf,
}

impl Operator {
    /// Starts the operator for a namespace, authenticated as the chart's ServiceAccount.
    pub async fn start(namespace: &str) -> Self {
        let kubeconfig = ensure_installed().await;
        Self::start_as(namespace, &kubeconfig).await
    }

    pub async fn start_as(namespace: &str, kubeconfig: &Path) -> Self {
        let operator = Self::spawn(namespace, kubeconfig, &[]);
        operator.wait_ready().await;
        operator
    }

    /// Waits until the operator leads and is ready (see [`Operator::wait_ready`]).
    pub async fn ready(self) -> Self {
        self.wait_ready().await;
        self
    }

    /// Starts an operator that may run Real plans for real.
    pub async fn start_allowing_real(namespace: &str) -> Self {
        let kubeconfig = ensure_installed().await;
        let operator = Self::spawn(namespace, &kubeconfig, &["--allow-real-execution"]);
        operator.wait_ready().await;
        operator
    }

    /// The audit log of the operators of a namespace: the same file across restarts.
    pub fn audit_log(namespace: &str) -> PathBuf {
        repo_root()
            .join("target/e2e-logs")
            .join(if namespace == ALL_NAMESPACES {
                "all-namespaces"
            } else {
                namespace
            })
            .join("audit.jsonl")
    }

    /// The lines of the audit log of a namespace's operators, parsed.
    pub fn audit_entries(namespace: &str) -> Vec<serde_json::Value> {
        std::fs::read_to_string(Self::audit_log(namespace))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The lines of that audit log of one event type.
    pub fn audited(namespace: &str, event_type: &str) -> Vec<serde_json::Value> {
        Self::audit_entries(namespace)
            .into_iter()
            .filter(|e| e["event_type"] == event_type)
            .collect()
    }

    /// Starts the binary without waiting for it to become ready.
    pub fn spawn(namespace: &str, kubeconfig: &Path, extra_args: &[&str]) -> Self {
        Self::spawn_at(namespace, kubeconfig, extra_args, "127.0.0.1")
    }

    /// Like [`Operator::spawn`], serving its endpoints on `ip`.
    pub fn spawn_at(namespace: &str, kubeconfig: &Path, extra_args: &[&str], ip: &str) -> Self {
        let http_port = free_port();
        let logs = repo_root().join("target/e2e-logs");
        std::fs::create_dir_all(&logs).unwrap();
        let log = logs.join(format!("operator-{namespace}-{http_port}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(operator_binary())
            .arg("run")
            .args(if namespace == ALL_NAMESPACES {
                Vec::new()
            } else {
                vec!["--namespace", namespace]
            })
            .arg("--http-addr")
            .arg(format!("{ip}:{http_port}"))
            .args(if extra_args.contains(&"--audit-log") {
                Vec::new()
            } else {
                vec!["--audit-log".into(), Self::audit_log(namespace)]
            })
            .args(["--lease-namespace", RELEASE_NAMESPACE])
            .args(if extra_args.contains(&"--lease-duration") {
                &[][..]
            } else {
                &["--lease-duration", "4s"][..]
            })
            .args(extra_args)
            .env("KUBECONFIG", kubeconfig)
            // The benchmark runs it as in production, at `info`.
            .env(
                "RUST_LOG",
                std::env::var("DECISION_GATE_E2E_RUST_LOG")
                    .unwrap_or_else(|_| "info,decision_gate=debug".to_owned()),
            )
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("the decision-gate binary starts");
        Operator {
            child,
            http_port,
            http_ip: ip.to_owned(),
            log,
        }
    }

    /// The operator's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The exit status, if the process has exited.
    #[allow(dead_code)] // only the disruptive tests ask
    pub fn try_exit(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Waits until the operator leads and is ready: its caches are filled and people's
    /// answers count. (A standby is ready too, but does nothing yet.)
    pub async fn wait_ready(&self) {
        self.wait_ready_within(DEADLINE).await
    }

    /// [`Operator::wait_ready`], with a deadline of its own (a new leader over 100,000
    /// Decisions takes longer than a test's).
    pub async fn wait_ready_within(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tick.tick().await;
            if let Ok(response) = self.get("/readyz").await
                && leads_and_is_ready(&response)
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the operator did not become ready; its log:\n{}",
                self.logs()
            );
        }
    }

    /// A plain HTTP GET against the operator's endpoints: (status, body).
    pub async fn get(&self, path: &str) -> std::io::Result<(u16, String)> {
        self.get_with(path, &[]).await
    }

    /// A plain HTTP GET with these headers, as any process on the network could send it.
    pub async fn get_with(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> std::io::Result<(u16, String)> {
        http_get(&self.http_ip, self.http_port, path, headers).await
    }

    /// Sends a signal to the operator process.
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "could not send SIG{signal} to the operator");
    }

    /// Waits for the process to exit and returns whether it exited successfully.
    pub async fn wait_exit(&mut self) -> std::process::ExitStatus {
        let log = self.log.clone();
        exit_of(&mut self.child, "the operator did not exit", || {
            std::fs::read_to_string(&log).unwrap_or_default()
        })
        .await
    }
}

/// Waits, at most [`DEADLINE`], for a child process to exit; fails the test with `what`
/// and its output otherwise.
pub async fn exit_of(
    child: &mut Child,
    what: &str,
    output: impl Fn() -> String,
) -> std::process::ExitStatus {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} after {DEADLINE:?}; its output:\n{}",
            output()
        );
    }
}

/// Stops a child as Kubernetes would: SIGTERM to `target` (its pid, or `-<pid>` for its
/// process group), then SIGKILL to it if the child is still there after ten seconds.
pub fn terminate(child: &mut Child, target: &str) {
    if let Ok(None) = child.try_wait() {
        let _ = Command::new("kill").arg("-TERM").arg(target).status();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50)); // poll interval of this bounded wait
        }
        let _ = Command::new("kill").arg("-KILL").arg(target).status();
    }
    let _ = child.wait();
}

impl Drop for Operator {
    /// Stops the operator as Kubernetes would: SIGTERM (it hands its Lease over), then
    /// SIGKILL if it is still there after a few seconds.
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        terminate(&mut self.child, &pid);
    }
}

/// The operator binary under test: this build's, or another (a release one, an older one)
/// named by DECISION_GATE_E2E_OPERATOR.
pub fn operator_binary() -> String {
    std::env::var("DECISION_GATE_E2E_OPERATOR")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_decision-gate").to_owned())
}

/// The network namespace `make cluster-up` joins to the host, through which the API
/// server's service proxy (which refuses loopback addresses) reaches a local operator.
pub struct OperatorHost {
    pub netns: String,
    pub host_ip: String,
    pub netns_ip: String,
}

impl OperatorHost {
    pub fn get() -> OperatorHost {
        let value = cluster_env(
            "operator-host.env",
            "the local control plane was started without root, so there is no network namespace to reach a local operator through",
        );
        OperatorHost {
            netns: value("OPERATOR_NETNS"),
            host_ip: value("HOST_IP"),
            netns_ip: value("NETNS_IP"),
        }
    }

    /// Relays `netns_ip:port` (inside the namespace) to `host_ip:port`, until dropped.
    pub fn relay(&self, port: u16) -> Relay {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.netns, "socat"])
            .arg(format!(
                "TCP-LISTEN:{port},bind={},fork,reuseaddr",
                self.netns_ip
            ))
            .arg(format!("TCP:{}:{port}", self.host_ip))
            .stdin(Stdio::null())
            .spawn()
            .expect("socat starts in the operator network namespace");
        Relay { child }
    }
}

pub struct Relay {
    child: Child,
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An operator for `namespace` that the API server's service proxy reaches, as the
/// chart's: its Service is `decision-gate-metrics` (port `http`) in the namespace, and
/// selects a kwok stand-in pod whose IP is a relay to the local process. Keep the relay
/// as long as the operator.
pub async fn operator_behind_service(namespace: &str) -> (Operator, Relay) {
    let host = OperatorHost::get();
    let kubeconfig = ensure_installed().await;
    let operator = Operator::spawn_at(namespace, &kubeconfig, &[], &host.host_ip)
        .ready()
        .await;
    let relay = host.relay(operator.http_port);
    apply(
        namespace,
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: operator, labels: {{app: operator}}, annotations: {{decisiongate.io/test-pod-ip: '{ip}'}}}}\nspec: {{containers: [{{name: operator, image: decision-gate, ports: [{{name: http, containerPort: {port}}}]}}]}}\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: {OPERATOR_SERVICE}}}\nspec: {{selector: {{app: operator}}, ports: [{{name: http, port: 8080, targetPort: http}}]}}\n",
            port = operator.http_port,
            ip = host.netns_ip
        ),
    )
    .success();
    wait_until("the operator Service to have an endpoint", || {
        kubectl_admin(&[
            "get",
            "endpoints",
            OPERATOR_SERVICE,
            "-n",
            namespace,
            "-o",
            "jsonpath={.subsets[0].addresses[0].ip}",
        ])
        .stdout
            == host.netns_ip
    })
    .await;
    (operator, relay)
}

/// The deletion witness of a test's operator: the arguments that serve it on loopback (with
/// the local CA's certificate `make cluster-up` issues for it), and the webhook that sends it
/// the deletions of the test's namespace, removed when dropped.
pub struct DeletionWitness {
    pub args: Vec<String>,
    webhook: String,
}

impl DeletionWitness {
    pub fn new(namespace: &str) -> DeletionWitness {
        use base64::Engine;
        let cluster = super::admin_kubeconfig()
            .parent()
            .expect("the kubeconfig lives in the cluster's directory")
            .to_owned();
        let ca = std::fs::read(cluster.join("pki/ca.crt")).expect("the local CA");
        let port = free_port();
        let webhook = format!("witness-{namespace}");
        apply(
            namespace,
            &format!(
                "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata: {{name: {webhook}}}\nwebhooks:\n- name: deletions.decisiongate.io\n  clientConfig: {{url: 'https://127.0.0.1:{port}/decision-deletions', caBundle: {}}}\n  rules: [{{apiGroups: [decisiongate.io], apiVersions: ['*'], operations: [DELETE], resources: [decisions], scope: Namespaced}}]\n  namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: {namespace}}}}}\n  failurePolicy: Ignore\n  sideEffects: NoneOnDryRun\n  admissionReviewVersions: [v1]\n  timeoutSeconds: 5\n",
                base64::engine::general_purpose::STANDARD.encode(ca)
            ),
        )
        .success();
        DeletionWitness {
            args: vec![
                "--deletion-webhook-addr".into(),
                format!("127.0.0.1:{port}"),
                "--deletion-webhook-cert-dir".into(),
                cluster.join("witness").to_string_lossy().into_owned(),
            ],
            webhook,
        }
    }

    /// Waits until the API server calls the witness of `operator`: a dry-run deletion of
    /// `decision` reaches it (and is not recorded).
    pub async fn wait_called(&self, operator: &Operator, namespace: &str, decision: &str) {
        wait_until("the API server to call the deletion witness", || {
            kubectl_admin(&[
                "delete",
                "decision",
                decision,
                "-n",
                namespace,
                "--dry-run=server",
            ]);
            operator.logs().contains("a deletion to witness")
        })
        .await;
    }
}

impl Drop for DeletionWitness {
    fn drop(&mut self) {
        let _ = kubectl_admin(&[
            "delete",
            "validatingwebhookconfiguration",
            &self.webhook,
            "--ignore-not-found",
        ]);
    }
}

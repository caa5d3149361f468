//! The harness of the end-to-end suite: the local control plane's kubeconfigs, kubectl,
//! throw-away namespaces, the operator as a real process, and waits with deadlines.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use decision_gate::api::{Decision, DecisionPhase};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{Condition, await_condition};
use kube::{Api, Client, Config, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::OnceCell;

pub const DEADLINE: Duration = Duration::from_secs(60);

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The admin kubeconfig of the local control plane (`make cluster-up` writes it).
pub fn admin_kubeconfig() -> PathBuf {
    let path = std::env::var_os("DECISION_GATE_E2E_KUBECONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".local/cluster/admin.kubeconfig"));
    assert!(
        path.exists(),
        "{} does not exist: start the local control plane with `make cluster-up` (or run `make test`)",
        path.display()
    );
    path
}

/// The kubeconfig of one of the test users: alice, bob (approvers), carol (sre), dave.
pub fn user_kubeconfig(user: &str) -> PathBuf {
    admin_kubeconfig()
        .parent()
        .expect("the kubeconfig lives in a directory")
        .join("users")
        .join(format!("{user}.kubeconfig"))
}

pub async fn client_for(kubeconfig: &Path) -> Client {
    // The test build links two TLS providers (the SMTP test server brings its own); name one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kubeconfig = Kubeconfig::read_from(kubeconfig).expect("a readable kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("a usable kubeconfig");
    Client::try_from(config).expect("a client")
}

pub async fn admin() -> Client {
    client_for(&admin_kubeconfig()).await
}

/// A tool `make` built: `$ENV` if set, else the pinned build in the cache
/// (~/.cache/decision-gate/bin/<component>-<version>/<binary>, as hack/lib.sh lays it out).
pub fn tool(env: &str, component: &str, version_key: &str, binary: &str) -> String {
    if let Ok(path) = std::env::var(env) {
        return path;
    }
    let versions =
        std::fs::read_to_string(repo_root().join("hack/versions.env")).unwrap_or_default();
    let version = versions
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{version_key}=")))
        .unwrap_or_default();
    let cache = std::env::var("DECISION_GATE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            std::env::var("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|_| {
                    PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache")
                })
                .join("decision-gate")
        });
    let built = cache
        .join("bin")
        .join(format!("{component}-{version}"))
        .join(binary);
    if built.exists() {
        built.to_string_lossy().into_owned()
    } else {
        binary.to_owned()
    }
}

/// What a kubectl invocation printed.
pub struct Kubectl {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Kubectl {
    #[track_caller]
    pub fn success(self) -> String {
        assert!(self.ok, "kubectl failed: {}{}", self.stderr, self.stdout);
        self.stdout
    }

    /// Asserts that the API server refused, and returns what it said.
    #[track_caller]
    pub fn refused(self) -> String {
        assert!(
            !self.ok,
            "kubectl was expected to be refused but succeeded: {}",
            self.stdout
        );
        self.stderr
    }
}

/// Runs kubectl (the one `make` built, through `$KUBECTL`) with a kubeconfig.
pub fn kubectl(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Kubectl {
    let program = tool("KUBECTL", "kubernetes", "KUBERNETES_VERSION", "kubectl");
    let mut cmd = Command::new(&program);
    cmd.arg("--kubeconfig").arg(kubeconfig).args(args);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program} (set KUBECTL): {e}"));
    if let Some(input) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().unwrap();
    Kubectl {
        ok: status.success(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

pub fn kubectl_admin(args: &[&str]) -> Kubectl {
    kubectl(&admin_kubeconfig(), args, None)
}

/// `kubectl apply -f -` of a manifest into a namespace, as admin.
pub fn apply(namespace: &str, manifest: &str) -> Kubectl {
    kubectl(
        &admin_kubeconfig(),
        &["apply", "-n", namespace, "-f", "-"],
        Some(manifest),
    )
}

/// The namespace the chart is installed into for the suite.
pub const RELEASE_NAMESPACE: &str = "decision-gate-system";

/// The namespace to give [`Operator::spawn`] for an operator that watches every namespace
/// (only where no other test runs beside it).
pub const ALL_NAMESPACES: &str = "";

/// The Secret the notification tests keep a webhook URL in (the chart lets the operator
/// read it and no other).
pub const TEST_HOOKS_SECRET: &str = "decision-gate-test-hooks";

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
                ])
                .args([
                    "--set",
                    &format!("notifications.secretNames[0]={TEST_HOOKS_SECRET}"),
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
            operator_kubeconfig()
        })
        .await
        .clone()
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
        kubectl_admin(&["create", "namespace", &name]).success();
        // The controller manager creates the default ServiceAccount that pods need.
        wait_until("the default ServiceAccount", || {
            kubectl_admin(&["get", "serviceaccount", "default", "-n", &name]).ok
        })
        .await;
        TestNamespace { name }
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let _ = kubectl_admin(&["delete", "namespace", &self.name, "--wait=false"]);
    }
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

/// Whether a `/readyz` response is that of the leader, ready: it reconciles, and people's
/// answers count.
pub fn leads_and_is_ready((status, body): &(u16, String)) -> bool {
    *status == 200 && body.trim() == "ok: leader"
}

/// Polls `check` every 200ms until it holds, failing the test after [`DEADLINE`].
pub async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tick.tick().await;
        if check() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
    }
}

/// A Decision's manifest, with its spec in YAML flow style.
pub fn decision(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: decisiongate.io/v1alpha1\nkind: Decision\nmetadata: {{name: {name}}}\nspec: {spec}\n"
    )
}

/// The phase of a Decision, if it exists and has one.
pub fn phase(d: Option<&Decision>) -> Option<DecisionPhase> {
    d.and_then(|d| d.status.as_ref()).and_then(|s| s.phase)
}

/// Waits for the Decision to reach `want` and returns it.
pub async fn reaches(api: &Api<Decision>, name: &str, want: DecisionPhase) -> Decision {
    let what = format!("{want:?}");
    wait_for(api, name, &what, move |d: Option<&Decision>| {
        phase(d) == Some(want)
    })
    .await
}

/// Watches one object until `condition` holds, failing the test with the object's last
/// state after [`DEADLINE`].
pub async fn wait_for<K>(api: &Api<K>, name: &str, what: &str, condition: impl Condition<K>) -> K
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    match tokio::time::timeout(DEADLINE, await_condition(api.clone(), name, condition)).await {
        Ok(Ok(Some(obj))) => obj,
        Ok(Ok(None)) => panic!("{name} was deleted while waiting for {what}"),
        Ok(Err(e)) => panic!("watching {name} for {what} failed: {e}"),
        Err(_) => {
            let last = api.get_opt(name).await;
            panic!(
                "timed out after {DEADLINE:?} waiting for {name} to be {what}; last seen: {last:#?}"
            )
        }
    }
}

/// Waits until the object is gone, failing the test after [`DEADLINE`].
pub async fn wait_gone<K>(api: &Api<K>, name: &str)
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let gone = |obj: Option<&K>| obj.is_none();
    match tokio::time::timeout(DEADLINE, await_condition(api.clone(), name, gone)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => panic!("watching {name} until it is gone failed: {e}"),
        Err(_) => panic!("timed out after {DEADLINE:?} waiting for {name} to be deleted"),
    }
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
            .env("RUST_LOG", "info,decision_gate=debug")
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
        let deadline = tokio::time::Instant::now() + DEADLINE;
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

/// A plain HTTP GET: (status, body).
pub async fn http_get(
    ip: &str,
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect((ip, port)).await?;
    let headers: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{headers}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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

/// `kubectl annotate --overwrite` as one of the test users, expected to be refused: what
/// the API server said.
#[track_caller]
pub fn annotate_refused_as(user: &str, namespace: &str, decision: &str, pair: &str) -> String {
    let args = annotate_args(namespace, decision, &[pair]);
    kubectl(&user_kubeconfig(user), &args, None).refused()
}

/// `kubectl annotate --overwrite` as one of the test users.
#[track_caller]
pub fn annotate_as(user: &str, namespace: &str, decision: &str, pairs: &[&str]) {
    let args = annotate_args(namespace, decision, pairs);
    kubectl(&user_kubeconfig(user), &args, None).success();
}

fn annotate_args<'a>(namespace: &'a str, decision: &'a str, pairs: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "annotate",
        "--overwrite",
        "-n",
        namespace,
        "decision",
        decision,
    ];
    args.extend_from_slice(pairs);
    args
}

/// Runs the `kubectl decision` plugin as one of the test users.
pub fn plugin(user: &str, args: &[&str]) -> Kubectl {
    let kubeconfig = user_kubeconfig(user);
    ran(Command::new(env!("CARGO_BIN_EXE_kubectl-decision"))
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(args))
}

/// The decision-gate binary itself, for its `audit` subcommands.
pub fn decision_gate(args: &[&str]) -> Kubectl {
    ran(Command::new(env!("CARGO_BIN_EXE_decision-gate")).args(args))
}

fn ran(command: &mut Command) -> Kubectl {
    let out = command.output().unwrap();
    Kubectl {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
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
        let file = admin_kubeconfig()
            .parent()
            .unwrap()
            .join("operator-host.env");
        let text = std::fs::read_to_string(&file).unwrap_or_else(|_| {
            panic!(
                "{} is missing: the local control plane was started without root, so there is no network namespace to reach a local operator through",
                file.display()
            )
        });
        let value = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{key}=")))
                .unwrap_or_default()
                .to_owned()
        };
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

/// The chart's metrics Service name, the one the auditor role may proxy to.
pub const OPERATOR_SERVICE: &str = "decision-gate-metrics";

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
    wait_until(&format!("{user} to hold get on decisions/audit"), || {
        kubectl_admin(&[
            "auth",
            "can-i",
            "get",
            "decisions.decisiongate.io",
            "--subresource",
            "audit",
            "-n",
            namespace,
            "--as",
            user,
        ])
        .stdout
        .trim()
            == "yes"
    })
    .await;
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

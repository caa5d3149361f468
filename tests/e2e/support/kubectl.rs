//! Kubeconfigs and clients of the local control plane, and the runners of kubectl, the
//! `kubectl decision` plugin and the decision-gate binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use super::{repo_root, tool};

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
    plugin_with(&user_kubeconfig(user), args)
}

/// `kubectl decision` with a kubeconfig of its own (a ServiceAccount's, say).
pub fn plugin_with(kubeconfig: &Path, args: &[&str]) -> Kubectl {
    ran(Command::new(env!("CARGO_BIN_EXE_kubectl-decision"))
        .arg("--kubeconfig")
        .arg(kubeconfig)
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

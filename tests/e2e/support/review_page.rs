//! `kubectl decision ui --no-browser` run as one of the test users: the page's address and
//! the cookie that opens it.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use super::{DEADLINE, repo_root, terminate, user_kubeconfig};

/// `kubectl decision ui --no-browser` as one of the test users, until dropped.
pub struct ReviewPage {
    child: Child,
    /// The address it printed, with its secret.
    pub url: String,
    log: PathBuf,
}

impl ReviewPage {
    /// Serves the page for `namespace`, reading the audit trail from the operator's
    /// Service in `operator_namespace`.
    pub fn start(user: &str, namespace: &str, operator_namespace: &str) -> ReviewPage {
        let log = repo_root().join(format!("target/e2e-logs/ui-{namespace}-{user}.log"));
        std::fs::create_dir_all(log.parent().unwrap()).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_kubectl-decision"))
            .arg("--kubeconfig")
            .arg(user_kubeconfig(user))
            .args(["-n", namespace, "ui", "--no-browser"])
            .args(["--operator-namespace", operator_namespace])
            .env("BROWSER", "/bin/false")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("kubectl-decision starts");
        let (lines, printed) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let url = loop {
            match printed.recv_timeout(DEADLINE) {
                Ok(line) => {
                    if let Some(url) = line.split_whitespace().find(|w| w.starts_with("http://")) {
                        break url.to_owned();
                    }
                }
                Err(_) => panic!(
                    "kubectl decision ui printed no address; its errors:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                ),
            }
        };
        ReviewPage { child, url, log }
    }

    /// The origin served, such as `http://127.0.0.1:41234`.
    pub fn origin(&self) -> &str {
        self.url.split("/?").next().unwrap()
    }

    /// The cookie the page's secret is kept in.
    pub fn cookie(&self) -> String {
        let port = self.origin().rsplit(':').next().unwrap();
        let token = self.url.split("token=").nth(1).unwrap();
        format!("decision-gate-ui-{port}={token}")
    }
}

impl Drop for ReviewPage {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        terminate(&mut self.child, &pid);
        if std::thread::panicking() {
            eprintln!(
                "kubectl decision ui's errors:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

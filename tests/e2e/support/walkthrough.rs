//! A README section followed literally: every ```sh block of a `## ` section, one command
//! at a time, run by bash from the repository root in a fresh environment, the way a reader
//! pastes them into one terminal.
//!
//! Under a command, comment lines say what it must print:
//!
//! - `# => TEXT`: the command succeeds and prints TEXT;
//! - `# refused: TEXT`: the command fails and prints TEXT (the API server's refusal).
//!
//! In TEXT, a run of spaces matches any run of whitespace and `...` anything at all. A
//! command with neither must succeed. Other comments are for the reader. Exported variables
//! carry over from one command to the next, as in one terminal.

use std::path::Path;
use std::time::Duration;

use super::{repo_root, tool, unique_name};

#[derive(Debug, PartialEq)]
pub enum Expect {
    Prints(String),
    Refused(String),
}

/// One command of the walkthrough, with what it must print.
#[derive(Debug, PartialEq)]
pub struct Step {
    /// The README line it starts on.
    pub line: usize,
    pub command: String,
    pub expect: Vec<Expect>,
}

/// The commands of the ```sh blocks of the section whose heading is `heading` (`## Title`),
/// up to the next section of the same level.
pub fn walkthrough(readme: &str, heading: &str) -> Vec<Step> {
    let mut lines = readme.lines().enumerate().map(|(i, l)| (i + 1, l));
    lines
        .by_ref()
        .find(|(_, l)| l.trim_end() == heading)
        .unwrap_or_else(|| panic!("README.md has no section `{heading}`"));
    let section: Vec<(usize, &str)> = lines.take_while(|(_, l)| !l.starts_with("## ")).collect();
    let mut steps: Vec<Step> = Vec::new();
    let mut i = 0;
    let mut in_block = false;
    while i < section.len() {
        let (number, line) = section[i];
        i += 1;
        let trimmed = line.trim();
        if !in_block {
            in_block = trimmed == "```sh";
            continue;
        }
        if trimmed == "```" {
            in_block = false;
            continue;
        }
        if trimmed.is_empty() {
            continue;
        }
        if let Some(comment) = trimmed.strip_prefix('#') {
            let comment = comment.trim_start();
            let expect = if let Some(text) = comment.strip_prefix("=>") {
                Expect::Prints(text.trim().to_owned())
            } else if let Some(text) = comment.strip_prefix("refused:") {
                Expect::Refused(text.trim().to_owned())
            } else {
                continue;
            };
            steps
                .last_mut()
                .unwrap_or_else(|| {
                    panic!("README.md:{number}: an expected output with no command before it")
                })
                .expect
                .push(expect);
            continue;
        }
        // A command: its continuation lines, and the body of a here-document.
        let mut command = line.to_owned();
        let mut last = line;
        while last.trim_end().ends_with('\\') && i < section.len() {
            last = section[i].1;
            command.push('\n');
            command.push_str(last);
            i += 1;
        }
        if let Some(delimiter) = heredoc_delimiter(&command) {
            while i < section.len() {
                let body = section[i].1;
                i += 1;
                command.push('\n');
                command.push_str(body);
                if body.trim() == delimiter {
                    break;
                }
            }
        }
        steps.push(Step {
            line: number,
            command,
            expect: Vec::new(),
        });
    }
    steps
}

/// The delimiter of a here-document the command opens (`<<'YAML'`, `<<EOF`), if any.
pub fn heredoc_delimiter(command: &str) -> Option<String> {
    let start = command.match_indices("<<").find_map(|(at, _)| {
        let rest = &command[at + 2..];
        (!rest.starts_with('<') && !command[..at].ends_with('<')).then_some(rest)
    })?;
    let word: String = start
        .trim_start_matches('-')
        .trim_start()
        .trim_start_matches(['\'', '"'])
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!word.is_empty()).then_some(word)
}

fn squeeze(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whether `output` holds `expected`: its pieces between `...`, in order, whitespace
/// squeezed.
pub fn holds(output: &str, expected: &str) -> bool {
    let output = squeeze(output);
    let mut rest = output.as_str();
    for piece in expected.split("...").map(squeeze) {
        if piece.is_empty() {
            continue;
        }
        match rest.find(&piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    true
}

/// Runs one command with bash from the repository root, in the environment the earlier
/// commands exported (kept in `state`): (succeeded, what it printed).
pub async fn run_in_shell(
    command: &str,
    state: &Path,
    path: &str,
    limit: Duration,
) -> (bool, String) {
    let script = format!(
        "[ -f '{state}' ] && . '{state}' 2>/dev/null\ncd '{root}' || exit 1\n{command}\n__status=$?\nexport -p >'{state}'\nexit $__status\n",
        state = state.display(),
        root = repo_root().display()
    );
    let mut shell = tokio::process::Command::new("bash");
    shell
        .arg("-c")
        .arg(script)
        .current_dir(repo_root())
        .env_clear()
        .env("PATH", path)
        .env("HOME", std::env::var("HOME").unwrap_or_default())
        .env("TERM", "dumb")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    for key in [
        "DECISION_GATE_CACHE",
        "XDG_CACHE_HOME",
        "DECISION_GATE_APISERVER_PORT",
        "DECISION_GATE_ETCD_PORT",
        "DECISION_GATE_ETCD_PEER_PORT",
        "DECISION_GATE_REGISTRY_PORT",
    ] {
        if let Ok(value) = std::env::var(key) {
            shell.env(key, value);
        }
    }
    let out = tokio::time::timeout(limit, shell.output())
        .await
        .unwrap_or_else(|_| panic!("still running after {limit:?}: {command}"))
        .expect("bash runs");
    let mut printed = String::from_utf8_lossy(&out.stdout).into_owned();
    printed.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), printed)
}

/// Runs the steps one after the other in one shell session, with the pinned kubectl, helm
/// and this build's binaries on the PATH; fails the test at the first step that fails or
/// prints something else than it must, with what `context` tells (the operator's logs).
pub async fn follow(steps: &[Step], name: &str, limit: Duration, context: impl Fn() -> String) {
    let mut path = Vec::new();
    let kubectl = tool("KUBECTL", "kubernetes", "KUBERNETES_VERSION", "kubectl");
    let helm = tool("HELM", "helm", "HELM_VERSION", "helm");
    for binary in [
        kubectl.as_str(),
        helm.as_str(),
        env!("CARGO_BIN_EXE_kubectl-decision"),
        env!("CARGO_BIN_EXE_decision-gate"),
    ] {
        if let Some(dir) = Path::new(binary).parent().filter(|d| d.is_absolute()) {
            path.push(dir.display().to_string());
        }
    }
    path.push(std::env::var("PATH").unwrap_or_default());
    let path = path.join(":");
    let state = repo_root()
        .join("target/e2e-logs")
        .join(format!("{name}-{}.env", unique_name("shell")));
    let _ = std::fs::create_dir_all(state.parent().unwrap());
    let _ = std::fs::remove_file(&state);

    for step in steps {
        let (ok, printed) = run_in_shell(&step.command, &state, &path, limit).await;
        let failed = |why: &str| -> ! {
            panic!(
                "README.md:{}: {why}\n$ {}\n{printed}\n{}",
                step.line,
                step.command,
                context()
            )
        };
        let refused = step.expect.iter().any(|e| matches!(e, Expect::Refused(_)));
        match (ok, refused) {
            (true, true) => failed("the command was expected to be refused, but it succeeded"),
            (false, false) => failed("the command failed"),
            _ => {}
        }
        for expect in &step.expect {
            let (Expect::Prints(text) | Expect::Refused(text)) = expect;
            if !holds(&printed, text) {
                failed(&format!("the command did not print {text:?}"));
            }
        }
    }
    let _ = std::fs::remove_file(&state);
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let last: Vec<&str> = text.lines().rev().take(lines).collect();
    last.into_iter().rev().collect::<Vec<_>>().join("\n")
}

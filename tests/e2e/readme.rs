//! The README's walkthrough ("Five minutes with it"), followed literally: every ```sh block
//! of that section, one command at a time, run by bash from the repository root in a fresh
//! environment whose PATH holds the pinned kubectl and this build's binaries, while the
//! operator runs as hack/run.sh (what `make run` runs) started it.
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

use crate::make_run::{MakeRun, local_dir};
use crate::support::*;

/// How long one command of the walkthrough may take (its own waits are shorter).
const COMMAND_LIMIT: Duration = Duration::from_secs(120);

#[derive(Debug, PartialEq)]
enum Expect {
    Prints(String),
    Refused(String),
}

/// One command of the walkthrough, with what it must print.
#[derive(Debug, PartialEq)]
struct Step {
    /// The README line it starts on.
    line: usize,
    command: String,
    expect: Vec<Expect>,
}

/// The commands of the `## Five minutes with it` section's ```sh blocks.
fn walkthrough(readme: &str) -> Vec<Step> {
    let mut lines = readme.lines().enumerate().map(|(i, l)| (i + 1, l));
    lines
        .by_ref()
        .find(|(_, l)| l.trim_end() == "## Five minutes with it")
        .expect("README.md has a section `## Five minutes with it`");
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
fn heredoc_delimiter(command: &str) -> Option<String> {
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
fn holds(output: &str, expected: &str) -> bool {
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
async fn run_in_shell(command: &str, state: &Path, path: &str) -> (bool, String) {
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
    ] {
        if let Ok(value) = std::env::var(key) {
            shell.env(key, value);
        }
    }
    let out = tokio::time::timeout(COMMAND_LIMIT, shell.output())
        .await
        .unwrap_or_else(|_| panic!("still running after {COMMAND_LIMIT:?}: {command}"))
        .expect("bash runs");
    let mut printed = String::from_utf8_lossy(&out.stdout).into_owned();
    printed.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), printed)
}

/// Deletes the Decisions, policies and plans of namespace default, where the walkthrough
/// runs (whether or not an operator is there to audit the deletions and let them go).
fn forget_the_walkthrough() -> Kubectl {
    release_decisions("default");
    kubectl_admin(&[
        "delete",
        "decisions,approvalpolicies,executionplans",
        "--all",
        "-n",
        "default",
        "--wait=true",
    ])
}

struct Forget;

impl Drop for Forget {
    fn drop(&mut self) {
        let _ = forget_the_walkthrough();
    }
}

#[tokio::test]
async fn the_readme_walkthrough_works_as_written() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let steps = walkthrough(&readme);
    assert!(
        steps.iter().any(|s| !s.expect.is_empty()),
        "the walkthrough checks nothing: {steps:#?}"
    );
    for kind in ["# =>", "# refused:"] {
        assert!(
            readme.contains(kind),
            "the walkthrough shows no `{kind}` outcome"
        );
    }
    assert_eq!(
        std::fs::canonicalize(local_dir()).unwrap(),
        std::fs::canonicalize(repo_root().join(".local")).unwrap(),
        "the walkthrough names .local/ literally, so it runs only against the local control plane under .local/"
    );

    // Namespace default is the walkthrough's: a reader starts with it empty, and so does the
    // test (and it leaves it so, for the reader who follows the README afterwards).
    ensure_installed().await;
    forget_the_walkthrough().success();
    let _forget = Forget;
    let run = MakeRun::start("default").await;

    let mut path = Vec::new();
    let kubectl = tool("KUBECTL", "kubernetes", "KUBERNETES_VERSION", "kubectl");
    for binary in [
        kubectl.as_str(),
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
        .join(format!("readme-{}.env", unique_name("shell")));
    let _ = std::fs::remove_file(&state);

    for step in &steps {
        let (ok, printed) = run_in_shell(&step.command, &state, &path).await;
        let failed = |why: &str| -> ! {
            let logs = run.logs();
            let tail: Vec<&str> = logs.lines().rev().take(60).collect();
            panic!(
                "README.md:{}: {why}\n$ {}\n{printed}\n--- the end of make run's output ---\n{}",
                step.line,
                step.command,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )
        };
        let refusals: Vec<&str> = step
            .expect
            .iter()
            .filter_map(|e| match e {
                Expect::Refused(text) => Some(text.as_str()),
                Expect::Prints(_) => None,
            })
            .collect();
        match (ok, refusals.is_empty()) {
            (true, false) => failed("the command was expected to be refused, but it succeeded"),
            (false, true) => failed("the command failed"),
            _ => {}
        }
        for expect in &step.expect {
            let (Expect::Prints(text) | Expect::Refused(text)) = expect;
            if !holds(&printed, text) {
                failed(&format!("the command did not print {text:?}"));
            }
        }
    }

    let (status, logs) = run.interrupt().await;
    assert!(
        status.success(),
        "Ctrl-C ended make run's operator with {status}; its output:\n{logs}"
    );
    let _ = std::fs::remove_file(&state);
}

#[test]
fn the_walkthrough_is_read_command_by_command() {
    let readme = "# x\n\n```sh\nnot this\n```\n\n## Five minutes with it\n\nText.\n\n```sh\nexport A=1   # why\n# a remark\nkubectl apply -f - <<'YAML'\nkind: X\n# not a comment\nYAML\n# => applied\nkubectl annotate x \\\n  a=b\n# refused: no ... way\n```\n\n```yaml\nnot: this\n```\n\n## Next\n\n```sh\nnor this\n```\n";
    assert_eq!(
        walkthrough(readme),
        [
            Step {
                line: 12,
                command: "export A=1   # why".into(),
                expect: vec![],
            },
            Step {
                line: 14,
                command: "kubectl apply -f - <<'YAML'\nkind: X\n# not a comment\nYAML".into(),
                expect: vec![Expect::Prints("applied".into())],
            },
            Step {
                line: 19,
                command: "kubectl annotate x \\\n  a=b".into(),
                expect: vec![Expect::Refused("no ... way".into())],
            },
        ]
    );
    assert_eq!(heredoc_delimiter("cat <<<\"$x\""), None);
    assert_eq!(heredoc_delimiter("cat <<-EOF"), Some("EOF".into()));
}

#[test]
fn expected_output_matches_whitespace_and_elisions() {
    let printed = "NAME   PHASE     APPROVALS\nship   Pending   0/2\n";
    assert!(holds(printed, "ship Pending 0/2"));
    assert!(holds(printed, "NAME ... ship ... 0/2"));
    assert!(holds(printed, "ship ..."));
    assert!(!holds(printed, "0/2 ... ship"));
    assert!(!holds(printed, "Approved"));
}

//! The README's walkthrough ("Five minutes with it"), followed literally (see
//! support::walkthrough), while the operator runs as hack/run.sh (what `make run` runs)
//! started it.

use std::time::Duration;

use crate::make_run::{MakeRun, local_dir};
use crate::support::*;

/// How long one command of the walkthrough may take (its own waits are shorter).
const COMMAND_LIMIT: Duration = Duration::from_secs(120);

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
    let steps = walkthrough(&readme, "## Five minutes with it");
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

    follow(&steps, "readme", COMMAND_LIMIT, || {
        format!(
            "--- the end of make run's output ---\n{}",
            tail(&run.logs(), 60)
        )
    })
    .await;

    let (status, logs) = run.interrupt().await;
    assert!(
        status.success(),
        "Ctrl-C ended make run's operator with {status}; its output:\n{logs}"
    );
}

#[test]
fn the_walkthrough_is_read_command_by_command() {
    let readme = "# x\n\n```sh\nnot this\n```\n\n## Five minutes with it\n\nText.\n\n```sh\nexport A=1   # why\n# a remark\nkubectl apply -f - <<'YAML'\nkind: X\n# not a comment\nYAML\n# => applied\nkubectl annotate x \\\n  a=b\n# refused: no ... way\n```\n\n```yaml\nnot: this\n```\n\n## Next\n\n```sh\nnor this\n```\n";
    assert_eq!(
        walkthrough(readme, "## Five minutes with it"),
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

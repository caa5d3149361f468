//! The README's section "On a real node", followed literally (see support::walkthrough):
//! the images pushed, the chart installed with its operator pod on the real node, helm test,
//! and the walkthrough's deployment in Real mode, its steps real containers there.

use std::time::Duration;

use crate::install::*;
use crate::support::*;

/// How long one command may take (hack/images.sh pushes three images; helm waits for the
/// operator pod).
const COMMAND_LIMIT: Duration = Duration::from_secs(300);

/// What the walkthrough leaves in namespace default, deleted before and after it.
fn forget_the_walkthrough() {
    let _ = kubectl_admin(&[
        "delete",
        "decision/ship-on-real-node",
        "executionplan/deploy-on-real-node",
        "approvalpolicy/deploys",
        "-n",
        "default",
        "--ignore-not-found",
        "--wait=true",
    ]);
}

struct Forget;

impl Drop for Forget {
    fn drop(&mut self) {
        forget_the_walkthrough();
    }
}

#[tokio::test]
async fn the_real_node_section_of_the_readme_works_as_written() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let steps = walkthrough(&readme, "## On a real node");
    assert!(
        steps.iter().filter(|s| !s.expect.is_empty()).count() >= 5,
        "the section checks too little: {steps:#?}"
    );
    installed().await;
    forget_the_walkthrough();
    let _forget = Forget;
    follow(&steps, "readme-real-node", COMMAND_LIMIT, || {
        let logs = kubectl_admin(&[
            "logs",
            "-n",
            RELEASE_NAMESPACE,
            "deployment/decision-gate",
            "--tail",
            "60",
        ]);
        format!(
            "--- the operator pod's last lines ---\n{}{}",
            logs.stdout, logs.stderr
        )
    })
    .await;
}

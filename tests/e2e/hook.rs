//! A coding agent's tool calls go through `decision-gate hook` (Claude Code's PreToolUse
//! protocol): a dangerous command waits for a person as a Decision and runs only once
//! approved; a harmless one passes; a cluster out of reach denies.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use decision_gate::api::{Decision, DecisionPhase};
use kube::Api;
use kube::api::ListParams;

use crate::support::*;

/// What the hook printed for one call: None when it printed nothing (the call passes).
fn hook(kubeconfig: &Path, namespace: &str, command: &str) -> Option<serde_json::Value> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_decision-gate"))
        .arg("hook")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["-n", namespace])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let call = serde_json::json!({
        "session_id": "s-1",
        "hook_event_name": "PreToolUse",
        "tool_name": "Bash",
        "tool_input": {"command": command, "description": "as the agent put it"},
        "cwd": "/src/app",
    });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(call.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the hook failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (!stdout.trim().is_empty()).then(|| serde_json::from_str(&stdout).expect("JSON"))
}

fn verdict(answer: &serde_json::Value) -> (&str, &str) {
    let out = &answer["hookSpecificOutput"];
    assert_eq!(out["hookEventName"], "PreToolUse", "{answer}");
    (
        out["permissionDecision"].as_str().unwrap(),
        out["permissionDecisionReason"].as_str().unwrap(),
    )
}

/// The Decision a denial names.
fn named(reason: &str) -> String {
    reason
        .split_once("as Decision ")
        .and_then(|(_, rest)| rest.split_once(' '))
        .map(|(name, _)| name.to_owned())
        .unwrap_or_else(|| panic!("no Decision named in: {reason}"))
}

#[tokio::test]
async fn a_dangerous_command_waits_for_approval_and_then_runs() {
    let ns = TestNamespace::new("hook").await;
    let n = ns.name.as_str();
    grant_answering(n);
    kubectl_admin(&["create", "serviceaccount", "coder", "-n", n]).success();
    bind_service_account(n, "decision-gate-requester", "coder");
    let coder = service_account_kubeconfig(n, "coder");
    let _operator = Operator::start(n).await;
    let api: Api<Decision> = Api::namespaced(admin().await, n);

    // Harmless: nothing printed, nothing asked.
    assert_eq!(hook(&coder, n, "kubectl get pods -n prod"), None);

    // Dangerous: denied, naming the Decision that now waits for people.
    let delete = "kubectl delete namespace prod";
    let first = hook(&coder, n, delete).expect("an answer");
    let (decision, reason) = verdict(&first);
    assert_eq!(decision, "deny", "{reason}");
    let name = named(reason);
    assert!(
        reason.contains(&format!("kubectl decision approve {name} -n {n}")),
        "{reason}"
    );
    let asked = reaches(&api, &name, DecisionPhase::Pending).await;
    assert_eq!(asked.spec.action_type, "kubectl_delete");
    assert_eq!(
        asked.status.unwrap().requested_by.as_deref(),
        Some(format!("system:serviceaccount:{n}:coder").as_str())
    );

    // Asked again before anyone answers: still denied, and no second Decision.
    let again = hook(&coder, n, delete).unwrap();
    assert_eq!(verdict(&again), ("deny", reason));
    let all = api.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(all.len(), 1, "{all:#?}");

    // Approved by alice: exactly the same call is allowed, naming her.
    annotate_as("alice", n, &name, &["approved-by=alice"]);
    reaches(&api, &name, DecisionPhase::Approved).await;
    let allowed = hook(&coder, n, delete).unwrap();
    let (decision, reason) = verdict(&allowed);
    assert_eq!(decision, "allow", "{reason}");
    assert!(
        reason.contains(&format!("approved by alice as Decision {name}")),
        "{reason}"
    );

    // Another command is another call: it is asked for on its own.
    let other = hook(&coder, n, "kubectl delete namespace staging").unwrap();
    let (decision, reason) = verdict(&other);
    assert_eq!(decision, "deny", "{reason}");
    assert_ne!(named(reason), name);

    // A cluster out of reach denies (fail closed), and says why.
    let unreachable = ns_kubeconfig_pointing_nowhere(&coder);
    let denied = hook(&unreachable, n, delete).unwrap();
    let (decision, reason) = verdict(&denied);
    assert_eq!(decision, "deny", "{reason}");
    assert!(reason.contains("could not be checked"), "{reason}");
}

/// The kubeconfig with its server moved to a loopback port where nothing listens.
fn ns_kubeconfig_pointing_nowhere(kubeconfig: &Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(kubeconfig).unwrap();
    let port = free_port();
    let moved: String = text
        .lines()
        .map(|line| match line.find("server: ") {
            Some(at) => {
                let end = line[at..].find(',').map_or(line.len(), |e| at + e);
                format!(
                    "{}server: https://127.0.0.1:{port}{}",
                    &line[..at],
                    &line[end..]
                )
            }
            None => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let path = kubeconfig.with_extension("nowhere.kubeconfig");
    std::fs::write(&path, moved).unwrap();
    path
}

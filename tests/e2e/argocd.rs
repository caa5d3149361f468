//! The Argo CD health checks shipped with the chart, run against sample objects by Argo CD's
//! own code (hack/argocd/health: the override argocd-cm would install, asked of
//! gitops-engine as `argocd admin settings resource-overrides health` asks it, in Argo CD's
//! Lua sandbox) and by a plain Lua 5.1 interpreter, which must agree.

use serde_json::{Value, json};

use crate::support::{repo_root, tool};

/// A JSON value as a Lua table constructor.
fn lua(value: &Value) -> String {
    match value {
        Value::Null => "nil".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Array(items) => format!(
            "{{{}}}",
            items.iter().map(lua).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("[{k:?}] = {}", lua(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Runs a health script on an object with Argo CD's code and with Lua 5.1: (status,
/// message), the same from both.
fn health(script: &str, obj: &Value) -> (String, String) {
    let argo = argocd_health(script, obj);
    let plain = lua_health(script, obj);
    assert_eq!(
        argo, plain,
        "Argo CD and Lua 5.1 disagree on {script} for {obj}"
    );
    argo
}

/// What Argo CD says of the object's health with the script installed as its override.
fn argocd_health(script: &str, obj: &Value) -> (String, String) {
    let path = repo_root().join("charts/decision-gate/argocd").join(script);
    let dir = tempfile::tempdir().unwrap();
    let object = dir.path().join("object.json");
    std::fs::write(&object, serde_json::to_vec(obj).unwrap()).unwrap();
    let program = tool(
        "ARGOCD_HEALTH",
        "argocd-health",
        "ARGOCD_VERSION",
        "argocd-health",
    );
    let out = std::process::Command::new(&program)
        .arg(&path)
        .arg(&object)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (make test builds it): {e}"));
    assert!(
        out.status.success(),
        "Argo CD could not run {script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let status = text.lines().find_map(|l| l.strip_prefix("STATUS: "));
    let message = text.lines().find_map(|l| l.strip_prefix("MESSAGE: "));
    match (status, message) {
        (Some(status), Some(message)) => (status.to_owned(), message.to_owned()),
        _ => panic!("argocd-health said {text:?}"),
    }
}

/// What a plain Lua 5.1 interpreter makes of the script.
fn lua_health(script: &str, obj: &Value) -> (String, String) {
    let path = repo_root().join("charts/decision-gate/argocd").join(script);
    let program = format!(
        "obj = {}\nlocal hs = dofile({:?})\nio.write(hs.status, \"\\t\", hs.message or \"\")\n",
        lua(obj),
        path.to_str().unwrap()
    );
    let interpreter = std::env::var("LUA").unwrap_or_else(|_| "lua5.1".to_owned());
    let out = std::process::Command::new(&interpreter)
        .arg("-e")
        .arg(&program)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {interpreter} (install lua5.1 or set LUA): {e}"));
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (status, message) = text.split_once('\t').unwrap();
    (status.to_owned(), message.to_owned())
}

fn decision(phase: Option<&str>, plan: bool, extra: Value) -> Value {
    let mut obj = json!({
        "apiVersion": "decisiongate.io/v1alpha1",
        "kind": "Decision",
        "metadata": {"name": "d", "generation": 1},
        "spec": {"actionType": "deploy", "description": "x", "criticality": "High"},
    });
    if plan {
        obj["spec"]["planRef"] = json!({"name": "deploy"});
    }
    if let Some(phase) = phase {
        obj["status"] = json!({"phase": phase, "approvalProgress": "1/2"});
        if let (Some(status), Some(extra)) = (obj["status"].as_object_mut(), extra.as_object()) {
            status.extend(extra.clone());
        }
    }
    obj
}

#[test]
fn decisions_are_suspended_on_people_and_healthy_only_when_what_was_asked_happened() {
    let cases = [
        (None, false, "Progressing"),
        (Some("Pending"), false, "Suspended"),
        (Some("Escalated"), true, "Suspended"),
        (Some("Approved"), false, "Healthy"),
        (Some("Approved"), true, "Progressing"),
        (Some("Executing"), true, "Progressing"),
        (Some("RollingBack"), true, "Progressing"),
        (Some("Succeeded"), true, "Healthy"),
        (Some("Rejected"), false, "Degraded"),
        (Some("Expired"), false, "Degraded"),
        (Some("Failed"), true, "Degraded"),
        (Some("RolledBack"), true, "Degraded"),
        (Some("Deliberating"), true, "Unknown"),
    ];
    for (phase, plan, want) in cases {
        let (status, message) = health("decision.lua", &decision(phase, plan, json!({})));
        assert_eq!(status, want, "{phase:?} (plan: {plan}): {message}");
    }
    let (_, message) = health("decision.lua", &decision(Some("Pending"), false, json!({})));
    assert_eq!(message, "Pending: waiting for approval (1/2)");
    let rejected = decision(
        Some("Rejected"),
        false,
        json!({"rejection": {"rejectedBy": "carol", "reason": "change freeze"}}),
    );
    assert_eq!(
        health("decision.lua", &rejected).1,
        "rejected by carol: change freeze"
    );
    let failed = decision(
        Some("Failed"),
        true,
        json!({"conditions": [{"type": "Executed", "status": "False", "reason": "RollbackAwaitingApproval", "message": "step verify failed; a rollback awaits approval"}]}),
    );
    assert_eq!(
        health("decision.lua", &failed).1,
        "Failed: step verify failed; a rollback awaits approval"
    );
    let dry = decision(
        Some("Succeeded"),
        true,
        json!({"execution": {"mode": "DryRun", "steps": []}}),
    );
    assert_eq!(
        health("decision.lua", &dry),
        (
            "Healthy".to_owned(),
            "the plan succeeded (DryRun)".to_owned()
        )
    );
    // A Real plan that could only run as a dry run changed nothing: not Healthy.
    let demoted = decision(
        Some("Succeeded"),
        true,
        json!({"plan": {"name": "deploy", "mode": "Real"},
               "execution": {"mode": "DryRun", "modeReason": "real execution is not allowed on this cluster (--allow-real-execution=false)", "steps": []}}),
    );
    assert_eq!(
        health("decision.lua", &demoted),
        (
            "Degraded".to_owned(),
            "the plan asked for Real but ran as DryRun, so nothing was changed: real execution is not allowed on this cluster (--allow-real-execution=false)".to_owned()
        )
    );
    let real = decision(
        Some("Succeeded"),
        true,
        json!({"plan": {"name": "deploy", "mode": "Real"}, "execution": {"mode": "Real", "steps": []}}),
    );
    assert_eq!(health("decision.lua", &real).0, "Healthy");
    let unknown = health(
        "decision.lua",
        &decision(Some("Deliberating"), true, json!({})),
    )
    .1;
    assert!(unknown.contains("Deliberating"), "{unknown}");
}

#[test]
fn plans_and_policies_are_healthy_when_checked_and_valid() {
    let checked = |kind: &str, phase: Option<&str>, observed: i64| {
        let mut obj = json!({"kind": kind, "metadata": {"name": "x", "generation": 2}, "spec": {}});
        if let Some(phase) = phase {
            obj["status"] = json!({
                "phase": phase,
                "observedGeneration": observed,
                "conditions": [{"type": "Ready", "status": if phase == "Ready" { "True" } else { "False" }, "reason": phase, "message": format!("{phase} says why")}],
            });
        }
        obj
    };
    for (script, kind) in [
        ("executionplan.lua", "ExecutionPlan"),
        ("approvalpolicy.lua", "ApprovalPolicy"),
    ] {
        assert_eq!(health(script, &checked(kind, None, 0)).0, "Progressing");
        assert_eq!(
            health(script, &checked(kind, Some("Ready"), 2)),
            ("Healthy".to_owned(), "Ready says why".to_owned())
        );
        assert_eq!(
            health(script, &checked(kind, Some("Invalid"), 2)),
            ("Degraded".to_owned(), "Invalid says why".to_owned())
        );
    }
    for (script, kind) in [
        ("executionplan.lua", "ExecutionPlan"),
        ("approvalpolicy.lua", "ApprovalPolicy"),
    ] {
        // One whose latest change is not checked yet is not vouched for.
        assert_eq!(
            health(script, &checked(kind, Some("Ready"), 1)),
            (
                "Progressing".to_owned(),
                "the latest change has not been checked yet".to_owned()
            ),
            "{kind}"
        );
        assert_eq!(
            health(script, &checked(kind, Some("Pondering"), 2)).0,
            "Unknown",
            "{kind}"
        );
    }
}

//! Plans that run real containers on the real node: a step that exits non-zero and the
//! rollback that really runs, last first; a step killed by its deadline.

use std::time::Duration;

use decision_gate::api::decision::StepPhase;
use decision_gate::api::{Decision, DecisionPhase};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use serde_json::{Value, json};

use crate::install::*;
use crate::support::*;

/// A container on the real node that runs `script` with busybox's sh, with the node
/// directory `log` mounted at /log.
pub fn on_node(container: &str, script: &str, log: &std::path::Path) -> Value {
    json!({"spec": {
        "restartPolicy": "Never",
        "nodeSelector": {"decisiongate.io/node": "real"},
        "tolerations": [{"key": "decisiongate.io/real-node", "operator": "Exists", "effect": "NoSchedule"}],
        "volumes": [{"name": "log", "hostPath": {"path": log.display().to_string(), "type": "Directory"}}],
        "containers": [{
            "name": container,
            "image": image("busybox"),
            "command": ["sh", "-c", script],
            "volumeMounts": [{"name": "log", "mountPath": "/log"}],
        }],
    }})
}

/// A Real plan for the action type `ship`, with these steps.
pub fn plan(name: &str, rollback: &str, steps: Vec<Value>) -> String {
    json!({
        "apiVersion": "decisiongate.io/v1alpha1",
        "kind": "ExecutionPlan",
        "metadata": {"name": name},
        "spec": {"actionTypes": ["ship"], "mode": "Real", "rollbackStrategy": rollback, "steps": steps},
    })
    .to_string()
}

/// A Decision to ship, carried out by `plan`, with this context.
pub fn ship(name: &str, plan: &str, context: Value) -> String {
    json!({
        "apiVersion": "decisiongate.io/v1alpha1",
        "kind": "Decision",
        "metadata": {"name": name},
        "spec": {"actionType": "ship", "description": format!("Ship {name}"), "criticality": "Normal",
            "context": context, "planRef": {"name": plan}},
    })
    .to_string()
}

/// The lines the containers appended to the node directory's file `runs`.
pub fn runs(log: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(log.join("runs"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Waits, for at most [`NODE_DEADLINE`], until the Decision is in `want`.
pub async fn reaches_on_node(api: &Api<Decision>, name: &str, want: DecisionPhase) -> Decision {
    let deadline = tokio::time::Instant::now() + NODE_DEADLINE;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        let d = api.get_opt(name).await.unwrap();
        if phase(d.as_ref()) == Some(want) {
            return d.unwrap();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} is not {want:?} after {NODE_DEADLINE:?}: {:#?}",
            d.and_then(|d| d.status)
        );
    }
}

#[tokio::test]
async fn a_step_that_exits_non_zero_rolls_back_for_real_last_first() {
    let ns = NodeNamespace::new("node-rollback").await;
    let log = node_volume(&ns.name);
    let append = |line: &str, said: &str, exit: u8| {
        format!("echo {line} >> /log/runs; echo '{said}' > /dev/termination-log; exit {exit}")
    };
    let step = |name: &str, exit: u8| {
        json!({
            "name": name,
            "timeoutSeconds": 120,
            "template": on_node(name, &append(name, &format!("{name} ran"), exit), &log),
            "rollback": {"template": on_node("undo", &append(&format!("undo-{name}"), &format!("{name} undone"), 0), &log)},
        })
    };
    apply(&ns.name, AUTO_APPROVE_SHIPPING).success();
    apply(
        &ns.name,
        &plan(
            "breaks",
            "Automatic",
            vec![step("one", 0), step("two", 0), step("three", 3)],
        ),
    )
    .success();
    apply(&ns.name, &ship("v3", "breaks", json!({}))).success();

    let api: Api<Decision> = Api::namespaced(admin().await, &ns.name);
    let d = reaches_on_node(&api, "v3", DecisionPhase::RolledBack).await;

    // What the containers themselves wrote: each step once, then the undoing of the two
    // that succeeded, the later one first.
    assert_eq!(runs(&log), ["one", "two", "three", "undo-two", "undo-one"]);
    let execution = d.status.unwrap().execution.unwrap();
    let three = &execution.steps[2];
    assert_eq!(three.phase, StepPhase::Failed, "{three:#?}");
    assert_eq!(three.exit_code, Some(3), "{three:#?}");
    let message = three.message.as_deref().unwrap_or_default();
    assert!(
        message.contains("exited 3") && message.contains("three ran"),
        "the failure does not say how the container ended: {message}"
    );
    for (step, said) in [("one", "one ran"), ("two", "two ran")] {
        let s = execution.steps.iter().find(|s| s.name == step).unwrap();
        assert_eq!(s.phase, StepPhase::RolledBack, "{s:#?}");
        assert_eq!(s.result.as_deref(), Some(said), "{s:#?}");
        assert_eq!(s.exit_code, Some(0), "{s:#?}");
    }
    let rollback = execution.rollback.unwrap();
    let undone: Vec<(&str, StepPhase, Option<&str>, Option<i32>)> = rollback
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s.phase, s.result.as_deref(), s.exit_code))
        .collect();
    assert_eq!(
        undone,
        [
            ("two", StepPhase::Succeeded, Some("two undone"), Some(0)),
            ("one", StepPhase::Succeeded, Some("one undone"), Some(0)),
        ]
    );
}

#[tokio::test]
async fn a_step_past_its_deadline_is_stopped_and_fails() {
    let ns = NodeNamespace::new("node-deadline").await;
    let log = node_volume(&ns.name);
    let slow = json!({
        "name": "slow",
        "timeoutSeconds": 5,
        "template": on_node("slow", "echo started >> /log/runs; sleep 60; echo finished >> /log/runs", &log),
    });
    apply(&ns.name, AUTO_APPROVE_SHIPPING).success();
    apply(&ns.name, &plan("slow", "None", vec![slow])).success();
    apply(&ns.name, &ship("v4", "slow", json!({}))).success();

    let api: Api<Decision> = Api::namespaced(admin().await, &ns.name);
    let d = reaches_on_node(&api, "v4", DecisionPhase::Failed).await;
    let step = &d.status.unwrap().execution.unwrap().steps[0];
    let message = step.message.as_deref().unwrap_or_default();
    assert!(message.contains("DeadlineExceeded"), "{step:#?}");
    let took = step.duration_seconds.unwrap();
    assert!(
        took < 40.0,
        "the step ran {took}s: its container was not stopped at its deadline"
    );
    // The Job's pod goes once its container is stopped; the container had started and
    // never got to the end of its sleep.
    let job = step.job_name.clone().unwrap();
    let pods: Api<Pod> = Api::namespaced(admin().await, &ns.name);
    let deadline = tokio::time::Instant::now() + NODE_DEADLINE;
    let selector = format!("batch.kubernetes.io/job-name={job}");
    while !pods
        .list(&ListParams::default().labels(&selector))
        .await
        .unwrap()
        .items
        .is_empty()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the pod of {job} still exists {NODE_DEADLINE:?} after its deadline"
        );
        tokio::time::sleep(Duration::from_millis(500)).await; // poll interval of this deadline-bound wait
    }
    assert_eq!(runs(&log), ["started"]);
}

//! The operator under faults and bad values: it starts and stops cleanly every time, and
//! one Decision whose status makes no sense fails alone while the others carry on.

use std::time::Duration;

use decision_gate::api::{Decision, DecisionPhase};
use kube::Api;
use kube::api::{Patch, PatchParams};

use crate::support::*;

const ROUNDS: usize = 20;

/// How long the operator may take to exit after SIGTERM.
const EXIT_LIMIT: Duration = Duration::from_secs(10);

fn phase(d: Option<&Decision>) -> Option<DecisionPhase> {
    d.and_then(|d| d.status.as_ref()).and_then(|s| s.phase)
}

fn decision(name: &str) -> String {
    format!(
        "apiVersion: decisiongate.io/v1alpha1\nkind: Decision\nmetadata: {{name: {name}}}\nspec: {{actionType: deploy, description: Deploy {name}, criticality: High}}\n"
    )
}

const POLICY: &str = "apiVersion: decisiongate.io/v1alpha1\nkind: ApprovalPolicy\nmetadata: {name: everything}\nspec: {rules: [{name: all, match: {}, outcome: RequireApproval}]}\n";

/// Waits for the process to exit, at most `limit`; None if it is still running.
async fn exit_within(operator: &mut Operator, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tick.tick().await;
        if let Some(status) = operator.try_exit() {
            return Some(status);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
    }
}

/// Starts the operator, gives it a new namespace with a policy and three Decisions, waits
/// for all three to be Pending, and stops it with SIGTERM — twenty times. The objects come
/// at different moments of the start-up: before the operator serves, while it fills its
/// caches, and once it is ready, because a start-up race shows only at one of them.
#[tokio::test]
async fn starts_and_stops_cleanly_round_after_round() {
    // As the chart's ServiceAccount: the admission policies let only it write a status.
    let operator_config = ensure_installed().await;
    let client = admin().await;
    let mut failures = Vec::new();
    for round in 0..ROUNDS {
        let name = unique_name(&format!("startstop-{round}"));
        let mut operator = Operator::spawn(&name, &operator_config, &[]);
        match round % 3 {
            0 => {}
            1 => {
                wait_until("the operator to serve /healthz", || {
                    std::net::TcpStream::connect(("127.0.0.1", operator.http_port)).is_ok()
                })
                .await
            }
            _ => operator.wait_ready().await,
        }
        let ns = TestNamespace::create(name.clone()).await;
        apply(&ns.name, POLICY).success();
        for d in ["first", "second", "third"] {
            apply(&ns.name, &decision(d)).success();
        }
        let api: Api<Decision> = Api::namespaced(client.clone(), &ns.name);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let pending = loop {
            tick.tick().await;
            let list = api.list(&Default::default()).await.unwrap();
            let pending = list
                .items
                .iter()
                .filter(|d| phase(Some(d)) == Some(DecisionPhase::Pending))
                .count();
            if pending == 3 || tokio::time::Instant::now() >= deadline {
                break pending;
            }
        };
        if pending != 3 {
            failures.push(format!(
                "round {round}: {pending} of 3 Decisions were evaluated within 30s"
            ));
        }
        operator.signal("TERM");
        match exit_within(&mut operator, EXIT_LIMIT).await {
            Some(status) if status.success() => {}
            Some(status) => failures.push(format!(
                "round {round}: the operator exited with {status} after SIGTERM; log:\n{}",
                operator.logs()
            )),
            None => failures.push(format!(
                "round {round}: the operator was still running {EXIT_LIMIT:?} after SIGTERM; log:\n{}",
                operator.logs()
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A status nobody but the operator should write, written anyway (as when the admission
/// policies are off): the Decision fails with a message, and the others in its namespace
/// go on being decided — then and after a restart of the operator.
#[tokio::test]
async fn an_inconsistent_status_fails_its_decision_and_spares_the_others() {
    let ns = TestNamespace::new("badstatus").await;
    let operator_config = ensure_installed().await;
    let operator = Operator::start(&ns.name).await;
    apply(&ns.name, POLICY).success();
    apply(&ns.name, &decision("broken")).success();
    let api: Api<Decision> = Api::namespaced(admin().await, &ns.name);
    wait_for(&api, "broken", "Pending", |d: Option<&Decision>| {
        phase(d) == Some(DecisionPhase::Pending)
    })
    .await;
    drop(operator);

    // Executing, with no record of what runs: written as the operator's own account, the
    // one the admission policies let write a status.
    let as_operator: Api<Decision> = Api::namespaced(client_for(&operator_config).await, &ns.name);
    as_operator
        .patch_status(
            "broken",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": {"phase": "Executing", "execution": null}})),
        )
        .await
        .unwrap();
    apply(&ns.name, &decision("healthy")).success();
    let _operator = Operator::start(&ns.name).await;

    let broken = wait_for(&api, "broken", "Failed", |d: Option<&Decision>| {
        phase(d) == Some(DecisionPhase::Failed)
    })
    .await;
    let condition = broken
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Executed")
        .expect("an Executed condition");
    assert_eq!(condition.reason, "InconsistentStatus");
    assert!(
        condition.message.contains("the phase is Executing but"),
        "{}",
        condition.message
    );
    wait_for(&api, "healthy", "Pending", |d: Option<&Decision>| {
        phase(d) == Some(DecisionPhase::Pending)
    })
    .await;
}

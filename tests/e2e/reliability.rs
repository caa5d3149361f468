//! The operator under faults and bad values: killed again and again it runs every step
//! once, a full audit volume holds work back without losing any, and one Decision whose
//! status makes no sense fails alone while the others carry on.

use std::time::Duration;

use decision_gate::api::{Decision, DecisionPhase};
use kube::Api;
use kube::api::{Patch, PatchParams};

use crate::support::*;

fn decision(name: &str) -> String {
    format!(
        "apiVersion: decisiongate.io/v1alpha1\nkind: Decision\nmetadata: {{name: {name}}}\nspec: {{actionType: deploy, description: Deploy {name}, criticality: High}}\n"
    )
}

const POLICY: &str = "apiVersion: decisiongate.io/v1alpha1\nkind: ApprovalPolicy\nmetadata: {name: everything}\nspec: {rules: [{name: all, match: {}, outcome: RequireApproval}]}\n";

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

const PLANS: usize = 20;
const KILLS: usize = 20;

/// Twenty approved three-step Real plans, and the operator SIGKILLed twenty times while
/// they run — during its start-up, and just after it created a Job. Every step's Job is
/// created exactly once, every Decision succeeds, the audit chain is intact and no
/// transition is recorded twice.
#[tokio::test]
async fn killed_again_and_again_the_operator_runs_every_step_exactly_once() {
    let ns = TestNamespace::new("chaos").await;
    let n = ns.name.as_str();
    let kubeconfig = ensure_installed().await;
    ship_in_three_steps(n, "2s");
    let args = ["--allow-real-execution", "--lease-duration", "2s"];
    // The plan is checked against the API server before any Decision may run it.
    let checker = Operator::spawn(n, &kubeconfig, &args).ready().await;
    let plans: Api<decision_gate::api::ExecutionPlan> = Api::namespaced(admin().await, n);
    wait_for(
        &plans,
        "three",
        "Ready",
        |p: Option<&decision_gate::api::ExecutionPlan>| {
            p.and_then(|p| p.status.as_ref())
                .and_then(|s| s.phase)
                .is_some_and(|phase| phase == decision_gate::api::execution_plan::PlanPhase::Ready)
        },
    )
    .await;
    drop(checker);
    for i in 0..PLANS {
        apply(
            n,
            &format!(
                "apiVersion: decisiongate.io/v1alpha1\nkind: Decision\nmetadata: {{name: ship-{i}}}\nspec: {{actionType: ship, description: Ship {i}, criticality: Normal, planRef: {{name: three}}}}\n"
            ),
        )
        .success();
    }

    let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(admin().await, n);
    let decisions: Api<Decision> = Api::namespaced(admin().await, n);
    let count_jobs = || async { jobs.list(&Default::default()).await.unwrap().items.len() };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    for kill in 0..KILLS {
        let operator = Operator::spawn(n, &kubeconfig, &args);
        if kill % 2 == 0 {
            // Early in the start-up: as soon as it serves, before it leads.
            wait_until("the operator to serve", || {
                std::net::TcpStream::connect(("127.0.0.1", operator.http_port)).is_ok()
            })
            .await;
        } else {
            // Mid-execution: just after it created another Job.
            let before = count_jobs().await;
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            while count_jobs().await == before && count_jobs().await < PLANS * 3 {
                tick.tick().await;
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "no progress between kills"
                );
            }
        }
        operator.signal("KILL");
        drop(operator);
    }

    let _operator = Operator::spawn(n, &kubeconfig, &args).ready().await;
    for i in 0..PLANS {
        let d = wait_for(
            &decisions,
            &format!("ship-{i}"),
            "Succeeded",
            |d: Option<&Decision>| phase(d) == Some(DecisionPhase::Succeeded),
        )
        .await;
        let steps = d.status.unwrap().execution.unwrap().steps;
        assert!(
            steps.iter().all(|s| s.attempts == 1),
            "ship-{i} ran a step more than once: {steps:?}"
        );
    }
    let mut names: Vec<String> = jobs
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|j| j.metadata.name.unwrap())
        .collect();
    names.sort();
    let mut expected: Vec<String> = (0..PLANS)
        .flat_map(|i| ["one", "two", "three"].map(|s| format!("ship-{i}-{s}-1")))
        .collect();
    expected.sort();
    assert_eq!(names, expected, "every step's Job, each exactly once");

    let log = Operator::audit_log(n);
    let out = decision_gate(&["audit", "verify", log.to_str().unwrap()]).success();
    assert!(out.starts_with("ok"), "{out}");
    let files = decision_gate::audit::log_files(&log).unwrap();
    let entries = decision_gate::audit::read(&files, |_| true).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for e in &entries {
        let once = [
            "decision_requested",
            "auto_approved",
            "execution_started",
            "step_started",
            "step_executed",
            "execution_completed",
        ];
        if once.contains(&e.event_type.as_str()) {
            let key = (
                e.decision.as_ref().map(|d| d.name.clone()),
                e.event_type.clone(),
                e.step.clone(),
            );
            assert!(seen.insert(key.clone()), "recorded twice: {key:?}");
        }
    }
    let completed = entries
        .iter()
        .filter(|e| e.event_type == "execution_completed")
        .count();
    assert_eq!(completed, PLANS);
}

/// Polls `/readyz` until it answers `code`, within the deadline; returns the body.
async fn readyz_until(operator: &Operator, code: u16) -> String {
    readyz_saying(operator, code, "").await
}

/// Polls `/readyz` until it answers `code` with a body that contains `text`.
async fn readyz_saying(operator: &Operator, code: u16, text: &str) -> String {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tick.tick().await;
        if let Ok((answer, body)) = operator.get("/readyz").await
            && answer == code
            && body.contains(text)
        {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz never answered {code} saying {text:?}; the operator's log:\n{}",
            operator.logs()
        );
    }
}

/// A small tmpfs, unmounted when dropped.
struct SmallVolume {
    path: std::path::PathBuf,
}

impl SmallVolume {
    fn mount(name: &str, size: &str) -> SmallVolume {
        let path = repo_root().join("target/e2e-logs").join(name);
        std::fs::create_dir_all(&path).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mounting a tmpfs at {} needs root", path.display());
        SmallVolume { path }
    }

    /// Fills the volume until the disk says it is full.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let filler = self.path.join("filler");
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![b'x'; 4096];
        while f.write_all(&block).is_ok() {}
        filler
    }
}

impl Drop for SmallVolume {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

/// The audit volume fills up: no transition counts without its audit line (the Decision
/// stays unevaluated), /readyz fails and says why, and once space returns the work resumes
/// with the chain intact and nothing recorded twice.
#[tokio::test]
async fn a_full_audit_volume_holds_every_transition_until_space_returns() {
    let ns = TestNamespace::new("auditfull").await;
    let n = ns.name.as_str();
    let kubeconfig = ensure_installed().await;
    let volume = SmallVolume::mount(&format!("{n}-audit"), "512k");
    let log = volume.path.join("audit.jsonl");
    let log_arg = log.to_str().unwrap().to_owned();
    let operator = Operator::spawn(n, &kubeconfig, &["--audit-log", &log_arg])
        .ready()
        .await;
    apply(n, POLICY).success();
    apply(n, &decision("before")).success();
    let api: Api<Decision> = Api::namespaced(admin().await, n);
    wait_for(&api, "before", "Pending", |d: Option<&Decision>| {
        phase(d) == Some(DecisionPhase::Pending)
    })
    .await;

    let filler = volume.fill();
    // The log's last page may still hold a line or two: more Decisions than fit there.
    let during: Vec<String> = (0..8).map(|i| format!("during-{i}")).collect();
    for name in &during {
        apply(n, &decision(name)).success();
    }
    let why = readyz_until(&operator, 503).await;
    assert!(why.contains("No space left on device"), "{why}");
    // The statuses first, then the log: a status written is one whose lines came first.
    let mut decided = Vec::new();
    for name in &during {
        if phase(Some(&api.get(name).await.unwrap())).is_some() {
            decided.push(name.clone());
        }
    }
    let files = decision_gate::audit::log_files(&log).unwrap();
    let audited: std::collections::BTreeSet<String> = decision_gate::audit::read(&files, |_| true)
        .unwrap()
        .into_iter()
        .filter_map(|e| e.decision.map(|d| d.name))
        .collect();
    for name in &decided {
        assert!(
            audited.contains(name),
            "{name} counted without its audit line"
        );
    }
    let waiting = during.len() - decided.len();
    assert!(waiting > 0, "the full volume stopped nothing");

    std::fs::remove_file(filler).unwrap();
    for name in &during {
        wait_for(&api, name, "Pending", |d: Option<&Decision>| {
            phase(d) == Some(DecisionPhase::Pending)
        })
        .await;
    }
    readyz_until(&operator, 200).await;
    let out = decision_gate(&["audit", "verify", &log_arg]).success();
    assert!(out.starts_with("ok"), "{out}");
    let files = decision_gate::audit::log_files(&log).unwrap();
    let requested =
        decision_gate::audit::read(&files, |e| e.event_type == "decision_requested").unwrap();
    assert_eq!(
        requested.len(),
        1 + during.len(),
        "each Decision requested once"
    );
}

/// An operator that runs as someone the admission policies do not let write a Decision's
/// status (the admin, say) decides nothing; it must not look ready while it does.
#[tokio::test]
async fn an_operator_whose_status_writes_are_refused_is_not_ready_and_says_why() {
    ensure_installed().await;
    let ns = TestNamespace::new("refused").await;
    let n = ns.name.as_str();
    let operator = Operator::spawn(n, &admin_kubeconfig(), &[]);
    apply(n, "apiVersion: decisiongate.io/v1alpha1\nkind: ApprovalPolicy\nmetadata: {name: ask}\nspec: {rules: [{name: ask, outcome: RequireApproval}]}\n").success();
    apply(n, &decision("ship")).success();
    let why = readyz_saying(&operator, 503, "refuses the operator's status writes").await;
    assert!(why.contains("only the decision-gate operator"), "{why}");
}

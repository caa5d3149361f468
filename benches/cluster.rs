//! How fast, how big, how lean, against the local control plane:
//! `make bench` (or `cargo bench --features e2e --bench cluster`) with the cluster up.
//! Prints a table; docs/benchmarks.md keeps the figures of a run.

#[path = "../tests/e2e/support/mod.rs"]
#[allow(dead_code)]
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use decision_gate::api::{Decision, DecisionPhase};
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use support::*;

/// How many requests the benchmark keeps in flight when it creates objects.
const IN_FLIGHT: usize = 32;

fn decision(name: &str, action: &str, plan: Option<&str>) -> Decision {
    let plan = plan
        .map(|p| format!(", \"planRef\": {{\"name\": \"{p}\"}}"))
        .unwrap_or_default();
    serde_json::from_str(&format!(
        r#"{{"apiVersion": "decisiongate.io/v1alpha1", "kind": "Decision", "metadata": {{"name": "{name}"}},
            "spec": {{"actionType": "{action}", "description": "benchmark", "criticality": "High",
                      "estimatedDurationMinutes": 15, "source": "agents/bench", "context": {{"amount": 500}}{plan}}}}}"#
    ))
    .unwrap()
}

/// 20 policies of 5 rules, every fifth with a CEL expression; `action` matches the last.
fn policies(namespace: &str, action: &str, outcome: &str) {
    let mut all = String::new();
    for p in 0..20 {
        let rules: Vec<String> = (0..5)
            .map(|r| {
                let matched = if p == 19 && r == 4 { action.to_owned() } else { format!("other-{p}-{r}") };
                let expression = if r == 4 { ", expression: 'decision.context.amount < 1000'" } else { "" };
                format!("{{name: rule-{r}, match: {{actionTypes: [{matched}]{expression}}}, outcome: {outcome}}}")
            })
            .collect();
        all.push_str(&format!(
            "---\napiVersion: decisiongate.io/v1alpha1\nkind: ApprovalPolicy\nmetadata: {{name: policy-{p:02}}}\nspec: {{priority: {p}, rules: [{}]}}\n",
            rules.join(", ")
        ));
    }
    apply(namespace, &all).success();
}

/// Creates Decisions with IN_FLIGHT requests at a time; returns how long it took.
async fn create_all(api: &Api<Decision>, decisions: Vec<Decision>) -> Duration {
    let start = Instant::now();
    stream::iter(decisions)
        .map(|d| {
            let api = api.clone();
            async move { api.create(&PostParams::default(), &d).await.map(drop) }
        })
        .buffer_unordered(IN_FLIGHT)
        .try_collect::<Vec<_>>()
        .await
        .expect("every create succeeds");
    start.elapsed()
}

/// Watches Decisions until `count` of them satisfy `done`; returns the names with when.
async fn until(
    api: &Api<Decision>,
    count: usize,
    done: impl Fn(&Decision) -> bool,
) -> BTreeMap<String, Instant> {
    let mut seen = BTreeMap::new();
    let mut events = watcher(api.clone(), watcher::Config::default())
        .applied_objects()
        .boxed();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1800);
    while seen.len() < count {
        let next = tokio::time::timeout_at(deadline, events.next())
            .await
            .expect("the benchmark ran out of time");
        if let Some(Ok(d)) = next
            && done(&d)
        {
            seen.entry(d.metadata.name.clone().unwrap())
                .or_insert_with(Instant::now);
        }
    }
    seen
}

fn evaluated(d: &Decision) -> bool {
    d.status.as_ref().and_then(|s| s.phase).is_some()
}

/// Peak and current RSS (KiB) and CPU seconds of a process, from /proc.
fn footprint(pid: u32) -> (u64, u64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: f64 = fields
        .get(11)
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
    (kib("VmHWM:"), kib("VmRSS:"), ticks / 100.0)
}

/// Waits until the operator has checked a plan and found it Ready.
async fn plan_ready(namespace: &str, plan: &str) {
    wait_until("the plan to be checked", || {
        kubectl_admin(&[
            "get",
            "plan",
            plan,
            "-n",
            namespace,
            "-o",
            "jsonpath={.status.phase}",
        ])
        .stdout
            == "Ready"
    })
    .await;
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

struct Table(Vec<(String, String)>);

impl Table {
    fn row(&mut self, what: impl Into<String>, value: impl Into<String>) {
        let (what, value) = (what.into(), value.into());
        println!("{what:<62} {value}");
        self.0.push((what, value));
    }
}

/// The floor: the same number of creates and status patches, made directly (the status
/// as the operator's ServiceAccount, the only one the admission policy lets write it).
async fn floor(client: &Client, count: usize) -> Duration {
    let ns = TestNamespace::new("bench-floor").await;
    let api: Api<Decision> = Api::namespaced(client.clone(), &ns.name);
    let operator = client_for(&ensure_installed().await).await;
    let status_api: Api<Decision> = Api::namespaced(operator, &ns.name);
    let decisions: Vec<Decision> = (0..count)
        .map(|i| decision(&format!("d-{i}"), "bench", None))
        .collect();
    let start = Instant::now();
    stream::iter(decisions)
        .map(|d| {
            let api = api.clone();
            let status_api = status_api.clone();
            async move {
                let name = d.metadata.name.clone().unwrap();
                api.create(&PostParams::default(), &d).await?;
                let status = serde_json::json!({
                    "apiVersion": "decisiongate.io/v1alpha1", "kind": "Decision",
                    "status": {"phase": "Pending", "approvalProgress": "0/2"},
                });
                status_api
                    .patch_status(
                        &name,
                        &PatchParams::apply("bench").force(),
                        &Patch::Apply(&status),
                    )
                    .await
                    .map(drop)
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .try_collect::<Vec<_>>()
        .await
        .expect("every round trip succeeds");
    start.elapsed()
}

async fn throughput(client: &Client, table: &mut Table, count: usize) -> (u32, (u64, u64, f64)) {
    let ns = TestNamespace::new("bench-load").await;
    policies(&ns.name, "bench", "RequireApproval");
    let operator = Operator::start(&ns.name).await;
    let pid = operator.pid();
    let (_, idle_rss, _) = footprint(pid);
    let api: Api<Decision> = Api::namespaced(client.clone(), &ns.name);
    let decisions: Vec<Decision> = (0..count)
        .map(|i| decision(&format!("d-{i}"), "bench", None))
        .collect();
    let start = Instant::now();
    let watching = {
        let api = api.clone();
        tokio::spawn(async move { until(&api, count, evaluated).await })
    };
    let created = create_all(&api, decisions).await;
    watching.await.unwrap();
    let total = start.elapsed();
    let (peak, _, cpu) = footprint(pid);
    table.row(
        format!("{count} Decisions, 20 policies x 5 rules: created in"),
        format!("{:.1}s", created.as_secs_f64()),
    );
    table.row(
        format!("{count} Decisions: all evaluated after"),
        format!(
            "{:.1}s ({:.0} Decisions/s)",
            total.as_secs_f64(),
            count as f64 / total.as_secs_f64()
        ),
    );
    (idle_rss as u32, (peak, idle_rss, cpu))
}

async fn latency(client: &Client, table: &mut Table, count: usize) {
    let ns = TestNamespace::new("bench-latency").await;
    grant_answering(&ns.name);
    apply(&ns.name, "apiVersion: decisiongate.io/v1alpha1\nkind: ApprovalPolicy\nmetadata: {name: gate}\nspec: {rules: [{name: ask, outcome: RequireApproval}]}\n").success();
    apply(&ns.name, "apiVersion: decisiongate.io/v1alpha1\nkind: ExecutionPlan\nmetadata: {name: one}\nspec: {actionTypes: [bench], mode: Real, steps: [{name: only, template: {spec: {restartPolicy: Never, containers: [{name: main, image: busybox}]}}}]}\n").success();
    let _operator = Operator::start_allowing_real(&ns.name).await;
    let api: Api<Decision> = Api::namespaced(client.clone(), &ns.name);
    plan_ready(&ns.name, "one").await;
    let decisions: Vec<Decision> = (0..count)
        .map(|i| decision(&format!("d-{i}"), "bench", Some("one")))
        .collect();
    create_all(&api, decisions).await;
    until(&api, count, |d| {
        d.status.as_ref().and_then(|s| s.phase) == Some(DecisionPhase::Pending)
    })
    .await;

    let alice = client_for(&user_kubeconfig("alice")).await;
    let as_alice: Api<Decision> = Api::namespaced(alice, &ns.name);
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns.name);
    let approved = {
        let api = api.clone();
        tokio::spawn(async move {
            until(&api, count, |d| {
                d.status
                    .as_ref()
                    .and_then(|s| s.approvals.first())
                    .is_some()
            })
            .await
        })
    };
    let first_jobs = tokio::spawn(async move {
        let mut seen = BTreeMap::new();
        let mut events = watcher(jobs, watcher::Config::default())
            .applied_objects()
            .boxed();
        while seen.len() < count {
            if let Some(Ok(job)) = events.next().await {
                let decision = job
                    .metadata
                    .labels
                    .unwrap_or_default()
                    .get("decisiongate.io/decision")
                    .cloned()
                    .unwrap_or_default();
                seen.entry(decision).or_insert_with(Instant::now);
            }
        }
        seen
    });
    let mut sent = BTreeMap::new();
    for i in 0..count {
        let name = format!("d-{i}");
        sent.insert(name.clone(), Instant::now());
        let patch = serde_json::json!({"metadata": {"annotations": {"approved-by": "alice"}}});
        as_alice
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }
    let approved = approved.await.unwrap();
    let first_jobs = first_jobs.await.unwrap();
    let mut to_approved: Vec<f64> = sent
        .iter()
        .map(|(n, t)| (approved[n] - *t).as_secs_f64() * 1000.0)
        .collect();
    let mut to_job: Vec<f64> = sent
        .iter()
        .map(|(n, t)| (first_jobs[n] - *t).as_secs_f64() * 1000.0)
        .collect();
    to_approved.sort_by(f64::total_cmp);
    to_job.sort_by(f64::total_cmp);
    let row = |v: &[f64]| {
        format!(
            "p50 {:.0} ms, p95 {:.0} ms, p99 {:.0} ms",
            percentile(v, 0.5),
            percentile(v, 0.95),
            percentile(v, 0.99)
        )
    };
    table.row(
        format!("approval annotation -> Approved in status ({count} Decisions)"),
        row(&to_approved),
    );
    table.row(
        format!("approval annotation -> first step's Job created ({count})"),
        row(&to_job),
    );
}

async fn execution(client: &Client, table: &mut Table, count: usize) {
    let ns = TestNamespace::new("bench-run").await;
    apply(&ns.name, "apiVersion: decisiongate.io/v1alpha1\nkind: ApprovalPolicy\nmetadata: {name: gate}\nspec: {rules: [{name: ship, outcome: AutoApprove}]}\n").success();
    let step = |n: &str| {
        format!(
            "{{name: {n}, template: {{spec: {{restartPolicy: Never, containers: [{{name: main, image: busybox}}]}}}}}}"
        )
    };
    apply(&ns.name, &format!("apiVersion: decisiongate.io/v1alpha1\nkind: ExecutionPlan\nmetadata: {{name: three}}\nspec: {{actionTypes: [ship], mode: Real, steps: [{}, {}, {}]}}\n", step("a"), step("b"), step("c"))).success();
    let _operator = Operator::start_allowing_real(&ns.name).await;
    plan_ready(&ns.name, "three").await;
    let api: Api<Decision> = Api::namespaced(client.clone(), &ns.name);
    let decisions: Vec<Decision> = (0..count)
        .map(|i| {
            let mut d = decision(&format!("d-{i}"), "ship", Some("three"));
            d.spec.criticality = decision_gate::api::decision::Criticality::Normal;
            d
        })
        .collect();
    let start = Instant::now();
    let done = {
        let api = api.clone();
        tokio::spawn(async move {
            until(&api, count, |d| {
                d.status.as_ref().and_then(|s| s.phase) == Some(DecisionPhase::Succeeded)
            })
            .await
        })
    };
    create_all(&api, decisions).await;
    done.await.unwrap();
    table.row(
        format!("{count} approved Decisions x 3-step Real plans: all Succeeded in"),
        format!("{:.1}s", start.elapsed().as_secs_f64()),
    );
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes --bench; nothing to parse.
    let sizes: Vec<usize> = std::env::var("BENCH_SIZES")
        .unwrap_or_else(|_| "1000,10000".to_owned())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let client = admin().await;
    ensure_installed().await;
    let mut table = Table(Vec::new());
    println!("\n{:<62} figure", "measure");
    for &count in &sizes {
        let floor_time = floor(&client, count).await;
        table.row(
            format!("floor: {count} bare creates + status patches"),
            format!(
                "{:.1}s ({:.0}/s)",
                floor_time.as_secs_f64(),
                count as f64 / floor_time.as_secs_f64()
            ),
        );
        let (_, (peak, idle, cpu)) = throughput(&client, &mut table, count).await;
        table.row(
            format!("operator at {count} Decisions: idle RSS, peak RSS, CPU"),
            format!("{} MiB, {} MiB, {cpu:.1} CPU s", idle / 1024, peak / 1024),
        );
    }
    latency(&client, &mut table, 200).await;
    execution(&client, &mut table, 100).await;
}

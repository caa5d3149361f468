//! How fast, how big, how lean, against the local control plane:
//! `make bench` (or `cargo bench --features e2e --bench cluster`) with the cluster up.
//! Prints a table in which every figure stands beside its floor: the same work done by
//! the benchmark itself against the same API server, in the same run, so that a reader on
//! another machine compares ratios. docs/benchmarks.md keeps the figures of a run.
//!
//! `BENCH_SIZES` (default `10000,100000`) sets the load sizes; `BENCH_PARTS` (default
//! `scale,latency,execution`) which parts run.

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

/// The deadline of any one wait of the benchmark (a 100,000-Decision run takes minutes).
const LONG: Duration = Duration::from_secs(3600);

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
    let deadline = tokio::time::Instant::now() + LONG;
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

/// The figures, printed as they are measured.
#[derive(Default)]
struct Table {
    rows: Vec<(String, String)>,
    /// Rows are held until the table is added to another, which prints them.
    held: bool,
}

impl Table {
    fn held() -> Table {
        Table {
            rows: Vec::new(),
            held: true,
        }
    }

    fn row(&mut self, what: impl Into<String>, value: impl Into<String>) {
        let (what, value) = (what.into(), value.into());
        if !self.held {
            println!("{what:<62} {value}");
        }
        self.rows.push((what, value));
    }

    fn add(&mut self, held: Table) {
        for (what, value) in held.rows {
            self.row(what, value);
        }
    }
}

/// The floor of a load: the same creates and status patches, made by the benchmark itself
/// (the status as the operator's ServiceAccount, the only one the admission policy lets
/// write it), watched to the end the same way.
async fn floor(client: &Client, count: usize) -> Duration {
    let ns = TestNamespace::new("bench-floor").await;
    policies(&ns.name, "bench", "RequireApproval");
    let api: Api<Decision> = Api::namespaced(client.clone(), &ns.name);
    let operator = client_for(&ensure_installed().await).await;
    let status_api: Api<Decision> = Api::namespaced(operator, &ns.name);
    let decisions: Vec<Decision> = (0..count)
        .map(|i| decision(&format!("d-{i}"), "bench", None))
        .collect();
    let status = first_status(client, &ns.name, &decisions[0]).await;
    let start = Instant::now();
    let watching = {
        let api = api.clone();
        tokio::spawn(async move { until(&api, count, evaluated).await })
    };
    stream::iter(decisions)
        .map(|d| {
            let api = api.clone();
            let status_api = status_api.clone();
            let status = &status;
            async move {
                let name = d.metadata.name.clone().unwrap();
                api.create(&PostParams::default(), &d).await?;
                patch_status(&status_api, &name, status).await.map(drop)
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .try_collect::<Vec<_>>()
        .await
        .expect("every round trip succeeds");
    watching.await.unwrap();
    let took = start.elapsed();
    gone(ns).await;
    took
}

/// One status patch as the operator makes it: server-side apply, as its ServiceAccount.
/// Returns the resourceVersion the patch left the Decision at.
async fn patch_status(
    api: &Api<Decision>,
    name: &str,
    status: &serde_json::Value,
) -> kube::Result<String> {
    let status = serde_json::json!({
        "apiVersion": "decisiongate.io/v1alpha1", "kind": "Decision", "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply("bench").force(),
        &Patch::Apply(&status),
    )
    .await
    .map(|d| d.metadata.resource_version.unwrap_or_default())
}

/// The status the operator writes when it first evaluates `decision` under the policies
/// of `namespace` (and the plan it names, there), computed by the same pure core: the
/// floor's status patches are as large as the operator's, so that a ratio measures the
/// operator and not the size of a status.
async fn first_status(client: &Client, namespace: &str, decision: &Decision) -> serde_json::Value {
    use decision_gate::api::{ApprovalPolicy, ExecutionPlan};
    let policies = Api::<ApprovalPolicy>::namespaced(client.clone(), namespace)
        .list(&Default::default())
        .await
        .unwrap()
        .items;
    let views: Vec<_> = policies
        .iter()
        .map(decision_gate::policy::Policy::of)
        .collect();
    let plan = match &decision.spec.plan_ref {
        Some(p) => Some(
            Api::<ExecutionPlan>::namespaced(client.clone(), namespace)
                .get(&p.name)
                .await
                .unwrap(),
        ),
        None => None,
    };
    let mut decision = decision.clone();
    decision.metadata.generation = Some(1);
    decision.metadata.annotations = Some(BTreeMap::from([(
        "decisiongate.io/requested-by".to_owned(),
        "admin".to_owned(),
    )]));
    let advance = decision_gate::lifecycle::advance(&decision_gate::lifecycle::Input {
        decision: &decision,
        policies: &views,
        now: chrono::Utc::now(),
        default_expiry: Duration::from_secs(24 * 3600),
        plan: plan.as_ref(),
        answers: &decision_gate::admission::Answers::Verified,
        expressions: &Default::default(),
        jobs: None,
    });
    assert!(
        advance.status.phase.is_some(),
        "the floor's status is an evaluated one: {:?}",
        advance.status
    );
    serde_json::to_value(&advance.status).unwrap()
}

/// Deletes a namespace and waits until it is gone, so that its deletion does not load
/// the API server while the next part measures.
async fn gone(ns: TestNamespace) {
    let name = ns.name.clone();
    drop(ns);
    let deadline = tokio::time::Instant::now() + LONG;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        if !kubectl_admin(&["get", "namespace", &name]).ok {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "namespace {name} was not deleted"
        );
    }
}

/// Lists every Decision of a namespace in pages of 500, as a watch's first list does:
/// the floor of a new leader's start-up.
async fn list_all(api: &Api<Decision>) -> Duration {
    let start = Instant::now();
    let mut params = kube::api::ListParams::default().limit(500);
    loop {
        let page = api.list(&params).await.expect("the list succeeds");
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(next) => params = params.continue_token(&next),
            None => return start.elapsed(),
        }
    }
}

/// A figure from the operator's /metrics (the sum over its labels that match `labels`).
async fn metric(operator: &Operator, name: &str, labels: &str) -> f64 {
    let Ok((200, body)) = operator.get("/metrics").await else {
        return 0.0;
    };
    body.lines()
        .filter(|l| l.starts_with(name) && l.contains(labels))
        .filter(|l| l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The operator's time so far in a reconcile, an audit append and a status write of a
/// Decision: (seconds, how many) of each.
async fn stages(operator: &Operator) -> [(f64, f64); 3] {
    let mut stages = [(0.0, 0.0); 3];
    let histograms = [
        (
            "decision_gate_reconcile_duration_seconds",
            "kind=\"Decision\"",
        ),
        ("decision_gate_audit_append_duration_seconds", ""),
        (
            "decision_gate_status_write_duration_seconds",
            "kind=\"Decision\"",
        ),
    ];
    for (stage, (name, labels)) in stages.iter_mut().zip(histograms) {
        *stage = (
            metric(operator, &format!("{name}_sum"), labels).await,
            metric(operator, &format!("{name}_count"), labels).await,
        );
    }
    stages
}

/// When a watch saw `name`, skipping what it saw of others before.
async fn arrival(
    seen: &mut tokio::sync::mpsc::UnboundedReceiver<(String, Instant)>,
    name: &str,
    deadline: tokio::time::Instant,
    what: &str,
) -> Instant {
    loop {
        let (n, at) = tokio::time::timeout_at(deadline, seen.recv())
            .await
            .unwrap_or_else(|_| panic!("{what} of {name} was not seen in time"))
            .expect("the watch runs");
        if n == name {
            return at;
        }
    }
}

/// Watches `api` and sends, for every object it delivers that `key` names, that name and
/// the moment it arrived.
fn arrivals<K>(
    api: Api<K>,
    key: impl Fn(K) -> Option<String> + Send + 'static,
) -> (
    tokio::task::JoinHandle<()>,
    tokio::sync::mpsc::UnboundedReceiver<(String, Instant)>,
)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let watching = tokio::spawn(async move {
        let mut events = watcher(api, watcher::Config::default())
            .applied_objects()
            .boxed();
        while let Some(Ok(object)) = events.next().await {
            if let Some(name) = key(object) {
                let _ = tx.send((name, Instant::now()));
            }
        }
    });
    (watching, rx)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn ratio(what: f64, floor: f64) -> String {
    format!("{:.2}x the floor", what / floor)
}

/// Creates `count` Decisions for one operator, then starts a new leader over them.
async fn scale(client: &Client, table: &mut Table, count: usize) {
    // The floor is measured before the operator's run and again after it: the API
    // server and etcd carry what each run leaves (history until the next compaction, a
    // larger database), so a floor taken only first would favour the floor. Their mean is
    // what the operator's rate is compared with.
    let floor_before = floor(client, count).await;

    let ns = TestNamespace::new("bench-load").await;
    policies(&ns.name, "bench", "RequireApproval");
    let operator = Operator::start(&ns.name).await;
    let pid = operator.pid();
    let (_, idle, _) = footprint(pid);
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
    let rate = count as f64 / total.as_secs_f64();
    let (peak, _, cpu) = footprint(pid);
    // Settled: what the caches keep once the burst is over.
    let settled = settle(pid).await;
    let mut rows = Table::held();
    rows.row(
        format!("{count} Decisions, 20 policies x 5 rules: created in"),
        format!("{:.1}s", created.as_secs_f64()),
    );
    // Its ratio is known once the second floor is.
    let evaluated_row = rows.rows.len();
    rows.row(format!("{count} Decisions: all evaluated after"), "");
    rows.row(
        format!("operator at {count}: RSS idle / peak / settled"),
        format!(
            "{:.0} / {:.0} / {:.0} MiB ({:.1} KiB per Decision settled)",
            mib(idle),
            mib(peak),
            mib(settled),
            (settled.saturating_sub(idle)) as f64 / count as f64
        ),
    );
    rows.row(
        format!("operator at {count}: CPU"),
        format!(
            "{cpu:.1} s ({:.2} ms per Decision)",
            cpu * 1000.0 / count as f64
        ),
    );

    // A new leader over what is there: the old one hands its Lease over, the new one
    // lists everything, becomes ready, and reconciles each Decision once (writing nothing).
    drop(operator);
    let list = list_all(&api).await;
    rows.row(
        format!("floor: one paged list of {count} Decisions"),
        format!("{:.1}s", list.as_secs_f64()),
    );
    let started = Instant::now();
    let kubeconfig = ensure_installed().await;
    let leader = Operator::spawn(&ns.name, &kubeconfig, &[]);
    leader.wait_ready_within(LONG).await;
    let ready = started.elapsed();
    let deadline = tokio::time::Instant::now() + LONG;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        let done = metric(
            &leader,
            "decision_gate_reconcile_duration_seconds_count",
            "kind=\"Decision\"",
        )
        .await;
        if done >= count as f64 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new leader did not catch up"
        );
    }
    let caught_up = started.elapsed();
    let (peak, _, cpu) = footprint(leader.pid());
    let settled = settle(leader.pid()).await;
    rows.row(
        format!("new leader over {count}: ready / every Decision reconciled"),
        format!(
            "{:.1}s ({}) / {:.1}s ({})",
            ready.as_secs_f64(),
            ratio(ready.as_secs_f64(), list.as_secs_f64()),
            caught_up.as_secs_f64(),
            ratio(caught_up.as_secs_f64(), list.as_secs_f64()),
        ),
    );
    rows.row(
        format!("new leader over {count}: RSS peak / settled, CPU"),
        format!("{:.0} / {:.0} MiB, {cpu:.1} s", mib(peak), mib(settled)),
    );
    drop(leader);
    gone(ns).await;

    let floor_after = floor(client, count).await;
    let floor_mean = (floor_before + floor_after) / 2;
    let floor_rate = count as f64 / floor_mean.as_secs_f64();
    table.row(
        format!("floor: {count} creates + operator-sized status patches, watched"),
        format!(
            "{:.1}s before, {:.1}s after the operator: mean {:.1}s ({floor_rate:.0}/s)",
            floor_before.as_secs_f64(),
            floor_after.as_secs_f64(),
            floor_mean.as_secs_f64()
        ),
    );
    rows.rows[evaluated_row].1 = format!(
        "{:.1}s ({rate:.0}/s, {})",
        total.as_secs_f64(),
        ratio(rate, floor_rate)
    );
    table.add(rows);
}

/// The resident set once it has stopped falling (freed memory returns to the system
/// over a few seconds), at most half a minute on.
async fn settle(pid: u32) -> u64 {
    let mut last = footprint(pid).1;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    for _ in 0..30 {
        tick.tick().await;
        let now = footprint(pid).1;
        if now + 256 >= last {
            return now.min(last);
        }
        last = now;
    }
    last
}

/// How approvals follow each other in [`latency`].
#[derive(Clone, Copy, PartialEq)]
enum Pace {
    /// Each approval once the plan of the one before has run to its end: the API server
    /// does nothing else meanwhile.
    Alone,
    /// Each approval once the Job of the one before exists: the plans of the twenty or so
    /// before it are still running (Pods scheduled, Jobs finishing, their Decisions
    /// written), and the floor's patches and the approvals share the API server with them.
    Busy,
}

/// Approval latency, one approval at a time, each beside a status patch of the floor
/// made just before it: what the operator adds to the API server's own round trip.
async fn latency(client: &Client, table: &mut Table, count: usize, pace: Pace) {
    let ns = TestNamespace::new("bench-latency").await;
    grant_answering(&ns.name);
    apply(&ns.name, "apiVersion: decisiongate.io/v1alpha1\nkind: ApprovalPolicy\nmetadata: {name: gate}\nspec: {rules: [{name: ask, outcome: RequireApproval}]}\n").success();
    apply(&ns.name, "apiVersion: decisiongate.io/v1alpha1\nkind: ExecutionPlan\nmetadata: {name: one}\nspec: {actionTypes: [bench], mode: Real, steps: [{name: only, template: {spec: {restartPolicy: Never, containers: [{name: main, image: busybox}]}}}]}\n").success();
    let floor_ns = TestNamespace::new("bench-latency-floor").await;
    let floor_api: Api<Decision> = Api::namespaced(client.clone(), &floor_ns.name);
    create_all(
        &floor_api,
        (0..count)
            .map(|i| decision(&format!("d-{i}"), "bench", None))
            .collect(),
    )
    .await;
    let as_operator: Api<Decision> =
        Api::namespaced(client_for(&ensure_installed().await).await, &floor_ns.name);

    let operator = Operator::start_allowing_real(&ns.name).await;
    let api: Api<Decision> = Api::namespaced(client.clone(), &ns.name);
    plan_ready(&ns.name, "one").await;
    let floor_status = first_status(client, &ns.name, &decision("d-0", "bench", Some("one"))).await;
    create_all(
        &api,
        (0..count)
            .map(|i| decision(&format!("d-{i}"), "bench", Some("one")))
            .collect(),
    )
    .await;
    until(&api, count, |d| {
        d.status.as_ref().and_then(|s| s.phase) == Some(DecisionPhase::Pending)
    })
    .await;

    // Every Decision approved, and every first Job, as the benchmark's watches see them.
    let (approvals, mut approved_rx) = arrivals(api.clone(), |d: Decision| {
        d.status
            .as_ref()
            .is_some_and(|s| !s.approvals.is_empty())
            .then(|| d.metadata.name.unwrap())
    });
    // At the alone pace, each plan's end, awaited before the next approval.
    let mut settled = (pace == Pace::Alone).then(|| {
        arrivals(api.clone(), |d: Decision| {
            (d.status.as_ref().and_then(|s| s.phase) == Some(DecisionPhase::Succeeded))
                .then(|| d.metadata.name.unwrap())
        })
    });
    let (jobs, mut job_rx) = arrivals(Api::<Job>::namespaced(client.clone(), &ns.name), |job| {
        job.metadata
            .labels
            .unwrap_or_default()
            .remove("decisiongate.io/decision")
    });
    // The floor's patches as a watch sees them, by resourceVersion: the delivery that
    // the approval's path pays twice (to the operator, and back to whoever waits).
    let (floor_seen, mut floor_rx) = arrivals(floor_api.clone(), |d: Decision| {
        let version = d.metadata.resource_version.unwrap_or_default();
        Some(format!("{}@{version}", d.metadata.name.unwrap()))
    });
    let alice = client_for(&user_kubeconfig("alice")).await;
    let as_alice: Api<Decision> = Api::namespaced(alice, &ns.name);
    let before = stages(&operator).await;
    let mut floor_ms = Vec::new();
    let mut floor_seen_ms = Vec::new();
    let mut write_ms = Vec::new();
    let mut after_write = Vec::new();
    let mut to_approved = Vec::new();
    let mut to_job = Vec::new();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    for i in 0..count {
        let name = format!("d-{i}");
        let t = Instant::now();
        let version = patch_status(&as_operator, &name, &floor_status)
            .await
            .unwrap();
        floor_ms.push(ms(t.elapsed()));
        let deadline = tokio::time::Instant::now() + DEADLINE;
        let seen = arrival(
            &mut floor_rx,
            &format!("{name}@{version}"),
            deadline,
            "the floor's patch",
        )
        .await;
        floor_seen_ms.push(ms(seen - t));

        let sent = Instant::now();
        let patch = serde_json::json!({"metadata": {"annotations": {"approved-by": "alice"}}});
        as_alice
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        let answered = Instant::now();
        write_ms.push(ms(answered - sent));
        let deadline = tokio::time::Instant::now() + DEADLINE;
        let approved_at = arrival(&mut approved_rx, &name, deadline, "the approval").await;
        to_approved.push(ms(approved_at - sent));
        after_write.push(ms(approved_at.saturating_duration_since(answered)));
        let job_at = arrival(&mut job_rx, &name, deadline, "the first Job").await;
        to_job.push(ms(job_at - sent));
        if let Some((_, ended)) = settled.as_mut() {
            arrival(ended, &name, deadline, "the end of the plan").await;
        }
    }
    let after = stages(&operator).await;
    approvals.abort();
    jobs.abort();
    floor_seen.abort();
    if let Some((watching, _)) = settled {
        watching.abort();
    }
    for v in [
        &mut floor_ms,
        &mut floor_seen_ms,
        &mut write_ms,
        &mut after_write,
        &mut to_approved,
        &mut to_job,
    ] {
        v.sort_by(f64::total_cmp);
    }
    let floor_p50 = percentile(&floor_ms, 0.5);
    let row = |v: &[f64]| {
        format!(
            "p50 {:.1} ms ({}), p95 {:.1} ms, p99 {:.1} ms",
            percentile(v, 0.5),
            ratio(percentile(v, 0.5), floor_p50),
            percentile(v, 0.95),
            percentile(v, 0.99)
        )
    };
    table.row(
        match pace {
            Pace::Alone => {
                format!("{count} approvals, each alone (after the last one's plan ended)")
            }
            Pace::Busy => {
                format!("{count} approvals, each after the last one's Job (plans running)")
            }
        },
        "",
    );
    table.row(
        "floor: one operator-sized status patch, made before each",
        format!(
            "p50 {floor_p50:.1} ms, p95 {:.1} ms",
            percentile(&floor_ms, 0.95)
        ),
    );
    table.row(
        "floor: the same patch until a watch delivers it",
        row(&floor_seen_ms),
    );
    table.row(
        "  the approval's own write (part of both approval rows below)",
        row(&write_ms),
    );
    table.row(
        "approval annotation -> Approved in status",
        row(&to_approved),
    );
    table.row(
        "  of which after the approval's write was answered",
        row(&after_write),
    );
    table.row(
        "approval annotation -> first step's Job created",
        row(&to_job),
    );
    let mean = |i: usize| {
        let (sum, n) = (after[i].0 - before[i].0, after[i].1 - before[i].1);
        if n > 0.0 { sum * 1000.0 / n } else { 0.0 }
    };
    table.row(
        "  in the operator: reconcile / audit append / status write (mean)",
        format!("{:.1} / {:.1} / {:.1} ms", mean(0), mean(1), mean(2),),
    );
    drop(operator);
    gone(floor_ns).await;
    gone(ns).await;
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
    gone(ns).await;
}

fn main() {
    // `cargo bench` passes --bench; nothing to parse. The operator logs as in production.
    // SAFETY: no other thread runs yet.
    unsafe { std::env::set_var("DECISION_GATE_E2E_RUST_LOG", "info") };
    let list = |var: &str, default: &str| -> Vec<String> {
        std::env::var(var)
            .unwrap_or_else(|_| default.to_owned())
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    };
    let sizes: Vec<usize> = list("BENCH_SIZES", "10000,100000")
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect();
    let parts = list("BENCH_PARTS", "scale,latency,execution");
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async move {
            let client = admin().await;
            ensure_installed().await;
            let mut table = Table::default();
            println!("\n{:<62} figure", "measure");
            if parts.iter().any(|p| p == "scale") {
                for &count in &sizes {
                    scale(&client, &mut table, count).await;
                }
            }
            if parts.iter().any(|p| p == "latency") {
                latency(&client, &mut table, 200, Pace::Alone).await;
                latency(&client, &mut table, 200, Pace::Busy).await;
            }
            if parts.iter().any(|p| p == "execution") {
                execution(&client, &mut table, 100).await;
            }
        });
}

//! Micro-benchmarks of the pure core: policy evaluation and audit appends.
//! `cargo bench --bench core` (part of `make bench`).

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use decision_gate::api::approval_policy::{ApprovalPolicySpec, PolicyRule, RuleMatch};
use decision_gate::api::decision::{Criticality, DecisionSpec, Outcome, RiskAssessment};
use decision_gate::audit::{AuditLog, DecisionRef, Record};
use decision_gate::policy::{Expressions, Policy, Subject, evaluate};

/// 20 policies of 5 rules; only the very last rule matches, so every rule is tried. Every
/// fifth rule has a CEL expression, as real policies do.
fn policies() -> Vec<(String, ApprovalPolicySpec)> {
    (0..20)
        .map(|p| {
            let rules = (0..5)
                .map(|r| {
                    let last = p == 19 && r == 4;
                    PolicyRule {
                        name: format!("rule-{r}"),
                        match_: RuleMatch {
                            action_types: vec![if last {
                                "deploy".into()
                            } else {
                                format!("action-{p}-{r}")
                            }],
                            expression: (r == 4)
                                .then(|| "decision.context.amount < 1000".to_owned()),
                            ..Default::default()
                        },
                        outcome: Outcome::RequireApproval,
                        approvers: None,
                        required_approvals: Some(2),
                        expires_after: None,
                        approval_valid_for: None,
                    }
                })
                .collect();
            (
                format!("policy-{p:02}"),
                ApprovalPolicySpec {
                    priority: p,
                    rules,
                    expires_after: None,
                    unreadable: None,
                },
            )
        })
        .collect()
}

fn spec() -> DecisionSpec {
    DecisionSpec {
        action_type: "deploy".into(),
        description: "Deploy api-gateway 2.0".into(),
        criticality: Criticality::High,
        priority: None,
        estimated_duration_minutes: Some(15),
        source: Some("agents/release-bot".into()),
        context: Some([("amount".to_owned(), serde_json::json!(500))].into()),
        plan_ref: None,
        expires_after: None,
        not_before: None,
        on_behalf_of: None,
    }
}

/// The Decision `d` in namespace `ns`, as policies see it.
fn subject<'a>(spec: &'a DecisionSpec, risk: &'a RiskAssessment) -> Subject<'a> {
    Subject {
        name: "d",
        namespace: "ns",
        spec,
        risk,
    }
}

fn policy_evaluation(c: &mut Criterion) {
    let policies = policies();
    let views: Vec<Policy<'_>> = policies
        .iter()
        .map(|(name, spec)| Policy {
            name,
            generation: 1,
            spec,
        })
        .collect();
    let spec = spec();
    let risk = decision_gate::risk::assess(&spec);
    let subject = subject(&spec, &risk);
    // One cache for every iteration, as the operator keeps one for every reconcile.
    let expressions = Expressions::default();
    let verdict = evaluate(&subject, &views, &expressions);
    assert_eq!(verdict.evaluation.rule.as_deref(), Some("rule-4"));
    assert_eq!(verdict.trace.len(), 100);
    c.bench_function(
        "policy evaluation, 100 rules (20 with CEL), last one matches",
        |b| b.iter(|| evaluate(black_box(&subject), black_box(&views), &expressions)),
    );
}

/// Iterating expressions over a Decision just under the size an iterating expression may
/// read, each row the worst of one kind of work a body may do per element (a body reads
/// nothing of the Decision but its element): read it, test it against values written in
/// the rule (in two iterations, the most an expression holds), test elements that are large
/// lists (a test across types copies the element), or join it twice (the most `+` a body
/// may hold).
fn iterating_at_the_bound(c: &mut Criterion) {
    use decision_gate::policy::MAX_ITERATED_BYTES;
    // A JSON list of n zeros takes 2n bytes; the rest of the Decision about 500.
    let room = MAX_ITERATED_BYTES - 600;
    let zeros = |bytes: usize| serde_json::json!(vec![0; bytes / 2]);
    let eight = "[1, 2, 3, 4, 5, 6, 7, 8]";
    let rows = [
        (
            "reads each element",
            "decision.context.l.exists(x, x == 1)".to_owned(),
            vec![("l", zeros(room))],
        ),
        (
            "two iterations, each testing every element against eight values",
            format!(
                "decision.context.l.exists(x, x in {eight}) || decision.context.l.all(y, y in {eight})"
            ),
            vec![("l", zeros(room))],
        ),
        (
            "elements that are lists, tested against eight numbers",
            format!("decision.context.l.exists(x, x in {eight})"),
            vec![("l", serde_json::json!([zeros(room / 2), zeros(room / 2)]))],
        ),
        (
            "joins each element twice",
            "decision.context.l.exists(x, string(x) + '-' + string(x) == 'y')".to_owned(),
            vec![("l", zeros(room))],
        ),
    ];
    let mut group = c.benchmark_group("iterating expression at the size bound");
    group.sample_size(10);
    for (name, expression, context) in rows {
        let mut spec = spec();
        spec.context = Some(
            context
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        );
        let risk = decision_gate::risk::assess(&spec);
        let subject = subject(&spec, &risk);
        let spec = ApprovalPolicySpec {
            priority: 0,
            rules: vec![PolicyRule {
                name: "iterates".into(),
                match_: RuleMatch {
                    expression: Some(expression.clone()),
                    ..Default::default()
                },
                outcome: Outcome::AutoApprove,
                approvers: None,
                required_approvals: None,
                expires_after: None,
                approval_valid_for: None,
            }],
            expires_after: None,
            unreadable: None,
        };
        let views = [Policy {
            name: "p",
            generation: 1,
            spec: &spec,
        }];
        let expressions = Expressions::default();
        let verdict = evaluate(&subject, &views, &expressions);
        assert!(verdict.skipped.is_empty(), "{name}: {:?}", verdict.skipped);
        assert!(
            verdict.trace[0].why.contains("is false"),
            "{name}: {:?}",
            verdict.trace
        );
        group.bench_function(name, |b| {
            b.iter(|| evaluate(black_box(&subject), black_box(&views), &expressions))
        });
    }
    group.finish();
}

fn record(n: u64) -> Record {
    Record {
        event_type: "approval_granted".into(),
        actor: "alice".into(),
        decision: Some(DecisionRef {
            namespace: "ops".into(),
            name: format!("d{n}"),
            uid: format!("uid-{n}"),
        }),
        approver: Some("alice".into()),
        message: "approved by alice (1/2)".into(),
        discriminator: n.to_string(),
        ..Default::default()
    }
}

fn audit_appends(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(&dir.path().join("audit.jsonl"), 1 << 30).unwrap();
    let mut n = 0u64;
    let mut group = c.benchmark_group("audit append");
    group.sample_size(20);
    group.throughput(Throughput::Elements(1));
    group.bench_function("one line, one fsync", |b| {
        b.iter(|| {
            n += 1;
            log.append(&[record(n)], chrono::Utc::now()).unwrap()
        })
    });
    group.throughput(Throughput::Elements(10));
    group.bench_function("ten lines, one fsync (group commit)", |b| {
        b.iter(|| {
            let batch: Vec<Record> = (0..10)
                .map(|_| {
                    n += 1;
                    record(n)
                })
                .collect();
            log.append(&batch, chrono::Utc::now()).unwrap()
        })
    });
    group.finish();
}

/// Callers appending at the same time, as concurrent reconciles do: each of `THREADS`
/// threads appends one line at a time; criterion counts lines. Their appends can
/// share fsyncs.
fn concurrent_audit_appends(c: &mut Criterion) {
    const THREADS: u64 = 32;
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(AuditLog::open(&dir.path().join("audit.jsonl"), 1 << 30).unwrap());
    let next = Arc::new(AtomicU64::new(0));
    let mut group = c.benchmark_group("audit append");
    group.sample_size(20);
    group.throughput(Throughput::Elements(1));
    group.bench_function(format!("{THREADS} threads, one line each"), |b| {
        b.iter_custom(|lines| {
            let start = Arc::new(Barrier::new(THREADS as usize + 1));
            let workers: Vec<_> = (0..THREADS)
                .map(|t| {
                    let (log, next, start) = (log.clone(), next.clone(), start.clone());
                    // The lines of this sample, spread over the threads.
                    let share = lines / THREADS + u64::from(t < lines % THREADS);
                    std::thread::spawn(move || {
                        start.wait();
                        for _ in 0..share {
                            let n = next.fetch_add(1, Ordering::Relaxed);
                            log.append(&[record(n)], chrono::Utc::now()).unwrap();
                        }
                    })
                })
                .collect();
            start.wait();
            let began = Instant::now();
            for worker in workers {
                worker.join().unwrap();
            }
            began.elapsed().max(Duration::from_nanos(1))
        })
    });
    group.finish();
}

/// Reconciles appending as the operator has them: `TASKS` async tasks on two runtime
/// threads, each sending one line at a time to the log's writer thread and awaiting it.
fn writer_appends(c: &mut Criterion) {
    const TASKS: u64 = 32;
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(AuditLog::open(&dir.path().join("audit.jsonl"), 1 << 30).unwrap());
    let writer = decision_gate::audit::Writer::start(log).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let next = Arc::new(AtomicU64::new(0));
    let mut group = c.benchmark_group("audit append");
    group.sample_size(20);
    group.throughput(Throughput::Elements(1));
    group.bench_function(
        format!("{TASKS} tasks through the writer, one line each"),
        |b| {
            b.iter_custom(|lines| {
                runtime.block_on(async {
                    let began = Instant::now();
                    let tasks: Vec<_> = (0..TASKS)
                        .map(|t| {
                            let (writer, next) = (writer.clone(), next.clone());
                            let share = lines / TASKS + u64::from(t < lines % TASKS);
                            tokio::spawn(async move {
                                for _ in 0..share {
                                    let n = next.fetch_add(1, Ordering::Relaxed);
                                    writer
                                        .append(vec![record(n)], chrono::Utc::now())
                                        .await
                                        .unwrap();
                                }
                            })
                        })
                        .collect();
                    for task in tasks {
                        task.await.unwrap();
                    }
                    began.elapsed().max(Duration::from_nanos(1))
                })
            })
        },
    );
    group.finish();
}

criterion_group!(
    benches,
    policy_evaluation,
    iterating_at_the_bound,
    audit_appends,
    concurrent_audit_appends,
    writer_appends
);
criterion_main!(benches);

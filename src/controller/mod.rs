//! The operator: one controller per kind, sharing one [`Context`]. The reconcilers are
//! thin: they read, call the pure modules, and write.

pub mod admission;
pub mod decision;
pub mod execution;
pub mod plan;
pub mod policy;
pub mod watch;

use std::net::SocketAddr;
use std::sync::Arc;

use futures::{FutureExt, StreamExt};
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::Controller;
use kube::runtime::events::EventType;
use kube::runtime::reflector::Store;
use kube::{Api, Client, Resource, ResourceExt};
use kube_lease_manager::LeaseManagerBuilder;
use prometheus_client::registry::Registry;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::future::Future;
use tracing::{error, info, warn};

use crate::api::{ApprovalPolicy, Decision, ExecutionPlan};
use crate::audit::{AuditLog, Record};
use crate::error::{Error, Result};
use crate::http::Health;
use crate::liveness::Progress;
use crate::metrics::Metrics;
use watch::Watched;

/// The field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "decision-gate";

/// The `reportingController` of the operator's Events.
pub const REPORTING_CONTROLLER: &str = "decisiongate.io/decision-gate";

/// How the operator was started.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Watch only this namespace; all namespaces when `None`.
    pub namespace: Option<String>,
    /// How long a Decision waits for an answer when neither it nor a policy says.
    pub default_expiry: std::time::Duration,
    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    pub http_addr: SocketAddr,
    /// The audit log file (rotated files sit beside it).
    pub audit_log: std::path::PathBuf,
    /// The size at which the audit log is rotated.
    pub audit_max_bytes: u64,
    /// Whether Real plans run for real; when false they run as DryRun.
    pub allow_real_execution: bool,
    /// The namespace of the leader Lease.
    pub lease_namespace: String,
    /// How long a leader's Lease lasts without renewal: the longest a dead leader blocks.
    pub lease_duration: std::time::Duration,
    /// Where notifications go, if anywhere.
    pub notifications: Option<crate::notify::Config>,
    /// The longest one reconcile may take before it is abandoned and retried.
    pub reconcile_timeout: std::time::Duration,
    /// How long work may wait without progress before `/healthz` fails.
    pub stall_timeout: std::time::Duration,
    /// How long in-flight reconciles get to finish after a stop signal.
    pub shutdown_timeout: std::time::Duration,
    /// The name prefix of the chart's admission policies (its release's full name).
    pub admission_policy_prefix: String,
    /// Count people's answers even while the admission policies that verify them are
    /// not in force, marking them unverified.
    pub count_unverified_answers: bool,
}

/// What every reconciler gets.
pub struct Context {
    pub client: Client,
    /// What `/readyz` reports; reconcilers record refused status writes there.
    pub health: Arc<Health>,
    /// Publishes Events in the background.
    pub events: EventQueue,
    /// This replica's name in Events (the pod's name in a cluster).
    pub instance: String,
    pub metrics: Metrics,
    pub settings: Settings,
    pub audit: Arc<AuditLog>,
    /// Every ApprovalPolicy the operator watches, complete before any controller starts.
    pub policies: Store<ApprovalPolicy>,
    /// Every ExecutionPlan the operator watches: what a new Decision is pinned to.
    pub plans: Store<ExecutionPlan>,
    /// Sends notifications off the reconcile path, when configured.
    pub notifier: Option<crate::notify::Notifier>,
    /// The reconciles under way and the work waiting, for the liveness probe.
    pub progress: Arc<Progress>,
    /// Whether the admission policies that verify people's answers are in force.
    pub answers: admission::Verdict,
    /// The policies' rule expressions, compiled once for every reconcile.
    pub expressions: crate::policy::Expressions,
}

impl Context {
    /// Queues the notifications that `events` call for; never waits for them.
    pub fn notify(
        &self,
        decision: &Decision,
        status: &crate::api::DecisionStatus,
        events: &[crate::events::DecisionEvent],
    ) {
        if let Some(notifier) = &self.notifier {
            notifier.notify(decision, status, events);
        }
    }
}

impl Context {
    /// Whether people's answers are verified now.
    pub fn answers(&self) -> crate::admission::Answers {
        self.answers.borrow().clone().unwrap_or_else(|| {
            crate::admission::Answers::Unverified(
                "the admission policies have not been checked yet".to_owned(),
            )
        })
    }

    /// Passes a status write's outcome through, noting it for `/readyz`: a refusal
    /// (unauthorised, forbidden by RBAC or an admission policy, invalid for the CRD) is a
    /// configuration problem that retrying will not fix, and the replica must say so.
    pub fn status_write(&self, kind: &'static str, result: Result<()>) -> Result<()> {
        match &result {
            Ok(()) => self.health.status_written(kind, None),
            Err(Error::Kube(e @ kube::Error::Api(s))) if matches!(s.code, 401 | 403 | 422) => self
                .health
                .status_written(kind, Some(crate::error::describe_kube(e))),
            Err(_) => {}
        }
        result
    }

    /// An API for `K` in the watched namespace (or all of them).
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
    {
        scoped_api(&self.client, self.settings.namespace.as_deref())
    }

    /// Publishes a Kubernetes Event (events.k8s.io/v1) on `obj`, off the reconcile path.
    /// Every call makes a new Event: each one marks a distinct transition, and folding two
    /// approvals into one series would hide the second approver from `kubectl events`. A
    /// failure is logged, never fatal: the status and the audit log are the record,
    /// Events the courtesy.
    pub fn publish<K>(&self, obj: &K, type_: EventType, reason: &str, action: &str, note: String)
    where
        K: Resource<DynamicType = ()>,
    {
        let regarding = obj.object_ref(&());
        let namespace = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned());
        let now = k8s_openapi::jiff::Timestamp::now();
        let event = k8s_openapi::api::events::v1::Event {
            metadata: kube::api::ObjectMeta {
                name: Some(format!(
                    "{}.{:x}",
                    regarding.name.as_deref().unwrap_or("decision-gate"),
                    now.as_nanosecond()
                )),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            event_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
                now,
            )),
            type_: Some(match type_ {
                EventType::Normal => "Normal".to_owned(),
                EventType::Warning => "Warning".to_owned(),
            }),
            reason: Some(reason.to_owned()),
            action: Some(action.to_owned()),
            // The API server limits a note to 1kB.
            note: Some(note.chars().take(1000).collect()),
            regarding: Some(regarding),
            reporting_controller: Some(REPORTING_CONTROLLER.to_owned()),
            reporting_instance: Some(self.instance.clone()),
            ..Default::default()
        };
        self.events.send(event);
    }
}

fn scoped_api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Appends records to the audit log, durably, off the async threads.
/// Returns the ids of the entries written: a record the log already held is not among them.
pub async fn audit(
    ctx: &Context,
    records: Vec<Record>,
) -> Result<std::collections::HashSet<String>> {
    if records.is_empty() {
        return Ok(Default::default());
    }
    let log = ctx.audit.clone();
    let written = tokio::task::spawn_blocking(move || log.append(&records, chrono::Utc::now()))
        .await
        .map_err(|e| Error::Panicked(format!("the audit writer stopped: {e}")))?
        .map_err(Error::Audit)?;
    ctx.metrics.audit_appends.inc_by(written.len() as u64);
    Ok(written.into_iter().map(|e| e.entry_id).collect())
}

/// Makes a Decision's transition from `before` to `after` (whose status is the new one)
/// count, in this order: the audit lines on disk, the status written, then the metrics,
/// the Events and the notifications. An auditor never finds a decided Decision whose
/// decision is missing from the log.
pub async fn commit(
    ctx: &Context,
    before: &Decision,
    after: &Decision,
    events: &[crate::events::DecisionEvent],
    action: &str,
) -> Result<()> {
    let status = after.status.clone().unwrap_or_default();
    let records: Vec<Record> = events.iter().map(|e| Record::of(e, after)).collect();
    let ids: Vec<String> = records.iter().map(crate::audit::entry_id).collect();
    let written = audit(ctx, records).await?;
    if before.status_unreadable().is_some() {
        ctx.status_write(
            "Decision",
            replace_status(after, &ctx.client, &status).await,
        )?;
    } else if before.status.as_ref() != Some(&status) {
        ctx.status_write("Decision", apply_status(after, &ctx.client, &status).await)?;
    }
    // The audit log is the ledger of what happened: a transition recomputed from a stale
    // cache finds its lines already there, and is not announced a second time.
    let fresh: Vec<crate::events::DecisionEvent> = events
        .iter()
        .zip(ids)
        .filter(|(_, id)| written.contains(id))
        .map(|(e, _)| e.clone())
        .collect();
    ctx.metrics
        .observe(after, &status, &fresh, chrono::Utc::now());
    for event in &fresh {
        info!(name = %after.name_any(), namespace = after.namespace().unwrap_or_default(), event = event.event_type(), note = %event.note(), "decision event");
        let type_ = if event.is_warning() {
            EventType::Warning
        } else {
            EventType::Normal
        };
        ctx.publish(after, type_, event.reason(), action, event.note());
    }
    ctx.notify(after, &status, &fresh);
    Ok(())
}

/// Publishes Events from a few background lanes. The Events of one object always take
/// the same lane, so they are created in the order they happened.
pub struct EventQueue {
    lanes: Vec<tokio::sync::mpsc::UnboundedSender<k8s_openapi::api::events::v1::Event>>,
}

impl EventQueue {
    pub fn start(client: Client, lanes: usize) -> EventQueue {
        let lanes = (0..lanes.max(1))
            .map(|_| {
                let (tx, mut rx) =
                    tokio::sync::mpsc::unbounded_channel::<k8s_openapi::api::events::v1::Event>();
                let client = client.clone();
                tokio::spawn(async move {
                    while let Some(event) = rx.recv().await {
                        let namespace = event.metadata.namespace.clone().unwrap_or_default();
                        let api: Api<k8s_openapi::api::events::v1::Event> =
                            Api::namespaced(client.clone(), &namespace);
                        if let Err(e) = api.create(&kube::api::PostParams::default(), &event).await
                        {
                            warn!(error = %e, reason = event.reason.as_deref().unwrap_or_default(), "could not publish an Event");
                        }
                    }
                });
                tx
            })
            .collect();
        EventQueue { lanes }
    }

    fn send(&self, event: k8s_openapi::api::events::v1::Event) {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        event
            .regarding
            .as_ref()
            .and_then(|r| r.uid.as_ref())
            .hash(&mut hasher);
        let lane = (hasher.finish() % self.lanes.len() as u64) as usize;
        let _ = self.lanes[lane].send(event);
    }
}

/// Writes `status` with server-side apply, owned by the operator's field manager.
pub async fn apply_status<K, S>(obj: &K, client: &Client, status: &S) -> Result<()>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    S: Serialize,
{
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    untyped_api(obj, client)
        .patch_status(
            &obj.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    Ok(())
}

/// Replaces the whole status, every field of it: for a status that could not be read,
/// whose unreadable fields a server-side apply would leave in place. The write is
/// conditional on the object's resourceVersion, so a status written meanwhile is not lost.
pub async fn replace_status<K, S>(obj: &K, client: &Client, status: &S) -> Result<()>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
    S: Serialize,
{
    let resource = kube::api::ApiResource::erase::<K>(&());
    let mut replacement = kube::api::DynamicObject::new(&obj.name_any(), &resource);
    replacement.metadata.namespace = obj.meta().namespace.clone();
    replacement.metadata.resource_version = obj.meta().resource_version.clone();
    replacement.data = serde_json::json!({
        "status": serde_json::to_value(status).map_err(|source| Error::Serialization {
            what: "a status",
            source,
        })?,
    });
    untyped_api(obj, client)
        .replace_status(
            &obj.name_any(),
            &kube::api::PostParams {
                field_manager: Some(FIELD_MANAGER.to_owned()),
                ..Default::default()
            },
            &replacement,
        )
        .await?;
    Ok(())
}

/// An API for objects of `obj`'s kind that reads any answer, whatever its status holds.
fn untyped_api<K>(obj: &K, client: &Client) -> Api<kube::api::DynamicObject>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    Api::namespaced_with(
        client.clone(),
        &obj.meta().namespace.clone().unwrap_or_default(),
        &kube::api::ApiResource::erase::<K>(&()),
    )
}

/// Submits a Job, for real or with `dryRun=All` (the API server runs validation and
/// admission and stores nothing). Unknown fields are refused, so a misspelt field is
/// reported rather than silently dropped.
pub async fn submit_job(
    client: &Client,
    namespace: &str,
    job: &serde_json::Value,
    dry_run: bool,
) -> Result<serde_json::Value, kube::Error> {
    let dry = if dry_run { "dryRun=All&" } else { "" };
    let uri = format!(
        "/apis/batch/v1/namespaces/{namespace}/jobs?{dry}fieldValidation=Strict&fieldManager={FIELD_MANAGER}"
    );
    let body = serde_json::to_vec(job).map_err(kube::Error::SerdeError)?;
    let request = http::Request::post(uri)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body)
        .map_err(kube::Error::HttpError)?;
    client.request::<serde_json::Value>(request).await
}

/// Fails with a clear message when a CRD is missing (or the operator may not read it).
async fn check_crds(client: &Client, namespace: Option<&str>) -> Result<()> {
    async fn probe<K>(client: &Client, namespace: Option<&str>) -> Result<()>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
    {
        let crd = format!("{}.{}", K::plural(&()), K::group(&()));
        match scoped_api::<K>(client, namespace)
            .list_metadata(&ListParams::default().limit(1))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Err(Error::CrdMissing(crd)),
            Err(kube::Error::Api(s)) if s.code == 403 => Err(Error::Config(format!(
                "the operator may not list {crd}: {}; check its RBAC",
                s.message
            ))),
            Err(e) => Err(e.into()),
        }
    }
    probe::<Decision>(client, namespace).await?;
    probe::<ApprovalPolicy>(client, namespace).await?;
    probe::<ExecutionPlan>(client, namespace).await?;
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received; shutting down"),
        _ = tokio::signal::ctrl_c() => info!("interrupt received; shutting down"),
    }
}

/// Runs the operator until a shutdown signal, then stops the controllers cleanly. Every
/// replica serves its endpoints; only the holder of the leader Lease opens the audit log
/// and runs the controllers, so there is never a second writer of Jobs or audit lines.
pub async fn run(settings: Settings) -> Result<()> {
    let client = Client::try_default().await.map_err(|e| {
        Error::Config(format!(
            "no Kubernetes cluster to talk to ({e}); set KUBECONFIG, or run inside a cluster"
        ))
    })?;
    check_crds(&client, settings.namespace.as_deref()).await?;

    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    let progress = Progress::new(settings.stall_timeout);
    let health = Arc::new(Health::new(registry, progress.clone()));
    let access = Arc::new(crate::access::AuditAccess::new(
        client.clone(),
        settings.namespace.clone(),
    ));
    let (addr, server) = crate::http::bind(settings.http_addr, health.clone(), access)
        .await
        .map_err(|e| Error::Config(format!("cannot serve on {}: {e}", settings.http_addr)))?;
    info!(%addr, "serving /healthz, /readyz, /metrics and, to auditors, /audit");
    let server = tokio::spawn(server);
    health.set_crds(true);
    let watchdog = tokio::spawn(watch_dependencies(
        client.clone(),
        settings.namespace.clone(),
        health.clone(),
    ));
    let stopped = |result| {
        watchdog.abort();
        server.abort();
        result
    };

    let shutdown = shutdown_signal().shared();
    let identity = instance_name();
    let lease = LeaseManagerBuilder::new(client.clone(), lease_name(settings.namespace.as_deref()))
        .with_namespace(settings.lease_namespace.clone())
        .with_identity(identity.clone())
        .with_duration(settings.lease_duration.as_secs().max(2))
        .with_grace((settings.lease_duration.as_secs() / 3).max(1))
        .with_field_manager(FIELD_MANAGER)
        .build()
        .await
        .map_err(|e| Error::Lease(format!("cannot use the leader Lease: {e}")));
    let lease = match lease {
        Ok(lease) => lease,
        Err(e) => return stopped(Err(e)),
    };
    let (mut leading, lease_task) = lease.watch().await;
    info!(identity, lease_namespace = %settings.lease_namespace, "waiting for the leader Lease");
    tokio::select! {
        held = wait_for_lease(&mut leading) => {
            if !held {
                return stopped(Err(Error::Lease("the leader election stopped".into())));
            }
        }
        _ = shutdown.clone() => {
            info!("stopped before becoming the leader");
            return stopped(Ok(()));
        }
    }
    info!(identity, "became the leader");

    let audit = match AuditLog::open(&settings.audit_log, settings.audit_max_bytes) {
        Ok(audit) => Arc::new(audit),
        Err(e) => {
            return stopped(Err(Error::Config(format!(
                "the audit log is unusable: {e}"
            ))));
        }
    };
    info!(path = %settings.audit_log.display(), next_seq = audit.next_seq(), "audit log open");
    health.lead(audit.clone());
    metrics.leader.set(1);

    // Stop on a signal, or at once when the Lease is lost: a replica that is no longer
    // the leader must not write another line.
    let lost = {
        let mut leading = leading.clone();
        async move {
            while leading.changed().await.is_ok() {
                if !*leading.borrow() {
                    break;
                }
            }
        }
    }
    .shared();
    let stop_or_lost = futures::future::select(Box::pin(shutdown.clone()), Box::pin(lost.clone()));

    // One watch per kind that more than one controller reads, each in a task of its own.
    // Every controller starts only once the stores it reads are complete: a reconcile never
    // waits for a cache.
    let mut policies = watch::Shared::<ApprovalPolicy>::default();
    let policy_changes_for_decisions = policies.subscribe();
    let policy_changes = policies.subscribe();
    let mut plans = watch::Shared::<ExecutionPlan>::default();
    let plan_changes_for_decisions = plans.subscribe();
    let plan_changes = plans.subscribe();
    let namespace = settings.namespace.clone();
    let (mut answers, gate) = admission::start(
        &client,
        crate::admission::Expected {
            prefix: settings.admission_policy_prefix.clone(),
        },
        settings.count_unverified_answers,
        health.clone(),
        metrics.clone(),
    );
    let watches = [
        policies.start(&client, namespace.as_deref()),
        plans.start(&client, namespace.as_deref()),
        gate,
    ];
    // A shared watch never ends by itself; if one does (a panic), its store goes stale
    // without a word, so the operator stops and is restarted.
    let aborts: Vec<_> = watches.iter().map(|w| w.abort_handle()).collect();
    let watch_ended = first_to_end(
        ["ApprovalPolicy", "ExecutionPlan", "AdmissionPolicy"]
            .into_iter()
            .zip(watches)
            .collect(),
    )
    .shared();
    let stop = {
        let watch_ended = watch_ended.clone();
        async move {
            tokio::select! {
                _ = stop_or_lost => {}
                _ = watch_ended => {}
            }
        }
    }
    .shared();
    // Answers are judged only once the admission policies have been looked at: a
    // Decision reconciled before would wrongly find them missing.
    let filled = tokio::select! {
        filled = async {
            caches_filled(&policies.store, &plans.store).await
                && admission::settled(&mut answers).await
        } => filled,
        _ = stop.clone() => false,
    };
    if !filled {
        aborts.iter().for_each(|w| w.abort());
        health.stand_down();
        metrics.leader.set(0);
        return stopped(if lost.peek().is_some() && shutdown.peek().is_none() {
            Err(Error::Lease(
                "lost the leader Lease before the caches were filled".into(),
            ))
        } else if let Some((kind, why)) = watch_ended.peek().cloned() {
            Err(Error::WatchEnded { kind, why })
        } else {
            Ok(())
        });
    }
    health.set_caches(true);

    let notifier = settings.notifications.clone().map(|config| {
        crate::notify::Notifier::start(
            config,
            client.clone(),
            settings.lease_namespace.clone(),
            audit.clone(),
        )
    });
    let shutdown_timeout = settings.shutdown_timeout;
    let ctx = Arc::new(Context {
        health: health.clone(),
        events: EventQueue::start(client.clone(), 4),
        instance: identity,
        client,
        metrics,
        settings,
        audit,
        policies: policies.store.clone(),
        plans: plans.store.clone(),
        notifier,
        progress: progress.clone(),
        answers,
        expressions: Default::default(),
    });
    info!(
        namespace = ctx.settings.namespace.as_deref().unwrap_or("(all)"),
        "starting the Decision, ApprovalPolicy and ExecutionPlan controllers"
    );

    let controllers = futures::future::join3(
        decision::run(
            ctx.clone(),
            policy_changes_for_decisions,
            plan_changes_for_decisions,
            stop.clone(),
        ),
        policy::run(
            ctx.clone(),
            policies.store.clone(),
            policy_changes,
            stop.clone(),
        ),
        plan::run(ctx.clone(), plans.store.clone(), plan_changes, stop.clone()),
    );
    // After a stop, in-flight reconciles get `shutdown_timeout` to finish; work that
    // outlives it is named, and the process exits non-zero so that it is restarted.
    // A replica that lost the Lease gets no grace at all: the new leader may already act.
    let deadline = {
        let lost = lost.clone();
        stop.clone().then(move |()| {
            let grace = if lost.peek().is_some() {
                std::time::Duration::ZERO
            } else {
                shutdown_timeout
            };
            tokio::time::sleep(grace)
        })
    };
    let finished = tokio::select! {
        _ = controllers => true,
        _ = deadline => false,
    };
    aborts.iter().for_each(|w| w.abort());
    health.stand_down();
    ctx.metrics.leader.set(0);
    if !finished {
        let running: Vec<String> = progress
            .running()
            .into_iter()
            .map(|r| format!("{} {}", r.kind, r.object))
            .collect();
        for r in &running {
            error!(reconcile = %r, "still running at the shutdown deadline");
        }
        return stopped(Err(Error::ShutdownTimedOut {
            deadline: shutdown_timeout,
            running,
        }));
    }
    if lost.peek().is_some() && shutdown.peek().is_none() {
        return stopped(Err(Error::Lease(
            "lost the leader Lease; stopping so that the new leader acts alone".into(),
        )));
    }
    if let Some((kind, why)) = watch_ended.peek().cloned()
        && shutdown.peek().is_none()
    {
        return stopped(Err(Error::WatchEnded { kind, why }));
    }
    // Hand the Lease over at once rather than make the next leader wait for it to expire:
    // the Lease task releases it as soon as the last receiver of its state is gone.
    drop((stop, lost, leading));
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), lease_task).await;
    info!("stopped");
    stopped(Ok(()))
}

/// Resolves when the first of the tasks ends (for whatever reason): its name and why.
async fn first_to_end(
    tasks: Vec<(&'static str, tokio::task::JoinHandle<()>)>,
) -> (&'static str, String) {
    let (names, handles): (Vec<_>, Vec<_>) = tasks.into_iter().unzip();
    if handles.is_empty() {
        return std::future::pending().await;
    }
    let (ended, index, _) = futures::future::select_all(handles).await;
    let why = match ended {
        Ok(()) => "its stream ended".to_owned(),
        Err(e) if e.is_panic() => "it panicked".to_owned(),
        Err(e) => e.to_string(),
    };
    error!(kind = names[index], %why, "a shared watch stopped");
    (names[index], why)
}

/// Waits until both stores hold a complete list, saying every few seconds what it waits
/// for (a list the operator may not make, a CRD that went away).
async fn caches_filled(policies: &Store<ApprovalPolicy>, plans: &Store<ExecutionPlan>) -> bool {
    let filled = async {
        policies.wait_until_ready().await.is_ok() && plans.wait_until_ready().await.is_ok()
    };
    let mut filled = std::pin::pin!(filled);
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
    tick.tick().await;
    loop {
        tokio::select! {
            ok = &mut filled => return ok,
            _ = tick.tick() => warn!("still waiting for the first complete list of ApprovalPolicies and ExecutionPlans; see the watch errors above"),
        }
    }
}

/// The Lease that elects the leader: one per watched scope, so that operators watching
/// different namespaces do not stand in each other's way.
pub fn lease_name(namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("decision-gate-{ns}"),
        None => "decision-gate".to_owned(),
    }
}

/// This replica's name: the pod's, or the host and process id outside a cluster.
fn instance_name() -> String {
    if let Ok(pod) = std::env::var("POD_NAME") {
        return pod;
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "decision-gate".to_owned());
    format!("{host}-{}", std::process::id())
}

/// Resolves true once this replica holds the Lease, false if the election ends.
async fn wait_for_lease(leading: &mut tokio::sync::watch::Receiver<bool>) -> bool {
    loop {
        if *leading.borrow_and_update() {
            return true;
        }
        if leading.changed().await.is_err() {
            return false;
        }
    }
}

/// Keeps `/readyz` honest: re-checks every few seconds that the CRDs are still served.
async fn watch_dependencies(client: Client, namespace: Option<String>, health: Arc<Health>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
    loop {
        tick.tick().await;
        let ok = check_crds(&client, namespace.as_deref()).await;
        if let Err(e) = &ok {
            warn!(error = %e, "not ready");
        }
        health.set_crds(ok.is_ok());
    }
}

/// Runs a configured controller until `shutdown`, with what every reconcile shares: its
/// duration metric, a time limit, a panic caught and reported as that object's error (one
/// object never takes the others down), and the progress the liveness probe reads.
pub async fn drive<K, Fut>(
    controller: Controller<K>,
    kind: &'static str,
    mut reconcile: impl FnMut(Arc<K>, Arc<Context>) -> Fut,
    ctx: Arc<Context>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    Fut: Future<Output = Result<kube::runtime::controller::Action>> + Send + 'static,
{
    let progress = ctx.progress.clone();
    controller
        .graceful_shutdown_on(shutdown)
        .run(
            move |obj, ctx| {
                let object = format!(
                    "{}/{}",
                    obj.meta().namespace.as_deref().unwrap_or_default(),
                    obj.meta().name.as_deref().unwrap_or_default()
                );
                let guard = ctx.progress.start(kind, object, std::time::Instant::now());
                let timer = ctx.metrics.reconcile_started(kind);
                let limit = ctx.settings.reconcile_timeout;
                let work = std::panic::AssertUnwindSafe(reconcile(obj, ctx)).catch_unwind();
                async move {
                    let outcome = tokio::time::timeout(limit, work).await;
                    drop((guard, timer));
                    match outcome {
                        Ok(Ok(result)) => result,
                        Ok(Err(panic)) => Err(Error::Panicked(panic_message(panic.as_ref()))),
                        Err(_) => Err(Error::TimedOut(limit)),
                    }
                }
            },
            move |obj, err, ctx| on_error(kind, obj.as_ref(), err, &ctx),
            ctx,
        )
        .for_each(|result| {
            use kube::runtime::controller::Error as Failure;
            // Progress is a reconcile that ended: not a watch error, and not one abandoned
            // at its time limit (a controller whose every reconcile hangs is stalled).
            match &result {
                Ok(_) => progress.served(kind),
                Err(Failure::ReconcilerFailed(e, _)) if !matches!(e, Error::TimedOut(_)) => {
                    progress.served(kind)
                }
                Err(_) => {}
            }
            if let Err(e) = result {
                tracing::debug!(kind, error = %e, "controller event");
            }
            std::future::ready(())
        })
        .await;
}

/// What a caught panic said.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// The error policy shared by the controllers: count, log, retry with a pause.
pub fn on_error<K: ResourceExt>(
    kind: &'static str,
    obj: &K,
    error: &Error,
    ctx: &Context,
) -> kube::runtime::controller::Action {
    ctx.metrics.reconcile_failed(kind, error.category());
    warn!(kind, name = %obj.name_any(), namespace = obj.namespace().unwrap_or_default(), reason = error.category(), %error, "reconcile failed; will retry");
    kube::runtime::controller::Action::requeue(std::time::Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Request, Response};
    use kube::client::Body;

    #[tokio::test]
    async fn a_watch_task_that_panics_is_named_when_it_ends() {
        let forever = tokio::spawn(std::future::pending::<()>());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let doomed = tokio::spawn(async move {
            let _ = rx.await;
            panic!("a bug in the watch");
        });
        let ended = tokio::spawn(first_to_end(vec![
            ("ApprovalPolicy", forever),
            ("ExecutionPlan", doomed),
        ]));
        tx.send(()).unwrap();
        let (kind, why) = tokio::time::timeout(std::time::Duration::from_secs(10), ended)
            .await
            .expect("the end of a watch is noticed")
            .unwrap();
        assert_eq!((kind, why.as_str()), ("ExecutionPlan", "it panicked"));
    }

    /// A scripted API server: answers each expected request in turn and checks its path.
    async fn scripted(answers: Vec<(&'static str, u16, serde_json::Value)>) -> Client {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        tokio::spawn(async move {
            for (path, code, body) in answers {
                let (request, send) = handle.next_request().await.expect("a request");
                assert!(
                    request.uri().path().starts_with(path),
                    "expected a request for {path}, got {}",
                    request.uri()
                );
                send.send_response(
                    Response::builder()
                        .status(code)
                        .body(Body::from(serde_json::to_vec(&body).unwrap()))
                        .unwrap(),
                );
            }
        });
        Client::new(service, "default")
    }

    fn empty_list() -> serde_json::Value {
        serde_json::json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": []})
    }

    fn status(code: u16, reason: &str, message: &str) -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "v1", "kind": "Status", "status": "Failure",
            "code": code, "reason": reason, "message": message, "metadata": {},
        })
    }

    #[tokio::test]
    async fn a_missing_crd_is_named_with_the_way_to_install_it() {
        let client = scripted(vec![
            (
                "/apis/decisiongate.io/v1alpha1/decisions",
                200,
                empty_list(),
            ),
            (
                "/apis/decisiongate.io/v1alpha1/approvalpolicies",
                404,
                status(
                    404,
                    "NotFound",
                    "the server could not find the requested resource",
                ),
            ),
        ])
        .await;
        let err = check_crds(&client, None).await.unwrap_err();
        assert_eq!(err.category(), "CrdMissing");
        let message = err.to_string();
        assert!(
            message.contains("approvalpolicies.decisiongate.io is not installed"),
            "{message}"
        );
        assert!(message.contains("make install"), "{message}");
    }

    #[tokio::test]
    async fn every_crd_present_passes() {
        let client = scripted(vec![
            (
                "/apis/decisiongate.io/v1alpha1/namespaces/team-a/decisions",
                200,
                empty_list(),
            ),
            (
                "/apis/decisiongate.io/v1alpha1/namespaces/team-a/approvalpolicies",
                200,
                empty_list(),
            ),
            (
                "/apis/decisiongate.io/v1alpha1/namespaces/team-a/executionplans",
                200,
                empty_list(),
            ),
        ])
        .await;
        check_crds(&client, Some("team-a")).await.unwrap();
    }
}

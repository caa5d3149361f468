//! How the operator was started, and what every reconciler shares.

use std::net::SocketAddr;
use std::sync::Arc;

use kube::runtime::events::EventType;
use kube::runtime::reflector::Store;
use kube::{Api, Client, Resource};

use super::admission;
use super::cluster::{ApiFailure, scoped_api};
use super::publisher::{self, EventQueue};
use crate::api::{ApprovalPolicy, Decision, ExecutionPlan};
use crate::error::{Error, Result};
use crate::http::Health;
use crate::liveness::Progress;
use crate::metrics::Metrics;

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
    /// Who may read the audit log's files besides the operator's user.
    pub audit_readers: crate::audit::Readers,
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
    /// Slack's interaction endpoint, when enabled.
    pub slack: Option<crate::slack::serve::Settings>,
    /// The deletion witness (an admission webhook), when served.
    pub deletion_witness: Option<crate::witness::Settings>,
    pub events: publisher::EventBudget,
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
    /// Appends to the audit log for every reconcile, from a thread of its own.
    pub audit: crate::audit::Writer,
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
    /// The failure each object last reported as an Event.
    pub failures: super::drive::Failures,
    /// The policies' rule expressions, compiled once for every reconcile.
    pub expressions: crate::policy::Expressions,
    /// The Decision status writes whose echo from the watch is not to be reconciled.
    pub echoes: super::echo::Echoes,
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

    /// The reminders to send before a waiting Decision expires: none without
    /// notifications.
    pub fn reminders(&self) -> Vec<crate::api::Duration> {
        self.settings
            .notifications
            .as_ref()
            .map(crate::notify::Config::reminder_befores)
            .unwrap_or_default()
    }

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
    /// An object deleted meanwhile (404) is no such problem, and a Conflict (409, a status
    /// replaced after the object changed) is retried.
    pub fn status_write(&self, kind: &'static str, result: Result<()>) -> Result<()> {
        match &result {
            Ok(()) => self.health.status_written(kind, None),
            Err(Error::Kube(e)) if ApiFailure::of(e) == ApiFailure::Refused => self
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
    pub fn publish<K>(&self, obj: &K, type_: EventType, reason: &str, action: &str, note: String)
    where
        K: Resource<DynamicType = ()>,
    {
        self.events.send(publisher::event(
            obj,
            type_,
            reason,
            action,
            note,
            &self.instance,
        ));
    }
}

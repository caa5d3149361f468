//! The operator: one controller per kind, sharing one [`Context`]. The reconcilers are
//! thin: they read, call the pure modules, and write.

pub mod decision;
pub mod plan;
pub mod policy;

use std::net::SocketAddr;
use std::sync::Arc;

use futures::FutureExt;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client, Resource, ResourceExt};
use prometheus_client::registry::Registry;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{info, warn};

use crate::api::{ApprovalPolicy, Decision, ExecutionPlan};
use crate::error::{Error, Result};
use crate::http::Health;
use crate::metrics::Metrics;

/// The field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "decision-gate";

/// How the operator was started.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Watch only this namespace; all namespaces when `None`.
    pub namespace: Option<String>,
    /// How long a Decision waits for an answer when neither it nor a policy says.
    pub default_expiry: std::time::Duration,
    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    pub http_addr: SocketAddr,
}

/// What every reconciler gets.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Metrics,
    pub settings: Settings,
}

impl Context {
    /// An API for `K` in the watched namespace (or all of them).
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
    {
        scoped_api(&self.client, self.settings.namespace.as_deref())
    }

    /// Publishes a Kubernetes Event on `obj`. A failure is logged, never fatal: the
    /// object's status and the audit log are the record, Events are the courtesy.
    pub async fn publish<K>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) where
        K: Resource<DynamicType = ()>,
    {
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: action.to_owned(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &obj.object_ref(&())).await {
            warn!(error = %e, reason, "could not publish an Event");
        }
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

/// Writes `status` with server-side apply, owned by the operator's field manager.
pub async fn apply_status<K, S>(obj: &K, client: &Client, status: &S) -> Result<()>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    S: Serialize,
{
    let api: Api<K> = Api::namespaced(client.clone(), &obj.namespace().unwrap_or_default());
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        &obj.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
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

/// Runs the operator until a shutdown signal, then stops the controllers cleanly.
pub async fn run(settings: Settings) -> Result<()> {
    let client = Client::try_default().await.map_err(|e| {
        Error::Config(format!(
            "no Kubernetes cluster to talk to ({e}); set KUBECONFIG, or run inside a cluster"
        ))
    })?;
    check_crds(&client, settings.namespace.as_deref()).await?;

    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    let health = Arc::new(Health::new(registry));
    let (addr, server) = crate::http::bind(settings.http_addr, health.clone())
        .await
        .map_err(|e| Error::Config(format!("cannot serve on {}: {e}", settings.http_addr)))?;
    info!(%addr, "serving /healthz, /readyz and /metrics");
    let server = tokio::spawn(server);

    let reporter = Reporter {
        controller: "decision-gate".into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        client,
        metrics,
        settings,
    });
    info!(namespace = ?ctx.settings.namespace, "starting the Decision, ApprovalPolicy and ExecutionPlan controllers");

    let shutdown = shutdown_signal().shared();
    health.set_ready(true);
    tokio::join!(
        decision::run(ctx.clone(), shutdown.clone()),
        policy::run(ctx.clone(), shutdown.clone()),
        plan::run(ctx.clone(), shutdown.clone()),
    );
    health.set_ready(false);
    server.abort();
    info!("stopped");
    Ok(())
}

/// The error policy shared by the controllers: count, log, retry with a pause.
pub fn on_error<K: ResourceExt>(
    kind: &'static str,
    obj: &K,
    error: &Error,
    ctx: &Context,
) -> kube::runtime::controller::Action {
    ctx.metrics.reconcile_failed(kind, error.category());
    warn!(kind, name = %obj.name_any(), namespace = ?obj.namespace(), reason = error.category(), %error, "reconcile failed; will retry");
    kube::runtime::controller::Action::requeue(std::time::Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Request, Response};
    use kube::client::Body;

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

//! Leader election on a Lease: only the holder runs the controllers and writes the audit
//! log, so there is never a second writer of Jobs or audit lines.

use std::future::Future;

use futures::FutureExt;
use futures::future::Shared;
use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Settings;
use super::cluster::FIELD_MANAGER;
use crate::error::{Error, Result};

/// Whether this replica holds the Lease, as the election says, and the task that keeps
/// the Lease (renewed while held, released once every receiver of the state is gone).
pub type Election = (
    watch::Receiver<bool>,
    JoinHandle<kube_lease_manager::Result<LeaseManager>>,
);

/// Joins the election for the Lease of the watched scope, as `identity`.
pub async fn join(client: &Client, settings: &Settings, identity: &str) -> Result<Election> {
    let lease = LeaseManagerBuilder::new(client.clone(), lease_name(settings.namespace.as_deref()))
        .with_namespace(settings.lease_namespace.clone())
        .with_identity(identity.to_owned())
        .with_duration(settings.lease_duration.as_secs().max(2))
        .with_grace((settings.lease_duration.as_secs() / 3).max(1))
        .with_field_manager(FIELD_MANAGER)
        .build()
        .await
        .map_err(|e| Error::Lease(format!("cannot use the leader Lease: {e}")))?;
    Ok(lease.watch().await)
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
pub fn instance_name() -> String {
    if let Ok(pod) = std::env::var("POD_NAME") {
        return pod;
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "decision-gate".to_owned());
    format!("{host}-{}", std::process::id())
}

/// Resolves true once this replica holds the Lease, false if the election ends.
pub async fn wait_for_lease(leading: &mut watch::Receiver<bool>) -> bool {
    loop {
        if *leading.borrow_and_update() {
            return true;
        }
        if leading.changed().await.is_err() {
            return false;
        }
    }
}

/// Resolves once a replica that holds the Lease no longer does (or the election ends).
pub fn lost(leading: &watch::Receiver<bool>) -> Shared<impl Future<Output = ()> + Send + 'static> {
    let mut leading = leading.clone();
    async move {
        while leading.changed().await.is_ok() {
            if !*leading.borrow() {
                break;
            }
        }
    }
    .shared()
}

//! Leader election on a Lease: only the holder runs the controllers and writes the audit
//! log, so there is never a second writer of Jobs or audit lines.

use std::future::Future;

use futures::FutureExt;
use futures::future::Shared;
use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
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

/// Who holds the Lease, when it is another replica that has not let it go: its name, when it
/// last renewed the Lease, and when the Lease lapses unless renewed again.
pub fn held_by_another(lease: &Lease, identity: &str) -> Option<(String, String, String)> {
    let spec = lease.spec.as_ref()?;
    let holder = spec.holder_identity.as_deref().filter(|h| !h.is_empty())?;
    if holder == identity {
        return None;
    }
    let renewed = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(|t| crate::api::common::to_chrono(&t.0));
    let lapses = renewed.map(|at| {
        at + chrono::Duration::seconds(i64::from(spec.lease_duration_seconds.unwrap_or(0)))
    });
    let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_else(|| "unknown".to_owned())
    };
    Some((holder.to_owned(), time(renewed), time(lapses)))
}

/// Says who stands in the way while this replica waits for the Lease: a replica that
/// stopped without releasing it (killed, say) holds it until it lapses.
pub async fn report_holder(client: &Client, settings: &Settings, identity: &str) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), &settings.lease_namespace);
    let name = lease_name(settings.namespace.as_deref());
    if let Ok(Some(lease)) = leases.get_opt(&name).await
        && let Some((holder, renewed, lapses)) = held_by_another(&lease, identity)
    {
        tracing::info!(
            lease = name,
            holder,
            renewed,
            lapses,
            "another replica holds the leader Lease; waiting until it releases the Lease or the Lease lapses"
        );
    }
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

#[cfg(test)]
mod tests {
    use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    use super::held_by_another;

    fn lease(holder: Option<&str>, renewed: Option<i64>) -> Lease {
        Lease {
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_owned),
                lease_duration_seconds: Some(15),
                renew_time: renewed
                    .map(|s| MicroTime(k8s_openapi::jiff::Timestamp::from_second(s).unwrap())),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_lease_held_by_another_replica_names_it_and_when_it_lapses() {
        assert_eq!(
            held_by_another(&lease(Some("vm-41"), Some(1_800_000_000)), "vm-42"),
            Some((
                "vm-41".to_owned(),
                "2027-01-15T08:00:00Z".to_owned(),
                "2027-01-15T08:00:15Z".to_owned()
            ))
        );
        assert_eq!(
            held_by_another(&lease(Some("vm-41"), None), "vm-42"),
            Some((
                "vm-41".to_owned(),
                "unknown".to_owned(),
                "unknown".to_owned()
            ))
        );
        // Held by this replica, released, or never taken: nobody stands in the way.
        for (holder, me) in [
            (Some("vm-42"), "vm-42"),
            (Some(""), "vm-42"),
            (None, "vm-42"),
        ] {
            assert_eq!(
                held_by_another(&lease(holder, Some(1_800_000_000)), me),
                None
            );
        }
        assert_eq!(held_by_another(&Lease::default(), "vm-42"), None);
    }
}

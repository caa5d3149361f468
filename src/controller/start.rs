//! Starting the operator: its endpoints, the leader election, the shared watches, and
//! the controllers once this replica leads; and stopping it all again.

use std::sync::Arc;

use futures::FutureExt;
use kube::Client;
use kube::runtime::reflector::Store;
use prometheus_client::registry::Registry;
use tracing::{error, info, warn};

use super::cluster::check_crds;
use super::publisher::EventQueue;
use super::{Context, Settings, admission, decision, leader, plan, policy, watch};
use crate::api::{ApprovalPolicy, ExecutionPlan};
use crate::audit::AuditLog;
use crate::error::{Error, Result};
use crate::http::Health;
use crate::liveness::Progress;
use crate::metrics::Metrics;

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
    let no_cluster = |e: &dyn std::fmt::Display| {
        Error::Config(format!(
            "no Kubernetes cluster to talk to ({e}); set KUBECONFIG, or run inside a cluster"
        ))
    };
    let config = kube::Config::infer().await.map_err(|e| no_cluster(&e))?;
    let client = Client::try_from(config.clone()).map_err(|e| no_cluster(&e))?;
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
    let slack = match settings.slack.clone() {
        Some(slack) => {
            let at = slack.addr;
            let (addr, serve) = crate::slack::serve::bind(slack, config, health.clone())
                .await
                .map_err(|e| Error::Config(format!("cannot serve Slack on {at}: {e}")))?;
            info!(%addr, path = crate::slack::serve::PATH, "serving Slack's interactions");
            Some(tokio::spawn(serve))
        }
        None => None,
    };
    let witness = match settings.deletion_witness.clone() {
        Some(witness) => {
            let at = witness.addr;
            let (addr, serve) = crate::witness::bind(witness, client.clone())
                .await
                .map_err(|e| {
                    Error::Config(format!("cannot serve the deletion witness on {at}: {e}"))
                })?;
            info!(%addr, path = crate::witness::PATH, "witnessing deletions of Decisions");
            Some(tokio::spawn(serve))
        }
        None => None,
    };
    health.set_crds(true);
    let watchdog = tokio::spawn(watch_dependencies(
        client.clone(),
        settings.namespace.clone(),
        health.clone(),
    ));
    let stopped = |result| {
        watchdog.abort();
        server.abort();
        if let Some(slack) = &slack {
            slack.abort();
        }
        if let Some(witness) = &witness {
            witness.abort();
        }
        result
    };

    let shutdown = shutdown_signal().shared();
    let identity = leader::instance_name();
    let (mut leading, lease_task) = match leader::join(&client, &settings, &identity).await {
        Ok(election) => election,
        Err(e) => return stopped(Err(e)),
    };
    info!(identity, lease_namespace = %settings.lease_namespace, "waiting for the leader Lease");
    // Still waiting a moment later: say who holds the Lease, and until when.
    let report = tokio::time::sleep(std::time::Duration::from_secs(1));
    tokio::pin!(report);
    let mut reported = false;
    loop {
        tokio::select! {
            held = leader::wait_for_lease(&mut leading) => {
                if !held {
                    return stopped(Err(Error::Lease("the leader election stopped".into())));
                }
                break;
            }
            _ = shutdown.clone() => {
                info!("stopped before becoming the leader");
                return stopped(Ok(()));
            }
            _ = &mut report, if !reported => {
                reported = true;
                leader::report_holder(&client, &settings, &identity).await;
            }
        }
    }
    info!(identity, "became the leader");

    let audit = match AuditLog::open_for(
        &settings.audit_log,
        settings.audit_max_bytes,
        settings.audit_readers,
    ) {
        Ok(audit) => Arc::new(audit),
        Err(e) => {
            return stopped(Err(Error::AuditUnusable(e)));
        }
    };
    let writer = match crate::audit::Writer::start(audit.clone()) {
        Ok(writer) => writer,
        Err(source) => {
            let path = settings.audit_log.clone();
            return stopped(Err(Error::AuditUnusable(crate::audit::AuditError::Io {
                path,
                source,
            })));
        }
    };
    info!(path = %settings.audit_log.display(), next_seq = audit.next_seq(), "audit log open");
    health.lead(audit.clone());
    metrics.leader.set(1);

    // Stop on a signal, or at once when the Lease is lost: a replica that is no longer
    // the leader must not write another line.
    let lost = leader::lost(&leading);
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
        let result = if shutdown.peek().is_some() {
            Ok(())
        } else if lost.peek().is_some() {
            Err(Error::LostLeadership(
                "lost the leader Lease before the caches were filled".into(),
            ))
        } else {
            // A store gives up waiting only when its watch ended, and that task's end may
            // not have been seen yet: wait for it briefly, so that the exit says which
            // watch it was, and is never mistaken for a clean stop.
            let (kind, why) = tokio::time::timeout(WATCH_END_GRACE, watch_ended.clone())
                .await
                .unwrap_or((
                    "a shared watch",
                    "its store closed before it was filled".into(),
                ));
            Err(Error::WatchEnded { kind, why })
        };
        aborts.iter().for_each(|w| w.abort());
        health.stand_down();
        metrics.leader.set(0);
        return stopped(result);
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
        events: EventQueue::start(
            client.clone(),
            4,
            settings.events,
            metrics.events_dropped.clone(),
        ),
        instance: identity,
        client,
        metrics,
        settings,
        audit: writer,
        policies: policies.store.clone(),
        plans: plans.store.clone(),
        notifier,
        progress: progress.clone(),
        answers,
        failures: Default::default(),
        expressions: Default::default(),
        echoes: Default::default(),
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
        return stopped(Err(Error::LostLeadership(
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
/// How long a store that gave up waits for its watch task's end to be seen.
const WATCH_END_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

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

#[cfg(test)]
mod tests {
    use super::*;

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
}

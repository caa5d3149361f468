//! The operator's HTTP endpoints: `/healthz` (the process serves), `/readyz` (the CRDs
//! were found and the controllers run) and `/metrics` (Prometheus text format).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;

use crate::audit::AuditLog;

/// What the endpoints report on.
pub struct Health {
    crds: AtomicBool,
    /// The audit log, while this replica leads.
    audit: std::sync::Mutex<Option<Arc<AuditLog>>>,
    registry: Registry,
}

impl Health {
    pub fn new(registry: Registry) -> Self {
        Health {
            crds: AtomicBool::new(false),
            audit: std::sync::Mutex::new(None),
            registry,
        }
    }

    pub fn set_crds(&self, served: bool) {
        self.crds.store(served, Ordering::SeqCst);
    }

    /// This replica leads and writes to `audit`.
    pub fn lead(&self, audit: Arc<AuditLog>) {
        *self.audit.lock().unwrap_or_else(|p| p.into_inner()) = Some(audit);
    }

    pub fn stand_down(&self) {
        *self.audit.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Ready when the CRDs are served and, on the leader, the audit log can be written.
    /// A standby replica is ready: it serves metrics and waits to take over.
    fn readiness(&self) -> Result<&'static str, String> {
        if !self.crds.load(Ordering::SeqCst) {
            return Err("the decisiongate.io CRDs are not served".to_owned());
        }
        match self
            .audit
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            Some(audit) => audit
                .check_writable()
                .map(|()| "leader")
                .map_err(|e| e.to_string()),
            None => Ok("standby"),
        }
    }
}

pub fn router(health: Arc<Health>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(health)
}

async fn readyz(State(health): State<Arc<Health>>) -> impl IntoResponse {
    match health.readiness() {
        Ok(role) => (StatusCode::OK, format!("ok: {role}\n")),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
    }
}

async fn metrics(State(health): State<Arc<Health>>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &health.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics: {e}\n"),
        )
            .into_response(),
    }
}

/// Binds the address (so that a clash is reported at start-up) and returns the server.
pub async fn bind(
    addr: SocketAddr,
    health: Arc<Health>,
) -> std::io::Result<(
    SocketAddr,
    impl std::future::Future<Output = std::io::Result<()>>,
)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((
        local,
        async move { axum::serve(listener, router(health)).await },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_follows_the_crds_and_the_audit_log() {
        let health = Health::new(Registry::default());
        assert!(
            health
                .readiness()
                .unwrap_err()
                .contains("CRDs are not served")
        );
        health.set_crds(true);
        assert_eq!(health.readiness(), Ok("standby"));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let audit = Arc::new(AuditLog::open(&path, 1 << 20).unwrap());
        health.lead(audit);
        assert_eq!(health.readiness(), Ok("leader"));

        let mut permissions = std::fs::metadata(&path).unwrap().permissions();
        permissions.set_readonly(true);
        std::fs::set_permissions(&path, permissions).unwrap();
        assert!(health.readiness().unwrap_err().contains("read-only"));
        std::fs::remove_file(&path).unwrap();
        assert!(
            health.readiness().is_err(),
            "a log whose file is gone is not ready"
        );

        health.stand_down();
        assert_eq!(health.readiness(), Ok("standby"));
    }
}

//! The operator's HTTP endpoints: `/healthz` (the process serves and its controllers make
//! progress), `/readyz` (the CRDs are served, the caches are filled and, on the leader,
//! the audit log can be written) and `/metrics` (Prometheus text format), open to probes
//! and scrapers; and `/audit/*`, the audit log, only for callers the API server
//! authenticates and allows (see [`crate::access`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;

use crate::access::AuditAccess;
use crate::audit::AuditLog;
use crate::liveness::Progress;

/// What the endpoints report on.
pub struct Health {
    crds: AtomicBool,
    /// Whether the leader's caches hold a complete list (a standby has none to fill).
    caches: AtomicBool,
    /// The audit log, while this replica leads.
    audit: std::sync::Mutex<Option<Arc<AuditLog>>>,
    progress: Arc<Progress>,
    registry: Registry,
    /// Why the API server refuses the operator's status writes, per kind, until one of
    /// that kind succeeds.
    status_refused: std::sync::Mutex<std::collections::BTreeMap<&'static str, String>>,
    /// Why people's answers are not verified (and whether they count all the same).
    answers: std::sync::Mutex<Option<(String, bool)>>,
}

impl Health {
    pub fn new(registry: Registry, progress: Arc<Progress>) -> Self {
        Health {
            crds: AtomicBool::new(false),
            caches: AtomicBool::new(false),
            audit: std::sync::Mutex::new(None),
            progress,
            registry,
            status_refused: std::sync::Mutex::new(Default::default()),
            answers: std::sync::Mutex::new(None),
        }
    }

    /// Records whether the admission policies that verify answers are in force.
    pub fn set_answers(&self, answers: &crate::admission::Answers) {
        use crate::admission::Answers;
        *self.answers.lock().unwrap_or_else(|p| p.into_inner()) = match answers {
            Answers::Verified => None,
            Answers::Unverified(why) => Some((why.clone(), false)),
            Answers::CountedUnverified(why) => Some((why.clone(), true)),
        };
    }

    /// Records how the last status write of a kind went: refused (with the API server's
    /// reason) or done. A replica whose writes are refused does nothing useful and must
    /// say so.
    pub fn status_written(&self, kind: &'static str, refused: Option<String>) {
        let mut refusals = self
            .status_refused
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match refused {
            Some(why) => refusals.insert(kind, why),
            None => refusals.remove(kind),
        };
    }

    pub fn set_crds(&self, served: bool) {
        self.crds.store(served, Ordering::SeqCst);
    }

    /// The leader's caches are (or are no longer) complete.
    pub fn set_caches(&self, filled: bool) {
        self.caches.store(filled, Ordering::SeqCst);
    }

    /// Live unless queued work has made no progress for longer than the stall limit.
    fn liveness(&self, now: std::time::Instant) -> Result<(), String> {
        match self.progress.stalled(now) {
            Some(why) => Err(why),
            None => Ok(()),
        }
    }

    /// This replica leads and writes to `audit`.
    pub fn lead(&self, audit: Arc<AuditLog>) {
        *self.audit.lock().unwrap_or_else(|p| p.into_inner()) = Some(audit);
    }

    /// The audit log, while this replica leads.
    pub fn audit(&self) -> Option<Arc<AuditLog>> {
        self.audit.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn stand_down(&self) {
        *self.audit.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.set_caches(false);
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
            Some(_) if !self.caches.load(Ordering::SeqCst) => {
                Err("the leader is still filling its caches".to_owned())
            }
            Some(_)
                if let Some((kind, why)) = self
                    .status_refused
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .iter()
                    .next()
                    .map(|(k, w)| (*k, w.clone())) =>
            {
                Err(format!(
                    "the API server refuses the operator's status writes ({kind}): {why}"
                ))
            }
            Some(_)
                if let Some((why, false)) = self
                    .answers
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone() =>
            {
                Err(format!(
                    "people's answers are not verified, so approvals do not count: {why}"
                ))
            }
            Some(audit) => audit
                .check_writable()
                .map(|()| "leader")
                .map_err(|e| e.to_string()),
            None => Ok("standby"),
        }
    }
}

pub fn router(health: Arc<Health>, access: Arc<AuditAccess>) -> Router {
    let audit = Router::new()
        .route("/audit/verify", get(audit_verify))
        .route("/audit/entries", get(audit_entries))
        .route("/audit/export", get(audit_export))
        .route_layer(axum::middleware::from_fn_with_state(
            access,
            require_auditor,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(audit)
        .with_state(health)
}

/// Lets a request through to the audit log only when the API server authenticates its
/// token and allows the caller to read what it asks for. Only `/audit/entries` reads less
/// than the whole log, so only its filter can narrow the check.
async fn require_auditor(
    State(access): State<Arc<AuditAccess>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let filter = (request.uri().path() == "/audit/entries")
        .then(|| {
            axum::extract::Query::<EntryQuery>::try_from_uri(request.uri())
                .ok()
                .and_then(|q| q.0.namespace().map(str::to_owned))
        })
        .flatten();
    match access.check(request.headers(), filter.as_deref()).await {
        Ok(who) => {
            tracing::info!(user = %who.username, path = %request.uri().path(), namespace = filter.as_deref().unwrap_or(""), "serving the audit log");
            next.run(request).await
        }
        Err(refusal) => {
            tracing::debug!(status = refusal.status.as_u16(), path = %request.uri().path(), why = %refusal.message, "refused a request for the audit log");
            refusal.into_response()
        }
    }
}

/// The audit log's files, on the leader; a standby has none to serve.
fn audit_files(health: &Health) -> Result<Vec<std::path::PathBuf>, (StatusCode, String)> {
    let audit = health
        .audit
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let audit = audit.ok_or((
        StatusCode::SERVICE_UNAVAILABLE,
        "this replica is not the leader and holds no audit log; ask the leader\n".to_owned(),
    ))?;
    audit
        .files()
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")))
}

/// `GET /audit/verify`: the chain check, as JSON.
async fn audit_verify(State(health): State<Arc<Health>>) -> axum::response::Response {
    let files = match audit_files(&health) {
        Ok(files) => files,
        Err(e) => return e.into_response(),
    };
    let report = match tokio::task::spawn_blocking(move || crate::audit::verify(&files)).await {
        Ok(Ok(v)) => {
            serde_json::json!({"intact": true, "entries": v.entries, "lastHash": v.last_hash})
        }
        Ok(Err(e)) => {
            serde_json::json!({"intact": false, "file": e.file, "line": e.line, "problem": e.problem})
        }
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    };
    axum::Json(report).into_response()
}

/// What `/audit/entries` may filter on.
#[derive(serde::Deserialize)]
struct EntryQuery {
    /// `all`, `approvals` or `executions`.
    view: Option<String>,
    /// `NAMESPACE/NAME` or `NAME`.
    decision: Option<String>,
    /// Only the entries of Decisions in this namespace.
    namespace: Option<String>,
    /// Entries at or after this time (RFC 3339).
    since: Option<chrono::DateTime<chrono::Utc>>,
}

impl EntryQuery {
    /// The one namespace the query reads, if it reads only one: what the caller needs the
    /// right to read in.
    fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref().or_else(|| {
            self.decision
                .as_deref()
                .and_then(|d| d.split_once('/'))
                .map(|(ns, _)| ns)
        })
    }
}

/// `GET /audit/entries`: matching entries as JSON lines, oldest first.
async fn audit_entries(
    State(health): State<Arc<Health>>,
    axum::extract::Query(query): axum::extract::Query<EntryQuery>,
) -> axum::response::Response {
    let files = match audit_files(&health) {
        Ok(files) => files,
        Err(e) => return e.into_response(),
    };
    let view = match query.view.as_deref().unwrap_or("all") {
        "all" => crate::audit::View::All,
        "approvals" => crate::audit::View::Approvals,
        "executions" => crate::audit::View::Executions,
        other => {
            return (
                StatusCode::BAD_REQUEST,
                format!("unknown view {other:?}: all, approvals or executions\n"),
            )
                .into_response();
        }
    };
    let in_namespace = query.namespace.clone();
    let wanted = query.decision.map(|d| match d.split_once('/') {
        Some((ns, name)) => (Some(ns.to_owned()), name.to_owned()),
        None => (None, d),
    });
    let since = query.since;
    let read = tokio::task::spawn_blocking(move || {
        crate::audit::read(&files, |e| {
            view.includes(&e.event_type)
                && since.is_none_or(|t| e.timestamp >= t)
                && in_namespace
                    .as_ref()
                    .is_none_or(|ns| e.decision.as_ref().is_some_and(|d| &d.namespace == ns))
                && wanted.as_ref().is_none_or(|(ns, name)| {
                    e.decision.as_ref().is_some_and(|d| {
                        &d.name == name && ns.as_ref().is_none_or(|ns| &d.namespace == ns)
                    })
                })
        })
    })
    .await;
    match read {
        Ok(Ok(entries)) => {
            let body: String = entries
                .iter()
                .map(|e| serde_json::to_string(e).unwrap_or_default() + "\n")
                .collect();
            ([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response()
        }
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

/// `GET /audit/export`: every file of the log, oldest first, byte for byte, so that the
/// copy can be verified elsewhere.
async fn audit_export(State(health): State<Arc<Health>>) -> axum::response::Response {
    let files = match audit_files(&health) {
        Ok(files) => files,
        Err(e) => return e.into_response(),
    };
    let read = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
        let mut all = Vec::new();
        for f in files {
            all.extend(std::fs::read(f)?);
        }
        Ok(all)
    })
    .await;
    match read {
        Ok(Ok(bytes)) => ([(header::CONTENT_TYPE, "application/x-ndjson")], bytes).into_response(),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

async fn healthz(State(health): State<Arc<Health>>) -> impl IntoResponse {
    match health.liveness(std::time::Instant::now()) {
        Ok(()) => (StatusCode::OK, "ok\n".to_owned()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("stalled: {why}\n")),
    }
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
    access: Arc<AuditAccess>,
) -> std::io::Result<(
    SocketAddr,
    impl std::future::Future<Output = std::io::Result<()>>,
)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((local, async move {
        axum::serve(listener, router(health, access)).await
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_follows_the_crds_and_the_audit_log() {
        let health = Health::new(
            Registry::default(),
            Progress::new(std::time::Duration::from_secs(60)),
        );
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
        health.lead(audit.clone());
        assert!(
            health
                .readiness()
                .unwrap_err()
                .contains("filling its caches"),
            "a leader is not ready before its caches are"
        );
        health.set_caches(true);
        assert_eq!(health.readiness(), Ok("leader"));

        // Refused status writes make a leader unready, with the API server's reason,
        // until a write goes through.
        health.status_written(
            "Decision",
            Some("the API server answered 403 Forbidden: only the decision-gate operator writes the status".into()),
        );
        // Writes of another kind going through do not hide it.
        health.status_written("ApprovalPolicy", None);
        let why = health.readiness().unwrap_err();
        assert!(
            why.contains("refuses the operator's status writes") && why.contains("403 Forbidden"),
            "{why}"
        );
        health.status_written("Decision", None);
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

    async fn send(router: &Router, path: &str, token: Option<&str>) -> (StatusCode, String) {
        use tower::ServiceExt;
        let mut request = axum::http::Request::get(path);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let response = router
            .clone()
            .oneshot(request.body(axum::body::Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn the_audit_log_is_served_only_to_callers_the_api_server_allows() {
        use crate::access::tests::*;
        let (client, seen) = scripted(vec![
            (TOKEN_REVIEWS, 201, token_review("alice")),
            (ACCESS_REVIEWS, 201, access(true)),
            (TOKEN_REVIEWS, 201, token_review("alice")),
            (ACCESS_REVIEWS, 201, access(true)),
            (TOKEN_REVIEWS, 201, token_review("alice")),
            (ACCESS_REVIEWS, 201, access(true)),
        ]);
        let health = Arc::new(Health::new(
            Registry::default(),
            Progress::new(std::time::Duration::from_secs(60)),
        ));
        health.set_crds(true);
        let dir = tempfile::tempdir().unwrap();
        let audit = Arc::new(AuditLog::open(&dir.path().join("audit.jsonl"), 1 << 20).unwrap());
        health.lead(audit);
        health.set_caches(true);
        let router = router(health, Arc::new(AuditAccess::new(client, None)));

        // Probes and scrapers need no token, and cost the API server nothing.
        assert_eq!(send(&router, "/healthz", None).await.0, StatusCode::OK);
        assert_eq!(send(&router, "/readyz", None).await.0, StatusCode::OK);
        assert_eq!(send(&router, "/metrics", None).await.0, StatusCode::OK);
        for path in ["/audit/export", "/audit/verify", "/audit/entries"] {
            let (status, body) = send(&router, path, None).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
            assert!(body.contains("takes a bearer token"), "{body}");
        }

        // An export is the whole log whatever its query says: the right is checked
        // cluster-wide. Entries filtered to one namespace take the right there.
        let (status, _) = send(&router, "/audit/export?namespace=team-a", Some("t")).await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = send(&router, "/audit/entries?namespace=team-a", Some("t")).await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = send(&router, "/audit/entries?decision=team-b/x", Some("t")).await;
        assert_eq!(status, StatusCode::OK);
        let asked: Vec<serde_json::Value> = seen
            .await
            .unwrap()
            .iter()
            .filter(|r| r["kind"] == "SubjectAccessReview")
            .map(|r| r["spec"]["resourceAttributes"]["namespace"].clone())
            .collect();
        assert_eq!(
            asked,
            [
                serde_json::Value::Null,
                serde_json::json!("team-a"),
                serde_json::json!("team-b")
            ]
        );
    }

    #[test]
    fn an_entries_query_reads_one_namespace_when_it_names_one() {
        let query = |q: &str| {
            axum::extract::Query::<EntryQuery>::try_from_uri(
                &format!("/audit/entries?{q}").parse().unwrap(),
            )
            .unwrap()
            .0
        };
        assert_eq!(query("view=all").namespace(), None);
        assert_eq!(query("decision=x").namespace(), None);
        assert_eq!(query("decision=team-a/x").namespace(), Some("team-a"));
        assert_eq!(query("namespace=team-b").namespace(), Some("team-b"));
        assert_eq!(
            query("namespace=team-b&decision=team-a/x").namespace(),
            Some("team-b"),
            "the entries must match both, so the namespace filter decides"
        );
    }

    #[test]
    fn liveness_fails_while_work_is_stalled_and_says_on_what() {
        let progress = Progress::new(std::time::Duration::from_secs(60));
        let health = Health::new(Registry::default(), progress.clone());
        let t0 = std::time::Instant::now();
        assert_eq!(health.liveness(t0), Ok(()));
        let hung = progress.start("Decision", "team-a/stuck".into(), t0);
        let why = health
            .liveness(t0 + std::time::Duration::from_secs(61))
            .unwrap_err();
        assert!(why.contains("team-a/stuck"), "{why}");
        drop(hung);
        assert_eq!(
            health.liveness(t0 + std::time::Duration::from_secs(61)),
            Ok(())
        );
    }
}

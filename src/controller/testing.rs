//! What the reconcilers' unit tests share: a scripted API server that answers each request
//! a reconciler makes and checks it is the one expected, a [`Context`] around it, and the
//! objects the tests start from.
//!
//! The script lists the requests in the order the reconciler makes them. Events are the
//! exception: they are published off the reconcile path, so every Event created is
//! collected on the side, answered, and handed to the test to check.

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response};
use k8s_openapi::api::events::v1::Event;
use kube::Client;
use kube::client::Body;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};

use super::publisher::EventQueue;
use super::{Context, Settings};
use crate::admission::Answers;
use crate::api::{ApprovalPolicy, ExecutionPlan};
use crate::audit::AuditLog;
use crate::http::Health;
use crate::liveness::Progress;
use crate::metrics::Metrics;

/// How long a test waits for the reconciler's clients to be gone and the script to end.
const DEADLINE: Duration = Duration::from_secs(10);

type Check = Box<dyn FnOnce(&Value) + Send>;

/// One request the reconciler is expected to make, and the answer it gets.
pub struct Expect {
    method: Method,
    path: String,
    query: Vec<String>,
    not_query: Vec<String>,
    check: Option<Check>,
    code: u16,
    /// The answer's body; the request's own body (with metadata) when `None`.
    answer: Option<Value>,
}

impl Expect {
    fn new(method: Method, path: &str) -> Expect {
        Expect {
            method,
            path: path.to_owned(),
            query: Vec::new(),
            not_query: Vec::new(),
            check: None,
            code: 200,
            answer: None,
        }
    }

    /// The request's query must hold `part` (such as `dryRun=All`).
    pub fn query(mut self, part: &str) -> Expect {
        self.query.push(part.to_owned());
        self
    }

    /// The request's query must not hold `part`.
    pub fn query_lacks(mut self, part: &str) -> Expect {
        self.not_query.push(part.to_owned());
        self
    }

    /// Checks the request's body (with assertions).
    pub fn body(mut self, check: impl FnOnce(&Value) + Send + 'static) -> Expect {
        self.check = Some(Box::new(check));
        self
    }

    /// Answers with `code` and `body`.
    pub fn answer(mut self, code: u16, body: Value) -> Expect {
        self.code = code;
        self.answer = Some(body);
        self
    }

    /// Answers with a failure Status, as the API server does.
    pub fn fail(self, code: u16, reason: &str, message: &str) -> Expect {
        self.answer(code, status(code, reason, message))
    }
}

pub fn get(path: &str) -> Expect {
    Expect::new(Method::GET, path)
}

pub fn post(path: &str) -> Expect {
    Expect::new(Method::POST, path)
}

pub fn patch(path: &str) -> Expect {
    Expect::new(Method::PATCH, path)
}

pub fn put(path: &str) -> Expect {
    Expect::new(Method::PUT, path)
}

/// A failure Status of the API server.
pub fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
        "code": code, "reason": reason, "message": message,
    })
}

/// An empty list.
pub fn empty_list() -> Value {
    json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": []})
}

/// A scripted API server, running in a task of its own.
pub struct ApiServer {
    task: tokio::task::JoinHandle<(Vec<String>, Vec<Event>)>,
}

/// A client of an API server that expects `script`, in order.
pub fn scripted(script: Vec<Expect>) -> (Client, ApiServer) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let task =
        tokio::spawn(async move {
            let mut script = script.into_iter();
            let mut failures = Vec::new();
            let mut events = Vec::new();
            // Ends once every clone of the client (in the context, in the Event lanes) is gone.
            while let Some((request, respond)) = handle.next_request().await {
                let (parts, body) = request.into_parts();
                let bytes = body.collect_bytes().await.unwrap_or_default();
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                let said = format!("{} {}", parts.method, parts.uri);
                let reply = |code: u16, body: &Value| {
                    Response::builder()
                        .status(code)
                        .body(Body::from(serde_json::to_vec(body).unwrap()))
                        .unwrap()
                };
                if parts.method == Method::POST
                    && parts.uri.path().starts_with("/apis/events.k8s.io/v1/")
                {
                    match serde_json::from_value::<Event>(body.clone()) {
                        Ok(event) => events.push(event),
                        Err(e) => failures.push(format!("{said}: not an Event: {e}")),
                    }
                    respond.send_response(reply(201, &body));
                    continue;
                }
                let Some(expected) = script.next() else {
                    failures.push(format!("a request the script does not expect: {said}"));
                    respond.send_response(reply(500, &status(500, "InternalError", "unexpected")));
                    continue;
                };
                let query = parts.uri.query().unwrap_or_default();
                if parts.method != expected.method || parts.uri.path() != expected.path {
                    failures.push(format!(
                        "expected {} {}, got {said}",
                        expected.method, expected.path
                    ));
                    respond.send_response(reply(500, &status(500, "InternalError", "unexpected")));
                    continue;
                }
                for part in &expected.query {
                    if !query.split('&').any(|q| q == part) {
                        failures.push(format!("{said}: the query lacks {part}"));
                    }
                }
                for part in &expected.not_query {
                    if query.split('&').any(|q| q == part) {
                        failures.push(format!("{said}: the query holds {part}"));
                    }
                }
                if let Some(check) = expected.check
                    && let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(|| check(&body)))
                {
                    let why = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                        .unwrap_or_default();
                    failures.push(format!("{said}: the body is not as expected: {why}"));
                }
                let answer = expected.answer.unwrap_or_else(|| echo(body));
                respond.send_response(reply(expected.code, &answer));
            }
            failures.extend(script.map(|missing| {
                format!("a request never made: {} {}", missing.method, missing.path)
            }));
            (failures, events)
        });
    (Client::new(service, "default"), ApiServer { task })
}

/// The request's body as the answer, given the metadata every object has.
fn echo(mut body: Value) -> Value {
    if let Some(object) = body.as_object_mut() {
        object.entry("metadata").or_insert_with(|| json!({}));
    }
    body
}

impl ApiServer {
    /// Waits for the script to end (every client dropped first) and fails on a request
    /// that was not made, one that was not expected, or one that differs from the script.
    /// Returns the Events created, in order.
    pub async fn verify(self) -> Vec<Event> {
        let (failures, events) = tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("the clients of the scripted API server are still in use")
            .expect("the scripted API server failed");
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        events
    }
}

/// Runs `reconcile` on a context around the scripted server's client, then verifies the
/// script once the reconcile is done and the context gone, so that a request out of
/// place is reported before the reconcile's outcome is looked at. Returns the outcome
/// and the Events created.
pub async fn reconciled<T, F>(
    ctx: Context,
    server: ApiServer,
    reconcile: impl FnOnce(Arc<Context>) -> F,
) -> (T, Vec<Event>)
where
    F: std::future::Future<Output = T>,
{
    let ctx = Arc::new(ctx);
    let outcome = tokio::time::timeout(DEADLINE, reconcile(ctx.clone())).await;
    drop(ctx);
    let events = server.verify().await;
    (outcome.expect("the reconcile finished in time"), events)
}

/// What `/readyz` answers for `health`: its status code and its text.
pub async fn readyz(health: Arc<Health>) -> (u16, String) {
    use tower::ServiceExt;
    // The audit endpoints' client, never used by /readyz.
    let (client, server) = scripted(vec![]);
    let access = Arc::new(crate::access::AuditAccess::new(client, None));
    let request = Request::get("/readyz")
        .body(axum::body::Body::empty())
        .unwrap();
    let response = crate::http::router(health, access)
        .oneshot(request)
        .await
        .unwrap();
    let code = response.status().as_u16();
    let text = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .unwrap();
    server.verify().await;
    (code, String::from_utf8_lossy(&text).into_owned())
}

/// The reasons of `events`, in order.
pub fn reasons(events: &[Event]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e.reason.as_deref().unwrap_or_default())
        .collect()
}

/// The namespace the tests' objects live in.
pub const NS: &str = "ops";

/// The path of an object of the operator's kinds, or of its status.
pub fn object_path(plural: &str, name: &str) -> String {
    format!("/apis/decisiongate.io/v1alpha1/namespaces/{NS}/{plural}/{name}")
}

/// The path a Job of the tests' namespace is created at.
pub const JOBS: &str = "/apis/batch/v1/namespaces/ops/jobs";

/// An object of the tests' namespace, read from its wire form (names as `kubectl` shows
/// them), with the metadata the API server gives it.
pub fn object<K: serde::de::DeserializeOwned>(kind: &str, name: &str, spec: Value) -> K {
    serde_json::from_value(json!({
        "apiVersion": "decisiongate.io/v1alpha1",
        "kind": kind,
        "metadata": {
            "name": name, "namespace": NS, "uid": format!("{name}-uid"),
            "generation": 1, "resourceVersion": "7",
            "creationTimestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        },
        "spec": spec,
    }))
    .unwrap()
}

/// A Decision to `deploy`, of `criticality`, naming `plan` when given, with the finalizer
/// the chart's admission policy gives every Decision.
pub fn decision(name: &str, criticality: &str, plan: Option<&str>) -> crate::api::Decision {
    let mut spec = json!({
        "actionType": "deploy", "description": "Deploy 2.0", "criticality": criticality,
    });
    if let Some(plan) = plan {
        spec["planRef"] = json!({"name": plan});
    }
    let mut decision: crate::api::Decision = object("Decision", name, spec);
    decision.metadata.finalizers = Some(vec![crate::api::FINALIZER.to_owned()]);
    decision
}

/// An ApprovalPolicy of `rules` (in their wire form).
pub fn policy(name: &str, rules: Value) -> ApprovalPolicy {
    object(
        "ApprovalPolicy",
        name,
        json!({"priority": 100, "rules": rules}),
    )
}

/// A plan of `mode` whose steps are named `steps`, each a Job of one container.
pub fn plan(name: &str, mode: &str, steps: &[&str]) -> ExecutionPlan {
    let steps: Vec<Value> = steps
        .iter()
        .map(|step| {
            json!({
                "name": step,
                "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}},
            })
        })
        .collect();
    object(
        "ExecutionPlan",
        name,
        json!({"actionTypes": ["deploy"], "mode": mode, "rollbackStrategy": "None", "steps": steps}),
    )
}

fn store<K>(objects: Vec<K>) -> Store<K>
where
    K: reflector::Lookup<DynamicType = ()> + Clone + 'static,
{
    let (store, mut writer) = reflector::store();
    for obj in objects {
        writer.apply_watcher_event(&watcher::Event::Apply(obj));
    }
    store
}

impl Context {
    /// A context for a reconciler under test: `client`, an audit log in `audit_dir`, no
    /// policies or plans, answers verified, and real execution allowed.
    pub fn for_tests(client: Client, audit_dir: &Path) -> Context {
        let mut registry = Registry::default();
        let metrics = Metrics::new(&mut registry);
        let progress = Progress::new(Duration::from_secs(300));
        let settings = Settings {
            namespace: None,
            default_expiry: Duration::from_secs(24 * 3600),
            http_addr: "127.0.0.1:0".parse().unwrap(),
            audit_log: audit_dir.join("audit.jsonl"),
            audit_max_bytes: 1 << 20,
            audit_readers: Default::default(),
            deletion_witness: None,
            allow_real_execution: true,
            lease_namespace: "default".into(),
            lease_duration: Duration::from_secs(15),
            notifications: None,
            reconcile_timeout: Duration::from_secs(60),
            stall_timeout: Duration::from_secs(300),
            shutdown_timeout: Duration::from_secs(20),
            admission_policy_prefix: "decision-gate".into(),
            count_unverified_answers: false,
            slack: None,
            events: Default::default(),
        };
        let audit = AuditLog::open(&settings.audit_log, settings.audit_max_bytes).unwrap();
        Context {
            health: Arc::new(Health::new(registry, progress.clone())),
            // One lane: the Events reach the scripted API server in the order they were made.
            events: EventQueue::start(client.clone(), 1, Default::default(), Default::default()),
            instance: "test".into(),
            client,
            metrics,
            settings,
            audit: crate::audit::Writer::start(Arc::new(audit)).unwrap(),
            policies: store(Vec::new()),
            plans: store(Vec::new()),
            notifier: None,
            progress,
            answers: tokio::sync::watch::channel(Some(Answers::Verified)).1,
            failures: Default::default(),
            expressions: Default::default(),
            echoes: Default::default(),
        }
    }

    pub fn with_policies(mut self, policies: Vec<ApprovalPolicy>) -> Context {
        self.policies = store(policies);
        self
    }

    pub fn with_plans(mut self, plans: Vec<ExecutionPlan>) -> Context {
        self.plans = store(plans);
        self
    }

    pub fn with_answers(mut self, answers: Answers) -> Context {
        self.answers = tokio::sync::watch::channel(Some(answers)).1;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn list(client: &Client, path: &str) {
        let request = Request::get(path).body(Vec::new()).unwrap();
        let _ = client.request::<Value>(request).await;
    }

    #[tokio::test]
    async fn the_script_is_answered_in_order() {
        let (client, server) = scripted(vec![
            get("/api/v1/pods").answer(200, empty_list()),
            get("/api/v1/secrets").answer(200, empty_list()),
        ]);
        list(&client, "/api/v1/pods").await;
        list(&client, "/api/v1/secrets").await;
        drop(client);
        assert!(server.verify().await.is_empty());
    }

    #[tokio::test]
    #[should_panic(expected = "a request never made: GET /api/v1/secrets")]
    async fn a_request_not_made_fails() {
        let (client, server) = scripted(vec![
            get("/api/v1/pods").answer(200, empty_list()),
            get("/api/v1/secrets").answer(200, empty_list()),
        ]);
        list(&client, "/api/v1/pods").await;
        drop(client);
        server.verify().await;
    }

    #[tokio::test]
    #[should_panic(expected = "a request the script does not expect: GET /api/v1/secrets")]
    async fn an_extra_request_fails() {
        let (client, server) = scripted(vec![get("/api/v1/pods").answer(200, empty_list())]);
        list(&client, "/api/v1/pods").await;
        list(&client, "/api/v1/secrets").await;
        drop(client);
        server.verify().await;
    }

    #[tokio::test]
    #[should_panic(expected = "expected GET /api/v1/pods, got GET /api/v1/secrets")]
    async fn a_request_for_another_path_fails() {
        let (client, server) = scripted(vec![get("/api/v1/pods").answer(200, empty_list())]);
        list(&client, "/api/v1/secrets").await;
        drop(client);
        server.verify().await;
    }

    #[tokio::test]
    #[should_panic(expected = "the body is not as expected")]
    async fn a_body_that_fails_its_check_fails() {
        let (client, server) = scripted(vec![post("/api/v1/namespaces").body(|b| {
            assert_eq!(b["metadata"]["name"], "team-a");
        })]);
        let request = Request::post("/api/v1/namespaces")
            .body(serde_json::to_vec(&json!({"metadata": {"name": "team-b"}})).unwrap())
            .unwrap();
        let _ = client.request::<Value>(request).await;
        drop(client);
        server.verify().await;
    }

    #[tokio::test]
    #[should_panic(expected = "the clients of the scripted API server are still in use")]
    async fn a_client_still_held_fails_at_the_deadline() {
        tokio::time::pause();
        let (client, server) = scripted(vec![]);
        server.verify().await;
        drop(client);
    }
}

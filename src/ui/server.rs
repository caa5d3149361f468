//! The review page's HTTP server: the page itself (shipped in the binary), a JSON API over
//! a watch of Decisions, Server-Sent Events that tell the page when to fetch again, and
//! answers given with [`crate::answer::give`] as the user of the client.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use futures::future::BoxFuture;
use futures::{Stream, StreamExt};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::guard::{Guard, Seen, Verdict};
use super::view::{self, Summary};
use crate::answer::{Answer, RECORD_WAIT, give};
use crate::api::{Decision, ExecutionPlan};

const INDEX: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// Reads the audit trail of Decision (namespace, name); `Err` says why it cannot.
pub type AuditTrail = Arc<
    dyn Fn(String, String) -> BoxFuture<'static, Result<Vec<crate::audit::Entry>, String>>
        + Send
        + Sync,
>;

/// Where the page's Decisions come from, and as whom it acts.
pub struct Source {
    /// A client with the approver's own credentials.
    pub client: Client,
    /// The namespace to watch; `None` for every one.
    pub namespace: Option<String>,
    pub audit: AuditTrail,
}

/// The review page, bound to its loopback address and not serving yet.
pub struct Ui {
    listener: tokio::net::TcpListener,
    guard: Guard,
}

impl Ui {
    /// Binds `address`, which must be a loopback address (port 0 picks a free port).
    pub async fn bind(address: SocketAddr) -> Result<Ui, String> {
        if !address.ip().is_loopback() {
            return Err(format!(
                "the review page acts as you, so it serves on a loopback address only, not {}",
                address.ip()
            ));
        }
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|e| format!("cannot listen on {address}: {e}"))?;
        let bound = listener
            .local_addr()
            .map_err(|e| format!("cannot tell the address listened on: {e}"))?;
        Ok(Ui {
            listener,
            guard: Guard::random(bound),
        })
    }

    /// The address to open, with this run's secret.
    pub fn url(&self) -> String {
        self.guard.url()
    }

    /// Watches the Decisions of `source` and serves the page until the process ends.
    pub async fn serve(self, source: Source) -> std::io::Result<()> {
        let me = crate::agent::whoami(&source.client).await.ok();
        let (store, writer) = reflector::store();
        let (changed, _) = watch::channel(0u64);
        let shared = Arc::new(Shared {
            guard: self.guard,
            client: source.client.clone(),
            scope: match &source.namespace {
                Some(ns) => format!("namespace {ns}"),
                None => "every namespace".to_owned(),
            },
            store,
            ready: AtomicBool::new(false),
            problem: Mutex::new(None),
            changed,
            me,
            audit: source.audit,
        });
        let api: Api<Decision> = match &source.namespace {
            Some(ns) => Api::namespaced(source.client, ns),
            None => Api::all(source.client),
        };
        tokio::spawn(follow(api, writer, shared.clone()));
        axum::serve(self.listener, router(shared)).await
    }
}

struct Shared {
    guard: Guard,
    client: Client,
    scope: String,
    store: Store<Decision>,
    /// Whether the first list is in the store.
    ready: AtomicBool,
    /// Why the watch fails, while it does.
    problem: Mutex<Option<String>>,
    /// Bumped on every change the page should fetch again for.
    changed: watch::Sender<u64>,
    me: Option<String>,
    audit: AuditTrail,
}

impl Shared {
    fn ping(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn set_problem(&self, problem: Option<String>) {
        *self.problem.lock().unwrap_or_else(|p| p.into_inner()) = problem;
    }
}

/// Keeps the store in step with the API server, and tells the pages of every change.
async fn follow(
    api: Api<Decision>,
    writer: reflector::store::Writer<Decision>,
    shared: Arc<Shared>,
) {
    let mut events = reflector::reflector(writer, watcher(api, watcher::Config::default()))
        .default_backoff()
        .boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
            Ok(watcher::Event::InitDone) => {
                shared.ready.store(true, Ordering::Relaxed);
                shared.set_problem(None);
                shared.ping();
            }
            Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) => {
                shared.set_problem(None);
                shared.ping();
            }
            Err(e) => {
                shared.set_problem(Some(format!(
                    "cannot watch Decisions in {}: {}",
                    shared.scope,
                    crate::error::describe_watch(&e)
                )));
                shared.ping();
            }
        }
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(|| async { Html(INDEX) }))
        .route(
            "/app.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    APP_JS,
                )
            }),
        )
        .route(
            "/app.css",
            get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], APP_CSS) }),
        )
        .route("/api/decisions", get(list))
        .route("/api/decisions/{namespace}/{name}", get(one))
        .route("/api/decisions/{namespace}/{name}/audit", get(audit))
        .route("/api/decisions/{namespace}/{name}/answer", post(answer))
        .route("/api/events", get(events))
        .layer(middleware::from_fn_with_state(shared.clone(), guarded))
        .with_state(shared)
}

/// Every request passes the guard; every response forbids framing, sniffing, caching,
/// referrers and any script or connection but the page's own.
async fn guarded(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let token = request
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|pair| pair.strip_prefix("token=")));
    let seen = Seen {
        post: request.method() == Method::POST,
        host: text(header::HOST),
        origin: text(header::ORIGIN),
        cookie: text(header::COOKIE),
        token,
    };
    let mut response = match shared.guard.admit(&seen) {
        Verdict::Allow => next.run(request).await,
        // Served, not redirected: a redirect would make the page's own address a
        // cross-site request when it was opened from a file, and the cookie is Strict.
        Verdict::SetCookie => {
            let mut r = next.run(request).await;
            if let Ok(cookie) = HeaderValue::from_str(&shared.guard.set_cookie()) {
                r.headers_mut().insert(header::SET_COOKIE, cookie);
            }
            r
        }
        Verdict::Deny(code, why) => (
            StatusCode::from_u16(code).unwrap_or(StatusCode::FORBIDDEN),
            format!("{why}\n"),
        )
            .into_response(),
    };
    secure(response.headers_mut());
    response
}

fn secure(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Listing {
    me: Option<String>,
    scope: String,
    ready: bool,
    problem: Option<String>,
    items: Vec<Summary>,
}

async fn list(State(shared): State<Arc<Shared>>) -> axum::Json<Listing> {
    let all: Vec<Decision> = shared.store.state().iter().map(|d| (**d).clone()).collect();
    axum::Json(Listing {
        me: shared.me.clone(),
        scope: shared.scope.clone(),
        ready: shared.ready.load(Ordering::Relaxed),
        problem: shared
            .problem
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone(),
        items: view::waiting(&all, shared.me.as_deref(), chrono::Utc::now()),
    })
}

#[derive(Serialize)]
struct Message {
    message: String,
}

fn not_found(namespace: &str, name: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(Message {
            message: format!("no Decision {name} in namespace {namespace}"),
        }),
    )
        .into_response()
}

async fn one(
    State(shared): State<Arc<Shared>>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    let Some(d) = shared.store.get(&ObjectRef::new(&name).within(&namespace)) else {
        return not_found(&namespace, &name);
    };
    let plan = match &d.spec.plan_ref {
        Some(r) => Api::<ExecutionPlan>::namespaced(shared.client.clone(), &namespace)
            .get_opt(&r.name)
            .await
            .map_err(|e| crate::error::describe_kube(&e)),
        None => Ok(None),
    };
    let shown = view::decision(
        &d,
        plan.as_ref().map(Option::as_ref).map_err(Clone::clone),
        shared.me.as_deref(),
        chrono::Utc::now(),
    );
    axum::Json(shown).into_response()
}

async fn audit(
    State(shared): State<Arc<Shared>>,
    Path((namespace, name)): Path<(String, String)>,
) -> axum::Json<view::AuditView> {
    axum::Json(view::audit((shared.audit)(namespace, name).await))
}

/// An answer as the page sends it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AnswerForm {
    /// "approve" or "reject".
    answer: String,
    #[serde(default)]
    reason: String,
    /// The Decision's digest the page showed.
    digest: Option<String>,
}

async fn answer(
    State(shared): State<Arc<Shared>>,
    Path((namespace, name)): Path<(String, String)>,
    axum::Json(form): axum::Json<AnswerForm>,
) -> Response {
    let reason = form.reason.trim().to_owned();
    let answer = match form.answer.as_str() {
        "approve" => Answer::Approve {
            reason: (!reason.is_empty()).then_some(reason),
            digest: form.digest.filter(|d| !d.is_empty()),
        },
        "reject" if !reason.is_empty() => Answer::Reject { reason },
        "reject" => return bad_request("a rejection needs a reason"),
        _ => return bad_request("the answer is approve or reject"),
    };
    let result = give(&shared.client, &namespace, &name, &answer, RECORD_WAIT).await;
    axum::Json(view::answered(&answer, &namespace, &name, &result)).into_response()
}

fn bad_request(why: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(view::AnswerView {
            counted: false,
            message: why.to_owned(),
        }),
    )
        .into_response()
}

/// A "changed" event each time the watched Decisions change; the page fetches again.
async fn events(
    State(shared): State<Arc<Shared>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let changes = futures::stream::unfold(shared.changed.subscribe(), |mut rx| async move {
        rx.changed().await.ok()?;
        let n = *rx.borrow_and_update();
        Some((
            Ok(Event::default().event("changed").data(n.to_string())),
            rx,
        ))
    });
    Sse::new(changes).keep_alive(KeepAlive::default())
}

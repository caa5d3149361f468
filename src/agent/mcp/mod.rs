//! `decision-gate mcp`: the gate as a Model Context Protocol server, so that an AI agent
//! asks for approval, waits for the answer and reads what ran through tools it already knows
//! how to call. It acts with the agent's own Kubernetes credentials, so the API server
//! records who asked; over HTTP, with the bearer token each request carries.
//!
//! The tools' arguments and answers are in [`tools`], free of any cluster.

pub mod tools;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kube::api::ListParams;
use kube::config::AuthInfo;
use kube::{Api, Client, Config};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, ProgressNotificationParam};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{RoleServer, ServerHandler, ServiceExt, tool, tool_handler, tool_router};
use serde::Serialize;

use self::tools::{
    GetDecision, ListDecisions, ListPlans, OwnDecisions, Plans, RequestApproval, WaitForDecision,
    Waited, next_step, own_decisions, progress_message, sentences, wait_seconds,
};
use crate::agent::{self, WaitEnd};
use crate::api::{Decision, ExecutionPlan};
use crate::request::{Report, evaluated};

/// How long `request_approval` waits for the operator's first evaluation.
const EVALUATION_WAIT: Duration = Duration::from_secs(15);

/// How often a waiting `wait_for_decision` says it is still waiting.
const HEARTBEAT: Duration = Duration::from_secs(10);

/// How `decision-gate mcp` was started.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    pub namespace: Option<String>,
    /// Serve streamable HTTP on this address instead of stdio.
    pub http: Option<SocketAddr>,
    /// Host names HTTP requests may name besides the loopback ones.
    pub allowed_hosts: Vec<String>,
    /// Let HTTP requests without a bearer token act with the server's own credentials.
    pub tokenless_as_server: bool,
}

/// Runs the server until its client goes away (stdio) or a signal stops it (HTTP).
pub async fn serve(settings: Settings) -> Result<(), String> {
    let gate = Gate::connect(&settings).await?;
    match agent::whoami(&gate.client).await {
        Ok(user) => tracing::info!(user, namespace = gate.namespace, "acting as {user}"),
        Err(why) => tracing::warn!("{why}"),
    }
    match settings.http {
        None => {
            let running = gate
                .serve(rmcp::transport::stdio())
                .await
                .map_err(|e| format!("the MCP session did not start: {e}"))?;
            running
                .waiting()
                .await
                .map_err(|e| format!("the MCP session failed: {e}"))?;
            Ok(())
        }
        Some(addr) => serve_http(gate, addr, settings.allowed_hosts).await,
    }
}

async fn serve_http(gate: Gate, addr: SocketAddr, extra_hosts: Vec<String>) -> Result<(), String> {
    let mut hosts: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    hosts.extend(extra_hosts);
    let config = StreamableHttpServerConfig::default().with_allowed_hosts(hosts);
    let stop = config.cancellation_token.clone();
    let service = StreamableHttpService::new(
        move || Ok(gate.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let router = axum::Router::new().nest_service("/mcp", service);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    // The one line a supervisor (or a test) reads to learn the port of `--http ...:0`.
    eprintln!("decision-gate mcp: serving MCP over streamable HTTP at http://{bound}/mcp");
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            stopped().await;
            stop.cancel();
        })
        .await
        .map_err(|e| format!("the HTTP server failed: {e}"))
}

/// Resolves on SIGINT or SIGTERM.
async fn stopped() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}

/// The server: the cluster it talks to, and the namespace a tool uses when not told.
#[derive(Clone)]
pub struct Gate {
    config: Arc<Config>,
    client: Client,
    namespace: String,
    tokenless_as_server: bool,
}

impl Gate {
    /// The caller's own credentials: the kubeconfig given (or `$KUBECONFIG`, or
    /// `~/.kube/config`) with its context, else the pod's ServiceAccount.
    pub async fn connect(settings: &Settings) -> Result<Gate, String> {
        let config =
            agent::config(settings.kubeconfig.as_deref(), settings.context.as_deref()).await?;
        let namespace = settings
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = Client::try_from(config.clone())
            .map_err(|e| format!("no cluster to talk to: {}", crate::error::describe_kube(&e)))?;
        Ok(Gate {
            config: Arc::new(config),
            client,
            namespace,
            tokenless_as_server: settings.tokenless_as_server,
        })
    }

    /// The client a tool call acts with: over HTTP, the bearer token of the request (each
    /// agent its own identity), or the server's own credentials where allowed; over stdio,
    /// the server's (which are the agent's: the agent started it).
    fn client(&self, ctx: &RequestContext<RoleServer>) -> Result<Client, String> {
        let Some(parts) = ctx.extensions.get::<http::request::Parts>() else {
            return Ok(self.client.clone());
        };
        let token = parts
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(bearer_token);
        match token {
            Some(token) => {
                let mut config = (*self.config).clone();
                config.auth_info = AuthInfo {
                    token: Some(token.into()),
                    ..AuthInfo::default()
                };
                Client::try_from(config).map_err(|e| {
                    format!(
                        "cannot use the request's token: {}",
                        crate::error::describe_kube(&e)
                    )
                })
            }
            None if self.tokenless_as_server => Ok(self.client.clone()),
            None => Err(
                "this server acts with each caller's own Kubernetes credentials: \
                 send your token in the header Authorization: Bearer <token> (for a \
                 ServiceAccount, kubectl create token NAME)"
                    .to_owned(),
            ),
        }
    }

    fn namespace(&self, asked: Option<&str>) -> String {
        asked
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .unwrap_or(&self.namespace)
            .to_owned()
    }

    fn decisions(
        &self,
        ctx: &RequestContext<RoleServer>,
        namespace: Option<&str>,
    ) -> Result<(Api<Decision>, String), String> {
        let namespace = self.namespace(namespace);
        Ok((Api::namespaced(self.client(ctx)?, &namespace), namespace))
    }
}

/// The token of an `Authorization: Bearer <token>` header value.
fn bearer_token(value: &str) -> Option<String> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}

/// A tool's answer: a summary for the model to read first, then the same as JSON
/// (as text too, for clients that show no structured content).
fn answer(summary: String, value: &impl Serialize) -> CallToolResult {
    let json = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
    let mut result = CallToolResult::structured(json);
    result.content.insert(0, ContentBlock::text(summary));
    result
}

/// A refusal, as a tool error the agent reads and can act on.
fn refused(why: String) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(why)])
}

const INSTRUCTIONS: &str = "decision-gate puts a human approval gate in front of critical actions. \
Before you take a critical action (deploying, deleting data, spending money, restarting a service, \
sending e-mail to customers...), call request_approval; if the answer is not yet a verdict, call \
wait_for_decision until it is, and go ahead only when the verdict is Approved or Succeeded. When the \
request names a plan, the cluster carries the action out itself once approved: do not do it twice. \
list_plans shows the plans you may name; list_decisions and get_decision show where your requests stand.";

#[tool_router]
impl Gate {
    #[tool(
        description = "Ask people (or the cluster's approval policies) for permission to take a critical action. Creates a Decision as you, waits up to 15 seconds for its first evaluation, and returns its name, phase (Pending, Escalated, Approved, Rejected...), risk, the policy rule that decided and, while it waits, who may approve and when it expires. Unless the phase is already Approved or Succeeded, do not act yet: call wait_for_decision with the returned name. Name a plan (see list_plans) to have the cluster carry the action out once approved.",
        annotations(
            title = "Request approval",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn request_approval(
        &self,
        Parameters(args): Parameters<RequestApproval>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        let request = match args.request() {
            Ok(request) => request,
            Err(why) => return refused(format!("the request is invalid: {why}")),
        };
        let (api, _) = match self.decisions(&ctx, args.namespace.as_deref()) {
            Ok(api) => api,
            Err(why) => return refused(why),
        };
        let created = match agent::submit(&api, &request).await {
            Ok(d) => d,
            Err(why) => return refused(why),
        };
        let name = created.metadata.name.clone().unwrap_or_default();
        let seen = match agent::watch_until(&api, &name, EVALUATION_WAIT, evaluated, |_| {}).await {
            Ok(d) => d,
            Err(WaitEnd::TimedOut(last)) => last.map_or(created, |d| *d),
            Err(end) => {
                tracing::warn!(decision = name, "after creating it: {end}");
                created
            }
        };
        let report = Report::of(&seen);
        answer(sentences(&report.summary, &next_step(&report)), &report)
    }

    #[tool(
        description = "Wait until a Decision is settled: Approved (go ahead), Succeeded (its plan ran), Rejected, Failed, RolledBack or Expired (do not go ahead). Returns the verdict, who decided and why, and the execution trace (each step's phase and result) when a plan ran. Sends progress notifications while it waits. When timeoutSeconds passes first, the answer says timedOut: true and the Decision still waits: call again to keep waiting.",
        annotations(
            title = "Wait for a decision",
            read_only_hint = true,
            open_world_hint = false
        )
    )]
    async fn wait_for_decision(
        &self,
        Parameters(args): Parameters<WaitForDecision>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        let (api, _) = match self.decisions(&ctx, args.namespace.as_deref()) {
            Ok(api) => api,
            Err(why) => return refused(why),
        };
        let limit = wait_seconds(args.timeout_seconds);
        let progress = Progress::new(&ctx, limit);
        let started = tokio::time::Instant::now();
        let (updates, mut changes) = tokio::sync::mpsc::unbounded_channel::<String>();
        let waiting = agent::wait_for_verdict(&api, &args.name, Duration::from_secs(limit), |d| {
            let _ = updates.send(progress_message(d));
        });
        tokio::pin!(waiting);
        let mut heartbeat = tokio::time::interval_at(started + HEARTBEAT, HEARTBEAT);
        let mut last = String::new();
        let ended = loop {
            tokio::select! {
                ended = &mut waiting => break ended,
                Some(message) = changes.recv() => {
                    // Each version of the Decision is seen; say only what changed.
                    if message != last {
                        progress.send(&message).await;
                        last = message;
                    }
                }
                _ = heartbeat.tick() => {
                    let waited = started.elapsed().as_secs();
                    progress.send(&format!("still waiting after {waited}s: {last}")).await;
                }
                _ = ctx.ct.cancelled() => return refused("the wait was cancelled".to_owned()),
            }
        };
        let waited_seconds = started.elapsed().as_secs();
        let waited = match ended {
            Ok((_, d)) => Waited {
                timed_out: false,
                waited_seconds,
                report: Report::of(&d),
            },
            Err(WaitEnd::TimedOut(Some(d))) => Waited {
                timed_out: true,
                waited_seconds,
                report: Report::of(&d),
            },
            Err(WaitEnd::TimedOut(None)) => {
                return refused(format!(
                    "could not see the Decision {} within {limit}s: the cluster did not answer",
                    args.name
                ));
            }
            // A Decision that does not exist ends the watch before any version of it.
            Err(WaitEnd::Deleted) => match api.get_opt(&args.name).await {
                Ok(None) => {
                    return refused(format!(
                        "there is no Decision {} in namespace {} (it was deleted, or never created)",
                        args.name,
                        self.namespace(args.namespace.as_deref())
                    ));
                }
                Ok(Some(_)) => {
                    return refused("the Decision was replaced while waiting for it".to_owned());
                }
                Err(e) => return refused(agent::refusal(&e)),
            },
            Err(WaitEnd::Failed(why)) => {
                // Say why in the server's words: the watch's own error names no cause.
                return match api.get(&args.name).await {
                    Err(e) => refused(agent::refusal(&e)),
                    Ok(_) => refused(format!("watching the Decision failed: {why}")),
                };
            }
        };
        answer(waited.text(), &waited)
    }

    #[tool(
        description = "Where one Decision stands: phase, verdict, risk and its reasons, the policy rule that decided, who may approve, the approvals and any rejection, when it expires, the pinned plan, and the execution trace.",
        annotations(
            title = "Get a decision",
            read_only_hint = true,
            open_world_hint = false
        )
    )]
    async fn get_decision(
        &self,
        Parameters(args): Parameters<GetDecision>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        let (api, namespace) = match self.decisions(&ctx, args.namespace.as_deref()) {
            Ok(api) => api,
            Err(why) => return refused(why),
        };
        match api.get_opt(&args.name).await {
            Ok(Some(d)) => {
                let report = Report::of(&d);
                answer(
                    format!("{} {}", report.summary, next_step(&report)),
                    &report,
                )
            }
            Ok(None) => refused(format!(
                "there is no Decision {} in namespace {namespace}; list_decisions shows yours",
                args.name
            )),
            Err(e) => refused(agent::refusal(&e)),
        }
    }

    #[tool(
        description = "Your own Decisions in a namespace (those the API server recorded you as requesting), newest first, each with its phase and a one-line summary.",
        annotations(
            title = "List my decisions",
            read_only_hint = true,
            open_world_hint = false
        )
    )]
    async fn list_decisions(
        &self,
        Parameters(args): Parameters<ListDecisions>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        let (api, namespace) = match self.decisions(&ctx, args.namespace.as_deref()) {
            Ok(api) => api,
            Err(why) => return refused(why),
        };
        let client = match self.client(&ctx) {
            Ok(client) => client,
            Err(why) => return refused(why),
        };
        let user = match agent::whoami(&client).await {
            Ok(user) => user,
            Err(why) => return refused(why),
        };
        let items = match api.list(&ListParams::default()).await {
            Ok(list) => list.items,
            Err(e) => return refused(agent::refusal(&e)),
        };
        let listed = OwnDecisions {
            decisions: own_decisions(items, &user, args.unsettled_only),
            namespace,
            requester: user,
        };
        answer(listed.text(), &listed)
    }

    #[tool(
        description = "The ExecutionPlans of a namespace: for each, the action types it carries out, its mode (DryRun, Real or Simulated), the least criticality of a request that runs it, its steps with their images, and whether it is Ready. Name one in request_approval's plan to have it run once approved.",
        annotations(title = "List plans", read_only_hint = true, open_world_hint = false)
    )]
    async fn list_plans(
        &self,
        Parameters(args): Parameters<ListPlans>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        let namespace = self.namespace(args.namespace.as_deref());
        let client = match self.client(&ctx) {
            Ok(client) => client,
            Err(why) => return refused(why),
        };
        let api: Api<ExecutionPlan> = Api::namespaced(client, &namespace);
        match api.list(&ListParams::default()).await {
            Ok(list) => {
                let plans = Plans::of(&namespace, &list.items);
                answer(plans.text(), &plans)
            }
            Err(e) => refused(agent::refusal(&e)),
        }
    }
}

#[tool_handler]
impl ServerHandler for Gate {
    fn get_info(&self) -> rmcp::model::ServerConfig {
        rmcp::model::ServerConfig::new(
            rmcp::model::ServerCapabilities::builder()
                .enable_tools()
                .build(),
        )
        .with_server_info(rmcp::model::Implementation::new(
            "decision-gate",
            env!("CARGO_PKG_VERSION"),
        ))
        .with_instructions(INSTRUCTIONS.to_owned())
    }
}

/// Progress notifications of one tool call, when its client asked for them (by sending a
/// progress token): progress is the seconds waited, out of the wait's limit.
struct Progress {
    peer: rmcp::Peer<RoleServer>,
    token: Option<rmcp::model::ProgressToken>,
    total: f64,
    started: tokio::time::Instant,
    last: std::sync::Mutex<f64>,
}

impl Progress {
    fn new(ctx: &RequestContext<RoleServer>, limit_seconds: u64) -> Progress {
        Progress {
            peer: ctx.peer.clone(),
            token: ctx.meta.get_progress_token(),
            total: limit_seconds as f64,
            started: tokio::time::Instant::now(),
            last: std::sync::Mutex::new(-1.0),
        }
    }

    async fn send(&self, message: &str) {
        let Some(token) = &self.token else { return };
        let progress = {
            let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            // Progress must increase with every notification.
            let now = self.started.elapsed().as_secs_f64().max(*last + 0.001);
            *last = now;
            now
        };
        let note = ProgressNotificationParam::new(token.clone(), progress)
            .with_total(self.total)
            .with_message(message);
        if let Err(e) = self.peer.notify_progress(note).await {
            tracing::debug!("a progress notification was not delivered: {e}");
        }
    }
}

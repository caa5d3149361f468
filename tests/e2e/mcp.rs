//! `decision-gate mcp` as an AI agent uses it: a real MCP client (the MCP Python SDK,
//! `tests/e2e/mcp_client.py`) asks for approval, waits, and reads what ran, as an agent
//! ServiceAccount that may only request; people answer with kubectl.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use decision_gate::api::{Decision, DecisionPhase};
use kube::Api;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::support::*;

const TOOLS: [&str; 5] = [
    "get_decision",
    "list_decisions",
    "list_plans",
    "request_approval",
    "wait_for_decision",
];

/// The Python that has the MCP SDK: `$DECISION_GATE_MCP_PYTHON` (hack/python.sh makes it),
/// else the virtualenv hack/python.sh keeps in the cache.
fn python() -> PathBuf {
    if let Some(path) = std::env::var_os("DECISION_GATE_MCP_PYTHON") {
        return PathBuf::from(path);
    }
    let python = cache_dir()
        .join("venv")
        .join(format!("mcp-{}", pinned("MCP_PYTHON_VERSION")))
        .join("bin/python");
    assert!(
        python.exists(),
        "{} does not exist: run hack/python.sh (make test does) or set DECISION_GATE_MCP_PYTHON",
        python.display()
    );
    python
}

/// The MCP client, running, driven one command at a time (see mcp_client.py).
struct McpClient {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    log: PathBuf,
}

impl McpClient {
    /// Starts `decision-gate mcp` over stdio with a kubeconfig, for a namespace.
    fn stdio(kubeconfig: &Path, namespace: &str) -> McpClient {
        let kubeconfig = kubeconfig.to_str().unwrap();
        Self::start(
            namespace,
            &[
                "stdio",
                env!("CARGO_BIN_EXE_decision-gate"),
                "mcp",
                "--kubeconfig",
                kubeconfig,
                "--namespace",
                namespace,
            ],
        )
    }

    /// Talks streamable HTTP to a running server, with a bearer token if given.
    fn http(url: &str, token: Option<&str>, namespace: &str) -> McpClient {
        let mut args = vec!["http", url];
        args.extend(token);
        Self::start(namespace, &args)
    }

    fn start(namespace: &str, args: &[&str]) -> McpClient {
        let log = repo_root().join(format!(
            "target/e2e-logs/mcp-client-{namespace}-{}.log",
            args[0]
        ));
        std::fs::create_dir_all(log.parent().unwrap()).unwrap();
        let mut child = Command::new(python())
            .arg(repo_root().join("tests/e2e/mcp_client.py"))
            .args(args)
            .env("RUST_LOG", "info,decision_gate=debug")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("the MCP client starts");
        McpClient {
            stdin: child.stdin.take().unwrap(),
            stdout: BufReader::new(child.stdout.take().unwrap()).lines(),
            child,
            log,
        }
    }

    async fn send(&mut self, command: Value) {
        let line = format!("{command}\n");
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
    }

    /// The answer to the oldest command not yet answered.
    async fn reply(&mut self) -> Value {
        let limit = DEADLINE * 2;
        match tokio::time::timeout(limit, self.stdout.next_line()).await {
            Ok(Ok(Some(line))) => serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("the MCP client printed {line:?} ({e})")),
            Ok(_) => panic!("the MCP client ended; its log:\n{}", self.logs()),
            Err(_) => panic!(
                "no answer after {limit:?}; the client's log:\n{}",
                self.logs()
            ),
        }
    }

    async fn call(&mut self, tool: &str, arguments: Value) -> Value {
        self.send(json!({"tool": tool, "arguments": arguments}))
            .await;
        self.reply().await
    }

    /// A call that must succeed: its structured content.
    async fn ok(&mut self, tool: &str, arguments: Value) -> Value {
        let answer = self.call(tool, arguments).await;
        assert_eq!(answer["isError"], false, "{tool}: {answer:#}");
        answer["structured"].clone()
    }

    async fn tools(&mut self) -> Vec<String> {
        self.send(json!({"listTools": true})).await;
        let listed = self.reply().await;
        let mut names: Vec<String> = serde_json::from_value(listed["tools"].clone()).unwrap();
        names.sort();
        names
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Closes the session as a client does, by closing the server's input.
    async fn finish(self) {
        let McpClient {
            mut child, stdin, ..
        } = self;
        drop(stdin);
        let _ = tokio::time::timeout(DEADLINE, child.wait()).await;
    }
}

/// A ServiceAccount `agent` in the namespace that may only request Decisions, and its
/// user name.
fn agent(namespace: &str) -> String {
    kubectl_admin(&["create", "serviceaccount", "agent", "-n", namespace]).success();
    bind_service_account(namespace, "decision-gate-requester", "agent");
    format!("system:serviceaccount:{namespace}:agent")
}

fn text(answer: &Value) -> String {
    answer["text"][0].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn an_agent_asks_through_mcp_and_the_plan_runs_once_alice_approves() {
    let ns = TestNamespace::new("mcp").await;
    let n = ns.name.as_str();
    grant_answering(n);
    let agent = agent(n);
    ship_in_three_steps(n, "1s");
    // Nobody approves shipping automatically here: without a rule, people must.
    kubectl_admin(&["delete", "approvalpolicy", "ship-it", "-n", n]).success();
    let _operator = Operator::start_allowing_real(n).await;
    let mut mcp = McpClient::stdio(&service_account_kubeconfig(n, "agent"), n);

    assert_eq!(mcp.tools().await, TOOLS);
    let plans = mcp.ok("list_plans", json!({})).await;
    assert_eq!(plans["plans"][0]["name"], "three", "{plans:#}");
    assert_eq!(plans["plans"][0]["mode"], "Real");
    assert_eq!(plans["plans"][0]["actionTypes"], json!(["ship"]));

    // The agent claims to be someone else, twice; the API server records who it is.
    let asked = mcp
        .call(
            "request_approval",
            json!({
                "actionType": "ship",
                "description": "Ship api-gateway 2.0 to production",
                "criticality": "High",
                "plan": "three",
                "context": {"version": "2.0.0", "requestedBy": "system:admin"},
                "requestedBy": "system:admin",
                "source": "agents/e2e",
                "expiresAfter": "30m",
                "estimatedDurationMinutes": 5,
            }),
        )
        .await;
    assert_eq!(asked["isError"], false, "{asked:#}");
    let report = &asked["structured"];
    let name = report["name"].as_str().unwrap().to_owned();
    assert!(name.starts_with("ship-"), "{report:#}");
    assert_eq!(report["phase"], "Pending", "{report:#}");
    assert_eq!(report["requestedBy"], agent.as_str());
    assert!(report["expiresAt"].is_string(), "{report:#}");
    assert!(report["mayApprove"].is_object(), "{report:#}");
    assert!(
        text(&asked).contains(&format!("call wait_for_decision with name {name}")),
        "{asked:#}"
    );
    let api: Api<Decision> = Api::namespaced(admin().await, n);
    let stored = api.get(&name).await.unwrap();
    assert_eq!(
        stored.status.as_ref().unwrap().requested_by.as_deref(),
        Some(agent.as_str())
    );
    assert_eq!(
        stored.metadata.labels.as_ref().unwrap()["decisiongate.io/requested-through"],
        "mcp"
    );

    // The agent waits; alice approves meanwhile; the plan runs; the wait returns.
    mcp.send(
        json!({"tool": "wait_for_decision", "arguments": {"name": name, "timeoutSeconds": 300}}),
    )
    .await;
    annotate_as(
        "alice",
        n,
        &name,
        &["approved-by=alice", "approval-reason=release window"],
    );
    let waited = mcp.reply().await;
    assert_eq!(waited["isError"], false, "{waited:#}");
    let report = &waited["structured"];
    assert_eq!(report["timedOut"], false, "{report:#}");
    assert_eq!(report["verdict"], "Succeeded", "{report:#}");
    assert_eq!(report["phase"], "Succeeded");
    assert_eq!(report["approvals"][0]["approver"], "alice");
    assert_eq!(report["execution"]["mode"], "Real");
    let steps = report["execution"]["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 3, "{report:#}");
    for step in steps {
        assert_eq!(step["phase"], "Succeeded", "{step:#}");
        assert_eq!(
            step["result"],
            format!("{} done", step["name"].as_str().unwrap()),
            "{step:#}"
        );
    }
    assert!(text(&waited).contains("approved by alice"), "{waited:#}");
    assert!(text(&waited).ends_with("You may go ahead."), "{waited:#}");
    let progress = waited["progress"].as_array().unwrap();
    assert!(!progress.is_empty(), "no progress notification: {waited:#}");
    assert!(
        progress
            .iter()
            .all(|p| p["total"] == 300.0 && p["message"].is_string()),
        "{progress:#?}"
    );

    let got = mcp.ok("get_decision", json!({"name": name})).await;
    assert_eq!(got["verdict"], "Succeeded");
    let mine = mcp.ok("list_decisions", json!({})).await;
    assert_eq!(mine["requester"], agent.as_str());
    assert_eq!(mine["decisions"][0]["name"], name.as_str(), "{mine:#}");
    mcp.finish().await;
}

#[tokio::test]
async fn rejections_expiries_and_refusals_come_back_through_mcp() {
    let ns = TestNamespace::new("mcp-no").await;
    let n = ns.name.as_str();
    grant_answering(n);
    let agent = agent(n);
    let _operator = Operator::start(n).await;
    let mut mcp = McpClient::stdio(&service_account_kubeconfig(n, "agent"), n);

    // A gate (no plan) that bob rejects; a wait that runs out first is no verdict.
    let asked = mcp
        .ok(
            "request_approval",
            json!({"actionType": "delete_data", "description": "Purge the staging tenant", "name": "purge"}),
        )
        .await;
    assert_eq!(asked["phase"], "Pending", "{asked:#}");
    let still = mcp
        .call(
            "wait_for_decision",
            json!({"name": "purge", "timeoutSeconds": 1}),
        )
        .await;
    assert_eq!(still["isError"], false, "{still:#}");
    assert_eq!(still["structured"]["timedOut"], true, "{still:#}");
    assert!(still["structured"].get("verdict").is_none(), "{still:#}");
    assert!(
        text(&still).starts_with("Still waiting after "),
        "{still:#}"
    );

    mcp.send(
        json!({"tool": "wait_for_decision", "arguments": {"name": "purge", "timeoutSeconds": 120}}),
    )
    .await;
    annotate_as(
        "bob",
        n,
        "purge",
        &["rejected-by=bob", "rejection-reason=change freeze"],
    );
    let rejected = mcp.reply().await;
    let report = &rejected["structured"];
    assert_eq!(report["verdict"], "Rejected", "{rejected:#}");
    assert_eq!(report["rejection"]["rejectedBy"], "bob");
    assert_eq!(report["rejection"]["reason"], "change freeze");
    assert!(
        text(&rejected).starts_with("purge was rejected by bob: change freeze"),
        "{rejected:#}"
    );
    assert!(
        text(&rejected).ends_with("Do not go ahead."),
        "{rejected:#}"
    );
    assert!(!rejected["progress"].as_array().unwrap().is_empty());

    // Nobody answers in time.
    mcp.ok(
        "request_approval",
        json!({"actionType": "send_email", "description": "Mail every customer", "name": "newsletter", "expiresAfter": "3s"}),
    )
    .await;
    let expired = mcp
        .call(
            "wait_for_decision",
            json!({"name": "newsletter", "timeoutSeconds": 120}),
        )
        .await;
    assert_eq!(expired["structured"]["verdict"], "Expired", "{expired:#}");
    assert!(
        text(&expired).contains("nobody answered in time"),
        "{expired:#}"
    );
    let api: Api<Decision> = Api::namespaced(admin().await, n);
    assert_eq!(
        phase(api.get("newsletter").await.ok().as_ref()),
        Some(DecisionPhase::Expired)
    );

    // Refusals are tool errors in words an agent can act on.
    let forbidden = mcp
        .call(
            "request_approval",
            json!({"actionType": "deploy", "description": "Deploy", "namespace": RELEASE_NAMESPACE}),
        )
        .await;
    assert_eq!(forbidden["isError"], true, "{forbidden:#}");
    let why = text(&forbidden);
    assert!(
        why.starts_with("the request was refused: not allowed: "),
        "{why}"
    );
    assert!(why.contains(&agent), "{why}");
    assert!(why.contains("decision-gate-requester"), "{why}");

    let invalid = mcp
        .call(
            "request_approval",
            json!({"actionType": "Deploy Now!", "description": "Deploy"}),
        )
        .await;
    assert_eq!(invalid["isError"], true, "{invalid:#}");
    let why = text(&invalid);
    assert!(
        why.starts_with("the request was refused: invalid: "),
        "{why}"
    );
    assert!(why.contains("spec.actionType"), "{why}");

    let missing = mcp.call("get_decision", json!({"name": "nope"})).await;
    assert_eq!(missing["isError"], true, "{missing:#}");
    assert_eq!(
        text(&missing),
        format!("there is no Decision nope in namespace {n}; list_decisions shows yours")
    );
    let gone = mcp
        .call(
            "wait_for_decision",
            json!({"name": "nope", "timeoutSeconds": 5}),
        )
        .await;
    assert_eq!(gone["isError"], true, "{gone:#}");
    assert!(
        text(&gone).starts_with("there is no Decision nope"),
        "{gone:#}"
    );

    let mine = mcp
        .ok("list_decisions", json!({"unsettledOnly": false}))
        .await;
    let names: Vec<&str> = mine["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{mine:#}");
    assert!(
        names.contains(&"purge") && names.contains(&"newsletter"),
        "{mine:#}"
    );
    mcp.finish().await;
}

/// `decision-gate mcp --http` on a free port, as a shared server with its own (admin)
/// credentials: each request acts with the bearer token it carries.
struct HttpServer {
    child: Child,
    url: String,
}

impl HttpServer {
    async fn start(namespace: &str) -> HttpServer {
        let log = repo_root().join(format!("target/e2e-logs/mcp-server-{namespace}.log"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_decision-gate"))
            .args(["mcp", "--http", "127.0.0.1:0", "--namespace", namespace])
            .arg("--kubeconfig")
            .arg(admin_kubeconfig())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("decision-gate mcp starts");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let prefix = "decision-gate mcp: serving MCP over streamable HTTP at ";
        let mut seen = String::new();
        let url = tokio::time::timeout(DEADLINE, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(url) = line.strip_prefix(prefix) {
                    return url.to_owned();
                }
                seen.push_str(&line);
                seen.push('\n');
            }
            panic!("decision-gate mcp --http ended before serving:\n{seen}")
        })
        .await
        .expect("decision-gate mcp --http says where it serves");
        // Keep reading its log, so that it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        HttpServer { child, url }
    }
}

#[tokio::test]
async fn the_http_transport_acts_with_each_callers_token() {
    let ns = TestNamespace::new("mcp-http").await;
    let n = ns.name.as_str();
    let agent = agent(n);
    let token = service_account_token(n, "agent");
    let _operator = Operator::start(n).await;
    let server = HttpServer::start(n).await;
    assert!(
        server.url.starts_with("http://127.0.0.1:"),
        "{}",
        server.url
    );
    let mut mcp = McpClient::http(&server.url, Some(&token), n);

    assert_eq!(mcp.tools().await, TOOLS);
    let asked = mcp
        .ok(
            "request_approval",
            json!({"actionType": "restart_service", "description": "Restart the API", "name": "via-http"}),
        )
        .await;
    assert_eq!(asked["phase"], "Pending", "{asked:#}");
    // The server runs as the admin; the Decision is the agent's, whose token it was.
    assert_eq!(asked["requestedBy"], agent.as_str(), "{asked:#}");
    let got = mcp.ok("get_decision", json!({"name": "via-http"})).await;
    assert_eq!(got["name"], "via-http");
    assert_eq!(got["requestedBy"], agent.as_str());
    assert_eq!(got["phase"], "Pending");
    let waited = mcp
        .call(
            "wait_for_decision",
            json!({"name": "via-http", "timeoutSeconds": 1}),
        )
        .await;
    assert_eq!(waited["structured"]["timedOut"], true, "{waited:#}");
    assert!(
        !waited["progress"].as_array().unwrap().is_empty(),
        "progress reaches an HTTP client too: {waited:#}"
    );
    mcp.finish().await;

    // Without a token, the server does not lend its own (admin) credentials.
    let mut anonymous = McpClient::http(&server.url, None, n);
    let refused = anonymous.call("list_plans", json!({})).await;
    assert_eq!(refused["isError"], true, "{refused:#}");
    assert!(
        text(&refused).contains("send your token in the header Authorization: Bearer <token>"),
        "{refused:#}"
    );
    anonymous.finish().await;
    drop(server.child);
}

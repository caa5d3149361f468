//! The `decision-gate` binary: `run` the operator, print the `crd`s, read the `audit` log,
//! or serve agents over MCP (`mcp`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use decision_gate::api::duration;
use decision_gate::audit;
use decision_gate::controller::{self, EventBudget, Settings};
use decision_gate::{crd, notify, telemetry};

#[derive(Parser)]
#[command(
    name = "decision-gate",
    version,
    about = "A human approval gate in front of critical actions, run as Kubernetes Jobs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator against the cluster of KUBECONFIG (or the one it runs in).
    Run(Box<RunArgs>),
    /// Print every CustomResourceDefinition as YAML, or write one file each.
    Crd {
        /// Write `<name>.yaml` files into this directory instead of printing.
        #[arg(long)]
        output_dir: Option<PathBuf>,
    },
    /// Read and check the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Serve the gate to AI agents over the Model Context Protocol (stdio, or streamable
    /// HTTP with --http), acting with the agent's own Kubernetes credentials.
    Mcp(McpArgs),
    /// Answer one tool call of a coding agent before it runs (Claude Code's PreToolUse hook:
    /// the call as JSON on standard input, the verdict as JSON on standard output). A call
    /// that matches a rule waits for people's approval as a Decision; any failure denies.
    Hook(HookArgs),
}

#[derive(clap::Args)]
struct HookArgs {
    /// The rules (YAML); default: the built-in ones, for kubectl delete and drain,
    /// terraform apply and destroy, and git push --force (see --print-default-config).
    #[arg(long, env = "DECISION_GATE_HOOK_CONFIG")]
    config: Option<PathBuf>,
    /// The kubeconfig to ask with (default: $KUBECONFIG, ~/.kube/config, or the pod's
    /// ServiceAccount).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long)]
    context: Option<String>,
    /// The namespace to ask in (default: the configuration's, else the context's).
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Print the built-in rules and exit.
    #[arg(long)]
    print_default_config: bool,
}

#[derive(clap::Args)]
struct McpArgs {
    /// The kubeconfig to act with (default: $KUBECONFIG, ~/.kube/config, else the pod's
    /// ServiceAccount).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long)]
    context: Option<String>,
    /// The namespace a tool uses when not told (default: the context's).
    #[arg(short, long)]
    namespace: Option<String>,
    /// Serve streamable HTTP at this address (path /mcp) instead of stdio; port 0 picks a
    /// free one, printed on standard error. Each request acts with the Kubernetes token it
    /// carries in `Authorization: Bearer`, so the API server records which agent asked.
    #[arg(long, value_name = "ADDR")]
    http: Option<SocketAddr>,
    /// Let HTTP requests without a bearer token act with this server's own credentials
    /// (a server for one user); without it they are refused.
    #[arg(long, requires = "http")]
    tokenless_as_server: bool,
    /// A host name HTTP clients may reach the server by, besides localhost (repeatable).
    #[arg(long = "allowed-host", value_name = "HOST")]
    allowed_hosts: Vec<String>,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Watch only this namespace (default: every namespace).
    #[arg(long, env = "DECISION_GATE_NAMESPACE")]
    namespace: Option<String>,
    /// How long a Decision waits for an answer when neither it nor its policy says.
    #[arg(long, env = "DECISION_GATE_DEFAULT_EXPIRY", default_value = "24h", value_parser = parse_duration)]
    default_expiry: std::time::Duration,
    /// Where /healthz, /readyz and /metrics are served.
    #[arg(long, env = "DECISION_GATE_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    http_addr: SocketAddr,
    /// The audit log (JSON Lines, hash-chained); rotated files are kept beside it.
    #[arg(
        long,
        env = "DECISION_GATE_AUDIT_LOG",
        default_value = "/var/lib/decision-gate/audit.jsonl"
    )]
    audit_log: PathBuf,
    /// Rotate the audit log when it reaches this many bytes.
    #[arg(long, env = "DECISION_GATE_AUDIT_MAX_BYTES", default_value_t = 64 * 1024 * 1024)]
    audit_max_bytes: u64,
    /// Let the audit log files' group read them (mode 0640, for a volume shared through
    /// the pod's fsGroup); otherwise only the operator's user may (0600).
    #[arg(long, env = "DECISION_GATE_AUDIT_GROUP_READABLE", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    audit_group_readable: bool,
    /// Let plans in Real mode run for real. Off by default: until an admin opts in, Real
    /// plans run as DryRun and their status says so.
    #[arg(long, env = "DECISION_GATE_ALLOW_REAL_EXECUTION", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    allow_real_execution: bool,
    /// The namespace of the leader Lease (default: the pod's namespace, else the watched
    /// namespace, else "default").
    #[arg(long, env = "DECISION_GATE_LEASE_NAMESPACE")]
    lease_namespace: Option<String>,
    /// How long a leader's Lease lasts without renewal; a replica takes over at most this
    /// long after the leader dies.
    #[arg(long, env = "DECISION_GATE_LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    lease_duration: std::time::Duration,
    /// The notification channels and rules (YAML); none are sent without it.
    #[arg(long, env = "DECISION_GATE_NOTIFICATIONS")]
    notifications_config: Option<PathBuf>,
    /// The longest one reconcile may run before it is abandoned and retried.
    #[arg(long, env = "DECISION_GATE_RECONCILE_TIMEOUT", default_value = "2m", value_parser = parse_duration)]
    reconcile_timeout: std::time::Duration,
    /// How long queued work may make no progress before /healthz fails, so that
    /// Kubernetes restarts a stalled replica.
    #[arg(long, env = "DECISION_GATE_STALL_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    stall_timeout: std::time::Duration,
    /// How long in-flight work gets to finish after SIGTERM; past it the operator names
    /// what still runs and exits non-zero.
    #[arg(long, env = "DECISION_GATE_SHUTDOWN_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    shutdown_timeout: std::time::Duration,
    /// The name prefix of the chart's admission policies (the release's full name): the
    /// operator counts people's answers only while `<prefix>-requester`,
    /// `<prefix>-answers` and `<prefix>-status` are in force.
    #[arg(
        long,
        env = "DECISION_GATE_ADMISSION_POLICY_PREFIX",
        default_value = "decision-gate"
    )]
    admission_policy_prefix: String,
    /// For clusters that cannot run the admission policies: count people's answers
    /// anyway, marking each one `verified: false` in the status and the audit log.
    /// Anyone who may patch a Decision can then approve in anyone's name.
    #[arg(long, env = "DECISION_GATE_COUNT_UNVERIFIED_ANSWERS", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    count_unverified_answers: bool,
    /// Kubernetes Events published per second at most, sustained (Events are a courtesy:
    /// the status and the audit log are the record).
    #[arg(long, env = "DECISION_GATE_EVENT_QPS", default_value_t = EventBudget::default().per_second, value_parser = positive_rate)]
    event_qps: f64,
    /// Kubernetes Events published at once before `--event-qps` applies.
    #[arg(long, env = "DECISION_GATE_EVENT_BURST", default_value_t = EventBudget::default().burst, value_parser = clap::value_parser!(u32).range(1..))]
    event_burst: u32,
    /// Events waiting to be published at most; past it, new ones are dropped and counted
    /// in `decision_gate_events_dropped_total`.
    #[arg(long, env = "DECISION_GATE_EVENT_QUEUE", default_value_t = EventBudget::default().queued as u64, value_parser = clap::value_parser!(u64).range(1..))]
    event_queue: u64,
    /// Serve Slack's interaction endpoint (POST /slack/interactions) at this address, so
    /// that people answer with the buttons of Slack notifications. Off when not given.
    #[arg(
        long,
        env = "DECISION_GATE_SLACK_ADDR",
        value_name = "ADDR",
        requires = "slack_signing_secret_file"
    )]
    slack_address: Option<SocketAddr>,
    /// The file that holds the Slack app's signing secret (mounted from a Secret).
    #[arg(
        long,
        env = "DECISION_GATE_SLACK_SIGNING_SECRET_FILE",
        value_name = "PATH"
    )]
    slack_signing_secret_file: Option<PathBuf>,
    /// The ConfigMap, in the operator's namespace (the Lease's), that maps Slack users
    /// to the Kubernetes users and groups the operator answers as.
    #[arg(
        long,
        env = "DECISION_GATE_SLACK_USERS_CONFIGMAP",
        default_value = "decision-gate-slack-users"
    )]
    slack_users_configmap: String,
    /// Serve the deletion witness at this address: the admission webhook the API server
    /// calls on each deletion of a Decision, so that the audit says who deleted it. Off
    /// when not given.
    #[arg(
        long,
        env = "DECISION_GATE_DELETION_WEBHOOK_ADDR",
        value_name = "ADDR",
        requires = "deletion_webhook_cert_dir"
    )]
    deletion_webhook_addr: Option<SocketAddr>,
    /// The directory that holds the witness's TLS certificate and key (tls.crt, tls.key).
    #[arg(
        long,
        env = "DECISION_GATE_DELETION_WEBHOOK_CERT_DIR",
        value_name = "DIR"
    )]
    deletion_webhook_cert_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain of audit log files, given oldest first (a directory or the
    /// current file brings its rotated files along). Exits non-zero naming the first bad line.
    Verify {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print entries, optionally one view: approvals (requests, approvals, rejections,
    /// expiries) or executions (steps and rollbacks).
    Show {
        #[arg(long, value_enum, default_value = "all")]
        view: ViewArg,
        /// Only entries of this Decision, as NAMESPACE/NAME or NAME.
        #[arg(long)]
        decision: Option<String>,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ViewArg {
    All,
    Approvals,
    Executions,
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    duration::parse(text).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    fewer_malloc_arenas();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(decision_gate::STACK_SIZE)
        .build();
    match runtime {
        // On a worker thread, whose stack is STACK_SIZE, rather than on the main thread.
        Ok(runtime) => {
            let code = runtime
                .block_on(async { tokio::spawn(run()).await })
                .unwrap_or(ExitCode::FAILURE);
            // A blocking task (an fsync on a hung volume) must not hold the exit up.
            runtime.shutdown_timeout(std::time::Duration::from_secs(2));
            code
        }
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

/// glibc gives each thread that meets another in malloc an arena of its own, up to eight
/// per core, and each arena keeps what was freed in it: after a burst of Decisions the
/// process holds far more than it uses. Two arenas are plenty for an operator whose work
/// is mostly waiting on the API server. An explicit `MALLOC_ARENA_MAX` still decides.
fn fewer_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets a tunable of the allocator; it is called before any
        // thread is started.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

async fn run() -> ExitCode {
    // One TLS crypto provider for every client in the process, chosen here rather than
    // left to whichever dependencies' features happen to be enabled.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    match cli.command {
        Command::Crd { output_dir: None } => {
            print!("{}", crd::all_yaml());
            ExitCode::SUCCESS
        }
        Command::Crd {
            output_dir: Some(dir),
        } => {
            if let Err(e) = std::fs::create_dir_all(&dir) {
                eprintln!("error: cannot create {}: {e}", dir.display());
                return ExitCode::FAILURE;
            }
            for c in crd::all() {
                let path = dir.join(crd::file_name(&c));
                if let Err(e) = std::fs::write(&path, crd::to_yaml(&c)) {
                    eprintln!("error: cannot write {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
            }
            ExitCode::SUCCESS
        }
        Command::Audit(command) => audit_command(command),
        Command::Hook(args) => hook_command(args).await,
        Command::Mcp(args) => {
            // Standard output may be the protocol's: logs go to standard error.
            telemetry::init_on_stderr();
            let settings = decision_gate::agent::mcp::Settings {
                kubeconfig: args.kubeconfig,
                context: args.context,
                namespace: args.namespace,
                http: args.http,
                allowed_hosts: args.allowed_hosts,
                tokenless_as_server: args.tokenless_as_server,
            };
            match decision_gate::agent::mcp::serve(settings).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run(args) => {
            telemetry::init();
            let notifications = match args
                .notifications_config
                .as_deref()
                .map(notify::Config::load)
                .transpose()
            {
                Ok(config) => config,
                Err(e) => {
                    eprintln!("error: the notification configuration is unusable: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let lease_namespace = args
                .lease_namespace
                .or_else(|| std::env::var("POD_NAMESPACE").ok())
                .or(args.namespace.clone())
                .unwrap_or_else(|| "default".to_owned());
            let slack = match (args.slack_address, &args.slack_signing_secret_file) {
                (Some(addr), Some(path)) => match read_signing_secret(path) {
                    Ok(secret) => Some(decision_gate::slack::serve::Settings {
                        addr,
                        signing_secret: secret,
                        users_configmap: args.slack_users_configmap.clone(),
                        users_namespace: lease_namespace.clone(),
                        watched_namespace: args.namespace.clone(),
                    }),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::FAILURE;
                    }
                },
                _ => None,
            };
            let settings = Settings {
                default_expiry: args.default_expiry,
                http_addr: args.http_addr,
                audit_log: args.audit_log,
                audit_max_bytes: args.audit_max_bytes,
                audit_readers: if args.audit_group_readable {
                    audit::Readers::Group
                } else {
                    audit::Readers::Owner
                },
                allow_real_execution: args.allow_real_execution,
                lease_namespace,
                lease_duration: args.lease_duration,
                notifications,
                namespace: args.namespace,
                reconcile_timeout: args.reconcile_timeout,
                stall_timeout: args.stall_timeout,
                shutdown_timeout: args.shutdown_timeout,
                admission_policy_prefix: args.admission_policy_prefix,
                count_unverified_answers: args.count_unverified_answers,
                slack,
                deletion_witness: args
                    .deletion_webhook_addr
                    .zip(args.deletion_webhook_cert_dir)
                    .map(|(addr, cert_dir)| decision_gate::witness::Settings { addr, cert_dir }),
                events: EventBudget {
                    per_second: args.event_qps,
                    burst: args.event_burst,
                    queued: usize::try_from(args.event_queue).unwrap_or(usize::MAX),
                },
            };
            match controller::run(settings).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(reason = e.category(), "{e}");
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// The Slack signing secret from its file, without the newline a file may end with.
/// A rate above zero.
fn positive_rate(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!(
            "{value:?} is not a rate above zero, such as 25 or 0.5"
        )),
    }
}

fn read_signing_secret(
    path: &std::path::Path,
) -> Result<decision_gate::slack::serve::SigningSecret, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "cannot read the Slack signing secret {}: {e}",
            path.display()
        )
    })?;
    let secret = text.trim();
    if secret.is_empty() {
        return Err(format!(
            "the Slack signing secret {} is empty",
            path.display()
        ));
    }
    Ok(decision_gate::slack::serve::SigningSecret(
        secret.as_bytes().to_vec(),
    ))
}

/// How long the hook may take in all before it denies: well inside the agent's own limit
/// for a hook (Claude Code's is 60 seconds).
const HOOK_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

async fn hook_command(args: HookArgs) -> ExitCode {
    use decision_gate::agent::{self, hook};
    use std::io::Read;

    if args.print_default_config {
        print!("{}", hook::rules::DEFAULT_CONFIG);
        return ExitCode::SUCCESS;
    }
    // Fail closed even on a bug: a hook that crashes lets the agent's call through, so a
    // panic denies (exit status 2 blocks the call, with standard error as the reason).
    std::panic::set_hook(Box::new(|panic| {
        let why = format!("decision-gate hook failed ({panic}); denied");
        println!("{}", deny(why.clone()));
        eprintln!("{why}");
        std::process::exit(2);
    }));
    fn deny(why: String) -> String {
        serde_json::to_string(&hook::Answer::deny(why)).unwrap_or_default()
    }
    let text = match &args.config {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the hook's rules {}: {e}", path.display())),
        None => Ok(hook::rules::DEFAULT_CONFIG.to_owned()),
    };
    let rules = match text.and_then(|t| hook::rules::Rules::parse(&t)) {
        Ok(rules) => rules,
        Err(why) => {
            println!(
                "{}",
                deny(format!(
                    "decision-gate: the hook's rules are unusable: {why}; every call is denied until they are fixed"
                ))
            );
            return ExitCode::SUCCESS;
        }
    };
    let mut input = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut input) {
        println!(
            "{}",
            deny(format!("decision-gate: cannot read the tool call: {e}"))
        );
        return ExitCode::SUCCESS;
    }
    let connect = |configured: Option<String>| async move {
        let (client, default) =
            agent::connect(args.kubeconfig.as_deref(), args.context.as_deref()).await?;
        let namespace = args.namespace.or(configured).unwrap_or(default);
        Ok(hook::Target { client, namespace })
    };
    match tokio::time::timeout(HOOK_LIMIT, hook::answer(&rules, &input, connect)).await {
        Ok(None) => {}
        Ok(Some(answer)) => println!("{}", serde_json::to_string(&answer).unwrap_or_default()),
        Err(_) => println!(
            "{}",
            deny(format!(
                "decision-gate: the approval check took longer than {HOOK_LIMIT:?}; denied"
            ))
        ),
    }
    ExitCode::SUCCESS
}

/// The files to read: each argument as given, except that a log's current file (or its
/// directory) brings its rotated files along, oldest first.
fn expand(files: Vec<PathBuf>) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for path in files {
        if path.is_dir() {
            out.extend(audit::log_files(&path.join("audit.jsonl"))?);
        } else if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| !n.contains('-'))
        {
            out.extend(audit::log_files(&path)?);
        } else {
            out.push(path);
        }
    }
    Ok(out)
}

fn audit_command(command: AuditCommand) -> ExitCode {
    match command {
        AuditCommand::Verify { files } => {
            let files = match expand(files) {
                Ok(files) => files,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            match audit::verify(&files) {
                Ok(verified) => {
                    println!(
                        "ok: {} entries in {} file(s), chain intact; last hash {}",
                        verified.entries,
                        files.len(),
                        verified.last_hash
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!(
                        "audit log tampered with or damaged: {}",
                        decision_gate::plugin::printable(&e.to_string())
                    );
                    ExitCode::FAILURE
                }
            }
        }
        AuditCommand::Show {
            view,
            decision,
            files,
        } => {
            let view = match view {
                ViewArg::All => audit::View::All,
                ViewArg::Approvals => audit::View::Approvals,
                ViewArg::Executions => audit::View::Executions,
            };
            let wanted = decision.map(|d| match d.split_once('/') {
                Some((ns, name)) => (Some(ns.to_owned()), name.to_owned()),
                None => (None, d),
            });
            let keep = |e: &audit::Entry| {
                view.includes(&e.event_type)
                    && wanted.as_ref().is_none_or(|(ns, name)| {
                        e.decision.as_ref().is_some_and(|d| {
                            &d.name == name && ns.as_ref().is_none_or(|ns| &d.namespace == ns)
                        })
                    })
            };
            match expand(files).and_then(|files| audit::read(&files, keep)) {
                Ok(entries) => {
                    for e in entries {
                        let line = serde_json::to_string(&e).unwrap_or_default();
                        println!("{}", decision_gate::plugin::printable_json(&line));
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

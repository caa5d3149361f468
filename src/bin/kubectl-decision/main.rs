//! `kubectl decision`: list, review, approve, reject and explain Decisions where people
//! work, with the current kubeconfig and context, as the user the API server says you are.

mod answer;
mod operator;
mod request;
mod ui;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use decision_gate::agent;
use decision_gate::answer::Answer;
use decision_gate::api::{ApprovalPolicy, Decision, DecisionPhase, ExecutionPlan};
use decision_gate::error::{describe_kube, describe_status};
use decision_gate::plugin;
use kube::api::ListParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use self::answer::answer;
use self::operator::{OperatorService, bearer_token};
use self::request::{NOT_ASKED, RequestArgs, request};
use self::ui::{UiArgs, ui};

#[derive(Parser)]
#[command(
    name = "kubectl-decision",
    version,
    about = "Review and answer decision-gate Decisions"
)]
struct Cli {
    /// The kubeconfig to use (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true)]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    context: Option<String>,
    /// The namespace (default: the context's).
    #[arg(short = 'n', long, global = true)]
    namespace: Option<String>,
    /// Every namespace (list, history and ui).
    #[arg(short = 'A', long, global = true)]
    all_namespaces: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Decisions waiting for an answer (or all of them, or those in one phase).
    List {
        /// Every Decision, not only those waiting for an answer.
        #[arg(long)]
        all: bool,
        /// Only Decisions in this phase.
        #[arg(long)]
        phase: Option<String>,
        #[arg(short = 'o', long, value_enum)]
        output: Option<Format>,
    },
    /// Everything a reviewer needs before deciding.
    Show { name: String },
    /// Approve, as yourself, exactly this Decision: its uid, its request and its pinned
    /// plan.
    Approve {
        name: String,
        #[arg(short = 'r', long)]
        reason: Option<String>,
        /// The Decision's digest you reviewed (from `show`, whole or its first 12 hex
        /// characters); without it, the digest read now. An approval whose digest is not
        /// the Decision's does not count.
        #[arg(long)]
        digest: Option<String>,
    },
    /// Reject, as yourself, saying why.
    Reject {
        name: String,
        #[arg(short = 'r', long, required = true)]
        reason: String,
    },
    /// Which policy and rule decide, and why each earlier rule did not.
    Explain { name: String },
    /// Ask for a Decision as yourself (for scripts and CI); with --wait, block until it is
    /// settled and exit 0 approved, 1 rejected or failed, 2 expired, 3 timed out.
    Request(RequestArgs),
    /// Approvals, rejections and executions over time, from the operator's audit log: in
    /// the current namespace, or every one with -A.
    History {
        /// Only this Decision (in the current namespace, or NAMESPACE/NAME).
        #[arg(long)]
        decision: Option<String>,
        /// Only what happened in this last stretch of time, such as 1h or 7d.
        #[arg(long)]
        since: Option<String>,
        #[command(flatten)]
        operator: OperatorService,
    },
    /// Check or copy the operator's hash-chained audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Review and answer in the browser: a page on a loopback address that lists what
    /// waits (live), shows each Decision in full and approves or rejects it as you.
    Ui(UiArgs),
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the whole chain, on the operator; exits non-zero naming the first bad line.
    Verify {
        #[command(flatten)]
        operator: OperatorService,
    },
    /// Copy the log, byte for byte (verify the copy with `decision-gate audit verify`).
    Export {
        /// Write to this file instead of standard output.
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
        #[command(flatten)]
        operator: OperatorService,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Json,
    Yaml,
}

/// A failure to report in one line.
struct Failure(String);

/// A failed request in the API server's own words, never kube's dump of its answer.
impl From<kube::Error> for Failure {
    fn from(e: kube::Error) -> Self {
        Failure(agent::refusal(&e))
    }
}

impl From<serde_json::Error> for Failure {
    fn from(e: serde_json::Error) -> Self {
        Failure(e.to_string())
    }
}

impl From<yaml_serde::Error> for Failure {
    fn from(e: yaml_serde::Error) -> Self {
        Failure(e.to_string())
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure(e.to_string())
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    // One TLS crypto provider for every client in the process, chosen here rather than
    // left to whichever dependencies' features happen to be enabled.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    // A script branches on request's exit status, so its failures to ask have their own.
    let failed = if matches!(cli.command, Command::Request(_)) {
        ExitCode::from(NOT_ASKED)
    } else {
        ExitCode::FAILURE
    };
    match run(cli).await {
        Ok(code) => ExitCode::from(code),
        Err(Failure(message)) => {
            eprintln!("error: {}", plugin::printable(&message));
            failed
        }
    }
}

async fn connect(cli: &Cli) -> Result<(Client, String, Config), Failure> {
    let kubeconfig = match &cli.kubeconfig {
        Some(path) => Kubeconfig::read_from(path),
        None => Kubeconfig::read(),
    }
    .map_err(|e| {
        Failure(format!(
            "no cluster to talk to: cannot read a kubeconfig ({e})"
        ))
    })?;
    let options = KubeConfigOptions {
        context: cli.context.clone(),
        ..Default::default()
    };
    let config = Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| Failure(format!("no cluster to talk to: {e}")))?;
    let namespace = cli
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config.clone())
        .map_err(|e| Failure(format!("no cluster to talk to: {}", describe_kube(&e))))?;
    Ok((client, namespace, config))
}

/// A failed request about the Decision `what` in words: a Decision that is not there by
/// its name, anything else in the API server's own words (see [`agent::refusal`]).
pub(crate) fn api_failure(e: kube::Error, what: &str, namespace: &str) -> Failure {
    match &e {
        kube::Error::Api(s)
            if s.code == 404 && !s.message.contains("could not find the requested resource") =>
        {
            Failure(format!("no Decision {what} in namespace {namespace}"))
        }
        _ => e.into(),
    }
}

async fn run(cli: Cli) -> Result<u8, Failure> {
    let (client, namespace, config) = connect(&cli).await?;
    let decisions: Api<Decision> = if cli.all_namespaces {
        Api::all(client.clone())
    } else {
        Api::namespaced(client.clone(), &namespace)
    };
    let now = chrono::Utc::now();
    match &cli.command {
        Command::List { all, phase, output } => {
            let mut items = decisions
                .list(&ListParams::default())
                .await
                .map_err(|e| api_failure(e, "", &namespace))?
                .items;
            items.retain(|d| {
                let p = d.status.as_ref().and_then(|s| s.phase);
                match phase {
                    Some(wanted) => p.is_some_and(|p| p.as_str().eq_ignore_ascii_case(wanted)),
                    None => *all || p.is_none_or(DecisionPhase::is_awaiting_answer),
                }
            });
            items.sort_by_key(|d| {
                (
                    d.metadata.namespace.clone(),
                    d.metadata.creation_timestamp.as_ref().map(|t| t.0),
                    d.metadata.name.clone(),
                )
            });
            match output {
                Some(Format::Json) => println!(
                    "{}",
                    plugin::printable_json(&serde_json::to_string_pretty(&items)?)
                ),
                // YAML shows what it cannot print plainly as escapes in quotes; whatever it
                // would leave raw is escaped too.
                Some(Format::Yaml) => print!(
                    "{}",
                    yaml_serde::to_string(&plugin::printable_object(&items))?
                ),
                None if items.is_empty() => {
                    let scope = if cli.all_namespaces {
                        "any namespace".to_owned()
                    } else {
                        format!("namespace {namespace}")
                    };
                    let what = if *all || phase.is_some() {
                        "No Decisions"
                    } else {
                        "No Decisions wait for an answer"
                    };
                    println!("{what} in {scope}.");
                }
                None => print!(
                    "{}",
                    plugin::list_table(&plugin::printable_object(&items), cli.all_namespaces, now)
                ),
            }
        }
        Command::Show { name } => {
            let d = get(&client, &namespace, name).await?;
            let plan = match &d.spec.plan_ref {
                Some(p) => {
                    Api::<ExecutionPlan>::namespaced(client.clone(), &namespace)
                        .get_opt(&p.name)
                        .await?
                }
                None => None,
            };
            // What people wrote is shown escaped, never obeyed by the terminal. The plan is
            // passed as read: its digest is compared with the pinned one, and none of its
            // text is printed.
            print!(
                "{}",
                plugin::show(&plugin::printable_object(&d), plan.as_ref(), now)
            );
        }
        Command::Explain { name } => {
            let d = plugin::printable_object(&get(&client, &namespace, name).await?);
            let policies = Api::<ApprovalPolicy>::namespaced(client.clone(), &namespace)
                .list(&ListParams::default())
                .await;
            match policies {
                Ok(policies) => print!(
                    "{}",
                    plugin::explain(&d, &plugin::printable_object(&policies.items))
                ),
                // Who may not read the policies still sees what the status records.
                Err(kube::Error::Api(s)) if s.code == 403 => {
                    print!("{}", plugin::explain_recorded(&d, &describe_status(&s)));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Command::History {
            decision,
            since,
            operator,
        } => {
            let token = bearer_token(&config).await?;
            let mut query = vec!["view=all".to_owned()];
            let decision = decision.as_ref().map(|d| {
                if cli.all_namespaces || d.contains('/') {
                    d.clone()
                } else {
                    format!("{namespace}/{d}")
                }
            });
            // One namespace's entries take the auditor's right in that namespace only.
            let only = match decision.as_ref().and_then(|d| d.split_once('/')) {
                Some((ns, _)) => Some(ns.to_owned()),
                None => (!cli.all_namespaces).then(|| namespace.clone()),
            };
            if let Some(ns) = only {
                query.push(format!("namespace={ns}"));
            }
            if let Some(d) = decision {
                query.push(format!("decision={d}"));
            }
            if let Some(since) = since {
                let back = decision_gate::api::duration::parse(since)
                    .map_err(|e| Failure(e.to_string()))?;
                let from = now - chrono::Duration::from_std(back).unwrap_or(chrono::Duration::MAX);
                query.push(format!(
                    "since={}",
                    from.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ));
            }
            let body = operator
                .get(
                    &client,
                    &token,
                    &format!("/audit/entries?{}", query.join("&")),
                )
                .await?;
            let entries = plugin::audit_entries(&body);
            if entries.is_empty() {
                println!("Nothing in the audit log matches.");
            } else {
                print!("{}", plugin::history(&plugin::printable_object(&entries)));
            }
        }
        Command::Audit(AuditCommand::Verify { operator }) => {
            let token = bearer_token(&config).await?;
            let body = operator.get(&client, &token, "/audit/verify").await?;
            let report: serde_json::Value = serde_json::from_slice(&body)?;
            if report["intact"] == true {
                println!(
                    "intact: {} entries, the chain is unbroken; last hash {}",
                    report["entries"],
                    plugin::printable(report["lastHash"].as_str().unwrap_or(""))
                );
            } else {
                return Err(Failure(format!(
                    "the audit log is tampered with or damaged: {}:{}: {}",
                    report["file"].as_str().unwrap_or("?"),
                    report["line"],
                    report["problem"].as_str().unwrap_or("?")
                )));
            }
        }
        Command::Audit(AuditCommand::Export { output, operator }) => {
            let token = bearer_token(&config).await?;
            let body = operator.get(&client, &token, "/audit/export").await?;
            match output {
                Some(path) => {
                    std::fs::write(path, &body)
                        .map_err(|e| Failure(format!("cannot write {}: {e}", path.display())))?;
                    eprintln!(
                        "wrote {} lines to {}",
                        body.iter().filter(|b| **b == b'\n').count(),
                        path.display()
                    );
                }
                None => {
                    use std::io::Write;
                    std::io::stdout().write_all(&body)?;
                }
            }
        }
        Command::Approve {
            name,
            reason,
            digest,
        } => {
            let approval = Answer::Approve {
                reason: reason.clone(),
                digest: digest.clone(),
            };
            answer(&client, &namespace, name, approval).await?;
        }
        Command::Request(args) => return request(&client, &namespace, args).await,
        Command::Ui(args) => {
            let scope = (!cli.all_namespaces).then(|| namespace.clone());
            ui(client, &config, scope, args).await?;
        }
        Command::Reject { name, reason } => {
            let rejection = Answer::Reject {
                reason: reason.clone(),
            };
            answer(&client, &namespace, name, rejection).await?;
        }
    }
    Ok(0)
}

pub(crate) async fn get(client: &Client, namespace: &str, name: &str) -> Result<Decision, Failure> {
    Api::<Decision>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .map_err(|e| api_failure(e, name, namespace))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(code: u16, reason: &str, message: &str) -> kube::Error {
        kube::Error::Api(Box::new(
            kube::core::Status::failure(message, reason).with_code(code),
        ))
    }

    #[test]
    fn a_refusal_is_told_in_the_api_server_s_own_sentence() {
        for (code, reason, message) in [
            (
                403,
                "Forbidden",
                "decisions.decisiongate.io \"deploy\" is forbidden: User \"dave\" cannot patch resource \"decisions\" in API group \"decisiongate.io\" in the namespace \"ops\"",
            ),
            (
                422,
                "Invalid",
                "Decision.decisiongate.io \"deploy\" is invalid: spec.actionType: Invalid value",
            ),
        ] {
            let Failure(read) = api_failure(refused(code, reason, message), "deploy", "ops");
            let Failure(other) = Failure::from(refused(code, reason, message));
            for told in [read, other] {
                assert!(told.contains(message), "{told}");
                for dump in ["Status {", "ErrorResponse", "ApiError", "Some("] {
                    assert!(!told.contains(dump), "{dump:?} in {told}");
                }
            }
        }
        let Failure(missing) = api_failure(
            refused(
                404,
                "NotFound",
                "decisions.decisiongate.io \"deploy\" not found",
            ),
            "deploy",
            "ops",
        );
        assert_eq!(missing, "no Decision deploy in namespace ops");
        let Failure(uninstalled) = api_failure(
            refused(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ),
            "deploy",
            "ops",
        );
        assert!(
            uninstalled.contains("CRDs are not installed"),
            "{uninstalled}"
        );
    }
}

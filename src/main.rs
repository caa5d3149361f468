//! The `decision-gate` binary: `run` the operator, or print the `crd`s.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use decision_gate::api::duration;
use decision_gate::controller::{self, Settings};
use decision_gate::{crd, telemetry};

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
    Run(RunArgs),
    /// Print every CustomResourceDefinition as YAML, or write one file each.
    Crd {
        /// Write `<name>.yaml` files into this directory instead of printing.
        #[arg(long)]
        output_dir: Option<PathBuf>,
    },
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
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    duration::parse(text).map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd { output_dir: None } => {
            print!("{}", crd::all_yaml());
            ExitCode::SUCCESS
        }
        Command::Crd {
            output_dir: Some(dir),
        } => {
            for c in crd::all() {
                let path = dir.join(crd::file_name(&c));
                if let Err(e) = std::fs::write(&path, crd::to_yaml(&c)) {
                    eprintln!("error: cannot write {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
            }
            ExitCode::SUCCESS
        }
        Command::Run(args) => {
            telemetry::init();
            let settings = Settings {
                namespace: args.namespace,
                default_expiry: args.default_expiry,
                http_addr: args.http_addr,
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

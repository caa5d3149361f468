//! Structured logs: human-readable on a terminal, one JSON object per line otherwise.

use std::io::IsTerminal;

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Installs the global subscriber. The level comes from `RUST_LOG`, default `info`.
///
/// kube-runtime's watcher reports a failed watch as a dump of the API server's Status;
/// the operator reports the same failures itself, in words, so the watcher's own lines are
/// kept to errors unless `RUST_LOG` names kube_runtime.
pub fn init() {
    install(std::io::stdout, std::io::stdout().is_terminal());
}

/// Like [`init`], writing to standard error: for commands whose standard output is a
/// protocol (`decision-gate mcp` over stdio).
pub fn init_on_stderr() {
    install(std::io::stderr, std::io::stderr().is_terminal());
}

fn install<W>(writer: W, terminal: bool)
where
    W: for<'w> fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let registry = tracing_subscriber::registry().with(filter());
    if terminal {
        registry
            .with(fmt::layer().compact().with_writer(writer))
            .init();
    } else {
        registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_writer(writer),
            )
            .init();
    }
}

fn filter() -> EnvFilter {
    let wanted = std::env::var("RUST_LOG").unwrap_or_default();
    let directives = if wanted.trim().is_empty() {
        "info,kube_runtime=warn,kube_client=warn".to_owned()
    } else {
        wanted
    };
    let directives = if directives.contains("kube_runtime") {
        directives
    } else {
        format!("{directives},kube_runtime::watcher=error")
    };
    EnvFilter::try_new(&directives)
        .unwrap_or_else(|_| EnvFilter::new("info,kube_runtime=warn,kube_client=warn"))
}

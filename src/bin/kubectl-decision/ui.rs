//! `ui`: the review page (see [`decision_gate::ui`]) served on a loopback address, with
//! the kubeconfig's own credentials, and opened in the browser.

use std::net::SocketAddr;
use std::sync::Arc;

use decision_gate::audit::Entry;
use decision_gate::plugin;
use decision_gate::ui::{AuditTrail, Source, Ui};
use kube::{Client, Config};

use super::Failure;
use super::operator::{OperatorService, bearer_token};

type AuditRead = futures::future::BoxFuture<'static, Result<Vec<Entry>, String>>;

#[derive(clap::Args)]
pub(crate) struct UiArgs {
    /// The loopback address and port to serve on (port 0: any free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    address: SocketAddr,
    /// Print the address only; do not open a browser.
    #[arg(long)]
    no_browser: bool,
    #[command(flatten)]
    operator: OperatorService,
}

pub(crate) async fn ui(
    client: Client,
    config: &Config,
    namespace: Option<String>,
    args: &UiArgs,
) -> Result<(), Failure> {
    let ui = Ui::bind(args.address).await.map_err(Failure)?;
    let url = ui.url();
    println!("Serving the review page at {url}");
    println!("It acts as you; keep the address to yourself. Stop with Ctrl-C.");
    if !args.no_browser {
        open(&url);
    }
    // The token is read once: what the kubeconfig holds when the page starts.
    let token = bearer_token(config).await.map_err(|f| f.0);
    let operator = args.operator.clone();
    let audit_client = client.clone();
    let audit: AuditTrail = Arc::new(move |namespace: String, name: String| -> AuditRead {
        let (client, token, operator) = (audit_client.clone(), token.clone(), operator.clone());
        Box::pin(async move {
            let path = format!(
                "/audit/entries?view=all&namespace={namespace}&decision={namespace}/{name}"
            );
            let body = operator
                .get(&client, &token?, &path)
                .await
                .map_err(|f| f.0)?;
            Ok(plugin::audit_entries(&body))
        })
    });
    ui.serve(Source {
        client,
        namespace,
        audit,
    })
    .await
    .map_err(|e| Failure(format!("the review page stopped: {e}")))
}

/// Opens the page in the browser ($BROWSER, else the desktop's opener); not being able to
/// is no error, the address is printed. The browser is given a file readable only by the
/// user that redirects to the address, not the address itself: a command line is visible
/// to every local user, and a browser started by the opener keeps its own for its life.
fn open(url: &str) {
    let opener = std::env::var("BROWSER")
        .ok()
        .filter(|b| !b.trim().is_empty())
        .unwrap_or_else(|| {
            if cfg!(target_os = "macos") {
                "open".to_owned()
            } else {
                "xdg-open".to_owned()
            }
        });
    let redirect = match redirect_file(url) {
        Ok(path) => path,
        Err(e) => {
            eprintln!("could not open a browser ({e}); open the address above yourself");
            return;
        }
    };
    let started = std::process::Command::new(&opener)
        .arg(format!("file://{}", redirect.display()))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if let Err(e) = started {
        eprintln!("could not open a browser ({opener}: {e}); open the address above yourself");
    }
    // The browser has read it by then; the printed address keeps working.
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
        let _ = std::fs::remove_file(redirect);
    });
}

/// A new file, readable by the user only, whose page sends the browser on to `url`.
fn redirect_file(url: &str) -> std::io::Result<std::path::PathBuf> {
    use std::io::Write;
    let dir = std::env::var_os("XDG_RUNTIME_DIR")
        .map(std::path::PathBuf::from)
        .filter(|d| d.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    let path = dir.join(format!(
        "kubectl-decision-ui-{}.html",
        uuid::Uuid::new_v4().simple()
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&path)?;
    writeln!(
        file,
        "<!doctype html><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"0;url={url}\"><title>decision-gate review</title><a href=\"{url}\">Open the review page</a>"
    )?;
    Ok(path)
}

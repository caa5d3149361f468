//! The requester's side against the cluster: submit a request as a Decision, watch it until
//! it is settled, and say a refusal in words an agent or a person can act on. The MCP
//! server, the tool-call hook and `kubectl decision request` all go through here, with the
//! caller's own credentials, so that the API server (not the caller) records who asked.

pub mod hook;
pub mod mcp;

use std::path::Path;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use kube::api::PostParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher::watch_object;
use kube::{Api, Client, Config};

use crate::api::Decision;
use crate::error::{api_status, describe_kube, describe_status, describe_watch};
use crate::plugin;
use crate::request::{Request, Verdict};

/// The caller's own credentials: the kubeconfig given, else `$KUBECONFIG` or
/// `~/.kube/config` (with `context`, if given), else the pod's ServiceAccount.
pub async fn config(kubeconfig: Option<&Path>, context: Option<&str>) -> Result<Config, String> {
    let options = KubeConfigOptions {
        context: context.map(str::to_owned),
        ..KubeConfigOptions::default()
    };
    match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path)
                .map_err(|e| format!("cannot read the kubeconfig {}: {e}", path.display()))?;
            Config::from_custom_kubeconfig(file, &options)
                .await
                .map_err(|e| e.to_string())
        }
        None if context.is_some() => Config::from_kubeconfig(&options)
            .await
            .map_err(|e| e.to_string()),
        None => Config::infer().await.map_err(|e| e.to_string()),
    }
    .map_err(|e| format!("no cluster to talk to: {e}"))
}

/// A client with the caller's own credentials (see [`config`]), and the namespace to use
/// by default.
pub async fn connect(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> Result<(Client, String), String> {
    let config = config(kubeconfig, context).await?;
    let namespace = config.default_namespace.clone();
    let client = Client::try_from(config)
        .map_err(|e| format!("no cluster to talk to: {}", describe_kube(&e)))?;
    Ok((client, namespace))
}

/// Who the API server says the client is.
pub async fn whoami(client: &Client) -> Result<String, String> {
    let review = Api::<SelfSubjectReview>::all(client.clone())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .map_err(|e| format!("cannot ask the API server who you are: {}", refusal(&e)))?;
    review
        .status
        .and_then(|s| s.user_info)
        .and_then(|u| u.username)
        .ok_or_else(|| "the API server did not say who you are".to_owned())
}

/// Creates the Decision the request describes, as the client's identity.
pub async fn submit(api: &Api<Decision>, request: &Request) -> Result<Decision, String> {
    api.create(&PostParams::default(), &request.decision())
        .await
        .map_err(|e| format!("the request was refused: {}", refusal(&e)))
}

/// How a wait ended without a verdict.
#[derive(Debug)]
pub enum WaitEnd {
    /// The time ran out; the Decision as last seen.
    TimedOut(Option<Box<Decision>>),
    /// The Decision was deleted while waited for.
    Deleted,
    /// The watch failed (the cluster went away, or access was withdrawn).
    Failed(String),
}

impl std::fmt::Display for WaitEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WaitEnd::TimedOut(_) => f.write_str("timed out waiting for an answer"),
            WaitEnd::Deleted => f.write_str("the Decision was deleted while waiting for it"),
            WaitEnd::Failed(why) => write!(f, "watching the Decision failed: {why}"),
        }
    }
}

/// Watches the Decision (never polls) until `done` holds, calling `seen` with each new
/// version of it, for at most `limit`.
pub async fn watch_until(
    api: &Api<Decision>,
    name: &str,
    limit: Duration,
    done: impl Fn(&Decision) -> bool,
    mut seen: impl FnMut(&Decision),
) -> Result<Decision, WaitEnd> {
    let mut last: Option<Decision> = None;
    let watching = async {
        let mut versions = watch_object(api.clone(), name).boxed();
        loop {
            match versions.try_next().await {
                Ok(Some(Some(d))) => {
                    let changed = last
                        .as_ref()
                        .is_none_or(|l| l.metadata.resource_version != d.metadata.resource_version);
                    if changed {
                        seen(&d);
                    }
                    let finished = done(&d);
                    last = Some(d);
                    if finished {
                        return Ok(());
                    }
                }
                Ok(Some(None)) => return Err(WaitEnd::Deleted),
                Ok(None) => return Err(WaitEnd::Failed("the watch ended".to_owned())),
                Err(e) => return Err(WaitEnd::Failed(describe_watch(&e))),
            }
        }
    };
    match tokio::time::timeout(limit, watching).await {
        Ok(Ok(())) => Ok(last.expect("a finished wait has seen the Decision")),
        Ok(Err(end)) => Err(end),
        Err(_) => Err(WaitEnd::TimedOut(last.map(Box::new))),
    }
}

/// Waits until the Decision is settled (see [`Verdict::of`]).
pub async fn wait_for_verdict(
    api: &Api<Decision>,
    name: &str,
    limit: Duration,
    seen: impl FnMut(&Decision),
) -> Result<(Verdict, Decision), WaitEnd> {
    let d = watch_until(api, name, limit, |d| Verdict::of(d).is_some(), seen).await?;
    let verdict = Verdict::of(&d).expect("settled");
    Ok((verdict, d))
}

/// An API server's refusal (or a failure to reach it) in plain words: what was refused,
/// by which check, in the API server's own message (never a dump of its Status), and what
/// to do about it.
pub fn refusal(e: &kube::Error) -> String {
    let Some(s) = api_status(e) else {
        return format!("cannot reach the cluster: {}", describe_kube(e));
    };
    match s.code {
        404 if s.message.contains("could not find the requested resource") => {
            "the decisiongate.io CRDs are not installed in this cluster (make install, or the Helm chart)"
                .to_owned()
        }
        _ if s.message.contains("denied request") => plugin::refusal(&s.message),
        403 if s.message.contains("cannot create resource \"decisions\"") => format!(
            "not allowed: {}. Ask an admin to bind the ClusterRole decision-gate-requester to this identity in the namespace",
            s.message
        ),
        403 => format!("not allowed: {}", s.message),
        422 => format!("invalid: {}", s.message),
        404 => format!("not found: {}", s.message),
        409 => format!("already exists: {}", s.message),
        _ => describe_status(s),
    }
}

//! `approve` and `reject`: the answer written as the caller, then watched until the
//! operator has recorded what came of it.

use std::time::Duration;

use decision_gate::api::{Decision, DecisionPhase, annotations};
use decision_gate::plugin;
use kube::api::{Patch, PatchParams};
use kube::runtime::wait::{self, await_condition};
use kube::runtime::watcher;
use kube::{Api, Client};

use super::{Failure, api_failure, get};

/// How long the operator gets to record an answer before the command stops waiting.
const RECORD_WAIT: Duration = Duration::from_secs(30);

/// Sets `who_key=<me>` (and the reason) and waits until the operator has recorded it. An
/// approval (`digest` is Some) also confirms the pinned plan digest: the one given, or the
/// one pinned now.
pub(crate) async fn answer(
    client: &Client,
    namespace: &str,
    name: &str,
    who_key: &str,
    reason_key: &str,
    reason: Option<&str>,
    digest: Option<Option<&str>>,
) -> Result<(), Failure> {
    let approving = who_key == annotations::APPROVED_BY;
    let verb = if approving { "approve" } else { "reject" };
    let before = get(client, namespace, name).await?;
    let phase = before.status.as_ref().and_then(|s| s.phase);
    if !phase.is_some_and(DecisionPhase::is_awaiting_answer) {
        let state = phase
            .map(|p| p.to_string())
            .unwrap_or_else(|| "not evaluated yet".to_owned());
        return Err(Failure(format!(
            "cannot {verb} {name}: it is {state}, not waiting for an answer"
        )));
    }
    let me = decision_gate::agent::whoami(client)
        .await
        .map_err(Failure)?;
    let counted_before = before.status.as_ref().is_some_and(|s| {
        s.approvals
            .iter()
            .any(|a| a.approver == me && a.lapsed_at.is_none())
    });
    if approving && counted_before {
        println!("{namespace}/{name} already has your approval");
        return Ok(());
    }
    let ignored_before = mine_ignored(&before, &me);
    let mut patch = serde_json::json!({ "metadata": { "annotations": { who_key: me } } });
    if let Some(reason) = reason {
        patch["metadata"]["annotations"][reason_key] = serde_json::json!(reason);
    }
    let pinned = before.status.as_ref().and_then(|s| s.plan.as_ref());
    let stamp = chrono::Utc::now().to_rfc3339();
    if let Some(given) = digest {
        // Without a plan there is nothing to confirm; a digest left by an earlier
        // approver is taken away so that it is not read as this one's.
        let confirmed = given
            .map(str::to_owned)
            .or(pinned.map(|p| p.digest.clone()));
        patch["metadata"]["annotations"][annotations::APPROVAL_DIGEST] =
            serde_json::json!(confirmed);
        // A new stamp makes this a new approval, even by someone whose approval lapsed.
        patch["metadata"]["annotations"][annotations::APPROVED_AT] = serde_json::json!(stamp);
        if let (Some(p), Some(confirmed)) = (pinned, &confirmed) {
            println!(
                "approving plan {} ({} step(s)) as of digest {}; the Decision pins {}",
                p.name,
                p.steps.len(),
                decision_gate::pin::short(confirmed),
                decision_gate::pin::short(&p.digest)
            );
        }
    }
    let api: Api<Decision> = Api::namespaced(client.clone(), namespace);
    if let Err(e) = api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        return Err(match e {
            kube::Error::Api(s) if s.code == 403 || s.code == 422 => {
                Failure(plugin::refusal(&s.message))
            }
            other => api_failure(other, name, namespace),
        });
    }

    // The operator records the answer within moments; say what came of it.
    let counted = |d: &Decision| {
        d.status.as_ref().is_some_and(|status| {
            if approving {
                // This approval, not an earlier one of mine that lapsed.
                status.approvals.iter().any(|a| {
                    a.approver == me && a.lapsed_at.is_none() && a.stamp.as_deref() == Some(&stamp)
                })
            } else {
                status
                    .rejection
                    .as_ref()
                    .is_some_and(|r| r.rejected_by == me)
            }
        })
    };
    let recorded = |d: Option<&Decision>| {
        d.is_none_or(|d| counted(d) || mine_ignored(d, &me) > ignored_before)
    };
    let d = match tokio::time::timeout(RECORD_WAIT, await_condition(api, name, recorded)).await {
        Ok(Ok(Some(d))) => d,
        Ok(Ok(None)) => {
            return Err(Failure(format!(
                "no Decision {name} in namespace {namespace}"
            )));
        }
        Ok(Err(wait::Error::ProbeFailed(e))) => return Err(watch_failure(e, name, namespace)),
        Err(_) => {
            let done = if approving { "approved" } else { "rejected" };
            println!(
                "{done} {namespace}/{name} as {me}; the operator has not recorded it yet (is it running?)"
            );
            return Ok(());
        }
    };
    let status = d.status.clone().unwrap_or_default();
    if mine_ignored(&d, &me) > ignored_before
        && let Some(ignored) = status.ignored_answers.iter().rev().find(|i| i.user == me)
    {
        return Err(Failure(format!(
            "your {} does not count: {}",
            ignored.answer, ignored.reason
        )));
    }
    let phase = status.phase.map(|p| p.to_string()).unwrap_or_default();
    let progress = status.approval_progress.unwrap_or_default();
    if approving {
        println!("approved {namespace}/{name} as {me} ({progress}); it is now {phase}");
    } else {
        println!("rejected {namespace}/{name} as {me}; it is now {phase}");
    }
    Ok(())
}

/// Explains why the Decision could not be watched, as a failed read of it would be.
fn watch_failure(e: watcher::Error, name: &str, namespace: &str) -> Failure {
    match e {
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => api_failure(e, name, namespace),
        watcher::Error::WatchError(status) => {
            api_failure(kube::Error::Api(status), name, namespace)
        }
        other => Failure(other.to_string()),
    }
}

fn mine_ignored(d: &Decision, me: &str) -> usize {
    d.status.as_ref().map_or(0, |s| {
        s.ignored_answers.iter().filter(|i| i.user == me).count()
    })
}

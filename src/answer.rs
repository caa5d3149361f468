//! Answering a Decision as the caller: the approval or rejection written as annotations with
//! the caller's own credentials (so that the API server and the chart's admission policies
//! judge it as that person), then watched until the operator has recorded what came of it.
//! `kubectl decision approve|reject`, the review page and Slack's buttons all answer here.

use std::time::Duration;

use kube::api::{Patch, PatchParams};
use kube::runtime::wait::{self, await_condition};
use kube::{Api, Client};

use crate::api::{Decision, DecisionPhase, annotations};

/// How long the operator gets, by default, to record an answer before the caller stops
/// waiting for it.
pub const RECORD_WAIT: Duration = Duration::from_secs(30);

/// An answer to give.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Approve exactly the Decision of `digest` (its `status.digest` as the approver
    /// reviewed it: its uid, request and pinned plan); `None` approves the digest the
    /// Decision has when the answer is written.
    Approve {
        reason: Option<String>,
        digest: Option<String>,
    },
    /// Reject, saying why.
    Reject { reason: String },
}

impl Answer {
    /// "approve" or "reject".
    pub fn verb(&self) -> &'static str {
        match self {
            Answer::Approve { .. } => "approve",
            Answer::Reject { .. } => "reject",
        }
    }

    /// "approved" or "rejected".
    pub fn done(&self) -> &'static str {
        match self {
            Answer::Approve { .. } => "approved",
            Answer::Reject { .. } => "rejected",
        }
    }

    /// The merge patch that gives this answer as `me` to the Decision of `uid`: the answer
    /// and its reason, and for an approval the uid, the confirmed digest (`current`, the
    /// Decision's own, when none was given) and a new stamp, which makes it a new approval
    /// even by someone whose earlier one lapsed.
    pub fn patch(
        &self,
        me: &str,
        uid: Option<&str>,
        current: Option<&str>,
        stamp: &str,
    ) -> serde_json::Value {
        let mut patch = serde_json::json!({ "metadata": { "annotations": {} } });
        let notes = &mut patch["metadata"]["annotations"];
        match self {
            Answer::Approve { reason, digest } => {
                notes[annotations::APPROVED_BY] = me.into();
                // An earlier approver's reason is taken away, not left to be read as this
                // one's.
                notes[annotations::APPROVAL_REASON] = serde_json::json!(reason);
                // What is not known is taken away (null), so that an earlier approver's
                // is not read as this one's.
                notes[annotations::APPROVAL_DIGEST] =
                    serde_json::json!(digest.as_deref().or(current));
                notes[annotations::APPROVAL_UID] = serde_json::json!(uid);
                notes[annotations::APPROVED_AT] = stamp.into();
            }
            Answer::Reject { reason } => {
                notes[annotations::REJECTED_BY] = me.into();
                notes[annotations::REJECTION_REASON] = reason.as_str().into();
            }
        }
        patch
    }
}

/// What came of an answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answered {
    /// Who the API server says answered.
    pub me: String,
    pub outcome: Outcome,
    /// For an approval of a Decision with a plan: what it confirmed.
    pub confirmed: Option<Confirmed>,
}

/// What an approval confirmed, beside what the Decision is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Confirmed {
    /// The plan the Decision runs and its steps, if it runs one.
    pub plan: Option<(String, usize)>,
    /// The digest the approval names.
    pub digest: String,
    /// The Decision's digest when the approval was written.
    pub current: String,
}

impl Confirmed {
    /// "approving digest D (plan P, N step(s)); the Decision's digest is E".
    pub fn told(&self) -> String {
        format!(
            "approving digest {}{}; the Decision's digest is {}",
            crate::pin::short(&self.digest),
            self.plan
                .as_ref()
                .map(|(plan, steps)| format!(" (plan {plan}, {steps} step(s))"))
                .unwrap_or_default(),
            crate::pin::short(&self.current)
        )
    }
}

impl Answered {
    /// What came of `answer` to `namespace/name`, in one line.
    pub fn told(&self, answer: &Answer, namespace: &str, name: &str) -> String {
        let me = &self.me;
        match &self.outcome {
            Outcome::AlreadyApproved => format!("{namespace}/{name} already has your approval"),
            Outcome::NotRecordedYet => format!(
                "{} {namespace}/{name} as {me}; the operator has not recorded it yet (is it running?)",
                answer.done()
            ),
            Outcome::Ignored { answer, reason } => {
                format!("your {answer} does not count: {reason}")
            }
            Outcome::Counted { phase, progress } => match answer {
                Answer::Approve { .. } => {
                    format!("approved {namespace}/{name} as {me} ({progress}); it is now {phase}")
                }
                Answer::Reject { .. } => {
                    format!("rejected {namespace}/{name} as {me}; it is now {phase}")
                }
            },
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The caller's approval already counts; nothing was written.
    AlreadyApproved,
    /// The operator counted it; the Decision is now in `phase`, with `progress` approvals.
    Counted { phase: String, progress: String },
    /// The operator recorded that it does not count, and why.
    Ignored { answer: String, reason: String },
    /// Written, but the operator did not record it within the wait (is it running?).
    NotRecordedYet,
}

/// Why an answer could not be given.
#[derive(Debug)]
pub enum Refused {
    /// The Decision is not waiting for an answer (it is in the phase named).
    NotWaiting(String),
    /// The API server or an admission policy refused the write; in its own words.
    Denied(String),
    /// No such Decision.
    NotFound,
    /// Who the caller is could not be told.
    Identity(String),
    /// Reading, writing or watching the Decision failed otherwise.
    Api(kube::Error),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::NotWaiting(state) => write!(f, "it is {state}, not waiting for an answer"),
            Refused::Denied(message) => f.write_str(&crate::plugin::refusal(message)),
            Refused::NotFound => f.write_str("there is no such Decision"),
            Refused::Identity(e) => write!(f, "cannot tell who you are: {e}"),
            Refused::Api(e) => f.write_str(&crate::error::describe_kube(e)),
        }
    }
}

fn read_failure(e: kube::Error) -> Refused {
    match e {
        kube::Error::Api(s) if s.code == 404 => Refused::NotFound,
        other => Refused::Api(other),
    }
}

/// Gives `answer` to Decision `namespace/name` as the client's user and waits up to
/// `record_wait` for the operator to record what came of it.
pub async fn give(
    client: &Client,
    namespace: &str,
    name: &str,
    answer: &Answer,
    record_wait: Duration,
) -> Result<Answered, Refused> {
    let approving = matches!(answer, Answer::Approve { .. });
    let api: Api<Decision> = Api::namespaced(client.clone(), namespace);
    let before = api.get(name).await.map_err(read_failure)?;
    let phase = before.status.as_ref().and_then(|s| s.phase);
    if !phase.is_some_and(DecisionPhase::is_awaiting_answer) {
        return Err(Refused::NotWaiting(
            phase
                .map(|p| p.to_string())
                .unwrap_or_else(|| "not evaluated yet".to_owned()),
        ));
    }
    let me = crate::agent::whoami(client)
        .await
        .map_err(Refused::Identity)?;
    let counted_before = before.status.as_ref().is_some_and(|s| {
        s.approvals
            .iter()
            .any(|a| a.approver == me && crate::answers::counts(a, s))
    });
    if approving && counted_before {
        return Ok(Answered {
            me,
            outcome: Outcome::AlreadyApproved,
            confirmed: None,
        });
    }
    let ignored_before = ignored_of(&before, &me);
    let current = before.status.as_ref().and_then(|s| s.digest.as_deref());
    let stamp = chrono::Utc::now().to_rfc3339();
    let patch = answer.patch(&me, before.metadata.uid.as_deref(), current, &stamp);
    let plan = before.status.as_ref().and_then(|s| s.plan.as_ref());
    let confirmed = match (answer, current) {
        // What runs, or what the approver named, is said back to them.
        (Answer::Approve { digest, .. }, Some(current)) if plan.is_some() || digest.is_some() => {
            Some(Confirmed {
                plan: plan.map(|p| (p.name.clone(), p.steps.len())),
                digest: digest.clone().unwrap_or_else(|| current.to_owned()),
                current: current.to_owned(),
            })
        }
        _ => None,
    };
    if let Err(e) = api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        return Err(match e {
            kube::Error::Api(s) if s.code == 403 || s.code == 422 => Refused::Denied(s.message),
            other => read_failure(other),
        });
    }

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
    let recorded =
        |d: Option<&Decision>| d.is_none_or(|d| counted(d) || ignored_of(d, &me) > ignored_before);
    let d = match tokio::time::timeout(record_wait, await_condition(api, name, recorded)).await {
        Ok(Ok(Some(d))) => d,
        Ok(Ok(None)) => return Err(Refused::NotFound),
        Ok(Err(wait::Error::ProbeFailed(e))) => return Err(watch_failure(e)),
        Err(_) => {
            return Ok(Answered {
                me,
                outcome: Outcome::NotRecordedYet,
                confirmed,
            });
        }
    };
    let status = d.status.clone().unwrap_or_default();
    if ignored_of(&d, &me) > ignored_before
        && let Some(ignored) = status.ignored_answers.iter().rev().find(|i| i.user == me)
    {
        return Ok(Answered {
            me,
            outcome: Outcome::Ignored {
                answer: ignored.answer.clone(),
                reason: ignored.reason.clone(),
            },
            confirmed,
        });
    }
    Ok(Answered {
        me,
        outcome: Outcome::Counted {
            phase: status.phase.map(|p| p.to_string()).unwrap_or_default(),
            progress: status.approval_progress.unwrap_or_default(),
        },
        confirmed,
    })
}

/// A failed watch, as a failed read of the Decision would be told.
fn watch_failure(e: kube::runtime::watcher::Error) -> Refused {
    use kube::runtime::watcher::Error;
    match e {
        Error::InitialListFailed(e) | Error::WatchStartFailed(e) | Error::WatchFailed(e) => {
            read_failure(e)
        }
        Error::WatchError(status) => read_failure(kube::Error::Api(status)),
        other => Refused::Api(kube::Error::Service(Box::new(other))),
    }
}

fn ignored_of(d: &Decision, me: &str) -> usize {
    d.status.as_ref().map_or(0, |s| {
        s.ignored_answers.iter().filter(|i| i.user == me).count()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_approval_confirms_the_digest_reviewed_or_else_the_pinned_one() {
        let reviewed = Answer::Approve {
            reason: Some("looks right".into()),
            digest: Some("sha256:aa".into()),
        };
        let patch = reviewed.patch(
            "bob",
            Some("uid-1"),
            Some("sha256:bb"),
            "2026-12-03T10:00:00Z",
        );
        let notes = &patch["metadata"]["annotations"];
        assert_eq!(notes[annotations::APPROVED_BY], "bob");
        assert_eq!(notes[annotations::APPROVAL_REASON], "looks right");
        assert_eq!(notes[annotations::APPROVAL_DIGEST], "sha256:aa");
        assert_eq!(notes[annotations::APPROVAL_UID], "uid-1");
        assert_eq!(notes[annotations::APPROVED_AT], "2026-12-03T10:00:00Z");

        let unreviewed = Answer::Approve {
            reason: None,
            digest: None,
        };
        let patch = unreviewed.patch("bob", Some("uid-1"), Some("sha256:bb"), "t");
        assert_eq!(
            patch["metadata"]["annotations"][annotations::APPROVAL_DIGEST],
            "sha256:bb"
        );
        assert!(patch["metadata"]["annotations"][annotations::APPROVAL_REASON].is_null());
        // Nothing known: an earlier approver's digest and uid are removed, not left to be
        // read as bob's.
        let patch = unreviewed.patch("bob", None, None, "t");
        assert!(patch["metadata"]["annotations"][annotations::APPROVAL_DIGEST].is_null());
        assert!(patch["metadata"]["annotations"][annotations::APPROVAL_UID].is_null());
    }

    #[test]
    fn a_refused_answer_is_told_in_the_api_server_s_words() {
        use crate::error::testing;
        for (error, message) in testing::refusals() {
            testing::assert_told(&Refused::Api(error).to_string(), message);
            let denied = Refused::Denied(message.to_owned()).to_string();
            testing::assert_told(&denied, message);
        }
    }

    #[test]
    fn a_rejection_names_the_rejecter_and_why_and_confirms_nothing() {
        let patch = Answer::Reject {
            reason: "not today".into(),
        }
        .patch("carol", Some("uid-1"), Some("sha256:bb"), "t");
        let notes = patch["metadata"]["annotations"].as_object().unwrap();
        assert_eq!(notes[annotations::REJECTED_BY], "carol");
        assert_eq!(notes[annotations::REJECTION_REASON], "not today");
        assert_eq!(notes.len(), 2, "{notes:?}");
    }
}

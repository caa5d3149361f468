//! What the person who clicked is told, and what the audit log records of it.

use serde_json::{Value, json};

use crate::answer::{Answer, Answered, Outcome, Refused};

/// What came of a click.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// The operator counted the answer; the Decision is now in `phase`.
    Counted {
        user: String,
        decision: String,
        done: &'static str,
        phase: String,
        progress: String,
    },
    /// This person's approval already counts; nothing was written.
    AlreadyApproved { user: String, decision: String },
    /// The operator recorded the answer as not counting, and why.
    Ignored {
        user: String,
        decision: String,
        answer: String,
        reason: String,
    },
    /// Written and admitted, but the operator has not recorded it yet.
    NotRecordedYet {
        user: String,
        decision: String,
        done: &'static str,
    },
    /// The API server (RBAC) or an admission policy refused the answer, in its words.
    Refused {
        user: String,
        decision: String,
        verb: &'static str,
        why: String,
    },
    /// The Decision is not waiting for an answer any more.
    NotWaiting { decision: String, state: String },
    /// The Decision is gone, or is not the one the message showed.
    Gone { decision: String },
    /// The Slack user is not mapped to anyone in Kubernetes.
    Unmapped { who: String, team: String },
    /// Something else failed; nothing is known to have been answered.
    Failed {
        decision: String,
        verb: &'static str,
        why: String,
    },
}

impl Reply {
    /// What came of giving `answer` to `decision` as `user`.
    pub fn of(
        decision: &str,
        user: &str,
        answer: &Answer,
        given: Result<Answered, Refused>,
    ) -> Reply {
        let decision = decision.to_owned();
        let user = user.to_owned();
        match given {
            Ok(Answered { me, outcome, .. }) => match outcome {
                Outcome::Counted { phase, progress } => Reply::Counted {
                    user: me,
                    decision,
                    done: answer.done(),
                    phase,
                    progress,
                },
                Outcome::AlreadyApproved => Reply::AlreadyApproved { user: me, decision },
                Outcome::Ignored { answer, reason } => Reply::Ignored {
                    user: me,
                    decision,
                    answer,
                    reason,
                },
                Outcome::NotRecordedYet => Reply::NotRecordedYet {
                    user: me,
                    decision,
                    done: answer.done(),
                },
            },
            Err(Refused::NotWaiting(state)) => Reply::NotWaiting { decision, state },
            Err(Refused::NotFound) => Reply::Gone { decision },
            Err(refused @ Refused::Denied(_)) => Reply::Refused {
                user,
                decision,
                verb: answer.verb(),
                why: refused.to_string(),
            },
            Err(Refused::Api(kube::Error::Api(status))) if status.code == 403 => Reply::Refused {
                user,
                decision,
                verb: answer.verb(),
                why: status.message,
            },
            Err(other) => Reply::Failed {
                decision,
                verb: answer.verb(),
                why: other.to_string(),
            },
        }
    }

    /// The outcome the audit log records.
    pub fn outcome(&self) -> &'static str {
        match self {
            Reply::Counted { done, .. } => done,
            Reply::AlreadyApproved { .. } => "already_approved",
            Reply::Ignored { .. } => "ignored",
            Reply::NotRecordedYet { .. } => "not_recorded_yet",
            Reply::Refused { .. } => "refused",
            Reply::NotWaiting { .. } => "not_waiting",
            Reply::Gone { .. } => "gone",
            Reply::Unmapped { .. } => "unmapped",
            Reply::Failed { .. } => "error",
        }
    }

    /// The words for the person who clicked.
    pub fn text(&self) -> String {
        match self {
            Reply::Counted {
                user,
                decision,
                done,
                phase,
                progress,
            } => {
                let progress = if progress.is_empty() || *done == "rejected" {
                    String::new()
                } else {
                    format!(" ({progress} approvals)")
                };
                format!(
                    "{} {decision} as {user}{progress}; it is now {phase}.",
                    capital(done)
                )
            }
            Reply::AlreadyApproved { user, decision } => {
                format!("Your approval of {decision} as {user} already counts; nothing changed.")
            }
            Reply::Ignored {
                user,
                decision,
                answer,
                reason,
            } => format!(
                "Your {answer} of {decision} as {user} was recorded but does not count: {reason}."
            ),
            Reply::NotRecordedYet {
                user,
                decision,
                done,
            } => format!(
                "{} {decision} as {user}, but the operator has not recorded it yet; see `kubectl decision show`.",
                capital(done)
            ),
            Reply::Refused {
                user,
                decision,
                verb,
                why,
            } => format!("Refused: {user} may not {verb} {decision}. {why}"),
            Reply::NotWaiting { decision, state } => format!(
                "{decision} is no longer waiting for an answer ({state}); nothing was answered."
            ),
            Reply::Gone { decision } => format!(
                "{decision} no longer exists, or is not the Decision this message showed; nothing was answered."
            ),
            Reply::Unmapped { who, team } => format!(
                "Your Slack user {who} (workspace {team}) is not mapped to a Kubernetes user, so you cannot answer from Slack; nothing was answered. Ask an admin to add you to decision-gate's Slack user mapping."
            ),
            Reply::Failed {
                decision,
                verb,
                why,
            } => {
                format!(
                    "Could not {verb} {decision}: {why}. Nothing is known to have been answered."
                )
            }
        }
    }

    /// The message Slack shows only to the person who clicked.
    pub fn message(&self) -> Value {
        ephemeral(&self.text())
    }
}

/// A message only the person who clicked sees, leaving the original message as it was.
pub fn ephemeral(text: &str) -> Value {
    json!({"response_type": "ephemeral", "replace_original": false, "text": text})
}

/// The reason a rejection from Slack records: Slack's buttons carry no text, so it names
/// who rejected it, and where.
pub fn rejection_reason(who: &str, team: &str) -> String {
    format!("rejected from Slack by {who} (workspace {team})")
}

fn capital(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn approve() -> Answer {
        Answer::Approve {
            reason: None,
            digest: None,
        }
    }

    fn status(code: u16, message: &str) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure(message, "Forbidden")
                .with_code(code)
                .boxed(),
        )
    }

    #[test]
    fn an_approval_that_counts_says_as_whom_and_how_far_along() {
        let reply = Reply::of(
            "prod/deploy",
            "bob",
            &approve(),
            Ok(Answered {
                me: "bob".into(),
                outcome: Outcome::Counted {
                    phase: "Pending".into(),
                    progress: "1/2".into(),
                },
                confirmed: None,
            }),
        );
        assert_eq!(reply.outcome(), "approved");
        assert_eq!(
            reply.text(),
            "Approved prod/deploy as bob (1/2 approvals); it is now Pending."
        );
        let message = reply.message();
        assert_eq!(message["response_type"], "ephemeral");
        assert_eq!(message["replace_original"], false);
    }

    #[test]
    fn a_rejection_that_counts_says_so() {
        let reply = Reply::of(
            "prod/deploy",
            "bob",
            &Answer::Reject {
                reason: rejection_reason("@bob (U-BOB)", "T-1"),
            },
            Ok(Answered {
                me: "bob".into(),
                outcome: Outcome::Counted {
                    phase: "Rejected".into(),
                    progress: "0/1".into(),
                },
                confirmed: None,
            }),
        );
        assert_eq!(reply.outcome(), "rejected");
        assert_eq!(
            reply.text(),
            "Rejected prod/deploy as bob; it is now Rejected."
        );
        assert_eq!(
            rejection_reason("@bob (U-BOB)", "T-1"),
            "rejected from Slack by @bob (U-BOB) (workspace T-1)"
        );
    }

    #[test]
    fn a_refusal_is_told_in_the_api_server_s_or_the_policy_s_words() {
        let rbac = Reply::of(
            "prod/deploy",
            "dave",
            &approve(),
            Err(Refused::Api(status(
                403,
                "decisions.decisiongate.io \"deploy\" is forbidden: User \"dave\" cannot get resource",
            ))),
        );
        assert_eq!(rbac.outcome(), "refused");
        assert!(
            rbac.text()
                .starts_with("Refused: dave may not approve prod/deploy.")
                && rbac.text().contains("User \"dave\" cannot get"),
            "{}",
            rbac.text()
        );
        let policy = Reply::of(
            "prod/deploy",
            "carol",
            &approve(),
            Err(Refused::Denied(
                "admission webhook denied request: the requester cannot approve".into(),
            )),
        );
        assert_eq!(policy.outcome(), "refused");
        assert!(
            policy.text().contains("carol may not approve"),
            "{}",
            policy.text()
        );
    }

    #[test]
    fn every_refusal_by_the_api_server_is_told_in_its_own_sentence() {
        use crate::error::testing;
        for (error, message) in testing::refusals() {
            let reply = Reply::of("ops/deploy", "dave", &approve(), Err(Refused::Api(error)));
            testing::assert_told(&reply.text(), message);
        }
        let broken = Reply::of(
            "prod/deploy",
            "bob",
            &approve(),
            Err(Refused::Api(status(500, "etcd is down"))),
        );
        testing::assert_told(&broken.text(), "etcd is down");
    }

    #[test]
    fn a_decision_that_no_longer_waits_or_is_gone_is_answered_by_nothing() {
        let late = Reply::of(
            "prod/deploy",
            "bob",
            &approve(),
            Err(Refused::NotWaiting("Approved".into())),
        );
        assert_eq!(late.outcome(), "not_waiting");
        assert!(
            late.text()
                .contains("no longer waiting for an answer (Approved)")
        );
        let gone = Reply::of("prod/deploy", "bob", &approve(), Err(Refused::NotFound));
        assert_eq!(gone.outcome(), "gone");
        assert!(gone.text().contains("nothing was answered"));
        let broken = Reply::of(
            "prod/deploy",
            "bob",
            &approve(),
            Err(Refused::Api(status(500, "etcd is down"))),
        );
        assert_eq!(broken.outcome(), "error");
        assert!(broken.text().contains("etcd is down"), "{}", broken.text());
    }

    #[test]
    fn an_unmapped_user_is_told_whom_to_ask() {
        let reply = Reply::Unmapped {
            who: "@eve (U-EVE)".into(),
            team: "T-1".into(),
        };
        assert_eq!(reply.outcome(), "unmapped");
        assert!(reply.text().contains("@eve (U-EVE)"));
        assert!(reply.text().contains("not mapped to a Kubernetes user"));
    }

    #[test]
    fn ignored_and_unrecorded_answers_say_what_is_known() {
        let ignored = Reply::of(
            "prod/deploy",
            "carol",
            &approve(),
            Ok(Answered {
                me: "carol".into(),
                outcome: Outcome::Ignored {
                    answer: "approval".into(),
                    reason: "carol is not among the approvers".into(),
                },
                confirmed: None,
            }),
        );
        assert_eq!(ignored.outcome(), "ignored");
        assert!(
            ignored
                .text()
                .contains("does not count: carol is not among")
        );
        let slow = Reply::of(
            "prod/deploy",
            "bob",
            &approve(),
            Ok(Answered {
                me: "bob".into(),
                outcome: Outcome::NotRecordedYet,
                confirmed: None,
            }),
        );
        assert_eq!(slow.outcome(), "not_recorded_yet");
        assert!(slow.text().starts_with("Approved prod/deploy as bob, but"));
    }
}

//! What the review page shows, as plain serializable data made by pure functions of the
//! objects read: the list of what waits for an answer, one Decision in full, its audit
//! trail, and what came of an answer. The page only lays these out.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::answer::{Answer, Answered, Outcome, Refused};
use crate::api::decision::Outcome as RuleOutcome;
use crate::api::{Decision, DecisionPhase, ExecutionPlan};
use crate::plugin::{self, age};

/// One Decision waiting for an answer, as a line of the list.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub namespace: String,
    pub name: String,
    pub action_type: String,
    pub description: String,
    pub criticality: String,
    pub risk: Option<String>,
    pub phase: String,
    pub progress: Option<String>,
    /// The deciding rule and what it said.
    pub why: String,
    pub age: String,
    pub expires_at: Option<DateTime<Utc>>,
    /// The names of the pinned plan's steps, in order.
    pub steps: Vec<String>,
    /// Whether the caller's approval already counts.
    pub approved_by_me: bool,
    pub resource_version: Option<String>,
}

/// The Decisions that wait for an answer (or for their first evaluation), soonest to
/// expire first.
pub fn waiting(decisions: &[Decision], me: Option<&str>, now: DateTime<Utc>) -> Vec<Summary> {
    let mut items: Vec<Summary> = decisions
        .iter()
        .filter(|d| {
            d.status
                .as_ref()
                .and_then(|s| s.phase)
                .is_none_or(DecisionPhase::is_awaiting_answer)
        })
        .map(|d| summary(d, me, now))
        .collect();
    items.sort_by(|a, b| {
        // No expiry (not evaluated yet) after every one that has one.
        (a.expires_at.is_none(), a.expires_at, &a.namespace, &a.name).cmp(&(
            b.expires_at.is_none(),
            b.expires_at,
            &b.namespace,
            &b.name,
        ))
    });
    items
}

fn summary(d: &Decision, me: Option<&str>, now: DateTime<Utc>) -> Summary {
    let status = d.status.clone().unwrap_or_default();
    Summary {
        namespace: d.metadata.namespace.clone().unwrap_or_default(),
        name: d.metadata.name.clone().unwrap_or_default(),
        action_type: d.spec.action_type.clone(),
        description: d.spec.description.clone(),
        criticality: d.spec.criticality.to_string(),
        risk: status.risk.as_ref().map(|r| r.level.to_string()),
        phase: phase_of(d),
        progress: status.approval_progress.clone(),
        why: plugin::why(d),
        age: age(created(d), now),
        expires_at: status.expires_at,
        steps: status
            .plan
            .as_ref()
            .map(|p| p.steps.iter().map(|s| s.name.clone()).collect())
            .unwrap_or_default(),
        approved_by_me: approved_by(d, me),
        resource_version: d.metadata.resource_version.clone(),
    }
}

/// One Decision, with everything an approver needs before answering.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DecisionView {
    pub namespace: String,
    pub name: String,
    pub phase: String,
    /// Whether it can still be approved or rejected.
    pub waiting: bool,
    pub age: String,
    /// What an approval confirms: the Decision's digest (its uid, request and plan).
    pub digest: Option<String>,
    pub request: RequestView,
    pub risk: Option<RiskView>,
    pub evaluation: Option<EvaluationView>,
    pub approvals: ApprovalsView,
    pub expires_at: Option<DateTime<Utc>>,
    /// How long until it expires, while it waits (such as "3h").
    pub expires_in: Option<String>,
    /// How long an approval holds before the plan must start, and until when this one does.
    pub approval_holds: Option<String>,
    pub not_before: Option<DateTime<Utc>>,
    pub plan: Option<PlanView>,
    /// Why there is no pinned plan to show, when the Decision names one.
    pub plan_note: Option<String>,
    pub execution: Option<ExecutionView>,
    pub resource_version: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestView {
    pub action_type: String,
    pub description: String,
    pub criticality: String,
    pub priority: Option<String>,
    pub estimated_duration_minutes: Option<u32>,
    pub source: Option<String>,
    pub requested_by: Option<String>,
    pub on_behalf_of: Option<String>,
    /// The context, each value as JSON text (strings without quotes).
    pub context: Vec<(String, String)>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RiskView {
    pub level: String,
    pub score: u32,
    pub reasons: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EvaluationView {
    pub outcome: String,
    /// "policy P, rule R", or "no rule matched".
    pub decided_by: String,
    pub message: String,
    /// Approvals needed, when the outcome asks people.
    pub required_approvals: Option<u32>,
    /// Who may approve, as the rule names them ("users a, b; groups g"); empty when the
    /// rule names nobody (any approver of the namespace).
    pub approvers: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalsView {
    pub progress: Option<String>,
    pub given: Vec<ApprovalView>,
    /// Who may still answer, in words, while it waits.
    pub still: Option<String>,
    pub rejection: Option<String>,
    /// Answers the operator recorded as not counting, and why.
    pub ignored: Vec<String>,
    /// Why the caller's approval would not count, when the operator can tell already.
    pub not_mine: Option<String>,
    pub approved_by_me: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalView {
    pub approver: String,
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
    pub lapsed_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanView {
    pub name: String,
    /// The plan's own digest (the Decision's covers it).
    pub digest: String,
    pub short_digest: String,
    pub pinned_at: DateTime<Utc>,
    pub mode: String,
    pub action_types: Vec<String>,
    /// The lowest criticality the plan asks of a Decision, if any.
    pub floor: Option<String>,
    pub steps: Vec<StepView>,
    /// The operator's server-side dry run of the plan's steps.
    pub check: CheckView,
    /// Why the plan is no longer what was pinned (or gone), if so.
    pub warning: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StepView {
    pub name: String,
    pub images: Vec<String>,
    pub command: Option<String>,
    /// The ServiceAccount it runs as, in words.
    pub runs_as: String,
    pub namespace: String,
    pub rollback: bool,
}

/// The dry-run verdict on the plan: Ready (every step's Job admitted), Invalid (with the
/// API server's reason), or not known.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckView {
    pub verdict: String,
    pub message: Option<String>,
    pub checked_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionView {
    pub mode: String,
    pub mode_reason: Option<String>,
    pub steps: Vec<String>,
    pub rollback: Option<String>,
}

/// The plan as read now, to compare with what was pinned: `Ok(None)` when it no longer
/// exists, `Err` when it could not be read.
pub type PlanRead<'a> = Result<Option<&'a ExecutionPlan>, String>;

/// Everything an approver needs before answering `d`, as `me` (when known).
pub fn decision(
    d: &Decision,
    plan: PlanRead<'_>,
    me: Option<&str>,
    now: DateTime<Utc>,
) -> DecisionView {
    let status = d.status.clone().unwrap_or_default();
    let namespace = d.metadata.namespace.clone().unwrap_or_default();
    let waiting = status.phase.is_some_and(DecisionPhase::is_awaiting_answer);
    let request = RequestView {
        action_type: d.spec.action_type.clone(),
        description: d.spec.description.clone(),
        criticality: d.spec.criticality.to_string(),
        priority: d.spec.priority.map(|p| p.to_string()),
        estimated_duration_minutes: d.spec.estimated_duration_minutes,
        source: d.spec.source.clone(),
        requested_by: status.requested_by.clone(),
        on_behalf_of: status.on_behalf_of.clone(),
        context: d
            .spec
            .context
            .iter()
            .flatten()
            .map(|(k, v)| {
                let text = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), text)
            })
            .collect(),
    };
    let evaluation = status.evaluation.as_ref().map(|e| {
        let asks_people = matches!(
            e.outcome,
            RuleOutcome::RequireApproval | RuleOutcome::Escalate
        );
        EvaluationView {
            outcome: e.outcome.to_string(),
            decided_by: match (&e.policy, &e.rule) {
                (Some(p), Some(r)) => format!("policy {p}, rule {r}"),
                _ => "no rule matched".to_owned(),
            },
            message: e.message.clone(),
            required_approvals: asks_people.then_some(e.required_approvals),
            approvers: crate::plugin::approvers(&e.approvers),
        }
    });
    let approval_holds = status
        .evaluation
        .as_ref()
        .and_then(|e| e.approval_valid_for.as_ref())
        .map(|valid_for| {
            let until = status
                .approval_valid_until
                .map(|t| format!("; this approval holds until {}", t.to_rfc3339()))
                .unwrap_or_default();
            format!("an approval holds {valid_for} before the plan must start{until}")
        });
    let plan_view = status.plan.as_ref().map(|pinned| {
        let (check, warning) = match &plan {
            Ok(Some(p)) => (check_of(p), crate::pin::changed(pinned, p)),
            Ok(None) => (
                unknown_check("the plan no longer exists"),
                Some(format!(
                    "the plan no longer exists in {namespace}; this Decision cannot run"
                )),
            ),
            Err(e) => (unknown_check(&format!("cannot read the plan: {e}")), None),
        };
        PlanView {
            name: pinned.name.clone(),
            digest: pinned.digest.clone(),
            short_digest: crate::pin::short(&pinned.digest).to_owned(),
            pinned_at: pinned.pinned_at,
            mode: pinned.mode.to_string(),
            action_types: pinned.action_types.clone(),
            floor: pinned.criticality.map(|c| c.to_string()),
            steps: pinned
                .steps
                .iter()
                .map(|s| StepView {
                    name: s.name.clone(),
                    images: s.images.clone(),
                    command: s.command.clone(),
                    runs_as: s.service_account.as_deref().map_or_else(
                        || "the default ServiceAccount".to_owned(),
                        |sa| format!("ServiceAccount {sa}"),
                    ),
                    namespace: namespace.clone(),
                    rollback: s.rollback,
                })
                .collect(),
            check,
            warning,
        }
    });
    let plan_note = match (&d.spec.plan_ref, &status.plan, &plan) {
        (Some(_), Some(_), _) | (None, _, _) => None,
        (Some(r), None, Ok(None)) => Some(format!(
            "the plan {} is not found in {namespace}; nobody is asked before it exists",
            r.name
        )),
        (Some(r), None, _) => Some(format!("the plan {} is not pinned yet", r.name)),
    };
    let execution = status.execution.as_ref().map(|x| ExecutionView {
        mode: x.mode.to_string(),
        mode_reason: x.mode_reason.clone(),
        steps: x.steps.iter().map(plugin::step_line).collect(),
        rollback: x
            .rollback
            .as_ref()
            .map(|r| format!("rollback ({}): {}", r.strategy, r.phase)),
    });
    DecisionView {
        namespace,
        name: d.metadata.name.clone().unwrap_or_default(),
        phase: phase_of(d),
        waiting,
        age: age(created(d), now),
        digest: status.digest.clone(),
        request,
        risk: status.risk.as_ref().map(|r| RiskView {
            level: r.level.to_string(),
            score: r.score,
            reasons: r.reasons.clone(),
        }),
        evaluation,
        approvals: approvals(d, me, waiting),
        expires_at: status.expires_at,
        expires_in: status
            .expires_at
            .filter(|_| waiting)
            .map(|at| age(Some(now), at)),
        approval_holds,
        not_before: d.spec.not_before,
        plan: plan_view,
        plan_note,
        execution,
        resource_version: d.metadata.resource_version.clone(),
    }
}

fn approvals(d: &Decision, me: Option<&str>, waiting: bool) -> ApprovalsView {
    let Some(status) = &d.status else {
        return ApprovalsView::default();
    };
    let counted = status
        .approvals
        .iter()
        .filter(|a| crate::answers::counts(a, status))
        .count() as u32;
    let still = status.evaluation.as_ref().filter(|_| waiting).map(|e| {
        let needed = e.required_approvals.saturating_sub(counted);
        let who = crate::plugin::approvers(&e.approvers);
        let from = if who.is_empty() {
            "any approver of the namespace".to_owned()
        } else {
            who
        };
        let given: Vec<&str> = status
            .approvals
            .iter()
            .filter(|a| crate::answers::counts(a, status))
            .map(|a| a.approver.as_str())
            .collect();
        let but = if given.is_empty() {
            String::new()
        } else {
            format!(" other than {}", given.join(", "))
        };
        format!("{needed} more approval(s), from {from}{but}")
    });
    ApprovalsView {
        progress: status.approval_progress.clone(),
        given: status
            .approvals
            .iter()
            .map(|a| ApprovalView {
                approver: a.approver.clone(),
                reason: a.reason.clone(),
                at: a.at,
                lapsed_at: a.lapsed_at,
            })
            .collect(),
        still,
        rejection: status.rejection.as_ref().map(|r| {
            format!(
                "rejected by {} at {}: {}",
                r.rejected_by,
                r.at.to_rfc3339(),
                r.reason
            )
        }),
        ignored: status
            .ignored_answers
            .iter()
            .map(|i| format!("{} by {}: {}", i.answer, i.user, i.reason))
            .collect(),
        not_mine: me.filter(|_| waiting).and_then(|me| {
            crate::answers::may_answer(me, crate::answers::Groups::Unchecked, status, true).err()
        }),
        approved_by_me: approved_by(d, me),
    }
}

fn check_of(plan: &ExecutionPlan) -> CheckView {
    let status = plan.status.clone().unwrap_or_default();
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready");
    CheckView {
        verdict: status
            .phase
            .map(|p| p.to_string())
            .unwrap_or_else(|| "not checked yet".to_owned()),
        message: ready.map(|c| c.message.clone()).filter(|m| !m.is_empty()),
        checked_at: status.checked_at,
    }
}

fn unknown_check(why: &str) -> CheckView {
    CheckView {
        verdict: "unknown".to_owned(),
        message: Some(why.to_owned()),
        checked_at: None,
    }
}

fn approved_by(d: &Decision, me: Option<&str>) -> bool {
    me.is_some_and(|me| {
        d.status.as_ref().is_some_and(|s| {
            s.approvals
                .iter()
                .any(|a| a.approver == me && crate::answers::counts(a, s))
        })
    })
}

fn phase_of(d: &Decision) -> String {
    d.status
        .as_ref()
        .and_then(|s| s.phase)
        .map(|p| p.to_string())
        .unwrap_or_else(|| "New".to_owned())
}

fn created(d: &Decision) -> Option<DateTime<Utc>> {
    d.metadata
        .creation_timestamp
        .as_ref()
        .map(|t| crate::api::common::to_chrono(&t.0))
}

/// One line of a Decision's audit trail.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditLine {
    pub at: DateTime<Utc>,
    pub event: String,
    pub actor: String,
    pub message: String,
}

/// The audit trail of a Decision, or why it cannot be shown.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditView {
    pub entries: Vec<AuditLine>,
    pub unavailable: Option<String>,
}

/// The audit trail, oldest first, as read from the operator (or why it could not be).
pub fn audit(read: Result<Vec<crate::audit::Entry>, String>) -> AuditView {
    match read {
        Ok(entries) => AuditView {
            entries: entries
                .into_iter()
                .map(|e| AuditLine {
                    at: e.timestamp,
                    event: e.event_type,
                    actor: e.actor,
                    message: e.message,
                })
                .collect(),
            unavailable: None,
        },
        Err(why) => AuditView {
            entries: Vec::new(),
            unavailable: Some(format!("the audit trail is not available: {why}")),
        },
    }
}

/// What came of an answer given from the page.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AnswerView {
    /// Whether the answer counts (or already did).
    pub counted: bool,
    pub message: String,
}

/// What came of `answer` to `namespace/name`, in the words the plugin uses; a refusal in
/// the API server's or the admission policy's own words.
pub fn answered(
    answer: &Answer,
    namespace: &str,
    name: &str,
    result: &Result<Answered, Refused>,
) -> AnswerView {
    match result {
        Ok(answered) => AnswerView {
            counted: !matches!(answered.outcome, Outcome::Ignored { .. }),
            message: answered.told(answer, namespace, name),
        },
        Err(refused @ Refused::NotWaiting(_)) => AnswerView {
            counted: false,
            message: format!("cannot {} {name}: {refused}", answer.verb()),
        },
        Err(Refused::NotFound) => AnswerView {
            counted: false,
            message: format!("no Decision {name} in namespace {namespace}"),
        },
        Err(refused) => AnswerView {
            counted: false,
            message: refused.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000, 0).unwrap()
    }

    fn at(seconds_from_now: i64) -> String {
        (now() + chrono::Duration::seconds(seconds_from_now)).to_rfc3339()
    }

    fn plan() -> ExecutionPlan {
        serde_json::from_value(json!({
            "apiVersion": "decisiongate.io/v1alpha1",
            "kind": "ExecutionPlan",
            "metadata": {"name": "roll-out", "namespace": "ops", "uid": "u-1"},
            "spec": {"mode": "DryRun", "actionTypes": ["deploy"], "steps": [
                {"name": "migrate", "template": {"spec": {"serviceAccountName": "migrator", "restartPolicy": "Never",
                    "containers": [{"name": "m", "image": "flyway:10", "args": ["migrate", "-target=42"]}]}},
                 "rollback": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "u", "image": "flyway:10"}]}}}},
                {"name": "deploy", "template": {"spec": {"restartPolicy": "Never",
                    "containers": [{"name": "d", "image": "kubectl:1.36", "command": ["kubectl", "rollout", "restart", "deploy/api"]}]}}}
            ]},
            "status": {"phase": "Ready", "checkedAt": at(-60), "conditions": [{"type": "Ready", "status": "True",
                "reason": "StepsAdmitted", "message": "every step's Job was admitted by a server-side dry run",
                "lastTransitionTime": at(-60)}]}
        }))
        .unwrap()
    }

    /// A Decision of alice's that waits for one more approval from the group approvers,
    /// with `roll-out` pinned and bob's approval counted.
    fn pending() -> Decision {
        let pinned = crate::pin::pin(&plan(), now() - chrono::Duration::seconds(300));
        serde_json::from_value(json!({
            "apiVersion": "decisiongate.io/v1alpha1",
            "kind": "Decision",
            "metadata": {"name": "deploy-api", "namespace": "ops", "resourceVersion": "7",
                "creationTimestamp": at(-300)},
            "spec": {"actionType": "deploy", "description": "Deploy api 2.0", "criticality": "High",
                "priority": "Urgent", "context": {"version": "2.0.0", "replicas": 3}, "planRef": {"name": "roll-out"}},
            "status": {
                "phase": "Pending", "requestedBy": "alice", "approvalProgress": "1/2", "expiresAt": at(3 * 3600),
                "risk": {"level": "High", "score": 7, "reasons": ["deploy is a risky action", "priority Urgent"]},
                "evaluation": {"policy": "gate", "rule": "two-keys", "outcome": "RequireApproval",
                    "message": "deploys need two approvers", "requiredApprovals": 2, "approvers": {"groups": ["approvers"]}},
                "approvals": [{"approver": "bob", "reason": "looked at it", "at": at(-60), "groups": ["approvers", "system:authenticated"]}],
                "plan": pinned,
            }
        }))
        .unwrap()
    }

    fn with_phase(mut d: Decision, name: &str, phase: &str, expires_in: Option<i64>) -> Decision {
        d.metadata.name = Some(name.to_owned());
        let status = d.status.as_mut().unwrap();
        status.phase = serde_json::from_value(json!(phase)).unwrap();
        status.expires_at = expires_in.map(|s| now() + chrono::Duration::seconds(s));
        d
    }

    #[test]
    fn the_list_holds_what_waits_soonest_to_expire_first_with_the_plan_steps() {
        let mut unevaluated = pending();
        unevaluated.metadata.name = Some("fresh".into());
        unevaluated.status = None;
        let decisions = [
            with_phase(pending(), "later", "Pending", Some(7200)),
            with_phase(pending(), "done", "Approved", Some(60)),
            unevaluated,
            with_phase(pending(), "sooner", "Escalated", Some(600)),
        ];
        let items = waiting(&decisions, Some("bob"), now());
        let names: Vec<&str> = items.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["sooner", "later", "fresh"]);
        let later = &items[1];
        assert_eq!(later.steps, ["migrate", "deploy"]);
        assert_eq!(later.why, "gate/two-keys: RequireApproval");
        assert_eq!(later.progress.as_deref(), Some("1/2"));
        assert_eq!(later.risk.as_deref(), Some("High"));
        assert_eq!(later.age, "5m");
        assert!(later.approved_by_me);
        assert!(!waiting(&decisions, Some("carol"), now())[0].approved_by_me);
        assert_eq!(items[2].phase, "New");
        assert!(items[2].steps.is_empty());
    }

    #[test]
    fn a_decision_shows_what_an_approver_needs() {
        let plan = plan();
        let v = decision(&pending(), Ok(Some(&plan)), Some("carol"), now());
        assert_eq!(
            (v.namespace.as_str(), v.name.as_str()),
            ("ops", "deploy-api")
        );
        assert!(v.waiting);
        assert_eq!(v.phase, "Pending");
        assert_eq!(v.expires_in.as_deref(), Some("3h"));
        assert_eq!(v.request.requested_by.as_deref(), Some("alice"));
        assert_eq!(v.request.priority.as_deref(), Some("Urgent"));
        assert_eq!(
            v.request.context,
            [
                ("replicas".to_owned(), "3".to_owned()),
                ("version".to_owned(), "2.0.0".to_owned())
            ]
        );
        let risk = v.risk.unwrap();
        assert_eq!((risk.level.as_str(), risk.score), ("High", 7));
        assert_eq!(risk.reasons.len(), 2);
        let e = v.evaluation.unwrap();
        assert_eq!(e.decided_by, "policy gate, rule two-keys");
        assert_eq!(e.required_approvals, Some(2));
        assert_eq!(e.approvers, "groups approvers");
        assert_eq!(e.message, "deploys need two approvers");
        let a = v.approvals;
        assert_eq!(a.given[0].approver, "bob");
        assert_eq!(a.given[0].reason.as_deref(), Some("looked at it"));
        assert_eq!(
            a.still.as_deref(),
            Some("1 more approval(s), from groups approvers other than bob")
        );
        assert!(a.not_mine.is_none() && !a.approved_by_me);

        let p = v.plan.unwrap();
        assert_eq!(p.digest, crate::pin::digest(&plan.spec));
        assert_eq!(p.short_digest, crate::pin::short(&p.digest));
        assert_eq!(p.mode, "DryRun");
        assert!(p.warning.is_none());
        assert_eq!(p.check.verdict, "Ready");
        assert!(p.check.message.unwrap().contains("server-side dry run"));
        assert_eq!(p.steps.len(), 2);
        let migrate = &p.steps[0];
        assert_eq!(migrate.images, ["flyway:10"]);
        assert_eq!(migrate.command.as_deref(), Some("migrate -target=42"));
        assert_eq!(migrate.runs_as, "ServiceAccount migrator");
        assert_eq!(migrate.namespace, "ops");
        assert!(migrate.rollback);
        assert_eq!(p.steps[1].runs_as, "the default ServiceAccount");
        assert_eq!(
            p.steps[1].command.as_deref(),
            Some("kubectl rollout restart deploy/api")
        );
        assert!(v.plan_note.is_none() && v.execution.is_none());
        assert_eq!(v.resource_version.as_deref(), Some("7"));
    }

    #[test]
    fn the_requester_is_told_their_approval_would_not_count() {
        let plan = plan();
        let v = decision(&pending(), Ok(Some(&plan)), Some("alice"), now());
        assert!(
            v.approvals
                .not_mine
                .unwrap()
                .contains("alice requested the Decision and cannot approve it")
        );
        let v = decision(&pending(), Ok(Some(&plan)), Some("bob"), now());
        assert!(v.approvals.approved_by_me);
    }

    #[test]
    fn a_changed_gone_or_unreadable_plan_is_said() {
        let mut changed = plan();
        changed.spec.steps.pop();
        let v = decision(&pending(), Ok(Some(&changed)), None, now());
        let warning = v.plan.unwrap().warning.unwrap();
        assert!(
            warning.contains("changed after this Decision was requested"),
            "{warning}"
        );

        let v = decision(&pending(), Ok(None), None, now());
        let p = v.plan.unwrap();
        assert!(p.warning.unwrap().contains("no longer exists in ops"));
        assert_eq!(p.check.verdict, "unknown");
        // The pinned steps are still shown: they are what an approval would confirm.
        assert_eq!(p.steps.len(), 2);

        let v = decision(&pending(), Err("forbidden".into()), None, now());
        let p = v.plan.unwrap();
        assert!(p.warning.is_none());
        assert_eq!(
            p.check.message.as_deref(),
            Some("cannot read the plan: forbidden")
        );
    }

    #[test]
    fn the_page_tells_every_refusal_in_the_api_server_s_words() {
        use crate::error::{describe_kube, testing};
        let approve = Answer::Approve {
            reason: None,
            digest: None,
        };
        for (error, message) in testing::refusals() {
            let plan_read = describe_kube(&error);
            let v = decision(&pending(), Err(plan_read), None, now());
            let told = v.plan.unwrap().check.message.unwrap();
            testing::assert_told(&told, message);
            let told = answered(&approve, "ops", "d", &Err(Refused::Api(error)));
            assert!(!told.counted);
            testing::assert_told(&told.message, message);
            let json = serde_json::to_string(&told).unwrap();
            assert!(
                !json.contains("Status {") && !json.contains("ApiError"),
                "{json}"
            );
        }
    }

    #[test]
    fn a_plan_not_pinned_yet_or_missing_is_a_note() {
        let mut d = pending();
        d.status.as_mut().unwrap().plan = None;
        let v = decision(&d, Ok(None), None, now());
        assert!(v.plan.is_none());
        assert!(v.plan_note.unwrap().contains("not found in ops"));
        let plan = plan();
        let v = decision(&d, Ok(Some(&plan)), None, now());
        assert_eq!(
            v.plan_note.as_deref(),
            Some("the plan roll-out is not pinned yet")
        );
        d.spec.plan_ref = None;
        assert!(decision(&d, Ok(None), None, now()).plan_note.is_none());
    }

    #[test]
    fn a_settled_decision_neither_counts_down_nor_asks_for_more() {
        let plan = plan();
        let approved = with_phase(pending(), "deploy-api", "Approved", Some(600));
        let v = decision(&approved, Ok(Some(&plan)), Some("alice"), now());
        assert!(!v.waiting);
        assert!(v.expires_in.is_none());
        assert!(v.approvals.still.is_none());
        assert!(v.approvals.not_mine.is_none());
    }

    #[test]
    fn the_audit_trail_or_why_it_is_missing() {
        let entry: crate::audit::Entry = serde_json::from_value(json!({
            "entry_id": "e1", "event_type": "approval_granted", "timestamp": at(0), "actor": "bob",
            "message": "approved", "seq": 3, "prev_hash": "a", "hash": "b"
        }))
        .unwrap();
        let shown = audit(Ok(vec![entry]));
        assert_eq!(shown.entries[0].event, "approval_granted");
        assert_eq!(shown.entries[0].actor, "bob");
        assert!(shown.unavailable.is_none());
        let missing = audit(Err(
            "forbidden: reading the audit log takes get on services/proxy".into(),
        ));
        assert!(missing.entries.is_empty());
        assert_eq!(
            missing.unavailable.as_deref(),
            Some(
                "the audit trail is not available: forbidden: reading the audit log takes get on services/proxy"
            )
        );
    }

    #[test]
    fn an_answer_is_told_as_the_plugin_tells_it_and_a_refusal_in_the_policy_words() {
        let approve = Answer::Approve {
            reason: None,
            digest: None,
        };
        let counted = Ok(Answered {
            me: "bob".into(),
            outcome: Outcome::Counted {
                phase: "Approved".into(),
                progress: "2/2".into(),
            },
            confirmed: None,
        });
        assert_eq!(
            answered(&approve, "ops", "d", &counted),
            AnswerView {
                counted: true,
                message: "approved ops/d as bob (2/2); it is now Approved".into()
            }
        );
        let ignored = Ok(Answered {
            me: "bob".into(),
            outcome: Outcome::Ignored {
                answer: "approval".into(),
                reason: "it confirms another plan".into(),
            },
            confirmed: None,
        });
        let told = answered(&approve, "ops", "d", &ignored);
        assert!(!told.counted);
        assert_eq!(
            told.message,
            "your approval does not count: it confirms another plan"
        );
        let denied = Err(Refused::Denied(
            "decisions.decisiongate.io \"d\" is forbidden: ValidatingAdmissionPolicy 'decision-gate-answers' with binding 'decision-gate-answers' denied request: dave may not answer Decisions in namespace ops".into(),
        ));
        let told = answered(&approve, "ops", "d", &denied);
        assert!(!told.counted);
        assert_eq!(
            told.message,
            "refused by the admission policy decision-gate-answers: dave may not answer Decisions in namespace ops"
        );
        let reject = Answer::Reject {
            reason: "no".into(),
        };
        assert_eq!(
            answered(
                &reject,
                "ops",
                "d",
                &Err(Refused::NotWaiting("Approved".into()))
            )
            .message,
            "cannot reject d: it is Approved, not waiting for an answer"
        );
        assert_eq!(
            answered(&reject, "ops", "d", &Err(Refused::NotFound)).message,
            "no Decision d in namespace ops"
        );
    }
}

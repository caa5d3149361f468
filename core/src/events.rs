//! What happens to a Decision, in words: each event becomes one audit line and one
//! Kubernetes Event. Both state machines ([`crate::lifecycle`] and [`crate::execution`])
//! emit these; neither knows how they are written down.

use chrono::{DateTime, Utc};

use crate::api::decision::{Evaluation, RiskAssessment};
use crate::api::{Approvers, ExecutionMode};

/// Something that happened to a Decision. Each becomes one audit line and one Kubernetes
/// Event.
#[derive(Clone, Debug, PartialEq)]
pub enum DecisionEvent {
    Requested {
        requested_by: Option<String>,
        on_behalf_of: Option<String>,
    },
    PolicyEvaluated {
        evaluation: Evaluation,
        risk: RiskAssessment,
        reevaluation: bool,
    },
    ApprovalRequested {
        required: u32,
        approvers: Approvers,
    },
    Escalated {
        required: u32,
        approvers: Approvers,
    },
    AutoApproved {
        by: String,
        message: String,
    },
    AutoRejected {
        by: String,
        message: String,
    },
    ApprovalGranted {
        approver: String,
        reason: Option<String>,
        approvals: u32,
        required: u32,
        /// What tells this giving of the approval from another ([`crate::answers::Given::key`]):
        /// a second approval by the same person (after the first lapsed) is another event.
        given: String,
        /// The approver's groups as the API server authenticated them, when recorded.
        groups: Option<Vec<String>>,
        /// Who gave it by impersonating the approver, as the API server reported it.
        impersonator: Option<String>,
        /// Whether the admission policies verified it.
        verified: bool,
        service_account: bool,
    },
    /// The approval was not used in time: the plan had not started when it ran out.
    ApprovalLapsed {
        approved_at: DateTime<Utc>,
        valid_until: DateTime<Utc>,
        approvers: Vec<String>,
    },
    /// An approval that counted no longer does: the policies changed, and the rule that
    /// decides now does not admit its approver.
    ApprovalDiscounted {
        approver: String,
        why: String,
    },
    ApprovalRejected {
        rejected_by: String,
        reason: String,
        verified: bool,
    },
    /// The Decision was deleted; the audit line keeps its last state.
    Deleted {
        /// Who deleted it, where the API server said so.
        by: Option<String>,
    },
    Expired {
        expires_at: DateTime<Utc>,
    },
    /// A Decision that still waits is close to expiring: people are reminded, once per
    /// configured reminder.
    Reminded {
        /// The reminder's `before`, as configured.
        before: String,
        expires_at: DateTime<Utc>,
    },
    AnswerIgnored {
        user: String,
        answer: &'static str,
        why: String,
        /// The approval's `approved-at`, which tells two attempts of one person apart.
        stamp: Option<String>,
    },
    /// The Decision names a plan that cannot be pinned yet.
    WaitingForPlan {
        plan: String,
        message: String,
    },
    /// Something that happened while running the Decision's plan.
    Execution(ExecutionEvent),
}

impl DecisionEvent {
    /// The audit log's `event_type`.
    pub fn event_type(&self) -> &'static str {
        match self {
            DecisionEvent::Requested { .. } => "decision_requested",
            DecisionEvent::PolicyEvaluated { .. } => "policy_evaluated",
            DecisionEvent::ApprovalRequested { .. } => "approval_requested",
            DecisionEvent::Escalated { .. } => "escalated",
            DecisionEvent::AutoApproved { .. } => "auto_approved",
            DecisionEvent::AutoRejected { .. } => "auto_rejected",
            DecisionEvent::ApprovalGranted { .. } => "approval_granted",
            DecisionEvent::ApprovalDiscounted { .. } => "approval_discounted",
            DecisionEvent::ApprovalRejected { .. } => "approval_rejected",
            DecisionEvent::Deleted { .. } => "decision_deleted",
            DecisionEvent::Expired { .. } => "expired",
            DecisionEvent::Reminded { .. } => "reminded",
            DecisionEvent::AnswerIgnored { .. } => "answer_ignored",
            DecisionEvent::WaitingForPlan { .. } => "waiting_for_plan",
            DecisionEvent::ApprovalLapsed { .. } => "approval_lapsed",
            DecisionEvent::Execution(e) => e.event_type(),
        }
    }

    /// The Kubernetes Event's reason.
    pub fn reason(&self) -> &'static str {
        match self {
            DecisionEvent::Requested { .. } => "Requested",
            DecisionEvent::PolicyEvaluated {
                reevaluation: false,
                ..
            } => "PolicyEvaluated",
            DecisionEvent::PolicyEvaluated {
                reevaluation: true, ..
            } => "Reevaluated",
            DecisionEvent::ApprovalRequested { .. } => "ApprovalRequested",
            DecisionEvent::Escalated { .. } => "Escalated",
            DecisionEvent::AutoApproved { .. } => "AutoApproved",
            DecisionEvent::AutoRejected { .. } => "AutoRejected",
            DecisionEvent::ApprovalGranted { .. } => "ApprovalGranted",
            DecisionEvent::ApprovalDiscounted { .. } => "ApprovalDiscounted",
            DecisionEvent::ApprovalRejected { .. } => "Rejected",
            DecisionEvent::Deleted { .. } => "Deleted",
            DecisionEvent::Expired { .. } => "Expired",
            DecisionEvent::Reminded { .. } => "Reminded",
            DecisionEvent::AnswerIgnored { .. } => "AnswerIgnored",
            DecisionEvent::WaitingForPlan { .. } => "WaitingForPlan",
            DecisionEvent::ApprovalLapsed { .. } => "ApprovalLapsed",
            DecisionEvent::Execution(e) => e.reason(),
        }
    }

    /// Whether the Event is a warning.
    pub fn is_warning(&self) -> bool {
        matches!(
            self,
            DecisionEvent::AutoRejected { .. }
                | DecisionEvent::ApprovalRejected { .. }
                | DecisionEvent::Expired { .. }
                | DecisionEvent::AnswerIgnored { .. }
                | DecisionEvent::ApprovalDiscounted { .. }
                | DecisionEvent::Deleted { .. }
        ) || matches!(self, DecisionEvent::Execution(e) if e.is_warning())
    }

    /// Who caused it: a user, a policy rule, or the operator.
    pub fn actor(&self) -> String {
        match self {
            DecisionEvent::Requested { requested_by, .. } => {
                requested_by.clone().unwrap_or_else(|| "unknown".to_owned())
            }
            DecisionEvent::AutoApproved { by, .. } | DecisionEvent::AutoRejected { by, .. } => {
                by.clone()
            }
            DecisionEvent::ApprovalGranted { approver, .. } => approver.clone(),
            DecisionEvent::ApprovalRejected { rejected_by, .. } => rejected_by.clone(),
            DecisionEvent::AnswerIgnored { user, .. } => user.clone(),
            DecisionEvent::Deleted { by: Some(by) } => by.clone(),
            DecisionEvent::Deleted { by: None } => "unknown".to_owned(),
            DecisionEvent::Execution(e) => e.actor(),
            _ => "decision-gate".to_owned(),
        }
    }

    /// What distinguishes this event from others of its type on the same Decision, so
    /// that writing it twice (a retried reconcile, a restart) records it once.
    pub fn discriminator(&self) -> String {
        match self {
            DecisionEvent::PolicyEvaluated { evaluation, .. } => evaluation.policy_set.clone(),
            DecisionEvent::ApprovalGranted { given, .. } => given.clone(),
            DecisionEvent::ApprovalDiscounted { approver, why } => format!("{approver}/{why}"),
            DecisionEvent::ApprovalLapsed { valid_until, .. } => valid_until.to_rfc3339(),
            DecisionEvent::AnswerIgnored {
                user,
                answer,
                why,
                stamp,
            } => match stamp {
                None => format!("{user}/{answer}/{why}"),
                Some(stamp) => format!("{user}@{stamp}/{answer}/{why}"),
            },
            DecisionEvent::WaitingForPlan { message, .. } => message.clone(),
            // One reminder per `before` and expiry: a Decision whose expiry moved (its
            // policies changed) may be reminded again.
            DecisionEvent::Reminded { before, expires_at } => {
                format!("{before}@{}", expires_at.to_rfc3339())
            }
            DecisionEvent::Execution(e) => e.discriminator(),
            _ => String::new(),
        }
    }

    /// The sentence for people: the Event's note and the audit line's message.
    pub fn note(&self) -> String {
        match self {
            DecisionEvent::Requested {
                requested_by,
                on_behalf_of,
            } => format!(
                "requested{}{}",
                requested_by
                    .as_deref()
                    .map(|who| format!(" by {who}"))
                    .unwrap_or_default(),
                on_behalf_of
                    .as_deref()
                    .map(|who| format!(" on behalf of {who}"))
                    .unwrap_or_default()
            ),
            DecisionEvent::PolicyEvaluated {
                evaluation,
                risk,
                reevaluation,
            } => format!(
                "{}risk {} (score {}); {}",
                if *reevaluation {
                    "the policies changed: "
                } else {
                    ""
                },
                risk.level,
                risk.score,
                evaluation.message
            ),
            DecisionEvent::ApprovalRequested {
                required,
                approvers,
            } => {
                format!("waiting for {required} approval(s){}", describe(approvers))
            }
            DecisionEvent::Escalated {
                required,
                approvers,
            } => {
                format!(
                    "escalated: waiting for {required} approval(s){}",
                    describe(approvers)
                )
            }
            DecisionEvent::AutoApproved { by, message } => format!("approved by {by}: {message}"),
            DecisionEvent::AutoRejected { by, message } => format!("rejected by {by}: {message}"),
            DecisionEvent::ApprovalGranted {
                approver,
                reason,
                approvals,
                required,
                verified,
                service_account,
                impersonator,
                ..
            } => format!(
                "approved by {}{approver}{} ({approvals}/{required}){}{}",
                if *service_account {
                    "ServiceAccount "
                } else {
                    ""
                },
                impersonator
                    .as_deref()
                    .map(|i| format!(", given through {i}"))
                    .unwrap_or_default(),
                if *verified { "" } else { ", unverified" },
                reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ),
            DecisionEvent::ApprovalRejected {
                rejected_by,
                reason,
                verified,
            } => {
                format!(
                    "rejected by {rejected_by}{}: {reason}",
                    if *verified { "" } else { " (unverified)" }
                )
            }
            DecisionEvent::ApprovalDiscounted { approver, why } => {
                format!("the approval by {approver} no longer counts: {why}")
            }
            DecisionEvent::Deleted { by } => match by {
                Some(by) => format!("deleted by {by}; its last state is in the audit log"),
                None => "deleted (the API server did not say by whom); its last state is in the audit log".to_owned(),
            },
            DecisionEvent::Expired { expires_at } => {
                format!("nobody answered before {}", expires_at.to_rfc3339())
            }
            DecisionEvent::Reminded { before, expires_at } => format!(
                "still waiting for an answer: it expires at {} (reminder {before} before)",
                expires_at.to_rfc3339()
            ),
            DecisionEvent::AnswerIgnored {
                user, answer, why, ..
            } => {
                format!("the {answer} by {user} does not count: {why}")
            }
            DecisionEvent::WaitingForPlan { message, .. } => message.clone(),
            DecisionEvent::ApprovalLapsed {
                approved_at,
                valid_until,
                approvers,
            } => lapse_message(*approved_at, *valid_until, approvers),
            DecisionEvent::Execution(e) => e.note(),
        }
    }
}

/// The execution-related events.
#[derive(Clone, Debug, PartialEq)]
pub enum ExecutionEvent {
    Started {
        mode: ExecutionMode,
        note: Option<String>,
    },
    Waiting {
        why: String,
    },
    StepStarted {
        step: String,
        attempt: u32,
        job: Option<String>,
    },
    StepExecuted {
        step: String,
        attempt: u32,
        result: Option<String>,
    },
    StepWouldExecute {
        step: String,
    },
    StepFailed {
        step: String,
        attempt: u32,
        message: String,
        retrying: bool,
    },
    Completed {
        mode: ExecutionMode,
    },
    Failed {
        message: String,
    },
    RollbackStarted {
        steps: Vec<String>,
    },
    RollbackAwaitingApproval {
        steps: Vec<String>,
    },
    RollbackApproved {
        by: String,
    },
    StepRolledBack {
        step: String,
        result: Option<String>,
    },
    RollbackFailed {
        step: String,
        message: String,
    },
    RolledBack,
}

impl ExecutionEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            ExecutionEvent::Started { .. } => "execution_started",
            ExecutionEvent::Waiting { .. } => "execution_waiting",
            ExecutionEvent::StepStarted { .. } => "step_started",
            ExecutionEvent::StepExecuted { .. } => "step_executed",
            ExecutionEvent::StepWouldExecute { .. } => "step_would_execute",
            ExecutionEvent::StepFailed { .. } => "step_failed",
            ExecutionEvent::Completed { .. } => "execution_completed",
            ExecutionEvent::Failed { .. } => "execution_failed",
            ExecutionEvent::RollbackStarted { .. } => "rollback_started",
            ExecutionEvent::RollbackAwaitingApproval { .. } => "rollback_awaiting_approval",
            ExecutionEvent::RollbackApproved { .. } => "rollback_approved",
            ExecutionEvent::StepRolledBack { .. } => "step_rolled_back",
            ExecutionEvent::RollbackFailed { .. } => "rollback_failed",
            ExecutionEvent::RolledBack => "rolled_back",
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            ExecutionEvent::Started { .. } => "ExecutionStarted",
            ExecutionEvent::Waiting { .. } => "ExecutionWaiting",
            ExecutionEvent::StepStarted { .. } => "StepStarted",
            ExecutionEvent::StepExecuted { .. } => "StepExecuted",
            ExecutionEvent::StepWouldExecute { .. } => "StepWouldExecute",
            ExecutionEvent::StepFailed { .. } => "StepFailed",
            ExecutionEvent::Completed { .. } => "ExecutionCompleted",
            ExecutionEvent::Failed { .. } => "ExecutionFailed",
            ExecutionEvent::RollbackStarted { .. } => "RollbackStarted",
            ExecutionEvent::RollbackAwaitingApproval { .. } => "RollbackAwaitingApproval",
            ExecutionEvent::RollbackApproved { .. } => "RollbackApproved",
            ExecutionEvent::StepRolledBack { .. } => "StepRolledBack",
            ExecutionEvent::RollbackFailed { .. } => "RollbackFailed",
            ExecutionEvent::RolledBack => "RolledBack",
        }
    }

    pub fn is_warning(&self) -> bool {
        matches!(
            self,
            ExecutionEvent::Waiting { .. }
                | ExecutionEvent::StepFailed { .. }
                | ExecutionEvent::Failed { .. }
                | ExecutionEvent::RollbackAwaitingApproval { .. }
                | ExecutionEvent::RollbackFailed { .. }
        )
    }

    pub fn step(&self) -> Option<&str> {
        match self {
            ExecutionEvent::StepStarted { step, .. }
            | ExecutionEvent::StepExecuted { step, .. }
            | ExecutionEvent::StepWouldExecute { step }
            | ExecutionEvent::StepFailed { step, .. }
            | ExecutionEvent::StepRolledBack { step, .. }
            | ExecutionEvent::RollbackFailed { step, .. } => Some(step),
            _ => None,
        }
    }

    pub fn discriminator(&self) -> String {
        match self {
            ExecutionEvent::StepStarted { step, attempt, .. }
            | ExecutionEvent::StepExecuted { step, attempt, .. }
            | ExecutionEvent::StepFailed { step, attempt, .. } => format!("{step}/{attempt}"),
            ExecutionEvent::Waiting { why } => why.clone(),
            other => other.step().unwrap_or_default().to_owned(),
        }
    }

    pub fn note(&self) -> String {
        match self {
            ExecutionEvent::Started { mode, note } => match note {
                Some(n) => format!("execution started in {mode} mode: {n}"),
                None => format!("execution started in {mode} mode"),
            },
            ExecutionEvent::Waiting { why } => format!("execution waits: {why}"),
            ExecutionEvent::StepStarted { step, attempt, job } => match job {
                Some(job) => format!("step {step} started (attempt {attempt}) as Job {job}"),
                None => format!("step {step} started (attempt {attempt})"),
            },
            ExecutionEvent::StepExecuted { step, result, .. } => match result {
                Some(r) if !r.is_empty() => format!("step {step} succeeded: {r}"),
                _ => format!("step {step} succeeded"),
            },
            ExecutionEvent::StepWouldExecute { step } => {
                format!(
                    "WOULD EXECUTE step {step}: the API server admitted its Job in a dry run; nothing was created"
                )
            }
            ExecutionEvent::StepFailed {
                step,
                attempt,
                message,
                retrying,
            } => format!(
                "step {step} failed (attempt {attempt}): {message}{}",
                if *retrying { "; retrying" } else { "" }
            ),
            ExecutionEvent::Completed { mode } => match mode {
                ExecutionMode::DryRun => {
                    "dry run completed: every step would execute; nothing was run".to_owned()
                }
                _ => format!("execution completed in {mode} mode"),
            },
            ExecutionEvent::Failed { message } => format!("execution failed: {message}"),
            ExecutionEvent::RollbackStarted { steps } => {
                format!("rolling back {} in this order", steps.join(", "))
            }
            ExecutionEvent::RollbackAwaitingApproval { steps } => format!(
                "a rollback of {} awaits approval: annotate rollback-approved-by=<you>",
                steps.join(", ")
            ),
            ExecutionEvent::RollbackApproved { by } => format!("rollback approved by {by}"),
            ExecutionEvent::StepRolledBack { step, .. } => format!("step {step} was rolled back"),
            ExecutionEvent::RollbackFailed { step, message } => {
                format!("the rollback of step {step} failed: {message}")
            }
            ExecutionEvent::RolledBack => "every completed step was rolled back".to_owned(),
        }
    }

    pub fn actor(&self) -> String {
        match self {
            ExecutionEvent::RollbackApproved { by } => by.clone(),
            _ => "decision-gate".to_owned(),
        }
    }

    pub fn result(&self) -> Option<String> {
        match self {
            ExecutionEvent::StepExecuted { result, .. }
            | ExecutionEvent::StepRolledBack { result, .. } => result.clone(),
            ExecutionEvent::StepFailed { message, .. }
            | ExecutionEvent::Failed { message }
            | ExecutionEvent::RollbackFailed { message, .. } => Some(message.clone()),
            _ => None,
        }
    }
}

fn describe(approvers: &Approvers) -> String {
    let mut parts = Vec::new();
    if !approvers.users.is_empty() {
        parts.push(format!("users {}", approvers.users.join(", ")));
    }
    if !approvers.groups.is_empty() {
        parts.push(format!("groups {}", approvers.groups.join(", ")));
    }
    if !approvers.service_accounts.is_empty() {
        parts.push(format!(
            "ServiceAccounts {}",
            approvers.service_accounts.join(", ")
        ));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" from {}", parts.join(" or "))
    }
}

pub(crate) fn lapse_message(
    approved_at: DateTime<Utc>,
    valid_until: DateTime<Utc>,
    approvers: &[String],
) -> String {
    format!(
        "the approval{} of {} held until {} and the plan had not started by then; approve again",
        if approvers.len() == 1 { "" } else { "s" },
        approved_at.to_rfc3339(),
        valid_until.to_rfc3339()
    )
}

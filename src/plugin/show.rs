//! `kubectl decision show`: everything a reviewer needs before deciding.

use std::fmt::Write;

use chrono::{DateTime, Utc};

use super::{age, created, phase_text};
use crate::api::decision::{Outcome, StepStatus};
use crate::api::{Decision, DecisionPhase, ExecutionPlan};

/// Everything a reviewer needs before deciding: what `kubectl decision show` prints of `d`
/// (made printable by the caller) and of the plan it names, as read from the API server.
/// Only the plan's digest is compared with the pinned one, so the plan must not be escaped
/// first: an escaped newline is another plan.
pub fn show(d: &Decision, plan: Option<&ExecutionPlan>, now: DateTime<Utc>) -> String {
    let mut o = String::new();
    let status = d.status.clone().unwrap_or_default();
    let name = d.metadata.name.as_deref().unwrap_or_default();
    let ns = d.metadata.namespace.as_deref().unwrap_or_default();
    let _ = writeln!(
        o,
        "Decision {ns}/{name}  ({}, {} old)",
        phase_text(d),
        age(created(d), now)
    );
    if let Some(digest) = &status.digest {
        let _ = writeln!(
            o,
            "Digest {digest}\n  (this Decision: its uid, its request and its pinned plan; an approval confirms it)"
        );
    }
    let _ = writeln!(o, "\nRequest");
    let _ = writeln!(o, "  action:       {}", d.spec.action_type);
    let _ = writeln!(o, "  description:  {}", d.spec.description);
    let _ = writeln!(o, "  criticality:  {}", d.spec.criticality);
    if let Some(p) = d.spec.priority {
        let _ = writeln!(o, "  priority:     {p}");
    }
    if let Some(m) = d.spec.estimated_duration_minutes {
        let _ = writeln!(o, "  duration:     {m} minutes (estimated)");
    }
    if let Some(s) = &d.spec.source {
        let _ = writeln!(o, "  source:       {s}");
    }
    let _ = writeln!(
        o,
        "  requested by: {}",
        status.requested_by.as_deref().unwrap_or("unknown")
    );
    if let Some(context) = &d.spec.context {
        let _ = writeln!(o, "  context:");
        for (k, v) in context {
            let _ = writeln!(o, "    {k}: {v}");
        }
    }
    if let Some(risk) = &status.risk {
        let _ = writeln!(o, "\nRisk: {} (score {})", risk.level, risk.score);
        for reason in &risk.reasons {
            let _ = writeln!(o, "  - {reason}");
        }
    }
    if let Some(e) = &status.evaluation {
        let _ = writeln!(o, "\nEvaluation: {}", e.outcome);
        let decided_by = match (&e.policy, &e.rule) {
            (Some(p), Some(r)) => format!("policy {p}, rule {r}"),
            _ => "no rule matched".to_owned(),
        };
        let _ = writeln!(o, "  decided by:   {decided_by}");
        let _ = writeln!(o, "  why:          {}", e.message);
        if matches!(e.outcome, Outcome::RequireApproval | Outcome::Escalate) {
            let _ = writeln!(o, "  needs:        {} approval(s)", e.required_approvals);
            let who = super::approvers(&e.approvers);
            if !who.is_empty() {
                let _ = writeln!(o, "  from:         {who}");
            }
        }
    }
    if let Some(at) = status.expires_at
        && status.phase.is_some_and(DecisionPhase::is_awaiting_answer)
    {
        let _ = writeln!(
            o,
            "  expires:      {} (in {})",
            at.to_rfc3339(),
            age(Some(now), at)
        );
    }
    if let Some(valid_for) = status
        .evaluation
        .as_ref()
        .and_then(|e| e.approval_valid_for.as_ref())
    {
        let until = status
            .approval_valid_until
            .map(|t| format!(": this approval holds until {}", t.to_rfc3339()))
            .unwrap_or_default();
        let _ = writeln!(
            o,
            "  approval holds {valid_for} before the plan must start{until}"
        );
    }
    if let Some(at) = d.spec.not_before {
        let _ = writeln!(
            o,
            "  not before:   {} (the plan starts no earlier)",
            at.to_rfc3339()
        );
    }
    let _ = writeln!(
        o,
        "\nApprovals: {}",
        status.approval_progress.as_deref().unwrap_or("-")
    );
    for a in &status.approvals {
        let reason = a
            .reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        let lapsed = match a.lapsed_at {
            Some(t) => format!(" (lapsed at {}; approve again)", t.to_rfc3339()),
            None if !crate::answers::counts(a, &status) => {
                " (does not count under the rule that decides now)".to_owned()
            }
            None => String::new(),
        };
        let through = a
            .impersonator
            .as_deref()
            .map(|i| format!(", given through {i}"))
            .unwrap_or_default();
        let _ = writeln!(
            o,
            "  - {}{through} at {}{reason}{lapsed}",
            a.approver,
            a.at.to_rfc3339()
        );
    }
    if let Some(r) = &status.rejection {
        let _ = writeln!(
            o,
            "Rejected by {} at {}: {}",
            r.rejected_by,
            r.at.to_rfc3339(),
            r.reason
        );
    }
    for i in &status.ignored_answers {
        let _ = writeln!(o, "  ignored: {} by {}: {}", i.answer, i.user, i.reason);
    }
    if let Some(plan_ref) = &d.spec.plan_ref {
        match &status.plan {
            Some(pinned) => {
                let floor = pinned
                    .criticality
                    .map(|c| format!(", at least {c}"))
                    .unwrap_or_default();
                let _ = writeln!(
                    o,
                    "\nPlan {} (pinned {}): {} mode, for {}{floor}",
                    pinned.name,
                    pinned.pinned_at.to_rfc3339(),
                    pinned.mode,
                    pinned.action_types.join(", ")
                );
                let _ = writeln!(o, "  plan digest:  {}", pinned.digest);
                for (i, step) in pinned.steps.iter().enumerate() {
                    let undo = if step.rollback {
                        " (can be rolled back)"
                    } else {
                        ""
                    };
                    let _ = writeln!(o, "  {}. {}{undo}", i + 1, step.name);
                    let _ = writeln!(o, "       image:   {}", step.images.join(", "));
                    if let Some(command) = &step.command {
                        let _ = writeln!(o, "       runs:    {command}");
                    }
                    let _ = writeln!(
                        o,
                        "       as:      {} in {ns}",
                        step.service_account
                            .as_deref()
                            .map_or("the default ServiceAccount".to_owned(), |sa| format!(
                                "ServiceAccount {sa}"
                            ))
                    );
                }
                let changed = plan.and_then(|p| crate::pin::changed(pinned, p));
                match (plan, changed) {
                    (None, _) => {
                        let _ = writeln!(
                            o,
                            "  ! the plan no longer exists in {ns}; this Decision cannot run"
                        );
                    }
                    (Some(_), Some(why)) => {
                        let _ = writeln!(o, "  ! {why}");
                    }
                    (Some(_), None) => {}
                }
            }
            None if plan.is_none() => {
                let _ = writeln!(
                    o,
                    "\nPlan {}: not found in {ns}; nobody is asked before it exists",
                    plan_ref.name
                );
            }
            None => {
                let _ = writeln!(o, "\nPlan {}: not pinned yet", plan_ref.name);
            }
        }
    }
    if let Some(digest) = &status.digest
        && status.phase.is_some_and(DecisionPhase::is_awaiting_answer)
    {
        let _ = writeln!(
            o,
            "\nApprove exactly this with: kubectl decision approve {name} -n {ns} --digest {}",
            crate::pin::short(digest)
        );
    }
    if let Some(x) = &status.execution {
        let _ = writeln!(o, "\nExecution: {}", x.mode);
        if let Some(why) = &x.mode_reason {
            let _ = writeln!(o, "  ({why})");
        }
        for step in &x.steps {
            let _ = writeln!(o, "  {}", step_line(step));
        }
        if let Some(rollback) = &x.rollback {
            let _ = writeln!(o, "  rollback ({}): {}", rollback.strategy, rollback.phase);
            for step in &rollback.steps {
                let _ = writeln!(o, "    {}", step_line(step));
            }
        }
    }
    o
}

/// One step of an execution or rollback, in one line: phase, time, attempts, an exit code
/// other than 0, result.
pub fn step_line(s: &StepStatus) -> String {
    let mut line = format!("{:<20} {}", s.name, s.phase);
    if let Some(d) = s.duration_seconds {
        let _ = write!(line, " in {d:.1}s");
    }
    if s.attempts > 1 {
        let _ = write!(line, " after {} attempts", s.attempts);
    }
    if let Some(code) = s.exit_code.filter(|c| *c != 0) {
        let _ = write!(line, " (exit {code})");
    }
    if let Some(r) = s.result.as_ref().or(s.message.as_ref()) {
        let _ = write!(line, " — {r}");
    }
    line
}

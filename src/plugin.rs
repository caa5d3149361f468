//! What `kubectl decision` prints, as pure functions of the objects it read: the pending
//! list, a reviewer's view of one Decision, and the explanation of its evaluation.

use std::fmt::Write;

use chrono::{DateTime, Utc};

use crate::api::common::to_chrono;
use crate::api::decision::{Outcome, StepStatus};
use crate::api::{ApprovalPolicy, Decision, DecisionPhase, ExecutionPlan};
use crate::policy::{self, Policy, Subject};

/// An API server refusal, plainly: which admission policy said no, and its reason.
pub fn refusal(message: &str) -> String {
    let Some((head, reason)) = message.split_once("denied request: ") else {
        return format!("refused: {message}");
    };
    let policy = head
        .split_once("ValidatingAdmissionPolicy '")
        .and_then(|(_, rest)| rest.split_once('\''))
        .map(|(name, _)| name);
    match policy {
        Some(policy) => format!("refused by the admission policy {policy}: {reason}"),
        None => format!("refused: {reason}"),
    }
}

/// The token to pass on to the operator, from the `Authorization` header the kubeconfig's
/// credentials make (none for a client certificate). The operator checks it with the API
/// server (TokenReview), which can vouch for a token but not for a certificate.
pub fn forwardable_token(
    authorization: Option<&str>,
    client_certificate: bool,
) -> Result<String, String> {
    let advice = "use a kubeconfig whose user authenticates with a token (a token, tokenFile, \
                  exec plugin or OIDC provider), for example the token of a ServiceAccount bound to \
                  the ClusterRole decision-gate-auditor (kubectl create token NAME)";
    match authorization.map(|h| h.split_once(' ').unwrap_or((h, ""))) {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim().to_owned())
        }
        Some(_) => Err(format!(
            "reading the audit log takes a bearer token, and your kubeconfig's user signs in with a \
             username and password, which the operator cannot check; {advice}"
        )),
        None if client_certificate => Err(format!(
            "reading the audit log takes a bearer token, and your kubeconfig's user authenticates \
             with a client certificate: the operator checks who you are by asking the API server \
             about your token (TokenReview), which it cannot do for a certificate; {advice}"
        )),
        None => Err(format!(
            "reading the audit log takes a bearer token, and your kubeconfig's user has no \
             credentials; {advice}"
        )),
    }
}

/// `kubectl decision history`: one line per audit entry, oldest first.
pub fn history(entries: &[crate::audit::Entry]) -> String {
    let mut o = String::new();
    for e in entries {
        let decision = e
            .decision
            .as_ref()
            .map(|d| format!("{}/{}", d.namespace, d.name))
            .unwrap_or_default();
        let _ = writeln!(
            o,
            "{}  {:<20} {:<32} {:<14} {}",
            e.timestamp.format("%Y-%m-%d %H:%M:%S"),
            e.event_type,
            decision,
            e.actor,
            e.message
        );
    }
    o
}

/// A human age, as kubectl prints it: 45s, 12m, 3h, 2d.
pub fn age(created: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    let Some(created) = created else {
        return "<unknown>".to_owned();
    };
    let s = (now - created).num_seconds().max(0);
    match s {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn created(d: &Decision) -> Option<DateTime<Utc>> {
    d.metadata
        .creation_timestamp
        .as_ref()
        .map(|t| to_chrono(&t.0))
}

fn phase_text(d: &Decision) -> String {
    d.status
        .as_ref()
        .and_then(|s| s.phase)
        .map(|p| format!("{p:?}"))
        .unwrap_or_else(|| "New".to_owned())
}

/// Why a Decision needs approval, in one line: the deciding rule and what it said.
pub fn why(d: &Decision) -> String {
    let Some(status) = &d.status else {
        return "not evaluated yet".to_owned();
    };
    match &status.evaluation {
        Some(e) => match (&e.policy, &e.rule) {
            (Some(p), Some(r)) => format!("{p}/{r}: {:?}", e.outcome),
            _ => "no rule matched".to_owned(),
        },
        None => "not evaluated yet".to_owned(),
    }
}

/// The table of `kubectl decision list`.
pub fn list_table(decisions: &[Decision], all_namespaces: bool, now: DateTime<Utc>) -> String {
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut header = vec![
        "NAME",
        "ACTION",
        "CRITICALITY",
        "RISK",
        "PHASE",
        "APPROVALS",
        "AGE",
        "WHY",
    ];
    if all_namespaces {
        header.insert(0, "NAMESPACE");
    }
    rows.push(header.iter().map(|h| h.to_string()).collect());
    for d in decisions {
        let status = d.status.clone().unwrap_or_default();
        let mut row = vec![
            d.metadata.name.clone().unwrap_or_default(),
            d.spec.action_type.clone(),
            format!("{:?}", d.spec.criticality),
            status
                .risk
                .as_ref()
                .map(|r| format!("{:?}", r.level))
                .unwrap_or_default(),
            phase_text(d),
            status.approval_progress.clone().unwrap_or_default(),
            age(created(d), now),
            why(d),
        ];
        if all_namespaces {
            row.insert(0, d.metadata.namespace.clone().unwrap_or_default());
        }
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let last = row.len() - 1;
        for (c, cell) in row.iter().enumerate() {
            if c == last {
                out.push_str(cell);
            } else {
                let _ = write!(out, "{cell:<width$}   ", width = widths[c]);
            }
        }
        out.push('\n');
    }
    out
}

/// Everything a reviewer needs before deciding.
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
    let _ = writeln!(o, "\nRequest");
    let _ = writeln!(o, "  action:       {}", d.spec.action_type);
    let _ = writeln!(o, "  description:  {}", d.spec.description);
    let _ = writeln!(o, "  criticality:  {:?}", d.spec.criticality);
    if let Some(p) = d.spec.priority {
        let _ = writeln!(o, "  priority:     {p:?}");
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
        let _ = writeln!(o, "\nRisk: {:?} (score {})", risk.level, risk.score);
        for reason in &risk.reasons {
            let _ = writeln!(o, "  - {reason}");
        }
    }
    if let Some(e) = &status.evaluation {
        let _ = writeln!(o, "\nEvaluation: {:?}", e.outcome);
        let decided_by = match (&e.policy, &e.rule) {
            (Some(p), Some(r)) => format!("policy {p}, rule {r}"),
            _ => "no rule matched".to_owned(),
        };
        let _ = writeln!(o, "  decided by:   {decided_by}");
        let _ = writeln!(o, "  why:          {}", e.message);
        if matches!(e.outcome, Outcome::RequireApproval | Outcome::Escalate) {
            let _ = writeln!(o, "  needs:        {} approval(s)", e.required_approvals);
            let mut who = Vec::new();
            if !e.approvers.users.is_empty() {
                who.push(format!("users {}", e.approvers.users.join(", ")));
            }
            if !e.approvers.groups.is_empty() {
                who.push(format!("groups {}", e.approvers.groups.join(", ")));
            }
            if !who.is_empty() {
                let _ = writeln!(o, "  from:         {}", who.join("; "));
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
        let lapsed = a
            .lapsed_at
            .map(|t| format!(" (lapsed at {}; approve again)", t.to_rfc3339()))
            .unwrap_or_default();
        let _ = writeln!(
            o,
            "  - {} at {}{reason}{lapsed}",
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
                    .map(|c| format!(", at least {c:?}"))
                    .unwrap_or_default();
                let _ = writeln!(
                    o,
                    "\nPlan {} (pinned {}): {:?} mode, for {}{floor}",
                    pinned.name,
                    pinned.pinned_at.to_rfc3339(),
                    pinned.mode,
                    pinned.action_types.join(", ")
                );
                let _ = writeln!(o, "  digest:       {}", pinned.digest);
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
                if status.phase.is_some_and(DecisionPhase::is_awaiting_answer) {
                    let _ = writeln!(
                        o,
                        "  approve exactly this with: kubectl decision approve {name} -n {ns} (it confirms {})",
                        crate::pin::short(&pinned.digest)
                    );
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
    if let Some(x) = &status.execution {
        let _ = writeln!(o, "\nExecution: {:?}", x.mode);
        if let Some(why) = &x.mode_reason {
            let _ = writeln!(o, "  ({why})");
        }
        for step in &x.steps {
            let _ = writeln!(o, "  {}", step_line(step));
        }
        if let Some(rollback) = &x.rollback {
            let _ = writeln!(
                o,
                "  rollback ({:?}): {:?}",
                rollback.strategy, rollback.phase
            );
            for step in &rollback.steps {
                let _ = writeln!(o, "    {}", step_line(step));
            }
        }
    }
    o
}

fn step_line(s: &StepStatus) -> String {
    let mut line = format!("{:<20} {:?}", s.name, s.phase);
    if let Some(d) = s.duration_seconds {
        let _ = write!(line, " in {d:.1}s");
    }
    if s.attempts > 1 {
        let _ = write!(line, " after {} attempts", s.attempts);
    }
    if let Some(r) = s.result.as_ref().or(s.message.as_ref()) {
        let _ = write!(line, " — {r}");
    }
    line
}

/// Which policy and rule decide the Decision now, and why every earlier rule did not.
pub fn explain(d: &Decision, policies: &[ApprovalPolicy]) -> String {
    let risk = d
        .status
        .as_ref()
        .and_then(|s| s.risk.clone())
        .unwrap_or_else(|| crate::risk::assess(&d.spec));
    let views: Vec<Policy<'_>> = policies.iter().map(Policy::of).collect();
    let subject = Subject {
        name: d.metadata.name.as_deref().unwrap_or_default(),
        namespace: d.metadata.namespace.as_deref().unwrap_or_default(),
        spec: &d.spec,
        risk: &risk,
    };
    let verdict = policy::evaluate(&subject, &views);
    let mut o = String::new();
    let _ = writeln!(
        o,
        "Risk {:?} (score {}): {}",
        risk.level,
        risk.score,
        risk.reasons.join("; ")
    );
    for (policy, why) in &verdict.skipped {
        let _ = writeln!(o, "skipped policy {policy}: {why}");
    }
    for t in &verdict.trace {
        if t.matched {
            let _ = writeln!(o, "{}/{}: matches", t.policy, t.rule);
        } else {
            let _ = writeln!(o, "{}/{}: does not match: {}", t.policy, t.rule, t.why);
        }
    }
    let e = &verdict.evaluation;
    match (&e.policy, &e.rule) {
        (Some(p), Some(r)) => {
            let _ = writeln!(
                o,
                "=> decided by policy {p}, rule {r}: {:?}. {}",
                e.outcome, e.message
            );
        }
        _ => {
            let _ = writeln!(o, "=> {:?}: {}", e.outcome, e.message);
        }
    }
    if let Some(stored) = d.status.as_ref().and_then(|s| s.evaluation.as_ref())
        && (stored.policy != e.policy || stored.rule != e.rule || stored.outcome != e.outcome)
    {
        let _ = writeln!(
            o,
            "   (the Decision was evaluated as {:?} by {}; the policies have changed since)",
            stored.outcome,
            stored.rule.as_deref().unwrap_or("no rule")
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::DecisionSpec;
    use crate::api::decision::Criticality;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000, 0).unwrap()
    }

    fn decision(name: &str, action: &str) -> Decision {
        let mut d = Decision::new(
            name,
            DecisionSpec {
                description: "Deploy 2.0".into(),
                ..DecisionSpec::example(action, Criticality::High)
            },
        );
        d.metadata.namespace = Some("ops".into());
        d.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::from_second(1_800_000_000 - 300).unwrap(),
        ));
        d
    }

    #[test]
    fn only_a_bearer_token_is_passed_on_and_a_certificate_is_told_what_to_do() {
        assert_eq!(
            forwardable_token(Some("Bearer abc.def"), false),
            Ok("abc.def".into())
        );
        assert_eq!(
            forwardable_token(Some("Bearer abc"), true),
            Ok("abc".into())
        );
        let cert = forwardable_token(None, true).unwrap_err();
        assert!(
            cert.contains("client certificate") && cert.contains("TokenReview"),
            "{cert}"
        );
        assert!(cert.contains("decision-gate-auditor"), "{cert}");
        assert!(
            forwardable_token(None, false)
                .unwrap_err()
                .contains("no credentials")
        );
        assert!(
            forwardable_token(Some("Basic YTpi"), false)
                .unwrap_err()
                .contains("username and password")
        );
        assert!(forwardable_token(Some("Bearer "), false).is_err());
    }

    #[test]
    fn refusals_are_said_plainly() {
        let message = "decisions.decisiongate.io \"d\" is forbidden: ValidatingAdmissionPolicy 'decision-gate-answers' with binding 'decision-gate-answers' denied request: carol is not among the approvers";
        assert_eq!(
            refusal(message),
            "refused by the admission policy decision-gate-answers: carol is not among the approvers"
        );
        assert_eq!(refusal("no"), "refused: no");
    }

    #[test]
    fn ages_read_like_kubectl() {
        let t = |s| Some(now() - chrono::Duration::seconds(s));
        assert_eq!(age(t(45), now()), "45s");
        assert_eq!(age(t(600), now()), "10m");
        assert_eq!(age(t(3 * 3600), now()), "3h");
        assert_eq!(age(t(5 * 86400), now()), "5d");
    }

    #[test]
    fn the_list_is_a_table_with_the_reason() {
        let policy: ApprovalPolicy = yaml_serde::from_str(
            "apiVersion: decisiongate.io/v1alpha1\nkind: ApprovalPolicy\nmetadata: {name: p}\nspec: {rules: [{name: r, outcome: RequireApproval, requiredApprovals: 2}]}",
        )
        .unwrap();
        let mut d = decision("deploy-api", "deploy");
        let views = [Policy {
            name: "p",
            generation: 1,
            spec: &policy.spec,
        }];
        let advance = crate::lifecycle::advance(&crate::lifecycle::Input {
            decision: &d,
            policies: &views,
            now: now(),
            default_expiry: std::time::Duration::from_secs(3600),
            plan: None,
            answers: &crate::admission::Answers::Verified,
        });
        d.status = Some(advance.status);
        let table = list_table(&[d.clone()], true, now());
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("NAMESPACE   NAME"), "{table}");
        assert!(
            lines[1].contains("ops") && lines[1].contains("deploy-api"),
            "{table}"
        );
        assert!(
            lines[1].contains("0/2")
                && lines[1].contains("5m")
                && lines[1].ends_with("p/r: RequireApproval"),
            "{table}"
        );

        let shown = show(&d, None, now());
        assert!(
            shown.contains("Decision ops/deploy-api  (Pending, 5m old)"),
            "{shown}"
        );
        assert!(shown.contains("decided by:   policy p, rule r"), "{shown}");
        assert!(shown.contains("needs:        2 approval(s)"), "{shown}");
        assert!(shown.contains("Risk: "), "{shown}");

        let explained = explain(&d, &[policy]);
        assert!(explained.contains("p/r: matches"), "{explained}");
        assert!(
            explained.contains("=> decided by policy p, rule r: RequireApproval"),
            "{explained}"
        );
    }
}

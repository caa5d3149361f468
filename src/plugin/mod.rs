//! What `kubectl decision` prints, as pure functions of the objects it read: the pending
//! list, a reviewer's view of one Decision, and the explanation of its evaluation.

mod explain;
mod printable;
mod show;

use std::fmt::Write;

use chrono::{DateTime, Utc};

use crate::api::Decision;
use crate::api::common::to_chrono;

pub use self::explain::{explain, explain_recorded};
pub use self::printable::{printable, printable_json, printable_object};
pub use self::show::{show, step_line};

/// An API server refusal, plainly: which admission policy said no, and its reason (which
/// may quote what someone wrote: made [`printable`]).
pub fn refusal(message: &str) -> String {
    let message = printable(message);
    let message = message.as_ref();
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

/// The entries of an audit log body as the operator serves it (JSON lines), leaving out
/// the notifications' own bookkeeping.
pub fn audit_entries(body: &[u8]) -> Vec<crate::audit::Entry> {
    String::from_utf8_lossy(body)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|e: &crate::audit::Entry| !e.event_type.starts_with("notification"))
        .collect()
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
        .map(|p| p.to_string())
        .unwrap_or_else(|| "New".to_owned())
}

/// Why a Decision needs approval, in one line: the deciding rule and what it said.
pub fn why(d: &Decision) -> String {
    let Some(status) = &d.status else {
        return "not evaluated yet".to_owned();
    };
    match &status.evaluation {
        Some(e) => match (&e.policy, &e.rule) {
            (Some(p), Some(r)) => format!("{p}/{r}: {}", e.outcome),
            _ => "no rule matched".to_owned(),
        },
        None => "not evaluated yet".to_owned(),
    }
}

/// Who may approve under a rule, in words ("users a, b; groups g"); empty when the rule
/// names nobody (then anyone allowed to approve in the namespace may).
pub fn approvers(a: &crate::api::common::Approvers) -> String {
    let mut who = Vec::new();
    if !a.users.is_empty() {
        who.push(format!("users {}", a.users.join(", ")));
    }
    if !a.groups.is_empty() {
        who.push(format!("groups {}", a.groups.join(", ")));
    }
    if !a.service_accounts.is_empty() {
        who.push(format!("ServiceAccounts {}", a.service_accounts.join(", ")));
    }
    who.join("; ")
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
            d.spec.criticality.to_string(),
            status
                .risk
                .as_ref()
                .map(|r| r.level.to_string())
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

#[cfg(test)]
mod tests;

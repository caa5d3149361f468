//! What people receive: the webhook payloads for Slack, Teams and generic receivers, and
//! the e-mail.

use serde_json::{Value, json};

use super::{Notification, Trigger, WebhookFormat};

impl Notification {
    /// The pinned plan in lines people read: its name and digest, then each step.
    pub fn plan_lines(&self) -> Vec<String> {
        let Some(plan) = &self.plan else {
            return Vec::new();
        };
        let mut lines = vec![format!(
            "Plan {} ({}), digest {}",
            plan.name, plan.mode, plan.digest
        )];
        for (i, step) in plan.steps.iter().enumerate() {
            let mut line = format!("{}. {}: {}", i + 1, step.name, step.images.join(", "));
            if let Some(command) = &step.command {
                line.push_str(&format!(" `{command}`"));
            }
            if let Some(sa) = &step.service_account {
                line.push_str(&format!(" as {sa}"));
            }
            lines.push(line);
        }
        lines
    }

    pub fn summary(&self) -> String {
        format!(
            "{}: {}/{} ({}, {})",
            self.trigger.title(),
            self.decision.namespace,
            self.decision.name,
            self.action_type,
            self.criticality
        )
    }
}

/// The most characters Slack takes in a section's text, and in one of its fields.
const SLACK_SECTION_MAX: usize = 3000;
const SLACK_FIELD_MAX: usize = 2000;

/// `text` within `max` characters, its end replaced by `…` when it is cut: Slack refuses
/// a whole message with one block over its limit.
fn cut(text: String, max: usize) -> String {
    if text.chars().count() <= max {
        return text;
    }
    let mut out: String = text.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// The JSON body a webhook receives.
pub fn payload(format: WebhookFormat, n: &Notification) -> Value {
    let facts = [
        (
            "Decision",
            format!("{}/{}", n.decision.namespace, n.decision.name),
        ),
        ("Action", n.action_type.clone()),
        ("Criticality", n.criticality.clone()),
        ("Phase", n.phase.clone()),
        ("Approvals", n.approvals.clone()),
        ("Digest", n.digest.clone().unwrap_or_default()),
    ];
    match format {
        WebhookFormat::Slack => {
            let mut blocks = vec![
                json!({"type": "header", "text": {"type": "plain_text", "text": n.trigger.title()}}),
                json!({"type": "section", "text": {"type": "mrkdwn", "text": cut(format!("*{}*\n{}", n.description, n.message), SLACK_SECTION_MAX)}}),
                json!({"type": "section", "fields": facts.iter().map(|(k, v)| json!({"type": "mrkdwn", "text": cut(format!("*{k}:* {v}"), SLACK_FIELD_MAX)})).collect::<Vec<_>>()}),
            ];
            let plan = n.plan_lines();
            if !plan.is_empty() {
                blocks.push(
                    json!({"type": "section", "text": {"type": "mrkdwn", "text": cut(plan.join("\n"), SLACK_SECTION_MAX)}}),
                );
            }
            // People who may answer can do it from here: the buttons carry the Decision
            // and its digest shown, and come back to the operator's Slack endpoint.
            if matches!(n.trigger, Trigger::ApprovalRequired | Trigger::Escalated) {
                blocks.push(
                    crate::slack::Target {
                        namespace: n.decision.namespace.clone(),
                        name: n.decision.name.clone(),
                        uid: n.decision.uid.clone(),
                        digest: n.digest.clone(),
                    }
                    .buttons(),
                );
            }
            json!({"text": n.summary(), "blocks": blocks})
        }
        WebhookFormat::Teams => json!({
            "@type": "MessageCard",
            "@context": "https://schema.org/extensions",
            "summary": n.summary(),
            "themeColor": match n.trigger {
                Trigger::ExecutionFailed | Trigger::Expired => "D32F2F",
                Trigger::ExecutionCompleted => "2E7D32",
                _ => "F9A825",
            },
            "title": n.trigger.title(),
            "text": std::iter::once(format!("{}: {}", n.description, n.message))
                .chain(n.plan_lines())
                .collect::<Vec<_>>()
                .join("\n\n"),
            "sections": [{"facts": facts.iter().map(|(k, v)| json!({"name": k, "value": v})).collect::<Vec<_>>()}],
        }),
        WebhookFormat::Generic => json!({
            "id": n.id,
            "trigger": n.trigger,
            "decision": n.decision,
            "actionType": n.action_type,
            "description": n.description,
            "criticality": n.criticality,
            "phase": n.phase,
            "approvals": n.approvals,
            "message": n.message,
            "digest": n.digest,
            "plan": n.plan,
        }),
    }
}

/// The subject and body of the e-mail.
pub fn email(n: &Notification) -> (String, String) {
    let subject = format!("[decision-gate] {}", n.summary());
    let plan: String = n.plan_lines().iter().map(|l| format!("{l}\n")).collect();
    let plan = if plan.is_empty() {
        plan
    } else {
        format!("\n{plan}")
    };
    let body = format!(
        "{}\n\nDecision:    {}/{}\nDigest:      {}\nAction:      {}\nDescription: {}\nCriticality: {}\nPhase:       {}\nApprovals:   {}\n{plan}\n{}\n\nReview it with: kubectl decision show {} -n {}\n",
        n.trigger.title(),
        n.decision.namespace,
        n.decision.name,
        n.digest.as_deref().unwrap_or("-"),
        n.action_type,
        n.description,
        n.criticality,
        n.phase,
        n.approvals,
        n.message,
        n.decision.name,
        n.decision.namespace
    );
    (subject, body)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::audit::DecisionRef;

    #[test]
    fn the_longest_description_fits_slack_s_limits() {
        let mut n = notification(Trigger::ApprovalRequired);
        n.description = "é".repeat(4096);
        n.decision.name = "n".repeat(253);
        let slack = payload(WebhookFormat::Slack, &n);
        for block in slack["blocks"].as_array().unwrap() {
            if let Some(text) = block["text"]["text"].as_str() {
                assert!(text.chars().count() <= SLACK_SECTION_MAX, "{}", text.len());
            }
            for field in block["fields"].as_array().into_iter().flatten() {
                let text = field["text"].as_str().unwrap();
                assert!(text.chars().count() <= SLACK_FIELD_MAX);
            }
        }
        assert!(slack.to_string().contains("ééé"));
    }

    /// A notification of `trigger` about ops/deploy, for the tests of every format.
    pub(crate) fn notification(trigger: Trigger) -> Notification {
        Notification {
            id: "n-1".into(),
            trigger,
            decision: DecisionRef {
                namespace: "ops".into(),
                name: "deploy".into(),
                uid: "u".into(),
            },
            action_type: "deploy".into(),
            description: "Deploy 2.0".into(),
            criticality: "Critical".into(),
            phase: "Escalated".into(),
            approvals: "0/2".into(),
            message: "escalated: waiting for 2 approval(s)".into(),
            digest: Some("sha256:d1e5".into()),
            plan: None,
            asked: Some(trigger),
            chat: Default::default(),
        }
    }

    #[test]
    fn payloads_have_the_shapes_receivers_expect() {
        let n = notification(Trigger::Escalated);
        let slack = payload(WebhookFormat::Slack, &n);
        assert_eq!(
            slack["text"],
            "Escalated: approval required: ops/deploy (deploy, Critical)"
        );
        assert_eq!(slack["blocks"][0]["type"], "header");
        let teams = payload(WebhookFormat::Teams, &n);
        assert_eq!(teams["@type"], "MessageCard");
        assert_eq!(teams["sections"][0]["facts"][0]["value"], "ops/deploy");
        let generic = payload(WebhookFormat::Generic, &n);
        assert_eq!(generic["trigger"], "Escalated");
        assert_eq!(generic["decision"]["name"], "deploy");
        let (subject, body) = email(&n);
        assert!(subject.contains("ops/deploy"));
        assert!(body.contains("kubectl decision show deploy -n ops"));
    }

    #[test]
    fn slack_messages_that_need_an_answer_carry_approve_and_reject_buttons() {
        let mut n = notification(Trigger::ApprovalRequired);
        n.plan = Some(crate::api::decision::PinnedPlan {
            name: "ship".into(),
            uid: "u".into(),
            generation: 1,
            digest: "sha256:45e5".into(),
            pinned_at: chrono::Utc::now(),
            mode: crate::api::ExecutionMode::Real,
            action_types: vec![],
            criticality: None,
            steps: vec![],
        });
        for trigger in [Trigger::ApprovalRequired, Trigger::Escalated] {
            n.trigger = trigger;
            let slack = payload(WebhookFormat::Slack, &n);
            let blocks = slack["blocks"].as_array().unwrap();
            let actions = blocks.last().unwrap();
            assert_eq!(actions["type"], "actions", "{trigger:?}");
            let ids: Vec<_> = actions["elements"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b["action_id"].as_str().unwrap())
                .collect();
            assert_eq!(
                ids,
                [
                    crate::slack::interaction::APPROVE,
                    crate::slack::interaction::REJECT
                ]
            );
            let target =
                crate::slack::Target::parse(actions["elements"][0]["value"].as_str().unwrap())
                    .unwrap();
            assert_eq!(
                target,
                crate::slack::Target {
                    namespace: "ops".into(),
                    name: "deploy".into(),
                    uid: "u".into(),
                    // The Decision's digest, not the plan's: it binds the request too.
                    digest: Some("sha256:d1e5".into()),
                }
            );
            // The other formats have no buttons.
            assert!(
                !payload(WebhookFormat::Teams, &n)
                    .to_string()
                    .contains("decision-gate.approve")
            );
            assert!(
                !payload(WebhookFormat::Generic, &n)
                    .to_string()
                    .contains("decision-gate.approve")
            );
        }
        for trigger in [
            Trigger::ExecutionFailed,
            Trigger::Expired,
            Trigger::ExecutionCompleted,
        ] {
            n.trigger = trigger;
            let slack = payload(WebhookFormat::Slack, &n).to_string();
            assert!(!slack.contains("\"actions\""), "{trigger:?}: {slack}");
        }
    }

    #[test]
    fn every_format_shows_the_pinned_plan_and_its_digest() {
        let mut n = notification(Trigger::ApprovalRequired);
        n.plan = Some(crate::api::decision::PinnedPlan {
            name: "ship".into(),
            uid: "u".into(),
            generation: 1,
            digest: "sha256:45e54cbb0ef9".into(),
            pinned_at: chrono::Utc::now(),
            mode: crate::api::ExecutionMode::Real,
            action_types: vec!["deploy".into()],
            criticality: None,
            steps: vec![crate::api::decision::PinnedStep {
                name: "roll-out".into(),
                images: vec!["api:2.0".into()],
                command: Some("roll-out --to 2.0".into()),
                service_account: Some("deployer".into()),
                rollback: false,
            }],
        });
        let wanted = "1. roll-out: api:2.0 `roll-out --to 2.0` as deployer";
        let slack = payload(WebhookFormat::Slack, &n).to_string();
        let teams = payload(WebhookFormat::Teams, &n).to_string();
        let generic = payload(WebhookFormat::Generic, &n);
        let (_, body) = email(&n);
        for text in [&slack, &teams, &body] {
            assert!(
                text.contains("sha256:45e54cbb0ef9") && text.contains(wanted),
                "{text}"
            );
        }
        assert_eq!(generic["plan"]["digest"], "sha256:45e54cbb0ef9");
        assert_eq!(generic["plan"]["steps"][0]["images"][0], "api:2.0");
    }
}

//! Notifications: when a Decision needs people (approval required, escalated), or went
//! wrong (execution failed, expired), or optionally finished, tell them through the
//! configured channels: the operator's log, webhooks shaped for Slack, Teams or as generic
//! JSON, and e-mail over SMTP.
//!
//! Sending is off the reconcile path: the reconciler hands notifications to a queue and
//! moves on. Each channel gets its own task with retries and exponential backoff, so a
//! dead channel delays neither the Decision nor the other channels, and every attempt's
//! outcome is an audit line (`notification_sent`, `notification_failed`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::api::duration;
use crate::audit::{AuditLog, DecisionRef, Record};
use crate::events::DecisionEvent;
use crate::events::ExecutionEvent;

/// What can set a notification off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Trigger {
    ApprovalRequired,
    Escalated,
    ExecutionFailed,
    Expired,
    ExecutionCompleted,
}

impl Trigger {
    pub fn of(event: &DecisionEvent) -> Option<Trigger> {
        match event {
            DecisionEvent::ApprovalRequested { .. } => Some(Trigger::ApprovalRequired),
            DecisionEvent::Escalated { .. } => Some(Trigger::Escalated),
            DecisionEvent::Expired { .. } => Some(Trigger::Expired),
            DecisionEvent::Execution(
                ExecutionEvent::Failed { .. } | ExecutionEvent::RollbackFailed { .. },
            ) => Some(Trigger::ExecutionFailed),
            DecisionEvent::Execution(ExecutionEvent::Completed { .. }) => {
                Some(Trigger::ExecutionCompleted)
            }
            _ => None,
        }
    }

    fn title(self) -> &'static str {
        match self {
            Trigger::ApprovalRequired => "Approval required",
            Trigger::Escalated => "Escalated: approval required",
            Trigger::ExecutionFailed => "Execution failed",
            Trigger::Expired => "Expired without an answer",
            Trigger::ExecutionCompleted => "Execution completed",
        }
    }
}

/// The notification configuration (a YAML file, mounted from a ConfigMap).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub channels: Vec<Channel>,
    #[serde(default)]
    pub rules: Vec<Rule>,
    #[serde(default)]
    pub retry: Retry,
}

// No deny_unknown_fields here: serde cannot combine it with the flattened kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Channel {
    pub name: String,
    #[serde(flatten)]
    pub kind: ChannelKind,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ChannelKind {
    /// A structured line in the operator's log.
    Log,
    /// An HTTP POST of a JSON payload.
    Webhook {
        #[serde(default)]
        format: WebhookFormat,
        #[serde(default)]
        url: Option<String>,
        /// The URL from a Secret in the operator's namespace (webhook URLs are secrets).
        #[serde(default, rename = "urlFrom")]
        url_from: Option<SecretRef>,
    },
    /// An e-mail over SMTP.
    Email {
        smtp: Smtp,
        from: String,
        to: Vec<String>,
    },
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum WebhookFormat {
    Slack,
    Teams,
    #[default]
    Generic,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretRef {
    pub secret_key_ref: SecretKey,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretKey {
    pub name: String,
    pub key: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Smtp {
    pub host: String,
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    /// `starttls` (default), `tls`, or `none` (only for a relay on a trusted network).
    #[serde(default)]
    pub tls: SmtpTls,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password_from: Option<SecretRef>,
}

fn default_smtp_port() -> u16 {
    587
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SmtpTls {
    #[default]
    Starttls,
    Tls,
    None,
}

/// Which channels hear which triggers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub triggers: Vec<Trigger>,
    pub channels: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Retry {
    /// Attempts per channel, the first included.
    pub attempts: u32,
    pub initial_backoff: String,
    pub max_backoff: String,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 5,
            initial_backoff: "1s".into(),
            max_backoff: "1m".into(),
        }
    }
}

impl Config {
    /// Reads and checks a configuration file; the error says what is wrong and where.
    pub fn load(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let config: Config =
            yaml_serde::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        config
            .check()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(config)
    }

    pub fn check(&self) -> Result<(), String> {
        for rule in &self.rules {
            for name in &rule.channels {
                if !self.channels.iter().any(|c| &c.name == name) {
                    return Err(format!(
                        "a rule names the channel {name:?}, which is not defined"
                    ));
                }
            }
        }
        for channel in &self.channels {
            if let ChannelKind::Webhook {
                url: None,
                url_from: None,
                ..
            } = channel.kind
            {
                return Err(format!(
                    "the webhook channel {:?} needs url or urlFrom",
                    channel.name
                ));
            }
        }
        self.backoff(1)?;
        if self.retry.attempts == 0 {
            return Err("retry.attempts must be at least 1".into());
        }
        Ok(())
    }

    /// The channels that hear a trigger, each once.
    pub fn channels_for(&self, trigger: Trigger) -> Vec<&Channel> {
        let mut names: Vec<&str> = Vec::new();
        for rule in self.rules.iter().filter(|r| r.triggers.contains(&trigger)) {
            for name in &rule.channels {
                if !names.contains(&name.as_str()) {
                    names.push(name);
                }
            }
        }
        names
            .into_iter()
            .filter_map(|n| self.channels.iter().find(|c| c.name == n))
            .collect()
    }

    /// The pause after a failed `attempt` (1-based): doubling from the initial backoff,
    /// capped at the maximum.
    pub fn backoff(&self, attempt: u32) -> Result<Duration, String> {
        let initial = duration::parse(&self.retry.initial_backoff)
            .map_err(|e| format!("retry.initialBackoff: {e}"))?;
        let max = duration::parse(&self.retry.max_backoff)
            .map_err(|e| format!("retry.maxBackoff: {e}"))?;
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        Ok(initial.saturating_mul(factor).min(max))
    }
}

/// One notification: what happened to which Decision.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Notification {
    pub id: String,
    pub trigger: Trigger,
    pub decision: DecisionRef,
    pub action_type: String,
    pub description: String,
    pub criticality: String,
    pub phase: String,
    pub approvals: String,
    pub message: String,
    /// The plan the Decision pinned: what an approver would approve.
    pub plan: Option<crate::api::decision::PinnedPlan>,
}

impl Notification {
    /// The pinned plan in lines people read: its name and digest, then each step.
    pub fn plan_lines(&self) -> Vec<String> {
        let Some(plan) = &self.plan else {
            return Vec::new();
        };
        let mut lines = vec![format!(
            "Plan {} ({:?}), digest {}",
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
    ];
    match format {
        WebhookFormat::Slack => {
            let mut blocks = vec![
                json!({"type": "header", "text": {"type": "plain_text", "text": n.trigger.title()}}),
                json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("*{}*\n{}", n.description, n.message)}}),
                json!({"type": "section", "fields": facts.iter().map(|(k, v)| json!({"type": "mrkdwn", "text": format!("*{k}:* {v}")})).collect::<Vec<_>>()}),
            ];
            let plan = n.plan_lines();
            if !plan.is_empty() {
                blocks.push(
                    json!({"type": "section", "text": {"type": "mrkdwn", "text": plan.join("\n")}}),
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
        "{}\n\nDecision:    {}/{}\nAction:      {}\nDescription: {}\nCriticality: {}\nPhase:       {}\nApprovals:   {}\n{plan}\n{}\n\nReview it with: kubectl decision show {} -n {}\n",
        n.trigger.title(),
        n.decision.namespace,
        n.decision.name,
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

/// Hands notifications to the sender; never blocks.
#[derive(Clone)]
pub struct Notifier {
    queue: mpsc::UnboundedSender<Notification>,
}

impl Notifier {
    /// Starts the sender, which sends until the notifier is dropped.
    pub fn start(
        config: Config,
        client: kube::Client,
        secrets_namespace: String,
        audit: Arc<AuditLog>,
    ) -> Notifier {
        let (queue, mut rx) = mpsc::unbounded_channel::<Notification>();
        let sender = Arc::new(Sender {
            config,
            client,
            secrets_namespace,
            audit,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("an HTTP client"),
        });
        tokio::spawn(async move {
            while let Some(n) = rx.recv().await {
                for channel in sender.config.channels_for(n.trigger) {
                    let sender = sender.clone();
                    let channel = channel.clone();
                    let n = n.clone();
                    tokio::spawn(async move { sender.deliver(&channel, &n).await });
                }
            }
        });
        Notifier { queue }
    }

    /// Queues the notifications that `events` call for.
    pub fn notify(
        &self,
        decision: &crate::api::Decision,
        status: &crate::api::DecisionStatus,
        events: &[DecisionEvent],
    ) {
        for event in events {
            let Some(trigger) = Trigger::of(event) else {
                continue;
            };
            let n = Notification {
                id: uuid::Uuid::new_v4().to_string(),
                trigger,
                decision: DecisionRef {
                    namespace: decision.metadata.namespace.clone().unwrap_or_default(),
                    name: decision.metadata.name.clone().unwrap_or_default(),
                    uid: decision.metadata.uid.clone().unwrap_or_default(),
                },
                action_type: decision.spec.action_type.clone(),
                description: decision.spec.description.clone(),
                // What the policies saw: the plan may raise it.
                criticality: format!(
                    "{:?}",
                    status
                        .evaluation
                        .as_ref()
                        .and_then(|e| e.criticality)
                        .unwrap_or(decision.spec.criticality)
                ),
                phase: status.phase.map(|p| format!("{p:?}")).unwrap_or_default(),
                approvals: status.approval_progress.clone().unwrap_or_default(),
                message: event.note(),
                plan: status.plan.clone(),
            };
            let _ = self.queue.send(n);
        }
    }
}

struct Sender {
    config: Config,
    client: kube::Client,
    secrets_namespace: String,
    audit: Arc<AuditLog>,
    http: reqwest::Client,
}

impl Sender {
    async fn deliver(&self, channel: &Channel, n: &Notification) {
        let attempts = self.config.retry.attempts.max(1);
        for attempt in 1..=attempts {
            let outcome = self.send(channel, n).await;
            let last = attempt == attempts;
            let (event_type, error) = match &outcome {
                Ok(()) => ("notification_sent", None),
                Err(e) => ("notification_failed", Some(e.clone())),
            };
            let record = Record {
                event_type: event_type.to_owned(),
                actor: "decision-gate".to_owned(),
                decision: Some(n.decision.clone()),
                action_type: Some(n.action_type.clone()),
                outcome: Some(
                    if outcome.is_ok() {
                        "sent"
                    } else if last {
                        "gave_up"
                    } else {
                        "will_retry"
                    }
                    .to_owned(),
                ),
                reason: error.clone(),
                message: format!(
                    "{} via {} (attempt {attempt} of {attempts}){}",
                    n.trigger.title(),
                    channel.name,
                    error
                        .as_deref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                ),
                details: Some(
                    json!({"channel": channel.name, "trigger": n.trigger, "attempt": attempt, "notification": n.id}),
                ),
                discriminator: format!("{}/{}/{attempt}", n.id, channel.name),
                ..Default::default()
            };
            let log = self.audit.clone();
            let appended =
                tokio::task::spawn_blocking(move || log.append(&[record], chrono::Utc::now()))
                    .await;
            if !matches!(appended, Ok(Ok(_))) {
                warn!(channel = %channel.name, "could not audit a notification attempt");
            }
            match outcome {
                Ok(()) => return,
                Err(e) if last => {
                    warn!(channel = %channel.name, trigger = ?n.trigger, error = %e, "notification failed; giving up");
                    return;
                }
                Err(e) => {
                    let pause = self
                        .config
                        .backoff(attempt)
                        .unwrap_or(Duration::from_secs(1));
                    warn!(channel = %channel.name, attempt, error = %e, ?pause, "notification failed; retrying");
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }

    async fn send(&self, channel: &Channel, n: &Notification) -> Result<(), String> {
        match &channel.kind {
            ChannelKind::Log => {
                info!(target: "decision_gate::notification", trigger = ?n.trigger, decision = %format!("{}/{}", n.decision.namespace, n.decision.name), message = %n.message, "{}", n.summary());
                Ok(())
            }
            ChannelKind::Webhook {
                format,
                url,
                url_from,
            } => {
                let url = match (url, url_from) {
                    (Some(url), _) => url.clone(),
                    (None, Some(secret)) => self.secret(secret).await?,
                    (None, None) => return Err("no URL".into()),
                };
                let response = self
                    .http
                    .post(url.trim())
                    .json(&payload(*format, n))
                    .send()
                    .await
                    .map_err(|e| format!("the webhook could not be reached: {e}"))?;
                if response.status().is_success() {
                    Ok(())
                } else {
                    Err(format!("the webhook answered {}", response.status()))
                }
            }
            ChannelKind::Email { smtp, from, to } => self.send_email(smtp, from, to, n).await,
        }
    }

    async fn send_email(
        &self,
        smtp: &Smtp,
        from: &str,
        to: &[String],
        n: &Notification,
    ) -> Result<(), String> {
        use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
        let (subject, body) = email(n);
        let mut message = Message::builder()
            .from(
                from.parse()
                    .map_err(|e| format!("bad from address {from:?}: {e}"))?,
            )
            .subject(subject);
        for address in to {
            message = message.to(address
                .parse()
                .map_err(|e| format!("bad to address {address:?}: {e}"))?);
        }
        let message = message
            .body(body)
            .map_err(|e| format!("cannot build the e-mail: {e}"))?;
        let builder = match smtp.tls {
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host),
            SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host)
                .map_err(|e| format!("SMTP {}: {e}", smtp.host))?,
            SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host)
                .map_err(|e| format!("SMTP {}: {e}", smtp.host))?,
        };
        let mut builder = builder
            .port(smtp.port)
            .timeout(Some(Duration::from_secs(10)));
        if let Some(user) = &smtp.username {
            let password = match &smtp.password_from {
                Some(secret) => self.secret(secret).await?,
                None => String::new(),
            };
            builder = builder.credentials(
                lettre::transport::smtp::authentication::Credentials::new(user.clone(), password),
            );
        }
        builder
            .build()
            .send(message)
            .await
            .map(drop)
            .map_err(|e| format!("SMTP {}:{}: {e}", smtp.host, smtp.port))
    }

    async fn secret(&self, reference: &SecretRef) -> Result<String, String> {
        let SecretKey { name, key } = &reference.secret_key_ref;
        let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
            kube::Api::namespaced(self.client.clone(), &self.secrets_namespace);
        let secret = secrets.get(name).await.map_err(|e| {
            let why = match e {
                kube::Error::Api(status) => status.message,
                other => other.to_string(),
            };
            format!(
                "cannot read Secret {}/{name}: {why}",
                self.secrets_namespace
            )
        })?;
        let value = secret
            .data
            .and_then(|d| d.get(key).cloned())
            .ok_or_else(|| format!("Secret {}/{name} has no key {key}", self.secrets_namespace))?;
        String::from_utf8(value.0).map_err(|_| {
            format!(
                "Secret {}/{name} key {key} is not text",
                self.secrets_namespace
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        yaml_serde::from_str(
            r#"
channels:
- {name: ops, type: webhook, format: slack, url: "http://127.0.0.1:9/hook"}
- {name: managers, type: webhook, format: teams, urlFrom: {secretKeyRef: {name: hooks, key: teams}}}
- {name: mail, type: email, smtp: {host: smtp.example.com, port: 25, tls: none}, from: gate@example.com, to: [cto@example.com]}
- {name: log, type: log}
rules:
- {triggers: [ApprovalRequired, Escalated], channels: [ops, log]}
- {triggers: [Escalated, ExecutionFailed, Expired], channels: [managers, mail, ops]}
retry: {attempts: 4, initialBackoff: 500ms, maxBackoff: 3s}
"#,
        )
        .unwrap()
    }

    fn notification(trigger: Trigger) -> Notification {
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
            plan: None,
        }
    }

    #[test]
    fn rules_choose_channels_once_each() {
        let c = config();
        c.check().unwrap();
        let names = |t| {
            c.channels_for(t)
                .iter()
                .map(|c| c.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(Trigger::ApprovalRequired), ["ops", "log"]);
        assert_eq!(
            names(Trigger::Escalated),
            ["ops", "log", "managers", "mail"]
        );
        assert!(
            names(Trigger::ExecutionCompleted).is_empty(),
            "completion is opt-in"
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let c = config();
        let ms = |a| c.backoff(a).unwrap().as_millis();
        assert_eq!(
            [ms(1), ms(2), ms(3), ms(4), ms(5)],
            [500, 1000, 2000, 3000, 3000]
        );
    }

    #[test]
    fn a_bad_configuration_is_named() {
        let mut c = config();
        c.rules[0].channels.push("pager".into());
        assert!(c.check().unwrap_err().contains("\"pager\""));
        let err = yaml_serde::from_str::<Config>("channels: [{name: x, type: sms}]").unwrap_err();
        assert!(err.to_string().contains("sms"), "{err}");
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

    #[test]
    fn triggers_come_from_the_events_that_need_people() {
        let expired = DecisionEvent::Expired {
            expires_at: chrono::Utc::now(),
        };
        assert_eq!(Trigger::of(&expired), Some(Trigger::Expired));
        let failed = DecisionEvent::Execution(ExecutionEvent::Failed {
            message: "x".into(),
        });
        assert_eq!(Trigger::of(&failed), Some(Trigger::ExecutionFailed));
        assert_eq!(
            Trigger::of(&DecisionEvent::Requested {
                requested_by: None,
                on_behalf_of: None,
            }),
            None
        );
    }
}

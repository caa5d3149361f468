//! Sending: one task per channel and notification, through the log, a webhook or SMTP,
//! with retries and an audit line for every attempt.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tracing::{info, warn};

use super::{
    Channel, ChannelKind, ChatMessage, Config, Notification, SecretKey, SecretRef, Smtp, SmtpTls,
    email, payload, slack,
};
use crate::audit::{AuditLog, Record};

/// Delivers one notification to one channel, retrying with backoff, and audits every
/// attempt.
pub(super) struct Sender {
    pub(super) config: Config,
    client: kube::Client,
    secrets_namespace: String,
    audit: Arc<AuditLog>,
    http: reqwest::Client,
    /// The messages this process posted, by Decision uid and channel name: known before
    /// the status that remembers them is read back (and only until then).
    posted: Mutex<HashMap<(String, String), ChatMessage>>,
}

impl Sender {
    pub(super) fn new(
        config: Config,
        client: kube::Client,
        secrets_namespace: String,
        audit: Arc<AuditLog>,
    ) -> Sender {
        Sender {
            config,
            client,
            secrets_namespace,
            audit,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("an HTTP client"),
            posted: Mutex::new(HashMap::new()),
        }
    }

    /// The message `channel` posted for the Decision of `n`, if one is known. Once the
    /// Decision's status remembers it, the copy kept here is no longer needed and goes.
    fn message_on(&self, channel: &Channel, n: &Notification) -> Option<ChatMessage> {
        let mut posted = self.posted.lock().unwrap_or_else(|p| p.into_inner());
        let key = (n.decision.uid.clone(), channel.name.clone());
        match n.chat.get(&channel.name) {
            Some(remembered) => {
                posted.remove(&key);
                Some(remembered.clone())
            }
            None => posted.get(&key).cloned(),
        }
    }

    /// The channels that posted a message for the Decision of `n`, with the message.
    pub(super) fn messages_of(&self, n: &Notification) -> Vec<(Channel, ChatMessage)> {
        self.config
            .channels
            .iter()
            .filter(|c| matches!(c.kind, ChannelKind::Slack { .. }))
            .filter_map(|c| self.message_on(c, n).map(|m| (c.clone(), m)))
            .collect()
    }

    /// Sends `n` to `channel` or, given the message it posted, edits that message;
    /// retrying with backoff, and auditing every attempt.
    pub(super) async fn deliver(
        &self,
        channel: &Channel,
        n: &Notification,
        update: Option<&ChatMessage>,
    ) {
        let attempts = self.config.retry.attempts.max(1);
        let (done, verb) = match update {
            None => ("notification_sent", "via"),
            Some(_) => ("notification_updated", "updated on"),
        };
        for attempt in 1..=attempts {
            let outcome = match update {
                None => self.send(channel, n).await,
                Some(message) => self.update(channel, message, n).await,
            };
            let last = attempt == attempts;
            let (event_type, error) = match &outcome {
                Ok(()) => (done, None),
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
                    "{} {verb} {} (attempt {attempt} of {attempts}){}",
                    n.trigger.title(),
                    channel.name,
                    error
                        .as_deref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                ),
                details: Some(
                    json!({"channel": channel.name, "trigger": n.trigger, "attempt": attempt, "notification": n.id, "update": update}),
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
            ChannelKind::Slack {
                channel: conversation,
                token_from,
                api_url,
            } => {
                // A request starts a message of its own; what follows it goes to its thread.
                let thread = if n.trigger.asks() {
                    None
                } else {
                    self.message_on(channel, n)
                };
                let body = slack::post_body(conversation, n, thread.as_ref());
                let posted = self
                    .slack(api_url, token_from, "chat.postMessage", &body)
                    .await?;
                if n.trigger.asks() {
                    self.remember(channel, n, posted).await;
                }
                Ok(())
            }
            ChannelKind::Email { smtp, from, to } => self.send_email(smtp, from, to, n).await,
        }
    }

    /// Edits the message `channel` posted to show `n`.
    async fn update(
        &self,
        channel: &Channel,
        message: &ChatMessage,
        n: &Notification,
    ) -> Result<(), String> {
        let ChannelKind::Slack {
            token_from,
            api_url,
            ..
        } = &channel.kind
        else {
            return Err("only a Slack channel edits its messages".into());
        };
        self.slack(
            api_url,
            token_from,
            "chat.update",
            &slack::update_body(message, n),
        )
        .await
        .map(drop)
    }

    /// Calls a method of Slack's Web API with the bot token.
    async fn slack(
        &self,
        api_url: &str,
        token_from: &SecretRef,
        method: &str,
        body: &serde_json::Value,
    ) -> Result<ChatMessage, String> {
        let token = self.secret(token_from).await?;
        let url = format!("{}/{method}", api_url.trim_end_matches('/'));
        let response = self
            .http
            .post(&url)
            .bearer_auth(token.trim())
            .json(body)
            .send()
            .await
            .map_err(|e| format!("Slack's {method} could not be reached: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("Slack's {method} answered {}", response.status()));
        }
        let answer: serde_json::Value = response
            .json()
            .await
            .map_err(|e| format!("Slack's {method} answered what is not JSON: {e}"))?;
        slack::answer(&answer)
    }

    /// Remembers the message that announced a Decision: here at once, and in the
    /// Decision's status so that another process (after a restart, a new leader) edits it.
    /// A status that cannot be written is logged; the message was posted all the same.
    async fn remember(&self, channel: &Channel, n: &Notification, message: ChatMessage) {
        self.posted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                (n.decision.uid.clone(), channel.name.clone()),
                message.clone(),
            );
        let decisions: kube::Api<crate::api::Decision> =
            kube::Api::namespaced(self.client.clone(), &n.decision.namespace);
        let patch = slack::remember_patch(&n.decision.uid, &channel.name, &message);
        let params = kube::api::PatchParams {
            field_manager: Some(slack::FIELD_MANAGER.to_owned()),
            ..Default::default()
        };
        if let Err(e) = decisions
            .patch_status(&n.decision.name, &params, &kube::api::Patch::Merge(&patch))
            .await
        {
            warn!(channel = %channel.name, decision = %format!("{}/{}", n.decision.namespace, n.decision.name), error = %e, "could not remember the posted message in the Decision's status");
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

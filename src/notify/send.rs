//! Sending: one task per channel and notification, through the log, a webhook or SMTP,
//! with retries and an audit line for every attempt.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tracing::{info, warn};

use super::{
    Channel, ChannelKind, Config, Notification, SecretKey, SecretRef, Smtp, SmtpTls, email, payload,
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
        }
    }

    pub(super) async fn deliver(&self, channel: &Channel, n: &Notification) {
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

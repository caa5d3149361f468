//! The notification configuration: channels, the rules that choose them, and retries.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Trigger;
use crate::api::duration;

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
    /// Reminders sent while a Decision still waits for an answer, each once, when its
    /// expiry is within `before`.
    #[serde(default)]
    pub reminders: Vec<Reminder>,
}

/// A reminder before a waiting Decision expires.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reminder {
    /// How long before `status.expiresAt`, such as `15m`.
    pub before: crate::api::Duration,
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
    /// Slack through its Web API, with a bot token: the request is posted with
    /// `chat.postMessage`, its follow-ups go to the message's thread, and the message is
    /// edited with `chat.update` once the Decision is decided.
    Slack {
        /// The conversation to post in, such as `C0123456789`.
        channel: String,
        /// The bot token (`xoxb-...`) from a Secret in the operator's namespace.
        #[serde(rename = "tokenFrom")]
        token_from: SecretRef,
        /// The Web API's base URL.
        #[serde(default = "default_slack_api", rename = "apiUrl")]
        api_url: String,
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

fn default_slack_api() -> String {
    "https://slack.com/api".to_owned()
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
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    pub triggers: Vec<Trigger>,
    pub channels: Vec<String>,
    /// Whether the channels told that a Decision needs approval (this rule's
    /// ApprovalRequired or Escalated) also hear how it goes on: its reminders and its
    /// outcome (Reminder, Approved, Rejected). On unless the rule turns it off.
    #[serde(default = "follow_ups_by_default")]
    pub follow_ups: bool,
}

fn follow_ups_by_default() -> bool {
    true
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
        // The Decision's status records each one sent, and holds at most 32.
        if self.reminders.len() > 10 {
            return Err("at most 10 reminders".into());
        }
        for reminder in &self.reminders {
            reminder
                .before
                .parse()
                .map_err(|e| format!("reminders[].before: {e}"))?;
        }
        self.backoff(1)?;
        if self.retry.attempts == 0 {
            return Err("retry.attempts must be at least 1".into());
        }
        Ok(())
    }

    /// The channels that hear a trigger about a Decision whose need for approval was
    /// announced as `asked` (ApprovalRequired or Escalated; None when nobody was asked),
    /// each once: the rules that name the trigger, and for a follow-up (a reminder or an
    /// outcome) also the rules that announced the request, unless they turn follow-ups off.
    pub fn channels_for(&self, trigger: Trigger, asked: Option<Trigger>) -> Vec<&Channel> {
        let hears = |rule: &&Rule| {
            rule.triggers.contains(&trigger)
                || (trigger.is_follow_up()
                    && rule.follow_ups
                    && asked.is_some_and(|a| rule.triggers.contains(&a)))
        };
        let mut names: Vec<&str> = Vec::new();
        for rule in self.rules.iter().filter(hears) {
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

    /// The reminders' `before`s.
    pub fn reminder_befores(&self) -> Vec<crate::api::Duration> {
        self.reminders.iter().map(|r| r.before.clone()).collect()
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

    #[test]
    fn rules_choose_channels_once_each() {
        let c = config();
        c.check().unwrap();
        let names = |t| {
            c.channels_for(t, None)
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
    fn follow_ups_go_where_the_request_was_announced_unless_a_rule_says_otherwise() {
        let mut c: Config = yaml_serde::from_str(
            r#"
channels:
- {name: ops, type: webhook, format: slack, url: "http://127.0.0.1:9/hook"}
- {name: leads, type: slack, channel: C123, tokenFrom: {secretKeyRef: {name: slack, key: token}}}
- {name: audit, type: log}
- {name: quiet, type: log}
rules:
- {triggers: [ApprovalRequired], channels: [ops]}
- {triggers: [Escalated], channels: [leads]}
- {triggers: [Escalated], channels: [quiet], followUps: false}
- {triggers: [Rejected], channels: [audit]}
reminders: [{before: 15m}]
"#,
        )
        .unwrap();
        c.check().unwrap();
        let names = |c: &Config, t, asked| {
            c.channels_for(t, asked)
                .iter()
                .map(|c| c.name.clone())
                .collect::<Vec<_>>()
        };
        let required = Some(Trigger::ApprovalRequired);
        let escalated = Some(Trigger::Escalated);
        // The outcome and the reminders of a Decision follow its announcement, and
        // only its own: the escalation's channels never heard of a plain request.
        assert_eq!(names(&c, Trigger::Approved, required), ["ops"]);
        assert_eq!(names(&c, Trigger::Reminder, required), ["ops"]);
        assert_eq!(names(&c, Trigger::Approved, escalated), ["leads"]);
        assert_eq!(names(&c, Trigger::Rejected, escalated), ["leads", "audit"]);
        // A rule names an outcome explicitly: it hears it whoever was asked.
        assert_eq!(names(&c, Trigger::Rejected, None), ["audit"]);
        assert!(names(&c, Trigger::Approved, None).is_empty());
        // Expiry and execution are not follow-ups: only rules that name them hear them.
        assert!(names(&c, Trigger::Expired, required).is_empty());
        assert!(names(&c, Trigger::ExecutionCompleted, escalated).is_empty());
        // Turning follow-ups off on the announcing rule silences them.
        c.rules[0].follow_ups = false;
        assert!(names(&c, Trigger::Approved, required).is_empty());
        assert_eq!(
            c.reminder_befores(),
            [crate::api::Duration("15m".into())],
            "the reminders are read"
        );
        match &c.channels[1].kind {
            ChannelKind::Slack { api_url, .. } => assert_eq!(api_url, "https://slack.com/api"),
            other => panic!("{other:?}"),
        }
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
        let mut c = config();
        c.reminders.push(Reminder {
            before: crate::api::Duration("soon".into()),
        });
        assert!(c.check().unwrap_err().contains("reminders"));
    }
}

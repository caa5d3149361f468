//! What a click on a button says: Slack's `block_actions` payload (form-encoded in the
//! `payload` field), and the buttons' `value`, which names the Decision exactly as the
//! notification showed it.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The `action_id` of the Approve button.
pub const APPROVE: &str = "decision-gate.approve";
/// The `action_id` of the Reject button.
pub const REJECT: &str = "decision-gate.reject";

/// The Decision a button answers: namespace and name to find it, its uid so that a
/// Decision deleted and created again under the same name is not answered by an old
/// message, and the Decision's digest shown (its uid, request and plan), so that an
/// approval binds to exactly what the message showed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

impl Target {
    /// The button's `value` (Slack allows 2000 characters; names and a digest fit).
    pub fn value(&self) -> String {
        serde_json::to_string(self).expect("a target always serializes")
    }

    pub fn parse(value: &str) -> Result<Target, String> {
        serde_json::from_str(value)
            .map_err(|e| format!("the button's value does not name a Decision: {e}"))
    }

    /// `namespace/name`.
    pub fn decision(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The `actions` block with the two buttons, for a notification's blocks.
    pub fn buttons(&self) -> Value {
        let value = self.value();
        json!({
            "type": "actions",
            "block_id": "decision-gate.answer",
            "elements": [
                {
                    "type": "button",
                    "action_id": APPROVE,
                    "style": "primary",
                    "text": {"type": "plain_text", "text": "Approve"},
                    "value": value,
                },
                {
                    "type": "button",
                    "action_id": REJECT,
                    "style": "danger",
                    "text": {"type": "plain_text", "text": "Reject"},
                    "value": value,
                    "confirm": {
                        "title": {"type": "plain_text", "text": "Reject this Decision?"},
                        "text": {"type": "mrkdwn", "text": format!("One rejection vetoes *{}*. The reason recorded names you as the Slack user who rejected it.", self.decision())},
                        "confirm": {"type": "plain_text", "text": "Reject"},
                        "deny": {"type": "plain_text", "text": "Cancel"},
                    },
                },
            ],
        })
    }
}

/// Which button.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Approve,
    Reject,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Approve => "approve",
            Action::Reject => "reject",
        }
    }
}

/// One click, as Slack reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interaction {
    /// The Slack user id (`U…`/`W…`).
    pub user: String,
    /// The Slack user's handle, when given; only for people to read.
    pub user_name: Option<String>,
    /// The Slack workspace (team) id.
    pub team: String,
    pub action: Action,
    pub target: Target,
    /// Where Slack takes replies to this click.
    pub response_url: Option<String>,
}

impl Interaction {
    /// The Slack user as people read it: `@handle (U123)`, or the id alone.
    pub fn who(&self) -> String {
        match &self.user_name {
            Some(name) => format!("@{name} ({})", self.user),
            None => self.user.clone(),
        }
    }
}

#[derive(Deserialize)]
struct Payload {
    #[serde(rename = "type")]
    kind: String,
    user: User,
    #[serde(default)]
    team: Option<Team>,
    #[serde(default)]
    actions: Vec<ActionPayload>,
    #[serde(default)]
    response_url: Option<String>,
}

#[derive(Deserialize)]
struct User {
    id: String,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    team_id: Option<String>,
}

#[derive(Deserialize)]
struct Team {
    id: String,
}

#[derive(Deserialize)]
struct ActionPayload {
    action_id: String,
    #[serde(default)]
    value: Option<String>,
}

/// Reads the form-encoded body of an interaction request.
pub fn parse(body: &[u8]) -> Result<Interaction, String> {
    let payload = form_urlencoded::parse(body)
        .find(|(key, _)| key == "payload")
        .map(|(_, value)| value.into_owned())
        .ok_or("the body has no payload field")?;
    let payload: Payload =
        serde_json::from_str(&payload).map_err(|e| format!("the payload is not readable: {e}"))?;
    if payload.kind != "block_actions" {
        return Err(format!(
            "interactions of type {:?} are not handled, only block_actions",
            payload.kind
        ));
    }
    let action = payload
        .actions
        .iter()
        .find(|a| a.action_id == APPROVE || a.action_id == REJECT)
        .ok_or("the payload holds no Approve or Reject action")?;
    let value = action
        .value
        .as_deref()
        .ok_or("the button carries no value")?;
    let team = payload
        .user
        .team_id
        .or(payload.team.map(|t| t.id))
        .ok_or("the payload names no team")?;
    Ok(Interaction {
        user: payload.user.id,
        user_name: payload.user.username.or(payload.user.name),
        team,
        action: if action.action_id == APPROVE {
            Action::Approve
        } else {
            Action::Reject
        },
        target: Target::parse(value)?,
        response_url: payload.response_url,
    })
}

/// What an unverified body claims (user and Decision), for the audit line of a refused
/// request; never acted on.
pub fn claimed(body: &[u8]) -> Option<Value> {
    let payload = form_urlencoded::parse(body)
        .find(|(key, _)| key == "payload")
        .map(|(_, value)| value.into_owned())?;
    let payload: Value = serde_json::from_str(&payload).ok()?;
    let value = payload["actions"][0]["value"]
        .as_str()
        .and_then(|v| Target::parse(v).ok());
    Some(json!({
        "slack_user": payload["user"]["id"],
        "slack_team": payload["user"]["team_id"],
        "action": payload["actions"][0]["action_id"],
        "decision": value.map(|t| t.decision()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            namespace: "prod".into(),
            name: "deploy-v2".into(),
            uid: "6c1e".into(),
            digest: Some("sha256:45e5".into()),
        }
    }

    fn body(payload: &Value) -> Vec<u8> {
        form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", &payload.to_string())
            .finish()
            .into_bytes()
    }

    fn click(action_id: &str) -> Value {
        json!({
            "type": "block_actions",
            "user": {"id": "U-BOB", "username": "bob", "team_id": "T-1"},
            "team": {"id": "T-1", "domain": "acme"},
            "actions": [{"type": "button", "action_id": action_id, "value": target().value()}],
            "response_url": "https://hooks.slack.com/actions/T-1/1/x",
        })
    }

    #[test]
    fn a_click_names_who_which_button_and_exactly_which_decision() {
        let click = parse(&body(&click(APPROVE))).unwrap();
        assert_eq!(click.user, "U-BOB");
        assert_eq!(click.team, "T-1");
        assert_eq!(click.action, Action::Approve);
        assert_eq!(click.target, target());
        assert_eq!(click.who(), "@bob (U-BOB)");
        assert_eq!(
            click.response_url.as_deref(),
            Some("https://hooks.slack.com/actions/T-1/1/x")
        );
        assert_eq!(
            parse(&body(&self::click(REJECT))).unwrap().action,
            Action::Reject
        );
    }

    #[test]
    fn anything_but_our_buttons_is_refused_with_a_reason() {
        let mut other = click(APPROVE);
        other["type"] = "view_submission".into();
        assert!(
            parse(&body(&other))
                .unwrap_err()
                .contains("view_submission")
        );
        let mut foreign = click("someone-else.button");
        foreign["actions"][0]["value"] = "x".into();
        assert!(parse(&body(&foreign)).unwrap_err().contains("no Approve"));
        let mut garbled = click(APPROVE);
        garbled["actions"][0]["value"] = "prod/deploy-v2".into();
        assert!(
            parse(&body(&garbled))
                .unwrap_err()
                .contains("does not name a Decision")
        );
        assert!(parse(b"text=hello").unwrap_err().contains("no payload"));
        assert!(parse(b"payload=%7B").unwrap_err().contains("not readable"));
    }

    #[test]
    fn the_buttons_carry_the_target_and_reject_asks_first() {
        let block = target().buttons();
        assert_eq!(block["type"], "actions");
        let buttons = block["elements"].as_array().unwrap();
        assert_eq!(buttons[0]["action_id"], APPROVE);
        assert_eq!(buttons[1]["action_id"], REJECT);
        for b in buttons {
            assert_eq!(
                Target::parse(b["value"].as_str().unwrap()).unwrap(),
                target()
            );
            assert!(b["value"].as_str().unwrap().len() <= 2000);
        }
        assert!(buttons[1]["confirm"].is_object());
        // A Decision not evaluated yet has no digest to bind to.
        let plain = Target {
            digest: None,
            ..target()
        };
        assert!(!plain.value().contains("digest"));
    }

    #[test]
    fn a_refused_body_s_claims_are_read_for_the_audit_only() {
        let claims = claimed(&body(&click(APPROVE))).unwrap();
        assert_eq!(claims["slack_user"], "U-BOB");
        assert_eq!(claims["decision"], "prod/deploy-v2");
        assert_eq!(claimed(b"nonsense"), None);
    }
}

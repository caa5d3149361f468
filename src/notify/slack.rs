//! Slack through its Web API: the bodies of `chat.postMessage` and `chat.update`, built
//! from the same blocks as the Slack webhook payload, and what Slack's answers mean.
//!
//! A message that announced a Decision is remembered in the Decision's status
//! (`status.chatMessages`, by channel name), written with a JSON merge patch under a
//! field manager of its own: a merge patch adds the one channel's key and leaves the rest
//! of the status, and the reconciler's server-side applies, alone.

use serde_json::{Value, json};

use super::{ChatMessage, Notification, WebhookFormat, payload};

/// The field manager of the status writes that remember a posted message.
pub const FIELD_MANAGER: &str = "decision-gate-notifier";

/// The `chat.postMessage` body: the Slack blocks in `conversation`, in the thread of
/// `thread` when the notification follows up a message already posted.
pub fn post_body(conversation: &str, n: &Notification, thread: Option<&ChatMessage>) -> Value {
    let mut body = payload(WebhookFormat::Slack, n);
    body["channel"] = json!(conversation);
    if let Some(thread) = thread {
        body["channel"] = json!(thread.channel);
        body["thread_ts"] = json!(thread.ts);
    }
    body
}

/// The `chat.update` body: the message shows where the Decision stands now and, as it no
/// longer waits, nothing that invites an answer (no actions block).
pub fn update_body(message: &ChatMessage, n: &Notification) -> Value {
    let mut body = payload(WebhookFormat::Slack, n);
    if let Some(blocks) = body["blocks"].as_array_mut() {
        blocks.retain(|b| b["type"] != "actions");
    }
    body["channel"] = json!(message.channel);
    body["ts"] = json!(message.ts);
    body
}

/// What Slack answered: the message posted or updated, or why it refused. Slack answers
/// 200 with `ok: false` when it refuses.
pub fn answer(body: &Value) -> Result<ChatMessage, String> {
    if body["ok"] != true {
        return Err(format!(
            "Slack refused: {}",
            body["error"].as_str().unwrap_or("no reason given")
        ));
    }
    match (body["channel"].as_str(), body["ts"].as_str()) {
        (Some(channel), Some(ts)) => Ok(ChatMessage {
            channel: channel.to_owned(),
            ts: ts.to_owned(),
        }),
        _ => Err("Slack's answer has no channel and ts".to_owned()),
    }
}

/// The merge patch that remembers `message` as the one `channel` posted for the Decision
/// with `uid` (a precondition: a Decision deleted and created again under the same name
/// is not touched).
pub fn remember_patch(uid: &str, channel: &str, message: &ChatMessage) -> Value {
    json!({
        "metadata": {"uid": uid},
        "status": {"chatMessages": {channel: message}},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::Trigger;

    fn notification(trigger: Trigger, message: &str) -> Notification {
        Notification {
            message: message.into(),
            ..crate::notify::message::tests::notification(trigger)
        }
    }

    fn message() -> ChatMessage {
        ChatMessage {
            channel: "C123".into(),
            ts: "1700000000.000100".into(),
        }
    }

    #[test]
    fn a_request_is_posted_with_the_webhook_blocks_and_follow_ups_go_to_its_thread() {
        let n = notification(Trigger::ApprovalRequired, "waiting for 1 approval(s)");
        let body = post_body("C123", &n, None);
        assert_eq!(body["channel"], "C123");
        assert!(body.get("thread_ts").is_none());
        let webhook = payload(WebhookFormat::Slack, &n);
        assert_eq!(body["blocks"], webhook["blocks"]);
        assert_eq!(body["text"], webhook["text"]);
        let reply = post_body(
            "C999",
            &notification(Trigger::Reminder, "expires soon"),
            Some(&message()),
        );
        assert_eq!(reply["thread_ts"], "1700000000.000100");
        assert_eq!(
            reply["channel"], "C123",
            "a reply goes where the message is"
        );
    }

    #[test]
    fn the_update_edits_that_message_to_show_the_outcome_and_invites_no_answer() {
        let n = notification(Trigger::Approved, "approved by bob (tested in staging)");
        let body = update_body(&message(), &n);
        assert_eq!(body["channel"], "C123");
        assert_eq!(body["ts"], "1700000000.000100");
        assert_eq!(body["blocks"][0]["text"]["text"], "Approved");
        assert!(
            body["text"]
                .as_str()
                .unwrap()
                .starts_with("Approved: ops/deploy"),
            "{body}"
        );
        assert!(
            body.to_string()
                .contains("approved by bob (tested in staging)"),
            "{body}"
        );
        assert!(
            body["blocks"]
                .as_array()
                .unwrap()
                .iter()
                .all(|b| b["type"] != "actions"),
            "{body}"
        );
    }

    #[test]
    fn slack_answers_are_read() {
        assert_eq!(
            answer(&json!({"ok": true, "channel": "C123", "ts": "1.2"})).unwrap(),
            ChatMessage {
                channel: "C123".into(),
                ts: "1.2".into()
            }
        );
        assert_eq!(
            answer(&json!({"ok": false, "error": "channel_not_found"})).unwrap_err(),
            "Slack refused: channel_not_found"
        );
        assert!(answer(&json!({"ok": true})).is_err());
        assert_eq!(
            remember_patch("u-1", "leads", &message()),
            json!({"metadata": {"uid": "u-1"}, "status": {"chatMessages": {"leads": {"channel": "C123", "ts": "1700000000.000100"}}}})
        );
    }
}

//! Reminders before a waiting Decision expires: which one is due now, and when the next
//! one will be. Pure: the reminders configured, the status and the time go in; the
//! reminder to send, its record in the status and the moment to look again come out.

use chrono::{DateTime, Utc};

use crate::api::decision::ReminderSent;
use crate::api::{DecisionStatus, Duration};
use crate::events::DecisionEvent;

/// What [`remind`] decided.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reminders {
    /// The reminder to send now, if one is due: at most one, however many fell due.
    pub events: Vec<DecisionEvent>,
    /// When the next reminder falls due, if one will.
    pub wake_at: Option<DateTime<Utc>>,
}

/// Sends each configured reminder once while the Decision waits for an answer, when
/// `now` is within its `before` of `status.expiresAt` (and the Decision has not expired).
/// Every reminder that fell due is recorded in `status.remindersSent`, so none is sent
/// twice; when several fell due together (the operator was down), one reminder says it.
/// A `before` that cannot be read is skipped (the configuration is checked at start).
///
/// `announced` says that people were asked just now (the request's own notification is
/// on its way): a reminder already due then is recorded but not sent, as the request
/// itself says it all.
pub fn remind(
    befores: &[Duration],
    status: &mut DecisionStatus,
    announced: bool,
    now: DateTime<Utc>,
) -> Reminders {
    let (Some(phase), Some(expires_at)) = (status.phase, status.expires_at) else {
        return Reminders::default();
    };
    if !phase.is_awaiting_answer() || now >= expires_at {
        return Reminders::default();
    }
    let mut due: Vec<(std::time::Duration, &Duration)> = Vec::new();
    let mut wake_at: Option<DateTime<Utc>> = None;
    for before in befores {
        let Ok(length) = before.parse() else {
            continue;
        };
        let sent = status
            .reminders_sent
            .iter()
            .any(|r| crate::api::duration::parse(&r.before).ok() == Some(length));
        if sent || due.iter().any(|(d, _)| *d == length) {
            continue;
        }
        let at = chrono::Duration::from_std(length)
            .ok()
            .and_then(|d| expires_at.checked_sub_signed(d))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        if now >= at {
            due.push((length, before));
        } else {
            wake_at = Some(wake_at.map_or(at, |w| w.min(at)));
        }
    }
    // The one that says it is the closest to the expiry: the most urgent.
    let Some((_, said)) = due.iter().min_by_key(|(d, _)| *d).cloned() else {
        return Reminders {
            events: Vec::new(),
            wake_at,
        };
    };
    let said = said.clone();
    let events = if announced {
        Vec::new()
    } else {
        vec![DecisionEvent::Reminded {
            before: said.0,
            expires_at,
        }]
    };
    for (_, before) in due {
        status.reminders_sent.push(ReminderSent {
            before: before.0.clone(),
            at: now,
        });
    }
    Reminders { events, wake_at }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::DecisionPhase;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    /// A Decision that waits and expires at 100s.
    fn waiting() -> DecisionStatus {
        DecisionStatus {
            phase: Some(DecisionPhase::Pending),
            expires_at: Some(at(100)),
            ..Default::default()
        }
    }

    fn befores(texts: &[&str]) -> Vec<Duration> {
        texts.iter().map(|t| Duration((*t).to_owned())).collect()
    }

    #[test]
    fn before_the_window_nothing_is_sent_and_the_reconcile_wakes_when_it_opens() {
        let mut status = waiting();
        let r = remind(&befores(&["30s", "10s"]), &mut status, false, at(50));
        assert!(r.events.is_empty());
        assert_eq!(r.wake_at, Some(at(70)));
        assert!(status.reminders_sent.is_empty());
    }

    #[test]
    fn within_the_window_one_reminder_is_sent_and_recorded() {
        let mut status = waiting();
        let r = remind(&befores(&["30s", "10s"]), &mut status, false, at(75));
        assert_eq!(
            r.events,
            [DecisionEvent::Reminded {
                before: "30s".into(),
                expires_at: at(100)
            }]
        );
        assert_eq!(r.wake_at, Some(at(90)), "the next reminder");
        assert_eq!(
            status.reminders_sent,
            [ReminderSent {
                before: "30s".into(),
                at: at(75)
            }]
        );
    }

    #[test]
    fn a_reminder_already_sent_is_not_sent_again_even_written_differently() {
        let mut status = waiting();
        status.reminders_sent.push(ReminderSent {
            before: "30000ms".into(),
            at: at(71),
        });
        let r = remind(&befores(&["30s"]), &mut status, false, at(80));
        assert_eq!(r, Reminders::default());
        assert_eq!(status.reminders_sent.len(), 1);
    }

    #[test]
    fn reminders_that_fell_due_together_are_said_once_and_all_recorded() {
        let mut status = waiting();
        let r = remind(&befores(&["30s", "10s", "1m"]), &mut status, false, at(95));
        assert_eq!(
            r.events,
            [DecisionEvent::Reminded {
                before: "10s".into(),
                expires_at: at(100)
            }]
        );
        assert_eq!(r.wake_at, None);
        assert_eq!(status.reminders_sent.len(), 3);
        let again = remind(&befores(&["30s", "10s", "1m"]), &mut status, false, at(96));
        assert!(again.events.is_empty());
    }

    #[test]
    fn after_the_expiry_or_once_answered_nothing_is_sent() {
        let mut status = waiting();
        assert_eq!(
            remind(&befores(&["30s"]), &mut status, false, at(100)),
            Reminders::default()
        );
        for phase in [
            DecisionPhase::Approved,
            DecisionPhase::Rejected,
            DecisionPhase::Expired,
        ] {
            let mut status = waiting();
            status.phase = Some(phase);
            assert_eq!(
                remind(&befores(&["30s"]), &mut status, false, at(80)),
                Reminders::default()
            );
        }
        let mut unset = DecisionStatus::default();
        assert_eq!(
            remind(&befores(&["30s"]), &mut unset, false, at(80)),
            Reminders::default()
        );
    }

    #[test]
    fn a_reminder_due_when_people_are_first_asked_is_folded_into_the_request() {
        let mut status = waiting();
        let r = remind(&befores(&["30s", "10s"]), &mut status, true, at(80));
        assert!(r.events.is_empty());
        assert_eq!(r.wake_at, Some(at(90)), "the later one is still sent");
        assert_eq!(status.reminders_sent.len(), 1);
    }

    #[test]
    fn an_escalated_decision_is_reminded_too() {
        let mut status = waiting();
        status.phase = Some(DecisionPhase::Escalated);
        let r = remind(&befores(&["30s"]), &mut status, false, at(99));
        assert_eq!(r.events.len(), 1);
    }
}

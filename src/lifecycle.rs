//! The Decision lifecycle, as pure functions of the Decision and the time: no client, no
//! clock. The reconciler reads, calls these, and writes what they return.

use chrono::{DateTime, Utc};

use crate::api::common::set_condition;
use crate::api::{Condition, ConditionStatus, Decision, DecisionPhase, DecisionStatus};

/// The condition that says whether a Decision has been approved.
pub const CONDITION_APPROVED: &str = "Approved";

/// What a Decision's status should become, or `None` when it is already right.
///
/// A new Decision starts Pending, with its expiry fixed from its creation time: the
/// Decision's own `expiresAfter`, else `default_expiry`.
pub fn next_status(
    decision: &Decision,
    now: DateTime<Utc>,
    default_expiry: std::time::Duration,
) -> Option<DecisionStatus> {
    let current = decision.status.clone().unwrap_or_default();
    if current.phase.is_some() {
        return None;
    }
    let created = decision
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| to_chrono(&t.0))
        .unwrap_or(now);
    // The schema has already refused anything that does not parse; fall back to the
    // default rather than fail if an older schema let one through.
    let expiry = decision
        .spec
        .expires_after
        .as_ref()
        .and_then(|d| d.parse().ok())
        .unwrap_or(default_expiry);
    let expires_at = created + chrono::Duration::from_std(expiry).unwrap_or(chrono::Duration::MAX);

    let mut status = current;
    status.phase = Some(DecisionPhase::Pending);
    status.expires_at = Some(expires_at);
    status.observed_generation = decision.metadata.generation;
    set_condition(
        &mut status.conditions,
        Condition::new(
            CONDITION_APPROVED,
            ConditionStatus::Unknown,
            "AwaitingApproval",
            format!("waiting for approval until {}", expires_at.to_rfc3339()),
        )
        .generation(decision.metadata.generation),
        now,
    );
    Some(status)
}

/// Converts the API machinery's timestamp to chrono.
pub fn to_chrono(t: &k8s_openapi::jiff::Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp(t.as_second(), t.subsec_nanosecond().max(0) as u32)
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::DecisionSpec;
    use crate::api::decision::Criticality;
    use chrono::TimeZone;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn decision(expires_after: Option<&str>) -> Decision {
        let mut d = Decision::new(
            "deploy-api",
            DecisionSpec {
                action_type: "deploy".into(),
                description: "Deploy api-gateway 2.0".into(),
                criticality: Criticality::Critical,
                priority: None,
                estimated_duration_minutes: None,
                source: None,
                context: None,
                plan_ref: None,
                expires_after: expires_after.map(Into::into),
            },
        );
        d.metadata.generation = Some(1);
        d.metadata.creation_timestamp = Some(Time(
            k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap(),
        ));
        d
    }

    fn created() -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000, 0).unwrap()
    }

    #[test]
    fn a_new_decision_is_pending_until_its_expiry() {
        let now = created() + chrono::Duration::seconds(2);
        let status = next_status(
            &decision(Some("30m")),
            now,
            std::time::Duration::from_secs(86400),
        )
        .expect("a new Decision gets a status");
        assert_eq!(status.phase, Some(DecisionPhase::Pending));
        assert_eq!(
            status.expires_at,
            Some(created() + chrono::Duration::minutes(30))
        );
        assert_eq!(status.observed_generation, Some(1));
        let approved = &status.conditions[0];
        assert_eq!(approved.type_, CONDITION_APPROVED);
        assert_eq!(approved.status, ConditionStatus::Unknown);
        assert_eq!(approved.reason, "AwaitingApproval");
        assert_eq!(approved.last_transition_time, now);
    }

    #[test]
    fn without_its_own_expiry_the_default_applies() {
        let status = next_status(
            &decision(None),
            created(),
            std::time::Duration::from_secs(86400),
        )
        .unwrap();
        assert_eq!(
            status.expires_at,
            Some(created() + chrono::Duration::hours(24))
        );
    }

    #[test]
    fn a_decision_with_a_phase_is_left_alone() {
        let mut d = decision(None);
        d.status = next_status(&d, created(), std::time::Duration::from_secs(60));
        assert_eq!(
            next_status(&d, created(), std::time::Duration::from_secs(60)),
            None
        );
    }
}

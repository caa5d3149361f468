//! Types shared by the three kinds: conditions, risk levels, approvers.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The status of a condition, as Kubernetes spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

/// One observation about an object, in the shape every Kubernetes tool understands
/// (`kubectl wait --for=condition=Ready`, Argo CD, `kubectl describe`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// The aspect this condition reports on, such as `Ready` or `Approved`.
    #[serde(rename = "type")]
    #[schemars(length(min = 1, max = 63))]
    pub type_: String,
    /// Whether the condition holds: True, False or Unknown.
    pub status: ConditionStatus,
    /// A CamelCase word a program can match on, saying why the condition is as it is.
    #[schemars(length(max = 128))]
    pub reason: String,
    /// What happened, in a sentence for people.
    #[serde(default)]
    #[schemars(length(max = 32768))]
    pub message: String,
    /// When `status` last changed.
    pub last_transition_time: DateTime<Utc>,
    /// The `.metadata.generation` this condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl Condition {
    pub fn new(
        type_: &str,
        status: ConditionStatus,
        reason: &str,
        message: impl Into<String>,
    ) -> Self {
        Condition {
            type_: type_.to_owned(),
            status,
            reason: reason.to_owned(),
            message: message.into(),
            last_transition_time: DateTime::<Utc>::UNIX_EPOCH,
            observed_generation: None,
        }
    }

    pub fn generation(mut self, generation: Option<i64>) -> Self {
        self.observed_generation = generation;
        self
    }
}

/// Puts `update` into `conditions`, replacing the condition of the same type. The
/// transition time moves to `now` only when the status changes, so that it keeps meaning
/// "since when has this been true".
pub fn set_condition(conditions: &mut Vec<Condition>, mut update: Condition, now: DateTime<Utc>) {
    match conditions.iter_mut().find(|c| c.type_ == update.type_) {
        Some(existing) => {
            update.last_transition_time = if existing.status == update.status {
                existing.last_transition_time
            } else {
                now
            };
            *existing = update;
        }
        None => {
            update.last_transition_time = now;
            conditions.push(update);
        }
    }
}

/// The condition of the given type, if there is one.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// How risky an action is judged to be, from least to most.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub enum RiskLevel {
    Low,
    Medium,
    High,
    Critical,
}

/// Who may approve: named users and members of named groups, as the API server
/// authenticates them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Approvers {
    /// User names that may approve, exactly as the API server knows them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 253)))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.all(u, !u.startsWith('system:serviceaccount:'))",
        "message": "name ServiceAccounts in serviceAccounts, as namespace/name, not in users",
    }]))]
    pub users: Vec<String>,
    /// Groups whose members may approve.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 253)))]
    pub groups: Vec<String>,
    /// ServiceAccounts (agents) that may answer, as `namespace/name`. A ServiceAccount's
    /// answer counts only where a rule names it here, whatever its RBAC and groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(min = 3, max = 317)))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.all(s, s.matches('^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?/[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$'))",
        "message": "each entry must be a ServiceAccount as namespace/name, such as agents/release-bot: a namespace (lower-case letters, digits and '-', at most 63) and a ServiceAccount's name (lower-case letters, digits, '-' and '.'), each starting and ending with a letter or digit",
    }]))]
    pub service_accounts: Vec<String>,
}

/// The user-name prefix the API server gives ServiceAccounts.
pub const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";

impl Approvers {
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.groups.is_empty() && self.service_accounts.is_empty()
    }

    /// The ServiceAccount `user` names (`namespace/name`), when it is one.
    pub fn service_account_of(user: &str) -> Option<String> {
        let (namespace, name) = user.strip_prefix(SERVICE_ACCOUNT_PREFIX)?.split_once(':')?;
        Some(format!("{namespace}/{name}"))
    }
}

/// Converts the API machinery's timestamp to chrono.
pub fn to_chrono(t: &k8s_openapi::jiff::Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp(t.as_second(), t.subsec_nanosecond().max(0) as u32)
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(secs, 0).unwrap()
    }

    #[test]
    fn transition_time_moves_only_when_status_changes() {
        let mut conditions = Vec::new();
        let ready = |status| Condition::new("Ready", status, "Checked", "");
        set_condition(&mut conditions, ready(ConditionStatus::False), at(10));
        assert_eq!(conditions[0].last_transition_time, at(10));

        set_condition(&mut conditions, ready(ConditionStatus::False), at(20));
        assert_eq!(conditions[0].last_transition_time, at(10));

        set_condition(&mut conditions, ready(ConditionStatus::True), at(30));
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].status, ConditionStatus::True);
        assert_eq!(conditions[0].last_transition_time, at(30));

        set_condition(
            &mut conditions,
            Condition::new("Approved", ConditionStatus::Unknown, "Waiting", ""),
            at(40),
        );
        assert_eq!(conditions.len(), 2);
        assert!(find_condition(&conditions, "Approved").is_some());
    }

    #[test]
    fn risk_levels_are_ordered() {
        assert!(RiskLevel::Low < RiskLevel::Medium);
        assert!(RiskLevel::Medium < RiskLevel::High);
        assert!(RiskLevel::High < RiskLevel::Critical);
    }
}

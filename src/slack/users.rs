//! Who a Slack user is in Kubernetes: a list that admins keep in a ConfigMap (key
//! [`KEY`]), read by the operator when a click comes in, so that a change applies to the
//! next click without a restart.
//!
//! ```yaml
//! - slackUser: U012ABCDEF   # the Slack member id
//!   team: T0123456          # optional: only in this workspace
//!   user: bob               # the Kubernetes user the operator impersonates
//!   groups: [approvers]     # and the groups it impersonates with it
//! ```
//!
//! The operator may impersonate only who the chart's values list, so a mapping to anyone
//! else is refused by the API server. Identities of the system (`system:` users and
//! groups) are never mapped.

use serde::{Deserialize, Serialize};

/// The ConfigMap key that holds the mapping.
pub const KEY: &str = "users.yaml";

/// One Slack user, mapped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Person {
    pub slack_user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    pub user: String,
    #[serde(default)]
    pub groups: Vec<String>,
}

/// The whole mapping.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mapping {
    people: Vec<Person>,
}

impl Mapping {
    /// Reads the mapping; a bad entry makes the whole mapping unusable, so that a typo
    /// never maps someone to the wrong person.
    pub fn parse(text: &str) -> Result<Mapping, String> {
        let people: Option<Vec<Person>> = yaml_serde::from_str(text)
            .map_err(|e| format!("the Slack user mapping is not readable: {e}"))?;
        let people = people.unwrap_or_default();
        for p in &people {
            if p.slack_user.trim().is_empty() || p.user.trim().is_empty() {
                return Err(
                    "the Slack user mapping has an entry without slackUser or user".to_owned(),
                );
            }
            if let Some(system) = std::iter::once(&p.user)
                .chain(&p.groups)
                .find(|name| name.starts_with("system:"))
            {
                return Err(format!(
                    "the Slack user mapping maps {} to {system}: identities of the system are never acted as from Slack",
                    p.slack_user
                ));
            }
        }
        for (i, p) in people.iter().enumerate() {
            if people[..i]
                .iter()
                .any(|q| q.slack_user == p.slack_user && q.team == p.team)
            {
                return Err(format!(
                    "the Slack user mapping lists {} twice",
                    p.slack_user
                ));
            }
        }
        Ok(Mapping { people })
    }

    /// The Kubernetes identity of Slack user `user` of workspace `team`: an entry for
    /// that workspace first, else one for any workspace.
    pub fn lookup(&self, team: &str, user: &str) -> Option<&Person> {
        let of_user = || self.people.iter().filter(|p| p.slack_user == user);
        of_user()
            .find(|p| p.team.as_deref() == Some(team))
            .or_else(|| of_user().find(|p| p.team.is_none()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPPING: &str = "
- {slackUser: U-BOB, user: bob, groups: [approvers]}
- {slackUser: U-DAVE, user: dave}
- {slackUser: U-CAROL, team: T-2, user: carol, groups: [sre]}
- {slackUser: U-CAROL, user: carol-elsewhere}
";

    #[test]
    fn a_slack_user_maps_to_one_kubernetes_user_and_their_groups() {
        let mapping = Mapping::parse(MAPPING).unwrap();
        let bob = mapping.lookup("T-1", "U-BOB").unwrap();
        assert_eq!(
            (bob.user.as_str(), bob.groups.as_slice()),
            ("bob", &["approvers".to_owned()][..])
        );
        assert!(mapping.lookup("T-1", "U-DAVE").unwrap().groups.is_empty());
        assert_eq!(mapping.lookup("T-1", "U-EVE"), None);
        // The workspace's own entry first, else the one for any workspace.
        assert_eq!(mapping.lookup("T-2", "U-CAROL").unwrap().user, "carol");
        assert_eq!(
            mapping.lookup("T-1", "U-CAROL").unwrap().user,
            "carol-elsewhere"
        );
    }

    #[test]
    fn a_workspace_bound_entry_maps_nobody_from_another_workspace() {
        let mapping = Mapping::parse("[{slackUser: U-1, team: T-1, user: ann}]").unwrap();
        assert!(mapping.lookup("T-1", "U-1").is_some());
        assert_eq!(mapping.lookup("T-9", "U-1"), None);
    }

    #[test]
    fn an_unusable_mapping_maps_nobody_and_says_why() {
        for (text, why) in [
            ("[{slackUser: U-1, user: system:admin}]", "system:admin"),
            (
                "[{slackUser: U-1, user: ann, groups: [system:masters]}]",
                "system:masters",
            ),
            ("[{slackUser: U-1, user: ''}]", "without slackUser or user"),
            (
                "[{slackUser: U-1, user: ann}, {slackUser: U-1, user: bob}]",
                "twice",
            ),
            ("[{slackUser: U-1, user: ann, role: admin}]", "not readable"),
            ("{U-1: ann}", "not readable"),
        ] {
            let e = Mapping::parse(text).unwrap_err();
            assert!(e.contains(why), "{text}: {e}");
        }
        assert_eq!(Mapping::parse("").unwrap(), Mapping::default());
    }
}

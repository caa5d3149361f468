//! Who the caller is and what reading the log takes: the answers of a TokenReview and a
//! SubjectAccessReview, made into an identity and a verdict.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use k8s_openapi::api::authentication::v1::TokenReviewStatus;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec, SubjectAccessReviewStatus,
};

use super::{AUDITOR_ROLE, GROUP, RESOURCE, Refusal, SUBRESOURCE, VERB};

/// Where the right to read is checked: in one namespace, or cluster-wide (`None`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Scope {
    pub namespace: Option<String>,
}

impl Scope {
    /// What is read decides where the right is needed: the entries of one namespace (the
    /// request's filter) take the right in that namespace; anything else is the whole log,
    /// which holds one namespace when the operator watches only that one.
    pub fn of(filter_namespace: Option<&str>, watched_namespace: Option<&str>) -> Scope {
        Scope {
            namespace: filter_namespace.or(watched_namespace).map(str::to_owned),
        }
    }

    fn describe(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("in namespace {ns}"),
            None => "cluster-wide".to_owned(),
        }
    }

    fn how_to_grant(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("bind it with a RoleBinding in {ns}, or a ClusterRoleBinding"),
            None => "bind it with a ClusterRoleBinding".to_owned(),
        }
    }
}

/// Who the API server says the caller is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub username: String,
    pub uid: Option<String>,
    pub groups: Vec<String>,
    pub extra: Option<BTreeMap<String, Vec<String>>>,
}

/// The caller's identity from a TokenReview's answer, or 401.
pub fn authenticated(review: Option<&TokenReviewStatus>) -> Result<Identity, Refusal> {
    let rejected = || {
        Refusal::unauthorized(
            "the API server does not accept this bearer token (it is invalid or has expired)",
        )
    };
    let review = review.ok_or_else(rejected)?;
    if review.authenticated != Some(true) {
        return Err(rejected());
    }
    let user = review.user.as_ref().ok_or_else(rejected)?;
    match user.username.as_deref() {
        Some(name) if !name.is_empty() => Ok(Identity {
            username: name.to_owned(),
            uid: user.uid.clone().filter(|u| !u.is_empty()),
            groups: user.groups.clone().unwrap_or_default(),
            extra: user.extra.clone(),
        }),
        _ => Err(rejected()),
    }
}

/// The question put to the API server: may this user read the audit log there?
pub fn access_review(who: &Identity, scope: &Scope) -> SubjectAccessReview {
    SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(who.username.clone()),
            uid: who.uid.clone(),
            groups: Some(who.groups.clone()),
            extra: who.extra.clone(),
            resource_attributes: Some(ResourceAttributes {
                group: Some(GROUP.to_owned()),
                resource: Some(RESOURCE.to_owned()),
                subresource: Some(SUBRESOURCE.to_owned()),
                verb: Some(VERB.to_owned()),
                namespace: scope.namespace.clone(),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The verdict from a SubjectAccessReview's answer: allowed, or 403 naming the user and
/// what it takes.
pub fn authorized(
    who: &Identity,
    scope: &Scope,
    review: Option<&SubjectAccessReviewStatus>,
) -> Result<(), Refusal> {
    if review.is_some_and(|r| r.allowed && r.denied != Some(true)) {
        return Ok(());
    }
    let because = review
        .and_then(|r| r.reason.as_deref())
        .filter(|r| !r.is_empty())
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();
    Err(Refusal::new(
        StatusCode::FORBIDDEN,
        format!(
            "forbidden: {} may not read the audit log{because}: it takes {VERB} on {RESOURCE}/{SUBRESOURCE} \
             in API group {GROUP} {}, which the ClusterRole {AUDITOR_ROLE} grants: {}",
            describe_user(who),
            scope.describe(),
            scope.how_to_grant()
        ),
    ))
}

fn describe_user(who: &Identity) -> String {
    let groups: Vec<&str> = who
        .groups
        .iter()
        .map(String::as_str)
        .filter(|g| *g != "system:authenticated")
        .collect();
    if groups.is_empty() {
        format!("user {:?}", who.username)
    } else {
        format!("user {:?} (groups {})", who.username, groups.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::authentication::v1::UserInfo;

    use super::*;

    #[test]
    fn the_scope_is_the_filtered_namespace_else_the_watched_one_else_the_cluster() {
        assert_eq!(Scope::of(None, None).namespace, None);
        assert_eq!(
            Scope::of(None, Some("ops")).namespace.as_deref(),
            Some("ops")
        );
        assert_eq!(
            Scope::of(Some("team-a"), None).namespace.as_deref(),
            Some("team-a")
        );
        assert_eq!(
            Scope::of(Some("team-a"), Some("ops")).namespace.as_deref(),
            Some("team-a")
        );
    }

    fn reviewed(authenticated: Option<bool>, username: Option<&str>) -> TokenReviewStatus {
        TokenReviewStatus {
            authenticated,
            user: Some(UserInfo {
                username: username.map(str::to_owned),
                uid: Some("u-1".into()),
                groups: Some(vec!["auditors".into(), "system:authenticated".into()]),
                extra: Some(BTreeMap::from([(
                    "authentication.kubernetes.io/credential-id".to_owned(),
                    vec!["JTI=1".to_owned()],
                )])),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn only_an_authenticated_named_user_is_an_identity() {
        let who = authenticated(Some(&reviewed(Some(true), Some("alice")))).unwrap();
        assert_eq!(who.username, "alice");
        assert_eq!(who.uid.as_deref(), Some("u-1"));
        assert_eq!(who.groups, ["auditors", "system:authenticated"]);
        for status in [
            None,
            Some(reviewed(Some(false), Some("alice"))),
            Some(reviewed(None, Some("alice"))),
            Some(reviewed(Some(true), None)),
            Some(reviewed(Some(true), Some(""))),
            Some(TokenReviewStatus {
                authenticated: Some(true),
                ..Default::default()
            }),
        ] {
            let refusal = authenticated(status.as_ref()).unwrap_err();
            assert_eq!(refusal.status, StatusCode::UNAUTHORIZED, "{status:?}");
            assert!(refusal.message.contains("does not accept"), "{refusal:?}");
        }
    }

    #[test]
    fn the_access_review_asks_for_the_audit_subresource_as_the_caller() {
        let who = authenticated(Some(&reviewed(Some(true), Some("alice")))).unwrap();
        let review = access_review(&who, &Scope::of(Some("team-a"), None));
        let spec = &review.spec;
        assert_eq!(spec.user.as_deref(), Some("alice"));
        assert_eq!(spec.uid.as_deref(), Some("u-1"));
        assert_eq!(spec.groups.as_ref().unwrap().len(), 2);
        assert!(
            spec.extra
                .as_ref()
                .unwrap()
                .contains_key("authentication.kubernetes.io/credential-id")
        );
        let attrs = spec.resource_attributes.as_ref().unwrap();
        assert_eq!(
            (
                attrs.group.as_deref(),
                attrs.resource.as_deref(),
                attrs.subresource.as_deref(),
                attrs.verb.as_deref(),
                attrs.namespace.as_deref()
            ),
            (
                Some("decisiongate.io"),
                Some("decisions"),
                Some("audit"),
                Some("get"),
                Some("team-a")
            )
        );
        let cluster = access_review(&who, &Scope::of(None, None));
        assert_eq!(
            cluster.spec.resource_attributes.unwrap().namespace,
            None,
            "the whole log of a cluster-wide operator takes the right cluster-wide"
        );
    }

    #[test]
    fn a_refusal_names_the_user_and_what_it_takes() {
        let who = authenticated(Some(&reviewed(Some(true), Some("dave")))).unwrap();
        let allowed = |allowed: bool, denied: Option<bool>| SubjectAccessReviewStatus {
            allowed,
            denied,
            ..Default::default()
        };
        let scope = Scope::of(None, Some("ops"));
        assert_eq!(authorized(&who, &scope, Some(&allowed(true, None))), Ok(()));
        for status in [
            None,
            Some(allowed(false, None)),
            Some(allowed(false, Some(true))),
        ] {
            let refusal = authorized(&who, &scope, status.as_ref()).unwrap_err();
            assert_eq!(refusal.status, StatusCode::FORBIDDEN);
            for words in [
                "user \"dave\" (groups auditors)",
                "get on decisions/audit in API group decisiongate.io in namespace ops",
                "decision-gate-auditor",
                "RoleBinding in ops",
            ] {
                assert!(
                    refusal.message.contains(words),
                    "{words}: {}",
                    refusal.message
                );
            }
        }
        let cluster = authorized(&who, &Scope::of(None, None), None).unwrap_err();
        assert!(
            cluster.message.contains("cluster-wide"),
            "{}",
            cluster.message
        );
        assert!(
            cluster.message.contains("ClusterRoleBinding"),
            "{}",
            cluster.message
        );
        let reasoned = SubjectAccessReviewStatus {
            reason: Some("no RBAC policy matched".into()),
            ..Default::default()
        };
        assert!(
            authorized(&who, &scope, Some(&reasoned))
                .unwrap_err()
                .message
                .contains("(no RBAC policy matched)")
        );
    }
}

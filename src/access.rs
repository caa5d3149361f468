//! Who may read the audit log over HTTP. The operator serves `/audit/*` only to callers the
//! API server vouches for, as Kubernetes components guard their own endpoints: the bearer
//! token is checked with a TokenReview, then the user it names with a SubjectAccessReview
//! for `get` on the virtual subresource `decisions/audit` of API group `decisiongate.io`.
//!
//! The check is made in a namespace when only that namespace's entries are read (an
//! entries query filtered to one namespace, or an operator that watches one namespace and
//! so logs nothing else), cluster-wide otherwise. A review that cannot be made refuses the
//! request (503): the log is never served on a guess. Verdicts are kept a few seconds, so
//! that a burst of requests costs the API server two reviews, not two per request.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, TokenReviewStatus};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec, SubjectAccessReviewStatus,
};
use kube::api::PostParams;
use kube::{Api, Client};
use sha2::{Digest, Sha256};

/// The header in which a caller's bearer token reaches the operator through the API
/// server's service proxy: the API server removes `Authorization` once it has
/// authenticated a request, so the token travels in a header of its own.
pub const TOKEN_HEADER: &str = "x-decision-gate-token";

/// What reading the audit log takes: `get` on `decisions/audit` in `decisiongate.io`.
pub const GROUP: &str = "decisiongate.io";
pub const RESOURCE: &str = "decisions";
pub const SUBRESOURCE: &str = "audit";
pub const VERB: &str = "get";

/// The chart's ClusterRole that grants it.
pub const AUDITOR_ROLE: &str = "decision-gate-auditor";

/// How long a verdict is reused. A revoked binding or token stops working within this.
pub const VERDICT_TTL: Duration = Duration::from_secs(10);

/// How many verdicts are kept; beyond it the oldest go first.
pub const CACHE_CAPACITY: usize = 512;

/// The longest one review may take before the request is refused as unanswerable.
const REVIEW_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a request for the audit log is refused, as its HTTP answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub message: String,
}

impl Refusal {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Refusal {
            status,
            message: message.into(),
        }
    }

    fn unauthorized(message: impl Into<String>) -> Self {
        Refusal::new(StatusCode::UNAUTHORIZED, message)
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = format!("{}\n", self.message);
        if self.status == StatusCode::UNAUTHORIZED {
            (
                self.status,
                [(header::WWW_AUTHENTICATE, "Bearer realm=\"decision-gate\"")],
                body,
            )
                .into_response()
        } else {
            (self.status, body).into_response()
        }
    }
}

/// The bearer token of a request: `Authorization: Bearer <token>` from a caller that
/// reaches the operator directly, or [`TOKEN_HEADER`] from one that comes through the API
/// server. Both at once must agree: two different credentials make no identity.
pub fn bearer_token(headers: &HeaderMap) -> Result<String, Refusal> {
    let direct = single(headers, header::AUTHORIZATION.as_str())?
        .map(|value| {
            let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
            if !scheme.eq_ignore_ascii_case("bearer") {
                return Err(Refusal::unauthorized(
                    "the Authorization header must carry a bearer token: Authorization: Bearer <token>",
                ));
            }
            non_empty(token.trim(), "Authorization")
        })
        .transpose()?;
    let forwarded = single(headers, TOKEN_HEADER)?
        .map(|value| {
            // The bare token; a "Bearer " in front is forgiven.
            let token = match value.split_once(' ') {
                Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token,
                _ => value,
            };
            non_empty(token.trim(), TOKEN_HEADER)
        })
        .transpose()?;
    match (direct, forwarded) {
        (Some(a), Some(b)) if a != b => Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            format!(
                "the request carries two different tokens (Authorization and {TOKEN_HEADER}); send one"
            ),
        )),
        (Some(token), _) | (None, Some(token)) => Ok(token),
        (None, None) => Err(Refusal::unauthorized(format!(
            "reading the audit log takes a bearer token that the API server accepts: send Authorization: Bearer <token> \
             (or {TOKEN_HEADER}: <token> through the API server's service proxy); \
             `kubectl decision history` and `kubectl decision audit` send yours"
        ))),
    }
}

/// The one value of a header, as text.
fn single<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, Refusal> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            format!("the request carries the {name} header more than once"),
        ));
    }
    value
        .to_str()
        .map(Some)
        .map_err(|_| Refusal::unauthorized(format!("the {name} header is not a valid token")))
}

fn non_empty(token: &str, header: &str) -> Result<String, Refusal> {
    if token.is_empty() {
        Err(Refusal::unauthorized(format!(
            "the {header} header carries no token"
        )))
    } else {
        Ok(token.to_owned())
    }
}

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

/// A verdict that is worth keeping: who the caller is and whether they may read.
type Verdict = Result<Identity, Refusal>;

/// Recent verdicts, by token (a digest of it, never the token) and scope. Bounded in size
/// and age; failures to ask the API server and unknown tokens are never kept.
pub struct VerdictCache {
    entries: HashMap<([u8; 32], Scope), (Instant, Verdict)>,
    capacity: usize,
    ttl: Duration,
}

impl VerdictCache {
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        VerdictCache {
            entries: HashMap::new(),
            capacity,
            ttl,
        }
    }

    pub fn key(token: &str, scope: &Scope) -> ([u8; 32], Scope) {
        (Sha256::digest(token.as_bytes()).into(), scope.clone())
    }

    pub fn get(&mut self, key: &([u8; 32], Scope), now: Instant) -> Option<Verdict> {
        match self.entries.get(key) {
            Some((at, verdict)) if now.saturating_duration_since(*at) < self.ttl => {
                Some(verdict.clone())
            }
            Some(_) => {
                self.entries.remove(key);
                None
            }
            None => None,
        }
    }

    pub fn insert(&mut self, key: ([u8; 32], Scope), verdict: Verdict, now: Instant) {
        if self.capacity == 0 {
            return;
        }
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            let ttl = self.ttl;
            self.entries
                .retain(|_, (at, _)| now.saturating_duration_since(*at) < ttl);
            if self.entries.len() >= self.capacity
                && let Some(oldest) = self
                    .entries
                    .iter()
                    .min_by_key(|(_, (at, _))| *at)
                    .map(|(k, _)| k.clone())
            {
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(key, (now, verdict));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Decides, with the API server, whether a request may read the audit log.
pub struct AuditAccess {
    client: Client,
    /// The namespace the operator watches, if only one: its log holds nothing else.
    watched_namespace: Option<String>,
    cache: Mutex<VerdictCache>,
}

impl AuditAccess {
    pub fn new(client: Client, watched_namespace: Option<String>) -> Self {
        AuditAccess {
            client,
            watched_namespace,
            cache: Mutex::new(VerdictCache::new(CACHE_CAPACITY, VERDICT_TTL)),
        }
    }

    /// The caller, if the API server authenticates their token and allows them to read
    /// what is asked for (the entries of `filter_namespace`, or the whole log).
    pub async fn check(
        &self,
        headers: &HeaderMap,
        filter_namespace: Option<&str>,
    ) -> Result<Identity, Refusal> {
        let token = bearer_token(headers)?;
        let scope = Scope::of(filter_namespace, self.watched_namespace.as_deref());
        let key = VerdictCache::key(&token, &scope);
        if let Some(verdict) = self.cache().get(&key, Instant::now()) {
            return verdict;
        }
        let review = TokenReview {
            spec: TokenReviewSpec {
                token,
                audiences: None,
            },
            ..Default::default()
        };
        let reviewed = self.ask("authenticate the token", review).await?;
        let who = authenticated(reviewed.status.as_ref())?;
        let asked = self
            .ask("check the caller's rights", access_review(&who, &scope))
            .await?;
        let verdict = authorized(&who, &scope, asked.status.as_ref()).map(|()| who);
        self.cache().insert(key, verdict.clone(), Instant::now());
        verdict
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, VerdictCache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates a review and returns the API server's answer; any failure refuses (503).
    async fn ask<K>(&self, what: &str, review: K) -> Result<K, Refusal>
    where
        K: kube::Resource<DynamicType = (), Scope = k8s_openapi::ClusterResourceScope>
            + Clone
            + serde::Serialize
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let api: Api<K> = Api::all(self.client.clone());
        let unavailable = |why: String| {
            tracing::warn!(%why, "cannot {what} for the audit log");
            Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the audit log is not served: the operator cannot {what} with the API server: {why}"
                ),
            )
        };
        match tokio::time::timeout(REVIEW_TIMEOUT, api.create(&PostParams::default(), &review))
            .await
        {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => Err(unavailable(crate::error::describe_kube(&e))),
            Err(_) => Err(unavailable(format!(
                "no answer within {}s",
                REVIEW_TIMEOUT.as_secs()
            ))),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use k8s_openapi::api::authentication::v1::UserInfo;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        h
    }

    #[test]
    fn the_token_comes_from_authorization_or_the_forwarding_header() {
        let token = |pairs: &[(&str, &str)]| bearer_token(&headers(pairs));
        assert_eq!(token(&[("authorization", "Bearer abc")]).unwrap(), "abc");
        assert_eq!(token(&[("Authorization", "bearer  abc ")]).unwrap(), "abc");
        assert_eq!(token(&[(TOKEN_HEADER, "abc")]).unwrap(), "abc");
        assert_eq!(token(&[(TOKEN_HEADER, "Bearer abc")]).unwrap(), "abc");
        assert_eq!(
            token(&[("authorization", "Bearer abc"), (TOKEN_HEADER, "abc")]).unwrap(),
            "abc"
        );

        let refused = |pairs: &[(&str, &str)]| token(pairs).unwrap_err();
        let none = refused(&[]);
        assert_eq!(none.status, StatusCode::UNAUTHORIZED);
        assert!(none.message.contains("takes a bearer token"), "{none:?}");
        for pairs in [
            &[("authorization", "Basic YWxpY2U6c2VjcmV0")][..],
            &[("authorization", "Bearer")],
            &[("authorization", "Bearer   ")],
            &[(TOKEN_HEADER, " ")],
        ] {
            assert_eq!(refused(pairs).status, StatusCode::UNAUTHORIZED, "{pairs:?}");
        }
        let basic = refused(&[("authorization", "Basic YWxpY2U6c2VjcmV0")]);
        assert!(basic.message.contains("Bearer <token>"), "{basic:?}");
        assert_eq!(
            refused(&[("authorization", "Bearer a"), (TOKEN_HEADER, "b")]).status,
            StatusCode::BAD_REQUEST,
            "two credentials make no identity"
        );
        assert_eq!(
            refused(&[(TOKEN_HEADER, "a"), (TOKEN_HEADER, "b")]).status,
            StatusCode::BAD_REQUEST
        );
        let mut odd = HeaderMap::new();
        odd.insert(
            TOKEN_HEADER,
            HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
        );
        assert_eq!(
            bearer_token(&odd).unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
    }

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

    fn alice() -> Identity {
        Identity {
            username: "alice".into(),
            uid: None,
            groups: vec![],
            extra: None,
        }
    }

    #[test]
    fn verdicts_are_kept_briefly_per_token_and_scope_and_never_the_token_itself() {
        let t0 = Instant::now();
        let mut cache = VerdictCache::new(4, Duration::from_secs(10));
        let here = Scope::of(Some("team-a"), None);
        let key = VerdictCache::key("secret-token", &here);
        assert!(!key.0.iter().eq(b"secret-token".iter()));
        cache.insert(key.clone(), Ok(alice()), t0);
        assert_eq!(
            cache.get(&key, t0 + Duration::from_secs(9)),
            Some(Ok(alice()))
        );
        assert_eq!(
            cache.get(
                &VerdictCache::key("secret-token", &Scope::of(None, None)),
                t0
            ),
            None,
            "a verdict in one namespace says nothing of another scope"
        );
        assert_eq!(cache.get(&VerdictCache::key("other", &here), t0), None);
        assert_eq!(
            cache.get(&key, t0 + Duration::from_secs(10)),
            None,
            "expired"
        );
        assert!(cache.is_empty(), "an expired verdict is dropped when found");
    }

    #[test]
    fn the_cache_never_grows_past_its_capacity_and_drops_the_oldest() {
        let t0 = Instant::now();
        let mut cache = VerdictCache::new(3, Duration::from_secs(10));
        let scope = Scope::of(None, None);
        for (i, token) in ["a", "b", "c", "d"].iter().enumerate() {
            cache.insert(
                VerdictCache::key(token, &scope),
                Ok(alice()),
                t0 + Duration::from_secs(i as u64),
            );
            assert!(cache.len() <= 3);
        }
        let now = t0 + Duration::from_secs(4);
        assert_eq!(
            cache.get(&VerdictCache::key("a", &scope), now),
            None,
            "the oldest went"
        );
        for token in ["b", "c", "d"] {
            assert!(
                cache.get(&VerdictCache::key(token, &scope), now).is_some(),
                "{token}"
            );
        }
        // Expired verdicts make room before any live one is dropped.
        let later = t0 + Duration::from_secs(12);
        cache.insert(VerdictCache::key("e", &scope), Ok(alice()), later);
        assert!(cache.get(&VerdictCache::key("d", &scope), later).is_some());
        assert!(cache.get(&VerdictCache::key("e", &scope), later).is_some());
        assert!(cache.len() <= 3);
        let mut none = VerdictCache::new(0, Duration::from_secs(10));
        none.insert(VerdictCache::key("a", &scope), Ok(alice()), t0);
        assert!(none.is_empty());
    }

    /// A scripted API server: answers each expected review in turn, and counts them.
    pub(crate) fn scripted(
        answers: Vec<(&'static str, u16, serde_json::Value)>,
    ) -> (Client, tokio::task::JoinHandle<Vec<serde_json::Value>>) {
        use http::{Request, Response};
        use kube::client::Body;
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let seen = tokio::spawn(async move {
            let mut seen = Vec::new();
            for (path, code, body) in answers {
                let (request, send) = handle.next_request().await.expect("a request");
                assert_eq!(request.uri().path(), path);
                let sent = request.into_body().collect_bytes().await.unwrap();
                seen.push(serde_json::from_slice(&sent).unwrap());
                send.send_response(
                    Response::builder()
                        .status(code)
                        .body(Body::from(serde_json::to_vec(&body).unwrap()))
                        .unwrap(),
                );
            }
            seen
        });
        (Client::new(service, "default"), seen)
    }

    pub(crate) const TOKEN_REVIEWS: &str = "/apis/authentication.k8s.io/v1/tokenreviews";
    pub(crate) const ACCESS_REVIEWS: &str = "/apis/authorization.k8s.io/v1/subjectaccessreviews";

    pub(crate) fn token_review(username: &str) -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {},
            "status": {"authenticated": true, "user": {"username": username, "groups": ["auditors"]}},
        })
    }

    pub(crate) fn access(allowed: bool) -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": {},
            "status": {"allowed": allowed},
        })
    }

    #[tokio::test]
    async fn an_allowed_caller_is_reviewed_once_then_served_from_the_cache() {
        let (client, seen) = scripted(vec![
            (TOKEN_REVIEWS, 201, token_review("alice")),
            (ACCESS_REVIEWS, 201, access(true)),
        ]);
        let gate = AuditAccess::new(client, Some("ops".into()));
        let request = headers(&[(TOKEN_HEADER, "alice-token")]);
        assert_eq!(gate.check(&request, None).await.unwrap().username, "alice");
        assert_eq!(gate.check(&request, None).await.unwrap().username, "alice");
        let seen = seen.await.unwrap();
        assert_eq!(seen[0]["spec"]["token"], "alice-token");
        assert_eq!(seen[1]["spec"]["user"], "alice");
        assert_eq!(seen[1]["spec"]["groups"], serde_json::json!(["auditors"]));
        assert_eq!(
            seen[1]["spec"]["resourceAttributes"],
            serde_json::json!({"group": "decisiongate.io", "resource": "decisions",
                "subresource": "audit", "verb": "get", "namespace": "ops"})
        );
    }

    #[tokio::test]
    async fn a_forbidden_caller_is_refused_and_an_unknown_token_is_not_remembered() {
        let (client, seen) = scripted(vec![
            (TOKEN_REVIEWS, 201, token_review("dave")),
            (ACCESS_REVIEWS, 201, access(false)),
            (
                TOKEN_REVIEWS,
                201,
                serde_json::json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                    "spec": {}, "status": {"authenticated": false, "error": "invalid bearer token"}}),
            ),
            (
                TOKEN_REVIEWS,
                201,
                serde_json::json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                    "spec": {}, "status": {"authenticated": false}}),
            ),
        ]);
        let gate = AuditAccess::new(client, None);
        let dave = headers(&[("authorization", "Bearer dave-token")]);
        let refusal = gate.check(&dave, None).await.unwrap_err();
        assert_eq!(refusal.status, StatusCode::FORBIDDEN);
        assert!(refusal.message.contains("user \"dave\""), "{refusal:?}");
        assert_eq!(gate.check(&dave, None).await.unwrap_err(), refusal, "kept");
        let forged = headers(&[("authorization", "Bearer forged")]);
        for _ in 0..2 {
            let refusal = gate.check(&forged, None).await.unwrap_err();
            assert_eq!(refusal.status, StatusCode::UNAUTHORIZED);
        }
        assert_eq!(
            seen.await.unwrap().len(),
            4,
            "the forged token was asked about twice"
        );
        let no_token = gate.check(&HeaderMap::new(), None).await.unwrap_err();
        assert_eq!(
            no_token.status,
            StatusCode::UNAUTHORIZED,
            "and no review without a token"
        );
    }

    #[tokio::test]
    async fn a_review_the_api_server_does_not_answer_refuses_and_is_asked_again() {
        let status = serde_json::json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
            "code": 403, "reason": "Forbidden", "metadata": {},
            "message": "tokenreviews.authentication.k8s.io is forbidden: User \"system:serviceaccount:x:op\" cannot create resource \"tokenreviews\""});
        let (client, seen) = scripted(vec![
            (TOKEN_REVIEWS, 403, status),
            (TOKEN_REVIEWS, 201, token_review("alice")),
            (
                ACCESS_REVIEWS,
                500,
                serde_json::json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
                    "code": 500, "reason": "InternalError", "message": "etcd is gone", "metadata": {}}),
            ),
        ]);
        let gate = AuditAccess::new(client, None);
        let request = headers(&[(TOKEN_HEADER, "alice-token")]);
        let refusal = gate.check(&request, None).await.unwrap_err();
        assert_eq!(refusal.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            refusal.message.contains("cannot authenticate the token")
                && refusal
                    .message
                    .contains("cannot create resource \"tokenreviews\""),
            "{refusal:?}"
        );
        let refusal = gate.check(&request, None).await.unwrap_err();
        assert_eq!(refusal.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(refusal.message.contains("etcd is gone"), "{refusal:?}");
        assert_eq!(seen.await.unwrap().len(), 3);
    }
}

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

mod cache;
mod review;
mod token;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::api::PostParams;
use kube::{Api, Client};

pub use self::cache::VerdictCache;
pub use self::review::{Identity, Scope, access_review, authenticated, authorized};
pub use self::token::bearer_token;

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
pub(crate) mod tests;

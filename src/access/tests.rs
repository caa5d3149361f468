// AuditAccess against a scripted API server, and the scripted server itself, which the
// HTTP tests use too.

use axum::http::HeaderValue;

use super::*;

pub(crate) fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in pairs {
        h.append(
            axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    h
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

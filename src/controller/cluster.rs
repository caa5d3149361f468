//! Talking to the API server: status writes, Job submission, APIs scoped to the watched
//! namespace, the check that the CRDs are served, and what a failed request means.

use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::{ApprovalPolicy, Decision, ExecutionPlan};
use crate::error::{Error, Result};

/// The field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "decision-gate";

/// An API for `K` in `namespace`, or in all namespaces when `None`.
pub fn scoped_api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Writes `status` with server-side apply, owned by the operator's field manager.
pub async fn apply_status<K, S>(obj: &K, client: &Client, status: &S) -> Result<()>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    S: Serialize,
{
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    untyped_api(obj, client)
        .patch_status(
            &obj.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    Ok(())
}

/// Replaces the whole status, every field of it: for a status that could not be read,
/// whose unreadable fields a server-side apply would leave in place. The write is
/// conditional on the object's resourceVersion, so a status written meanwhile is not lost.
pub async fn replace_status<K, S>(obj: &K, client: &Client, status: &S) -> Result<()>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
    S: Serialize,
{
    let resource = kube::api::ApiResource::erase::<K>(&());
    let mut replacement = kube::api::DynamicObject::new(&obj.name_any(), &resource);
    replacement.metadata.namespace = obj.meta().namespace.clone();
    replacement.metadata.resource_version = obj.meta().resource_version.clone();
    replacement.data = serde_json::json!({
        "status": serde_json::to_value(status).map_err(|source| Error::Serialization {
            what: "a status",
            source,
        })?,
    });
    untyped_api(obj, client)
        .replace_status(
            &obj.name_any(),
            &kube::api::PostParams {
                field_manager: Some(FIELD_MANAGER.to_owned()),
                ..Default::default()
            },
            &replacement,
        )
        .await?;
    Ok(())
}

/// An API for objects of `obj`'s kind that reads any answer, whatever its status holds.
fn untyped_api<K>(obj: &K, client: &Client) -> Api<kube::api::DynamicObject>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    Api::namespaced_with(
        client.clone(),
        &obj.meta().namespace.clone().unwrap_or_default(),
        &kube::api::ApiResource::erase::<K>(&()),
    )
}

/// Submits a Job, for real or with `dryRun=All` (the API server runs validation and
/// admission and stores nothing). Unknown fields are refused, so a misspelt field is
/// reported rather than silently dropped.
pub async fn submit_job(
    client: &Client,
    namespace: &str,
    job: &serde_json::Value,
    dry_run: bool,
) -> Result<serde_json::Value, kube::Error> {
    let dry = if dry_run { "dryRun=All&" } else { "" };
    let uri = format!(
        "/apis/batch/v1/namespaces/{namespace}/jobs?{dry}fieldValidation=Strict&fieldManager={FIELD_MANAGER}"
    );
    let body = serde_json::to_vec(job).map_err(kube::Error::SerdeError)?;
    let request = http::Request::post(uri)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body)
        .map_err(kube::Error::HttpError)?;
    client.request::<serde_json::Value>(request).await
}

/// Fails with a clear message when a CRD is missing (or the operator may not read it).
pub async fn check_crds(client: &Client, namespace: Option<&str>) -> Result<()> {
    async fn probe<K>(client: &Client, namespace: Option<&str>) -> Result<()>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
    {
        let crd = format!("{}.{}", K::plural(&()), K::group(&()));
        match scoped_api::<K>(client, namespace)
            .list_metadata(&ListParams::default().limit(1))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Err(Error::CrdMissing(crd)),
            Err(kube::Error::Api(s)) if s.code == 403 => Err(Error::Config(format!(
                "the operator may not list {crd}: {}; check its RBAC",
                s.message
            ))),
            Err(e) => Err(e.into()),
        }
    }
    probe::<Decision>(client, namespace).await?;
    probe::<ApprovalPolicy>(client, namespace).await?;
    probe::<ExecutionPlan>(client, namespace).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Request, Response};
    use kube::client::Body;

    /// A scripted API server: answers each expected request in turn and checks its path.
    async fn scripted(answers: Vec<(&'static str, u16, serde_json::Value)>) -> Client {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        tokio::spawn(async move {
            for (path, code, body) in answers {
                let (request, send) = handle.next_request().await.expect("a request");
                assert!(
                    request.uri().path().starts_with(path),
                    "expected a request for {path}, got {}",
                    request.uri()
                );
                send.send_response(
                    Response::builder()
                        .status(code)
                        .body(Body::from(serde_json::to_vec(&body).unwrap()))
                        .unwrap(),
                );
            }
        });
        Client::new(service, "default")
    }

    fn empty_list() -> serde_json::Value {
        serde_json::json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": []})
    }

    fn status(code: u16, reason: &str, message: &str) -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "v1", "kind": "Status", "status": "Failure",
            "code": code, "reason": reason, "message": message, "metadata": {},
        })
    }

    #[tokio::test]
    async fn a_missing_crd_is_named_with_the_way_to_install_it() {
        let client = scripted(vec![
            (
                "/apis/decisiongate.io/v1alpha1/decisions",
                200,
                empty_list(),
            ),
            (
                "/apis/decisiongate.io/v1alpha1/approvalpolicies",
                404,
                status(
                    404,
                    "NotFound",
                    "the server could not find the requested resource",
                ),
            ),
        ])
        .await;
        let err = check_crds(&client, None).await.unwrap_err();
        assert_eq!(err.category(), "CrdMissing");
        let message = err.to_string();
        assert!(
            message.contains("approvalpolicies.decisiongate.io is not installed"),
            "{message}"
        );
        assert!(message.contains("make install"), "{message}");
    }

    #[tokio::test]
    async fn every_crd_present_passes() {
        let client = scripted(vec![
            (
                "/apis/decisiongate.io/v1alpha1/namespaces/team-a/decisions",
                200,
                empty_list(),
            ),
            (
                "/apis/decisiongate.io/v1alpha1/namespaces/team-a/approvalpolicies",
                200,
                empty_list(),
            ),
            (
                "/apis/decisiongate.io/v1alpha1/namespaces/team-a/executionplans",
                200,
                empty_list(),
            ),
        ])
        .await;
        check_crds(&client, Some("team-a")).await.unwrap();
    }
}

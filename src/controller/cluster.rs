//! Talking to the API server: status writes, Job submission, APIs scoped to the watched
//! namespace, the check that the CRDs are served, and what a failed request means
//! ([`ApiFailure`], kept beside the error type).

use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::{ApprovalPolicy, Decision, ExecutionPlan};
pub use crate::error::ApiFailure;
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

/// Writes `status` with server-side apply, owned by the operator's field manager. The
/// object the API server answers with is not read: nothing uses it, and its watch event
/// brings it anyway.
pub async fn apply_status<K, S>(obj: &K, client: &Client, status: &S) -> Result<()>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
    S: Serialize,
{
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Applied<'a, S> {
        api_version: &'a str,
        kind: &'a str,
        status: &'a S,
    }
    let applied = Applied {
        api_version: &K::api_version(&()),
        kind: &K::kind(&()),
        status,
    };
    let path = K::url_path(&(), obj.meta().namespace.as_deref());
    let request = kube::core::Request::new(path)
        .patch_subresource(
            "status",
            &obj.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&applied),
        )
        .map_err(kube::Error::BuildRequest)?;
    client
        .request::<serde::de::IgnoredAny>(request)
        .await
        .map(drop)?;
    Ok(())
}

/// Replaces the whole status, every field of it: for a status that could not be read,
/// whose unreadable fields a server-side apply would leave in place. The write is
/// conditional on the object's resourceVersion, so a status written meanwhile is not lost
/// (the API server answers [`ApiFailure::Conflict`], and the reconcile is retried).
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
            Err(e) => Err(match (ApiFailure::of(&e), &e) {
                (ApiFailure::NotFound, _) => Error::CrdMissing(crd),
                (ApiFailure::Refused, kube::Error::Api(s)) if s.code == 403 => {
                    Error::Config(format!(
                        "the operator may not list {crd}: {}; check its RBAC",
                        s.message
                    ))
                }
                _ => e.into(),
            }),
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
    use crate::controller::testing::{empty_list, get, patch, post, put, scripted};
    use serde_json::json;

    const CRDS: &str = "/apis/decisiongate.io/v1alpha1";

    #[tokio::test]
    async fn a_missing_crd_is_named_with_the_way_to_install_it() {
        let (client, server) = scripted(vec![
            get(&format!("{CRDS}/decisions")).answer(200, empty_list()),
            get(&format!("{CRDS}/approvalpolicies")).fail(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ),
        ]);
        let err = check_crds(&client, None).await.unwrap_err();
        drop(client);
        server.verify().await;
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
        let (client, server) = scripted(
            ["decisions", "approvalpolicies", "executionplans"]
                .into_iter()
                .map(|plural| {
                    get(&format!("{CRDS}/namespaces/team-a/{plural}"))
                        .query("limit=1")
                        .answer(200, empty_list())
                })
                .collect(),
        );
        check_crds(&client, Some("team-a")).await.unwrap();
        drop(client);
        server.verify().await;
    }

    #[tokio::test]
    async fn a_crd_the_operator_may_not_list_is_a_configuration_problem() {
        let (client, server) = scripted(vec![
            get(&format!("{CRDS}/decisions")).answer(200, empty_list()),
            get(&format!("{CRDS}/approvalpolicies")).answer(200, empty_list()),
            get(&format!("{CRDS}/executionplans")).fail(
                403,
                "Forbidden",
                "executionplans.decisiongate.io is forbidden: User \"system:serviceaccount:x:y\" cannot list",
            ),
        ]);
        let err = check_crds(&client, None).await.unwrap_err();
        drop(client);
        server.verify().await;
        assert_eq!(err.category(), "ConfigError");
        assert!(
            err.to_string()
                .starts_with("the operator may not list executionplans.decisiongate.io: executionplans.decisiongate.io is forbidden"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn an_api_server_that_fails_is_no_missing_crd() {
        let (client, server) = scripted(vec![get(&format!("{CRDS}/decisions")).fail(
            503,
            "ServiceUnavailable",
            "etcd is not answering",
        )]);
        let err = check_crds(&client, None).await.unwrap_err();
        drop(client);
        server.verify().await;
        assert_eq!(err.category(), "Unavailable");
    }

    fn plan() -> ExecutionPlan {
        let mut plan: ExecutionPlan = serde_json::from_value(json!({
            "apiVersion": "decisiongate.io/v1alpha1", "kind": "ExecutionPlan",
            "metadata": {"name": "p", "namespace": "ops", "resourceVersion": "41"},
            "spec": {"actionTypes": ["deploy"], "steps": []},
        }))
        .unwrap();
        plan.metadata.generation = Some(2);
        plan
    }

    #[tokio::test]
    async fn a_status_is_applied_by_the_operator_or_replaced_at_the_version_read() {
        let path = format!("{CRDS}/namespaces/ops/executionplans/p/status");
        let (client, server) = scripted(vec![
            patch(&path)
                .query("fieldManager=decision-gate")
                .query("force=true")
                .body(|body| {
                    assert_eq!(body["kind"], "ExecutionPlan");
                    assert_eq!(body["apiVersion"], "decisiongate.io/v1alpha1");
                    assert_eq!(body["status"], json!({"phase": "Ready"}));
                }),
            put(&path).query("fieldManager=decision-gate").body(|body| {
                assert_eq!(body["metadata"]["resourceVersion"], "41");
                assert_eq!(body["status"], json!({"phase": "Ready"}));
            }),
            put(&path).fail(409, "Conflict", "the object has been modified"),
        ]);
        let status = json!({"phase": "Ready"});
        apply_status(&plan(), &client, &status).await.unwrap();
        replace_status(&plan(), &client, &status).await.unwrap();
        let conflict = replace_status(&plan(), &client, &status).await.unwrap_err();
        drop(client);
        server.verify().await;
        assert_eq!(conflict.category(), "Conflict");
    }

    #[tokio::test]
    async fn a_job_is_submitted_strictly_and_a_dry_run_stores_nothing() {
        let path = "/apis/batch/v1/namespaces/ops/jobs";
        let (client, server) = scripted(vec![
            post(path)
                .query("dryRun=All")
                .query("fieldValidation=Strict")
                .query("fieldManager=decision-gate")
                .body(|job| assert_eq!(job["metadata"]["name"], "j")),
            post(path)
                .query("fieldValidation=Strict")
                .query_lacks("dryRun=All")
                .body(|job| assert_eq!(job["kind"], "Job")),
        ]);
        let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"}});
        submit_job(&client, "ops", &job, true).await.unwrap();
        submit_job(&client, "ops", &job, false).await.unwrap();
        drop(client);
        server.verify().await;
    }
}

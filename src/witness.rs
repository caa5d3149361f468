//! The deletion witness: an admission webhook the API server calls as it admits the
//! deletion of a Decision, so that who deleted it, as the API server authenticated them,
//! is known when the deletion is audited.
//!
//! A watch never says who deleted an object, and an admission policy cannot write. The
//! witness is told, in the AdmissionReview of the deletion, and writes it on the Decision
//! itself (the annotations `decisiongate.io/deleted-by` and `deleted-at`, which the chart's
//! admission policy lets nobody else write), where every replica and the leader's audit
//! of the deletion find it: the operator's finalizer keeps the Decision until then. It
//! never refuses a deletion, and the chart calls it with `failurePolicy: Ignore`: when it
//! cannot be reached, the deletion is audited all the same, as by someone the API server
//! did not name.
//!
//! The API server asks again when the Decision changed under the deletion (as the witness's
//! own write makes it): the second time the Decision already names the same person, and the
//! witness writes nothing, so the deletion goes through.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use chrono::{DateTime, Utc};
use kube::Client;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};
use tracing::{debug, info, warn};

use crate::api::annotations::{DELETED_AT, DELETED_BY};
use crate::api::{Decision, FINALIZER};

/// Where the API server sends the AdmissionReviews.
pub const PATH: &str = "/decision-deletions";

/// The field manager of the witness's writes: its own, so that `managedFields` tell them
/// from the reconcilers'.
pub const FIELD_MANAGER: &str = "decision-gate-deletion-witness";

/// How far apart the witness's record and the deletion may be for the record to name who
/// deleted: a record from an earlier deletion that was refused later in the admission
/// chain does not name the one who deletes it another time.
const WINDOW: chrono::Duration = chrono::Duration::seconds(60);

/// How the witness is served.
#[derive(Clone, Debug)]
pub struct Settings {
    pub addr: SocketAddr,
    /// Holds `tls.crt` and `tls.key` (PEM): the API server calls webhooks over TLS only.
    pub cert_dir: PathBuf,
}

/// One deletion, as the API server describes it.
#[derive(Clone, Debug, PartialEq)]
pub struct Deletion {
    /// The review's uid, which the answer repeats.
    pub uid: String,
    pub user: String,
    pub namespace: String,
    pub name: String,
    pub dry_run: bool,
    /// The Decision as it is before the deletion.
    pub decision: Option<Decision>,
}

/// The deletion an AdmissionReview asks about.
pub fn read(review: &Value) -> Result<Deletion, String> {
    let request = review
        .get("request")
        .ok_or("the AdmissionReview has no request")?;
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let uid = text(&request["uid"]);
    if uid.is_empty() {
        return Err("the AdmissionReview's request has no uid".to_owned());
    }
    Ok(Deletion {
        uid,
        user: text(&request["userInfo"]["username"]),
        namespace: text(&request["namespace"]),
        name: text(&request["name"]),
        dry_run: request["dryRun"].as_bool().unwrap_or(false),
        decision: (request["operation"] == "DELETE")
            .then(|| serde_json::from_value(request["oldObject"].clone()).ok())
            .flatten(),
    })
}

/// The answer to a review: allowed, always.
pub fn allow(uid: &str) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": uid, "allowed": true},
    })
}

/// The merge patch that records who deletes, if one is to be written: not for a dry run,
/// not for a Decision the finalizer does not keep (it is gone at once, nothing would read
/// the record), and not when it already names the same person from a moment ago.
pub fn record(deletion: &Deletion, now: DateTime<Utc>) -> Option<Value> {
    let decision = deletion.decision.as_ref()?;
    if deletion.dry_run || deletion.user.is_empty() {
        return None;
    }
    if !decision
        .metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == FINALIZER)
    {
        return None;
    }
    let notes = decision.metadata.annotations.as_ref();
    let named = notes.and_then(|a| a.get(DELETED_BY)) == Some(&deletion.user);
    let recent = notes
        .and_then(|a| a.get(DELETED_AT))
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .is_some_and(|at| (now - at.with_timezone(&Utc)).abs() <= WINDOW);
    if named && recent {
        return None;
    }
    Some(json!({
        "metadata": {
            "annotations": {
                DELETED_BY: deletion.user,
                DELETED_AT: now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            }
        }
    }))
}

/// Who deleted a Decision being deleted, where the witness recorded it for this deletion.
pub fn deleted_by(decision: &Decision) -> Option<String> {
    let deleting = decision
        .metadata
        .deletion_timestamp
        .as_ref()
        .map(|t| crate::api::common::to_chrono(&t.0))?;
    let notes = decision.metadata.annotations.as_ref()?;
    let at = DateTime::parse_from_rfc3339(notes.get(DELETED_AT)?).ok()?;
    ((deleting - at.with_timezone(&Utc)).abs() <= WINDOW)
        .then(|| notes.get(DELETED_BY).cloned())
        .flatten()
        .filter(|who| !who.is_empty())
}

/// Binds the witness's address (so that a clash is reported at start-up) and returns the
/// server, which writes its records with the operator's `client`.
pub async fn bind(
    settings: Settings,
    client: Client,
) -> std::io::Result<(SocketAddr, impl std::future::Future<Output = ()>)> {
    let tls = tls_config(&settings.cert_dir)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind(settings.addr).await?;
    let local = listener.local_addr()?;
    let router = Router::new().route(PATH, post(review)).with_state(client);
    let serve = async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let service = hyper_util::service::TowerToHyperService::new(router.clone());
            tokio::spawn(async move {
                // A caller that fails the handshake (not the API server) is dropped.
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    };
    Ok((local, serve))
}

fn tls_config(dir: &std::path::Path) -> std::io::Result<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let unusable = |what: &str, e: &dyn std::fmt::Display| {
        std::io::Error::other(format!("{what} in {}: {e}", dir.display()))
    };
    let certs = CertificateDer::pem_file_iter(dir.join("tls.crt"))
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| unusable("cannot read the certificate tls.crt", &e))?;
    let key = PrivateKeyDer::from_pem_file(dir.join("tls.key"))
        .map_err(|e| unusable("cannot read the key tls.key", &e))?;
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| unusable("no TLS version", &e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| unusable("the certificate and key do not serve", &e))
}

/// One AdmissionReview: the deletion allowed, and who asked for it written on the Decision.
async fn review(State(client): State<Client>, body: Bytes) -> axum::Json<Value> {
    let review: Value = serde_json::from_slice(&body).unwrap_or_default();
    let deletion = match read(&review) {
        Ok(deletion) => deletion,
        Err(why) => {
            warn!(why, "an AdmissionReview the deletion witness cannot read");
            return axum::Json(allow(""));
        }
    };
    debug!(name = %deletion.name, namespace = %deletion.namespace, user = %deletion.user, dry_run = deletion.dry_run, "a deletion to witness");
    if let Some(patch) = record(&deletion, Utc::now()) {
        let api: kube::Api<Decision> = kube::Api::namespaced(client, &deletion.namespace);
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..Default::default()
        };
        match api
            .patch_metadata(&deletion.name, &params, &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                info!(name = %deletion.name, namespace = %deletion.namespace, user = %deletion.user, "witnessed a deletion")
            }
            Err(e) => {
                warn!(name = %deletion.name, namespace = %deletion.namespace, user = %deletion.user, error = %e, "cannot record who deletes a Decision")
            }
        }
    }
    axum::Json(allow(&deletion.uid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::DecisionSpec;
    use crate::api::decision::Criticality;

    fn decision(annotations: &[(&str, &str)]) -> Value {
        let mut d = Decision::new("ship", DecisionSpec::example("deploy", Criticality::High));
        d.metadata.namespace = Some("ops".into());
        d.metadata.finalizers = Some(vec![FINALIZER.into()]);
        d.metadata.annotations = Some(
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        serde_json::to_value(d).unwrap()
    }

    fn review(old: Value, dry_run: bool) -> Value {
        json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": "r-1", "operation": "DELETE", "namespace": "ops", "name": "ship",
                "userInfo": {"username": "alice", "groups": ["approvers"]},
                "dryRun": dry_run, "oldObject": old,
            },
        })
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    #[test]
    fn a_deletion_is_allowed_and_its_deleter_recorded_once() {
        let deletion = read(&review(decision(&[]), false)).unwrap();
        assert_eq!(deletion.user, "alice");
        assert_eq!(
            (deletion.namespace.as_str(), deletion.name.as_str()),
            ("ops", "ship")
        );
        assert_eq!(
            allow(&deletion.uid)["response"],
            json!({"uid": "r-1", "allowed": true})
        );
        let patch = record(&deletion, at(0)).expect("written");
        assert_eq!(patch["metadata"]["annotations"][DELETED_BY], "alice");

        // Asked again once the record is on the Decision: nothing more to write.
        let stamped = decision(&[(DELETED_BY, "alice"), (DELETED_AT, &at(0).to_rfc3339())]);
        assert_eq!(
            record(&read(&review(stamped.clone(), false)).unwrap(), at(1)),
            None
        );
        // Long after (an earlier deletion refused), or by someone else: written again.
        assert!(record(&read(&review(stamped, false)).unwrap(), at(600)).is_some());
        let bobs = decision(&[(DELETED_BY, "bob"), (DELETED_AT, &at(0).to_rfc3339())]);
        assert!(record(&read(&review(bobs, false)).unwrap(), at(1)).is_some());
    }

    #[test]
    fn nothing_is_written_for_a_dry_run_or_what_the_finalizer_does_not_keep() {
        assert_eq!(
            record(&read(&review(decision(&[]), true)).unwrap(), at(0)),
            None
        );
        let mut gone = decision(&[]);
        gone["metadata"]["finalizers"] = json!([]);
        assert_eq!(record(&read(&review(gone, false)).unwrap(), at(0)), None);
        assert!(read(&json!({"request": {}})).is_err());
    }

    #[test]
    fn the_record_names_the_deleter_of_this_deletion_only() {
        let mut d: Decision = serde_json::from_value(decision(&[
            (DELETED_BY, "alice"),
            (DELETED_AT, &at(0).to_rfc3339()),
        ]))
        .unwrap();
        assert_eq!(deleted_by(&d), None, "not being deleted");
        let deleting = |s: i64| {
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::from_second(1_800_000_000 + s).unwrap(),
            )
        };
        d.metadata.deletion_timestamp = Some(deleting(1));
        assert_eq!(deleted_by(&d).as_deref(), Some("alice"));
        d.metadata.deletion_timestamp = Some(deleting(3600));
        assert_eq!(deleted_by(&d), None, "a record of another deletion");
    }
}

//! The operator's audit endpoints, reached through the API server's service proxy with the
//! caller's own bearer token passed on.

use decision_gate::plugin;
use kube::{Client, Config};

use super::Failure;

/// Where the operator serves its audit log: reached through the API server's service
/// proxy (`get` on `services/proxy`), with the caller's own token passed on so that the
/// operator asks the API server who they are and whether they may read it (`get` on
/// `decisions/audit`).
#[derive(Clone, clap::Args)]
pub(crate) struct OperatorService {
    /// The operator's namespace.
    #[arg(
        long,
        env = "DECISION_GATE_OPERATOR_NAMESPACE",
        default_value = "decision-gate-system"
    )]
    operator_namespace: String,
    /// The operator's metrics Service.
    #[arg(
        long,
        env = "DECISION_GATE_OPERATOR_SERVICE",
        default_value = "decision-gate-metrics"
    )]
    operator_service: String,
}

impl OperatorService {
    /// GETs a path of the operator's HTTP endpoints through the service proxy, as the
    /// owner of `token`. The API server removes `Authorization` once it has authenticated
    /// the request, so the token goes in a header of its own.
    pub(crate) async fn get(
        &self,
        client: &Client,
        token: &str,
        path_and_query: &str,
    ) -> Result<Vec<u8>, Failure> {
        let uri = format!(
            "/api/v1/namespaces/{}/services/{}:http/proxy{path_and_query}",
            self.operator_namespace, self.operator_service
        );
        let mut value = http::HeaderValue::from_str(token)
            .map_err(|_| Failure("your kubeconfig's token is not a valid header value".into()))?;
        value.set_sensitive(true);
        let request = http::Request::get(uri)
            .header(decision_gate::access::TOKEN_HEADER, value)
            .body(Vec::new())
            .map_err(|e| Failure(e.to_string()))?;
        client
            .request_text(request)
            .await
            .map(String::into_bytes)
            .map_err(|e| match e {
                // The API server's own refusal, to proxy to the Service at all.
                kube::Error::Api(s)
                    if s.code == 403 && s.details.as_ref().is_some_and(|d| d.kind == "services") =>
                {
                    Failure(format!(
                        "forbidden: reading the audit log takes get on services/proxy in {} (the ClusterRole decision-gate-auditor grants it): {}",
                        self.operator_namespace, s.message
                    ))
                }
                kube::Error::Api(s) if s.code == 401 && s.reason == "Unauthorized" => Failure(
                    format!("the API server does not accept your credentials: {}", s.message),
                ),
                // The operator's refusals say who you are and what it takes.
                kube::Error::Api(s) if s.code == 401 => {
                    Failure(format!("the operator does not accept your token: {}", s.message))
                }
                kube::Error::Api(s) if s.code == 403 => Failure(s.message),
                kube::Error::Api(s) if s.code == 404 => Failure(format!(
                    "no operator Service {}/{} (set --operator-namespace and --operator-service)",
                    self.operator_namespace, self.operator_service
                )),
                kube::Error::Api(s) => Failure(format!("the operator answered: {}", s.message)),
                other => Failure(format!(
                    "cannot reach the operator: {}",
                    decision_gate::error::describe_kube(&other)
                )),
            })
    }
}

/// The bearer token the kubeconfig's user authenticates with, as the client sends it (a
/// token, a token file, an exec plugin or an auth provider), to pass on to the operator.
pub(crate) async fn bearer_token(config: &Config) -> Result<String, Failure> {
    use kube::client::ConfigExt;
    use tower::{Layer, ServiceExt};
    let unreadable = |e: &dyn std::fmt::Display| {
        Failure(format!(
            "cannot get your credentials from the kubeconfig: {e}"
        ))
    };
    let authorization = match config.auth_layer().map_err(|e| unreadable(&e))? {
        Some(layer) => {
            // The client's own authentication step, run once on an empty request to see
            // the header it sets.
            let seen = tower::service_fn(|request: http::Request<kube::client::Body>| async move {
                Ok::<_, tower::BoxError>(http::Response::new(
                    request.headers().get(http::header::AUTHORIZATION).cloned(),
                ))
            });
            layer
                .layer(seen)
                .oneshot(http::Request::new(kube::client::Body::empty()))
                .await
                .map_err(|e| unreadable(&e))?
                .into_body()
        }
        None => None,
    };
    let certificate = config.auth_info.client_certificate.is_some()
        || config.auth_info.client_certificate_data.is_some();
    plugin::forwardable_token(
        authorization.as_ref().and_then(|h| h.to_str().ok()),
        certificate,
    )
    .map_err(Failure)
}

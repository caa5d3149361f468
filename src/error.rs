//! The operator's one error type. Every error has a category, which becomes the reason of
//! the Kubernetes Event and the `reason` label of the error metric.

/// Everything that can go wrong while reconciling or starting up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),

    #[error(
        "the CustomResourceDefinition {0} is not installed in this cluster; install the CRDs with `make install` or `decision-gate crd | kubectl apply -f -`"
    )]
    CrdMissing(String),

    #[error("could not serialize {what}: {source}")]
    Serialization {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },

    #[error("{0}")]
    Config(String),

    #[error("{0}")]
    Audit(#[from] crate::audit::AuditError),
}

impl Error {
    /// A CamelCase word for the kind of failure: Event reason and metric label.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(status)) if status.code == 403 => "Forbidden",
            Error::Kube(kube::Error::Api(status)) if status.code == 409 => "Conflict",
            Error::Kube(kube::Error::Api(_)) => "ApiError",
            Error::Kube(_) => "ClientError",
            Error::CrdMissing(_) => "CrdMissing",
            Error::Serialization { .. } => "SerializationError",
            Error::Config(_) => "ConfigError",
            Error::Audit(_) => "AuditError",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

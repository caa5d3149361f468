//! The operator's one error type. Every error has a category, which becomes the reason of
//! the Kubernetes Event and the `reason` label of the error metric.

/// Everything that can go wrong while reconciling or starting up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}", describe_kube(.0))]
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

    /// A reconcile ran past its time limit and was abandoned (it is retried).
    #[error("the reconcile did not finish within {}s and was abandoned; it will be retried", .0.as_secs())]
    TimedOut(std::time::Duration),

    /// A reconcile panicked: a bug, reported instead of taking the operator down.
    #[error("the reconcile failed unexpectedly (a bug; please report it): {0}")]
    Panicked(String),

    /// In-flight reconciles outlived the shutdown deadline.
    #[error("stopped with reconciles still running after the {}s shutdown deadline: {}", .deadline.as_secs(), .running.join(", "))]
    ShutdownTimedOut {
        deadline: std::time::Duration,
        running: Vec<String>,
    },

    /// The leader Lease could not be used, or was lost.
    #[error("{0}")]
    Lease(String),

    /// A watch that the controllers read from stopped; its store would go stale.
    #[error("the {kind} watch stopped ({why}); stopping so that a restart watches afresh")]
    WatchEnded { kind: &'static str, why: String },
}

impl Error {
    /// A CamelCase word for the kind of failure: Event reason and metric label.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(e) => crate::controller::cluster::ApiFailure::of(e).category(),
            Error::CrdMissing(_) => "CrdMissing",
            Error::Serialization { .. } => "SerializationError",
            Error::Config(_) => "ConfigError",
            Error::Audit(_) => "AuditError",
            Error::TimedOut(_) => "TimedOut",
            Error::Panicked(_) => "Panicked",
            Error::ShutdownTimedOut { .. } => "ShutdownTimedOut",
            Error::Lease(_) => "LeaseError",
            Error::WatchEnded { .. } => "WatchEnded",
        }
    }
}

/// A Kubernetes client error in words: the API server's own message once (with its code
/// and reason), not a dump of its Status object.
pub fn describe_kube(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => {
            let mut out = format!("the API server answered {}", status.code);
            if !status.reason.is_empty() {
                out.push_str(&format!(" {}", status.reason));
            }
            if !status.message.is_empty() {
                out.push_str(&format!(": {}", status.message));
            }
            out
        }
        other => {
            // Name the underlying cause too (a refused connection, a TLS failure): the
            // outer message alone rarely says what to fix.
            let mut out = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(cause) = source {
                let text = cause.to_string();
                if !out.contains(&text) {
                    out.push_str(&format!(": {text}"));
                }
                source = cause.source();
            }
            out
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_api_refusal_reads_as_one_sentence() {
        let status = kube::core::Status::failure(
            "decisions.decisiongate.io \"d\" is forbidden: User \"dave\" cannot patch",
            "Forbidden",
        )
        .with_code(403);
        let text = Error::Kube(kube::Error::Api(Box::new(status))).to_string();
        assert_eq!(
            text,
            "the API server answered 403 Forbidden: decisions.decisiongate.io \"d\" is forbidden: User \"dave\" cannot patch"
        );
        assert!(!text.contains("Status {"), "{text}");
        assert!(!text.contains("Some("), "{text}");
    }

    #[test]
    fn every_new_failure_has_its_own_category() {
        assert_eq!(
            Error::TimedOut(std::time::Duration::from_secs(60)).category(),
            "TimedOut"
        );
        assert_eq!(Error::Panicked("x".into()).category(), "Panicked");
        let ended = Error::WatchEnded {
            kind: "ApprovalPolicy",
            why: "it panicked".into(),
        };
        assert_eq!(ended.category(), "WatchEnded");
        assert!(
            ended
                .to_string()
                .starts_with("the ApprovalPolicy watch stopped (it panicked)")
        );
        let stuck = Error::ShutdownTimedOut {
            deadline: std::time::Duration::from_secs(20),
            running: vec!["Decision team-a/d".into()],
        };
        assert_eq!(
            stuck.to_string(),
            "stopped with reconciles still running after the 20s shutdown deadline: Decision team-a/d"
        );
    }
}

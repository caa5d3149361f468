//! The operator's one error type. Every error has a category, a CamelCase word for the
//! kind of failure that is the `reason` of its log line, of the Warning Event on the
//! object that failed, and of the error metric.
//!
//! [`ApiFailure`] reads a failed API request; it lives here, below everything that makes
//! requests, and the controller's calls to the API server use it from there.

/// Everything that can go wrong while reconciling or starting up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API request failed; its category says how (see [`ApiFailure`]).
    #[error("{}", describe_kube(.0))]
    Kube(#[from] kube::Error),

    #[error(
        "the CustomResourceDefinition {0} is not installed in this cluster; install the CRDs with `make install` or `decision-gate crd | kubectl apply -f -`"
    )]
    CrdMissing(String),

    /// How the operator was started or deployed will not do: no cluster to talk to, an
    /// address it cannot serve on, RBAC that does not let it read its own kinds.
    #[error("{0}")]
    Config(String),

    /// An object the reconcile needs cannot be read (it does not fit the types).
    #[error("{0}")]
    Unreadable(String),

    /// The audit log could not be written.
    #[error("{0}")]
    Audit(#[from] crate::audit::AuditError),

    /// The audit log could not be opened when this replica became the leader.
    #[error("the audit log is unusable: {0}")]
    AuditUnusable(crate::audit::AuditError),

    /// The leader Lease could not be used, or the election stopped.
    #[error("{0}")]
    Lease(String),

    /// The leader Lease was lost: another replica may act now, so this one stops.
    #[error("{0}")]
    LostLeadership(String),

    /// A reconcile ran past its time limit and was abandoned (it is retried).
    #[error("the reconcile did not finish within {}s and was abandoned; it will be retried", .0.as_secs())]
    TimedOut(std::time::Duration),

    /// In-flight reconciles outlived the shutdown deadline.
    #[error("stopped with reconciles still running after the {}s shutdown deadline: {}", .deadline.as_secs(), .running.join(", "))]
    ShutdownTimedOut {
        deadline: std::time::Duration,
        running: Vec<String>,
    },

    /// A reconcile panicked: a bug, reported instead of taking the operator down.
    #[error("the reconcile failed unexpectedly (a bug; please report it): {0}")]
    Panicked(String),

    /// A watch that the controllers read from stopped; its store would go stale.
    #[error("the {kind} watch stopped ({why}); stopping so that a restart watches afresh")]
    WatchEnded { kind: &'static str, why: String },

    /// A task the operator relies on ended unexpectedly (a bug, or the runtime stopping).
    #[error("{0}")]
    Internal(String),

    #[error("could not serialize {what}: {source}")]
    Serialization {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    /// A CamelCase word for the kind of failure: log and Event reason, metric label.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(e) => ApiFailure::of(e).category(),
            Error::CrdMissing(_) => "CrdMissing",
            Error::Config(_) => "ConfigError",
            Error::Unreadable(_) => "Unreadable",
            Error::Audit(_) | Error::AuditUnusable(_) => "AuditError",
            Error::Lease(_) => "LeaseError",
            Error::LostLeadership(_) => "LostLeadership",
            Error::TimedOut(_) => "TimedOut",
            Error::ShutdownTimedOut { .. } => "ShutdownTimedOut",
            Error::Panicked(_) => "Panicked",
            Error::WatchEnded { .. } => "WatchEnded",
            Error::Internal(_) => "InternalError",
            Error::Serialization { .. } => "SerializationError",
        }
    }
}

/// What a failed API request means for the one who made it.
///
/// What a 409 means depends on the request: on a create it is AlreadyExists (an object of
/// that name is there), on an update a Conflict (the object changed since it was read).
/// Each caller says which it is and what it does about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiFailure {
    /// The API server's verdict on the request itself: not authenticated (401), forbidden
    /// by RBAC or an admission policy (403), invalid (400, 422), or turned down for some
    /// other reason of its own (any other 4xx below). Asking again gets the same answer.
    Refused,
    /// What the request names is not there (404, 410): the object, its namespace or its kind.
    NotFound,
    /// 409: the object exists already (on a create), or changed meanwhile (on an update).
    Conflict,
    /// 429: the API server asks the client to slow down; asking later may succeed.
    Throttled,
    /// No verdict: the API server failed (5xx), timed out (408), or could not be reached.
    Unavailable,
    /// The request failed on the operator's side: it could not be built, its answer could
    /// not be read, or the credentials could not be loaded.
    Client,
}

impl ApiFailure {
    /// Classifies a failed request.
    pub fn of(error: &kube::Error) -> ApiFailure {
        match error {
            kube::Error::Api(status) => ApiFailure::of_code(status.code),
            kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => {
                ApiFailure::Unavailable
            }
            _ => ApiFailure::Client,
        }
    }

    /// Classifies an HTTP status code the API server answered with.
    pub fn of_code(code: u16) -> ApiFailure {
        match code {
            404 | 410 => ApiFailure::NotFound,
            408 => ApiFailure::Unavailable,
            409 => ApiFailure::Conflict,
            429 => ApiFailure::Throttled,
            400..=499 => ApiFailure::Refused,
            _ => ApiFailure::Unavailable,
        }
    }

    /// Whether the answer is a verdict on what was asked, so that asking again gets the
    /// same answer: refused, or naming something that is not there.
    pub fn is_verdict(self) -> bool {
        matches!(self, ApiFailure::Refused | ApiFailure::NotFound)
    }

    /// A CamelCase word for it: the error metric's label and the log's reason.
    pub fn category(self) -> &'static str {
        match self {
            ApiFailure::Refused => "Refused",
            ApiFailure::NotFound => "NotFound",
            ApiFailure::Conflict => "Conflict",
            ApiFailure::Throttled => "Throttled",
            ApiFailure::Unavailable => "Unavailable",
            ApiFailure::Client => "ClientError",
        }
    }
}

/// A Kubernetes client error in words: the API server's own message once (with its code
/// and reason), not a dump of its Status object. (kube's own Display of an API error
/// prints the Status with `Debug`.)
pub fn describe_kube(error: &kube::Error) -> String {
    describe_chain(error)
}

/// A watch's failure in words, the way [`describe_kube`] says a request's.
pub fn describe_watch(error: &kube::runtime::watcher::Error) -> String {
    describe_chain(error)
}

/// The API server's answer in words: "the API server answered 403 Forbidden: <its
/// message>".
pub fn describe_status(status: &kube::core::Status) -> String {
    let mut out = format!("the API server answered {}", status.code);
    if !status.reason.is_empty() {
        out.push_str(&format!(" {}", status.reason));
    }
    if !status.message.is_empty() {
        out.push_str(&format!(": {}", status.message));
    }
    out
}

/// The API server's answer, when the error is one or wraps one.
pub fn api_status<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a kube::core::Status> {
    let mut link = Some(error);
    while let Some(e) = link {
        if let Some(kube::Error::Api(status)) = e.downcast_ref::<kube::Error>() {
            return Some(status);
        }
        if let Some(status) = e.downcast_ref::<kube::core::Status>() {
            return Some(status);
        }
        link = e.source();
    }
    None
}

fn describe_chain(error: &(dyn std::error::Error + 'static)) -> String {
    // The API server's answer, wherever it is in the chain, says it all; every Display
    // above it would repeat it as a dump.
    if let Some(status) = api_status(error) {
        return describe_status(status);
    }
    // Otherwise name the underlying cause too (a refused connection, a TLS failure): the
    // outer message alone rarely says what to fix.
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(&format!(": {text}"));
        }
        source = cause.source();
    }
    out
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Refusals made by hand, and the check that a person is told them plainly.
#[cfg(test)]
pub(crate) mod testing {
    /// The API server's refusal of a request: `code`, `reason` and its own sentence.
    pub(crate) fn refusal(code: u16, reason: &str, message: &str) -> kube::Error {
        kube::Error::Api(Box::new(
            kube::core::Status::failure(message, reason).with_code(code),
        ))
    }

    /// A 403 of RBAC and a 422 of validation, each with the API server's sentence.
    pub(crate) fn refusals() -> [(kube::Error, &'static str); 2] {
        const FORBIDDEN: &str = "decisions.decisiongate.io \"deploy\" is forbidden: User \"dave\" cannot patch resource \"decisions\" in API group \"decisiongate.io\" in the namespace \"ops\"";
        const INVALID: &str = "Decision.decisiongate.io \"deploy\" is invalid: spec.actionType: Invalid value: \"Deploy Now!\"";
        [
            (refusal(403, "Forbidden", FORBIDDEN), FORBIDDEN),
            (refusal(422, "Invalid", INVALID), INVALID),
        ]
    }

    /// `told` quotes the API server's `message` and dumps nothing of its answer.
    #[track_caller]
    pub(crate) fn assert_told(told: &str, message: &str) {
        assert!(told.contains(message), "{told}");
        for dump in [
            "Status {",
            "ErrorResponse",
            "ApiError",
            "Some(",
            "StatusSummary",
        ] {
            assert!(!told.contains(dump), "{dump:?} in {told}");
        }
    }
}

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
    fn kube_s_own_words_for_an_api_error_are_a_dump_and_ours_are_not() {
        for (error, message) in testing::refusals() {
            // kube's Display prints the Status with Debug: never show it to anyone.
            assert!(error.to_string().contains("Status {"), "{error}");
            let told = describe_kube(&error);
            testing::assert_told(&told, message);
            let kube::Error::Api(status) = &error else {
                unreachable!()
            };
            assert_eq!(told, describe_status(status));
            assert!(told.starts_with(&format!("the API server answered {} ", status.code)));
        }
    }

    #[test]
    fn a_failed_watch_is_told_in_the_api_server_s_words() {
        use kube::runtime::watcher::Error as Watch;
        for (error, message) in testing::refusals() {
            let kube::Error::Api(status) = &error else {
                unreachable!()
            };
            let during = Watch::WatchError(status.clone());
            testing::assert_told(&describe_watch(&during), message);
            let listing =
                Watch::InitialListFailed(testing::refusal(status.code, &status.reason, message));
            testing::assert_told(&describe_watch(&listing), message);
            // Wrapped once more, as a failed wait for an answer is.
            let wrapped = kube::Error::Service(Box::new(Watch::WatchFailed(error)));
            testing::assert_told(&describe_kube(&wrapped), message);
        }
        let unreachable =
            Watch::WatchStartFailed(kube::Error::Service("connection refused".into()));
        assert!(
            describe_watch(&unreachable).contains("connection refused"),
            "{}",
            describe_watch(&unreachable)
        );
    }

    fn api_error(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(
            kube::core::Status::failure("the API server says why", "Reason").with_code(code),
        ))
    }

    #[test]
    fn an_api_failure_says_whether_asking_again_can_help() {
        use ApiFailure::*;
        for (code, failure) in [
            (400, Refused),
            (401, Refused),
            (403, Refused),
            (404, NotFound),
            (405, Refused),
            (408, Unavailable),
            (409, Conflict),
            (410, NotFound),
            (413, Refused),
            (422, Refused),
            (429, Throttled),
            (500, Unavailable),
            (503, Unavailable),
            (504, Unavailable),
        ] {
            assert_eq!(ApiFailure::of(&api_error(code)), failure, "{code}");
        }
        let verdicts: Vec<ApiFailure> =
            [Refused, NotFound, Conflict, Throttled, Unavailable, Client]
                .into_iter()
                .filter(|f| f.is_verdict())
                .collect();
        assert_eq!(verdicts, [Refused, NotFound]);
        let unreachable = kube::Error::Service("connection refused".into());
        assert_eq!(ApiFailure::of(&unreachable), Unavailable);
        let garbled = kube::Error::SerdeError(serde_json::from_str::<u8>("x").unwrap_err());
        assert_eq!(ApiFailure::of(&garbled), Client);
    }

    #[test]
    fn every_api_failure_has_a_category_of_its_own() {
        use ApiFailure::*;
        let all = [Refused, NotFound, Conflict, Throttled, Unavailable, Client];
        let categories: std::collections::BTreeSet<&str> =
            all.iter().map(|f| f.category()).collect();
        assert_eq!(categories.len(), all.len());
        assert_eq!(Refused.category(), "Refused");
        assert_eq!(Conflict.category(), "Conflict");
    }

    fn api(code: u16) -> Error {
        Error::Kube(kube::Error::Api(Box::new(
            kube::core::Status::failure("why", "Reason").with_code(code),
        )))
    }

    #[test]
    fn every_kind_of_failure_has_its_own_category() {
        let io = || crate::audit::AuditError::Io {
            path: "/var/lib/decision-gate/audit.jsonl".into(),
            source: std::io::Error::other("disk full"),
        };
        let cases = [
            (api(403), "Refused"),
            (api(422), "Refused"),
            (api(404), "NotFound"),
            (api(409), "Conflict"),
            (api(429), "Throttled"),
            (api(503), "Unavailable"),
            (
                Error::Kube(kube::Error::Service("connection refused".into())),
                "Unavailable",
            ),
            (
                Error::Kube(kube::Error::SerdeError(
                    serde_json::from_str::<u8>("x").unwrap_err(),
                )),
                "ClientError",
            ),
            (
                Error::CrdMissing("decisions.decisiongate.io".into()),
                "CrdMissing",
            ),
            (
                Error::Config("no Kubernetes cluster to talk to".into()),
                "ConfigError",
            ),
            (
                Error::Unreadable("the ExecutionPlan p cannot be read".into()),
                "Unreadable",
            ),
            (Error::Audit(io()), "AuditError"),
            (Error::AuditUnusable(io()), "AuditError"),
            (
                Error::Lease("the leader election stopped".into()),
                "LeaseError",
            ),
            (
                Error::LostLeadership("lost the leader Lease".into()),
                "LostLeadership",
            ),
            (
                Error::TimedOut(std::time::Duration::from_secs(60)),
                "TimedOut",
            ),
            (
                Error::ShutdownTimedOut {
                    deadline: std::time::Duration::from_secs(20),
                    running: Vec::new(),
                },
                "ShutdownTimedOut",
            ),
            (Error::Panicked("x".into()), "Panicked"),
            (
                Error::WatchEnded {
                    kind: "ApprovalPolicy",
                    why: "it panicked".into(),
                },
                "WatchEnded",
            ),
            (
                Error::Internal("the audit writer stopped".into()),
                "InternalError",
            ),
            (
                Error::Serialization {
                    what: "a status",
                    source: serde_json::from_str::<u8>("x").unwrap_err(),
                },
                "SerializationError",
            ),
        ];
        for (error, category) in &cases {
            assert_eq!(error.category(), *category, "{error}");
        }
        // Eighteen kinds, each its own word.
        let words: std::collections::BTreeSet<&str> =
            cases.iter().map(|(_, category)| *category).collect();
        assert_eq!(words.len(), 18);
    }

    #[test]
    fn the_messages_say_what_happened() {
        let ended = Error::WatchEnded {
            kind: "ApprovalPolicy",
            why: "it panicked".into(),
        };
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
        let unusable = Error::AuditUnusable(crate::audit::AuditError::Io {
            path: "/var/lib/decision-gate/audit.jsonl".into(),
            source: std::io::Error::other("read-only file system"),
        });
        assert!(
            unusable
                .to_string()
                .starts_with("the audit log is unusable: "),
            "{unusable}"
        );
    }
}

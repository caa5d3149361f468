//! Whether the admission policies that make an answer true are in force.
//!
//! An `approved-by` annotation is only a claim. The chart's admission policies make it
//! true: the answer names the caller, who holds the verb `approve` and did not ask, and
//! nobody but the operator writes a status. The operator counts a person's answer only
//! while those policies exist, are bound with `Deny` over every Decision, and are of the
//! version it was built with. This module decides that from what the API server holds;
//! the watch that feeds it lives in the controller.

use chrono::{DateTime, Utc};
use k8s_openapi::api::admissionregistration::v1::{
    MatchResources, MutatingAdmissionPolicy, MutatingAdmissionPolicyBinding,
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The label every admission policy of the chart carries, with the version of its rules.
pub const VERSION_LABEL: &str = "decisiongate.io/admission-policy-version";

/// The version of the chart's admission policies this operator relies on. The chart and
/// the operator change it together whenever the rules change.
pub const POLICY_VERSION: &str = "2";

/// How the operator treats people's answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answers {
    /// The policies are in force: answers count.
    Verified,
    /// They are not (why, naming what is missing): approvals do not count, and a
    /// rejection, which can only stop an action, counts marked unverified.
    Unverified(String),
    /// They are not, and the operator was told to count answers anyway
    /// (`--count-unverified-answers`): every answer is marked unverified.
    CountedUnverified(String),
}

impl Answers {
    /// The verdict for a cluster whose check says `check`.
    pub fn from_check(check: Result<(), String>, count_unverified: bool) -> Answers {
        match check {
            Ok(()) => Answers::Verified,
            Err(why) if count_unverified => Answers::CountedUnverified(why),
            Err(why) => Answers::Unverified(why),
        }
    }

    pub fn is_verified(&self) -> bool {
        matches!(self, Answers::Verified)
    }

    /// Why answers are not verified, if they are not.
    pub fn why(&self) -> Option<&str> {
        match self {
            Answers::Verified => None,
            Answers::Unverified(why) | Answers::CountedUnverified(why) => Some(why),
        }
    }
}

/// The policies the operator expects, named after the chart's release
/// (`<prefix>-requester`, `<prefix>-answers`, `<prefix>-status`).
#[derive(Clone, Debug)]
pub struct Expected {
    pub prefix: String,
}

impl Expected {
    pub fn requester(&self) -> String {
        format!("{}-requester", self.prefix)
    }

    pub fn validating(&self) -> [String; 2] {
        [
            format!("{}-answers", self.prefix),
            format!("{}-status", self.prefix),
        ]
    }
}

/// What the API server holds (as far as the operator could list it).
#[derive(Clone, Debug, Default)]
pub struct Seen<'a> {
    pub validating: Vec<&'a ValidatingAdmissionPolicy>,
    pub validating_bindings: Vec<&'a ValidatingAdmissionPolicyBinding>,
    pub mutating: Vec<&'a MutatingAdmissionPolicy>,
    pub mutating_bindings: Vec<&'a MutatingAdmissionPolicyBinding>,
    /// Kinds the operator has not been able to list yet, with why.
    pub unlisted: Vec<(&'static str, String)>,
}

/// The two kinds of policy the chart installs.
const MUTATING: &str = "MutatingAdmissionPolicy";
const VALIDATING: &str = "ValidatingAdmissionPolicy";

/// A policy or a binding, of either kind, as the check sees it.
struct View<'a> {
    /// The kind of the policy (for a binding: of the policy it binds).
    kind: &'static str,
    metadata: &'a ObjectMeta,
    /// The policy's name (for a binding: the policy it binds).
    policy: &'a str,
    /// A policy's failurePolicy.
    failure_policy: Option<&'a str>,
    /// A binding's matchResources, paramRef and validationActions.
    match_resources: Option<&'a MatchResources>,
    has_params: bool,
    actions: Vec<&'a str>,
}

impl<'a> View<'a> {
    fn policy(
        kind: &'static str,
        metadata: &'a ObjectMeta,
        failure_policy: Option<&'a str>,
    ) -> Self {
        View {
            kind,
            metadata,
            policy: metadata.name.as_deref().unwrap_or_default(),
            failure_policy,
            match_resources: None,
            has_params: false,
            actions: vec![],
        }
    }
}

impl Seen<'_> {
    /// Every policy and every binding, of both kinds.
    fn views(&self) -> (Vec<View<'_>>, Vec<View<'_>>) {
        let policies = self
            .mutating
            .iter()
            .map(|p| {
                let failure = p.spec.as_ref().and_then(|s| s.failure_policy.as_deref());
                View::policy(MUTATING, &p.metadata, failure)
            })
            .chain(self.validating.iter().map(|p| {
                let failure = p.spec.as_ref().and_then(|s| s.failure_policy.as_deref());
                View::policy(VALIDATING, &p.metadata, failure)
            }))
            .collect();
        let bindings = self
            .mutating_bindings
            .iter()
            .filter_map(|b| {
                let spec = b.spec.as_ref()?;
                Some(View {
                    kind: MUTATING,
                    metadata: &b.metadata,
                    policy: spec.policy_name.as_deref()?,
                    failure_policy: None,
                    match_resources: spec.match_resources.as_ref(),
                    has_params: spec.param_ref.is_some(),
                    // A mutating binding has no actions: what it binds always applies.
                    actions: vec!["Deny"],
                })
            })
            .chain(self.validating_bindings.iter().map(|b| {
                View {
                    kind: VALIDATING,
                    metadata: &b.metadata,
                    policy: &b.spec.policy_name,
                    failure_policy: None,
                    match_resources: b.spec.match_resources.as_ref(),
                    has_params: b.spec.param_ref.is_some(),
                    actions: b
                        .spec
                        .validation_actions
                        .iter()
                        .map(String::as_str)
                        .collect(),
                }
            }))
            .collect();
        (policies, bindings)
    }
}

impl Expected {
    /// Every policy expected, with its kind.
    fn all(&self) -> Vec<(&'static str, String)> {
        let [answers, status] = self.validating();
        vec![
            (MUTATING, self.requester()),
            (VALIDATING, answers),
            (VALIDATING, status),
        ]
    }
}

/// `Ok` when every expected policy is in force; otherwise what is wrong, every problem
/// named, in words an administrator can act on.
pub fn check(expected: &Expected, seen: &Seen<'_>) -> Result<(), String> {
    let mut problems: Vec<String> = seen
        .unlisted
        .iter()
        .map(|(kind, why)| format!("the operator cannot list {kind} objects ({why})"))
        .collect();
    if problems.is_empty() {
        let (policies, bindings) = seen.views();
        for (kind, name) in expected.all() {
            let of = |v: &&View<'_>| v.kind == kind && v.policy == name;
            let problem = policy_problem(kind, &name, policies.iter().find(of)).or_else(|| {
                let found: Vec<_> = bindings
                    .iter()
                    .filter(of)
                    .map(|b| {
                        (
                            b.metadata.name.clone().unwrap_or_default(),
                            binding_problem(b),
                        )
                    })
                    .collect();
                bindings_problem(kind, &name, &found)
            });
            problems.extend(problem);
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// How long the operator waits after the policies came (back) into force before it
/// counts answers: the API server applies a new or changed policy within about a second
/// (it refreshes its compiled policies every second), and an answer written before then
/// was not checked.
pub const SETTLE: std::time::Duration = std::time::Duration::from_secs(5);

/// When the newest of the expected policies and of the bindings naming them was created.
pub fn created_last(expected: &Expected, seen: &Seen<'_>) -> Option<DateTime<Utc>> {
    let wanted = expected.all();
    let (policies, bindings) = seen.views();
    policies
        .iter()
        .chain(&bindings)
        .filter(|v| {
            wanted
                .iter()
                .any(|(kind, name)| v.kind == *kind && v.policy == name)
        })
        .filter_map(|v| v.metadata.creation_timestamp.as_ref())
        .map(|t| crate::api::common::to_chrono(&t.0))
        .max()
}

/// The check, held back for [`SETTLE`] after the policies came into force at `since`:
/// what to report now, and when to look again.
pub fn settled(
    check: Result<(), String>,
    since: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> (Result<(), String>, Option<DateTime<Utc>>) {
    let settle = chrono::Duration::from_std(SETTLE).unwrap_or_default();
    match (check, since) {
        (Ok(()), Some(since)) if now < since + settle => (
            Err(format!(
                "the admission policies came into force at {}; the API server takes a moment to apply them, so answers count from {}",
                since.to_rfc3339(),
                (since + settle).to_rfc3339()
            )),
            Some(since + settle),
        ),
        (check, _) => (check, None),
    }
}

/// What is wrong with one policy itself: missing, of another version, or failing open.
fn policy_problem(kind: &str, name: &str, policy: Option<&View<'_>>) -> Option<String> {
    let Some(View {
        metadata,
        failure_policy,
        ..
    }) = policy
    else {
        return Some(format!(
            "the {kind} {name} does not exist (install the chart with admission.enabled=true)"
        ));
    };
    let version = metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(VERSION_LABEL))
        .map(String::as_str);
    if version != Some(POLICY_VERSION) {
        return Some(format!(
            "the {kind} {name} is version {} but this operator needs version {POLICY_VERSION} (label {VERSION_LABEL}); upgrade the chart and the operator together",
            version.unwrap_or("(none)")
        ));
    }
    // failurePolicy defaults to Fail.
    if failure_policy.is_some_and(|f| f != "Fail") {
        return Some(format!(
            "the {kind} {name} has failurePolicy {}, so an error in it would let answers through; it must be Fail",
            failure_policy.unwrap_or_default()
        ));
    }
    None
}

/// What is wrong with one binding: it must deny, and apply to every Decision.
fn binding_problem(binding: &View<'_>) -> Option<String> {
    let View {
        match_resources,
        has_params,
        actions,
        ..
    } = binding;
    if !actions.contains(&"Deny") {
        return Some(format!(
            "binds it with validationActions [{}] rather than Deny, so it refuses nothing",
            actions.join(", ")
        ));
    }
    if *has_params {
        return Some("binds it with a paramRef, which the chart's rules do not use".to_owned());
    }
    let narrowed = match_resources.is_some_and(|m| {
        let selects =
            |s: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>| {
                s.as_ref().is_some_and(|s| {
                    s.match_labels.as_ref().is_some_and(|l| !l.is_empty())
                        || s.match_expressions.as_ref().is_some_and(|e| !e.is_empty())
                })
            };
        selects(&m.namespace_selector)
            || selects(&m.object_selector)
            || m.resource_rules.as_ref().is_some_and(|r| !r.is_empty())
            || m.exclude_resource_rules
                .as_ref()
                .is_some_and(|r| !r.is_empty())
    });
    narrowed.then(|| {
        "binds it to only some objects (matchResources), so other Decisions go unchecked".to_owned()
    })
}

/// `None` when one of the bindings of a policy is sound; otherwise what is wrong.
fn bindings_problem(
    kind: &str,
    policy: &str,
    bindings: &[(String, Option<String>)],
) -> Option<String> {
    if bindings.iter().any(|(_, problem)| problem.is_none()) {
        return None;
    }
    if bindings.is_empty() {
        return Some(format!(
            "the {kind} {policy} is not bound: no binding names it, so it checks nothing"
        ));
    }
    Some(
        bindings
            .iter()
            .map(|(name, problem)| {
                format!(
                    "the binding {name} of {kind} {policy} {}",
                    problem.as_deref().unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::admissionregistration::v1::{
        MutatingAdmissionPolicyBindingSpec, MutatingAdmissionPolicySpec,
        ValidatingAdmissionPolicyBindingSpec, ValidatingAdmissionPolicySpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

    fn meta(name: &str, version: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_owned()),
            labels: version.map(|v| [(VERSION_LABEL.to_owned(), v.to_owned())].into()),
            ..Default::default()
        }
    }

    struct Cluster {
        validating: Vec<ValidatingAdmissionPolicy>,
        validating_bindings: Vec<ValidatingAdmissionPolicyBinding>,
        mutating: Vec<MutatingAdmissionPolicy>,
        mutating_bindings: Vec<MutatingAdmissionPolicyBinding>,
    }

    fn vap(name: &str) -> ValidatingAdmissionPolicy {
        ValidatingAdmissionPolicy {
            metadata: meta(name, Some(POLICY_VERSION)),
            spec: Some(ValidatingAdmissionPolicySpec {
                failure_policy: Some("Fail".to_owned()),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn vap_binding(name: &str, actions: &[&str]) -> ValidatingAdmissionPolicyBinding {
        ValidatingAdmissionPolicyBinding {
            metadata: meta(name, None),
            spec: ValidatingAdmissionPolicyBindingSpec {
                policy_name: name.to_owned(),
                validation_actions: actions.iter().map(|a| a.to_string()).collect(),
                ..Default::default()
            },
        }
    }

    /// What the chart installs for the release `decision-gate`.
    fn chart() -> Cluster {
        Cluster {
            validating: vec![vap("decision-gate-answers"), vap("decision-gate-status")],
            validating_bindings: vec![
                vap_binding("decision-gate-answers", &["Deny"]),
                vap_binding("decision-gate-status", &["Deny"]),
            ],
            mutating: vec![MutatingAdmissionPolicy {
                metadata: meta("decision-gate-requester", Some(POLICY_VERSION)),
                spec: Some(MutatingAdmissionPolicySpec::default()),
            }],
            mutating_bindings: vec![MutatingAdmissionPolicyBinding {
                metadata: meta("decision-gate-requester", None),
                spec: Some(MutatingAdmissionPolicyBindingSpec {
                    policy_name: Some("decision-gate-requester".to_owned()),
                    ..Default::default()
                }),
            }],
        }
    }

    fn check_cluster(cluster: &Cluster) -> Result<(), String> {
        let seen = Seen {
            validating: cluster.validating.iter().collect(),
            validating_bindings: cluster.validating_bindings.iter().collect(),
            mutating: cluster.mutating.iter().collect(),
            mutating_bindings: cluster.mutating_bindings.iter().collect(),
            unlisted: vec![],
        };
        check(
            &Expected {
                prefix: "decision-gate".to_owned(),
            },
            &seen,
        )
    }

    #[test]
    fn the_chart_as_installed_is_in_force() {
        assert_eq!(check_cluster(&chart()), Ok(()));
    }

    #[test]
    fn a_missing_binding_is_named() {
        let mut cluster = chart();
        cluster.validating_bindings.remove(0);
        let why = check_cluster(&cluster).unwrap_err();
        assert!(
            why.contains("ValidatingAdmissionPolicy decision-gate-answers is not bound"),
            "{why}"
        );
    }

    #[test]
    fn a_missing_policy_of_each_kind_is_named() {
        let mut cluster = chart();
        cluster.mutating.clear();
        cluster.validating.remove(1);
        let why = check_cluster(&cluster).unwrap_err();
        assert!(
            why.contains("MutatingAdmissionPolicy decision-gate-requester does not exist"),
            "{why}"
        );
        assert!(
            why.contains("ValidatingAdmissionPolicy decision-gate-status does not exist"),
            "{why}"
        );
    }

    #[test]
    fn a_binding_that_only_warns_or_audits_does_not_count() {
        let mut cluster = chart();
        cluster.validating_bindings[0] = vap_binding("decision-gate-answers", &["Warn", "Audit"]);
        let why = check_cluster(&cluster).unwrap_err();
        assert!(why.contains("[Warn, Audit] rather than Deny"), "{why}");
        // A second, sound binding of the same policy is enough.
        let mut sound = vap_binding("decision-gate-answers", &["Deny", "Audit"]);
        sound.metadata.name = Some("another".to_owned());
        cluster.validating_bindings.push(sound);
        assert_eq!(check_cluster(&cluster), Ok(()));
    }

    #[test]
    fn a_binding_narrowed_to_some_namespaces_does_not_count() {
        let mut cluster = chart();
        cluster.validating_bindings[0].spec.match_resources = Some(MatchResources {
            namespace_selector: Some(LabelSelector {
                match_labels: Some([("team".to_owned(), "a".to_owned())].into()),
                ..Default::default()
            }),
            ..Default::default()
        });
        let why = check_cluster(&cluster).unwrap_err();
        assert!(why.contains("only some objects"), "{why}");
        // An empty selector selects everything.
        cluster.validating_bindings[0].spec.match_resources = Some(MatchResources {
            namespace_selector: Some(LabelSelector::default()),
            ..Default::default()
        });
        assert_eq!(check_cluster(&cluster), Ok(()));
    }

    #[test]
    fn another_version_or_a_failing_open_policy_does_not_count() {
        let mut cluster = chart();
        cluster.validating[0].metadata = meta("decision-gate-answers", Some("1"));
        let why = check_cluster(&cluster).unwrap_err();
        assert!(
            why.contains(&format!(
                "is version 1 but this operator needs version {POLICY_VERSION}"
            )),
            "{why}"
        );
        let mut cluster = chart();
        cluster.validating[1].spec.as_mut().unwrap().failure_policy = Some("Ignore".to_owned());
        let why = check_cluster(&cluster).unwrap_err();
        assert!(why.contains("failurePolicy Ignore"), "{why}");
    }

    #[test]
    fn what_cannot_be_listed_is_not_in_force() {
        let cluster = chart();
        let seen = Seen {
            validating: cluster.validating.iter().collect(),
            unlisted: vec![("MutatingAdmissionPolicy", "403 Forbidden".to_owned())],
            ..Default::default()
        };
        let why = check(
            &Expected {
                prefix: "decision-gate".to_owned(),
            },
            &seen,
        )
        .unwrap_err();
        assert!(
            why.contains("cannot list MutatingAdmissionPolicy objects (403"),
            "{why}"
        );
    }

    #[test]
    fn the_chart_labels_every_policy_with_this_version() {
        let chart = include_str!("../../charts/decision-gate/templates/admission.yaml");
        let label = format!("{VERSION_LABEL}: \"{POLICY_VERSION}\"");
        for kind in [
            "kind: MutatingAdmissionPolicy\n",
            "kind: ValidatingAdmissionPolicy\n",
        ] {
            for doc in chart.split("\n---\n").filter(|d| d.contains(kind)) {
                assert!(doc.contains(&label), "{kind} without {label}: {doc}");
            }
        }
        assert_eq!(chart.matches(&label).count(), 3, "{chart}");
    }

    #[test]
    fn policies_just_put_in_force_count_after_a_moment() {
        let t = |s: i64| DateTime::<Utc>::from_timestamp(1_800_000_000 + s, 0).unwrap();
        let (now, wake) = settled(Ok(()), Some(t(0)), t(2));
        assert!(now.unwrap_err().contains("answers count from"));
        assert_eq!(wake, Some(t(5)));
        assert_eq!(settled(Ok(()), Some(t(0)), t(5)), (Ok(()), None));
        assert_eq!(settled(Ok(()), None, t(0)), (Ok(()), None));
        assert_eq!(
            settled(Err("gone".into()), Some(t(0)), t(1)),
            (Err("gone".into()), None)
        );

        let mut cluster = chart();
        let at = |s: i64| {
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::from_second(1_800_000_000 + s).unwrap(),
            )
        };
        cluster.validating[0].metadata.creation_timestamp = Some(at(10));
        cluster.validating_bindings[1].metadata.creation_timestamp = Some(at(20));
        // Not one of the chart's: it does not count.
        let mut other = vap_binding("unrelated", &["Deny"]);
        other.metadata.creation_timestamp = Some(at(30));
        cluster.validating_bindings.push(other);
        let seen = Seen {
            validating: cluster.validating.iter().collect(),
            validating_bindings: cluster.validating_bindings.iter().collect(),
            ..Default::default()
        };
        let expected = Expected {
            prefix: "decision-gate".to_owned(),
        };
        assert_eq!(created_last(&expected, &seen), Some(t(20)));
    }

    #[test]
    fn the_verdict_follows_the_flag() {
        assert_eq!(Answers::from_check(Ok(()), true), Answers::Verified);
        assert_eq!(
            Answers::from_check(Err("x".into()), false),
            Answers::Unverified("x".into())
        );
        assert_eq!(
            Answers::from_check(Err("x".into()), true),
            Answers::CountedUnverified("x".into())
        );
    }
}

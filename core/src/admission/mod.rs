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
pub const POLICY_VERSION: &str = "3";

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

/// The policies the operator expects, named after the chart's release: the mutating
/// `<prefix>-requester` and `<prefix>-answers`, the validating `<prefix>-answers` and
/// `<prefix>-status`.
#[derive(Clone, Debug)]
pub struct Expected {
    pub prefix: String,
}

impl Expected {
    pub fn requester(&self) -> String {
        format!("{}-requester", self.prefix)
    }

    /// The mutating policy that stamps who answered (groups, impersonator).
    pub fn answerer(&self) -> String {
        format!("{}-answers", self.prefix)
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
            (MUTATING, self.answerer()),
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
mod tests;

//! The check against what the chart installs, and against each way it can fall short.

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
        mutating: ["decision-gate-requester", "decision-gate-answers"]
            .map(|name| MutatingAdmissionPolicy {
                metadata: meta(name, Some(POLICY_VERSION)),
                spec: Some(MutatingAdmissionPolicySpec::default()),
            })
            .into(),
        mutating_bindings: ["decision-gate-requester", "decision-gate-answers"]
            .map(|name| MutatingAdmissionPolicyBinding {
                metadata: meta(name, None),
                spec: Some(MutatingAdmissionPolicyBindingSpec {
                    policy_name: Some(name.to_owned()),
                    ..Default::default()
                }),
            })
            .into(),
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
    let chart = include_str!("../../../charts/decision-gate/templates/admission.yaml");
    let label = format!("{VERSION_LABEL}: \"{POLICY_VERSION}\"");
    for kind in [
        "kind: MutatingAdmissionPolicy\n",
        "kind: ValidatingAdmissionPolicy\n",
    ] {
        for doc in chart.split("\n---\n").filter(|d| d.contains(kind)) {
            assert!(doc.contains(&label), "{kind} without {label}: {doc}");
        }
    }
    assert_eq!(chart.matches(&label).count(), 4, "{chart}");
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

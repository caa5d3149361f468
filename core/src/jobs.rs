//! The Jobs that carry out plan steps, built as plain JSON so that whatever a user wrote in
//! a pod template reaches the API server untouched, and the API server's own validation
//! (with unknown fields refused) is the judge of it.

use serde_json::{Value, json};

use crate::api::ExecutionMode;

/// Labels, annotations and environment variable names shared with the steps' containers.
///
/// A label value holds at most 63 characters and a Decision's or a plan's name up to 253,
/// so the name labels hold [`label_value`] of the name (the name itself whenever it fits,
/// which is nearly always), the annotations of the same keys hold the whole name, and
/// `decisiongate.io/decision-uid` holds the Decision's uid, which selects its Jobs whatever
/// its name.
pub mod names {
    /// Label: the Decision's name, as [`super::label_value`] gives it; annotation: the name.
    pub const LABEL_DECISION: &str = "decisiongate.io/decision";
    /// Label: the Decision's uid.
    pub const LABEL_DECISION_UID: &str = "decisiongate.io/decision-uid";
    /// Label: the plan's name, as [`super::label_value`] gives it; annotation: the name.
    pub const LABEL_PLAN: &str = "decisiongate.io/plan";
    pub const LABEL_STEP: &str = "decisiongate.io/step";
    pub const LABEL_PURPOSE: &str = "decisiongate.io/purpose";
    pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";

    pub const ENV_DECISION_NAME: &str = "DECISION_GATE_DECISION";
    pub const ENV_DECISION_NAMESPACE: &str = "DECISION_GATE_NAMESPACE";
    pub const ENV_CONTEXT: &str = "DECISION_GATE_CONTEXT";
    pub const ENV_MODE: &str = "DECISION_GATE_MODE";
    pub const ENV_STEP: &str = "DECISION_GATE_STEP";
}

/// What a step's Job is built from.
#[derive(Clone, Debug)]
pub struct StepJob<'a> {
    /// The Job's name, or the prefix of a generated name when `generate_name` is set.
    pub name: String,
    pub generate_name: bool,
    pub namespace: &'a str,
    pub decision: &'a str,
    /// The Decision's uid; None when the Job is built for a plan's own check.
    pub decision_uid: Option<&'a str>,
    pub plan: &'a str,
    pub step: &'a str,
    /// `step` or `rollback`.
    pub purpose: &'a str,
    pub mode: ExecutionMode,
    /// The Decision's context, handed to the containers as JSON.
    pub context: &'a Value,
    /// The pod template as the user wrote it.
    pub template: &'a Value,
    pub timeout_seconds: Option<u32>,
}

/// The Job for a step: its template with the Decision's details added to every container's
/// environment, one attempt per Job (retries are the operator's, so that each attempt is
/// visible), and the step's timeout as the Job's active deadline.
pub fn build(job: &StepJob<'_>) -> Value {
    let mut labels = json!({
        names::LABEL_DECISION: label_value(job.decision),
        names::LABEL_PLAN: label_value(job.plan),
        names::LABEL_STEP: label_value(job.step),
        names::LABEL_PURPOSE: job.purpose,
        names::LABEL_MANAGED_BY: "decision-gate",
    });
    if let Some(uid) = job.decision_uid {
        labels[names::LABEL_DECISION_UID] = json!(label_value(uid));
    }
    let annotations = json!({
        names::LABEL_DECISION: job.decision,
        names::LABEL_PLAN: job.plan,
    });
    let env = [
        (names::ENV_DECISION_NAME, job.decision.to_owned()),
        (names::ENV_DECISION_NAMESPACE, job.namespace.to_owned()),
        (names::ENV_CONTEXT, job.context.to_string()),
        (names::ENV_MODE, job.mode.as_str().to_owned()),
        (names::ENV_STEP, job.step.to_owned()),
    ];
    let mut template = job.template.clone();
    add_env(&mut template, &env);
    add_metadata(&mut template, "labels", &labels);
    add_metadata(&mut template, "annotations", &annotations);

    let mut metadata = json!({
        "namespace": job.namespace,
        "labels": labels,
        "annotations": annotations,
    });
    if job.generate_name {
        metadata["generateName"] = json!(format!("{}-", job.name));
    } else {
        metadata["name"] = json!(job.name);
    }
    let mut spec = json!({ "backoffLimit": 0, "template": template });
    if let Some(timeout) = job.timeout_seconds {
        spec["activeDeadlineSeconds"] = json!(timeout);
    }
    json!({ "apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": spec })
}

/// Adds (or replaces) environment variables in every container and init container. Parts
/// of the template that are not shaped like a pod spec are left for the API server to
/// reject with its own message.
fn add_env(template: &mut Value, env: &[(&str, String)]) {
    let Some(spec) = template.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    for key in ["containers", "initContainers"] {
        let Some(containers) = spec.get_mut(key).and_then(Value::as_array_mut) else {
            continue;
        };
        for container in containers.iter_mut().filter_map(Value::as_object_mut) {
            let vars = container.entry("env").or_insert_with(|| json!([]));
            let Some(vars) = vars.as_array_mut() else {
                continue;
            };
            vars.retain(|v| {
                let name = v.get("name").and_then(Value::as_str);
                !env.iter().any(|(k, _)| Some(*k) == name)
            });
            vars.extend(env.iter().map(|(k, v)| json!({ "name": k, "value": v })));
        }
    }
}

/// Adds (or replaces) `entries` in the template's `metadata.<field>` (labels or
/// annotations).
fn add_metadata(template: &mut Value, field: &str, entries: &Value) {
    let Some(template) = template.as_object_mut() else {
        return;
    };
    let metadata = template.entry("metadata").or_insert_with(|| json!({}));
    let Some(metadata) = metadata.as_object_mut() else {
        return;
    };
    let existing = metadata.entry(field).or_insert_with(|| json!({}));
    if let (Some(existing), Some(entries)) = (existing.as_object_mut(), entries.as_object()) {
        for (k, v) in entries {
            existing.insert(k.clone(), v.clone());
        }
    }
}

/// The most characters a label value may have.
pub const LABEL_VALUE_MAX: usize = 63;

/// A label value that stands for `name`: the name itself when it is a valid label value
/// (every object name of at most 63 characters is), otherwise its first characters, `-`
/// and ten hex digits of the SHA-256 of the whole name, 63 characters at most. Two names
/// share a value only if they share those 52 first characters and the hash.
pub fn label_value(name: &str) -> String {
    if is_label_value(name) {
        return name.to_owned();
    }
    crate::bounded::hashed(name, LABEL_VALUE_MAX, 5)
}

/// Whether `value` may be a label value as it is: at most 63 characters, letters, digits,
/// `-`, `_` and `.`, starting and ending with a letter or digit (or empty).
pub fn is_label_value(value: &str) -> bool {
    let edge_ok = |c: Option<char>| c.is_none_or(|c| c.is_ascii_alphanumeric());
    value.len() <= LABEL_VALUE_MAX
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && edge_ok(value.chars().next())
        && edge_ok(value.chars().last())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> Value {
        json!({
            "metadata": { "labels": { "team": "payments" } },
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    { "name": "main", "image": "busybox", "env": [
                        { "name": "KEEP", "value": "1" },
                        { "name": "DECISION_GATE_MODE", "value": "stale" },
                    ]},
                    { "name": "sidecar", "image": "busybox" },
                ],
            },
        })
    }

    fn step_job<'a>(template: &'a Value, context: &'a Value) -> StepJob<'a> {
        StepJob {
            name: "deploy-api-migrate-db".into(),
            generate_name: false,
            namespace: "prod-ops",
            decision: "deploy-api",
            decision_uid: Some("0d6c7a52-6f0e-4f4e-9d1b-3c5a3e9b2f10"),
            plan: "deploy-plan",
            step: "migrate-db",
            purpose: "step",
            mode: ExecutionMode::Real,
            context,
            template,
            timeout_seconds: Some(600),
        }
    }

    #[test]
    fn every_container_learns_the_decision() {
        let template = template();
        let context = json!({ "service": "api-gateway" });
        let job = build(&step_job(&template, &context));

        assert_eq!(job["metadata"]["name"], "deploy-api-migrate-db");
        assert_eq!(job["spec"]["backoffLimit"], 0);
        assert_eq!(job["spec"]["activeDeadlineSeconds"], 600);
        let containers = job["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap();
        assert_eq!(containers.len(), 2, "both containers are kept");
        for container in containers {
            let env: Vec<(&str, &str)> = container["env"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| (e["name"].as_str().unwrap(), e["value"].as_str().unwrap()))
                .collect();
            assert!(env.contains(&(names::ENV_DECISION_NAME, "deploy-api")));
            assert!(env.contains(&(names::ENV_DECISION_NAMESPACE, "prod-ops")));
            assert!(env.contains(&(names::ENV_CONTEXT, r#"{"service":"api-gateway"}"#)));
            assert!(env.contains(&(names::ENV_MODE, "Real")));
            assert!(env.contains(&(names::ENV_STEP, "migrate-db")));
            assert_eq!(env.iter().filter(|(k, _)| *k == names::ENV_MODE).count(), 1);
        }
        let pod_labels = &job["spec"]["template"]["metadata"]["labels"];
        assert_eq!(pod_labels["team"], "payments");
        assert_eq!(pod_labels[names::LABEL_STEP], "migrate-db");
        assert_eq!(
            job["metadata"]["labels"][names::LABEL_DECISION],
            "deploy-api"
        );
    }

    #[test]
    fn a_generated_name_uses_the_prefix() {
        let template = template();
        let context = json!({});
        let mut input = step_job(&template, &context);
        input.generate_name = true;
        let job = build(&input);
        assert!(job["metadata"].get("name").is_none());
        assert_eq!(job["metadata"]["generateName"], "deploy-api-migrate-db-");
    }

    #[test]
    fn a_malformed_template_is_passed_on_for_the_api_server_to_judge() {
        let template = json!({ "spec": { "containers": "not-a-list" } });
        let context = json!({});
        let job = build(&step_job(&template, &context));
        assert_eq!(job["spec"]["template"]["spec"]["containers"], "not-a-list");
    }

    #[test]
    fn names_that_fit_are_their_own_label_values() {
        for name in ["deploy-api", "a", "x.y-z", &"a".repeat(63)] {
            assert_eq!(label_value(name), name);
        }
    }

    #[test]
    fn longer_names_get_a_bounded_label_value_and_keep_the_whole_name_in_annotations() {
        let long = format!("{}.{}", "a".repeat(120), "b-".repeat(60) + "c");
        let other = format!("{}.{}", "a".repeat(120), "b-".repeat(60) + "d");
        for name in [long.as_str(), other.as_str()] {
            let value = label_value(name);
            assert!(is_label_value(&value), "{value}");
            assert_eq!(value.len(), LABEL_VALUE_MAX);
            assert!(value.starts_with(&"a".repeat(52)), "{value}");
        }
        assert_ne!(label_value(&long), label_value(&other));
        assert_eq!(label_value(&long), label_value(&long));

        let template = template();
        let context = json!({});
        let mut input = step_job(&template, &context);
        input.decision = &long;
        input.plan = &other;
        let job = build(&input);
        for metadata in [&job["metadata"], &job["spec"]["template"]["metadata"]] {
            assert_eq!(
                metadata["labels"][names::LABEL_DECISION],
                label_value(&long)
            );
            assert_eq!(metadata["labels"][names::LABEL_PLAN], label_value(&other));
            assert_eq!(metadata["annotations"][names::LABEL_DECISION], long);
            assert_eq!(metadata["annotations"][names::LABEL_PLAN], other);
            assert_eq!(
                metadata["labels"][names::LABEL_DECISION_UID],
                "0d6c7a52-6f0e-4f4e-9d1b-3c5a3e9b2f10"
            );
            for value in metadata["labels"].as_object().unwrap().values() {
                assert!(is_label_value(value.as_str().unwrap()), "{value}");
            }
        }
    }

    #[test]
    fn a_value_that_is_not_a_label_value_is_made_one() {
        for name in ["-x", "x.", "héllo wörld", "..", ""] {
            let value = label_value(name);
            assert!(is_label_value(&value), "{name:?} gave {value:?}");
        }
        assert_eq!(label_value(""), "");
    }
}

//! The Jobs that carry out plan steps, built as plain JSON so that whatever a user wrote in
//! a pod template reaches the API server untouched, and the API server's own validation
//! (with unknown fields refused) is the judge of it.

use serde_json::{Value, json};

use crate::api::ExecutionMode;

/// Labels and environment variable names shared with the steps' containers.
pub mod names {
    pub const LABEL_DECISION: &str = "decisiongate.io/decision";
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
    let labels = json!({
        names::LABEL_DECISION: job.decision,
        names::LABEL_PLAN: job.plan,
        names::LABEL_STEP: job.step,
        names::LABEL_PURPOSE: job.purpose,
        names::LABEL_MANAGED_BY: "decision-gate",
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
    add_labels(&mut template, &labels);

    let mut metadata = json!({ "namespace": job.namespace, "labels": labels });
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

fn add_labels(template: &mut Value, labels: &Value) {
    let Some(template) = template.as_object_mut() else {
        return;
    };
    let metadata = template.entry("metadata").or_insert_with(|| json!({}));
    let Some(metadata) = metadata.as_object_mut() else {
        return;
    };
    let existing = metadata.entry("labels").or_insert_with(|| json!({}));
    if let (Some(existing), Some(labels)) = (existing.as_object_mut(), labels.as_object()) {
        for (k, v) in labels {
            existing.insert(k.clone(), v.clone());
        }
    }
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
}

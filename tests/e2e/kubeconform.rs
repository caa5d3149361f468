//! The rendered chart and the examples, validated offline and strictly by kubeconform (a
//! tool nobody here wrote) against the schemas of the Kubernetes version the chart supports
//! and of the CRDs, as a GitOps pipeline checks manifests before they reach a cluster.
//!
//! The Kubernetes schemas are made from the API server's own OpenAPI document, in the
//! k8s.io/kubernetes module the local control plane is built from; the CRDs' from the
//! types the operator reads. Strict: a field no schema knows is an error.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Map, Value, json};

use crate::support::*;

/// The schemas' directory, made once per run.
fn schemas() -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let version = pinned("KUBERNETES_VERSION");
        let dir = repo_root().join(format!("target/kubeconform-schemas/{version}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let swagger: Value = serde_json::from_slice(
            &std::fs::read(kubernetes_module(&version).join("api/openapi-spec/swagger.json"))
                .unwrap(),
        )
        .unwrap();
        let definitions = swagger["definitions"].as_object().unwrap();
        for (name, definition) in definitions {
            for gvk in definition["x-kubernetes-group-version-kind"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let file = schema_file(
                    gvk["kind"].as_str().unwrap(),
                    gvk["group"].as_str().unwrap(),
                    gvk["version"].as_str().unwrap(),
                );
                let schema = standalone(name, definitions);
                std::fs::write(dir.join(file), serde_json::to_vec(&schema).unwrap()).unwrap();
            }
        }
        for crd in decision_gate::crd::all() {
            let spec = &crd.spec;
            for version in &spec.versions {
                let mut schema =
                    serde_json::to_value(&version.schema.as_ref().unwrap().open_api_v3_schema)
                        .unwrap();
                // The API server adds what every object has; the CRD does not list it.
                let properties = schema["properties"].as_object_mut().unwrap();
                properties.insert("apiVersion".into(), json!({"type": "string"}));
                properties.insert("kind".into(), json!({"type": "string"}));
                properties.insert(
                    "metadata".into(),
                    json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
                );
                strict(&mut schema);
                let file = schema_file(&spec.names.kind, &spec.group, &version.name);
                std::fs::write(dir.join(file), serde_json::to_vec(&schema).unwrap()).unwrap();
            }
        }
        dir
    })
}

/// Where the Go module cache holds k8s.io/kubernetes at `version`, fetched when missing.
fn kubernetes_module(version: &str) -> PathBuf {
    let out = Command::new("go")
        .args([
            "mod",
            "download",
            "-json",
            &format!("k8s.io/kubernetes@{version}"),
        ])
        .env("GOFLAGS", "-mod=mod")
        .current_dir(std::env::temp_dir())
        .output()
        .expect("go runs");
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "go mod download k8s.io/kubernetes@{version} said no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    PathBuf::from(
        answer["Dir"]
            .as_str()
            .unwrap_or_else(|| panic!("go mod download found no module: {answer}")),
    )
}

/// The file kubeconform looks a kind's schema up by (see [`kubeconform`]). For the core
/// group, whose apiVersion has no group part, kubeconform's `Group` is the version.
fn schema_file(kind: &str, group: &str, version: &str) -> String {
    let group = if group.is_empty() { version } else { group };
    format!("{}_{group}_{version}.json", kind.to_lowercase())
}

/// The definition `name` with every definition it reaches, references made local.
fn standalone(name: &str, all: &Map<String, Value>) -> Value {
    let mut reached = Map::new();
    let mut todo = vec![name.to_owned()];
    while let Some(next) = todo.pop() {
        if reached.contains_key(&next) {
            continue;
        }
        let mut definition = special(&next).unwrap_or_else(|| all[&next].clone());
        collect_refs(&mut definition, &mut todo);
        strict(&mut definition);
        reached.insert(next, definition);
    }
    json!({"$ref": format!("#/definitions/{name}"), "definitions": reached})
}

/// Types whose OpenAPI form says less than YAML allows: quantities and int-or-strings are
/// written as numbers too.
fn special(name: &str) -> Option<Value> {
    match name {
        "io.k8s.apimachinery.pkg.api.resource.Quantity" => {
            Some(json!({"type": ["string", "number"]}))
        }
        "io.k8s.apimachinery.pkg.util.intstr.IntOrString" => {
            Some(json!({"type": ["string", "integer"]}))
        }
        _ => None,
    }
}

fn collect_refs(value: &mut Value, todo: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get_mut("$ref")
                && let Some(target) = r.strip_prefix("#/definitions/")
            {
                todo.push(target.to_owned());
            }
            map.values_mut().for_each(|v| collect_refs(v, todo));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| collect_refs(v, todo)),
        _ => {}
    }
}

/// Makes a schema strict (no property it does not name) and lets every value be null, as
/// YAML writes an empty field.
fn strict(value: &mut Value) {
    let Value::Object(map) = value else { return };
    if map.remove("x-kubernetes-int-or-string") == Some(Value::Bool(true)) {
        map.insert("type".into(), json!(["string", "integer", "null"]));
    }
    let preserves = map.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if map.contains_key("properties") && !map.contains_key("additionalProperties") && !preserves {
        map.insert("additionalProperties".into(), Value::Bool(false));
    }
    if let Some(Value::String(t)) = map.get("type").cloned() {
        map.insert("type".into(), json!([t, "null"]));
    }
    for (key, child) in map.iter_mut() {
        match key.as_str() {
            "properties" | "definitions" | "patternProperties" => {
                if let Value::Object(children) = child {
                    children.values_mut().for_each(strict);
                }
            }
            "enum" | "default" | "example" | "x-kubernetes-validations" => {}
            _ => match child {
                Value::Array(items) => items.iter_mut().for_each(strict),
                other => strict(other),
            },
        }
    }
}

/// Runs kubeconform, strict, on a stream of manifests: whether it passed, and what it said.
fn kubeconform(manifests: &str) -> (bool, String) {
    let program = tool(
        "KUBECONFORM",
        "kubeconform",
        "KUBECONFORM_VERSION",
        "kubeconform",
    );
    let location = format!(
        "{}/{{{{ .ResourceKind }}}}_{{{{ .Group }}}}_{{{{ .ResourceAPIVersion }}}}.json",
        schemas().display()
    );
    let mut child = Command::new(&program)
        .args(["-strict", "-summary", "-output", "text"])
        .args(["-schema-location", &location])
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program} (make test builds it): {e}"));
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(manifests.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

/// The chart rendered with `values` (each a `--set`).
fn rendered(values: &[&str]) -> String {
    let args: Vec<&str> = values.iter().flat_map(|v| ["--set", v]).collect();
    helm_template("decision-gate", "decision-gate-system", &args)
}

#[test]
fn the_chart_and_the_examples_pass_kubeconform_strictly_and_mistakes_do_not() {
    let renders: &[&[&str]] = &[
        &[],
        &["operator.watchNamespace=team-a"],
        &[
            "replicaCount=2",
            "audit.persistence.accessModes={ReadWriteMany}",
            "priorityClassName=ops",
            "podLabels.team=platform",
        ],
        &[
            "slack.enabled=true",
            "slack.signingSecret.secretName=slack",
            "slack.users[0].slackUser=U1",
            "slack.users[0].user=bob",
        ],
        &[
            "admission.enabled=false",
            "audit.persistence.enabled=false",
            "networkPolicy.apiServerCIDRs={10.0.0.0/24}",
            "notifications.secretNames={hooks}",
        ],
    ];
    for values in renders {
        let (ok, said) = kubeconform(&rendered(values));
        assert!(
            ok,
            "kubeconform refused the chart rendered with {values:?}:\n{said}"
        );
        assert!(said.contains("Invalid: 0, Errors: 0"), "{said}");
    }

    let mut examples = Vec::new();
    for dir in ["examples", "examples/agents", "examples/real-node"] {
        for entry in std::fs::read_dir(repo_root().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if path.extension().is_some_and(|e| e == "yaml") && text.contains("\nkind: ") {
                examples.push(format!("---\n{text}"));
            }
        }
    }
    assert!(examples.len() >= 5, "the examples were not found");
    // The GitOps example's chart, as Argo CD renders it for one revision.
    let example = repo_root().join("examples/gitops/web");
    let example = example.to_str().unwrap();
    let web = run_helm(&["template", "web", example, "--set", "revision=0123abc"]);
    assert!(
        web.status.success(),
        "{}",
        String::from_utf8_lossy(&web.stderr)
    );
    let web = String::from_utf8(web.stdout).unwrap();
    assert!(web.contains("name: ship-web-0123abc"), "{web}");
    examples.push(web);
    let unnamed = run_helm(&["template", "web", example]);
    assert!(
        !unnamed.status.success()
            && String::from_utf8_lossy(&unnamed.stderr).contains("set revision"),
        "a Decision with no revision in its name: {}",
        String::from_utf8_lossy(&unnamed.stderr)
    );
    let (ok, said) = kubeconform(&examples.join("\n"));
    assert!(ok, "kubeconform refused the examples:\n{said}");

    // What it catches, offline: a misspelt field, and a value the API's patterns refuse.
    let misspelt = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replica: 1, selector: {matchLabels: {a: b}}, template: {metadata: {labels: {a: b}}, spec: {containers: [{name: c, image: i}]}}}\n";
    let (ok, said) = kubeconform(misspelt);
    assert!(!ok && said.contains("replica"), "{said}");
    let bad_action = "apiVersion: decisiongate.io/v1alpha1\nkind: Decision\nmetadata: {name: x}\nspec: {actionType: Deploy Now, description: x, criticality: Normal}\n";
    let (ok, said) = kubeconform(bad_action);
    assert!(!ok && said.contains("actionType"), "{said}");
    let unknown = "apiVersion: decisiongate.io/v1alpha1\nkind: ExecutionPlan\nmetadata: {name: x}\nspec: {actionTypes: [ship], mode: Real, steps: [], surprise: true}\n";
    let (ok, said) = kubeconform(unknown);
    assert!(!ok && said.contains("surprise"), "{said}");
}

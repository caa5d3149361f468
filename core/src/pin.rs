//! Pinning a Decision to its ExecutionPlan: what the plan was when the Decision was
//! requested, so that approvers approve exactly that and nothing else ever runs for it.
//!
//! The digest covers the whole spec (action types, criticality, mode, rollback strategy
//! and every step's template) as canonical JSON: object keys sorted, no whitespace. Two
//! specs that mean the same thing have the same digest; any change to what would run
//! changes it.

use chrono::{DateTime, Utc};
use kube_core::ResourceExt;
use sha2::{Digest, Sha256};

use crate::api::ExecutionPlan;
use crate::api::decision::{Criticality, PinnedPlan, PinnedStep};
use crate::api::{DecisionSpec, ExecutionPlanSpec};

/// The longest command shown for a step; the digest covers all of it.
const COMMAND_SHOWN: usize = 200;

/// `sha256:` and the hex SHA-256 of the spec's canonical JSON.
pub fn digest(spec: &ExecutionPlanSpec) -> String {
    // serde_json's maps are sorted by key, so this text is canonical.
    let text = serde_json::to_string(spec).unwrap_or_default();
    format!("sha256:{}", sha256_hex(&text))
}

/// What an approval binds to: `sha256:` and the hex SHA-256 of the canonical JSON of the
/// Decision's uid, its spec and the digest of its pinned plan (none for a pure gate). A
/// Decision deleted and created again under its name, or asking anything else, has
/// another digest.
pub fn decision_digest(uid: &str, spec: &DecisionSpec, plan: Option<&str>) -> String {
    let text = serde_json::json!({ "uid": uid, "spec": spec, "plan": plan }).to_string();
    format!("sha256:{}", sha256_hex(&text))
}

/// The SHA-256 of a text, in lower-case hex.
pub fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The first characters of a digest, as people read and type it.
pub fn short(digest: &str) -> &str {
    // By characters: a digest read from a status or typed by a person may be anything.
    let end = digest
        .char_indices()
        .nth("sha256:".len() + 12)
        .map_or(digest.len(), |(i, _)| i);
    &digest[..end]
}

/// Whether `given` (what an approver confirmed) names `pinned`: the whole digest, or its
/// first 12 hex characters or more.
pub fn confirms(given: &str, pinned: &str) -> bool {
    let given = given.trim();
    let hex = given.strip_prefix("sha256:").unwrap_or(given);
    let pinned_hex = pinned.strip_prefix("sha256:").unwrap_or(pinned);
    hex.len() >= 12 && pinned_hex.starts_with(hex)
}

/// What the plan is now, pinned.
pub fn pin(plan: &ExecutionPlan, now: DateTime<Utc>) -> PinnedPlan {
    PinnedPlan {
        name: plan.name_any(),
        uid: plan.metadata.uid.clone().unwrap_or_default(),
        generation: plan.metadata.generation.unwrap_or_default(),
        digest: digest(&plan.spec),
        pinned_at: now,
        mode: plan.spec.mode,
        action_types: plan.spec.action_types.clone(),
        criticality: plan.spec.criticality,
        steps: plan
            .spec
            .steps
            .iter()
            .map(|s| summarize(&s.name, &s.template, s.rollback.is_some()))
            .collect(),
    }
}

fn summarize(name: &str, template: &serde_json::Value, rollback: bool) -> PinnedStep {
    let spec = &template["spec"];
    let containers = spec["containers"].as_array().cloned().unwrap_or_default();
    let images = containers
        .iter()
        .filter_map(|c| c["image"].as_str().map(str::to_owned))
        .collect();
    let command = containers.first().and_then(|c| {
        let words: Vec<&str> = ["command", "args"]
            .iter()
            .flat_map(|k| c[*k].as_array().into_iter().flatten())
            .filter_map(|w| w.as_str())
            .collect();
        (!words.is_empty()).then(|| {
            let line = words.join(" ");
            if line.chars().count() > COMMAND_SHOWN {
                let cut: String = line.chars().take(COMMAND_SHOWN).collect();
                format!("{cut}…")
            } else {
                line
            }
        })
    });
    PinnedStep {
        name: name.to_owned(),
        images,
        command,
        service_account: spec["serviceAccountName"].as_str().map(str::to_owned),
        rollback,
    }
}

/// Why the plan is no longer what was pinned, if it is not.
pub fn changed(pinned: &PinnedPlan, plan: &ExecutionPlan) -> Option<String> {
    changed_from(
        pinned,
        plan.metadata.uid.as_deref().unwrap_or_default(),
        &plan.spec,
    )
}

/// [`changed`], for a plan known by its uid and spec.
pub fn changed_from(pinned: &PinnedPlan, uid: &str, spec: &ExecutionPlanSpec) -> Option<String> {
    if uid != pinned.uid {
        return Some(format!(
            "the ExecutionPlan {} was deleted and created again after this Decision was requested; request a new Decision",
            pinned.name
        ));
    }
    let now = digest(spec);
    (now != pinned.digest).then(|| {
        format!(
            "the ExecutionPlan {} changed after this Decision was requested (pinned {}, now {}); request a new Decision",
            pinned.name,
            short(&pinned.digest),
            short(&now)
        )
    })
}

/// Why a Decision of `action_type` may not run the pinned plan, if it may not.
pub fn refuses(pinned: &PinnedPlan, action_type: &str) -> Option<String> {
    (!pinned.action_types.iter().any(|t| t == action_type)).then(|| {
        format!(
            "the ExecutionPlan {} carries out {}, not {action_type}",
            pinned.name,
            if pinned.action_types.is_empty() {
                "nothing".to_owned()
            } else {
                pinned.action_types.join(", ")
            }
        )
    })
}

/// The more critical of two criticalities.
pub fn higher(a: Criticality, b: Criticality) -> Criticality {
    let rank = |c| match c {
        Criticality::Info => 0,
        Criticality::Normal => 1,
        Criticality::High => 2,
        Criticality::Critical => 3,
    };
    if rank(b) > rank(a) { b } else { a }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::execution_plan::{ExecutionMode, RollbackStrategy, Step};
    use serde_json::json;

    fn plan() -> ExecutionPlan {
        let mut p = ExecutionPlan::new(
            "deploy",
            ExecutionPlanSpec {
                action_types: vec!["deploy".into()],
                criticality: None,
                mode: ExecutionMode::Real,
                rollback_strategy: RollbackStrategy::Automatic,
                steps: vec![Step {
                    name: "migrate".into(),
                    template: json!({"spec": {
                        "serviceAccountName": "migrator",
                        "restartPolicy": "Never",
                        "containers": [{"name": "m", "image": "migrations:2.0", "command": ["migrate"], "args": ["--to", "2.0"]}],
                    }}),
                    timeout_seconds: None,
                    retries: 0,
                    rollback: None,
                    simulated_duration_seconds: None,
                }],
                unreadable: None,
            },
        );
        p.metadata.uid = Some("uid-1".into());
        p.metadata.generation = Some(2);
        p
    }

    #[test]
    fn a_pin_shows_what_each_step_runs() {
        let pinned = pin(&plan(), Utc::now());
        assert_eq!(pinned.uid, "uid-1");
        assert_eq!(pinned.generation, 2);
        assert!(pinned.digest.starts_with("sha256:") && pinned.digest.len() == 71);
        let step = &pinned.steps[0];
        assert_eq!(step.images, ["migrations:2.0"]);
        assert_eq!(step.command.as_deref(), Some("migrate --to 2.0"));
        assert_eq!(step.service_account.as_deref(), Some("migrator"));
    }

    #[test]
    fn the_digest_follows_content_not_key_order() {
        let a = plan();
        let mut b = plan();
        b.spec.steps[0].template = serde_json::from_str(
            r#"{"spec": {"containers": [{"args": ["--to", "2.0"], "command": ["migrate"], "image": "migrations:2.0", "name": "m"}], "restartPolicy": "Never", "serviceAccountName": "migrator"}}"#,
        )
        .unwrap();
        assert_eq!(digest(&a.spec), digest(&b.spec));
        b.spec.steps[0].template["spec"]["containers"][0]["image"] = json!("migrations:2.1");
        assert_ne!(digest(&a.spec), digest(&b.spec));
    }

    #[test]
    fn a_changed_or_recreated_plan_is_named() {
        let pinned = pin(&plan(), Utc::now());
        assert_eq!(changed(&pinned, &plan()), None);
        let mut edited = plan();
        edited.spec.steps[0].template["spec"]["containers"][0]["args"] = json!(["--drop-all"]);
        let why = changed(&pinned, &edited).unwrap();
        assert!(
            why.contains("changed after this Decision was requested"),
            "{why}"
        );
        let mut recreated = plan();
        recreated.metadata.uid = Some("uid-2".into());
        assert!(
            changed(&pinned, &recreated)
                .unwrap()
                .contains("deleted and created again")
        );
    }

    #[test]
    fn digests_are_confirmed_whole_or_by_a_long_enough_prefix() {
        let d = digest(&plan().spec);
        assert!(confirms(&d, &d));
        assert!(confirms(short(&d), &d));
        assert!(confirms(&d["sha256:".len()..], &d));
        assert!(!confirms("sha256:abc", &d), "too short to mean anything");
        assert_eq!(short("sha256:ééééééééééééééé"), "sha256:éééééééééééé");
        assert!(!confirms("ééééééééééééé", &d));
        assert!(!confirms(
            &digest(&ExecutionPlanSpec {
                mode: ExecutionMode::DryRun,
                ..plan().spec
            }),
            &d
        ));
    }

    #[test]
    fn only_the_listed_action_types_may_run_a_plan() {
        let pinned = pin(&plan(), Utc::now());
        assert_eq!(refuses(&pinned, "deploy"), None);
        let why = refuses(&pinned, "email").unwrap();
        assert_eq!(
            why,
            "the ExecutionPlan deploy carries out deploy, not email"
        );
    }

    #[test]
    fn a_decision_digest_binds_the_uid_the_request_and_the_plan() {
        use crate::api::decision::Criticality::High;
        let spec = DecisionSpec::example("deploy", High);
        let plan = digest(&plan().spec);
        let d = decision_digest("uid-1", &spec, Some(&plan));
        assert!(d.starts_with("sha256:") && d.len() == 71, "{d}");
        assert_eq!(d, decision_digest("uid-1", &spec.clone(), Some(&plan)));
        assert_ne!(
            d,
            decision_digest("uid-2", &spec, Some(&plan)),
            "another uid"
        );
        assert_ne!(d, decision_digest("uid-1", &spec, None), "another plan");
        let mut context = spec.clone();
        context.context = Some([("dropTables".to_owned(), json!("true"))].into());
        assert_ne!(
            d,
            decision_digest("uid-1", &context, Some(&plan)),
            "another context"
        );
        assert_ne!(d, plan, "the plan's digest alone is not the Decision's");
    }

    #[test]
    fn the_higher_criticality_wins() {
        use Criticality::*;
        assert_eq!(higher(Normal, Critical), Critical);
        assert_eq!(higher(Critical, Info), Critical);
        assert_eq!(higher(Info, Normal), Normal);
        assert_eq!(higher(High, High), High);
    }
}

//! Decisions as the operator's cache holds them: packed.
//!
//! The cache holds every Decision the operator watches, and most of them only wait: for
//! people, or for nothing once decided. Parsed, one costs about 4 KiB, most of it a
//! status nobody reads until the Decision is reconciled again. A cached Decision is
//! therefore what its triggers read (name, namespace, uid, version, the plan it names,
//! its phase, whether its plan runs) beside the whole object as compressed JSON, which a
//! reconcile unpacks. The packed form leaves the resourceVersion out, so that two packed
//! forms are equal exactly when the objects are equal but for their version.

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use serde::{Deserialize, Deserializer};

use super::watch::Watched;
use crate::api::{Decision, DecisionPhase};
use crate::error::{Error, Result};

/// The most a packed Decision may unpack to: far above what the API server stores in
/// one object.
const UNPACKED_LIMIT: usize = 8 << 20;

/// A whole Decision but its resourceVersion, as compressed JSON.
#[derive(Clone, PartialEq, Eq)]
pub struct Packed(Box<[u8]>);

impl std::fmt::Debug for Packed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Packed({} bytes)", self.0.len())
    }
}

/// The first byte of a packed form: how the JSON after it is held.
const COMPRESSED: u8 = 1;
const PLAIN: u8 = 0;

impl Packed {
    /// Packs a Decision (its resourceVersion already taken out): LZ4 against a
    /// dictionary of sample Decisions, so that what a Decision shares with every other
    /// (its keys, the operator's wording, its structure) costs a few bytes of reference
    /// and only what is its own is stored: a waiting Decision takes about a quarter of
    /// its JSON.
    fn of(decision: &Decision) -> Packed {
        let json = match serde_json::to_vec(decision) {
            Ok(json) => json,
            // A Decision always serializes; were it ever not to, it would be unpacked as
            // unreadable, not panic the watch.
            Err(_) => return Packed(Box::new([PLAIN])),
        };
        let compressed = lz4_flex::block::compress_prepend_size_with_dict(&json, dictionary());
        let mut packed = Vec::with_capacity(compressed.len() + 1);
        packed.push(COMPRESSED);
        packed.extend_from_slice(&compressed);
        Packed(packed.into())
    }

    /// The JSON it holds.
    fn json(&self) -> std::result::Result<Cow<'_, [u8]>, String> {
        match self.0.split_first() {
            Some((&COMPRESSED, compressed)) => {
                let size = compressed
                    .get(..4)
                    .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize);
                if size.is_none_or(|size| size > UNPACKED_LIMIT) {
                    return Err("its size is missing or too large".to_owned());
                }
                lz4_flex::block::decompress_size_prepended_with_dict(compressed, dictionary())
                    .map(Cow::Owned)
                    .map_err(|e| e.to_string())
            }
            Some((&PLAIN, json)) => Ok(Cow::Borrowed(json)),
            _ => Err("it is in no known form".to_owned()),
        }
    }

    /// How many bytes it holds.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What packed Decisions are compressed against: sample Decisions as the operator
/// writes them (waiting for an approval; approved, its plan pinned), made by the core
/// itself so that they follow the API and its wording. Built once per process: packed
/// forms never leave it.
fn dictionary() -> &'static [u8] {
    static DICTIONARY: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    DICTIONARY.get_or_init(samples)
}

fn samples() -> Vec<u8> {
    use crate::admission::Answers;
    use crate::api::{ApprovalPolicy, ExecutionPlan, annotations};
    fn read<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Option<T> {
        serde_json::from_value(value).ok()
    }
    let (Some(policy), Some(plan), Some(mut decision)) = (
        read::<ApprovalPolicy>(serde_json::json!({
            "apiVersion": "decisiongate.io/v1alpha1", "kind": "ApprovalPolicy",
            "metadata": {"name": "production-changes", "namespace": "default"},
            "spec": {"rules": [{"name": "deploys-need-one-approver",
                                "match": {"actionTypes": ["deploy"]},
                                "outcome": "RequireApproval", "approvals": 1}]},
        })),
        read::<ExecutionPlan>(serde_json::json!({
            "apiVersion": "decisiongate.io/v1alpha1", "kind": "ExecutionPlan",
            "metadata": {"name": "deploy", "namespace": "default", "generation": 1,
                         "uid": "00000000-0000-0000-0000-000000000001"},
            "spec": {"actionTypes": ["deploy"], "mode": "Real",
                     "steps": [{"name": "apply", "template": {"spec": {
                         "restartPolicy": "Never",
                         "containers": [{"name": "main", "image": "busybox",
                                         "command": ["sh", "-c", "echo deploy"]}]}}}]},
        })),
        read::<Decision>(serde_json::json!({
            "apiVersion": "decisiongate.io/v1alpha1", "kind": "Decision",
            "metadata": {"name": "deploy-api-gateway", "namespace": "default",
                         "uid": "00000000-0000-0000-0000-000000000000", "generation": 1,
                         "creationTimestamp": "2026-01-01T00:00:00Z",
                         "finalizers": [crate::api::FINALIZER],
                         "annotations": {(annotations::REQUESTED_BY): "system:serviceaccount:default:agent"},
                         "labels": {"decisiongate.io/requested-through": "kubectl"}},
            "spec": {"actionType": "deploy", "description": "Deploy version 2 of the API gateway",
                     "criticality": "High", "source": "agents/release",
                     "estimatedDurationMinutes": 15, "context": {"version": "2.0.0"},
                     "planRef": {"name": "deploy"}},
        })),
    ) else {
        return Vec::new();
    };
    let policies = [crate::policy::Policy::of(&policy)];
    let expressions = Default::default();
    let advance = |decision: &Decision| {
        crate::lifecycle::advance(&crate::lifecycle::Input {
            decision,
            policies: &policies,
            now: chrono::DateTime::UNIX_EPOCH,
            default_expiry: std::time::Duration::from_secs(24 * 3600),
            plan: Some(&plan),
            answers: &Answers::Verified,
            expressions: &expressions,
            jobs: None,
        })
        .status
    };
    let mut samples = Vec::new();
    decision.status = Some(advance(&decision));
    let waiting = serde_json::to_vec(&decision).unwrap_or_default();
    decision
        .metadata
        .annotations
        .get_or_insert_default()
        .insert(annotations::APPROVED_BY.to_owned(), "alice".to_owned());
    decision.status = Some(advance(&decision));
    samples.extend(serde_json::to_vec(&decision).unwrap_or_default());
    // The most common form last: the nearest to what most Decisions are.
    samples.extend(waiting);
    samples
}

/// A Decision in the cache: what its triggers read, and the whole of it packed.
#[derive(Clone)]
pub struct CachedDecision {
    /// Its name, namespace, uid, resourceVersion, generation and deletion timestamp.
    metadata: ObjectMeta,
    /// The ExecutionPlan it names.
    pub plan: Option<String>,
    pub phase: Option<DecisionPhase>,
    /// Whether its plan has started.
    pub executing: bool,
    /// Why its stored status could not be read, if it could not (never part of the JSON).
    status_unreadable: Option<String>,
    packed: Packed,
}

impl CachedDecision {
    /// Packs a Decision.
    pub fn pack(mut decision: Decision) -> CachedDecision {
        let version = decision.metadata.resource_version.take();
        let packed = Packed::of(&decision);
        let status = decision.status.as_ref();
        let meta = decision.metadata;
        CachedDecision {
            metadata: ObjectMeta {
                name: meta.name,
                namespace: meta.namespace,
                uid: meta.uid,
                resource_version: version,
                generation: meta.generation,
                deletion_timestamp: meta.deletion_timestamp,
                ..Default::default()
            },
            plan: decision.spec.plan_ref.map(|p| p.name),
            phase: status.and_then(|s| s.phase),
            executing: status.is_some_and(|s| s.execution.is_some()),
            status_unreadable: status.and_then(|s| s.unreadable.clone()),
            packed,
        }
    }

    /// The packed form a Decision would have in the cache.
    pub fn packed_form(decision: &Decision) -> Packed {
        CachedDecision::pack(decision.clone()).packed
    }

    /// The whole Decision.
    pub fn unpack(&self) -> Result<Decision> {
        let broken = |why| {
            Error::Internal(format!(
                "the cached copy of the Decision cannot be unpacked: {why}"
            ))
        };
        let bytes = self.packed.json().map_err(broken)?;
        let mut decision: Decision =
            serde_json::from_slice(&bytes).map_err(|e| broken(e.to_string()))?;
        decision.metadata.resource_version = self.metadata.resource_version.clone();
        if let Some(why) = &self.status_unreadable {
            decision.mark_status_unreadable(why.clone());
        }
        Ok(decision)
    }

    pub fn packed(&self) -> &Packed {
        &self.packed
    }
}

impl std::fmt::Debug for CachedDecision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedDecision")
            .field("namespace", &self.metadata.namespace)
            .field("name", &self.metadata.name)
            .field("resource_version", &self.metadata.resource_version)
            .field("phase", &self.phase)
            .field("packed", &self.packed)
            .finish()
    }
}

impl<'de> Deserialize<'de> for CachedDecision {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Decision::deserialize(deserializer).map(CachedDecision::pack)
    }
}

impl Resource for CachedDecision {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        Decision::kind(&())
    }
    fn group(_: &()) -> Cow<'_, str> {
        Decision::group(&())
    }
    fn version(_: &()) -> Cow<'_, str> {
        Decision::version(&())
    }
    fn plural(_: &()) -> Cow<'_, str> {
        Decision::plural(&())
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decision(version: &str) -> Decision {
        serde_json::from_value(json!({
            "apiVersion": "decisiongate.io/v1alpha1", "kind": "Decision",
            "metadata": {"name": "d", "namespace": "team-a", "uid": "u-1", "generation": 2,
                         "resourceVersion": version,
                         "annotations": {"approved-by": "alice"},
                         "labels": {"team": "a"}},
            "spec": {"actionType": "deploy", "description": "x", "criticality": "High",
                     "planRef": {"name": "ship"}, "context": {"amount": 500, "to": ["x"]}},
            "status": {"phase": "Pending", "approvalProgress": "0/1",
                       "risk": {"level": "Medium", "score": 35, "reasons": ["criticality High (+25)"]}},
        }))
        .unwrap()
    }

    #[test]
    fn a_decision_unpacks_whole_with_its_version() {
        let original = decision("41");
        let cached = CachedDecision::pack(original.clone());
        assert_eq!(cached.unpack().unwrap(), original);
        assert_eq!(cached.meta().name.as_deref(), Some("d"));
        assert_eq!(cached.meta().namespace.as_deref(), Some("team-a"));
        assert_eq!(cached.meta().uid.as_deref(), Some("u-1"));
        assert_eq!(cached.meta().resource_version.as_deref(), Some("41"));
        assert_eq!(cached.meta().generation, Some(2));
        assert_eq!(cached.plan.as_deref(), Some("ship"));
        assert_eq!(cached.phase, Some(DecisionPhase::Pending));
        assert!(!cached.executing);
        // What the cache keeps beside the packed form is only what its triggers read.
        assert!(cached.meta().annotations.is_none());
    }

    #[test]
    fn packed_forms_are_equal_exactly_when_the_objects_are_but_for_their_version() {
        let a = CachedDecision::pack(decision("41"));
        let b = CachedDecision::pack(decision("42"));
        assert_eq!(a.packed(), b.packed());
        let mut approved = decision("43");
        approved
            .metadata
            .annotations
            .get_or_insert_default()
            .insert("rejected-by".into(), "bob".into());
        assert_ne!(a.packed(), CachedDecision::pack(approved).packed());
    }

    #[test]
    fn a_decision_is_read_straight_into_its_cached_form() {
        let cached: CachedDecision = serde_json::from_value(json!({
            "apiVersion": "decisiongate.io/v1alpha1", "kind": "Decision",
            "metadata": {"name": "d", "namespace": "team-a", "resourceVersion": "7"},
            "spec": {"actionType": "deploy", "description": "x", "criticality": "High"},
        }))
        .unwrap();
        assert_eq!(cached.phase, None);
        assert_eq!(cached.unpack().unwrap().spec.action_type, "deploy");
    }

    #[test]
    fn an_unreadable_status_stays_marked() {
        let mut unreadable = decision("5");
        unreadable.mark_status_unreadable("the status cannot be read: bad".into());
        let unpacked = CachedDecision::pack(unreadable).unpack().unwrap();
        assert_eq!(
            unpacked.status_unreadable(),
            Some("the status cannot be read: bad")
        );
        assert_eq!(unpacked.status.and_then(|s| s.phase), None);
    }

    #[test]
    fn a_damaged_packed_form_is_an_error_not_a_panic() {
        let mut cached = CachedDecision::pack(decision("1"));
        for damaged in [vec![COMPRESSED, 2, 3], vec![9, b'{'], vec![]] {
            cached.packed = Packed(damaged.into());
            let err = cached.unpack().unwrap_err().to_string();
            assert!(err.contains("cannot be unpacked"), "{err}");
        }
    }

    #[test]
    fn the_samples_hold_every_form_of_a_decision() {
        let samples = String::from_utf8(dictionary().to_vec()).unwrap();
        for form in ["\"Pending\"", "\"Approved\"", "\"approvals\"", "\"plan\""] {
            assert!(samples.contains(form), "{form} missing from {samples}");
        }
    }

    #[test]
    fn each_decision_packs_on_its_own() {
        let first = CachedDecision::pack(decision("1"));
        let mut other = decision("2");
        other.spec.description = "something else entirely, and longer".repeat(20);
        let other = CachedDecision::pack(other);
        let again = CachedDecision::pack(decision("1"));
        assert_eq!(first.packed(), again.packed());
        assert_eq!(again.unpack().unwrap(), decision("1"));
        assert!(
            other
                .unpack()
                .unwrap()
                .spec
                .description
                .starts_with("something")
        );
        // Compressed against the samples: far smaller than its JSON.
        let json = serde_json::to_vec(&decision("1")).unwrap();
        assert!(
            first.packed().len() * 3 < json.len(),
            "{} of {}",
            first.packed().len(),
            json.len()
        );
        assert!(!dictionary().is_empty());
    }
}

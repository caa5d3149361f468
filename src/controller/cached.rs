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

/// How hard the JSON is compressed: the fastest level already shrinks a Decision about
/// threefold (its keys and conditions repeat).
const LEVEL: u8 = 1;

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

impl Packed {
    /// How many bytes it holds.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
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
        let bytes = serde_json::to_vec(&decision).expect("a Decision always serializes");
        let packed = Packed(miniz_oxide::deflate::compress_to_vec(&bytes, LEVEL).into());
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
        let broken = |why: String| {
            Error::Internal(format!(
                "the cached copy of the Decision cannot be unpacked: {why}"
            ))
        };
        let bytes =
            miniz_oxide::inflate::decompress_to_vec_with_limit(&self.packed.0, UNPACKED_LIMIT)
                .map_err(|e| broken(e.to_string()))?;
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
        cached.packed = Packed(vec![1, 2, 3].into());
        let err = cached.unpack().unwrap_err().to_string();
        assert!(err.contains("cannot be unpacked"), "{err}");
    }
}

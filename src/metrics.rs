//! Prometheus metrics, served on `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: &'static str,
    pub reason: &'static str,
}

/// The operator's metrics, registered once at start-up.
#[derive(Clone)]
pub struct Metrics {
    pub reconciliations: Family<KindLabels, Counter>,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub reconcile_duration: Family<KindLabels, Histogram>,
}

impl Metrics {
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = Metrics {
            reconciliations: Family::default(),
            reconcile_errors: Family::default(),
            reconcile_duration: Family::new_with_constructor(|| {
                Histogram::new([0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0])
            }),
        };
        let prefixed = registry.sub_registry_with_prefix("decision_gate");
        prefixed.register(
            "reconciliations",
            "Reconciliations started, by kind",
            metrics.reconciliations.clone(),
        );
        prefixed.register(
            "reconcile_errors",
            "Reconciliations that failed, by kind and reason",
            metrics.reconcile_errors.clone(),
        );
        prefixed.register(
            "reconcile_duration_seconds",
            "How long reconciliations take, by kind",
            metrics.reconcile_duration.clone(),
        );
        metrics
    }

    /// Counts a reconciliation and returns a guard that records its duration when dropped.
    pub fn reconcile_started(&self, kind: &'static str) -> ReconcileTimer {
        self.reconciliations
            .get_or_create(&KindLabels { kind })
            .inc();
        ReconcileTimer {
            histogram: self
                .reconcile_duration
                .get_or_create(&KindLabels { kind })
                .clone(),
            start: std::time::Instant::now(),
        }
    }

    pub fn reconcile_failed(&self, kind: &'static str, reason: &'static str) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels { kind, reason })
            .inc();
    }
}

pub struct ReconcileTimer {
    histogram: Histogram,
    start: std::time::Instant,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;

    #[test]
    fn reconciliations_and_errors_are_exposed() {
        let mut registry = Registry::default();
        let metrics = Metrics::new(&mut registry);
        drop(metrics.reconcile_started("Decision"));
        metrics.reconcile_failed("Decision", "ApiError");
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(r#"decision_gate_reconciliations_total{kind="Decision"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"decision_gate_reconcile_errors_total{kind="Decision",reason="ApiError"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains("decision_gate_reconcile_duration_seconds_count{kind=\"Decision\"} 1"),
            "{text}"
        );
    }
}

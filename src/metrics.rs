//! Prometheus metrics, served on `/metrics`.

use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::api::decision::StepPhase;
use crate::api::{Decision, DecisionPhase, DecisionStatus};
use crate::events::DecisionEvent;
use crate::events::ExecutionEvent;
use crate::lifecycle::CONDITION_APPROVED;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    pub mode: &'static str,
    pub outcome: &'static str,
}

/// The operator's metrics, registered once at start-up.
#[derive(Clone)]
pub struct Metrics {
    pub reconciliations: Family<KindLabels, Counter>,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub reconcile_duration: Family<KindLabels, Histogram>,
    pub decisions: Family<PhaseLabels, Gauge>,
    pub time_to_decision: Histogram,
    pub approval_to_execution: Histogram,
    pub step_duration: Family<StepLabels, Histogram>,
    pub audit_appends: Counter,
    /// Events dropped because too many waited to be published.
    pub events_dropped: Counter,
    /// The operator's own Decision status writes seen back on the watch and not
    /// reconciled again.
    pub echoes_skipped: Counter,
    /// How long an append waits until its lines are on disk (fsync included).
    pub audit_append_duration: Histogram,
    /// How long a status write takes, by kind.
    pub status_write_duration: Family<KindLabels, Histogram>,
    pub leader: Gauge,
    /// 1 while the admission policies that verify answers are in force.
    pub answers_verified: Gauge,
    /// People's answers seen while those policies were not in force, by what became of
    /// them (`held`: did not count; `counted`: counted marked unverified).
    pub unverified_answers: Family<OutcomeLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

/// Every phase, so that a phase with no Decision reads 0 rather than disappearing.
const PHASES: &[DecisionPhase] = DecisionPhase::ALL;

/// Buckets for work of milliseconds: a reconcile, an fsync, an API write.
fn fast_buckets() -> impl Iterator<Item = f64> {
    [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    ]
    .into_iter()
}

fn seconds_buckets() -> impl Iterator<Item = f64> {
    [
        0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0,
    ]
    .into_iter()
}

impl Metrics {
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = Metrics {
            reconciliations: Family::default(),
            reconcile_errors: Family::default(),
            reconcile_duration: Family::new_with_constructor(|| Histogram::new(fast_buckets())),
            decisions: Family::default(),
            time_to_decision: Histogram::new(seconds_buckets()),
            approval_to_execution: Histogram::new(seconds_buckets()),
            step_duration: Family::new_with_constructor(|| Histogram::new(seconds_buckets())),
            audit_appends: Counter::default(),
            events_dropped: Counter::default(),
            echoes_skipped: Counter::default(),
            audit_append_duration: Histogram::new(fast_buckets()),
            status_write_duration: Family::new_with_constructor(|| Histogram::new(fast_buckets())),
            leader: Gauge::default(),
            answers_verified: Gauge::default(),
            unverified_answers: Family::default(),
        };
        let r = registry.sub_registry_with_prefix("decision_gate");
        r.register(
            "reconciliations",
            "Reconciliations started, by kind",
            metrics.reconciliations.clone(),
        );
        r.register(
            "reconcile_errors",
            "Reconciliations that failed, by kind and reason",
            metrics.reconcile_errors.clone(),
        );
        r.register(
            "reconcile_duration_seconds",
            "How long reconciliations take, by kind",
            metrics.reconcile_duration.clone(),
        );
        r.register(
            "decisions",
            "Decisions watched, by phase",
            metrics.decisions.clone(),
        );
        r.register(
            "time_to_decision_seconds",
            "From a Decision's creation to its approval, rejection or expiry",
            metrics.time_to_decision.clone(),
        );
        r.register(
            "approval_to_execution_seconds",
            "From a Decision's approval to the start of its plan",
            metrics.approval_to_execution.clone(),
        );
        r.register(
            "step_duration_seconds",
            "How long plan steps take, by mode and outcome",
            metrics.step_duration.clone(),
        );
        r.register(
            "audit_appends",
            "Lines appended to the audit log",
            metrics.audit_appends.clone(),
        );
        r.register(
            "events_dropped",
            "Kubernetes Events dropped because more waited to be published than the budget allows",
            metrics.events_dropped.clone(),
        );
        r.register(
            "status_echoes_skipped",
            "The operator's own Decision status writes seen back on the watch and not reconciled again",
            metrics.echoes_skipped.clone(),
        );
        r.register(
            "audit_append_duration_seconds",
            "How long an audit append takes until its lines are on disk",
            metrics.audit_append_duration.clone(),
        );
        r.register(
            "status_write_duration_seconds",
            "How long a status write to the API server takes, by kind",
            metrics.status_write_duration.clone(),
        );
        r.register(
            "leader",
            "1 while this replica holds the leader Lease",
            metrics.leader.clone(),
        );
        r.register(
            "answers_verified",
            "1 while the admission policies that verify people's answers are in force",
            metrics.answers_verified.clone(),
        );
        r.register(
            "unverified_answers",
            "Answers given while those policies were not in force: held (not counted) or counted unverified",
            metrics.unverified_answers.clone(),
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

    /// Sets the per-phase gauge from the phases of every watched Decision.
    pub fn count_phases(&self, phases: impl Iterator<Item = Option<DecisionPhase>>) {
        let mut counts = [0i64; PHASES.len()];
        for phase in phases.flatten() {
            if let Some(i) = PHASES.iter().position(|p| *p == phase) {
                counts[i] += 1;
            }
        }
        for (phase, count) in PHASES.iter().zip(counts) {
            self.decisions
                .get_or_create(&PhaseLabels {
                    phase: phase.as_str(),
                })
                .set(count);
        }
    }

    /// Records the timings that `events`, which moved `decision` to `status`, complete.
    pub fn observe(
        &self,
        decision: &Decision,
        status: &DecisionStatus,
        events: &[DecisionEvent],
        now: DateTime<Utc>,
    ) {
        let seconds =
            |since: DateTime<Utc>| (now - since).num_milliseconds().max(0) as f64 / 1000.0;
        for event in events {
            let unverified = match event {
                DecisionEvent::ApprovalGranted {
                    verified: false, ..
                }
                | DecisionEvent::ApprovalRejected {
                    verified: false, ..
                } => Some("counted"),
                DecisionEvent::AnswerIgnored { why, .. }
                    if why.starts_with(crate::answers::UNVERIFIED) =>
                {
                    Some("held")
                }
                _ => None,
            };
            if let Some(outcome) = unverified {
                self.unverified_answers
                    .get_or_create(&OutcomeLabels { outcome })
                    .inc();
            }
            match event {
                DecisionEvent::AutoApproved { .. }
                | DecisionEvent::AutoRejected { .. }
                | DecisionEvent::ApprovalRejected { .. }
                | DecisionEvent::Expired { .. } => self.decided(decision, seconds),
                DecisionEvent::ApprovalGranted {
                    approvals,
                    required,
                    ..
                } if approvals >= required => self.decided(decision, seconds),
                DecisionEvent::Execution(ExecutionEvent::Started { .. }) => {
                    let approved = status
                        .conditions
                        .iter()
                        .find(|c| c.type_ == CONDITION_APPROVED)
                        .map(|c| c.last_transition_time);
                    if let Some(at) = approved {
                        self.approval_to_execution.observe(seconds(at));
                    }
                }
                DecisionEvent::Execution(
                    e @ (ExecutionEvent::StepExecuted { .. }
                    | ExecutionEvent::StepFailed {
                        retrying: false, ..
                    }
                    | ExecutionEvent::StepWouldExecute { .. }),
                ) => {
                    let Some(execution) = &status.execution else {
                        continue;
                    };
                    let Some(step) = execution
                        .steps
                        .iter()
                        .find(|s| Some(s.name.as_str()) == e.step())
                    else {
                        continue;
                    };
                    let outcome = match step.phase {
                        StepPhase::Succeeded => "succeeded",
                        StepPhase::WouldExecute => "would_execute",
                        _ => "failed",
                    };
                    self.step_duration
                        .get_or_create(&StepLabels {
                            mode: execution.mode.as_str(),
                            outcome,
                        })
                        .observe(step.duration_seconds.unwrap_or_default());
                }
                _ => {}
            }
        }
    }

    fn decided(&self, decision: &Decision, seconds: impl Fn(DateTime<Utc>) -> f64) {
        if let Some(created) = &decision.metadata.creation_timestamp {
            self.time_to_decision
                .observe(seconds(crate::api::common::to_chrono(&created.0)));
        }
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

    fn text(registry: &Registry) -> String {
        let mut out = String::new();
        encode(&mut out, registry).unwrap();
        out
    }

    #[test]
    fn reconciliations_and_errors_are_exposed() {
        let mut registry = Registry::default();
        let metrics = Metrics::new(&mut registry);
        drop(metrics.reconcile_started("Decision"));
        metrics.reconcile_failed("Decision", "Refused");
        let text = text(&registry);
        assert!(
            text.contains(r#"decision_gate_reconciliations_total{kind="Decision"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"decision_gate_reconcile_errors_total{kind="Decision",reason="Refused"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains("decision_gate_reconcile_duration_seconds_count{kind=\"Decision\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn phases_are_counted_including_the_empty_ones() {
        let mut registry = Registry::default();
        let metrics = Metrics::new(&mut registry);
        metrics.count_phases(
            [
                Some(DecisionPhase::Pending),
                Some(DecisionPhase::Pending),
                None,
                Some(DecisionPhase::Approved),
            ]
            .into_iter(),
        );
        let text = text(&registry);
        assert!(
            text.contains(r#"decision_gate_decisions{phase="Pending"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"decision_gate_decisions{phase="Approved"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"decision_gate_decisions{phase="RolledBack"} 0"#),
            "{text}"
        );
    }
}

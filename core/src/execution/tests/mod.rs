//! What the execution tests share: a plan of steps, an approved Decision pinned to it, and
//! a stand-in for the cluster that creates Jobs on request and finishes them on cue.

mod consistency;
mod invariants;
mod rollback;
mod start;
mod steps;

use super::*;
use crate::api::DecisionSpec;
use crate::api::ExecutionMode;
use crate::api::decision::{Criticality, PlanRef, RollbackPhase};
use crate::api::execution_plan::{RollbackAction, RollbackStrategy, Step};
use chrono::TimeZone;
use serde_json::json;

fn t0() -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000, 0).unwrap()
}

fn step(name: &str, rollback: bool) -> Step {
    let template = json!({"spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}});
    Step {
        name: name.into(),
        template: template.clone(),
        timeout_seconds: Some(60),
        retries: 0,
        rollback: rollback.then_some(RollbackAction {
            template,
            timeout_seconds: None,
        }),
        simulated_duration_seconds: Some(2),
    }
}

fn plan(mode: ExecutionMode, strategy: RollbackStrategy, steps: Vec<Step>) -> ExecutionPlanSpec {
    ExecutionPlanSpec {
        action_types: vec!["deploy".into()],
        criticality: None,
        mode,
        rollback_strategy: strategy,
        steps,
        unreadable: None,
    }
}

fn approved() -> Decision {
    let mut d = Decision::new(
        "ship",
        DecisionSpec {
            description: "ship it".into(),
            context: Some([("version".to_owned(), json!("2.0"))].into()),
            plan_ref: Some(PlanRef { name: "p".into() }),
            ..DecisionSpec::example("deploy", Criticality::High)
        },
    );
    d.metadata.namespace = Some("ops".into());
    d.metadata.uid = Some("uid-1".into());
    d.status = Some(DecisionStatus {
        phase: Some(DecisionPhase::Approved),
        ..Default::default()
    });
    d
}

/// `status`, pinned to the plan `spec` (uid `plan-uid`).
fn pinned_status(status: &DecisionStatus, spec: &ExecutionPlanSpec) -> DecisionStatus {
    let mut plan = crate::api::ExecutionPlan::new("p", spec.clone());
    plan.metadata.uid = Some("plan-uid".into());
    DecisionStatus {
        plan: Some(crate::pin::pin(&plan, t0())),
        ..status.clone()
    }
}

/// A stand-in for the cluster: Jobs are created on request and finish as the test says.
struct World {
    decision: Decision,
    plan: ExecutionPlanSpec,
    generation: i64,
    jobs: BTreeMap<String, JobState>,
    created: Vec<String>,
    dry_runs: BTreeMap<String, Result<(), String>>,
    refuse_dry_run: Option<&'static str>,
    events: Vec<String>,
    now: DateTime<Utc>,
    allow_real: bool,
    wake_at: Option<DateTime<Utc>>,
    answers: crate::admission::Answers,
}

impl World {
    fn new(plan: ExecutionPlanSpec) -> Self {
        let mut decision = approved();
        decision.status = decision.status.map(|s| pinned_status(&s, &plan));
        World {
            decision,
            plan,
            generation: 1,
            jobs: BTreeMap::new(),
            created: Vec::new(),
            dry_runs: BTreeMap::new(),
            refuse_dry_run: None,
            events: Vec::new(),
            now: t0(),
            allow_real: true,
            wake_at: None,
            answers: crate::admission::Answers::Verified,
        }
    }

    /// Reconciles until the executor waits for the world.
    fn settle(&mut self) {
        for _ in 0..50 {
            let view = PlanView {
                name: "p",
                uid: "plan-uid",
                generation: self.generation,
                spec: &self.plan,
                check: PlanCheck::Ready,
            };
            let status = self.decision.status.clone().unwrap();
            let advance = advance(&Input {
                decision: &self.decision,
                status: &status,
                plan: Some(view),
                jobs: &self.jobs,
                dry_runs: &self.dry_runs,
                now: self.now,
                allow_real: self.allow_real,
                answers: &self.answers,
            });
            self.events.extend(advance.events.iter().map(|e| match e {
                DecisionEvent::Execution(x) => match x.step() {
                    Some(step) => format!("{}:{step}", x.event_type()),
                    None => x.event_type().to_owned(),
                },
                other => other.event_type().to_owned(),
            }));
            self.decision.status = Some(advance.status);
            self.wake_at = advance.wake_at;
            match advance.action {
                None => return,
                Some(JobAction::Create { name, job }) => {
                    assert_eq!(job["metadata"]["name"], name.as_str());
                    let owner = &job["metadata"]["ownerReferences"][0];
                    assert_eq!(owner["uid"], "uid-1");
                    assert_eq!(owner["apiVersion"], "decisiongate.io/v1alpha1");
                    assert_eq!(owner["kind"], "Decision");
                    assert_eq!(owner["controller"], true);
                    assert_eq!(owner["blockOwnerDeletion"], true);
                    assert!(!self.created.contains(&name), "Job {name} created twice");
                    self.created.push(name.clone());
                    self.jobs.insert(name, JobState::Running);
                }
                Some(JobAction::DryRun { name, job }) => {
                    let step = job["metadata"]["labels"]["decisiongate.io/step"]
                        .as_str()
                        .unwrap()
                        .to_owned();
                    let verdict = match self.refuse_dry_run {
                        Some(bad) if bad == step => {
                            Err("spec.template.spec.containers[0].image: Required value".to_owned())
                        }
                        _ => Ok(()),
                    };
                    self.dry_runs.insert(name, verdict);
                }
            }
        }
        panic!("the executor did not settle");
    }

    fn finish(&mut self, job: &str, ok: bool) {
        self.now += chrono::Duration::seconds(3);
        let state = if ok {
            JobState::Succeeded {
                result: Some(format!("{job} done")),
                exit_code: Some(0),
                finished_at: Some(self.now),
            }
        } else {
            JobState::Failed {
                message: "exit code 1".into(),
                exit_code: Some(1),
                finished_at: Some(self.now),
            }
        };
        assert!(
            self.jobs.contains_key(job),
            "{job} was never created; created: {:?}",
            self.created
        );
        self.jobs.insert(job.to_owned(), state);
        self.settle();
    }

    fn status(&self) -> &DecisionStatus {
        self.decision.status.as_ref().unwrap()
    }

    fn phase(&self) -> DecisionPhase {
        self.status().phase.unwrap()
    }

    fn steps(&self) -> Vec<(String, StepPhase)> {
        let e = self.status().execution.as_ref().unwrap();
        e.steps.iter().map(|s| (s.name.clone(), s.phase)).collect()
    }
}

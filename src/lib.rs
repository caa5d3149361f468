//! decision-gate: a Kubernetes operator that puts a human approval gate in front of
//! critical actions and carries them out as Jobs.
//!
//! Everything that decides lives in the [`decision_gate_core`] crate (re-exported here
//! under the same module names): it has no client and no clock. This crate wires it to
//! Kubernetes: [`controller`] holds the thin reconcilers that read, call the core, and
//! write; [`audit`], [`notify`], [`http`], [`slack`] and [`witness`] are the operator's
//! other edges.

pub use decision_gate_core::policy::STACK_SIZE;
pub use decision_gate_core::{
    admission, answers, api, bounded, crd, events, execution, jobs, lifecycle, observed, pin, plan,
    policy, reminders, request, risk,
};

pub mod access;
pub mod agent;
pub mod answer;
pub mod audit;
pub mod controller;
pub mod error;
pub mod http;
pub mod liveness;
pub mod metrics;
pub mod notify;
pub mod plugin;
pub mod slack;
pub mod telemetry;
pub mod ui;
pub mod witness;

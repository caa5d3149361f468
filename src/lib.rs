//! decision-gate: a Kubernetes operator that puts a human approval gate in front of
//! critical actions and carries them out as Jobs.
//!
//! The pure core (no client, no clock) is in [`lifecycle`], [`plan`], [`policy`] and
//! [`jobs`]; [`controller`] holds the thin reconcilers that read, call it, and write.

pub mod api;
pub mod audit;
pub mod controller;
pub mod crd;
pub mod error;
pub mod execution;
pub mod http;
pub mod jobs;
pub mod lifecycle;
pub mod metrics;
pub mod notify;
pub mod plan;
pub mod plugin;
pub mod policy;
pub mod risk;
pub mod telemetry;

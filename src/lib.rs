//! decision-gate: a Kubernetes operator that puts a human approval gate in front of
//! critical actions and carries them out as Jobs.
//!
//! The pure core (no client, no clock) is in [`lifecycle`], [`plan`], [`policy`] and
//! [`jobs`]; [`controller`] holds the thin reconcilers that read, call it, and write.

/// The stack of every operator thread. Evaluating a rule's CEL expression recurses once
/// per level of its tree; [`policy::MAX_OPERATIONS`] bounds the depth, and this leaves
/// room for that depth even in a debug build. Only the pages used are ever mapped.
pub const STACK_SIZE: usize = 32 << 20;

pub mod access;
pub mod admission;
pub mod api;
pub mod audit;
pub mod controller;
pub mod crd;
pub mod error;
pub mod execution;
pub mod http;
pub mod jobs;
pub mod lifecycle;
pub mod liveness;
pub mod metrics;
pub mod notify;
pub mod pin;
pub mod plan;
pub mod plugin;
pub mod policy;
pub mod risk;
pub mod telemetry;

//! The pure core of decision-gate: everything that decides, and nothing that reaches a
//! cluster. No Kubernetes client, no async runtime, no clock and no files: each function
//! takes what it needs (the Decision, the policies, the plan, what was observed, the time)
//! and returns what should become true. The operator crate reads the cluster, calls in
//! here, and writes back.
//!
//! - [`api`]: the custom resources, as Rust types (the CRDs are generated from them by [`crd`]).
//! - [`risk`] and [`policy`]: a Decision's risk, and which ApprovalPolicy rule decides it.
//! - [`lifecycle`]: from request to Approved, Rejected or Expired; [`answers`] holds the
//!   rules for people's answers that it shares with [`execution`].
//! - [`execution`]: running an approved Decision's ExecutionPlan step by step, with dry
//!   run, simulation and rollback; [`jobs`] builds each step's Job.
//! - [`pin`] and [`plan`]: binding a Decision to the exact plan content approved, and the
//!   checks a plan must pass.
//! - [`admission`]: whether the admission policies that verify answers are in force.
//! - [`events`]: what happened, in words, for the audit log and Kubernetes Events.
//! - [`request`]: the requester's side: a request made into a Decision, its verdict, and
//!   the report an agent or a script reads.

pub mod admission;
pub mod answers;
pub mod api;
pub mod bounded;
pub mod crd;
pub mod events;
pub mod execution;
pub mod jobs;
pub mod lifecycle;
pub mod observed;
pub mod pin;
pub mod plan;
pub mod policy;
pub mod reminders;
pub mod request;
pub mod risk;

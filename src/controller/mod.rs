//! The operator: one controller per kind, sharing one [`Context`]. The reconcilers are
//! thin: they read, call the pure modules, and write.
//!
//! - [`start`]: the endpoints, the leader election ([`leader`]), the shared watches
//!   ([`watch`]) and the controllers, started and stopped in order.
//! - [`decision`], [`policy`], [`plan`] and [`execution`]: the reconcilers; [`admission`]
//!   watches the admission policies that verify people's answers.
//! - [`cluster`]: status writes, Job submission, the CRD check, and what a failed request
//!   means; [`publisher`]: Kubernetes Events; [`commit`]: a Decision's transition made to
//!   count, audit log first; [`finalizer`]: a deleted Decision kept until its deletion is
//!   audited.
//! - [`context`]: the [`Settings`] and the [`Context`] the reconcilers share; [`drive`]:
//!   what every reconcile shares (time limit, caught panics, the error policy).

pub mod admission;
pub mod cached;
pub mod cluster;
pub mod commit;
pub mod context;
pub mod decision;
pub mod drive;
pub mod echo;
pub mod execution;
pub mod finalizer;
pub mod leader;
pub mod plan;
pub mod policy;
pub mod publisher;
pub mod start;
pub mod watch;

pub use cluster::{FIELD_MANAGER, apply_status, replace_status, submit_job};
pub use commit::{audit, commit};
pub use context::{Context, Settings};
pub use drive::{drive, on_error};
pub use leader::lease_name;
pub use publisher::{EventBudget, EventQueue, REPORTING_CONTROLLER};
pub use start::{run, shutdown_signal};

#[cfg(test)]
pub mod testing;

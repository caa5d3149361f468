//! The review page behind `kubectl decision ui`: a local web page that lists the Decisions
//! waiting for an answer (live, from a watch), shows one with everything an approver needs,
//! and approves or rejects it as the approver, with their own credentials.
//!
//! [`view`] shapes what the page shows (pure); [`guard`] decides who may drive the page
//! (pure); [`server`] is the edge that watches, serves and answers.

pub mod guard;
pub mod server;
pub mod view;

pub use self::guard::Guard;
pub use self::server::{AuditTrail, Source, Ui};

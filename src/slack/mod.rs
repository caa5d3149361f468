//! Approving from Slack: the Approve and Reject buttons of a Slack notification come back
//! to the operator as signed interaction requests, and each one is answered through the
//! same path as `kubectl decision approve` — [`crate::answer::give`] — with a client that
//! impersonates the Kubernetes user the clicking Slack user is mapped to. The API server's
//! RBAC and the chart's admission policies then judge the answer exactly as they judge
//! that person's kubectl.
//!
//! The pure parts live here and are tested without a cluster: the signature check and the
//! replay window ([`signature`]), the payload and the buttons' value ([`interaction`]),
//! the Slack-to-Kubernetes user mapping ([`users`]) and what the clicking person is told
//! ([`reply`]). [`serve`] is the HTTP edge.

pub mod interaction;
pub mod reply;
pub mod serve;
pub mod signature;
pub mod users;

pub use self::interaction::{Action, Interaction, Target};
pub use self::reply::Reply;
pub use self::signature::{Rejection, ReplayWindow};
pub use self::users::{Mapping, Person};

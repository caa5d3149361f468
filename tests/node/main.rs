//! End-to-end tests on the local cluster's real node (hack/node.sh): the chart installed as
//! users install it, with its operator pod on the real node, and plans whose steps and
//! rollbacks run real containers there. `make test` runs them after the rest, one at a
//! time: the operator pod watches every namespace, and one test deletes it.

#[allow(dead_code)]
#[path = "../e2e/support/mod.rs"]
mod support;

mod agents;
mod chart;
mod install;
mod plans;
mod readme;
mod restart;

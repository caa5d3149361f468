//! End-to-end tests against the local control plane (`make cluster-up`; `make test` starts
//! it). Every test gets its own namespace (the README's walkthrough runs in default), and its
//! own operator process where it needs one.

mod admission;
mod agents;
mod api;
mod argocd;
mod audit_access;
mod binding;
mod cluster;
mod confined;
mod decisions;
mod execution;
mod followups;
mod gitops;
mod hook;
mod kubeconform;
mod limits;
mod make_run;
mod mcp;
mod notifications;
mod operator;
mod plugin;
mod readme;
mod reliability;
mod requests;
mod slack;
mod support;
mod tampering;
mod ui;

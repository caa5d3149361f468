//! The audit trail: an append-only JSON Lines file in which every line carries the SHA-256
//! of the line before it, so that editing, removing or reordering a line breaks the chain
//! at that line.
//!
//! - Each line is one JSON object with sorted keys: the entry's fields, `seq` (0, 1, 2,
//!   ...), `prev_hash` (the previous line's `hash`; 64 zeros for the first line) and
//!   `hash` (SHA-256 over the canonical JSON of the line without `hash`).
//! - An append is written and fsynced before it returns: a transition counts as done only
//!   once its lines are on disk. The lines of one append share one fsync, and so do
//!   appends made at the same time by concurrent reconciles (group commit).
//! - `entry_id` is derived from what the entry records, so a transition written twice (a
//!   retried reconcile, a restart between the write and the status update) is written once.
//! - When the file would pass its size limit it is renamed `<stem>-<first seq>.jsonl` and a
//!   new file continues the chain.
//! - After a crash, a last line without its newline was never acknowledged; it is cut off
//!   when the log is opened again.

mod event;
mod files;
mod log;
mod seal;
mod verify;
mod writer;

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use self::files::log_files;
pub use self::log::{AuditLog, Readers};
pub use self::seal::{canonical, entry_id};
pub use self::verify::{Verified, VerifyError, read, verify};
pub use self::writer::Writer;

/// The `prev_hash` of the very first line.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The Decision an entry is about.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

/// What happened, as the caller knows it. The log adds the id, time, sequence and hashes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Record {
    pub event_type: String,
    pub actor: String,
    pub decision: Option<DecisionRef>,
    pub action_type: Option<String>,
    pub plan: Option<String>,
    pub approver: Option<String>,
    /// The decision outcome: `approved`, `rejected`, `expired`, `pending`, ...
    pub outcome: Option<String>,
    pub reason: Option<String>,
    pub step: Option<String>,
    pub mode: Option<String>,
    pub message: String,
    pub details: Option<Value>,
    /// What makes this entry unique among the entries of its Decision and type.
    pub discriminator: String,
}

/// One line of the log, as read back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub entry_id: String,
    pub event_type: String,
    pub timestamp: DateTime<Utc>,
    pub actor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<DecisionRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approver: Option<String>,
    #[serde(
        default,
        rename = "decision_outcome",
        skip_serializing_if = "Option::is_none"
    )]
    pub outcome: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
    pub seq: u64,
    pub prev_hash: String,
    pub hash: String,
}

/// The log's three views, as filters over the one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    All,
    /// Requests, evaluations, approvals, rejections, escalations, expiries.
    Approvals,
    /// Execution, step and rollback events.
    Executions,
}

impl View {
    pub fn includes(self, event_type: &str) -> bool {
        match self {
            View::All => true,
            View::Approvals => matches!(
                event_type,
                "decision_requested"
                    | "policy_evaluated"
                    | "approval_requested"
                    | "approval_granted"
                    | "approval_rejected"
                    | "auto_approved"
                    | "auto_rejected"
                    | "escalated"
                    | "expired"
                    | "answer_ignored"
                    | "slack_interaction"
            ),
            View::Executions => {
                event_type.starts_with("execution_")
                    || event_type.starts_with("step_")
                    || event_type.starts_with("rollback")
                    || event_type == "rolled_back"
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "audit log {path}: its last line cannot be read ({why}); run `decision-gate audit verify` on it"
    )]
    Corrupt { path: PathBuf, why: String },
}

#[cfg(test)]
mod tests;

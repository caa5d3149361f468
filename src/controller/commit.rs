//! Making a Decision's transition count: the audit log first, then the status, then
//! everything that announces it.

use kube::ResourceExt;
use kube::runtime::events::EventType;
use tracing::info;

use super::Context;
use super::cluster::{apply_status, replace_status};
use super::watch::Watched;
use crate::api::Decision;
use crate::audit::Record;
use crate::error::{Error, Result};

/// Appends records to the audit log, durably, off the async threads (by the log's writer).
/// Returns the ids of the entries written: a record the log already held is not among them.
pub async fn audit(
    ctx: &Context,
    records: Vec<Record>,
) -> Result<std::collections::HashSet<String>> {
    if records.is_empty() {
        return Ok(Default::default());
    }
    let started = std::time::Instant::now();
    let written = ctx
        .audit
        .append(records, chrono::Utc::now())
        .await
        .map_err(Error::Audit)?;
    ctx.metrics
        .audit_append_duration
        .observe(started.elapsed().as_secs_f64());
    ctx.metrics.audit_appends.inc_by(written.len() as u64);
    Ok(written.into_iter().map(|e| e.entry_id).collect())
}

/// Makes a Decision's transition from `before` to `after` (whose status is the new one)
/// count, in this order: the audit lines on disk, the status written, then the metrics,
/// the Events and the notifications. An auditor never finds a decided Decision whose
/// decision is missing from the log.
pub async fn commit(
    ctx: &Context,
    before: &Decision,
    after: &Decision,
    events: &[crate::events::DecisionEvent],
) -> Result<()> {
    let status = after.status.clone().unwrap_or_default();
    let records: Vec<Record> = events.iter().map(|e| Record::of(e, after)).collect();
    let ids: Vec<String> = records.iter().map(crate::audit::entry_id).collect();
    let written = audit(ctx, records).await?;
    let started = std::time::Instant::now();
    let replace = before.status_unreadable().is_some();
    let status_written = if replace || before.status.as_ref() != Some(&status) {
        let noted = ctx.echoes.expect(after);
        let written = if replace {
            replace_status(after, &ctx.client, &status).await
        } else {
            apply_status(after, &ctx.client, &status).await
        };
        if written.is_err() {
            ctx.echoes.forget(noted);
        }
        Some(written)
    } else {
        None
    };
    if let Some(written) = status_written {
        ctx.metrics
            .status_write_duration
            .get_or_create(&crate::metrics::KindLabels { kind: "Decision" })
            .observe(started.elapsed().as_secs_f64());
        ctx.status_write("Decision", written)?;
    }
    // The audit log is the ledger of what happened: a transition recomputed from a stale
    // cache finds its lines already there, and is not announced a second time.
    let fresh: Vec<crate::events::DecisionEvent> = events
        .iter()
        .zip(ids)
        .filter(|(_, id)| written.contains(id))
        .map(|(e, _)| e.clone())
        .collect();
    ctx.metrics
        .observe(after, &status, &fresh, chrono::Utc::now());
    // One log line per transition; each event's own words are in the audit log and its
    // Event.
    if let Some(last) = fresh.last() {
        let events: Vec<&str> = fresh.iter().map(|e| e.event_type()).collect();
        info!(name = %after.name_any(), namespace = after.namespace().unwrap_or_default(), events = %events.join(","), phase = status.phase.map(|p| format!("{p:?}")).unwrap_or_default(), note = %last.note(), "decision changed");
    }
    for event in &fresh {
        let type_ = if event.is_warning() {
            EventType::Warning
        } else {
            EventType::Normal
        };
        // The Event's action: what the operator was doing when it happened.
        let action = match event {
            crate::events::DecisionEvent::Execution(_) => "Execute",
            _ => "Decide",
        };
        ctx.publish(after, type_, event.reason(), action, event.note());
    }
    ctx.notify(after, &status, &fresh);
    Ok(())
}

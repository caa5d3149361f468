// The audit log end to end on a temporary directory: the chain, its checks, crash
// recovery and rotation.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use chrono::TimeZone;

use super::files::{first_line_seq, rotated_name};
use super::*;

fn now() -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000, 123_456_000).unwrap()
}

fn record(event_type: &str, n: usize) -> Record {
    Record {
        event_type: event_type.into(),
        actor: "alice".into(),
        decision: Some(DecisionRef {
            namespace: "ops".into(),
            name: format!("d{n}"),
            uid: format!("uid-{n}"),
        }),
        approver: Some("alice".into()),
        outcome: Some("approved".into()),
        message: format!("entry {n}"),
        ..Default::default()
    }
}

fn write(path: &Path, n: usize) {
    let log = AuditLog::open(path, 1 << 20).unwrap();
    let records: Vec<Record> = (0..n).map(|i| record("approval_granted", i)).collect();
    assert_eq!(log.append(&records, now()).unwrap().len(), n);
}

#[test]
fn an_append_whose_fsync_fails_is_taken_back_and_written_again_on_retry() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&path, 1 << 20).unwrap();
    log.append(&[record("decision_requested", 0)], now())
        .unwrap();
    let batch = [
        record("approval_granted", 1),
        record("decision_approved", 1),
    ];
    log.inner.lock().unwrap().fail_next_sync = true;
    let failed = log.append(&batch, now()).unwrap_err();
    assert!(
        failed.to_string().contains("injected fsync failure"),
        "{failed}"
    );
    assert_eq!(lines(&path).len(), 1, "lines an fsync did not confirm stay");
    assert_eq!(log.next_seq(), 1);
    assert!(log.check_writable().is_err());
    // The retry writes both lines again rather than taking them as already there.
    let retried = log.append(&batch, now()).unwrap();
    assert_eq!(retried.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
    assert!(log.check_writable().is_ok());
    let verified = verify(&log.files().unwrap()).unwrap();
    assert_eq!(verified.entries, 3);
    assert!(
        log.append(&batch, now()).unwrap().is_empty(),
        "now they are there"
    );
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn rewrite(path: &Path, lines: &[String]) {
    std::fs::write(
        path,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
}

fn verify_one(path: &Path) -> Result<Verified, VerifyError> {
    verify(&[path.to_owned()])
}

#[test]
fn an_intact_log_verifies_and_carries_the_seed_fields() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write(&path, 5);
    let verified = verify_one(&path).unwrap();
    assert_eq!(verified.entries, 5);

    let first: Value = serde_json::from_str(&lines(&path)[0]).unwrap();
    for field in [
        "entry_id",
        "event_type",
        "timestamp",
        "actor",
        "decision",
        "approver",
        "decision_outcome",
        "message",
        "seq",
        "prev_hash",
        "hash",
    ] {
        assert!(first.get(field).is_some(), "{field} missing in {first}");
    }
    assert_eq!(first["prev_hash"], GENESIS);
    assert_eq!(first["timestamp"], "2027-01-15T08:00:00.123456Z");
    let second: Value = serde_json::from_str(&lines(&path)[1]).unwrap();
    assert_eq!(second["prev_hash"], first["hash"]);
}

#[test]
fn flipping_one_byte_fails_at_that_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write(&path, 5);
    let mut all = lines(&path);
    all[2] = all[2].replace("entry 2", "entry 7");
    rewrite(&path, &all);
    let err = verify_one(&path).unwrap_err();
    assert_eq!(err.line, 3);
    assert!(err.problem.contains("edited"), "{err}");

    // Any byte, even one that breaks the JSON.
    std::fs::remove_file(&path).unwrap();
    write(&path, 5);
    let mut bytes = std::fs::read(&path).unwrap();
    let offset = bytes.iter().position(|b| *b == b'\n').unwrap() + 10;
    bytes[offset] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();
    assert_eq!(verify_one(&path).unwrap_err().line, 2);
}

#[test]
fn removing_reordering_or_truncating_lines_fails_where_it_happened() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write(&path, 5);
    let original = lines(&path);

    let mut removed = original.clone();
    removed.remove(3);
    rewrite(&path, &removed);
    let err = verify_one(&path).unwrap_err();
    assert_eq!(err.line, 4);
    assert!(err.problem.contains("expected sequence number 3"), "{err}");

    let mut first_removed = original.clone();
    first_removed.remove(0);
    rewrite(&path, &first_removed);
    assert_eq!(verify_one(&path).unwrap_err().line, 1);

    let mut swapped = original.clone();
    swapped.swap(1, 2);
    rewrite(&path, &swapped);
    assert_eq!(verify_one(&path).unwrap_err().line, 2);

    let mut text = original
        .iter()
        .map(|l| format!("{l}\n"))
        .collect::<String>();
    text.truncate(text.len() - 20);
    std::fs::write(&path, text).unwrap();
    let err = verify_one(&path).unwrap_err();
    assert_eq!(err.line, 5);
    assert!(err.problem.contains("truncated"), "{err}");
}

#[test]
fn reopening_continues_the_chain_and_drops_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write(&path, 3);
    let log = AuditLog::open(&path, 1 << 20).unwrap();
    assert_eq!(log.next_seq(), 3);
    // The same three records again (a retried reconcile): nothing new.
    let again: Vec<Record> = (0..3).map(|i| record("approval_granted", i)).collect();
    assert!(log.append(&again, now()).unwrap().is_empty());
    let written = log.append(&[record("expired", 9)], now()).unwrap();
    assert_eq!(written[0].seq, 3);
    assert_eq!(verify_one(&path).unwrap().entries, 4);
}

#[test]
fn an_unfinished_last_line_is_cut_when_the_log_opens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write(&path, 2);
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(br#"{"entry_id":"torn","event_ty"#).unwrap();
    drop(f);
    assert!(verify_one(&path).is_err());
    let log = AuditLog::open(&path, 1 << 20).unwrap();
    log.append(&[record("expired", 5)], now()).unwrap();
    assert_eq!(verify_one(&path).unwrap().entries, 3);
}

#[test]
fn rotation_by_size_keeps_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&path, 2048).unwrap();
    for i in 0..20 {
        log.append(&[record("approval_granted", i)], now()).unwrap();
    }
    let files = log.files().unwrap();
    assert!(files.len() >= 3, "{files:?}");
    assert_eq!(verify(&files).unwrap().entries, 20);
    drop(log);

    let log = AuditLog::open(&path, 2048).unwrap();
    log.append(&[record("expired", 100)], now()).unwrap();
    let files = log.files().unwrap();
    assert_eq!(verify(&files).unwrap().entries, 21);
    // A rotated file checked alone is missing its beginning, and says so.
    assert!(verify(&files[1..]).is_err());

    // A crash right after a rotation leaves no current file: the chain continues from
    // the newest rotated one.
    drop(log);
    let first_seq = first_line_seq(&path).unwrap().unwrap();
    std::fs::rename(&path, rotated_name(&path, first_seq)).unwrap();
    let log = AuditLog::open(&path, 2048).unwrap();
    assert_eq!(log.next_seq(), 21);
    log.append(&[record("expired", 101)], now()).unwrap();
    assert_eq!(verify(&log.files().unwrap()).unwrap().entries, 22);
}

#[test]
fn views_filter_the_one_log() {
    assert!(View::Approvals.includes("approval_granted"));
    assert!(View::Approvals.includes("expired"));
    assert!(!View::Approvals.includes("step_executed"));
    assert!(View::Executions.includes("step_would_execute"));
    assert!(View::Executions.includes("execution_failed"));
    assert!(View::Executions.includes("rolled_back"));
    assert!(!View::Executions.includes("approval_granted"));
    assert!(View::All.includes("notification_sent"));
}

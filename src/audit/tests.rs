// The audit log end to end on a temporary directory: the chain, its checks, crash
// recovery and rotation.

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Barrier, MutexGuard};
use std::time::{Duration, Instant};

use chrono::TimeZone;

use super::files::{first_line_seq, rotated_name};
use super::log::{Inner, SyncGate, Verdict};
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

fn inner(log: &AuditLog) -> MutexGuard<'_, Inner> {
    log.inner.lock().unwrap_or_else(|p| p.into_inner())
}

/// Holds every fsync of the log until the test gives its verdict.
struct Gate {
    entered: mpsc::Receiver<()>,
    verdict: mpsc::Sender<Verdict>,
}

impl Gate {
    fn install(log: &AuditLog) -> Gate {
        let (entered_tx, entered) = mpsc::channel();
        let (verdict, verdict_rx) = mpsc::channel();
        inner(log).sync_gate = Some(SyncGate {
            entered: entered_tx,
            verdict: verdict_rx,
        });
        Gate { entered, verdict }
    }

    /// Waits for the next fsync to start, then lets it end as told.
    fn next(&self, verdict: Verdict) {
        self.entered
            .recv_timeout(Duration::from_secs(30))
            .expect("an fsync starts");
        self.verdict.send(verdict).unwrap();
    }

    fn remove(self, log: &AuditLog) {
        assert!(self.entered.try_recv().is_err(), "no fsync left waiting");
        inner(log).sync_gate = None;
    }
}

/// Waits until `n` appends are queued behind the batch being written.
fn until_waiting(log: &AuditLog, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while log.waiting() < n {
        assert!(
            Instant::now() < deadline,
            "{} of {n} appends queued",
            log.waiting()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Every entry of the log's files, in order.
fn entries(log: &AuditLog) -> Vec<Entry> {
    read(&log.files().unwrap(), |_| true).unwrap()
}

#[test]
fn concurrent_appends_share_fsyncs_and_keep_one_chain() {
    const THREADS: usize = 16;
    const APPENDS: usize = 200;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    // Small files, so that batches also cross rotations.
    let log = AuditLog::open(&path, 256 * 1024).unwrap();
    let start = Barrier::new(THREADS);
    let returned: Vec<Vec<Entry>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (log, start) = (&log, &start);
                s.spawn(move || {
                    start.wait();
                    let mut mine = Vec::new();
                    for i in 0..APPENDS {
                        // One to three records of its own...
                        let mut records: Vec<Record> = (0..1 + (t + i) % 3)
                            .map(|k| record("approval_granted", (t * APPENDS + i) * 3 + k))
                            .collect();
                        // ... and now and then one that every thread records.
                        if i % 10 == 0 {
                            records.push(record("expired", i));
                        }
                        mine.extend(log.append(&records, now()).unwrap());
                    }
                    mine
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });

    let own: usize = (0..THREADS)
        .flat_map(|t| (0..APPENDS).map(move |i| 1 + (t + i) % 3))
        .sum();
    let shared = APPENDS / 10;
    let files = log.files().unwrap();
    assert!(files.len() > 1, "the log rotated: {files:?}");
    assert_eq!(verify(&files).unwrap().entries, (own + shared) as u64);
    // What the callers were told was written is what the files hold, each line once,
    // with contiguous sequence numbers.
    let mut returned: Vec<Entry> = returned.into_iter().flatten().collect();
    returned.sort_by_key(|e| e.seq);
    assert_eq!(returned, entries(&log));
    assert!(returned.iter().map(|e| e.seq).eq(0..(own + shared) as u64));
    let ids: HashSet<&str> = returned.iter().map(|e| e.entry_id.as_str()).collect();
    assert_eq!(ids.len(), returned.len(), "a record was written twice");
    assert_eq!(log.next_seq(), (own + shared) as u64);
    let appends = (THREADS * APPENDS) as u64;
    assert!(
        log.syncs() < appends,
        "{} fsyncs for {appends} appends",
        log.syncs()
    );
}

#[test]
fn appends_queued_behind_an_fsync_share_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&path, 1 << 20).unwrap();
    let gate = Gate::install(&log);
    std::thread::scope(|s| {
        let first = s.spawn(|| log.append(&[record("decision_requested", 0)], now()));
        gate.entered
            .recv_timeout(Duration::from_secs(30))
            .expect("the first append fsyncs");
        // While the first append's fsync runs, eight more arrive and wait.
        let queued: Vec<_> = (1..=8)
            .map(|n| {
                let log = &log;
                s.spawn(move || {
                    let records: Vec<Record> = (0..n % 3 + 1)
                        .map(|k| record("approval_granted", n * 10 + k))
                        .collect();
                    log.append(&records, now())
                })
            })
            .collect();
        until_waiting(&log, 8);
        gate.verdict.send(Verdict::Proceed).unwrap();
        // All eight are written together, under one fsync.
        gate.next(Verdict::Proceed);
        assert_eq!(first.join().unwrap().unwrap().len(), 1);
        for (n, append) in (1..=8).zip(queued) {
            assert_eq!(append.join().unwrap().unwrap().len(), n % 3 + 1);
        }
    });
    gate.remove(&log);
    assert_eq!(log.syncs(), 2);
    let entries = verify(&log.files().unwrap()).unwrap().entries;
    assert_eq!(
        entries,
        1 + (1..=8).map(|n| n % 3 + 1).sum::<usize>() as u64
    );
}

#[test]
fn a_failed_fsync_fails_every_append_of_its_batch_and_their_retries_write_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&path, 1 << 20).unwrap();
    let durable = log
        .append(&[record("decision_requested", 0)], now())
        .unwrap();
    let gate = Gate::install(&log);
    // Four appends of their own records, and two of the same record: whichever of these
    // two comes second finds it written by the first, in the same batch.
    let batches: Vec<Vec<Record>> = (1..=4)
        .map(|n| {
            (0..n % 2 + 1)
                .map(|k| record("approval_granted", n * 10 + k))
                .collect()
        })
        .chain([vec![record("expired", 5)], vec![record("expired", 5)]])
        .collect();
    std::thread::scope(|s| {
        let first = s.spawn(|| log.append(&[record("decision_requested", 1)], now()));
        gate.entered
            .recv_timeout(Duration::from_secs(30))
            .expect("the first append fsyncs");
        let queued: Vec<_> = batches
            .iter()
            .map(|records| {
                let log = &log;
                s.spawn(move || log.append(records, now()))
            })
            .collect();
        until_waiting(&log, batches.len());
        gate.verdict.send(Verdict::Proceed).unwrap();
        gate.next(Verdict::Fail);
        assert_eq!(first.join().unwrap().unwrap()[0].seq, 1);
        for append in queued {
            let failed = append.join().unwrap().unwrap_err();
            assert!(
                failed.to_string().contains("injected fsync failure"),
                "{failed}"
            );
        }
    });
    gate.remove(&log);
    assert_eq!(lines(&path).len(), 2, "the batch's lines were cut off");
    assert_eq!(log.next_seq(), 2);
    assert_eq!(verify(&log.files().unwrap()).unwrap().entries, 2);
    assert!(log.check_writable().is_err());

    // The retries write every record again, once.
    let mut retried: Vec<Entry> = Vec::new();
    for records in &batches {
        retried.extend(log.append(records, now()).unwrap());
    }
    assert!(log.check_writable().is_ok());
    assert_eq!(retried.len(), 1 + 2 + 1 + 2 + 1);
    assert!(retried.iter().map(|e| e.seq).eq(2..9));
    let all = entries(&log);
    assert_eq!(verify(&log.files().unwrap()).unwrap().entries, 9);
    assert_eq!(all[0], durable[0]);
    assert_eq!(all[2..], retried[..]);
}

#[test]
fn an_append_made_durable_by_a_rotation_succeeds_though_its_batch_fails_later() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let long = |n| Record {
        message: "x".repeat(1000),
        ..record("approval_granted", n)
    };
    // Room for two lines a file.
    let line = {
        let probe = AuditLog::open(&dir.path().join("probe.jsonl"), 1 << 20).unwrap();
        probe.append(&[long(0)], now()).unwrap();
        std::fs::metadata(dir.path().join("probe.jsonl"))
            .unwrap()
            .len()
    };
    let log = AuditLog::open(&path, line * 5 / 2).unwrap();
    let gate = Gate::install(&log);
    std::thread::scope(|s| {
        let first = s.spawn(|| log.append(&[long(1)], now()));
        gate.entered
            .recv_timeout(Duration::from_secs(30))
            .expect("the first append fsyncs");
        let second = s.spawn(|| log.append(&[long(2)], now()));
        until_waiting(&log, 1);
        let third = s.spawn(|| log.append(&[long(3), long(4)], now()));
        until_waiting(&log, 2);
        gate.verdict.send(Verdict::Proceed).unwrap();
        // The second append fills the file; the third's first line rotates it, and the
        // fsync before the rotation makes the second durable. Then the batch's fsync fails.
        gate.next(Verdict::Proceed);
        gate.next(Verdict::Fail);
        assert_eq!(first.join().unwrap().unwrap()[0].seq, 0);
        assert_eq!(second.join().unwrap().unwrap()[0].seq, 1);
        assert!(third.join().unwrap().is_err());
    });
    gate.remove(&log);
    assert_eq!(log.next_seq(), 2);
    assert_eq!(verify(&log.files().unwrap()).unwrap().entries, 2);
    let retried = log.append(&[long(3), long(4)], now()).unwrap();
    assert_eq!(retried.iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 3]);
    let files = log.files().unwrap();
    assert_eq!(files.len(), 2, "{files:?}");
    assert_eq!(verify(&files).unwrap().entries, 4);
}

#[test]
fn a_leader_that_panics_fails_its_batch_and_hands_over() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&path, 1 << 20).unwrap();
    let gate = Gate::install(&log);
    let records: Vec<Record> = (1..=3).map(|n| record("approval_granted", n)).collect();
    std::thread::scope(|s| {
        let first = s.spawn(|| log.append(&[record("decision_requested", 0)], now()));
        gate.entered
            .recv_timeout(Duration::from_secs(30))
            .expect("the first append fsyncs");
        let queued: Vec<_> = records
            .iter()
            .map(|r| {
                let log = &log;
                s.spawn(move || log.append(std::slice::from_ref(r), now()))
            })
            .collect();
        until_waiting(&log, records.len());
        gate.verdict.send(Verdict::Proceed).unwrap();
        gate.next(Verdict::Panic);
        assert!(first.join().unwrap().is_ok());
        // The leader's own call panics; the others of its batch are told, not left waiting.
        let outcomes: Vec<_> = queued.into_iter().map(|a| a.join()).collect();
        assert_eq!(outcomes.iter().filter(|o| o.is_err()).count(), 1);
        for outcome in outcomes.into_iter().flatten() {
            let failed = outcome.unwrap_err();
            assert!(failed.to_string().contains("stopped"), "{failed}");
        }
    });
    gate.remove(&log);
    assert_eq!(lines(&path).len(), 1);
    assert!(log.check_writable().is_err());
    for r in &records {
        assert_eq!(log.append(std::slice::from_ref(r), now()).unwrap().len(), 1);
    }
    assert_eq!(verify(&log.files().unwrap()).unwrap().entries, 4);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_sent_to_the_writer_while_it_fsyncs_share_the_next_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = std::sync::Arc::new(AuditLog::open(&path, 1 << 20).unwrap());
    let gate = Gate::install(&log);
    let writer = Writer::start(log.clone()).unwrap();
    let mut first = std::pin::pin!(writer.append(vec![record("decision_requested", 0)], now()));
    assert!(futures::poll!(first.as_mut()).is_pending());
    gate.entered
        .recv_timeout(Duration::from_secs(30))
        .expect("the first append fsyncs");
    // While that fsync runs, eight tasks send their appends (a first poll sends).
    let mut queued: Vec<_> = (1..=8)
        .map(|n| {
            let records = (0..n % 3 + 1).map(|i| record("approval_granted", n * 10 + i));
            Box::pin(writer.append(records.collect(), now()))
        })
        .collect();
    for append in &mut queued {
        assert!(futures::poll!(append.as_mut()).is_pending());
    }
    gate.verdict.send(Verdict::Proceed).unwrap();
    gate.next(Verdict::Proceed);
    assert_eq!(first.await.unwrap().len(), 1);
    for (n, append) in (1..=8).zip(queued) {
        assert_eq!(append.await.unwrap().len(), n % 3 + 1);
    }
    gate.remove(&log);
    assert_eq!(log.syncs(), 2, "the eight queued appends shared one fsync");
    assert_eq!(verify(&log.files().unwrap()).unwrap().entries, 18);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_that_panics_fails_that_batch_and_writes_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = std::sync::Arc::new(AuditLog::open(&path, 1 << 20).unwrap());
    let gate = Gate::install(&log);
    let writer = Writer::start(log.clone()).unwrap();
    let records = vec![
        record("approval_granted", 1),
        record("decision_approved", 1),
    ];
    let mut failing = std::pin::pin!(writer.append(records.clone(), now()));
    assert!(futures::poll!(failing.as_mut()).is_pending());
    gate.next(Verdict::Panic);
    let failed = failing.await.unwrap_err();
    assert!(failed.to_string().contains("stopped"), "{failed}");
    gate.remove(&log);
    assert!(lines(&path).is_empty(), "nothing unconfirmed stays");
    // The same thread writes the retry.
    let written = writer.append(records, now()).await.unwrap();
    assert_eq!(written.iter().map(|e| e.seq).collect::<Vec<_>>(), [0, 1]);
    assert_eq!(verify(&log.files().unwrap()).unwrap().entries, 2);
}

/// A line as the log has always sealed it: logs written by earlier versions must verify.
#[test]
fn a_line_is_sealed_byte_for_byte_as_the_log_has_always_sealed_it() {
    let mut sealed = record("approval_granted", 7);
    sealed.details = Some(serde_json::json!({
        "z": [1, "é\"\n\u{1}", null, -2.5e-3],
        "a": {"b": true, "a": 1.5, "": {}},
    }));
    let (line, entry) = super::seal::seal(&sealed, entry_id(&sealed), now(), 41, GENESIS);
    assert_eq!(
        line,
        r#"{"actor":"alice","approver":"alice","decision":{"name":"d7","namespace":"ops","uid":"uid-7"},"decision_outcome":"approved","details":{"a":{"":{},"a":1.5,"b":true},"z":[1,"é\"\n\u0001",null,-0.0025]},"entry_id":"7466a3fd-e13e-5714-8151-87d18bc71d4a","event_type":"approval_granted","hash":"0e78ba39211ccddeb82a8c6033d302d6d1ca81b1aa960e5597498a29001de717","message":"entry 7","prev_hash":"0000000000000000000000000000000000000000000000000000000000000000","seq":41,"timestamp":"2027-01-15T08:00:00.123456Z"}"#
    );
    assert_eq!(
        entry.hash,
        "0e78ba39211ccddeb82a8c6033d302d6d1ca81b1aa960e5597498a29001de717"
    );
}

#[test]
fn the_log_files_are_readable_by_their_owner_alone_or_their_group_when_asked() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write(&path, 1);
    assert_eq!(mode(&path), 0o600);

    // A log an earlier version left readable by anyone is closed at the next open, its
    // rotated files too; rotation creates files of the same mode.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let line = std::fs::read_to_string(&path).unwrap().len() as u64;
    let log = AuditLog::open_for(&path, line * 2, Readers::Group).unwrap();
    assert_eq!(mode(&path), 0o640);
    let records: Vec<Record> = (1..6).map(|i| record("approval_granted", i)).collect();
    log.append(&records, now()).unwrap();
    let files = crate::audit::log_files(&path).unwrap();
    assert!(files.len() > 1, "{files:?}");
    for file in &files {
        assert_eq!(mode(file), 0o640, "{}", file.display());
    }
    drop(log);
    AuditLog::open(&path, line * 2).unwrap();
    for file in &files {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
}

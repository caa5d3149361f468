//! Appending from async code: one thread writes for every task.
//!
//! A reconcile must not block its async thread on an fsync, and lending it a blocking
//! thread per append costs a thread hand-off, and under load dozens of threads parked on
//! the log's queue, for every line. The writer is one thread of its own: tasks send it
//! their records and await the answer; it takes everything sent while it was busy as one
//! batch (one write and one fsync for all), and answers each task once its lines are on
//! disk.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::mpsc;

use chrono::{DateTime, Utc};
use tokio::sync::oneshot;

use super::{AuditError, AuditLog, Entry, Record};

/// One task's append, and where its answer goes.
struct Append {
    records: Vec<Record>,
    now: DateTime<Utc>,
    answer: oneshot::Sender<Result<Vec<Entry>, AuditError>>,
}

/// A handle on the writer thread; the thread ends when the last handle is dropped.
#[derive(Clone)]
pub struct Writer {
    log: Arc<AuditLog>,
    appends: mpsc::Sender<Append>,
}

impl Writer {
    /// Starts the writer thread of `log`.
    pub fn start(log: Arc<AuditLog>) -> std::io::Result<Writer> {
        let (appends, queued) = mpsc::channel::<Append>();
        let writing = log.clone();
        std::thread::Builder::new()
            .name("audit-writer".to_owned())
            .spawn(move || write(&writing, &queued))?;
        Ok(Writer { log, appends })
    }

    /// Appends the records in order and returns once they are on disk, as
    /// [`AuditLog::append`] does.
    pub async fn append(
        &self,
        records: Vec<Record>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Entry>, AuditError> {
        let (answer, answered) = oneshot::channel();
        self.appends
            .send(Append {
                records,
                now,
                answer,
            })
            .map_err(|_| self.stopped())?;
        answered.await.map_err(|_| self.stopped())?
    }

    /// The log it writes.
    pub fn log(&self) -> &Arc<AuditLog> {
        &self.log
    }

    /// What a task is told when its append got no answer: the writer panicked in the
    /// middle of it (the log took back what was not on disk), so it may be retried.
    fn stopped(&self) -> AuditError {
        AuditError::Io {
            path: self.log.path(),
            source: std::io::Error::other("the audit writer stopped in the middle of an append"),
        }
    }
}

/// The writer thread: waits for an append, takes every other one already sent, and
/// appends them as one batch.
fn write(log: &AuditLog, queued: &mpsc::Receiver<Append>) {
    while let Ok(first) = queued.recv() {
        let batch: Vec<Append> = std::iter::once(first).chain(queued.try_iter()).collect();
        let (calls, answers): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .map(|a| ((a.records, a.now), a.answer))
            .unzip();
        // A panic fails this batch only: its tasks' answers are dropped (each is told the
        // writer stopped), the log has taken back what was not on disk, and the thread
        // goes on with the next batch.
        if let Ok(results) = std::panic::catch_unwind(AssertUnwindSafe(|| log.append_all(calls))) {
            for (answer, result) in answers.into_iter().zip(results) {
                let _ = answer.send(result);
            }
        }
    }
}

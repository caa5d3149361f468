//! The open log: opening it where the chain left off, appending durably, taking back an
//! append whose fsync failed, and rotating by size.
//!
//! Appends made at the same time share one fsync. A caller puts its records in a queue;
//! if no other caller is writing, it becomes the leader: it takes every append queued so
//! far, writes all their lines at once, fsyncs once, gives each caller its result and
//! hands over. Callers that arrive meanwhile wait in the queue, and one of them leads the
//! next batch, so the more callers append at once, the more lines each fsync carries.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};

use chrono::{DateTime, Utc};

use super::files::{
    cut_torn_tail, first_line_seq, log_files, newest_rotated, read_tail, rotated_name,
};
use super::seal::{entry_id, parse_entry, seal};
use super::{AuditError, Entry, GENESIS, Record};

/// How many recent entry ids are remembered to drop duplicates.
const RECENT_IDS: usize = 10_000;

/// Who may read the log's files besides the operator's user.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Readers {
    /// Nobody (mode 0600): the default.
    #[default]
    Owner,
    /// The files' group too (mode 0640): for a volume shared through the pod's fsGroup,
    /// so that a sidecar or a backup job of that group can read it, never write it.
    Group,
}

impl Readers {
    pub fn mode(self) -> u32 {
        match self {
            Readers::Owner => 0o600,
            Readers::Group => 0o640,
        }
    }
}

/// Opens (creating it with `readers`' mode) a file of the log for reading and appending,
/// and sets the mode of one that existed already, which an earlier version may have left
/// readable by anyone.
fn open_file(path: &Path, readers: Readers) -> std::io::Result<File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .mode(readers.mode())
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(readers.mode()))?;
    Ok(file)
}

/// The open log. Appends from many tasks are written in batches, one batch at a time.
pub struct AuditLog {
    pub(super) inner: Mutex<Inner>,
    queue: Mutex<Queue>,
    /// Signalled when a leader has finished its batch.
    handed_over: Condvar,
}

/// Appends waiting to be written, and the results of those written, until their callers
/// take them.
#[derive(Default)]
struct Queue {
    waiting: Vec<Request>,
    /// Whether a caller is writing a batch now.
    leading: bool,
    next_ticket: u64,
    done: HashMap<u64, Result<Vec<Entry>, AuditError>>,
}

/// What each caller of a batch is told, by ticket.
type Results = Vec<(u64, Result<Vec<Entry>, AuditError>)>;

/// One caller's append.
struct Request {
    ticket: u64,
    /// The records with their entry ids, worked out before the caller queues.
    records: Vec<(String, Record)>,
    now: DateTime<Utc>,
}

/// How far the leader got with one request of its batch.
#[derive(Default)]
struct Progress {
    entries: Vec<Entry>,
    /// All of its records were written or found in the log.
    settled: bool,
    /// The highest `seq` it relies on from this batch: its own lines, and lines of other
    /// requests of the batch that hold one of its records. Below the durable point, the
    /// request is done even if a later part of the batch failed.
    needs: Option<u64>,
}

pub(super) struct Inner {
    path: PathBuf,
    /// Who may read its files.
    readers: Readers,
    file: File,
    size: u64,
    /// The `seq` of the first line of the current file.
    first_seq: u64,
    next_seq: u64,
    last_hash: String,
    max_bytes: u64,
    recent: VecDeque<String>,
    recent_set: HashSet<String>,
    /// Why the last append failed, until one succeeds.
    last_failure: Option<String>,
    /// Where the log stood when it was last known to be on disk.
    durable: Durable,
    /// Lines past `durable` could not be cut off after a failed append; the next append
    /// tries again before it writes.
    dirty_tail: bool,
    /// fsyncs that succeeded, rotations' included.
    syncs: u64,
    #[cfg(test)]
    pub(super) fail_next_sync: bool,
    #[cfg(test)]
    pub(super) sync_gate: Option<SyncGate>,
}

/// Stops every fsync until the test says how it ends: it signals `entered`, then waits
/// for a verdict. Without one (the test dropped its sender) the fsync goes ahead.
#[cfg(test)]
pub(super) struct SyncGate {
    pub entered: std::sync::mpsc::Sender<()>,
    pub verdict: std::sync::mpsc::Receiver<Verdict>,
}

#[cfg(test)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    Proceed,
    Fail,
    Panic,
}

/// A point of the chain that is on disk: what a failed append goes back to.
#[derive(Clone, Debug)]
struct Durable {
    size: u64,
    next_seq: u64,
    last_hash: String,
}

impl AuditLog {
    /// Opens (or creates) the log at `path`, readable by its owner alone; see
    /// [`AuditLog::open_for`].
    pub fn open(path: &Path, max_bytes: u64) -> Result<Self, AuditError> {
        Self::open_for(path, max_bytes, Readers::Owner)
    }

    /// Opens (or creates) the log at `path`, continuing the chain of what is there: the
    /// current file, or the newest rotated file when the current one is empty. Its files,
    /// new and rotated, are readable by `readers` and nobody else.
    pub fn open_for(path: &Path, max_bytes: u64, readers: Readers) -> Result<Self, AuditError> {
        let io = |source| AuditError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut file = open_file(path, readers).map_err(io)?;
        for rotated in log_files(path).map_err(io)? {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&rotated, std::fs::Permissions::from_mode(readers.mode()))
                .map_err(io)?;
        }
        cut_torn_tail(&mut file).map_err(io)?;
        let size = file.metadata().map_err(io)?.len();

        let tail = read_tail(&mut file, 64 * 1024).map_err(io)?;
        let (next_seq, last_hash, first_seq, recent) = if let Some(last) = tail.last() {
            let entry = parse_entry(last).map_err(|why| AuditError::Corrupt {
                path: path.to_owned(),
                why,
            })?;
            let first_seq = first_line_seq(path).map_err(io)?.unwrap_or(entry.seq);
            let recent = tail
                .iter()
                .filter_map(|l| parse_entry(l).ok())
                .map(|e| e.entry_id)
                .collect();
            (entry.seq + 1, entry.hash, first_seq, recent)
        } else {
            match newest_rotated(path).map_err(io)? {
                Some(rotated) => {
                    let mut f = File::open(&rotated).map_err(io)?;
                    let lines = read_tail(&mut f, 64 * 1024).map_err(io)?;
                    let last = lines.last().ok_or_else(|| AuditError::Corrupt {
                        path: rotated.clone(),
                        why: "the rotated file is empty".into(),
                    })?;
                    let entry = parse_entry(last).map_err(|why| AuditError::Corrupt {
                        path: rotated.clone(),
                        why,
                    })?;
                    (entry.seq + 1, entry.hash, entry.seq + 1, Vec::new())
                }
                None => (0, GENESIS.to_owned(), 0, Vec::new()),
            }
        };
        let mut inner = Inner {
            path: path.to_owned(),
            readers,
            file,
            size,
            first_seq,
            durable: Durable {
                size,
                next_seq,
                last_hash: last_hash.clone(),
            },
            next_seq,
            last_hash,
            max_bytes: max_bytes.max(1024),
            recent: VecDeque::new(),
            recent_set: HashSet::new(),
            last_failure: None,
            dirty_tail: false,
            syncs: 0,
            #[cfg(test)]
            fail_next_sync: false,
            #[cfg(test)]
            sync_gate: None,
        };
        for id in recent {
            inner.remember(id);
        }
        Ok(AuditLog {
            inner: Mutex::new(inner),
            queue: Mutex::default(),
            handed_over: Condvar::new(),
        })
    }

    /// Appends the records in order and returns once they are on disk (fsynced); a record
    /// already in the log (same entry id) is skipped. Returns the entries written.
    ///
    /// The records of one call are written together, in order; appends made at the same
    /// time by other callers may be written in the same batch and share its fsync. When
    /// a write or the fsync fails, every call of the batch whose lines were not yet on
    /// disk gets the error, and the log goes back to its last durable point: those lines
    /// are cut off and their ids forgotten, so that a retry writes them again.
    pub fn append(&self, records: &[Record], now: DateTime<Utc>) -> Result<Vec<Entry>, AuditError> {
        let mut results = self.append_all(vec![(records.to_vec(), now)]);
        results.pop().unwrap_or_else(|| Ok(Vec::new()))
    }

    /// Makes several appends at once, as if each were its own call to [`AuditLog::append`]
    /// made at the same moment: they go into one batch, in order, and each gets its own
    /// result. This is how one writer appends for many callers.
    pub fn append_all(
        &self,
        calls: Vec<(Vec<Record>, DateTime<Utc>)>,
    ) -> Vec<Result<Vec<Entry>, AuditError>> {
        let calls: Vec<_> = calls
            .into_iter()
            .map(|(records, now)| {
                let records = records
                    .into_iter()
                    .map(|record| (entry_id(&record), record))
                    .collect();
                (records, now)
            })
            .collect();
        let mut queue = self.lock_queue();
        let mut tickets = Vec::with_capacity(calls.len());
        for (records, now) in calls {
            let ticket = queue.next_ticket;
            queue.next_ticket += 1;
            queue.waiting.push(Request {
                ticket,
                records,
                now,
            });
            tickets.push(ticket);
        }
        loop {
            // The calls were queued together, so one batch takes them all.
            if tickets.iter().all(|t| queue.done.contains_key(t)) {
                return tickets
                    .iter()
                    .filter_map(|t| queue.done.remove(t))
                    .collect();
            }
            if !queue.leading {
                queue.leading = true;
                let batch = std::mem::take(&mut queue.waiting);
                drop(queue);
                self.lead(batch, &tickets);
                queue = self.lock_queue();
                continue;
            }
            queue = self
                .handed_over
                .wait(queue)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    /// Writes a batch and hands over to the next leader, even if writing panics: no
    /// caller of the batch waits for ever.
    fn lead(&self, batch: Vec<Request>, own: &[u64]) {
        let mut handover = Handover {
            log: self,
            tickets: batch.iter().map(|r| r.ticket).collect(),
            own,
            results: None,
        };
        let results = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .commit(&batch);
        handover.results = Some(results);
    }

    /// How many appends wait for the next batch.
    #[cfg(test)]
    pub(super) fn waiting(&self) -> usize {
        self.lock_queue().waiting.len()
    }

    fn lock_queue(&self) -> MutexGuard<'_, Queue> {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How many fsyncs the log has done since it was opened (those of rotations
    /// included): fewer than the appends when appends share them.
    pub fn syncs(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).syncs
    }

    /// Whether the log can still be written: its file is where it was and writable.
    pub fn check_writable(&self) -> Result<(), AuditError> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let io = |source| AuditError::Io {
            path: inner.path.clone(),
            source,
        };
        let on_disk = std::fs::metadata(&inner.path).map_err(io)?;
        if on_disk.permissions().readonly() {
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "the file became read-only",
            )));
        }
        inner.file.metadata().map_err(io)?;
        if let Some(why) = &inner.last_failure {
            return Err(AuditError::Io {
                path: inner.path.clone(),
                source: std::io::Error::other(format!("the last append failed: {why}")),
            });
        }
        Ok(())
    }

    /// The file the log appends to.
    pub fn path(&self) -> PathBuf {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .path
            .clone()
    }

    /// The sequence number the next entry will get.
    pub fn next_seq(&self) -> u64 {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .next_seq
    }

    /// The files of the log in chain order: rotated files oldest first, then the current.
    pub fn files(&self) -> Result<Vec<PathBuf>, AuditError> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        log_files(&inner.path).map_err(|source| AuditError::Io {
            path: inner.path.clone(),
            source,
        })
    }
}

/// Gives the results of a batch to its callers and lets the next leader in.
struct Handover<'a> {
    log: &'a AuditLog,
    tickets: Vec<u64>,
    /// The leader's own tickets.
    own: &'a [u64],
    /// Set once the batch is written; still unset when the leader panicked.
    results: Option<Results>,
}

impl Drop for Handover<'_> {
    fn drop(&mut self) {
        let results = match self.results.take() {
            Some(results) => results,
            None => {
                // Writing the batch panicked. What is not on disk yet is taken back; the
                // leader's own calls go on panicking, the others get an error to retry on.
                let why = "the audit writer stopped in the middle of an append";
                let mut inner = self
                    .log
                    .inner
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                inner.forget_since_durable();
                inner.last_failure = Some(why.to_owned());
                self.tickets
                    .iter()
                    .filter(|ticket| !self.own.contains(ticket))
                    .map(|ticket| {
                        let error = AuditError::Io {
                            path: inner.path.clone(),
                            source: std::io::Error::other(why),
                        };
                        (*ticket, Err(error))
                    })
                    .collect()
            }
        };
        let mut queue = self.log.lock_queue();
        queue.done.extend(results);
        queue.leading = false;
        drop(queue);
        self.log.handed_over.notify_all();
    }
}

impl Inner {
    /// Writes a batch of appends and makes it durable with one fsync, or, when that
    /// fails, goes back to the last durable point: the lines are cut off and their ids
    /// forgotten, so that the retries write them again rather than take lines an fsync
    /// never confirmed as done. A request whose lines were all made durable before the
    /// failure (by the fsync that precedes a rotation) still succeeds.
    fn commit(&mut self, batch: &[Request]) -> Results {
        let mut progress: Vec<Progress> = batch.iter().map(|_| Progress::default()).collect();
        let failure = self.write_and_sync(batch, &mut progress).err();
        let written = progress.iter().any(|p| !p.entries.is_empty());
        // Only a line written proves the log writable again; a batch of lines already
        // there writes nothing.
        match &failure {
            Some(error) => {
                self.last_failure = Some(match error {
                    AuditError::Io { source, .. } => source.to_string(),
                    other => other.to_string(),
                });
                self.forget_since_durable();
            }
            None if written => self.last_failure = None,
            None => {}
        }
        let durable = self.durable.next_seq;
        batch
            .iter()
            .zip(progress)
            .map(|(request, progress)| {
                let result = match &failure {
                    Some(error)
                        if !progress.settled
                            || progress.needs.is_some_and(|seq| seq >= durable) =>
                    {
                        Err(copy(error))
                    }
                    _ => Ok(progress.entries),
                };
                (request.ticket, result)
            })
            .collect()
    }

    fn write_and_sync(
        &mut self,
        batch: &[Request],
        progress: &mut [Progress],
    ) -> Result<(), AuditError> {
        if self.dirty_tail {
            self.cut_to_durable()?;
        }
        // The lines go out in one write, cut where the file rotates.
        let mut pending = Vec::new();
        // The lines of this batch, by entry id: what a request that finds its record
        // there relies on.
        let mut in_batch = HashMap::new();
        for (request, progress) in batch.iter().zip(progress.iter_mut()) {
            for (id, record) in &request.records {
                if self.recent_set.contains(id) {
                    if let Some(&seq) = in_batch.get(id) {
                        progress.needs = progress.needs.max(Some(seq));
                    }
                    continue;
                }
                let (line, entry) = seal(
                    record,
                    id.clone(),
                    request.now,
                    self.next_seq,
                    &self.last_hash,
                );
                let len = line.len() as u64 + 1;
                let size = self.size + pending.len() as u64;
                if size > 0 && size + len > self.max_bytes {
                    self.write_pending(&mut pending)?;
                    self.rotate()?;
                }
                pending.extend_from_slice(line.as_bytes());
                pending.push(b'\n');
                in_batch.insert(id.clone(), entry.seq);
                progress.needs = Some(entry.seq);
                self.next_seq += 1;
                self.last_hash = entry.hash.clone();
                self.remember(id.clone());
                progress.entries.push(entry);
            }
            progress.settled = true;
        }
        if !in_batch.is_empty() {
            self.write_pending(&mut pending)?;
            self.sync()?;
        }
        Ok(())
    }

    fn forget_since_durable(&mut self) {
        let lost = self.next_seq.saturating_sub(self.durable.next_seq);
        for _ in 0..lost {
            if let Some(id) = self.recent.pop_back() {
                self.recent_set.remove(&id);
            }
        }
        self.next_seq = self.durable.next_seq;
        self.last_hash = self.durable.last_hash.clone();
        self.dirty_tail = true;
        // Cutting off may fail as the write did; the next append tries again first.
        let _ = self.cut_to_durable();
    }

    fn cut_to_durable(&mut self) -> Result<(), AuditError> {
        let path = self.path.clone();
        self.file
            .set_len(self.durable.size)
            .map_err(|source| AuditError::Io { path, source })?;
        self.size = self.durable.size;
        self.dirty_tail = false;
        Ok(())
    }

    /// Writes the lines gathered so far.
    fn write_pending(&mut self, pending: &mut Vec<u8>) -> Result<(), AuditError> {
        if pending.is_empty() {
            return Ok(());
        }
        if let Err(source) = self.file.write_all(pending) {
            // A full disk can take part of the lines: cut them off, so that the next line
            // starts where the chain left off rather than after a torn one.
            let _ = self.file.set_len(self.size);
            return Err(AuditError::Io {
                path: self.path.clone(),
                source,
            });
        }
        self.size += pending.len() as u64;
        pending.clear();
        Ok(())
    }

    /// Makes what was written durable: one fsync for all the lines of a batch.
    fn sync(&mut self) -> Result<(), AuditError> {
        let path = self.path.clone();
        #[cfg(test)]
        let verdict = self.sync_gate.as_ref().map_or(Verdict::Proceed, |gate| {
            let _ = gate.entered.send(());
            gate.verdict.recv().unwrap_or(Verdict::Proceed)
        });
        #[cfg(test)]
        if verdict == Verdict::Panic {
            panic!("injected panic in the middle of an fsync");
        }
        #[cfg(test)]
        if std::mem::take(&mut self.fail_next_sync) || verdict == Verdict::Fail {
            return Err(AuditError::Io {
                path,
                source: std::io::Error::other("injected fsync failure"),
            });
        }
        self.file
            .sync_data()
            .map_err(|source| AuditError::Io { path, source })?;
        self.syncs += 1;
        self.durable = Durable {
            size: self.size,
            next_seq: self.next_seq,
            last_hash: self.last_hash.clone(),
        };
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), AuditError> {
        self.sync()?;
        let io = |source| AuditError::Io {
            path: self.path.clone(),
            source,
        };
        let rotated = rotated_name(&self.path, self.first_seq);
        std::fs::rename(&self.path, &rotated).map_err(io)?;
        self.file = open_file(&self.path, self.readers).map_err(io)?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        }
        self.size = 0;
        self.durable.size = 0;
        self.first_seq = self.next_seq;
        Ok(())
    }

    fn remember(&mut self, id: String) {
        if self.recent_set.insert(id.clone()) {
            self.recent.push_back(id);
            if self.recent.len() > RECENT_IDS
                && let Some(old) = self.recent.pop_front()
            {
                self.recent_set.remove(&old);
            }
        }
    }
}

/// The same error again, for each caller of a failed batch.
fn copy(error: &AuditError) -> AuditError {
    match error {
        AuditError::Io { path, source } => AuditError::Io {
            path: path.clone(),
            source: std::io::Error::new(source.kind(), source.to_string()),
        },
        AuditError::Corrupt { path, why } => AuditError::Corrupt {
            path: path.clone(),
            why: why.clone(),
        },
    }
}

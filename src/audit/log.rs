//! The open log: opening it where the chain left off, appending durably, taking back an
//! append whose fsync failed, and rotating by size.

use std::collections::{HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Utc};

use super::files::{
    cut_torn_tail, first_line_seq, log_files, newest_rotated, read_tail, rotated_name,
};
use super::seal::{entry_id, parse_entry, seal};
use super::{AuditError, Entry, GENESIS, Record};

/// How many recent entry ids are remembered to drop duplicates.
const RECENT_IDS: usize = 10_000;

/// The open log. Appends from many tasks are serialized by its lock.
pub struct AuditLog {
    pub(super) inner: Mutex<Inner>,
}

pub(super) struct Inner {
    path: PathBuf,
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
    #[cfg(test)]
    pub(super) fail_next_sync: bool,
}

/// A point of the chain that is on disk: what a failed append goes back to.
#[derive(Clone, Debug)]
struct Durable {
    size: u64,
    next_seq: u64,
    last_hash: String,
}

impl AuditLog {
    /// Opens (or creates) the log at `path`, continuing the chain of what is there: the
    /// current file, or the newest rotated file when the current one is empty.
    pub fn open(path: &Path, max_bytes: u64) -> Result<Self, AuditError> {
        let io = |source| AuditError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(io)?;
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
            #[cfg(test)]
            fail_next_sync: false,
        };
        for id in recent {
            inner.remember(id);
        }
        Ok(AuditLog {
            inner: Mutex::new(inner),
        })
    }

    /// Appends the records in order and fsyncs once before returning (the records of one
    /// transition are durable together); a record already in the log (same entry id) is
    /// skipped. Returns the entries written.
    pub fn append(&self, records: &[Record], now: DateTime<Utc>) -> Result<Vec<Entry>, AuditError> {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let result = inner.append(records, now);
        // Only a line written proves the log writable again; an append of lines already
        // there writes nothing.
        match &result {
            Err(AuditError::Io { source, .. }) => inner.last_failure = Some(source.to_string()),
            Err(other) => inner.last_failure = Some(other.to_string()),
            Ok(written) if !written.is_empty() => inner.last_failure = None,
            Ok(_) => {}
        }
        result
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

impl Inner {
    /// Writes the records and makes them durable, or, when that fails, goes back to the
    /// last durable point: the lines are cut off and their ids forgotten, so that the
    /// retry writes them again rather than taking lines an fsync never confirmed as done.
    fn append(&mut self, records: &[Record], now: DateTime<Utc>) -> Result<Vec<Entry>, AuditError> {
        if self.dirty_tail {
            self.cut_to_durable()?;
        }
        let result = self.write_and_sync(records, now);
        if result.is_err() {
            self.forget_since_durable();
        }
        result
    }

    fn write_and_sync(
        &mut self,
        records: &[Record],
        now: DateTime<Utc>,
    ) -> Result<Vec<Entry>, AuditError> {
        let mut written = Vec::new();
        for record in records {
            let id = entry_id(record);
            if self.recent_set.contains(&id) {
                continue;
            }
            let (line, entry) = seal(record, id.clone(), now, self.next_seq, &self.last_hash);
            self.write_line(&line)?;
            self.next_seq += 1;
            self.last_hash = entry.hash.clone();
            self.remember(id);
            written.push(entry);
        }
        if !written.is_empty() {
            self.sync()?;
        }
        Ok(written)
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

    fn write_line(&mut self, line: &str) -> Result<(), AuditError> {
        let len = line.len() as u64 + 1;
        if self.size > 0 && self.size + len > self.max_bytes {
            self.rotate()?;
        }
        let io = |source| AuditError::Io {
            path: self.path.clone(),
            source,
        };
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        if let Err(e) = self.file.write_all(&bytes) {
            // A full disk can take half a line: cut it off, so that the next line starts
            // where the chain left off rather than after a torn one.
            let _ = self.file.set_len(self.size);
            return Err(io(e));
        }
        self.size += len;
        Ok(())
    }

    /// Makes what was written durable: one fsync for all the lines of an append.
    fn sync(&mut self) -> Result<(), AuditError> {
        let path = self.path.clone();
        #[cfg(test)]
        if std::mem::take(&mut self.fail_next_sync) {
            return Err(AuditError::Io {
                path,
                source: std::io::Error::other("injected fsync failure"),
            });
        }
        self.file
            .sync_data()
            .map_err(|source| AuditError::Io { path, source })?;
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
        self.file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&self.path)
            .map_err(io)?;
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

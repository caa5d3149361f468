//! The audit trail: an append-only JSON Lines file in which every line carries the SHA-256
//! of the line before it, so that editing, removing or reordering a line breaks the chain
//! at that line.
//!
//! - Each line is one JSON object with sorted keys: the entry's fields, `seq` (0, 1, 2,
//!   ...), `prev_hash` (the previous line's `hash`; 64 zeros for the first line) and
//!   `hash` (SHA-256 over the canonical JSON of the line without `hash`).
//! - An append is written and fsynced before it returns: a transition counts as done only
//!   once its lines are on disk. The lines of one append share one fsync.
//! - `entry_id` is derived from what the entry records, so a transition written twice (a
//!   retried reconcile, a restart between the write and the status update) is written once.
//! - When the file would pass its size limit it is renamed `<stem>-<first seq>.jsonl` and a
//!   new file continues the chain.
//! - After a crash, a last line without its newline was never acknowledged; it is cut off
//!   when the log is opened again.

mod event;

use std::collections::{HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The `prev_hash` of the very first line.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Entry ids are UUIDs (version 5) in this namespace.
const ID_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6a1f_2c4e_9b7d_4e58_a3c1_0d2e_8f94_b713);

/// How many recent entry ids are remembered to drop duplicates.
const RECENT_IDS: usize = 10_000;

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

/// The open log. Appends from many tasks are serialized by its lock.
pub struct AuditLog {
    inner: Mutex<Inner>,
}

struct Inner {
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
    fail_next_sync: bool,
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

/// The id a record gets in the log: the same for the same thing happening to the same
/// Decision, so that writing it twice records it once.
pub fn entry_id(record: &Record) -> String {
    let uid = record
        .decision
        .as_ref()
        .map(|d| d.uid.as_str())
        .unwrap_or("-");
    let name = format!("{uid}/{}/{}", record.event_type, record.discriminator);
    uuid::Uuid::new_v5(&ID_NAMESPACE, name.as_bytes()).to_string()
}

/// Builds the line for a record: its canonical JSON with `hash` added.
fn seal(
    record: &Record,
    id: String,
    now: DateTime<Utc>,
    seq: u64,
    prev_hash: &str,
) -> (String, Entry) {
    let mut entry = Entry {
        entry_id: id,
        event_type: record.event_type.clone(),
        timestamp: now,
        actor: record.actor.clone(),
        decision: record.decision.clone(),
        action_type: record.action_type.clone(),
        plan: record.plan.clone(),
        approver: record.approver.clone(),
        outcome: record.outcome.clone(),
        reason: record.reason.clone(),
        step: record.step.clone(),
        mode: record.mode.clone(),
        message: record.message.clone(),
        details: record.details.clone(),
        seq,
        prev_hash: prev_hash.to_owned(),
        hash: String::new(),
    };
    let mut value = serde_json::to_value(&entry).expect("an entry always serializes");
    // Timestamps are written one way only, so that re-serializing never changes a hash.
    value["timestamp"] = Value::String(now.to_rfc3339_opts(SecondsFormat::Micros, true));
    let object = value.as_object_mut().expect("an entry is an object");
    object.remove("hash");
    let hash = hash_of(object);
    object.insert("hash".into(), Value::String(hash.clone()));
    entry.hash = hash;
    (canonical(&value), entry)
}

/// SHA-256 (hex) of the canonical JSON of an object.
fn hash_of(object: &Map<String, Value>) -> String {
    let digest = Sha256::digest(canonical(&Value::Object(object.clone())).as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// JSON with object keys sorted at every level and no insignificant whitespace.
pub fn canonical(value: &Value) -> String {
    fn write(value: &Value, out: &mut String) {
        match value {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.push('{');
                for (i, key) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::to_string(key).expect("a string serializes"));
                    out.push(':');
                    write(&map[key], out);
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(item, out);
                }
                out.push(']');
            }
            other => out.push_str(&serde_json::to_string(other).expect("a scalar serializes")),
        }
    }
    let mut out = String::new();
    write(value, &mut out);
    out
}

fn parse_entry(line: &str) -> Result<Entry, String> {
    serde_json::from_str(line).map_err(|e| format!("not an audit entry: {e}"))
}

/// Cuts a last line that lacks its newline: a write that never completed.
fn cut_torn_tail(file: &mut File) -> std::io::Result<()> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    let mut last = [0u8; 1];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut last)?;
    if last[0] == b'\n' {
        return Ok(());
    }
    let mut keep = len;
    let mut buf = vec![0u8; 64 * 1024];
    while keep > 0 {
        let start = keep.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(keep - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(pos) = chunk.iter().rposition(|b| *b == b'\n') {
            keep = start + pos as u64 + 1;
            break;
        }
        keep = start;
    }
    tracing::warn!(
        cut_bytes = len - keep,
        "the audit log ended in an unfinished line, which was never acknowledged; it was cut off"
    );
    file.set_len(keep)?;
    file.sync_all()
}

/// The complete lines in the last `window` bytes of a file (more if one line is longer).
fn read_tail(file: &mut File, mut window: u64) -> std::io::Result<Vec<String>> {
    let len = file.metadata()?.len();
    loop {
        let start = len.saturating_sub(window);
        file.seek(SeekFrom::Start(start))?;
        let mut text = String::new();
        file.take(len - start).read_to_string(&mut text)?;
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if start > 0 {
            lines.remove(0); // probably cut in the middle
        }
        if !lines.is_empty() || start == 0 {
            return Ok(lines);
        }
        window *= 4;
    }
}

fn first_line_seq(path: &Path) -> std::io::Result<Option<u64>> {
    let mut first = String::new();
    BufReader::new(File::open(path)?).read_line(&mut first)?;
    Ok(parse_entry(first.trim_end()).ok().map(|e| e.seq))
}

fn rotated_name(path: &Path, first_seq: u64) -> PathBuf {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("audit");
    path.with_file_name(format!("{stem}-{first_seq:012}.jsonl"))
}

/// Rotated files of a log, oldest first, then the log itself.
pub fn log_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("audit")
        .to_owned();
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut rotated: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.strip_prefix(&format!("{stem}-"))
                    .and_then(|rest| rest.strip_suffix(".jsonl"))
                    .is_some_and(|digits| {
                        digits.len() == 12 && digits.bytes().all(|b| b.is_ascii_digit())
                    })
            })
        })
        .collect();
    rotated.sort();
    if path.exists() {
        rotated.push(path.to_owned());
    }
    Ok(rotated)
}

fn newest_rotated(path: &Path) -> std::io::Result<Option<PathBuf>> {
    let files = log_files(path)?;
    Ok(files.into_iter().rfind(|p| p != path))
}

/// Where a check of the chain failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {problem}")]
pub struct VerifyError {
    pub file: String,
    /// 1-based line number within the file.
    pub line: usize,
    pub problem: String,
}

/// What a successful check covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub entries: u64,
    pub last_hash: String,
}

/// Checks the chain across `files`, in order, from the first entry (seq 0).
pub fn verify(files: &[PathBuf]) -> Result<Verified, VerifyError> {
    let mut expected_seq = 0u64;
    let mut prev = GENESIS.to_owned();
    for path in files {
        let file = path.display().to_string();
        let fail = |line, problem: String| VerifyError {
            file: file.clone(),
            line,
            problem,
        };
        let bytes = std::fs::read(path).map_err(|e| fail(0, format!("cannot be read: {e}")))?;
        if !bytes.is_empty() && bytes.last() != Some(&b'\n') {
            let line = bytes.iter().filter(|b| **b == b'\n').count() + 1;
            return Err(fail(
                line,
                "the line is truncated (no newline at the end of the file)".into(),
            ));
        }
        let text = String::from_utf8(bytes).map_err(|e| fail(0, format!("is not UTF-8: {e}")))?;
        for (index, line) in text.lines().enumerate() {
            let n = index + 1;
            let mut value: Value = serde_json::from_str(line)
                .map_err(|e| fail(n, format!("is not valid JSON ({e}): edited or truncated")))?;
            let object = value
                .as_object_mut()
                .ok_or_else(|| fail(n, "is not a JSON object".into()))?;
            let hash = match object.remove("hash") {
                Some(Value::String(h)) => h,
                _ => return Err(fail(n, "has no hash".into())),
            };
            let seq = object.get("seq").and_then(Value::as_u64);
            if seq != Some(expected_seq) {
                return Err(fail(
                    n,
                    format!(
                        "expected sequence number {expected_seq}, found {}: a line was removed, added or moved",
                        seq.map_or("none".to_owned(), |s| s.to_string())
                    ),
                ));
            }
            if object.get("prev_hash").and_then(Value::as_str) != Some(prev.as_str()) {
                return Err(fail(
                    n,
                    "prev_hash does not match the previous line's hash: the chain is broken here"
                        .into(),
                ));
            }
            if hash_of(object) != hash {
                return Err(fail(
                    n,
                    "the content does not match its hash: the line was edited".into(),
                ));
            }
            prev = hash;
            expected_seq += 1;
        }
    }
    Ok(Verified {
        entries: expected_seq,
        last_hash: prev,
    })
}

/// Reads entries from files in order, keeping those the filter accepts.
pub fn read(
    files: &[PathBuf],
    mut keep: impl FnMut(&Entry) -> bool,
) -> std::io::Result<Vec<Entry>> {
    let mut entries = Vec::new();
    for path in files {
        for line in BufReader::new(File::open(path)?).lines() {
            let line = line?;
            if let Ok(entry) = parse_entry(&line)
                && keep(&entry)
            {
                entries.push(entry);
            }
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

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
}

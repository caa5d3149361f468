//! Reading the log back: checking the hash chain across its files, and reading entries.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;

use serde_json::Value;

use super::seal::{hash_of, parse_entry};
use super::{Entry, GENESIS};

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

//! The log's files on disk: cutting a torn last line, reading the last lines, and the
//! names of rotated files.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::seal::parse_entry;

/// Cuts a last line that lacks its newline: a write that never completed.
pub(super) fn cut_torn_tail(file: &mut File) -> std::io::Result<()> {
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
pub(super) fn read_tail(file: &mut File, mut window: u64) -> std::io::Result<Vec<String>> {
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

pub(super) fn first_line_seq(path: &Path) -> std::io::Result<Option<u64>> {
    let mut first = String::new();
    BufReader::new(File::open(path)?).read_line(&mut first)?;
    Ok(parse_entry(first.trim_end()).ok().map(|e| e.seq))
}

pub(super) fn rotated_name(path: &Path, first_seq: u64) -> PathBuf {
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

pub(super) fn newest_rotated(path: &Path) -> std::io::Result<Option<PathBuf>> {
    let files = log_files(path)?;
    Ok(files.into_iter().rfind(|p| p != path))
}

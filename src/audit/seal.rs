//! What makes a line of the log: its entry id, its canonical JSON and its hash.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::{Entry, Record};

/// Entry ids are UUIDs (version 5) in this namespace.
const ID_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6a1f_2c4e_9b7d_4e58_a3c1_0d2e_8f94_b713);

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
pub(super) fn seal(
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
pub(super) fn hash_of(object: &Map<String, Value>) -> String {
    let mut json = Vec::with_capacity(1024);
    write_object(object, &mut json);
    let digest = Sha256::digest(&json);
    let mut hex = String::with_capacity(64);
    for byte in digest {
        use std::fmt::Write;
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// JSON with object keys sorted at every level and no insignificant whitespace.
pub fn canonical(value: &Value) -> String {
    let mut json = Vec::with_capacity(1024);
    write_value(value, &mut json);
    // Only JSON was written, and JSON is UTF-8.
    String::from_utf8(json).unwrap_or_default()
}

fn write_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => write_object(map, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out);
            }
            out.push(b']');
        }
        // Strings, numbers, booleans and null as serde_json writes them; writing to
        // memory cannot fail.
        scalar => {
            let _ = serde_json::to_writer(&mut *out, scalar);
        }
    }
}

fn write_object(map: &Map<String, Value>, out: &mut Vec<u8>) {
    let mut keys: Vec<&String> = map.keys().collect();
    // Already in order when serde_json keeps maps sorted; sorted here so that the hash
    // never depends on how it keeps them.
    keys.sort_unstable();
    out.push(b'{');
    for (i, key) in keys.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let _ = serde_json::to_writer(&mut *out, key);
        out.push(b':');
        write_value(&map[key], out);
    }
    out.push(b'}');
}

pub(super) fn parse_entry(line: &str) -> Result<Entry, String> {
    serde_json::from_str(line).map_err(|e| format!("not an audit entry: {e}"))
}

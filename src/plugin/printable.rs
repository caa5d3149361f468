//! Text from the cluster made safe to print in a terminal. A Decision's description, its
//! context, an approval's reason or an audit line are written by whoever asked or answered;
//! printed raw, a control character in them could move the cursor, erase or recolour what
//! the approver reads, or draw a line of its own (a fake "Approvals: 2/2"), and a Unicode
//! direction override could reorder what they see. Every such character is shown escaped
//! instead: `\n`, `\x1b`, `\u{202e}`.

use std::borrow::Cow;
use std::fmt::Write;

/// Whether a character must not reach a terminal as it is: the C0 and C1 controls (line
/// breaks and tabs included), DEL, and the characters that change the direction or the
/// visibility of the text around them.
fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2069}'
                | '\u{feff}'
        )
}

/// `text` with every unsafe character escaped (borrowed when there is none).
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x80 && unsafe_char(c) => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if unsafe_char(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// JSON text with the unsafe characters JSON itself leaves raw (DEL, the C1 controls and the
/// direction and visibility characters) written as `\uXXXX`: the same JSON, safe to print.
/// (They can only stand inside strings, where the escape means the same character.)
pub fn printable_json(json: &str) -> Cow<'_, str> {
    if !json.chars().any(unsafe_char) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 8);
    for c in json.chars() {
        // Outside strings JSON has only spaces, tabs and line breaks between tokens, which
        // are kept; inside them serde_json has already escaped every C0 control.
        if unsafe_char(c) && !matches!(c, '\n' | '\r' | '\t') {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A copy of an object (a Decision, a plan, a policy, an audit entry) with every string in
/// it, and every key of its maps, made [`printable`]. Values that are not text (phases,
/// times, numbers) have no unsafe characters and come back unchanged.
pub fn printable_object<T>(object: &T) -> T
where
    T: serde::Serialize + serde::de::DeserializeOwned + Clone,
{
    fn walk(value: &mut serde_json::Value) {
        use serde_json::Value;
        match value {
            Value::String(s) => {
                if let Cow::Owned(safe) = printable(s) {
                    *s = safe;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            Value::Object(map) => {
                let entries = std::mem::take(map);
                for (key, mut item) in entries {
                    walk(&mut item);
                    map.insert(printable(&key).into_owned(), item);
                }
            }
            _ => {}
        }
    }
    let Ok(mut value) = serde_json::to_value(object) else {
        return object.clone();
    };
    walk(&mut value);
    serde_json::from_value(value).unwrap_or_else(|_| object.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_direction_characters_are_shown_escaped() {
        assert!(matches!(
            printable("plain text, é ü 日本"),
            Cow::Borrowed(_)
        ));
        assert_eq!(
            printable("Deploy\x1b[2K\rApprovals: 2/2\n\u{202e}evil\u{7f}\u{9b}"),
            "Deploy\\x1b[2K\\rApprovals: 2/2\\n\\u{202e}evil\\x7f\\u{9b}"
        );
        assert_eq!(printable("a\tb\u{200b}"), "a\\tb\\u{200b}");
    }

    #[test]
    fn json_keeps_its_meaning_and_loses_what_a_terminal_would_obey() {
        let json = serde_json::to_string(&serde_json::json!({"d": "x\u{9b}31m\u{202e}"})).unwrap();
        let safe = printable_json(&json);
        assert_eq!(safe, r#"{"d":"x\u009b31m\u202e"}"#);
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back["d"], "x\u{9b}31m\u{202e}");
    }

    #[test]
    fn every_string_and_key_of_an_object_is_made_printable() {
        use crate::api::{Decision, DecisionSpec, decision::Criticality};
        let mut d = Decision::new(
            "d",
            DecisionSpec {
                description: "Ship\n\x1b[1mApprovals: 2/2".into(),
                context: Some([("ke\x1by".to_owned(), serde_json::json!(["v\x07"]))].into()),
                ..DecisionSpec::example("deploy", Criticality::High)
            },
        );
        d.metadata.annotations = Some([("approval-reason".into(), "ok\x1b]0;x\x07".into())].into());
        let safe = printable_object(&d);
        assert_eq!(safe.spec.description, "Ship\\n\\x1b[1mApprovals: 2/2");
        assert_eq!(
            safe.spec.context.unwrap()["ke\\x1by"],
            serde_json::json!(["v\\x07"])
        );
        assert_eq!(
            safe.metadata.annotations.unwrap()["approval-reason"],
            "ok\\x1b]0;x\\x07"
        );
        assert_eq!(safe.spec.criticality, Criticality::High);
    }
}

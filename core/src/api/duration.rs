//! Durations as people write them in manifests: `30s`, `15m`, `24h`, `1h30m`.
//!
//! The format is Go's `time.ParseDuration` without fractions or signs, which is what
//! `kubectl` users already know. The CRD schema checks the shape and the range (at least
//! [`MIN`], at most [`MAX`]) with CEL rules, so a malformed or absurd value is refused by
//! the API server before the operator ever sees it; [`Duration::parse`] checks the same
//! again, for objects stored before the rules existed.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The pattern the API server checks; kept next to the parser so the two agree. Ten
/// digits a number at most keep the schema's own arithmetic far from overflow.
pub const DURATION_PATTERN: &str = r"^([0-9]{1,10}(ms|s|m|h|d))+$";

/// The shortest duration a manifest may give.
pub const MIN: std::time::Duration = std::time::Duration::from_secs(1);

/// The longest duration a manifest may give: 365 days.
pub const MAX: std::time::Duration = std::time::Duration::from_secs(365 * 86_400);

/// The CEL expression that adds a duration's parts up in milliseconds.
fn cel_total_ms() -> String {
    "self.findAll('[0-9]+[a-z]+').map(p, \
     p.endsWith('ms') ? int(p.replace('ms', '')) : \
     p.endsWith('s') ? int(p.replace('s', '')) * 1000 : \
     p.endsWith('m') ? int(p.replace('m', '')) * 60000 : \
     p.endsWith('h') ? int(p.replace('h', '')) * 3600000 : \
     int(p.replace('d', '')) * 86400000).sum()"
        .to_owned()
}

/// A duration written as text, such as `90s`, `15m`, `24h` or `1h30m`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Duration(pub String);

impl JsonSchema for Duration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "maxLength": 32,
            "x-kubernetes-validations": [{
                "rule": format!("self.matches('{DURATION_PATTERN}')"),
                "message": "must be a duration made of whole numbers with units ms, s, m, h or d, such as 90s, 15m, 24h or 1h30m",
            }, {
                "rule": format!(
                    "!self.matches('{DURATION_PATTERN}') || [{total}].all(ms, ms >= {min} && ms <= {max})",
                    total = cel_total_ms(),
                    min = MIN.as_millis(),
                    max = MAX.as_millis(),
                ),
                "message": "must be at least 1s and at most 365d",
            }],
        })
    }
}

/// Why a duration could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a duration such as 90s, 15m, 24h or 1h30m: {why}")]
pub struct ParseDurationError {
    value: String,
    why: &'static str,
}

impl Duration {
    /// Reads the duration as a manifest may give it: units `ms`, `s`, `m`, `h` and `d`
    /// (24 hours), at least [`MIN`] and at most [`MAX`].
    pub fn parse(&self) -> Result<std::time::Duration, ParseDurationError> {
        let d = parse(&self.0)?;
        let fail = |why| ParseDurationError {
            value: self.0.clone(),
            why,
        };
        if d < MIN {
            return Err(fail("it must be at least 1s"));
        }
        if d > MAX {
            return Err(fail("it must be at most 365d"));
        }
        Ok(d)
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Duration {
    fn from(s: &str) -> Self {
        Duration(s.to_owned())
    }
}

/// Parses `1h30m`-style text into a duration.
pub fn parse(text: &str) -> Result<std::time::Duration, ParseDurationError> {
    let fail = |why| ParseDurationError {
        value: text.to_owned(),
        why,
    };
    if text.is_empty() {
        return Err(fail("it is empty"));
    }
    let mut total_ms: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(fail("each part must start with a whole number"));
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| fail("a number is too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit_ms: u64 = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => return Err(fail("each number needs a unit: ms, s, m, h or d")),
            _ => return Err(fail("the unit must be one of ms, s, m, h or d")),
        };
        rest = &rest[unit_len..];
        total_ms = number
            .checked_mul(unit_ms)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(|| fail("it is too long"))?;
    }
    Ok(std::time::Duration::from_millis(total_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_forms_people_write() {
        let cases = [
            ("90s", 90_000),
            ("15m", 900_000),
            ("24h", 86_400_000),
            ("1h30m", 5_400_000),
            ("250ms", 250),
            ("2d", 172_800_000),
            ("0s", 0),
        ];
        for (text, ms) in cases {
            assert_eq!(parse(text).unwrap().as_millis(), ms, "{text}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_duration() {
        for text in [
            "", "24", "h", "1.5h", "-5m", "5 m", "tomorrow", "5y", "1h30",
        ] {
            let err = parse(text).unwrap_err();
            assert!(
                err.to_string().contains("is not a duration"),
                "{text}: {err}"
            );
        }
        assert!(parse("99999999999999999999h").is_err());
    }

    #[test]
    fn a_manifest_duration_lies_between_one_second_and_a_year() {
        for ok in ["1s", "1000ms", "24h", "365d", "364d23h59m59s1000ms"] {
            assert!(Duration::from(ok).parse().is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("0s", "at least 1s"),
            ("999ms", "at least 1s"),
            ("366d", "at most 365d"),
            ("99999999d", "at most 365d"),
            ("8761h", "at most 365d"),
        ] {
            let err = Duration::from(bad).parse().unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}

//! Durations as people write them in manifests: `30s`, `15m`, `24h`, `1h30m`.
//!
//! The format is Go's `time.ParseDuration` without fractions or signs, which is what
//! `kubectl` users already know. The CRD schema checks the shape with a CEL rule, so a
//! malformed value is refused by the API server before the operator ever sees it.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The pattern the API server checks; kept next to the parser so the two agree.
pub const DURATION_PATTERN: &str = r"^([0-9]+(ms|s|m|h|d))+$";

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
    /// Reads the duration. Units: `ms`, `s`, `m`, `h` and `d` (24 hours).
    pub fn parse(&self) -> Result<std::time::Duration, ParseDurationError> {
        parse(&self.0)
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
}

//! Telling Slack's requests from forgeries, stale ones and replays.
//!
//! Slack signs every request: `X-Slack-Signature: v0=<hex HMAC-SHA256>` of
//! `v0:<X-Slack-Request-Timestamp>:<raw body>`, keyed with the app's signing secret. A
//! request counts only when that signature matches (compared in constant time), its
//! timestamp is within [`MAX_AGE_SECONDS`] of now, and its signature has not been seen
//! before within that window. The clock is passed in.

use std::collections::{BTreeSet, HashSet};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// How far a request's timestamp may be from now, either way.
pub const MAX_AGE_SECONDS: i64 = 5 * 60;

/// Why a request was refused before anything was done for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// A header is missing or unreadable, or the signature does not match.
    BadSignature(String),
    /// Signed, but too far from now.
    Stale { age_seconds: i64 },
    /// Signed and fresh, but already seen.
    Replay,
    /// Too many requests in the window to remember them all; refused rather than risk
    /// forgetting one that could then be replayed.
    Busy,
}

impl Rejection {
    /// The word the audit log records.
    pub fn outcome(&self) -> &'static str {
        match self {
            Rejection::BadSignature(_) => "bad_signature",
            Rejection::Stale { .. } => "stale",
            Rejection::Replay => "replay",
            Rejection::Busy => "busy",
        }
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejection::BadSignature(why) => write!(f, "bad signature: {why}"),
            Rejection::Stale { age_seconds } => write!(
                f,
                "stale request: its timestamp is {age_seconds}s from now (at most {MAX_AGE_SECONDS}s)"
            ),
            Rejection::Replay => f.write_str("replayed request: this signature was already used"),
            Rejection::Busy => f.write_str("too many requests in the replay window; try again"),
        }
    }
}

/// The signature Slack sends for `body` at `timestamp`: `v0=` and the lowercase hex
/// HMAC-SHA256.
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut hex = String::with_capacity(3 + 2 * digest.len());
    hex.push_str("v0=");
    for byte in digest {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}

/// Checks a request's signature and age against `now` (Unix seconds); returns its
/// timestamp.
pub fn verify(
    secret: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<i64, Rejection> {
    let timestamp =
        timestamp.ok_or_else(|| bad("no X-Slack-Request-Timestamp header".to_owned()))?;
    let signature = signature.ok_or_else(|| bad("no X-Slack-Signature header".to_owned()))?;
    let at: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| bad(format!("the timestamp {timestamp:?} is not a number")))?;
    let expected = sign(secret, timestamp, body);
    if !bool::from(expected.as_bytes().ct_eq(signature.trim().as_bytes())) {
        return Err(bad("it does not match the body and timestamp".to_owned()));
    }
    let age_seconds = now.saturating_sub(at);
    if age_seconds.abs() > MAX_AGE_SECONDS {
        return Err(Rejection::Stale { age_seconds });
    }
    Ok(at)
}

fn bad(why: String) -> Rejection {
    Rejection::BadSignature(why)
}

/// The signatures of the requests accepted within the last [`MAX_AGE_SECONDS`]: a
/// request older than that is refused as stale anyway, so nothing older is kept, and at
/// most `capacity` are.
#[derive(Debug)]
pub struct ReplayWindow {
    capacity: usize,
    /// (timestamp, signature), oldest first, to forget them in order.
    by_time: BTreeSet<(i64, String)>,
    seen: HashSet<String>,
}

impl ReplayWindow {
    pub fn new(capacity: usize) -> Self {
        ReplayWindow {
            capacity,
            by_time: BTreeSet::new(),
            seen: HashSet::new(),
        }
    }

    /// Admits a verified request's signature once; a second time within the window is a
    /// replay.
    pub fn admit(&mut self, signature: &str, timestamp: i64, now: i64) -> Result<(), Rejection> {
        while let Some((at, _)) = self.by_time.first() {
            if *at >= now - MAX_AGE_SECONDS {
                break;
            }
            if let Some((_, old)) = self.by_time.pop_first() {
                self.seen.remove(&old);
            }
        }
        if self.seen.contains(signature) {
            return Err(Rejection::Replay);
        }
        if self.seen.len() >= self.capacity {
            return Err(Rejection::Busy);
        }
        self.seen.insert(signature.to_owned());
        self.by_time.insert((timestamp, signature.to_owned()));
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"8f742231b10e8888abcd99yyyzzz85a5";

    #[test]
    fn slack_s_published_example_verifies() {
        // The example in Slack's documentation on verifying requests.
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let signature = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
        assert_eq!(sign(SECRET, "1531420618", body), signature);
        assert_eq!(
            verify(
                SECRET,
                Some("1531420618"),
                Some(signature),
                body,
                1531420618 + 10
            ),
            Ok(1531420618)
        );
    }

    #[test]
    fn a_changed_body_secret_or_timestamp_breaks_the_signature() {
        let now = 1_800_000_000;
        let ts = now.to_string();
        let good = sign(SECRET, &ts, b"payload=a");
        for (secret, timestamp, body) in [
            (&b"another secret"[..], ts.as_str(), &b"payload=a"[..]),
            (SECRET, &(now - 1).to_string(), b"payload=a"),
            (SECRET, ts.as_str(), b"payload=b"),
        ] {
            let refused = verify(secret, Some(timestamp), Some(&good), body, now).unwrap_err();
            assert_eq!(refused.outcome(), "bad_signature", "{refused}");
        }
        assert_eq!(
            verify(SECRET, Some(&ts), Some(&good), b"payload=a", now),
            Ok(now)
        );
        // Missing or malformed headers, and a signature of the wrong length.
        for (timestamp, signature) in [
            (None, Some(good.as_str())),
            (Some(ts.as_str()), None),
            (Some("yesterday"), Some(good.as_str())),
            (Some(ts.as_str()), Some("v0=abc")),
        ] {
            let refused = verify(SECRET, timestamp, signature, b"payload=a", now).unwrap_err();
            assert!(matches!(refused, Rejection::BadSignature(_)), "{refused}");
        }
    }

    #[test]
    fn a_signed_request_older_or_newer_than_five_minutes_is_stale() {
        let now = 1_800_000_000;
        for (offset, fresh) in [
            (0, true),
            (300, true),
            (301, false),
            (-300, true),
            (-301, false),
        ] {
            let at = now - offset;
            let ts = at.to_string();
            let signature = sign(SECRET, &ts, b"x");
            let result = verify(SECRET, Some(&ts), Some(&signature), b"x", now);
            assert_eq!(result.is_ok(), fresh, "offset {offset}: {result:?}");
            if !fresh {
                assert_eq!(
                    result,
                    Err(Rejection::Stale {
                        age_seconds: offset
                    })
                );
            }
        }
    }

    #[test]
    fn a_signature_is_admitted_once_and_forgotten_only_once_stale() {
        let mut window = ReplayWindow::new(10);
        let now = 1_800_000_000;
        assert_eq!(window.admit("v0=aa", now, now), Ok(()));
        assert_eq!(window.admit("v0=aa", now, now + 1), Err(Rejection::Replay));
        assert_eq!(window.admit("v0=bb", now, now + 1), Ok(()));
        // Still remembered at the edge of the window ...
        assert_eq!(
            window.admit("v0=aa", now, now + MAX_AGE_SECONDS),
            Err(Rejection::Replay)
        );
        // ... and forgotten past it, when verify() refuses it as stale anyway.
        assert_eq!(window.admit("v0=cc", now + 400, now + 400), Ok(()));
        assert_eq!(window.len(), 1);
    }

    #[test]
    fn a_full_window_refuses_rather_than_forgets() {
        let mut window = ReplayWindow::new(2);
        let now = 1_800_000_000;
        window.admit("v0=1", now, now).unwrap();
        window.admit("v0=2", now, now).unwrap();
        assert_eq!(window.admit("v0=3", now, now), Err(Rejection::Busy));
        assert_eq!(window.admit("v0=1", now, now), Err(Rejection::Replay));
        // Once the old ones have aged out, there is room again.
        assert_eq!(window.admit("v0=3", now + 301, now + 301), Ok(()));
    }
}

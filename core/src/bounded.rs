//! Names cut to the length a field allows: a Job's name, a label's value, an Event's name.
//! One way of cutting, so that what stands for a long name is always made the same way.

use sha2::{Digest, Sha256};

/// The first `max` characters of `name` that a label value or an object name may hold
/// (letters, digits, `-`, `_`, `.`), without the characters other than letters and digits
/// that would be left at either end: still a valid name when `name` was one.
pub fn prefix(name: &str, max: usize) -> String {
    let kept: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(max)
        .collect();
    kept.trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned()
}

/// What stands for `name` within `max` characters: its [`prefix`], `-` and the first
/// `hash_bytes` bytes of its SHA-256 in hex (the hash alone when no prefix is left). Two
/// names meet only if their prefixes and hashes do.
pub fn hashed(name: &str, max: usize, hash_bytes: usize) -> String {
    let digest = Sha256::digest(name.as_bytes());
    let hash: String = digest[..hash_bytes]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let head = prefix(name, max.saturating_sub(hash.len() + 1));
    if head.is_empty() {
        hash
    } else {
        format!("{head}-{hash}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_ends_and_starts_with_a_letter_or_digit() {
        assert_eq!(prefix("deploy-api.v2", 7), "deploy");
        assert_eq!(prefix("ab.-cd", 4), "ab");
        assert_eq!(prefix("-x y", 10), "xy");
        assert_eq!(prefix("short", 50), "short");
    }

    #[test]
    fn a_hashed_name_fits_and_tells_names_apart() {
        let a = format!("{}-one", "n".repeat(80));
        let b = format!("{}-two", "n".repeat(80));
        for name in [&a, &b] {
            let cut = hashed(name, 63, 4);
            assert_eq!(cut.len(), 63);
            assert!(cut.starts_with(&"n".repeat(54)), "{cut}");
        }
        assert_ne!(hashed(&a, 63, 4), hashed(&b, 63, 4));
        assert_eq!(hashed("..", 63, 5).len(), 10);
    }
}

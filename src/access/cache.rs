//! Recent verdicts, kept a few seconds so that a burst of requests costs the API server
//! two reviews, not two per request.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::{Identity, Refusal, Scope};

/// A verdict that is worth keeping: who the caller is and whether they may read.
pub(super) type Verdict = Result<Identity, Refusal>;

/// Recent verdicts, by token (a digest of it, never the token) and scope. Bounded in size
/// and age; failures to ask the API server and unknown tokens are never kept.
pub struct VerdictCache {
    entries: HashMap<([u8; 32], Scope), (Instant, Verdict)>,
    capacity: usize,
    ttl: Duration,
}

impl VerdictCache {
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        VerdictCache {
            entries: HashMap::new(),
            capacity,
            ttl,
        }
    }

    pub fn key(token: &str, scope: &Scope) -> ([u8; 32], Scope) {
        (Sha256::digest(token.as_bytes()).into(), scope.clone())
    }

    pub fn get(&mut self, key: &([u8; 32], Scope), now: Instant) -> Option<Verdict> {
        match self.entries.get(key) {
            Some((at, verdict)) if now.saturating_duration_since(*at) < self.ttl => {
                Some(verdict.clone())
            }
            Some(_) => {
                self.entries.remove(key);
                None
            }
            None => None,
        }
    }

    pub fn insert(&mut self, key: ([u8; 32], Scope), verdict: Verdict, now: Instant) {
        if self.capacity == 0 {
            return;
        }
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            let ttl = self.ttl;
            self.entries
                .retain(|_, (at, _)| now.saturating_duration_since(*at) < ttl);
            if self.entries.len() >= self.capacity
                && let Some(oldest) = self
                    .entries
                    .iter()
                    .min_by_key(|(_, (at, _))| *at)
                    .map(|(k, _)| k.clone())
            {
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(key, (now, verdict));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Identity {
        Identity {
            username: "alice".into(),
            uid: None,
            groups: vec![],
            extra: None,
        }
    }

    #[test]
    fn verdicts_are_kept_briefly_per_token_and_scope_and_never_the_token_itself() {
        let t0 = Instant::now();
        let mut cache = VerdictCache::new(4, Duration::from_secs(10));
        let here = Scope::of(Some("team-a"), None);
        let key = VerdictCache::key("secret-token", &here);
        assert!(!key.0.iter().eq(b"secret-token".iter()));
        cache.insert(key.clone(), Ok(alice()), t0);
        assert_eq!(
            cache.get(&key, t0 + Duration::from_secs(9)),
            Some(Ok(alice()))
        );
        assert_eq!(
            cache.get(
                &VerdictCache::key("secret-token", &Scope::of(None, None)),
                t0
            ),
            None,
            "a verdict in one namespace says nothing of another scope"
        );
        assert_eq!(cache.get(&VerdictCache::key("other", &here), t0), None);
        assert_eq!(
            cache.get(&key, t0 + Duration::from_secs(10)),
            None,
            "expired"
        );
        assert!(cache.is_empty(), "an expired verdict is dropped when found");
    }

    #[test]
    fn the_cache_never_grows_past_its_capacity_and_drops_the_oldest() {
        let t0 = Instant::now();
        let mut cache = VerdictCache::new(3, Duration::from_secs(10));
        let scope = Scope::of(None, None);
        for (i, token) in ["a", "b", "c", "d"].iter().enumerate() {
            cache.insert(
                VerdictCache::key(token, &scope),
                Ok(alice()),
                t0 + Duration::from_secs(i as u64),
            );
            assert!(cache.len() <= 3);
        }
        let now = t0 + Duration::from_secs(4);
        assert_eq!(
            cache.get(&VerdictCache::key("a", &scope), now),
            None,
            "the oldest went"
        );
        for token in ["b", "c", "d"] {
            assert!(
                cache.get(&VerdictCache::key(token, &scope), now).is_some(),
                "{token}"
            );
        }
        // Expired verdicts make room before any live one is dropped.
        let later = t0 + Duration::from_secs(12);
        cache.insert(VerdictCache::key("e", &scope), Ok(alice()), later);
        assert!(cache.get(&VerdictCache::key("d", &scope), later).is_some());
        assert!(cache.get(&VerdictCache::key("e", &scope), later).is_some());
        assert!(cache.len() <= 3);
        let mut none = VerdictCache::new(0, Duration::from_secs(10));
        none.insert(VerdictCache::key("a", &scope), Ok(alice()), t0);
        assert!(none.is_empty());
    }
}

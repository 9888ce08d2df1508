//! A bounded memory of values already accepted (signatures, nonces), each kept for as long as it
//! could still pass the time window. When full of live entries it refuses rather than forgets:
//! forgetting one would reopen a replay.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

/// Entries remembered at most, per cache.
pub const CAPACITY: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// Seen before while still live.
    Seen,
    /// The cache is full of live entries.
    Full,
}

#[derive(Default)]
struct Inner {
    seen: HashSet<Vec<u8>>,
    order: VecDeque<(Vec<u8>, u64)>,
}

#[derive(Default)]
pub struct ReplayCache {
    inner: Mutex<Inner>,
}

impl ReplayCache {
    /// Records `key` at `now_ms`, kept for `keep_ms`; refuses one already there.
    pub fn insert(&self, key: &[u8], now_ms: u64, keep_ms: u64) -> Result<(), Replay> {
        let mut c = crate::sync::lock(&self.inner);
        while let Some((old, at)) = c.order.front() {
            if now_ms.saturating_sub(*at) <= keep_ms {
                break;
            }
            let old = old.clone();
            c.order.pop_front();
            c.seen.remove(&old);
        }
        if c.seen.contains(key) {
            return Err(Replay::Seen);
        }
        if c.seen.len() >= CAPACITY {
            return Err(Replay::Full);
        }
        c.seen.insert(key.to_vec());
        c.order.push_back((key.to_vec(), now_ms));
        Ok(())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        crate::sync::lock(&self.inner).seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgets_expired_refuses_seen_and_is_bounded() {
        let cache = ReplayCache::default();
        cache.insert(b"a", 0, 6000).unwrap();
        assert_eq!(cache.insert(b"a", 6000, 6000), Err(Replay::Seen));
        cache.insert(b"a", 6001, 6000).unwrap();
        assert_eq!(cache.len(), 1);
        let cache = ReplayCache::default();
        for i in 0..CAPACITY {
            cache.insert(&(i as u64).to_le_bytes(), 0, 6000).unwrap();
        }
        assert_eq!(cache.insert(b"z", 1, 6000), Err(Replay::Full));
        cache.insert(b"z", 6001, 6000).unwrap();
        assert_eq!(cache.len(), 1);
    }
}

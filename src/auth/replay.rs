//! A bounded memory of values already accepted (signatures, nonces), kept per client, each entry
//! until its own expiry: the moment what it protects could no longer pass the time window. A
//! request can only make its own client's entries expire or fill up, never another's; a client
//! whose share is full of live entries is refused rather than made to forget, since forgetting
//! one would reopen a replay.

use sha2::{Digest, Sha256};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Mutex;

/// Entries remembered per client and scheme unless `auth.max_remembered_per_client` says
/// otherwise.
pub const DEFAULT_CAPACITY_PER_CLIENT: usize = crate::config::DEFAULT_REMEMBERED_PER_CLIENT;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// Seen before while still live.
    Seen,
    /// This client's share is full of live entries.
    Full,
}

/// What is stored of a value: 16 bytes of its SHA-256, so a long nonce or signature base costs
/// what a short one does (a collision needs about 2^64 entries).
type Key = [u8; 16];

fn key_of(parts: &[&[u8]]) -> Key {
    let mut h = Sha256::new();
    for p in parts {
        // lengths keep ("ab","c") and ("a","bc") apart
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    let full = h.finalize();
    let mut k = [0u8; 16];
    k.copy_from_slice(&full[..16]);
    k
}

/// One client's live entries: expiry by key, and the keys by expiry for pruning.
#[derive(Default)]
struct Partition {
    live: HashMap<Key, u64>,
    by_expiry: BinaryHeap<Reverse<(u64, Key)>>,
}

impl Partition {
    /// Forgets what expired before `now_ms` (an entry is live up to and including its expiry).
    fn prune(&mut self, now_ms: u64) {
        while let Some(Reverse((at, key))) = self.by_expiry.peek().copied() {
            if at >= now_ms {
                break;
            }
            self.by_expiry.pop();
            if self.live.get(&key) == Some(&at) {
                self.live.remove(&key);
            }
        }
    }
}

pub struct ReplayCache {
    capacity_per_client: usize,
    clients: Mutex<HashMap<String, Partition>>,
}

impl Default for ReplayCache {
    fn default() -> Self {
        ReplayCache::new(DEFAULT_CAPACITY_PER_CLIENT)
    }
}

impl ReplayCache {
    pub fn new(capacity_per_client: usize) -> ReplayCache {
        ReplayCache {
            capacity_per_client: capacity_per_client.max(1),
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Records every value of `values` for `client` until `expires_ms`; refuses (recording
    /// nothing) when any of them is still remembered, or when they do not fit in the client's
    /// share. Each value is a list of parts, hashed together.
    pub fn remember(
        &self,
        client: &str,
        values: &[&[&[u8]]],
        now_ms: u64,
        expires_ms: u64,
    ) -> Result<(), Replay> {
        let keys: Vec<Key> = values.iter().map(|v| key_of(v)).collect();
        // a panic elsewhere while holding the lock leaves both maps consistent (each operation
        // below completes or leaves them as they were, allocation aside): keep serving
        let mut clients = crate::sync::lock(&self.clients);
        let part = match clients.get_mut(client) {
            Some(p) => p,
            None => clients.entry(client.to_string()).or_default(),
        };
        part.prune(now_ms);
        if keys.iter().any(|k| part.live.contains_key(k)) {
            return Err(Replay::Seen);
        }
        if part.live.len() + keys.len() > self.capacity_per_client {
            return Err(Replay::Full);
        }
        let expires_ms = expires_ms.max(now_ms);
        for k in keys {
            if part.live.insert(k, expires_ms).is_none() {
                part.by_expiry.push(Reverse((expires_ms, k)));
            }
        }
        Ok(())
    }

    #[cfg(test)]
    fn len(&self, client: &str) -> usize {
        let c = crate::sync::lock(&self.clients);
        c.get(client).map(|p| p.live.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(cache: &ReplayCache, client: &str, v: &[u8], now: u64, exp: u64) -> Result<(), Replay> {
        cache.remember(client, &[&[v]], now, exp)
    }

    #[test]
    fn forgets_expired_refuses_seen_and_is_bounded() {
        let cache = ReplayCache::new(1000);
        one(&cache, "a", b"x", 0, 6000).unwrap();
        assert_eq!(one(&cache, "a", b"x", 6000, 12000), Err(Replay::Seen));
        one(&cache, "a", b"x", 6001, 12001).unwrap();
        assert_eq!(cache.len("a"), 1);
        for i in 0..1000u64 {
            let r = one(&cache, "b", &i.to_le_bytes(), 0, 6000);
            assert!(r.is_ok(), "{i}");
        }
        assert_eq!(one(&cache, "b", b"z", 1, 6000), Err(Replay::Full));
        one(&cache, "b", b"z", 6001, 12000).unwrap();
        assert_eq!(cache.len("b"), 1);
    }

    /// H3: an entry kept long is not evicted by a later one kept briefly (the old cache purged
    /// by the current call's keep time).
    #[test]
    fn each_entry_keeps_its_own_expiry() {
        let cache = ReplayCache::new(100);
        const DAY: u64 = 86_400_000;
        one(&cache, "erp", b"long", 0, DAY).unwrap();
        one(&cache, "erp", b"short", 10, 6010).unwrap();
        one(&cache, "erp", b"later", 100_000, 106_000).unwrap();
        assert_eq!(one(&cache, "erp", b"long", 100_001, DAY), Err(Replay::Seen));
        one(&cache, "erp", b"short", 100_002, 106_002).unwrap();
        one(&cache, "erp", b"long", DAY + 1, 2 * DAY).unwrap();
    }

    /// L3: one client filling its share does not refuse another.
    #[test]
    fn clients_have_their_own_share() {
        let cache = ReplayCache::new(10);
        for i in 0..10u8 {
            one(&cache, "flood", &[i], 0, 6000).unwrap();
        }
        assert_eq!(one(&cache, "flood", b"more", 0, 6000), Err(Replay::Full));
        one(&cache, "erp", b"more", 0, 6000).unwrap();
        // the same value under another client is another entry
        one(&cache, "erp", &[0], 0, 6000).unwrap();
    }

    #[test]
    fn several_values_are_all_or_nothing() {
        let cache = ReplayCache::new(10);
        cache.remember("c", &[&[b"n1"], &[b"s1"]], 0, 100).unwrap();
        assert_eq!(
            cache.remember("c", &[&[b"n2"], &[b"s1"]], 1, 100),
            Err(Replay::Seen)
        );
        // n2 was not recorded by the refused call
        cache.remember("c", &[&[b"n2"], &[b"s2"]], 2, 100).unwrap();
        assert_ne!(key_of(&[b"ab", b"c"]), key_of(&[b"a", b"bc"]));
    }
}

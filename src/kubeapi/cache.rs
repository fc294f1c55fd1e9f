//! A bounded map whose entries expire, for review answers. Pure: the caller passes the
//! time, so tests need no clock.
//!
//! Keys are SHA-256 digests (of a token, of a review spec), so an entry's size is fixed
//! whatever a client sends, and no secret is kept. When full, expired entries go first,
//! then the one closest to expiring; a full cache costs one scan per insert, small next to
//! the call to the kube-apiserver that precedes every insert.

use std::collections::HashMap;
use std::time::{Duration, Instant};

pub(crate) type Key = [u8; 32];

/// kube's webhook caches hold 8192 entries (`cache.NewLRUExpireCache(8192)`).
pub(crate) const CAPACITY: usize = 8192;

#[derive(Debug)]
pub(crate) struct TtlCache<V> {
    entries: HashMap<Key, (Instant, V)>,
    capacity: usize,
}

impl<V: Clone> TtlCache<V> {
    pub(crate) fn new(capacity: usize) -> Self {
        TtlCache {
            entries: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// The value, if it has not expired at `now`.
    pub(crate) fn get(&mut self, key: &Key, now: Instant) -> Option<V> {
        match self.entries.get(key) {
            Some((expires, v)) if *expires > now => Some(v.clone()),
            Some(_) => {
                self.entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Keeps `value` until `now + ttl`; a zero TTL keeps nothing.
    pub(crate) fn insert(&mut self, key: Key, value: V, ttl: Duration, now: Instant) {
        if ttl.is_zero() {
            return;
        }
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            self.entries.retain(|_, (expires, _)| *expires > now);
            if self.entries.len() >= self.capacity {
                let soonest = self
                    .entries
                    .iter()
                    .min_by_key(|(_, (expires, _))| *expires)
                    .map(|(k, _)| *k);
                if let Some(k) = soonest {
                    self.entries.remove(&k);
                }
            }
        }
        self.entries.insert(key, (now + ttl, value));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> Key {
        [n; 32]
    }

    #[test]
    fn an_entry_lives_for_its_ttl_and_no_longer() {
        let t0 = Instant::now();
        let mut c = TtlCache::new(4);
        c.insert(key(1), "a", Duration::from_secs(10), t0);
        assert_eq!(c.get(&key(1), t0 + Duration::from_secs(9)), Some("a"));
        assert_eq!(c.get(&key(1), t0 + Duration::from_secs(10)), None);
        assert_eq!(c.len(), 0, "an expired entry is dropped when seen");
    }

    #[test]
    fn a_zero_ttl_caches_nothing() {
        let t0 = Instant::now();
        let mut c = TtlCache::new(4);
        c.insert(key(1), "a", Duration::ZERO, t0);
        assert_eq!(c.get(&key(1), t0), None);
    }

    #[test]
    fn a_full_cache_drops_expired_entries_then_the_soonest_to_expire() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut c = TtlCache::new(2);
        c.insert(key(1), 1, s(1), t0);
        c.insert(key(2), 2, s(100), t0);
        c.insert(key(3), 3, s(50), t0 + s(2));
        assert_eq!(c.get(&key(1), t0 + s(2)), None);
        assert_eq!(c.len(), 2);
        c.insert(key(4), 4, s(100), t0 + s(2));
        assert_eq!(c.len(), 2);
        assert_eq!(c.get(&key(3), t0 + s(2)), None, "closest to expiring");
        assert_eq!(c.get(&key(2), t0 + s(2)), Some(2));
        assert_eq!(c.get(&key(4), t0 + s(2)), Some(4));
    }

    #[test]
    fn replacing_a_key_in_a_full_cache_evicts_nothing() {
        let t0 = Instant::now();
        let mut c = TtlCache::new(1);
        c.insert(key(1), 1, Duration::from_secs(5), t0);
        c.insert(key(1), 2, Duration::from_secs(5), t0);
        assert_eq!(c.get(&key(1), t0), Some(2));
    }
}

//! [`KeyTable`]: the bounded key → value memory of the locality schedulers (`lblc`, `lblcr`).
//!
//! Time is counted in picks, since a scheduler has no clock: every pick advances it by one
//! ([`KeyTable::tick`]). A key unused for `expiry_picks` is forgotten when next looked up, or
//! swept out when the table is full. The table holds at most `max_keys`; when full and nothing
//! has expired, a new key is scheduled but not remembered (IPVS does the same). A sweep walks
//! the whole table, so it runs at most once every `max_keys` picks: O(1) per pick amortized.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::SchedulerParams;

/// Keys are already well-mixed 64-bit hashes ([`super::hash_key`]): hashing them again would
/// only cost time.
#[derive(Default)]
pub(super) struct PremixedKeyHasher(u64);

impl Hasher for PremixedKeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

struct Entry<V> {
    value: V,
    last_used: u64,
}

pub(super) struct KeyTable<V> {
    entries: HashMap<u64, Entry<V>, BuildHasherDefault<PremixedKeyHasher>>,
    max_keys: usize,
    expiry_picks: u64,
    now: u64,
    swept_at: u64,
}

impl<V> KeyTable<V> {
    pub(super) fn new(params: &SchedulerParams) -> Self {
        KeyTable {
            entries: HashMap::default(),
            max_keys: params.locality_max_keys,
            expiry_picks: params.locality_expiry_picks,
            now: 0,
            swept_at: 0,
        }
    }

    /// Advances the pick clock; returns the new time.
    pub(super) fn tick(&mut self) -> u64 {
        self.now += 1;
        self.now
    }

    pub(super) fn expiry_picks(&self) -> u64 {
        self.expiry_picks
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The key's value, marked used now; an expired entry is dropped and reads as absent.
    pub(super) fn get(&mut self, key: u64) -> Option<&mut V> {
        let now = self.now;
        let expired = match self.entries.get(&key) {
            None => return None,
            Some(entry) => now - entry.last_used > self.expiry_picks,
        };
        if expired {
            self.entries.remove(&key);
            return None;
        }
        self.entries.get_mut(&key).map(|entry| {
            entry.last_used = now;
            &mut entry.value
        })
    }

    /// Remembers `value` for `key`; false when the table is full of live keys.
    pub(super) fn insert(&mut self, key: u64, value: V) -> bool {
        if self.entries.len() >= self.max_keys && !self.entries.contains_key(&key) {
            if self.now - self.swept_at < self.max_keys as u64 {
                return false;
            }
            self.swept_at = self.now;
            let (now, expiry) = (self.now, self.expiry_picks);
            self.entries
                .retain(|_, entry| now - entry.last_used <= expiry);
            if self.entries.len() >= self.max_keys {
                return false;
            }
        }
        let last_used = self.now;
        self.entries.insert(key, Entry { value, last_used });
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(max_keys: usize, expiry_picks: u64) -> KeyTable<u32> {
        KeyTable::new(&SchedulerParams {
            locality_max_keys: max_keys,
            locality_expiry_picks: expiry_picks,
        })
    }

    #[test]
    fn an_unused_key_expires_after_the_configured_picks() {
        let mut keys = table(10, 3);
        keys.tick();
        assert!(keys.insert(7, 70));
        for _ in 0..3 {
            keys.tick();
        }
        assert_eq!(
            keys.get(7).copied(),
            Some(70),
            "used 3 picks ago: still live"
        );
        for _ in 0..4 {
            keys.tick();
        }
        assert_eq!(keys.get(7), None, "unused for 4 picks: forgotten");
        assert_eq!(keys.len(), 0);
    }

    #[test]
    fn a_full_table_sweeps_at_most_once_per_max_keys_picks() {
        let mut keys = table(2, 1);
        keys.tick();
        assert!(keys.insert(1, 1));
        assert!(keys.insert(2, 2));
        keys.tick();
        assert!(
            !keys.insert(3, 3),
            "full, and the sweep found every key live"
        );
        keys.tick();
        assert!(
            !keys.insert(3, 3),
            "full, and swept too recently to sweep again"
        );
        keys.tick();
        assert!(
            keys.insert(3, 3),
            "4 picks on, the two old keys expired and were swept"
        );
        assert_eq!(keys.len(), 1);
    }
}

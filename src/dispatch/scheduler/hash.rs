//! Request hash keys: where a locality or hashing scheduler's key comes from
//! ([`HashKeySource`]) and the stable 64-bit hash that turns it into the `u64` a pick reads.
//!
//! The hash must give the same value on every node and in every release, so that all
//! dispatchers agree on where a key lives: std's `DefaultHasher` is seeded per process and
//! unspecified, so it is not used. FNV-1a over the bytes, then a SplitMix64 finalizer, since
//! FNV-1a alone mixes short inputs poorly into the low bits that `key % table_size` reads.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::SchedulerError;

/// What a request's hash key is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HashKeySource {
    /// The first table the statement reads: requests for the same data meet on the same node
    /// and its page cache (IPVS's destination address, for `lblc`, `lblcr`, `dh`).
    FirstTable,
    /// The client's IP address (IPVS's source address, for `sh`, `mh`).
    ClientAddr,
    /// The session: one connection's reads stay on one node while it is available.
    Session,
    /// The key a matching routing rule names.
    RuleKey,
}

/// The valid key source names, for error messages.
pub const KEY_SOURCE_NAMES: &str = "first_table, client_addr, session, rule_key";

impl HashKeySource {
    pub const ALL: [HashKeySource; 4] = [
        HashKeySource::FirstTable,
        HashKeySource::ClientAddr,
        HashKeySource::Session,
        HashKeySource::RuleKey,
    ];

    pub fn name(self) -> &'static str {
        match self {
            HashKeySource::FirstTable => "first_table",
            HashKeySource::ClientAddr => "client_addr",
            HashKeySource::Session => "session",
            HashKeySource::RuleKey => "rule_key",
        }
    }
}

impl fmt::Display for HashKeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for HashKeySource {
    type Err = SchedulerError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        HashKeySource::ALL
            .into_iter()
            .find(|source| source.name() == name)
            .ok_or_else(|| SchedulerError::UnknownKeySource {
                name: name.to_string(),
            })
    }
}

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The stable hash of a key's bytes (a table name, an address's text or octets, a session id).
pub fn hash_key(bytes: &[u8]) -> u64 {
    mix64(fnv1a(bytes))
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash = FNV_OFFSET_BASIS;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

/// SplitMix64's finalizer: a bijection on `u64` whose every output bit depends on every input
/// bit. Also derives independent values from one key (`mix64(key ^ salt)`).
pub(crate) fn mix64(mut value: u64) -> u64 {
    value = (value ^ (value >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    value ^ (value >> 31)
}

/// The `attempt`-th alternative slot hash for a key whose first choice is unavailable; the
/// hashing schedulers probe these so that an unavailable node's keys spread over the others in
/// proportion to their share of the table, rather than all landing on a neighbour.
pub(crate) fn rehash(key: u64, attempt: u64) -> u64 {
    mix64(key ^ attempt.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_fixed_across_processes_and_releases() {
        // FNV-1a's published test vectors.
        assert_eq!(fnv1a(b""), FNV_OFFSET_BASIS);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
        // Golden: must never change, or a rolling upgrade would move every key.
        assert_eq!(hash_key(b"accounts"), 0x6ea4_cc64_44b4_8e45);
        assert_ne!(hash_key(b"accounts"), hash_key(b"account"));
    }

    #[test]
    fn key_sources_parse_and_print_their_config_names() {
        for source in HashKeySource::ALL {
            assert_eq!(source.name().parse::<HashKeySource>(), Ok(source));
            let json = serde_json::to_string(&source).expect("serializes");
            assert_eq!(json, format!("\"{source}\""));
        }
        let listed: Vec<&str> = HashKeySource::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(KEY_SOURCE_NAMES, listed.join(", "));
        assert_eq!(
            "table".parse::<HashKeySource>().unwrap_err().to_string(),
            "unknown hash key source \"table\"; valid names: first_table, client_addr, session, \
             rule_key"
        );
    }
}

//! `dh`, destination hashing: the same weighted 256-bucket table as `sh` (see [`super::sh`]),
//! keyed by default by the data a statement reads (its first table) rather than the client,
//! as IPVS keys `dh` by destination address: each table's reads meet on one node and its page
//! cache. An unavailable node's keys are re-hashed to other nodes meanwhile (IPVS's `dh` would
//! fail them).

use super::SchedulerKind;
use super::sh::{BUCKETS, fill_buckets};
use super::table::HashingScheduler;

pub(super) fn destination_hashing() -> HashingScheduler {
    HashingScheduler::new(SchedulerKind::Dh, BUCKETS, fill_buckets)
}

#[cfg(test)]
mod tests {
    use super::super::hash_key;
    use super::super::sh::tests::placements;
    use super::super::testing::weighted;
    use super::*;

    #[test]
    fn a_table_name_always_reaches_the_same_node() {
        let candidates = weighted(&[2, 1, 1]);
        let tables: Vec<u64> = ["accounts", "branches", "tellers", "history"]
            .iter()
            .map(|name| hash_key(name.as_bytes()))
            .collect();
        let repeated: Vec<u64> = tables.iter().cycle().take(40).copied().collect();
        let placed = placements(SchedulerKind::Dh, &candidates, &repeated);
        for (pick, node) in placed.iter().enumerate() {
            assert_eq!(*node, placed[pick % 4], "pick {pick}");
        }
        assert_eq!(
            placed[..4],
            placements(SchedulerKind::Sh, &candidates, &tables)[..]
        );
    }
}

//! `sh`, source hashing, and the weighted bucket table it shares with `dh`.
//!
//! A static table of 256 buckets (IPVS's size) is divided among the weighted candidates in
//! proportion to their weights, in node id order; a key serves from bucket `key % 256`. The table is rebuilt
//! when the candidates or their weights change: like IPVS's, most keys then move (that is what
//! `mh` is for). A node whose weight is under 1/256 of the total may own no bucket.
//!
//! A node that is merely unavailable (unhealthy, lagging) keeps its buckets: its keys are
//! re-hashed to other buckets until one names an available node (IPVS's `sh-fallback`, always
//! on here, since a read must not fail because one node is down), and come back when it does.

use super::table::{HashingScheduler, weighted_members};
use super::{Candidate, SchedulerKind};

pub(super) const BUCKETS: usize = 256;

pub(super) fn source_hashing() -> HashingScheduler {
    HashingScheduler::new(SchedulerKind::Sh, BUCKETS, fill_buckets)
}

/// Bucket b goes to the member whose stretch of the cumulative weight holds the middle of b's
/// 1/256 share: each member gets 256 × weight / total buckets, give or take one.
pub(super) fn fill_buckets(buckets: &mut [u32], candidates: &[Candidate]) {
    let members = weighted_members(candidates);
    let total: u128 = members
        .iter()
        .map(|&index| u128::from(candidates[index].weight))
        .sum();
    let scale = 2 * buckets.len() as u128;
    let mut member = 0;
    let mut cumulative = 0u128;
    for (bucket, slot) in buckets.iter_mut().enumerate() {
        // The middle of bucket b, scaled by 2 × buckets to stay in integers.
        let middle = (2 * bucket as u128 + 1) * total;
        while let Some(&index) = members.get(member) {
            let end = cumulative + u128::from(candidates[index].weight);
            if middle < end * scale {
                *slot = index as u32;
                break;
            }
            cumulative = end;
            member += 1;
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::SeededRng;
    use super::super::hash_key;
    use super::super::testing::{counts, scheduler, weighted};
    use super::*;
    use crate::raft::types::NodeId;

    /// Where each of `keys` goes.
    pub(in super::super) fn placements(
        kind: SchedulerKind,
        candidates: &[Candidate],
        keys: &[u64],
    ) -> Vec<NodeId> {
        let mut scheduler = scheduler(kind);
        let mut rng = SeededRng::new(1);
        keys.iter()
            .map(|&key| {
                scheduler
                    .pick(candidates, Some(key), &mut rng)
                    .expect("available")
            })
            .collect()
    }

    pub(in super::super) fn keys(count: u64) -> Vec<u64> {
        (0..count)
            .map(|n| hash_key(format!("client-{n}").as_bytes()))
            .collect()
    }

    #[test]
    fn buckets_are_shared_in_proportion_to_weight() {
        let candidates = weighted(&[3, 2, 1]);
        let owners: Vec<NodeId> = source_hashing()
            .slots(&candidates)
            .iter()
            .map(|&index| candidates[index as usize].node)
            .collect();
        assert_eq!(counts(&candidates, &owners), [128, 85, 43]);
    }

    #[test]
    fn a_key_stays_on_its_node_and_the_table_ignores_candidate_order() {
        let candidates = weighted(&[1, 1, 1]);
        let keys = keys(1_000);
        let first = placements(SchedulerKind::Sh, &candidates, &keys);
        assert_eq!(first, placements(SchedulerKind::Sh, &candidates, &keys));
        let mut reversed = candidates.clone();
        reversed.reverse();
        assert_eq!(first, placements(SchedulerKind::Sh, &reversed, &keys));
        let shares = counts(&candidates, &first);
        assert!(
            shares.iter().all(|&share| (290..380).contains(&share)),
            "{shares:?}"
        );
    }

    #[test]
    fn an_unavailable_node_lends_out_only_its_own_keys() {
        let mut candidates = weighted(&[1, 1, 1]);
        let keys = keys(1_000);
        let before = placements(SchedulerKind::Sh, &candidates, &keys);
        candidates[1].eligible = false;
        let during = placements(SchedulerKind::Sh, &candidates, &keys);
        for (was, is) in before.iter().zip(&during) {
            if *was == 2 {
                assert_ne!(*is, 2);
            } else {
                assert_eq!(was, is, "a key of a healthy node moved");
            }
        }
        let lent = counts(&candidates, &during);
        assert!(
            lent[0].abs_diff(lent[2]) < 100,
            "node 2's keys spread evenly: {lent:?}"
        );
    }
}

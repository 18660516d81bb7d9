//! `mh`, Maglev hashing (Eisenbud et al., NSDI 2016, §3.4): a lookup table of 4093 slots,
//! filled so that each node holds a share proportional to its weight and, when a node leaves,
//! mostly only its own slots change hands: about 1/N of the keys move, not most of them as
//! with `sh`.
//!
//! Building: each weighted node gets a permutation of the slots from two hashes of its id
//! (`offset`, `skip`: slot j of its list is (offset + j × skip) mod 4093, a permutation since
//! 4093 is prime). Nodes take turns, in node id order, claiming the next free slot of their own
//! list; a node of weight w takes w / gcd claims per turn (IPVS's way of weighting), until the
//! table is full. A key serves from slot `key % 4093`.
//!
//! Size: 4093 is IPVS's default (`CONFIG_IP_VS_MH_TAB_INDEX` 12). Maglev's balance holds while
//! the table is much larger than the node count (the paper uses ≥ 100 × N): 4093 keeps that up
//! to 40 nodes, while a build (~4093 claims plus collisions) stays in the tens of microseconds
//! and the table in 16 KiB. The table is built again only when the candidates or their
//! configured weights change, so a pick is O(N) to check the candidates plus O(1) to look up.
//!
//! An unavailable node keeps its slots; its keys are re-hashed to others meanwhile (IPVS's
//! `mh-fallback`, always on; see [`super::table`]), so a brief health flap moves no other key.

use super::hash::mix64;
use super::table::{HashingScheduler, NO_NODE, weighted_members};
use super::{Candidate, SchedulerKind, load};

const TABLE_SIZE: usize = 4093;
const OFFSET_SALT: u64 = 0x6d68_6f66_6673_6574;
const SKIP_SALT: u64 = 0x6d68_736b_6970_0001;

pub(super) fn maglev_hashing() -> HashingScheduler {
    HashingScheduler::new(SchedulerKind::Mh, TABLE_SIZE, fill_maglev)
}

/// One node's walk through its permutation.
struct Claimant {
    index: usize,
    next: u64,
    skip: u64,
    claims_per_turn: u32,
}

fn fill_maglev(table: &mut [u32], candidates: &[Candidate]) {
    let size = table.len() as u64;
    let members = weighted_members(candidates);
    let step = load::weight_divisor(members.iter().map(|&index| candidates[index].weight));
    let mut claimants: Vec<Claimant> = members
        .iter()
        .map(|&index| {
            let node = candidates[index].node;
            Claimant {
                index,
                next: mix64(node ^ OFFSET_SALT) % size,
                skip: mix64(node ^ SKIP_SALT) % (size - 1) + 1,
                claims_per_turn: candidates[index].weight / step,
            }
        })
        .collect();
    let mut filled = 0;
    // Each claim fills one free slot, and every claimant has at least one claim per round.
    while filled < table.len() && !claimants.is_empty() {
        for claimant in &mut claimants {
            for _ in 0..claimant.claims_per_turn {
                // A permutation visits every slot, so a free one is found.
                while table[claimant.next as usize] != NO_NODE {
                    claimant.next = (claimant.next + claimant.skip) % size;
                }
                table[claimant.next as usize] = claimant.index as u32;
                filled += 1;
                if filled == table.len() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::sh::tests::{keys, placements};
    use super::super::testing::{counts, weighted};
    use super::*;
    use crate::raft::types::NodeId;

    fn moved(before: &[NodeId], after: &[NodeId]) -> usize {
        before
            .iter()
            .zip(after)
            .filter(|(was, is)| was != is)
            .count()
    }

    #[test]
    fn slots_are_shared_in_proportion_to_weight() {
        let candidates = weighted(&[3, 2, 1]);
        let owners: Vec<NodeId> = maglev_hashing()
            .slots(&candidates)
            .iter()
            .map(|&index| candidates[index as usize].node)
            .collect();
        // 4093 × 3/6, 2/6, 1/6 = 2046.5, 1364.3, 682.2: turns of 3, 2, 1 claims end mid-turn.
        assert_eq!(counts(&candidates, &owners), [2047, 1364, 682]);
    }

    #[test]
    fn when_one_of_n_nodes_leaves_about_one_nth_of_the_keys_move() {
        let keys = keys(20_000);
        for nodes in [3usize, 5, 8] {
            let candidates = weighted(&vec![1; nodes]);
            let before = placements(SchedulerKind::Mh, &candidates, &keys);
            let leaving = candidates[nodes / 2].node;
            let remaining: Vec<Candidate> = candidates
                .iter()
                .copied()
                .filter(|candidate| candidate.node != leaving)
                .collect();
            let after = placements(SchedulerKind::Mh, &remaining, &keys);
            let share_of_leaver = before.iter().filter(|&&node| node == leaving).count();
            let moved = moved(&before, &after);
            // Every key of the leaver must move; Maglev moves only a few others.
            assert!(moved >= share_of_leaver);
            let fair_share = keys.len() / nodes;
            assert!(
                moved <= fair_share + fair_share / 5,
                "{nodes} nodes: {moved} of {} keys moved, 1/N is {fair_share}",
                keys.len()
            );
        }
    }

    #[test]
    fn an_unavailable_node_moves_only_its_own_keys() {
        let keys = keys(10_000);
        let mut candidates = weighted(&[1, 1, 1, 1]);
        let before = placements(SchedulerKind::Mh, &candidates, &keys);
        candidates[2].eligible = false;
        let during = placements(SchedulerKind::Mh, &candidates, &keys);
        let own = before.iter().filter(|&&node| node == 3).count();
        assert_eq!(moved(&before, &during), own);
        candidates[2].eligible = true;
        assert_eq!(placements(SchedulerKind::Mh, &candidates, &keys), before);
    }

    #[test]
    fn sh_by_contrast_moves_most_keys_when_a_node_leaves() {
        let keys = keys(10_000);
        let candidates = weighted(&[1, 1, 1, 1, 1]);
        let before = placements(SchedulerKind::Sh, &candidates, &keys);
        let after = placements(SchedulerKind::Sh, &candidates[..4], &keys);
        assert!(moved(&before, &after) > keys.len() / 2);
    }
}

//! [`SetSnapshot`]: remembers the candidate list a scheduler built its tables for, so a pick
//! can tell in O(N) and without allocating whether they still hold.

use super::Candidate;
use crate::raft::types::NodeId;

/// The (node, weight) of every candidate, in order, as of the last rebuild. Which weight counts
/// is the scheduler's choice: `wrr` rebuilds when availability changes, the hashing schedulers
/// only when configured weights do.
#[derive(Debug, Default)]
pub(super) struct SetSnapshot {
    entries: Vec<(NodeId, u32)>,
    /// False until the first `record`: an empty candidate list is not "unchanged".
    recorded: bool,
}

impl SetSnapshot {
    pub(super) fn matches(&self, candidates: &[Candidate], weight: fn(&Candidate) -> u32) -> bool {
        self.recorded
            && self.entries.len() == candidates.len()
            && self
                .entries
                .iter()
                .zip(candidates)
                .all(|(&(node, recorded), candidate)| {
                    node == candidate.node && recorded == weight(candidate)
                })
    }

    pub(super) fn record(&mut self, candidates: &[Candidate], weight: fn(&Candidate) -> u32) {
        self.entries.clear();
        self.entries.extend(
            candidates
                .iter()
                .map(|candidate| (candidate.node, weight(candidate))),
        );
        self.recorded = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_of_node_weight_or_order_is_seen() {
        let weight = |candidate: &Candidate| candidate.weight;
        let mut snapshot = SetSnapshot::default();
        let set = [Candidate::new(1, 1), Candidate::new(2, 2)];
        assert!(!snapshot.matches(&[], weight));
        snapshot.record(&set, weight);
        assert!(snapshot.matches(&set, weight));
        let busy = [
            Candidate {
                active: 9,
                eligible: false,
                ..set[0]
            },
            set[1],
        ];
        assert!(snapshot.matches(&busy, weight));
        assert!(!snapshot.matches(&[set[1], set[0]], weight));
        assert!(!snapshot.matches(&[set[0], Candidate::new(2, 3)], weight));
        assert!(!snapshot.matches(&set[..1], weight));
    }
}

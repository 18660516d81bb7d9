//! `fo`, weighted failover: every request to the available node of highest weight; the next
//! one takes over only when it becomes unavailable. A tie goes to the lowest node id (IPVS
//! takes the first listed), so every node's dispatcher names the same primary whatever order
//! its candidate list is in.

use super::{Candidate, SeededRng};
use crate::raft::types::NodeId;

/// The available candidate of highest weight, lowest node id first among equals, among those
/// `admit` accepts (`fo` admits all; `ovf` only those with room).
pub(super) fn heaviest(
    candidates: &[Candidate],
    admit: impl Fn(&Candidate) -> bool,
) -> Option<NodeId> {
    candidates
        .iter()
        .filter(|candidate| candidate.is_available() && admit(candidate))
        .min_by_key(|candidate| (std::cmp::Reverse(candidate.weight), candidate.node))
        .map(|candidate| candidate.node)
}

pub(super) fn choose(candidates: &[Candidate], _rng: &mut SeededRng) -> Option<NodeId> {
    heaviest(candidates, |_| true)
}

#[cfg(test)]
mod tests {
    use super::super::SchedulerKind;
    use super::super::testing::{loaded, scheduler, sequence};

    #[test]
    fn always_the_heaviest_healthy_node_whatever_its_load() {
        let mut fo = scheduler(SchedulerKind::Fo);
        let mut candidates = loaded(&[(2, 0), (5, 90), (3, 0), (5, 0)]);
        assert_eq!(sequence(fo.as_mut(), &candidates, 3), [Some(2); 3]);
        candidates.reverse();
        assert_eq!(
            sequence(fo.as_mut(), &candidates, 1),
            [Some(2)],
            "ties: lowest id"
        );
        candidates.reverse();
        candidates[1].eligible = false;
        assert_eq!(sequence(fo.as_mut(), &candidates, 2), [Some(4); 2]);
        candidates[3].weight = 0;
        assert_eq!(sequence(fo.as_mut(), &candidates, 1), [Some(3)]);
    }
}

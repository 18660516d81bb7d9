//! `rr`, round robin: each pick takes the next available candidate after the previous pick,
//! in candidate order, wrapping around. Weights only matter at 0 (drained). As in IPVS, the
//! position is the last node picked; if that node has left the list, the next pick starts
//! again from the head.

use super::{Candidate, Scheduler, SchedulerKind, SeededRng, load};
use crate::raft::types::NodeId;

#[derive(Debug, Default)]
pub(super) struct RoundRobin {
    last: Option<NodeId>,
}

impl Scheduler for RoundRobin {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Rr
    }

    fn pick(
        &mut self,
        candidates: &[Candidate],
        _key: Option<u64>,
        _rng: &mut SeededRng,
    ) -> Option<NodeId> {
        let count = candidates.len();
        let start = self
            .last
            .and_then(|last| load::position(candidates, last))
            .map_or(0, |index| index + 1);
        let chosen = (0..count)
            .map(|offset| &candidates[(start + offset) % count])
            .find(|candidate| candidate.is_available())?;
        self.last = Some(chosen.node);
        Some(chosen.node)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{scheduler, sequence, weighted};
    use super::*;

    #[test]
    fn cycles_in_candidate_order_skipping_unavailable_nodes() {
        let mut rr = scheduler(SchedulerKind::Rr);
        let mut candidates = weighted(&[5, 1, 1]);
        assert_eq!(
            sequence(rr.as_mut(), &candidates, 7),
            [1, 2, 3, 1, 2, 3, 1].map(Some)
        );
        candidates[1].eligible = false;
        assert_eq!(
            sequence(rr.as_mut(), &candidates, 4),
            [3, 1, 3, 1].map(Some)
        );
        candidates[1].eligible = true;
        candidates[2].weight = 0;
        assert_eq!(sequence(rr.as_mut(), &candidates, 3), [2, 1, 2].map(Some));
    }

    #[test]
    fn restarts_from_the_head_when_the_last_node_left() {
        let mut rr = scheduler(SchedulerKind::Rr);
        let candidates = weighted(&[1, 1, 1]);
        assert_eq!(sequence(rr.as_mut(), &candidates, 2), [1, 2].map(Some));
        let without_two = [candidates[0], candidates[2]];
        assert_eq!(sequence(rr.as_mut(), &without_two, 3), [1, 3, 1].map(Some));
    }
}

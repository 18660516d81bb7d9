//! `ovf`, overflow: the available node of highest weight while it has fewer requests in flight
//! than its weight, then the next heaviest with room, and so on; a tie goes to the lowest node
//! id. When every available node is full the pick is `None`, as in IPVS: the caller queues or
//! refuses, rather than overload a node past its stated capacity.
//!
//! IPVS admits a node while active ≤ weight, so it serves weight + 1 at once, though its own
//! description says it overflows when connections would exceed the weight. Here a weight is
//! a capacity: a node takes a new request only while active < weight.

use super::{Candidate, SeededRng, fo};
use crate::raft::types::NodeId;

pub(super) fn choose(candidates: &[Candidate], _rng: &mut SeededRng) -> Option<NodeId> {
    fo::heaviest(candidates, |candidate| candidate.active < candidate.weight)
}

#[cfg(test)]
mod tests {
    use super::super::SchedulerKind;
    use super::super::testing::{burst, loaded, scheduler, weighted};
    use super::*;

    #[test]
    fn spills_to_the_next_node_only_past_the_weight() {
        let mut candidates = weighted(&[2, 3, 1]);
        let picks = burst(scheduler(SchedulerKind::Ovf).as_mut(), &mut candidates, 6);
        assert_eq!(picks, [2, 2, 2, 1, 1, 3]);
        let mut rng = SeededRng::new(1);
        let mut ovf = scheduler(SchedulerKind::Ovf);
        assert_eq!(ovf.pick(&candidates, None, &mut rng), None, "all full");
        candidates[1].active = 2;
        assert_eq!(ovf.pick(&candidates, None, &mut rng), Some(2), "room again");
    }

    #[test]
    fn an_ineligible_heavy_node_is_passed_over() {
        let mut candidates = loaded(&[(1, 0), (9, 0)]);
        candidates[1].eligible = false;
        let mut rng = SeededRng::new(1);
        assert_eq!(
            scheduler(SchedulerKind::Ovf).pick(&candidates, None, &mut rng),
            Some(1)
        );
    }
}

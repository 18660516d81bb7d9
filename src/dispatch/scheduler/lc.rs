//! `lc`, least connection: the available node with the lowest overhead
//! (256 × active + inactive), weights aside; the first in candidate order wins a tie.

use super::{Candidate, SeededRng, load};
use crate::raft::types::NodeId;

pub(super) fn choose(candidates: &[Candidate], _rng: &mut SeededRng) -> Option<NodeId> {
    candidates
        .iter()
        .filter(|candidate| candidate.is_available())
        // min_by_key keeps the first of equal minima.
        .min_by_key(|candidate| load::overhead(candidate))
        .map(|candidate| candidate.node)
}

#[cfg(test)]
mod tests {
    use super::super::SchedulerKind;
    use super::super::testing::{burst, loaded, scheduler};
    use super::*;

    #[test]
    fn ignores_weights_under_a_burst() {
        // Weights 1 and 5, A idle, B with one in flight (the scenario the lc/wlc/sed/nq tests
        // share, so their answers can be compared).
        let mut candidates = loaded(&[(1, 0), (5, 1)]);
        let picks = burst(scheduler(SchedulerKind::Lc).as_mut(), &mut candidates, 7);
        // Ties (256 = 256) go to A, the first.
        assert_eq!(picks, [1, 1, 2, 1, 2, 1, 2]);
    }

    #[test]
    fn inactive_requests_break_ties_between_equally_active_nodes() {
        let mut candidates = loaded(&[(1, 2), (1, 2), (1, 1)]);
        candidates[0].inactive = 300;
        candidates[1].inactive = 10;
        candidates[2].inactive = 257;
        let mut lc = scheduler(SchedulerKind::Lc);
        let mut rng = SeededRng::new(1);
        // Overheads 812, 522, 513.
        assert_eq!(lc.pick(&candidates, None, &mut rng), Some(3));
        candidates[2].inactive = 300;
        assert_eq!(lc.pick(&candidates, None, &mut rng), Some(2));
    }
}

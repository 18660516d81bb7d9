//! `wlc`, weighted least connection, ipvsadm's default: the available node with the lowest
//! (256 × active + inactive) / weight, compared by cross-multiplication; the first in candidate
//! order wins a tie.

use super::{Candidate, SeededRng, load};
use crate::raft::types::NodeId;

pub(super) fn choose(candidates: &[Candidate], _rng: &mut SeededRng) -> Option<NodeId> {
    load::weighted_least_connection(candidates).map(|index| candidates[index].node)
}

#[cfg(test)]
mod tests {
    use super::super::SchedulerKind;
    use super::super::testing::{burst, loaded, scheduler};
    use super::*;

    #[test]
    fn fills_nodes_in_proportion_to_weight_under_a_burst() {
        // A (weight 1) idle, B (weight 5) one in flight: A first (0 < 256/5), then B until
        // its load per weight reaches A's 256, then the tie goes to A, the first.
        let mut candidates = loaded(&[(1, 0), (5, 1)]);
        let picks = burst(scheduler(SchedulerKind::Wlc).as_mut(), &mut candidates, 7);
        assert_eq!(picks, [1, 2, 2, 2, 2, 1, 2]);
    }

    #[test]
    fn skewed_in_flight_counts_pick_the_lightest_per_weight() {
        // Loads per weight: 512/1, 1280/4 = 320, 768/2 = 384.
        let candidates = loaded(&[(1, 2), (4, 5), (2, 3)]);
        let mut rng = SeededRng::new(1);
        let mut wlc = scheduler(SchedulerKind::Wlc);
        assert_eq!(wlc.pick(&candidates, None, &mut rng), Some(2));
        let mut lc = scheduler(SchedulerKind::Lc);
        assert_eq!(lc.pick(&candidates, None, &mut rng), Some(1));
    }
}

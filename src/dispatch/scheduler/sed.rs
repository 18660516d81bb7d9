//! `sed`, shortest expected delay: the available node with the lowest (active + 1) / weight,
//! the delay a new request would see if each node served its queue at a rate proportional to
//! its weight. Inactive requests do not count. The first in candidate order wins a tie.

use super::{Candidate, SeededRng, load};
use crate::raft::types::NodeId;

/// The expected-delay score `sed` and `nq` share (before division by weight).
pub(super) fn expected_delay(candidate: &Candidate) -> u64 {
    u64::from(candidate.active) + 1
}

pub(super) fn choose(candidates: &[Candidate], _rng: &mut SeededRng) -> Option<NodeId> {
    load::lightest_by(candidates, expected_delay).map(|index| candidates[index].node)
}

#[cfg(test)]
mod tests {
    use super::super::SchedulerKind;
    use super::super::testing::{burst, loaded, scheduler};

    #[test]
    fn prefers_the_heavy_node_even_over_an_idle_light_one() {
        // A (weight 1) idle: delay 1/1; B (weight 5) one in flight: 2/5. B until 5/5 ties A's
        // 1/1 (A wins the tie), then B again (6/5 < 2/1).
        let mut candidates = loaded(&[(1, 0), (5, 1)]);
        let picks = burst(scheduler(SchedulerKind::Sed).as_mut(), &mut candidates, 7);
        assert_eq!(picks, [2, 2, 2, 1, 2, 2, 2]);
    }
}

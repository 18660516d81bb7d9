//! `nq`, never queue: the first available node with nothing in flight, if any, else as `sed`
//! ((active + 1) / weight). An idle node serves at once, whatever its weight.

use super::{Candidate, SeededRng, load, sed};
use crate::raft::types::NodeId;

pub(super) fn choose(candidates: &[Candidate], _rng: &mut SeededRng) -> Option<NodeId> {
    if let Some(idle) = candidates
        .iter()
        .find(|candidate| candidate.is_available() && candidate.active == 0)
    {
        return Some(idle.node);
    }
    load::lightest_by(candidates, sed::expected_delay).map(|index| candidates[index].node)
}

#[cfg(test)]
mod tests {
    use super::super::SchedulerKind;
    use super::super::testing::{burst, loaded, scheduler};

    #[test]
    fn an_idle_node_first_then_shortest_expected_delay() {
        // A idle takes the first; then nobody is idle and B (2/5 .. 9/5) beats A (2/1) until
        // B's 10/5 ties A's 2/1 and the tie goes to A.
        let mut candidates = loaded(&[(1, 0), (5, 1)]);
        let picks = burst(scheduler(SchedulerKind::Nq).as_mut(), &mut candidates, 11);
        assert_eq!(picks, [1, 2, 2, 2, 2, 2, 2, 2, 2, 1, 2]);
    }
}

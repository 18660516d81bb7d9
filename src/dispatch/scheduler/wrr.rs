//! `wrr`, weighted round robin, interleaved as IPVS does it.
//!
//! Picks sweep the candidate list in passes. Each pass has a threshold, the *current weight*:
//! the sweep takes the next available node whose weight reaches it. The threshold starts at the
//! largest weight and drops by the weights' greatest common divisor at the end of each pass,
//! down to 1, then starts over. With weights 3:2:1 one cycle is A A B A B C: heavy nodes are
//! spread through the cycle instead of served in a block, and over a cycle each node gets
//! exactly weight / gcd picks.
//!
//! The divisor and the largest weight are taken over *available* nodes and recomputed when the
//! candidates, their weights or their availability change (a [`SetSnapshot`]); the sweep then
//! restarts from the head and keeps its threshold where it still makes sense, as IPVS does when
//! a destination changes. Unlike IPVS, unavailable nodes do not count in the divisor, so a pick
//! never sweeps through passes only an unavailable heavy node could satisfy.

use super::snapshot::SetSnapshot;
use super::{Candidate, Scheduler, SchedulerKind, SeededRng, load};
use crate::raft::types::NodeId;

#[derive(Debug, Default)]
pub(super) struct WeightedRoundRobin {
    snapshot: SetSnapshot,
    /// Index of the last node picked; `None` at the head of the list.
    last: Option<usize>,
    /// The threshold of the current pass.
    current_weight: u32,
    /// The first pass's threshold: largest weight − (step − 1), so the last pass is at 1.
    first_threshold: u32,
    /// The weights' greatest common divisor.
    step: u32,
}

fn available_weight(candidate: &Candidate) -> u32 {
    if candidate.is_available() {
        candidate.weight
    } else {
        0
    }
}

impl WeightedRoundRobin {
    fn rebuild(&mut self, candidates: &[Candidate]) {
        self.snapshot.record(candidates, available_weight);
        self.step = load::weight_divisor(candidates.iter().map(available_weight));
        let largest = candidates.iter().map(available_weight).max().unwrap_or(0);
        self.first_threshold = largest.saturating_sub(self.step - 1);
        if self.current_weight == 0 || self.current_weight > self.first_threshold {
            self.current_weight = self.first_threshold;
        } else if self.step > 1 {
            self.current_weight = (self.current_weight / self.step) * self.step + 1;
        }
        self.last = None;
    }
}

impl Scheduler for WeightedRoundRobin {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Wrr
    }

    fn pick(
        &mut self,
        candidates: &[Candidate],
        _key: Option<u64>,
        _rng: &mut SeededRng,
    ) -> Option<NodeId> {
        if !self.snapshot.matches(candidates, available_weight) {
            self.rebuild(candidates);
        }
        if self.first_threshold == 0 {
            return None;
        }
        // Terminates: the last pass of a cycle has threshold 1, which every available node
        // (weight ≥ 1) meets, and there is one.
        let mut start = self.last.map_or(0, |index| index + 1);
        loop {
            for (index, candidate) in candidates.iter().enumerate().skip(start) {
                if candidate.is_available() && candidate.weight >= self.current_weight {
                    self.last = Some(index);
                    return Some(candidate.node);
                }
            }
            self.current_weight = match self.current_weight.checked_sub(self.step) {
                Some(next) if next > 0 => next,
                _ => self.first_threshold,
            };
            start = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{counts, scheduler, sequence, weighted};
    use super::*;

    fn picks(candidates: &[Candidate], count: usize) -> Vec<NodeId> {
        let mut wrr = scheduler(SchedulerKind::Wrr);
        sequence(wrr.as_mut(), candidates, count)
            .into_iter()
            .map(|node| node.expect("available"))
            .collect()
    }

    #[test]
    fn weights_3_2_1_interleave_and_split_600_picks_300_200_100() {
        let candidates = weighted(&[3, 2, 1]);
        assert_eq!(picks(&candidates, 12), [1, 1, 2, 1, 2, 3, 1, 1, 2, 1, 2, 3]);
        assert_eq!(
            counts(&candidates, &picks(&candidates, 600)),
            [300, 200, 100]
        );
    }

    #[test]
    fn a_common_divisor_shortens_the_cycle() {
        let candidates = weighted(&[4, 2]);
        assert_eq!(picks(&candidates, 6), [1, 1, 2, 1, 1, 2]);
        let candidates = weighted(&[6, 3, 3]);
        assert_eq!(picks(&candidates, 8), [1, 1, 2, 3, 1, 1, 2, 3]);
    }

    #[test]
    fn drained_and_ineligible_nodes_leave_the_cycle() {
        let mut candidates = weighted(&[3, 0, 1]);
        assert_eq!(picks(&candidates, 8), [1, 1, 1, 3, 1, 1, 1, 3]);
        candidates[0].eligible = false;
        assert_eq!(picks(&candidates, 3), [3, 3, 3]);
        candidates[2].weight = 0;
        let mut wrr = scheduler(SchedulerKind::Wrr);
        assert_eq!(sequence(wrr.as_mut(), &candidates, 1), [None]);
    }

    #[test]
    fn a_weight_change_mid_cycle_restarts_the_sweep() {
        let mut wrr = scheduler(SchedulerKind::Wrr);
        let mut candidates = weighted(&[2, 1]);
        assert_eq!(sequence(wrr.as_mut(), &candidates, 2), [1, 1].map(Some));
        candidates[1].weight = 2;
        assert_eq!(
            sequence(wrr.as_mut(), &candidates, 4),
            [1, 2, 1, 2].map(Some)
        );
    }
}

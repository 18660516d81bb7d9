//! Helpers shared by the schedulers' tests.

use super::{Candidate, Scheduler, SchedulerKind, SchedulerParams, SeededRng, new_scheduler};
use crate::raft::types::NodeId;

/// A fresh scheduler with default settings.
pub(super) fn scheduler(kind: SchedulerKind) -> Box<dyn Scheduler> {
    new_scheduler(kind, &SchedulerParams::default()).expect("default settings are valid")
}

/// Default settings but for a locality key expiry of `picks`.
pub(super) fn expiring_after(picks: u64) -> SchedulerParams {
    SchedulerParams {
        locality_expiry_picks: picks,
        ..SchedulerParams::default()
    }
}

/// Idle, eligible candidates 1, 2, 3, ... of these weights.
pub(super) fn weighted(weights: &[u32]) -> Vec<Candidate> {
    weights
        .iter()
        .enumerate()
        .map(|(index, &weight)| Candidate::new(index as NodeId + 1, weight))
        .collect()
}

/// Candidates 1, 2, 3, ... of these (weight, active) pairs.
pub(super) fn loaded(nodes: &[(u32, u32)]) -> Vec<Candidate> {
    nodes
        .iter()
        .enumerate()
        .map(|(index, &(weight, active))| Candidate {
            active,
            ..Candidate::new(index as NodeId + 1, weight)
        })
        .collect()
}

/// `picks` picks without a key and no load change between them.
pub(super) fn sequence(
    scheduler: &mut dyn Scheduler,
    candidates: &[Candidate],
    picks: usize,
) -> Vec<Option<NodeId>> {
    let mut rng = SeededRng::new(1);
    (0..picks)
        .map(|_| scheduler.pick(candidates, None, &mut rng))
        .collect()
}

/// `picks` picks without a key; each picked node gets one more request in flight and none
/// finishes, as under a burst.
pub(super) fn burst(
    scheduler: &mut dyn Scheduler,
    candidates: &mut [Candidate],
    picks: usize,
) -> Vec<NodeId> {
    let mut rng = SeededRng::new(1);
    (0..picks)
        .map(|_| {
            let node = scheduler
                .pick(candidates, None, &mut rng)
                .expect("some candidate is available");
            candidates
                .iter_mut()
                .filter(|candidate| candidate.node == node)
                .for_each(|candidate| candidate.active += 1);
            node
        })
        .collect()
}

/// How many of `picks` went to each of the candidates, in candidate order.
pub(super) fn counts(candidates: &[Candidate], picks: &[NodeId]) -> Vec<usize> {
    candidates
        .iter()
        .map(|candidate| picks.iter().filter(|&&node| node == candidate.node).count())
        .collect()
}

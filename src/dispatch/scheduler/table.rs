//! [`HashingScheduler`]: the slot table `sh`, `dh` and `mh` share, and its lookup.
//!
//! A table maps `key % size` to a candidate. How slots are divided among the weighted
//! candidates is the algorithm's ([`super::sh`]'s buckets, [`super::mh`]'s Maglev
//! permutations); the rest is common: the table is rebuilt only when the candidates or their
//! configured weights change (a [`SetSnapshot`], so a pick is O(N) + O(1)); an unavailable node
//! keeps its slots and its keys are re-hashed elsewhere meanwhile (IPVS's `sh-fallback` and
//! `mh-fallback`, always on here, since a read must not fail because one node is down); a
//! request with no key goes to the weighted least-connection node.

use super::hash::rehash;
use super::snapshot::SetSnapshot;
use super::{Candidate, Scheduler, SchedulerKind, SeededRng, load};
use crate::raft::types::NodeId;

/// A slot that names no candidate (no node has weight).
pub(super) const NO_NODE: u32 = u32::MAX;
/// Re-hashes tried before the fallback walks the table in order.
const REHASH_ATTEMPTS: u64 = 16;

/// Fills every slot with a candidate index (or [`NO_NODE`]), from the weighted candidates.
pub(super) type Fill = fn(&mut [u32], &[Candidate]);

pub(super) struct HashingScheduler {
    kind: SchedulerKind,
    fill: Fill,
    snapshot: SetSnapshot,
    /// Candidate index per slot, valid while the snapshot matches.
    slots: Vec<u32>,
}

fn configured_weight(candidate: &Candidate) -> u32 {
    candidate.weight
}

/// Indices of the weighted candidates in node id order, so every dispatcher builds the same
/// table whatever order its candidates come in.
pub(super) fn weighted_members(candidates: &[Candidate]) -> Vec<usize> {
    let mut members: Vec<usize> = (0..candidates.len())
        .filter(|&index| candidates[index].weight > 0)
        .collect();
    members.sort_by_key(|&index| candidates[index].node);
    members
}

impl HashingScheduler {
    pub(super) fn new(kind: SchedulerKind, size: usize, fill: Fill) -> Self {
        HashingScheduler {
            kind,
            fill,
            snapshot: SetSnapshot::default(),
            slots: vec![NO_NODE; size],
        }
    }

    /// The slots as of these candidates (for tests of the fill).
    #[cfg(test)]
    pub(super) fn slots(&mut self, candidates: &[Candidate]) -> &[u32] {
        self.refresh(candidates);
        &self.slots
    }

    fn refresh(&mut self, candidates: &[Candidate]) {
        if !self.snapshot.matches(candidates, configured_weight) {
            self.snapshot.record(candidates, configured_weight);
            self.slots.fill(NO_NODE);
            (self.fill)(&mut self.slots, candidates);
        }
    }

    /// The key's own slot if its node is available, else re-hashed slots, else the first
    /// available slot after it, else (an available node that owns no slot) weighted least
    /// connection.
    fn lookup(&self, candidates: &[Candidate], key: u64) -> Option<NodeId> {
        let size = self.slots.len() as u64;
        let available = |slot: u64| {
            let index = self.slots[slot as usize];
            (index != NO_NODE && candidates[index as usize].is_available())
                .then(|| candidates[index as usize].node)
        };
        let home = key % size;
        if let Some(node) = available(home) {
            return Some(node);
        }
        if !candidates.iter().any(Candidate::is_available) {
            return None;
        }
        (1..=REHASH_ATTEMPTS)
            .find_map(|attempt| available(rehash(key, attempt) % size))
            .or_else(|| (1..size).find_map(|offset| available((home + offset) % size)))
            .or_else(|| {
                load::weighted_least_connection(candidates).map(|index| candidates[index].node)
            })
    }
}

impl Scheduler for HashingScheduler {
    fn kind(&self) -> SchedulerKind {
        self.kind
    }

    fn pick(
        &mut self,
        candidates: &[Candidate],
        key: Option<u64>,
        _rng: &mut SeededRng,
    ) -> Option<NodeId> {
        self.refresh(candidates);
        match key {
            Some(key) => self.lookup(candidates, key),
            None => load::weighted_least_connection(candidates).map(|index| candidates[index].node),
        }
    }
}

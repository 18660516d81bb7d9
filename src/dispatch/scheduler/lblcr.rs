//! `lblcr`, locality-based least connection with replication: like `lblc`, but a key owns a
//! *set* of nodes, so a hot table can be served by several nodes' caches.
//!
//! A request goes to the weighted least-connection node of its key's set. If none of the set is
//! available, or that node is overloaded (more in flight than its weight while some available
//! node is under half of its own), the weighted least-connection node of all joins the set and
//! serves. When a set of two or more has not changed for `locality_expiry_picks` picks, its
//! busiest node leaves it (a node no longer listed, or drained, leaves first), so sets shrink
//! back once a burst is over. Keys are bounded and expire as in `lblc` ([`KeyTable`]).

use super::locality::KeyTable;
use super::{Candidate, Scheduler, SchedulerKind, SchedulerParams, SeededRng, load};
use crate::raft::types::NodeId;

struct ReplicaSet {
    nodes: Vec<NodeId>,
    changed_at: u64,
}

impl ReplicaSet {
    /// The set's available node with the lowest load per weight.
    fn lightest(&self, candidates: &[Candidate]) -> Option<usize> {
        let mut best: Option<usize> = None;
        for index in self
            .nodes
            .iter()
            .filter_map(|&node| load::position(candidates, node))
        {
            let candidate = &candidates[index];
            if !candidate.is_available() {
                continue;
            }
            match best {
                Some(best_index)
                    if !load::heavier(
                        load::overhead(&candidates[best_index]),
                        candidates[best_index].weight,
                        load::overhead(candidate),
                        candidate.weight,
                    ) => {}
                _ => best = Some(index),
            }
        }
        best
    }

    /// Removes the busiest member: one no longer listed or drained first, else the highest
    /// load per weight (the first such on a tie).
    fn drop_busiest(&mut self, candidates: &[Candidate]) {
        let listed = |node: NodeId| {
            load::position(candidates, node)
                .map(|index| &candidates[index])
                .filter(|candidate| candidate.weight > 0)
        };
        let mut busiest: Option<(usize, Option<&Candidate>)> = None;
        for (slot, &node) in self.nodes.iter().enumerate() {
            let candidate = listed(node);
            let busier = match (busiest, candidate) {
                (None, _) => true,
                (Some((_, None)), _) => false,
                (Some((_, Some(_))), None) => true,
                (Some((_, Some(most))), Some(candidate)) => load::heavier(
                    load::overhead(candidate),
                    candidate.weight,
                    load::overhead(most),
                    most.weight,
                ),
            };
            if busier {
                busiest = Some((slot, candidate));
            }
        }
        if let Some((slot, _)) = busiest {
            self.nodes.remove(slot);
        }
    }
}

pub(super) struct LocalityReplicated {
    keys: KeyTable<ReplicaSet>,
}

impl LocalityReplicated {
    pub(super) fn new(params: &SchedulerParams) -> Self {
        LocalityReplicated {
            keys: KeyTable::new(params),
        }
    }
}

impl Scheduler for LocalityReplicated {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Lblcr
    }

    fn pick(
        &mut self,
        candidates: &[Candidate],
        key: Option<u64>,
        _rng: &mut SeededRng,
    ) -> Option<NodeId> {
        let now = self.keys.tick();
        let expiry = self.keys.expiry_picks();
        let least = || load::weighted_least_connection(candidates).map(|index| candidates[index]);
        let Some(key) = key else {
            return least().map(|candidate| candidate.node);
        };
        let Some(set) = self.keys.get(key) else {
            let chosen = least()?;
            let set = ReplicaSet {
                nodes: vec![chosen.node],
                changed_at: now,
            };
            self.keys.insert(key, set);
            return Some(chosen.node);
        };
        let lightest = set.lightest(candidates).map(|index| candidates[index]);
        if set.nodes.len() > 1 && now - set.changed_at > expiry {
            set.drop_busiest(candidates);
            set.changed_at = now;
        }
        if let Some(candidate) = lightest
            && !load::is_overloaded(&candidate, candidates)
        {
            return Some(candidate.node);
        }
        let chosen = least()?;
        if !set.nodes.contains(&chosen.node) {
            set.nodes.push(chosen.node);
            set.changed_at = now;
        }
        Some(chosen.node)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{expiring_after, loaded, scheduler};
    use super::*;

    #[test]
    fn a_hot_key_grows_its_set_and_then_spreads_over_it() {
        let mut lblcr = scheduler(SchedulerKind::Lblcr);
        let mut rng = SeededRng::new(1);
        let hot = Some(0x40);
        let mut candidates = loaded(&[(2, 0), (2, 0), (2, 0)]);
        assert_eq!(lblcr.pick(&candidates, hot, &mut rng), Some(1));
        // Node 1 overloaded, nodes 2 and 3 idle: node 2 (least loaded, first) joins.
        candidates[0].active = 3;
        assert_eq!(lblcr.pick(&candidates, hot, &mut rng), Some(2));
        // The set is {1, 2}: its lightest member serves, node 3 stays out of it.
        candidates[1].active = 2;
        candidates[0].active = 1;
        assert_eq!(lblcr.pick(&candidates, hot, &mut rng), Some(1));
        candidates[0].active = 3;
        assert_eq!(lblcr.pick(&candidates, hot, &mut rng), Some(2));
        // Both members past their weight, node 3 idle: node 3 joins.
        candidates[1].active = 3;
        assert_eq!(lblcr.pick(&candidates, hot, &mut rng), Some(3));
        candidates[2].active = 1;
        assert_eq!(lblcr.pick(&candidates, hot, &mut rng), Some(3));
    }

    #[test]
    fn an_unchanged_set_sheds_its_busiest_member() {
        let params = expiring_after(3);
        let mut lblcr = LocalityReplicated::new(&params);
        let mut rng = SeededRng::new(1);
        let mut candidates = loaded(&[(2, 0), (2, 0)]);
        assert_eq!(lblcr.pick(&candidates, Some(9), &mut rng), Some(1));
        candidates[0].active = 3;
        assert_eq!(
            lblcr.pick(&candidates, Some(9), &mut rng),
            Some(2),
            "set {{1, 2}}"
        );
        candidates[0].active = 0;
        candidates[1].active = 1;
        for _ in 0..3 {
            assert_eq!(lblcr.pick(&candidates, Some(9), &mut rng), Some(1));
        }
        // 4 picks unchanged: node 2, the busier, leaves; the set is {1} again.
        assert_eq!(lblcr.pick(&candidates, Some(9), &mut rng), Some(1));
        candidates[0].active = 1;
        candidates[1].active = 0;
        assert_eq!(
            lblcr.pick(&candidates, Some(9), &mut rng),
            Some(1),
            "2 is out of the set"
        );
    }
}

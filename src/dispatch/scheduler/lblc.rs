//! `lblc`, locality-based least connection: a key (by default the statement's first table)
//! sticks to one node, so the same data is read where it is already cached.
//!
//! The first request for a key goes to the weighted least-connection node, which is remembered
//! for the key. Later requests go there too, unless it is unavailable, gone, or *overloaded*:
//! more requests in flight than its weight while some available node is under half of its
//! own. Then the key is scheduled afresh and remembered on its new node. The key table is
//! bounded and forgets keys unused for a while (see [`KeyTable`]).

use super::locality::KeyTable;
use super::{Candidate, Scheduler, SchedulerKind, SchedulerParams, SeededRng, load};
use crate::raft::types::NodeId;

pub(super) struct LocalityLeastConnection {
    keys: KeyTable<NodeId>,
}

impl LocalityLeastConnection {
    pub(super) fn new(params: &SchedulerParams) -> Self {
        LocalityLeastConnection {
            keys: KeyTable::new(params),
        }
    }
}

impl Scheduler for LocalityLeastConnection {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Lblc
    }

    fn pick(
        &mut self,
        candidates: &[Candidate],
        key: Option<u64>,
        _rng: &mut SeededRng,
    ) -> Option<NodeId> {
        self.keys.tick();
        let least = || load::weighted_least_connection(candidates).map(|index| candidates[index]);
        let Some(key) = key else {
            return least().map(|candidate| candidate.node);
        };
        if let Some(node) = self.keys.get(key) {
            let remembered = load::position(candidates, *node).map(|index| &candidates[index]);
            if let Some(candidate) = remembered
                && candidate.is_available()
                && !load::is_overloaded(candidate, candidates)
            {
                return Some(candidate.node);
            }
            let chosen = least()?;
            *node = chosen.node;
            return Some(chosen.node);
        }
        let chosen = least()?;
        self.keys.insert(key, chosen.node);
        Some(chosen.node)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{expiring_after, loaded, scheduler};
    use super::*;

    #[test]
    fn a_key_sticks_to_its_first_node_until_it_is_overloaded_or_down() {
        let mut lblc = scheduler(SchedulerKind::Lblc);
        let mut rng = SeededRng::new(1);
        let (table_a, table_b) = (Some(0xa), Some(0xb));
        let mut candidates = loaded(&[(2, 0), (2, 0), (2, 0)]);
        assert_eq!(lblc.pick(&candidates, table_a, &mut rng), Some(1));
        candidates[0].active = 1;
        assert_eq!(lblc.pick(&candidates, table_b, &mut rng), Some(2));
        candidates[1].active = 1;
        // Node 1 busier than node 3 now, but not overloaded: table A stays.
        candidates[0].active = 2;
        assert_eq!(lblc.pick(&candidates, table_a, &mut rng), Some(1));
        // Past its weight while node 3 is idle (under half): table A moves to node 3, for good.
        candidates[0].active = 3;
        assert_eq!(lblc.pick(&candidates, table_a, &mut rng), Some(3));
        candidates[0].active = 0;
        assert_eq!(lblc.pick(&candidates, table_a, &mut rng), Some(3));
        // Node 3 down: table A goes to the least loaded, node 1, and stays there.
        candidates[2].eligible = false;
        assert_eq!(lblc.pick(&candidates, table_a, &mut rng), Some(1));
        candidates[2].eligible = true;
        assert_eq!(lblc.pick(&candidates, table_a, &mut rng), Some(1));
        assert_eq!(lblc.pick(&candidates, table_b, &mut rng), Some(2));
    }

    #[test]
    fn overloaded_stays_when_no_node_is_half_idle() {
        let mut lblc = scheduler(SchedulerKind::Lblc);
        let mut rng = SeededRng::new(1);
        let mut candidates = loaded(&[(2, 0), (2, 1)]);
        assert_eq!(lblc.pick(&candidates, Some(7), &mut rng), Some(1));
        candidates[0].active = 5;
        assert_eq!(lblc.pick(&candidates, Some(7), &mut rng), Some(1));
    }

    #[test]
    fn a_key_unused_past_the_expiry_is_scheduled_afresh() {
        let params = expiring_after(2);
        let mut lblc = LocalityLeastConnection::new(&params);
        let mut rng = SeededRng::new(1);
        let mut candidates = loaded(&[(1, 0), (1, 0)]);
        assert_eq!(lblc.pick(&candidates, Some(1), &mut rng), Some(1));
        candidates[0].active = 1;
        assert_eq!(
            lblc.pick(&candidates, Some(1), &mut rng),
            Some(1),
            "remembered"
        );
        lblc.pick(&candidates, None, &mut rng);
        lblc.pick(&candidates, None, &mut rng);
        lblc.pick(&candidates, None, &mut rng);
        assert_eq!(
            lblc.pick(&candidates, Some(1), &mut rng),
            Some(2),
            "forgotten"
        );
    }
}

//! Maintenance: a drained node (`phalanx node drain`, `PUT /v1/dispatcher {"drain": [ID]}`)
//! gets no reads, and it must not lead either — the leader does most of the work. After each
//! health-probe round, a node that leads while drained hands leadership to the healthy,
//! undrained voter that has applied the most, at most once per [`RETRY`], so it also gives up
//! a leadership it wins again in a later election.
//!
//! The decision is [`decide`], a pure function of the node's situation and the clock passed
//! in; [`hand_off_if_drained`] gathers that situation and starts the transfer.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::dispatch::Dispatcher;
use crate::raft::metrics;
use crate::raft::types::{LogIndex, NodeId};

/// The shortest time between two hand-off attempts (a transfer takes an election, a few
/// hundred milliseconds; retrying sooner would only disturb it).
pub const RETRY: Duration = Duration::from_secs(1);

/// A voter, as the health probes see it, that might take leadership over.
#[derive(Clone, Copy, Debug)]
pub struct Voter {
    pub node: NodeId,
    /// The probes hold it healthy.
    pub healthy: bool,
    /// The applied index its last probe answer reported (0 if none did).
    pub applied: LogIndex,
}

/// What a node should do about its leadership after a probe round.
#[derive(Debug, PartialEq, Eq)]
pub enum HandOff {
    /// Nothing: it does not lead, is not drained, or tried less than [`RETRY`] ago.
    Nothing,
    /// Transfer leadership to this voter.
    To(NodeId),
    /// It should hand leadership away but no healthy undrained voter could take it.
    NoSuccessor,
}

/// Decides whether node `me` hands leadership away now. `last_attempt` is when it last
/// decided [`HandOff::To`] or [`HandOff::NoSuccessor`]; both count as an attempt, so the
/// answer is [`HandOff::Nothing`] until [`RETRY`] has passed since. The successor is the
/// healthy, undrained voter other than `me` that has applied the most (ties: the lowest id, so
/// the choice is the same whatever the order of `voters`).
pub fn decide(
    me: NodeId,
    leads: bool,
    drained: &BTreeSet<NodeId>,
    voters: &[Voter],
    last_attempt: Option<Instant>,
    now: Instant,
) -> HandOff {
    if !leads || !drained.contains(&me) {
        return HandOff::Nothing;
    }
    if last_attempt.is_some_and(|at| now.saturating_duration_since(at) < RETRY) {
        return HandOff::Nothing;
    }
    voters
        .iter()
        .filter(|v| v.node != me && v.healthy && !drained.contains(&v.node))
        .max_by_key(|v| (v.applied, std::cmp::Reverse(v.node)))
        .map_or(HandOff::NoSuccessor, |v| HandOff::To(v.node))
}

/// Hands leadership away if this node leads and is drained; `last` is when it last tried.
pub async fn hand_off_if_drained(d: &Dispatcher, last: &mut Option<Instant>) {
    let drained = d.balancer.settings().drained;
    let leads = d.raft.as_leader().is_ok();
    if !leads || !drained.contains(&d.node_id) {
        return;
    }
    let voters: Vec<Voter> = metrics::snapshot(&d.raft)
        .membership_config
        .membership()
        .voter_ids()
        .map(|node| Voter {
            node,
            healthy: d.health.is_healthy(node),
            applied: d.health.applied(node).unwrap_or(0),
        })
        .collect();
    let now = Instant::now();
    match decide(d.node_id, leads, &drained, &voters, *last, now) {
        HandOff::Nothing => {}
        HandOff::NoSuccessor => {
            *last = Some(now);
            tracing::warn!(
                node = d.node_id,
                "drained but leading: no healthy undrained voter to hand leadership to"
            );
        }
        HandOff::To(to) => {
            *last = Some(now);
            match d.lease_reads.transfer_leader(&d.raft, to).await {
                Ok(()) => tracing::info!(from = d.node_id, to, "drained: handing leadership over"),
                Err(e) => tracing::warn!(to, error = %e, "drained: leadership hand-off failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voter(node: NodeId, healthy: bool, applied: LogIndex) -> Voter {
        Voter {
            node,
            healthy,
            applied,
        }
    }

    fn drained(nodes: &[NodeId]) -> BTreeSet<NodeId> {
        nodes.iter().copied().collect()
    }

    #[test]
    fn only_a_drained_leader_hands_off() {
        let now = Instant::now();
        let voters = [voter(1, true, 10), voter(2, true, 10), voter(3, true, 10)];
        let no = HandOff::Nothing;
        assert_eq!(decide(1, true, &drained(&[]), &voters, None, now), no);
        assert_eq!(decide(1, true, &drained(&[2]), &voters, None, now), no);
        assert_eq!(decide(1, false, &drained(&[1]), &voters, None, now), no);
        assert_eq!(
            decide(1, true, &drained(&[1]), &voters, None, now),
            HandOff::To(2),
            "ties go to the lowest id"
        );
    }

    #[test]
    fn the_successor_is_the_healthy_undrained_voter_that_applied_most() {
        let now = Instant::now();
        let voters = [
            voter(1, true, 100),
            voter(2, true, 40),
            voter(3, false, 99),
            voter(4, true, 98),
            voter(5, true, 60),
        ];
        // 3 is down and 4 drained: 5 has applied more than 2.
        let to = decide(1, true, &drained(&[1, 4]), &voters, None, now);
        assert_eq!(to, HandOff::To(5));
        let reversed: Vec<Voter> = voters.iter().rev().copied().collect();
        let to = decide(1, true, &drained(&[1, 4]), &reversed, None, now);
        assert_eq!(
            to,
            HandOff::To(5),
            "the order of the voters does not matter"
        );
    }

    #[test]
    fn without_a_healthy_undrained_voter_there_is_no_successor() {
        let now = Instant::now();
        let voters = [voter(1, true, 10), voter(2, false, 10), voter(3, true, 10)];
        assert_eq!(
            decide(1, true, &drained(&[1, 3]), &voters, None, now),
            HandOff::NoSuccessor
        );
        let alone = [voter(1, true, 10)];
        assert_eq!(
            decide(1, true, &drained(&[1]), &alone, None, now),
            HandOff::NoSuccessor
        );
    }

    #[test]
    fn attempts_are_at_least_a_retry_period_apart() {
        let start = Instant::now();
        let voters = [voter(1, true, 10), voter(2, true, 10)];
        let leader = drained(&[1]);
        let at = |ms: u64| start + Duration::from_millis(ms);
        assert_eq!(
            decide(1, true, &leader, &voters, Some(start), at(999)),
            HandOff::Nothing
        );
        assert_eq!(
            decide(1, true, &leader, &voters, Some(start), at(1000)),
            HandOff::To(2)
        );
        // A `now` before the last attempt counts as no time passed.
        assert_eq!(
            decide(1, true, &leader, &voters, Some(at(10)), start),
            HandOff::Nothing
        );
    }
}

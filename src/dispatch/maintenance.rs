//! Maintenance: a drained node (`phalanx node drain`, `PUT /v1/dispatcher {"drain": [ID]}`)
//! gets no reads, and it must not lead either — the leader does most of the work. After each
//! health-probe round, a node that leads while drained hands leadership to the healthy,
//! undrained voter that has applied the most, at most once per [`RETRY`], so it also gives up
//! a leadership it wins again in a later election.

use std::time::{Duration, Instant};

use crate::dispatch::Dispatcher;
use crate::raft::metrics;
use crate::raft::types::NodeId;

/// The shortest time between two hand-off attempts.
pub const RETRY: Duration = Duration::from_secs(1);

/// Hands leadership away if this node leads and is drained; `last` is when it last tried.
pub async fn hand_off_if_drained(d: &Dispatcher, last: &mut Option<Instant>) {
    let drained = d.balancer.settings().drained;
    if !drained.contains(&d.node_id) || d.raft.as_leader().is_err() {
        return;
    }
    if last.is_some_and(|at| at.elapsed() < RETRY) {
        return;
    }
    let m = metrics::snapshot(&d.raft);
    let applied = |node: NodeId| {
        d.health
            .view()
            .into_iter()
            .find(|h| h.node == node)
            .and_then(|h| h.applied_index)
            .unwrap_or(0)
    };
    let Some(to) = m
        .membership_config
        .membership()
        .voter_ids()
        .filter(|id| *id != d.node_id && !drained.contains(id) && d.health.is_healthy(*id))
        .max_by_key(|id| (applied(*id), std::cmp::Reverse(*id)))
    else {
        tracing::warn!(
            node = d.node_id,
            "drained but leading: no healthy undrained voter to hand leadership to"
        );
        *last = Some(Instant::now());
        return;
    };
    *last = Some(Instant::now());
    match d.raft.trigger().transfer_leader(to).await {
        Ok(()) => tracing::info!(from = d.node_id, to, "drained: handing leadership over"),
        Err(e) => tracing::warn!(to, error = %e, "drained: leadership hand-off failed"),
    }
}

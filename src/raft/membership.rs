//! Membership changes: add a node (learner first, voter once caught up), remove a node, update a
//! member's advertised addresses, transfer leadership. They run on the leader; any node accepts
//! them and forwards over the internal RPC ([`request`]).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use openraft::ChangeMembers;
use serde::{Deserialize, Serialize};

use crate::dispatch::Dispatcher;
use crate::raft::metrics;
use crate::raft::network::{PeerError, paths};
use crate::raft::types::{NodeAddr, NodeId};

/// How long a membership request may take, including a learner's catch-up.
const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MembershipRequest {
    /// Add a node: as a learner (which receives a snapshot and the log tail), then, once it has
    /// caught up, as a voter.
    Add { id: NodeId, addr: NodeAddr },
    /// Remove a node from the voters and from the cluster.
    Remove { id: NodeId },
    /// Record a member's addresses (a bootstrapped node knows only its peers' raft addresses
    /// until each registers its HTTP and PostgreSQL addresses). The raft address must not change.
    SetAddr { id: NodeId, addr: NodeAddr },
    /// Hand leadership to `to`.
    TransferLeader { to: NodeId },
}

/// Why a membership request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum MembershipError {
    #[error("not the leader")]
    NotLeader,
    #[error("invalid membership request: {0}")]
    Invalid(String),
    #[error("membership change failed: {0}")]
    Failed(String),
    #[error("no leader reachable: {0}")]
    NoLeader(String),
}

/// Runs `request` on the leader, forwarding from a follower; retries while leadership moves.
pub async fn request(d: &Dispatcher, request: MembershipRequest) -> Result<(), MembershipError> {
    let deadline = Instant::now() + MEMBERSHIP_TIMEOUT;
    loop {
        let attempt = match d.raft.as_leader() {
            Ok(_) => apply_on_leader(d, request.clone()).await,
            Err(forward) => match forward.leader_node {
                Some(leader) => {
                    let remaining = deadline.saturating_duration_since(Instant::now());
                    match d
                        .peers
                        .call::<_, Result<(), MembershipError>>(
                            &leader.raft,
                            paths::MEMBERSHIP,
                            &request,
                            remaining,
                        )
                        .await
                    {
                        Ok(answer) => answer,
                        Err(PeerError::Unreachable { .. }) => Err(MembershipError::NotLeader),
                        Err(e) => Err(MembershipError::Failed(e.to_string())),
                    }
                }
                None => Err(MembershipError::NotLeader),
            },
        };
        match attempt {
            Err(MembershipError::NotLeader) if Instant::now() < deadline => {
                let before = metrics::snapshot(&d.raft).current_leader;
                let until = Instant::now() + Duration::from_millis(100);
                metrics::wait_until(&d.raft, until, |m| m.current_leader != before).await;
            }
            Err(MembershipError::NotLeader) => {
                return Err(MembershipError::NoLeader(
                    "membership deadline passed".into(),
                ));
            }
            other => return other,
        }
    }
}

/// Runs `request` on this node, which must lead.
pub async fn apply_on_leader(
    d: &Dispatcher,
    request: MembershipRequest,
) -> Result<(), MembershipError> {
    let raft = &d.raft;
    if raft.as_leader().is_err() {
        return Err(MembershipError::NotLeader);
    }
    let failed = |e: openraft::errors::RaftError<
        crate::raft::types::TypeConfig,
        openraft::errors::ClientWriteError<crate::raft::types::TypeConfig>,
    >| {
        match e.api_error() {
            Some(openraft::errors::ClientWriteError::ForwardToLeader(_)) => {
                MembershipError::NotLeader
            }
            _ => MembershipError::Failed(e.to_string()),
        }
    };
    match request {
        MembershipRequest::Add { id, addr } => {
            let membership = current_membership(d);
            if let Some(existing) = membership.get(&id)
                && existing.raft != addr.raft
            {
                return Err(MembershipError::Invalid(format!(
                    "node {id} is already a member at raft address {}",
                    existing.raft
                )));
            }
            refuse_taken_id_worker(&membership, id, &addr)?;
            // Blocking: returns once the learner has caught up with the leader's log.
            raft.add_learner(id, addr, true).await.map_err(failed)?;
            raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                .await
                .map_err(failed)?;
            Ok(())
        }
        MembershipRequest::Remove { id } => {
            if !current_membership(d).contains_key(&id) {
                return Err(MembershipError::Invalid(format!(
                    "node {id} is not a member"
                )));
            }
            raft.change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
                .await
                .map_err(failed)?;
            Ok(())
        }
        MembershipRequest::SetAddr { id, addr } => {
            let membership = current_membership(d);
            match membership.get(&id) {
                None => Err(MembershipError::Invalid(format!(
                    "node {id} is not a member"
                ))),
                Some(existing) if existing.raft != addr.raft => {
                    Err(MembershipError::Invalid(format!(
                        "the raft address of node {id} cannot change ({} -> {})",
                        existing.raft, addr.raft
                    )))
                }
                Some(existing) if *existing == addr => Ok(()),
                Some(_) => {
                    refuse_taken_id_worker(&membership, id, &addr)?;
                    raft.change_membership(
                        ChangeMembers::SetNodes(BTreeMap::from([(id, addr)])),
                        true,
                    )
                    .await
                    .map_err(failed)?;
                    Ok(())
                }
            }
        }
        MembershipRequest::TransferLeader { to } => {
            let voters: BTreeSet<NodeId> = raft.voter_ids().collect();
            if !voters.contains(&to) {
                return Err(MembershipError::Invalid(format!(
                    "node {to} is not a voter"
                )));
            }
            d.lease_reads
                .transfer_leader(raft, to)
                .await
                .map_err(|e| MembershipError::Failed(e.to_string()))
        }
    }
}

/// Refuses `addr` for node `id` when another member already issues Snowflake IDs as the same
/// (datacenter, worker) pair: the two would issue the same IDs. With the worker id derived from
/// the node id this cannot happen between correctly configured members; the check keeps the
/// invariant explicit wherever membership changes.
fn refuse_taken_id_worker(
    members: &BTreeMap<NodeId, NodeAddr>,
    id: NodeId,
    addr: &NodeAddr,
) -> Result<(), MembershipError> {
    let Some(wanted) = addr.id_worker else {
        return Ok(());
    };
    match members
        .iter()
        .find(|(other, a)| **other != id && a.id_worker == Some(wanted))
    {
        Some((other, _)) => Err(MembershipError::Invalid(format!(
            "node {other} already issues Snowflake IDs as datacenter {} worker {}",
            wanted.datacenter, wanted.worker
        ))),
        None => Ok(()),
    }
}

/// Every member (voter or learner) with its addresses, as this node last applied it.
pub fn current_membership(d: &Dispatcher) -> BTreeMap<NodeId, NodeAddr> {
    metrics::snapshot(&d.raft)
        .membership_config
        .membership()
        .nodes()
        .map(|(id, addr)| (*id, addr.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::types::IdWorker;

    fn member(datacenter: u64, worker: u64) -> NodeAddr {
        NodeAddr {
            id_worker: Some(IdWorker { datacenter, worker }),
            ..NodeAddr::default()
        }
    }

    #[test]
    fn a_taken_datacenter_and_worker_pair_is_refused() {
        let members = BTreeMap::from([
            (1, member(0, 1)),
            (2, member(0, 2)),
            (3, NodeAddr::default()),
        ]);
        let refused = refuse_taken_id_worker(&members, 4, &member(0, 2));
        assert!(
            matches!(&refused, Err(MembershipError::Invalid(m)) if m.contains("node 2")),
            "{refused:?}"
        );
        // The same worker in another datacenter, the node's own record, an unregistered one.
        assert!(refuse_taken_id_worker(&members, 4, &member(1, 2)).is_ok());
        assert!(refuse_taken_id_worker(&members, 2, &member(0, 2)).is_ok());
        assert!(refuse_taken_id_worker(&members, 4, &NodeAddr::default()).is_ok());
        assert!(refuse_taken_id_worker(&members, 4, &member(0, 4)).is_ok());
    }
}

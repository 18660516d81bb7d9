//! Leader-local lease reads: the leader answers a linearizable read's index from what it can
//! see locally — its Raft metrics and its engine's applied log id — without a round trip through
//! openraft's core, whenever that is provably as safe as openraft's own lease read.
//!
//! Why it is safe: a quorum acknowledged this leader at `acked` (the time the acknowledged
//! message was *sent*), and voters refuse to vote for anyone else until a lease
//! (`election_timeout_max`, the same value openraft gives them) after they last heard from it.
//! So while `now < acked + lease`, no other leader can exist, and every write acknowledged so far
//! was acknowledged by this leader — after its entry was applied here — or by an earlier one,
//! whose entries precede this leader's first own entry. Once the engine has applied an entry of
//! this leader's term, its applied index therefore covers every acknowledged write.
//!
//! The one exception is a leadership transfer: the voters drop the lease when the leader hands
//! over, so the target can be elected at once. Transfers start only through
//! [`LeaseReads::transfer_leader`], which closes the fast path first and keeps it closed for the
//! term in which the transfer was made, exactly as openraft stops serving reads there.
//!
//! Metrics lag openraft's core by at most one of its loop turns; a stale acknowledgement time
//! is older, hence more conservative, and a stale "still leader" is covered by the lease.
//! Whenever a condition does not hold the caller falls back to openraft's linearizer.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use openraft::errors::Fatal;
use openraft::type_config::async_runtime::Instant as _;

use crate::raft::types::{LogId, LogIndex, NodeId, Raft, TypeConfig};

/// The fast path's state: whether it is on, and which terms a transfer closed it for.
#[derive(Debug)]
pub struct LeaseReads {
    enabled: bool,
    lease: Duration,
    /// Transfers requested and not yet known to openraft's core.
    transfers_in_flight: AtomicUsize,
    /// The highest term in which a transfer was requested (0: none).
    transferred_term: AtomicU64,
    /// Read indexes answered from the lease.
    served: AtomicU64,
}

/// What [`lease_holds`] decides on, read at one moment.
#[derive(Debug, Clone, Copy)]
pub struct LeaseView {
    /// The term this node leads in.
    pub leader_term: u64,
    /// How long ago a quorum acknowledged it; `None` if never (or this node is its own quorum).
    pub acked_ago: Option<Duration>,
    /// The term of the engine's last applied entry.
    pub applied_term: Option<u64>,
    /// A transfer is being handed to openraft's core right now.
    pub transfer_in_flight: bool,
    /// The highest term in which a transfer was requested.
    pub transferred_term: u64,
}

/// Whether a leader seeing `view` may answer a linearizable read from its applied index.
pub fn lease_holds(view: LeaseView, lease: Duration) -> bool {
    !view.transfer_in_flight
        && view.transferred_term < view.leader_term
        && view.acked_ago.is_some_and(|ago| ago < lease)
        && view.applied_term == Some(view.leader_term)
}

impl LeaseReads {
    /// `lease` must be the voters' lease (openraft's `election_timeout_max`).
    pub fn new(enabled: bool, lease: Duration) -> LeaseReads {
        LeaseReads {
            enabled,
            lease,
            transfers_in_flight: AtomicUsize::new(0),
            transferred_term: AtomicU64::new(0),
            served: AtomicU64::new(0),
        }
    }

    /// The index a linearizable read must observe, if this node's lease proves it; `None`
    /// means: ask openraft.
    pub fn read_index(&self, raft: &Raft, applied: Option<LogId>) -> Option<LogIndex> {
        if !self.enabled {
            return None;
        }
        let leader = raft.as_leader().ok()?;
        let leader_term = leader.leader_id().term;
        let acked = leader.last_quorum_acked();
        // Read after the metrics: a transfer not counted here had not been requested when they
        // were read, and the lease below is measured from now, later still.
        let view = LeaseView {
            leader_term,
            acked_ago: acked.map(|at| at.elapsed()),
            applied_term: applied.map(|l| l.leader_id.term),
            transfer_in_flight: self.transfers_in_flight.load(Ordering::SeqCst) > 0,
            transferred_term: self.transferred_term.load(Ordering::SeqCst),
        };
        if !lease_holds(view, self.lease) {
            return None;
        }
        self.served.fetch_add(1, Ordering::Relaxed);
        Some(applied.map(|l| l.index).unwrap_or(0))
    }

    /// Whether linearizable reads may trust the leader lease at all (`lease_reads`); without,
    /// every read index takes a quorum round.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// How many read indexes this node answered from its lease since it started.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// Asks openraft to hand leadership to `to`, closing the fast path for the current term
    /// first. The term is read back from openraft's core after it processed the request, so a
    /// term change racing with it is covered too.
    pub async fn transfer_leader(&self, raft: &Raft, to: NodeId) -> Result<(), Fatal<TypeConfig>> {
        self.transfers_in_flight.fetch_add(1, Ordering::SeqCst);
        let outcome = async {
            raft.trigger().transfer_leader(to).await?;
            raft.with_raft_state(|state| state.vote_ref().leader_id().term)
                .await
        }
        .await;
        if let Ok(term) = &outcome {
            self.transferred_term.fetch_max(*term, Ordering::SeqCst);
        } else {
            // openraft stopped: no term to record, so close the fast path for good.
            self.transferred_term.store(u64::MAX, Ordering::SeqCst);
        }
        self.transfers_in_flight.fetch_sub(1, Ordering::SeqCst);
        outcome.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_millis(1000);

    fn fresh() -> LeaseView {
        LeaseView {
            leader_term: 3,
            acked_ago: Some(Duration::from_millis(10)),
            applied_term: Some(3),
            transfer_in_flight: false,
            transferred_term: 0,
        }
    }

    #[test]
    fn a_fresh_quorum_acknowledgement_in_an_applied_term_holds() {
        assert!(lease_holds(fresh(), LEASE));
    }

    #[test]
    fn an_acknowledgement_as_old_as_the_lease_does_not_hold() {
        let view = LeaseView {
            acked_ago: Some(LEASE),
            ..fresh()
        };
        assert!(!lease_holds(view, LEASE));
        let never = LeaseView {
            acked_ago: None,
            ..fresh()
        };
        assert!(!lease_holds(never, LEASE));
    }

    #[test]
    fn a_leader_that_has_not_applied_its_own_term_does_not_hold() {
        // Entries committed by an earlier leader may still be unapplied here.
        let view = LeaseView {
            applied_term: Some(2),
            ..fresh()
        };
        assert!(!lease_holds(view, LEASE));
        let nothing = LeaseView {
            applied_term: None,
            ..fresh()
        };
        assert!(!lease_holds(nothing, LEASE));
    }

    #[test]
    fn a_transfer_closes_the_fast_path_for_its_term_only() {
        let in_flight = LeaseView {
            transfer_in_flight: true,
            ..fresh()
        };
        assert!(!lease_holds(in_flight, LEASE));
        let this_term = LeaseView {
            transferred_term: 3,
            ..fresh()
        };
        assert!(!lease_holds(this_term, LEASE));
        let later_term = LeaseView {
            leader_term: 4,
            applied_term: Some(4),
            transferred_term: 3,
            ..fresh()
        };
        assert!(lease_holds(later_term, LEASE));
    }
}

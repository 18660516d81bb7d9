//! Explicit transactions across nodes: a session's transaction lives on the leader that began
//! it, and the session stays pinned to that leader until COMMIT or ROLLBACK.
//!
//! The first step (no [`TxnRef`] yet) goes to the current leader, which queues the transaction
//! in its write pipeline and registers it under a fresh id in [`OpenTransactions`]. Every later
//! step names that leader and id: on the leader it is looked up locally, elsewhere it is
//! forwarded over the internal RPC to exactly that node — never to a newer leader, which does
//! not have the transaction. If that node no longer leads, cannot be reached, or forgot the
//! transaction (idle timeout), the step fails with `TransactionLost`: nothing of it was
//! applied, since only COMMIT proposes it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::dispatch::error::RequestError;
use crate::dispatch::write::{TxnOutcome, TxnSteps};
use crate::dispatch::{Dispatcher, Route};
use crate::raft::metrics;
use crate::raft::network::{PeerError, paths};
use crate::raft::types::NodeId;
use crate::storage::engine::TxnStep;
use crate::storage::error::SqlError;

/// Where a session's open transaction lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnRef {
    pub leader: NodeId,
    pub id: u64,
}

/// A step forwarded to the leader: `id` is `None` to begin a transaction with this step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TxnRequest {
    pub id: Option<u64>,
    pub step: TxnStep,
}

/// The transactions open on this node while it leads.
pub struct OpenTransactions {
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, TxnSteps>>,
}

impl Default for OpenTransactions {
    fn default() -> Self {
        OpenTransactions {
            // Ids from a random start, so a restarted leader does not reuse a stale session's id.
            next_id: AtomicU64::new(rand::random::<u64>() >> 1),
            open: Mutex::new(HashMap::new()),
        }
    }
}

impl OpenTransactions {
    fn insert(&self, steps: TxnSteps) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, steps);
        id
    }

    fn get(&self, id: u64) -> Option<TxnSteps> {
        self.lock().get(&id).cloned()
    }

    fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, TxnSteps>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn send_step(steps: &TxnSteps, step: TxnStep) -> Result<TxnOutcome, RequestError> {
    let (reply, answer) = oneshot::channel();
    match steps.send((step, reply)).await {
        Ok(()) => answer.await.unwrap_or_else(|_| Err(forgotten())),
        Err(_) => Err(forgotten()),
    }
}

fn forgotten() -> RequestError {
    RequestError::TransactionLost(
        "the leader no longer has this transaction (it was idle too long, or leadership moved); \
         it was rolled back"
            .into(),
    )
}

impl Dispatcher {
    /// Runs one step of a session's explicit transaction; `txn` is `None` to begin one with
    /// this step. Returns where the transaction lives (for the next step) and the outcome.
    pub async fn transaction(
        &self,
        txn: Option<TxnRef>,
        step: TxnStep,
    ) -> Result<(TxnRef, TxnOutcome), RequestError> {
        let deadline = Instant::now() + self.timeouts.write;
        match txn {
            None => {
                let step = &step;
                self.on_leader(deadline, move |route| async move {
                    match route {
                        Route::Local => self
                            .local_transaction(None, step.clone(), deadline)
                            .await
                            .map(|(id, outcome)| {
                                let txn = TxnRef {
                                    leader: self.node_id,
                                    id,
                                };
                                (txn, outcome)
                            }),
                        Route::Forward(leader) => {
                            let leader_id = metrics::snapshot(&self.raft)
                                .current_leader
                                .ok_or(RequestError::NotLeader { leader: None })?;
                            self.forward_transaction(&leader.raft, None, step.clone(), deadline)
                                .await
                                .map(|(id, outcome)| {
                                    let txn = TxnRef {
                                        leader: leader_id,
                                        id,
                                    };
                                    (txn, outcome)
                                })
                        }
                    }
                })
                .await
            }
            Some(txn) if txn.leader == self.node_id => self
                .local_transaction(Some(txn.id), step, deadline)
                .await
                .map(|(_, outcome)| (txn, outcome)),
            Some(txn) => {
                let m = metrics::snapshot(&self.raft);
                if m.current_leader != Some(txn.leader) {
                    return Err(RequestError::TransactionLost(format!(
                        "node {} no longer leads; the transaction begun there was rolled back",
                        txn.leader
                    )));
                }
                let Some(addr) = m
                    .membership_config
                    .membership()
                    .get_node(&txn.leader)
                    .cloned()
                else {
                    return Err(forgotten());
                };
                let commit = step == TxnStep::Commit;
                match self
                    .forward_transaction(&addr.raft, Some(txn.id), step, deadline)
                    .await
                {
                    Ok((_, outcome)) => Ok((txn, outcome)),
                    // A COMMIT that reached the leader may have committed.
                    Err(RequestError::NotLeader { .. }) if !commit => Err(forgotten()),
                    Err(RequestError::NotLeader { .. }) => Err(RequestError::TransactionLost(
                        "the leader could not be reached; the transaction was not committed".into(),
                    )),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Leader side of a step: begins the transaction when `id` is `None`.
    pub async fn local_transaction(
        &self,
        id: Option<u64>,
        step: TxnStep,
        deadline: Instant,
    ) -> Result<(u64, TxnOutcome), RequestError> {
        if self.raft.as_leader().is_err() {
            return match id {
                None => Err(RequestError::NotLeader { leader: None }),
                Some(_) => Err(forgotten()),
            };
        }
        if id.is_none() && matches!(step, TxnStep::Commit | TxnStep::Rollback | TxnStep::Begin) {
            return Err(RequestError::Sql(SqlError::InvalidRequest(
                "a transaction begins with a statement or a savepoint".into(),
            )));
        }
        let begins = id.is_none();
        let ends = matches!(step, TxnStep::Commit | TxnStep::Rollback);
        let (id, steps) = match id {
            Some(id) => (id, self.transactions.get(id).ok_or_else(forgotten)?),
            None => {
                let steps = self.pipeline.begin_transaction(deadline).await?;
                (self.transactions.insert(steps.clone()), steps)
            }
        };
        let outcome = send_step(&steps, step).await;
        if begins && outcome.is_err() {
            // The session never learns this transaction's id: it must not outlive the failure.
            let _ = send_step(&steps, TxnStep::Rollback).await;
            self.transactions.remove(id);
        } else if ends
            || matches!(
                outcome,
                Err(RequestError::TransactionLost(_) | RequestError::Deadlock(_))
            )
            || steps.is_closed()
        {
            self.transactions.remove(id);
        }
        outcome.map(|o| (id, o))
    }

    async fn forward_transaction(
        &self,
        leader: &str,
        id: Option<u64>,
        step: TxnStep,
        deadline: Instant,
    ) -> Result<(u64, TxnOutcome), RequestError> {
        let commit = step == TxnStep::Commit;
        let remaining = deadline.saturating_duration_since(Instant::now());
        let request = TxnRequest { id, step };
        let call = self
            .peers
            .call::<_, Result<(u64, TxnOutcome), RequestError>>(
                leader,
                paths::TRANSACTION,
                &request,
                remaining,
            );
        // A statement gives up once the leader has been silent for a few election timeouts
        // (it is gone, and the transaction with it; a dead process usually fails the call at
        // once anyway). Not sooner: a busy leader (a big transaction's entry, a loaded
        // machine) can miss a heartbeat or two, and giving up would kill a healthy
        // transaction. A COMMIT waits for its answer until the deadline: giving up early would
        // leave the client guessing whether it committed.
        let silence = async {
            if commit {
                std::future::pending::<()>().await
            } else {
                self.leader_silent_for(self.timeouts.leader_wait).await
            }
        };
        let reply = tokio::select! {
            reply = call => reply,
            () = silence => {
                self.abandon_on_leader(leader, id);
                return Err(RequestError::TransactionLost(format!(
                    "lost contact with the leader at {leader}"
                )));
            }
        };
        match reply {
            Ok(answer) => answer,
            // Never reached the leader.
            Err(PeerError::Unreachable { .. }) => Err(RequestError::NotLeader { leader: None }),
            Err(e) if commit => Err(RequestError::OutcomeUnknown(e.to_string())),
            Err(e) => {
                self.abandon_on_leader(leader, id);
                Err(RequestError::TransactionLost(format!(
                    "the leader did not answer ({e})"
                )))
            }
        }
    }

    /// The session was told its transaction is lost: ask the leader (best effort) to roll it
    /// back now, so that it does not keep its rows until the idle timeout — a step waiting
    /// there for another transaction's rows outlasts the forwarding deadline.
    fn abandon_on_leader(&self, leader: &str, id: Option<u64>) {
        let Some(id) = id else {
            return;
        };
        let peers = self.peers.clone();
        let leader = leader.to_owned();
        let timeout = self.timeouts.write;
        tokio::spawn(async move {
            let request = TxnRequest {
                id: Some(id),
                step: TxnStep::Rollback,
            };
            let rolled_back = peers
                .call::<_, Result<(u64, TxnOutcome), RequestError>>(
                    &leader,
                    paths::TRANSACTION,
                    &request,
                    timeout,
                )
                .await;
            if let Err(e) = rolled_back {
                tracing::debug!("could not roll back an abandoned transaction on {leader}: {e}");
            }
        });
    }
}

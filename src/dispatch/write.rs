//! The leader's write pipeline: batches concurrent client transactions, executes them in the
//! engine's open batch, proposes their effects to Raft together, and answers every client once
//! the batch is committed and visible.
//!
//! Life of a batch (one task owns the loop, so batches never overlap):
//! 1. take every queued request, up to [`MAX_BATCH`];
//! 2. check this node leads and has applied its own term's first entry (so no earlier leader's
//!    entry can still be ahead of what it executes);
//! 3. [`Engine::execute`] runs each request in a savepoint of the open transaction;
//! 4. `Raft::client_write_many` proposes all effects at once: one log append, one fsync, one
//!    replication round for the batch;
//! 5. when every proposal is applied the engine commits; if any proposal failed, the batch is
//!    rolled back ([`Engine::abort_batch`]) keeping what Raft did commit;
//! 6. each client gets its result, or `OutcomeUnknown` for a proposal lost to a leader change.

use std::time::Duration;

use futures::StreamExt;
use openraft::errors::ClientWriteError;
use tokio::sync::{mpsc, oneshot};

use crate::dispatch::error::RequestError;
use crate::raft::types::{Command, LogIndex, Raft};
use crate::storage::engine::{Engine, Executed};
use crate::storage::request::{Statement, StatementResult};

/// Most client transactions in one batch.
pub const MAX_BATCH: usize = 512;
/// Queued client transactions; submitters wait (back-pressure) beyond it.
const QUEUE: usize = 8192;
/// How long a leader may take to be ready (its log applied) before writes are refused.
const LEADER_READY_TIMEOUT: Duration = Duration::from_secs(3);

/// Bounds of the pipeline.
#[derive(Debug, Clone, Copy)]
pub struct PipelineSettings {
    /// How long a batch may wait for Raft to commit it; past it the outcome is unknown.
    pub commit_timeout: Duration,
    /// A leader not acknowledged by a quorum within this is presumed cut off (minority side)
    /// and refuses new writes instead of proposing entries that cannot commit.
    pub leader_lease: Duration,
}

/// A committed write's answer.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WriteOutcome {
    pub results: Vec<StatementResult>,
    /// The log index the transaction committed at (or the applied index when it changed nothing).
    pub index: LogIndex,
}

type Reply = oneshot::Sender<Result<WriteOutcome, RequestError>>;

/// Handle to submit transactions to this node's pipeline (only useful while it leads).
#[derive(Clone)]
pub struct WritePipeline {
    queue: mpsc::Sender<(Vec<Statement>, Reply)>,
}

impl WritePipeline {
    pub fn start(raft: Raft, engine: Engine, settings: PipelineSettings) -> WritePipeline {
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(raft, engine, settings, rx));
        WritePipeline { queue }
    }

    /// Executes one transaction on this node, which must be the leader.
    pub async fn submit(&self, statements: Vec<Statement>) -> Result<WriteOutcome, RequestError> {
        let (reply, rx) = oneshot::channel();
        self.queue
            .send((statements, reply))
            .await
            .map_err(|_| RequestError::Unavailable("write pipeline stopped".into()))?;
        rx.await
            .map_err(|_| RequestError::Unavailable("write pipeline stopped".into()))?
    }
}

async fn run(
    raft: Raft,
    engine: Engine,
    settings: PipelineSettings,
    mut rx: mpsc::Receiver<(Vec<Statement>, Reply)>,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let (requests, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        let answers = match run_batch(&raft, &engine, settings, requests).await {
            Ok(answers) => answers,
            Err(e) => vec![Err(e); replies.len()],
        };
        for (reply, answer) in replies.into_iter().zip(answers) {
            let _ = reply.send(answer);
        }
    }
}

async fn run_batch(
    raft: &Raft,
    engine: &Engine,
    settings: PipelineSettings,
    requests: Vec<Vec<Statement>>,
) -> Result<Vec<Result<WriteOutcome, RequestError>>, RequestError> {
    wait_until_ready_to_lead(raft, engine, settings).await?;
    let executed = engine
        .execute(requests)
        .await
        .map_err(|e| RequestError::Unavailable(format!("storage: {e}")))?;

    // Propose every request that changed something, in execution order.
    let to_propose: Vec<&Executed> = executed
        .results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .filter(|e| !e.parts.is_empty())
        .collect();
    let commands: Vec<Command> = to_propose
        .iter()
        .map(|e| Command::Write {
            proposal: e.proposal,
            parts: e.parts.clone(),
        })
        .collect();
    let mut committed_at = Vec::with_capacity(commands.len());
    let mut any_failed = false;
    if !commands.is_empty() {
        let commit_deadline = tokio::time::Instant::now() + settings.commit_timeout;
        match raft.client_write_many(commands).await {
            Ok(mut stream) => {
                while let Ok(Some(item)) =
                    tokio::time::timeout_at(commit_deadline, stream.next()).await
                {
                    let outcome = match item {
                        Ok(Ok(response)) => Ok(response.log_id.index),
                        Ok(Err(ClientWriteError::ForwardToLeader(f))) => {
                            Err(RequestError::NotLeader {
                                leader: f.leader_id,
                            })
                        }
                        Ok(Err(e)) => Err(RequestError::OutcomeUnknown(e.to_string())),
                        Err(fatal) => Err(RequestError::Unavailable(fatal.to_string())),
                    };
                    any_failed |= outcome.is_err();
                    committed_at.push(outcome);
                }
            }
            Err(fatal) => tracing::error!("raft stopped while proposing: {fatal}"),
        }
        while committed_at.len() < to_propose.len() {
            any_failed = true;
            committed_at.push(Err(RequestError::OutcomeUnknown(
                "not committed in time (the leader may have lost its quorum); it may still commit later".into(),
            )));
        }
    }
    if any_failed {
        engine
            .abort_batch(executed.batch_id)
            .await
            .map_err(|e| RequestError::Unavailable(format!("storage: {e}")))?;
    }

    let applied = engine.visible().borrow().map(|l| l.index).unwrap_or(0);
    let mut committed_at = committed_at.into_iter();
    Ok(executed
        .results
        .into_iter()
        .map(|result| {
            let executed = result.map_err(RequestError::Sql)?;
            let index = if executed.parts.is_empty() {
                applied
            } else {
                committed_at.next().unwrap_or_else(|| {
                    Err(RequestError::OutcomeUnknown("proposal missing".into()))
                })?
            };
            Ok(WriteOutcome {
                results: executed.results,
                index,
            })
        })
        .collect())
}

/// Waits until this node leads, still holds its quorum (lease), and its engine has committed
/// everything in its log, an entry of the current term included. Only then can a batch be
/// executed on exactly the state its entries will follow in the log.
async fn wait_until_ready_to_lead(
    raft: &Raft,
    engine: &Engine,
    settings: PipelineSettings,
) -> Result<(), RequestError> {
    use openraft::type_config::async_runtime::{Instant as _, WatchReceiver};
    let leader = raft.as_leader().map_err(|f| RequestError::NotLeader {
        leader: f.leader_id,
    })?;
    if let Some(acked) = leader.last_quorum_acked()
        && acked.elapsed() > settings.leader_lease
    {
        return Err(RequestError::NoLeader(format!(
            "the leader has not heard from a majority for {} ms: it cannot commit writes",
            acked.elapsed().as_millis()
        )));
    }
    let term = leader.leader_id().term;
    let mut visible = engine.visible();
    let mut metrics = raft.metrics();
    let deadline = tokio::time::Instant::now() + LEADER_READY_TIMEOUT;
    loop {
        let last_log = metrics.borrow_watched().last_log_index.unwrap_or(0);
        let applied = *visible.borrow_and_update();
        if applied.is_some_and(|l| l.leader_id.term >= term && l.index >= last_log) {
            return Ok(());
        }
        tokio::select! {
            changed = visible.changed() => if changed.is_err() {
                return Err(RequestError::Unavailable("storage stopped".into()));
            },
            _ = metrics.changed() => {}
            _ = tokio::time::sleep_until(deadline) => {
                return Err(RequestError::NoLeader(format!(
                    "the leader has not applied its log yet (applied {:?}, log {last_log})",
                    applied.map(|l| l.index)
                )));
            }
        }
    }
}

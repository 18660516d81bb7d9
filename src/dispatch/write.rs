//! The leader's write pipeline: batches concurrent client transactions, executes them in the
//! engine's open batch, proposes their effects to Raft together, and answers every client once
//! the batch is committed and visible.
//!
//! Life of a batch (one task owns the loop, so batches never overlap):
//! 1. take every queued request, up to [`MAX_BATCH`];
//! 2. check this node leads and has applied its own term's first entry (so no earlier leader's
//!    entry can still be ahead of what it executes);
//! 3. [`Engine::execute`] runs each request in a savepoint of the open transaction, with one
//!    session recording the changes of all of them;
//! 4. the batch's combined effects become one Raft entry (`Raft::client_write`): one log
//!    append, one fsync, one replication round and one apply on each follower for the batch;
//! 5. when the entry is applied the engine commits; if the proposal failed, the batch is
//!    rolled back ([`Engine::abort_batch`]) keeping what Raft did commit;
//! 6. each client gets its own result, or `OutcomeUnknown` if the entry was lost to a leader
//!    change (or `NotLeader`, retried elsewhere, if it was refused before being appended).

use std::time::Duration;

use openraft::errors::ClientWriteError;
use tokio::sync::{mpsc, oneshot};

use crate::dispatch::error::RequestError;
use crate::raft::types::{Command, LogIndex, Raft, TypeConfig};
use crate::storage::engine::Engine;
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
    let mut unresolved: Option<Unresolved> = None;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let (requests, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        let answers = match run_batch(&raft, &engine, settings, &mut unresolved, requests).await {
            Ok(answers) => answers,
            Err(e) => vec![Err(e); replies.len()],
        };
        for (reply, answer) in replies.into_iter().zip(answers) {
            let _ = reply.send(answer);
        }
    }
}

/// A proposed batch whose clients were answered `OutcomeUnknown` after `commit_timeout` while
/// openraft still held the proposal. No new batch executes until openraft has decided it:
/// rolling the batch back earlier could let the proposal be appended after batches executed
/// without it.
struct Unresolved {
    batch_id: u64,
    outcome: tokio::task::JoinHandle<ClientWriteResult>,
}

type ClientWriteResult = Result<
    openraft::raft::ClientWriteResponse<TypeConfig>,
    openraft::errors::RaftError<TypeConfig, ClientWriteError<TypeConfig>>,
>;

/// Waits (bounded) for an earlier unresolved proposal; rolls its batch back if it failed.
async fn settle_unresolved(
    engine: &Engine,
    unresolved: &mut Option<Unresolved>,
) -> Result<(), RequestError> {
    let Some(pending) = unresolved.as_mut() else {
        return Ok(());
    };
    let joined = tokio::time::timeout(LEADER_READY_TIMEOUT, &mut pending.outcome)
        .await
        .map_err(|_| {
            RequestError::NoLeader(
                "an earlier write is still waiting for a majority: the leader cannot commit".into(),
            )
        })?;
    let batch_id = pending.batch_id;
    *unresolved = None;
    if !matches!(joined, Ok(Ok(_))) {
        engine
            .abort_batch(batch_id)
            .await
            .map_err(|e| RequestError::Unavailable(format!("storage: {e}")))?;
    }
    Ok(())
}

async fn run_batch(
    raft: &Raft,
    engine: &Engine,
    settings: PipelineSettings,
    unresolved: &mut Option<Unresolved>,
    requests: Vec<Vec<Statement>>,
) -> Result<Vec<Result<WriteOutcome, RequestError>>, RequestError> {
    settle_unresolved(engine, unresolved).await?;
    wait_until_ready_to_lead(raft, engine, settings).await?;
    let executed = engine
        .execute(requests)
        .await
        .map_err(|e| RequestError::Unavailable(format!("storage: {e}")))?;

    // The whole batch is one entry: one append, one fsync, one replication round, one apply.
    let committed: Result<LogIndex, RequestError> = match executed.proposal {
        None => Ok(engine.visible().borrow().map(|l| l.index).unwrap_or(0)),
        Some(proposal) => {
            let command = Command::Write {
                proposal,
                parts: executed.parts,
            };
            let proposer = raft.clone();
            let mut proposal = tokio::spawn(async move { proposer.client_write(command).await });
            let mut deferred = false;
            let outcome = match tokio::time::timeout(settings.commit_timeout, &mut proposal).await {
                Ok(Ok(Ok(response))) => Ok(response.log_id.index),
                Ok(Ok(Err(e))) => Err(match e.api_error() {
                    // Refused before it was appended: safe to retry on the new leader.
                    Some(ClientWriteError::ForwardToLeader(f)) => RequestError::NotLeader {
                        leader: f.leader_id,
                    },
                    _ => RequestError::OutcomeUnknown(e.to_string()),
                }),
                Ok(Err(join)) => Err(RequestError::OutcomeUnknown(join.to_string())),
                Err(_) => {
                    deferred = true;
                    *unresolved = Some(Unresolved {
                        batch_id: executed.batch_id,
                        outcome: proposal,
                    });
                    Err(RequestError::OutcomeUnknown(
                        "not committed in time (the leader may have lost its quorum); it may still commit later".into(),
                    ))
                }
            };
            if outcome.is_err() && !deferred {
                engine
                    .abort_batch(executed.batch_id)
                    .await
                    .map_err(|e| RequestError::Unavailable(format!("storage: {e}")))?;
            }
            outcome
        }
    };
    Ok(executed
        .results
        .into_iter()
        .map(|result| {
            let results = result.map_err(RequestError::Sql)?;
            Ok(WriteOutcome {
                results,
                index: committed.clone()?,
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
    // A sole voter is its own quorum: nobody else acknowledges it, and nobody needs to.
    let sole_voter = raft.voter_ids().count() <= 1;
    if !sole_voter
        && let Some(acked) = leader.last_quorum_acked()
        && acked.elapsed() > settings.leader_lease
    {
        // Not leading usefully right now: a leader just resumed (e.g. after SIGCONT) regains
        // its lease with the next heartbeats, a cut-off one never does. Either way the
        // dispatcher's leader loop decides, retrying until its `leader_wait` runs out.
        tracing::debug!(
            "the leader has not heard from a majority for {} ms: it cannot commit writes",
            acked.elapsed().as_millis()
        );
        return Err(RequestError::NotLeader { leader: None });
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

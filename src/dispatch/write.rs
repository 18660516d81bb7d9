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
//!
//! An interactive transaction (PostgreSQL `BEGIN ... COMMIT`) takes its turn in the same queue
//! ([`WritePipeline::begin_transaction`]): when its turn comes the loop opens it in the engine
//! and then serves only its steps — other writes wait, as they would for SQLite's one writer —
//! until it commits (proposed like a batch), rolls back, or stays idle longer than
//! `txn_idle_timeout` (rolled back, so one forgotten session cannot stall every writer).

use std::time::Duration;

use openraft::errors::ClientWriteError;
use tokio::sync::{mpsc, oneshot};

use crate::dispatch::error::RequestError;
use crate::raft::types::{Command, LogIndex, Raft, TypeConfig};
use crate::storage::engine::{Engine, ExecutedBatch, TxnAnswer, TxnError, TxnStep};
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
    /// An interactive transaction waiting longer than this for its client's next step is
    /// rolled back: while it is open no other write can run.
    pub txn_idle_timeout: Duration,
}

/// A committed write's answer.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WriteOutcome {
    pub results: Vec<StatementResult>,
    /// The log index the transaction committed at (or the applied index when it changed nothing).
    pub index: LogIndex,
}

type Reply = oneshot::Sender<Result<WriteOutcome, RequestError>>;

/// What a step of an interactive transaction produced, as the client sees it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum TxnOutcome {
    Executed(StatementResult),
    /// A savepoint step or a rollback.
    Done,
    /// Committed at this log index (or the applied index when it changed nothing).
    Committed(LogIndex),
}

type TxnReply = oneshot::Sender<Result<TxnOutcome, RequestError>>;

/// Sends the steps of one open interactive transaction to the pipeline.
pub type TxnSteps = mpsc::Sender<(TxnStep, TxnReply)>;

/// One queued unit of work.
enum Job {
    /// An autocommit transaction: batched with its neighbours.
    Write(Vec<Statement>, Reply),
    /// An interactive transaction waiting for its turn.
    Transaction {
        steps: mpsc::Receiver<(TxnStep, TxnReply)>,
        begun: oneshot::Sender<Result<(), RequestError>>,
    },
}

/// Handle to submit transactions to this node's pipeline (only useful while it leads).
#[derive(Clone)]
pub struct WritePipeline {
    queue: mpsc::Sender<Job>,
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
            .send(Job::Write(statements, reply))
            .await
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    /// Queues an interactive transaction and waits (until `deadline`) for its turn: then it is
    /// open in the engine and the returned sender drives it. Dropping the sender rolls it back.
    pub async fn begin_transaction(
        &self,
        deadline: std::time::Instant,
    ) -> Result<TxnSteps, RequestError> {
        let (steps, steps_rx) = mpsc::channel(1);
        let (begun, begun_rx) = oneshot::channel();
        self.queue
            .send(Job::Transaction {
                steps: steps_rx,
                begun,
            })
            .await
            .map_err(|_| stopped())?;
        match tokio::time::timeout_at(deadline.into(), begun_rx).await {
            Ok(Ok(result)) => result.map(|()| steps),
            Ok(Err(_)) => Err(stopped()),
            // Dropping `steps` now makes the pipeline roll it back if it begins later.
            Err(_) => Err(RequestError::Timeout(
                "waited too long for other transactions to finish".into(),
            )),
        }
    }
}

fn stopped() -> RequestError {
    RequestError::Unavailable("write pipeline stopped".into())
}

async fn run(raft: Raft, engine: Engine, settings: PipelineSettings, mut rx: mpsc::Receiver<Job>) {
    let mut unresolved: Option<Unresolved> = None;
    let mut next: Option<Job> = None;
    loop {
        let first = match next.take() {
            Some(job) => job,
            None => match rx.recv().await {
                Some(job) => job,
                None => return,
            },
        };
        let mut batch = match first {
            Job::Write(statements, reply) => vec![(statements, reply)],
            Job::Transaction { steps, begun } => {
                run_transaction(&raft, &engine, settings, &mut unresolved, steps, begun).await;
                continue;
            }
        };
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Job::Write(statements, reply)) => batch.push((statements, reply)),
                Ok(transaction) => {
                    // Its turn comes right after this batch.
                    next = Some(transaction);
                    break;
                }
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

/// Serves one interactive transaction from its turn to its end.
async fn run_transaction(
    raft: &Raft,
    engine: &Engine,
    settings: PipelineSettings,
    unresolved: &mut Option<Unresolved>,
    mut steps: mpsc::Receiver<(TxnStep, TxnReply)>,
    begun: oneshot::Sender<Result<(), RequestError>>,
) {
    if begun.is_closed() {
        return; // The client gave up waiting.
    }
    let opened = async {
        settle_unresolved(engine, unresolved).await?;
        wait_until_ready_to_lead(raft, engine, settings).await?;
        let term =
            raft.as_leader()
                .map(|l| l.leader_id().term)
                .map_err(|f| RequestError::NotLeader {
                    leader: f.leader_id,
                })?;
        engine
            .transaction(TxnStep::Begin)
            .await
            .map_err(txn_request_error)?;
        Ok(term)
    }
    .await;
    let term = match opened {
        Ok(term) => term,
        Err(e) => {
            let _ = begun.send(Err(e));
            return;
        }
    };
    if begun.send(Ok(())).is_err() {
        rollback(engine).await;
        return;
    }
    loop {
        let (step, reply) =
            match tokio::time::timeout(settings.txn_idle_timeout, steps.recv()).await {
                Ok(Some(step)) => step,
                Ok(None) => {
                    // The session ended (client gone) without COMMIT.
                    rollback(engine).await;
                    return;
                }
                Err(_) => {
                    tracing::info!(
                        "rolling back a transaction idle for more than {} ms",
                        settings.txn_idle_timeout.as_millis()
                    );
                    rollback(engine).await;
                    return;
                }
            };
        let still_leading = raft.as_leader().is_ok_and(|l| l.leader_id().term == term);
        if !still_leading {
            rollback(engine).await;
            let _ = reply.send(Err(RequestError::TransactionLost(
                "leadership moved to another node during the transaction; it was rolled back"
                    .into(),
            )));
            return;
        }
        let ends = matches!(step, TxnStep::Commit | TxnStep::Rollback);
        let answer = match engine.transaction(step).await {
            Ok(TxnAnswer::Committed(executed)) => {
                propose(raft, engine, settings, unresolved, executed)
                    .await
                    .map(TxnOutcome::Committed)
            }
            Ok(TxnAnswer::Executed(result)) => Ok(TxnOutcome::Executed(result)),
            Ok(TxnAnswer::Done | TxnAnswer::Begun) => Ok(TxnOutcome::Done),
            Err(e) => Err(txn_request_error(e)),
        };
        let lost = matches!(answer, Err(RequestError::TransactionLost(_)));
        let _ = reply.send(answer);
        if ends || lost {
            return;
        }
    }
}

async fn rollback(engine: &Engine) {
    if let Err(e) = engine.transaction(TxnStep::Rollback).await {
        tracing::warn!("rolling back an interactive transaction failed: {e}");
    }
}

fn txn_request_error(e: TxnError) -> RequestError {
    match e {
        TxnError::Sql(sql) => RequestError::Sql(sql),
        TxnError::Lost(message) => RequestError::TransactionLost(message),
        TxnError::Engine(engine) => RequestError::Unavailable(format!("storage: {engine}")),
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
    let mut executed = engine
        .execute(requests)
        .await
        .map_err(|e| RequestError::Unavailable(format!("storage: {e}")))?;
    let results = std::mem::take(&mut executed.results);
    let committed = propose(raft, engine, settings, unresolved, executed).await;
    Ok(results
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

/// Proposes an executed batch's effects as one Raft entry — one append, one fsync, one
/// replication round, one apply — and waits (bounded) for it to commit; on failure the batch
/// is rolled back. Returns the index it committed at.
async fn propose(
    raft: &Raft,
    engine: &Engine,
    settings: PipelineSettings,
    unresolved: &mut Option<Unresolved>,
    executed: ExecutedBatch,
) -> Result<LogIndex, RequestError> {
    match executed.proposal {
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
    }
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

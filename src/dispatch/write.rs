//! The leader's write pipeline: batches concurrent client transactions, executes them in the
//! engine's open batch, proposes their effects to Raft together, and answers every client once
//! the batch is committed and visible.
//!
//! Life of a batch (one task owns the loop, so batches never overlap; everything queued while
//! the previous group was committing forms the next *group*, whose entries are proposed
//! together, see [`propose_group`]):
//! 1. take every queued request and COMMIT, up to [`MAX_BATCH`];
//! 2. check this node leads and has applied its own term's first entry (so no earlier leader's
//!    entry can still be ahead of what it executes);
//! 3. [`Engine::execute`] runs each request in a savepoint of the open transaction, with one
//!    session recording the changes of all of them; a request touching a row that an open
//!    interactive transaction owns is undone and queued again once a transaction ends;
//! 4. the batch's combined effects become one Raft entry, each COMMIT one more
//!    (`Raft::client_write_many`): one log append, one fsync, one replication round and one
//!    apply on each follower for the group;
//! 5. when the entries are applied the engine commits; if a proposal failed, the batch is
//!    rolled back ([`Engine::abort_batch`]) keeping what Raft did commit;
//! 6. each client gets its own result, or `OutcomeUnknown` if the entry was lost to a leader
//!    change (or `NotLeader`, retried elsewhere, if it was refused before being appended).
//!
//! An interactive transaction (PostgreSQL `BEGIN ... COMMIT`) is served by a task of its own
//! ([`WritePipeline::begin_transaction`]): its statements run in the engine as they arrive,
//! interleaved with other transactions' and batches (`storage::engine` parks and resumes them
//! and keeps their row locks); a statement that must wait for another transaction's rows is
//! sent again when a transaction ends; a session that stops waiting (a cancel, a follower's
//! forwarding deadline) rolls the transaction back. Only its COMMIT goes through the queue, so
//! its entry takes its place in the log order the engine executed. It is rolled back when its
//! session goes away, when leadership moves, or after `txn_idle_timeout` without a step.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use openraft::errors::ClientWriteError;
use tokio::sync::{mpsc, oneshot, watch};

use crate::dispatch::error::RequestError;
use crate::raft::types::{Command, LogIndex, Raft};
use crate::storage::engine::{Engine, ExecutedBatch, TxnAnswer, TxnError, TxnId, TxnStep};
use crate::storage::error::SqlError;
use crate::storage::request::{Statement, StatementResult};
use futures::StreamExt;

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
    /// rolled back: while it is open it holds the rows it changed.
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
    /// The COMMIT of an open interactive transaction: its effects join the group like a batch.
    Commit { id: TxnId, reply: TxnReply },
}

/// Handle to submit transactions to this node's pipeline (only useful while it leads).
#[derive(Clone)]
pub struct WritePipeline {
    queue: mpsc::Sender<Job>,
    counters: Arc<Counters>,
    raft: Raft,
    engine: Engine,
    settings: PipelineSettings,
    next_txn: Arc<AtomicU64>,
}

/// How the pipeline has grouped its work since the node started.
#[derive(Debug, Default)]
struct Counters {
    groups: AtomicU64,
    entries: AtomicU64,
}

/// A snapshot of [`Counters`], for status and metrics.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct PipelineStats {
    /// Groups executed and proposed together.
    pub groups: u64,
    /// Raft entries proposed.
    pub entries: u64,
}

impl WritePipeline {
    pub fn start(raft: Raft, engine: Engine, settings: PipelineSettings) -> WritePipeline {
        let (queue, rx) = mpsc::channel(QUEUE);
        let counters = Arc::new(Counters::default());
        tokio::spawn(run(
            raft.clone(),
            engine.clone(),
            settings,
            rx,
            queue.downgrade(),
            counters.clone(),
        ));
        WritePipeline {
            queue,
            counters,
            raft,
            engine,
            settings,
            next_txn: Arc::new(AtomicU64::new(1)),
        }
    }

    pub fn stats(&self) -> PipelineStats {
        PipelineStats {
            groups: self.counters.groups.load(Ordering::Relaxed),
            entries: self.counters.entries.load(Ordering::Relaxed),
        }
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

    /// Opens an interactive transaction in the engine once this node is ready to lead, and
    /// returns the sender that drives it. Dropping the sender rolls it back.
    pub async fn begin_transaction(
        &self,
        deadline: std::time::Instant,
    ) -> Result<TxnSteps, RequestError> {
        let opened = async {
            wait_until_ready_to_lead(&self.raft, &self.engine, self.settings).await?;
            let term = self
                .raft
                .as_leader()
                .map(|l| l.leader_id().term)
                .map_err(|f| RequestError::NotLeader {
                    leader: f.leader_id,
                })?;
            let id = self.next_txn.fetch_add(1, Ordering::Relaxed);
            self.engine
                .transaction(id, TxnStep::Begin)
                .await
                .map_err(txn_request_error)?;
            Ok::<_, RequestError>((id, term))
        };
        let (id, term) = match tokio::time::timeout_at(deadline.into(), opened).await {
            Ok(opened) => opened?,
            Err(_) => {
                return Err(RequestError::Timeout(
                    "the leader was not ready to begin a transaction in time".into(),
                ));
            }
        };
        let (steps, steps_rx) = mpsc::channel(1);
        tokio::spawn(serve_transaction(
            id,
            term,
            self.raft.clone(),
            self.engine.clone(),
            self.settings,
            self.queue.downgrade(),
            steps_rx,
        ));
        Ok(steps)
    }
}

fn stopped() -> RequestError {
    RequestError::Unavailable("write pipeline stopped".into())
}

async fn run(
    raft: Raft,
    engine: Engine,
    settings: PipelineSettings,
    mut rx: mpsc::Receiver<Job>,
    queue: mpsc::WeakSender<Job>,
    counters: Arc<Counters>,
) {
    let mut unresolved: Option<Unresolved> = None;
    loop {
        let first = match rx.recv().await {
            Some(job) => job,
            None => return,
        };
        let ready = async {
            settle_unresolved(&engine, &mut unresolved).await?;
            wait_until_ready_to_lead(&raft, &engine, settings).await
        }
        .await;
        if let Err(e) = ready {
            refuse(first, &mut rx, e);
            continue;
        }
        // Everything queued (while the previous group was committing) forms this group: the
        // autocommit writes one batch, each COMMIT an entry of its own, proposed together.
        let mut writes = Vec::new();
        let mut commits = Vec::new();
        let mut job = Some(first);
        while let Some(next) = job.take() {
            match next {
                Job::Write(statements, reply) => writes.push((statements, reply)),
                Job::Commit { id, reply } => commits.push((id, reply)),
            }
            if writes.len() + commits.len() < MAX_BATCH {
                job = rx.try_recv().ok();
            }
        }
        let mut group = Group::default();
        if !writes.is_empty() {
            execute_batch(&engine, writes, &mut group, &queue).await;
        }
        for (id, reply) in commits {
            commit_transaction(&engine, id, reply, &mut group, &queue).await;
        }
        counters.groups.fetch_add(1, Ordering::Relaxed);
        counters
            .entries
            .fetch_add(group.commands.len() as u64, Ordering::Relaxed);
        propose_group(&raft, &engine, settings, &mut unresolved, group).await;
    }
}

/// Answers a job, and the jobs queued behind it, with `error`.
fn refuse(job: Job, rx: &mut mpsc::Receiver<Job>, error: RequestError) {
    let mut next = Some(job);
    while let Some(job) = next.take() {
        match job {
            Job::Write(_, reply) => {
                let _ = reply.send(Err(error.clone()));
            }
            Job::Commit { reply, .. } => {
                let _ = reply.send(Err(error.clone()));
            }
        }
        next = rx.try_recv().ok();
    }
}

/// Jobs executed back to back in the engine's open batch, waiting to be proposed together
/// (one `client_write_many`: appended in one go, in order, or refused together).
#[derive(Default)]
struct Group {
    batch_ids: Vec<u64>,
    commands: Vec<Command>,
    waiters: Vec<Waiter>,
}

/// Clients waiting for a group's outcome. `after` = how many of the group's entries had been
/// executed when theirs ran: their result stands only if all of those commit too.
enum Waiter {
    Batch {
        after: usize,
        entry: Option<usize>,
        replies: Vec<(Reply, Result<Vec<StatementResult>, SqlError>)>,
    },
    Commit {
        after: usize,
        entry: Option<usize>,
        reply: TxnReply,
    },
}

impl Group {
    /// Adds an executed job's entry (if it changed anything); returns (after, entry).
    fn add(&mut self, executed: ExecutedBatch) -> (usize, Option<usize>) {
        if !self.batch_ids.contains(&executed.batch_id) {
            self.batch_ids.push(executed.batch_id);
        }
        let after = self.commands.len();
        let entry = executed.proposal.map(|proposal| {
            self.commands.push(Command::Write {
                proposal,
                parts: executed.parts,
            });
            after
        });
        (after, entry)
    }
}

async fn execute_batch(
    engine: &Engine,
    requests: Vec<(Vec<Statement>, Reply)>,
    group: &mut Group,
    queue: &mpsc::WeakSender<Job>,
) {
    // A client that stopped waiting (canceled, disconnected) gets nothing run on its behalf.
    let (statements, replies): (Vec<_>, Vec<_>) = requests
        .into_iter()
        .filter(|(_, reply)| !reply.is_closed())
        .unzip();
    if statements.is_empty() {
        return;
    }
    let mut ends = engine.transaction_ends();
    ends.borrow_and_update();
    match engine.execute(statements).await {
        Ok(mut executed) => {
            let mut results = std::mem::take(&mut executed.results).into_iter();
            let mut blocked = std::mem::take(&mut executed.blocked).into_iter().peekable();
            let mut ran = Vec::with_capacity(replies.len());
            for (index, reply) in replies.into_iter().enumerate() {
                match blocked.next_if(|(at, _)| *at == index) {
                    Some((_, statements)) => {
                        retry_when_a_transaction_ends(
                            ends.clone(),
                            queue.clone(),
                            reply,
                            move |reply| Job::Write(statements, reply),
                        );
                    }
                    None => match results.next() {
                        Some(result) => ran.push((reply, result)),
                        None => {
                            let _ = reply.send(Err(RequestError::Unavailable(
                                "storage: a request's result is missing".into(),
                            )));
                        }
                    },
                }
            }
            let (after, entry) = group.add(executed);
            group.waiters.push(Waiter::Batch {
                after,
                entry,
                replies: ran,
            });
        }
        Err(e) => {
            let error = RequestError::Unavailable(format!("storage: {e}"));
            for reply in replies {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}

/// Queues a job again once an interactive transaction ended (its rows are free), unless its
/// client stopped waiting first.
fn retry_when_a_transaction_ends<T: Send + 'static>(
    mut ends: watch::Receiver<u64>,
    queue: mpsc::WeakSender<Job>,
    mut reply: oneshot::Sender<T>,
    job: impl FnOnce(oneshot::Sender<T>) -> Job + Send + 'static,
) {
    tokio::spawn(async move {
        tokio::select! {
            changed = ends.changed() => if changed.is_err() {
                return;
            },
            () = reply.closed() => return,
        }
        if let Some(queue) = queue.upgrade() {
            let _ = queue.send(job(reply)).await;
        }
    });
}

/// Commits an interactive transaction in the engine; its entry joins the group.
async fn commit_transaction(
    engine: &Engine,
    id: TxnId,
    reply: TxnReply,
    group: &mut Group,
    queue: &mpsc::WeakSender<Job>,
) {
    let mut ends = engine.transaction_ends();
    ends.borrow_and_update();
    match engine.transaction(id, TxnStep::Commit).await {
        Ok(TxnAnswer::Committed(executed)) => {
            let (after, entry) = group.add(executed);
            group.waiters.push(Waiter::Commit {
                after,
                entry,
                reply,
            });
        }
        Ok(TxnAnswer::Blocked) => {
            retry_when_a_transaction_ends(ends, queue.clone(), reply, move |reply| Job::Commit {
                id,
                reply,
            });
        }
        Ok(_) => {
            let _ = reply.send(Err(RequestError::Unavailable(
                "storage: COMMIT answered something else than a commit".into(),
            )));
        }
        Err(e) => {
            let _ = reply.send(Err(txn_request_error(e)));
        }
    }
}

/// Serves one interactive transaction's steps until it ends: its statements run in the engine
/// as they come (interleaved with other transactions'), its COMMIT joins the pipeline's queue.
/// Rolled back when its session goes away, when leadership moves, or after `txn_idle_timeout`
/// without a step (an open transaction holds its rows).
async fn serve_transaction(
    id: TxnId,
    term: u64,
    raft: Raft,
    engine: Engine,
    settings: PipelineSettings,
    queue: mpsc::WeakSender<Job>,
    mut steps: mpsc::Receiver<(TxnStep, TxnReply)>,
) {
    loop {
        let (step, mut reply) =
            match tokio::time::timeout(settings.txn_idle_timeout, steps.recv()).await {
                Ok(Some(step)) => step,
                Ok(None) => {
                    // The session ended (client gone) without COMMIT.
                    rollback(&engine, id).await;
                    return;
                }
                Err(_) => {
                    tracing::info!(
                        "rolling back a transaction idle for more than {} ms",
                        settings.txn_idle_timeout.as_millis()
                    );
                    rollback(&engine, id).await;
                    return;
                }
            };
        let still_leading = raft.as_leader().is_ok_and(|l| l.leader_id().term == term);
        if !still_leading {
            rollback(&engine, id).await;
            let _ = reply.send(Err(RequestError::TransactionLost(
                "leadership moved to another node during the transaction; it was rolled back"
                    .into(),
            )));
            return;
        }
        if step == TxnStep::Commit {
            match queue.upgrade() {
                Some(queue) => {
                    if let Err(mpsc::error::SendError(Job::Commit { reply, .. })) =
                        queue.send(Job::Commit { id, reply }).await
                    {
                        let _ = reply.send(Err(stopped()));
                    }
                }
                None => {
                    let _ = reply.send(Err(stopped()));
                }
            }
            return;
        }
        let ends = step == TxnStep::Rollback;
        let answer = loop {
            let mut ended = engine.transaction_ends();
            ended.borrow_and_update();
            match engine.transaction(id, step.clone()).await {
                Ok(TxnAnswer::Blocked) => {
                    // Wait for the rows' owner to end, as PostgreSQL waits for a row lock.
                    tokio::select! {
                        changed = ended.changed() => if changed.is_err() {
                            break Err(stopped());
                        },
                        () = reply.closed() => {
                            // The session gave up on this statement (a cancel, or a follower's
                            // forwarding deadline, which tells the client the transaction is
                            // lost): roll it back now. Left open, it would keep its rows, and
                            // its wait would still count towards deadlocks.
                            rollback(&engine, id).await;
                            return;
                        }
                    }
                }
                Ok(TxnAnswer::Executed(result)) => break Ok(TxnOutcome::Executed(result)),
                Ok(TxnAnswer::Done | TxnAnswer::Begun) => break Ok(TxnOutcome::Done),
                Ok(TxnAnswer::Committed(_)) => {
                    break Err(RequestError::Unavailable(
                        "storage: a step committed outside the pipeline".into(),
                    ));
                }
                Err(e) => break Err(txn_request_error(e)),
            }
        };
        let lost = matches!(
            answer,
            Err(RequestError::TransactionLost(_) | RequestError::Deadlock(_))
        );
        let _ = reply.send(answer);
        if ends || lost {
            return;
        }
    }
}

async fn rollback(engine: &Engine, id: TxnId) {
    if let Err(e) = engine.transaction(id, TxnStep::Rollback).await {
        tracing::warn!("rolling back an interactive transaction failed: {e}");
    }
}

fn txn_request_error(e: TxnError) -> RequestError {
    match e {
        TxnError::Sql(sql) => RequestError::Sql(sql),
        TxnError::Lost(message) => RequestError::TransactionLost(message),
        TxnError::Deadlock(message) => RequestError::Deadlock(message),
        TxnError::Engine(engine) => RequestError::Unavailable(format!("storage: {engine}")),
    }
}

/// A proposed group whose clients were answered `OutcomeUnknown` after `commit_timeout` while
/// openraft still held its entries. No new batch executes until openraft has decided them:
/// rolling the batch back earlier could let an entry be appended after batches executed
/// without it.
struct Unresolved {
    batch_ids: Vec<u64>,
    /// Resolves to whether every entry committed.
    outcome: tokio::task::JoinHandle<bool>,
}

/// Waits (bounded) for an earlier unresolved group; rolls its batch back if it failed.
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
    let batch_ids = std::mem::take(&mut pending.batch_ids);
    *unresolved = None;
    if !matches!(joined, Ok(true)) {
        abort(engine, &batch_ids).await?;
    }
    Ok(())
}

async fn abort(engine: &Engine, batch_ids: &[u64]) -> Result<(), RequestError> {
    for &batch_id in batch_ids {
        engine
            .abort_batch(batch_id)
            .await
            .map_err(|e| RequestError::Unavailable(format!("storage: {e}")))?;
    }
    Ok(())
}

/// Proposes a group's entries with one `client_write_many` — one append, one fsync, one
/// replication round, one apply for all of them — waits (bounded) for them to commit, and
/// answers every waiter. On failure the batch is rolled back (keeping what did commit).
async fn propose_group(
    raft: &Raft,
    engine: &Engine,
    settings: PipelineSettings,
    unresolved: &mut Option<Unresolved>,
    mut group: Group,
) {
    let visible = engine.applied_index();
    let mut outcomes: Vec<Option<Result<LogIndex, RequestError>>> =
        vec![None; group.commands.len()];
    let mut deferred = None;
    if !group.commands.is_empty() {
        match raft
            .client_write_many(std::mem::take(&mut group.commands))
            .await
        {
            Err(fatal) => {
                let e = RequestError::OutcomeUnknown(fatal.to_string());
                outcomes.iter_mut().for_each(|o| *o = Some(Err(e.clone())));
            }
            Ok(mut results) => {
                let deadline = tokio::time::Instant::now() + settings.commit_timeout;
                let mut i = 0;
                while i < outcomes.len() {
                    match tokio::time::timeout_at(deadline, results.next()).await {
                        Ok(Some(Ok(Ok(response)))) => {
                            outcomes[i] = Some(Ok(response.log_id.index));
                        }
                        Ok(Some(Ok(Err(e)))) => {
                            outcomes[i] = Some(Err(match e {
                                // Refused before it was appended: safe to retry elsewhere.
                                ClientWriteError::ForwardToLeader(f) => RequestError::NotLeader {
                                    leader: f.leader_id,
                                },
                                other => RequestError::OutcomeUnknown(other.to_string()),
                            }));
                        }
                        Ok(Some(Err(fatal))) => {
                            outcomes[i] =
                                Some(Err(RequestError::OutcomeUnknown(fatal.to_string())));
                        }
                        Ok(None) => {
                            outcomes[i] =
                                Some(Err(RequestError::OutcomeUnknown("raft stopped".into())));
                        }
                        Err(_) => {
                            // Undecided: the rest is left to a background wait.
                            let remaining = outcomes.len() - i;
                            deferred = Some(tokio::spawn(async move {
                                let mut all = true;
                                for _ in 0..remaining {
                                    all &= matches!(results.next().await, Some(Ok(Ok(_))));
                                }
                                all
                            }));
                            break;
                        }
                    }
                    i += 1;
                }
            }
        }
    }
    let failed = outcomes.iter().any(|o| !matches!(o, Some(Ok(_))));
    // A waiter stands if its own entry and every entry executed before it committed.
    let verdict = |after: usize, entry: Option<usize>| -> Result<LogIndex, RequestError> {
        let upto = entry.map(|e| e + 1).unwrap_or(after);
        let mut index = visible;
        for outcome in &outcomes[..upto] {
            match outcome {
                Some(Ok(at)) => index = index.max(*at),
                Some(Err(e)) => return Err(e.clone()),
                None => {
                    return Err(RequestError::OutcomeUnknown(
                        "not committed in time (the leader may have lost its quorum); it may still commit later".into(),
                    ));
                }
            }
        }
        Ok(index)
    };
    for waiter in group.waiters {
        match waiter {
            Waiter::Batch {
                after,
                entry,
                replies,
            } => {
                let committed = verdict(after, entry);
                for (reply, result) in replies {
                    let answer = result.map_err(RequestError::Sql).and_then(|results| {
                        Ok(WriteOutcome {
                            results,
                            index: committed.clone()?,
                        })
                    });
                    let _ = reply.send(answer);
                }
            }
            Waiter::Commit {
                after,
                entry,
                reply,
            } => {
                let _ = reply.send(verdict(after, entry).map(TxnOutcome::Committed));
            }
        }
    }
    match deferred {
        Some(outcome) => {
            *unresolved = Some(Unresolved {
                batch_ids: group.batch_ids,
                outcome,
            });
        }
        None if failed => {
            if let Err(e) = abort(engine, &group.batch_ids).await {
                tracing::error!("rolling back a failed group: {e}");
            }
        }
        None => {}
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
    // What the writer builds on: entries applied into the open batch count, even while an
    // interactive transaction holding the writer keeps that batch from committing.
    let mut applied_watch = engine.applied();
    let mut metrics = raft.metrics();
    let deadline = tokio::time::Instant::now() + LEADER_READY_TIMEOUT;
    loop {
        let last_log = metrics.borrow_watched().last_log_index.unwrap_or(0);
        let applied = *applied_watch.borrow_and_update();
        if applied.is_some_and(|l| l.leader_id.term >= term && l.index >= last_log) {
            return Ok(());
        }
        tokio::select! {
            changed = applied_watch.changed() => if changed.is_err() {
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

//! The storage engine: one writer thread that owns SQLite's only write connection, plus a pool
//! of read connections.
//!
//! # Group commit with savepoints
//!
//! On the leader, [`Engine::execute`] runs a batch of client requests inside one *open* SQLite
//! transaction (the batch). Each request runs in its own `SAVEPOINT` with a fresh session
//! ([`ChangeRecorder`]) that records its changeset; a failing request is rolled back to its
//! savepoint and nothing of it is proposed. Each successful request gets a [`ProposalId`], is
//! queued as *pending*, and its effects ([`WritePart`]s) are returned for the caller to propose
//! to Raft.
//!
//! When Raft commits an entry, the state machine calls [`Engine::apply`]. An entry whose proposal
//! is the next pending one is already in the open transaction: only the applied log id is
//! recorded. Once every pending proposal has been applied the transaction `COMMIT`s — data and
//! applied index together — and only then do readers (other connections, WAL mode) see the
//! batch. So readers never see a write Raft has not committed, and one SQLite commit serves the
//! whole batch.
//!
//! On a follower (no open batch) every entry is applied for real — DDL replayed as text,
//! changesets applied — and each `apply` call is one SQLite transaction.
//!
//! If an entry that is not the next pending proposal arrives while a batch is open (leadership
//! was lost and another leader's entries won), or the proposer reports a failed proposal
//! ([`Engine::abort_batch`]), the open transaction is rolled back and the entries already applied
//! from it are re-applied from their changesets, which yields exactly the committed state.
//!
//! # Visibility
//!
//! [`Engine::visible`] publishes the applied log id of the last *committed* SQLite transaction.
//! Reads that must observe an index (linearizable, session) wait on it, not on openraft's own
//! applied counter, which runs ahead while a batch is open.

use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openraft::EntryPayload;
use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::{mpsc, oneshot, watch};

use crate::raft::types::{Command, Entry, LogId, NodeId, ProposalId, StoredMembership, WritePart};
use crate::storage::capture::{CaptureError, RowCapture, Shapes};
use crate::storage::catalog;
use crate::storage::changeset::{self, ChangeRecorder};
use crate::storage::constraint_error;
use crate::storage::error::{EngineError, SqlError};
use crate::storage::meta;
use crate::storage::pg_functions;
use crate::storage::policy::ClientSqlGuard;
use crate::storage::request::{Description, QueryResult, SqlValue, Statement, StatementResult};
use crate::storage::rowid_alias;

mod read_pool;
mod replay;
mod transaction;
use read_pool::ReadPool;
use transaction::Transactions;
pub use transaction::{TxnAnswer, TxnError, TxnId, TxnStep};

/// Largest decompressed changeset a node accepts from the log.
const MAX_CHANGESET_BYTES: usize = 256 * 1024 * 1024;
/// Prepared statements kept per connection (client SQL is usually a small set of shapes).
const STATEMENT_CACHE: usize = 256;
/// Changesets at least this large travel zstd-compressed; smaller ones gain little.
const COMPRESS_FROM_BYTES: usize = 1024;
/// Bound on queued operations for the writer thread; senders wait when it is full.
const WRITER_QUEUE: usize = 1024;

/// How the engine is opened.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub db_path: PathBuf,
    pub node_id: NodeId,
    /// Read connections in the pool (concurrent reads).
    pub read_connections: usize,
    /// The node's Snowflake generator, behind `snowflake_id()` and `snowflake_decode(id)` on
    /// every connection; `None` leaves the functions out.
    pub ids: Option<Arc<crate::ids::NodeGenerator>>,
}

/// One committed log entry to apply, stripped of openraft's wrapper.
#[derive(Debug, Clone)]
pub struct ApplyItem {
    pub log_id: LogId,
    pub payload: ApplyPayload,
}

#[derive(Debug, Clone)]
pub enum ApplyPayload {
    /// A new leader's empty entry: only the applied index moves.
    Blank,
    Write(Command),
    Membership(StoredMembership),
}

impl From<Entry> for ApplyItem {
    fn from(entry: Entry) -> Self {
        let log_id = entry.log_id;
        let payload = match entry.payload {
            EntryPayload::Blank => ApplyPayload::Blank,
            EntryPayload::Normal(command) => ApplyPayload::Write(command),
            EntryPayload::Membership(m) => {
                ApplyPayload::Membership(StoredMembership::new(Some(log_id), m))
            }
        };
        ApplyItem { log_id, payload }
    }
}

/// The outcome of [`Engine::execute`]: the batch's combined effects to replicate as one Raft
/// entry, and each request's own result, in order.
#[derive(Debug)]
pub struct ExecutedBatch {
    pub batch_id: u64,
    /// Identifies the batch's entry; `None` when no request changed anything.
    pub proposal: Option<ProposalId>,
    /// The effects of every successful request, in execution order.
    pub parts: Vec<WritePart>,
    /// The outcome of each request that ran, in order (blocked ones left out).
    pub results: Vec<Result<Vec<StatementResult>, SqlError>>,
    /// Requests that touched rows an open interactive transaction owns, by their position in
    /// the batch: nothing of them ran; the caller sends them again once a transaction ends.
    pub blocked: Vec<(usize, Vec<Statement>)>,
}

/// A read failed: the client's fault, or the engine's.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Sql(#[from] SqlError),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

enum Op {
    Execute {
        requests: Vec<Vec<Statement>>,
        reply: oneshot::Sender<Result<ExecutedBatch, EngineError>>,
    },
    Apply {
        items: Vec<ApplyItem>,
        reply: oneshot::Sender<Result<(), EngineError>>,
    },
    AbortBatch {
        batch_id: u64,
        reply: oneshot::Sender<Result<(), EngineError>>,
    },
    Restore {
        snapshot: PathBuf,
        reply: oneshot::Sender<Result<(), EngineError>>,
    },
    Transaction {
        id: TxnId,
        step: TxnStep,
        reply: oneshot::Sender<Result<TxnAnswer, TxnError>>,
    },
}

impl Op {
    /// Answers the operation with `EngineError::Poisoned`.
    fn refuse(self) {
        match self {
            Op::Execute { reply, .. } => drop(reply.send(Err(EngineError::Poisoned))),
            Op::Apply { reply, .. } | Op::AbortBatch { reply, .. } | Op::Restore { reply, .. } => {
                drop(reply.send(Err(EngineError::Poisoned)))
            }
            Op::Transaction { reply, .. } => {
                drop(reply.send(Err(TxnError::Engine(EngineError::Poisoned))))
            }
        }
    }
}

/// Handle to the engine; cheap to clone. The writer thread stops when every handle is dropped.
#[derive(Clone)]
pub struct Engine {
    ops: mpsc::Sender<Op>,
    readers: Arc<ReadPool>,
    /// Prepares statements without running them ([`Engine::describe`]). Its own connection
    /// because the read pool's authorizer refuses to even prepare a write. The std mutex is
    /// held only inside a blocking task, never across an await.
    describer: Arc<Mutex<Connection>>,
    visible: watch::Receiver<Option<LogId>>,
    /// Bumped whenever an interactive transaction ends.
    transaction_ends: watch::Receiver<u64>,
    /// The applied log id, including entries applied into the leader's open batch.
    applied: watch::Receiver<Option<LogId>>,
    db_path: PathBuf,
}

impl Engine {
    /// Opens (creating if needed) the database and starts the writer thread.
    pub fn open(options: EngineOptions) -> Result<Engine, EngineError> {
        let guard = ClientSqlGuard::default();
        let mut conn = open_write_connection(&options.db_path)?;
        conn.authorizer(Some(guard.authorizer()))?;
        meta::ensure_table(&conn)?;
        let (applied, _) = meta::read_applied_state(&conn)?;
        let (visible_tx, visible) = watch::channel(applied);
        let (applied_tx, applied_rx) = watch::channel(applied);
        let readers = Arc::new(ReadPool::open(
            &options.db_path,
            options.read_connections.max(1),
            STATEMENT_CACHE,
        )?);
        let describer = Arc::new(Mutex::new(open_describe_connection(&options.db_path)?));
        if let Some(ids) = &options.ids {
            // On every connection: the writer (leader writes, DDL replayed on followers), the
            // readers, and the describer (a statement naming them must prepare).
            let pool = readers
                .connections
                .lock()
                .map_err(|_| EngineError::Closed)?;
            let describe = describer.lock().map_err(|_| EngineError::Closed)?;
            for connection in std::iter::once(&conn)
                .chain(pool.iter().map(|reader| &reader.conn))
                .chain([&*describe])
            {
                crate::ids::sql::register(connection, ids)?;
            }
        }
        let (ops, rx) = mpsc::channel(WRITER_QUEUE);
        let (txns, transaction_ends) = Transactions::new();
        let writer = Writer {
            conn,
            guard,
            mode: None,
            poisoned: false,
            node_id: options.node_id,
            boot: rand::random(),
            next_seq: 0,
            next_batch_id: 1,
            batch: None,
            txns,
            resume_schema: None,
            tx_open: false,
            applied,
            applied_tx,
            visible: visible_tx,
        };
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer.run(rx))?;
        Ok(Engine {
            ops,
            readers,
            describer,
            visible,
            applied: applied_rx,
            transaction_ends,
            db_path: options.db_path,
        })
    }

    pub fn db_path(&self) -> &Path {
        &self.db_path
    }

    /// Leader only: executes each request (a list of statements, one transaction) inside the
    /// open batch and returns their effects to propose.
    pub async fn execute(
        &self,
        requests: Vec<Vec<Statement>>,
    ) -> Result<ExecutedBatch, EngineError> {
        self.call(|reply| Op::Execute { requests, reply }).await?
    }

    /// Applies committed entries in log order.
    pub async fn apply(&self, items: Vec<ApplyItem>) -> Result<(), EngineError> {
        self.call(|reply| Op::Apply { items, reply }).await?
    }

    /// A proposal of batch `batch_id` failed: roll the batch back, keeping what was committed.
    pub async fn abort_batch(&self, batch_id: u64) -> Result<(), EngineError> {
        self.call(|reply| Op::AbortBatch { batch_id, reply })
            .await?
    }

    /// Replaces the whole database with the snapshot file's content.
    /// One step of the leader's interactive transaction `id` (see [`TxnStep`]).
    pub async fn transaction(&self, id: TxnId, step: TxnStep) -> Result<TxnAnswer, TxnError> {
        self.call(|reply| Op::Transaction { id, step, reply })
            .await
            .map_err(TxnError::Engine)?
    }

    pub async fn restore(&self, snapshot: PathBuf) -> Result<(), EngineError> {
        self.call(|reply| Op::Restore { snapshot, reply }).await?
    }

    /// Changes whenever an interactive transaction ends (commits, rolls back or is lost), so
    /// that a step or request answered "blocked" knows when to try again.
    pub fn transaction_ends(&self) -> watch::Receiver<u64> {
        self.transaction_ends.clone()
    }

    /// The applied log id including entries applied into the leader's open batch, not yet
    /// committed to SQLite (an open transaction holding the writer can keep it open): what the
    /// writer builds on, as opposed to what readers see ([`Engine::visible`]).
    pub fn applied(&self) -> watch::Receiver<Option<LogId>> {
        self.applied.clone()
    }

    /// The applied log id of the last committed transaction.
    pub fn visible(&self) -> watch::Receiver<Option<LogId>> {
        self.visible.clone()
    }

    /// The log id of the last committed applied entry.
    pub fn applied_log_id(&self) -> Option<LogId> {
        *self.visible.borrow()
    }

    /// The index of the last committed applied entry (0 before any).
    pub fn applied_index(&self) -> crate::raft::types::LogIndex {
        self.applied_log_id().map(|l| l.index).unwrap_or(0)
    }

    /// Applied log id and membership as committed on disk.
    pub async fn applied_state(&self) -> Result<(Option<LogId>, StoredMembership), EngineError> {
        self.readers
            .with_connection(meta::read_applied_state)
            .await?
    }

    /// Runs one read-only statement on a read connection (committed data only): on this
    /// thread when it is short, else on the blocking pool ([`read_pool`]). Catalog queries
    /// rebuild the catalog first, which is never short.
    pub async fn query(&self, statement: Statement) -> Result<QueryResult, ReadError> {
        if !catalog::mentions_catalog(&statement.sql)
            && let Some(answer) = self.readers.try_inline(|conn| run_query(conn, &statement))
        {
            return answer;
        }
        self.readers
            .with_connection(move |conn| run_query(conn, &statement))
            .await
            .map_err(ReadError::Engine)?
    }

    /// Prepares `sql` on committed data without running it: its result columns, parameter
    /// count and whether it only reads; plus the columns of those of `tables` that exist (for
    /// a front end that infers parameter types from the columns they are compared with).
    pub async fn describe(
        &self,
        sql: String,
        tables: Vec<String>,
    ) -> Result<Description, ReadError> {
        let describer = self.describer.clone();
        tokio::task::spawn_blocking(move || {
            let conn = describer.lock().map_err(|_| EngineError::Closed)?;
            describe_statement(&conn, &sql, &tables)
        })
        .await
        .map_err(|e| ReadError::Engine(EngineError::Io(std::io::Error::other(e))))?
    }

    /// Copies the committed database into `dest` (an online backup in one read transaction)
    /// and returns the applied state the copy is at.
    pub async fn backup_to(
        &self,
        dest: PathBuf,
    ) -> Result<(Option<LogId>, StoredMembership), EngineError> {
        self.readers
            .with_connection(move |conn| {
                {
                    let mut target = Connection::open(&dest)?;
                    let backup = rusqlite::backup::Backup::new(conn, &mut target)?;
                    // One step copies everything under a single read transaction, so concurrent
                    // commits cannot restart the copy.
                    backup.step(-1)?;
                }
                let copy = Connection::open_with_flags(&dest, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
                meta::read_applied_state(&copy)
            })
            .await?
    }

    async fn call<T>(&self, op: impl FnOnce(oneshot::Sender<T>) -> Op) -> Result<T, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.ops
            .send(op(reply))
            .await
            .map_err(|_| EngineError::Closed)?;
        rx.await.map_err(|_| EngineError::Closed)
    }
}

fn open_write_connection(path: &Path) -> Result<Connection, EngineError> {
    let conn = Connection::open(path)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // WAL: readers never block the writer and see only committed transactions.
    // synchronous=NORMAL: the Raft log is the durable record; a commit lost to power failure is
    // re-applied from the log, which is never purged past a snapshot.
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;
         PRAGMA busy_timeout=5000;",
    )?;
    catalog::attach(&conn)?;
    pg_functions::register(&conn)?;
    Ok(conn)
}

/// State owned by the writer thread.
struct Writer {
    conn: Connection,
    /// Enforces the client SQL policy while a request's statements run.
    guard: ClientSqlGuard,
    /// Foreign keys and triggers on (executing) or off (applying); `None` until first set.
    mode: Option<Mode>,
    /// A failure left the database in a state that must not be built on: every later operation
    /// is refused (an apply failing makes Raft stop the node).
    poisoned: bool,
    node_id: NodeId,
    boot: u64,
    next_seq: u64,
    next_batch_id: u64,
    batch: Option<OpenBatch>,
    /// The interactive transactions open on top of `batch` (see `transaction.rs`).
    txns: Transactions,
    /// What resuming a transaction needs to know of the schema, at a schema version.
    resume_schema: Option<(i64, Arc<crate::storage::changeset::ResumeSchema>)>,
    /// A follower-style transaction is open (entries applied for real, not yet committed).
    tx_open: bool,
    /// Applied log id as of the open transaction (or the last commit).
    applied: Option<LogId>,
    /// `applied` as it moves, committed to SQLite or not yet.
    applied_tx: watch::Sender<Option<LogId>>,
    visible: watch::Sender<Option<LogId>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Leader,
    Replica,
}

/// The leader's open transaction.
struct OpenBatch {
    id: u64,
    /// Proposals executed in this transaction and not yet applied, in proposal order.
    pending: VecDeque<ProposalId>,
    /// Entries applied inside this transaction, to replay if it has to be rolled back.
    applied: Vec<ApplyItem>,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Op>) {
        while let Some(op) = rx.blocking_recv() {
            if self.poisoned {
                op.refuse();
                continue;
            }
            match op {
                Op::Execute { requests, reply } => {
                    let result = self.execute(requests);
                    let _ = reply.send(result);
                }
                Op::Apply { items, reply } => {
                    let result = self.apply(items);
                    if let Err(e) = &result {
                        tracing::error!("applying committed entries failed: {e}");
                        // Leave nothing half-applied behind; openraft treats this as fatal.
                        if self.tx_open || self.batch.is_some() {
                            let _ = self.conn.execute_batch("ROLLBACK");
                        }
                        self.tx_open = false;
                        self.batch = None;
                        self.txns.clear();
                    }
                    let _ = reply.send(result);
                }
                Op::AbortBatch { batch_id, reply } => {
                    let result = self.abort_batch(batch_id);
                    if let Err(e) = &result {
                        // A half-replayed rollback must never be committed later.
                        tracing::error!("rolling a batch back failed; the engine stops: {e}");
                        self.poisoned = true;
                    }
                    let _ = reply.send(result);
                }
                Op::Restore { snapshot, reply } => {
                    let result = self.restore(&snapshot);
                    let _ = reply.send(result);
                }
                Op::Transaction { id, step, reply } => {
                    let result = self.transaction_step(id, step);
                    let _ = reply.send(result);
                }
            }
        }
        // Every handle is gone: leave nothing half-done.
        if self.tx_open || self.batch.is_some() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }

    fn execute(&mut self, requests: Vec<Vec<Statement>>) -> Result<ExecutedBatch, EngineError> {
        if self.tx_open {
            // A follower transaction cannot be open here: apply always finishes its own.
            return Err(EngineError::Corrupt(
                "execute while an apply transaction is open".into(),
            ));
        }
        if self.txns.exclusive_live().is_some() {
            // A transaction that ran DDL holds the writer until it ends.
            return Ok(ExecutedBatch {
                batch_id: self.batch.as_ref().map(|b| b.id).unwrap_or(0),
                proposal: None,
                parts: Vec::new(),
                results: Vec::new(),
                blocked: requests.into_iter().enumerate().collect(),
            });
        }
        if let Err(e) = self.park() {
            self.poisoned = true;
            return Err(e);
        }
        self.open_batch()?;
        if requests
            .iter()
            .flatten()
            .any(|s| classify(&s.sql) == StatementClass::Ddl)
        {
            self.resume_schema = None;
        }
        let schema = if self.txns.hold_rows() {
            Some(self.resume_schema()?)
        } else {
            None
        };
        let owner_check = |parts: &[WritePart]| -> Result<bool, EngineError> {
            let rowid_tables = schema.as_ref().map(|s| &s.renumbered);
            let keys = transaction::row_keys(parts, rowid_tables.unwrap_or(&BTreeSet::new()))?;
            Ok(self.txns.owner_of(&keys, None).is_some())
        };
        let check: Option<(&OwnedRowsCheck, Arc<Shapes>)> = match &schema {
            Some(schema) => Some((&owner_check, schema.shapes.clone())),
            None => None,
        };
        let ran = run_batch(&self.conn, &self.guard, &requests, check);
        // A statement may roll back the whole transaction (`INSERT OR ROLLBACK`, a column's
        // `ON CONFLICT ROLLBACK`, `RAISE(ROLLBACK)`, a full disk), or the engine may fail half
        // way: then the batch transaction is gone or holds changes no changeset carries. Restore
        // exactly the committed state and refuse the whole batch (nothing of it was proposed).
        let (parts, outcomes) = match ran {
            Ok(done) if !self.conn.is_autocommit() => done,
            broken => {
                let rolled_back_by_sql = self.conn.is_autocommit();
                if let Err(e) = self.discard_batch() {
                    tracing::error!("discarding a broken batch failed; the engine stops: {e}");
                    self.poisoned = true;
                    return Err(e);
                }
                return Err(match broken {
                    Err(e) if !rolled_back_by_sql => e,
                    _ => EngineError::BatchRolledBack,
                });
            }
        };
        let mut results = Vec::with_capacity(outcomes.len());
        let mut blocked = Vec::new();
        for (index, (outcome, statements)) in outcomes.into_iter().zip(requests).enumerate() {
            match outcome {
                Some(result) => results.push(result),
                None => blocked.push((index, statements)),
            }
        }
        let proposal = self.propose_parts(&parts);
        let batch_id = self.batch.as_ref().map(|b| b.id).unwrap_or(0);
        self.maybe_commit_batch()?;
        Ok(ExecutedBatch {
            batch_id,
            proposal,
            parts,
            results,
            blocked,
        })
    }

    /// Opens the leader's batch transaction unless one is open.
    fn open_batch(&mut self) -> Result<(), EngineError> {
        if self.batch.is_none() {
            self.set_mode(Mode::Leader)?;
            self.conn.execute_batch("BEGIN IMMEDIATE")?;
            self.batch = Some(OpenBatch {
                id: self.next_batch_id,
                pending: VecDeque::new(),
                applied: Vec::new(),
            });
            self.next_batch_id += 1;
        }
        Ok(())
    }

    /// A new proposal id for effects about to be proposed, queued as pending in the open batch;
    /// `None` when there is nothing to propose.
    fn propose_parts(&mut self, parts: &[WritePart]) -> Option<ProposalId> {
        if parts.is_empty() {
            return None;
        }
        let proposal = ProposalId {
            node: self.node_id,
            boot: self.boot,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        if let Some(batch) = self.batch.as_mut() {
            batch.pending.push_back(proposal);
        }
        Some(proposal)
    }

    fn apply(&mut self, items: Vec<ApplyItem>) -> Result<(), EngineError> {
        let schema_changes = items.iter().any(|item| {
            matches!(&item.payload, ApplyPayload::Write(Command::Write { parts, .. })
                if parts.iter().any(|p| matches!(p, WritePart::Ddl(_))))
        });
        if schema_changes {
            self.resume_schema = None;
        }
        let mut staged = StagedChanges::default();
        let mut last = None;
        for item in items {
            last = Some(item.log_id);
            let ours = match (&self.batch, &item.payload) {
                (Some(batch), ApplyPayload::Write(Command::Write { proposal, .. })) => {
                    batch.pending.front() == Some(proposal)
                }
                _ => false,
            };
            if ours {
                // Its effects are already in the open transaction.
                if let Some(batch) = self.batch.as_mut() {
                    batch.pending.pop_front();
                    batch.applied.push(item);
                }
                continue;
            }
            if let (Some(_), ApplyPayload::Write(_)) = (&self.batch, &item.payload) {
                // Another leader's entry overtook our pending proposals: they lost.
                tracing::warn!(log_id = %item.log_id, "foreign entry while a batch is open; rolling the batch back");
                self.rollback_batch()?;
            }
            if self.batch.is_none() && !self.tx_open {
                self.begin_replica_transaction()?;
            }
            staged.stage(&self.conn, &item)?;
            if let ApplyPayload::Membership(m) = &item.payload {
                meta::write_membership(&self.conn, m)?;
            }
            if let Some(batch) = self.batch.as_mut() {
                batch.applied.push(item);
            }
        }
        staged.flush(&self.conn)?;
        if let Some(last) = last {
            self.record_applied(last)?;
        }
        self.commit_replica_transaction()?;
        self.maybe_commit_batch()
    }

    /// Opens a transaction for entries this node did not execute, in replica mode.
    fn begin_replica_transaction(&mut self) -> Result<(), EngineError> {
        self.set_mode(Mode::Replica)?;
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        self.tx_open = true;
        Ok(())
    }

    /// Switches foreign keys and triggers for executing client SQL (leader) or applying
    /// changesets (replica: they carry the effects of both already). Only outside a
    /// transaction; a no-op when the mode does not change, since each switch makes SQLite
    /// re-prepare every statement.
    fn set_mode(&mut self, mode: Mode) -> Result<(), EngineError> {
        if self.mode == Some(mode) {
            return Ok(());
        }
        let on = mode == Mode::Leader;
        self.conn
            .set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_FKEY, on)?;
        self.conn
            .set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_TRIGGER, on)?;
        self.mode = Some(mode);
        Ok(())
    }

    /// Records the applied position in the open transaction (once per apply call).
    fn record_applied(&mut self, log_id: LogId) -> Result<(), EngineError> {
        meta::write_applied(&self.conn, &log_id)?;
        self.applied = Some(log_id);
        self.applied_tx.send_replace(self.applied);
        Ok(())
    }

    /// Commits the open batch once nothing of it waits for Raft any more.
    fn maybe_commit_batch(&mut self) -> Result<(), EngineError> {
        let drained = self.batch.as_ref().is_some_and(|b| b.pending.is_empty())
            && self.txns.exclusive_live().is_none();
        if drained {
            // A live transaction steps aside; its next step resumes it in the next batch.
            self.park()?;
            self.conn.execute_batch("COMMIT")?;
            self.batch = None;
            self.publish();
        }
        Ok(())
    }

    fn abort_batch(&mut self, batch_id: u64) -> Result<(), EngineError> {
        if self.batch.as_ref().is_some_and(|b| b.id == batch_id) {
            self.discard_batch()?;
        }
        Ok(())
    }

    /// Rolls the open batch back for good, keeping (re-applied and committed) what Raft
    /// committed while it was open.
    fn discard_batch(&mut self) -> Result<(), EngineError> {
        self.rollback_batch()?;
        self.commit_replica_transaction()
    }

    /// Commits the transaction of applied entries, if one is open, and publishes its index.
    fn commit_replica_transaction(&mut self) -> Result<(), EngineError> {
        if self.tx_open {
            self.conn.execute_batch("COMMIT")?;
            self.tx_open = false;
            self.publish();
        }
        Ok(())
    }

    /// Rolls the open batch back and re-applies, in a new open transaction, the entries that
    /// were committed by Raft while it was open.
    fn rollback_batch(&mut self) -> Result<(), EngineError> {
        // The interactive transactions open on the batch go with it; their next steps are told.
        self.txns.clear();
        self.resume_schema = None;
        let Some(batch) = self.batch.take() else {
            return Ok(());
        };
        // A statement may already have rolled the transaction back.
        if !self.conn.is_autocommit() {
            self.conn.execute_batch("ROLLBACK")?;
        }
        let (applied, _) = meta::read_applied_state(&self.conn)?;
        self.applied = applied;
        self.applied_tx.send_replace(self.applied);
        self.begin_replica_transaction()?;
        let mut staged = StagedChanges::default();
        for item in &batch.applied {
            staged.stage(&self.conn, item)?;
            if let ApplyPayload::Membership(m) = &item.payload {
                meta::write_membership(&self.conn, m)?;
            }
        }
        staged.flush(&self.conn)?;
        if let Some(last) = batch.applied.last() {
            self.record_applied(last.log_id)?;
        }
        Ok(())
    }

    fn restore(&mut self, snapshot: &Path) -> Result<(), EngineError> {
        if self.batch.is_some() || self.tx_open {
            self.conn.execute_batch("ROLLBACK")?;
            self.batch = None;
            self.txns.clear();
            self.resume_schema = None;
            self.tx_open = false;
        }
        {
            let source = Connection::open_with_flags(snapshot, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
            let backup = rusqlite::backup::Backup::new(&source, &mut self.conn)?;
            backup.step(-1)?;
        }
        meta::ensure_table(&self.conn)?;
        let (applied, _) = meta::read_applied_state(&self.conn)?;
        self.applied = applied;
        self.publish();
        Ok(())
    }

    fn publish(&self) {
        self.applied_tx.send_replace(self.applied);
        self.visible.send_replace(self.applied);
    }
}

/// Effects of entries this node did not execute, applied in log order. Consecutive changesets
/// are merged and applied with one call (SQLite prepares its statements per apply call); DDL
/// flushes what is staged and then runs as text.
#[derive(Default)]
struct StagedChanges {
    changesets: Vec<Vec<u8>>,
}

impl StagedChanges {
    fn stage(&mut self, conn: &Connection, item: &ApplyItem) -> Result<(), EngineError> {
        if let ApplyPayload::Write(Command::Write { parts, .. }) = &item.payload {
            for part in parts {
                match part {
                    WritePart::Ddl(sql) => {
                        self.flush(conn)?;
                        conn.execute_batch(sql)?;
                    }
                    changes => self.changesets.push(changeset_bytes(changes)?),
                }
            }
        }
        Ok(())
    }

    fn flush(&mut self, conn: &Connection) -> Result<(), EngineError> {
        match self.changesets.len() {
            0 => {}
            1 => changeset::apply_changeset(conn, &self.changesets[0])?,
            _ => changeset::apply_changeset(conn, &changeset::merge(&self.changesets)?)?,
        }
        self.changesets.clear();
        Ok(())
    }
}

enum RequestFailure {
    Client(SqlError),
    Engine(EngineError),
}

impl RequestFailure {
    /// Where only engine failures can occur.
    fn into_engine(self) -> EngineError {
        match self {
            RequestFailure::Engine(e) => e,
            RequestFailure::Client(e) => {
                EngineError::Corrupt(format!("unexpected client error: {e}"))
            }
        }
    }
}

impl From<SqlError> for RequestFailure {
    fn from(e: SqlError) -> Self {
        RequestFailure::Client(e)
    }
}

/// Runs a batch of client transactions, each in a savepoint, capturing the effects of the
/// successful ones in order: one session records the data changes of the whole batch (changes
/// rolled back to a savepoint are not recorded), and each DDL statement closes the current
/// changeset and is recorded as text. A transaction holding DDL is isolated from its
/// neighbours' changesets so that, if it fails, its parts can simply be dropped.
///
/// With `blocked_by_owner` (some interactive transaction owns rows), each request gets its own
/// changeset, and a request whose changes touch an owned row is undone and reported `None`.
fn run_batch(
    conn: &Connection,
    guard: &ClientSqlGuard,
    requests: &[Vec<Statement>],
    blocked_by_owner: Option<(&OwnedRowsCheck, Arc<Shapes>)>,
) -> Result<BatchEffects, EngineError> {
    let (blocked_by_owner, shapes) = match blocked_by_owner {
        Some((check, shapes)) => (Some(check), Some(shapes)),
        None => (None, None),
    };
    let mut parts = Vec::new();
    let mut results = Vec::with_capacity(requests.len());
    let mut recorder: Option<ChangeRecorder<'_>> = None;
    let mut schema_changed = false;
    for statements in requests {
        let has_ddl = statements
            .iter()
            .any(|s| classify(&s.sql) == StatementClass::Ddl);
        let own_changeset = has_ddl || blocked_by_owner.is_some();
        if own_changeset && let Some(r) = recorder.take() {
            push_changeset(&mut parts, r).map_err(RequestFailure::into_engine)?;
        }
        let mark = parts.len();
        // While rows are owned each request needs its own changeset (to check its rows): a
        // capture per request costs far less than a session per request.
        // The shapes were read before the batch: after its first DDL they may be stale.
        schema_changed |= has_ddl;
        let captured = shapes.as_ref().filter(|_| !schema_changed);
        if recorder.is_none() && captured.is_none() {
            recorder = Some(start_recorder(conn).map_err(RequestFailure::into_engine)?);
        }
        conn.prepare_cached("SAVEPOINT request")?.execute([])?;
        let ran = match captured {
            Some(shapes) => run_recorded(
                conn,
                guard,
                statements,
                Some(shapes.clone()),
                "request",
                &mut parts,
            ),
            None => run_request(conn, guard, statements, &mut recorder, &mut parts),
        };
        match ran {
            Ok(_) if deferred_foreign_key_violations(conn) > 0 => {
                // Deferred constraints are checked only at the outermost COMMIT, which here
                // comes after Raft committed the batch: check them now, per transaction.
                conn.execute_batch("ROLLBACK TO request; RELEASE request")?;
                if own_changeset {
                    parts.truncate(mark);
                    recorder = None;
                }
                results.push(Some(Err(SqlError::Constraint {
                    code: rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY,
                    message: "FOREIGN KEY constraint failed (deferred constraint checked at the end of the transaction)".into(),
                    names: Default::default(),
                })));
            }
            Ok(statement_results) => {
                if own_changeset && let Some(r) = recorder.take() {
                    push_changeset(&mut parts, r).map_err(RequestFailure::into_engine)?;
                }
                let blocked = match blocked_by_owner {
                    Some(owned) => owned(&parts[mark..])?,
                    None => false,
                };
                if blocked {
                    conn.execute_batch("ROLLBACK TO request; RELEASE request")?;
                    parts.truncate(mark);
                    results.push(None);
                } else {
                    conn.prepare_cached("RELEASE request")?.execute([])?;
                    results.push(Some(Ok(statement_results)));
                }
            }
            Err(RequestFailure::Client(error)) => {
                conn.execute_batch("ROLLBACK TO request; RELEASE request")?;
                if own_changeset {
                    // Its DDL and changesets were rolled back with it.
                    parts.truncate(mark);
                    recorder = None;
                }
                results.push(Some(Err(error)));
            }
            Err(RequestFailure::Engine(error)) => {
                let _ = conn.execute_batch("ROLLBACK TO request; RELEASE request");
                return Err(error);
            }
        }
    }
    if let Some(r) = recorder.take() {
        push_changeset(&mut parts, r).map_err(RequestFailure::into_engine)?;
    }
    Ok((parts, results))
}

/// Deletes every row of tables about to be dropped, with triggers off (DROP TABLE does not fire
/// the dropped table's triggers) but foreign-key actions on, so their effects are recorded.
fn delete_rows_of_dropped_tables(
    conn: &Connection,
    tables: &[String],
) -> Result<(), rusqlite::Error> {
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_TRIGGER, false)?;
    let deleted = tables.iter().try_for_each(|table| {
        let exists: bool = conn.query_row(
            "SELECT count(*) > 0 FROM main.sqlite_schema WHERE type = 'table' AND name = ?1",
            [table],
            |row| row.get(0),
        )?;
        if exists {
            let quoted = table.replace('"', "\"\"");
            conn.execute(&format!("DELETE FROM main.\"{quoted}\""), [])?;
        }
        Ok(())
    });
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_TRIGGER, true)?;
    deleted
}

/// Deferred foreign-key violations pending on the connection.
fn deferred_foreign_key_violations(conn: &Connection) -> i32 {
    let (mut current, mut highwater) = (0, 0);
    // SAFETY: a live connection handle, used synchronously on its owning thread.
    let code = unsafe {
        rusqlite::ffi::sqlite3_db_status(
            conn.handle(),
            rusqlite::ffi::SQLITE_DBSTATUS_DEFERRED_FKS,
            &mut current,
            &mut highwater,
            0,
        )
    };
    if code == rusqlite::ffi::SQLITE_OK {
        current
    } else {
        0
    }
}

/// Whether a request's effects touch rows an open interactive transaction owns.
type OwnedRowsCheck<'a> = dyn Fn(&[WritePart]) -> Result<bool, EngineError> + 'a;

/// A batch's effects, and each request's outcome (`None`: blocked by a row owner, undone).
type BatchEffects = (
    Vec<WritePart>,
    Vec<Option<Result<Vec<StatementResult>, SqlError>>>,
);

/// Runs one client transaction's statements inside its savepoint.
fn run_request<'c>(
    conn: &'c Connection,
    guard: &ClientSqlGuard,
    statements: &[Statement],
    recorder: &mut Option<ChangeRecorder<'c>>,
    parts: &mut Vec<WritePart>,
) -> Result<Vec<StatementResult>, RequestFailure> {
    if statements.is_empty() {
        return Err(SqlError::InvalidRequest("no statements".into()).into());
    }
    let mut results = Vec::with_capacity(statements.len());
    for statement in statements {
        results.push(run_client_statement(
            conn, guard, statement, recorder, parts,
        )?);
    }
    Ok(results)
}

/// Runs one client statement under the SQL policy. DDL closes the current changeset, is
/// recorded as text, and starts a new one.
fn run_client_statement<'c>(
    conn: &'c Connection,
    guard: &ClientSqlGuard,
    statement: &Statement,
    recorder: &mut Option<ChangeRecorder<'c>>,
    parts: &mut Vec<WritePart>,
) -> Result<StatementResult, RequestFailure> {
    match classify(&statement.sql) {
        StatementClass::Forbidden(keyword) => Err(SqlError::InvalidRequest(format!(
            "{keyword} is not allowed: every request is exactly one transaction"
        ))
        .into()),
        StatementClass::Ddl => {
            // Dropping a table first deletes its rows, which runs foreign-key actions
            // (CASCADE, SET NULL) on other tables. Replicas replay the DROP with foreign keys
            // off, so do that delete here, recorded, and ship its effects as a changeset.
            guard.take_dropped_tables();
            guard
                .while_active(|| conn.prepare_cached(&statement.sql).map(drop))
                .map_err(|e| SqlError::from_sqlite(&e))?;
            let dropped = guard.take_dropped_tables();
            if !dropped.is_empty() {
                // A RESTRICT reference makes this fail, as it would make the DROP fail.
                delete_rows_of_dropped_tables(conn, &dropped)
                    .map_err(|e| SqlError::from_sqlite(&e))?;
            }
            if let Some(r) = recorder.take() {
                push_changeset(parts, r)?;
            }
            let result = guard.while_active(|| run_statement(conn, statement))?;
            parts.push(WritePart::Ddl(statement.sql.clone()));
            *recorder = Some(start_recorder(conn)?);
            Ok(result)
        }
        StatementClass::Dml => {
            if catalog::mentions_catalog(&statement.sql) {
                // Outside the policy: the rebuild writes the attached catalog databases.
                catalog::refresh(conn, true).map_err(|e| SqlError::from_sqlite(&e))?;
            }
            // Named in PostgreSQL's terms outside the guard: the lookup reads the schema.
            Ok(guard
                .while_active(|| run_statement(conn, statement))
                .map_err(|e| constraint_error::in_postgres_terms(conn, &statement.sql, e))?)
        }
    }
}

/// Runs one client transaction's statements inside the savepoint `savepoint` (already open)
/// and appends their effects, as one changeset, to `parts`. With `shapes`, the changes are
/// recorded by a [`RowCapture`] (no session to set up); if they touched a table the capture
/// cannot record, the work is undone to the savepoint and run again under a session, as it is
/// without `shapes` (DDL: schema changes travel as text between changesets).
fn run_recorded(
    conn: &Connection,
    guard: &ClientSqlGuard,
    statements: &[Statement],
    shapes: Option<Arc<Shapes>>,
    savepoint: &str,
    parts: &mut Vec<WritePart>,
) -> Result<Vec<StatementResult>, RequestFailure> {
    let corrupt = |e: CaptureError| RequestFailure::Engine(EngineError::Corrupt(e.to_string()));
    if let Some(shapes) = shapes {
        let mark = parts.len();
        let capture = RowCapture::start(conn, shapes).map_err(corrupt)?;
        let results = run_request(conn, guard, statements, &mut None, parts)?;
        match capture.finish() {
            Ok(changeset) => {
                push_bytes(parts, changeset);
                return Ok(results);
            }
            Err(CaptureError::Unsupported(table)) => {
                tracing::debug!("recording again with a session (table {table})");
                conn.execute_batch(&format!("ROLLBACK TO {savepoint}"))
                    .map_err(|e| RequestFailure::Engine(e.into()))?;
                parts.truncate(mark);
            }
            Err(e) => return Err(corrupt(e)),
        }
    }
    let mut recorder = Some(start_recorder(conn)?);
    let results = run_request(conn, guard, statements, &mut recorder, parts)?;
    if let Some(recorder) = recorder.take() {
        push_changeset(parts, recorder)?;
    }
    Ok(results)
}

fn start_recorder(conn: &Connection) -> Result<ChangeRecorder<'_>, RequestFailure> {
    ChangeRecorder::start(conn).map_err(|e| RequestFailure::Engine(e.into()))
}

fn push_changeset(
    parts: &mut Vec<WritePart>,
    recorder: ChangeRecorder<'_>,
) -> Result<(), RequestFailure> {
    let bytes = recorder
        .finish()
        .map_err(|e| RequestFailure::Engine(e.into()))?;
    push_bytes(parts, bytes);
    Ok(())
}

/// A changeset part's bytes, decompressed.
fn changeset_bytes(part: &WritePart) -> Result<Vec<u8>, EngineError> {
    match part {
        WritePart::Changeset(bytes) => Ok(bytes.clone()),
        WritePart::CompressedChangeset(compressed) => {
            Ok(changeset::decompress(compressed, MAX_CHANGESET_BYTES)?)
        }
        WritePart::Ddl(_) => Err(EngineError::Corrupt(
            "a DDL part where a changeset was expected".into(),
        )),
    }
}

/// Appends a changeset as a part (compressed when large; nothing when empty).
fn push_bytes(parts: &mut Vec<WritePart>, bytes: Vec<u8>) {
    if bytes.len() >= COMPRESS_FROM_BYTES {
        parts.push(WritePart::CompressedChangeset(changeset::compress(&bytes)));
    } else if !bytes.is_empty() {
        parts.push(WritePart::Changeset(bytes));
    }
}

fn run_statement(conn: &Connection, statement: &Statement) -> Result<StatementResult, SqlError> {
    let mut prepared = conn
        .prepare_cached(&statement.sql)
        .map_err(|e| SqlError::from_sqlite(&e))?;
    bind_params(&mut prepared, &statement.params)?;
    let readonly = prepared.readonly();
    let (columns, decltypes, rows) = collect_rows(conn, &mut prepared)?;
    let column_count = columns.len();
    let rows_affected = if readonly { 0 } else { conn.changes() };
    // SQLite's last_insert_rowid is per connection and outlives the statement: report it only
    // for a statement that inserted.
    let inserted = matches!(
        first_keyword(&statement.sql).to_ascii_uppercase().as_str(),
        "INSERT" | "REPLACE"
    );
    Ok(StatementResult {
        rows_affected,
        last_insert_id: if inserted && rows_affected > 0 {
            conn.last_insert_rowid()
        } else {
            0
        },
        columns: if rows.is_empty() && column_count == 0 {
            Vec::new()
        } else {
            columns
        },
        decltypes,
        rows,
    })
}

/// Column names, declared types and every row of a bound statement, within the result budget.
#[allow(clippy::type_complexity)]
fn collect_rows(
    conn: &Connection,
    prepared: &mut rusqlite::Statement<'_>,
) -> Result<(Vec<String>, Vec<Option<String>>, Vec<Vec<SqlValue>>), SqlError> {
    let columns: Vec<String> = prepared.column_names().map(|c| c.to_string()).collect();
    let decltypes = rowid_alias::result_decltypes(conn, prepared);
    let column_count = columns.len();
    let mut rows = Vec::new();
    let mut budget = ResultBudget::default();
    let mut cursor = prepared.raw_query();
    while let Some(row) = cursor.next().map_err(|e| SqlError::from_sqlite(&e))? {
        let values = read_row(row, column_count)?;
        budget.charge(&values)?;
        rows.push(values);
    }
    Ok((columns, decltypes, rows))
}

fn run_query(conn: &Connection, statement: &Statement) -> Result<QueryResult, ReadError> {
    if catalog::mentions_catalog(&statement.sql) {
        catalog::refresh(conn, false).map_err(|e| SqlError::from_sqlite(&e))?;
    }
    let mut prepared = conn
        .prepare_cached(&statement.sql)
        .map_err(|e| SqlError::from_sqlite(&e))?;
    if !prepared.readonly() {
        return Err(SqlError::InvalidRequest(
            "only read-only statements can be queried; send writes to /v1/execute".into(),
        )
        .into());
    }
    bind_params(&mut prepared, &statement.params)?;
    let (columns, decltypes, rows) = collect_rows(conn, &mut prepared)?;
    Ok(QueryResult {
        columns,
        decltypes,
        rows,
    })
}

/// A connection that only prepares: `query_only`, so even a statement stepped by mistake could
/// not write.
fn open_describe_connection(path: &Path) -> Result<Connection, EngineError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    catalog::attach(&conn)?;
    conn.execute_batch("PRAGMA query_only=1; PRAGMA busy_timeout=5000;")?;
    pg_functions::register(&conn)?;
    Ok(conn)
}

fn describe_statement(
    conn: &Connection,
    sql: &str,
    tables: &[String],
) -> Result<Description, ReadError> {
    let prepared = conn
        .prepare_cached(sql)
        .map_err(|e| SqlError::from_sqlite(&e))?;
    let mut description = Description {
        columns: prepared.column_names().map(|c| c.to_string()).collect(),
        decltypes: rowid_alias::result_decltypes(conn, &prepared),
        parameter_count: prepared.parameter_count(),
        readonly: prepared.readonly(),
        tables: Vec::new(),
    };
    drop(prepared);
    let mut columns_of = conn
        .prepare_cached("SELECT name, type, pk FROM pragma_table_info(?1)")
        .map_err(EngineError::from)?;
    for table in tables {
        let mut columns = columns_of
            .query_map([table], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get::<_, i64>(2)? > 0))
            })
            .and_then(|rows| rows.collect::<Result<Vec<(String, String, bool)>, _>>())
            .map_err(EngineError::from)?;
        for (name, declared, primary_key) in &mut columns {
            if *primary_key
                && declared.eq_ignore_ascii_case("INTEGER")
                && let Some(postgres) = rowid_alias::postgres_declared(conn, "main", table, name)
            {
                *declared = postgres.to_owned();
            }
        }
        let columns: Vec<(String, String)> = columns
            .into_iter()
            .map(|(name, declared, _)| (name, declared))
            .collect();
        if !columns.is_empty() {
            description.tables.push((table.clone(), columns));
        }
    }
    Ok(description)
}

fn bind_params(
    prepared: &mut rusqlite::Statement<'_>,
    params: &[SqlValue],
) -> Result<(), SqlError> {
    let expected = prepared.parameter_count();
    if expected != params.len() {
        return Err(SqlError::InvalidRequest(format!(
            "statement takes {expected} parameters, {} given",
            params.len()
        )));
    }
    for (i, value) in params.iter().enumerate() {
        prepared
            .raw_bind_parameter(i + 1, value)
            .map_err(|e| SqlError::from_sqlite(&e))?;
    }
    Ok(())
}

/// Largest result (approximate in-memory bytes) one statement may return; a larger one is
/// refused rather than allowed to exhaust the node's memory.
pub const MAX_RESULT_BYTES: usize = 64 * 1024 * 1024;

/// Counts the approximate size of a result as its rows are read.
#[derive(Default)]
struct ResultBudget {
    used_bytes: usize,
}

impl ResultBudget {
    fn charge(&mut self, row: &[SqlValue]) -> Result<(), SqlError> {
        for value in row {
            self.used_bytes += 16
                + match value {
                    SqlValue::Text(t) => t.len(),
                    SqlValue::Blob(b) => b.len(),
                    _ => 0,
                };
        }
        if self.used_bytes > MAX_RESULT_BYTES {
            return Err(SqlError::InvalidRequest(format!(
                "the result exceeds {MAX_RESULT_BYTES} bytes: narrow it (WHERE, LIMIT) or page through it"
            )));
        }
        Ok(())
    }
}

fn read_row(row: &rusqlite::Row<'_>, column_count: usize) -> Result<Vec<SqlValue>, SqlError> {
    (0..column_count)
        .map(|i| {
            row.get::<_, rusqlite::types::Value>(i)
                .map(SqlValue::from)
                .map_err(|e| SqlError::from_sqlite(&e))
        })
        .collect()
}

/// What kind of statement a request holds, decided from its first keyword.
#[derive(Debug, PartialEq, Eq)]
enum StatementClass {
    /// Changes rows: captured by the session.
    Dml,
    /// Changes the schema: replicated as text.
    Ddl,
    /// Would break the one-request-one-transaction rule or reach outside the database.
    Forbidden(String),
}

fn classify(sql: &str) -> StatementClass {
    let keyword = first_keyword(sql).to_ascii_uppercase();
    match keyword.as_str() {
        "CREATE" | "DROP" | "ALTER" | "ANALYZE" | "REINDEX" => StatementClass::Ddl,
        "BEGIN" | "COMMIT" | "END" | "ROLLBACK" | "SAVEPOINT" | "RELEASE" | "ATTACH" | "DETACH"
        | "VACUUM" | "PRAGMA" => StatementClass::Forbidden(keyword),
        _ => StatementClass::Dml,
    }
}

/// The first word of a statement, skipping whitespace and comments.
fn first_keyword(sql: &str) -> &str {
    let mut rest = sql;
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix("--") {
            rest = after.find('\n').map(|i| &after[i..]).unwrap_or("");
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.find("*/").map(|i| &after[i + 2..]).unwrap_or("");
        } else {
            break;
        }
    }
    let end = rest
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(rest.len());
    &rest[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement(sql: &str) -> Statement {
        Statement {
            sql: sql.into(),
            params: Vec::new(),
        }
    }

    fn open(dir: &Path, node_id: NodeId) -> Engine {
        Engine::open(EngineOptions {
            db_path: dir.join("db.sqlite"),
            node_id,
            read_connections: 1,
            ids: None,
        })
        .expect("engine opens")
    }

    fn log_id(index: u64) -> LogId {
        use openraft::vote::RaftLeaderIdExt;
        LogId::new(
            openraft::alias::LeaderIdOf::<crate::raft::types::TypeConfig>::new_committed(1, 1),
            index,
        )
    }

    async fn rows(engine: &Engine, sql: &str) -> Vec<Vec<SqlValue>> {
        engine.query(statement(sql)).await.expect("query").rows
    }

    /// A reader that gives up (its RPC was cancelled) while its statement still runs does not
    /// free the connection's slot early: the next read waits for the connection instead of
    /// finding the pool empty (which reported the engine as stopped).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cancelled_read_keeps_its_connection_until_it_finishes() {
        let dir = tempfile::tempdir().expect("dir");
        let engine = open(dir.path(), 1);
        let slow = engine.query(statement(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000000) \
             SELECT count(*) FROM c",
        ));
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(20), slow)
                .await
                .is_err(),
            "the slow read was cancelled while running"
        );
        assert_eq!(
            rows(&engine, "SELECT 1").await,
            vec![vec![SqlValue::Integer(1)]]
        );
    }

    /// One batch mixing successful and failing transactions, with and without DDL: the failing
    /// ones leave nothing in the batch's entry, and a replica applying the entry ends with
    /// exactly the leader's data. Nothing is visible to readers before the entry is applied.
    #[tokio::test]
    async fn a_batch_replicates_exactly_its_successful_transactions() {
        let (leader_dir, replica_dir) = (
            tempfile::tempdir().expect("dir"),
            tempfile::tempdir().expect("dir"),
        );
        let (leader, replica) = (open(leader_dir.path(), 1), open(replica_dir.path(), 2));
        let batch = vec![
            vec![statement(
                "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT UNIQUE)",
            )],
            vec![statement("INSERT INTO t(v) VALUES ('a')")],
            vec![statement("INSERT INTO t(v) VALUES ('a')")], // unique violation
            vec![
                statement("CREATE TABLE gone(x)"),
                statement("INSERT INTO gone VALUES (1)"),
                statement("INSERT INTO t(v) VALUES ('a')"),
            ],
            vec![
                statement("UPDATE t SET v = 'b' WHERE v = 'a'"),
                statement("INSERT INTO t(v) VALUES (hex(randomblob(4)))"),
            ],
            vec![
                statement("CREATE TABLE u(x)"),
                statement("INSERT INTO u VALUES (random())"),
            ],
            vec![statement("INSERT INTO u SELECT x + 1 FROM u")],
        ];
        let executed = leader.execute(batch).await.expect("execute");
        let ok: Vec<bool> = executed.results.iter().map(Result::is_ok).collect();
        assert_eq!(ok, [true, true, false, false, true, true, true]);
        assert!(
            !executed
                .parts
                .iter()
                .any(|p| matches!(p, WritePart::Ddl(sql) if sql.contains("gone"))),
            "the failed transaction's DDL is not replicated"
        );
        // Not committed yet: readers see nothing of the batch.
        assert!(
            leader.query(statement("SELECT * FROM t")).await.is_err(),
            "table not visible before apply"
        );

        let command = Command::Write {
            proposal: executed.proposal.expect("proposal"),
            parts: executed.parts,
        };
        let item = ApplyItem {
            log_id: log_id(1),
            payload: ApplyPayload::Write(command),
        };
        leader
            .apply(vec![item.clone()])
            .await
            .expect("leader apply");
        replica.apply(vec![item]).await.expect("replica apply");
        for sql in [
            "SELECT id, v FROM t ORDER BY id",
            "SELECT x FROM u ORDER BY x",
            "SELECT name FROM sqlite_master ORDER BY name",
        ] {
            assert_eq!(rows(&leader, sql).await, rows(&replica, sql).await, "{sql}");
        }
        assert_eq!(
            rows(&leader, "SELECT count(*) FROM t").await,
            vec![vec![SqlValue::Integer(2)]]
        );
        assert_eq!(*replica.visible().borrow(), Some(log_id(1)));
    }

    /// A statement that rolls back the whole transaction (`INSERT OR ROLLBACK`) must not leave
    /// the engine writing outside a transaction: the batch is refused whole, the committed state
    /// is intact, and the next batch works normally.
    #[tokio::test]
    async fn a_statement_rolling_back_everything_discards_the_batch_cleanly() {
        let dir = tempfile::tempdir().expect("dir");
        let engine = open(dir.path(), 1);
        let setup = engine
            .execute(vec![vec![
                statement("CREATE TABLE t(v TEXT UNIQUE)"),
                statement("INSERT INTO t VALUES ('a')"),
            ]])
            .await
            .expect("setup");
        let item = |index, executed: ExecutedBatch| ApplyItem {
            log_id: log_id(index),
            payload: ApplyPayload::Write(Command::Write {
                proposal: executed.proposal.expect("proposal"),
                parts: executed.parts,
            }),
        };
        engine
            .apply(vec![item(1, setup)])
            .await
            .expect("apply setup");
        let broken = engine
            .execute(vec![
                vec![statement("INSERT INTO t VALUES ('b')")],
                vec![statement("INSERT OR ROLLBACK INTO t VALUES ('a')")],
            ])
            .await;
        assert!(
            matches!(broken, Err(EngineError::BatchRolledBack)),
            "{broken:?}"
        );
        assert_eq!(
            rows(&engine, "SELECT v FROM t ORDER BY v").await,
            vec![vec![SqlValue::Text("a".into())]]
        );
        let next = engine
            .execute(vec![vec![statement("INSERT INTO t VALUES ('c')")]])
            .await
            .expect("next batch");
        assert!(next.results[0].is_ok());
        engine.apply(vec![item(2, next)]).await.expect("apply next");
        assert_eq!(
            rows(&engine, "SELECT v FROM t ORDER BY v").await,
            vec![
                vec![SqlValue::Text("a".into())],
                vec![SqlValue::Text("c".into())]
            ]
        );
    }

    /// A deferred foreign-key violation is refused with the transaction that caused it, not at
    /// the batch's COMMIT after Raft committed it.
    #[tokio::test]
    async fn deferred_foreign_key_violations_fail_their_own_transaction() {
        let dir = tempfile::tempdir().expect("dir");
        let engine = open(dir.path(), 1);
        let executed = engine
            .execute(vec![
                vec![
                    statement("CREATE TABLE p(id INTEGER PRIMARY KEY)"),
                    statement(
                        "CREATE TABLE c(p INTEGER REFERENCES p(id) DEFERRABLE INITIALLY DEFERRED)",
                    ),
                ],
                vec![statement("INSERT INTO c VALUES (42)")],
                vec![
                    statement("INSERT INTO p VALUES (1)"),
                    statement("INSERT INTO c VALUES (1)"),
                ],
            ])
            .await
            .expect("execute");
        let ok: Vec<bool> = executed.results.iter().map(Result::is_ok).collect();
        assert_eq!(ok, [true, false, true]);
        assert!(matches!(
            &executed.results[1],
            Err(SqlError::Constraint { .. })
        ));
        let item = ApplyItem {
            log_id: log_id(1),
            payload: ApplyPayload::Write(Command::Write {
                proposal: executed.proposal.expect("proposal"),
                parts: executed.parts,
            }),
        };
        engine.apply(vec![item]).await.expect("the batch commits");
        assert_eq!(
            rows(&engine, "SELECT p FROM c").await,
            vec![vec![SqlValue::Integer(1)]]
        );
    }

    /// Dropping a parent table cascades to its children on the leader; replicas replay the DROP
    /// with foreign keys off, so the cascade must travel as a changeset.
    #[tokio::test]
    async fn dropping_a_parent_table_replicates_its_cascades() {
        let (leader_dir, replica_dir) = (
            tempfile::tempdir().expect("dir"),
            tempfile::tempdir().expect("dir"),
        );
        let (leader, replica) = (open(leader_dir.path(), 1), open(replica_dir.path(), 2));
        let batches = [
            vec![vec![
                statement("CREATE TABLE p(id INTEGER PRIMARY KEY)"),
                statement(
                    "CREATE TABLE c(id INTEGER PRIMARY KEY, p INTEGER REFERENCES p(id) ON DELETE CASCADE)",
                ),
                statement(
                    "CREATE TABLE n(id INTEGER PRIMARY KEY, p INTEGER REFERENCES p(id) ON DELETE SET NULL)",
                ),
                statement("INSERT INTO p VALUES (1), (2)"),
                statement("INSERT INTO c VALUES (10, 1), (11, 2)"),
                statement("INSERT INTO n VALUES (20, 1)"),
            ]],
            vec![
                vec![statement("DROP TABLE p")],
                vec![statement("DROP TABLE IF EXISTS nothing_here")],
            ],
        ];
        for (index, batch) in batches.into_iter().enumerate() {
            let executed = leader.execute(batch).await.expect("execute");
            assert!(
                executed.results.iter().all(Result::is_ok),
                "{:?}",
                executed.results
            );
            let item = ApplyItem {
                log_id: log_id(index as u64 + 1),
                payload: ApplyPayload::Write(Command::Write {
                    proposal: executed.proposal.expect("proposal"),
                    parts: executed.parts,
                }),
            };
            leader
                .apply(vec![item.clone()])
                .await
                .expect("leader apply");
            replica.apply(vec![item]).await.expect("replica apply");
        }
        for sql in ["SELECT * FROM c ORDER BY id", "SELECT * FROM n ORDER BY id"] {
            assert_eq!(rows(&leader, sql).await, rows(&replica, sql).await, "{sql}");
        }
        assert!(
            rows(&replica, "SELECT * FROM c").await.is_empty(),
            "the cascade reached the replica"
        );
        assert_eq!(
            rows(&replica, "SELECT p FROM n").await,
            vec![vec![SqlValue::Null]]
        );
    }

    /// A result too large to hold is refused with a clear error instead of exhausting memory.
    #[tokio::test]
    async fn oversized_results_are_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let engine = open(dir.path(), 1);
        let huge = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 600000) \
                    SELECT x, zeroblob(100) FROM c";
        match engine.query(statement(huge)).await {
            Err(ReadError::Sql(SqlError::InvalidRequest(message))) => {
                assert!(message.contains("exceeds"))
            }
            other => panic!("expected a refusal, got {:?}", other.map(|r| r.rows.len())),
        }
        let small = engine
            .query(statement("SELECT zeroblob(100)"))
            .await
            .expect("small result");
        assert_eq!(small.rows.len(), 1);
    }

    #[test]
    fn first_keyword_skips_comments() {
        assert_eq!(first_keyword("  -- hi\n /* x */ create table"), "create");
        assert_eq!(
            classify("/*a*/BEGIN"),
            StatementClass::Forbidden("BEGIN".into())
        );
        assert_eq!(classify("insert into t values (1)"), StatementClass::Dml);
        assert_eq!(classify("ALTER TABLE t ADD c"), StatementClass::Ddl);
    }
}

//! One client connection's session: its settings and read consistency, the last log index it
//! wrote or read (what `session` consistency waits for), and the pgwire handlers that turn
//! startup, simple-query and extended-query messages into dispatcher calls.
//!
//! [`Session`] holds the state behind a std mutex that is never held across an `.await`; the
//! handlers ([`Handler`], [`Parser`]) are created per connection and share it.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::Instant;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::{Sink, SinkExt};
use pgwire::api::auth::{
    StartupHandler, protocol_negotiation, save_startup_parameters_to_metadata,
};
use pgwire::api::copy::CopyHandler;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{
    CopyResponse, DescribePortalResponse, DescribeStatementResponse, FieldFormat, FieldInfo,
    QueryResponse, Response, Tag,
};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::PortalStore;
use pgwire::api::{
    ClientInfo, ClientPortalStore, ConnectionManager, PgWireConnectionState, PidSecretKeyGenerator,
    RandomPidSecretKeyGenerator, Type,
};
use pgwire::error::ErrorInfo;
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail};
use pgwire::messages::data::DataRow;
use pgwire::messages::extendedquery::{Execute, Parse, ParseComplete, Sync as PgSync};
use pgwire::messages::response::{NoticeResponse, ReadyForQuery, TransactionStatus};
use pgwire::messages::simplequery::Query;
use pgwire::messages::startup::{Authentication, BackendKeyData, ParameterStatus, Startup};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use crate::dispatch::error::RequestError;
use crate::dispatch::routing::ReadContext;
use crate::dispatch::write::TxnOutcome;
use crate::dispatch::{Consistency, Dispatcher};
use crate::frontend::pg::auth::{AuthPolicy, Login, LoginStep};
use crate::frontend::pg::commands::{self, Command, Function, Settings};
use crate::frontend::pg::copy::{self, CopyCommand, CopyOptions, CopySource};
use crate::frontend::pg::dialect;
use crate::frontend::pg::error::{
    PgError, error, fatal, into_pgwire, request_error, translate_error,
};
use crate::frontend::pg::sql::{self, Route, SqlText};
use crate::frontend::pg::status::SessionStatus;
use crate::frontend::pg::tags::{TagKind, tag_kind};
use crate::frontend::pg::transaction::{
    self, ExplicitTxn, Isolation, TxnControl, in_failed_transaction,
};
use crate::frontend::pg::types;
use crate::raft::types::LogIndex;
use crate::storage::engine::{ReadError, TxnStep};
use crate::storage::error::SqlError;
use crate::storage::request::{Description, SqlValue, Statement, StatementResult};

/// Per-connection state shared by the handlers.
pub struct Session {
    dispatcher: Dispatcher,
    state: Mutex<SessionState>,
}

struct SessionState {
    settings: Settings,
    /// The highest log index this session wrote or read at: `session` reads wait for it.
    last_index: LogIndex,
    user: String,
    database: String,
    pid: i32,
    /// The client's address (for the `client_addr` hash key).
    client_addr: Option<std::net::IpAddr>,
    /// The explicit transaction (`BEGIN` ... `COMMIT`), if one is open.
    txn: Option<ExplicitTxn>,
    /// A `COPY ... FROM STDIN` receiving data.
    copy_in: Option<CopyIn>,
    /// Names of the statements this connection prepared with Parse (pgwire's store cannot
    /// list them): what `DEALLOCATE ALL` drops.
    prepared_names: std::collections::BTreeSet<String>,
}

/// A COPY FROM STDIN in progress: its target and the data received so far.
struct CopyIn {
    table: String,
    columns: Vec<String>,
    options: CopyOptions,
    data: Vec<u8>,
    /// More than `copy::MAX_COPY_BYTES` arrived: refused at CopyDone.
    overflow: bool,
}

impl Session {
    pub fn new(dispatcher: Dispatcher) -> Arc<Session> {
        let settings = Settings::new(&BTreeMap::new(), dispatcher.default_max_lag);
        Arc::new(Session {
            dispatcher,
            state: Mutex::new(SessionState {
                settings,
                last_index: 0,
                user: String::new(),
                database: String::new(),
                pid: 0,
                client_addr: None,
                txn: None,
                copy_in: None,
                prepared_names: Default::default(),
            }),
        })
    }

    /// The transaction status ReadyForQuery reports: idle, in a transaction, or in a failed one.
    pub fn transaction_status(&self) -> TransactionStatus {
        match &self.state().txn {
            None => TransactionStatus::Idle,
            Some(txn) if txn.failed => TransactionStatus::Error,
            Some(_) => TransactionStatus::Transaction,
        }
    }

    fn in_failed_transaction(&self) -> bool {
        self.state().txn.as_ref().is_some_and(|t| t.failed)
    }

    fn in_transaction(&self) -> bool {
        self.state().txn.is_some()
    }

    /// A query canceled mid-statement fails the explicit transaction it ran in.
    fn note_canceled(&self, result: &PgWireResult<()>) {
        if matches!(result, Err(PgWireError::QueryCanceled)) {
            self.note_error();
        }
    }

    /// An error inside an explicit transaction fails it, as in PostgreSQL.
    fn note_error(&self) {
        if let Some(txn) = self.state().txn.as_mut() {
            txn.failed = true;
        }
    }

    /// The state, even if a panicking thread poisoned the lock (it holds plain values).
    fn state(&self) -> MutexGuard<'_, SessionState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn consistency(&self) -> (Consistency, LogIndex) {
        let state = self.state();
        (state.settings.consistency, state.last_index)
    }

    /// What routing rules and hash keys may read about this session.
    fn read_context(&self) -> ReadContext {
        let state = self.state();
        ReadContext {
            user: Some(state.user.clone()),
            application_name: state
                .settings
                .get("application_name")
                .filter(|a| !a.is_empty())
                .map(str::to_owned),
            session: u64::try_from(state.pid).ok(),
            client_addr: state.client_addr,
            max_lag: Some(state.settings.max_lag()),
        }
    }

    fn observe(&self, index: LogIndex) {
        let mut state = self.state();
        state.last_index = state.last_index.max(index);
    }

    /// Prepares `sql` on this node's committed data. The node must first have applied the
    /// session's own writes; and if SQLite does not know a table or column, this node may
    /// simply lag: unless the session reads at `any`, it catches up to a linearizable read
    /// index and tries once more.
    async fn describe(&self, sql: &str, tables: &[String]) -> Result<Description, PgError> {
        let (consistency, last_index) = self.consistency();
        let deadline = Instant::now() + self.dispatcher.timeouts.read;
        self.wait_visible(last_index, deadline).await?;
        let engine = &self.dispatcher.engine;
        let first = engine.describe(sql.to_owned(), tables.to_vec()).await;
        let lagging = matches!(
            &first,
            Err(ReadError::Sql(SqlError::Statement { message, .. }))
                if message.starts_with("no such table") || message.starts_with("no such column")
        );
        let result = if lagging && consistency != Consistency::Any {
            match self.dispatcher.read_index(deadline).await {
                Ok(index) => {
                    self.wait_visible(index, deadline).await?;
                    engine.describe(sql.to_owned(), tables.to_vec()).await
                }
                Err(_) => first,
            }
        } else {
            first
        };
        result.map_err(|e| match e {
            ReadError::Sql(sql) => request_error(&RequestError::Sql(sql)),
            ReadError::Engine(engine) => {
                request_error(&RequestError::Unavailable(engine.to_string()))
            }
        })
    }

    async fn wait_visible(&self, index: LogIndex, deadline: Instant) -> Result<(), PgError> {
        if index == 0 {
            return Ok(());
        }
        let mut visible = self.dispatcher.engine.visible();
        let reached = visible.wait_for(|applied| applied.map(|l| l.index).unwrap_or(0) >= index);
        match tokio::time::timeout_at(deadline.into(), reached).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(request_error(&RequestError::Unavailable(
                "storage stopped".into(),
            ))),
            Err(_) => Err(request_error(&RequestError::Timeout(format!(
                "node {} has not applied index {index} yet",
                self.dispatcher.node_id
            )))),
        }
    }

    /// Runs one SQL statement: a read at the session's consistency, or a write as its own
    /// transaction on the leader.
    async fn run(&self, plan: &SqlPlan, params: Vec<SqlValue>) -> Result<Outcome, PgError> {
        let on_writer = {
            let mut state = self.state();
            match state.txn.as_mut() {
                None => false,
                Some(txn) if txn.failed => return Err(in_failed_transaction()),
                Some(txn) => {
                    txn.fresh = false;
                    if txn.read_only && plan.route == Route::Write {
                        return Err(error(
                            "25006",
                            "cannot execute a write in a read-only transaction",
                        ));
                    }
                    // Reads before the first write see the latest committed data, as under
                    // PostgreSQL's READ COMMITTED; from the first write on (or from the start,
                    // for stricter isolation) everything runs on the leader's writer.
                    txn.remote.is_some()
                        || plan.route == Route::Write
                        || txn.isolation == Isolation::Serializable
                        || plan.locks_rows
                }
            }
        };
        let hold_writer = on_writer
            && self.state().txn.as_ref().is_some_and(|txn| {
                !txn.exclusive && (txn.isolation == Isolation::Serializable || plan.locks_rows)
            });
        if hold_writer {
            // Stricter isolation, or row locks the translation cannot express: nobody else
            // writes until this transaction ends.
            self.transaction_step(TxnStep::Exclusive).await?;
            if let Some(txn) = self.state().txn.as_mut() {
                txn.exclusive = true;
            }
        }
        if on_writer {
            // A translation into several statements answers with its last one's outcome.
            let mut last = Outcome::Done {
                tag: plan.tag.tag(0),
            };
            let params = plan.bind(params);
            for sql in &plan.sqlite {
                let statement = Statement {
                    sql: sql.clone(),
                    params: params.clone(),
                };
                last = self.run_in_transaction(statement, plan.tag.clone()).await?;
            }
            return Ok(with_plan_types(last, plan));
        }
        match (plan.route, plan.sqlite.as_slice()) {
            (Route::Read, [sql]) => {
                let statement = Statement {
                    sql: sql.clone(),
                    params: plan.bind(params),
                };
                let (consistency, last_index) = self.consistency();
                let context = self.read_context();
                let read = self
                    .dispatcher
                    .query(statement, consistency, last_index, &context)
                    .await
                    .map_err(|e| request_error(&e))?;
                self.observe(read.index);
                Ok(Outcome::Rows {
                    tag: plan.tag.clone(),
                    columns: read.result.columns,
                    decltypes: with_known_types(read.result.decltypes, &plan.column_decltypes),
                    rows: read.result.rows,
                })
            }
            _ => {
                let mut outcomes = self
                    .execute_plans(std::slice::from_ref(plan), params)
                    .await?;
                outcomes
                    .pop()
                    .ok_or_else(|| error("XX000", "the write returned no result"))
            }
        }
    }

    /// Runs the plans' SQLite statements as one transaction on the leader; one outcome per
    /// plan, its last statement's (the statements before it only prepare its effect: the
    /// first `DELETE` of a `TRUNCATE a, b`). A plan with nothing to run (`VACUUM`) just
    /// answers its tag.
    async fn execute_plans(
        &self,
        plans: &[SqlPlan],
        params: Vec<SqlValue>,
    ) -> Result<Vec<Outcome>, PgError> {
        let statements: Vec<(Statement, TagKind)> = plans
            .iter()
            .flat_map(|plan| {
                let params = plan.bind(params.clone());
                plan.sqlite.iter().map(move |sql| {
                    let statement = Statement {
                        sql: sql.clone(),
                        params: params.clone(),
                    };
                    (statement, plan.tag.clone())
                })
            })
            .collect();
        let mut outcomes = if statements.is_empty() {
            Vec::new()
        } else {
            self.execute(statements).await?
        }
        .into_iter();
        Ok(plans
            .iter()
            .map(|plan| {
                let done = Outcome::Done {
                    tag: plan.tag.tag(0),
                };
                let last = plan
                    .sqlite
                    .iter()
                    .fold(done, |last, _| outcomes.next().unwrap_or(last));
                with_plan_types(last, plan)
            })
            .collect())
    }

    /// Runs statements as one transaction on the leader.
    async fn execute(
        &self,
        statements: Vec<(Statement, TagKind)>,
    ) -> Result<Vec<Outcome>, PgError> {
        let (statements, tags): (Vec<Statement>, Vec<TagKind>) = statements.into_iter().unzip();
        let written = self
            .dispatcher
            .execute(statements)
            .await
            .map_err(|e| request_error(&e))?;
        self.observe(written.index);
        Ok(written
            .results
            .into_iter()
            .zip(tags)
            .map(|(result, tag)| outcome(result, tag))
            .collect())
    }

    /// Runs a statement of the explicit transaction on the leader's writer (beginning the
    /// transaction there with its first write).
    async fn run_in_transaction(
        &self,
        statement: Statement,
        tag: TagKind,
    ) -> Result<Outcome, PgError> {
        match self.transaction_step(TxnStep::Execute(statement)).await? {
            TxnOutcome::Executed(result) => Ok(outcome(result, tag)),
            other => Err(error(
                "XX000",
                format!("unexpected transaction answer {other:?}"),
            )),
        }
    }

    /// Sends one step of the explicit transaction to where it lives, remembering where that is.
    /// A lost transaction (leader change, idle timeout) leaves nothing to roll back.
    async fn transaction_step(&self, step: TxnStep) -> Result<TxnOutcome, PgError> {
        let remote = self.state().txn.as_ref().and_then(|t| t.remote);
        let ends = matches!(step, TxnStep::Commit | TxnStep::Rollback);
        let answer = self.dispatcher.transaction(remote, step).await;
        let mut state = self.state();
        match answer {
            Ok((txn_ref, outcome)) => {
                if let Some(txn) = state.txn.as_mut()
                    && !ends
                {
                    txn.remote = Some(txn_ref);
                }
                Ok(outcome)
            }
            Err(e) => {
                if let Some(txn) = state.txn.as_mut()
                    && matches!(
                        e,
                        RequestError::TransactionLost(_) | RequestError::Deadlock(_)
                    )
                {
                    txn.remote = None;
                    txn.savepoints.clear();
                    txn.exclusive = false;
                }
                Err(request_error(&e))
            }
        }
    }

    /// Starts a COPY: FROM STDIN answers CopyInResponse and waits for the data (the
    /// connection's CopyHandler); TO STDOUT reads the rows and streams them.
    async fn start_copy(&self, command: CopyCommand) -> Result<Response, PgError> {
        if self.in_failed_transaction() {
            return Err(in_failed_transaction());
        }
        match command {
            CopyCommand::In {
                table,
                columns,
                options,
            } => {
                if self.state().txn.as_ref().is_some_and(|t| t.read_only) {
                    return Err(error(
                        "25006",
                        "cannot execute COPY FROM in a read-only transaction",
                    ));
                }
                let columns = match columns {
                    Some(columns) => columns,
                    None => {
                        let sql = format!("SELECT * FROM {}", quote_identifier(&table));
                        self.describe(&sql, std::slice::from_ref(&table))
                            .await?
                            .columns
                    }
                };
                let count = columns.len();
                self.state().copy_in = Some(CopyIn {
                    table,
                    columns,
                    options,
                    data: Vec::new(),
                    overflow: false,
                });
                Ok(Response::CopyIn(CopyResponse::new(
                    0,
                    count,
                    futures::stream::empty(),
                )))
            }
            CopyCommand::Out { source, options } => {
                let query = match source {
                    CopySource::Table { table, columns } => {
                        let list = columns
                            .map(|c| {
                                c.iter()
                                    .map(|c| quote_identifier(c))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            })
                            .unwrap_or_else(|| "*".into());
                        format!("SELECT {list} FROM {}", quote_identifier(&table))
                    }
                    CopySource::Query(query) => query,
                };
                let plan = simple_plan(&SqlText::new(&query))?;
                let Outcome::Rows {
                    columns,
                    decltypes,
                    rows,
                    ..
                } = self.run(&plan, Vec::new()).await?
                else {
                    return Err(error(
                        "0A000",
                        "COPY (query) TO needs a query that returns rows",
                    ));
                };
                let width = columns.len();
                // Formatting a large table is long CPU work: off the async workers, so the
                // node's heartbeats and other sessions keep running meanwhile.
                let lines = tokio::task::spawn_blocking(move || {
                    let types = types::result_types(&columns, &decltypes, &rows);
                    let mut lines = Vec::with_capacity(rows.len() + 1);
                    if options.header {
                        lines.push(copy::format_header(&columns, &options));
                    }
                    for row in rows {
                        let values = row
                            .iter()
                            .zip(&types)
                            .map(|(value, ty)| types::encode_text(value, ty))
                            .collect::<Result<Vec<_>, _>>()
                            .map_err(|e| error(e.code, e.message))?;
                        lines.push(copy::format_row(&values, &options));
                    }
                    Ok::<_, PgError>(lines)
                })
                .await
                .map_err(|e| error("XX000", format!("formatting COPY TO rows failed: {e}")))??;
                let data = lines
                    .into_iter()
                    .map(|line| Ok(CopyData::new(Bytes::from(line))));
                Ok(Response::CopyOut(CopyResponse::new(
                    0,
                    width,
                    futures::stream::iter(data),
                )))
            }
        }
    }

    /// Takes more COPY FROM data.
    fn copy_data(&self, data: &[u8]) {
        if let Some(copy) = self.state().copy_in.as_mut() {
            if copy.data.len() + data.len() > copy::MAX_COPY_BYTES {
                copy.overflow = true;
                copy.data = Vec::new();
            } else if !copy.overflow {
                copy.data.extend_from_slice(data);
            }
        }
    }

    /// Ends COPY FROM: inserts every row as one transaction (or as part of the open one);
    /// returns the row count.
    async fn finish_copy(&self) -> Result<u64, PgError> {
        let copy = self
            .state()
            .copy_in
            .take()
            .ok_or_else(|| error("08P01", "CopyDone without COPY FROM STDIN"))?;
        if copy.overflow {
            return Err(error(
                "54000",
                format!(
                    "COPY data exceeds {} bytes; split it into several COPY statements",
                    copy::MAX_COPY_BYTES
                ),
            ));
        }
        // Parsing a large load is long CPU work: off the async workers, so the node's
        // heartbeats and other sessions keep running meanwhile (a worker busy for a second
        // once cost this node its leadership).
        let (count, statements) = tokio::task::spawn_blocking(move || {
            let rows = copy::parse_rows(&copy.data, &copy.options, copy.columns.len())?;
            drop(copy.data);
            let count = rows.len() as u64;
            Ok::<_, PgError>((
                count,
                copy_insert_statements(&copy.table, &copy.columns, rows),
            ))
        })
        .await
        .map_err(|e| error("XX000", format!("parsing COPY data failed: {e}")))??;
        if statements.is_empty() {
            return Ok(0);
        }
        if self.in_transaction() {
            for statement in statements {
                self.run_in_transaction(statement, TagKind::Insert).await?;
            }
            return Ok(count);
        }
        // Autocommit: the whole COPY is one transaction on the leader.
        let mut txn = None;
        for statement in statements {
            match self
                .dispatcher
                .transaction(txn, TxnStep::Execute(statement))
                .await
            {
                Ok((at, _)) => txn = Some(at),
                Err(e) => {
                    if txn.is_some() {
                        let _ = self.dispatcher.transaction(txn, TxnStep::Rollback).await;
                    }
                    return Err(request_error(&e));
                }
            }
        }
        match self.dispatcher.transaction(txn, TxnStep::Commit).await {
            Ok((_, TxnOutcome::Committed(index))) => {
                self.observe(index);
                Ok(count)
            }
            Ok((_, other)) => Err(error(
                "XX000",
                format!("unexpected answer to COMMIT: {other:?}"),
            )),
            Err(e) => Err(request_error(&e)),
        }
    }

    /// COPY FROM was abandoned by the client (CopyFail) or by an error.
    fn abandon_copy(&self) {
        self.state().copy_in = None;
    }

    /// Answers a transaction-control statement.
    async fn transaction_control<C>(
        &self,
        client: &mut C,
        control: TxnControl,
    ) -> PgWireResult<Response>
    where
        C: Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (open, failed, remote) = {
            let state = self.state();
            match &state.txn {
                None => (false, false, None),
                Some(txn) => (true, txn.failed, txn.remote),
            }
        };
        let release = matches!(control, TxnControl::Release(_));
        let response = match control {
            TxnControl::Begin { modes, tag } => {
                if failed {
                    Response::Error(in_failed_transaction())
                } else if open {
                    warn(
                        client,
                        "25001",
                        "there is already a transaction in progress",
                    )
                    .await?;
                    Response::TransactionStart(Tag::new(tag))
                } else {
                    self.state().txn = Some(ExplicitTxn::new(modes));
                    Response::TransactionStart(Tag::new(tag))
                }
            }
            TxnControl::SetTransaction(_) if !open => {
                warn(
                    client,
                    "25P01",
                    "SET TRANSACTION can only be used in transaction blocks",
                )
                .await?;
                Response::Execution(Tag::new("SET"))
            }
            TxnControl::SetTransaction(modes) => {
                let mut state = self.state();
                match state.txn.as_mut() {
                    None => Response::Execution(Tag::new("SET")),
                    Some(txn) if txn.failed => Response::Error(in_failed_transaction()),
                    Some(txn) if !txn.fresh && modes.isolation.is_some() => Response::Error(error(
                        "25001",
                        "SET TRANSACTION ISOLATION LEVEL must be called before any query",
                    )),
                    Some(txn) => {
                        if let Some(read_only) = modes.read_only {
                            txn.read_only = read_only;
                        }
                        if let Some(isolation) = modes.isolation {
                            txn.isolation = isolation;
                        }
                        Response::Execution(Tag::new("SET"))
                    }
                }
            }
            TxnControl::Commit if !open => {
                warn(client, "25P01", "there is no transaction in progress").await?;
                Response::TransactionEnd(Tag::new("COMMIT"))
            }
            TxnControl::Commit if failed || remote.is_none() => {
                if remote.is_some() {
                    // Best effort: the leader rolls it back on its own if this is lost.
                    let _ = self.transaction_step(TxnStep::Rollback).await;
                }
                self.state().txn = None;
                Response::TransactionEnd(Tag::new(if failed { "ROLLBACK" } else { "COMMIT" }))
            }
            TxnControl::Commit => {
                let committed = self.transaction_step(TxnStep::Commit).await;
                self.state().txn = None;
                match committed {
                    Ok(TxnOutcome::Committed(index)) => {
                        self.observe(index);
                        Response::TransactionEnd(Tag::new("COMMIT"))
                    }
                    Ok(other) => Response::Error(error(
                        "XX000",
                        format!("unexpected answer to COMMIT: {other:?}"),
                    )),
                    Err(e) => Response::Error(e),
                }
            }
            TxnControl::Rollback => {
                if !open {
                    warn(client, "25P01", "there is no transaction in progress").await?;
                } else if remote.is_some() {
                    let _ = self.transaction_step(TxnStep::Rollback).await;
                }
                self.state().txn = None;
                Response::TransactionEnd(Tag::new("ROLLBACK"))
            }
            TxnControl::Savepoint(_) | TxnControl::Release(_) | TxnControl::RollbackTo(_)
                if !open =>
            {
                let what = match control {
                    TxnControl::Savepoint(_) => "SAVEPOINT",
                    TxnControl::Release(_) => "RELEASE SAVEPOINT",
                    _ => "ROLLBACK TO SAVEPOINT",
                };
                Response::Error(error(
                    "25P01",
                    format!("{what} can only be used in transaction blocks"),
                ))
            }
            TxnControl::Savepoint(_) | TxnControl::Release(_) if failed => {
                Response::Error(in_failed_transaction())
            }
            TxnControl::Savepoint(name) => {
                match self
                    .transaction_step(TxnStep::Savepoint(name.clone()))
                    .await
                {
                    Ok(_) => {
                        if let Some(txn) = self.state().txn.as_mut() {
                            txn.fresh = false;
                            txn.savepoints.push(name);
                        }
                        Response::Execution(Tag::new("SAVEPOINT"))
                    }
                    Err(e) => Response::Error(e),
                }
            }
            TxnControl::Release(name) | TxnControl::RollbackTo(name) => {
                let position = self
                    .state()
                    .txn
                    .as_ref()
                    .and_then(|t| t.savepoints.iter().rposition(|n| *n == name));
                match position {
                    None => Response::Error(error(
                        "3B001",
                        format!("savepoint \"{name}\" does not exist"),
                    )),
                    Some(at) => {
                        let step = if release {
                            TxnStep::Release(name)
                        } else {
                            TxnStep::RollbackTo(name)
                        };
                        match self.transaction_step(step).await {
                            Ok(_) => {
                                if let Some(txn) = self.state().txn.as_mut() {
                                    if release {
                                        txn.savepoints.truncate(at);
                                    } else {
                                        txn.savepoints.truncate(at + 1);
                                        txn.failed = false;
                                    }
                                }
                                Response::Execution(Tag::new(if release {
                                    "RELEASE"
                                } else {
                                    "ROLLBACK"
                                }))
                            }
                            Err(e) => Response::Error(e),
                        }
                    }
                }
            }
        };
        Ok(response)
    }

    /// Answers a command the front end handles itself. Setting changes that clients track
    /// are reported with ParameterStatus.
    async fn run_command<C>(
        &self,
        client: &mut C,
        command: &Command,
        format: &Format,
    ) -> PgWireResult<Response>
    where
        C: ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let Command::Deallocate { name } = command {
            let store = client.portal_store();
            return Ok(match name {
                Some(name) if store.get_statement(name).is_none() => Response::Error(error(
                    "26000",
                    format!("prepared statement \"{name}\" does not exist"),
                )),
                Some(name) => {
                    store.rm_statement(name);
                    Response::Execution(Tag::new("DEALLOCATE"))
                }
                None => {
                    let names = std::mem::take(&mut self.state().prepared_names);
                    for name in names {
                        store.rm_statement(&name);
                    }
                    Response::Execution(Tag::new("DEALLOCATE ALL"))
                }
            });
        }
        let (response, reported) = self.command_response(command, format);
        for (name, value) in reported {
            client
                .feed(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
                    name.to_owned(),
                    value,
                )))
                .await?;
        }
        Ok(response)
    }

    fn command_response(
        &self,
        command: &Command,
        format: &Format,
    ) -> (Response, Vec<(&'static str, String)>) {
        let mut state = self.state();
        let mut reported = Vec::new();
        let report = |name: &'static str, settings: &Settings, out: &mut Vec<_>| {
            if commands::REPORTED.contains(&name) {
                out.push((name, settings.get(name).unwrap_or_default().to_owned()));
            }
        };
        let response = match command {
            // Answered by `run_command`, which holds the client's statement store.
            Command::Deallocate { .. } => Response::Execution(Tag::new("DEALLOCATE")),
            Command::Set { local: true, .. } => Response::Execution(Tag::new("SET")),
            Command::Set { name, value, .. } => match state.settings.set(name, value) {
                Ok(name) => {
                    report(name, &state.settings, &mut reported);
                    Response::Execution(Tag::new("SET"))
                }
                Err(e) => Response::Error(e),
            },
            Command::Reset { name: Some(name) } => match state.settings.reset(name) {
                Ok(name) => {
                    report(name, &state.settings, &mut reported);
                    Response::Execution(Tag::new("RESET"))
                }
                Err(e) => Response::Error(e),
            },
            Command::Reset { name: None } => {
                for (name, _) in state.settings.all() {
                    if let Ok(name) = state.settings.reset(&name) {
                        report(name, &state.settings, &mut reported);
                    }
                }
                Response::Execution(Tag::new("RESET"))
            }
            Command::Show { name: Some(name) } => match state.settings.get(name) {
                Some(value) => text_rows(
                    "SHOW",
                    &[name.as_str()],
                    vec![vec![value.to_owned()]],
                    format,
                ),
                None => Response::Error(error(
                    "42704",
                    format!("unrecognized configuration parameter \"{name}\""),
                )),
            },
            Command::Show { name: None } => text_rows(
                "SHOW",
                &["name", "setting", "description"],
                state
                    .settings
                    .all()
                    .into_iter()
                    .map(|(n, v)| vec![n, v, String::new()])
                    .collect(),
                format,
            ),
            Command::Function { column, function } => {
                let value = match function {
                    Function::Version => format!(
                        "PostgreSQL {} on SQLite {}",
                        commands::SERVER_VERSION,
                        rusqlite::version()
                    ),
                    Function::CurrentDatabase => state.database.clone(),
                    Function::CurrentUser => state.user.clone(),
                    Function::CurrentSchema => "public".into(),
                    Function::BackendPid => state.pid.to_string(),
                };
                let ty = function_type(*function);
                rows_response(
                    "SELECT",
                    fields(
                        std::slice::from_ref(column),
                        std::slice::from_ref(&ty),
                        format,
                    ),
                    vec![vec![SqlValue::Text(value)]],
                    &[ty],
                    format,
                )
                .unwrap_or_else(Response::Error)
            }
        };
        (response, reported)
    }

    /// Plans one statement for the extended protocol: a local command, or SQL described by
    /// SQLite (columns, parameter count, read-only) with parameter types inferred.
    async fn plan(&self, statement: SqlText, client_types: &[Option<Type>]) -> PgWireResult<Plan> {
        if let Some(control) = transaction::parse(&statement) {
            return control.map(Plan::Transaction).map_err(into_pgwire);
        }
        if let Some(command) = copy::parse(&statement) {
            return command.map(Plan::Copy).map_err(into_pgwire);
        }
        if let Some(command) = commands::parse_command(&statement) {
            return command.map(Plan::Command).map_err(into_pgwire);
        }
        let translation =
            dialect::translate(&statement).map_err(|e| into_pgwire(translate_error(&e)))?;
        let tables = sql::referenced_tables(&statement);
        // A translation into several statements is DDL: describing the first suffices.
        let description = match translation.statements.first() {
            Some(first) => self.describe(first, &tables).await.map_err(into_pgwire)?,
            None => Description::default(),
        };
        let inferred = sql::infer_parameter_decltypes(
            &statement,
            description.parameter_count,
            &description.tables,
        );
        let parameter_types = (0..description.parameter_count)
            .map(|i| {
                client_types
                    .get(i)
                    .cloned()
                    .flatten()
                    .filter(|t| *t != Type::UNKNOWN)
                    .or_else(|| {
                        inferred
                            .get(i)
                            .cloned()
                            .flatten()
                            .and_then(|d| types::type_for_decltype(&d))
                    })
                    .unwrap_or(Type::TEXT)
            })
            .collect();
        let decltypes = with_known_types(description.decltypes, &translation.column_decltypes);
        let column_types = types::described_types(&description.columns, &decltypes);
        Ok(Plan::Sql(SqlPlan {
            literals: Vec::new(),
            route: if description.readonly && translation.statements.len() == 1 {
                Route::Read
            } else {
                Route::Write
            },
            locks_rows: sql::locks_rows(&statement),
            tag: translation.tag.unwrap_or_else(|| tag_kind(&statement)),
            sqlite: translation.statements,
            column_decltypes: translation.column_decltypes,
            parameter_types,
            columns: description.columns,
            column_types,
        }))
    }
}

/// SQLite's declared types, completed with the translation's where SQLite has none.
fn with_known_types(
    mut decltypes: Vec<Option<String>>,
    known: &[Option<String>],
) -> Vec<Option<String>> {
    for (declared, known) in decltypes.iter_mut().zip(known) {
        if declared.is_none() {
            declared.clone_from(known);
        }
    }
    decltypes
}

/// An outcome's column types completed with what the plan's translation knows.
fn with_plan_types(outcome: Outcome, plan: &SqlPlan) -> Outcome {
    match outcome {
        Outcome::Rows {
            tag,
            columns,
            decltypes,
            rows,
        } => Outcome::Rows {
            tag,
            columns,
            decltypes: with_known_types(decltypes, &plan.column_decltypes),
            rows,
        },
        done => done,
    }
}

fn function_type(function: Function) -> Type {
    match function {
        Function::BackendPid => Type::INT4,
        Function::CurrentDatabase | Function::CurrentUser | Function::CurrentSchema => Type::NAME,
        Function::Version => Type::TEXT,
    }
}

/// SQLite statements inserting COPY rows: multi-row INSERTs within SQLite's parameter limit.
fn copy_insert_statements(
    table: &str,
    columns: &[String],
    rows: Vec<copy::CopyRow>,
) -> Vec<Statement> {
    const MAX_PARAMETERS: usize = 32_000;
    const MAX_ROWS: usize = 500;
    let per_statement = (MAX_PARAMETERS / columns.len().max(1)).clamp(1, MAX_ROWS);
    let head = format!(
        "INSERT INTO {} ({}) VALUES ",
        quote_identifier(table),
        columns
            .iter()
            .map(|c| quote_identifier(c))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let tuple = format!("({})", vec!["?"; columns.len()].join(", "));
    rows.chunks(per_statement)
        .map(|chunk| {
            let sql = format!("{head}{}", vec![tuple.as_str(); chunk.len()].join(", "));
            let params = chunk
                .iter()
                .flatten()
                .map(|v| v.clone().map(SqlValue::Text).unwrap_or(SqlValue::Null))
                .collect();
            Statement { sql, params }
        })
        .collect()
}

fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A statement's result as an outcome tagged the PostgreSQL way.
fn outcome(result: StatementResult, tag: TagKind) -> Outcome {
    if result.columns.is_empty() {
        Outcome::Done {
            tag: tag.tag(result.rows_affected),
        }
    } else {
        Outcome::Rows {
            tag,
            columns: result.columns,
            decltypes: result.decltypes,
            rows: result.rows,
        }
    }
}

/// Sends a WARNING notice (the statement still succeeds).
async fn warn<C>(client: &mut C, code: &str, message: &str) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let info = ErrorInfo::new("WARNING".into(), code.into(), message.into());
    client
        .feed(PgWireBackendMessage::NoticeResponse(NoticeResponse::from(
            info,
        )))
        .await?;
    Ok(())
}

/// A statement prepared with Parse.
#[derive(Debug)]
pub struct Prepared {
    pub plan: Plan,
}

#[derive(Debug)]
pub enum Plan {
    Command(Command),
    Transaction(TxnControl),
    Copy(CopyCommand),
    Sql(SqlPlan),
}

#[derive(Debug)]
pub struct SqlPlan {
    /// What SQLite runs: the statement's translation (`dialect::translate`), one transaction.
    sqlite: Vec<String>,
    /// A simple query's literals that its translation lifted into parameters, bound in their
    /// place (`dialect::translate_lifting`); empty for the extended protocol, whose client
    /// binds the parameters.
    literals: Vec<SqlValue>,
    /// Result columns' types the translation knows where SQLite declares none.
    column_decltypes: Vec<Option<String>>,
    route: Route,
    /// `SELECT ... FOR UPDATE` (or `FOR SHARE`): its transaction must hold the writer, since
    /// the translation drops the clause.
    locks_rows: bool,
    tag: TagKind,
    parameter_types: Vec<Type>,
    columns: Vec<String>,
    column_types: Vec<Type>,
}

impl SqlPlan {
    /// The values to bind: the client's for the extended protocol, the lifted literals for a
    /// simple query (which has no parameters of its own).
    fn bind(&self, params: Vec<SqlValue>) -> Vec<SqlValue> {
        if self.literals.is_empty() {
            params
        } else {
            self.literals.clone()
        }
    }
}

/// What running a statement produced.
enum Outcome {
    Rows {
        tag: TagKind,
        columns: Vec<String>,
        decltypes: Vec<Option<String>>,
        rows: Vec<Vec<SqlValue>>,
    },
    Done {
        tag: String,
    },
}

/// Whether result column `i` is sent in binary, refusing a format list of the wrong length
/// (PostgreSQL: zero, one, or one per column).
fn check_formats(format: &Format, count: usize, what: &str) -> Result<(), PgError> {
    match format {
        Format::Individual(codes) if codes.len() != count => Err(error(
            "08P01",
            format!(
                "bind message has {} {what} formats but {count} {what}s",
                codes.len()
            ),
        )),
        _ => Ok(()),
    }
}

fn is_binary(format: &Format, i: usize) -> bool {
    match format {
        Format::UnifiedText => false,
        Format::UnifiedBinary => true,
        Format::Individual(codes) => codes.get(i) == Some(&1),
    }
}

/// Encodes rows with the given types and formats into a row response.
fn rows_response(
    command: &str,
    fields: Vec<FieldInfo>,
    rows: Vec<Vec<SqlValue>>,
    column_types: &[Type],
    format: &Format,
) -> Result<Response, PgError> {
    let mut encoded = Vec::with_capacity(rows.len());
    for row in rows {
        let mut buf = BytesMut::with_capacity(64);
        for (i, ty) in column_types.iter().enumerate() {
            let value = row.get(i).unwrap_or(&SqlValue::Null);
            types::encode(&mut buf, value, ty, is_binary(format, i))
                .map_err(|e| error(e.code, e.message))?;
        }
        encoded.push(Ok(DataRow::new(buf, column_types.len() as i16)));
    }
    let mut response = QueryResponse::new(Arc::new(fields), futures::stream::iter(encoded));
    response.set_command_tag(command);
    Ok(Response::Query(response))
}

fn text_rows(command: &str, columns: &[&str], rows: Vec<Vec<String>>, format: &Format) -> Response {
    let columns: Vec<String> = columns.iter().map(|c| (*c).to_owned()).collect();
    let types = vec![Type::TEXT; columns.len()];
    let rows = rows
        .into_iter()
        .map(|r| r.into_iter().map(SqlValue::Text).collect())
        .collect();
    rows_response(
        command,
        fields(&columns, &types, format),
        rows,
        &types,
        format,
    )
    .unwrap_or_else(Response::Error)
}

fn fields(columns: &[String], types: &[Type], format: &Format) -> Vec<FieldInfo> {
    columns
        .iter()
        .zip(types)
        .enumerate()
        .map(|(i, (name, ty))| {
            let format = if is_binary(format, i) {
                FieldFormat::Binary
            } else {
                FieldFormat::Text
            };
            FieldInfo::new(name.clone(), None, None, ty.clone(), format)
        })
        .collect()
}

/// A simple-query outcome as a response (types from the rows themselves).
fn simple_response(outcome: Outcome) -> Response {
    match outcome {
        Outcome::Done { tag } => Response::Execution(Tag::new(&tag)),
        Outcome::Rows {
            tag,
            columns,
            decltypes,
            rows,
        } => {
            let types = types::result_types(&columns, &decltypes, &rows);
            let fields = fields(&columns, &types, &Format::UnifiedText);
            rows_response(
                &tag.row_prefix(),
                fields,
                rows,
                &types,
                &Format::UnifiedText,
            )
            .unwrap_or_else(Response::Error)
        }
    }
}

impl Drop for Session {
    /// A connection closed inside a transaction: roll it back on its leader now rather than
    /// leave it blocking writers until the idle timeout.
    fn drop(&mut self) {
        let remote = self.state().txn.take().and_then(|t| t.remote);
        if let (Some(txn), Ok(runtime)) = (remote, tokio::runtime::Handle::try_current()) {
            let dispatcher = self.dispatcher.clone();
            runtime.spawn(async move {
                let _ = dispatcher.transaction(Some(txn), TxnStep::Rollback).await;
            });
        }
    }
}

/// Process ids (BackendKeyData, `pg_backend_pid()`) are unique per node process.
static PIDS: LazyLock<RandomPidSecretKeyGenerator> =
    LazyLock::new(RandomPidSecretKeyGenerator::default);

/// The pgwire handlers of one connection.
pub struct Handler {
    session: Arc<Session>,
    parser: Arc<Parser>,
    /// The node's sessions by (pid, secret key): where CancelRequest finds this one.
    connections: Arc<ConnectionManager>,
    /// This connection's authentication handshake.
    login: Login,
}

impl Handler {
    pub fn new(
        session: Arc<Session>,
        connections: Arc<ConnectionManager>,
        auth: Arc<AuthPolicy>,
    ) -> Handler {
        Handler {
            parser: Arc::new(Parser {
                session: session.clone(),
            }),
            session,
            connections,
            login: Login::new(auth),
        }
    }

    /// The startup packet: takes the user, database and settings, then authenticates
    /// ([`Login::start`]).
    async fn on_startup_packet<C>(&self, client: &mut C, startup: Startup) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        protocol_negotiation(client, &startup).await?;
        save_startup_parameters_to_metadata(client, &startup);
        let Some(user) = startup.parameters.get("user").cloned() else {
            return Err(into_pgwire(fatal(
                "28000",
                "no PostgreSQL user name specified in startup packet",
            )));
        };
        let database = startup
            .parameters
            .get("database")
            .cloned()
            .unwrap_or_else(|| user.clone());
        let mut settings =
            Settings::new(&startup.parameters, self.session.dispatcher.default_max_lag);
        // `options` (libpq's PGOPTIONS, `-c name=value`) is an explicit request: a setting
        // Phalanx cannot honour refuses the connection, as PostgreSQL does.
        if let Some(options) = startup.parameters.get("options") {
            for (name, value) in commands::parse_options(options) {
                if let Err(mut e) = settings.set(&name, &value) {
                    e.severity = "FATAL".into();
                    return Err(into_pgwire(e));
                }
            }
        }
        {
            // No query runs before ReadyForQuery, so these wait safely for the login to end.
            let mut state = self.session.state();
            state.settings = settings;
            state.user = user.clone();
            state.database = database;
            state.client_addr = Some(client.socket_addr().ip());
        }
        let step = self.login.start(client, &user).await.map_err(into_pgwire)?;
        self.after_login_step(client, step).await
    }

    /// Sends the next challenge, or finishes the startup once the user is authenticated.
    async fn after_login_step<C>(&self, client: &mut C, step: LoginStep) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match step {
            LoginStep::Challenge(challenge) => {
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                client
                    .send(PgWireBackendMessage::Authentication(challenge))
                    .await?;
                Ok(())
            }
            LoginStep::Done(final_message) => {
                if let Some(message) = final_message {
                    client
                        .feed(PgWireBackendMessage::Authentication(message))
                        .await?;
                }
                self.finish_startup(client).await
            }
        }
    }

    /// AuthenticationOk, ParameterStatus, BackendKeyData, ReadyForQuery.
    async fn finish_startup<C>(&self, client: &mut C) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (pid, secret_key) = PIDS.generate(client);
        client.set_pid_and_secret_key(pid, secret_key.clone());
        // pgwire's query handling races every query with this handle's cancel signal.
        let (handle, registration) = self.connections.register(pid, secret_key.clone());
        client.session_extensions().insert(handle);
        client.session_extensions().insert(registration);
        let reported = {
            let mut state = self.session.state();
            state.pid = pid;
            state.settings.reported()
        };
        client
            .feed(PgWireBackendMessage::Authentication(Authentication::Ok))
            .await?;
        for (name, value) in reported {
            client
                .feed(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
                    name.to_owned(),
                    value,
                )))
                .await?;
        }
        client
            .feed(PgWireBackendMessage::BackendKeyData(BackendKeyData::new(
                pid, secret_key,
            )))
            .await?;
        client
            .send(PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(
                TransactionStatus::Idle,
            )))
            .await?;
        client.set_state(PgWireConnectionState::ReadyForQuery);
        Ok(())
    }
}

#[async_trait]
impl StartupHandler for Handler {
    /// The startup packet, then (unless the client is trusted) its password messages.
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(startup)
                if matches!(client.state(), PgWireConnectionState::AwaitingStartup) =>
            {
                self.on_startup_packet(client, startup).await
            }
            PgWireFrontendMessage::PasswordMessageFamily(answer)
                if matches!(
                    client.state(),
                    PgWireConnectionState::AuthenticationInProgress
                ) =>
            {
                let user = self.session.state().user.clone();
                let step = self
                    .login
                    .advance(client, &user, answer)
                    .await
                    .map_err(into_pgwire)?;
                self.after_login_step(client, step).await
            }
            _ => Err(into_pgwire(fatal(
                "08P01",
                "expected a startup or password message",
            ))),
        }
    }
}

#[async_trait]
impl SimpleQueryHandler for Handler {
    /// pgwire's query handling, with ReadyForQuery carrying the session's transaction status.
    async fn on_query<C>(&self, client: &mut C, query: Query) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = self.session.clone();
        let mut client = SessionStatus::new(client, move || session.transaction_status());
        let result = self._on_query(&mut client, query).await;
        self.session.note_canceled(&result);
        result
    }

    /// Runs a query string statement by statement. Transaction control and session commands
    /// are answered here. Inside an explicit transaction each SQL statement runs on its own;
    /// outside one, as in PostgreSQL, consecutive SQL statements form one implicit
    /// transaction: with a write among them they go to the leader together as one
    /// transaction, reads alone go one by one to `query`. The first error ends the string.
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statements = sql::split_statements(query);
        if statements.is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        let mut responses = Vec::with_capacity(statements.len());
        let mut i = 0;
        while i < statements.len() && !responses.iter().any(is_error) {
            let statement = &statements[i];
            if let Some(control) = transaction::parse(statement) {
                responses.push(match control {
                    Ok(control) => self.session.transaction_control(client, control).await?,
                    Err(e) => Response::Error(e),
                });
                i += 1;
                continue;
            }
            if self.session.in_failed_transaction() {
                responses.push(Response::Error(in_failed_transaction()));
                break;
            }
            if let Some(command) = copy::parse(statement) {
                // Copy data follows (or has been sent): nothing after COPY runs in this string.
                let started = match command {
                    Ok(command) => self.session.start_copy(command).await,
                    Err(e) => Err(e),
                };
                responses.push(started.unwrap_or_else(Response::Error));
                break;
            }
            match commands::parse_command(statement) {
                Some(Ok(command)) => {
                    responses.push(
                        self.session
                            .run_command(client, &command, &Format::UnifiedText)
                            .await?,
                    );
                    i += 1;
                    continue;
                }
                Some(Err(e)) => {
                    responses.push(Response::Error(e));
                    break;
                }
                None => {}
            }
            if self.session.in_transaction() {
                let ran = match simple_plan(statement) {
                    Ok(plan) => self.session.run(&plan, Vec::new()).await,
                    Err(e) => Err(e),
                };
                responses.push(ran.map(simple_response).unwrap_or_else(Response::Error));
                i += 1;
                continue;
            }
            let mut end = i;
            while end < statements.len()
                && commands::parse_command(&statements[end]).is_none()
                && transaction::parse(&statements[end]).is_none()
                && copy::parse(&statements[end]).is_none()
            {
                end += 1;
            }
            let plans = statements[i..end]
                .iter()
                .map(simple_plan)
                .collect::<Result<Vec<SqlPlan>, PgError>>();
            i = end;
            let plans = match plans {
                Ok(plans) => plans,
                Err(e) => {
                    responses.push(Response::Error(e));
                    break;
                }
            };
            if plans.iter().any(|p| p.route == Route::Write) {
                match self.session.execute_plans(&plans, Vec::new()).await {
                    Ok(outcomes) => responses.extend(outcomes.into_iter().map(simple_response)),
                    Err(e) => responses.push(Response::Error(e)),
                }
            } else {
                for plan in &plans {
                    match self.session.run(plan, Vec::new()).await {
                        Ok(outcome) => responses.push(simple_response(outcome)),
                        Err(e) => {
                            responses.push(Response::Error(e));
                            break;
                        }
                    }
                }
            }
        }
        if responses.iter().any(is_error) {
            self.session.note_error();
        }
        Ok(responses)
    }
}

fn is_error(response: &Response) -> bool {
    matches!(response, Response::Error(_))
}

/// A simple-query statement's plan: translated, routed by its words (a translation into
/// several statements writes), types taken from the rows.
fn simple_plan(statement: &SqlText) -> Result<SqlPlan, PgError> {
    let (translation, literals) =
        dialect::translate_lifting(statement).map_err(|e| translate_error(&e))?;
    Ok(SqlPlan {
        literals: literals.into_iter().map(SqlValue::Integer).collect(),
        route: match translation.statements.len() {
            1 => sql::route(statement),
            _ => Route::Write,
        },
        locks_rows: sql::locks_rows(statement),
        tag: translation.tag.unwrap_or_else(|| tag_kind(statement)),
        sqlite: translation.statements,
        column_decltypes: translation.column_decltypes,
        parameter_types: Vec::new(),
        columns: Vec::new(),
        column_types: Vec::new(),
    })
}

#[async_trait]
impl CopyHandler for Handler {
    async fn on_copy_data<C>(&self, _client: &mut C, copy_data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.session.copy_data(&copy_data.data);
        Ok(())
    }

    /// Inserts the received rows and answers `COPY n`.
    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let finished = self.session.finish_copy().await;
        if finished.is_err() {
            self.session.note_error();
        }
        client.set_transaction_status(self.session.transaction_status());
        let rows = finished.map_err(into_pgwire)?;
        client
            .send(PgWireBackendMessage::CommandComplete(
                Tag::new("COPY").with_rows(rows as usize).into(),
            ))
            .await?;
        Ok(())
    }

    async fn on_copy_fail<C>(&self, client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.session.abandon_copy();
        self.session.note_error();
        client.set_transaction_status(self.session.transaction_status());
        into_pgwire(error(
            "57014",
            format!("COPY from stdin failed: {}", fail.message),
        ))
    }
}

/// Parses and describes statements for the extended protocol.
pub struct Parser {
    session: Arc<Session>,
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = Arc<Prepared>;

    async fn parse_sql<C>(
        &self,
        _client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Self::Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let mut statements = sql::split_statements(sql);
        if statements.len() > 1 {
            return Err(into_pgwire(error(
                "42601",
                "cannot insert multiple commands into a prepared statement",
            )));
        }
        let Some(statement) = statements.pop() else {
            return Ok(None);
        };
        let plan = self.session.plan(statement, types).await?;
        Ok(Some(Arc::new(Prepared { plan })))
    }

    fn get_parameter_types(&self, statement: &Self::Statement) -> PgWireResult<Vec<Type>> {
        Ok(match &statement.plan {
            Plan::Sql(plan) => plan.parameter_types.clone(),
            Plan::Command(_) | Plan::Transaction(_) | Plan::Copy(_) => Vec::new(),
        })
    }

    fn get_result_schema(
        &self,
        statement: &Self::Statement,
        format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        let format = format.cloned().unwrap_or_default();
        Ok(match &statement.plan {
            Plan::Sql(plan) => fields(&plan.columns, &plan.column_types, &format),
            Plan::Command(Command::Show { name: Some(name) }) => {
                fields(std::slice::from_ref(name), &[Type::TEXT], &format)
            }
            Plan::Command(Command::Show { name: None }) => fields(
                &["name".into(), "setting".into(), "description".into()],
                &[Type::TEXT, Type::TEXT, Type::TEXT],
                &format,
            ),
            Plan::Command(Command::Function { column, function }) => fields(
                std::slice::from_ref(column),
                &[function_type(*function)],
                &format,
            ),
            Plan::Command(_) | Plan::Transaction(_) | Plan::Copy(_) => Vec::new(),
        })
    }
}

#[async_trait]
impl ExtendedQueryHandler for Handler {
    type Statement = Arc<Prepared>;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.parser.clone()
    }

    /// pgwire's Parse handling, remembering the names of named statements for
    /// `DEALLOCATE ALL`.
    async fn on_parse<C>(&self, client: &mut C, message: Parse) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message
            .name
            .clone()
            .unwrap_or_else(|| pgwire::api::DEFAULT_NAME.to_owned());
        match StoredStatement::parse(client, &message, self.query_parser()).await? {
            Some(statement) => client.portal_store().put_statement(Arc::new(statement)),
            None => client.portal_store().put_empty_statement(&name),
        }
        if name != pgwire::api::DEFAULT_NAME {
            self.session.state().prepared_names.insert(name);
        }
        client
            .send(PgWireBackendMessage::ParseComplete(ParseComplete::new()))
            .await?;
        Ok(())
    }

    /// pgwire's Execute handling, with the session's transaction status.
    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = self.session.clone();
        let mut client = SessionStatus::new(client, move || session.transaction_status());
        let result = self._on_execute(&mut client, message).await;
        self.session.note_canceled(&result);
        result
    }

    /// Sync ends an extended-protocol cycle. An error pgwire raised itself in the cycle (a bad
    /// Bind, an unknown portal) fails the explicit transaction as PostgreSQL would; then
    /// ReadyForQuery reports the session's transaction status.
    async fn on_sync<C>(&self, client: &mut C, _message: PgSync) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if client.transaction_status() == TransactionStatus::Error {
            self.session.note_error();
        }
        client.portal_store().rm_portal(pgwire::api::DEFAULT_NAME);
        let status = self.session.transaction_status();
        client.set_transaction_status(status);
        client
            .send(PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(
                status,
            )))
            .await?;
        Ok(())
    }

    async fn do_describe_statement<C>(
        &self,
        _client: &mut C,
        target: &StoredStatement<Self::Statement>,
    ) -> PgWireResult<DescribeStatementResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let parameters = self.parser.get_parameter_types(&target.statement)?;
        let fields = self.parser.get_result_schema(&target.statement, None)?;
        Ok(DescribeStatementResponse::new(parameters, fields))
    }

    async fn do_describe_portal<C>(
        &self,
        _client: &mut C,
        portal: &Portal<Self::Statement>,
    ) -> PgWireResult<DescribePortalResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statement = &portal.statement.statement;
        let fields = self.parser.get_result_schema(statement, None)?;
        check_formats(&portal.result_column_format, fields.len(), "result column")
            .map_err(into_pgwire)?;
        let fields = self
            .parser
            .get_result_schema(statement, Some(&portal.result_column_format))?;
        Ok(DescribePortalResponse::new(fields))
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let plan = match &portal.statement.statement.plan {
            Plan::Transaction(control) => {
                let response = self
                    .session
                    .transaction_control(client, control.clone())
                    .await?;
                if is_error(&response) {
                    self.session.note_error();
                }
                return Ok(response);
            }
            Plan::Copy(command) => {
                let started = self.session.start_copy(command.clone()).await;
                if started.is_err() {
                    self.session.note_error();
                }
                return started.map_err(into_pgwire);
            }
            Plan::Command(_) if self.session.in_failed_transaction() => {
                return Err(into_pgwire(in_failed_transaction()));
            }
            Plan::Command(command) => {
                let schema = self
                    .parser
                    .get_result_schema(&portal.statement.statement, None)?;
                check_formats(&portal.result_column_format, schema.len(), "result column")
                    .map_err(into_pgwire)?;
                return self
                    .session
                    .run_command(client, command, &portal.result_column_format)
                    .await;
            }
            Plan::Sql(plan) => plan,
        };
        if portal.parameters.len() != plan.parameter_types.len() {
            return Err(into_pgwire(error(
                "08P01",
                format!(
                    "bind message supplies {} parameters, but prepared statement requires {}",
                    portal.parameters.len(),
                    plan.parameter_types.len()
                ),
            )));
        }
        check_formats(
            &portal.parameter_format,
            plan.parameter_types.len(),
            "parameter",
        )
        .map_err(into_pgwire)?;
        check_formats(
            &portal.result_column_format,
            plan.columns.len(),
            "result column",
        )
        .map_err(into_pgwire)?;
        let params = portal
            .parameters
            .iter()
            .zip(&plan.parameter_types)
            .enumerate()
            .map(|(i, (raw, ty))| {
                types::decode_parameter(raw.as_deref(), ty, is_binary(&portal.parameter_format, i))
                    .map_err(|e| into_pgwire(error(e.code, e.message)))
            })
            .collect::<PgWireResult<Vec<_>>>()?;
        let ran = self.session.run(plan, params).await;
        if ran.is_err() {
            self.session.note_error();
        }
        match ran.map_err(into_pgwire)? {
            Outcome::Done { tag } => Ok(Response::Execution(Tag::new(&tag))),
            Outcome::Rows {
                tag, columns, rows, ..
            } => {
                if columns.len() != plan.columns.len() {
                    return Err(into_pgwire(error(
                        "0A000",
                        "cached plan must not change result type",
                    )));
                }
                let fields = fields(
                    &plan.columns,
                    &plan.column_types,
                    &portal.result_column_format,
                );
                rows_response(
                    &tag.row_prefix(),
                    fields,
                    rows,
                    &plan.column_types,
                    &portal.result_column_format,
                )
                .map_err(into_pgwire)
            }
        }
    }
}

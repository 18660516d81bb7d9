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
use bytes::BytesMut;
use futures::{Sink, SinkExt};
use pgwire::api::auth::{
    StartupHandler, protocol_negotiation, save_startup_parameters_to_metadata,
};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{
    DescribePortalResponse, DescribeStatementResponse, FieldFormat, FieldInfo, QueryResponse,
    Response, Tag,
};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::PortalStore;
use pgwire::api::{
    ClientInfo, ClientPortalStore, PgWireConnectionState, PidSecretKeyGenerator,
    RandomPidSecretKeyGenerator, Type,
};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::data::DataRow;
use pgwire::messages::response::{ReadyForQuery, TransactionStatus};
use pgwire::messages::startup::{Authentication, BackendKeyData, ParameterStatus};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use crate::dispatch::error::RequestError;
use crate::dispatch::{Consistency, Dispatcher};
use crate::frontend::pg::commands::{self, Command, Function, Settings};
use crate::frontend::pg::dialect;
use crate::frontend::pg::error::{
    PgError, error, fatal, into_pgwire, request_error, translate_error,
};
use crate::frontend::pg::sql::{self, Route, SqlText};
use crate::frontend::pg::tags::{TagKind, tag_kind};
use crate::frontend::pg::types;
use crate::raft::types::LogIndex;
use crate::storage::engine::ReadError;
use crate::storage::error::SqlError;
use crate::storage::request::{Description, SqlValue, Statement};

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
}

impl Session {
    pub fn new(dispatcher: Dispatcher) -> Arc<Session> {
        Arc::new(Session {
            dispatcher,
            state: Mutex::new(SessionState {
                settings: Settings::new(&BTreeMap::new()),
                last_index: 0,
                user: String::new(),
                database: String::new(),
                pid: 0,
            }),
        })
    }

    /// The state, even if a panicking thread poisoned the lock (it holds plain values).
    fn state(&self) -> MutexGuard<'_, SessionState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn consistency(&self) -> (Consistency, LogIndex) {
        let state = self.state();
        (state.settings.consistency, state.last_index)
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
        match (plan.route, plan.sqlite.as_slice()) {
            (Route::Read, [sql]) => {
                let statement = Statement {
                    sql: sql.clone(),
                    params,
                };
                let (consistency, last_index) = self.consistency();
                let read = self
                    .dispatcher
                    .query(statement, consistency, last_index)
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
                plan.sqlite.iter().map(|sql| {
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
                plan.sqlite
                    .iter()
                    .fold(done, |last, _| outcomes.next().unwrap_or(last))
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
            .map(|(result, tag)| {
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
            })
            .collect())
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
        C: Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
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
            route: if description.readonly && translation.statements.len() == 1 {
                Route::Read
            } else {
                Route::Write
            },
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

fn function_type(function: Function) -> Type {
    match function {
        Function::BackendPid => Type::INT4,
        Function::CurrentDatabase | Function::CurrentUser | Function::CurrentSchema => Type::NAME,
        Function::Version => Type::TEXT,
    }
}

/// A statement prepared with Parse.
#[derive(Debug)]
pub struct Prepared {
    pub plan: Plan,
}

#[derive(Debug)]
pub enum Plan {
    Command(Command),
    Sql(SqlPlan),
}

#[derive(Debug)]
pub struct SqlPlan {
    /// What SQLite runs: the statement's translation (`dialect::translate`), one transaction.
    sqlite: Vec<String>,
    /// Result columns' types the translation knows where SQLite declares none.
    column_decltypes: Vec<Option<String>>,
    route: Route,
    tag: TagKind,
    parameter_types: Vec<Type>,
    columns: Vec<String>,
    column_types: Vec<Type>,
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

/// Process ids (BackendKeyData, `pg_backend_pid()`) are unique per node process.
static PIDS: LazyLock<RandomPidSecretKeyGenerator> =
    LazyLock::new(RandomPidSecretKeyGenerator::default);

/// The pgwire handlers of one connection.
pub struct Handler {
    session: Arc<Session>,
    parser: Arc<Parser>,
}

impl Handler {
    pub fn new(session: Arc<Session>) -> Handler {
        Handler {
            parser: Arc::new(Parser {
                session: session.clone(),
            }),
            session,
        }
    }
}

#[async_trait]
impl StartupHandler for Handler {
    /// Trust authentication: any user is accepted. (SCRAM slots in here: answer the Startup
    /// with an authentication request instead and finish on the password messages.)
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let PgWireFrontendMessage::Startup(startup) = message else {
            return Err(into_pgwire(fatal("08P01", "expected a startup message")));
        };
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
        let mut settings = Settings::new(&startup.parameters);
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
        let (pid, secret_key) = PIDS.generate(client);
        client.set_pid_and_secret_key(pid, secret_key.clone());
        let reported = {
            let mut state = self.session.state();
            state.settings = settings;
            state.user = user;
            state.database = database;
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
impl SimpleQueryHandler for Handler {
    /// Runs a query string. As in PostgreSQL, its statements form one implicit transaction:
    /// consecutive SQL statements including a write go to the leader together as one
    /// transaction; reads alone go one by one to `query`; session commands run in between.
    /// The first error ends the string.
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
        while i < statements.len() {
            match commands::parse_command(&statements[i]) {
                Some(Ok(command)) => {
                    let response = self
                        .session
                        .run_command(client, &command, &Format::UnifiedText)
                        .await?;
                    let failed = matches!(response, Response::Error(_));
                    responses.push(response);
                    if failed {
                        break;
                    }
                    i += 1;
                    continue;
                }
                Some(Err(e)) => {
                    responses.push(Response::Error(e));
                    break;
                }
                None => {}
            }
            let mut end = i;
            while end < statements.len() && commands::parse_command(&statements[end]).is_none() {
                end += 1;
            }
            let group = &statements[i..end];
            i = end;
            let mut plans: Vec<SqlPlan> = Vec::with_capacity(group.len());
            for s in group {
                match dialect::translate(s) {
                    Ok(translation) => plans.push(SqlPlan {
                        route: match translation.statements.len() {
                            1 => sql::route(s),
                            _ => Route::Write,
                        },
                        tag: translation.tag.unwrap_or_else(|| tag_kind(s)),
                        sqlite: translation.statements,
                        column_decltypes: translation.column_decltypes,
                        parameter_types: Vec::new(),
                        columns: Vec::new(),
                        column_types: Vec::new(),
                    }),
                    Err(e) => {
                        responses.push(Response::Error(translate_error(&e)));
                        break;
                    }
                }
            }
            if plans.len() < group.len() {
                break;
            }
            let failed = if plans.iter().any(|p| p.route == Route::Write) {
                match self.session.execute_plans(&plans, Vec::new()).await {
                    Ok(outcomes) => {
                        responses.extend(outcomes.into_iter().map(simple_response));
                        false
                    }
                    Err(e) => {
                        responses.push(Response::Error(e));
                        true
                    }
                }
            } else {
                let mut failed = false;
                for plan in &plans {
                    match self.session.run(plan, Vec::new()).await {
                        Ok(outcome) => responses.push(simple_response(outcome)),
                        Err(e) => {
                            responses.push(Response::Error(e));
                            failed = true;
                            break;
                        }
                    }
                }
                failed
            };
            if failed || responses.iter().any(|r| matches!(r, Response::Error(_))) {
                break;
            }
        }
        Ok(responses)
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
            Plan::Command(_) => Vec::new(),
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
            Plan::Command(_) => Vec::new(),
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
        match self.session.run(plan, params).await.map_err(into_pgwire)? {
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

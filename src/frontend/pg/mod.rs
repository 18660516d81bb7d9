//! The PostgreSQL wire protocol (v3) on every node, through the `pgwire` crate: `psql`,
//! drivers and tools connect to any node, follower included, and run autocommit work and
//! explicit transactions ([`transaction`]; see docs/ARCHITECTURE.md, "Life of an explicit
//! transaction").
//!
//! # Life of a query
//!
//! 1. [`server::serve`] accepts the connection (at most `max_pg_connections`, else 53300),
//!    negotiates encryption (TLS when a certificate is configured, [`tls`]; never GSS), and
//!    runs the connection's message loop; every frontend message passes through
//!    [`framing::LimitedStream`] (the `max_message_bytes` limit) and pgwire's decoder.
//! 2. Startup: [`session::Handler`] has the user authenticated ([`auth`]: trust, SCRAM-SHA-256
//!    or md5 by the client's address and the user's stored hash), then sends ParameterStatus
//!    (`server_version`, encodings, `DateStyle`, `TimeZone`, ...), BackendKeyData and
//!    ReadyForQuery.
//! 3. Simple query: [`sql::split_statements`] splits the string with a PostgreSQL-aware lexer;
//!    [`commands`] answers session commands (`SET`, `SHOW`, `RESET`, `SELECT version()`) and
//!    refuses the unsupported ones by name (0A000); consecutive SQL statements run as one
//!    implicit transaction, as in PostgreSQL: each is translated to SQLite ([`dialect`]),
//!    then with a write among them, together as one `Dispatcher::execute` on the leader;
//!    reads alone through `Dispatcher::query` at the session's consistency.
//! 4. Extended query: Parse translates ([`dialect`]) and plans the statement once — SQLite
//!    prepares the translation without running it
//!    (`Engine::describe`, after this node applied the session's writes) to learn its result
//!    columns and declared types, its parameter count and whether it only reads; parameter
//!    types are inferred from the columns they meet ([`sql::infer_parameter_decltypes`]).
//!    Bind decodes parameters by type and format ([`types::decode_parameter`]); Execute routes
//!    by SQLite's read-only verdict.
//! 5. Results: each column gets a PostgreSQL type ([`types`]), values are encoded in text or
//!    binary, the CommandComplete tag is PostgreSQL's ([`tags`]); errors carry SQLSTATEs from
//!    the one mapping in [`error`].
//!
//! CancelRequest: each session registers its (pid, secret key) with the node's pgwire
//! `ConnectionManager`; pgwire races every query with the cancel signal (57014), and the
//! pipeline skips a queued write whose client stopped waiting, so a canceled statement never
//! runs later.
//!
//! `COPY ... FROM STDIN` ([`copy`]) collects the data (the connection's CopyHandler), parses
//! it (text or CSV) at CopyDone and inserts the rows with multi-row INSERTs as one
//! transaction on the leader (or as part of the open one); `COPY ... TO STDOUT` reads at the
//! session's consistency and streams one CopyData per row.
//!
//! Sessions remember their settings, their read consistency
//! (`SET phalanx.read_consistency = 'linearizable' | 'session' | 'any'`, default
//! linearizable) and the last log index they wrote or read, so `session` reads see the
//! session's own writes wherever they are served.
//!
//! Catalog queries (psql's `\d` family, SQLAlchemy's inspector, psycopg's type lookups) read
//! `pg_catalog` and `information_schema`, built live from the schema by
//! `crate::storage::catalog`; the dialect's `catalog` module rewrites what they need.
//!
//! # Not yet (next increments)
//!
//! - Typing every expression column: the translation types `count(*)`, comparisons, casts,
//!   literals and the time functions; other expressions (`sum(x)`) are typed by their values
//!   (simple query) or as text (Describe).
//! - Client certificates (`cert` authentication), per-database or per-user auth rules beyond
//!   loopback/remote, binary COPY, `interval` and `timetz`.

pub mod auth;
pub mod commands;
pub mod copy;
pub mod dialect;
pub mod error;
pub mod framing;
pub mod server;
pub mod session;
pub mod sql;
pub mod status;
pub mod tags;
pub mod tls;
pub mod transaction;
pub mod types;

pub use server::{PgSettings, serve};

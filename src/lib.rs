//! Phalanx: a highly available, load-balanced SQL database cluster.
//!
//! Every node holds the whole database in an embedded SQLite file; writes are replicated by Raft
//! (openraft) as SQLite changesets; any node accepts any request. The modules mirror the
//! architecture (see docs/ARCHITECTURE.md), in the order a request meets them:
//!
//! - [`frontend`]: client protocols (HTTP JSON API) → dispatcher calls.
//! - [`dispatch`]: where a request runs — the leader's write pipeline, forwarding, read
//!   consistency.
//! - [`raft`]: openraft glue — types, durable log store, state machine, internal network,
//!   membership.
//! - [`storage`]: the SQLite engine — executes requests, captures and applies changesets.
//! - [`ids`]: the Snowflake ID generator (`snowflake_id()`, `GET /v1/ids`).
//! - [`node`]: wires one node together; [`local`] runs a cluster of node processes;
//!   [`admin`] is the operator CLI client; [`bench`] is the load generator; [`config`] holds
//!   every setting.

pub mod admin;
pub mod bench;
pub mod config;
pub mod dispatch;
pub mod frontend;
pub mod ids;
pub mod local;
pub mod node;
pub mod raft;
pub mod storage;

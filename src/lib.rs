//! Phalanx: a highly available, load-balanced SQL database cluster.
//!
//! Every node holds the whole database in an embedded SQLite file; writes are replicated by Raft
//! (openraft) as SQLite changesets; any node accepts any request. The modules mirror the
//! architecture (see docs/ARCHITECTURE.md):
//!
//! - [`raft`]: openraft glue — types, durable log store, state machine, internal network.
//! - [`storage`]: the SQLite engine — the executor that runs requests and applies changesets.

pub mod raft;
pub mod storage;

//! The one client-facing error of the request path, shared by every front end. It crosses the
//! internal RPC (a follower forwards a write and relays the leader's answer), so it is
//! serializable. `frontend::http::error` maps it to HTTP statuses; the PostgreSQL front end will
//! map it to SQLSTATEs.

use serde::{Deserialize, Serialize};

use crate::raft::types::NodeId;
use crate::storage::error::SqlError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum RequestError {
    /// The request itself is wrong; nothing was applied.
    #[error(transparent)]
    Sql(#[from] SqlError),
    /// This node is not the leader (internal: the forwarder retries on the leader).
    #[error("node is not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    /// No leader can be reached, or this node is on the minority side: writes are refused.
    #[error("no leader: {0}")]
    NoLeader(String),
    /// The write was proposed but leadership changed before it was known to commit; it may or
    /// may not have been applied.
    #[error("outcome unknown: {0}")]
    OutcomeUnknown(String),
    /// The interactive transaction was rolled back (leadership moved, it was idle too long, or
    /// a statement rolled it back): nothing of it was applied; the client may retry it.
    #[error("transaction rolled back: {0}")]
    TransactionLost(String),
    /// The interactive transaction waited for rows that a transaction waiting for it owns: it
    /// was rolled back to break the cycle.
    #[error("deadlock: {0}")]
    Deadlock(String),
    /// The deadline passed.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The node cannot serve (shutting down, storage failed).
    #[error("unavailable: {0}")]
    Unavailable(String),
}

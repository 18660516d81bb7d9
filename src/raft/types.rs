//! The vocabulary shared by the Raft glue: openraft's type configuration, the node address
//! record every member carries, and the replicated command.
//!
//! A [`Command`] is what travels in the Raft log. It carries *effects*, never statements: the
//! leader runs a request once and ships the SQLite changeset of the rows it changed (and the DDL
//! text, which sessions cannot capture), in the order they happened. Followers replay those bytes,
//! so functions such as `random()` or `datetime('now')` are evaluated exactly once.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A node's identity in the cluster; never reused for a different machine.
pub type NodeId = u64;
/// A position in the Raft log (and, once applied, in the database's history).
pub type LogIndex = u64;

/// Where a member can be reached. Carried in the Raft membership, so every node knows every
/// other node's addresses without a separate discovery service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAddr {
    /// Internal RPC (Raft messages, forwarded requests, snapshots): `host:port`.
    pub raft: String,
    /// HTTP JSON API: `host:port`.
    pub http: String,
    /// PostgreSQL wire protocol: `host:port`.
    pub pg: String,
    /// Who the node issues Snowflake IDs as; `None` until the node has registered it (members
    /// of a bootstrapped cluster start out known by their raft address only).
    pub id_worker: Option<IdWorker>,
}

/// A node's identity in Snowflake IDs. No two members may share one: the membership refuses a
/// node whose pair is taken (`raft::membership`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdWorker {
    pub datacenter: u64,
    pub worker: u64,
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "raft={} http={} pg={}", self.raft, self.http, self.pg)?;
        match self.id_worker {
            Some(w) => write!(f, " datacenter={} worker={}", w.datacenter, w.worker),
            None => Ok(()),
        }
    }
}

/// Identifies one proposal made by one leader process, so that the leader's state machine can
/// recognise, when an entry is applied, that its effects are already in the open batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProposalId {
    pub node: NodeId,
    /// Random per process start: proposals of an earlier incarnation never match.
    pub boot: u64,
    pub seq: u64,
}

/// One effect of a write transaction, in execution order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WritePart {
    /// A schema change, replayed as text (session changesets do not carry DDL).
    Ddl(String),
    /// A SQLite changeset (session extension format).
    Changeset(Vec<u8>),
    /// A large changeset, zstd-compressed.
    CompressedChangeset(Vec<u8>),
}

/// The replicated command: everything a state machine applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// The effects of one client transaction executed on the leader.
    Write {
        proposal: ProposalId,
        parts: Vec<WritePart>,
    },
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Write { proposal, parts } => write!(
                f,
                "Write(node={} seq={} parts={})",
                proposal.node,
                proposal.seq,
                parts.len()
            ),
        }
    }
}

/// What applying a command answers to the proposer. The results a client sees (rows affected,
/// last insert id) were computed when the leader executed the request; nothing more is needed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandResponse {}

openraft::declare_raft_types!(
    /// openraft's type configuration for Phalanx.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = NodeId,
        Node = NodeAddr,
);

pub type Raft = openraft::Raft<TypeConfig, crate::raft::state_machine::StateMachine>;
pub type Entry = openraft::alias::EntryOf<TypeConfig>;
pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
pub type Vote = openraft::alias::VoteOf<TypeConfig>;
pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;

//! Raft glue: openraft's type configuration, the durable log, the SQLite state machine, the
//! node-to-node network (client and server) and membership changes.

pub mod log_store;
#[cfg(feature = "wip")]
pub mod membership;
#[cfg(feature = "wip")]
pub mod network;
#[cfg(feature = "wip")]
pub mod rpc_server;
#[cfg(feature = "wip")]
pub mod state_machine;
pub mod types;
#[cfg(feature = "wip")]
pub mod metrics;

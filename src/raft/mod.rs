//! Raft glue: openraft's type configuration, the durable log, the SQLite state machine, the
//! node-to-node network (client and server) and membership changes.

pub mod channel;
pub mod liveness;
pub mod log_store;
pub mod membership;
pub mod metrics;
pub mod network;
pub mod rpc_server;
pub mod state_machine;
pub mod types;

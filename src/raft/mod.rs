//! Raft glue: openraft's type configuration, the durable log, the SQLite state machine and the
//! node-to-node network.

pub mod state_machine;
pub mod types;

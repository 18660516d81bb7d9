//! The Raft state machine: a SQLite database (placeholder until the engine lands).

pub struct StateMachine;

//! The SQLite engine.

pub mod changeset;
pub mod session_ffi;

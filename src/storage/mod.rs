//! The SQLite engine.

pub mod capture;
pub mod catalog;
pub mod changeset;
pub mod constraint_error;
pub mod datetime;
pub mod engine;
pub mod error;
pub mod meta;
pub mod pg_functions;
pub mod policy;
pub mod request;
pub mod rowid_alias;
pub mod session_ffi;

//! The SQLite engine.

pub mod changeset;
pub mod session_ffi;
#[cfg(feature = "wip")]
pub mod engine;
#[cfg(feature = "wip")]
pub mod error;
#[cfg(feature = "wip")]
pub mod meta;
#[cfg(feature = "wip")]
pub mod request;

//! Client-facing front ends. Each turns its wire format into dispatcher calls and maps
//! `dispatch::error::RequestError` back to its own error codes.

pub mod http;
pub mod pg;

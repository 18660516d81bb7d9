//! Small helpers over openraft's metrics watch channel.

use std::time::Instant;

use openraft::RaftMetrics;
use openraft::type_config::async_runtime::WatchReceiver;

use crate::raft::types::{Raft, TypeConfig};

/// A copy of the current metrics.
pub fn snapshot(raft: &Raft) -> RaftMetrics<TypeConfig> {
    raft.metrics().borrow_watched().clone()
}

/// Waits until `done` holds for the metrics or `until` passes; returns whether it held.
pub async fn wait_until(
    raft: &Raft,
    until: Instant,
    done: impl Fn(&RaftMetrics<TypeConfig>) -> bool,
) -> bool {
    let mut rx = raft.metrics();
    loop {
        if done(&rx.borrow_watched()) {
            return true;
        }
        match tokio::time::timeout_at(until.into(), rx.changed()).await {
            Ok(Ok(())) => continue,
            _ => return done(&rx.borrow_watched()),
        }
    }
}

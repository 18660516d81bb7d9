//! Health of the other nodes as the read path sees them, keepalived style: every node probes
//! every other one each `interval` (`/internal/health`, answered with the applied index, the
//! node's load and whether it leads with a live lease, which `bounded` reads rely on); after
//! `fall` failures in a row a node leaves the read pool, after `rise` successes in a row —
//! with its applied index within `max_lag` entries of this node's — it comes back. A read that
//! fails on a node for a transport reason counts as a failed probe (passive checking), so a
//! dead node leaves at once under load. This node is always healthy to itself.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

use crate::raft::types::{LogIndex, NodeId};

/// Probe settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthSettings {
    pub interval: Duration,
    pub fall: u32,
    pub rise: u32,
    /// How many entries behind this node a returning node may be.
    pub max_lag: u64,
}

impl Default for HealthSettings {
    fn default() -> Self {
        HealthSettings {
            interval: Duration::from_millis(200),
            fall: 3,
            rise: 2,
            max_lag: 1000,
        }
    }
}

#[derive(Debug, Clone, Default)]
struct NodeHealth {
    /// Out of the read pool.
    down: bool,
    failures_in_a_row: u32,
    successes_in_a_row: u32,
    applied: Option<LogIndex>,
    probes: u64,
    failures: u64,
    /// The load it reported with its last answer.
    load: Option<crate::dispatch::load::LoadReport>,
    /// Its last answer said it leads with a live lease (false after a failed probe).
    leading: bool,
}

/// One node's health as shown.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeHealthView {
    pub node: NodeId,
    pub healthy: bool,
    pub applied_index: Option<LogIndex>,
    pub probes: u64,
    pub failures: u64,
    pub load: Option<crate::dispatch::load::LoadReport>,
    /// Its last probe answer said it leads with a live lease.
    pub leading: bool,
}

/// The health table.
pub struct Health {
    settings: Mutex<HealthSettings>,
    nodes: Mutex<BTreeMap<NodeId, NodeHealth>>,
}

impl Health {
    pub fn new(settings: HealthSettings) -> Health {
        Health {
            settings: Mutex::new(settings),
            nodes: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn settings(&self) -> HealthSettings {
        *self.settings.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn configure(&self, settings: HealthSettings) {
        *self.settings.lock().unwrap_or_else(|e| e.into_inner()) = settings;
    }

    fn nodes(&self) -> std::sync::MutexGuard<'_, BTreeMap<NodeId, NodeHealth>> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `node` is in the read pool. A node never probed yet is (it joined the
    /// membership, and the first failures will take it out).
    pub fn is_healthy(&self, node: NodeId) -> bool {
        self.nodes().get(&node).is_none_or(|h| !h.down)
    }

    /// Records a probe's outcome: `Ok(applied index)` or a failure. `own_applied` is this
    /// node's applied index, which a returning node must be close to.
    pub fn record_probe(&self, node: NodeId, outcome: Option<LogIndex>, own_applied: LogIndex) {
        let settings = self.settings();
        let mut nodes = self.nodes();
        let health = nodes.entry(node).or_default();
        health.probes += 1;
        if outcome.is_none() {
            health.leading = false;
        }
        match outcome {
            Some(applied) => {
                health.applied = Some(applied);
                health.failures_in_a_row = 0;
                let caught_up = own_applied.saturating_sub(applied) <= settings.max_lag;
                if caught_up {
                    health.successes_in_a_row += 1;
                } else {
                    health.successes_in_a_row = 0;
                }
                if health.down && health.successes_in_a_row >= settings.rise {
                    health.down = false;
                    tracing::info!(node, applied, "node back in the read pool");
                }
                if !health.down && !caught_up {
                    health.down = true;
                    tracing::info!(
                        node,
                        applied,
                        own_applied,
                        "node lags; out of the read pool"
                    );
                }
            }
            None => {
                health.failures += 1;
                health.successes_in_a_row = 0;
                health.failures_in_a_row += 1;
                if !health.down && health.failures_in_a_row >= settings.fall {
                    health.down = true;
                    tracing::info!(node, "node stopped answering; out of the read pool");
                }
            }
        }
    }

    /// Records the load `node` reported (this node records its own each round).
    pub fn record_load(&self, node: NodeId, load: crate::dispatch::load::LoadReport) {
        self.nodes().entry(node).or_default().load = Some(load);
    }

    /// Records whether `node`'s last probe answer said it leads with a live lease.
    pub fn record_leading(&self, node: NodeId, leading: bool) {
        self.nodes().entry(node).or_default().leading = leading;
    }

    /// Whether `node`'s last probe answer said it leads with a live lease.
    /// The applied index `node`'s last answered probe reported.
    pub fn applied(&self, node: NodeId) -> Option<LogIndex> {
        self.nodes().get(&node).and_then(|h| h.applied)
    }

    pub fn reported_leading(&self, node: NodeId) -> bool {
        self.nodes().get(&node).is_some_and(|h| h.leading)
    }

    /// The load `node` last reported.
    pub fn load(&self, node: NodeId) -> Option<crate::dispatch::load::LoadReport> {
        self.nodes().get(&node).and_then(|h| h.load)
    }

    /// A read failed on `node` for a transport reason: out of the pool at once (it will
    /// come back through the probes).
    pub fn record_read_failure(&self, node: NodeId) {
        let mut nodes = self.nodes();
        let health = nodes.entry(node).or_default();
        health.failures += 1;
        health.successes_in_a_row = 0;
        health.leading = false;
        if !health.down {
            health.down = true;
            tracing::info!(node, "a read failed on the node; out of the read pool");
        }
    }

    /// Forgets nodes that left the membership.
    pub fn retain(&self, members: &[NodeId]) {
        self.nodes().retain(|node, _| members.contains(node));
    }

    pub fn view(&self) -> Vec<NodeHealthView> {
        self.nodes()
            .iter()
            .map(|(node, h)| NodeHealthView {
                node: *node,
                healthy: !h.down,
                applied_index: h.applied,
                probes: h.probes,
                failures: h.failures,
                load: h.load,
                leading: h.leading,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health() -> Health {
        Health::new(HealthSettings {
            interval: Duration::from_millis(100),
            fall: 3,
            rise: 2,
            max_lag: 10,
        })
    }

    #[test]
    fn falls_after_three_failures_and_rises_after_two_caught_up_successes() {
        let h = health();
        h.record_probe(2, None, 100);
        h.record_probe(2, None, 100);
        assert!(h.is_healthy(2), "two failures are not enough");
        h.record_probe(2, None, 100);
        assert!(!h.is_healthy(2));
        h.record_probe(2, Some(50), 100);
        h.record_probe(2, Some(60), 100);
        assert!(!h.is_healthy(2), "answering but 40 entries behind");
        h.record_probe(2, Some(95), 100);
        assert!(!h.is_healthy(2), "one caught-up answer is not enough");
        h.record_probe(2, Some(99), 100);
        assert!(h.is_healthy(2));
    }

    #[test]
    fn a_failed_read_ejects_at_once_and_a_lagging_node_leaves() {
        let h = health();
        assert!(h.is_healthy(3), "unknown nodes start healthy");
        h.record_read_failure(3);
        assert!(!h.is_healthy(3));
        h.record_probe(4, Some(0), 100);
        assert!(!h.is_healthy(4), "100 entries behind");
    }
}

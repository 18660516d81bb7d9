//! `GET /v1/status`: this node's Raft view, and every member's role, addresses, health and
//! applied index. Members are probed over their HTTP API (`?local=1`, short timeout) so health
//! is what a client would see, not what Raft last remembered.

use std::collections::BTreeSet;
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::frontend::http::HttpState;
use crate::raft::metrics;

/// A member that does not answer within this is reported `unreachable`.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

#[derive(Debug, Deserialize)]
pub struct StatusParams {
    /// Only this node's own view, without probing the others.
    #[serde(default)]
    local: Option<u8>,
}

pub async fn status(
    State(state): State<HttpState>,
    Query(params): Query<StatusParams>,
) -> Json<Value> {
    let mut own = local_status(&state);
    if params.local.unwrap_or(0) != 0 {
        return Json(own);
    }
    let d = &state.dispatcher;
    let (voters, nodes) = {
        let m = metrics::snapshot(&d.raft);
        let membership = m.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let nodes: Vec<(u64, crate::raft::types::NodeAddr)> = membership
            .nodes()
            .map(|(id, addr)| (*id, addr.clone()))
            .collect();
        (voters, nodes)
    };
    let probes = nodes.into_iter().map(|(id, addr)| {
        let peers = d.peers.clone();
        let own = own.clone();
        let is_voter = voters.contains(&id);
        async move {
            let probe = if id == d.node_id {
                Ok(own)
            } else if addr.http.is_empty() {
                Err("HTTP address not registered yet".to_string())
            } else {
                peers
                    .get_json(&addr.http, "/v1/status?local=1", PROBE_TIMEOUT)
                    .await
                    .map_err(|e| e.to_string())
            };
            let mut member = json!({
                "id": id,
                "voter": is_voter,
                "raft": addr.raft,
                "http": addr.http,
                "pg": addr.pg,
                "id_worker": addr.id_worker.map(|w| json!({"datacenter": w.datacenter, "worker": w.worker})),
            });
            match probe {
                Ok(view) => {
                    member["health"] = json!("up");
                    member["role"] = view["role"].clone();
                    member["applied_index"] = view["applied_index"].clone();
                }
                Err(e) => {
                    member["health"] = json!("unreachable");
                    member["role"] = json!(if is_voter { "voter" } else { "learner" });
                    member["error"] = json!(e);
                }
            }
            member
        }
    });
    own["members"] = Value::Array(futures::future::join_all(probes).await);
    Json(own)
}

/// This node's own view, without contacting anyone.
fn local_status(state: &HttpState) -> Value {
    let d = &state.dispatcher;
    let m = metrics::snapshot(&d.raft);
    let applied = d.engine.applied_index();
    let role = format!("{:?}", m.state).to_lowercase();
    let log = state.log.metrics();
    let ids = state.ids.stats();
    let id_settings = state.ids.settings();
    json!({
        "id": d.node_id,
        "role": role,
        "term": m.current_term,
        "leader": m.current_leader,
        // On the leader: how long ago a quorum last acknowledged it (its lease's age).
        "quorum_ack_age_ms": m
            .last_quorum_acked
            .as_ref()
            .map(|acked| {
                use openraft::type_config::async_runtime::Instant as _;
                u64::try_from(acked.elapsed().as_millis()).unwrap_or(u64::MAX)
            }),
        "commit_index": m.local_committed.map(|l| l.index).unwrap_or(0),
        "applied_index": applied,
        "last_log_index": m.last_log_index.unwrap_or(0),
        "snapshot_index": m.snapshot.map(|l| l.index).unwrap_or(0),
        "purged_index": m.purged.map(|l| l.index).unwrap_or(0),
        "addresses": {"raft": state.addr.raft, "http": state.addr.http, "pg": state.addr.pg},
        "log_repair": state.log_repair,
        "raft_log": {
            "fsyncs": log.segment_syncs,
            "appends_flushed": log.appends_flushed,
            "bytes_written": log.bytes_written,
            "segments_deleted": log.segments_deleted,
            "healthy": state.log.writer_failure().is_none(),
        },
        // The leader's write pipeline (`dispatch::write`): groups proposed together, entries.
        "write_pipeline": d.pipeline.stats(),
        "ids": {
            "datacenter": id_settings.datacenter,
            "worker": id_settings.worker,
            "layout": id_settings.layout.describe(),
            "issued": ids.issued,
            "clock_rollback_refusals": ids.clock_rollback_refusals,
            "lease_writes": ids.lease_writes,
        },
        "dispatcher": dispatcher_status(d),
    })
}

/// The read balancer as this node runs it: scheduler, and per target node the weight, the
/// reads it served for this node's clients, in flight, errors, bytes in and out and latency, and its
/// health as this node's probes see it.
fn dispatcher_status(d: &crate::dispatch::Dispatcher) -> Value {
    let settings = d.balancer.settings();
    let health = d.health.view();
    let nodes: Vec<Value> = d
        .balancer
        .stats()
        .into_iter()
        .map(|s| {
            let healthy = health
                .iter()
                .find(|h| h.node == s.node)
                .is_none_or(|h| h.healthy);
            let mut shown = json!(s);
            shown["healthy"] = json!(healthy);
            shown
        })
        .collect();
    json!({
        "scheduler": settings.scheduler.name(),
        "weights": settings.weights,
        "default_weight": settings.default_weight,
        "nodes": nodes,
        // With how far behind the leader each node's data is (`bounded` reads; null: unknown).
        "health": health
            .iter()
            .map(|h| {
                let mut shown = json!(h);
                shown["staleness_ms"] = json!(
                    d.staleness_of(h.node)
                        .map(|s| u64::try_from(s.as_millis()).unwrap_or(u64::MAX))
                );
                shown
            })
            .collect::<Vec<_>>(),
        // Each rule's traffic; `hits` (= requests) kept for readers of the earlier shape.
        "rules": d
            .balancer
            .rule_stats()
            .into_iter()
            .map(|r| {
                let mut shown = json!(r);
                shown["hits"] = json!(r.traffic.requests);
                shown
            })
            .collect::<Vec<_>>(),
    })
}

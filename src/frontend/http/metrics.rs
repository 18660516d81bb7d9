//! `GET /metrics`: this node's state in Prometheus' text exposition format (version 0.0.4):
//! Raft position and role, the Raft log writer, and the read balancer's per-node counters and
//! health — the same numbers `/v1/status` shows as JSON.

use std::fmt::Write;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::frontend::http::HttpState;
use crate::raft::metrics;

/// Appends one metric family: its HELP and TYPE lines, then `samples` (labels, value).
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}

pub async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    let d = &state.dispatcher;
    let m = metrics::snapshot(&d.raft);
    let applied = d.engine.applied_index();
    let log = state.log.metrics();
    let mut out = String::new();
    let one = |value: f64| vec![(String::new(), value)];
    family(
        &mut out,
        "phalanx_raft_term",
        "gauge",
        "Current Raft term.",
        &one(m.current_term as f64),
    );
    family(
        &mut out,
        "phalanx_raft_is_leader",
        "gauge",
        "1 if this node leads.",
        &one(f64::from(u8::from(m.current_leader == Some(d.node_id)))),
    );
    family(
        &mut out,
        "phalanx_raft_commit_index",
        "gauge",
        "Highest log index known committed.",
        &one(m.local_committed.map(|l| l.index).unwrap_or(0) as f64),
    );
    family(
        &mut out,
        "phalanx_applied_index",
        "gauge",
        "Highest log index applied to the database.",
        &one(applied as f64),
    );
    family(
        &mut out,
        "phalanx_raft_log_fsyncs_total",
        "counter",
        "fsyncs of the Raft log.",
        &one(log.segment_syncs as f64),
    );
    family(
        &mut out,
        "phalanx_raft_log_bytes_written_total",
        "counter",
        "Bytes written to the Raft log.",
        &one(log.bytes_written as f64),
    );

    let stats = d.balancer.stats();
    let by_node = |value: &dyn Fn(&crate::dispatch::balance::NodeStats) -> f64| {
        stats
            .iter()
            .map(|s| (format!("node=\"{}\"", s.node), value(s)))
            .collect::<Vec<_>>()
    };
    family(
        &mut out,
        "phalanx_dispatch_requests_total",
        "counter",
        "Reads this node's dispatcher sent to each node.",
        &by_node(&|s| s.requests as f64),
    );
    family(
        &mut out,
        "phalanx_dispatch_errors_total",
        "counter",
        "Reads that failed on each node (not counting SQL errors).",
        &by_node(&|s| s.errors as f64),
    );
    family(
        &mut out,
        "phalanx_dispatch_in_flight",
        "gauge",
        "Reads in flight on each node.",
        &by_node(&|s| f64::from(s.in_flight)),
    );
    family(
        &mut out,
        "phalanx_dispatch_inactive",
        "gauge",
        "Reads on each node that ended within the last one to two seconds (IPVS's inactive count).",
        &by_node(&|s| f64::from(s.inactive)),
    );
    family(
        &mut out,
        "phalanx_dispatch_bytes_out_total",
        "counter",
        "Result bytes each node returned.",
        &by_node(&|s| s.bytes_out as f64),
    );
    family(
        &mut out,
        "phalanx_dispatch_weight",
        "gauge",
        "Effective read weight of each node (0: drained).",
        &by_node(&|s| f64::from(s.weight)),
    );
    let mut latency = Vec::new();
    for s in &stats {
        for (quantile, value) in [("0.5", s.latency_p50_us), ("0.99", s.latency_p99_us)] {
            if let Some(us) = value {
                latency.push((
                    format!("node=\"{}\",quantile=\"{quantile}\"", s.node),
                    us as f64 / 1e6,
                ));
            }
        }
    }
    family(
        &mut out,
        "phalanx_dispatch_latency_seconds",
        "summary",
        "Read latency per node over the last 1024 reads.",
        &latency,
    );
    let rules: Vec<(String, f64)> = d
        .balancer
        .rule_hits()
        .into_iter()
        .map(|(name, hits)| {
            (
                format!("rule=\"{}\"", name.replace(['"', '\\', '\n'], "_")),
                hits as f64,
            )
        })
        .collect();
    family(
        &mut out,
        "phalanx_dispatch_rule_hits_total",
        "counter",
        "Reads each routing rule matched.",
        &rules,
    );
    let health: Vec<(String, f64)> = d
        .health
        .view()
        .iter()
        .map(|h| {
            (
                format!("node=\"{}\"", h.node),
                f64::from(u8::from(h.healthy)),
            )
        })
        .collect();
    family(
        &mut out,
        "phalanx_node_healthy",
        "gauge",
        "1 while this node's probes hold the node healthy.",
        &health,
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
}

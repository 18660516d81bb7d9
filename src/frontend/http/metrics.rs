//! `GET /metrics`: this node's state in Prometheus' text exposition format (version 0.0.4):
//! Raft position and role, the Raft log writer, and the read balancer's counters per node and
//! per routing rule (with the request rates over 1/10/60 s that `/v1/status` shows), each
//! node's health and staleness — the same numbers `/v1/status` shows as JSON.

use std::fmt::Write;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::dispatch::balance::Traffic;
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
    let pipeline = d.pipeline.stats();
    family(
        &mut out,
        "phalanx_write_groups_total",
        "counter",
        "Groups of writes the leader executed and proposed together.",
        &one(pipeline.groups as f64),
    );
    family(
        &mut out,
        "phalanx_write_entries_total",
        "counter",
        "Raft entries the leader's write pipeline proposed.",
        &one(pipeline.entries as f64),
    );
    family(
        &mut out,
        "phalanx_lease_read_indexes_total",
        "counter",
        "Linearizable read indexes this node answered as leader from its own lease, without a trip through openraft's core.",
        &one(d.lease_reads.served() as f64),
    );
    family(
        &mut out,
        "phalanx_raft_log_bytes_written_total",
        "counter",
        "Bytes written to the Raft log.",
        &one(log.bytes_written as f64),
    );

    let stats = d.balancer.stats();
    let nodes: Vec<(String, &Traffic)> = stats
        .iter()
        .map(|s| (format!("node=\"{}\"", s.node), &s.traffic))
        .collect();
    traffic_families(&mut out, "phalanx_dispatch", "each node", &nodes);
    family(
        &mut out,
        "phalanx_dispatch_weight",
        "gauge",
        "Effective read weight of each node (0: drained).",
        &stats
            .iter()
            .map(|s| (format!("node=\"{}\"", s.node), f64::from(s.weight)))
            .collect::<Vec<_>>(),
    );
    let rule_stats = d.balancer.rule_stats();
    let rules: Vec<(String, &Traffic)> = rule_stats
        .iter()
        .map(|r| {
            (
                format!("rule=\"{}\"", r.name.replace(['"', '\\', '\n'], "_")),
                &r.traffic,
            )
        })
        .collect();
    family(
        &mut out,
        "phalanx_dispatch_rule_hits_total",
        "counter",
        "Reads each routing rule matched.",
        &rules
            .iter()
            .map(|(label, t)| (label.clone(), t.requests as f64))
            .collect::<Vec<_>>(),
    );
    traffic_families(
        &mut out,
        "phalanx_dispatch_rule",
        "each routing rule",
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
    let staleness: Vec<(String, f64)> = d
        .health
        .view()
        .iter()
        .filter_map(|h| {
            let stale = d.staleness_of(h.node)?;
            Some((format!("node=\"{}\"", h.node), stale.as_secs_f64()))
        })
        .collect();
    family(
        &mut out,
        "phalanx_node_staleness_seconds",
        "gauge",
        "How far behind the leader each node's data is, for bounded reads (absent: unknown).",
        &staleness,
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
}

/// The traffic families of a set of counters (per node or per routing rule): requests,
/// errors, in flight, inactive, bytes in and out, latency quantiles.
fn traffic_families(out: &mut String, prefix: &str, whose: &str, rows: &[(String, &Traffic)]) {
    type Value = fn(&Traffic) -> f64;
    let counters: [(&str, &str, &str, Value); 6] = [
        ("requests_total", "counter", "Reads sent to", |t| {
            t.requests as f64
        }),
        (
            "errors_total",
            "counter",
            "Reads that failed (not counting SQL errors) on",
            |t| t.errors as f64,
        ),
        ("in_flight", "gauge", "Reads in flight on", |t| {
            f64::from(t.in_flight)
        }),
        (
            "inactive",
            "gauge",
            "Reads that ended within the last one to two seconds (IPVS's inactive count) on",
            |t| f64::from(t.inactive),
        ),
        (
            "bytes_in_total",
            "counter",
            "Request bytes (SQL and parameters) of",
            |t| t.bytes_in as f64,
        ),
        (
            "bytes_out_total",
            "counter",
            "Result bytes returned by",
            |t| t.bytes_out as f64,
        ),
    ];
    for (name, kind, help, value) in counters {
        let samples: Vec<(String, f64)> = rows
            .iter()
            .map(|(label, t)| (label.clone(), value(t)))
            .collect();
        family(
            out,
            &format!("{prefix}_{name}"),
            kind,
            &format!("{help} {whose}."),
            &samples,
        );
    }
    let mut rates = Vec::new();
    for (label, t) in rows {
        for (window, rate) in [("1s", t.rate_1s), ("10s", t.rate_10s), ("60s", t.rate_60s)] {
            rates.push((format!("{label},window=\"{window}\""), rate));
        }
    }
    family(
        out,
        &format!("{prefix}_requests_per_second"),
        "gauge",
        &format!("Reads per second sent to {whose}, over the last 1, 10 and 60 whole seconds."),
        &rates,
    );
    let mut latency = Vec::new();
    for (label, t) in rows {
        for (quantile, value) in [("0.5", t.latency_p50_us), ("0.99", t.latency_p99_us)] {
            if let Some(us) = value {
                latency.push((format!("{label},quantile=\"{quantile}\""), us as f64 / 1e6));
            }
        }
    }
    family(
        out,
        &format!("{prefix}_latency_seconds"),
        "summary",
        &format!("Read latency of {whose} over its last 1024 reads."),
        &latency,
    );
}

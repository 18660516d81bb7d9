//! The `phalanx` command line: parses arguments and calls into the library. Nothing else lives
//! here.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use phalanx::config::NodeConfig;
use phalanx::frontend::pg::auth::cli as pg_auth_cli;
use phalanx::{admin, bench, ids, local, node};

// The write path allocates per request and per batch on several threads; glibc's malloc showed
// as ~15% of the leader's CPU under load (docs/BENCHMARKS.md), mimalloc's thread-local heaps less.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "phalanx",
    version,
    about = "A highly available, load-balanced SQL database cluster"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one node (with no flags: a single-node cluster in ./phalanx-data on loopback).
    Start(Box<StartArgs>),
    /// Run an N-node cluster of separate processes on this machine, in the foreground.
    Local(LocalArgs),
    /// Show the cluster's members, roles, health and indexes.
    Status(admin::StatusArgs),
    /// Add or remove cluster members.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Leadership control.
    #[command(subcommand)]
    Leader(LeaderCommand),
    /// Load generators against a running `phalanx local` cluster (see docs/BENCHMARKS.md).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Snowflake IDs: decode one, or measure the generator.
    #[command(subcommand)]
    Id(ids::cli::IdCommand),
    /// Hash a PostgreSQL password read from standard input and print the `[[pg_users]]`
    /// config entry (SCRAM-SHA-256, or md5 with --md5).
    PgPassword(pg_auth_cli::PasswordArgs),
}

#[derive(Subcommand)]
enum NodeCommand {
    /// Add a running, not yet initialized node (started with --no-bootstrap): it joins as a
    /// learner, receives a snapshot and the log tail, then becomes a voter.
    Add(admin::AddNodeArgs),
    /// Remove a node from the cluster.
    Remove(admin::RemoveNodeArgs),
    /// Put a node in maintenance: it gets no new reads, and hands leadership away if it leads.
    Drain(admin::RemoveNodeArgs),
    /// Take a node out of maintenance.
    Undrain(admin::RemoveNodeArgs),
}

#[derive(Subcommand)]
enum LeaderCommand {
    /// Hand leadership to another voter.
    Transfer(admin::TransferArgs),
}

/// Flags of `phalanx start`. Every one is optional: unset flags leave the config file,
/// environment or default value in place.
#[derive(Args, Serialize)]
struct StartArgs {
    /// TOML configuration file (see phalanx.example.toml).
    #[arg(long)]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// Node id (unique in the cluster, never reused).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<u64>,
    /// Data directory.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<PathBuf>,
    /// PostgreSQL protocol address.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    listen_pg: Option<String>,
    /// HTTP API address.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    listen_http: Option<String>,
    /// Internal RPC (Raft) address.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    listen_raft: Option<String>,
    /// Bootstrap a new cluster: 1=HOST:RAFTPORT,2=HOST:RAFTPORT,...
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    initial_cluster: Option<String>,
    /// Join an existing cluster through a member's HTTP address.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    join: Option<String>,
    /// Do not bootstrap; wait to be added with `phalanx node add`.
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    no_bootstrap: bool,
    /// Snapshot every this many applied entries.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    snapshot_every_entries: Option<u64>,
    /// Log entries kept behind a snapshot.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    log_entries_kept_after_snapshot: Option<u64>,
    /// Deadline of a write (forwarding, election, commit), in milliseconds.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    write_timeout_ms: Option<u64>,
    /// Idle time after which an open explicit transaction is rolled back, in milliseconds.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    txn_idle_timeout_ms: Option<u64>,
    /// Read balancer scheduler (ipvsadm names: rr, wrr, lc, wlc, sed, nq, lblc, lblcr, dh, sh,
    /// mh, fo, ovf, twos).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    dispatcher_scheduler: Option<String>,
    /// Read weights per node, ID=WEIGHT,... (0 drains a node; unlisted nodes weigh 1).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    dispatcher_weights: Option<String>,
    /// Health probe interval between nodes, in milliseconds.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    health_interval_ms: Option<u64>,
    /// Failed probes in a row that take a node out of the read pool.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    health_fall: Option<u32>,
    /// Caught-up probes in a row that bring it back.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    health_rise: Option<u32>,
    /// Most log entries a node may lag and still serve reads.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    health_max_lag_entries: Option<u64>,
    /// How stale, in milliseconds behind the leader, a `bounded` read may be when the client
    /// names no bound.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    read_max_lag_ms: Option<u64>,
    /// Largest HTTP request body in bytes.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_request_bytes: Option<usize>,
    /// Largest PostgreSQL protocol message in bytes.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_message_bytes: Option<usize>,
    /// Most concurrent PostgreSQL sessions.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_pg_connections: Option<usize>,
    /// This node's datacenter id in Snowflake IDs (the worker id is the node id).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    datacenter_id: Option<u64>,
    /// PEM certificate chain for PostgreSQL TLS (with --pg-tls-key).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pg_tls_cert: Option<PathBuf>,
    /// PEM private key for PostgreSQL TLS (with --pg-tls-cert).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pg_tls_key: Option<PathBuf>,
    /// Refuse PostgreSQL sessions without TLS.
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pg_tls_required: bool,
    /// Authentication of loopback PostgreSQL clients: trust, scram-sha-256, md5 or reject.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pg_auth_loopback: Option<String>,
    /// Authentication of other PostgreSQL clients: trust, scram-sha-256, md5 or reject.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pg_auth_remote: Option<String>,
}

#[derive(Args)]
struct LocalArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 3)]
    nodes: u64,
    /// Directory holding every node's data and cluster.json.
    #[arg(long, default_value = "phalanx-local")]
    data: PathBuf,
    /// First port; node i uses base+3(i-1) (pg), +1 (http), +2 (raft).
    #[arg(long, default_value_t = 15400)]
    base_port: u16,
    /// Serve PostgreSQL without TLS (by default a self-signed certificate is made in
    /// DIR/tls and every node uses it).
    #[arg(long)]
    no_tls: bool,
    /// Extra flags passed to every node's `phalanx start`.
    #[arg(last = true)]
    node_args: Vec<String>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PHALANX_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("phalanx: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: Result<(), String> = runtime.block_on(async {
        match cli.command {
            Command::Start(args) => {
                let config =
                    NodeConfig::load(args.config.as_deref(), &*args).map_err(|e| e.to_string())?;
                node::run(config).await.map_err(|e| e.to_string())
            }
            Command::Local(args) => local::run(local::LocalOptions {
                nodes: args.nodes,
                data: args.data,
                base_port: args.base_port,
                tls: !args.no_tls,
                node_args: args.node_args,
            })
            .await
            .map_err(|e| e.to_string()),
            Command::Status(args) => admin::status(&args).await,
            Command::Node(NodeCommand::Add(args)) => admin::add_node(&args).await,
            Command::Node(NodeCommand::Remove(args)) => admin::remove_node(&args).await,
            Command::Node(NodeCommand::Drain(args)) => admin::drain(&args, true).await,
            Command::Node(NodeCommand::Undrain(args)) => admin::drain(&args, false).await,
            Command::Leader(LeaderCommand::Transfer(args)) => admin::transfer_leader(&args).await,
            Command::Bench(command) => bench::run(command).await.map_err(|e| e.to_string()),
            Command::Id(command) => ids::cli::run(command).map_err(|e| e.to_string()),
            Command::PgPassword(args) => pg_auth_cli::run(&args).map_err(|e| e.to_string()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("phalanx: {message}");
            ExitCode::FAILURE
        }
    }
}

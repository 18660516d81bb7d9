//! Wires one node together: storage, Raft, dispatcher and front ends; then bootstraps, joins or
//! resumes the cluster, and runs until SIGTERM/SIGINT.
//!
//! Shutdown order: stop accepting client requests (HTTP drains in-flight ones; PostgreSQL
//! sessions finish their current message, then get 57P01), stop Raft,
//! then the engine and log writer threads finish when their last handles drop.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{NodeConfig, parse_initial_cluster};
use crate::dispatch::balance::{BalancerError, BalancerSettings, ReadBalancer, parse_weights};
use crate::dispatch::health::{Health, HealthSettings};
use crate::dispatch::lease::LeaseReads;
use crate::dispatch::write::{PipelineSettings, WritePipeline};
use crate::dispatch::{Dispatcher, Timeouts};
use crate::frontend::http::{self, HttpState};
use crate::frontend::pg::auth::{AuthMethod, AuthPolicy};
use crate::frontend::pg::tls::ServerTls;
use crate::frontend::pg::{self, PgSettings};
use crate::ids::high_water::FileHighWaterMark;
use crate::ids::{NodeGenerator, SystemClock};
use crate::raft::liveness::LeaderContact;
use crate::raft::log_store::{LogStore, LogStoreOptions};
use crate::raft::membership::{self, MembershipRequest};
use crate::raft::network::{NetworkFactory, PeerClient};
use crate::raft::rpc_server::{self, RpcState};
use crate::raft::state_machine::StateMachine;
use crate::raft::types::{IdWorker, NodeAddr, Raft};
use crate::storage::engine::{Engine, EngineOptions};

/// The node could not start (or failed while running).
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("raft log: {0}")]
    LogStore(#[from] crate::raft::log_store::LogStoreError),
    #[error("storage: {0}")]
    Engine(#[from] crate::storage::error::EngineError),
    #[error("raft: {0}")]
    Raft(String),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("http client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("snowflake ids: {0}")]
    Ids(#[from] crate::ids::IdError),
    #[error("read balancer: {0}")]
    Balancer(#[from] crate::dispatch::balance::BalancerError),
    #[error("postgresql tls: {0}")]
    Tls(#[from] crate::frontend::pg::tls::TlsError),
}

/// Runs a node until a termination signal.
pub async fn run(config: NodeConfig) -> Result<(), NodeError> {
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        let _ = stop_tx.send(true);
    });
    start(config, stop_rx).await
}

/// Resolves on SIGTERM or SIGINT.
pub async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Starts a node and serves until `stop` turns true.
pub async fn start(config: NodeConfig, mut stop: watch::Receiver<bool>) -> Result<(), NodeError> {
    let data = &config.data;
    std::fs::create_dir_all(data)?;
    let id_settings = config.id_generator_settings()?;
    let addr = NodeAddr {
        raft: config.listen_raft.clone(),
        http: config.listen_http.clone(),
        pg: config.listen_pg.clone(),
        id_worker: Some(IdWorker {
            datacenter: id_settings.datacenter,
            worker: id_settings.worker,
        }),
    };

    let pg_tls = match config.pg_tls_files()? {
        Some((cert, key)) => Some(ServerTls::load(&cert, &key)?),
        None => None,
    };
    let pg_auth = config.pg_auth_settings()?;
    crate::storage::catalog::facts::set(crate::storage::catalog::facts::ServerFacts {
        roles: config.pg_users.iter().map(|u| u.name.clone()).collect(),
        settings: crate::frontend::pg::commands::catalog_settings(
            config.max_pg_connections,
            Duration::from_millis(config.read_max_lag_ms),
        ),
    });
    if pg_auth.users.is_empty() && pg_auth.remote != AuthMethod::Trust {
        tracing::info!(
            "no pg_users configured: PostgreSQL clients from other hosts cannot log in (pg_auth_remote = {})",
            pg_auth.remote.name()
        );
    }
    let pg_auth = Arc::new(AuthPolicy::new(
        pg_auth,
        pg_tls.as_ref().map(|t| t.certificate_pem.as_slice()),
    ));

    // Bind first: a port conflict fails start-up before anything is touched.
    let raft_listener = bind(&config.listen_raft).await?;
    let http_listener = bind(&config.listen_http).await?;
    let pg_listener = bind(&config.listen_pg).await?;

    let (log_store, report) = LogStore::open(data.join("raft-log"), LogStoreOptions::default())?;
    let log_handle = log_store.handle();
    let log_repair = report.tail_repair.as_ref().map(|r| {
        format!(
            "cut {} at offset {}: dropped {} bytes ({} records, {} of them intact): {:?}",
            r.segment.display(),
            r.offset,
            r.bytes_dropped,
            r.records_dropped,
            r.intact_records_dropped,
            r.damage
        )
    });
    if let Some(repair) = &log_repair {
        tracing::warn!("raft log repaired at start-up: {repair}");
    }
    let ids = Arc::new(NodeGenerator::new(
        id_settings,
        SystemClock,
        FileHighWaterMark::new(data),
    )?);
    let engine = Engine::open(EngineOptions {
        db_path: data.join("db.sqlite"),
        node_id: config.id,
        read_connections: config.read_connections,
        ids: Some(ids.clone()),
    })?;
    let snapshot_dir = data.join("snapshots");
    let state_machine = StateMachine::new(engine.clone(), snapshot_dir.clone())?;

    let raft_config = openraft::Config {
        cluster_name: "phalanx".into(),
        heartbeat_interval: config.heartbeat_interval_ms,
        election_timeout_min: config.election_timeout_min_ms,
        election_timeout_max: config.election_timeout_max_ms,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(config.snapshot_every_entries),
        max_in_snapshot_log_to_keep: config.log_entries_kept_after_snapshot,
        install_snapshot_timeout: 10_000,
        enable_pre_vote: Some(true),
        ..Default::default()
    }
    .validate()
    .map_err(|e| NodeError::Raft(e.to_string()))?;

    let peers = PeerClient::new()?;
    let raft = Raft::new(
        config.id,
        Arc::new(raft_config),
        NetworkFactory::new(peers.clone()),
        log_store,
        state_machine,
    )
    .await
    .map_err(|e| NodeError::Raft(e.to_string()))?;

    let dispatcher = Dispatcher {
        node_id: config.id,
        raft: raft.clone(),
        engine: engine.clone(),
        pipeline: WritePipeline::start(
            raft.clone(),
            engine.clone(),
            PipelineSettings {
                commit_timeout: Duration::from_millis(config.write_timeout_ms),
                leader_lease: Duration::from_millis(config.election_timeout_max_ms),
                txn_idle_timeout: Duration::from_millis(config.txn_idle_timeout_ms),
            },
        ),
        peers: peers.clone(),
        transactions: Default::default(),
        read_index_rounds: Default::default(),
        lease_reads: Arc::new(LeaseReads::new(
            config.lease_reads,
            Duration::from_millis(config.election_timeout_max_ms),
        )),
        balancer: Arc::new(ReadBalancer::new(balancer_settings(&config)?, config.id)?),
        local_load: Default::default(),
        staleness: Default::default(),
        default_max_lag: Duration::from_millis(config.read_max_lag_ms),
        health: Arc::new(Health::new(HealthSettings {
            interval: Duration::from_millis(config.health_interval_ms.max(10)),
            fall: config.health_fall.max(1),
            rise: config.health_rise.max(1),
            max_lag: config.health_max_lag_entries,
        })),
        timeouts: Timeouts {
            write: Duration::from_millis(config.write_timeout_ms),
            read: Duration::from_millis(config.read_timeout_ms),
            leader_wait: Duration::from_millis(3 * config.election_timeout_max_ms),
            leader_silence: Duration::from_millis(config.election_timeout_max_ms),
        },
        leader_contact: LeaderContact::new(),
    };

    let rpc_app = rpc_server::router(RpcState {
        dispatcher: dispatcher.clone(),
        snapshot_dir,
        stop: stop.clone(),
    });
    let http_app = http::router(HttpState {
        dispatcher: dispatcher.clone(),
        addr: addr.clone(),
        max_request_bytes: config.max_request_bytes,
        log_repair,
        log: log_handle.clone(),
        ids: ids.clone(),
    });
    let rpc_stop = stop.clone();
    let rpc_server = tokio::spawn(async move {
        // No Nagle delay: the node-to-node channel writes small replies back to back.
        let raft_listener = axum::serve::ListenerExt::tap_io(raft_listener, |tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!("TCP_NODELAY on a raft connection: {e}");
            }
        });
        axum::serve(raft_listener, rpc_app)
            .with_graceful_shutdown(until_stopped(rpc_stop))
            .await
    });
    let http_stop = stop.clone();
    let http_server = tokio::spawn(async move {
        // With the client's address, for the dispatcher's `client_addr` hash key.
        let app = http_app.into_make_service_with_connect_info::<std::net::SocketAddr>();
        axum::serve(http_listener, app)
            .with_graceful_shutdown(until_stopped(http_stop))
            .await
    });
    let prober = tokio::spawn(crate::dispatch::probe_members(
        dispatcher.clone(),
        stop.clone(),
    ));
    let pg_server = tokio::spawn(pg::serve(
        pg_listener,
        dispatcher.clone(),
        PgSettings {
            max_connections: config.max_pg_connections,
            max_message_bytes: config.max_message_bytes,
            tls: pg_tls,
            auth: pg_auth,
        },
        stop.clone(),
    ));

    tokio::spawn(exit_on_fatal(raft.clone()));
    bootstrap(&config, &dispatcher, &addr).await?;
    tokio::spawn(register_addresses(
        dispatcher.clone(),
        addr.clone(),
        stop.clone(),
    ));
    tracing::info!(id = config.id, %addr, "node started");

    let _ = stop.wait_for(|s| *s).await;
    tracing::info!(id = config.id, "stopping");
    // Client-facing servers first, so in-flight requests finish while Raft still runs.
    let _ = http_server.await;
    let _ = pg_server.await;
    let _ = prober.await;
    if let Err(e) = raft.shutdown().await {
        tracing::warn!("raft shutdown: {e}");
    }
    rpc_server.abort();
    drop(dispatcher);
    drop(engine);
    // The log writer syncs what is queued, closes its files and releases the directory lock.
    log_handle.closed().await;
    // Last: shortens the ID lease to the last tick used, so a prompt restart issues at once.
    if let Err(e) = ids.close() {
        tracing::warn!("closing the ID generator: {e}");
    }
    tracing::info!(id = config.id, "stopped");
    Ok(())
}

/// A fatal Raft error (storage failed, replicas diverged) stops the node loudly: serving on
/// would mean serving from a state machine that may differ from the cluster's.
async fn exit_on_fatal(raft: Raft) {
    use openraft::type_config::async_runtime::WatchReceiver;
    let mut metrics = raft.metrics();
    loop {
        if let Err(fatal) = &metrics.borrow_watched().running_state {
            if matches!(fatal, openraft::errors::Fatal::Stopped) {
                return;
            }
            tracing::error!("raft failed, stopping the node: {fatal}");
            std::process::exit(70);
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

async fn bind(addr: &str) -> Result<TcpListener, NodeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| NodeError::Bind {
            addr: addr.to_owned(),
            source,
        })
}

async fn until_stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// A node with no Raft state either bootstraps a new cluster, asks an existing one to add it,
/// or waits to be added. A node with state simply resumes.
async fn bootstrap(config: &NodeConfig, d: &Dispatcher, addr: &NodeAddr) -> Result<(), NodeError> {
    let initialized = d
        .raft
        .is_initialized()
        .await
        .map_err(|e| NodeError::Raft(e.to_string()))?;
    if initialized {
        return Ok(());
    }
    if let Some(join) = &config.join {
        tokio::spawn(join_cluster(join.clone(), config.id, addr.clone()));
        return Ok(());
    }
    if config.no_bootstrap {
        tracing::info!("waiting to be added to a cluster");
        return Ok(());
    }
    let members: BTreeMap<u64, NodeAddr> = match &config.initial_cluster {
        Some(text) => parse_initial_cluster(text)?
            .into_iter()
            .map(|(id, raft)| {
                let node = if id == config.id {
                    addr.clone()
                } else {
                    NodeAddr {
                        raft,
                        ..NodeAddr::default()
                    }
                };
                (id, node)
            })
            .collect(),
        None => BTreeMap::from([(config.id, addr.clone())]),
    };
    // Every member of a new cluster initializes with the same membership; openraft accepts
    // that, and the first election decides the leader.
    match d.raft.initialize(members).await {
        Ok(()) => Ok(()),
        Err(e) => match e.api_error() {
            Some(openraft::errors::InitializeError::NotAllowed(_)) => Ok(()),
            _ => Err(NodeError::Raft(e.to_string())),
        },
    }
}

/// Asks a member of an existing cluster to add this node, until it succeeds.
async fn join_cluster(through: String, id: u64, addr: NodeAddr) {
    let client = match reqwest::Client::builder().no_proxy().build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("cannot build http client to join: {e}");
            return;
        }
    };
    let body = serde_json::json!({
        "id": id,
        "raft": addr.raft,
        "http": addr.http,
        "pg": addr.pg,
        "datacenter": addr.id_worker.map(|w| w.datacenter),
    });
    let mut delay = Duration::from_millis(200);
    loop {
        match client
            .post(format!("http://{through}/v1/nodes"))
            .json(&body)
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => {
                tracing::info!("joined the cluster through {through}");
                return;
            }
            Ok(r) => {
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                tracing::warn!("join through {through} refused ({status}): {text}");
            }
            Err(e) => tracing::warn!("join through {through} failed: {e}"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// Makes sure the membership carries this node's full addresses: members bootstrapped from
/// `initial_cluster` start out known only by their raft address.
async fn register_addresses(d: Dispatcher, addr: NodeAddr, mut stop: watch::Receiver<bool>) {
    use openraft::type_config::async_runtime::WatchReceiver;
    let mut metrics = d.raft.metrics();
    // The membership (by its log id) last found to hold this node's addresses: metrics change
    // with every commit and heartbeat, the membership rarely.
    let mut registered_in = None;
    loop {
        let (membership_id, ready) = {
            let m = metrics.borrow_watched();
            let membership_id = *m.membership_config.log_id();
            // Change membership only once the current one is committed, or openraft refuses.
            let membership_committed =
                membership_id.map(|l| l.index) <= m.local_committed.map(|l| l.index);
            (
                membership_id,
                m.current_leader.is_some() && membership_committed,
            )
        };
        let registered = registered_in == Some(membership_id)
            || membership::current_membership(&d).get(&d.node_id) == Some(&addr);
        if registered {
            registered_in = Some(membership_id);
        }
        if ready && !registered {
            let request = MembershipRequest::SetAddr {
                id: d.node_id,
                addr: addr.clone(),
            };
            if let Err(e) = membership::request(&d, request).await {
                tracing::warn!("registering this node's addresses failed: {e}");
            }
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            changed = metrics.changed() => if changed.is_err() { return },
        }
    }
}

/// The read balancer's settings from the node's configuration.
fn balancer_settings(config: &NodeConfig) -> Result<BalancerSettings, BalancerError> {
    let key_source = match config.dispatcher_key_source.trim() {
        "" => None,
        name => Some(name.parse()?),
    };
    let mut tags = std::collections::BTreeMap::new();
    for (node, node_tags) in &config.dispatcher_tags {
        let id: crate::raft::types::NodeId = node
            .trim()
            .parse()
            .map_err(|_| BalancerError::TagNode { text: node.clone() })?;
        tags.insert(id, node_tags.iter().cloned().collect());
    }
    let settings = BalancerSettings {
        scheduler: config.dispatcher_scheduler.trim().parse()?,
        weights: parse_weights(&config.dispatcher_weights)?,
        key_source,
        tags,
        rules: config.dispatcher_rules.clone(),
        dynamic_weights: config.dispatcher_dynamic_weights,
        ..BalancerSettings::default()
    };
    settings.check()?;
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::routing::{RoutingRule, RuleTarget};
    use crate::dispatch::scheduler::HashKeySource;

    fn rule(sql: &str) -> RoutingRule {
        RoutingRule {
            name: "r".into(),
            sql: Some(sql.into()),
            tables: Vec::new(),
            user: None,
            application_name: None,
            target: RuleTarget::Tag("reporting".into()),
        }
    }

    #[test]
    fn the_configured_dispatcher_settings_are_checked_like_the_api_checks_them() {
        let mut config = NodeConfig {
            dispatcher_key_source: "rule_key".into(),
            dispatcher_tags: [("3".to_owned(), vec!["reporting".to_owned()])].into(),
            dispatcher_rules: vec![rule("(?i)select")],
            ..NodeConfig::default()
        };
        assert_eq!(
            balancer_settings(&config),
            Err(BalancerError::RuleKeyWithoutRule),
            "a regex without a capture group gives no key"
        );
        config.dispatcher_rules = vec![rule("customer_id = (\\d+)")];
        let settings = balancer_settings(&config).expect("valid");
        assert_eq!(settings.key_source, Some(HashKeySource::RuleKey));
        assert!(settings.tags[&3].contains("reporting"));
        config.dispatcher_tags = [("three".to_owned(), vec!["reporting".to_owned()])].into();
        assert!(matches!(
            balancer_settings(&config),
            Err(BalancerError::TagNode { .. })
        ));
        config.dispatcher_tags.clear();
        assert!(
            matches!(balancer_settings(&config), Err(BalancerError::Rule(_))),
            "a rule naming a tag no node has is refused"
        );
    }
}

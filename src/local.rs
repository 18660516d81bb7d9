//! `phalanx local`: an N-node cluster of separate OS processes on 127.0.0.1, in the foreground.
//!
//! Port layout from `--base-port B`: node i (1-based) listens on B+3(i-1) for PostgreSQL,
//! B+3(i-1)+1 for HTTP and B+3(i-1)+2 for Raft. Each node's data lives in `DIR/node-i`, its log
//! in `DIR/node-i/node.log`. `DIR/cluster.json` records every node's pid, addresses and the exact
//! command that restarts it. A node that dies is not restarted (that is the operator's call);
//! SIGINT/SIGTERM stops every node cleanly (SIGTERM, then SIGKILL after a grace period).
//!
//! PostgreSQL clients get TLS by default: a self-signed certificate for `localhost`,
//! `127.0.0.1` and `::1` is made once in `DIR/tls/{cert.pem,key.pem}` (the key mode 0600),
//! reused by later runs, and given to every node (`--no-tls` leaves it out).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::process::{Child, Command};

use crate::frontend::pg::tls::ensure_self_signed;

/// How long nodes get to elect a leader at start.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a node gets to stop after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

pub struct LocalOptions {
    pub nodes: u64,
    pub data: PathBuf,
    pub base_port: u16,
    /// Serve PostgreSQL over TLS with the cluster's self-signed certificate.
    pub tls: bool,
    pub node_args: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("invalid options: {0}")]
    Invalid(String),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("cluster did not elect a leader within {0:?}; see the node.log files")]
    NoLeader(Duration),
    #[error("http client: {0}")]
    Client(#[from] reqwest::Error),
    #[error(transparent)]
    Tls(#[from] crate::frontend::pg::tls::TlsError),
}

/// One node as written to cluster.json.
#[derive(Debug, Serialize)]
pub struct LocalNode {
    pub id: u64,
    pub pid: u32,
    pub pg: String,
    pub http: String,
    pub raft: String,
    pub data: String,
    pub cmd: Vec<String>,
}

pub async fn run(options: LocalOptions) -> Result<(), LocalError> {
    if options.nodes == 0 || options.nodes > 99 {
        return Err(LocalError::Invalid(
            "--nodes must be between 1 and 99".into(),
        ));
    }
    let last_port = u32::from(options.base_port) + 3 * options.nodes as u32;
    if last_port > u32::from(u16::MAX) {
        return Err(LocalError::Invalid(
            "--base-port too high for that many nodes".into(),
        ));
    }
    std::fs::create_dir_all(&options.data)?;
    let data = std::fs::canonicalize(&options.data)?;
    let exe = std::env::current_exe()?;
    let addr = |id: u64, offset: u64| {
        format!(
            "127.0.0.1:{}",
            u64::from(options.base_port) + 3 * (id - 1) + offset
        )
    };
    let initial_cluster: Vec<String> = (1..=options.nodes)
        .map(|id| format!("{id}={}", addr(id, 2)))
        .collect();
    let initial_cluster = initial_cluster.join(",");
    let tls = if options.tls {
        let (files, generated) = ensure_self_signed(&data.join("tls"))?;
        if generated {
            println!(
                "phalanx: made a self-signed certificate: {}",
                files.cert.display()
            );
        }
        Some(files)
    } else {
        None
    };

    let mut children: Vec<(u64, Child)> = Vec::new();
    let mut nodes = Vec::new();
    for id in 1..=options.nodes {
        let node_dir = data.join(format!("node-{id}"));
        std::fs::create_dir_all(&node_dir)?;
        let mut cmd = vec![
            exe.to_string_lossy().into_owned(),
            "start".into(),
            "--id".into(),
            id.to_string(),
            "--data".into(),
            node_dir.to_string_lossy().into_owned(),
            "--listen-pg".into(),
            addr(id, 0),
            "--listen-http".into(),
            addr(id, 1),
            "--listen-raft".into(),
            addr(id, 2),
            "--initial-cluster".into(),
            initial_cluster.clone(),
        ];
        if let Some(files) = &tls {
            cmd.extend([
                "--pg-tls-cert".into(),
                files.cert.to_string_lossy().into_owned(),
                "--pg-tls-key".into(),
                files.key.to_string_lossy().into_owned(),
            ]);
        }
        cmd.extend(options.node_args.iter().cloned());
        let child = spawn_node(&cmd, &node_dir.join("node.log"))?;
        let pid = child.id().unwrap_or(0);
        children.push((id, child));
        nodes.push(LocalNode {
            id,
            pid,
            pg: addr(id, 0),
            http: addr(id, 1),
            raft: addr(id, 2),
            data: node_dir.to_string_lossy().into_owned(),
            cmd,
        });
    }
    let cluster_file = data.join("cluster.json");
    let json = serde_json::to_vec_pretty(&serde_json::json!({ "nodes": nodes }))
        .map_err(std::io::Error::other)?;
    std::fs::write(&cluster_file, json)?;

    let leader = match wait_for_leader(&nodes).await {
        Ok(leader) => leader,
        Err(e) => {
            stop_all(&mut children).await;
            return Err(e);
        }
    };
    println!("phalanx: {} nodes up, leader is node {leader}", nodes.len());
    let ssl = if tls.is_some() {
        " sslmode=require"
    } else {
        ""
    };
    for n in &nodes {
        println!(
            "  node {}: psql \"host={} port={}{ssl}\"   http://{}   (pid {})",
            n.id,
            n.pg.split(':').next().unwrap_or("127.0.0.1"),
            n.pg.rsplit(':').next().unwrap_or(""),
            n.http,
            n.pid
        );
    }
    if let Some(files) = &tls {
        println!(
            "  TLS: self-signed; to check it: sslmode=verify-full sslrootcert={}",
            files.cert.display()
        );
    }
    println!("  cluster file: {}", cluster_file.display());
    println!(
        "  try: curl -s -XPOST {}/v1/execute -d '{{\"statements\":[{{\"sql\":\"CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)\"}}]}}'",
        nodes[0].http
    );
    println!("Ctrl-C stops every node.");

    crate::node::wait_for_signal().await;
    println!("phalanx: stopping {} nodes", children.len());
    stop_all(&mut children).await;
    Ok(())
}

fn spawn_node(cmd: &[String], log: &Path) -> Result<Child, LocalError> {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let child = Command::new(&cmd[0])
        .args(&cmd[1..])
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        // Ctrl-C in the terminal reaches only `phalanx local`, which then stops the nodes in order.
        .process_group(0)
        .spawn()?;
    Ok(child)
}

async fn wait_for_leader(nodes: &[LocalNode]) -> Result<u64, LocalError> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(500))
        .build()?;
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    while Instant::now() < deadline {
        let mut leaders = Vec::new();
        for n in nodes {
            let url = format!("http://{}/v1/status?local=1", n.http);
            if let Ok(response) = client.get(url).send().await
                && let Ok(body) = response.json::<serde_json::Value>().await
            {
                leaders.push(body["leader"].as_u64());
            }
        }
        if leaders.len() == nodes.len()
            && let Some(Some(first)) = leaders.first()
            && leaders.iter().all(|l| *l == Some(*first))
        {
            return Ok(*first);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(LocalError::NoLeader(STARTUP_TIMEOUT))
}

async fn stop_all(children: &mut [(u64, Child)]) {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    for (_, child) in children.iter() {
        if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
    }
    for (id, child) in children.iter_mut() {
        match tokio::time::timeout(STOP_GRACE, child.wait()).await {
            Ok(_) => {}
            Err(_) => {
                eprintln!("phalanx: node {id} did not stop in {STOP_GRACE:?}; killing it");
                let _ = child.kill().await;
            }
        }
    }
}

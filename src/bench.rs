//! `phalanx bench`: load generators against a running cluster described by the `cluster.json`
//! that `phalanx local` writes (every node's id, pid, HTTP address and restart command).
//!
//! - [`write`] (`phalanx bench write`): N clients, each on its own keep-alive HTTP connection,
//!   each sending one single-row `INSERT` per request — one request is one durable
//!   transaction — for a fixed time, to the leader or spread over every node. Reports
//!   acknowledged inserts per second, latency percentiles, errors, and the CPU each process
//!   used during the window (from `/proc`), so a run says whether it was CPU-bound.
//! - [`failover`] (`phalanx bench failover`): a few writers run while the leader process gets
//!   `SIGKILL`; measures the time from the kill to the first acknowledged write issued after
//!   it, checks with linearizable reads on every survivor that no acknowledged row is missing,
//!   restarts the killed node with its recorded command and waits until it has caught up.
//!
//! Acknowledged means HTTP 200. Every loop is bounded in time and in count. Measurements are
//! only comparable within one run on one machine (see docs/BENCHMARKS.md); this module
//! reports them and asserts nothing about them.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand, ValueEnum};
use serde::Deserialize;
use serde_json::{Value, json};

/// Most concurrent clients of one run.
const MAX_CLIENTS: usize = 1024;
/// Longest measurement window of `bench write`.
const MAX_SECONDS: f64 = 3600.0;
/// Most failover rounds.
const MAX_ROUNDS: u32 = 50;
/// Timeout of one benchmark request (the server's own write deadline is 10 s).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Timeout of one status probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long to wait for every node to name the same leader.
const LEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause after a failed request before the next one, so a down node is not hammered.
const ERROR_BACKOFF: Duration = Duration::from_millis(5);
/// Bytes in each inserted `v` value (the same as the hiqlite peer driver).
const VALUE_BYTES: usize = 32;
/// Linux reports process CPU time in USER_HZ ticks, 100 per second on every mainstream arch.
const TICKS_PER_SECOND: f64 = 100.0;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Concurrent single-row INSERTs (one request = one durable transaction) for a fixed time.
    Write(WriteArgs),
    /// kill -9 the leader under a write load: outage until the next acknowledged write,
    /// acknowledged rows lost (must be none); restarts the node between rounds.
    Failover(FailoverArgs),
}

/// Which nodes the write clients talk to.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Every client sends to the leader found at start.
    Leader,
    /// Client i sends to node i mod N: followers forward to the leader (the forwarding cost).
    All,
}

#[derive(Args, Debug)]
pub struct WriteArgs {
    /// cluster.json written by `phalanx local`.
    #[arg(long)]
    pub cluster_file: PathBuf,
    #[arg(long, value_enum, default_value_t = Target::Leader)]
    pub target: Target,
    /// Concurrent clients, each with one keep-alive connection and one request in flight.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Measurement window.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Unmeasured run before the window (connections opened, caches warm).
    #[arg(long, default_value_t = 1.0)]
    pub warmup_seconds: f64,
    /// Most requests one client sends (warm-up included).
    #[arg(long, default_value_t = 1_000_000)]
    pub max_requests_per_client: u64,
    /// Table to insert into; created as `(id INTEGER PRIMARY KEY, v TEXT NOT NULL)` if missing.
    #[arg(long, default_value = "bench")]
    pub table: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct FailoverArgs {
    /// cluster.json written by `phalanx local` (its pids are updated as nodes are restarted).
    #[arg(long)]
    pub cluster_file: PathBuf,
    /// Kill-and-restart rounds.
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
    /// Concurrent writers, spread over the live nodes.
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
    /// Writes run this long before the kill.
    #[arg(long, default_value_t = 2000)]
    pub before_kill_ms: u64,
    /// Writes go on this long after the first acknowledged write following the kill.
    #[arg(long, default_value_t = 1000)]
    pub after_recovery_ms: u64,
    /// A round fails if no write is acknowledged within this long after the kill.
    #[arg(long, default_value_t = 30)]
    pub recovery_timeout_s: u64,
    /// How long a restarted node gets to rejoin and apply everything.
    #[arg(long, default_value_t = 60)]
    pub catch_up_timeout_s: u64,
    /// Per-write client timeout.
    #[arg(long, default_value_t = 5000)]
    pub write_timeout_ms: u64,
    #[arg(long, default_value = "bench_failover")]
    pub table: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("invalid options: {0}")]
    Invalid(String),
    #[error("cluster file {path}: {message}")]
    ClusterFile { path: PathBuf, message: String },
    #[error("no leader: {0}")]
    NoLeader(String),
    /// A setup or verification request was refused or could not be sent.
    #[error("request to node {node} failed: {message}")]
    Request { node: String, message: String },
    #[error("failover round {round}: {message}")]
    Failover { round: u32, message: String },
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("http client: {0}")]
    Client(#[from] reqwest::Error),
}

pub async fn run(command: BenchCommand) -> Result<(), BenchError> {
    match command {
        BenchCommand::Write(args) => {
            let report = write(&args).await?;
            if args.json {
                println!("{}", report.to_json());
            } else {
                println!("{}", report.to_text());
            }
            Ok(())
        }
        BenchCommand::Failover(args) => {
            let report = failover(&args).await?;
            if args.json {
                println!("{}", report.to_json());
            } else {
                println!("{}", report.to_text());
            }
            if report.rounds.iter().any(|r| r.acked_missing > 0) {
                return Err(BenchError::Failover {
                    round: 0,
                    message: "acknowledged rows were lost (see the report above)".into(),
                });
            }
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The cluster file and the HTTP API

/// One node as `phalanx local` records it in cluster.json.
#[derive(Debug, Clone, Deserialize)]
pub struct ClusterNode {
    pub id: u64,
    pub pid: u32,
    pub http: String,
    pub data: PathBuf,
    pub cmd: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct ClusterFile {
    nodes: Vec<ClusterNode>,
}

fn load_cluster(path: &Path) -> Result<Vec<ClusterNode>, BenchError> {
    let bad = |message: String| BenchError::ClusterFile {
        path: path.to_owned(),
        message,
    };
    let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let file: ClusterFile = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    if file.nodes.is_empty() {
        return Err(bad("lists no nodes".into()));
    }
    if file.nodes.iter().any(|n| n.cmd.is_empty()) {
        return Err(bad("a node has an empty cmd".into()));
    }
    Ok(file.nodes)
}

/// Records a restarted node's new pid in the cluster file (written whole, then renamed), so
/// whoever stops the cluster afterwards finds the live process.
fn record_pid(path: &Path, node_id: u64, pid: u32) -> Result<(), BenchError> {
    let bad = |message: String| BenchError::ClusterFile {
        path: path.to_owned(),
        message,
    };
    let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let mut file: Value = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    let node = file["nodes"]
        .as_array_mut()
        .and_then(|nodes| nodes.iter_mut().find(|n| n["id"].as_u64() == Some(node_id)))
        .ok_or_else(|| bad(format!("node {node_id} vanished from the file")))?;
    node["pid"] = json!(pid);
    let text = serde_json::to_vec_pretty(&file).map_err(|e| bad(e.to_string()))?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn http_client(timeout: Duration) -> Result<reqwest::Client, BenchError> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        // One request in flight per client: one connection is all it ever needs.
        .pool_max_idle_per_host(1)
        .timeout(timeout)
        .build()?)
}

/// Setup, probing and verification calls (not the measured load).
struct Api {
    http: reqwest::Client,
}

impl Api {
    fn new() -> Result<Api, BenchError> {
        Ok(Api {
            http: http_client(REQUEST_TIMEOUT)?,
        })
    }

    /// A node's own view (`/v1/status?local=1`), or `None` if it does not answer in time.
    async fn status(&self, http: &str) -> Option<Value> {
        let url = format!("http://{http}/v1/status?local=1");
        let response = self
            .http
            .get(url)
            .timeout(PROBE_TIMEOUT)
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.json().await.ok()
    }

    async fn post(&self, http: &str, path: &str, body: &Value) -> Result<Value, BenchError> {
        let failed = |message: String| BenchError::Request {
            node: http.to_owned(),
            message,
        };
        let response = self
            .http
            .post(format!("http://{http}{path}"))
            .json(body)
            .send()
            .await
            .map_err(|e| failed(e.to_string()))?;
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .map_err(|e| failed(format!("HTTP {status}, unreadable body: {e}")))?;
        if !status.is_success() {
            return Err(failed(format!("HTTP {status}: {body}")));
        }
        Ok(body)
    }

    async fn execute(&self, http: &str, sql: &str, params: Value) -> Result<Value, BenchError> {
        self.post(
            http,
            "/v1/execute",
            &json!({"statements": [{"sql": sql, "params": params}]}),
        )
        .await
    }

    async fn query_linearizable(
        &self,
        http: &str,
        sql: &str,
        params: Value,
    ) -> Result<Value, BenchError> {
        self.post(
            http,
            "/v1/query",
            &json!({"sql": sql, "params": params, "consistency": "linearizable"}),
        )
        .await
    }

    /// Waits until every node in `which` answers and names the same leader, one of `which`;
    /// returns that leader's position in `nodes`.
    async fn wait_for_leader(
        &self,
        nodes: &[ClusterNode],
        which: &[usize],
        timeout: Duration,
    ) -> Result<usize, BenchError> {
        let deadline = Instant::now() + timeout;
        let mut last_seen = Vec::new();
        while Instant::now() < deadline {
            last_seen.clear();
            for &i in which {
                let leader = self
                    .status(&nodes[i].http)
                    .await
                    .and_then(|s| s["leader"].as_u64());
                last_seen.push((nodes[i].id, leader));
            }
            if let Some((_, Some(first))) = last_seen.first()
                && last_seen.iter().all(|(_, l)| *l == Some(*first))
                && let Some(position) = nodes.iter().position(|n| n.id == *first)
                && which.contains(&position)
            {
                return Ok(position);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(BenchError::NoLeader(format!(
            "nodes did not agree on a live leader within {timeout:?}; (node, leader) last seen: {last_seen:?}"
        )))
    }

    async fn applied_index(&self, http: &str) -> Option<u64> {
        self.status(http)
            .await
            .and_then(|s| s["applied_index"].as_u64())
    }
}

/// Accepts plain SQL identifiers only, since the table name is spliced into statements.
fn validate_table(table: &str) -> Result<(), BenchError> {
    let mut chars = table.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && table.len() <= 64;
    if valid {
        Ok(())
    } else {
        Err(BenchError::Invalid(format!(
            "--table {table:?} must be a plain identifier (letters, digits, _)"
        )))
    }
}

/// Creates the table if missing and returns the first unused id in it.
async fn prepare_table(api: &Api, leader_http: &str, table: &str) -> Result<i64, BenchError> {
    api.execute(
        leader_http,
        &format!("CREATE TABLE IF NOT EXISTS {table} (id INTEGER PRIMARY KEY, v TEXT NOT NULL)"),
        json!([]),
    )
    .await?;
    let answer = api
        .query_linearizable(
            leader_http,
            &format!("SELECT COALESCE(MAX(id), 0) FROM {table}"),
            json!([]),
        )
        .await?;
    let max = answer["rows"][0][0]
        .as_i64()
        .ok_or_else(|| BenchError::Request {
            node: leader_http.to_owned(),
            message: format!("unexpected answer to SELECT MAX(id): {answer}"),
        })?;
    Ok(max + 1)
}

/// The JSON body of one single-row insert; `sql_json` is the statement, already JSON-quoted.
fn insert_body(sql_json: &str, id: i64) -> String {
    let mut value = format!("v{id}-");
    while value.len() < VALUE_BYTES {
        value.push('x');
    }
    // `value` holds only ASCII letters, digits and '-': no JSON escaping needed.
    format!(r#"{{"statements":[{{"sql":{sql_json},"params":[{id},"{value}"]}}]}}"#)
}

/// What one request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// HTTP 200: the transaction is durable on a majority.
    Acknowledged,
    /// Anything else; the key groups errors in the report (`http 503 no_leader`, `connect`, ...).
    Failed { kind: String, message: String },
}

/// One keep-alive HTTP/1.1 connection that writes a prepared request and reads the answer by
/// its Content-Length: the load generator must cost far less CPU than the cluster it loads
/// (on a 2-core machine a general-purpose client took a fifth of the CPU).
struct RawHttpConnection {
    addr: String,
    stream: Option<tokio::io::BufStream<tokio::net::TcpStream>>,
}

impl RawHttpConnection {
    fn new(addr: String) -> RawHttpConnection {
        RawHttpConnection { addr, stream: None }
    }

    /// POSTs `body` to /v1/execute; on any transport error the connection is dropped (the next
    /// request reconnects).
    async fn insert(&mut self, body: &str) -> Outcome {
        match tokio::time::timeout(REQUEST_TIMEOUT, self.post(body)).await {
            Ok(Ok((200, _))) => Outcome::Acknowledged,
            Ok(Ok((status, bytes))) => {
                let code = serde_json::from_slice::<Value>(&bytes)
                    .ok()
                    .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
                    .unwrap_or_default();
                Outcome::Failed {
                    kind: format!("http {status} {code}").trim().to_owned(),
                    message: String::from_utf8_lossy(&bytes).chars().take(300).collect(),
                }
            }
            Ok(Err(message)) => {
                self.stream = None;
                Outcome::Failed {
                    kind: "transport".into(),
                    message,
                }
            }
            Err(_) => {
                self.stream = None;
                Outcome::Failed {
                    kind: "timeout".into(),
                    message: format!("no answer within {REQUEST_TIMEOUT:?}"),
                }
            }
        }
    }

    async fn post(&mut self, body: &str) -> Result<(u16, Vec<u8>), String> {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
        if self.stream.is_none() {
            let tcp = tokio::net::TcpStream::connect(&self.addr)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            tcp.set_nodelay(true).map_err(|e| e.to_string())?;
            self.stream = Some(tokio::io::BufStream::new(tcp));
        }
        let stream = self.stream.as_mut().ok_or("no connection")?;
        let head = format!(
            "POST /v1/execute HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.addr,
            body.len()
        );
        stream
            .write_all(head.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        stream
            .write_all(body.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        stream.flush().await.map_err(|e| e.to_string())?;
        let mut line = String::new();
        stream
            .read_line(&mut line)
            .await
            .map_err(|e| e.to_string())?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line {line:?}"))?;
        let mut length: Option<usize> = None;
        loop {
            line.clear();
            if stream
                .read_line(&mut line)
                .await
                .map_err(|e| e.to_string())?
                == 0
            {
                return Err("connection closed in the headers".into());
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().ok();
                } else if name.eq_ignore_ascii_case("transfer-encoding") {
                    return Err("chunked answers are not expected".into());
                }
            }
        }
        let length = length.ok_or("answer without Content-Length")?;
        let mut bytes = vec![0; length];
        stream
            .read_exact(&mut bytes)
            .await
            .map_err(|e| e.to_string())?;
        Ok((status, bytes))
    }
}

/// Sends one insert and reads the whole answer (so the connection can be reused).
async fn send_insert(client: &reqwest::Client, url: &str, body: String) -> Outcome {
    let response = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await;
    match response {
        Ok(response) => {
            let status = response.status();
            match response.bytes().await {
                Ok(_) if status == reqwest::StatusCode::OK => Outcome::Acknowledged,
                Ok(bytes) => {
                    let code = serde_json::from_slice::<Value>(&bytes)
                        .ok()
                        .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
                        .unwrap_or_default();
                    Outcome::Failed {
                        kind: format!("http {} {code}", status.as_u16()).trim().to_owned(),
                        message: String::from_utf8_lossy(&bytes).chars().take(300).collect(),
                    }
                }
                Err(e) => Outcome::Failed {
                    kind: "body".into(),
                    message: e.to_string(),
                },
            }
        }
        Err(e) => {
            let kind = if e.is_timeout() {
                "timeout"
            } else if e.is_connect() {
                "connect"
            } else {
                "transport"
            };
            Outcome::Failed {
                kind: kind.into(),
                message: e.to_string(),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// bench write

/// The result of `bench write`.
#[derive(Debug, Clone)]
pub struct WriteReport {
    pub target: Target,
    pub leader_id: u64,
    pub nodes_targeted: Vec<u64>,
    pub clients: usize,
    pub window_s: f64,
    /// Inserts acknowledged within the measurement window.
    pub acknowledged: u64,
    pub latency: LatencySummary,
    /// Failed requests within the window, by kind.
    pub errors: BTreeMap<String, u64>,
    pub first_error: Option<String>,
    pub cpu: Option<CpuReport>,
}

impl WriteReport {
    pub fn inserts_per_s(&self) -> f64 {
        self.acknowledged as f64 / self.window_s.max(1e-9)
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    pub fn to_json(&self) -> Value {
        json!({
            "bench": "write",
            "target": format!("{:?}", self.target).to_lowercase(),
            "leader": self.leader_id,
            "nodes_targeted": self.nodes_targeted,
            "clients": self.clients,
            "window_s": self.window_s,
            "inserts": self.acknowledged,
            "inserts_per_s": round2(self.inserts_per_s()),
            "latency_ms": self.latency.to_json(),
            "errors": self.error_count(),
            "error_kinds": self.errors,
            "first_error": self.first_error,
            "cpu_cores": self.cpu.as_ref().map(CpuReport::to_json),
        })
    }

    pub fn to_text(&self) -> String {
        let mut text = format!(
            "write target={} (leader node {}, nodes {:?}) clients={} window={:.1}s\n  \
             inserts={} inserts/s={:.0} latency_ms p50={:.2} p90={:.2} p99={:.2} max={:.2} errors={}",
            format!("{:?}", self.target).to_lowercase(),
            self.leader_id,
            self.nodes_targeted,
            self.clients,
            self.window_s,
            self.acknowledged,
            self.inserts_per_s(),
            self.latency.p50_ms,
            self.latency.p90_ms,
            self.latency.p99_ms,
            self.latency.max_ms,
            self.error_count(),
        );
        for (kind, count) in &self.errors {
            text.push_str(&format!("\n  error {kind}: {count}"));
        }
        if let Some(e) = &self.first_error {
            text.push_str(&format!("\n  first error: {e}"));
        }
        if let Some(cpu) = &self.cpu {
            text.push_str(&format!("\n  cpu (cores busy): {}", cpu.to_text()));
        }
        text
    }
}

/// Latency percentiles of acknowledged requests, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LatencySummary {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl LatencySummary {
    /// From latencies in microseconds, sorted ascending (nearest-rank percentiles).
    fn from_sorted_us(sorted: &[u32]) -> LatencySummary {
        let ms = |p: f64| percentile(sorted, p).map_or(f64::NAN, |us| f64::from(us) / 1000.0);
        LatencySummary {
            p50_ms: ms(50.0),
            p90_ms: ms(90.0),
            p99_ms: ms(99.0),
            max_ms: ms(100.0),
        }
    }

    fn to_json(self) -> Value {
        json!({"p50": round3(self.p50_ms), "p90": round3(self.p90_ms),
               "p99": round3(self.p99_ms), "max": round3(self.max_ms)})
    }
}

/// Nearest-rank percentile of an ascending slice; `None` when empty.
fn percentile(sorted: &[u32], p: f64) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// One client's tally for the measurement window.
#[derive(Debug, Default)]
struct ClientTally {
    acknowledged: u64,
    latencies_us: Vec<u32>,
    errors: BTreeMap<String, u64>,
    first_error: Option<String>,
}

/// Runs `bench write`: see the module doc.
pub async fn write(args: &WriteArgs) -> Result<WriteReport, BenchError> {
    if args.clients == 0 || args.clients > MAX_CLIENTS {
        return Err(BenchError::Invalid(format!(
            "--clients must be between 1 and {MAX_CLIENTS}"
        )));
    }
    for (name, value) in [
        ("--seconds", args.seconds),
        ("--warmup-seconds", args.warmup_seconds),
    ] {
        if !(0.0..=MAX_SECONDS).contains(&value) {
            return Err(BenchError::Invalid(format!(
                "{name} must be between 0 and {MAX_SECONDS}"
            )));
        }
    }
    if args.seconds <= 0.0 {
        return Err(BenchError::Invalid("--seconds must be positive".into()));
    }
    validate_table(&args.table)?;
    let nodes = load_cluster(&args.cluster_file)?;
    let api = Api::new()?;
    let all: Vec<usize> = (0..nodes.len()).collect();
    let leader = api.wait_for_leader(&nodes, &all, LEADER_TIMEOUT).await?;
    let first_id = prepare_table(&api, &nodes[leader].http, &args.table).await?;

    let targets: Vec<usize> = match args.target {
        Target::Leader => vec![leader],
        Target::All => all.clone(),
    };
    let sql_json = serde_json::to_string(&format!(
        "INSERT INTO {} (id, v) VALUES (?1, ?2)",
        args.table
    ))
    .map_err(|e| BenchError::Invalid(e.to_string()))?;
    let next_id = Arc::new(AtomicI64::new(first_id));
    let window_start = Instant::now() + Duration::from_secs_f64(args.warmup_seconds);
    let window_end = window_start + Duration::from_secs_f64(args.seconds);

    let mut tasks = Vec::with_capacity(args.clients);
    for client_index in 0..args.clients {
        let mut client =
            RawHttpConnection::new(nodes[targets[client_index % targets.len()]].http.clone());
        let sql_json = sql_json.clone();
        let next_id = next_id.clone();
        let max_requests = args.max_requests_per_client;
        tasks.push(tokio::spawn(async move {
            let mut tally = ClientTally::default();
            let mut sent = 0u64;
            while sent < max_requests && Instant::now() < window_end {
                sent += 1;
                let id = next_id.fetch_add(1, Ordering::Relaxed);
                let started = Instant::now();
                let outcome = client.insert(&insert_body(&sql_json, id)).await;
                let finished = Instant::now();
                let counted = started >= window_start && finished <= window_end;
                match outcome {
                    Outcome::Acknowledged if counted => {
                        tally.acknowledged += 1;
                        let us = (finished - started).as_micros();
                        tally
                            .latencies_us
                            .push(u32::try_from(us).unwrap_or(u32::MAX));
                    }
                    Outcome::Acknowledged => {}
                    Outcome::Failed { kind, message } => {
                        if counted {
                            *tally.errors.entry(kind).or_default() += 1;
                            tally.first_error.get_or_insert(message);
                        }
                        tokio::time::sleep(ERROR_BACKOFF).await;
                    }
                }
            }
            tally
        }));
    }

    // CPU use of every process over the window, sampled at its edges.
    let pids: Vec<(String, u32)> = nodes
        .iter()
        .map(|n| (format!("node{}", n.id), n.pid))
        .chain(std::iter::once(("bench".to_owned(), std::process::id())))
        .collect();
    tokio::time::sleep_until(window_start.into()).await;
    let cpu_before = CpuSample::take(&pids);
    tokio::time::sleep_until(window_end.into()).await;
    let cpu_after = CpuSample::take(&pids);
    let cpu = CpuReport::between(&cpu_before, &cpu_after);

    let mut total = ClientTally::default();
    for task in tasks {
        match task.await {
            Ok(tally) => {
                total.acknowledged += tally.acknowledged;
                total.latencies_us.extend(tally.latencies_us);
                for (kind, count) in tally.errors {
                    *total.errors.entry(kind).or_default() += count;
                }
                if total.first_error.is_none() {
                    total.first_error = tally.first_error;
                }
            }
            Err(e) => {
                *total.errors.entry("client task failed".into()).or_default() += 1;
                total.first_error.get_or_insert(e.to_string());
            }
        }
    }
    total.latencies_us.sort_unstable();
    Ok(WriteReport {
        target: args.target,
        leader_id: nodes[leader].id,
        nodes_targeted: targets.iter().map(|&i| nodes[i].id).collect(),
        clients: args.clients,
        window_s: args.seconds,
        acknowledged: total.acknowledged,
        latency: LatencySummary::from_sorted_us(&total.latencies_us),
        errors: total.errors,
        first_error: total.first_error,
        cpu,
    })
}

// ---------------------------------------------------------------------------------------------
// CPU accounting from /proc

/// CPU time counters at one instant: each named process's user+system ticks, and the
/// machine's busy and total ticks (all cores).
#[derive(Debug, Clone)]
struct CpuSample {
    at: Instant,
    processes: Vec<(String, Option<u64>)>,
    machine: Option<(u64, u64)>,
}

impl CpuSample {
    fn take(pids: &[(String, u32)]) -> CpuSample {
        let processes = pids
            .iter()
            .map(|(name, pid)| {
                let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .ok()
                    .and_then(|text| process_ticks(&text));
                (name.clone(), ticks)
            })
            .collect();
        let machine = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|text| machine_ticks(&text));
        CpuSample {
            at: Instant::now(),
            processes,
            machine,
        }
    }
}

/// Cores kept busy over a window, per process and for the whole machine.
#[derive(Debug, Clone, PartialEq)]
pub struct CpuReport {
    /// (process name, cores busy) for each process that could be read at both edges.
    pub processes: Vec<(String, f64)>,
    /// Cores busy machine-wide (every process, ours or not).
    pub machine_busy: Option<f64>,
    pub machine_cores: usize,
}

impl CpuReport {
    fn between(before: &CpuSample, after: &CpuSample) -> Option<CpuReport> {
        let seconds = (after.at - before.at).as_secs_f64();
        if seconds <= 0.0 {
            return None;
        }
        let processes = before
            .processes
            .iter()
            .zip(&after.processes)
            .filter_map(|((name, b), (_, a))| {
                let used = a.as_ref()?.checked_sub((*b)?)?;
                Some((name.clone(), used as f64 / TICKS_PER_SECOND / seconds))
            })
            .collect();
        let machine_busy = match (before.machine, after.machine) {
            (Some((busy_b, total_b)), Some((busy_a, total_a))) if total_a > total_b => {
                let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
                Some((busy_a - busy_b) as f64 / (total_a - total_b) as f64 * cores as f64)
            }
            _ => None,
        };
        Some(CpuReport {
            processes,
            machine_busy,
            machine_cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        })
    }

    fn to_json(&self) -> Value {
        let mut map = serde_json::Map::new();
        for (name, cores) in &self.processes {
            map.insert(name.clone(), json!(round2(*cores)));
        }
        map.insert("machine_busy".into(), json!(self.machine_busy.map(round2)));
        map.insert("machine_cores".into(), json!(self.machine_cores));
        Value::Object(map)
    }

    fn to_text(&self) -> String {
        let mut parts: Vec<String> = self
            .processes
            .iter()
            .map(|(name, cores)| format!("{name}={cores:.2}"))
            .collect();
        if let Some(busy) = self.machine_busy {
            parts.push(format!("machine={busy:.2} of {} cores", self.machine_cores));
        }
        parts.join(" ")
    }
}

/// utime + stime (fields 14 and 15) of a `/proc/PID/stat` line. The command name (field 2)
/// may hold spaces and parentheses, so fields are counted after its last ')'.
fn process_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

/// (busy, total) ticks of all cores from `/proc/stat`'s first line; idle and iowait are not
/// busy.
fn machine_ticks(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().next()?;
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let values: Vec<u64> = fields.map(|f| f.parse().ok()).collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice, counted in user/nice]
    let total: u64 = values.iter().take(8).sum();
    let idle = values.get(3)? + values.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

// ---------------------------------------------------------------------------------------------
// bench failover

/// One kill-and-restart round.
#[derive(Debug, Clone)]
pub struct RoundReport {
    pub round: u32,
    pub killed_node: u64,
    pub killed_pid: u32,
    /// Kill to the first acknowledged write that was issued after the kill.
    pub outage_ms: f64,
    /// Node whose client got that acknowledgement.
    pub first_ack_via: u64,
    /// Kill to the first survivor status naming a new live leader (None: not seen in time).
    pub new_leader_seen_ms: Option<f64>,
    pub new_leader: Option<u64>,
    pub writes_acknowledged: u64,
    pub writes_failed: u64,
    /// Acknowledged ids missing from a survivor's linearizable read (must be 0).
    pub acked_missing: u64,
    /// Ids present although their request failed (allowed: outcome unknown to the client).
    pub present_not_acked: u64,
    /// Restart of the killed node until every node had applied a write made after it.
    pub catch_up_ms: f64,
    pub first_error: Option<String>,
}

#[derive(Debug, Clone)]
pub struct FailoverReport {
    pub clients: usize,
    pub rounds: Vec<RoundReport>,
}

impl FailoverReport {
    fn outages_sorted(&self) -> Vec<f64> {
        let mut outages: Vec<f64> = self.rounds.iter().map(|r| r.outage_ms).collect();
        outages.sort_by(f64::total_cmp);
        outages
    }

    pub fn median_outage_ms(&self) -> Option<f64> {
        let sorted = self.outages_sorted();
        match sorted.len() {
            0 => None,
            n if n % 2 == 1 => Some(sorted[n / 2]),
            n => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
        }
    }

    pub fn max_outage_ms(&self) -> Option<f64> {
        self.outages_sorted().last().copied()
    }

    pub fn to_json(&self) -> Value {
        let rounds: Vec<Value> = self
            .rounds
            .iter()
            .map(|r| {
                json!({
                    "round": r.round,
                    "killed_node": r.killed_node,
                    "killed_pid": r.killed_pid,
                    "outage_ms": round2(r.outage_ms),
                    "first_ack_via": r.first_ack_via,
                    "new_leader": r.new_leader,
                    "new_leader_seen_ms": r.new_leader_seen_ms.map(round2),
                    "writes_acknowledged": r.writes_acknowledged,
                    "writes_failed": r.writes_failed,
                    "acked_missing": r.acked_missing,
                    "present_not_acked": r.present_not_acked,
                    "catch_up_ms": round2(r.catch_up_ms),
                    "first_error": r.first_error,
                })
            })
            .collect();
        json!({
            "bench": "failover",
            "clients": self.clients,
            "rounds": rounds,
            "outage_ms_median": self.median_outage_ms().map(round2),
            "outage_ms_max": self.max_outage_ms().map(round2),
            "acked_missing_total": self.rounds.iter().map(|r| r.acked_missing).sum::<u64>(),
        })
    }

    pub fn to_text(&self) -> String {
        let mut text = format!("failover clients={}", self.clients);
        for r in &self.rounds {
            text.push_str(&format!(
                "\n  round {}: kill -9 leader node {} (pid {}); new leader {} seen after {} ms; \
                 first acknowledged write {:.0} ms after the kill (via node {}); \
                 acked={} failed={} acked_missing={} present_not_acked={}; restarted node caught up in {:.0} ms",
                r.round,
                r.killed_node,
                r.killed_pid,
                r.new_leader.map_or("?".into(), |l| format!("node {l}")),
                r.new_leader_seen_ms.map_or("?".into(), |ms| format!("{ms:.0}")),
                r.outage_ms,
                r.first_ack_via,
                r.writes_acknowledged,
                r.writes_failed,
                r.acked_missing,
                r.present_not_acked,
                r.catch_up_ms,
            ));
            if let Some(e) = &r.first_error {
                text.push_str(&format!("\n    first error: {e}"));
            }
        }
        if let (Some(median), Some(max)) = (self.median_outage_ms(), self.max_outage_ms()) {
            text.push_str(&format!(
                "\n  outage_ms median={median:.0} max={max:.0} over {} rounds",
                self.rounds.len()
            ));
        }
        text
    }
}

/// State the failover writers share with the round's driver.
struct WriterShared {
    next_id: AtomicI64,
    /// Which node positions may be written to (a killed node is taken out at once).
    alive: Vec<AtomicBool>,
    stop: AtomicBool,
    /// Microseconds after `started` at which the leader was killed; u64::MAX before.
    killed_at_us: AtomicU64,
    /// Microseconds after `started` when the first write issued after the kill was
    /// acknowledged; u64::MAX before.
    first_ack_after_kill_us: AtomicU64,
    /// Node id through which that acknowledgement came.
    first_ack_via: AtomicU64,
    started: Instant,
}

impl WriterShared {
    fn micros_since_start(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.started).as_micros()).unwrap_or(u64::MAX)
    }
}

/// One write of a failover writer.
struct WriteRecord {
    id: i64,
    acknowledged: bool,
}

struct WriterLog {
    records: Vec<WriteRecord>,
    first_error: Option<String>,
}

/// Most writes one failover writer makes in a round.
const MAX_WRITES_PER_WRITER: usize = 1_000_000;

async fn failover_writer(
    shared: Arc<WriterShared>,
    nodes: Arc<Vec<ClusterNode>>,
    start_at: usize,
    client: reqwest::Client,
    sql_json: String,
) -> WriterLog {
    let mut log = WriterLog {
        records: Vec::new(),
        first_error: None,
    };
    let mut position = start_at % nodes.len();
    while !shared.stop.load(Ordering::Relaxed) && log.records.len() < MAX_WRITES_PER_WRITER {
        // Move on to a live node (a client library would, on a refused connection).
        for _ in 0..nodes.len() {
            if shared.alive[position].load(Ordering::Relaxed) {
                break;
            }
            position = (position + 1) % nodes.len();
        }
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let url = format!("http://{}/v1/execute", nodes[position].http);
        let issued = shared.micros_since_start(Instant::now());
        let outcome = send_insert(&client, &url, insert_body(&sql_json, id)).await;
        let acknowledged = outcome == Outcome::Acknowledged;
        if acknowledged {
            let killed = shared.killed_at_us.load(Ordering::SeqCst);
            if killed != u64::MAX && issued >= killed {
                let done = shared.micros_since_start(Instant::now());
                if shared
                    .first_ack_after_kill_us
                    .compare_exchange(u64::MAX, done, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
                {
                    shared
                        .first_ack_via
                        .store(nodes[position].id, Ordering::SeqCst);
                }
            }
        }
        log.records.push(WriteRecord { id, acknowledged });
        if let Outcome::Failed { kind, message } = outcome {
            log.first_error
                .get_or_insert_with(|| format!("{kind}: {message}"));
            if kind == "connect" || kind == "transport" {
                position = (position + 1) % nodes.len();
            }
            tokio::time::sleep(ERROR_BACKOFF).await;
        }
    }
    log
}

/// Runs `bench failover`: see the module doc.
pub async fn failover(args: &FailoverArgs) -> Result<FailoverReport, BenchError> {
    if args.rounds == 0 || args.rounds > MAX_ROUNDS {
        return Err(BenchError::Invalid(format!(
            "--rounds must be between 1 and {MAX_ROUNDS}"
        )));
    }
    if args.clients == 0 || args.clients > MAX_CLIENTS {
        return Err(BenchError::Invalid(format!(
            "--clients must be between 1 and {MAX_CLIENTS}"
        )));
    }
    validate_table(&args.table)?;
    let mut nodes = load_cluster(&args.cluster_file)?;
    if nodes.len() < 3 {
        return Err(BenchError::Invalid(
            "failover needs at least 3 nodes (a majority must survive one kill)".into(),
        ));
    }
    let api = Api::new()?;
    let mut rounds = Vec::new();
    for round in 1..=args.rounds {
        let report = failover_round(&api, args, &mut nodes, round).await?;
        if !args.json {
            eprintln!(
                "phalanx bench: round {round}: outage {:.0} ms, acked_missing {}",
                report.outage_ms, report.acked_missing
            );
        }
        rounds.push(report);
    }
    Ok(FailoverReport {
        clients: args.clients,
        rounds,
    })
}

async fn failover_round(
    api: &Api,
    args: &FailoverArgs,
    nodes: &mut [ClusterNode],
    round: u32,
) -> Result<RoundReport, BenchError> {
    let fail = |message: String| BenchError::Failover { round, message };
    let all: Vec<usize> = (0..nodes.len()).collect();
    let leader = api.wait_for_leader(nodes, &all, LEADER_TIMEOUT).await?;
    let first_id = prepare_table(api, &nodes[leader].http, &args.table).await?;
    let sql_json = serde_json::to_string(&format!(
        "INSERT INTO {} (id, v) VALUES (?1, ?2)",
        args.table
    ))
    .map_err(|e| fail(e.to_string()))?;

    let shared = Arc::new(WriterShared {
        next_id: AtomicI64::new(first_id),
        alive: nodes.iter().map(|_| AtomicBool::new(true)).collect(),
        stop: AtomicBool::new(false),
        killed_at_us: AtomicU64::new(u64::MAX),
        first_ack_after_kill_us: AtomicU64::new(u64::MAX),
        first_ack_via: AtomicU64::new(0),
        started: Instant::now(),
    });
    let shared_nodes = Arc::new(nodes.to_vec());
    let write_timeout = Duration::from_millis(args.write_timeout_ms.max(1));
    let mut writers = Vec::with_capacity(args.clients);
    for i in 0..args.clients {
        writers.push(tokio::spawn(failover_writer(
            shared.clone(),
            shared_nodes.clone(),
            i,
            http_client(write_timeout)?,
            sql_json.clone(),
        )));
    }
    let stop_writers = |shared: &WriterShared| shared.stop.store(true, Ordering::SeqCst);

    tokio::time::sleep(Duration::from_millis(args.before_kill_ms)).await;
    // Leadership may have moved while the load started: ask again just before the kill.
    let leader = match api.wait_for_leader(nodes, &all, LEADER_TIMEOUT).await {
        Ok(leader) => leader,
        Err(e) => {
            stop_writers(&shared);
            return Err(e);
        }
    };
    let victim = nodes[leader].clone();
    shared.alive[leader].store(false, Ordering::SeqCst);
    if let Err(e) = kill9(victim.pid) {
        stop_writers(&shared);
        return Err(fail(format!(
            "cannot kill node {} (pid {}): {e}",
            victim.id, victim.pid
        )));
    }
    let killed = Instant::now();
    shared
        .killed_at_us
        .store(shared.micros_since_start(killed), Ordering::SeqCst);
    let survivors: Vec<usize> = all.iter().copied().filter(|&i| i != leader).collect();

    // Raft's view, apart from the writers': when a survivor first names a new live leader.
    let new_leader_probe = async {
        let deadline = killed + Duration::from_secs(args.recovery_timeout_s);
        while Instant::now() < deadline {
            for &i in &survivors {
                if let Some(l) = api
                    .status(&nodes[i].http)
                    .await
                    .and_then(|s| s["leader"].as_u64())
                    && l != victim.id
                {
                    return Some((killed.elapsed(), l));
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    };
    let first_ack = async {
        let deadline = killed + Duration::from_secs(args.recovery_timeout_s);
        while Instant::now() < deadline {
            let at = shared.first_ack_after_kill_us.load(Ordering::SeqCst);
            if at != u64::MAX {
                return Some(at);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        None
    };
    let (new_leader, first_ack) = tokio::join!(new_leader_probe, first_ack);
    let Some(first_ack_us) = first_ack else {
        stop_writers(&shared);
        return Err(fail(format!(
            "no write was acknowledged within {} s of killing node {}",
            args.recovery_timeout_s, victim.id
        )));
    };
    let outage_ms =
        first_ack_us.saturating_sub(shared.killed_at_us.load(Ordering::SeqCst)) as f64 / 1000.0;

    tokio::time::sleep(Duration::from_millis(args.after_recovery_ms)).await;
    stop_writers(&shared);
    let mut acked = BTreeSet::new();
    let mut writes_failed = 0;
    let mut first_error = None;
    for writer in writers {
        // Each writer stops within one request timeout of the stop flag.
        let log = writer
            .await
            .map_err(|e| fail(format!("writer task failed: {e}")))?;
        for record in log.records {
            if record.acknowledged {
                acked.insert(record.id);
            } else {
                writes_failed += 1;
            }
        }
        if first_error.is_none() {
            first_error = log.first_error;
        }
    }
    let end_id = shared.next_id.load(Ordering::SeqCst);

    // Every acknowledged row must be on every survivor (read at linearizable consistency).
    let mut acked_missing = 0;
    let mut present_not_acked = 0;
    for &i in &survivors {
        let answer = api
            .query_linearizable(
                &nodes[i].http,
                &format!("SELECT id FROM {} WHERE id >= ?1 AND id < ?2", args.table),
                json!([first_id, end_id]),
            )
            .await?;
        let rows = answer["rows"]
            .as_array()
            .ok_or_else(|| fail(format!("unexpected read answer: {answer}")))?;
        let present: BTreeSet<i64> = rows.iter().filter_map(|r| r[0].as_i64()).collect();
        let missing = acked.difference(&present).count() as u64;
        acked_missing = acked_missing.max(missing);
        present_not_acked = present_not_acked.max(present.difference(&acked).count() as u64);
    }

    // Restart the killed node and wait until it has applied a write made after the restart.
    let restart_began = Instant::now();
    let pid = restart_node(&victim)?;
    nodes[leader].pid = pid;
    record_pid(&args.cluster_file, victim.id, pid)?;
    let catch_up_timeout = Duration::from_secs(args.catch_up_timeout_s);
    let new_leader_position = api.wait_for_leader(nodes, &all, catch_up_timeout).await?;
    let marker_id = shared.next_id.fetch_add(1, Ordering::SeqCst);
    let marker = api
        .execute(
            &nodes[new_leader_position].http,
            &format!("INSERT INTO {} (id, v) VALUES (?1, 'catch-up')", args.table),
            json!([marker_id]),
        )
        .await?;
    let marker_index = marker["index"]
        .as_u64()
        .ok_or_else(|| fail(format!("write answer without an index: {marker}")))?;
    let deadline = restart_began + catch_up_timeout;
    loop {
        let mut behind = Vec::new();
        for node in nodes.iter() {
            if api
                .applied_index(&node.http)
                .await
                .is_none_or(|applied| applied < marker_index)
            {
                behind.push(node.id);
            }
        }
        if behind.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            return Err(fail(format!(
                "nodes {behind:?} had not applied index {marker_index} within {catch_up_timeout:?} of the restart"
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    Ok(RoundReport {
        round,
        killed_node: victim.id,
        killed_pid: victim.pid,
        outage_ms,
        first_ack_via: shared.first_ack_via.load(Ordering::SeqCst),
        new_leader_seen_ms: new_leader.map(|(d, _)| d.as_secs_f64() * 1000.0),
        new_leader: new_leader.map(|(_, l)| l),
        writes_acknowledged: acked.len() as u64,
        writes_failed,
        acked_missing,
        present_not_acked,
        catch_up_ms: restart_began.elapsed().as_secs_f64() * 1000.0,
        first_error,
    })
}

fn kill9(pid: u32) -> Result<(), nix::Error> {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let pid = i32::try_from(pid).map_err(|_| nix::Error::EINVAL)?;
    if pid <= 1 {
        return Err(nix::Error::EINVAL);
    }
    kill(Pid::from_raw(pid), Signal::SIGKILL)
}

/// Starts a node again with its recorded command, appending to its node.log, in its own
/// process group (like `phalanx local` does); returns the new pid. The process is not waited
/// for: it outlives this command, and the cluster file names it for whoever stops the cluster.
fn restart_node(node: &ClusterNode) -> Result<u32, BenchError> {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(node.data.join("node.log"))?;
    let child = std::process::Command::new(&node.cmd[0])
        .args(&node.cmd[1..])
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .process_group(0)
        .spawn()?;
    Ok(child.id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let sorted: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&sorted, 50.0), Some(50));
        assert_eq!(percentile(&sorted, 99.0), Some(99));
        assert_eq!(percentile(&sorted, 100.0), Some(100));
        assert_eq!(percentile(&sorted, 0.0), Some(1));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn reads_process_ticks_even_with_odd_command_names() {
        let stat = "4242 (phal anx) (x)) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    150 25 0 0 20 0 9 0 123 0 0";
        assert_eq!(process_ticks(stat), Some(175));
        assert_eq!(process_ticks("garbage"), None);
    }

    #[test]
    fn reads_machine_ticks() {
        let stat = "cpu  100 5 50 800 20 1 2 3 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
        // total = 100+5+50+800+20+1+2+3 = 981, idle = 800+20.
        assert_eq!(machine_ticks(stat), Some((161, 981)));
        assert_eq!(machine_ticks("intr 1 2 3"), None);
    }

    #[test]
    fn insert_body_is_valid_json_with_the_id_twice() {
        let sql = serde_json::to_string("INSERT INTO bench (id, v) VALUES (?1, ?2)")
            .expect("serializable");
        let body: Value = serde_json::from_str(&insert_body(&sql, 17)).expect("valid JSON");
        assert_eq!(body["statements"][0]["params"][0], json!(17));
        let value = body["statements"][0]["params"][1]
            .as_str()
            .expect("text value");
        assert!(value.starts_with("v17-"));
        assert_eq!(value.len(), VALUE_BYTES);
    }

    #[test]
    fn table_names_must_be_plain_identifiers() {
        assert!(validate_table("bench_2").is_ok());
        assert!(validate_table("_t").is_ok());
        for bad in ["", "2t", "t; DROP TABLE x", "t-1", "\"t\""] {
            assert!(validate_table(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn median_of_even_and_odd_round_counts() {
        let round = |outage_ms: f64| RoundReport {
            round: 1,
            killed_node: 1,
            killed_pid: 2,
            outage_ms,
            first_ack_via: 2,
            new_leader_seen_ms: None,
            new_leader: None,
            writes_acknowledged: 0,
            writes_failed: 0,
            acked_missing: 0,
            present_not_acked: 0,
            catch_up_ms: 0.0,
            first_error: None,
        };
        let mut report = FailoverReport {
            clients: 1,
            rounds: vec![round(300.0), round(100.0), round(200.0)],
        };
        assert_eq!(report.median_outage_ms(), Some(200.0));
        assert_eq!(report.max_outage_ms(), Some(300.0));
        report.rounds.push(round(400.0));
        assert_eq!(report.median_outage_ms(), Some(250.0));
    }
}

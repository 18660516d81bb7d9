//! Operator commands that talk to a running cluster over its HTTP API: `phalanx status`,
//! `phalanx node add|remove|drain|undrain`, `phalanx leader transfer`.

use std::time::Duration;

use clap::Args;
use serde_json::{Value, json};

/// Where to reach the cluster.
#[derive(Args, Debug, Clone)]
pub struct ClusterArg {
    /// HTTP address of any member.
    #[arg(long, env = "PHALANX_CLUSTER", default_value = "127.0.0.1:8433")]
    pub cluster: String,
    /// Print the raw JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct AddNodeArgs {
    #[command(flatten)]
    pub cluster: ClusterArg,
    /// The new node's id.
    #[arg(long)]
    pub id: u64,
    /// The new node's internal RPC address.
    #[arg(long)]
    pub raft: String,
    /// The new node's HTTP address.
    #[arg(long)]
    pub http: String,
    /// The new node's PostgreSQL address.
    #[arg(long)]
    pub pg: String,
    /// The new node's datacenter id in Snowflake IDs (its `datacenter_id`); if omitted, the
    /// node registers it itself once it runs.
    #[arg(long)]
    pub datacenter: Option<u64>,
}

#[derive(Args, Debug)]
pub struct RemoveNodeArgs {
    #[command(flatten)]
    pub cluster: ClusterArg,
    /// Id of the node to remove.
    pub id: u64,
}

#[derive(Args, Debug)]
pub struct TransferArgs {
    #[command(flatten)]
    pub cluster: ClusterArg,
    /// Id of the voter to hand leadership to.
    #[arg(long)]
    pub to: u64,
}

fn client(timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .build()
        .map_err(|e| e.to_string())
}

/// Sends a request and returns the JSON body, turning API errors into their message.
async fn call(request: reqwest::RequestBuilder) -> Result<Value, String> {
    let response = request
        .send()
        .await
        .map_err(|e| format!("cannot reach the cluster: {e}"))?;
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .map_err(|e| format!("bad response: {e}"))?;
    if status.is_success() {
        Ok(body)
    } else {
        let message = body["error"]["message"].as_str().unwrap_or("unknown error");
        Err(format!("{status}: {message}"))
    }
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub cluster: ClusterArg,
    /// Refresh every this many seconds until interrupted (like `watch ipvsadm -Ln`).
    #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "1")]
    pub watch: Option<f64>,
}

/// `phalanx status [--watch]`: members, then the read balancer like `ipvsadm -Ln --stats --rate`.
pub async fn status(args: &StatusArgs) -> Result<(), String> {
    let Some(every) = args.watch else {
        return status_once(&args.cluster).await;
    };
    if !(every.is_finite() && every > 0.0) {
        return Err("--watch takes a positive number of seconds".into());
    }
    loop {
        // Clear the screen and home the cursor, as `watch` does.
        print!("\x1b[2J\x1b[H");
        if let Err(e) = status_once(&args.cluster).await {
            println!("{e}");
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs_f64(every)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

async fn status_once(args: &ClusterArg) -> Result<(), String> {
    let body =
        call(client(Duration::from_secs(5))?.get(format!("http://{}/v1/status", args.cluster)))
            .await?;
    if args.json {
        println!("{body:#}");
        return Ok(());
    }
    println!(
        "node {} is {} (term {}, leader {}, commit {}, applied {})",
        body["id"],
        body["role"].as_str().unwrap_or("?"),
        body["term"],
        body["leader"],
        body["commit_index"],
        body["applied_index"]
    );
    println!(
        "{:<4} {:<8} {:<10} {:<12} {:>8}  {:<22} {:<22} {:<22}",
        "ID", "VOTER", "ROLE", "HEALTH", "APPLIED", "RAFT", "HTTP", "PG"
    );
    for m in body["members"].as_array().into_iter().flatten() {
        println!(
            "{:<4} {:<8} {:<10} {:<12} {:>8}  {:<22} {:<22} {:<22}",
            m["id"],
            m["voter"],
            m["role"].as_str().unwrap_or("?"),
            m["health"].as_str().unwrap_or("?"),
            m["applied_index"],
            m["raft"].as_str().unwrap_or(""),
            m["http"].as_str().unwrap_or(""),
            m["pg"].as_str().unwrap_or("")
        );
    }
    print_dispatcher(&body["dispatcher"]);
    Ok(())
}

/// The read balancer's tables: per target node weight, health and traffic; then per routing
/// rule its traffic.
fn print_dispatcher(dispatcher: &Value) {
    println!();
    println!(
        "reads from this node: scheduler {}",
        dispatcher["scheduler"].as_str().unwrap_or("?")
    );
    println!(
        "{:<4} {:>6} {:<8} {}",
        "NODE", "WEIGHT", "HEALTH", TRAFFIC_HEADER
    );
    for n in dispatcher["nodes"].as_array().into_iter().flatten() {
        let health = if n["healthy"].as_bool() == Some(false) {
            "down"
        } else {
            "up"
        };
        println!(
            "{:<4} {:>6} {:<8} {}",
            n["node"],
            n["weight"],
            health,
            traffic_columns(n)
        );
    }
    let rules = dispatcher["rules"].as_array().cloned().unwrap_or_default();
    if !rules.is_empty() {
        println!();
        println!("{:<20} {}", "RULE", TRAFFIC_HEADER);
        for r in &rules {
            println!(
                "{:<20} {}",
                r["name"].as_str().unwrap_or("?"),
                traffic_columns(r)
            );
        }
    }
}

/// The traffic columns' headings (`balance::Traffic`), after a row's own first columns.
const TRAFFIC_HEADER: &str = "  REQUESTS  ACTIVE   INACT  ERRORS     BYTES IN    BYTES OUT   RPS 1s  RPS 10s  RPS 60s    P50 ms    P99 ms";

/// One row's traffic columns, aligned under [`TRAFFIC_HEADER`].
fn traffic_columns(t: &Value) -> String {
    let millis = |v: &Value| {
        v.as_u64()
            .map(|us| format!("{:.2}", us as f64 / 1000.0))
            .unwrap_or_else(|| "-".into())
    };
    format!(
        "{:>10} {:>7} {:>7} {:>7} {:>12} {:>12} {:>8.1} {:>8.1} {:>8.1} {:>9} {:>9}",
        t["requests"],
        t["in_flight"],
        t["inactive"],
        t["errors"],
        t["bytes_in"],
        t["bytes_out"],
        t["rate_1s"].as_f64().unwrap_or(0.0),
        t["rate_10s"].as_f64().unwrap_or(0.0),
        t["rate_60s"].as_f64().unwrap_or(0.0),
        millis(&t["latency_p50_us"]),
        millis(&t["latency_p99_us"]),
    )
}

pub async fn add_node(args: &AddNodeArgs) -> Result<(), String> {
    let body = json!({
        "id": args.id,
        "raft": args.raft,
        "http": args.http,
        "pg": args.pg,
        "datacenter": args.datacenter,
    });
    // Adding waits for the learner to catch up, which may take a while for a large database.
    let request = client(Duration::from_secs(180))?
        .post(format!("http://{}/v1/nodes", args.cluster.cluster))
        .json(&body);
    call(request).await?;
    println!("node {} added", args.id);
    Ok(())
}

pub async fn remove_node(args: &RemoveNodeArgs) -> Result<(), String> {
    let request = client(Duration::from_secs(60))?.delete(format!(
        "http://{}/v1/nodes/{}",
        args.cluster.cluster, args.id
    ));
    call(request).await?;
    println!("node {} removed", args.id);
    Ok(())
}

/// `node drain ID` / `node undrain ID`: changes the replicated dispatcher settings. A drained
/// node gets no reads, and if it leads it hands leadership to another voter by itself
/// (`dispatch::maintenance`) within about a second.
pub async fn drain(args: &RemoveNodeArgs, drain: bool) -> Result<(), String> {
    let field = if drain { "drain" } else { "undrain" };
    let http = client(Duration::from_secs(30))?;
    let request = http
        .put(format!("http://{}/v1/dispatcher", args.cluster.cluster))
        .json(&json!({ field: [args.id] }));
    call(request).await?;
    println!("node {} {}ed", args.id, field);
    Ok(())
}

pub async fn transfer_leader(args: &TransferArgs) -> Result<(), String> {
    let request = client(Duration::from_secs(30))?
        .post(format!(
            "http://{}/v1/leader/transfer",
            args.cluster.cluster
        ))
        .json(&json!({"to": args.to}));
    call(request).await?;
    println!("leadership transfer to node {} requested", args.to);
    Ok(())
}

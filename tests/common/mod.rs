//! Test harness: real `phalanx` node processes on loopback with ports chosen at run time, and
//! helpers that talk to them over HTTP. Every wait is for a condition with a deadline.

#![allow(dead_code)]

pub mod pg;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_phalanx");

/// One node process of a test cluster.
pub struct TestNode {
    pub id: u64,
    pub pg: String,
    pub http: String,
    pub raft: String,
    pub data: PathBuf,
    /// The exact command line that (re)starts this node.
    pub cmd: Vec<String>,
    pub child: Option<Child>,
}

impl TestNode {
    /// A node with data in `dir/node-ID`, listening on `[pg, http, raft]`, started with `flags`.
    fn new(dir: &Path, id: u64, [pg, http, raft]: [String; 3], flags: &[&str]) -> TestNode {
        let data = dir.join(format!("node-{id}"));
        std::fs::create_dir_all(&data).expect("mkdir");
        let mut cmd: Vec<String> = vec![BIN.into(), "start".into(), "--id".into(), id.to_string()];
        cmd.extend(["--data".into(), data.to_string_lossy().into_owned()]);
        cmd.extend([
            "--listen-pg".into(),
            pg.clone(),
            "--listen-http".into(),
            http.clone(),
        ]);
        cmd.extend(["--listen-raft".into(), raft.clone()]);
        cmd.extend(flags.iter().map(|s| s.to_string()));
        TestNode {
            id,
            pg,
            http,
            raft,
            data,
            cmd,
            child: None,
        }
    }

    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<TestNode>,
    pub http: reqwest::Client,
}

/// Polls `check` (every 20 ms) until it returns `Ok`, and fails the test with `what` and the
/// last observation once `timeout` has passed: the one place tests wait for a condition.
pub async fn eventually<T, O, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    O: std::fmt::Debug,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, O>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(seen) => assert!(
                Instant::now() < deadline,
                "{what} within {timeout:?}; last seen: {seen:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Free loopback ports, from below Linux's ephemeral range (32768 and up by default): a port
/// from that range, released, can be taken by any outgoing connection (another test's client)
/// before the node binds it. Each test process walks its own stretch of 20000–32767, starting at
/// a place its pid picks, and skips ports something else holds.
pub fn free_ports(n: usize) -> Vec<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_768;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % SPAN,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    let mut ports = Vec::with_capacity(n);
    // Bounded: at most one full walk of the stretch.
    for _ in 0..SPAN {
        if ports.len() == n {
            break;
        }
        let port = (LOW + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            ports.push(port);
        }
    }
    assert_eq!(
        ports.len(),
        n,
        "no {n} free loopback ports in {LOW}..{}",
        LOW + SPAN
    );
    ports
}

fn spawn(cmd: &[String], log: &Path, env: &[(&str, &str)]) -> Child {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("open node log");
    let mut command = Command::new(&cmd[0]);
    command
        .args(&cmd[1..])
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("clone log"))
        .stderr(log_file);
    for (k, v) in env {
        command.env(k, v);
    }
    command.spawn().expect("spawn phalanx")
}

impl Cluster {
    /// Starts `n` nodes bootstrapping one cluster, with `extra` flags on each, and waits for a
    /// leader that every node knows.
    pub async fn start(n: u64, extra: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let ports = free_ports(3 * n as usize);
        let addr = |i: usize| format!("127.0.0.1:{}", ports[i]);
        let initial: Vec<String> = (0..n as usize)
            .map(|i| format!("{}={}", i + 1, addr(3 * i + 2)))
            .collect();
        let initial = initial.join(",");
        let mut nodes = Vec::new();
        for i in 0..n as usize {
            let addrs = [addr(3 * i), addr(3 * i + 1), addr(3 * i + 2)];
            let mut flags = vec!["--initial-cluster", initial.as_str()];
            flags.extend_from_slice(extra);
            nodes.push(TestNode::new(dir.path(), i as u64 + 1, addrs, &flags));
        }
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        let mut cluster = Cluster { dir, nodes, http };
        for i in 0..cluster.nodes.len() {
            cluster.start_node(i);
        }
        cluster
            .wait_for_leader(&cluster.all(), Duration::from_secs(30))
            .await;
        cluster
    }

    pub fn all(&self) -> Vec<usize> {
        (0..self.nodes.len()).collect()
    }

    pub fn log_path(&self, i: usize) -> PathBuf {
        self.nodes[i].data.join("node.log")
    }

    /// (Re)starts node `i` with its recorded command.
    pub fn start_node(&mut self, i: usize) {
        let log = self.log_path(i);
        let child = spawn(&self.nodes[i].cmd, &log, &[("PHALANX_LOG", "info")]);
        self.nodes[i].child = Some(child);
    }

    /// (Re)starts node `i` with extra environment variables.
    pub fn start_node_with_env(&mut self, i: usize, env: &[(&str, &str)]) {
        let log = self.log_path(i);
        let mut vars = vec![("PHALANX_LOG", "info")];
        vars.extend_from_slice(env);
        let child = spawn(&self.nodes[i].cmd, &log, &vars);
        self.nodes[i].child = Some(child);
    }

    /// Adds a node process that waits to be added (`--no-bootstrap`); returns its index.
    pub fn spawn_extra_node(&mut self, id: u64, extra: &[&str]) -> usize {
        let ports = free_ports(3);
        let addrs = [0, 1, 2].map(|i| format!("127.0.0.1:{}", ports[i]));
        self.nodes
            .push(TestNode::new(self.dir.path(), id, addrs, extra));
        let i = self.nodes.len() - 1;
        self.start_node(i);
        i
    }

    pub fn signal(&self, i: usize, signal: nix::sys::signal::Signal) {
        let pid = self.nodes[i].pid().expect("node is running");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).expect("send signal");
    }

    /// `kill -9` node `i` and reap it.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            child.kill().expect("kill -9");
            child.wait().expect("reap");
        }
    }

    /// SIGTERM node `i` and wait for it to exit cleanly.
    pub fn stop(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("sigterm");
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Some(status) = child.try_wait().expect("wait") {
                    assert!(
                        status.success(),
                        "node {} exited with {status} after SIGTERM",
                        i + 1
                    );
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "node {} did not stop after SIGTERM",
                    i + 1
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    pub async fn post(&self, i: usize, path: &str, body: &Value) -> (u16, Value) {
        self.send_json(
            self.http
                .post(format!("http://{}{path}", self.nodes[i].http)),
            body,
        )
        .await
    }

    pub async fn put(&self, i: usize, path: &str, body: &Value) -> (u16, Value) {
        self.send_json(
            self.http
                .put(format!("http://{}{path}", self.nodes[i].http)),
            body,
        )
        .await
    }

    async fn send_json(&self, request: reqwest::RequestBuilder, body: &Value) -> (u16, Value) {
        match request.json(body).send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                (status, r.json().await.unwrap_or(Value::Null))
            }
            Err(e) => (0, json!({"transport_error": e.to_string()})),
        }
    }

    pub async fn post_raw(&self, i: usize, path: &str, body: Vec<u8>) -> (u16, Value) {
        let url = format!("http://{}{path}", self.nodes[i].http);
        let r = self.http.post(url).body(body).send().await.expect("send");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, i: usize, path: &str) -> Option<Value> {
        let url = format!("http://{}{path}", self.nodes[i].http);
        let r = self
            .http
            .get(url)
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        r.json().await.ok()
    }

    /// Runs a transaction through node `i`.
    pub async fn execute(&self, i: usize, statements: &[(&str, Value)]) -> (u16, Value) {
        let statements: Vec<Value> = statements
            .iter()
            .map(|(sql, params)| json!({"sql": sql, "params": params}))
            .collect();
        self.post(i, "/v1/execute", &json!({"statements": statements}))
            .await
    }

    pub async fn execute_ok(&self, i: usize, sql: &str, params: Value) -> Value {
        let (status, body) = self.execute(i, &[(sql, params)]).await;
        assert_eq!(status, 200, "execute {sql} on node {}: {body}", i + 1);
        body
    }

    pub async fn query(&self, i: usize, sql: &str, consistency: &str) -> (u16, Value) {
        self.post(
            i,
            "/v1/query",
            &json!({"sql": sql, "consistency": consistency}),
        )
        .await
    }

    /// Connects a PostgreSQL client to node `i`; the connection task's outcome is returned by
    /// the handle.
    pub async fn pg_connect(
        &self,
        i: usize,
    ) -> Result<
        (
            tokio_postgres::Client,
            tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
        ),
        tokio_postgres::Error,
    > {
        let (host, port) = self.nodes[i].pg.split_once(':').expect("host:port");
        let (client, connection) = tokio_postgres::Config::new()
            .host(host)
            .port(port.parse().expect("port"))
            .user("tester")
            .dbname("phalanx")
            .connect_timeout(Duration::from_secs(10))
            .connect(tokio_postgres::NoTls)
            .await?;
        Ok((client, tokio::spawn(connection)))
    }

    /// A PostgreSQL client connected to node `i`.
    pub async fn pg_client(&self, i: usize) -> tokio_postgres::Client {
        let (client, _connection) = self.pg_connect(i).await.expect("connect over PostgreSQL");
        client
    }

    pub async fn status(&self, i: usize) -> Option<Value> {
        self.get(i, "/v1/status?local=1").await
    }

    /// The node (by index) every node in `which` names as leader, or what each named.
    async fn agreed_leader(&self, which: &[usize]) -> Result<usize, Vec<Option<u64>>> {
        let mut leaders = Vec::new();
        for &i in which {
            leaders.push(self.status(i).await.and_then(|s| s["leader"].as_u64()));
        }
        match leaders.first() {
            Some(Some(first)) if leaders.iter().all(|l| *l == Some(*first)) => self
                .nodes
                .iter()
                .position(|n| n.id == *first)
                .ok_or(leaders),
            _ => Err(leaders),
        }
    }

    /// Waits until every node in `which` answers and names the same leader, one of them;
    /// returns its index.
    pub async fn wait_for_leader(&self, which: &[usize], timeout: Duration) -> usize {
        eventually(
            timeout,
            &format!("a common leader among {which:?}"),
            || async {
                match self.agreed_leader(which).await {
                    Ok(idx) if which.contains(&idx) => Ok(idx),
                    Ok(idx) => Err(vec![Some(self.nodes[idx].id)]),
                    Err(leaders) => Err(leaders),
                }
            },
        )
        .await
    }

    /// Waits until every node names the same leader and it is not node `not`; returns it.
    pub async fn wait_for_leader_other_than(&self, not: usize, timeout: Duration) -> usize {
        let which = self.all();
        eventually(
            timeout,
            &format!("a common leader other than node {}", not + 1),
            || async {
                match self.agreed_leader(&which).await {
                    Ok(idx) if idx != not => Ok(idx),
                    Ok(idx) => Err(vec![Some(self.nodes[idx].id)]),
                    Err(leaders) => Err(leaders),
                }
            },
        )
        .await
    }

    /// Waits until node `i` has applied at least `index`.
    pub async fn wait_applied(&self, i: usize, index: u64, timeout: Duration) {
        let what = format!("node {} applying index {index}", i + 1);
        eventually(timeout, &what, || async {
            let applied = self
                .status(i)
                .await
                .and_then(|s| s["applied_index"].as_u64());
            if applied.is_some_and(|a| a >= index) {
                Ok(())
            } else {
                Err(applied)
            }
        })
        .await
    }

    /// The highest applied index across `which`.
    pub async fn max_applied(&self, which: &[usize]) -> u64 {
        let mut max = 0;
        for &i in which {
            if let Some(a) = self
                .status(i)
                .await
                .and_then(|s| s["applied_index"].as_u64())
            {
                max = max.max(a);
            }
        }
        max
    }

    /// Waits until every node has applied everything any node has, then asserts they hold
    /// identical content; returns it.
    pub async fn assert_identical(&self) -> Value {
        let index = self.max_applied(&self.all()).await;
        for i in self.all() {
            self.wait_applied(i, index, Duration::from_secs(30)).await;
        }
        let reference = self.dump(0).await;
        for i in 1..self.nodes.len() {
            assert_eq!(
                self.dump(i).await,
                reference,
                "node {} differs from node 1",
                i + 1
            );
        }
        reference
    }

    /// Every user table's full content on node `i`, read from its own database.
    pub async fn dump(&self, i: usize) -> Value {
        let tables = self
            .query_served_by(
                i,
                "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_phalanx%' ORDER BY name",
            )
            .await;
        let mut dump = serde_json::Map::new();
        for row in tables["rows"].as_array().expect("rows") {
            let name = row[0].as_str().expect("table name");
            let rows = self
                .query_served_by(
                    i,
                    &format!("SELECT rowid, * FROM \"{name}\" ORDER BY rowid"),
                )
                .await;
            dump.insert(name.to_owned(), rows["rows"].clone());
        }
        Value::Object(dump)
    }

    /// Runs `sql` at consistency `any` through node `i` until node `i` itself served it (its
    /// dispatcher balances reads over every member, and a dump must show one node's data);
    /// returns the answer.
    async fn query_served_by(&self, i: usize, sql: &str) -> Value {
        let what = format!("node {} to serve {sql}", i + 1);
        eventually(Duration::from_secs(10), &what, || async {
            let (status, body) = self.query(i, sql, "any").await;
            assert_eq!(status, 200, "{sql} on node {}: {body}", i + 1);
            if body["node"].as_u64() == Some(i as u64 + 1) {
                Ok(body)
            } else {
                Err(format!("served by node {}", body["node"]))
            }
        })
        .await
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                // A stopped (SIGSTOP) node must be continued to die promptly.
                let pid = nix::unistd::Pid::from_raw(child.id() as i32);
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT);
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if std::thread::panicking() {
            for node in &self.nodes {
                let log = std::fs::read_to_string(node.data.join("node.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!(
                    "---- node {} log (last 40 lines, newest first) ----",
                    node.id
                );
                for line in tail {
                    eprintln!("{line}");
                }
            }
        }
    }
}

//! The node-to-node network, client side: openraft's `RaftNetworkV2` over HTTP/1.1 on each
//! node's raft port, plus the application RPCs that ride the same port (forwarded writes, read
//! index requests, membership requests); the small application RPCs travel over the
//! multiplexed node-to-node channel (`raft::channel`).
//!
//! Bodies are postcard-encoded; a snapshot is streamed as a body of
//! `[u32 header length][postcard (vote, meta)][database file bytes]`, read from disk in chunks so
//! a snapshot is never held in memory whole. The server side is `raft::rpc_server`.

use std::future::Future;
use std::time::Duration;

use futures::TryStreamExt;
use openraft::errors::{
    NetworkError, RPCError, RaftError, ReplicationClosed, StreamingError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RaftNetworkFactory, v2::RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::io::ReaderStream;

use crate::raft::channel::{ChannelError, Channels, MAX_CHANNEL_REQUEST_BYTES, Method};
use crate::raft::state_machine::{Snapshot, SnapshotFile};
use crate::raft::types::{NodeAddr, NodeId, TypeConfig, Vote};

/// Paths of the internal RPCs (server: `raft::rpc_server`).
pub mod paths {
    pub const APPEND: &str = "/raft/append";
    pub const VOTE: &str = "/raft/vote";
    pub const PRE_VOTE: &str = "/raft/pre-vote";
    pub const SNAPSHOT: &str = "/raft/snapshot";
    pub const TRANSFER_LEADER: &str = "/raft/transfer-leader";
    pub const EXECUTE: &str = "/internal/execute";
    pub const READ_INDEX: &str = "/internal/read-index";
    pub const QUERY: &str = "/internal/query";
    pub const HEALTH: &str = "/internal/health";
    pub const TRANSACTION: &str = "/internal/transaction";
    pub const MEMBERSHIP: &str = "/internal/membership";
}

/// Failure of an application RPC to a peer.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The request never reached the peer (connection refused or reset before sending): safe to
    /// retry elsewhere.
    #[error("peer {addr} unreachable: {message}")]
    Unreachable { addr: String, message: String },
    /// The request may have reached the peer; its outcome is unknown.
    #[error("peer {addr} failed: {message}")]
    Failed { addr: String, message: String },
    #[error("peer {addr} timed out")]
    Timeout { addr: String },
}

/// A shared HTTP client for every peer connection (keep-alive pooled per address), and the
/// channels (`raft::channel`) that carry the small, frequent RPCs.
#[derive(Clone)]
pub struct PeerClient {
    http: reqwest::Client,
    channels: std::sync::Arc<Channels>,
}

impl PeerClient {
    pub fn new() -> Result<PeerClient, reqwest::Error> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_millis(500))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()?;
        let channels = std::sync::Arc::new(Channels::new(http.clone()));
        Ok(PeerClient { http, channels })
    }

    /// Sends `request` to `addr` + `path` and decodes the reply.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, PeerError> {
        let body = postcard::to_stdvec(request).map_err(|e| PeerError::Failed {
            addr: addr.to_owned(),
            message: format!("encode: {e}"),
        })?;
        if let Some(method) = channel_method(path)
            && body.len() <= MAX_CHANNEL_REQUEST_BYTES
        {
            match self.channels.call(addr, method, &body, timeout).await {
                Ok(bytes) => return decode(addr, &bytes),
                // An older peer: ask it over HTTP.
                Err(ChannelError::NotOffered) => {}
                Err(e) => return Err(channel_failure(addr, e)),
            }
        }
        // Large bodies (a big transaction's entry) need time to travel and be stored; openraft
        // bounds AppendEntries by the heartbeat interval, which only fits small ones.
        let timeout = timeout + transfer_allowance(body.len());
        let response = self
            .http
            .post(format!("http://{addr}{path}"))
            .body(body)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| classify(addr, e))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| classify(addr, e))?;
        if !status.is_success() {
            return Err(PeerError::Failed {
                addr: addr.to_owned(),
                message: format!("HTTP {status}: {}", String::from_utf8_lossy(&bytes)),
            });
        }
        decode(addr, &bytes)
    }
}

fn decode<Resp: DeserializeOwned>(addr: &str, bytes: &[u8]) -> Result<Resp, PeerError> {
    postcard::from_bytes(bytes).map_err(|e| PeerError::Failed {
        addr: addr.to_owned(),
        message: format!("decode: {e}"),
    })
}

/// The channel method that carries the RPC at `path`, if the channel carries it.
fn channel_method(path: &str) -> Option<Method> {
    match path {
        paths::QUERY => Some(Method::Query),
        paths::READ_INDEX => Some(Method::ReadIndex),
        paths::HEALTH => Some(Method::Health),
        paths::EXECUTE => Some(Method::Execute),
        paths::TRANSACTION => Some(Method::Transaction),
        _ => None,
    }
}

fn channel_failure(addr: &str, e: ChannelError) -> PeerError {
    let addr = addr.to_owned();
    match e {
        ChannelError::Unreachable(message) => PeerError::Unreachable { addr, message },
        ChannelError::Timeout => PeerError::Timeout { addr },
        other => PeerError::Failed {
            addr,
            message: other.to_string(),
        },
    }
}

/// Extra time for a request body of `bytes`: 1 ms per 10 kB (10 MB/s, far below loopback or
/// LAN speed, so only a truly stuck peer times out).
fn transfer_allowance(bytes: usize) -> Duration {
    Duration::from_millis((bytes / 10_000) as u64)
}

impl PeerClient {
    /// GETs a JSON document from a peer's HTTP API (health probes, status).
    pub async fn get_json(
        &self,
        addr: &str,
        path: &str,
        timeout: Duration,
    ) -> Result<serde_json::Value, PeerError> {
        let response = self
            .http
            .get(format!("http://{addr}{path}"))
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| classify(addr, e))?;
        response.json().await.map_err(|e| classify(addr, e))
    }
}

fn classify(addr: &str, e: reqwest::Error) -> PeerError {
    if e.is_timeout() {
        PeerError::Timeout {
            addr: addr.to_owned(),
        }
    } else if e.is_connect() {
        PeerError::Unreachable {
            addr: addr.to_owned(),
            message: e.to_string(),
        }
    } else {
        PeerError::Failed {
            addr: addr.to_owned(),
            message: e.to_string(),
        }
    }
}

/// Makes one [`Peer`] per target node.
pub struct NetworkFactory {
    client: PeerClient,
}

impl NetworkFactory {
    pub fn new(client: PeerClient) -> NetworkFactory {
        NetworkFactory { client }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &NodeAddr) -> Peer {
        Peer {
            target,
            addr: node.raft.clone(),
            client: self.client.clone(),
        }
    }
}

/// The connection to one peer, as openraft sees it.
pub struct Peer {
    target: NodeId,
    addr: String,
    client: PeerClient,
}

impl Peer {
    async fn raft_call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        path: &str,
        request: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<TypeConfig>> {
        let reply: Result<Resp, RaftError<TypeConfig>> = self
            .client
            .call(&self.addr, path, request, option.hard_ttl())
            .await
            .map_err(|e| self.rpc_error(e, option))?;
        // A remote RaftError means the peer's Raft is shutting down: back off as if unreachable.
        reply.map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))
    }

    fn rpc_error(&self, e: PeerError, option: &RPCOption) -> RPCError<TypeConfig> {
        match e {
            PeerError::Unreachable { .. } => RPCError::Unreachable(Unreachable::new(&e)),
            PeerError::Timeout { .. } => RPCError::Timeout(Timeout {
                action: openraft::RPCTypes::AppendEntries,
                id: self.target,
                target: self.target,
                timeout: option.hard_ttl(),
            }),
            PeerError::Failed { .. } => RPCError::Network(NetworkError::new(&e)),
        }
    }
}

impl RaftNetworkV2<TypeConfig> for Peer {
    type SnapshotData = SnapshotFile;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.raft_call(paths::APPEND, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.raft_call(paths::VOTE, &rpc, &option).await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.raft_call(paths::PRE_VOTE, &rpc, &option).await
    }

    async fn transfer_leader(
        &mut self,
        rpc: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.raft_call(paths::TRANSFER_LEADER, &rpc, &option).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let send = send_snapshot(&self.client, &self.addr, vote, snapshot);
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            result = send => result.map_err(|e| match e {
                PeerError::Unreachable { .. } => StreamingError::Unreachable(Unreachable::new(&e)),
                _ => StreamingError::Network(NetworkError::new(&e)),
            }),
        }
    }
}

async fn send_snapshot(
    client: &PeerClient,
    addr: &str,
    vote: Vote,
    snapshot: Snapshot,
) -> Result<SnapshotResponse<TypeConfig>, PeerError> {
    let failed = |message: String| PeerError::Failed {
        addr: addr.to_owned(),
        message,
    };
    let header = postcard::to_stdvec(&(vote, &snapshot.meta)).map_err(|e| failed(e.to_string()))?;
    let header_len = u32::try_from(header.len()).map_err(|e| failed(e.to_string()))?;
    let file = tokio::fs::File::open(&snapshot.snapshot.path)
        .await
        .map_err(|e| failed(format!("open {}: {e}", snapshot.snapshot.path.display())))?;
    let mut prefix = header_len.to_le_bytes().to_vec();
    prefix.extend_from_slice(&header);
    let head =
        futures::stream::once(async move { Ok::<_, std::io::Error>(bytes::Bytes::from(prefix)) });
    let body = head.chain(ReaderStream::with_capacity(file, 1 << 20).map_ok(|b| b));
    let response = client
        .http
        .post(format!("http://{addr}{}", paths::SNAPSHOT))
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .map_err(|e| classify(addr, e))?;
    let status = response.status();
    let bytes = response.bytes().await.map_err(|e| classify(addr, e))?;
    if !status.is_success() {
        return Err(failed(format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&bytes)
        )));
    }
    let reply: Result<SnapshotResponse<TypeConfig>, RaftError<TypeConfig>> =
        postcard::from_bytes(&bytes).map_err(|e| failed(format!("decode: {e}")))?;
    reply.map_err(|e| failed(e.to_string()))
}

use futures::StreamExt as _;

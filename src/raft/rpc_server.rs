//! The node-to-node network, server side: an HTTP server on the raft port that hands Raft
//! messages to openraft and serves the application RPCs (forwarded writes, read index,
//! membership changes). Bodies are postcard; see `raft::network` for the client and the
//! snapshot stream layout.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::StreamExt;
use openraft::errors::RaftError;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::AsyncWriteExt;

use crate::dispatch::Dispatcher;
use crate::dispatch::error::RequestError;
use crate::dispatch::transaction::TxnRequest;
use crate::raft::channel::{self, Method};
use crate::raft::membership::{self, MembershipRequest};
use crate::raft::network::paths;
use crate::raft::state_machine::{Snapshot, SnapshotFile};
use crate::raft::types::{SnapshotMeta, TypeConfig, Vote};
use crate::storage::request::Statement;

/// Largest non-snapshot RPC body (a batch of log entries).
const MAX_RPC_BYTES: usize = 256 * 1024 * 1024;
/// Largest snapshot header (vote + membership).
const MAX_SNAPSHOT_HEADER_BYTES: usize = 1024 * 1024;

/// State shared by the RPC handlers.
#[derive(Clone)]
pub struct RpcState {
    pub dispatcher: Dispatcher,
    pub snapshot_dir: std::path::PathBuf,
    /// Turns true when the node stops: open channels close.
    pub stop: tokio::sync::watch::Receiver<bool>,
}

pub fn router(state: RpcState) -> Router {
    Router::new()
        .route(paths::APPEND, post(append))
        .route(paths::VOTE, post(vote))
        .route(paths::PRE_VOTE, post(pre_vote))
        .route(paths::TRANSFER_LEADER, post(transfer_leader))
        .route(paths::SNAPSHOT, post(snapshot))
        .route(paths::EXECUTE, post(execute))
        .route(paths::READ_INDEX, post(read_index))
        .route(paths::QUERY, post(query))
        .route(paths::HEALTH, post(health))
        .route(paths::TRANSACTION, post(transaction))
        .route(paths::MEMBERSHIP, post(membership_change))
        .route(channel::PATH, post(open_channel))
        .layer(DefaultBodyLimit::max(MAX_RPC_BYTES))
        .with_state(state)
}

/// An RPC body that could not be decoded: answered with 400.
struct BadRpc(String);

impl IntoResponse for BadRpc {
    fn into_response(self) -> Response {
        (StatusCode::BAD_REQUEST, self.0).into_response()
    }
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, BadRpc> {
    postcard::from_bytes(body).map_err(|e| BadRpc(format!("malformed rpc body: {e}")))
}

fn encode<T: Serialize>(value: &T) -> Response {
    match postcard::to_stdvec(value) {
        Ok(bytes) => bytes.into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("encode: {e}")).into_response(),
    }
}

async fn append(State(s): State<RpcState>, body: Bytes) -> Response {
    match decode(&body) {
        Ok(rpc) => {
            let reply = s.dispatcher.raft.append_entries(rpc).await;
            if let Ok(response) = &reply
                && !matches!(
                    response,
                    openraft::raft::AppendEntriesResponse::HigherVote(_)
                )
            {
                s.dispatcher.leader_contact.record();
            }
            encode(&reply)
        }
        Err(r) => r.into_response(),
    }
}

async fn vote(State(s): State<RpcState>, body: Bytes) -> Response {
    match decode(&body) {
        Ok(rpc) => encode(&s.dispatcher.raft.vote(rpc).await),
        Err(r) => r.into_response(),
    }
}

async fn pre_vote(State(s): State<RpcState>, body: Bytes) -> Response {
    match decode(&body) {
        Ok(rpc) => encode(&s.dispatcher.raft.pre_vote(rpc).await),
        Err(r) => r.into_response(),
    }
}

async fn transfer_leader(State(s): State<RpcState>, body: Bytes) -> Response {
    match decode(&body) {
        Ok(rpc) => {
            let reply = s
                .dispatcher
                .raft
                .handle_transfer_leader(rpc)
                .await
                .map_err(RaftError::<TypeConfig>::Fatal);
            encode(&reply)
        }
        Err(r) => r.into_response(),
    }
}

/// A write forwarded by a follower. Runs only if this node leads: a forward is never
/// forwarded again, so a stale leader view cannot make requests loop.
async fn execute(State(s): State<RpcState>, body: Bytes) -> Response {
    answer_http(serve_method(&s.dispatcher, Method::Execute, &body).await)
}

/// A read another node's balancer sent here: served from this node's data once it has
/// applied the index the read needs.
async fn query(State(s): State<RpcState>, body: Bytes) -> Response {
    answer_http(serve_method(&s.dispatcher, Method::Query, &body).await)
}

/// A health probe: answered with this node's applied index, load, and whether it leads with
/// a live lease.
async fn health(State(s): State<RpcState>) -> Response {
    answer_http(serve_method(&s.dispatcher, Method::Health, &[]).await)
}

/// A step of an explicit transaction forwarded by the node its session is connected to.
async fn transaction(State(s): State<RpcState>, body: Bytes) -> Response {
    answer_http(serve_method(&s.dispatcher, Method::Transaction, &body).await)
}

async fn read_index(State(s): State<RpcState>) -> Response {
    answer_http(serve_method(&s.dispatcher, Method::ReadIndex, &[]).await)
}

/// Serves one of the RPCs the channel carries (also reachable one per HTTP request): the
/// encoded answer, or why the request could not be decoded.
async fn serve_method(
    dispatcher: &Dispatcher,
    method: Method,
    body: &[u8],
) -> Result<Vec<u8>, BadRpc> {
    let encoded = match method {
        Method::Query => {
            let request: crate::dispatch::RemoteRead = decode(body)?;
            let deadline =
                std::time::Instant::now() + std::time::Duration::from_millis(request.wait_ms);
            let answer = dispatcher
                .serve_read(request.statement, request.needed, deadline)
                .await;
            postcard::to_stdvec(&answer)
        }
        Method::Execute => {
            let statements: Vec<Statement> = decode(body)?;
            let answer = match dispatcher.raft.as_leader() {
                Ok(_) => dispatcher.pipeline.submit(statements).await,
                Err(f) => Err(RequestError::NotLeader {
                    leader: f.leader_id,
                }),
            };
            postcard::to_stdvec(&answer)
        }
        Method::Transaction => {
            let request: TxnRequest = decode(body)?;
            let deadline = std::time::Instant::now() + dispatcher.timeouts.write;
            let answer = dispatcher
                .local_transaction(request.id, request.step, deadline)
                .await;
            postcard::to_stdvec(&answer)
        }
        Method::ReadIndex => {
            let deadline = std::time::Instant::now() + dispatcher.timeouts.read;
            postcard::to_stdvec(&dispatcher.local_read_index(deadline).await)
        }
        Method::Health => {
            // Whether it leads first: an index read after a positive answer is at least as new.
            let leading = dispatcher.leads_with_lease();
            let applied = dispatcher.engine.applied_index();
            postcard::to_stdvec(&crate::dispatch::load::HealthReport {
                applied,
                load: dispatcher.local_load.report(),
                leading,
            })
        }
    };
    encoded.map_err(|e| BadRpc(format!("encode: {e}")))
}

fn answer_http(answer: Result<Vec<u8>, BadRpc>) -> Response {
    match answer {
        Ok(bytes) => bytes.into_response(),
        Err(bad) => bad.into_response(),
    }
}

/// Opens a node-to-node channel (`raft::channel`): answers the upgrade, then serves the
/// channel's requests on the upgraded connection until the peer closes it or the node stops.
async fn open_channel(State(s): State<RpcState>, mut request: axum::extract::Request) -> Response {
    use axum::http::header::{CONNECTION, UPGRADE};
    let asks_for_channel = request
        .headers()
        .get(UPGRADE)
        .is_some_and(|protocol| protocol.as_bytes() == channel::PROTOCOL.as_bytes());
    let Some(on_upgrade) = request
        .extensions_mut()
        .remove::<hyper::upgrade::OnUpgrade>()
        .filter(|_| asks_for_channel)
    else {
        return BadRpc(format!("expected an upgrade to {}", channel::PROTOCOL)).into_response();
    };
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => {
                tracing::debug!("node-to-node channel upgrade failed: {e}");
                return;
            }
        };
        let dispatcher = s.dispatcher.clone();
        let serve = move |method, body: Bytes| {
            let dispatcher = dispatcher.clone();
            async move {
                serve_method(&dispatcher, method, &body)
                    .await
                    .map_err(|bad| bad.0)
            }
        };
        channel::serve(hyper_util::rt::TokioIo::new(upgraded), serve, s.stop).await;
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(CONNECTION, "upgrade")
        .header(UPGRADE, channel::PROTOCOL)
        .body(Body::empty())
        .unwrap_or_else(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response())
}

async fn membership_change(State(s): State<RpcState>, body: Bytes) -> Response {
    let request: MembershipRequest = match decode(&body) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    encode(&membership::apply_on_leader(&s.dispatcher, request).await)
}

/// Receives a streamed snapshot into a file, then hands it to openraft.
async fn snapshot(State(s): State<RpcState>, body: Body) -> Response {
    match receive_snapshot(&s, body).await {
        Ok((vote, snapshot)) => {
            let received = snapshot.snapshot.path.clone();
            let reply = s
                .dispatcher
                .raft
                .install_full_snapshot(vote, snapshot)
                .await;
            // An installed snapshot was moved into place; a refused one (stale vote, not newer)
            // is still here and must not pile up.
            let _ = tokio::fs::remove_file(&received).await;
            encode(&reply.map_err(RaftError::<TypeConfig>::Fatal))
        }
        Err(message) => (StatusCode::BAD_REQUEST, message).into_response(),
    }
}

async fn receive_snapshot(s: &RpcState, body: Body) -> Result<(Vote, Snapshot), String> {
    let path = s
        .snapshot_dir
        .join(format!("receiving-{}.db", rand::random::<u64>()));
    let result = receive_into(&path, body).await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&path).await;
    }
    let (vote, meta) = result?;
    Ok((
        vote,
        Snapshot {
            meta,
            snapshot: SnapshotFile { path },
        },
    ))
}

async fn receive_into(path: &std::path::Path, body: Body) -> Result<(Vote, SnapshotMeta), String> {
    let mut stream = body.into_data_stream();
    let mut buffer: Vec<u8> = Vec::new();
    let mut header: Option<(Vote, SnapshotMeta)> = None;
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(|e| format!("create {}: {e}", path.display()))?;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| format!("snapshot stream broken: {e}"))?;
        if header.is_some() {
            file.write_all(&chunk).await.map_err(|e| e.to_string())?;
            continue;
        }
        buffer.extend_from_slice(&chunk);
        if buffer.len() < 4 {
            continue;
        }
        let mut len_bytes = [0u8; 4];
        len_bytes.copy_from_slice(&buffer[..4]);
        let len = u32::from_le_bytes(len_bytes) as usize;
        if len > MAX_SNAPSHOT_HEADER_BYTES {
            return Err(format!("snapshot header of {len} bytes is too large"));
        }
        if buffer.len() < 4 + len {
            continue;
        }
        header = Some(
            postcard::from_bytes(&buffer[4..4 + len])
                .map_err(|e| format!("snapshot header: {e}"))?,
        );
        file.write_all(&buffer[4 + len..])
            .await
            .map_err(|e| e.to_string())?;
        buffer = Vec::new();
    }
    file.sync_all().await.map_err(|e| e.to_string())?;
    header.ok_or_else(|| "snapshot stream ended before its header".to_string())
}

//! The HTTP JSON API, v1, served by every node.
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/execute` | `{"statements":[{"sql","params"}]}`: one transaction, run on the leader |
//! | `POST /v1/query` | `{"sql","params","consistency","min_index","max_lag_ms"}`: one read |
//! | `GET /v1/status` | this node's Raft state and every member's health and applied index |
//! | `POST /v1/nodes` | `{"id","raft","http","pg"}`: add a node (learner, then voter) |
//! | `DELETE /v1/nodes/{id}` | remove a node |
//! | `POST /v1/leader/transfer` | `{"to":ID}`: hand leadership over |
//! | `GET /v1/health` | 200 while the node serves |
//! | `GET /v1/ids?count=N` | N (1..=10,000) new Snowflake IDs from this node ([`ids`]) |
//!
//! Bodies are read up to `max_request_bytes` (413 beyond) and parsed strictly: unknown fields
//! are refused. Errors are `{"error":{"code","message"}}` (see [`error`]).

pub mod error;
pub mod ids;
pub mod json;
pub mod metrics;
pub mod status;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::dispatch::{Consistency, Dispatcher};
use crate::frontend::http::error::ApiError;
use crate::raft::membership::{self, MembershipRequest};
use crate::raft::types::{IdWorker, LogIndex, NodeAddr, NodeId};
use crate::storage::request::Statement;

/// State shared by the handlers.
#[derive(Clone)]
pub struct HttpState {
    pub dispatcher: Dispatcher,
    pub addr: NodeAddr,
    pub max_request_bytes: usize,
    /// What start-up recovery repaired in the Raft log, if anything.
    pub log_repair: Option<String>,
    /// The Raft log's writer counters (group commit shows as entries per fsync).
    pub log: crate::raft::log_store::LogStoreHandle,
    /// This node's Snowflake generator.
    pub ids: std::sync::Arc<crate::ids::NodeGenerator>,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/v1/execute", post(execute))
        .route("/v1/query", post(query))
        .route("/v1/status", get(status::status))
        .route("/v1/nodes", post(add_node))
        .route("/v1/nodes/{id}", delete(remove_node))
        .route("/v1/leader/transfer", post(transfer_leader))
        .route("/v1/health", get(health))
        .route("/v1/ids", get(ids::ids))
        .route("/metrics", get(metrics::metrics))
        .route("/v1/dispatcher", get(get_dispatcher).put(put_dispatcher))
        .fallback(not_found)
        .with_state(state)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecuteBody {
    statements: Vec<StatementBody>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatementBody {
    sql: String,
    #[serde(default)]
    params: Vec<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryBody {
    sql: String,
    #[serde(default)]
    params: Vec<Value>,
    #[serde(default)]
    consistency: Consistency,
    #[serde(default)]
    min_index: LogIndex,
    /// The staleness bound of a `bounded` read, in milliseconds.
    #[serde(default)]
    max_lag_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddNodeBody {
    id: NodeId,
    raft: String,
    http: String,
    pg: String,
    /// The node's Snowflake datacenter id, if the caller knows it (a joining node sends it).
    #[serde(default)]
    datacenter: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferBody {
    to: NodeId,
}

/// Reads and parses a JSON body within the size limit.
async fn read_json<T: DeserializeOwned>(
    state: &HttpState,
    request: Request,
) -> Result<T, ApiError> {
    let bytes = axum::body::to_bytes(request.into_body(), state.max_request_bytes)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("request body exceeds {} bytes", state.max_request_bytes),
            )
        })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request("malformed_json", e.to_string()))
}

fn to_statement(body: StatementBody) -> Result<Statement, ApiError> {
    let params = body
        .params
        .iter()
        .map(json::to_sql)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|m| ApiError::bad_request("invalid_request", m))?;
    Ok(Statement {
        sql: body.sql,
        params,
    })
}

async fn execute(
    State(state): State<HttpState>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let body: ExecuteBody = read_json(&state, request).await?;
    if body.statements.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_request",
            "statements must not be empty",
        ));
    }
    let statements = body
        .statements
        .into_iter()
        .map(to_statement)
        .collect::<Result<Vec<_>, _>>()?;
    let outcome = state.dispatcher.execute(statements).await?;
    let results: Vec<Value> = outcome
        .results
        .into_iter()
        .map(|r| {
            let mut v =
                json!({"rows_affected": r.rows_affected, "last_insert_id": r.last_insert_id});
            if !r.columns.is_empty() {
                v["columns"] = json!(r.columns);
                v["rows"] = rows_json(r.rows);
            }
            v
        })
        .collect();
    Ok(Json(json!({"results": results, "index": outcome.index})))
}

async fn query(State(state): State<HttpState>, request: Request) -> Result<Json<Value>, ApiError> {
    let client_addr = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip());
    let body: QueryBody = read_json(&state, request).await?;
    let consistency = body.consistency;
    let min_index = body.min_index;
    let context = crate::dispatch::routing::ReadContext {
        max_lag: body.max_lag_ms.map(std::time::Duration::from_millis),
        client_addr,
        ..Default::default()
    };
    let statement = to_statement(StatementBody {
        sql: body.sql,
        params: body.params,
    })?;
    let outcome = state
        .dispatcher
        .query(statement, consistency, min_index, &context)
        .await?;
    Ok(Json(json!({
        "columns": outcome.result.columns,
        "rows": rows_json(outcome.result.rows),
        "node": outcome.node,
        "index": outcome.index,
    })))
}

fn rows_json(rows: Vec<Vec<crate::storage::request::SqlValue>>) -> Value {
    Value::Array(
        rows.into_iter()
            .map(|row| Value::Array(row.into_iter().map(json::from_sql).collect()))
            .collect(),
    )
}

async fn add_node(
    State(state): State<HttpState>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let body: AddNodeBody = read_json(&state, request).await?;
    if body.id == 0 {
        return Err(ApiError::bad_request(
            "invalid_request",
            "node id must be at least 1",
        ));
    }
    let addr = NodeAddr {
        raft: body.raft,
        http: body.http,
        pg: body.pg,
        id_worker: body.datacenter.map(|datacenter| IdWorker {
            datacenter,
            worker: crate::ids::worker_for_node(body.id),
        }),
    };
    membership::request(
        &state.dispatcher,
        MembershipRequest::Add { id: body.id, addr },
    )
    .await?;
    Ok(Json(json!({"added": body.id})))
}

async fn remove_node(
    State(state): State<HttpState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id: NodeId = id.parse().map_err(|_| {
        ApiError::bad_request("invalid_request", format!("{id:?} is not a node id"))
    })?;
    membership::request(&state.dispatcher, MembershipRequest::Remove { id }).await?;
    Ok(Json(json!({"removed": id})))
}

async fn transfer_leader(
    State(state): State<HttpState>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let body: TransferBody = read_json(&state, request).await?;
    membership::request(
        &state.dispatcher,
        MembershipRequest::TransferLeader { to: body.to },
    )
    .await?;
    Ok(Json(json!({"transferring_to": body.to})))
}

/// `GET /v1/dispatcher`: the settings this node dispatches by, with each member's configured
/// and effective weight.
async fn get_dispatcher(State(state): State<HttpState>) -> Json<Value> {
    Json(dispatcher_view(&state))
}

fn dispatcher_view(state: &HttpState) -> Value {
    use crate::dispatch::settings::{DispatcherConfig, members};
    let d = &state.dispatcher;
    let config = DispatcherConfig::current(d);
    let balancer = d.balancer.settings();
    let nodes: Vec<Value> = members(d)
        .into_iter()
        .map(|node| {
            json!({
                "node": node,
                "configured_weight": balancer.configured_weight(node),
                "effective_weight": balancer.effective_weight(
                    node,
                    d.health.load(node).as_ref(),
                    balancer.scheduler,
                ),
                "load": d.health.load(node),
                "drained": balancer.drained.contains(&node),
                "healthy": d.health.is_healthy(node),
            })
        })
        .collect();
    let mut view = serde_json::to_value(&config).unwrap_or_else(|_| json!({}));
    view["nodes"] = json!(nodes);
    view
}

/// `PUT /v1/dispatcher`: changes the settings (fields absent stay as they are), replicated to
/// every node; an invalid change is refused whole with 400.
async fn put_dispatcher(
    State(state): State<HttpState>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let update: crate::dispatch::settings::DispatcherUpdate = read_json(&state, request).await?;
    match crate::dispatch::settings::change(&state.dispatcher, &update).await? {
        Ok(_) => Ok(Json(dispatcher_view(&state))),
        Err(invalid) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_settings",
            invalid.to_string(),
        )),
    }
}

async fn health() -> &'static str {
    "ok"
}

async fn not_found(request: Request<Body>) -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route {} {}", request.method(), request.uri().path()),
    )
    .into_response()
}

//! `GET /v1/ids?count=N`: N new Snowflake IDs from this node's generator, as a JSON array of
//! increasing integers. `count` defaults to 1 and must be within 1..=[`MAX_IDS_PER_REQUEST`]
//! (else 400). JSON numbers carry them exactly, but JavaScript's `Number` does not beyond 2^53:
//! such clients should parse the body with a big-integer-aware parser.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::Deserialize;

use crate::frontend::http::HttpState;
use crate::frontend::http::error::ApiError;

/// Most IDs one request may ask for (about 2.5 ms of the default layout's sequence space).
pub const MAX_IDS_PER_REQUEST: usize = 10_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdsParams {
    count: Option<String>,
}

pub async fn ids(
    State(state): State<HttpState>,
    params: Result<Query<IdsParams>, QueryRejection>,
) -> Result<Json<Vec<u64>>, ApiError> {
    let Query(params) =
        params.map_err(|e| ApiError::bad_request("invalid_request", e.body_text()))?;
    let count = match params.count {
        None => 1,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_IDS_PER_REQUEST).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_request",
                    format!(
                        "count must be an integer from 1 to {MAX_IDS_PER_REQUEST}, not {text:?}"
                    ),
                )
            })?,
    };
    let generator = state.ids.clone();
    // A full batch may wait for a few ticks: off the async workers.
    let issued = tokio::task::spawn_blocking(move || {
        let mut out = Vec::with_capacity(count);
        generator.next_ids(count, &mut out).map(|()| out)
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))??;
    Ok(Json(issued))
}

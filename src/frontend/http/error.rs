//! HTTP errors: the JSON body `{"error":{"code":"...","message":"..."}}` and the one mapping
//! from request errors to HTTP statuses.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::dispatch::error::RequestError;
use crate::ids::IdError;
use crate::raft::membership::MembershipError;
use crate::storage::error::SqlError;

/// An error answer of the HTTP API.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        (self.status, Json(body)).into_response()
    }
}

impl From<RequestError> for ApiError {
    fn from(e: RequestError) -> ApiError {
        let message = e.to_string();
        let (status, code) = match e {
            RequestError::Sql(SqlError::InvalidRequest(_)) => {
                (StatusCode::BAD_REQUEST, "invalid_request")
            }
            RequestError::Sql(SqlError::Statement { .. }) => (StatusCode::BAD_REQUEST, "sql_error"),
            RequestError::Sql(SqlError::Constraint { .. }) => {
                (StatusCode::CONFLICT, "constraint_violation")
            }
            RequestError::NotLeader { .. } | RequestError::NoLeader(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "no_leader")
            }
            RequestError::OutcomeUnknown(_) => (StatusCode::SERVICE_UNAVAILABLE, "outcome_unknown"),
            RequestError::TransactionLost(_) => (StatusCode::CONFLICT, "transaction_lost"),
            RequestError::Deadlock(_) => (StatusCode::CONFLICT, "deadlock"),
            RequestError::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
            RequestError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        };
        ApiError::new(status, code, message)
    }
}

impl From<IdError> for ApiError {
    fn from(e: IdError) -> ApiError {
        let message = e.to_string();
        let (status, code) = match e {
            IdError::ClockMovedBack { .. } => (StatusCode::SERVICE_UNAVAILABLE, "clock_moved_back"),
            IdError::Closed => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            IdError::BeforeEpoch
            | IdError::TimestampExhausted
            | IdError::Persist { .. }
            | IdError::Corrupt { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        ApiError::new(status, code, message)
    }
}

impl From<MembershipError> for ApiError {
    fn from(e: MembershipError) -> ApiError {
        let message = e.to_string();
        match e {
            MembershipError::Invalid(_) => ApiError::bad_request("invalid_request", message),
            MembershipError::NotLeader | MembershipError::NoLeader(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no_leader", message)
            }
            MembershipError::Failed(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "membership_failed",
                message,
            ),
        }
    }
}

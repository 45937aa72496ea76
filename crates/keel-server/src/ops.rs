//! Operational routes: health, readiness, metrics, and the JSON answers for unknown routes.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use keel_wire::Code;
use serde_json::json;

use crate::{ApiError, AppState};

/// `GET /healthz`: the process is alive and serving HTTP.
/// Health, readiness, metrics, and the path reserved for peers.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/raft/{*rest}", any(raft_reserved))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

pub(crate) async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: 200 once this node can serve writes and linearizable reads.
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    let s = state.node.status().borrow().clone();
    let body = json!({
        "ready": s.is_leader,
        "node_id": s.id,
        "leader_id": s.leader,
        "term": s.term,
        "applied_index": state.node.applied_index(),
    });
    let status = if s.is_leader {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// `GET /metrics`: Prometheus text format.
pub(crate) async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let handle = state.metrics.as_ref().ok_or_else(|| {
        ApiError::new(
            Code::NotImplemented,
            "metrics are not enabled in this process",
        )
    })?;
    let ct = [(
        header::CONTENT_TYPE,
        "text/plain; version=0.0.4; charset=utf-8",
    )];
    Ok((ct, handle.render()).into_response())
}

/// `/raft/*`: reserved for peer traffic.
pub(crate) async fn raft_reserved() -> ApiError {
    ApiError::new(
        Code::NotImplemented,
        "peer traffic under /raft/ needs multi-node clustering, which this build does not have",
    )
}

/// Any unknown route.
pub(crate) async fn not_found() -> ApiError {
    ApiError::new(Code::NotFound, "no such route")
}

/// A known route with the wrong method.
pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::new(Code::MethodNotAllowed, "method not allowed")
}

//! Operational routes: health, readiness, metrics, and the JSON answers for unknown routes.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use keel_wire::Code;
use serde_json::json;

use crate::{ApiError, AppState};

/// Health, readiness and metrics.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// `GET /healthz`: the process is alive and serving HTTP.
pub(crate) async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: 200 while this node can serve writes and linearizable reads: it leads with
/// a quorum behind it, or follows a leader it heard from recently and has caught up with.
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    let s = state.node.status().borrow().clone();
    let readiness = state.node.readiness();
    let body = json!({
        "ready": readiness.ready,
        "reason": readiness.reason,
        "node_id": s.id,
        "leader_id": s.leader,
        "term": s.term,
        "applied_index": state.node.applied_index(),
    });
    let status = if readiness.ready {
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

/// Any unknown route.
pub(crate) async fn not_found() -> ApiError {
    ApiError::new(Code::NotFound, "no such route")
}

/// A known route with the wrong method.
pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::new(Code::MethodNotAllowed, "method not allowed")
}

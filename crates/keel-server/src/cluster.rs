//! `/v1/cluster`: membership and status, removing a member, moving leadership, and the
//! state hash that shows two nodes hold the same state.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use keel_raft::peer::ClusterView;
use keel_wire::{
    ClusterStatus, LeaderResponse, Member, RemoveResponse, StateHash, TransferLeaderRequest,
};

use crate::extract::json_body;
use crate::{ApiError, AppState};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/cluster", get(status))
        .route("/v1/cluster/members/{id}", delete(remove))
        .route("/v1/cluster/leader", post(transfer_leader))
        .route("/v1/cluster/state-hash", get(state_hash))
}

fn to_wire(view: ClusterView) -> ClusterStatus {
    ClusterStatus {
        node_id: view.node_id,
        leader: view.leader,
        term: view.term,
        commit_index: view.commit_index,
        members: view
            .members
            .into_iter()
            .map(|m| Member {
                id: m.id,
                address: m.addr,
                role: m.role.as_str().to_owned(),
                match_index: m.match_index,
                applied_index: m.applied_index,
                lag: m.lag,
                last_contact_ms: m.last_contact_ms,
                healthy: m.healthy,
            })
            .collect(),
    }
}

/// `GET /v1/cluster`.
async fn status(State(state): State<AppState>) -> Json<ClusterStatus> {
    Json(to_wire(state.node.cluster().await))
}

/// `DELETE /v1/cluster/members/{id}`.
async fn remove(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<RemoveResponse>, ApiError> {
    let id = parse_id(&id)?;
    state.node.remove(id).await?;
    Ok(Json(RemoveResponse { removed: id }))
}

/// `POST /v1/cluster/leader` `{"id":N}`.
async fn transfer_leader(
    State(state): State<AppState>,
    body: Body,
) -> Result<Json<LeaderResponse>, ApiError> {
    let req: TransferLeaderRequest = json_body(&state.config, body).await?;
    state.node.move_leader(req.id).await?;
    Ok(Json(LeaderResponse { leader: req.id }))
}

/// `GET /v1/cluster/state-hash`: this node's applied state, at once (no read barrier). The
/// store is cloned under the read lock (O(1): its maps are persistent) and hashed off it, on
/// a blocking thread, so that hashing a large store never holds up applying.
async fn state_hash(State(state): State<AppState>) -> Result<Json<StateHash>, ApiError> {
    let store = state.node.state().read(|s| s.clone());
    let applied_index = state.node.applied_index();
    let revision = store.revision();
    let digest = tokio::task::spawn_blocking(move || store.state_digest())
        .await
        .map_err(|e| ApiError::internal(format!("hashing the state: {e}")))?;
    let hex = digest.iter().map(|b| format!("{b:02x}")).collect();
    Ok(Json(StateHash {
        node_id: state.node.id(),
        revision,
        applied_index,
        state_hash: hex,
    }))
}

fn parse_id(text: &str) -> Result<u64, ApiError> {
    text.parse()
        .ok()
        .filter(|&id| id > 0)
        .ok_or_else(|| ApiError::invalid(format!("{text:?} is not a node id (a positive integer)")))
}

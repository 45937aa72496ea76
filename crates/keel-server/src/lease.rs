//! `/v1/leases`: grant, keep alive, inspect, list, revoke.

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{self, post};
use axum::{Json, Router};
use keel_state::{LeaseCommand, LeaseError, LeaseOutcome, Outcome};
use keel_wire::{
    Code, LeaseGrantRequest, LeaseInfo, LeaseList, LeaseResponse, LeaseRevokeResponse, LeaseSummary,
};
use serde::Deserialize;

use crate::extract::{json_body, PathText, Q};
use crate::respond::{read_point, unexpected};
use crate::{parse_duration, ApiError, AppState};

/// Shortest lease accepted.
const MIN_TTL_MS: u64 = 1_000;
/// Longest lease accepted (one year).
const MAX_TTL_MS: u64 = 365 * 24 * 3600 * 1000;

/// The routes of leases.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/leases", post(grant).get(list))
        .route("/v1/leases/{id}", routing::get(get).delete(revoke))
        .route("/v1/leases/{id}/keepalive", post(keepalive))
}

fn parse_id(raw: &str) -> Result<u64, ApiError> {
    raw.parse::<u64>()
        .map_err(|_| ApiError::invalid(format!("lease id {raw:?} is not a number")))
}

fn ttl_ms(req: &LeaseGrantRequest) -> Result<u64, ApiError> {
    let bad = |m: String| ApiError::new(Code::InvalidTtl, m);
    let ms = match (&req.ttl, req.ttl_ms) {
        (Some(s), None) => parse_duration(s).map_err(bad)?.as_millis() as u64,
        (None, Some(ms)) => ms,
        _ => {
            return Err(bad(
                "give exactly one of ttl (e.g. \"10s\") or ttl_ms".into()
            ))
        }
    };
    if !(MIN_TTL_MS..=MAX_TTL_MS).contains(&ms) {
        return Err(bad(format!(
            "ttl must be between 1s and 365 days, got {ms} ms"
        )));
    }
    Ok(ms)
}

pub(crate) async fn grant(
    State(state): State<AppState>,
    body: Body,
) -> Result<(StatusCode, Json<LeaseResponse>), ApiError> {
    let req: LeaseGrantRequest = json_body(&state.config, body).await?;
    let ttl_ms = ttl_ms(&req)?;
    match state.propose(LeaseCommand::Grant { ttl_ms }.into()).await? {
        Outcome::Lease(LeaseOutcome::Granted(l)) => {
            // (A new lease may be due sooner than anything the expiry duty waits for: applying
            // the grant wakes it, on whichever node leads.)
            Ok((
                StatusCode::CREATED,
                Json(LeaseResponse {
                    id: l.id,
                    ttl_ms: l.ttl_ms,
                }),
            ))
        }
        other => Err(unexpected(other)),
    }
}

pub(crate) async fn keepalive(
    State(state): State<AppState>,
    PathText(id): PathText,
) -> Result<Json<LeaseResponse>, ApiError> {
    let id = parse_id(&id)?;
    match state.propose(LeaseCommand::KeepAlive { id }.into()).await? {
        Outcome::Lease(LeaseOutcome::Granted(l)) => Ok(Json(LeaseResponse {
            id: l.id,
            ttl_ms: l.ttl_ms,
        })),
        other => Err(unexpected(other)),
    }
}

pub(crate) async fn revoke(
    State(state): State<AppState>,
    PathText(id): PathText,
) -> Result<Json<LeaseRevokeResponse>, ApiError> {
    let id = parse_id(&id)?;
    match state.propose(LeaseCommand::Revoke { id }.into()).await? {
        Outcome::Lease(LeaseOutcome::Revoked { revision, deleted }) => {
            Ok(Json(LeaseRevokeResponse { revision, deleted }))
        }
        other => Err(unexpected(other)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReadQuery {
    #[serde(default)]
    stale: bool,
}

pub(crate) async fn get(
    State(state): State<AppState>,
    PathText(id): PathText,
    Q(q): Q<ReadQuery>,
) -> Result<Json<LeaseInfo>, ApiError> {
    let id = parse_id(&id)?;
    read_point(&state, q.stale).await?;
    let now = state.node.clock().now_ms();
    state
        .node
        .state()
        .read(|s| {
            s.lease(id).map(|l| LeaseInfo {
                id,
                ttl_ms: l.ttl_ms,
                remaining_ms: l.expires_at_ms.saturating_sub(now),
                keys: l.keys.iter().cloned().collect(),
            })
        })
        .map(Json)
        .ok_or_else(|| keel_state::CommandError::from(LeaseError::NotFound(id)).into())
}

pub(crate) async fn list(
    State(state): State<AppState>,
    Q(q): Q<ReadQuery>,
) -> Result<Json<LeaseList>, ApiError> {
    read_point(&state, q.stale).await?;
    let now = state.node.clock().now_ms();
    let leases = state.node.state().read(|s| {
        s.leases()
            .map(|l| LeaseSummary {
                id: l.id,
                ttl_ms: l.ttl_ms,
                remaining_ms: l.expires_at_ms.saturating_sub(now),
                key_count: l.keys.len() as u64,
            })
            .collect()
    });
    Ok(Json(LeaseList { leases }))
}
